//! The whole way of a query: bytes in, `server::answer`, bytes out, through
//! chains with `cache` in front of `file` (a plain zone, an NSEC-signed and an
//! NSEC3-signed one) and, for other names, `chaos`, `local`, `any`, `whoami`.
//!
//! The first input byte chooses the transport (bit 0: UDP or TCP) and the
//! client's address family (bit 1); the rest is the message. Checks: no panic
//! and no hang; the answer is nothing only for a message too short for a
//! header or with QR set; otherwise it is a message that `Response::parse`
//! accepts, with the query's ID, within the client's size limit on UDP.
//! The cache keeps its entries across inputs, as it does across queries.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use oxidns_proto::{MIN_UDP_PAYLOAD, Query, Response};
use oxidns_server::server::{Listener, answer};
use oxidns_server::{Config, Options, Transport, build, corefile};

struct State {
    runtime: tokio::runtime::Runtime,
    listener: Listener,
    _config: Config,
}

fn corefile() -> String {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = fuzz.join("../examples/db.example.org");
    let fixtures = fuzz.join("fixtures");
    format!(
        "example.org:1053 {{
    cache
    file {example}
}}
signed.test:1053 nsec3.test:1053 {{
    cache {{
        prefetch 2 10s 50%
        serve_stale 1h
    }}
    file {fixtures}/db.signed.test signed.test
    file {fixtures}/db.nsec3.test nsec3.test
}}
.:1053 {{
    chaos oxidns-fuzz
    local
    any
    whoami
}}
",
        example = example.display(),
        fixtures = fixtures.display(),
    )
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let blocks = corefile::parse_str(&corefile(), "fuzz Corefile").expect("Corefile parses");
        let config = match build(&blocks, oxidns::plugins::PLUGINS, &Options::default()) {
            Ok(config) => config,
            Err(errors) => panic!("fuzz Corefile does not build: {errors:?}"),
        };
        let listener = Listener::for_config(&config, 0);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        State {
            runtime,
            listener,
            _config: config,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    let state = state();
    let transport = if selector & 1 == 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let client_ip = if selector & 2 == 0 {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))
    } else {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7))
    };
    let client = SocketAddr::new(client_ip, 40000);
    let bytes = Bytes::copy_from_slice(message);
    let reply = state
        .runtime
        .block_on(answer(&state.listener, bytes, client, transport, Vec::new()));
    let Some(wire) = reply else {
        assert!(
            message.len() < 12 || message[2] & 0x80 != 0,
            "no answer to a query with a header and QR=0"
        );
        return;
    };
    let received = Response::parse(&wire).expect("the answer parses as a response");
    let id = u16::from_be_bytes([message[0], message[1]]);
    assert_eq!(received.id, id, "the answer has the query's ID");
    let limit = match transport {
        Transport::Udp => Query::parse(Bytes::copy_from_slice(message))
            .map(|q| q.udp_limit())
            .unwrap_or(MIN_UDP_PAYLOAD),
        _ => u16::MAX,
    };
    assert!(
        wire.len() <= usize::from(limit),
        "{} bytes over the limit of {limit}",
        wire.len()
    );
});
