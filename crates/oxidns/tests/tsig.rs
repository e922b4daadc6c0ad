//! TSIG (the `tsig` plugin, RFC 8945) against real clients: `dig -y` and
//! `kdig -y` check the signatures of our answers (one message, and every
//! message of an AXFR), and a Knot secondary transfers from oxidns with a
//! key the primary requires. Skipped when a tool is missing, unless
//! OXIDNS_REQUIRE_TOOLS is set.

mod common;

use std::path::Path;

use std::time::{Duration, Instant};

use common::*;

const APEX: &str = "example.org";
const KEY: &str = "xfr.example.org.";
const SECRET: &str = "c2VjcmV0LWtleS1mb3Itb3hpZG5zLXRlc3Rz";

fn zone() -> String {
    let mut text = "$ORIGIN example.org.\n$TTL 300\n@ SOA ns1 hostmaster 7 3600 600 86400 300\n\
                    @ NS ns1\nns1 A 127.0.0.1\nwww A 192.0.2.80\n"
        .to_owned();
    // Enough for several transfer messages, each of which must be signed.
    for i in 0..600 {
        text.push_str(&format!("bulk{i} TXT \"{}\"\n", "x".repeat(40)));
    }
    text
}

/// oxidns serving the zone, requiring `require` to be signed with KEY.
fn primary(port: u16, require: &str) -> (Oxidns, TempDir) {
    primary_with(port, require, "to *")
}

fn primary_with(port: u16, require: &str, transfer: &str) -> (Oxidns, TempDir) {
    let dir = TempDir::new("tsig");
    let path = dir.write("db.example.org", &zone());
    let server = Oxidns::start(&format!(
        "example.org:{port} {{\n bind 127.0.0.1\n tsig {{\n  secret {KEY} {SECRET}\n  require {require}\n }}\n \
         transfer {{\n  {transfer}\n }}\n file {} {{\n  reload 1s\n }}\n}}\n",
        path.display()
    ));
    (server, dir)
}

fn dig(server: &Oxidns, args: &[&str]) -> String {
    let port = server.addr().port().to_string();
    let mut all = vec!["@127.0.0.1", "-p", &port, "+tries=1", "+time=5"];
    all.extend_from_slice(args);
    let (out, err, _) = run("dig", &all, Path::new("."));
    format!("{out}{err}")
}

fn kdig(server: &Oxidns, args: &[&str]) -> String {
    let port = server.addr().port().to_string();
    let mut all = vec!["@127.0.0.1", "-p", &port, "+retry=0", "+time=5"];
    all.extend_from_slice(args);
    let (out, err, _) = run("kdig", &all, Path::new("."));
    format!("{out}{err}")
}

fn key_arg(secret: &str) -> String {
    format!("hmac-sha256:{KEY}:{secret}")
}

/// An AXFR of the zone from `port` asked without a key, as kdig prints it.
fn unsigned_axfr(port: u16) -> String {
    let port = port.to_string();
    let args = [
        "@127.0.0.1",
        "-p",
        &port,
        "+retry=0",
        "+time=2",
        APEX,
        "AXFR",
    ];
    run("kdig", &args, Path::new(".")).0
}

#[test]
fn dig_verifies_signed_answers_over_udp_and_tcp() {
    if !require_tool("dig") {
        return;
    }
    let (server, _dir) = primary(0, "none");
    let key = key_arg(SECRET);
    for transport in ["+notcp", "+tcp"] {
        let out = dig(&server, &["-y", &key, transport, "www.example.org", "A"]);
        assert!(out.contains("status: NOERROR"), "{out}");
        assert!(out.contains("192.0.2.80"), "{out}");
        assert!(
            out.contains("TSIG PSEUDOSECTION"),
            "the answer is signed:\n{out}"
        );
        assert!(
            !out.contains("failure") && !out.contains("Couldn't verify"),
            "{out}"
        );
    }
}

#[test]
fn every_message_of_a_signed_axfr_verifies_in_dig_and_kdig() {
    if !require_tool("dig") || !require_tool("kdig") {
        return;
    }
    let (server, _dir) = primary(0, "AXFR IXFR");
    let key = key_arg(SECRET);
    let out = dig(&server, &["-y", &key, APEX, "AXFR"]);
    assert!(out.contains("XFR size: 605 records"), "{out}");
    let messages: u32 = out
        .split("messages ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(messages > 1, "several messages:\n{out}");
    assert!(
        !out.contains("failure")
            && !out.contains("Couldn't verify")
            && !out.contains("could not be validated"),
        "{out}"
    );

    let out = kdig(&server, &["-y", &key, APEX, "AXFR"]);
    assert!(
        out.contains(";; Received") && !out.contains("failed"),
        "{out}"
    );
    assert!(out.contains("bulk599.example.org."), "{out}");
}

#[test]
fn unsigned_or_badly_signed_transfers_are_refused() {
    if !require_tool("dig") || !require_tool("kdig") {
        return;
    }
    let (server, _dir) = primary(0, "AXFR IXFR");
    let out = kdig(&server, &[APEX, "AXFR"]);
    assert!(out.contains("REFUSED"), "unsigned:\n{out}");
    assert!(!out.contains("bulk1."), "{out}");

    // The wrong secret: BADSIG (kdig reports the TSIG error of the
    // NOTAUTH answer), and no zone.
    let out = kdig(&server, &["-y", &key_arg("d3Jvbmctc2VjcmV0"), APEX, "AXFR"]);
    assert!(out.contains("BADSIG"), "bad secret:\n{out}");
    assert!(!out.contains("bulk1."), "{out}");

    // An unknown key: BADKEY.
    let other = format!("hmac-sha256:stranger.key.:{SECRET}");
    let out = kdig(&server, &["-y", &other, APEX, "AXFR"]);
    assert!(out.contains("BADKEY"), "unknown key:\n{out}");

    // dig shows the rcode: NOTAUTH.
    let out = dig(&server, &["-y", &other, "www.example.org", "A"]);
    assert!(out.contains("NOTAUTH"), "unknown key:\n{out}");

    // Ordinary queries need no key.
    let out = dig(&server, &["www.example.org", "A"]);
    assert!(out.contains("status: NOERROR"), "{out}");
}

/// knotd as a secondary of oxidns on `primary_port`, transferring with KEY.
fn knot_secondary(port: u16, primary_port: u16) -> Daemon {
    let dir = TempDir::new("tsig-knot");
    let run = dir.0.to_str().expect("utf-8 path").to_owned();
    let conf = format!(
        "server:\n    rundir: \"{run}\"\n    pidfile: \"{run}/knot.pid\"\n    \
         listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n    \
         background-workers: 1\n\n\
         control:\n    listen: \"{run}/knot.sock\"\n\n\
         database:\n    storage: \"{run}\"\n\n\
         log:\n  - target: stderr\n    any: info\n\n\
         key:\n  - id: {KEY}\n    algorithm: hmac-sha256\n    secret: {SECRET}\n\n\
         remote:\n  - id: primary\n    address: 127.0.0.1@{primary_port}\n    key: {KEY}\n\n\
         acl:\n  - id: local\n    address: 127.0.0.1\n    key: {KEY}\n    action: [notify, transfer]\n\n\
         template:\n  - id: default\n    storage: \"{run}\"\n    zonefile-sync: -1\n    \
         semantic-checks: off\n\n\
         zone:\n  - domain: {APEX}\n    master: primary\n    acl: local\n"
    );
    let conf_path = dir.write("knot.conf", &conf);
    let conf_arg = conf_path.to_str().expect("utf-8 path").to_owned();
    Daemon::spawn_in("knotd", &["-c", &conf_arg], dir)
}

#[test]
fn knot_secondary_transfers_from_oxidns_with_tsig_and_gets_a_signed_notify() {
    if !require_tool("knotd") || !require_tool("kdig") {
        return;
    }
    let primary_port = free_fixed_port();
    let port = free_fixed_port();
    // Transfers only with the key; NOTIFY to Knot signed with it.
    let (server, dir) = primary_with(
        primary_port,
        "none",
        &format!("to 127.0.0.1:{port}\n  key {KEY}"),
    );
    let knot = knot_secondary(port, primary_port);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (out, _, _) = run(
            "kdig",
            &[
                "@127.0.0.1",
                "-p",
                &port.to_string(),
                "+short",
                "+retry=0",
                "+time=1",
                "bulk599.example.org",
                "TXT",
            ],
            Path::new("."),
        );
        if out.contains("xxxx") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "knotd never got the zone; its log:\n{}\n--- oxidns:\n{}",
            knot.log(),
            server.output().join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = server.output().join("\n");
    assert!(log.contains("Outgoing transfer of 605 records"), "{log}");
    // Knot accepts only a signed NOTIFY (its acl names the key) and signs
    // its answer, which we verify.
    wait_for(
        "an answered NOTIFY",
        || {
            server
                .output()
                .join("\n")
                .contains("Sent NOTIFY for \"example.org.\" serial 7")
        },
        || format!("{}\n--- knot:\n{}", server.output().join("\n"), knot.log()),
    );

    // A new version: a signed NOTIFY, then Knot's signed IXFR, answered
    // from the journal and signed, which Knot verifies.
    let edited = zone()
        .replace(" 7 3600 ", " 8 3600 ")
        .replace("192.0.2.80", "192.0.2.81");
    dir.write("db.example.org", &edited);
    wait_for(
        "the IXFR to serial 8",
        || soa_serial(port) == Some(8),
        || format!("{}\n--- knot:\n{}", server.output().join("\n"), knot.log()),
    );
    let log = server.output().join("\n");
    assert!(
        log.contains("Outgoing incremental transfer of 6 records of zone \"example.org.\""),
        "{log}"
    );
}

/// knotd as a primary of example.org on `port` that transfers only with
/// KEY and signs its NOTIFY to `notify` with it.
fn knot_primary(dir: &TempDir, port: u16, notify: u16, serial: u32) -> Daemon {
    let run = dir.0.to_str().expect("utf-8 path").to_owned();
    dir.write(
        "example.org.zone",
        &zone().replace(" 7 3600 ", &format!(" {serial} 3600 ")),
    );
    let conf = format!(
        "server:\n    rundir: \"{run}\"\n    pidfile: \"{run}/knot.pid\"\n    \
         listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n    \
         background-workers: 1\n\n\
         control:\n    listen: \"{run}/knot.sock\"\n\n\
         database:\n    storage: \"{run}\"\n\n\
         log:\n  - target: stderr\n    any: info\n\n\
         key:\n  - id: {KEY}\n    algorithm: hmac-sha256\n    secret: {SECRET}\n\n\
         remote:\n  - id: secondary\n    address: 127.0.0.1@{notify}\n    key: {KEY}\n\n\
         acl:\n  - id: signed\n    address: 127.0.0.1\n    key: {KEY}\n    action: transfer\n\n\
         template:\n  - id: default\n    storage: \"{run}\"\n    zonefile-sync: -1\n    \
         zonefile-load: difference\n    journal-content: changes\n    semantic-checks: off\n\n\
         zone:\n  - domain: {APEX}\n    file: \"{run}/example.org.zone\"\n    \
         notify: secondary\n    acl: signed\n"
    );
    let conf_path = dir.write("knot.conf", &conf);
    let conf_arg = conf_path.to_str().expect("utf-8 path").to_owned();
    Daemon::spawn_in(
        "knotd",
        &["-c", &conf_arg],
        TempDir::new("tsig-knot-primary-run"),
    )
}

/// oxidns as a secondary of `primary_port`, transferring with KEY (whose
/// secret is `secret`).
fn oxidns_secondary(port: u16, primary_port: u16, secret: &str, dir: &Path) -> Oxidns {
    Oxidns::start(&format!(
        "example.org:{port} {{\n bind 127.0.0.1\n tsig {{\n  secret {KEY} {secret}\n }}\n \
         secondary {{\n  transfer from 127.0.0.1:{primary_port}\n  key {KEY}\n  directory {}\n }}\n}}\n",
        dir.display()
    ))
}

fn soa_serial(port: u16) -> Option<u32> {
    let (out, _, _) = run(
        "kdig",
        &[
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+short",
            "+retry=0",
            "+time=1",
            APEX,
            "SOA",
        ],
        Path::new("."),
    );
    out.split_whitespace().nth(2).and_then(|s| s.parse().ok())
}

fn wait_for(what: &str, condition: impl Fn() -> bool, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "{what} never happened; log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn oxidns_secondary_transfers_from_a_knot_primary_that_requires_tsig() {
    if !require_tool("knotd") || !require_tool("knotc") || !require_tool("kdig") {
        return;
    }
    let knot_dir = TempDir::new("tsig-knot-primary");
    let zones = TempDir::new("tsig-secondary-zones");
    let knot_port = free_fixed_port();
    let our_port = free_fixed_port();
    let knot = knot_primary(&knot_dir, knot_port, our_port, 1);
    wait_for(
        "knotd serving",
        || soa_serial(knot_port) == Some(1),
        || knot.log(),
    );
    // Unsigned, Knot refuses the transfer.
    let out = unsigned_axfr(knot_port);
    assert!(
        !out.contains("bulk1."),
        "knotd transfers only with the key:\n{out}"
    );

    let ours = oxidns_secondary(our_port, knot_port, SECRET, &zones.0);
    wait_for(
        "the signed transfer",
        || soa_serial(our_port) == Some(1),
        || format!("{}\n--- knot:\n{}", ours.output().join("\n"), knot.log()),
    );

    // A new version: Knot's NOTIFY is signed; we verify it, then IXFR with the key.
    knot_dir.write(
        "example.org.zone",
        &zone()
            .replace(" 7 3600 ", " 2 3600 ")
            .replace("192.0.2.80", "192.0.2.82"),
    );
    let sock = knot_dir.0.join("knot.sock");
    let (out, err, status) = run(
        "knotc",
        &["-s", sock.to_str().unwrap(), "zone-reload", APEX],
        &knot_dir.0,
    );
    assert_eq!(status, 0, "knotc: {out}{err}");
    wait_for(
        "the NOTIFY-driven refresh",
        || soa_serial(our_port) == Some(2),
        || format!("{}\n--- knot:\n{}", ours.output().join("\n"), knot.log()),
    );
    let log = ours.output().join("\n");
    assert!(
        log.contains("NOTIFY for example.org. from 127.0.0.1"),
        "{log}"
    );
    assert!(log.contains("(IXFR)"), "{log}");
}

#[test]
fn a_secondary_with_the_wrong_secret_gets_no_zone() {
    if !require_tool("knotd") || !require_tool("kdig") {
        return;
    }
    let knot_dir = TempDir::new("tsig-knot-primary-bad");
    let zones = TempDir::new("tsig-secondary-zones-bad");
    let knot_port = free_fixed_port();
    let our_port = free_fixed_port();
    let knot = knot_primary(&knot_dir, knot_port, our_port, 1);
    wait_for(
        "knotd serving",
        || soa_serial(knot_port) == Some(1),
        || knot.log(),
    );
    let ours = oxidns_secondary(our_port, knot_port, "d3Jvbmctc2VjcmV0", &zones.0);
    wait_for(
        "a failed transfer",
        || {
            ours.output()
                .join("\n")
                .contains("transfer of example.org. from")
        },
        || ours.output().join("\n"),
    );
    let log = ours.output().join("\n");
    assert!(log.contains("TSIG"), "the failure names TSIG:\n{log}");
    assert!(!zones.0.join("db.example.org").exists());
    assert_eq!(soa_serial(our_port), None, "no zone, no SOA");
}

#[test]
fn dig_verifies_answers_signed_with_each_algorithm() {
    if !require_tool("dig") {
        return;
    }
    let dir = TempDir::new("tsig-algorithms");
    let path = dir.write("db.example.org", &zone());
    let keys = dir.write(
        "keys.conf",
        &format!(
            "key \"sha1.key.\" {{ algorithm hmac-sha1; secret \"{SECRET}\"; }};\n\
             key \"sha384.key.\" {{ algorithm hmac-sha384; secret \"{SECRET}\"; }};\n\
             key \"sha512.key.\" {{ algorithm hmac-sha512; secret \"{SECRET}\"; }};\n"
        ),
    );
    let server = Oxidns::start(&format!(
        "example.org:0 {{\n bind 127.0.0.1\n tsig {{\n  secrets {}\n  require all\n }}\n file {}\n}}\n",
        keys.display(),
        path.display()
    ));
    for algorithm in ["sha1", "sha384", "sha512"] {
        let key = format!("hmac-{algorithm}:{algorithm}.key.:{SECRET}");
        let out = dig(&server, &["-y", &key, "www.example.org", "A"]);
        assert!(
            out.contains("status: NOERROR") && out.contains("192.0.2.80"),
            "{out}"
        );
        assert!(out.contains(&format!("hmac-{algorithm}.")), "{out}");
        assert!(
            !out.contains("failure") && !out.contains("Couldn't verify"),
            "{out}"
        );
    }
    // `require all`: unsigned gets REFUSED.
    let out = dig(&server, &["www.example.org", "A"]);
    assert!(out.contains("status: REFUSED"), "{out}");
}

/// named as a primary of example.org on `port` that transfers only with
/// KEY, and sends NOTIFY signed with it to `notify`.
fn bind_primary(dir: &TempDir, port: u16, notify: u16) -> Daemon {
    let run = dir.0.to_str().expect("utf-8 path").to_owned();
    dir.write("example.org.db", &zone());
    let conf = format!(
        "key \"{KEY}\" {{ algorithm hmac-sha256; secret \"{SECRET}\"; }};\n\
         options {{\n    directory \"{run}\";\n    listen-on port {port} {{ 127.0.0.1; }};\n    \
         listen-on-v6 {{ none; }};\n    recursion no;\n    pid-file none;\n    \
         session-keyfile none;\n    dnssec-validation no;\n    notify explicit;\n    \
         also-notify {{ 127.0.0.1 port {notify} key \"{KEY}\"; }};\n    notify-source 127.0.0.1;\n    \
         allow-transfer {{ key \"{KEY}\"; }};\n}};\n\
         controls {{ }};\n\
         logging {{ category default {{ default_stderr; }}; category notify {{ default_stderr; }}; category xfer-out {{ default_stderr; }}; }};\n\
         zone \"{APEX}\" {{ type primary; file \"{APEX}.db\"; }};\n"
    );
    let conf_path = dir.write("named.conf", &conf);
    let conf_arg = conf_path.to_str().expect("utf-8 path").to_owned();
    Daemon::spawn_in(
        "named",
        &["-g", "-c", &conf_arg, "-n", "1"],
        TempDir::new("tsig-bind-primary-run"),
    )
}

#[test]
fn oxidns_secondary_transfers_from_a_bind_primary_that_requires_tsig() {
    if !require_tool("named") || !require_tool("kdig") {
        return;
    }
    let bind_dir = TempDir::new("tsig-bind-primary");
    let zones = TempDir::new("tsig-bind-secondary-zones");
    let bind_port = free_fixed_port();
    let our_port = free_fixed_port();
    let bind = bind_primary(&bind_dir, bind_port, our_port);
    wait_for(
        "named serving",
        || soa_serial(bind_port) == Some(7),
        || bind.log(),
    );
    let out = unsigned_axfr(bind_port);
    assert!(
        !out.contains("bulk1."),
        "named transfers only with the key:\n{out}"
    );
    let ours = oxidns_secondary(our_port, bind_port, SECRET, &zones.0);
    wait_for(
        "the signed transfer",
        || soa_serial(our_port) == Some(7),
        || format!("{}\n--- named:\n{}", ours.output().join("\n"), bind.log()),
    );
    let (out, _, _) = run(
        "kdig",
        &[
            "@127.0.0.1",
            "-p",
            &our_port.to_string(),
            "+short",
            "bulk599.example.org",
            "TXT",
        ],
        Path::new("."),
    );
    assert!(out.contains("xxxx"), "{out}");
}

/// named as a secondary of oxidns on `primary_port`, transferring with KEY.
fn bind_secondary(port: u16, primary_port: u16) -> Daemon {
    let dir = TempDir::new("tsig-bind-secondary");
    let run = dir.0.to_str().expect("utf-8 path").to_owned();
    let conf = format!(
        "key \"{KEY}\" {{ algorithm hmac-sha256; secret \"{SECRET}\"; }};\n\
         options {{\n    directory \"{run}\";\n    listen-on port {port} {{ 127.0.0.1; }};\n    \
         listen-on-v6 {{ none; }};\n    recursion no;\n    pid-file none;\n    \
         session-keyfile none;\n    dnssec-validation no;\n    notify no;\n    \
         allow-transfer {{ any; }};\n}};\n\
         controls {{ }};\n\
         logging {{ category default {{ default_stderr; }}; category xfer-in {{ default_stderr; }}; }};\n\
         zone \"{APEX}\" {{ type secondary; primaries {{ 127.0.0.1 port {primary_port} key \"{KEY}\"; }}; \
         allow-notify {{ key \"{KEY}\"; }}; file \"{APEX}.db\"; }};\n"
    );
    let conf_path = dir.write("named.conf", &conf);
    let conf_arg = conf_path.to_str().expect("utf-8 path").to_owned();
    Daemon::spawn_in("named", &["-g", "-c", &conf_arg, "-n", "1"], dir)
}

#[test]
fn bind_secondary_transfers_from_oxidns_with_tsig() {
    if !require_tool("named") || !require_tool("kdig") {
        return;
    }
    let primary_port = free_fixed_port();
    let port = free_fixed_port();
    let (server, _dir) = primary_with(
        primary_port,
        "none",
        &format!("to 127.0.0.1:{port}\n  key {KEY}"),
    );
    let bind = bind_secondary(port, primary_port);
    wait_for(
        "named's signed transfer",
        || soa_serial(port) == Some(7),
        || {
            format!(
                "{}\n--- oxidns:\n{}",
                bind.log(),
                server.output().join("\n")
            )
        },
    );
    let log = server.output().join("\n");
    assert!(log.contains("Outgoing transfer of 605 records"), "{log}");
}
