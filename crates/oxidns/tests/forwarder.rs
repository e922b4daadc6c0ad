//! The caching forwarder end to end: oxidns in front of an upstream (another
//! oxidns serving a zone), answering from cache when the upstream is gone,
//! and answering SERVFAIL in time when there is no upstream at all.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn example_zone() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join("examples/db.example.org")
        .canonicalize()
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn answers_are_forwarded_then_served_from_cache_when_the_upstream_is_gone() {
    let mut upstream = Oxidns::start(&format!(
        "example.org:0 {{\n bind 127.0.0.1\n file {}\n}}\n",
        example_zone()
    ));
    let front = Oxidns::start(&format!(
        ".:0 {{\n bind 127.0.0.1\n cache\n forward . 127.0.0.1:{}\n}}\n",
        upstream.port
    ));
    let first = udp(front.addr(), &query("WWW.example.org", Rtype::A));
    assert_eq!(first.response.rcode, OptRcode::NOERROR);
    assert_eq!(first.response.answer[0].data().to_string(), "192.0.2.80");
    assert_eq!(
        first.question.unwrap().0.to_string(),
        "WWW.example.org",
        "the client's case"
    );
    let missing = udp(front.addr(), &query("nope.example.org", Rtype::A));
    assert_eq!(missing.response.rcode, OptRcode::NXDOMAIN);

    assert!(upstream.terminate().success());
    let cached = udp(front.addr(), &query("www.example.org", Rtype::A));
    assert_eq!(cached.response.answer[0].data().to_string(), "192.0.2.80");
    assert!(cached.response.answer[0].ttl().as_secs() <= 3600);
    assert!(
        !cached.response.authoritative,
        "a cache hit is not authoritative"
    );
    let cached_denial = udp(front.addr(), &query("nope.example.org", Rtype::A));
    assert_eq!(cached_denial.response.rcode, OptRcode::NXDOMAIN);
    let over_tcp = tcp(front.addr(), &query("www.example.org", Rtype::A));
    assert_eq!(over_tcp.response.answer.len(), 1);
}

#[test]
fn without_any_upstream_clients_get_servfail_in_time() {
    // A port on loopback where nothing listens: every try is refused or times out.
    let dead = free_fixed_port();
    let front = Oxidns::start(&format!(
        ".:0 {{\n bind 127.0.0.1\n forward . 127.0.0.1:{dead}\n}}\n"
    ));
    let started = Instant::now();
    let bytes = udp_raw(
        front.addr(),
        &query("example.com", Rtype::A),
        Duration::from_secs(15),
    )
    .expect("an answer, not silence");
    let got = Response::parse(&bytes).unwrap();
    assert_eq!(got.response.rcode, OptRcode::SERVFAIL);
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn kdig_and_dig_read_forwarded_answers() {
    if !require_tool("dig") {
        return;
    }
    let upstream = Oxidns::start(&format!(
        "example.org:0 {{\n bind 127.0.0.1\n file {}\n}}\n",
        example_zone()
    ));
    let front = Oxidns::start(&format!(
        ".:0 {{\n bind 127.0.0.1\n cache\n forward . 127.0.0.1:{}\n}}\n",
        upstream.port
    ));
    let port = front.port.to_string();
    let (out, _, code) = run(
        "dig",
        &[
            "@127.0.0.1",
            "-p",
            &port,
            "example.org",
            "MX",
            "+tcp",
            "+time=5",
            "+tries=1",
        ],
        &front.dir.0,
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("status: NOERROR") && out.contains("mail.example.org."),
        "{out}"
    );
}
