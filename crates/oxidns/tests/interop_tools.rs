//! The same queries through `dig` (BIND) and `kdig` (Knot): real clients must
//! read our answers as we mean them. Skipped where the tools are missing,
//! unless OXIDNS_REQUIRE_TOOLS is set (as in CI).

mod common;

use common::*;

const WHOAMI: &str = ".:0 {\n whoami\n}\n";

fn dig(server: &Oxidns, args: &[&str]) -> String {
    let port = server.port.to_string();
    let mut all = vec!["@127.0.0.1", "-p", &port, "+tries=1", "+time=3"];
    all.extend_from_slice(args);
    let (out, err, code) = run("dig", &all, &server.dir.0);
    assert_eq!(code, 0, "dig {args:?} failed: {out}{err}");
    out
}

fn kdig(server: &Oxidns, args: &[&str]) -> String {
    let port = server.port.to_string();
    let mut all = vec!["@127.0.0.1", "-p", &port, "+retry=0", "+timeout=3"];
    all.extend_from_slice(args);
    let (out, err, code) = run("kdig", &all, &server.dir.0);
    assert_eq!(code, 0, "kdig {args:?} failed: {out}{err}");
    out
}

#[test]
fn dig_reads_whoami_over_udp_and_tcp() {
    if !require_tool("dig") {
        return;
    }
    let server = Oxidns::start(WHOAMI);
    for transport in ["+notcp", "+tcp"] {
        let out = dig(&server, &["example.org", "A", transport]);
        assert!(out.contains("status: NOERROR"), "{out}");
        assert!(out.contains("flags: qr aa rd;"), "{out}");
        assert!(out.contains("IN\tA\t127.0.0.1"), "{out}");
        let srv = if transport == "+tcp" {
            "_tcp."
        } else {
            "_udp."
        };
        assert!(out.contains(srv), "{out}");
    }
}

#[test]
fn dig_sees_badvers_for_edns_version_one() {
    if !require_tool("dig") {
        return;
    }
    let server = Oxidns::start(WHOAMI);
    let out = dig(&server, &["example.org", "+edns=1", "+noednsneg"]);
    assert!(out.contains("status: BADVERS"), "{out}");
    assert!(out.contains("EDNS: version: 0"), "{out}");
}

#[test]
fn dig_without_edns_gets_no_opt() {
    if !require_tool("dig") {
        return;
    }
    let server = Oxidns::start(WHOAMI);
    let out = dig(&server, &["example.org", "+noedns"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(!out.contains("OPT PSEUDOSECTION"), "{out}");
}

#[test]
fn kdig_reads_whoami_over_udp_and_tcp_ipv4_and_ipv6() {
    if !require_tool("kdig") {
        return;
    }
    let server = Oxidns::start(WHOAMI);
    for transport in ["+notcp", "+tcp"] {
        let out = kdig(&server, &["ExAmple.org", "A", transport]);
        assert!(out.contains("status: NOERROR"), "{out}");
        assert!(out.contains("qr aa rd"), "{out}");
        assert!(out.contains("127.0.0.1"), "{out}");
    }
    let port = server.port.to_string();
    let (out, _, code) = run(
        "kdig",
        &["@::1", "-p", &port, "example.org", "+timeout=3"],
        &server.dir.0,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("::1"), "{out}");
}

#[test]
fn kdig_reports_refused_outside_our_zones() {
    if !require_tool("kdig") {
        return;
    }
    let server = Oxidns::start("example.org:0 {\n whoami\n}\n");
    let out = kdig(&server, &["example.net", "A"]);
    assert!(out.contains("status: REFUSED"), "{out}");
}

#[test]
fn dig_and_kdig_read_chaos_version_and_retry_truncated_answers_over_tcp() {
    if !require_tool("dig") || !require_tool("kdig") {
        return;
    }
    let authors: Vec<String> = (0..20)
        .map(|i| format!("\"author {i:02} of a long list of names\""))
        .collect();
    let server = Oxidns::start(&format!(".:0 {{\n chaos v9.9 {}\n}}\n", authors.join(" ")));
    let out = dig(&server, &["version.bind", "CH", "TXT"]);
    assert!(out.contains("\"v9.9\""), "{out}");
    let out = kdig(&server, &["version.server", "CH", "TXT"]);
    assert!(out.contains("\"v9.9\""), "{out}");
    // dig retries over TCP when it sees TC; all 20 authors arrive.
    let out = dig(&server, &["authors.bind", "CH", "TXT", "+noedns", "+short"]);
    assert_eq!(out.lines().count(), 20, "{out}");
    let out = kdig(&server, &["authors.bind", "CH", "TXT", "+noedns"]);
    assert!(
        out.contains("TC"),
        "kdig shows the truncated UDP answer: {out}"
    );
}
