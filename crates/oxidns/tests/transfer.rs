//! Zone transfers out of oxidns (the `transfer` plugin): AXFR and IXFR over
//! TCP to our own client, and to real secondaries — Knot DNS (`knotd`) and
//! BIND (`named`) — that follow the zone through NOTIFY and IXFR.
//!
//! The tests that need knotd or named skip with a message when it is missing,
//! unless OXIDNS_REQUIRE_TOOLS is set.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use std::time::{Duration, Instant};

use common::*;
use oxidns_proto::domain::base::MessageBuilder;
use oxidns_proto::domain::rdata::Soa;
use oxidns_proto::{Rcode, Ttl};

const APEX: &str = "example.org";

/// The zone at `serial`: version 1, and version 2 with one record removed,
/// one changed and one added.
fn zone(serial: u32) -> String {
    let body = if serial == 1 {
        "www A 192.0.2.80\nold TXT \"goes away\"\nmail A 192.0.2.25\n"
    } else {
        "www A 192.0.2.81\nmail A 192.0.2.25\nnew TXT \"arrives\"\n"
    };
    let mut text = format!(
        "$ORIGIN example.org.\n$TTL 300\n@ SOA ns1 hostmaster {serial} 3600 600 86400 300\n\
         @ NS ns1\nns1 A 127.0.0.1\n{body}"
    );
    // Enough data for several transfer messages.
    for i in 0..600 {
        text.push_str(&format!("bulk{i} TXT \"{}\"\n", "x".repeat(40)));
    }
    text
}

/// An IXFR query saying the client has `serial`.
fn ixfr_query(serial: u32) -> Vec<u8> {
    let apex = name_from_str(APEX).unwrap();
    let mut builder = MessageBuilder::new_vec();
    builder.header_mut().set_id(0x1fe);
    let mut question = builder.question();
    question.push((&apex, Rtype::IXFR, Class::IN)).unwrap();
    let mut authority = question.authority();
    let soa = Soa::new(
        name_from_str("ns1.example.org").unwrap(),
        name_from_str("hostmaster.example.org").unwrap(),
        serial.into(),
        Ttl::from_secs(3600),
        Ttl::from_secs(600),
        Ttl::from_secs(86400),
        Ttl::from_secs(300),
    );
    authority.push((&apex, Class::IN, 300u32, soa)).unwrap();
    authority.finish()
}

/// The messages of one transfer over an open connection, read until its
/// closing SOA as an RFC 1995 client tells it: after the opening SOA (serial
/// S), a record that is not an SOA means AXFR form, ended by the next SOA;
/// an older SOA starts difference sequences (old SOA, deletions, new SOA,
/// additions), ended by an SOA with serial S where an old SOA would be.
fn read_transfer(stream: &mut std::net::TcpStream) -> Vec<ReceivedResponse> {
    #[derive(PartialEq)]
    enum State {
        Start,
        Second,
        Axfr,
        Deleting,
        Adding,
        Done,
    }
    let mut messages = Vec::new();
    let mut state = State::Start;
    let mut first = 0;
    for _ in 0..10_000 {
        let bytes = tcp_receive(stream).expect("a transfer message");
        let message = Response::parse(&bytes).expect("a well-formed message");
        if message.response.header_rcode() != Rcode::NOERROR {
            messages.push(message);
            return messages;
        }
        for record in &message.response.answer {
            let soa = (record.rtype() == Rtype::SOA).then(|| serial_of(&record.to_string()));
            state = match (state, soa) {
                (State::Start, Some(serial)) => {
                    first = serial;
                    State::Second
                }
                (State::Second, Some(serial)) if serial == first => State::Done,
                (State::Second, Some(_)) => State::Deleting,
                (State::Second, None) => State::Axfr,
                (State::Axfr, Some(_)) => State::Done,
                (State::Deleting, Some(_)) => State::Adding,
                (State::Adding, Some(serial)) if serial == first => State::Done,
                (State::Adding, Some(_)) => State::Deleting,
                (state, None) if state != State::Start => state,
                (_, _) => panic!("a transfer must open with an SOA"),
            };
        }
        messages.push(message);
        // One SOA alone: "up to date".
        if state == State::Done || (state == State::Second && messages.len() == 1) {
            return messages;
        }
    }
    panic!("transfer did not end");
}

fn serial_of(soa_text: &str) -> u32 {
    soa_text
        .split_whitespace()
        .nth(6)
        .and_then(|s| s.parse().ok())
        .expect("an SOA record")
}

/// The answer records of a transfer as text.
fn answer_texts(messages: &[ReceivedResponse]) -> Vec<String> {
    messages
        .iter()
        .flat_map(|m| m.response.answer.iter().map(|r| r.to_string()))
        .collect()
}

/// The zone a server transfers with AXFR, as sorted record texts (the
/// closing SOA left out), or the rcode it refused with.
fn axfr(addr: SocketAddr) -> Result<Vec<String>, Rcode> {
    let mut stream = tcp_connect(addr);
    tcp_send(&mut stream, &query(APEX, Rtype::AXFR));
    let messages = read_transfer(&mut stream);
    let rcode = messages[0].response.header_rcode();
    if rcode != Rcode::NOERROR {
        return Err(rcode);
    }
    let mut records = answer_texts(&messages);
    records.pop();
    records.sort();
    Ok(records)
}

/// The SOA serial a server answers with over UDP, if it answers.
fn serial(addr: SocketAddr) -> Option<u32> {
    let bytes = udp_raw(addr, &query(APEX, Rtype::SOA), Duration::from_millis(500))?;
    let reply = Response::parse(&bytes).ok()?;
    let soa = reply.response.answer.first()?;
    (soa.rtype() == Rtype::SOA).then(|| serial_of(&soa.to_string()))
}

fn wait_for_serial(addr: SocketAddr, want: u32, what: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while serial(addr) != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{what} never reached serial {want}; its log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A primary: oxidns serving `zone(1)` from a file it rechecks every second,
/// transferring to 127.0.0.1 and notifying `notify` ports there.
struct Primary {
    server: Oxidns,
    zone_dir: TempDir,
}

impl Primary {
    fn start(notify: &[u16]) -> Primary {
        let zone_dir = TempDir::new("transfer-zone");
        let path = zone_dir.write("db.example.org", &zone(1));
        let port = free_fixed_port();
        let mut to = String::from("127.0.0.1");
        for p in notify {
            to.push_str(&format!(" 127.0.0.1:{p}"));
        }
        let server = Oxidns::start(&format!(
            "example.org:{port} {{\n bind 127.0.0.1\n transfer {{\n  to {to}\n }}\n file {} {{\n  reload 1s\n }}\n}}\n",
            path.display()
        ));
        Primary { server, zone_dir }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Writes version 2 and waits until it is served.
    fn publish_v2(&self) {
        self.zone_dir.write("db.example.org", &zone(2));
        wait_for_serial(self.addr(), 2, "oxidns", || self.server.output().join("\n"));
    }

    fn log(&self) -> String {
        self.server.output().join("\n")
    }
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// knotd as a secondary of `primary`: accepts NOTIFY from and transfers to
/// 127.0.0.1, keeps the zone in its journal only.
fn knot_secondary(port: u16, primary: SocketAddr) -> Daemon {
    let dir = TempDir::new("transfer-knot");
    let run = path_text(&dir.0).to_string();
    let conf = format!(
        "server:\n    rundir: \"{run}\"\n    pidfile: \"{run}/knot.pid\"\n    \
         listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n    \
         background-workers: 1\n\n\
         control:\n    listen: \"{run}/knot.sock\"\n\n\
         database:\n    storage: \"{run}\"\n\n\
         log:\n  - target: stderr\n    any: info\n\n\
         remote:\n  - id: primary\n    address: {}@{}\n\n\
         acl:\n  - id: local\n    address: 127.0.0.1\n    action: [notify, transfer]\n\n\
         template:\n  - id: default\n    storage: \"{run}\"\n    zonefile-sync: -1\n    \
         semantic-checks: off\n\n\
         zone:\n  - domain: {APEX}\n    master: primary\n    acl: local\n",
        primary.ip(),
        primary.port()
    );
    let conf_path = dir.write("knot.conf", &conf);
    let conf_arg = path_text(&conf_path).to_string();
    Daemon::spawn_in("knotd", &["-c", &conf_arg], dir)
}

/// named as a secondary of `primary`, transferring to anyone.
fn bind_secondary(port: u16, primary: SocketAddr) -> Daemon {
    let dir = TempDir::new("transfer-bind");
    let run = path_text(&dir.0).to_string();
    let conf = format!(
        "options {{\n    directory \"{run}\";\n    listen-on port {port} {{ 127.0.0.1; }};\n    \
         listen-on-v6 {{ none; }};\n    recursion no;\n    pid-file none;\n    \
         session-keyfile none;\n    dnssec-validation no;\n    notify no;\n    \
         allow-transfer {{ any; }};\n}};\n\
         controls {{ }};\n\
         logging {{ category default {{ default_stderr; }}; category xfer-in {{ default_stderr; }}; }};\n\
         zone \"{APEX}\" {{ type secondary; primaries {{ {} port {}; }}; file \"{APEX}.db\"; }};\n",
        primary.ip(),
        primary.port()
    );
    let conf_path = dir.write("named.conf", &conf);
    let conf_arg = path_text(&conf_path).to_string();
    Daemon::spawn_in("named", &["-g", "-c", &conf_arg, "-n", "1"], dir)
}

/// A secondary follows oxidns: AXFR first, then NOTIFY and IXFR after the
/// zone file gets a new serial; its copy equals ours each time.
fn secondary_follows(program: &str, start: fn(u16, SocketAddr) -> Daemon) {
    if !require_tool(program) {
        return;
    }
    let port = free_fixed_port();
    let primary = Primary::start(&[port]);
    let secondary = start(port, primary.addr());
    let secondary_addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_serial(secondary_addr, 1, program, || secondary.log());
    let ours = axfr(primary.addr()).expect("oxidns transfers to 127.0.0.1");
    assert_eq!(ours.len(), 6 + 600);
    assert_eq!(
        axfr(secondary_addr).expect("the secondary transfers to us"),
        ours,
        "{program}'s copy of version 1"
    );

    primary.publish_v2();
    wait_for_serial(secondary_addr, 2, program, || {
        format!("{}\n--- oxidns:\n{}", secondary.log(), primary.log())
    });
    let ours = axfr(primary.addr()).unwrap();
    assert!(ours.iter().any(|r| r.contains("arrives")));
    assert_eq!(
        axfr(secondary_addr).unwrap(),
        ours,
        "{program}'s copy of version 2"
    );
    let log = primary.log();
    assert!(
        log.contains("Sent NOTIFY for \"example.org.\" serial 2"),
        "NOTIFY was answered:\n{log}"
    );
    assert!(
        log.contains("Outgoing incremental transfer of 8 records of zone \"example.org.\""),
        "{program} asked for IXFR and got the difference:\n{log}"
    );
}

#[test]
fn knot_secondary_follows_through_notify_and_ixfr() {
    secondary_follows("knotd", knot_secondary);
}

#[test]
fn bind_secondary_follows_through_notify_and_ixfr() {
    secondary_follows("named", bind_secondary);
}

#[test]
fn axfr_spans_messages_and_the_connection_stays_open() {
    let primary = Primary::start(&[]);
    let mut stream = tcp_connect(primary.addr());
    tcp_send(&mut stream, &query(APEX, Rtype::AXFR));
    let messages = read_transfer(&mut stream);
    assert!(messages.len() > 1, "{} message(s)", messages.len());
    assert!(
        messages
            .iter()
            .all(|m| m.id == 0x4242 && m.response.authoritative)
    );
    let records = answer_texts(&messages);
    assert!(records[0].contains(" SOA ") && records.last().unwrap().contains(" SOA "));
    assert_eq!(records.len(), 7 + 600);
    // Another query on the same connection is answered.
    tcp_send(&mut stream, &query("www.example.org", Rtype::A));
    let reply = Response::parse(&tcp_receive(&mut stream).unwrap()).unwrap();
    assert_eq!(
        reply.response.answer[0].to_string(),
        "www.example.org. 300 IN A 192.0.2.80"
    );
}

#[test]
fn transfers_are_refused_to_unlisted_clients() {
    let zone_dir = TempDir::new("transfer-refused");
    let path = zone_dir.write("db.example.org", &zone(1));
    let server = Oxidns::start(&format!(
        "example.org:0 {{\n bind 127.0.0.1\n transfer {{\n  to 192.0.2.1 10.0.0.0/8\n }}\n file {}\n}}\n",
        path.display()
    ));
    assert_eq!(axfr(server.addr()), Err(Rcode::REFUSED));
    let reply = tcp(server.addr(), &ixfr_query(1));
    assert_eq!(reply.response.header_rcode(), Rcode::REFUSED);
    let reply = udp(server.addr(), &ixfr_query(1));
    assert_eq!(reply.response.header_rcode(), Rcode::REFUSED);
    // Ordinary queries are not affected.
    let reply = udp(server.addr(), &query("www.example.org", Rtype::A));
    assert_eq!(reply.response.answer.len(), 1);
}

#[test]
fn over_udp_axfr_is_refused_and_ixfr_gets_the_current_soa() {
    let primary = Primary::start(&[]);
    let reply = udp(primary.addr(), &query(APEX, Rtype::AXFR));
    assert_eq!(reply.response.header_rcode(), Rcode::REFUSED);
    let reply = udp(primary.addr(), &ixfr_query(0));
    assert_eq!(reply.response.answer.len(), 1);
    assert_eq!(serial_of(&reply.response.answer[0].to_string()), 1);
}

#[test]
fn ixfr_from_the_journal_survives_a_restart_and_falls_back_to_axfr() {
    let mut primary = Primary::start(&[]);
    primary.publish_v2();
    let journal = primary.zone_dir.0.join("db.example.org.ixfr");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !journal.exists() {
        assert!(Instant::now() < deadline, "no journal written");
        std::thread::sleep(Duration::from_millis(50));
    }
    primary.server.terminate();

    // The same zone file and journal, served by a new process.
    let port = free_fixed_port();
    let server = Oxidns::start(&format!(
        "example.org:{port} {{\n bind 127.0.0.1\n transfer {{\n  to 127.0.0.1\n }}\n file {}\n}}\n",
        primary.zone_dir.0.join("db.example.org").display()
    ));
    let mut stream = tcp_connect(server.addr());
    tcp_send(&mut stream, &ixfr_query(1));
    let records = answer_texts(&read_transfer(&mut stream));
    let serials: Vec<u32> = records
        .iter()
        .filter(|r| r.contains(" SOA "))
        .map(|r| serial_of(r))
        .collect();
    assert_eq!(serials, [2, 1, 2, 2], "{records:#?}");
    assert_eq!(records.len(), 8, "{records:#?}");
    assert!(records[2..4].iter().any(|r| r.contains("goes away")));
    assert!(records[5..7].iter().any(|r| r.contains("arrives")));

    // A serial the journal does not reach: the whole zone instead.
    tcp_send(&mut stream, &ixfr_query(0));
    let records = answer_texts(&read_transfer(&mut stream));
    assert_eq!(records.len(), 7 + 600);
    assert_eq!(records.iter().filter(|r| r.contains(" SOA ")).count(), 2);

    // Up to date: one SOA.
    tcp_send(&mut stream, &ixfr_query(2));
    let records = answer_texts(&read_transfer(&mut stream));
    assert_eq!(records.len(), 1);
}
