use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use oxidns_server::proto::domain::rdata::{A, Ns, Soa, Txt};
use oxidns_server::proto::{
    Class, Edns, Name, OptRcode, Rcode, Record, RecordData, Response, Rtype, Serial, Ttl,
    name_from_str,
};
use oxidns_server::test_util::{config, config_error, request, request_with, serve_chain};
use oxidns_server::{Handler, HandlerFuture, Next, PluginError, Request};
use tokio::sync::Notify;

use super::*;

const PLUGINS: &[PluginEntry] = &[
    oxidns_plugin_log::PLUGIN,
    oxidns_plugin_errors::PLUGIN,
    PLUGIN,
    oxidns_plugin_whoami::PLUGIN,
];

fn a(owner: &str, ttl: u32) -> Record {
    Record::new(
        name_from_str(owner).unwrap(),
        Class::IN,
        Ttl::from_secs(ttl),
        RecordData::A(A::new(Ipv4Addr::new(192, 0, 2, 1))),
    )
}

fn ns(owner: &str, ttl: u32) -> Record {
    Record::new(
        name_from_str(owner).unwrap(),
        Class::IN,
        Ttl::from_secs(ttl),
        RecordData::Ns(Ns::new(name_from_str("ns.example.org").unwrap())),
    )
}

fn soa(ttl: u32, minimum: u32) -> Record {
    Record::new(
        name_from_str("example.org").unwrap(),
        Class::IN,
        Ttl::from_secs(ttl),
        RecordData::Soa(Soa::new(
            name_from_str("ns.example.org").unwrap(),
            name_from_str("hostmaster.example.org").unwrap(),
            Serial(1),
            Ttl::from_secs(7200),
            Ttl::from_secs(900),
            Ttl::from_secs(1209600),
            Ttl::from_secs(minimum),
        )),
    )
}

fn answer(ttl: u32) -> Response {
    let mut response = Response::new(Rcode::NOERROR);
    response.authoritative = true;
    response.answer.push(a("www.example.org", ttl));
    response
}

fn negative(rcode: Rcode, soa_ttl: u32, minimum: u32) -> Response {
    let mut response = Response::new(rcode);
    response.authority.push(soa(soa_ttl, minimum));
    response
}

fn ttls(response: &Response) -> Vec<u32> {
    response
        .answer
        .iter()
        .chain(&response.authority)
        .chain(&response.additional)
        .map(|r| r.ttl().as_secs())
        .collect()
}

/// The end of the test chain: answers what it is told, counts its queries,
/// and when gated waits to be let through.
struct Origin {
    calls: AtomicUsize,
    answer: Mutex<Result<Response, PluginError>>,
    gate: Mutex<Option<Arc<Notify>>>,
}

impl Origin {
    fn new(answer: Response) -> Arc<Origin> {
        Arc::new(Origin {
            calls: AtomicUsize::new(0),
            answer: Mutex::new(Ok(answer)),
            gate: Mutex::new(None),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn answer_with(&self, answer: Response) {
        *self.answer.lock().unwrap() = Ok(answer);
    }

    fn fail(&self) {
        *self.answer.lock().unwrap() = Err(PluginError::new("origin", "upstream down"));
    }

    /// Holds every query from now on until the returned gate is opened.
    fn close_gate(&self) -> Arc<Notify> {
        let gate = Arc::new(Notify::new());
        *self.gate.lock().unwrap() = Some(gate.clone());
        gate
    }

    fn open_gate(&self) {
        *self.gate.lock().unwrap() = None;
    }
}

impl Handler for Origin {
    fn name(&self) -> &'static str {
        "origin"
    }

    fn serve<'a>(&'a self, _: &'a mut Request, _: Next<'a>) -> HandlerFuture<'a> {
        HandlerFuture::new(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let gate = self.gate.lock().unwrap().clone();
            if let Some(gate) = gate {
                gate.notified().await;
            }
            self.answer.lock().unwrap().clone()
        })
    }
}

/// A cache in front of an origin, with a clock the test moves.
struct Harness {
    clock: Arc<ManualClock>,
    origin: Arc<Origin>,
    cache: Cache,
    chain: Arc<[Arc<dyn Handler>]>,
}

impl Harness {
    /// The cache in front of `origin`; background work goes through the
    /// chain after the cache, as in the server.
    fn new(settings: Settings, origin: Response) -> Harness {
        let clock = Arc::new(ManualClock::new());
        let origin = Origin::new(origin);
        let cache = Cache::new(settings, clock.clone());
        let chain: Arc<[Arc<dyn Handler>]> = Arc::new([
            Arc::new(cache.clone()) as Arc<dyn Handler>,
            origin.clone() as Arc<dyn Handler>,
        ]);
        Harness {
            clock,
            origin,
            cache,
            chain,
        }
    }

    async fn ask(&self, qname: &str, qtype: Rtype) -> Response {
        self.ask_request(request(qname, qtype)).await.unwrap()
    }

    async fn ask_request(&self, mut req: Request) -> Result<Response, PluginError> {
        serve_chain(&self.chain, &mut req).await
    }

    fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}

/// Lets spawned tasks run until they wait on something.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

fn stale_settings(verify: bool) -> Settings {
    Settings {
        serve_stale: Some(ServeStale {
            up_to: Duration::from_secs(3600),
            verify,
        }),
        ..Settings::default()
    }
}

#[tokio::test]
async fn ttl_counts_down_from_when_the_answer_was_stored() {
    let mut upstream = answer(300);
    upstream.authority.push(ns("example.org", 300));
    upstream.additional.push(a("ns.example.org", 300));
    let h = Harness::new(Settings::default(), upstream);
    assert_eq!(
        ttls(&h.ask("www.example.org", Rtype::A).await),
        [300, 300, 300]
    );
    h.advance(100);
    let response = h.ask("www.example.org", Rtype::A).await;
    assert_eq!(
        ttls(&response),
        [200, 200, 200],
        "every section counts down"
    );
    assert_eq!(h.origin.calls(), 1);
}

/// A hit for a request that may take wire-form answers copies the stored
/// sections and ages their TTLs: the bytes sent are those of the hit made
/// from records.
#[tokio::test]
async fn a_hit_in_wire_form_sends_the_same_bytes_with_aged_ttls() {
    let mut upstream = answer(300);
    upstream.authority.push(ns("example.org", 300));
    upstream.additional.push(a("ns.example.org", 300));
    let h = Harness::new(Settings::default(), upstream);
    h.ask("www.example.org", Rtype::A).await;
    h.advance(100);
    let plain = h.ask("WWW.example.org", Rtype::A).await;
    assert!(plain.wire.is_none(), "requests made elsewhere get records");
    let mut req = request("WWW.example.org", Rtype::A);
    req.wire_answers = true;
    let query = req.query.clone();
    let wire = h.ask_request(req).await.unwrap();
    assert!(wire.wire.is_some());
    assert_eq!(wire.encode(&query, 512), plain.encode(&query, 512));
    let sent = Response::parse(&wire.encode(&query, 512)).unwrap().response;
    assert_eq!(ttls(&sent), [200, 200, 200]);
    assert!(!sent.authoritative);
}

/// An answer over 65,535 bytes once encoded has no wire form (what a
/// plugin put together, not what an upstream sent): its records are kept.
#[tokio::test]
async fn an_answer_too_large_for_wire_form_is_kept_as_records() {
    let mut upstream = Response::new(Rcode::NOERROR);
    for i in 0..300u16 {
        let text = format!("{i:03}{}", "x".repeat(240));
        upstream.answer.push(Record::new(
            name_from_str("big.example.org").unwrap(),
            Class::IN,
            Ttl::from_secs(300),
            RecordData::Txt(Txt::build_from_slice(text.as_bytes()).unwrap()),
        ));
    }
    let h = Harness::new(Settings::default(), upstream.clone());
    h.ask("big.example.org", Rtype::TXT).await;
    h.advance(100);
    let mut req = request("big.example.org", Rtype::TXT);
    req.wire_answers = true;
    let hit = h.ask_request(req).await.unwrap();
    assert_eq!(h.origin.calls(), 1, "a hit");
    assert!(hit.wire.is_none());
    assert_eq!(hit.answer.len(), 300);
    assert!(ttls(&hit).iter().all(|&ttl| ttl == 200));
    assert_eq!(hit.answer[299].data(), upstream.answer[299].data());
}

#[tokio::test]
async fn expired_entry_is_fetched_again() {
    let h = Harness::new(Settings::default(), answer(60));
    h.ask("www.example.org", Rtype::A).await;
    h.advance(60);
    assert_eq!(ttls(&h.ask("www.example.org", Rtype::A).await), [60]);
    assert_eq!(h.origin.calls(), 2);
}

#[tokio::test]
async fn question_case_does_not_split_the_cache() {
    let h = Harness::new(Settings::default(), answer(300));
    h.ask("www.example.org", Rtype::A).await;
    h.ask("WWW.Example.ORG", Rtype::A).await;
    assert_eq!(h.origin.calls(), 1);
}

#[tokio::test]
async fn hits_are_not_authoritative() {
    let h = Harness::new(Settings::default(), answer(300));
    assert!(h.ask("www.example.org", Rtype::A).await.authoritative);
    assert!(!h.ask("www.example.org", Rtype::A).await.authoritative);
}

#[tokio::test]
async fn max_ttl_caps_what_is_kept_and_served() {
    let mut settings = Settings::default();
    settings.success.max_ttl = Duration::from_secs(10);
    let h = Harness::new(settings, answer(300));
    assert_eq!(ttls(&h.ask("www.example.org", Rtype::A).await), [10]);
    h.advance(10);
    h.ask("www.example.org", Rtype::A).await;
    assert_eq!(h.origin.calls(), 2);
}

#[tokio::test]
async fn min_ttl_keeps_short_lived_answers_longer() {
    let h = Harness::new(Settings::default(), answer(1));
    h.ask("www.example.org", Rtype::A).await;
    h.advance(4);
    let response = h.ask("www.example.org", Rtype::A).await;
    assert_eq!(h.origin.calls(), 1, "kept for the minimum TTL of 5s");
    assert_eq!(
        ttls(&response),
        [0],
        "but never served with more TTL than it had"
    );
}

#[tokio::test]
async fn negative_ttl_is_the_smaller_of_soa_ttl_and_minimum() {
    let h = Harness::new(Settings::default(), negative(Rcode::NXDOMAIN, 3600, 60));
    let response = h.ask("nope.example.org", Rtype::A).await;
    assert_eq!(response.rcode, OptRcode::NXDOMAIN);
    assert_eq!(ttls(&response), [60]);
    h.advance(59);
    assert_eq!(ttls(&h.ask("nope.example.org", Rtype::A).await), [1]);
    assert_eq!(h.origin.calls(), 1);
    h.advance(1);
    h.ask("nope.example.org", Rtype::A).await;
    assert_eq!(h.origin.calls(), 2);
}

#[tokio::test]
async fn negative_ttl_is_capped_by_the_denial_max_ttl() {
    let h = Harness::new(Settings::default(), negative(Rcode::NXDOMAIN, 86400, 86400));
    assert_eq!(ttls(&h.ask("nope.example.org", Rtype::A).await), [1800]);
}

#[tokio::test]
async fn nxdomain_answers_every_type_of_the_name() {
    let h = Harness::new(Settings::default(), negative(Rcode::NXDOMAIN, 300, 300));
    h.ask("nope.example.org", Rtype::A).await;
    let response = h.ask("Nope.example.org", Rtype::MX).await;
    assert_eq!(response.rcode, OptRcode::NXDOMAIN);
    assert_eq!(h.origin.calls(), 1, "RFC 2308 §5: the name does not exist");
}

#[tokio::test]
async fn nodata_is_cached_for_its_type_only() {
    let h = Harness::new(Settings::default(), negative(Rcode::NOERROR, 300, 300));
    h.ask("www.example.org", Rtype::MX).await;
    h.ask("www.example.org", Rtype::MX).await;
    assert_eq!(h.origin.calls(), 1);
    h.ask("www.example.org", Rtype::TXT).await;
    assert_eq!(h.origin.calls(), 2);
}

#[tokio::test]
async fn negative_answer_without_soa_is_not_cached() {
    let h = Harness::new(Settings::default(), Response::new(Rcode::NXDOMAIN));
    h.ask("nope.example.org", Rtype::A).await;
    h.ask("nope.example.org", Rtype::A).await;
    assert_eq!(h.origin.calls(), 2);
}

#[tokio::test]
async fn positive_answer_replaces_a_newer_name_nxdomain_only_when_newer() {
    // NXDOMAIN for the name, then the name appears: the positive answer
    // stored afterwards wins over the name-wide NXDOMAIN.
    let h = Harness::new(Settings::default(), negative(Rcode::NXDOMAIN, 60, 60));
    h.ask("www.example.org", Rtype::MX).await;
    h.advance(60);
    h.origin.answer_with(answer(300));
    let response = h.ask("www.example.org", Rtype::A).await;
    assert_eq!(response.rcode, OptRcode::NOERROR);
    assert_eq!(h.ask("www.example.org", Rtype::A).await.answer.len(), 1);
    assert_eq!(h.origin.calls(), 2);
}

#[tokio::test]
async fn capacity_bounds_the_cache_and_eviction_keeps_hot_entries() {
    let mut settings = Settings::default();
    settings.success.capacity = 64;
    let h = Harness::new(settings, answer(300));
    h.ask("hot.example.org", Rtype::A).await;
    for i in 0..1000 {
        h.ask(&format!("cold{i}.example.org"), Rtype::A).await;
        h.ask("hot.example.org", Rtype::A).await;
    }
    assert_eq!(
        h.origin.calls(),
        1001,
        "the hot name was never fetched again"
    );
    let (success, _) = h.cache.len();
    assert!(success <= 64 + 8, "{success} entries for a capacity of 64");
}

#[tokio::test]
async fn concurrent_misses_make_one_upstream_query() {
    let h = Arc::new(Harness::new(Settings::default(), answer(300)));
    let gate = h.origin.close_gate();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.ask("www.example.org", Rtype::A).await
        }));
    }
    settle().await;
    assert_eq!(
        h.origin.calls(),
        1,
        "one query upstream while 20 clients wait"
    );
    h.origin.open_gate();
    gate.notify_one();
    for task in tasks {
        let response = task.await.unwrap();
        assert_eq!(ttls(&response), [300]);
    }
    assert_eq!(h.origin.calls(), 1);
}

#[tokio::test]
async fn waiters_ask_for_themselves_when_the_answer_is_not_cacheable() {
    let h = Arc::new(Harness::new(
        Settings::default(),
        Response::new(Rcode::REFUSED),
    ));
    let gate = h.origin.close_gate();
    let first = {
        let h = h.clone();
        tokio::spawn(async move { h.ask("www.example.org", Rtype::A).await })
    };
    let second = {
        let h = h.clone();
        tokio::spawn(async move { h.ask("www.example.org", Rtype::A).await })
    };
    settle().await;
    h.origin.open_gate();
    gate.notify_one();
    assert_eq!(first.await.unwrap().rcode, OptRcode::REFUSED);
    assert_eq!(second.await.unwrap().rcode, OptRcode::REFUSED);
    assert_eq!(h.origin.calls(), 2);
}

#[tokio::test]
async fn prefetch_refreshes_a_popular_entry_without_delaying_the_client() {
    let settings = Settings {
        prefetch: Some(Prefetch {
            amount: 2,
            window: Duration::from_secs(60),
            percentage: 10,
        }),
        ..Settings::default()
    };
    let h = Harness::new(settings, answer(100));
    h.ask("www.example.org", Rtype::A).await;
    h.advance(50);
    h.ask("www.example.org", Rtype::A).await;
    assert_eq!(
        h.origin.calls(),
        1,
        "not yet within the last 10% of the TTL"
    );
    h.advance(41);
    let gate = h.origin.close_gate();
    let response = h.ask("www.example.org", Rtype::A).await;
    assert_eq!(ttls(&response), [9], "answered from the cache at once");
    settle().await;
    assert_eq!(h.origin.calls(), 2, "the prefetch is under way");
    h.origin.open_gate();
    gate.notify_one();
    settle().await;
    h.advance(29);
    let response = h.ask("www.example.org", Rtype::A).await;
    assert_eq!(
        ttls(&response),
        [71],
        "the refreshed entry, past the old expiry"
    );
    assert_eq!(h.origin.calls(), 2);
}

#[tokio::test]
async fn prefetch_needs_hits_without_gaps() {
    let settings = Settings {
        prefetch: Some(Prefetch {
            amount: 3,
            window: Duration::from_secs(10),
            percentage: 50,
        }),
        ..Settings::default()
    };
    let h = Harness::new(settings, answer(100));
    h.ask("www.example.org", Rtype::A).await;
    for _ in 0..3 {
        h.advance(20);
        h.ask("www.example.org", Rtype::A).await;
    }
    settle().await;
    assert_eq!(h.origin.calls(), 1, "20s gaps are more than the 10s window");
}

#[tokio::test]
async fn serve_stale_verify_answers_stale_with_ttl_30_when_the_refresh_fails() {
    let h = Harness::new(stale_settings(true), answer(60));
    h.ask("www.example.org", Rtype::A).await;
    h.advance(120);
    h.origin.fail();
    let response = h.ask("www.example.org", Rtype::A).await;
    assert_eq!(ttls(&response), [STALE_TTL]);
    assert_eq!(h.origin.calls(), 2, "upstream was asked first");
}

#[tokio::test]
async fn serve_stale_verify_answers_fresh_data_when_upstream_answers() {
    let h = Harness::new(stale_settings(true), answer(60));
    h.ask("www.example.org", Rtype::A).await;
    h.advance(120);
    h.origin.answer_with(answer(30));
    assert_eq!(ttls(&h.ask("www.example.org", Rtype::A).await), [30]);
}

#[tokio::test]
async fn serve_stale_keeps_stale_data_over_a_servfail_refresh() {
    let h = Harness::new(stale_settings(true), answer(60));
    h.ask("www.example.org", Rtype::A).await;
    h.advance(120);
    h.origin.answer_with(Response::new(Rcode::SERVFAIL));
    let response = h.ask("www.example.org", Rtype::A).await;
    assert_eq!(response.rcode, OptRcode::NOERROR);
    assert_eq!(ttls(&response), [STALE_TTL]);
}

#[tokio::test]
async fn serve_stale_waits_for_a_failed_upstream_no_more_than_every_30s() {
    let h = Harness::new(stale_settings(true), answer(60));
    h.ask("www.example.org", Rtype::A).await;
    h.advance(120);
    h.origin.fail();
    h.ask("www.example.org", Rtype::A).await;
    h.advance(10);
    h.ask("www.example.org", Rtype::A).await;
    assert_eq!(h.origin.calls(), 2, "failure recheck timer (RFC 8767 §5)");
    h.advance(20);
    h.ask("www.example.org", Rtype::A).await;
    assert_eq!(h.origin.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn serve_stale_verify_answers_stale_when_the_refresh_is_slow() {
    let h = Harness::new(stale_settings(true), answer(60));
    h.ask("www.example.org", Rtype::A).await;
    h.advance(120);
    let gate = h.origin.close_gate();
    h.origin.answer_with(answer(45));
    let started = tokio::time::Instant::now();
    let response = h.ask("www.example.org", Rtype::A).await;
    assert_eq!(ttls(&response), [STALE_TTL]);
    assert_eq!(started.elapsed(), CLIENT_RESPONSE_TIMER);
    // The refresh goes on behind the stale answer and is stored.
    h.origin.open_gate();
    gate.notify_one();
    settle().await;
    assert_eq!(ttls(&h.ask("www.example.org", Rtype::A).await), [45]);
    assert_eq!(h.origin.calls(), 2);
}

#[tokio::test]
async fn serve_stale_immediate_answers_at_once_and_refreshes_behind() {
    let h = Harness::new(stale_settings(false), answer(60));
    h.ask("www.example.org", Rtype::A).await;
    h.advance(120);
    let gate = h.origin.close_gate();
    h.origin.answer_with(answer(45));
    let response = h.ask("www.example.org", Rtype::A).await;
    assert_eq!(ttls(&response), [STALE_TTL], "not held up by the refresh");
    h.origin.open_gate();
    gate.notify_one();
    settle().await;
    assert_eq!(ttls(&h.ask("www.example.org", Rtype::A).await), [45]);
    assert_eq!(h.origin.calls(), 2);
}

#[tokio::test]
async fn serve_stale_is_bounded_by_its_duration() {
    let mut settings = stale_settings(true);
    settings.serve_stale.as_mut().unwrap().up_to = Duration::from_secs(600);
    let h = Harness::new(settings, answer(60));
    h.ask("www.example.org", Rtype::A).await;
    h.origin.fail();
    h.advance(60 + 599);
    assert_eq!(ttls(&h.ask("www.example.org", Rtype::A).await), [STALE_TTL]);
    h.advance(1);
    let result = h.ask_request(request("www.example.org", Rtype::A)).await;
    assert!(
        result.is_err(),
        "too stale to serve: upstream's failure shows"
    );
}

#[tokio::test]
async fn stale_nxdomain_is_replaced_once_upstream_answers_again_coredns_bug() {
    // CoreDNS with serve_stale kept answering a stale NXDOMAIN after the
    // name came back: the refreshed positive answer went to the success
    // cache while the denial cache, checked first, still held the NXDOMAIN.
    let h = Harness::new(stale_settings(false), negative(Rcode::NXDOMAIN, 60, 60));
    h.ask("www.example.org", Rtype::A).await;
    h.advance(120);
    h.origin.answer_with(answer(300));
    let first = h.ask("www.example.org", Rtype::A).await;
    assert_eq!(first.rcode, OptRcode::NXDOMAIN, "stale, while refreshing");
    settle().await;
    for qtype in [Rtype::A, Rtype::A] {
        let response = h.ask("www.example.org", qtype).await;
        assert_eq!(response.rcode, OptRcode::NOERROR);
        assert_eq!(ttls(&response), [300]);
    }
    assert_eq!(h.origin.calls(), 2);
    // Other types of the name are no longer covered by the old NXDOMAIN.
    h.advance(3600);
    let response = h.ask("www.example.org", Rtype::AAAA).await;
    assert_eq!(response.rcode, OptRcode::NOERROR);
}

#[tokio::test]
async fn do_and_cd_bits_are_cached_apart() {
    let h = Harness::new(Settings::default(), answer(300));
    let edns = |dnssec_ok| Edns {
        udp_payload_size: 1232,
        version: 0,
        dnssec_ok,
        options: vec![],
    };
    let plain = || request("www.example.org", Rtype::A);
    let with_do = || request_with("www.example.org", Rtype::A, Class::IN, Some(edns(true)));
    let with_cd = || {
        let mut req = request("www.example.org", Rtype::A);
        req.query.cd = true;
        req
    };
    for make in [&plain as &dyn Fn() -> Request, &with_do, &with_cd] {
        h.ask_request(make()).await.unwrap();
    }
    assert_eq!(h.origin.calls(), 3);
    for make in [&plain as &dyn Fn() -> Request, &with_do, &with_cd] {
        h.ask_request(make()).await.unwrap();
    }
    assert_eq!(h.origin.calls(), 3);
}

#[tokio::test]
async fn ad_bit_only_for_clients_that_ask_for_it() {
    let mut upstream = answer(300);
    upstream.authentic_data = true;
    let h = Harness::new(Settings::default(), upstream);
    assert!(!h.ask("www.example.org", Rtype::A).await.authentic_data);
    let mut req = request("www.example.org", Rtype::A);
    req.query.ad = true;
    assert!(h.ask_request(req).await.unwrap().authentic_data);
}

#[tokio::test]
async fn truncated_answers_are_not_cached() {
    let mut upstream = answer(300);
    upstream.truncated = true;
    let h = Harness::new(Settings::default(), upstream);
    h.ask("www.example.org", Rtype::A).await;
    h.ask("www.example.org", Rtype::A).await;
    assert_eq!(h.origin.calls(), 2);
}

#[tokio::test]
async fn refused_formerr_and_notimp_are_never_cached() {
    for rcode in [Rcode::REFUSED, Rcode::FORMERR, Rcode::NOTIMP] {
        let h = Harness::new(Settings::default(), Response::new(rcode));
        h.ask("www.example.org", Rtype::A).await;
        h.ask("www.example.org", Rtype::A).await;
        assert_eq!(h.origin.calls(), 2, "{rcode}");
    }
}

#[tokio::test]
async fn servfail_is_cached_for_the_servfail_duration() {
    let settings = Settings {
        servfail: Duration::from_secs(2),
        ..Settings::default()
    };
    let h = Harness::new(settings, Response::new(Rcode::SERVFAIL));
    h.ask("www.example.org", Rtype::A).await;
    h.advance(1);
    assert_eq!(
        h.ask("www.example.org", Rtype::A).await.rcode,
        OptRcode::SERVFAIL
    );
    assert_eq!(h.origin.calls(), 1);
    h.advance(1);
    h.ask("www.example.org", Rtype::A).await;
    assert_eq!(h.origin.calls(), 2);
}

#[tokio::test]
async fn servfail_0_turns_servfail_caching_off() {
    let settings = Settings {
        servfail: Duration::ZERO,
        ..Settings::default()
    };
    let h = Harness::new(settings, Response::new(Rcode::SERVFAIL));
    h.ask("www.example.org", Rtype::A).await;
    h.ask("www.example.org", Rtype::A).await;
    assert_eq!(h.origin.calls(), 2);
}

#[tokio::test]
async fn upstream_errors_are_not_cached() {
    let h = Harness::new(Settings::default(), answer(300));
    h.origin.fail();
    assert!(
        h.ask_request(request("www.example.org", Rtype::A))
            .await
            .is_err()
    );
    assert!(
        h.ask_request(request("www.example.org", Rtype::A))
            .await
            .is_err()
    );
    assert_eq!(h.origin.calls(), 2);
}

#[tokio::test]
async fn disable_success_for_a_zone_keeps_its_answers_out() {
    let settings = Settings {
        disable_success: vec![name_from_str("example.org").unwrap()],
        ..Settings::default()
    };
    let h = Harness::new(settings, answer(300));
    h.ask("www.example.org", Rtype::A).await;
    h.ask("www.example.org", Rtype::A).await;
    assert_eq!(h.origin.calls(), 2);
    h.ask("www.example.net", Rtype::A).await;
    h.ask("www.example.net", Rtype::A).await;
    assert_eq!(h.origin.calls(), 3, "other zones are still cached");
}

#[tokio::test]
async fn disable_denial_keeps_negative_answers_out() {
    let settings = Settings {
        disable_denial: vec![Name::root()],
        ..Settings::default()
    };
    let h = Harness::new(settings, negative(Rcode::NXDOMAIN, 300, 300));
    h.ask("nope.example.org", Rtype::A).await;
    h.ask("nope.example.org", Rtype::A).await;
    assert_eq!(h.origin.calls(), 2);
}

#[tokio::test]
async fn keepttl_serves_the_stored_ttl_without_counting_down() {
    let settings = Settings {
        keepttl: true,
        ..Settings::default()
    };
    let h = Harness::new(settings, answer(300));
    h.ask("www.example.org", Rtype::A).await;
    h.advance(200);
    assert_eq!(ttls(&h.ask("www.example.org", Rtype::A).await), [300]);
    h.advance(100);
    h.ask("www.example.org", Rtype::A).await;
    assert_eq!(h.origin.calls(), 2, "the entry still expires");
}

#[tokio::test]
async fn names_outside_the_cache_zones_are_not_cached() {
    let settings = Settings {
        zones: vec![name_from_str("example.net").unwrap()],
        ..Settings::default()
    };
    let h = Harness::new(settings, answer(300));
    h.ask("www.example.org", Rtype::A).await;
    h.ask("www.example.org", Rtype::A).await;
    assert_eq!(h.origin.calls(), 2);
}

#[tokio::test]
async fn zone_transfers_are_not_cached() {
    let h = Harness::new(Settings::default(), answer(300));
    h.ask("example.org", Rtype::AXFR).await;
    h.ask("example.org", Rtype::AXFR).await;
    assert_eq!(h.origin.calls(), 2);
}

/// Changes the question on its way, as a rewrite would.
struct Rewriter;

impl Handler for Rewriter {
    fn name(&self) -> &'static str {
        "rewriter"
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        request.query.qname = name_from_str("other.example.org").unwrap();
        next.serve(request)
    }
}

#[tokio::test]
async fn answer_to_another_question_is_not_cached() {
    let clock = Arc::new(ManualClock::new());
    let origin = Origin::new(answer(300));
    let chain: Vec<Arc<dyn Handler>> = vec![
        Arc::new(Cache::new(Settings::default(), clock)),
        Arc::new(Rewriter),
        origin.clone(),
    ];
    for _ in 0..2 {
        let mut req = request("www.example.org", Rtype::A);
        serve_chain(&chain, &mut req).await.unwrap();
    }
    assert_eq!(origin.calls(), 2);
}

#[tokio::test]
async fn cache_in_a_corefile_answers_from_the_cache() {
    let config = config(". {\n cache 10\n whoami\n}", PLUGINS).unwrap();
    let mut first = request("example.org", Rtype::A);
    let response = oxidns_server::test_util::serve_config(&config, &mut first)
        .await
        .unwrap();
    assert_eq!(response.additional.len(), 2, "whoami answered");
    assert!(ttls(&response).iter().all(|&ttl| ttl == 0));
}

// Setup.

fn settings_of(corefile: &str) -> Settings {
    let blocks = oxidns_server::corefile::parse_str(corefile, "Corefile").unwrap();
    let mut found = None;
    let entry = PluginEntry {
        name: "cache",
        setup: |setup| {
            let parsed = parse(setup)?;
            SETTINGS.with(|s| *s.borrow_mut() = Some(parsed));
            Ok(())
        },
    };
    oxidns_server::build(&blocks, &[entry], &oxidns_server::Options::default())
        .map_err(|e| e[0].to_string())
        .unwrap();
    SETTINGS.with(|s| found = s.borrow_mut().take());
    found.unwrap()
}

thread_local! {
    static SETTINGS: std::cell::RefCell<Option<Settings>> = const { std::cell::RefCell::new(None) };
}

#[test]
fn bare_cache_has_coredns_defaults() {
    let settings = settings_of("example.org {\n cache\n}");
    assert_eq!(settings.zones, [name_from_str("example.org").unwrap()]);
    assert_eq!(settings.success.capacity, 9984);
    assert_eq!(settings.success.max_ttl, Duration::from_secs(3600));
    assert_eq!(settings.denial.max_ttl, Duration::from_secs(1800));
    assert_eq!(settings.success.min_ttl, Duration::from_secs(5));
    assert_eq!(settings.denial.min_ttl, Duration::from_secs(5));
    assert_eq!(settings.servfail, Duration::from_secs(5));
    assert_eq!(settings.prefetch, None);
    assert_eq!(settings.serve_stale, None);
    assert!(!settings.keepttl);
}

#[test]
fn every_option_is_read() {
    let settings = settings_of(
        ". {\n cache 300 example.org example.net {\n  success 5000 600 10\n  denial 2500 60 1\n  prefetch 5 2m 20%\n  serve_stale 2h verify\n  servfail 10s\n  disable denial example.net\n  keepttl\n }\n}",
    );
    assert_eq!(settings.zones.len(), 2);
    assert_eq!(
        settings.success,
        Tier {
            capacity: 5000,
            max_ttl: Duration::from_secs(600),
            min_ttl: Duration::from_secs(10)
        }
    );
    assert_eq!(settings.denial.capacity, 2500);
    assert_eq!(settings.denial.max_ttl, Duration::from_secs(60));
    assert_eq!(
        settings.prefetch,
        Some(Prefetch {
            amount: 5,
            window: Duration::from_secs(120),
            percentage: 20
        })
    );
    assert_eq!(
        settings.serve_stale,
        Some(ServeStale {
            up_to: Duration::from_secs(7200),
            verify: true
        })
    );
    assert_eq!(settings.servfail, Duration::from_secs(10));
    assert_eq!(
        settings.disable_denial,
        [name_from_str("example.net").unwrap()]
    );
    assert!(settings.keepttl);
}

#[test]
fn prefetch_and_serve_stale_defaults() {
    let settings = settings_of(". {\n cache {\n  prefetch 10\n  serve_stale\n }\n}");
    assert_eq!(
        settings.prefetch,
        Some(Prefetch {
            amount: 10,
            window: Duration::from_secs(60),
            percentage: 10
        })
    );
    assert_eq!(
        settings.serve_stale,
        Some(ServeStale {
            up_to: Duration::from_secs(3600),
            verify: false
        })
    );
}

#[test]
fn setup_errors_name_the_line() {
    let cases = [
        (
            ". {\n cache 0\n}",
            "Corefile:2: cache: cache TTL can not be zero or negative: 0",
        ),
        (
            ". {\n cache\n cache\n}",
            "Corefile:3: cache: this plugin can only be used once per server block",
        ),
        (
            ". {\n cache {\n  success\n }\n}",
            "Corefile:3: success: takes 1 to 3 arguments, got 0",
        ),
        (
            ". {\n cache {\n  success lots\n }\n}",
            "Corefile:3: success: invalid capacity 'lots'",
        ),
        (
            ". {\n cache {\n  denial 100 0\n }\n}",
            "Corefile:3: denial: cache TTL can not be zero or negative: 0",
        ),
        (
            ". {\n cache {\n  denial 100 10 -1\n }\n}",
            "Corefile:3: denial: cache min TTL can not be negative: -1",
        ),
        (
            ". {\n cache {\n  prefetch -1\n }\n}",
            "Corefile:3: prefetch: prefetch amount should be positive: -1",
        ),
        (
            ". {\n cache {\n  prefetch 1 1m 5%\n }\n}",
            "Corefile:3: prefetch: percentage should fall in range [10, 90]: 5",
        ),
        (
            ". {\n cache {\n  prefetch 1 1m 50\n }\n}",
            "Corefile:3: prefetch: percentage should end with '%': 50",
        ),
        (
            ". {\n cache {\n  prefetch 1 soon\n }\n}",
            "Corefile:3: prefetch: invalid duration 'soon'",
        ),
        (
            ". {\n cache {\n  serve_stale 1h later\n }\n}",
            "Corefile:3: serve_stale: invalid value for serve_stale refresh mode: later",
        ),
        (
            ". {\n cache {\n  servfail 6m\n }\n}",
            "Corefile:3: servfail: caching SERVFAIL responses over 5 minutes is not permitted",
        ),
        (
            ". {\n cache {\n  disable everything\n }\n}",
            "Corefile:3: disable: cache type for disable must be 'success' or 'denial', not 'everything'",
        ),
        (
            ". {\n cache {\n  keepttl 5\n }\n}",
            "Corefile:3: keepttl: takes no arguments, got 1",
        ),
        (
            ". {\n cache {\n  ttl 5\n }\n}",
            "Corefile:3: cache: unknown property 'ttl'",
        ),
    ];
    for (corefile, expected) in cases {
        assert_eq!(config_error(corefile, PLUGINS), expected, "{corefile}");
    }
}

/// Keeps every counter and gauge by name and labels, for one test.
#[derive(Default)]
struct Recorded {
    values: Mutex<std::collections::HashMap<String, Arc<std::sync::atomic::AtomicU64>>>,
}

impl Recorded {
    fn handle(&self, key: &::metrics::Key) -> Arc<std::sync::atomic::AtomicU64> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        self.values.lock().unwrap().entry(name).or_default().clone()
    }

    fn get(&self, name: &str) -> u64 {
        self.values
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |v| v.load(Ordering::SeqCst))
    }
}

impl ::metrics::Recorder for Recorded {
    fn describe_counter(
        &self,
        _: ::metrics::KeyName,
        _: Option<::metrics::Unit>,
        _: ::metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: ::metrics::KeyName,
        _: Option<::metrics::Unit>,
        _: ::metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: ::metrics::KeyName,
        _: Option<::metrics::Unit>,
        _: ::metrics::SharedString,
    ) {
    }

    fn register_counter(
        &self,
        key: &::metrics::Key,
        _: &::metrics::Metadata<'_>,
    ) -> ::metrics::Counter {
        ::metrics::Counter::from_arc(self.handle(key))
    }

    fn register_gauge(
        &self,
        key: &::metrics::Key,
        _: &::metrics::Metadata<'_>,
    ) -> ::metrics::Gauge {
        ::metrics::Gauge::from_arc(self.handle(key))
    }

    fn register_histogram(
        &self,
        _: &::metrics::Key,
        _: &::metrics::Metadata<'_>,
    ) -> ::metrics::Histogram {
        ::metrics::Histogram::noop()
    }
}

#[test]
fn metrics_have_coredns_names_and_labels() {
    let recorded = Recorded::default();
    ::metrics::with_local_recorder(&recorded, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let h = Harness::new(Settings::default(), answer(300));
            h.ask("www.example.org", Rtype::A).await;
            h.ask("www.example.org", Rtype::A).await;
        });
    });
    let labels = "server=dns://:53,zones=.,view=";
    let typed = "server=dns://:53,type=success,zones=.,view=";
    assert_eq!(
        recorded.get(&format!("coredns_cache_requests_total{{{labels}}}")),
        2
    );
    assert_eq!(
        recorded.get(&format!("coredns_cache_misses_total{{{labels}}}")),
        1
    );
    assert_eq!(
        recorded.get(&format!("coredns_cache_hits_total{{{typed}}}")),
        1
    );
    let entries = recorded.get(&format!("coredns_cache_entries{{{typed}}}"));
    assert_eq!(f64::from_bits(entries), 1.0);
}

/// Answers every query with one A record and counts the queries.
struct CountingAnswer {
    address: Ipv4Addr,
    queries: AtomicUsize,
}

impl Handler for CountingAnswer {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn serve<'a>(&'a self, request: &'a mut Request, _: Next<'a>) -> HandlerFuture<'a> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let mut response = Response::new(Rcode::NOERROR);
        response.answer.push(Record::new(
            request.qname().clone(),
            Class::IN,
            Ttl::from_secs(300),
            RecordData::A(A::new(self.address)),
        ));
        HandlerFuture::ready(Ok(response))
    }
}

async fn twice_through_rebinding_protection(qname: &str, address: Ipv4Addr) -> (Response, usize) {
    let config = config(
        ". {\n cache {\n  rebinding_protection corp.example\n }\n}",
        &[PLUGIN],
    )
    .unwrap();
    let upstream = Arc::new(CountingAnswer {
        address,
        queries: AtomicUsize::new(0),
    });
    let mut chain = config.blocks[0].chain.to_vec();
    chain.push(upstream.clone());
    let mut response = None;
    for _ in 0..2 {
        let mut req = request(qname, Rtype::A);
        response = Some(serve_chain(&chain, &mut req).await.unwrap());
    }
    (response.unwrap(), upstream.queries.load(Ordering::Relaxed))
}

#[tokio::test]
async fn rebinding_protection_refuses_private_answers_and_never_caches_them() {
    let (response, queries) =
        twice_through_rebinding_protection("evil.example", Ipv4Addr::new(192, 168, 0, 1)).await;
    assert_eq!(response.header_rcode(), Rcode::REFUSED);
    assert_eq!(queries, 2, "a refused answer is not cached");
}

#[tokio::test]
async fn rebinding_protection_keeps_caching_public_and_allowed_answers() {
    let (response, queries) =
        twice_through_rebinding_protection("www.example", Ipv4Addr::new(192, 0, 2, 1)).await;
    assert_eq!(response.answer.len(), 1);
    assert_eq!(queries, 1);
    let (response, queries) =
        twice_through_rebinding_protection("nas.corp.example", Ipv4Addr::new(10, 0, 0, 5)).await;
    assert_eq!(response.answer.len(), 1);
    assert_eq!(queries, 1);
}

#[test]
fn rebinding_protection_refuses_a_bad_zone_at_its_line() {
    let error = config_error(
        ". {\n cache {\n  rebinding_protection bad..name\n }\n}",
        &[PLUGIN],
    );
    assert!(error.starts_with("Corefile:3:"), "{error}");
}
