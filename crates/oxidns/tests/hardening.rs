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

/// Sends `count` queries from one socket as fast as it can, then collects
/// answers until the server falls silent: (full answers, truncated ones).
fn flood(addr: std::net::SocketAddr, message: &[u8], count: u16) -> (usize, usize) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(SILENCE)).unwrap();
    let mut query = message.to_vec();
    for id in 0..count {
        query[..2].copy_from_slice(&id.to_be_bytes());
        socket.send_to(&query, addr).unwrap();
    }
    let (mut full, mut truncated) = (0, 0);
    let mut buf = [0u8; 4096];
    // At most one answer per query: a bound on the loop as well.
    for _ in 0..count {
        let Ok((len, _)) = socket.recv_from(&mut buf) else {
            break;
        };
        let got = Response::parse(&buf[..len]).expect("a well-formed response");
        if got.response.truncated {
            assert!(got.response.answer.is_empty());
            truncated += 1;
        } else {
            full += 1;
        }
    }
    (full, truncated)
}

#[test]
fn ratelimit_drops_and_slips_a_flood_from_one_network_over_udp() {
    let server = Oxidns::start(".:0 {\n ratelimit 5 {\n  window 5\n }\n whoami\n}\n");
    let started = std::time::Instant::now();
    let (full, truncated) = flood(server.addr(), &query("example.org", Rtype::A), 200);
    // Five a second, and a burst of five at the start.
    let allowed = 5 + 5 * (started.elapsed().as_secs() as usize + 1);
    assert!(
        full <= allowed,
        "{full} full answers, at most {allowed} allowed"
    );
    assert!(full >= 5, "the first five are answered, got {full}");
    // slip 2: about every other limited response is sent truncated.
    let limited = 200 - full;
    assert!(
        truncated > 0 && truncated <= limited / 2 + 1,
        "{truncated} of {limited}"
    );
    // Another network (::1 is its own /56) is still served at once.
    let got = udp(server.addr_v6(), &query("example.org", Rtype::A));
    assert!(!got.response.truncated && got.response.authoritative);
    // And TCP is never limited.
    let got = tcp(server.addr(), &query("example.org", Rtype::A));
    assert!(got.response.authoritative);
}

#[test]
fn ratelimit_is_off_without_the_directive() {
    let server = Oxidns::start(".:0 {\n whoami\n}\n");
    let (full, truncated) = flood(server.addr(), &query("example.org", Rtype::A), 100);
    // UDP may lose a few under a burst, but nothing is truncated.
    assert!(
        full >= 90 && truncated == 0,
        "{full} full, {truncated} truncated"
    );
}

#[test]
fn ratelimit_exempts_queries_with_a_valid_server_cookie() {
    let server = Oxidns::start(
        ".:0 {\n ratelimit 2 {\n  slip 0\n }\n cookies {\n  secret 0123456789abcdef0123456789abcdef\n }\n whoami\n}\n",
    );
    // Learn a server cookie (this answer uses one token of the account).
    let mut with_client = edns(1232);
    with_client.options.push(EdnsOption {
        code: 10,
        data: b"clientck".to_vec().into(),
    });
    let first = udp(
        server.addr(),
        &query_edns("example.org", Rtype::A, with_client),
    );
    let learnt = first.edns.unwrap().options[0].clone();
    assert_eq!(learnt.data.len(), 24);
    let mut with_server = edns(1232);
    with_server.options.push(learnt);
    let message = query_edns("example.org", Rtype::A, with_server);
    let (full, truncated) = flood(server.addr(), &message, 50);
    assert!(
        full >= 45 && truncated == 0,
        "{full} full, {truncated} truncated"
    );
    // Without the cookie, the same client is limited at once.
    let (full, _) = flood(server.addr(), &query("example.org", Rtype::A), 20);
    assert!(full <= 4, "{full} answered");
}

/// An upstream that answers public and private addresses, and an oxidns
/// forwarding to it with `rebinding_protection` in `forward` or `cache`.
fn rebinding_pair(front_block: &str) -> (Oxidns, Oxidns) {
    let upstream = Oxidns::start(
        ".:0 {\n hosts {\n  192.168.1.1 evil.test\n  fd00::1 evil.test\n  192.0.2.1 good.test\n  10.0.0.5 nas.corp.test\n }\n}\n",
    );
    let front = Oxidns::start(&front_block.replace("UPSTREAM", &upstream.addr().to_string()));
    (upstream, front)
}

fn assert_rebinding_blocked(front: &Oxidns) {
    let rcode = |name: &str, qtype: Rtype| {
        udp(front.addr(), &query_edns(name, qtype, edns(1232)))
            .response
            .rcode
    };
    assert_eq!(rcode("evil.test", Rtype::A), OptRcode::REFUSED);
    assert_eq!(rcode("evil.test", Rtype::AAAA), OptRcode::REFUSED);
    assert_eq!(rcode("good.test", Rtype::A), OptRcode::NOERROR);
    let allowed = udp(front.addr(), &query("nas.corp.test", Rtype::A));
    assert_eq!(allowed.response.answer.len(), 1);
    // The refusal says why.
    let refused = udp(front.addr(), &query_edns("evil.test", Rtype::A, edns(1232)));
    let ede = &refused.edns.expect("an OPT record").options[0];
    assert_eq!((ede.code, &ede.data[..2]), (15, &[0u8, 15][..]));
}

#[test]
fn forward_rebinding_protection_refuses_private_answers_for_public_names() {
    let (_upstream, front) =
        rebinding_pair(".:0 {\n forward . UPSTREAM {\n  rebinding_protection corp.test\n }\n}\n");
    assert_rebinding_blocked(&front);
}

#[test]
fn cache_rebinding_protection_refuses_private_answers_for_public_names() {
    let (_upstream, front) = rebinding_pair(
        ".:0 {\n cache {\n  rebinding_protection corp.test\n }\n forward . UPSTREAM\n}\n",
    );
    assert_rebinding_blocked(&front);
    // Asked again: still refused, not served from the cache.
    let again = udp(front.addr(), &query("evil.test", Rtype::A));
    assert_eq!(again.response.rcode, OptRcode::REFUSED);
}

#[test]
fn without_rebinding_protection_private_answers_pass() {
    let (_upstream, front) = rebinding_pair(".:0 {\n forward . UPSTREAM\n}\n");
    let got = udp(front.addr(), &query("evil.test", Rtype::A));
    assert_eq!(got.response.answer.len(), 1);
}

/// RFC 9018's point: servers sharing a secret accept each other's cookies.
const SHARED_SECRET: &str = "e5e973e5a6b2a43f48e7dc849e37bfcf";

/// A peer daemon, stopped when dropped (also when an assertion fails).
struct Peer {
    child: std::process::Child,
    port: u16,
    dir: TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

fn spawn_peer(program: &str, args: &[&str], port: u16, dir: TempDir) -> Peer {
    let child = std::process::Command::new(program)
        .args(args)
        .current_dir(&dir.0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    Peer { child, port, dir }
}

/// named with `cookie-secret` set to [`SHARED_SECRET`] and
/// `require-server-cookie`, and no zones: it refuses every query that has
/// a valid server cookie, and answers BADCOOKIE to the others.
fn named_with_cookie_secret() -> Peer {
    let dir = TempDir::new("cookie-named");
    let port = free_fixed_port();
    let conf = format!(
        "options {{\n directory \"{run}\";\n listen-on port {port} {{ 127.0.0.1; }};\n \
         listen-on-v6 {{ none; }};\n recursion no;\n pid-file none;\n session-keyfile none;\n \
         cookie-algorithm siphash24;\n cookie-secret \"{SHARED_SECRET}\";\n \
         require-server-cookie yes;\n}};\ncontrols {{ }};\n",
        run = dir.0.display()
    );
    let path = dir.write("named.conf", &conf);
    let path = path.to_str().unwrap().to_owned();
    spawn_peer("named", &["-g", "-n", "1", "-c", &path], port, dir)
}

/// knotd with `mod-cookies` and the same secret, and no zones (it answers
/// BADCOOKIE without a valid server cookie, REFUSED with one).
fn knotd_with_cookie_secret() -> Peer {
    let dir = TempDir::new("cookie-knot");
    let port = free_fixed_port();
    let run = dir.0.display();
    let conf = format!(
        "server:\n    rundir: \"{run}\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    \
         tcp-workers: 1\n    background-workers: 1\n\
         control:\n    listen: \"{run}/knot.sock\"\n\
         database:\n    storage: \"{run}\"\n\
         mod-cookies:\n  - id: shared\n    secret: 0x{SHARED_SECRET}\n\
         template:\n  - id: default\n    global-module: mod-cookies/shared\n"
    );
    let path = dir.write("knot.conf", &conf);
    let path = path.to_str().unwrap().to_owned();
    spawn_peer("knotd", &["-c", &path], port, dir)
}

/// dig's answer from 127.0.0.1:`port`, retried while the server starts.
fn dig_cookie(port: u16, cookie: &str, dir: &TempDir) -> (Option<String>, String) {
    let port = port.to_string();
    let cookie = format!("+cookie={cookie}");
    let args = [
        "@127.0.0.1",
        "-p",
        port.as_str(),
        "+nobadcookie",
        "+tries=1",
        "+time=1",
        cookie.as_str(),
        "example.org",
    ];
    for _ in 0..50 {
        let (out, _, _) = run("dig", &args, &dir.0);
        let (cookie, status) = cookie_and_status(&out);
        if !status.is_empty() {
            return (cookie, status);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no answer from 127.0.0.1:{port}");
}

/// The peer's server cookie is valid at oxidns, and oxidns's at the peer.
fn cookies_are_accepted_both_ways(peer: &Peer) {
    let oxidns = Oxidns::start(&format!(
        ".:0 {{\n cookies {{\n  secret {SHARED_SECRET}\n  require\n }}\n whoami\n}}\n"
    ));
    let (from_peer, status) = dig_cookie(peer.port, "0123456789abcdef", &peer.dir);
    assert_eq!(status, "BADCOOKIE", "the peer requires a server cookie");
    let from_peer = from_peer.expect("the peer's cookie");
    let (echoed, status) = dig_cookie(oxidns.port, &from_peer, &peer.dir);
    assert_eq!(status, "NOERROR", "oxidns accepts the peer's cookie");
    assert_eq!(echoed.as_deref(), Some(from_peer.as_str()));

    let (from_oxidns, status) = dig_cookie(oxidns.port, "fedcba9876543210", &peer.dir);
    assert_eq!(status, "BADCOOKIE");
    let from_oxidns = from_oxidns.expect("oxidns's cookie");
    let (_, status) = dig_cookie(peer.port, &from_oxidns, &peer.dir);
    assert_eq!(status, "REFUSED", "the peer accepts oxidns's cookie");
}

#[test]
fn server_cookies_of_named_and_oxidns_with_one_secret_are_accepted_by_each_other() {
    if !require_tool("named") || !require_tool("dig") {
        return;
    }
    cookies_are_accepted_both_ways(&named_with_cookie_secret());
}

#[test]
fn server_cookies_of_knotd_and_oxidns_with_one_secret_are_accepted_by_each_other() {
    if !require_tool("knotd") || !require_tool("dig") {
        return;
    }
    cookies_are_accepted_both_ways(&knotd_with_cookie_secret());
}

#[test]
fn acl_ratelimit_and_cookie_metrics_are_exported_with_coredns_labels() {
    let port = free_fixed_port();
    let server = Oxidns::start(&format!(
        ".:0 {{\n prometheus 127.0.0.1:{port}\n ratelimit 1 {{\n  slip 1\n }}\n cookies\n \
         acl example.org {{\n  block type MX\n  filter type TXT\n  drop type SRV\n }}\n whoami\n}}\n"
    ));
    let addr = server.addr();
    assert_eq!(
        udp(addr, &query("example.org", Rtype::MX)).response.rcode,
        OptRcode::REFUSED
    );
    // TCP from here on: not rate limited.
    tcp(addr, &query("example.org", Rtype::TXT));
    tcp(addr, &query("example.org", Rtype::A));
    let mut stream = tcp_connect(addr);
    stream.set_read_timeout(Some(SILENCE)).unwrap();
    tcp_send(&mut stream, &query("example.org", Rtype::SRV));
    assert_eq!(tcp_receive(&mut stream), None);
    // Over UDP beyond one a second: slipped.
    let (_, truncated) = flood(addr, &query("example.org", Rtype::A), 5);
    assert!(truncated > 0);
    let mut with_cookie = edns(1232);
    with_cookie.options.push(EdnsOption {
        code: 10,
        data: b"clientck".to_vec().into(),
    });
    tcp(addr, &query_edns("example.org", Rtype::A, with_cookie));

    let metrics = http_get(([127, 0, 0, 1], port).into(), "/metrics").expect("metrics served");
    let zone = "zone=\"example.org.\"";
    for (name, labels) in [
        (
            "coredns_acl_blocked_requests_total",
            vec![zone, "view=\"\""],
        ),
        ("coredns_acl_filtered_requests_total", vec![zone]),
        ("coredns_acl_dropped_requests_total", vec![zone]),
        ("coredns_acl_allowed_requests_total", vec!["view=\"\""]),
        ("coredns_ratelimit_slipped_responses_total", vec![]),
        (
            "coredns_cookies_requests_total",
            vec!["cookie=\"client_only\""],
        ),
    ] {
        assert!(
            metric_sum(&metrics, name, &labels) >= 1.0,
            "{name}: {metrics}"
        );
    }
}
