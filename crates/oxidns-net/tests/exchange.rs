//! Exchanges with real upstreams on loopback: the in-crate test server (well
//! behaved or not), a DoT server with a certificate made here, and Knot DNS.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oxidns_net::rustls;
use oxidns_net::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use oxidns_net::test_server::{Behaviour, Knot, TestServer};
use oxidns_net::{
    ExchangeError, ExchangeOptions, OutgoingQuery, Protocol, TlsSettings, Upstream, UpstreamConfig,
    tls_client_config,
};
use oxidns_proto::{OptRcode, RecordData, Rtype, name_from_str};

/// Generous: a test fails only when something hangs.
const BOUND: Duration = Duration::from_secs(10);

fn query(name: &str, qtype: Rtype) -> OutgoingQuery {
    OutgoingQuery::new(name_from_str(name).unwrap(), qtype)
}

fn upstream(addr: SocketAddr) -> Upstream {
    Upstream::new(addr, UpstreamConfig::default())
}

fn first_a(exchanged: &oxidns_net::Exchanged) -> Ipv4Addr {
    match exchanged.response.response.answer[0].data() {
        RecordData::A(a) => a.addr(),
        other => panic!("not an A record: {other:?}"),
    }
}

async fn exchange(
    upstream: &Upstream,
    q: &OutgoingQuery,
    protocol: Protocol,
) -> Result<oxidns_net::Exchanged, ExchangeError> {
    tokio::time::timeout(BOUND, upstream.exchange(q, ExchangeOptions::new(protocol)))
        .await
        .expect("the exchange ends within its bound")
}

#[tokio::test]
async fn udp_answer_is_read_and_rtt_measured() {
    let server = TestServer::start(Behaviour::Answer).await;
    server.set_tag(7);
    let up = upstream(server.addr);
    let got = exchange(&up, &query("www.example.org", Rtype::A), Protocol::Udp)
        .await
        .unwrap();
    assert_eq!(got.protocol, Protocol::Udp);
    assert_eq!(first_a(&got), Ipv4Addr::new(192, 0, 2, 7));
    assert!(up.srtt().is_some());
    assert_eq!(server.udp_queries(), 1);
}

#[tokio::test]
async fn every_udp_try_uses_a_new_id() {
    let server = TestServer::start(Behaviour::Answer).await;
    let up = upstream(server.addr);
    let q = query("www.example.org", Rtype::A);
    let mut ids = std::collections::HashSet::new();
    for _ in 0..20 {
        exchange(&up, &q, Protocol::Udp).await.unwrap();
        ids.insert(server.last_query().unwrap().id);
    }
    assert!(ids.len() > 15, "IDs repeat too often: {ids:?}");
}

#[tokio::test]
async fn edns_and_flags_reach_the_upstream() {
    let server = TestServer::start(Behaviour::Answer).await;
    let up = upstream(server.addr);
    let mut q = query("www.example.org", Rtype::A);
    q.cd = true;
    q.edns = Some(oxidns_proto::Edns {
        udp_payload_size: 1100,
        version: 0,
        dnssec_ok: true,
        options: vec![],
    });
    exchange(&up, &q, Protocol::Udp).await.unwrap();
    let seen = server.last_query().unwrap();
    assert!(seen.cd && seen.rd && seen.dnssec_ok());
    assert_eq!(seen.udp_limit(), 1100);
}

#[tokio::test]
async fn spoofed_answers_are_ignored_and_the_real_one_taken() {
    let server = TestServer::start(Behaviour::WrongIdThenAnswer).await;
    let up = upstream(server.addr);
    let q = query("www.example.org", Rtype::A);
    for behaviour in [
        Behaviour::WrongIdThenAnswer,
        Behaviour::WrongQuestionThenAnswer,
        Behaviour::GarbageThenAnswer,
    ] {
        server.set(behaviour.clone());
        let got = exchange(&up, &q, Protocol::Udp).await;
        assert!(got.is_ok(), "{behaviour:?}: {got:?}");
    }
}

#[tokio::test]
async fn wrong_id_question_or_garbage_alone_time_out() {
    let server = TestServer::start(Behaviour::WrongId).await;
    let up = upstream(server.addr);
    let q = query("www.example.org", Rtype::A);
    for behaviour in [
        Behaviour::WrongId,
        Behaviour::WrongQuestion,
        Behaviour::Garbage,
    ] {
        server.set(behaviour.clone());
        let options = ExchangeOptions {
            timeout: Some(Duration::from_millis(300)),
            ..ExchangeOptions::new(Protocol::Udp)
        };
        let got = tokio::time::timeout(BOUND, up.exchange(&q, options))
            .await
            .unwrap();
        assert!(
            matches!(got, Err(ExchangeError::Timeout)),
            "{behaviour:?}: {got:?}"
        );
    }
}

#[tokio::test]
async fn silent_upstream_times_out_and_the_timeout_backs_off() {
    let server = TestServer::start(Behaviour::Silent).await;
    let up = upstream(server.addr);
    let before = up.timeout();
    let started = Instant::now();
    let got = exchange(&up, &query("www.example.org", Rtype::A), Protocol::Udp).await;
    assert!(matches!(got, Err(ExchangeError::Timeout)), "{got:?}");
    assert!(started.elapsed() < BOUND);
    assert!(up.timeout() >= before);
}

#[tokio::test]
async fn slow_upstream_answers_within_the_initial_timeout() {
    let server = TestServer::start(Behaviour::Slow(Duration::from_millis(200))).await;
    let up = upstream(server.addr);
    let got = exchange(&up, &query("www.example.org", Rtype::A), Protocol::Udp).await;
    assert!(got.is_ok(), "{got:?}");
    assert!(up.srtt().unwrap() >= Duration::from_millis(150));
}

#[tokio::test]
async fn closed_port_fails_without_waiting_for_the_timeout() {
    let port = {
        let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        socket.local_addr().unwrap().port()
    };
    let up = upstream((Ipv4Addr::LOCALHOST, port).into());
    let q = query("www.example.org", Rtype::A);
    let udp = exchange(&up, &q, Protocol::Udp).await;
    assert!(matches!(udp, Err(ExchangeError::Io(_))), "{udp:?}");
    let tcp = exchange(&up, &q, Protocol::Tcp).await;
    assert!(matches!(tcp, Err(ExchangeError::Io(_))), "{tcp:?}");
}

#[tokio::test]
async fn truncated_udp_answer_is_asked_again_over_tcp() {
    let server = TestServer::start(Behaviour::TruncateUdp).await;
    let up = upstream(server.addr);
    let q = query("www.example.org", Rtype::A);
    let plain = exchange(&up, &q, Protocol::Udp).await.unwrap();
    assert!(plain.response.response.truncated);
    let options = ExchangeOptions {
        tcp_on_truncation: true,
        ..ExchangeOptions::new(Protocol::Udp)
    };
    let full = up.exchange(&q, options).await.unwrap();
    assert_eq!(full.protocol, Protocol::Tcp);
    assert!(!full.response.response.truncated);
    assert_eq!(full.response.response.answer.len(), 1);
    assert_eq!(server.tcp_queries(), 1);
}

#[tokio::test]
async fn large_answers_come_whole_over_tcp() {
    let server = TestServer::start(Behaviour::Answer).await;
    let up = upstream(server.addr);
    let got = exchange(&up, &query("big.example", Rtype::TXT), Protocol::Tcp)
        .await
        .unwrap();
    assert_eq!(got.response.response.answer.len(), 20);
}

#[tokio::test]
async fn tcp_connections_are_reused_and_counted() {
    let server = TestServer::start(Behaviour::Answer).await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let observer_seen = seen.clone();
    let up = Upstream::new(
        server.addr,
        UpstreamConfig {
            on_connection: Some(Arc::new(move |protocol, reused| {
                observer_seen.lock().unwrap().push((protocol, reused));
            })),
            ..UpstreamConfig::default()
        },
    );
    let q = query("www.example.org", Rtype::A);
    for _ in 0..5 {
        exchange(&up, &q, Protocol::Tcp).await.unwrap();
    }
    assert_eq!(server.tcp_connections(), 1);
    assert_eq!(up.idle_connections(Protocol::Tcp), 1);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], (Protocol::Tcp, false));
    assert!(seen[1..].iter().all(|s| *s == (Protocol::Tcp, true)));
}

#[tokio::test]
async fn concurrent_tcp_queries_open_more_connections_and_all_succeed() {
    let server = TestServer::start(Behaviour::Slow(Duration::from_millis(50))).await;
    let up = upstream(server.addr);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let up = up.clone();
        tasks.push(tokio::spawn(async move {
            let q = query(&format!("n{i}.example.org"), Rtype::A);
            up.exchange(&q, ExchangeOptions::new(Protocol::Tcp)).await
        }));
    }
    for task in tasks {
        let got = tokio::time::timeout(BOUND, task).await.unwrap().unwrap();
        assert!(got.is_ok(), "{got:?}");
    }
    assert!(up.idle_connections(Protocol::Tcp) >= 1);
}

#[tokio::test]
async fn idle_connections_are_closed_after_expire() {
    let server = TestServer::start(Behaviour::Answer).await;
    let up = Upstream::new(
        server.addr,
        UpstreamConfig {
            expire: Some(Duration::from_millis(200)),
            ..UpstreamConfig::default()
        },
    );
    exchange(&up, &query("www.example.org", Rtype::A), Protocol::Tcp)
        .await
        .unwrap();
    assert_eq!(up.idle_connections(Protocol::Tcp), 1);
    let started = Instant::now();
    while up.idle_connections(Protocol::Tcp) > 0 && started.elapsed() < BOUND {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up.idle_connections(Protocol::Tcp), 0);
}

#[tokio::test]
async fn connection_closed_by_the_upstream_is_replaced() {
    let server = TestServer::start(Behaviour::AnswerThenClose).await;
    let up = upstream(server.addr);
    let q = query("www.example.org", Rtype::A);
    for _ in 0..3 {
        // Let the server's close arrive before the pooled connection is reused.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let got = exchange(&up, &q, Protocol::Tcp).await;
        assert!(got.is_ok(), "{got:?}");
    }
    assert_eq!(server.tcp_connections(), 3);
}

#[tokio::test]
async fn tcp_garbage_is_an_error_not_a_hang() {
    let server = TestServer::start(Behaviour::Garbage).await;
    let up = upstream(server.addr);
    let got = exchange(&up, &query("www.example.org", Rtype::A), Protocol::Tcp).await;
    assert!(matches!(got, Err(ExchangeError::BadResponse(_))), "{got:?}");
    assert_eq!(
        up.idle_connections(Protocol::Tcp),
        0,
        "a broken connection is not pooled"
    );
}

#[tokio::test]
async fn ipv6_upstream_over_udp_and_tcp() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback: skipping");
        return;
    }
    let server = TestServer::start_on("::1".parse().unwrap(), Behaviour::Answer).await;
    let up = upstream(server.addr);
    let q = query("www.example.org", Rtype::A);
    exchange(&up, &q, Protocol::Udp).await.unwrap();
    exchange(&up, &q, Protocol::Tcp).await.unwrap();
}

#[tokio::test]
async fn many_concurrent_udp_queries_all_match() {
    let server = TestServer::start(Behaviour::WrongIdThenAnswer).await;
    let up = upstream(server.addr);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let up = up.clone();
        tasks.push(tokio::spawn(async move {
            let q = query(&format!("n{i}.example.org"), Rtype::A);
            let got = up.exchange(&q, ExchangeOptions::new(Protocol::Udp)).await?;
            let (name, _, _) = got.response.question.clone().unwrap();
            assert_eq!(name, q.qname);
            Ok::<_, ExchangeError>(())
        }));
    }
    let mut ok = 0;
    for task in tasks {
        if tokio::time::timeout(BOUND, task)
            .await
            .unwrap()
            .unwrap()
            .is_ok()
        {
            ok += 1;
        }
    }
    assert_eq!(ok, 100);
}

struct Dot {
    server: TestServer,
    ca: tempfile::TempPath,
}

async fn dot_server() -> Dot {
    let certified =
        rcgen::generate_simple_self_signed(vec!["dns.test".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(certified.cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into()),
        )
        .unwrap();
    let server = TestServer::start_tls(Arc::new(config), Behaviour::Answer).await;
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), certified.cert.pem()).unwrap();
    Dot {
        server,
        ca: ca.into_temp_path(),
    }
}

fn tls_upstream(dot: &Dot, name: Option<&str>) -> Upstream {
    let config = tls_client_config(None, Some(&dot.ca)).unwrap();
    let settings = TlsSettings::new(config, name, dot.server.addr.ip()).unwrap();
    Upstream::new(
        dot.server.addr,
        UpstreamConfig {
            tls: Some(settings),
            ..UpstreamConfig::default()
        },
    )
}

#[tokio::test]
async fn dot_exchange_verifies_the_name_and_reuses_the_connection() {
    let dot = dot_server().await;
    let up = tls_upstream(&dot, Some("dns.test"));
    let q = query("www.example.org", Rtype::A);
    for _ in 0..3 {
        let got = exchange(&up, &q, Protocol::Tls).await.unwrap();
        assert_eq!(got.protocol, Protocol::Tls);
        assert_eq!(first_a(&got), Ipv4Addr::new(192, 0, 2, 1));
    }
    assert_eq!(dot.server.tcp_connections(), 1);
    assert_eq!(up.idle_connections(Protocol::Tls), 1);
}

#[tokio::test]
async fn dot_without_a_name_verifies_the_ip() {
    let dot = dot_server().await;
    let up = tls_upstream(&dot, None);
    exchange(&up, &query("www.example.org", Rtype::A), Protocol::Tls)
        .await
        .unwrap();
}

#[tokio::test]
async fn dot_with_the_wrong_name_or_public_roots_fails() {
    let dot = dot_server().await;
    let q = query("www.example.org", Rtype::A);
    let wrong_name = tls_upstream(&dot, Some("other.test"));
    let got = exchange(&wrong_name, &q, Protocol::Tls).await;
    assert!(matches!(got, Err(ExchangeError::Io(_))), "{got:?}");

    let public = Upstream::new(
        dot.server.addr,
        UpstreamConfig {
            tls: Some(
                TlsSettings::new(
                    tls_client_config(None, None).unwrap(),
                    Some("dns.test"),
                    dot.server.addr.ip(),
                )
                .unwrap(),
            ),
            ..UpstreamConfig::default()
        },
    );
    let got = exchange(&public, &q, Protocol::Tls).await;
    assert!(
        matches!(got, Err(ExchangeError::Io(_))),
        "a self-signed certificate is not trusted: {got:?}"
    );
    assert_eq!(dot.server.tcp_queries(), 0);
}

#[tokio::test]
async fn tls_without_settings_is_refused() {
    let server = TestServer::start(Behaviour::Answer).await;
    let up = upstream(server.addr);
    let got = exchange(&up, &query("www.example.org", Rtype::A), Protocol::Tls).await;
    assert!(matches!(got, Err(ExchangeError::NoTls)), "{got:?}");
}

const ZONE: &str = "$ORIGIN example.org.\n$TTL 3600\n@ SOA ns hostmaster 1 7200 900 1209600 300\n@ NS ns\nns A 192.0.2.53\nwww A 192.0.2.80\n";

#[tokio::test]
async fn knot_answers_over_udp_and_tcp() {
    let Some(knot) = Knot::start("example.org", ZONE) else {
        return;
    };
    let up = upstream(knot.addr);
    let q = query("WWW.example.org", Rtype::A);
    for protocol in [Protocol::Udp, Protocol::Tcp, Protocol::Tcp] {
        let got = exchange(&up, &q, protocol).await.unwrap();
        assert_eq!(got.response.response.rcode, OptRcode::NOERROR);
        assert!(got.response.response.authoritative);
        assert_eq!(first_a(&got), Ipv4Addr::new(192, 0, 2, 80));
    }
    let missing = exchange(&up, &query("nope.example.org", Rtype::A), Protocol::Udp)
        .await
        .unwrap();
    assert_eq!(missing.response.response.rcode, OptRcode::NXDOMAIN);
}

#[test]
fn observer_type_is_usable_across_threads() {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let observer: oxidns_net::ConnObserver = Arc::new(move |_, _| {
        c.fetch_add(1, Ordering::Relaxed);
    });
    std::thread::spawn(move || observer(Protocol::Udp, false))
        .join()
        .unwrap();
    assert_eq!(count.load(Ordering::Relaxed), 1);
}

/// Not run by default: `cargo test -p oxidns-net --release -- --ignored --nocapture throughput`.
/// Prints queries per second, one query at a time, per transport: pooled
/// TCP/TLS against a new connection per query (expire 0).
#[tokio::test]
#[ignore]
async fn throughput_of_one_query_at_a_time() {
    const N: u32 = 500;
    let server = TestServer::start(Behaviour::Answer).await;
    let dot = dot_server().await;
    let q = query("www.example.org", Rtype::A);
    let no_reuse = |addr, tls| {
        Upstream::new(
            addr,
            UpstreamConfig {
                expire: Some(Duration::ZERO),
                tls,
                ..UpstreamConfig::default()
            },
        )
    };
    let tls_settings = TlsSettings::new(
        tls_client_config(None, Some(&dot.ca)).unwrap(),
        Some("dns.test"),
        dot.server.addr.ip(),
    )
    .unwrap();
    let cases = [
        ("udp", upstream(server.addr), Protocol::Udp),
        ("tcp pooled", upstream(server.addr), Protocol::Tcp),
        ("tcp new conn", no_reuse(server.addr, None), Protocol::Tcp),
        (
            "tls pooled",
            tls_upstream(&dot, Some("dns.test")),
            Protocol::Tls,
        ),
        (
            "tls new conn",
            no_reuse(dot.server.addr, Some(tls_settings)),
            Protocol::Tls,
        ),
    ];
    for (label, up, protocol) in cases {
        let started = Instant::now();
        for _ in 0..N {
            exchange(&up, &q, protocol).await.unwrap();
        }
        let elapsed = started.elapsed();
        println!(
            "{label:>13}: {:>7.0} q/s ({:?} per query)",
            f64::from(N) / elapsed.as_secs_f64(),
            elapsed / N
        );
    }
}
