//! Process-wide logging switches shared by the binary and the plugins.

use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

/// Turns `[DEBUG]` messages on or off (the `debug` plugin turns them on).
pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

/// Whether `[DEBUG]` messages are shown.
pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}
