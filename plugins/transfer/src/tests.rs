use super::*;
use oxidns_server::Config;
use oxidns_server::proto::{OptRcode, Query, name_from_str};
use oxidns_server::test_util::{config, config_error, over_tcp, request, serve_config};
use std::path::Path;
use std::time::Instant;

const PLUGINS: &[PluginEntry] = &[PLUGIN, oxidns_plugin_file::PLUGIN];

fn zone_text(serial: u32, body: &str) -> String {
    format!(
        "$ORIGIN example.org.\n$TTL 3600\n@ SOA ns hostmaster {serial} 7200 900 1209600 300\n@ NS ns\nns A 192.0.2.1\n{body}"
    )
}

struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("oxidns-transfer-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tcp_from(qtype: Rtype, ip: &str) -> Request {
    over_tcp(
        request("example.org", qtype),
        format!("{ip}:5353").parse().unwrap(),
    )
}

/// An IXFR query over TCP from 127.0.0.1 saying the client has `serial`.
fn ixfr(serial: u32) -> Request {
    let apex = oxidns_server::proto::name_from_str("example.org").unwrap();
    let mut builder = MessageBuilder::new_vec();
    builder.header_mut().set_id(77);
    let mut question = builder.question();
    question.push((&apex, Rtype::IXFR, Class::IN)).unwrap();
    let mut authority = question.authority();
    let soa = Soa::new(
        oxidns_server::proto::name_from_str("ns.example.org").unwrap(),
        oxidns_server::proto::name_from_str("hostmaster.example.org").unwrap(),
        serial.into(),
        oxidns_server::proto::Ttl::from_secs(1),
        oxidns_server::proto::Ttl::from_secs(1),
        oxidns_server::proto::Ttl::from_secs(1),
        oxidns_server::proto::Ttl::from_secs(1),
    );
    authority.push((&apex, Class::IN, 0u32, soa)).expect("fits");
    let bytes = authority.finish();
    let query = Query::parse(bytes.into()).unwrap();
    Request::new(
        query,
        "127.0.0.1:5353".parse().unwrap(),
        "127.0.0.1:53".parse().unwrap(),
        Transport::Tcp,
        Name::root(),
        Arc::from("dns://:53"),
    )
}

/// Every message of a transfer: the response and its follow-ups.
async fn transfer(config: &Config, mut request: Request) -> Vec<Response> {
    let first = serve_config(config, &mut request).await.unwrap();
    let mut messages = vec![first];
    if let Some(mut more) = request.take_follow_ups() {
        while let Some(wire) = tokio::time::timeout(Duration::from_secs(5), more.next())
            .await
            .expect("follow-ups in time")
        {
            assert!(wire.len() <= usize::from(u16::MAX));
            messages.push(Response::parse(&wire).unwrap().response);
        }
    }
    messages
}

fn records(messages: &[Response]) -> Vec<String> {
    messages
        .iter()
        .flat_map(|m| m.answer.iter().map(|r| r.to_string()))
        .collect()
}

async fn started(corefile: &str) -> Config {
    let config = config(corefile, PLUGINS).unwrap();
    for (_, lifecycle) in config.lifecycles() {
        lifecycle.startup().await.unwrap();
    }
    config
}

async fn stopped(config: Config) {
    for (_, lifecycle) in config.lifecycles() {
        lifecycle.shutdown().await;
    }
}

#[test]
fn to_is_required_and_checked() {
    assert!(config_error("example.org {\n transfer\n}", PLUGINS).contains("'to' is required"));
    assert!(
        config_error("example.org {\n transfer {\n  to nowhere\n }\n}", PLUGINS)
            .contains("invalid address 'nowhere'")
    );
    assert!(
        config_error(
            "example.org {\n transfer {\n  to *\n  from *\n }\n}",
            PLUGINS
        )
        .contains("from")
    );
    config(
        "example.org {\n transfer {\n  to * 192.0.2.1 [2001:db8::1]:5300 10.0.0.0/8\n  to ::1\n }\n}",
        PLUGINS,
    )
    .unwrap();
}

#[test]
fn peers_allow_addresses_and_networks() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(Peer::parse("*").unwrap().allows(ip("203.0.113.9")));
    let host = Peer::parse("192.0.2.1:5300").unwrap();
    assert!(host.allows(ip("192.0.2.1")));
    assert!(!host.allows(ip("192.0.2.2")));
    let net = Peer::parse("10.1.0.0/16").unwrap();
    assert!(net.allows(ip("10.1.200.3")));
    assert!(!net.allows(ip("10.2.0.1")));
    let net6 = Peer::parse("2001:db8::/32").unwrap();
    assert!(net6.allows(ip("2001:db8:1::5")));
    assert!(!net6.allows(ip("192.0.2.1")));
    assert!(Peer::parse("0.0.0.0/0").unwrap().allows(ip("8.8.8.8")));
    assert!(Peer::parse("10.0.0.0/33").is_none());
    assert_eq!(
        Peer::parse("192.0.2.1"),
        Some(Peer::Host("192.0.2.1:53".parse().unwrap()))
    );
}

#[tokio::test]
async fn axfr_sends_soa_records_soa_in_several_messages() {
    let dir = Dir::new();
    let mut body = String::new();
    for i in 0..3000 {
        body.push_str(&format!("host{i} A 192.0.2.{}\n", i % 250));
    }
    let path = dir.write("db.example.org", &zone_text(5, &body));
    let config = config(
        &format!("example.org {{\n transfer {{\n  to 127.0.0.1\n }}\n file {path}\n}}"),
        PLUGINS,
    )
    .unwrap();
    let messages = transfer(&config, tcp_from(Rtype::AXFR, "127.0.0.1")).await;
    assert!(messages.len() > 3, "{} messages", messages.len());
    let all = records(&messages);
    assert_eq!(all.len(), 3000 + 2 + 2, "SOA, NS, ns A, 3000 hosts, SOA");
    assert!(all[0].contains("SOA"));
    assert!(all.last().unwrap().contains("SOA"));
    assert_eq!(all.iter().filter(|r| r.contains(" SOA ")).count(), 2);
    assert!(
        messages
            .iter()
            .all(|m| m.authoritative && m.rcode == OptRcode::NOERROR)
    );
}

#[tokio::test]
async fn transfers_are_refused_to_unlisted_clients_and_over_udp() {
    let dir = Dir::new();
    let path = dir.write("db", &zone_text(1, ""));
    let config = config(
        &format!("example.org {{\n transfer {{\n  to 192.0.2.0/24\n }}\n file {path}\n}}"),
        PLUGINS,
    )
    .unwrap();
    let refused = transfer(&config, tcp_from(Rtype::AXFR, "198.51.100.1")).await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].rcode, OptRcode::REFUSED);
    let allowed = transfer(&config, tcp_from(Rtype::AXFR, "192.0.2.77")).await;
    assert_eq!(records(&allowed).len(), 4);
    // UDP from a listed client: AXFR refused, IXFR gets the current SOA.
    let mut udp = request("example.org", Rtype::AXFR);
    udp.client = "192.0.2.77:5353".parse().unwrap();
    let response = serve_config(&config, &mut udp).await.unwrap();
    assert_eq!(response.rcode, OptRcode::REFUSED);
    // Other queries go on to file.
    let mut soa_query = tcp_from(Rtype::SOA, "198.51.100.1");
    let response = serve_config(&config, &mut soa_query).await.unwrap();
    assert_eq!(response.answer.len(), 1);
}

#[tokio::test]
async fn ixfr_sends_condensed_changes_and_falls_back_to_axfr() {
    let dir = Dir::new();
    let path = dir.write("db.example.org", &zone_text(1, "a A 192.0.2.10\n"));
    let config = started(&format!(
        "example.org {{\n transfer {{\n  to 127.0.0.1\n }}\n file {path} {{\n  reload 50ms\n }}\n}}"
    ))
    .await;
    let wait_for_serial = |serial: u32| {
        let journal = Journal::path_for(Path::new(&path), None);
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let last = Journal::open(&journal, 100).unwrap().last_serial();
                if last == Some(serial) {
                    return;
                }
                assert!(Instant::now() < deadline, "journal never reached {serial}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    dir.write(
        "db.example.org",
        &zone_text(2, "a A 192.0.2.10\nb A 192.0.2.11\n"),
    );
    wait_for_serial(2).await;
    dir.write("db.example.org", &zone_text(3, "c A 192.0.2.12\n;\n"));
    wait_for_serial(3).await;

    let messages = transfer(&config, ixfr(1)).await;
    let all = records(&messages);
    assert_eq!(all.len(), 6, "{all:#?}");
    assert!(all[0].contains("SOA ns.example.org. hostmaster.example.org. 3 "));
    assert!(all[1].contains("SOA ns.example.org. hostmaster.example.org. 1 "));
    assert_eq!(all[2], "a.example.org. 3600 IN A 192.0.2.10");
    assert!(all[3].contains(" 3 "));
    assert_eq!(all[4], "c.example.org. 3600 IN A 192.0.2.12");
    assert!(all[5].contains(" 3 "));

    // Up to date: one SOA.
    let current = records(&transfer(&config, ixfr(3)).await);
    assert_eq!(current.len(), 1);
    // A serial the journal does not know: the whole zone, AXFR style.
    let full = records(&transfer(&config, ixfr(0)).await);
    assert_eq!(full.len(), 5, "{full:#?}");
    assert!(full[0].contains("SOA") && full[4].contains("SOA"));
    stopped(config).await;
}

#[tokio::test]
async fn notify_is_retried_until_answered() {
    let secondary = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = secondary.local_addr().unwrap();
    let apex = oxidns_server::proto::name_from_str("example.org").unwrap();
    let dir = Dir::new();
    let path = dir.write("db", &zone_text(9, ""));
    let (zone, _) = Zone::load(Path::new(&path), &apex).unwrap();
    let record = soa(&zone).unwrap();
    let sender = tokio::spawn(async move {
        notify(&apex, &record, target, Duration::from_millis(200), None).await
    });
    let mut buf = vec![0u8; 1024];
    // The first NOTIFY goes unanswered; the retry is answered.
    let (len, _) = secondary.recv_from(&mut buf).await.unwrap();
    let first = Query::parse(buf[..len].to_vec().into()).unwrap();
    assert_eq!(first.opcode, Opcode::NOTIFY);
    assert_eq!(first.qtype, Rtype::SOA);
    let (len, from) = tokio::time::timeout(Duration::from_secs(3), secondary.recv_from(&mut buf))
        .await
        .expect("a retry")
        .unwrap();
    let retry = Query::parse(buf[..len].to_vec().into()).unwrap();
    assert_eq!(retry.id, first.id);
    let mut reply = buf[..len].to_vec();
    reply[2] |= 0x80; // QR
    secondary.send_to(&reply, from).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(3), sender)
            .await
            .unwrap()
            .unwrap()
    );
}

#[test]
fn notify_messages_carry_the_soa() {
    let apex = oxidns_server::proto::name_from_str("example.org").unwrap();
    let dir = Dir::new();
    let path = dir.write("db", &zone_text(42, ""));
    let (zone, _) = Zone::load(Path::new(&path), &apex).unwrap();
    let wire = notify_message(9, &apex, &soa(&zone).unwrap());
    let message = Message::from_octets(&wire[..]).unwrap();
    assert_eq!(message.header().opcode(), Opcode::NOTIFY);
    assert!(message.header().aa());
    assert!(!message.header().rd());
    assert_eq!(message.header_counts().ancount(), 1);
}

const SECRET: &str = "c2VjcmV0LWtleS1mb3Itb3hpZG5zLXRlc3Rz";
const WITH_TSIG: &[PluginEntry] = &[
    oxidns_plugin_tsig::PLUGIN,
    PLUGIN,
    oxidns_plugin_file::PLUGIN,
];

fn xfr_key() -> Key {
    Key::from_base64(
        &name_from_str("xfr.key").unwrap(),
        tsig::Algorithm::HmacSha256,
        SECRET,
    )
    .unwrap()
}

/// An AXFR over TCP from 127.0.0.1, signed with `key` if given.
fn signed_axfr(key: Option<&Key>) -> Request {
    let mut bytes = Query::build(
        77,
        &name_from_str("example.org").unwrap(),
        Rtype::AXFR,
        Class::IN,
        None,
    );
    if let Some(key) = key {
        tsig::sign_request(key, &mut bytes, tsig::now());
    }
    Request::new(
        Query::parse(bytes.into()).unwrap(),
        "127.0.0.1:5353".parse().unwrap(),
        "127.0.0.1:53".parse().unwrap(),
        Transport::Tcp,
        name_from_str("example.org").unwrap(),
        Arc::from("dns://:53"),
    )
}

#[test]
fn key_must_be_one_that_tsig_defines() {
    let error = config_error(
        "example.org {\n transfer {\n  to *\n  key xfr.key.\n }\n}",
        WITH_TSIG,
    );
    assert!(
        error.starts_with("Corefile:4: ") && error.contains("no TSIG key 'xfr.key.'"),
        "{error}"
    );
}

#[tokio::test]
async fn with_a_key_only_transfers_signed_with_it_are_given() {
    let dir = Dir::new();
    let path = dir.write("db.example.org", &zone_text(5, "www A 192.0.2.80\n"));
    let config = config(
        &format!(
            "example.org {{\n tsig {{\n  secret xfr.key. {SECRET}\n  secret other.key. {SECRET}\n }}\n \
             transfer {{\n  to 127.0.0.1\n  key xfr.key.\n }}\n file {path}\n}}"
        ),
        WITH_TSIG,
    )
    .unwrap();
    let unsigned = transfer(&config, signed_axfr(None)).await;
    assert_eq!(unsigned[0].rcode, OptRcode::REFUSED);
    let other = Key::from_base64(
        &name_from_str("other.key").unwrap(),
        tsig::Algorithm::HmacSha256,
        SECRET,
    )
    .unwrap();
    let wrong_key = transfer(&config, signed_axfr(Some(&other))).await;
    assert_eq!(wrong_key[0].rcode, OptRcode::REFUSED);
    let signed = transfer(&config, signed_axfr(Some(&xfr_key()))).await;
    assert_eq!(records(&signed).len(), 5);
}

#[tokio::test]
async fn notify_with_a_key_is_signed_and_wants_a_signed_answer() {
    let secondary = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = secondary.local_addr().unwrap();
    let apex = name_from_str("example.org").unwrap();
    let dir = Dir::new();
    let path = dir.write("db", &zone_text(9, ""));
    let (zone, _) = Zone::load(Path::new(&path), &apex).unwrap();
    let record = soa(&zone).unwrap();
    let key = Arc::new(xfr_key());
    let sending_key = key.clone();
    let sender = tokio::spawn(async move {
        notify(
            &apex,
            &record,
            target,
            Duration::from_millis(200),
            Some(sending_key),
        )
        .await
    });
    let mut buf = vec![0u8; 1024];
    let (len, from) = secondary.recv_from(&mut buf).await.unwrap();
    let notify = buf[..len].to_vec();
    let tsig_record = tsig::find(&notify).unwrap().expect("NOTIFY is signed");
    let check = tsig::verify_request(&notify, &tsig_record, |_| Some(&*key), tsig::now());
    let Ok(tsig::RequestCheck::Verified { request_mac, .. }) = check else {
        panic!("the NOTIFY verifies: {check:?}");
    };
    // An unsigned answer is not the secondary's: ignored, the NOTIFY is retried.
    let mut reply = tsig::strip(&notify, &tsig_record);
    reply[2] |= 0x80; // QR
    secondary.send_to(&reply, from).await.unwrap();
    let (len, from) = tokio::time::timeout(Duration::from_secs(3), secondary.recv_from(&mut buf))
        .await
        .expect("a retry")
        .unwrap();
    assert_eq!(buf[..len], notify[..]);
    // A signed answer ends it.
    tsig::Signer::answer(key.clone(), request_mac).sign(&mut reply, tsig::now());
    secondary.send_to(&reply, from).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(3), sender)
            .await
            .unwrap()
            .unwrap()
    );
}
