//! The zone-file parser and the zone builder on any text, with origin
//! `example.org.`: `parse_zone_text` and `Zone::build` never panic or hang;
//! they return records and a zone, or errors with a line number.
//!
//! Inputs whose `$GENERATE` lines would make more than
//! [`MAX_FUZZED_GENERATED_RECORDS`] records are skipped: building a zone of
//! hundreds of thousands of records is correct and takes seconds, and the
//! fuzzer, once it has found one, spent most of its time rebuilding such
//! zones (835 executions per second instead of 31,000). The `$GENERATE`
//! limit and the large-RRset build (the quadratic-time finding) have their
//! own tests in `oxidns-zone`.

#![no_main]

#[path = "../common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use oxidns_proto::name_from_str;
use oxidns_zone::Zone;
use oxidns_zone::zonefile::parse_zone_text;

fuzz_target!(|data: &[u8]| {
    common::init();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if !common::safe_paths(text) || generated_records(text) > MAX_FUZZED_GENERATED_RECORDS {
        return;
    }
    let origin = name_from_str("example.org.").expect("a valid name");
    let records = match parse_zone_text(text, "db.fuzz", &origin) {
        Ok(records) => records,
        Err(error) => {
            if error.file == "db.fuzz" {
                assert!(error.line as usize <= text.lines().count() + 1, "{error}");
            }
            return;
        }
    };
    if let Ok((zone, _warnings)) = Zone::build(&origin, records) {
        assert!(zone.record_count() > 0, "a zone has at least its SOA");
    }
});

/// The most records the `$GENERATE` lines of one input may make.
const MAX_FUZZED_GENERATED_RECORDS: u64 = 1_000;

/// How many records the `$GENERATE start-stop[/step]` lines of `text` make,
/// as far as their ranges read as numbers (a range the parser refuses makes
/// an error, not records).
fn generated_records(text: &str) -> u64 {
    let count = |line: &str| -> Option<u64> {
        let mut tokens = line.split_whitespace();
        if !tokens.next()?.eq_ignore_ascii_case("$GENERATE") {
            return None;
        }
        let (range, step) = match tokens.next()?.split_once('/') {
            Some((range, step)) => (range, step.parse::<u64>().ok()?),
            None => (line.split_whitespace().nth(1)?, 1),
        };
        let (start, stop) = range.split_once('-')?;
        let (start, stop) = (start.parse::<u64>().ok()?, stop.parse::<u64>().ok()?);
        Some(stop.checked_sub(start)? / step.max(1) + 1)
    };
    // Saturating: a range may read as a number near u64::MAX.
    text.lines()
        .filter_map(count)
        .fold(0, u64::saturating_add)
}
