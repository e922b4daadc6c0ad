//! The binary against the kubernetes plugin's test API server: cluster
//! records, `pods verified`, `autopath @kubernetes` and `k8s_external`
//! answered over UDP by a real oxidns process.
#![cfg(feature = "kubernetes")]

mod common;

use std::collections::BTreeMap;

use common::{Oxidns, query, udp_with_retries};
use k8s_openapi::api::core::v1::{
    Namespace, Pod, PodIP, PodStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use oxidns_plugin_kubernetes::testing::ApiServer;
use oxidns_proto::{Rcode, Rtype};

fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: ns.map(str::to_owned),
        labels: Some(BTreeMap::new()),
        ..Default::default()
    }
}

fn pod(name: &str, ip: &str) -> Pod {
    Pod {
        metadata: meta(Some("default"), name),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.into()),
            pod_ips: Some(vec![PodIP { ip: ip.into() }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A cluster where the test's own address (127.0.0.1) is a pod of `default`.
fn cluster(runtime: &tokio::runtime::Runtime) -> ApiServer {
    let api = runtime.block_on(ApiServer::start());
    api.apply(&Namespace {
        metadata: meta(None, "default"),
        ..Default::default()
    });
    api.apply(&Service {
        metadata: meta(Some("default"), "web"),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some("10.96.0.10".into()),
            cluster_ips: Some(vec!["10.96.0.10".into()]),
            external_ips: Some(vec!["192.0.2.10".into()]),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    });
    api.apply(&pod("client", "127.0.0.1"));
    api
}

fn answers(server: &Oxidns, qname: &str, qtype: Rtype) -> (Rcode, Vec<String>) {
    let response = udp_with_retries(server.addr(), &query(qname, qtype), 3).response;
    (
        response.rcode.rcode(),
        response.answer.iter().map(ToString::to_string).collect(),
    )
}

#[test]
fn binary_serves_the_cluster_autopath_and_external_names() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let api = cluster(&runtime);
    let server = Oxidns::start(&format!(
        ".:0 {{\n bind 127.0.0.1\n autopath @kubernetes\n kubernetes cluster.local {{\n  endpoint {}\n  pods verified\n }}\n k8s_external example.org\n}}\n",
        api.url()
    ));

    assert_eq!(
        answers(&server, "web.default.svc.cluster.local", Rtype::A),
        (
            Rcode::NOERROR,
            vec!["web.default.svc.cluster.local. 5 IN A 10.96.0.10".to_owned()]
        )
    );
    // pods verified: only the address of a pod of that namespace.
    assert_eq!(
        answers(&server, "127-0-0-1.default.pod.cluster.local", Rtype::A).1,
        ["127-0-0-1.default.pod.cluster.local. 5 IN A 127.0.0.1"]
    );
    assert_eq!(
        answers(&server, "127-0-0-2.default.pod.cluster.local", Rtype::A).0,
        Rcode::NXDOMAIN
    );
    // The client (pod "client" of default) looked up "web.default": one answer.
    assert_eq!(
        answers(&server, "web.default.default.svc.cluster.local", Rtype::A),
        (
            Rcode::NOERROR,
            vec![
                "web.default.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local."
                    .to_owned(),
                "web.default.svc.cluster.local. 5 IN A 10.96.0.10".to_owned()
            ]
        )
    );
    // k8s_external: the external IP under the outside zone.
    assert_eq!(
        answers(&server, "web.default.example.org", Rtype::A).1,
        ["web.default.example.org. 5 IN A 192.0.2.10"]
    );
    drop(server);
    drop(api);
}
