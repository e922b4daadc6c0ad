//! What `k8s_external` reads of the cluster (CoreDNS's `Externaler`): the
//! external addresses of Services (`spec.externalIPs` and load balancer
//! ingress, addresses or host names), and with `headless` the ready
//! endpoints of headless Services.
//!
//! The plugin finds the cluster through [`Clusters`], shared by the plugins
//! of a server block (`Setup::shared`); `kubernetes` fills it at setup.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use crate::Options;
use crate::store::{Namespace, Port, ServiceKind, Store};
use crate::watch::Shared;

/// The `kubernetes` plugin of a server block, once set up.
#[derive(Default)]
pub struct Clusters {
    cluster: OnceLock<Cluster>,
}

impl Clusters {
    pub fn get(&self) -> Option<&Cluster> {
        self.cluster.get()
    }

    pub(crate) fn set(&self, cluster: Cluster) {
        // One kubernetes plugin per block: a second set cannot happen.
        let _ = self.cluster.set(cluster);
    }
}

/// A read-only view of what the `kubernetes` plugin watches.
pub struct Cluster {
    pub(crate) options: Options,
    pub(crate) shared: Arc<Shared>,
}

/// Where an external name points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExternalTarget {
    Address(IpAddr),
    /// A load balancer known by a host name (presentation form, lower case).
    Host(String),
}

/// One record of an external name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalAddress {
    /// The owner's labels below the external zone: `[service, namespace]`,
    /// or `[endpoint, service, namespace]` for a headless endpoint.
    pub labels: Vec<String>,
    pub target: ExternalTarget,
    pub port: Option<u16>,
}

/// What an external name is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExternalLookup {
    Found(Vec<ExternalAddress>),
    /// The name exists (a namespace) but holds no records.
    NoData,
    NxDomain,
}

impl Cluster {
    fn exposed<'s>(&self, store: &'s Store, ns: &str) -> Option<&'s Namespace> {
        if !self.options.namespaces.is_empty() && !self.options.namespaces.iter().any(|n| n == ns) {
            return None;
        }
        store.namespaces.get(ns).filter(|n| n.exists)
    }

    /// Whether every watched resource has been listed once.
    pub fn has_synced(&self) -> bool {
        self.shared.has_synced()
    }

    /// The SOA serial: the time of the last change.
    pub fn serial(&self) -> u32 {
        self.shared
            .store
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .modified
    }

    /// The records of a name below an external zone, given its labels
    /// (lower case, leftmost first): `<svc>.<ns>`, `<endpoint>.<svc>.<ns>`
    /// (with `headless`), `_<port>._<proto>.<svc>.<ns>`.
    pub fn external(&self, labels: &[String], headless: bool) -> ExternalLookup {
        let store = self.shared.store.read().unwrap_or_else(|e| e.into_inner());
        let Some((ns, rest)) = labels.split_last() else {
            return ExternalLookup::NoData;
        };
        let Some(namespace) = self.exposed(&store, ns) else {
            return ExternalLookup::NxDomain;
        };
        let strip = |l: &str| l.strip_prefix('_').unwrap_or(l).to_owned();
        let (service_name, endpoint, port, proto) = match rest {
            [] => return ExternalLookup::NoData,
            [service] => (service, None, None, None),
            [endpoint, service] => (service, Some(strip(endpoint)), None, None),
            [port, proto, service] => (service, None, Some(strip(port)), Some(strip(proto))),
            _ => return ExternalLookup::NxDomain,
        };
        let Some(service) = namespace.services.get(service_name.as_str()) else {
            return ExternalLookup::NxDomain;
        };
        let port_matches = |p: &Port| {
            port.as_deref().is_none_or(|want| *want == *p.name)
                && proto
                    .as_deref()
                    .is_none_or(|want| want == p.protocol.as_str())
        };
        let mut found = Vec::new();
        let endpoints = headless
            && service.external.is_empty()
            && service.external_hosts.is_empty()
            && (matches!(service.kind, ServiceKind::Headless) || endpoint.is_some());
        if endpoints {
            for slice in namespace.slices_of(service_name) {
                for e in &slice.endpoints {
                    let label = e.label(self.options.endpoint_pod_names);
                    if endpoint.as_ref().is_some_and(|want| *want != label) {
                        continue;
                    }
                    for p in slice.ports.iter().filter(|p| port_matches(p)) {
                        found.push(ExternalAddress {
                            labels: vec![label.clone(), service_name.clone(), ns.clone()],
                            target: ExternalTarget::Address(e.ip),
                            port: p.port,
                        });
                    }
                }
            }
        } else if endpoint.is_none() {
            let targets = service
                .external
                .iter()
                .map(|ip| ExternalTarget::Address(*ip))
                .chain(
                    service
                        .external_hosts
                        .iter()
                        .map(|h| ExternalTarget::Host(h.to_string())),
                );
            for target in targets {
                for p in service.ports.iter().filter(|p| port_matches(p)) {
                    found.push(ExternalAddress {
                        labels: vec![service_name.clone(), ns.clone()],
                        target: target.clone(),
                        port: p.port,
                    });
                }
            }
        }
        if found.is_empty() {
            ExternalLookup::NxDomain
        } else {
            ExternalLookup::Found(found)
        }
    }

    /// The services (`[service, namespace]`) that have `ip` as an external address.
    pub fn external_reverse(&self, ip: IpAddr) -> Vec<[String; 2]> {
        let store = self.shared.store.read().unwrap_or_else(|e| e.into_inner());
        store
            .external_reverse
            .get(&ip)
            .into_iter()
            .flatten()
            .filter(|(ns, _)| self.exposed(&store, ns).is_some())
            .map(|(ns, service)| [service.to_string(), ns.to_string()])
            .collect()
    }
}
