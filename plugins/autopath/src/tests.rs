use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use oxidns_server::proto::domain::rdata::A;
use oxidns_server::proto::{
    Class, Name, Rcode, Record, RecordData, Response, Rtype, Ttl, lowercase, name_from_str,
};
use oxidns_server::test_util::{config, config_error, request, serve_chain};
use oxidns_server::{Config, Handler, HandlerFuture, Next, PluginEntry, Request, Setup};

use super::*;

/// The names that exist, as a zone plugin behind autopath would answer:
/// A records for these, NXDOMAIN for the rest; every question it saw.
struct Names {
    names: HashMap<Name, Ipv4Addr>,
    asked: Mutex<Vec<String>>,
}

impl Names {
    fn new(names: &[(&str, Ipv4Addr)]) -> Arc<Names> {
        Arc::new(Names {
            names: names
                .iter()
                .map(|(n, ip)| (name_from_str(n).unwrap(), *ip))
                .collect(),
            asked: Mutex::new(Vec::new()),
        })
    }
}

impl Handler for Names {
    fn name(&self) -> &'static str {
        "names"
    }

    fn serve<'a>(&'a self, request: &'a mut Request, _: Next<'a>) -> HandlerFuture<'a> {
        let qname = lowercase(request.qname());
        self.asked.lock().unwrap().push(name_text(&qname));
        let response = match self.names.get(&qname) {
            Some(ip) => {
                let mut r = Response::new(Rcode::NOERROR);
                r.answer.push(Record::new(
                    request.qname().clone(),
                    Class::IN,
                    Ttl::from_secs(30),
                    RecordData::A(A::new(*ip)),
                ));
                r
            }
            None => Response::new(Rcode::NXDOMAIN),
        };
        HandlerFuture::ready(Ok(response))
    }
}

fn resolv_conf(text: &str) -> tempfile_path::Temp {
    tempfile_path::Temp::new(text)
}

/// A temporary file removed on drop.
mod tempfile_path {
    pub struct Temp(pub std::path::PathBuf);

    impl Temp {
        pub fn new(text: &str) -> Temp {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "oxidns-autopath-{}-{}.conf",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&path, text).unwrap();
            Temp(path)
        }
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn chain(config: &Config, names: &Arc<Names>) -> Vec<Arc<dyn Handler>> {
    let mut chain: Vec<Arc<dyn Handler>> = config.blocks[0].chain.to_vec();
    chain.push(names.clone());
    chain
}

async fn ask(config: &Config, names: &Arc<Names>, qname: &str) -> Response {
    serve_chain(&chain(config, names), &mut request(qname, Rtype::A))
        .await
        .unwrap()
}

fn texts(records: &[Record]) -> Vec<String> {
    records.iter().map(ToString::to_string).collect()
}

const SEARCH: &str = "nameserver 10.0.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n";

fn file_config(file: &tempfile_path::Temp) -> Config {
    config(
        &format!(". {{\n autopath {}\n}}", file.0.display()),
        &[PLUGIN],
    )
    .unwrap()
}

#[test]
fn search_domains_come_from_the_last_search_line() {
    let domains = search_domains("domain a.example\nsearch B.example c.example # comment\n");
    assert_eq!(
        domains.iter().map(name_text).collect::<Vec<_>>(),
        ["b.example.", "c.example."]
    );
}

#[tokio::test]
async fn name_found_further_down_the_search_path_is_a_cname_to_it() {
    let file = resolv_conf(SEARCH);
    let config = file_config(&file);
    let names = Names::new(&[("www.example.org", Ipv4Addr::new(192, 0, 2, 1))]);
    let r = ask(&config, &names, "www.example.org.default.svc.cluster.local").await;
    assert_eq!(r.rcode.rcode(), Rcode::NOERROR);
    assert_eq!(
        texts(&r.answer),
        [
            "www.example.org.default.svc.cluster.local. 30 IN CNAME www.example.org.",
            "www.example.org. 30 IN A 192.0.2.1",
        ]
    );
    // Every search domain was tried in order, then the name as asked.
    assert_eq!(
        *names.asked.lock().unwrap(),
        [
            "www.example.org.default.svc.cluster.local.",
            "www.example.org.svc.cluster.local.",
            "www.example.org.cluster.local.",
            "www.example.org.",
        ]
    );
}

#[tokio::test]
async fn first_search_domain_that_answers_wins() {
    let file = resolv_conf(SEARCH);
    let config = file_config(&file);
    let names = Names::new(&[
        ("web.other.svc.cluster.local", Ipv4Addr::new(10, 96, 0, 1)),
        ("web.other", Ipv4Addr::new(192, 0, 2, 9)),
    ]);
    let r = ask(&config, &names, "web.other.default.svc.cluster.local").await;
    assert_eq!(
        texts(&r.answer),
        [
            "web.other.default.svc.cluster.local. 30 IN CNAME web.other.svc.cluster.local.",
            "web.other.svc.cluster.local. 30 IN A 10.96.0.1",
        ]
    );
}

#[tokio::test]
async fn name_that_exists_as_asked_has_no_cname() {
    let file = resolv_conf(SEARCH);
    let config = file_config(&file);
    let names = Names::new(&[("web.default.svc.cluster.local", Ipv4Addr::new(10, 96, 0, 2))]);
    let r = ask(&config, &names, "web.default.svc.cluster.local").await;
    assert_eq!(
        texts(&r.answer),
        ["web.default.svc.cluster.local. 30 IN A 10.96.0.2"]
    );
    assert_eq!(names.asked.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn nothing_found_gives_the_first_reply() {
    let file = resolv_conf(SEARCH);
    let config = file_config(&file);
    let names = Names::new(&[]);
    let r = ask(&config, &names, "nowhere.default.svc.cluster.local").await;
    assert_eq!(r.rcode.rcode(), Rcode::NXDOMAIN);
    assert!(r.answer.is_empty());
    assert_eq!(names.asked.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn name_not_under_the_first_search_domain_is_passed_on() {
    let file = resolv_conf(SEARCH);
    let config = file_config(&file);
    let names = Names::new(&[]);
    let r = ask(&config, &names, "www.example.org.svc.cluster.local").await;
    assert_eq!(r.rcode.rcode(), Rcode::NXDOMAIN);
    assert_eq!(
        *names.asked.lock().unwrap(),
        ["www.example.org.svc.cluster.local."]
    );
}

#[tokio::test]
async fn names_outside_the_zones_are_passed_on() {
    let file = resolv_conf(SEARCH);
    let config = config(
        &format!(". {{\n autopath example.net {}\n}}", file.0.display()),
        &[PLUGIN],
    )
    .unwrap();
    let names = Names::new(&[("www.example.org", Ipv4Addr::new(192, 0, 2, 1))]);
    let r = ask(&config, &names, "www.example.org.default.svc.cluster.local").await;
    assert_eq!(r.rcode.rcode(), Rcode::NXDOMAIN);
    assert_eq!(names.asked.lock().unwrap().len(), 1);
}

#[test]
fn success_is_counted() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let file = resolv_conf(SEARCH);
    let config = file_config(&file);
    let names = Names::new(&[("www.example.org", Ipv4Addr::new(192, 0, 2, 1))]);
    let chain = chain(&config, &names);
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut req = request("www.example.org.default.svc.cluster.local", Rtype::A);
            serve_chain(&chain, &mut req).await.unwrap();
        });
    });
    let counted: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, _, _, _)| key.key().name() == "coredns_autopath_success_total")
        .map(|(key, _, _, value)| {
            let labels: Vec<String> = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            (labels, value)
        })
        .collect();
    assert_eq!(
        counted,
        [(vec!["server=dns://:53".to_owned()], DebugValue::Counter(1))]
    );
}

// ------------------------------------------------------------ @plugin

struct Fixed(Vec<Name>);

impl SearchPath for Fixed {
    fn search_path(&self, _: &Request) -> Vec<Name> {
        self.0.clone()
    }
}

fn provider(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let search = ["ns1.svc.cluster.local", "svc.cluster.local", "."]
        .iter()
        .map(|n| name_from_str(n).unwrap())
        .collect();
    setup
        .shared::<SearchPaths>()
        .register("provider", Arc::new(Fixed(search)));
    Ok(())
}

const PROVIDER: PluginEntry = PluginEntry {
    name: "provider",
    setup: provider,
};

#[tokio::test]
async fn search_path_comes_from_the_plugin_named() {
    let config = config(
        ". {\n autopath @provider\n provider\n}",
        &[PLUGIN, PROVIDER],
    )
    .unwrap();
    for (_, lifecycle) in config.lifecycles() {
        lifecycle.startup().await.unwrap();
    }
    let names = Names::new(&[("db.svc.cluster.local", Ipv4Addr::new(10, 96, 0, 3))]);
    let r = ask(&config, &names, "db.ns1.svc.cluster.local").await;
    assert_eq!(
        texts(&r.answer),
        [
            "db.ns1.svc.cluster.local. 30 IN CNAME db.svc.cluster.local.",
            "db.svc.cluster.local. 30 IN A 10.96.0.3",
        ]
    );
}

#[tokio::test]
async fn plugin_without_search_path_fails_at_startup() {
    let config = config(". {\n autopath @kubernetes\n}", &[PLUGIN]).unwrap();
    let (_, lifecycle) = config.lifecycles().next().unwrap();
    let error = lifecycle.startup().await.unwrap_err();
    assert!(error.contains("'kubernetes'"), "{error}");
}

#[test]
fn bad_directives_are_refused_with_their_line() {
    assert_eq!(
        config_error(". {\n autopath\n}", &[PLUGIN]),
        "Corefile:2: autopath: needs a resolv.conf file or @plugin"
    );
    let missing = config_error(". {\n autopath /nonexistent/resolv.conf\n}", &[PLUGIN]);
    assert!(
        missing.starts_with("Corefile:2: autopath: failed to parse /nonexistent/resolv.conf"),
        "{missing}"
    );
    assert_eq!(
        config_error(". {\n autopath @\n}", &[PLUGIN]),
        "Corefile:2: autopath: '@' needs a plugin name"
    );
}

#[tokio::test]
async fn a_failing_later_element_does_not_fail_the_walk() {
    let file = resolv_conf(SEARCH);
    let config = file_config(&file);
    // Only the cluster zone is served: the name as asked has no plugin at all.
    let mut chain: Vec<Arc<dyn Handler>> = config.blocks[0].chain.to_vec();
    chain.push(Arc::new(OnlyUnder(name_from_str("cluster.local").unwrap())));
    let r = serve_chain(
        &chain,
        &mut request("nowhere.default.svc.cluster.local", Rtype::A),
    )
    .await
    .unwrap();
    assert_eq!(r.rcode.rcode(), Rcode::NXDOMAIN);
}

/// NXDOMAIN for names under its zone; other names go on (to nothing: an error).
struct OnlyUnder(Name);

impl Handler for OnlyUnder {
    fn name(&self) -> &'static str {
        "only_under"
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        if lowercase(request.qname()).ends_with(&self.0) {
            HandlerFuture::ready(Ok(Response::new(Rcode::NXDOMAIN)))
        } else {
            next.serve(request)
        }
    }
}
