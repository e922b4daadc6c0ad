//! `Query::parse` on any bytes: it never panics, and what it returns can be
//! answered. An accepted query rebuilt with `Query::build` parses again to the
//! same question and EDNS; a response to it and a FORMERR for a rejected one
//! are messages that `Response::parse` reads back with the query's ID.
//! `Query::parse` (which reads common queries in place) and
//! `Query::parse_full` (the general path alone) give the same result.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use oxidns_proto::{Query, QueryError, Rcode, Response, encode_error};

fuzz_target!(|data: &[u8]| {
    let parsed = Query::parse(Bytes::copy_from_slice(data));
    let in_full = Query::parse_full(Bytes::copy_from_slice(data));
    assert_eq!(parsed, in_full);
    if let (Ok(fast), Ok(full)) = (&parsed, &in_full) {
        assert_eq!(fast.qname.as_slice(), full.qname.as_slice());
    }
    match parsed {
        Ok(query) => {
            let rebuilt = Query::build(
                query.id,
                &query.qname,
                query.qtype,
                query.qclass,
                query.edns.as_ref(),
            );
            let again = Query::parse(rebuilt.into()).expect("a rebuilt query parses");
            assert_eq!(again.id, query.id);
            assert_eq!(again.qname.as_slice(), query.qname.as_slice());
            assert_eq!(again.qtype, query.qtype);
            assert_eq!(again.qclass, query.qclass);
            assert_eq!(again.edns, query.edns);

            let limit = usize::from(query.udp_limit());
            let wire = Response::new(Rcode::NOERROR).encode(&query, limit);
            assert!(wire.len() <= limit);
            let received = Response::parse(&wire).expect("our response parses");
            assert_eq!(received.id, query.id);
            assert_eq!(received.edns.is_some(), query.edns.is_some());
            let (qname, qtype, qclass) = received.question.expect("the question is echoed");
            assert_eq!(qname.as_slice(), query.qname.as_slice());
            assert_eq!((qtype, qclass), (query.qtype, query.qclass));
        }
        Err(QueryError::Drop) => assert!(data.len() < 12 || data[2] & 0x80 != 0),
        Err(QueryError::FormErr(malformed)) => {
            let wire = encode_error(&malformed, Rcode::FORMERR);
            let received = Response::parse(&wire).expect("a FORMERR parses");
            assert_eq!(received.id, malformed.id);
            assert_eq!(received.response.header_rcode(), Rcode::FORMERR);
        }
    }
});
