//! Secondaries in chains and under faults: oxidns primary → oxidns
//! secondary → Knot secondary with NOTIFY at every hop (the first transfer
//! included), serial wrap-around (RFC 1982) along such a chain, `kill -9`
//! of a secondary in the middle of a transfer, a DNSSEC-signed zone kept
//! intact on disk, and catalog zones (RFC 9432) from a Knot primary.
//!
//! Tests that need knotd, dnssec-signzone or kzonecheck skip with a message
//! when they are missing, unless OXIDNS_REQUIRE_TOOLS is set.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use std::time::{Duration, Instant};

use common::*;
use oxidns_proto::Rcode;

const APEX: &str = "example.org";

/// example.org at `serial`: `www` depends on the serial, plus bulk records
/// so that a transfer takes several messages.
fn zone(serial: u32) -> String {
    let mut text = format!(
        "$ORIGIN example.org.\n$TTL 300\n@ SOA ns1 hostmaster {serial} 3600 600 86400 300\n\
         @ NS ns1\nns1 A 127.0.0.1\nwww A 192.0.2.{}\n",
        80 + serial % 100
    );
    for i in 0..300 {
        text.push_str(&format!("bulk{i} TXT \"{}\"\n", "y".repeat(40)));
    }
    text
}

/// The SOA serial `addr` answers for `apex` over UDP, if it answers.
fn serial_of(addr: SocketAddr, apex: &str) -> Option<u32> {
    let bytes = udp_raw(addr, &query(apex, Rtype::SOA), Duration::from_millis(500))?;
    let reply = Response::parse(&bytes).ok()?;
    let soa = reply.response.answer.first()?;
    if soa.rtype() != Rtype::SOA {
        return None;
    }
    soa.to_string().split_whitespace().nth(6)?.parse().ok()
}

fn serial(addr: SocketAddr) -> Option<u32> {
    serial_of(addr, APEX)
}

fn wait_until(what: &str, condition: impl Fn() -> bool, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !condition() {
        assert!(Instant::now() < deadline, "never {what}; log:\n{}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for_serial(addr: SocketAddr, want: u32, log: impl Fn() -> String) {
    wait_until(
        &format!("reached serial {want} at {addr}"),
        || serial(addr) == Some(want),
        log,
    );
}

/// The address `www` has at `addr`, or the rcode.
fn www(addr: SocketAddr) -> Result<String, Rcode> {
    let reply = udp_with_retries(addr, &query("www.example.org", Rtype::A), 3);
    match reply.response.header_rcode() {
        Rcode::NOERROR => Ok(reply.response.answer[0].data().to_string()),
        rcode => Err(rcode),
    }
}

fn log_of(server: &Oxidns) -> String {
    server.output().join("\n")
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// oxidns as a primary serving `text` from `dir`/db.example.org (rechecked
/// every second), notifying `notify`.
fn oxidns_primary(dir: &TempDir, text: &str, notify: u16) -> Oxidns {
    let path = dir.write("db.example.org", text);
    Oxidns::start(&format!(
        "example.org:0 {{\n bind 127.0.0.1\n transfer {{\n  to 127.0.0.1 127.0.0.1:{notify}\n }}\n \
         file {} {{\n  reload 1s\n }}\n}}\n",
        path.display()
    ))
}

/// oxidns as a secondary of `primary` on `port`, keeping zones in `dir`,
/// and passing them on to (and notifying) `downstream`, if any.
fn oxidns_secondary(port: u16, primary: SocketAddr, dir: &Path, downstream: Option<u16>) -> Oxidns {
    let transfer = match downstream {
        Some(port) => format!(" transfer {{\n  to 127.0.0.1:{port}\n }}\n"),
        None => String::new(),
    };
    Oxidns::start(&format!(
        "example.org:{port} {{\n bind 127.0.0.1\n secondary {{\n  transfer from {primary}\n  \
         directory {}\n }}\n{transfer}}}\n",
        dir.display()
    ))
}

/// knotd configuration: the server on `port`, then `rest` (remotes, ACLs,
/// zones).
fn knot_conf(dir: &TempDir, port: u16, rest: &str) -> String {
    let run = path_text(&dir.0);
    format!(
        "server:\n    rundir: \"{run}\"\n    pidfile: \"{run}/knot.pid\"\n    \
         listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n    \
         background-workers: 1\n\n\
         control:\n    listen: \"{run}/knot.sock\"\n\n\
         database:\n    storage: \"{run}\"\n\n\
         log:\n  - target: stderr\n    any: info\n\n\
         template:\n  - id: default\n    storage: \"{run}\"\n    semantic-checks: off\n\n{rest}"
    )
}

fn start_knot(dir: &TempDir, conf: &str) -> Daemon {
    let conf_path = dir.write("knot.conf", conf);
    let conf_arg = path_text(&conf_path).to_string();
    let knot = Daemon::spawn("knotd", &["-c", &conf_arg], &dir.0);
    let sock = dir.0.join("knot.sock");
    wait_until("knotd listened", || sock.exists(), || knot.log());
    knot
}

/// knotd as a secondary of example.org on `port`, from (and notified by)
/// the primary on `primary`.
fn knot_secondary(dir: &TempDir, port: u16, primary: u16) -> Daemon {
    let run = path_text(&dir.0);
    let rest = format!(
        "remote:\n  - id: primary\n    address: 127.0.0.1@{primary}\n\n\
         acl:\n  - id: notify\n    address: 127.0.0.1\n    action: notify\n\n\
         zone:\n  - domain: {APEX}\n    file: \"{run}/example.org.zone\"\n    \
         master: primary\n    acl: notify\n"
    );
    start_knot(dir, &knot_conf(dir, port, &rest))
}

/// oxidns primary → oxidns secondary (`mid`) → Knot, the zone starting at
/// `serial`; Knot starts first, finds no zone upstream yet and waits.
struct Chain {
    primary_dir: TempDir,
    zones: TempDir,
    _knot_dir: TempDir,
    _primary: Oxidns,
    knot: Daemon,
    mid: Oxidns,
    knot_addr: SocketAddr,
}

impl Chain {
    fn start(tag: &str, serial: u32) -> Chain {
        let primary_dir = TempDir::new(&format!("{tag}-primary"));
        let zones = TempDir::new(&format!("{tag}-zones"));
        let knot_dir = TempDir::new(&format!("{tag}-knot"));
        let (mid_port, knot_port) = (free_fixed_port(), free_fixed_port());
        let primary = oxidns_primary(&primary_dir, &zone(serial), mid_port);
        let knot = knot_secondary(&knot_dir, knot_port, mid_port);
        let mid = oxidns_secondary(mid_port, primary.addr(), &zones.0, Some(knot_port));
        Chain {
            primary_dir,
            zones,
            _knot_dir: knot_dir,
            _primary: primary,
            knot,
            mid,
            knot_addr: SocketAddr::from(([127, 0, 0, 1], knot_port)),
        }
    }

    /// The secondary's and Knot's logs, for failure messages.
    fn logs(&self) -> String {
        format!(
            "--- secondary:\n{}\n--- knot:\n{}",
            log_of(&self.mid),
            self.knot.log()
        )
    }
}

#[test]
fn a_chain_oxidns_oxidns_knot_notifies_every_hop_from_the_first_transfer_on() {
    if !require_tool("knotd") {
        return;
    }
    let chain = Chain::start("chain", 1);
    let (mid, knot, knot_addr) = (&chain.mid, &chain.knot, chain.knot_addr);
    let logs = || chain.logs();
    wait_for_serial(mid.addr(), 1, logs);
    // The first transfer is passed on with a NOTIFY, answered by Knot.
    let first_notify = format!("Sent NOTIFY for \"example.org.\" serial 1 to {knot_addr}");
    wait_until(
        "notified Knot of serial 1",
        || log_of(mid).contains(&first_notify),
        logs,
    );
    wait_for_serial(knot_addr, 1, logs);

    // A new version travels the chain by NOTIFY (the refresh timers are an hour).
    chain.primary_dir.write("db.example.org", &zone(2));
    wait_for_serial(mid.addr(), 2, logs);
    wait_for_serial(knot_addr, 2, logs);
    assert_eq!(www(knot_addr), Ok("192.0.2.82".to_owned()));
    let log = log_of(mid);
    assert!(log.contains("Transferred example.org. serial 2"), "{log}");
    assert!(
        log.contains(&format!(
            "Sent NOTIFY for \"example.org.\" serial 2 to {knot_addr}"
        )),
        "{log}"
    );
    assert!(knot.log().contains("notify"), "{}", knot.log());
}

#[test]
fn serial_wrap_around_is_followed_along_the_chain() {
    if !require_tool("knotd") {
        return;
    }
    let chain = Chain::start("wrap", u32::MAX);
    let (mid, knot_addr) = (&chain.mid, chain.knot_addr);
    let logs = || chain.logs();
    wait_for_serial(mid.addr(), u32::MAX, logs);
    wait_for_serial(knot_addr, u32::MAX, logs);
    // 4294967295 + 6 wraps to 5, which RFC 1982 §3.2 counts as newer.
    chain.primary_dir.write("db.example.org", &zone(5));
    wait_for_serial(mid.addr(), 5, logs);
    wait_for_serial(knot_addr, 5, logs);
    assert_eq!(www(mid.addr()), Ok("192.0.2.85".to_owned()));
    assert_eq!(www(knot_addr), Ok("192.0.2.85".to_owned()));
    let saved = std::fs::read_to_string(chain.zones.0.join("db.example.org")).unwrap();
    assert!(saved.contains("hostmaster.example.org. 5 3600"), "{saved}");
}

#[test]
fn kill_9_during_a_transfer_then_restart_serves_the_last_complete_zone() {
    let primary_dir = TempDir::new("kill9-primary");
    let zones = TempDir::new("kill9-zones");
    let port = free_fixed_port();
    let mut primary = oxidns_primary(&primary_dir, &zone(1), port);
    let primary_addr = primary.addr();
    let mut ours = oxidns_secondary(port, primary_addr, &zones.0, None);
    wait_for_serial(ours.addr(), 1, || log_of(&ours));
    let saved_path = zones.0.join("db.example.org");
    let complete = std::fs::read_to_string(&saved_path).expect("zone saved");
    primary.terminate();

    // The primary's address now has serial 2, sent slowly: about 2 MB, then
    // a stall. A NOTIFY starts the transfer at once.
    let (streaming, streamed) = std::sync::mpsc::channel();
    let mut bound = unfinished_transfer_primary(primary_addr, 200, 100, Some(streaming.clone()));
    for _ in 0..50 {
        if bound.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        bound = unfinished_transfer_primary(primary_addr, 200, 100, Some(streaming.clone()));
    }
    bound.expect("the primary's port is free again");
    let reply = udp_with_retries(ours.addr(), &notify_message(APEX), 3);
    assert_eq!(reply.response.header_rcode(), Rcode::NOERROR);
    streamed
        .recv_timeout(Duration::from_secs(30))
        .expect("the secondary asked for the transfer");
    std::thread::sleep(Duration::from_millis(300));
    // kill -9, mid-transfer.
    ours.child.kill().expect("SIGKILL");
    let _ = ours.child.wait();

    // On disk: the last complete version, byte for byte.
    assert_eq!(std::fs::read_to_string(&saved_path).unwrap(), complete);
    // A restart with the primary unreachable serves it at once, whole.
    let unreachable: SocketAddr = "127.0.0.2:9".parse().unwrap();
    let ours = oxidns_secondary(port, unreachable, &zones.0, None);
    assert_eq!(serial(ours.addr()), Some(1), "{}", log_of(&ours));
    assert_eq!(www(ours.addr()), Ok("192.0.2.81".to_owned()));
    let reply = udp(ours.addr(), &query("bulk299.example.org", Rtype::TXT));
    assert_eq!(reply.response.answer.len(), 1);
    let reply = udp(ours.addr(), &query("half0.example.org", Rtype::TXT));
    assert_eq!(reply.response.header_rcode(), Rcode::NXDOMAIN);
}

/// Signs `text` as example.org (NSEC3, fresh ECDSA KSK and ZSK) in `dir`;
/// the signed file's text.
fn signed_zone(dir: &TempDir, text: &str) -> String {
    let keys = dir.0.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let keys_arg = path_text(&keys);
    for ksk in [true, false] {
        let mut args = vec!["-q", "-K", keys_arg, "-a", "ECDSAP256SHA256", "-n", "ZONE"];
        if ksk {
            args.extend(["-f", "KSK"]);
        }
        args.push(APEX);
        let (out, err, code) = run("dnssec-keygen", &args, &dir.0);
        assert_eq!(code, 0, "dnssec-keygen {args:?}: {out}{err}");
    }
    let unsigned = dir.write("example.org.unsigned", text);
    let signed = dir.0.join("example.org.signed");
    let args = [
        "-q",
        "-S",
        "-K",
        keys_arg,
        "-o",
        APEX,
        "-3",
        "-",
        "-H",
        "0",
        "-f",
        path_text(&signed),
        path_text(&unsigned),
    ];
    let (out, err, code) = run("dnssec-signzone", &args, &dir.0);
    assert_eq!(code, 0, "dnssec-signzone {args:?}: {out}{err}");
    std::fs::read_to_string(signed).unwrap()
}

fn kzonecheck(file: &Path, cwd: &Path) -> (bool, String) {
    let (out, err, code) = run(
        "kzonecheck",
        &["-o", APEX, "-d", "on", path_text(file)],
        cwd,
    );
    (code == 0, format!("{out}{err}"))
}

#[test]
fn a_signed_zone_is_transferred_intact_and_its_copy_verifies() {
    if !require_tool("dnssec-signzone") || !require_tool("kzonecheck") {
        return;
    }
    let sign_dir = TempDir::new("signed-keys");
    let primary_dir = TempDir::new("signed-primary");
    let zones = TempDir::new("signed-zones");
    let signed = signed_zone(&sign_dir, &zone(1));
    let primary = oxidns_primary(&primary_dir, &signed, free_fixed_port());
    let ours = oxidns_secondary(0, primary.addr(), &zones.0, None);
    wait_for_serial(ours.addr(), 1, || log_of(&ours));
    let copy = zones.0.join("db.example.org");
    let (ok, report) = kzonecheck(&copy, &zones.0);
    assert!(ok, "kzonecheck on the copy:\n{report}");
    let text = std::fs::read_to_string(&copy).unwrap();
    // RRSIG (46), NSEC3 (50) and NSEC3PARAM (51) came along, as did the keys.
    for rtype in ["TYPE46", "TYPE50", "TYPE51", "TYPE48"] {
        assert!(text.contains(rtype), "no {rtype} in the copy:\n{text}");
    }

    // The check is a real one: a signature with one bit flipped fails it.
    let broken: String = text
        .lines()
        .map(|line| {
            if line.starts_with("www.example.org.") && line.contains("TYPE46") {
                let mut bytes = line.as_bytes().to_vec();
                let last = bytes.len() - 1;
                bytes[last] = if bytes[last] == b'0' { b'1' } else { b'0' };
                String::from_utf8(bytes).unwrap()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let tampered = zones.write("tampered.zone", &broken);
    let (ok, report) = kzonecheck(&tampered, &zones.0);
    assert!(!ok, "kzonecheck accepted a broken signature:\n{report}");
}

const CATALOG: &str = "catalog.invalid";

/// A small member zone whose `www` names the zone.
fn member_zone(apex: &str) -> String {
    format!(
        "$ORIGIN {apex}.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n\
         @ NS ns1\nns1 A 127.0.0.1\nwww TXT \"{apex}\"\n"
    )
}

/// knotd configuration for a generated catalog (Knot's `catalog-role:
/// generate`) listing `members`, all notifying oxidns on `notify`.
fn knot_catalog_conf(dir: &TempDir, port: u16, notify: u16, members: &[&str]) -> String {
    let run = path_text(&dir.0);
    let mut rest = format!(
        "remote:\n  - id: secondary\n    address: 127.0.0.1@{notify}\n\n\
         acl:\n  - id: local\n    address: 127.0.0.1\n    action: transfer\n\n\
         zone:\n  - domain: {CATALOG}\n    catalog-role: generate\n    \
         notify: secondary\n    acl: local\n"
    );
    for member in members {
        dir.write(&format!("{member}.zone"), &member_zone(member));
        rest.push_str(&format!(
            "  - domain: {member}\n    file: \"{run}/{member}.zone\"\n    \
             catalog-role: member\n    catalog-zone: {CATALOG}\n    \
             notify: secondary\n    acl: local\n"
        ));
    }
    knot_conf(dir, port, &rest)
}

/// The TXT of `www.APEX` at `addr`, or the rcode.
fn member_www(addr: SocketAddr, apex: &str) -> Result<String, Rcode> {
    let reply = udp_with_retries(addr, &query(&format!("www.{apex}"), Rtype::TXT), 3);
    match reply.response.header_rcode() {
        Rcode::NOERROR if !reply.response.answer.is_empty() => {
            Ok(reply.response.answer[0].data().to_string())
        }
        Rcode::NOERROR => Err(Rcode::NOERROR),
        rcode => Err(rcode),
    }
}

fn catalog_consumer(port: u16, primary: SocketAddr, dir: &Path) -> Oxidns {
    Oxidns::start(&format!(
        ".:{port} {{\n bind 127.0.0.1\n secondary {CATALOG} {{\n  transfer from {primary}\n  \
         catalog\n  directory {}\n }}\n}}\n",
        dir.display()
    ))
}

#[test]
fn catalog_members_from_knot_are_added_removed_and_kept_across_restarts() {
    if !require_tool("knotd") || !require_tool("knotc") {
        return;
    }
    let knot_dir = TempDir::new("catalog-knot");
    let zones = TempDir::new("catalog-zones");
    let (knot_port, our_port) = (free_fixed_port(), free_fixed_port());
    let knot_addr = SocketAddr::from(([127, 0, 0, 1], knot_port));
    let conf = knot_catalog_conf(&knot_dir, knot_port, our_port, &["a.example", "b.example"]);
    let knot = start_knot(&knot_dir, &conf);
    // Knot answers no queries for the catalog itself, only transfers.
    wait_until(
        "Knot served the members",
        || serial_of(knot_addr, "b.example").is_some(),
        || knot.log(),
    );
    let mut ours = catalog_consumer(our_port, knot_addr, &zones.0);
    let logs = || format!("--- oxidns:\n{}\n--- knot:\n{}", log_of(&ours), knot.log());
    for member in ["a.example", "b.example"] {
        wait_until(
            &format!("served member {member}"),
            || member_www(ours.addr(), member).is_ok_and(|t| t.contains(member)),
            logs,
        );
    }
    assert!(zones.0.join("db.b.example").exists());

    // b leaves the catalog and c joins: Knot regenerates it and sends NOTIFY.
    let conf = knot_catalog_conf(&knot_dir, knot_port, our_port, &["a.example", "c.example"]);
    knot_dir.write("knot.conf", &conf);
    let sock = knot_dir.0.join("knot.sock");
    let (out, err, status) = run("knotc", &["-s", path_text(&sock), "reload"], &knot_dir.0);
    assert_eq!(status, 0, "knotc reload: {out}{err}");
    wait_until(
        "served member c.example",
        || member_www(ours.addr(), "c.example").is_ok_and(|t| t.contains("c.example")),
        logs,
    );
    wait_until(
        "dropped member b.example",
        || member_www(ours.addr(), "b.example") == Err(Rcode::REFUSED),
        logs,
    );
    assert!(
        !zones.0.join("db.b.example").exists(),
        "b's copy is deleted"
    );
    let log = log_of(&ours);
    assert!(log.contains("added member c.example."), "{log}");
    assert!(log.contains("removed member b.example."), "{log}");

    // Restarted without the primary: the members serve from disk at once.
    ours.terminate();
    drop(knot);
    let ours = catalog_consumer(our_port, knot_addr, &zones.0);
    for member in ["a.example", "c.example"] {
        assert!(
            member_www(ours.addr(), member).is_ok_and(|t| t.contains(member)),
            "{member} after a restart:\n{}",
            log_of(&ours)
        );
    }
    assert_eq!(member_www(ours.addr(), "b.example"), Err(Rcode::REFUSED));
}

/// A catalog zone at `serial` with version TXT `version` and `body` (member
/// nodes and properties under `zones`).
fn catalog_zone(serial: u32, version: &str, body: &str) -> String {
    format!(
        "$ORIGIN {CATALOG}.\n$TTL 0\n@ SOA invalid. invalid. {serial} 3600 600 2147483646 0\n\
         @ NS invalid.\nversion TXT \"{version}\"\n{body}"
    )
}

#[test]
fn catalog_properties_resets_and_unknown_versions_from_an_oxidns_primary() {
    let primary_dir = TempDir::new("catalog-primary");
    let zones = TempDir::new("catalog-own-zones");
    let our_port = free_fixed_port();
    let mut files = String::new();
    for member in ["a.example", "b.example", "c.example", "d.example"] {
        let path = primary_dir.write(&format!("db.{member}"), &member_zone(member));
        files.push_str(&format!(" file {} {member}\n", path.display()));
    }
    // a in a group, b with a coo to a catalog we do not follow, and an
    // extension property: none of it stops the members being served.
    let v1 = catalog_zone(
        1,
        "2",
        "id1.zones PTR a.example.\ngroup.id1.zones TXT \"blue\"\n\
         id2.zones PTR b.example.\ncoo.id2.zones PTR elsewhere.invalid.\n\
         ext.id2.zones TXT \"x\"\n",
    );
    let catalog_path = primary_dir.write("db.catalog", &v1);
    let primary = Oxidns::start(&format!(
        ".:0 {{\n bind 127.0.0.1\n transfer {{\n  to 127.0.0.1 127.0.0.1:{our_port}\n }}\n\
         file {} {CATALOG} {{\n  reload 1s\n }}\n{files}}}\n",
        catalog_path.display()
    ));
    let ours = catalog_consumer(our_port, primary.addr(), &zones.0);
    let logs = || {
        format!(
            "--- oxidns:\n{}\n--- primary:\n{}",
            log_of(&ours),
            log_of(&primary)
        )
    };
    let serves = |member: &str| member_www(ours.addr(), member).is_ok_and(|t| t.contains(member));
    for member in ["a.example", "b.example"] {
        wait_until(&format!("served {member}"), || serves(member), logs);
    }
    // The catalog itself is served like any secondary zone.
    assert_eq!(serial_of(ours.addr(), CATALOG), Some(1));

    // a gets a new unique ID (a reset), b leaves, c joins.
    let v2 = catalog_zone(
        2,
        "2",
        "id1new.zones PTR a.example.\nid3.zones PTR c.example.\n",
    );
    primary_dir.write("db.catalog", &v2);
    wait_until("served c.example", || serves("c.example"), logs);
    wait_until(
        "dropped b.example",
        || member_www(ours.addr(), "b.example") == Err(Rcode::REFUSED),
        logs,
    );
    wait_until(
        "reset a.example",
        || log_of(&ours).contains("member a.example. reset"),
        logs,
    );
    wait_until("served a.example again", || serves("a.example"), logs);
    assert!(!zones.0.join("db.b.example").exists());

    // A catalog of another schema version is not read: nothing changes.
    let v3 = catalog_zone(3, "3", "id4.zones PTR d.example.\n");
    primary_dir.write("db.catalog", &v3);
    wait_until(
        "refused catalog version 3",
        || log_of(&ours).contains("only a single \"2\""),
        logs,
    );
    assert_eq!(serial_of(ours.addr(), CATALOG), Some(3));
    assert!(serves("a.example") && serves("c.example"));
    assert_eq!(member_www(ours.addr(), "d.example"), Err(Rcode::REFUSED));
}

/// Catalog `apex` at `serial` with version "2" and `body`.
fn named_catalog(apex: &str, serial: u32, body: &str) -> String {
    format!(
        "$ORIGIN {apex}.\n$TTL 0\n@ SOA invalid. invalid. {serial} 3600 600 2147483646 0\n\
         @ NS invalid.\nversion TXT \"2\"\n{body}"
    )
}

#[test]
fn a_member_moves_between_catalogs_only_through_coo_and_keeps_its_data() {
    let primary_dir = TempDir::new("coo-primary");
    let old_dir = TempDir::new("coo-old");
    let new_dir = TempDir::new("coo-new");
    let our_port = free_fixed_port();
    let member = primary_dir.write("db.a.example", &member_zone("a.example"));
    let old = primary_dir.write(
        "db.old",
        &named_catalog("old.invalid", 1, "id1.zones PTR a.example.\n"),
    );
    let new = primary_dir.write("db.new", &named_catalog("new.invalid", 1, ""));
    let primary = Oxidns::start(&format!(
        ".:0 {{\n bind 127.0.0.1\n transfer {{\n  to 127.0.0.1 127.0.0.1:{our_port}\n }}\n\
         file {} old.invalid {{\n  reload 1s\n }}\n file {} new.invalid {{\n  reload 1s\n }}\n\
         file {} a.example\n}}\n",
        old.display(),
        new.display(),
        member.display()
    ));
    let ours = Oxidns::start(&format!(
        ".:{our_port} {{\n bind 127.0.0.1\n\
         secondary old.invalid {{\n  transfer from {0}\n  catalog\n  directory {1}\n }}\n\
         secondary new.invalid {{\n  transfer from {0}\n  catalog\n  directory {2}\n }}\n}}\n",
        primary.addr(),
        old_dir.0.display(),
        new_dir.0.display()
    ));
    let logs = || log_of(&ours);
    let serves = || member_www(ours.addr(), "a.example").is_ok_and(|t| t.contains("a.example"));
    wait_until("served a.example", serves, logs);
    assert!(old_dir.0.join("db.a.example").exists());

    // Listed by the second catalog too: it stays with the first.
    primary_dir.write(
        "db.new",
        &named_catalog("new.invalid", 2, "id1.zones PTR a.example.\n"),
    );
    wait_until(
        "read the second catalog",
        || serial_of(ours.addr(), "new.invalid") == Some(2),
        logs,
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(old_dir.0.join("db.a.example").exists(), "{}", logs());
    assert!(!logs().contains("moved to catalog"), "{}", logs());

    // The first hands it over (coo): it moves, file and all, same unique ID.
    primary_dir.write(
        "db.old",
        &named_catalog(
            "old.invalid",
            2,
            "id1.zones PTR a.example.\ncoo.id1.zones PTR new.invalid.\n",
        ),
    );
    wait_until(
        "moved a.example",
        || logs().contains("member a.example. moved to catalog new.invalid."),
        logs,
    );
    assert!(new_dir.0.join("db.a.example").exists(), "{}", logs());
    assert!(!old_dir.0.join("db.a.example").exists());
    assert!(serves());
    // Served from the moved file: transferred once in all.
    assert_eq!(
        logs().matches("Transferred a.example. serial 1").count(),
        1,
        "{}",
        logs()
    );

    // The first catalog dropping it now changes nothing.
    primary_dir.write("db.old", &named_catalog("old.invalid", 3, ""));
    wait_until(
        "read the first catalog again",
        || serial_of(ours.addr(), "old.invalid") == Some(3),
        logs,
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(serves(), "{}", logs());
    assert!(new_dir.0.join("db.a.example").exists());
    assert!(!logs().contains("removed member a.example."), "{}", logs());
}
