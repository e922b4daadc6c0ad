//! The test Kubernetes API server with a large cluster, for bench/kubernetes.sh:
//! `bench_api_server SERVICES ENDPOINTS_PER_SERVICE NAMESPACES`.
//!
//! Every Service is a ClusterIP service with two ports and one EndpointSlice
//! (`ENDPOINTS_PER_SERVICE` ready endpoints, at most 100 as the EndpointSlice
//! controller makes them), with what the controller writes: target Pods,
//! node names, zones and conditions. Prints `URL` on stdout once loaded and
//! serves until killed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use oxidns_plugin_kubernetes::testing::ApiServer;

fn arg(n: usize, default: u32) -> u32 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: ns.map(str::to_owned),
        ..Default::default()
    }
}

/// The i-th address of a /8.
fn address(first: u32, i: u32) -> String {
    format!("{first}.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

#[tokio::main]
async fn main() {
    let services = arg(1, 10_000);
    let per_service = arg(2, 10).min(100);
    let namespaces = arg(3, 100).max(1);
    let api = ApiServer::start().await;
    for n in 0..namespaces {
        api.apply(&Namespace {
            metadata: meta(None, &format!("ns-{n}")),
            ..Default::default()
        });
    }
    let port = |name: &str, port: i32| ServicePort {
        name: Some(name.into()),
        port,
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let mut endpoint = 0u32;
    for s in 0..services {
        let ns = format!("ns-{}", s % namespaces);
        let name = format!("svc-{s}");
        let cluster_ip = address(10, s + 1);
        api.apply(&Service {
            metadata: meta(Some(&ns), &name),
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".into()),
                cluster_ip: Some(cluster_ip.clone()),
                cluster_ips: Some(vec![cluster_ip]),
                ports: Some(vec![port("http", 80), port("metrics", 9090)]),
                selector: Some(BTreeMap::from([("app".into(), name.clone())])),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut metadata = meta(Some(&ns), &format!("{name}-abcde"));
        metadata.labels = Some(BTreeMap::from([
            ("kubernetes.io/service-name".to_owned(), name.clone()),
            (
                "endpointslice.kubernetes.io/managed-by".to_owned(),
                "endpointslice-controller.k8s.io".to_owned(),
            ),
        ]));
        let endpoints = (0..per_service)
            .map(|e| {
                endpoint += 1;
                Endpoint {
                    addresses: vec![address(11, endpoint)],
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        serving: Some(true),
                        terminating: Some(false),
                    }),
                    node_name: Some(format!("node-{}", endpoint % 500)),
                    zone: Some(format!("zone-{}", endpoint % 3)),
                    target_ref: Some(ObjectReference {
                        kind: Some("Pod".into()),
                        name: Some(format!("{name}-{e}")),
                        namespace: Some(ns.clone()),
                        uid: Some(format!("00000000-0000-0000-0000-{endpoint:012}")),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            })
            .collect();
        api.apply(&EndpointSlice {
            metadata,
            address_type: "IPv4".into(),
            endpoints,
            ports: Some(vec![
                EndpointPort {
                    name: Some("http".into()),
                    port: Some(8080),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                },
                EndpointPort {
                    name: Some("metrics".into()),
                    port: Some(9090),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                },
            ]),
        });
    }
    println!("{}", api.url());
    std::future::pending::<()>().await;
}
