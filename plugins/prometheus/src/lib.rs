//! `prometheus [ADDRESS]`: CoreDNS's metrics, with the same names, labels
//! and histogram buckets, in Prometheus text format on `GET /metrics`
//! (default `localhost:9153`), plus the process metrics.
//!
//! Plugins record through the `metrics` facade; this plugin installs the
//! one process-wide recorder, records the per-request server metrics as each
//! response is written, and serves the scrape. Several server blocks may
//! share one address.

mod recorder;

use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock};

use hashbrown::{Equivalent, HashMap};
use metrics::{Counter, Histogram};

use oxidns_server::http::{self, Reply, Route};
use oxidns_server::proto::{OptRcode, Response, Rtype, name_text};
use oxidns_server::{
    ConfigError, Handler, HandlerFuture, HookFuture, Lifecycle, Next, PluginEntry, Request, Setup,
    Transport,
};
use recorder::SlottedRecorder;

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "prometheus",
    setup,
};

const DEFAULT_ADDRESS: &str = "localhost:9153";

/// Query types CoreDNS counts by name; every other type is "other".
const MONITORED_TYPES: [Rtype; 18] = [
    Rtype::A,
    Rtype::AAAA,
    Rtype::NS,
    Rtype::PTR,
    Rtype::SOA,
    Rtype::CNAME,
    Rtype::MX,
    Rtype::TXT,
    Rtype::SRV,
    Rtype::DS,
    Rtype::DNSKEY,
    Rtype::RRSIG,
    Rtype::NSEC,
    Rtype::NSEC3,
    Rtype::HTTPS,
    Rtype::IXFR,
    Rtype::AXFR,
    Rtype::ANY,
];

struct Exporter {
    recorder: &'static SlottedRecorder,
    process: metrics_process::Collector,
}

static EXPORTER: OnceLock<Option<Exporter>> = OnceLock::new();

/// Installs the process-wide recorder once; later calls reuse it.
fn exporter() -> Option<&'static Exporter> {
    EXPORTER
        .get_or_init(|| {
            let recorder: &'static SlottedRecorder = Box::leak(Box::new(SlottedRecorder::new()));
            metrics::set_global_recorder(recorder).ok()?;
            let process = metrics_process::Collector::default();
            process.describe();
            metrics::gauge!(
                "coredns_build_info",
                "version" => env!("CARGO_PKG_VERSION"),
                "revision" => "",
                "goversion" => "rustc"
            )
            .set(1.0);
            Some(Exporter { recorder, process })
        })
        .as_ref()
}

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?;
    directive.no_block()?;
    let args = directive.args_between(0, 1)?;
    let text = args.first().map_or(DEFAULT_ADDRESS, |t| t.text.as_str());
    let addr = http::parse_address(text).map_err(|e| directive.error(e))?;
    if exporter().is_none() {
        return Err(directive.error("cannot install the metrics recorder"));
    }
    setup.add_handler(Arc::new(RequestMetrics));
    setup.add_lifecycle(Arc::new(Scrape {
        addr,
        route: Mutex::new(None),
    }));
    Ok(())
}

/// The text of a scrape: every metric recorded so far, and the process's.
pub fn render() -> String {
    match exporter() {
        Some(exporter) => {
            exporter.process.collect();
            exporter.recorder.render()
        }
        None => String::new(),
    }
}

struct Scrape {
    addr: std::net::SocketAddr,
    route: Mutex<Option<Route>>,
}

impl Lifecycle for Scrape {
    fn startup(&self) -> HookFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let handler = Arc::new(|| Reply {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: render(),
            });
            let route = http::register(self.addr, "/metrics", handler)
                .await
                .map_err(|e| e.to_string())?;
            *self.route.lock().unwrap_or_else(|e| e.into_inner()) = Some(route);
            Ok(())
        })
    }

    fn shutdown(&self) -> HookFuture<'_, ()> {
        self.route.lock().unwrap_or_else(|e| e.into_inner()).take();
        Box::pin(std::future::ready(()))
    }
}

/// Records CoreDNS's per-request server metrics once the response is written.
struct RequestMetrics;

impl Handler for RequestMetrics {
    fn name(&self) -> &'static str {
        "prometheus"
    }

    // Reads the rcode and the size as sent, never the records.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        // Captures nothing, so boxing it allocates nothing.
        request.on_written(record);
        next.serve(request)
    }
}

fn type_label(rtype: Rtype) -> String {
    if MONITORED_TYPES.contains(&rtype) {
        rtype.to_string()
    } else {
        "other".to_owned()
    }
}

/// The `type` label's position: a monitored type's index, or "other" after them.
fn type_index(rtype: Rtype) -> u8 {
    MONITORED_TYPES
        .iter()
        .position(|&t| t == rtype)
        .unwrap_or(MONITORED_TYPES.len()) as u8
}

/// The labels a request's metrics are counted under.
#[derive(Hash, PartialEq, Eq)]
struct LabelKey {
    server: Arc<str>,
    /// The zone's wire form (lower case).
    zone: Box<[u8]>,
    transport: Transport,
    ipv4: bool,
    type_index: u8,
}

/// [`LabelKey`] borrowed from a request, to look one up without copying.
#[derive(Hash)]
struct LabelRef<'a> {
    server: &'a str,
    zone: &'a [u8],
    transport: Transport,
    ipv4: bool,
    type_index: u8,
}

impl Equivalent<LabelKey> for LabelRef<'_> {
    fn equivalent(&self, key: &LabelKey) -> bool {
        *key.server == *self.server
            && *key.zone == *self.zone
            && key.transport == self.transport
            && key.ipv4 == self.ipv4
            && key.type_index == self.type_index
    }
}

/// The metrics of one label set.
struct Handles {
    requests: Counter,
    do_requests: Counter,
    request_size: Histogram,
    duration: Histogram,
    response_size: Histogram,
    /// By the rcode as sent.
    responses: HashMap<u16, Counter>,
    server: String,
    zone: String,
}

impl Handles {
    fn register(request: &Request) -> Handles {
        let server = request.server.to_string();
        let zone = name_text(&request.zone);
        let proto = request.transport.as_str();
        let family = if request.client.is_ipv4() { "1" } else { "2" };
        let qtype = type_label(request.qtype());
        Handles {
            requests: metrics::counter!("coredns_dns_requests_total", "server" => server.clone(), "zone" => zone.clone(), "view" => "", "proto" => proto, "family" => family, "type" => qtype.clone()),
            do_requests: metrics::counter!("coredns_dns_do_requests_total", "server" => server.clone(), "zone" => zone.clone(), "view" => ""),
            request_size: metrics::histogram!("coredns_dns_request_size_bytes", "server" => server.clone(), "zone" => zone.clone(), "view" => "", "proto" => proto),
            duration: metrics::histogram!("coredns_dns_request_duration_seconds", "server" => server.clone(), "zone" => zone.clone(), "view" => "", "type" => qtype),
            response_size: metrics::histogram!("coredns_dns_response_size_bytes", "server" => server.clone(), "zone" => zone.clone(), "view" => "", "proto" => proto),
            responses: HashMap::new(),
            server,
            zone,
        }
    }

    fn response(&mut self, rcode: OptRcode) -> &Counter {
        let (server, zone) = (&self.server, &self.zone);
        self.responses.entry(rcode.to_int()).or_insert_with(|| {
            metrics::counter!("coredns_dns_responses_total", "server" => server.clone(), "zone" => zone.clone(), "view" => "", "rcode" => rcode.to_string(), "plugin" => "")
        })
    }
}

thread_local! {
    /// Each worker thread's handles, by label set. Registering a metric by
    /// name and labels (what `metrics::counter!` does) formats and hashes
    /// the labels and looks them up in the registry: done for every query,
    /// it made `prometheus` cost as much as the rest of the query
    /// (bench/README.md). Handles are looked up once per thread and label
    /// set; the counts go to this thread's slots of each series
    /// (`recorder.rs`), which a scrape sums. The map is bounded: servers ×
    /// zones × transports × 2 families × 19 type labels.
    static HANDLES: RefCell<HashMap<LabelKey, Handles>> = RefCell::new(HashMap::new());
}

fn record(request: &Request, response: &Response, wire: &[u8]) {
    let label = LabelRef {
        server: &request.server,
        zone: request.zone.as_slice(),
        transport: request.transport,
        ipv4: request.client.is_ipv4(),
        type_index: type_index(request.qtype()),
    };
    HANDLES.with_borrow_mut(|handles| {
        let metrics = match handles.get_mut(&label) {
            Some(metrics) => metrics,
            None => {
                let key = LabelKey {
                    server: request.server.clone(),
                    zone: label.zone.into(),
                    transport: label.transport,
                    ipv4: label.ipv4,
                    type_index: label.type_index,
                };
                handles
                    .entry(key)
                    .or_insert_with(|| Handles::register(request))
            }
        };
        metrics.requests.increment(1);
        if request.query.dnssec_ok() {
            metrics.do_requests.increment(1);
        }
        metrics.request_size.record(request.size() as f64);
        metrics
            .duration
            .record(request.received.elapsed().as_secs_f64());
        metrics.response_size.record(wire.len() as f64);
        // The rcode as sent: the header's 4 bits, or the extended code from OPT.
        metrics.response(response.rcode).increment(1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxidns_server::proto::Rcode;
    use oxidns_server::test_util::{Fixed, config, config_error, request};

    #[test]
    fn unmonitored_types_are_other() {
        assert_eq!(type_label(Rtype::A), "A");
        assert_eq!(type_label(Rtype::HINFO), "other");
    }

    /// The second request with the same labels uses the handles the first
    /// registered, and both are counted.
    #[tokio::test]
    async fn handles_are_registered_once_per_label_set_and_thread() {
        let config = config(". {\n prometheus :0\n}", &[PLUGIN]).unwrap();
        let mut chain = config.blocks[0].chain.to_vec();
        chain.push(Arc::new(Fixed(Response::new(Rcode::NOERROR))));
        for qname in ["a.handles-test.example", "B.handles-test.example"] {
            let mut req = request(qname, Rtype::SRV);
            let response = oxidns_server::test_util::serve_chain(&chain, &mut req)
                .await
                .unwrap();
            let _ = req.finish(&response, Vec::new());
        }
        let srv = |key: &LabelKey| key.type_index == type_index(Rtype::SRV);
        assert_eq!(
            HANDLES.with_borrow(|h| h.keys().filter(|k| srv(k)).count()),
            1
        );
        let text = render();
        assert!(
            text.contains(r#"coredns_dns_requests_total{server="dns://:53",zone=".",view="",proto="udp",family="1",type="SRV"} 2"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_written_response_is_counted_by_server_zone_type_and_rcode() {
        let config = config(". {\n prometheus :0\n}", &[PLUGIN]).unwrap();
        let mut chain = config.blocks[0].chain.to_vec();
        chain.push(Arc::new(Fixed(Response::new(Rcode::NXDOMAIN))));
        let mut req = request("metrics-test.example", Rtype::MX);
        let response = oxidns_server::test_util::serve_chain(&chain, &mut req)
            .await
            .unwrap();
        let _ = req.finish(&response, Vec::new());
        let text = render();
        assert!(
            text.contains(r#"coredns_dns_requests_total{server="dns://:53",zone=".",view="",proto="udp",family="1",type="MX"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"rcode="NXDOMAIN""#), "{text}");
        assert!(
            text.contains("coredns_dns_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(text.contains("coredns_build_info"), "{text}");
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }

    #[test]
    fn mistakes_are_refused_at_their_line() {
        assert_eq!(
            config_error(". {\n prometheus 9153\n}", &[PLUGIN]),
            "Corefile:2: prometheus: invalid address '9153': expected [HOST]:PORT"
        );
    }
}
