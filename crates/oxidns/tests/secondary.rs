//! Zone transfers into oxidns (the `secondary` plugin): Knot DNS (`knotd`)
//! and BIND (`named`) as primaries, an oxidns primary, and a fake primary
//! that dies mid-transfer; zones kept on disk; expiry.
//!
//! The tests that need knotd or named skip with a message when it is
//! missing, unless OXIDNS_REQUIRE_TOOLS is set.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use std::time::{Duration, Instant};

use common::*;
use oxidns_proto::{Opcode, Rcode};

const APEX: &str = "example.org";

/// The zone at `serial` with these SOA timers: version 1, and later ones
/// with `www` changed, `old` gone and `new` added.
fn zone_with(serial: u32, timers: &str) -> String {
    let body = if serial == 1 {
        "www A 192.0.2.80\nold TXT \"goes away\"\n".to_owned()
    } else {
        format!("www A 192.0.2.{}\nnew TXT \"arrives\"\n", 80 + serial % 100)
    };
    let mut text = format!(
        "$ORIGIN example.org.\n$TTL 300\n@ SOA ns1 hostmaster {serial} {timers}\n\
         @ NS ns1\nns1 A 127.0.0.1\n{body}"
    );
    for i in 0..300 {
        text.push_str(&format!("bulk{i} TXT \"{}\"\n", "y".repeat(40)));
    }
    text
}

fn zone(serial: u32) -> String {
    zone_with(serial, "3600 600 86400 300")
}

fn serial_of(soa_text: &str) -> u32 {
    soa_text
        .split_whitespace()
        .nth(6)
        .and_then(|s| s.parse().ok())
        .expect("an SOA record")
}

/// The SOA serial a server answers with over UDP, if it answers.
fn serial(addr: SocketAddr) -> Option<u32> {
    let bytes = udp_raw(addr, &query(APEX, Rtype::SOA), Duration::from_millis(500))?;
    let reply = Response::parse(&bytes).ok()?;
    let soa = reply.response.answer.first()?;
    (soa.rtype() == Rtype::SOA).then(|| serial_of(&soa.to_string()))
}

fn wait_for_serial(addr: SocketAddr, want: u32, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while serial(addr) != Some(want) {
        assert!(
            Instant::now() < deadline,
            "never reached serial {want}; log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The address `www` has at `addr`, or the rcode.
fn www(addr: SocketAddr) -> Result<String, Rcode> {
    let reply = udp_with_retries(addr, &query("www.example.org", Rtype::A), 3);
    match reply.response.header_rcode() {
        Rcode::NOERROR => Ok(reply.response.answer[0].data().to_string()),
        rcode => Err(rcode),
    }
}

/// oxidns as a secondary of `primary`, keeping its zones in `dir`.
fn secondary(port: u16, primary: SocketAddr, dir: &Path) -> Oxidns {
    Oxidns::start(&format!(
        "example.org:{port} {{\n bind 127.0.0.1\n secondary {{\n  transfer from {primary}\n  directory {}\n }}\n}}\n",
        dir.display()
    ))
}

fn log_of(server: &Oxidns) -> String {
    server.output().join("\n")
}

/// oxidns as a primary serving `text` from a file, rechecked every second,
/// notifying `notify`.
fn oxidns_primary(dir: &TempDir, text: &str, notify: Option<u16>) -> Oxidns {
    let path = dir.write("db.example.org", text);
    let to = match notify {
        Some(port) => format!("127.0.0.1 127.0.0.1:{port}"),
        None => "127.0.0.1".to_owned(),
    };
    Oxidns::start(&format!(
        "example.org:0 {{\n bind 127.0.0.1\n transfer {{\n  to {to}\n }}\n file {} {{\n  reload 1s\n }}\n}}\n",
        path.display()
    ))
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// knotd as the primary of example.org on `port`, notifying `notify`.
fn knot_primary(dir: &TempDir, port: u16, notify: u16) -> Daemon {
    let run = path_text(&dir.0).to_string();
    dir.write("example.org.zone", &zone(1));
    let conf = format!(
        "server:\n    rundir: \"{run}\"\n    pidfile: \"{run}/knot.pid\"\n    \
         listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n    \
         background-workers: 1\n\n\
         control:\n    listen: \"{run}/knot.sock\"\n\n\
         database:\n    storage: \"{run}\"\n\n\
         log:\n  - target: stderr\n    any: info\n\n\
         remote:\n  - id: secondary\n    address: 127.0.0.1@{notify}\n\n\
         acl:\n  - id: local\n    address: 127.0.0.1\n    action: transfer\n\n\
         template:\n  - id: default\n    storage: \"{run}\"\n    zonefile-sync: -1\n    \
         zonefile-load: difference\n    journal-content: changes\n    semantic-checks: off\n\n\
         zone:\n  - domain: {APEX}\n    file: \"{run}/example.org.zone\"\n    \
         notify: secondary\n    acl: local\n"
    );
    let conf_path = dir.write("knot.conf", &conf);
    let conf_arg = path_text(&conf_path).to_string();
    Daemon::spawn("knotd", &["-c", &conf_arg], &dir.0)
}

/// named as the primary of example.org on `port`, notifying `notify`.
fn bind_primary(dir: &TempDir, port: u16, notify: u16) -> Daemon {
    let run = path_text(&dir.0).to_string();
    let conf = format!(
        "options {{\n    directory \"{run}\";\n    listen-on port {port} {{ 127.0.0.1; }};\n    \
         listen-on-v6 {{ none; }};\n    recursion no;\n    pid-file none;\n    \
         session-keyfile none;\n    dnssec-validation no;\n    notify explicit;\n    \
         also-notify {{ 127.0.0.1 port {notify}; }};\n    notify-source 127.0.0.1;\n    \
         allow-transfer {{ any; }};\n    ixfr-from-differences yes;\n}};\n\
         controls {{ }};\n\
         logging {{ category default {{ default_stderr; }}; category notify {{ default_stderr; }}; category xfer-out {{ default_stderr; }}; }};\n\
         zone \"{APEX}\" {{ type primary; file \"{APEX}.db\"; }};\n"
    );
    let conf_path = dir.write("named.conf", &conf);
    let conf_arg = path_text(&conf_path).to_string();
    Daemon::spawn("named", &["-g", "-c", &conf_arg, "-n", "1"], &dir.0)
}

#[test]
fn knot_primary_to_oxidns_secondary_through_notify() {
    if !require_tool("knotd") || !require_tool("knotc") {
        return;
    }
    let knot_dir = TempDir::new("secondary-knot");
    let zones = TempDir::new("secondary-knot-zones");
    let knot_port = free_fixed_port();
    let our_port = free_fixed_port();
    let knot = knot_primary(&knot_dir, knot_port, our_port);
    let knot_addr = SocketAddr::from(([127, 0, 0, 1], knot_port));
    wait_for_serial(knot_addr, 1, || knot.log());
    let ours = secondary(our_port, knot_addr, &zones.0);
    wait_for_serial(ours.addr(), 1, || log_of(&ours));
    assert_eq!(www(ours.addr()), Ok("192.0.2.80".to_owned()));
    let saved = std::fs::read_to_string(zones.0.join("db.example.org")).expect("zone saved");
    assert!(saved.contains("goes away"), "{saved}");

    // A new version: Knot computes the difference and sends NOTIFY; our
    // refresh timer (an hour) is not what brings it.
    knot_dir.write("example.org.zone", &zone(2));
    let sock = knot_dir.0.join("knot.sock");
    let (out, err, status) = run(
        "knotc",
        &["-s", path_text(&sock), "zone-reload", APEX],
        &knot_dir.0,
    );
    assert_eq!(status, 0, "knotc: {out}{err}");
    wait_for_serial(ours.addr(), 2, || {
        format!("{}\n--- knot:\n{}", log_of(&ours), knot.log())
    });
    assert_eq!(www(ours.addr()), Ok("192.0.2.82".to_owned()));
    let reply = udp(ours.addr(), &query("old.example.org", Rtype::TXT));
    assert_eq!(reply.response.header_rcode(), Rcode::NXDOMAIN);
    let log = log_of(&ours);
    assert!(
        log.contains("NOTIFY for example.org. from 127.0.0.1"),
        "{log}"
    );
    assert!(
        log.contains("Transferred example.org. serial 2") && log.contains("(IXFR)"),
        "an incremental transfer:\n{log}"
    );
}

#[test]
fn bind_primary_to_oxidns_secondary_through_notify() {
    if !require_tool("named") {
        return;
    }
    let bind_dir = TempDir::new("secondary-bind");
    let zones = TempDir::new("secondary-bind-zones");
    let bind_port = free_fixed_port();
    let our_port = free_fixed_port();
    bind_dir.write("example.org.db", &zone(1));
    let mut named = bind_primary(&bind_dir, bind_port, our_port);
    let bind_addr = SocketAddr::from(([127, 0, 0, 1], bind_port));
    wait_for_serial(bind_addr, 1, || named.log());
    let ours = secondary(our_port, bind_addr, &zones.0);
    wait_for_serial(ours.addr(), 1, || log_of(&ours));
    assert_eq!(www(ours.addr()), Ok("192.0.2.80".to_owned()));

    // A new version: named restarts on it and sends NOTIFY.
    named.stop();
    bind_dir.write("example.org.db", &zone(2));
    let named = bind_primary(&bind_dir, bind_port, our_port);
    wait_for_serial(ours.addr(), 2, || {
        format!("{}\n--- named:\n{}", log_of(&ours), named.log())
    });
    assert_eq!(www(ours.addr()), Ok("192.0.2.82".to_owned()));
    let log = log_of(&ours);
    assert!(
        log.contains("NOTIFY for example.org. from 127.0.0.1"),
        "{log}"
    );
    assert!(log.contains("Transferred example.org. serial 2"), "{log}");
}

#[test]
fn oxidns_chain_and_a_restart_without_the_primary_serves_from_disk() {
    let primary_dir = TempDir::new("secondary-primary");
    let zones = TempDir::new("secondary-disk");
    let our_port = free_fixed_port();
    let mut primary = oxidns_primary(&primary_dir, &zone(1), Some(our_port));
    let mut ours = secondary(our_port, primary.addr(), &zones.0);
    wait_for_serial(ours.addr(), 1, || log_of(&ours));
    // A new serial reaches us through NOTIFY (and IXFR from the journal).
    primary_dir.write("db.example.org", &zone(2));
    wait_for_serial(ours.addr(), 2, || {
        format!("{}\n--- primary:\n{}", log_of(&ours), log_of(&primary))
    });
    assert_eq!(www(ours.addr()), Ok("192.0.2.82".to_owned()));
    assert!(log_of(&ours).contains("(IXFR)"), "{}", log_of(&ours));
    ours.terminate();
    primary.terminate();

    // The primary is gone: the saved copy serves at once.
    let ours = secondary(our_port, primary.addr(), &zones.0);
    assert_eq!(www(ours.addr()), Ok("192.0.2.82".to_owned()));
    assert_eq!(serial(ours.addr()), Some(2));
}

#[test]
fn an_expired_zone_answers_servfail() {
    let primary_dir = TempDir::new("secondary-expire-primary");
    let zones = TempDir::new("secondary-expire");
    // Refresh and retry every second, expire after three.
    let mut primary = oxidns_primary(&primary_dir, &zone_with(1, "1 1 3 300"), None);
    let ours = secondary(free_fixed_port(), primary.addr(), &zones.0);
    wait_for_serial(ours.addr(), 1, || log_of(&ours));
    // While the primary answers, refreshes keep the zone alive past EXPIRE.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(www(ours.addr()), Ok("192.0.2.80".to_owned()));
    primary.terminate();
    let deadline = Instant::now() + Duration::from_secs(15);
    while www(ours.addr()) != Err(Rcode::SERVFAIL) {
        assert!(
            Instant::now() < deadline,
            "never expired:\n{}",
            log_of(&ours)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(log_of(&ours).contains("expired"), "{}", log_of(&ours));
}

#[test]
fn notify_from_others_is_refused_and_no_zone_means_servfail() {
    let zones = TempDir::new("secondary-refuse");
    // A primary nobody runs, on another loopback address.
    let primary: SocketAddr = "127.0.0.2:9".parse().unwrap();
    let ours = secondary(0, primary, &zones.0);
    let reply = udp(ours.addr(), &notify_message(APEX));
    assert_eq!(reply.opcode, Opcode::NOTIFY);
    assert_eq!(reply.response.header_rcode(), Rcode::REFUSED);
    assert_eq!(www(ours.addr()), Err(Rcode::SERVFAIL));
}

#[test]
fn notify_from_the_primary_is_answered_with_aa() {
    let zones = TempDir::new("secondary-notify");
    let ours = secondary(0, "127.0.0.1:9".parse().unwrap(), &zones.0);
    let reply = udp(ours.addr(), &notify_message(APEX));
    assert_eq!(reply.opcode, Opcode::NOTIFY);
    assert_eq!(reply.response.header_rcode(), Rcode::NOERROR);
    assert!(reply.response.authoritative);
}

#[test]
fn a_primary_dying_mid_transfer_leaves_the_old_zone_serving() {
    let zones = TempDir::new("secondary-dying");
    zones.write("db.example.org", &zone(1));
    // A primary that sends half an AXFR (or IXFR) and closes the connection.
    let primary = unfinished_transfer_primary("127.0.0.1:0".parse().unwrap(), 1, 50, None).unwrap();
    let ours = secondary(0, primary, &zones.0);
    // Served from disk at once.
    assert_eq!(www(ours.addr()), Ok("192.0.2.80".to_owned()));
    assert!(
        wait_until(|| log_of(&ours).contains("AXFR: connection closed before the transfer ended")),
        "{}",
        log_of(&ours)
    );
    // Never half a zone: still version 1, on disk too.
    assert_eq!(serial(ours.addr()), Some(1));
    assert_eq!(www(ours.addr()), Ok("192.0.2.80".to_owned()));
    let reply = udp(ours.addr(), &query("bulk299.example.org", Rtype::TXT));
    assert_eq!(reply.response.answer.len(), 1);
    let saved = std::fs::read_to_string(zones.0.join("db.example.org")).unwrap();
    assert_eq!(saved, zone(1));
}

fn wait_until(condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_transfer_beyond_max_records_is_refused_and_counted() {
    let primary_dir = TempDir::new("secondary-max-primary");
    let primary = oxidns_primary(&primary_dir, &zone(1), None);
    let zones = TempDir::new("secondary-max");
    let metrics_port = free_fixed_port();
    // The zone has over 300 records: a bound of 100 refuses it.
    let ours = Oxidns::start(&format!(
        "example.org:0 {{\n bind 127.0.0.1\n prometheus 127.0.0.1:{metrics_port}\n \
         secondary {{\n  transfer from {}\n  directory {}\n  max_records 100\n }}\n}}\n",
        primary.addr(),
        zones.0.display()
    ));
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let counted = || {
        http_get(metrics, "/metrics").is_some_and(|m| {
            metric_sum(&m, "oxidns_secondary_transfers_too_large_total", &[]) >= 1.0
        })
    };
    assert!(wait_until(counted), "log:\n{}", log_of(&ours));
    assert_eq!(www(ours.addr()), Err(Rcode::SERVFAIL), "no zone is served");
    assert!(
        std::fs::read_dir(&zones.0).unwrap().next().is_none(),
        "nothing is written to disk"
    );
}
