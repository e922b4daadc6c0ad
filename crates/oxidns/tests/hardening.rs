//! Black-box tests of the hardening plugins: `acl`, `ratelimit`, `cookies`,
//! with real packets over loopback to the real binary (and `dig`/`kdig`
//! for cookies).

mod common;

use std::time::Duration;

use common::*;

/// How long a test waits before concluding that no answer is coming.
const SILENCE: Duration = Duration::from_millis(700);

#[test]
fn acl_drop_sends_nothing_and_the_server_goes_on_answering_others() {
    let server =
        Oxidns::start(".:0 {\n acl {\n  allow net ::1\n  drop net 127.0.0.0/8\n }\n whoami\n}\n");
    let message = query("example.org", Rtype::A);
    assert_eq!(udp_raw(server.addr(), &message, SILENCE), None);
    let got = udp(server.addr_v6(), &message);
    assert_eq!(got.response.rcode, OptRcode::NOERROR);
    // Dropped over TCP too: the connection stays open and nothing comes.
    let mut stream = tcp_connect(server.addr());
    stream.set_read_timeout(Some(SILENCE)).unwrap();
    tcp_send(&mut stream, &message);
    assert_eq!(tcp_receive(&mut stream), None);
}

#[test]
fn acl_block_refuses_and_filter_answers_empty() {
    let server = Oxidns::start(
        ".:0 {\n acl {\n  filter type AAAA net 127.0.0.0/8\n  block net 127.0.0.0/8\n }\n whoami\n}\n",
    );
    let blocked = udp(
        server.addr(),
        &query_edns("example.org", Rtype::A, edns(1232)),
    );
    assert_eq!(blocked.response.rcode, OptRcode::REFUSED);
    let ede = &blocked.edns.expect("an OPT record").options[0];
    assert_eq!((ede.code, &ede.data[..]), (15, &[0u8, 15][..]));
    let filtered = udp(server.addr(), &query("example.org", Rtype::AAAA));
    assert_eq!(filtered.response.rcode, OptRcode::NOERROR);
    assert!(filtered.response.answer.is_empty());
    let allowed = udp(server.addr_v6(), &query("example.org", Rtype::A));
    assert!(allowed.response.authoritative);
}

const COOKIES_REQUIRED: &str = ".:0 {\n cookies {\n  require\n }\n whoami\n}\n";

/// The cookie (client and server, in hex) and the status line of a dig or
/// kdig answer.
fn cookie_and_status(output: &str) -> (Option<String>, String) {
    let cookie = output.lines().find_map(|line| {
        let rest = line.split("COOKIE:").nth(1)?;
        Some(rest.split_whitespace().next()?.to_ascii_lowercase())
    });
    let status = output
        .lines()
        .find_map(|line| line.split("status: ").nth(1))
        .map(|rest| rest.split([',', ';']).next().unwrap_or("").to_owned())
        .unwrap_or_default();
    (cookie, status)
}

/// A first query with only a client cookie gets BADCOOKIE and a server
/// cookie; the second, echoing it, is answered.
fn badcookie_then_answered_with_the_echoed_cookie(tool: &str, extra: &[&str]) {
    if !require_tool(tool) {
        return;
    }
    let server = Oxidns::start(COOKIES_REQUIRED);
    let port = server.port.to_string();
    let base = [
        "@127.0.0.1",
        "-p",
        port.as_str(),
        "+notcp",
        "example.org",
        "A",
    ];
    let mut args: Vec<&str> = base.to_vec();
    args.extend_from_slice(extra);
    args.push("+cookie=0123456789abcdef");
    let (out, _, _) = run(tool, &args, &server.dir.0);
    let (cookie, status) = cookie_and_status(&out);
    assert_eq!(status, "BADCOOKIE", "{out}");
    let cookie = cookie.expect("a COOKIE option in the BADCOOKIE answer");
    assert!(
        cookie.starts_with("0123456789abcdef") && cookie.len() == 48,
        "{out}"
    );

    let echo = format!("+cookie={cookie}");
    let mut args: Vec<&str> = base.to_vec();
    args.extend_from_slice(extra);
    args.push(&echo);
    let (out, _, _) = run(tool, &args, &server.dir.0);
    let (again, status) = cookie_and_status(&out);
    assert_eq!(status, "NOERROR", "{out}");
    assert_eq!(again.as_deref(), Some(cookie.as_str()), "{out}");
}

#[test]
fn dig_cookie_gets_badcookie_then_is_answered_when_echoing_the_server_cookie() {
    badcookie_then_answered_with_the_echoed_cookie("dig", &["+nobadcookie", "+tries=1", "+time=3"]);
}

#[test]
fn kdig_cookie_gets_badcookie_then_is_answered_when_echoing_the_server_cookie() {
    badcookie_then_answered_with_the_echoed_cookie(
        "kdig",
        &["+nobadcookie", "+retry=0", "+timeout=3"],
    );
}

#[test]
fn dig_cookie_without_require_is_answered_with_a_good_cookie() {
    if !require_tool("dig") {
        return;
    }
    let server = Oxidns::start(".:0 {\n cookies\n whoami\n}\n");
    let port = server.port.to_string();
    let (out, _, _) = run(
        "dig",
        &[
            "@127.0.0.1",
            "-p",
            &port,
            "+cookie",
            "+tries=1",
            "example.org",
        ],
        &server.dir.0,
    );
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("(good)"), "{out}");
}

#[test]
fn a_malformed_cookie_gets_formerr_over_the_wire() {
    let server = Oxidns::start(".:0 {\n cookies\n whoami\n}\n");
    let mut with_cookie = edns(1232);
    with_cookie.options.push(EdnsOption {
        code: 10,
        data: vec![1u8; 12].into(),
    });
    let got = udp(
        server.addr(),
        &query_edns("example.org", Rtype::A, with_cookie),
    );
    assert_eq!(got.response.rcode, OptRcode::FORMERR);
}
