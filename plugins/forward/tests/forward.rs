//! `forward` against real upstreams on loopback: the oxidns-net test server
//! (well behaved or not), a DoT server with a certificate made here, Knot DNS.
//! Timing is never asserted exactly: only that answers come within generous bounds.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxidns_net::rustls;
use oxidns_net::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use oxidns_net::test_server::{Behaviour, Knot, TestServer};
use oxidns_plugin_forward::PLUGIN;
use oxidns_server::proto::{Class, Edns, OptRcode, Rcode, RecordData, Response, Rtype};
use oxidns_server::test_util::{config, over_tcp, request, request_with, serve_and_finish};
use oxidns_server::{Config, PluginEntry, Request};

const PLUGINS: &[PluginEntry] = &[PLUGIN, oxidns_plugin_whoami::PLUGIN];
/// Generous: far above the 5s deadline, so only a hang fails a test.
const BOUND: Duration = Duration::from_secs(10);

fn setup(corefile: &str) -> Config {
    config(corefile, PLUGINS).unwrap_or_else(|e| panic!("{corefile}: {e:?}"))
}

/// Serves the request as the server does (errors become SERVFAIL) and reads
/// back what the client would get.
async fn ask(config: &Config, request: Request) -> oxidns_server::proto::ReceivedResponse {
    let (_, wire) = tokio::time::timeout(BOUND, serve_and_finish(config, request))
        .await
        .expect("an answer within the bound");
    Response::parse(&wire).unwrap()
}

async fn ask_a(config: &Config, name: &str) -> oxidns_server::proto::ReceivedResponse {
    ask(config, request(name, Rtype::A)).await
}

fn a_tag(got: &oxidns_server::proto::ReceivedResponse) -> Option<u8> {
    got.response.answer.iter().find_map(|r| match r.data() {
        RecordData::A(a) => Some(a.addr().octets()[3]),
        _ => None,
    })
}

async fn server(behaviour: Behaviour, tag: u8) -> TestServer {
    let server = TestServer::start(behaviour).await;
    server.set_tag(tag);
    server
}

/// Polls `done` every 20ms for at most BOUND.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < BOUND {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

#[tokio::test]
async fn answer_keeps_the_client_s_id_and_question_case() {
    let up = server(Behaviour::Answer, 9).await;
    let config = setup(&format!(". {{\n forward . {}\n}}", up.addr));
    let got = ask_a(&config, "WwW.Example.ORG").await;
    assert_eq!(got.id, 4242);
    assert_eq!(
        got.question.clone().unwrap().0.to_string(),
        "WwW.Example.ORG"
    );
    assert_eq!(got.response.rcode, OptRcode::NOERROR);
    assert_eq!(a_tag(&got), Some(9));
    assert!(got.response.recursion_available);
    let seen = up.last_query().unwrap();
    assert!(seen.rd);
    assert_eq!(seen.qname.to_string(), "WwW.Example.ORG");
}

#[tokio::test]
async fn upstream_gets_fresh_ids() {
    let up = server(Behaviour::Answer, 1).await;
    let config = setup(&format!(". {{\n forward . {}\n}}", up.addr));
    let mut ids = std::collections::HashSet::new();
    for _ in 0..5 {
        ask_a(&config, "www.example.org").await;
        ids.insert(up.last_query().unwrap().id);
    }
    assert!(ids.len() > 1 && !ids.iter().all(|id| *id == 4242));
}

#[tokio::test]
async fn the_request_s_current_edns_is_forwarded() {
    let up = server(Behaviour::Answer, 1).await;
    let config = setup(&format!(". {{\n forward . {}\n}}", up.addr));
    let edns = Edns {
        udp_payload_size: 4096,
        version: 0,
        dnssec_ok: true,
        options: vec![],
    };
    let mut req = request_with("www.example.org", Rtype::A, Class::IN, Some(edns));
    // As `bufsize 1232` before forward would have done.
    req.query.edns.as_mut().unwrap().udp_payload_size = 1232;
    let got = ask(&config, req).await;
    assert!(got.edns.is_some());
    let seen = up.last_query().unwrap();
    assert_eq!(seen.udp_limit(), 1232);
    assert!(seen.dnssec_ok());
}

#[tokio::test]
async fn except_and_other_zones_go_to_the_next_plugin() {
    let up = server(Behaviour::Answer, 1).await;
    let config = setup(&format!(
        ". {{\n forward . {} {{\n  except example.org\n }}\n whoami\n}}",
        up.addr
    ));
    let got = ask_a(&config, "www.example.org").await;
    assert_eq!(got.response.additional.len(), 2, "whoami answered");
    assert_eq!(a_tag(&ask_a(&config, "www.example.net").await), Some(1));
    assert_eq!(up.queries_for(Rtype::A), 1);

    let config = setup(&format!(
        ". {{\n forward example.net {}\n whoami\n}}",
        up.addr
    ));
    let got = ask_a(&config, "www.example.org").await;
    assert_eq!(got.response.additional.len(), 2, "whoami answered");
    assert_eq!(a_tag(&ask_a(&config, "a.EXAMPLE.net").await), Some(1));
}

#[tokio::test]
async fn a_failing_upstream_is_skipped_and_later_marked_down() {
    let bad = server(Behaviour::Silent, 1).await;
    let good = server(Behaviour::Answer, 2).await;
    let config = setup(&format!(
        ". {{\n forward . {} {} {{\n  policy sequential\n  max_fails 1\n  health_check 100ms\n }}\n}}",
        bad.addr, good.addr
    ));
    for _ in 0..3 {
        let got = ask_a(&config, "www.example.org").await;
        assert_eq!(a_tag(&got), Some(2));
    }
    // Health checks (NS queries) fail too, so the silent upstream goes down…
    assert!(eventually(|| bad.queries_for(Rtype::NS) >= 2).await);
    let tried = bad.queries_for(Rtype::A);
    for _ in 0..5 {
        assert_eq!(a_tag(&ask_a(&config, "www.example.org").await), Some(2));
    }
    // …and is no longer tried (at most one query raced the health check).
    assert!(bad.queries_for(Rtype::A) <= tried + 1);
}

#[tokio::test]
async fn health_checks_bring_an_upstream_back() {
    let first = server(Behaviour::Silent, 1).await;
    let second = server(Behaviour::Answer, 2).await;
    let config = setup(&format!(
        ". {{\n forward . {} {} {{\n  policy sequential\n  max_fails 1\n  health_check 100ms no_rec\n }}\n}}",
        first.addr, second.addr
    ));
    assert_eq!(a_tag(&ask_a(&config, "www.example.org").await), Some(2));
    assert!(eventually(|| first.queries_for(Rtype::NS) >= 1).await);
    let check = first.last_query().unwrap();
    assert_eq!(check.qtype, Rtype::NS);
    assert!(check.qname.is_root());
    assert!(!check.rd, "no_rec");
    first.set(Behaviour::Rcode(Rcode::REFUSED)); // any answer is healthy
    let checks = first.queries_for(Rtype::NS);
    assert!(eventually(|| first.queries_for(Rtype::NS) > checks).await);
    first.set(Behaviour::Answer);
    let mut back = false;
    for _ in 0..50 {
        if a_tag(&ask_a(&config, "www.example.org").await) == Some(1) {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "the first upstream answers again");
}

#[tokio::test]
async fn all_upstreams_failing_still_answers_every_client_in_time() {
    let a = server(Behaviour::Silent, 1).await;
    let b = server(Behaviour::Garbage, 2).await;
    let config = Arc::new(setup(&format!(
        ". {{\n forward . {} {}\n}}",
        a.addr, b.addr
    )));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..5 {
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            ask_a(&config, &format!("n{i}.example.org")).await
        }));
    }
    for task in tasks {
        let got = task.await.unwrap();
        assert_eq!(got.response.rcode, OptRcode::SERVFAIL);
        assert_eq!(got.id, 4242);
    }
    assert!(started.elapsed() < BOUND);
}

#[tokio::test]
async fn a_closed_port_fails_over_to_the_working_upstream() {
    let closed = {
        let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        socket.local_addr().unwrap()
    };
    let good = server(Behaviour::Answer, 2).await;
    let config = setup(&format!(". {{\n forward . {closed} {}\n}}", good.addr));
    for _ in 0..10 {
        assert_eq!(a_tag(&ask_a(&config, "www.example.org").await), Some(2));
    }
}

#[tokio::test]
async fn spoofing_and_garbage_upstreams_never_reach_the_client() {
    for behaviour in [
        Behaviour::WrongId,
        Behaviour::WrongQuestion,
        Behaviour::Garbage,
        Behaviour::Slow(Duration::from_secs(4)),
    ] {
        let bad = server(behaviour.clone(), 1).await;
        let good = server(Behaviour::Answer, 2).await;
        let config = setup(&format!(
            ". {{\n forward . {} {} {{\n  policy sequential\n }}\n}}",
            bad.addr, good.addr
        ));
        let got = ask_a(&config, "www.example.org").await;
        assert_eq!(a_tag(&got), Some(2), "{behaviour:?}");
        assert_eq!(
            got.question.clone().unwrap().0.to_string(),
            "www.example.org"
        );
    }
}

#[tokio::test]
async fn spoofed_datagrams_before_the_answer_are_ignored() {
    let up = server(Behaviour::WrongIdThenAnswer, 3).await;
    let config = setup(&format!(". {{\n forward . {}\n}}", up.addr));
    assert_eq!(a_tag(&ask_a(&config, "www.example.org").await), Some(3));
    up.set(Behaviour::WrongQuestionThenAnswer);
    assert_eq!(a_tag(&ask_a(&config, "www.example.org").await), Some(3));
}

#[tokio::test]
async fn truncation_is_passed_to_udp_clients_and_resolved_with_prefer_udp() {
    let up = server(Behaviour::TruncateUdp, 4).await;
    let config = setup(&format!(". {{\n forward . {}\n}}", up.addr));
    let got = ask_a(&config, "www.example.org").await;
    assert!(got.response.truncated, "the UDP client retries over TCP");
    let tcp = over_tcp(
        request("www.example.org", Rtype::A),
        "127.0.0.1:40001".parse().unwrap(),
    );
    let got = ask(&config, tcp).await;
    assert!(!got.response.truncated);
    assert_eq!(a_tag(&got), Some(4));

    let config = setup(&format!(
        ". {{\n forward . {} {{\n  prefer_udp\n }}\n}}",
        up.addr
    ));
    let tcp = over_tcp(
        request("www.example.org", Rtype::A),
        "127.0.0.1:40001".parse().unwrap(),
    );
    let udp_before = up.udp_queries();
    let got = ask(&config, tcp).await;
    assert_eq!(a_tag(&got), Some(4));
    assert_eq!(up.udp_queries(), udp_before + 1, "asked over UDP first");
}

#[tokio::test]
async fn force_tcp_uses_tcp_and_reuses_the_connection() {
    let up = server(Behaviour::Answer, 5).await;
    let config = setup(&format!(
        ". {{\n forward . {} {{\n  force_tcp\n }}\n}}",
        up.addr
    ));
    for _ in 0..4 {
        assert_eq!(a_tag(&ask_a(&config, "www.example.org").await), Some(5));
    }
    assert_eq!(up.udp_queries(), 0);
    assert_eq!(up.tcp_queries(), 4);
    assert_eq!(up.tcp_connections(), 1);
}

#[tokio::test]
async fn max_concurrent_refuses_the_excess() {
    let up = server(Behaviour::Slow(Duration::from_millis(500)), 6).await;
    let config = Arc::new(setup(&format!(
        ". {{\n forward . {} {{\n  max_concurrent 2\n }}\n}}",
        up.addr
    )));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            ask_a(&config, &format!("n{i}.example.org")).await
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap().response.rcode {
            OptRcode::NOERROR => ok += 1,
            OptRcode::REFUSED => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(ok >= 1 && refused >= 1, "ok {ok}, refused {refused}");
    assert!(ok <= 2 + 6, "sanity");
}

#[tokio::test]
async fn next_rcode_passes_to_the_next_forward() {
    let first = server(Behaviour::Rcode(Rcode::NXDOMAIN), 1).await;
    let second = server(Behaviour::Answer, 2).await;
    let config = setup(&format!(
        ". {{\n forward . {} {{\n  next NXDOMAIN\n }}\n forward . {}\n}}",
        first.addr, second.addr
    ));
    assert_eq!(a_tag(&ask_a(&config, "www.example.org").await), Some(2));
    first.set(Behaviour::Answer);
    assert_eq!(a_tag(&ask_a(&config, "www.example.org").await), Some(1));

    // Without a next plugin the answer itself is returned.
    first.set(Behaviour::Rcode(Rcode::NXDOMAIN));
    let alone = setup(&format!(
        ". {{\n forward . {} {{\n  next NXDOMAIN\n }}\n}}",
        first.addr
    ));
    let got = ask_a(&alone, "www.example.org").await;
    assert_eq!(got.response.rcode, OptRcode::NXDOMAIN);
}

#[tokio::test]
async fn failover_tries_the_next_upstream_on_listed_rcodes() {
    let first = server(Behaviour::Rcode(Rcode::SERVFAIL), 1).await;
    let second = server(Behaviour::Answer, 2).await;
    let config = setup(&format!(
        ". {{\n forward . {} {} {{\n  policy sequential\n  failover SERVFAIL REFUSED\n }}\n}}",
        first.addr, second.addr
    ));
    assert_eq!(a_tag(&ask_a(&config, "www.example.org").await), Some(2));
    // Every upstream says REFUSED: the last answer is returned.
    second.set(Behaviour::Rcode(Rcode::REFUSED));
    let got = ask_a(&config, "www.example.org").await;
    assert_eq!(got.response.rcode, OptRcode::REFUSED);
}

#[tokio::test]
async fn failfast_answers_servfail_once_every_upstream_is_down() {
    let a = server(Behaviour::Silent, 1).await;
    let b = server(Behaviour::Silent, 2).await;
    let config = setup(&format!(
        ". {{\n forward . {} {} {{\n  max_fails 1\n  health_check 100ms\n  failfast_all_unhealthy_upstreams\n }}\n}}",
        a.addr, b.addr
    ));
    let got = ask_a(&config, "www.example.org").await;
    assert_eq!(got.response.rcode, OptRcode::SERVFAIL);
    assert!(eventually(|| a.queries_for(Rtype::NS) >= 1 && b.queries_for(Rtype::NS) >= 1).await);
    // Both down after their first failed check: no upstream is asked any more.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let asked = a.queries_for(Rtype::A) + b.queries_for(Rtype::A);
    let got = ask_a(&config, "www.example.org").await;
    assert_eq!(got.response.rcode, OptRcode::SERVFAIL);
    assert_eq!(a.queries_for(Rtype::A) + b.queries_for(Rtype::A), asked);
}

#[tokio::test]
async fn round_robin_spreads_queries() {
    let a = server(Behaviour::Answer, 1).await;
    let b = server(Behaviour::Answer, 2).await;
    let config = setup(&format!(
        ". {{\n forward . {} {} {{\n  policy round_robin\n }}\n}}",
        a.addr, b.addr
    ));
    let mut tags = std::collections::HashSet::new();
    for _ in 0..4 {
        tags.extend(a_tag(&ask_a(&config, "www.example.org").await));
    }
    assert_eq!(tags.len(), 2);
}

#[tokio::test]
async fn ipv6_upstream() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback: skipping");
        return;
    }
    let up = TestServer::start_on("::1".parse().unwrap(), Behaviour::Answer).await;
    let config = setup(&format!(". {{\n forward . {}\n}}", up.addr));
    assert_eq!(a_tag(&ask_a(&config, "www.example.org").await), Some(1));
}

#[tokio::test]
async fn dns_over_tls_upstream_with_a_ca_file() {
    let certified = rcgen::generate_simple_self_signed(vec!["dns.test".to_owned()]).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(certified.cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into()),
        )
        .unwrap();
    let up = TestServer::start_tls(Arc::new(server_config), Behaviour::Answer).await;
    up.set_tag(8);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, certified.cert.pem()).unwrap();
    let config = setup(&format!(
        ". {{\n forward . tls://{} {{\n  tls {}\n  tls_servername dns.test\n }}\n}}",
        up.addr,
        ca.display()
    ));
    for _ in 0..3 {
        assert_eq!(a_tag(&ask_a(&config, "www.example.org").await), Some(8));
    }
    assert_eq!(up.tcp_connections(), 1, "the TLS connection is reused");

    // Per-upstream name in the TO; a wrong name never gets an answer.
    let wrong = setup(&format!(
        ". {{\n forward . tls://{}%other.test:{} {{\n  tls {}\n }}\n}}",
        up.addr.ip(),
        up.addr.port(),
        ca.display()
    ));
    let got = ask_a(&wrong, "www.example.org").await;
    assert_eq!(got.response.rcode, OptRcode::SERVFAIL);
}

const ZONE: &str = "$ORIGIN example.org.\n$TTL 3600\n@ SOA ns hostmaster 1 7200 900 1209600 300\n@ NS ns\nns A 192.0.2.53\nwww A 192.0.2.80\n";

#[tokio::test]
async fn knot_as_upstream() {
    let Some(knot) = Knot::start("example.org", ZONE) else {
        return;
    };
    let config = setup(&format!(". {{\n forward . {}\n}}", knot.addr));
    let got = ask_a(&config, "WWW.example.org").await;
    assert_eq!(got.response.rcode, OptRcode::NOERROR);
    assert!(got.response.authoritative);
    assert_eq!(a_tag(&got), Some(80));
    assert_eq!(
        got.question.clone().unwrap().0.to_string(),
        "WWW.example.org"
    );
    let got = ask_a(&config, "nope.example.org").await;
    assert_eq!(got.response.rcode, OptRcode::NXDOMAIN);
    assert_eq!(got.response.authority.len(), 1, "the SOA");
    let tcp = over_tcp(
        request("www.example.org", Rtype::A),
        "127.0.0.1:40001".parse().unwrap(),
    );
    assert_eq!(a_tag(&ask(&config, tcp).await), Some(80));
}

/// Records metric names with their labels.
#[derive(Default, Clone)]
struct Recorded(Arc<Mutex<Vec<Sample>>>);

/// A metric's name, its labels and a value it was given.
type Sample = (String, Vec<(String, String)>, f64);

struct Entry {
    name: String,
    labels: Vec<(String, String)>,
    sink: Recorded,
}

impl Entry {
    fn push(&self, value: f64) {
        self.sink
            .0
            .lock()
            .unwrap()
            .push((self.name.clone(), self.labels.clone(), value));
    }
}

impl metrics::CounterFn for Entry {
    fn increment(&self, value: u64) {
        self.push(value as f64);
    }
    fn absolute(&self, value: u64) {
        self.push(value as f64);
    }
}

impl metrics::HistogramFn for Entry {
    fn record(&self, value: f64) {
        self.push(value);
    }
}

impl metrics::GaugeFn for Entry {
    fn increment(&self, value: f64) {
        self.push(value);
    }
    fn decrement(&self, value: f64) {
        self.push(-value);
    }
    fn set(&self, value: f64) {
        self.push(value);
    }
}

impl Recorded {
    fn entry(&self, key: &metrics::Key) -> Arc<Entry> {
        Arc::new(Entry {
            name: key.name().to_owned(),
            labels: key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect(),
            sink: self.clone(),
        })
    }

    fn find(&self, name: &str) -> Vec<Vec<(String, String)>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, labels, _)| labels.clone())
            .collect()
    }
}

impl metrics::Recorder for Recorded {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.entry(key))
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(self.entry(key))
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::from_arc(self.entry(key))
    }
}

fn label(labels: &[(String, String)], key: &str) -> String {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

#[test]
fn metrics_have_coredns_names_and_labels() {
    let recorded = Recorded::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorded, || {
        runtime.block_on(async {
            let good = server(Behaviour::Answer, 1).await;
            let config = setup(&format!(". {{\n forward . {}\n}}", good.addr));
            ask_a(&config, "www.example.org").await;

            let slow = server(Behaviour::Slow(Duration::from_millis(300)), 1).await;
            let limited = Arc::new(setup(&format!(
                ". {{\n forward . {} {{\n  max_concurrent 1\n  force_tcp\n }}\n}}",
                slow.addr
            )));
            let first = {
                let limited = limited.clone();
                tokio::spawn(async move { ask_a(&limited, "a.example.org").await })
            };
            tokio::time::sleep(Duration::from_millis(100)).await;
            let second = ask_a(&limited, "b.example.org").await;
            assert_eq!(second.response.rcode, OptRcode::REFUSED);
            first.await.unwrap();
            ask_a(&limited, "c.example.org").await;

            let silent = server(Behaviour::Silent, 1).await;
            let failing = setup(&format!(
                ". {{\n forward . {} {{\n  health_check 100ms\n  max_connect_attempts 1\n  failfast_all_unhealthy_upstreams\n }}\n}}",
                silent.addr
            ));
            ask_a(&failing, "www.example.org").await;
            assert!(eventually(|| silent.queries_for(Rtype::NS) >= 2).await);
            tokio::time::sleep(Duration::from_millis(1200)).await;
            let got = ask_a(&failing, "www.example.org").await;
            assert_eq!(got.response.rcode, OptRcode::SERVFAIL);
        });
    });

    let durations = recorded.find("coredns_proxy_request_duration_seconds");
    assert!(!durations.is_empty());
    assert_eq!(label(&durations[0], "proxy_name"), "forward");
    assert_eq!(label(&durations[0], "rcode"), "NOERROR");
    assert!(label(&durations[0], "to").starts_with("127.0.0.1:"));

    assert_eq!(
        recorded
            .find("coredns_forward_max_concurrent_rejects_total")
            .len(),
        1
    );

    let misses = recorded.find("coredns_proxy_conn_cache_misses_total");
    assert!(misses.iter().any(|l| label(l, "proto") == "udp"));
    assert!(misses.iter().any(|l| label(l, "proto") == "tcp"));
    let hits = recorded.find("coredns_proxy_conn_cache_hits_total");
    assert!(
        hits.iter().any(|l| label(l, "proto") == "tcp"),
        "the TCP connection was reused"
    );

    let failures = recorded.find("coredns_proxy_healthcheck_failures_total");
    assert!(!failures.is_empty());
    assert_eq!(label(&failures[0], "proxy_name"), "forward");
    assert!(label(&failures[0], "to").starts_with("127.0.0.1:"));

    assert!(
        !recorded
            .find("coredns_forward_healthcheck_broken_total")
            .is_empty()
    );
}
