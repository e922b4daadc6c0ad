//! The zone-file parser and the zone builder on any text, with origin
//! `example.org.`: `parse_zone_text` and `Zone::build` never panic or hang;
//! they return records and a zone, or errors with a line number.

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
    if !common::safe_paths(text) {
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
