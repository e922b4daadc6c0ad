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

/// CoreDNS's default shape (`loadbalance` before `cache`): cache hits, kept
/// in wire form, still come out in every order, with a CNAME first.
#[test]
fn cached_addresses_come_out_in_every_order_behind_loadbalance() {
    let dir = TempDir::new("loadbalance");
    let zone = dir.write(
        "db.example.net",
        "$ORIGIN example.net.\n\
         @ 3600 IN SOA ns hostmaster 1 7200 3600 1209600 300\n\
         @ 3600 IN NS ns\n\
         ns 3600 IN A 192.0.2.53\n\
         pool 300 IN A 192.0.2.1\n\
         pool 300 IN A 192.0.2.2\n\
         pool 300 IN A 192.0.2.3\n\
         www 300 IN CNAME pool\n",
    );
    let upstream = Oxidns::start(&format!(
        "example.net:0 {{\n bind 127.0.0.1\n file {}\n}}\n",
        zone.display()
    ));
    let front = Oxidns::start(&format!(
        ".:0 {{\n bind 127.0.0.1\n forward . 127.0.0.1:{}\n cache\n loadbalance\n}}\n",
        upstream.port
    ));
    let mut orders = std::collections::HashSet::new();
    for n in 0..200 {
        let qname = if n % 2 == 0 {
            "www.example.net"
        } else {
            "WWW.Example.NET"
        };
        let got = udp(front.addr(), &query(qname, Rtype::A));
        assert_eq!(got.question.unwrap().0.to_string(), qname);
        let answer = got.response.answer;
        // Names compressed into the question take its case; case does not
        // matter to a name (RFC 4343 §2).
        assert_eq!(
            answer[0].data().to_string().to_lowercase(),
            "pool.example.net."
        );
        let addresses: Vec<String> = answer[1..].iter().map(|r| r.data().to_string()).collect();
        let mut sorted = addresses.clone();
        sorted.sort();
        assert_eq!(sorted, ["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
        orders.insert(addresses);
    }
    assert_eq!(orders.len(), 6, "every order of three addresses");
}
