//! TSIG on any bytes (what any client may send): finding the record, and
//! checking it as a server and as a transfer client, never panics; a record
//! that is found strips back to a message with one record less.

#![no_main]

use libfuzzer_sys::fuzz_target;
use oxidns_proto::name_from_str;
use oxidns_proto::tsig::{self, Algorithm, Key, Verifier};

fuzz_target!(|data: &[u8]| {
    let Ok(Some(record)) = tsig::find(data) else {
        return;
    };
    let stripped = tsig::strip(data, &record);
    assert_eq!(stripped.len(), record.start);
    let arcount = |m: &[u8]| u16::from_be_bytes([m[10], m[11]]);
    assert_eq!(arcount(&stripped), arcount(data) - 1);
    // The key the record names, with a secret an attacker does not know.
    let algorithm = Algorithm::from_name(&record.algorithm).unwrap_or(Algorithm::HmacSha256);
    let key = Key::new(&record.key_name, algorithm, b"fuzz");
    let _ = tsig::verify_request(data, &record, |_| Some(&key), record.time_signed);
    let other = Key::new(&name_from_str("other.key").unwrap(), algorithm, b"fuzz");
    let _ = tsig::verify_request(data, &record, |_| Some(&other), 0);
    let mut verifier = Verifier::new(&key, &record.mac);
    let _ = verifier.verify(data, record.time_signed);
    let _ = verifier.verify(data, 0);
});
