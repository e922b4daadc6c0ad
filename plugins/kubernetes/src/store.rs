//! What the plugin knows of the cluster: Services, ready endpoints of their
//! EndpointSlices, Namespaces and (with `pods verified`) the addresses of
//! Pods, kept compactly (names interned, addresses as [`IpAddr`]) and looked
//! up by name or address in O(1).
//!
//! Updates are applied one object at a time; a relist (the watcher's `Init`
//! … `InitDone`) replaces the objects of one kind at once.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace as K8sNamespace, Pod as K8sPod, Service as K8sService};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// An interned name (namespace, service, port, host name).
pub(crate) type Str = Arc<str>;

/// The (namespace, name) keys of the objects of one kind seen by a (re)list,
/// lower case; "" is the namespace of Namespaces.
pub(crate) type Listed = HashSet<(String, String)>;

/// The key of an object in a [`Listed`].
pub(crate) fn listed_key(
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> (String, String) {
    (
        metadata
            .namespace
            .as_deref()
            .unwrap_or("")
            .to_ascii_lowercase(),
        metadata.name.as_deref().unwrap_or("").to_ascii_lowercase(),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(text: Option<&str>) -> Protocol {
        match text.map(str::to_ascii_uppercase).as_deref() {
            Some("UDP") => Protocol::Udp,
            Some("SCTP") => Protocol::Sctp,
            _ => Protocol::Tcp,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A port; `port` is `None` for CoreDNS's placeholder of an endpoint without ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Port {
    pub name: Str,
    pub protocol: Protocol,
    pub port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ServiceKind {
    /// ClusterIP, NodePort, LoadBalancer: the cluster IPs (dual-stack: both families).
    ClusterIp(Vec<IpAddr>),
    Headless,
    /// The target name, in presentation form.
    ExternalName(Box<str>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Service {
    pub kind: ServiceKind,
    pub ports: Vec<Port>,
    /// `spec.externalIPs` and load balancer ingress addresses, for `k8s_external`.
    pub external: Box<[IpAddr]>,
    /// Load balancer ingress given as a host name (cloud load balancers).
    pub external_hosts: Box<[Box<str>]>,
}

/// A ready endpoint address of a slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub ip: IpAddr,
    pub hostname: Option<Str>,
    /// The name of the Pod behind it (targetRef), for `endpoint_pod_names`.
    pub pod: Option<Str>,
}

impl Endpoint {
    /// The endpoint's label in DNS names, as CoreDNS's `endpointHostname`.
    pub(crate) fn label(&self, pod_names: bool) -> String {
        if let Some(host) = &self.hostname {
            return host.to_string();
        }
        if pod_names && let Some(pod) = &self.pod {
            return pod.to_string();
        }
        dashed(self.ip)
    }
}

/// `10-0-0-1` for 10.0.0.1, `fd00--1` for fd00::1.
pub(crate) fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Slice {
    pub service: Str,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<Port>,
}

/// One namespace's objects; `exists` once the Namespace object was seen.
#[derive(Debug, Default)]
pub(crate) struct Namespace {
    pub exists: bool,
    pub services: HashMap<Str, Service>,
    /// Slices by slice name.
    pub slices: HashMap<Str, Slice>,
    /// Slice names by service name.
    pub slices_of: HashMap<Str, Vec<Str>>,
}

impl Namespace {
    fn is_empty(&self) -> bool {
        !self.exists && self.services.is_empty() && self.slices.is_empty()
    }

    /// The slices of a service.
    pub(crate) fn slices_of<'a>(&'a self, service: &str) -> impl Iterator<Item = &'a Slice> + 'a {
        self.slices_of
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(|name| self.slices.get(name))
    }
}

/// Who owns an address, for PTR answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    Service {
        namespace: Str,
        service: Str,
    },
    /// An endpoint of this slice has the address (the slice holds the rest).
    Endpoint {
        namespace: Str,
        slice: Str,
    },
}

/// A Pod holding an address: its namespace, and a hash of its name that
/// tells two pods of one namespace apart (hostNetwork pods share the node's
/// address) without keeping the name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PodRef {
    pub namespace: Str,
    name_hash: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    /// Whether endpoints keep the name of their Pod (`endpoint_pod_names`):
    /// one string per endpoint, not kept when nothing reads it.
    pub keep_pod_names: bool,
    interned: HashSet<Str>,
    pub namespaces: HashMap<Str, Namespace>,
    pub reverse: HashMap<IpAddr, Vec<Owner>>,
    /// Services by external address, for `k8s_external`'s PTR records.
    pub external_reverse: HashMap<IpAddr, Vec<(Str, Str)>>,
    /// Running pods by address (only filled with `pods verified`).
    pub pods: HashMap<IpAddr, Vec<PodRef>>,
    /// Changes since the interned names were last swept.
    changes: u32,
    /// Seconds since the epoch of the last change (the SOA serial).
    pub modified: u32,
}

impl Store {
    fn intern(&mut self, text: &str) -> Str {
        if let Some(found) = self.interned.get(text) {
            return found.clone();
        }
        let value: Str = Arc::from(text.to_ascii_lowercase().as_str());
        if let Some(found) = self.interned.get(&*value) {
            return found.clone();
        }
        self.interned.insert(value.clone());
        value
    }

    /// Forgets interned names nothing uses any more (slice names, ports,
    /// host names of objects gone), so churn does not grow the set.
    fn sweep_interned(&mut self) {
        self.interned.retain(|name| Arc::strong_count(name) > 1);
        self.interned.shrink_to_fit();
        self.changes = 0;
    }

    fn touch(&mut self) {
        self.changes += 1;
        if self.changes >= 4096 && self.changes as usize >= self.interned.len() {
            self.sweep_interned();
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        self.modified = now.max(self.modified);
    }

    fn namespace_mut(&mut self, name: &str) -> (Str, &mut Namespace) {
        let key = self.intern(name);
        let entry = self.namespaces.entry(key.clone()).or_default();
        (key, entry)
    }

    fn drop_if_empty(&mut self, name: &str) {
        if self.namespaces.get(name).is_some_and(Namespace::is_empty) {
            self.namespaces.remove(name);
        }
    }

    // ------------------------------------------------------------ namespaces

    pub(crate) fn apply_namespace(&mut self, object: &K8sNamespace) {
        let Some(name) = object.metadata.name.as_deref() else {
            return;
        };
        self.namespace_mut(name).1.exists = true;
        self.touch();
    }

    pub(crate) fn delete_namespace(&mut self, name: &str) {
        if let Some(ns) = self.namespaces.get_mut(name) {
            ns.exists = false;
        }
        self.drop_if_empty(name);
        self.touch();
    }

    /// After a relist: forgets the namespaces that were not listed (the
    /// listed ones were applied as they came).
    pub(crate) fn retain_namespaces(&mut self, listed: &Listed) {
        let gone: Vec<Str> = self
            .namespaces
            .iter()
            .filter(|(k, n)| n.exists && !listed.contains(&(String::new(), k.to_string())))
            .map(|(k, _)| k.clone())
            .collect();
        for name in gone {
            self.delete_namespace(&name);
        }
    }

    // -------------------------------------------------------------- services

    pub(crate) fn apply_service(&mut self, object: &K8sService) {
        let (Some(ns), Some(name)) = (
            object.metadata.namespace.as_deref(),
            object.metadata.name.as_deref(),
        ) else {
            return;
        };
        let Some(service) = self.convert_service(object) else {
            self.delete_service(ns, name);
            return;
        };
        let name = self.intern(name);
        let (ns_key, namespace) = self.namespace_mut(ns);
        let old = namespace.services.insert(name.clone(), service.clone());
        if old.as_ref() == Some(&service) {
            return;
        }
        if let Some(old) = &old {
            self.unindex_external(&old.external, &ns_key, &name);
        }
        if let Some(Service {
            kind: ServiceKind::ClusterIp(ips),
            ..
        }) = old
        {
            self.unindex_ips(&ips, |o| {
                matches!(o, Owner::Service { namespace, service } if *namespace == ns_key && *service == name)
            });
        }
        for ip in &service.external {
            self.external_reverse
                .entry(*ip)
                .or_default()
                .push((ns_key.clone(), name.clone()));
        }
        if let ServiceKind::ClusterIp(ips) = &service.kind {
            for ip in ips {
                self.reverse.entry(*ip).or_default().push(Owner::Service {
                    namespace: ns_key.clone(),
                    service: name.clone(),
                });
            }
        }
        self.touch();
    }

    fn convert_service(&mut self, object: &K8sService) -> Option<Service> {
        let spec = object.spec.as_ref()?;
        let ports = spec
            .ports
            .iter()
            .flatten()
            .map(|p| Port {
                name: self.intern(p.name.as_deref().unwrap_or("")),
                protocol: Protocol::parse(p.protocol.as_deref()),
                port: u16::try_from(p.port).ok(),
            })
            .collect();
        let kind = if spec.type_.as_deref() == Some("ExternalName") {
            ServiceKind::ExternalName(spec.external_name.as_deref().unwrap_or("").into())
        } else if spec.cluster_ip.as_deref() == Some("None") {
            ServiceKind::Headless
        } else {
            let mut ips: Vec<IpAddr> = spec
                .cluster_ips
                .iter()
                .flatten()
                .filter_map(|ip| ip.parse().ok())
                .collect();
            if ips.is_empty()
                && let Some(ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok())
            {
                ips.push(ip);
            }
            if ips.is_empty() {
                return None;
            }
            ServiceKind::ClusterIp(ips)
        };
        let mut external: Vec<IpAddr> = spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        let ingress = object
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref());
        let mut external_hosts: Vec<Box<str>> = Vec::new();
        for ingress in ingress.into_iter().flatten() {
            match (ingress.ip.as_deref(), ingress.hostname.as_deref()) {
                (Some(ip), _) => {
                    if let Ok(ip) = ip.parse()
                        && !external.contains(&ip)
                    {
                        external.push(ip);
                    }
                }
                (None, Some(host)) if !host.is_empty() => {
                    external_hosts.push(host.to_ascii_lowercase().into());
                }
                _ => {}
            }
        }
        Some(Service {
            kind,
            ports,
            external: external.into_boxed_slice(),
            external_hosts: external_hosts.into_boxed_slice(),
        })
    }

    fn unindex_external(&mut self, ips: &[IpAddr], ns: &str, name: &str) {
        for ip in ips {
            if let Some(owners) = self.external_reverse.get_mut(ip) {
                owners.retain(|(n, s)| !(&**n == ns && &**s == name));
                if owners.is_empty() {
                    self.external_reverse.remove(ip);
                }
            }
        }
    }

    pub(crate) fn delete_service(&mut self, ns: &str, name: &str) {
        let removed = self
            .namespaces
            .get_mut(ns)
            .and_then(|n| n.services.remove(name));
        if let Some(removed) = removed {
            self.unindex_external(&removed.external, ns, name);
            if let ServiceKind::ClusterIp(ips) = removed.kind {
                self.unindex_ips(&ips, |o| {
                    matches!(o, Owner::Service { namespace, service } if &**namespace == ns && &**service == name)
                });
            }
            self.drop_if_empty(ns);
            self.touch();
        }
    }

    pub(crate) fn retain_services(&mut self, listed: &Listed) {
        self.retain_listed(
            listed,
            |n| n.services.keys().cloned().collect(),
            Store::delete_service,
        );
    }

    /// Deletes the namespaced objects (`names` of each namespace) that the
    /// end of a relist did not name, then sweeps the interned names.
    fn retain_listed(
        &mut self,
        listed: &Listed,
        names: impl Fn(&Namespace) -> Vec<Str>,
        delete: fn(&mut Store, &str, &str),
    ) {
        let gone: Vec<(Str, Str)> = self
            .namespaces
            .iter()
            .flat_map(|(ns, n)| names(n).into_iter().map(move |s| (ns.clone(), s)))
            .filter(|(ns, s)| !listed.contains(&(ns.to_string(), s.to_string())))
            .collect();
        for (ns, name) in gone {
            delete(self, &ns, &name);
        }
        self.sweep_interned();
    }

    // -------------------------------------------------------- endpoint slices

    pub(crate) fn apply_slice(&mut self, object: &EndpointSlice) {
        let (Some(ns), Some(name)) = (
            object.metadata.namespace.as_deref(),
            object.metadata.name.as_deref(),
        ) else {
            return;
        };
        let Some(service) = object
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
        else {
            self.delete_slice(ns, name);
            return;
        };
        let slice = Slice {
            service: self.intern(service),
            endpoints: object
                .endpoints
                .iter()
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
                .flat_map(|e| {
                    let hostname = e.hostname.as_deref().map(|h| self.intern(h));
                    let pod = e
                        .target_ref
                        .as_ref()
                        .filter(|_| self.keep_pod_names)
                        .filter(|r| r.kind.as_deref() == Some("Pod"))
                        .and_then(|r| r.name.as_deref())
                        // Pod names are unique: not worth interning.
                        .map(|p| Str::from(p.to_ascii_lowercase()));
                    e.addresses
                        .iter()
                        .filter_map(|a| a.parse().ok())
                        .map(move |ip| Endpoint {
                            ip,
                            hostname: hostname.clone(),
                            pod: pod.clone(),
                        })
                        .collect::<Vec<_>>()
                })
                .collect(),
            ports: object
                .ports
                .iter()
                .flatten()
                .map(|p| Port {
                    name: self.intern(p.name.as_deref().unwrap_or("")),
                    protocol: Protocol::parse(p.protocol.as_deref()),
                    port: p.port.and_then(|p| u16::try_from(p).ok()),
                })
                .collect(),
        };
        let name = self.intern(name);
        let (ns_key, namespace) = self.namespace_mut(ns);
        if namespace.slices.get(&name) == Some(&slice) {
            return;
        }
        self.delete_slice(&ns_key, &name);
        let (_, namespace) = self.namespace_mut(&ns_key);
        let owners = slice
            .endpoints
            .iter()
            .map(|e| {
                (
                    e.ip,
                    Owner::Endpoint {
                        namespace: ns_key.clone(),
                        slice: name.clone(),
                    },
                )
            })
            .collect::<Vec<_>>();
        namespace
            .slices_of
            .entry(slice.service.clone())
            .or_default()
            .push(name.clone());
        namespace.slices.insert(name, slice);
        for (ip, owner) in owners {
            self.reverse.entry(ip).or_default().push(owner);
        }
        self.touch();
    }

    pub(crate) fn delete_slice(&mut self, ns: &str, name: &str) {
        let Some(namespace) = self.namespaces.get_mut(ns) else {
            return;
        };
        let Some(old) = namespace.slices.remove(name) else {
            return;
        };
        if let Some(names) = namespace.slices_of.get_mut(&old.service) {
            names.retain(|n| &**n != name);
            if names.is_empty() {
                namespace.slices_of.remove(&old.service);
            }
        }
        let ips: Vec<IpAddr> = old.endpoints.iter().map(|e| e.ip).collect();
        self.unindex_ips(&ips, |o| {
            matches!(o, Owner::Endpoint { namespace, slice } if &**namespace == ns && &**slice == name)
        });
        self.drop_if_empty(ns);
        self.touch();
    }

    pub(crate) fn retain_slices(&mut self, listed: &Listed) {
        self.retain_listed(
            listed,
            |n| n.slices.keys().cloned().collect(),
            Store::delete_slice,
        );
    }

    // ------------------------------------------------------------------ pods

    /// Adds a pod's addresses; a pod being deleted (deletionTimestamp set)
    /// is taken out, as CoreDNS ignores terminating pods.
    pub(crate) fn apply_pod(&mut self, object: &K8sPod) {
        let Some((namespace, name)) = key_of(&object.metadata) else {
            return;
        };
        let terminating = object.metadata.deletion_timestamp.is_some();
        let ips = pod_ips(object);
        if terminating || ips.is_empty() {
            self.delete_pod(object);
            return;
        }
        let pod = PodRef {
            namespace: self.intern(&namespace),
            name_hash: name_hash(&name),
        };
        for ip in ips {
            let holders = self.pods.entry(ip).or_default();
            if !holders.contains(&pod) {
                holders.push(pod.clone());
                holders.shrink_to_fit();
            }
        }
    }

    pub(crate) fn delete_pod(&mut self, object: &K8sPod) {
        let Some((namespace, name)) = key_of(&object.metadata) else {
            return;
        };
        let hash = name_hash(&name);
        for ip in pod_ips(object) {
            if let Some(holders) = self.pods.get_mut(&ip) {
                holders.retain(|p| !(p.name_hash == hash && *p.namespace == *namespace));
                if holders.is_empty() {
                    self.pods.remove(&ip);
                }
            }
        }
    }

    pub(crate) fn retain_pods(&mut self, listed: &Listed) {
        let listed: HashSet<(&str, u64)> = listed
            .iter()
            .map(|(ns, name)| (ns.as_str(), name_hash(name)))
            .collect();
        self.pods.retain(|_, holders| {
            holders.retain(|p| listed.contains(&(&*p.namespace, p.name_hash)));
            !holders.is_empty()
        });
        self.pods.shrink_to_fit();
    }

    /// The namespaces of the pods holding `ip`.
    pub(crate) fn pod_namespaces(&self, ip: IpAddr) -> impl Iterator<Item = &str> {
        self.pods
            .get(&ip)
            .into_iter()
            .flatten()
            .map(|p| &*p.namespace)
    }

    fn unindex_ips(&mut self, ips: &[IpAddr], matches: impl Fn(&Owner) -> bool) {
        for ip in ips {
            if let Some(owners) = self.reverse.get_mut(ip) {
                owners.retain(|o| !matches(o));
                if owners.is_empty() {
                    self.reverse.remove(ip);
                }
            }
        }
    }
}

/// Lower-cased namespace and name of an object.
fn key_of(
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<(String, String)> {
    Some((
        metadata.namespace.as_deref()?.to_ascii_lowercase(),
        metadata.name.as_deref()?.to_ascii_lowercase(),
    ))
}

/// Every address of a pod (`status.podIPs`, else `status.podIP`).
fn pod_ips(object: &K8sPod) -> Vec<IpAddr> {
    let Some(status) = &object.status else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if let Some(ip) = status.pod_ip.as_deref().and_then(|ip| ip.parse().ok())
        && !ips.contains(&ip)
    {
        ips.push(ip);
    }
    ips
}

/// A stable 64-bit hash of a pod name (SipHash with fixed keys).
fn name_hash(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    name.hash(&mut hasher);
    hasher.finish()
}
