//! Black-box tests of the server core: real packets over loopback UDP and TCP
//! to the real binary. Malformed input must get FORMERR or be dropped as the
//! RFCs say, and the server must keep serving.

mod common;

use std::time::Duration;

use common::*;

const WHOAMI: &str = ".:0 {\n whoami\n}\n";

fn header_id(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

#[test]
fn answers_over_udp_ipv4_ipv6_and_tcp() {
    let server = Oxidns::start(WHOAMI);
    for addr in [server.addr(), server.addr_v6()] {
        let got = udp(addr, &query("example.org", Rtype::A));
        assert_eq!(got.response.rcode, OptRcode::NOERROR);
        assert!(got.response.authoritative);
        assert_eq!(got.response.additional.len(), 2);
    }
    let got = tcp(server.addr(), &query("example.org", Rtype::A));
    assert!(
        got.response.additional[1]
            .owner()
            .to_string()
            .starts_with("_tcp.")
    );
}

#[test]
fn longest_matching_zone_picks_the_block_and_unmatched_names_are_refused() {
    let server = Oxidns::start("example.org:0 {\n whoami\n}\nsub.example.org:0 {\n}\n");
    let rcode = |name: &str| udp(server.addr(), &query(name, Rtype::A)).response.rcode;
    assert_eq!(rcode("www.example.org"), OptRcode::NOERROR);
    assert_eq!(
        rcode("WWW.EXAMPLE.ORG"),
        OptRcode::NOERROR,
        "zone match ignores case"
    );
    assert_eq!(
        rcode("a.sub.example.org"),
        OptRcode::REFUSED,
        "empty block refuses"
    );
    assert_eq!(
        rcode("example.net"),
        OptRcode::REFUSED,
        "no block for the name"
    );
}

#[test]
fn question_is_echoed_with_its_case_and_id() {
    let server = Oxidns::start(WHOAMI);
    let mut message = query("WwW.ExAmPlE.oRg", Rtype::A);
    message[0] = 0xbe;
    message[1] = 0xef;
    let got = udp(server.addr(), &message);
    assert_eq!(got.id, 0xbeef);
    assert_eq!(got.question.unwrap().0.to_string(), "WwW.ExAmPlE.oRg");
}

/// Malformed queries with a readable header get FORMERR with their ID.
#[test]
fn malformed_queries_get_formerr_with_the_same_id() {
    let server = Oxidns::start(WHOAMI);
    let good = query("example.org", Rtype::A);
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[1, 2, 3]);
    cases.push(("trailing bytes", trailing));
    let mut no_question = good[..12].to_vec();
    no_question[5] = 0;
    cases.push(("QDCOUNT 0", no_question));
    let mut two_questions = good.clone();
    two_questions[5] = 2;
    two_questions.extend_from_slice(&good[12..]);
    cases.push(("QDCOUNT 2", two_questions));
    let mut long_label = good[..12].to_vec();
    long_label.push(64);
    long_label.extend_from_slice(&[b'a'; 64]);
    long_label.extend_from_slice(&[0, 0, 1, 0, 1]);
    cases.push(("label over 63 octets", long_label));
    let mut long_name = good[..12].to_vec();
    for _ in 0..5 {
        long_name.push(60);
        long_name.extend_from_slice(&[b'b'; 60]);
    }
    long_name.extend_from_slice(&[0, 0, 1, 0, 1]);
    cases.push(("name over 255 octets", long_name));
    let mut pointer_loop = good[..12].to_vec();
    pointer_loop.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    cases.push(("compression loop", pointer_loop));
    let mut forward_pointer = good[..12].to_vec();
    forward_pointer.extend_from_slice(&[0xc0, 18, 0, 1, 0, 1, 1, b'x', 0]);
    cases.push(("forward compression pointer", forward_pointer));
    let mut counts_overrun = good.clone();
    counts_overrun[7] = 3; // ANCOUNT 3, no records follow
    cases.push(("ANCOUNT beyond the message", counts_overrun));
    let mut truncated_question = good.clone();
    truncated_question.truncate(good.len() - 2);
    cases.push(("question cut short", truncated_question));

    for (what, mut message) in cases {
        message[0] = 0x51;
        message[1] = 0x52;
        let bytes = udp_raw(server.addr(), &message, ANSWER_TIMEOUT)
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(header_id(&bytes), 0x5152, "{what}");
        assert_eq!(bytes[2] & 0x80, 0x80, "{what}: QR set");
        assert_eq!(bytes[3] & 0x0f, 1, "{what}: FORMERR");
    }
    // And it still serves.
    assert_eq!(udp(server.addr(), &good).response.rcode, OptRcode::NOERROR);
}

/// No header, or a response sent to us: nothing comes back (no reflection loops).
#[test]
fn unreadable_messages_and_responses_are_dropped() {
    let server = Oxidns::start(WHOAMI);
    let mut response_bit = query("example.org", Rtype::A);
    response_bit[2] |= 0x80;
    for (what, message) in [
        ("five bytes", vec![1, 2, 3, 4, 5]),
        ("empty", vec![]),
        ("QR=1", response_bit),
    ] {
        assert!(
            udp_raw(server.addr(), &message, Duration::from_millis(300)).is_none(),
            "{what}: expected silence"
        );
    }
    assert_eq!(
        udp(server.addr(), &query("example.org", Rtype::A))
            .response
            .rcode,
        OptRcode::NOERROR
    );
}

#[test]
fn opcodes_we_do_not_serve_get_notimp() {
    let server = Oxidns::start(WHOAMI);
    for opcode in [1u8, 2, 5, 15] {
        let mut message = query("example.org", Rtype::A);
        message[2] = (message[2] & 0x87) | (opcode << 3);
        let got = udp(server.addr(), &message);
        assert_eq!(got.response.rcode, OptRcode::NOTIMP, "opcode {opcode}");
        assert_eq!(got.opcode.to_int(), opcode);
    }
}

#[test]
fn edns_version_above_zero_gets_badvers_with_version_zero() {
    let server = Oxidns::start(WHOAMI);
    let mut e = edns(1232);
    e.version = 1;
    let got = udp(server.addr(), &query_edns("example.org", Rtype::A, e));
    assert_eq!(got.response.rcode, OptRcode::BADVERS);
    assert_eq!(got.edns.unwrap().version, 0);
    assert!(got.response.additional.is_empty());
}

#[test]
fn edns_opt_is_echoed_with_our_payload_size_and_do_bit() {
    let server = Oxidns::start(WHOAMI);
    let mut e = edns(4096);
    e.dnssec_ok = true;
    let got = udp(server.addr(), &query_edns("example.org", Rtype::A, e));
    let opt = got.edns.expect("OPT in the response");
    assert_eq!(opt.udp_payload_size, 1232);
    assert!(opt.dnssec_ok);
    let got = udp(
        server.addr(),
        &query_edns("example.org", Rtype::A, edns(512)),
    );
    assert!(!got.edns.unwrap().dnssec_ok, "DO is echoed, not invented");
    let got = udp(server.addr(), &query("example.org", Rtype::A));
    assert!(got.edns.is_none(), "no OPT without one in the query");
}

#[test]
fn unknown_edns_options_and_flags_are_ignored() {
    let server = Oxidns::start(WHOAMI);
    let mut e = edns(1232);
    e.options.push(EdnsOption {
        code: 65001,
        data: vec![1, 2, 3].into(),
    });
    let mut message = query_edns("example.org", Rtype::A, e);
    // Set every Z flag bit of the OPT TTL (bytes 3..4 of the TTL field).
    let opt_ttl = message.len() - 7 - 2 - 4;
    message[opt_ttl + 2] |= 0x7f;
    message[opt_ttl + 3] = 0xff;
    let bytes = udp_raw(server.addr(), &message, ANSWER_TIMEOUT).expect("answer");
    let got = Response::parse(&bytes).unwrap();
    assert_eq!(got.response.rcode, OptRcode::NOERROR);
    assert!(
        got.response.edns_options.is_empty(),
        "unknown options are not echoed"
    );
    // RFC 6891 §6.1.4: Z bits are sent as zero.
    let z = &bytes[bytes.len() - 4..bytes.len() - 2];
    assert_eq!(z, [0, 0]);
}

#[test]
fn two_opt_records_get_formerr() {
    let server = Oxidns::start(WHOAMI);
    let mut message = query_edns("example.org", Rtype::A, edns(1232));
    let opt = message[message.len() - 11..].to_vec();
    message.extend_from_slice(&opt);
    message[11] = 2;
    let got = udp(server.addr(), &message);
    assert_eq!(got.response.rcode, OptRcode::FORMERR);
}

/// RFC 7766 §6.2.1.1: pipelined queries on one connection are all answered.
#[test]
fn pipelined_tcp_queries_are_all_answered() {
    let server = Oxidns::start(WHOAMI);
    let mut stream = tcp_connect(server.addr());
    let mut burst = Vec::new();
    for id in 0..20u16 {
        let mut message = query(&format!("q{id}.example.org"), Rtype::A);
        message[..2].copy_from_slice(&id.to_be_bytes());
        burst.extend_from_slice(&(message.len() as u16).to_be_bytes());
        burst.extend_from_slice(&message);
    }
    std::io::Write::write_all(&mut stream, &burst).unwrap();
    let mut ids: Vec<u16> = (0..20)
        .map(|_| header_id(&tcp_receive(&mut stream).expect("answer")))
        .collect();
    ids.sort();
    assert_eq!(ids, (0..20).collect::<Vec<_>>());
}

#[test]
fn garbage_on_tcp_is_dropped_and_the_connection_keeps_serving() {
    let server = Oxidns::start(WHOAMI);
    let mut stream = tcp_connect(server.addr());
    tcp_send(&mut stream, &[0xde, 0xad, 0xbe]);
    tcp_send(&mut stream, &[]);
    tcp_send(&mut stream, &query("example.org", Rtype::A));
    let answer = tcp_receive(&mut stream).expect("answer after garbage");
    assert_eq!(header_id(&answer), 0x4242);
}

#[test]
fn stalled_tcp_clients_do_not_hold_up_others() {
    let server = Oxidns::start(WHOAMI);
    let mut stalled = Vec::new();
    for _ in 0..50 {
        let mut stream = tcp_connect(server.addr());
        // Half a length prefix, then nothing.
        std::io::Write::write_all(&mut stream, &[0]).unwrap();
        stalled.push(stream);
    }
    let mut half_message = tcp_connect(server.addr());
    std::io::Write::write_all(&mut half_message, &[0, 40, 1, 2, 3]).unwrap();
    assert_eq!(
        tcp(server.addr(), &query("example.org", Rtype::A))
            .response
            .rcode,
        OptRcode::NOERROR
    );
    assert_eq!(
        udp(server.addr(), &query("example.org", Rtype::A))
            .response
            .rcode,
        OptRcode::NOERROR
    );
}

#[test]
fn a_storm_of_malformed_packets_leaves_the_server_serving() {
    let server = Oxidns::start(WHOAMI);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let good = query("example.org", Rtype::A);
    let mut seed = 0x2545_f491_u32;
    for i in 0..2_000usize {
        // Mutate a valid query at a few pseudo-random places, or send noise.
        let mut message = if i % 3 == 0 {
            (0..(i % 90))
                .map(|j| (j * 31 + i) as u8)
                .collect::<Vec<u8>>()
        } else {
            good.clone()
        };
        for _ in 0..3 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            if !message.is_empty() {
                let at = seed as usize % message.len();
                message[at] = (seed >> 8) as u8;
            }
        }
        let _ = socket.send_to(&message, server.addr());
    }
    assert_eq!(
        udp_with_retries(server.addr(), &good, 5).response.rcode,
        OptRcode::NOERROR
    );
}

/// RFC 2181 §9: an RRset that does not fit is left out whole and TC is set;
/// TCP and a large enough EDNS size get it all.
#[test]
fn udp_answers_over_the_client_limit_are_truncated_to_whole_rrsets() {
    let authors: Vec<String> = (0..20)
        .map(|i| format!("\"author number {i:02} with a fairly long name\""))
        .collect();
    let server = Oxidns::start(&format!(
        ".:0 {{\n chaos test-version {}\n}}\n",
        authors.join(" ")
    ));
    let question = query_class("authors.bind", Rtype::TXT, Class::CH);
    let small = udp(server.addr(), &question);
    assert!(small.response.truncated);
    assert!(
        small.response.answer.is_empty(),
        "the one RRset does not fit in 512 bytes"
    );
    let full = tcp(server.addr(), &question);
    assert!(!full.response.truncated);
    assert_eq!(full.response.answer.len(), 20);
    let big_edns = Query::build(
        1,
        &name_from_str("authors.bind").unwrap(),
        Rtype::TXT,
        Class::CH,
        Some(&edns(4096)),
    );
    let over_udp = udp(server.addr(), &big_edns);
    assert!(!over_udp.response.truncated);
    assert_eq!(over_udp.response.answer.len(), 20);
}
