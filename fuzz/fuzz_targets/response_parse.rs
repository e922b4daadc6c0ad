//! `Response::parse` on any bytes (what an upstream may send): it never
//! panics, and a response it accepts can be passed on, as `forward` does: it
//! encodes for a query with the same question within the client's limit
//! (512 bytes, and 65535 as over TCP), and the result parses again with the
//! query's ID and no more records than were received. Kept in wire form (as
//! the cache and zones keep answers) and sent for the same query, it gives
//! the same bytes as encoding its records.

#![no_main]

use libfuzzer_sys::fuzz_target;
use oxidns_proto::{Edns, Query, Response};

fuzz_target!(|data: &[u8]| {
    let Ok(received) = Response::parse(data) else {
        return;
    };
    let Some((qname, qtype, qclass)) = &received.question else {
        return;
    };
    let edns = received.edns.as_ref().map(|e| Edns {
        udp_payload_size: 4096,
        version: 0,
        dnssec_ok: e.dnssec_ok,
        options: Vec::new(),
    });
    let query = Query::build(received.id, qname, *qtype, *qclass, edns.as_ref());
    let query = Query::parse(query.into()).expect("a built query parses");
    let response = &received.response;
    let in_wire_form = response
        .wire_sections(&query.qname, query.qtype, query.qclass, b"tag")
        .map(|sections| Response {
            answer: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
            wire: Some(sections),
            ..response.clone()
        });
    for limit in [512, usize::from(u16::MAX)] {
        let wire = response.encode(&query, limit);
        if let Some(kept) = &in_wire_form {
            assert_eq!(kept.encode(&query, limit), wire, "wire form at {limit}");
        }
        assert!(
            wire.len() <= limit,
            "{} bytes over a limit of {limit}",
            wire.len()
        );
        let again = Response::parse(&wire).expect("a re-encoded response parses");
        assert_eq!(again.id, received.id);
        assert_eq!(again.response.rcode, response.rcode);
        assert!(again.response.answer.len() <= response.answer.len());
        assert!(again.response.authority.len() <= response.authority.len());
        assert!(again.response.additional.len() <= response.additional.len());
    }
});
