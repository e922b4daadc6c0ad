//! Tests against the in-process API server (`testing.rs`): each builds the
//! plugin from a Corefile whose `endpoint` is the test server, runs its
//! start-up (which lists and watches), and asks it questions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, Namespace, ObjectReference, Pod, PodIP, PodSpec, PodStatus, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use oxidns_server::proto::{Rcode, Record, Response, Rtype};
use oxidns_server::test_util::{Fixed, config, config_error, request, serve_chain};
use oxidns_server::{Config, Handler};

use super::PLUGIN;
use crate::testing::ApiServer;

// ------------------------------------------------------------ objects

fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: ns.map(str::to_owned),
        ..Default::default()
    }
}

fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: meta(None, name),
        ..Default::default()
    }
}

fn ports(list: &[(&str, i32, &str)]) -> Option<Vec<ServicePort>> {
    Some(
        list.iter()
            .map(|(name, port, proto)| ServicePort {
                name: (!name.is_empty()).then(|| (*name).to_owned()),
                port: *port,
                protocol: Some((*proto).to_owned()),
                ..Default::default()
            })
            .collect(),
    )
}

fn cluster_ip(ns: &str, name: &str, ips: &[&str], list: &[(&str, i32, &str)]) -> Service {
    Service {
        metadata: meta(Some(ns), name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(ips[0].to_owned()),
            cluster_ips: Some(ips.iter().map(|s| (*s).to_owned()).collect()),
            ports: ports(list),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn headless(ns: &str, name: &str, list: &[(&str, i32, &str)]) -> Service {
    Service {
        metadata: meta(Some(ns), name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some("None".into()),
            cluster_ips: Some(vec!["None".into()]),
            ports: ports(list),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn external(ns: &str, name: &str, target: &str) -> Service {
    Service {
        metadata: meta(Some(ns), name),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(target.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A running pod with these addresses.
fn pod(ns: &str, name: &str, ips: &[&str], phase: &str) -> Pod {
    Pod {
        metadata: meta(Some(ns), name),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.k8s.io/pause:3.10".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            pod_ip: ips.first().map(|ip| (*ip).to_owned()),
            pod_ips: Some(
                ips.iter()
                    .map(|ip| PodIP {
                        ip: (*ip).to_owned(),
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
    }
}

struct Ep<'a> {
    addresses: &'a [&'a str],
    hostname: Option<&'a str>,
    pod: Option<&'a str>,
    ready: bool,
}

fn ep(address: &str) -> Ep<'_> {
    Ep {
        addresses: std::slice::from_ref(Box::leak(Box::new(address))),
        hostname: None,
        pod: None,
        ready: true,
    }
}

fn slice(
    ns: &str,
    name: &str,
    service: &str,
    eps: &[Ep<'_>],
    list: &[(&str, i32, &str)],
) -> EndpointSlice {
    let mut metadata = meta(Some(ns), name);
    metadata.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_owned(),
        service.to_owned(),
    )]));
    let ipv6 = eps
        .iter()
        .any(|e| e.addresses.iter().any(|a| a.contains(':')));
    EndpointSlice {
        metadata,
        address_type: if ipv6 { "IPv6" } else { "IPv4" }.into(),
        endpoints: eps
            .iter()
            .map(|e| Endpoint {
                addresses: e.addresses.iter().map(|a| (*a).to_owned()).collect(),
                hostname: e.hostname.map(str::to_owned),
                conditions: Some(EndpointConditions {
                    ready: Some(e.ready),
                    ..Default::default()
                }),
                target_ref: e.pod.map(|p| ObjectReference {
                    kind: Some("Pod".into()),
                    name: Some(p.into()),
                    namespace: Some(ns.into()),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(
            list.iter()
                .map(|(name, port, proto)| EndpointPort {
                    name: Some((*name).to_owned()),
                    port: Some(*port),
                    protocol: Some((*proto).to_owned()),
                    ..Default::default()
                })
                .collect(),
        ),
    }
}

// ------------------------------------------------------------ harness

/// The API server with a typical cluster.
async fn cluster() -> ApiServer {
    let api = ApiServer::start().await;
    api.apply(&namespace("default"));
    api.apply(&namespace("kube-system"));
    api.apply(&namespace("empty"));
    api.apply(&cluster_ip(
        "default",
        "web",
        &["10.96.0.10", "fd00::10"],
        &[("http", 80, "TCP"), ("dns", 53, "UDP")],
    ));
    api.apply(&slice(
        "default",
        "web-abc",
        "web",
        &[ep("10.1.0.1")],
        &[("http", 8080, "TCP"), ("dns", 5353, "UDP")],
    ));
    api.apply(&headless("default", "db", &[("pg", 5432, "TCP")]));
    api.apply(&slice(
        "default",
        "db-1",
        "db",
        &[
            Ep {
                addresses: &["10.1.0.2"],
                hostname: Some("db-0"),
                pod: Some("db-0"),
                ready: true,
            },
            Ep {
                addresses: &["10.1.0.3"],
                hostname: None,
                pod: Some("db-1"),
                ready: true,
            },
            Ep {
                addresses: &["10.1.0.4"],
                hostname: None,
                pod: Some("db-2"),
                ready: false,
            },
        ],
        &[("pg", 5432, "TCP")],
    ));
    api.apply(&headless("default", "lonely", &[("pg", 5432, "TCP")]));
    api.apply(&external("default", "ext", "www.example.com"));
    api.apply(&pod("default", "web-0", &["10.1.0.1"], "Running"));
    api.apply(&pod(
        "default",
        "dual-0",
        &["10.1.0.8", "fd00::8"],
        "Running",
    ));
    api.apply(&pod("kube-system", "done-0", &["10.1.0.9"], "Succeeded"));
    api
}

const ZONES: &str = "cluster.local in-addr.arpa ip6.arpa";

fn corefile(api: &ApiServer, zones: &str, block: &str) -> String {
    format!(
        ". {{\n kubernetes {zones} {{\n  endpoint {}\n  startup_timeout 5s\n{block}\n }}\n}}",
        api.url()
    )
}

/// The plugin, started (listed and watching).
async fn started(text: &str) -> Config {
    let config = config(text, &[PLUGIN]).unwrap();
    for (_, lifecycle) in &config.blocks[0].lifecycles {
        lifecycle.startup().await.unwrap();
    }
    config
}

fn chain(config: &Config) -> Vec<Arc<dyn Handler>> {
    let mut chain: Vec<Arc<dyn Handler>> = config.blocks[0].chain.to_vec();
    chain.push(Arc::new(Fixed(Response::new(Rcode::REFUSED))));
    chain
}

async fn ask(config: &Config, qname: &str, qtype: Rtype) -> Response {
    serve_chain(&chain(config), &mut request(qname, qtype))
        .await
        .unwrap()
}

fn texts(records: &[Record]) -> Vec<String> {
    records.iter().map(ToString::to_string).collect()
}

/// A started plugin over the typical cluster, with `block` in its options.
async fn plugin(block: &str) -> (ApiServer, Config) {
    let api = cluster().await;
    let config = started(&corefile(&api, ZONES, block)).await;
    (api, config)
}

/// Polls until `check` holds for the answer (bounded: 10 s).
async fn eventually(
    config: &Config,
    qname: &str,
    qtype: Rtype,
    check: impl Fn(&Response) -> bool,
) -> Response {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = ask(config, qname, qtype).await;
        if check(&response) {
            return response;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{qname} {qtype}: still {:?} {:?}",
            response.header_rcode(),
            texts(&response.answer)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ------------------------------------------------------------ setup

#[test]
fn every_directive_of_coredns_parses() {
    config(
        ". {\n kubernetes cluster.local in-addr.arpa ip6.arpa {\n  endpoint http://127.0.0.1:8080\n  tls cert.pem key.pem ca.pem\n  kubeconfig /etc/kubeconfig ctx\n  namespaces default kube-system\n  labels environment in (production, qa),tier!=cache\n  namespace_labels team=dns\n  pods insecure\n  endpoint_pod_names\n  ttl 30\n  noendpoints\n  fallthrough in-addr.arpa ip6.arpa\n  ignore empty_service\n  startup_timeout 10s\n }\n}",
        &[PLUGIN],
    )
    .unwrap();
}

#[test]
fn kubeadm_corefile_block_parses_without_a_cluster() {
    config(
        ".:53 {\n kubernetes cluster.local in-addr.arpa ip6.arpa {\n  pods insecure\n  fallthrough in-addr.arpa ip6.arpa\n  ttl 30\n }\n}",
        &[PLUGIN],
    )
    .unwrap();
}

#[test]
fn bad_options_are_refused_with_their_line() {
    let cases = [
        (
            "ttl 3601",
            "Corefile:3: kubernetes: ttl must be in range [0, 3600]: '3601'",
        ),
        (
            "pods sometimes",
            "Corefile:3: kubernetes: invalid value for pods: 'sometimes'",
        ),
        (
            "endpoint ftp://x",
            "Corefile:3: kubernetes: invalid endpoint URL 'ftp://x'",
        ),
        (
            "ignore things",
            "Corefile:3: kubernetes: ignore takes only 'empty_service'",
        ),
        (
            "startup_timeout soon",
            "Corefile:3: kubernetes: invalid duration 'soon'",
        ),
        (
            "tls a b",
            "Corefile:3: kubernetes: tls needs CERT KEY CACERT",
        ),
    ];
    for (line, expected) in cases {
        let text = format!(". {{\n kubernetes {{\n  {line}\n }}\n}}");
        assert_eq!(config_error(&text, &[PLUGIN]), expected, "{line}");
    }
    let unknown = config_error(". {\n kubernetes {\n  frobnicate\n }\n}", &[PLUGIN]);
    assert!(unknown.starts_with("Corefile:3:"), "{unknown}");
    let twice = config_error(". {\n kubernetes\n kubernetes\n}", &[PLUGIN]);
    assert!(twice.contains("only be used once"), "{twice}");
}

// ------------------------------------------------------------ records

#[tokio::test]
async fn dns_version_is_a_txt_record() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "dns-version.cluster.local", Rtype::TXT).await;
    assert_eq!(
        texts(&r.answer),
        ["dns-version.cluster.local. 5 IN TXT \"1.1.0\""]
    );
}

#[tokio::test]
async fn cluster_ip_service_has_a_record() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "web.default.svc.cluster.local", Rtype::A).await;
    assert!(r.authoritative);
    assert_eq!(
        texts(&r.answer),
        ["web.default.svc.cluster.local. 5 IN A 10.96.0.10"]
    );
}

#[tokio::test]
async fn dual_stack_service_has_aaaa_record() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "web.default.svc.cluster.local", Rtype::AAAA).await;
    assert_eq!(
        texts(&r.answer),
        ["web.default.svc.cluster.local. 5 IN AAAA fd00::10"]
    );
}

#[tokio::test]
async fn names_are_case_insensitive() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "WEB.Default.SVC.Cluster.Local", Rtype::A).await;
    assert_eq!(
        texts(&r.answer),
        ["web.default.svc.cluster.local. 5 IN A 10.96.0.10"]
    );
}

#[tokio::test]
async fn ttl_option_sets_record_ttl() {
    let (_api, config) = plugin("  ttl 30").await;
    let r = ask(&config, "web.default.svc.cluster.local", Rtype::A).await;
    assert_eq!(
        texts(&r.answer),
        ["web.default.svc.cluster.local. 30 IN A 10.96.0.10"]
    );
}

#[tokio::test]
async fn cluster_ip_srv_for_named_port_targets_the_service() {
    let (_api, config) = plugin("").await;
    let r = ask(
        &config,
        "_http._tcp.web.default.svc.cluster.local",
        Rtype::SRV,
    )
    .await;
    assert_eq!(
        texts(&r.answer),
        [
            "_http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 50 80 web.default.svc.cluster.local"
        ]
    );
    assert_eq!(
        texts(&r.additional),
        [
            "web.default.svc.cluster.local. 5 IN A 10.96.0.10",
            "web.default.svc.cluster.local. 5 IN AAAA fd00::10"
        ]
    );
}

#[tokio::test]
async fn srv_with_wrong_protocol_is_nxdomain() {
    let (_api, config) = plugin("").await;
    let r = ask(
        &config,
        "_http._udp.web.default.svc.cluster.local",
        Rtype::SRV,
    )
    .await;
    assert_eq!(r.header_rcode(), Rcode::NXDOMAIN);
}

#[tokio::test]
async fn headless_service_has_a_records_of_ready_endpoints() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "db.default.svc.cluster.local", Rtype::A).await;
    assert_eq!(
        texts(&r.answer),
        [
            "db.default.svc.cluster.local. 5 IN A 10.1.0.2",
            "db.default.svc.cluster.local. 5 IN A 10.1.0.3"
        ]
    );
}

#[tokio::test]
async fn endpoint_hostname_has_a_record() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "db-0.db.default.svc.cluster.local", Rtype::A).await;
    assert_eq!(
        texts(&r.answer),
        ["db-0.db.default.svc.cluster.local. 5 IN A 10.1.0.2"]
    );
}

#[tokio::test]
async fn endpoint_without_hostname_is_named_by_its_dashed_address() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "10-1-0-3.db.default.svc.cluster.local", Rtype::A).await;
    assert_eq!(
        texts(&r.answer),
        ["10-1-0-3.db.default.svc.cluster.local. 5 IN A 10.1.0.3"]
    );
}

#[tokio::test]
async fn endpoint_pod_names_names_endpoints_by_pod() {
    let (_api, config) = plugin("  endpoint_pod_names").await;
    let r = ask(&config, "db-1.db.default.svc.cluster.local", Rtype::A).await;
    assert_eq!(
        texts(&r.answer),
        ["db-1.db.default.svc.cluster.local. 5 IN A 10.1.0.3"]
    );
}

#[tokio::test]
async fn headless_srv_targets_each_endpoint_with_shared_weight() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "_pg._tcp.db.default.svc.cluster.local", Rtype::SRV).await;
    assert_eq!(
        texts(&r.answer),
        [
            "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5432 db-0.db.default.svc.cluster.local",
            "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5432 10-1-0-3.db.default.svc.cluster.local"
        ]
    );
    assert_eq!(
        texts(&r.additional),
        [
            "db-0.db.default.svc.cluster.local. 5 IN A 10.1.0.2",
            "10-1-0-3.db.default.svc.cluster.local. 5 IN A 10.1.0.3"
        ]
    );
}

#[tokio::test]
async fn headless_service_without_endpoints_is_nxdomain() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "lonely.default.svc.cluster.local", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::NXDOMAIN);
}

#[tokio::test]
async fn external_name_service_is_a_cname() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "ext.default.svc.cluster.local", Rtype::A).await;
    assert_eq!(
        texts(&r.answer),
        ["ext.default.svc.cluster.local. 5 IN CNAME www.example.com."]
    );
}

#[tokio::test]
async fn pod_record_in_insecure_mode_is_the_address_of_its_name() {
    let (_api, config) = plugin("  pods insecure").await;
    let r = ask(&config, "10-1-0-9.default.pod.cluster.local", Rtype::A).await;
    assert_eq!(
        texts(&r.answer),
        ["10-1-0-9.default.pod.cluster.local. 5 IN A 10.1.0.9"]
    );
}

#[tokio::test]
async fn verified_pod_record_answers_for_a_pod_with_that_address_in_the_namespace() {
    let (_api, config) = plugin("  pods verified").await;
    let r = ask(&config, "10-1-0-1.default.pod.cluster.local", Rtype::A).await;
    assert_eq!(
        texts(&r.answer),
        ["10-1-0-1.default.pod.cluster.local. 5 IN A 10.1.0.1"]
    );
}

#[tokio::test]
async fn verified_pod_record_of_another_namespace_is_nxdomain() {
    let (_api, config) = plugin("  pods verified").await;
    let r = ask(&config, "10-1-0-1.kube-system.pod.cluster.local", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::NXDOMAIN);
}

#[tokio::test]
async fn verified_pod_record_without_such_pod_is_nxdomain() {
    let (_api, config) = plugin("  pods verified").await;
    let r = ask(&config, "10-1-0-77.default.pod.cluster.local", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::NXDOMAIN);
}

#[tokio::test]
async fn verified_pod_record_of_a_finished_pod_is_nxdomain() {
    let (_api, config) = plugin("  pods verified").await;
    let r = ask(&config, "10-1-0-9.kube-system.pod.cluster.local", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::NXDOMAIN);
}

#[tokio::test]
async fn verified_dual_stack_pod_has_aaaa_record() {
    let (_api, config) = plugin("  pods verified").await;
    let r = ask(&config, "fd00--8.default.pod.cluster.local", Rtype::AAAA).await;
    assert_eq!(
        texts(&r.answer),
        ["fd00--8.default.pod.cluster.local. 5 IN AAAA fd00::8"]
    );
}

#[tokio::test]
async fn verified_pods_follow_pods_starting_finishing_and_deleted() {
    let (api, config) = plugin("  pods verified").await;
    api.apply(&pod("default", "new-0", &["10.1.0.20"], "Running"));
    eventually(
        &config,
        "10-1-0-20.default.pod.cluster.local",
        Rtype::A,
        |r| !r.answer.is_empty(),
    )
    .await;
    // Succeeded leaves the server's selection: the watch reports a deletion.
    api.apply(&pod("default", "new-0", &["10.1.0.20"], "Succeeded"));
    eventually(
        &config,
        "10-1-0-20.default.pod.cluster.local",
        Rtype::A,
        |r| r.header_rcode() == Rcode::NXDOMAIN,
    )
    .await;
    api.delete::<Pod>("default", "web-0");
    eventually(
        &config,
        "10-1-0-1.default.pod.cluster.local",
        Rtype::A,
        |r| r.header_rcode() == Rcode::NXDOMAIN,
    )
    .await;
}

#[tokio::test]
async fn pods_are_watched_only_in_verified_mode() {
    let (api, _config) = plugin("  pods insecure").await;
    assert!(
        !api.requests().iter().any(|r| r.contains("/pods")),
        "{:?}",
        api.requests()
    );
    let (api, _config) = plugin("  pods verified").await;
    assert!(
        api.requests()
            .iter()
            .any(|r| r.starts_with("GET /api/v1/pods") && r.contains("fieldSelector=status.phase")),
        "{:?}",
        api.requests()
    );
}

#[tokio::test]
async fn pod_record_when_pods_disabled_is_nxdomain() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "10-1-0-9.default.pod.cluster.local", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::NXDOMAIN);
}

#[tokio::test]
async fn apex_soa_is_coredns_shape() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "cluster.local", Rtype::SOA).await;
    let soa = texts(&r.answer);
    assert_eq!(soa.len(), 1);
    assert!(
        soa[0].starts_with(
            "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. "
        ),
        "{soa:?}"
    );
    assert!(soa[0].ends_with(" 7200 1800 86400 5"), "{soa:?}");
}

#[tokio::test]
async fn apex_ns_has_ns_dns_glue() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "cluster.local", Rtype::NS).await;
    assert_eq!(
        texts(&r.answer),
        ["cluster.local. 5 IN NS ns.dns.cluster.local."]
    );
    assert_eq!(
        texts(&r.additional),
        ["ns.dns.cluster.local. 5 IN A 127.0.0.1"]
    );
}

#[tokio::test]
async fn existing_namespace_is_nodata_with_soa() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "empty.svc.cluster.local", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::NOERROR);
    assert!(r.answer.is_empty());
    assert_eq!(r.authority[0].rtype(), Rtype::SOA);
}

#[tokio::test]
async fn unknown_namespace_is_nxdomain_with_soa() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "nowhere.svc.cluster.local", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::NXDOMAIN);
    assert_eq!(r.authority[0].rtype(), Rtype::SOA);
}

#[tokio::test]
async fn unknown_service_is_nxdomain() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "nope.default.svc.cluster.local", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::NXDOMAIN);
}

#[tokio::test]
async fn namespaces_option_hides_other_namespaces() {
    let (_api, config) = plugin("  namespaces kube-system").await;
    let r = ask(&config, "web.default.svc.cluster.local", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::NXDOMAIN);
}

#[tokio::test]
async fn ptr_of_cluster_ip_names_the_service() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "10.0.96.10.in-addr.arpa", Rtype::PTR).await;
    assert_eq!(
        texts(&r.answer),
        ["10.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local."]
    );
}

#[tokio::test]
async fn ptr_of_ipv6_cluster_ip_names_the_service() {
    let (_api, config) = plugin("").await;
    let name = "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa";
    let r = ask(&config, name, Rtype::PTR).await;
    assert_eq!(
        texts(&r.answer),
        [format!("{name}. 5 IN PTR web.default.svc.cluster.local.")]
    );
}

#[tokio::test]
async fn ptr_of_endpoint_names_the_endpoint() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "2.0.1.10.in-addr.arpa", Rtype::PTR).await;
    assert_eq!(
        texts(&r.answer),
        ["2.0.1.10.in-addr.arpa. 5 IN PTR db-0.db.default.svc.cluster.local."]
    );
}

#[tokio::test]
async fn unknown_ptr_falls_through_when_asked() {
    let (_api, config) = plugin("  fallthrough in-addr.arpa ip6.arpa").await;
    let r = ask(&config, "9.9.9.9.in-addr.arpa", Rtype::PTR).await;
    assert_eq!(r.header_rcode(), Rcode::REFUSED, "the next plugin answered");
}

#[tokio::test]
async fn names_outside_the_zones_go_to_the_next_plugin() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "example.org", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::REFUSED);
}

#[tokio::test]
async fn ignore_empty_service_makes_endpointless_cluster_ip_nxdomain() {
    let api = cluster().await;
    api.apply(&cluster_ip(
        "default",
        "idle",
        &["10.96.0.11"],
        &[("http", 80, "TCP")],
    ));
    let config = started(&corefile(&api, ZONES, "  ignore empty_service")).await;
    let r = ask(&config, "idle.default.svc.cluster.local", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::NXDOMAIN);
    let r = ask(&config, "web.default.svc.cluster.local", Rtype::A).await;
    assert_eq!(
        texts(&r.answer),
        ["web.default.svc.cluster.local. 5 IN A 10.96.0.10"]
    );
}

#[tokio::test]
async fn labels_option_selects_services_server_side() {
    let api = cluster().await;
    let mut labelled = cluster_ip("default", "tagged", &["10.96.0.12"], &[("http", 80, "TCP")]);
    labelled.metadata.labels = Some(BTreeMap::from([("tier".to_owned(), "front".to_owned())]));
    api.apply(&labelled);
    let config = started(&corefile(&api, ZONES, "  labels tier=front")).await;
    let r = ask(&config, "tagged.default.svc.cluster.local", Rtype::A).await;
    assert_eq!(
        texts(&r.answer),
        ["tagged.default.svc.cluster.local. 5 IN A 10.96.0.12"]
    );
    let r = ask(&config, "web.default.svc.cluster.local", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::NXDOMAIN);
    assert!(
        api.requests()
            .iter()
            .any(|r| r.contains("labelSelector=tier%3Dfront")),
        "{:?}",
        api.requests()
    );
}

// ------------------------------------------------------------ sync and watch

#[tokio::test]
async fn ready_only_after_the_first_sync() {
    let api = cluster().await;
    let config = config(&corefile(&api, ZONES, ""), &[PLUGIN]).unwrap();
    let (_, lifecycle) = &config.blocks[0].lifecycles[0];
    assert!(!lifecycle.ready());
    lifecycle.startup().await.unwrap();
    assert!(lifecycle.ready());
}

#[tokio::test]
async fn unsynced_plugin_answers_servfail_until_the_api_answers() {
    let api = ApiServer::start().await;
    let url = api.url();
    api.stop();
    let text = format!(
        ". {{\n kubernetes cluster.local {{\n  endpoint {url}\n  startup_timeout 200ms\n }}\n}}"
    );
    let config = config(&text, &[PLUGIN]).unwrap();
    let (_, lifecycle) = &config.blocks[0].lifecycles[0];
    let started = std::time::Instant::now();
    lifecycle.startup().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "startup_timeout bounds the start"
    );
    assert!(!lifecycle.ready());
    let r = ask(&config, "web.default.svc.cluster.local", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::SERVFAIL);
    // The API comes up: the watchers sync and answers follow.
    api.apply(&namespace("default"));
    api.apply(&cluster_ip(
        "default",
        "web",
        &["10.96.0.10"],
        &[("http", 80, "TCP")],
    ));
    api.restart().await;
    eventually(&config, "web.default.svc.cluster.local", Rtype::A, |r| {
        !r.answer.is_empty()
    })
    .await;
    // Every watcher syncs (they back off independently): ready within a bounded wait.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !lifecycle.ready() {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn added_service_is_answered_after_a_watch_event() {
    let (api, config) = plugin("").await;
    api.apply(&cluster_ip(
        "default",
        "new",
        &["10.96.0.20"],
        &[("http", 80, "TCP")],
    ));
    let r = eventually(&config, "new.default.svc.cluster.local", Rtype::A, |r| {
        !r.answer.is_empty()
    })
    .await;
    assert_eq!(
        texts(&r.answer),
        ["new.default.svc.cluster.local. 5 IN A 10.96.0.20"]
    );
}

#[tokio::test]
async fn changed_service_address_is_followed() {
    let (api, config) = plugin("").await;
    api.apply(&cluster_ip(
        "default",
        "web",
        &["10.96.0.99"],
        &[("http", 80, "TCP")],
    ));
    eventually(&config, "web.default.svc.cluster.local", Rtype::A, |r| {
        texts(&r.answer) == ["web.default.svc.cluster.local. 5 IN A 10.96.0.99"]
    })
    .await;
    // The old address no longer has a PTR.
    eventually(&config, "10.0.96.10.in-addr.arpa", Rtype::PTR, |r| {
        r.header_rcode() == Rcode::NXDOMAIN
    })
    .await;
}

#[tokio::test]
async fn removed_service_becomes_nxdomain() {
    let (api, config) = plugin("").await;
    api.delete::<Service>("default", "web");
    eventually(&config, "web.default.svc.cluster.local", Rtype::A, |r| {
        r.header_rcode() == Rcode::NXDOMAIN
    })
    .await;
}

#[tokio::test]
async fn endpoints_added_and_removed_are_followed() {
    let (api, config) = plugin("").await;
    api.apply(&slice(
        "default",
        "lonely-1",
        "lonely",
        &[ep("10.1.0.7")],
        &[("pg", 5432, "TCP")],
    ));
    eventually(&config, "lonely.default.svc.cluster.local", Rtype::A, |r| {
        texts(&r.answer) == ["lonely.default.svc.cluster.local. 5 IN A 10.1.0.7"]
    })
    .await;
    api.delete::<EndpointSlice>("default", "lonely-1");
    eventually(&config, "lonely.default.svc.cluster.local", Rtype::A, |r| {
        r.header_rcode() == Rcode::NXDOMAIN
    })
    .await;
}

#[tokio::test]
async fn endpoint_turning_unready_leaves_the_answer() {
    let (api, config) = plugin("").await;
    let mut gone = ep("10.1.0.3");
    gone.ready = false;
    api.apply(&slice(
        "default",
        "db-1",
        "db",
        &[
            Ep {
                addresses: &["10.1.0.2"],
                hostname: Some("db-0"),
                pod: None,
                ready: true,
            },
            gone,
        ],
        &[("pg", 5432, "TCP")],
    ));
    eventually(&config, "db.default.svc.cluster.local", Rtype::A, |r| {
        texts(&r.answer) == ["db.default.svc.cluster.local. 5 IN A 10.1.0.2"]
    })
    .await;
}

#[tokio::test]
async fn new_namespace_turns_nxdomain_into_nodata() {
    let (api, config) = plugin("").await;
    api.apply(&namespace("fresh"));
    eventually(&config, "fresh.svc.cluster.local", Rtype::A, |r| {
        r.header_rcode() == Rcode::NOERROR
    })
    .await;
    api.delete::<Namespace>("", "fresh");
    eventually(&config, "fresh.svc.cluster.local", Rtype::A, |r| {
        r.header_rcode() == Rcode::NXDOMAIN
    })
    .await;
}

#[tokio::test]
async fn outage_keeps_answers_and_recovery_follows_changes() {
    let (api, config) = plugin("").await;
    api.stop();
    for _ in 0..5 {
        let r = ask(&config, "web.default.svc.cluster.local", Rtype::A).await;
        assert_eq!(
            texts(&r.answer),
            ["web.default.svc.cluster.local. 5 IN A 10.96.0.10"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Changes made while down are seen once the API is back.
    api.apply(&cluster_ip(
        "default",
        "late",
        &["10.96.0.30"],
        &[("http", 80, "TCP")],
    ));
    api.restart().await;
    eventually(&config, "late.default.svc.cluster.local", Rtype::A, |r| {
        !r.answer.is_empty()
    })
    .await;
}

#[tokio::test]
async fn gone_resource_version_relists() {
    let (api, config) = plugin("").await;
    api.stop();
    // While down: a change, then history compacted past every watcher's version.
    api.delete::<Service>("default", "ext");
    api.apply(&cluster_ip(
        "default",
        "relisted",
        &["10.96.0.40"],
        &[("http", 80, "TCP")],
    ));
    api.compact();
    api.restart().await;
    eventually(
        &config,
        "relisted.default.svc.cluster.local",
        Rtype::A,
        |r| !r.answer.is_empty(),
    )
    .await;
    // The deletion is seen through the relist (no DELETED event was kept).
    eventually(&config, "ext.default.svc.cluster.local", Rtype::A, |r| {
        r.header_rcode() == Rcode::NXDOMAIN
    })
    .await;
    let lists = api
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/services") && !r.contains("watch="))
        .count();
    assert!(lists >= 2, "a relist after 410: {:?}", api.requests());
}

// ------------------------------------------------------------ the test server itself

#[tokio::test]
async fn test_api_server_lists_as_the_api_does() {
    let api = cluster().await;
    let text = http_get(&api, "/api/v1/namespaces/default/services?limit=2").await;
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["kind"], "ServiceList");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(
        list["items"][0].get("kind").is_none(),
        "items carry no kind"
    );
    assert!(list["metadata"]["continue"].is_string());
    let typed: k8s_openapi::List<Service> = serde_json::from_str(&text).unwrap();
    assert_eq!(typed.items.len(), 2);
}

async fn http_get(api: &ApiServer, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(api.url().trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out.split_once("\r\n\r\n").unwrap().1.to_owned()
}

#[tokio::test]
async fn kubectl_reads_the_test_api_server() {
    let available = std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        assert!(
            std::env::var_os("OXIDNS_REQUIRE_TOOLS").is_none(),
            "kubectl is required (apt-get install kubernetes-client)"
        );
        eprintln!("kubectl not installed: skipped");
        return;
    }
    let api = cluster().await;
    let url = api.url();
    let home = std::env::temp_dir().join(format!("oxidns-kubectl-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("kubectl")
            .args(["--server", &url, "get", "svc,endpointslices,pods", "-A"])
            .env("HOME", &home)
            .env("KUBECONFIG", home.join("none"))
            .output(),
    )
    .await
    .expect("kubectl finished")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kubectl: {stdout}\n{stderr}");
    for name in [
        "web", "db", "lonely", "ext", "web-abc", "db-1", "web-0", "dual-0", "done-0",
    ] {
        assert!(
            stdout
                .split_whitespace()
                .any(|w| w == name || w.ends_with(&format!("/{name}"))),
            "{name} missing from:\n{stdout}\n{stderr}"
        );
    }
}

// ------------------------------------------------------------ autopath @kubernetes

async fn autopath_plugin(block: &str) -> (ApiServer, Config) {
    let api = cluster().await;
    let text = format!(
        ". {{\n autopath @kubernetes\n kubernetes cluster.local {{\n  endpoint {}\n{block}\n }}\n}}",
        api.url()
    );
    let config = config(&text, &[oxidns_plugin_autopath::PLUGIN, PLUGIN]).unwrap();
    for (_, lifecycle) in config.lifecycles() {
        lifecycle.startup().await.unwrap();
    }
    (api, config)
}

async fn ask_from(config: &Config, client: &str, qname: &str, qtype: Rtype) -> Response {
    let mut request = request(qname, qtype);
    request.client = format!("{client}:40000").parse().unwrap();
    serve_chain(&chain(config), &mut request).await.unwrap()
}

#[tokio::test]
async fn autopath_walks_the_search_path_of_the_client_pod() {
    let (_api, config) = autopath_plugin("  pods verified").await;
    // web-0 (10.1.0.1, namespace default) looked up "web.default": its
    // resolver's first try appends default.svc.cluster.local.
    let r = ask_from(
        &config,
        "10.1.0.1",
        "web.default.default.svc.cluster.local",
        Rtype::A,
    )
    .await;
    assert_eq!(r.header_rcode(), Rcode::NOERROR);
    assert_eq!(
        texts(&r.answer),
        [
            "web.default.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.",
            "web.default.svc.cluster.local. 5 IN A 10.96.0.10",
        ]
    );
}

#[tokio::test]
async fn autopath_leaves_clients_that_are_not_pods_alone() {
    let (_api, config) = autopath_plugin("  pods verified").await;
    let r = ask_from(
        &config,
        "192.0.2.7",
        "web.default.default.svc.cluster.local",
        Rtype::A,
    )
    .await;
    assert_eq!(r.header_rcode(), Rcode::NXDOMAIN);
}

#[tokio::test]
async fn autopath_needs_pods_verified() {
    let (_api, config) = autopath_plugin("  pods insecure").await;
    let r = ask_from(
        &config,
        "10.1.0.1",
        "web.default.default.svc.cluster.local",
        Rtype::A,
    )
    .await;
    assert_eq!(r.header_rcode(), Rcode::NXDOMAIN);
}

#[tokio::test]
async fn relist_drops_slices_and_pods_deleted_while_away() {
    let (api, config) = plugin("  pods verified").await;
    api.stop();
    api.delete::<EndpointSlice>("default", "web-abc");
    api.delete::<Pod>("default", "web-0");
    api.compact();
    api.restart().await;
    eventually(&config, "1.0.1.10.in-addr.arpa", Rtype::PTR, |r| {
        r.header_rcode() == Rcode::NXDOMAIN
    })
    .await;
    eventually(
        &config,
        "10-1-0-1.default.pod.cluster.local",
        Rtype::A,
        |r| r.header_rcode() == Rcode::NXDOMAIN,
    )
    .await;
    // What was not deleted is still there after the relist.
    let r = ask(&config, "fd00--8.default.pod.cluster.local", Rtype::AAAA).await;
    assert_eq!(r.answer.len(), 1);
}
