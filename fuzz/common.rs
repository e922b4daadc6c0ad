//! What the text-input targets share: a fixed working directory and
//! environment, and a filter that keeps file-reading directives away from
//! devices and system folders.

use std::path::{Path, PathBuf};
use std::sync::Once;

/// `fuzz/fixtures`: zone files, a hosts file and an importable snippet that
/// relative paths in fuzzed Corefiles and zone files can reach.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Makes runs repeatable: the working directory is `fixtures()` and the
/// environment (which `{$NAME}` in a Corefile reads) holds one variable,
/// `OXIDNS_FUZZ=example.org`.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        std::env::set_current_dir(fixtures()).expect("fuzz/fixtures exists");
        for (name, _) in std::env::vars_os() {
            // SAFETY: called once, before the target starts any thread of its own.
            unsafe { std::env::remove_var(name) };
        }
        // SAFETY: as above.
        unsafe { std::env::set_var("OXIDNS_FUZZ", "example.org") };
    });
}

/// False for text that could make the parser read a device, a FIFO or a
/// pseudo-file (`/dev/zero`, `/proc/self/fd/0`): names of those folders, a
/// `..`, or a glob that is not confined to the fixtures folder. Reading one
/// hangs or exhausts memory by design, not by a bug, so such inputs are
/// skipped rather than reported.
pub fn safe_paths(text: &str) -> bool {
    const FORBIDDEN: [&str; 5] = ["dev", "proc", "sys", "run", ".."];
    if FORBIDDEN.iter().any(|word| text.contains(word)) {
        return false;
    }
    !(text.contains('/') && text.contains(['*', '?', '[']))
}
