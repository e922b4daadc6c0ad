//! The Corefile parser and the whole config build with every plugin, on any
//! text: `corefile::parse_str` and `build` never panic or hang; they return a
//! config or errors. Run from `fuzz/fixtures` (see `common.rs`), so imports,
//! zone files and hosts files can name the files there.

#![no_main]

#[path = "../common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use oxidns_server::{Options, build, corefile};

fuzz_target!(|data: &[u8]| {
    common::init();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if !common::safe_paths(text) {
        return;
    }
    let Ok(blocks) = corefile::parse_str(text, "Corefile") else {
        return;
    };
    if let Err(errors) = build(&blocks, oxidns::plugins::PLUGINS, &Options::default()) {
        assert!(!errors.is_empty(), "a failed build names an error");
    }
});
