//! Against the kubernetes plugin's test API server: the plugin reads the
//! cluster that a `kubernetes` plugin of the same block watches.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Namespace, Service, ServicePort, ServiceSpec,
    ServiceStatus,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use oxidns_plugin_kubernetes::testing::ApiServer;
use oxidns_server::proto::{Rcode, Record, Response, Rtype};
use oxidns_server::test_util::{Fixed, config, config_error, request, serve_chain};
use oxidns_server::{Config, Handler};

use super::PLUGIN;

fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: ns.map(str::to_owned),
        ..Default::default()
    }
}

fn service(name: &str, cluster_ip: &str, external: &[&str], lb: &[&str]) -> Service {
    Service {
        metadata: meta(Some("default"), name),
        spec: Some(ServiceSpec {
            type_: Some(
                if lb.is_empty() {
                    "ClusterIP"
                } else {
                    "LoadBalancer"
                }
                .into(),
            ),
            cluster_ip: Some(cluster_ip.into()),
            cluster_ips: Some(vec![cluster_ip.into()]),
            external_ips: Some(external.iter().map(|s| (*s).to_owned()).collect()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(
                    lb.iter()
                        .map(|ip| LoadBalancerIngress {
                            ip: Some((*ip).to_owned()),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }),
            ..Default::default()
        }),
    }
}

fn slice(name: &str, service: &str, ips: &[&str]) -> EndpointSlice {
    let mut metadata = meta(Some("default"), name);
    metadata.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_owned(),
        service.to_owned(),
    )]));
    EndpointSlice {
        metadata,
        address_type: "IPv4".into(),
        endpoints: ips
            .iter()
            .map(|ip| Endpoint {
                addresses: vec![(*ip).to_owned()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

async fn cluster() -> ApiServer {
    let api = ApiServer::start().await;
    api.apply(&Namespace {
        metadata: meta(None, "default"),
        ..Default::default()
    });
    api.apply(&service("web", "10.96.0.10", &["192.0.2.10"], &[]));
    api.apply(&service(
        "lb",
        "10.96.0.11",
        &[],
        &["198.51.100.7", "2001:db8::7"],
    ));
    api.apply(&service("internal", "10.96.0.12", &[], &[]));
    api.apply(&service("db", "None", &[], &[]));
    let mut elb = service("elb", "10.96.0.13", &[], &[]);
    elb.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                hostname: Some("a1b2.elb.example.net".into()),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    });
    api.apply(&elb);
    api.apply(&slice("db-1", "db", &["10.1.0.2", "10.1.0.3"]));
    api
}

async fn plugin(options: &str) -> (ApiServer, Config) {
    let api = cluster().await;
    let text = format!(
        ". {{\n k8s_external example.org 2.0.192.in-addr.arpa {{\n{options}\n }}\n kubernetes cluster.local {{\n  endpoint {}\n }}\n}}",
        api.url()
    );
    let config = config(&text, &[PLUGIN, oxidns_plugin_kubernetes::PLUGIN]).unwrap();
    for (_, lifecycle) in config.lifecycles() {
        lifecycle.startup().await.unwrap();
    }
    (api, config)
}

async fn ask(config: &Config, qname: &str, qtype: Rtype) -> Response {
    let mut chain: Vec<Arc<dyn Handler>> = config.blocks[0].chain.to_vec();
    chain.push(Arc::new(Fixed(Response::new(Rcode::REFUSED))));
    serve_chain(&chain, &mut request(qname, qtype))
        .await
        .unwrap()
}

fn texts(records: &[Record]) -> Vec<String> {
    records.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn external_ip_of_a_service_is_its_a_record() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "web.default.example.org", Rtype::A).await;
    assert!(r.authoritative);
    assert_eq!(
        texts(&r.answer),
        ["web.default.example.org. 5 IN A 192.0.2.10"]
    );
}

#[tokio::test]
async fn load_balancer_ingress_addresses_are_a_and_aaaa_records() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "lb.default.example.org", Rtype::A).await;
    assert_eq!(
        texts(&r.answer),
        ["lb.default.example.org. 5 IN A 198.51.100.7"]
    );
    let r = ask(&config, "lb.default.example.org", Rtype::AAAA).await;
    assert_eq!(
        texts(&r.answer),
        ["lb.default.example.org. 5 IN AAAA 2001:db8::7"]
    );
}

#[tokio::test]
async fn load_balancer_known_by_name_is_a_cname() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "elb.default.example.org", Rtype::A).await;
    assert_eq!(
        texts(&r.answer),
        ["elb.default.example.org. 5 IN CNAME a1b2.elb.example.net."]
    );
}

#[tokio::test]
async fn service_without_external_address_is_nxdomain() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "internal.default.example.org", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::NXDOMAIN);
    assert_eq!(texts(&r.authority).len(), 1);
}

#[tokio::test]
async fn existing_namespace_is_nodata_and_unknown_one_nxdomain() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "default.example.org", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::NOERROR);
    assert!(r.answer.is_empty());
    let r = ask(&config, "web.nowhere.example.org", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::NXDOMAIN);
}

#[tokio::test]
async fn srv_targets_the_external_name_with_its_address() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "_http._tcp.web.default.example.org", Rtype::SRV).await;
    assert_eq!(
        texts(&r.answer),
        ["_http._tcp.web.default.example.org. 5 IN SRV 0 100 80 web.default.example.org"]
    );
    assert_eq!(
        texts(&r.additional),
        ["web.default.example.org. 5 IN A 192.0.2.10"]
    );
}

#[tokio::test]
async fn other_types_are_nodata() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "web.default.example.org", Rtype::TXT).await;
    assert_eq!(r.header_rcode(), Rcode::NOERROR);
    assert!(r.answer.is_empty());
    assert_eq!(r.authority.len(), 1);
}

#[tokio::test]
async fn apex_soa_names_the_apex_subdomain() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "example.org", Rtype::SOA).await;
    let soa = texts(&r.answer);
    assert_eq!(soa.len(), 1);
    assert!(
        soa[0]
            .starts_with("example.org. 5 IN SOA ns1.dns.example.org. hostmaster.dns.example.org. "),
        "{soa:?}"
    );
    assert!(soa[0].ends_with(" 7200 1800 86400 5"), "{soa:?}");
}

#[tokio::test]
async fn apex_ns_has_its_address_as_glue() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "example.org", Rtype::NS).await;
    assert_eq!(
        texts(&r.answer),
        ["example.org. 5 IN NS ns1.dns.example.org."]
    );
    assert_eq!(
        texts(&r.additional),
        ["ns1.dns.example.org. 5 IN A 127.0.0.1"]
    );
    let r = ask(&config, "ns1.dns.example.org", Rtype::A).await;
    assert_eq!(texts(&r.answer), ["ns1.dns.example.org. 5 IN A 127.0.0.1"]);
    let r = ask(&config, "dns.example.org", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::NOERROR);
    assert!(r.answer.is_empty());
    let r = ask(&config, "ns2.dns.example.org", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::NXDOMAIN);
}

#[tokio::test]
async fn apex_and_ttl_options_change_the_apex_records() {
    let (_api, config) = plugin("  apex ns\n  ttl 60").await;
    let r = ask(&config, "example.org", Rtype::NS).await;
    assert_eq!(
        texts(&r.answer),
        ["example.org. 60 IN NS ns1.ns.example.org."]
    );
    let r = ask(&config, "web.default.example.org", Rtype::A).await;
    assert_eq!(
        texts(&r.answer),
        ["web.default.example.org. 60 IN A 192.0.2.10"]
    );
}

#[tokio::test]
async fn headless_service_endpoints_only_with_headless() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "db.default.example.org", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::NXDOMAIN);
    let (_api, config) = plugin("  headless").await;
    let r = ask(&config, "db.default.example.org", Rtype::A).await;
    assert_eq!(
        texts(&r.answer),
        [
            "db.default.example.org. 5 IN A 10.1.0.2",
            "db.default.example.org. 5 IN A 10.1.0.3"
        ]
    );
    let r = ask(&config, "10-1-0-3.db.default.example.org", Rtype::A).await;
    assert_eq!(
        texts(&r.answer),
        ["10-1-0-3.db.default.example.org. 5 IN A 10.1.0.3"]
    );
}

#[tokio::test]
async fn ptr_of_an_external_address_names_the_service() {
    let (_api, config) = plugin("").await;
    let r = ask(&config, "10.2.0.192.in-addr.arpa", Rtype::PTR).await;
    assert_eq!(
        texts(&r.answer),
        ["10.2.0.192.in-addr.arpa. 5 IN PTR web.default.example.org."]
    );
    let r = ask(&config, "11.2.0.192.in-addr.arpa", Rtype::PTR).await;
    assert_eq!(r.header_rcode(), Rcode::NXDOMAIN);
}

#[tokio::test]
async fn changed_external_ip_is_followed() {
    let (api, config) = plugin("").await;
    api.apply(&service("web", "10.96.0.10", &["192.0.2.99"], &[]));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = ask(&config, "web.default.example.org", Rtype::A).await;
        if texts(&r.answer) == ["web.default.example.org. 5 IN A 192.0.2.99"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            texts(&r.answer)
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn without_kubernetes_the_query_is_passed_on() {
    let config = config(". {\n k8s_external example.org\n}", &[PLUGIN]).unwrap();
    let r = ask(&config, "web.default.example.org", Rtype::A).await;
    assert_eq!(r.header_rcode(), Rcode::REFUSED);
}

#[test]
fn bad_options_are_refused_with_their_line() {
    assert_eq!(
        config_error(". {\n k8s_external {\n  ttl 4000\n }\n}", &[PLUGIN]),
        "Corefile:3: ttl: ttl must be in range [0, 3600]: '4000'"
    );
    let unknown = config_error(". {\n k8s_external {\n  frobnicate\n }\n}", &[PLUGIN]);
    assert!(unknown.starts_with("Corefile:3:"), "{unknown}");
}
