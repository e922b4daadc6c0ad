//! The authoritative path end to end: the binary serving zone files over
//! loopback, reloading them, and keeping the last good zone when a new
//! version is broken. (Answers are checked against Knot and BIND in
//! `differential.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::*;

fn zone(serial: u32, address: &str) -> String {
    format!(
        "$ORIGIN example.org.\n$TTL 60\n@ SOA ns hostmaster {serial} 1h 15m 2w 5m\n@ NS ns\nns A 192.0.2.1\nwww A {address}\n"
    )
}

fn www(server: &Oxidns) -> String {
    let got = udp(server.addr(), &query("www.example.org", Rtype::A));
    got.response
        .answer
        .first()
        .map(|r| r.data().to_string())
        .unwrap_or_default()
}

/// Polls until `www` answers `expected` (bounded: 10 s).
fn wait_for_www(server: &Oxidns, expected: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if www(server) == expected {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn the_repository_corefile_answers_for_the_example_zone() {
    // The README promises `dig @127.0.0.1 -p 1053 www.example.org` answers; check the same
    // config on a free port.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let corefile = std::fs::read_to_string(root.join("Corefile")).unwrap();
    let zone_path = root.join("examples/db.example.org").canonicalize().unwrap();
    let corefile = corefile
        .replace(":1053", ":0")
        .replace("examples/db.example.org", zone_path.to_str().unwrap());
    let server = Oxidns::start(&corefile);
    let got = udp(server.addr(), &query("www.example.org", Rtype::A));
    assert!(got.response.authoritative);
    assert_eq!(got.response.answer[0].data().to_string(), "192.0.2.80");
    let got = udp(
        server.addr(),
        &query_class("version.bind", Rtype::TXT, Class::CH),
    );
    assert_eq!(got.response.answer.len(), 1);
}

#[test]
fn a_changed_zone_file_is_reloaded_and_a_broken_one_keeps_the_last_good_zone() {
    let dir = TempDir::new("reload");
    let path = dir.write("db.example.org", &zone(1, "192.0.2.10"));
    let server = Oxidns::start(&format!(
        "example.org:0 {{\n file {} {{\n  reload 100ms\n }}\n}}\n",
        path.display()
    ));
    assert_eq!(www(&server), "192.0.2.10");

    std::fs::write(&path, zone(2, "192.0.2.20")).unwrap();
    assert!(wait_for_www(&server, "192.0.2.20"), "new serial served");

    std::fs::write(&path, format!("{}www CNAME ns\n", zone(3, "192.0.2.30"))).unwrap();
    assert!(
        server.wait_for_output("failed to reload zone"),
        "the broken version is logged"
    );
    assert_eq!(
        www(&server),
        "192.0.2.20",
        "the last good zone keeps serving"
    );

    std::fs::write(&path, zone(4, "192.0.2.40")).unwrap();
    assert!(
        wait_for_www(&server, "192.0.2.40"),
        "a fixed file is picked up again"
    );
}

#[test]
fn a_bad_zone_file_stops_the_start_with_file_and_line() {
    let dir = TempDir::new("badzone");
    let path = dir.write(
        "db.example.org",
        "$ORIGIN example.org.\n@ 60 SOA ns h 1 1 1 1 1\n@ 60 NS ns\nwww 60 A 192.0.2.300\n",
    );
    let conf = dir.write(
        "Corefile",
        &format!("example.org:0 {{\n file {}\n}}\n", path.display()),
    );
    let (_, err, code) = run(
        binary(),
        &["-check", "-conf", conf.to_str().unwrap()],
        &dir.0,
    );
    assert_eq!(code, 1);
    assert!(err.starts_with(&format!("{}:4: ", path.display())), "{err}");
}

#[test]
fn dig_and_kdig_read_referrals_nxdomain_and_wildcards() {
    if !require_tool("dig") || !require_tool("kdig") {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let zone_path = root.join("examples/db.example.org").canonicalize().unwrap();
    let server = Oxidns::start(&format!(
        "example.org:0 {{\n file {}\n}}\n",
        zone_path.display()
    ));
    let port = server.port.to_string();
    let dig = |args: &[&str]| {
        let mut all = vec!["@127.0.0.1", "-p", &port, "+norec", "+time=3", "+tries=1"];
        all.extend_from_slice(args);
        run("dig", &all, &server.dir.0).0
    };
    let out = dig(&["x.apps.example.org", "A"]);
    assert!(
        out.contains("x.apps.example.org.\t3600\tIN\tA\t192.0.2.100"),
        "{out}"
    );
    let out = dig(&["nothing.example.org", "A"]);
    assert!(
        out.contains("status: NXDOMAIN") && out.contains("IN\tSOA"),
        "{out}"
    );
    let out = dig(&["host.lab.example.org", "A"]);
    assert!(
        out.contains("flags: qr;"),
        "a referral is not authoritative: {out}"
    );
    assert!(
        out.contains("ns.lab.example.org.\t3600\tIN\tA\t192.0.2.53"),
        "glue: {out}"
    );
    let (out, _, _) = run(
        "kdig",
        &["@127.0.0.1", "-p", &port, "example.org", "MX", "+timeout=3"],
        &server.dir.0,
    );
    assert!(out.contains("mail.example.org."), "{out}");
}
