//! The records, per the Kubernetes DNS specification and CoreDNS's answers.

use std::net::IpAddr;
use std::sync::Arc;

use oxidns_server::proto::domain::rdata::{A, Aaaa, Cname, Ns, Ptr, Soa, Srv, Txt};
use oxidns_server::proto::{
    Class, Name, Rcode, Record, RecordData, Response, Rtype, Serial, Ttl, lowercase, name_from_str,
};
use oxidns_server::{Handler, HandlerFuture, Next, Request};

use crate::store::{Endpoint, Namespace, Port, ServiceKind, Store};
use crate::watch::Shared;
use crate::{Options, PodMode};

/// The version of the DNS specification served (`dns-version.<zone>` TXT).
const DNS_SCHEMA_VERSION: &str = "1.1.0";

pub(crate) struct Kubernetes {
    pub options: Options,
    pub shared: Arc<Shared>,
}

/// What a lookup found: records, or no such name, or the name without records of the type.
enum Found {
    Records(Vec<Record>, Vec<Record>),
    NoData,
    NxDomain,
}

impl Handler for Kubernetes {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    // Makes its own answers only.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        match self.answer(request) {
            Some(response) => HandlerFuture::ready(Ok(response)),
            None => next.serve(request),
        }
    }
}

/// Whether the zone is under in-addr.arpa or ip6.arpa (looked at per query: no copies).
fn is_reverse(zone: &Name) -> bool {
    let mut labels = zone.iter().rev().filter(|l| !l.is_root());
    let (Some(top), Some(second)) = (labels.next(), labels.next()) else {
        return false;
    };
    top.as_slice().eq_ignore_ascii_case(b"arpa")
        && (second.as_slice().eq_ignore_ascii_case(b"in-addr")
            || second.as_slice().eq_ignore_ascii_case(b"ip6"))
}

impl Kubernetes {
    fn ttl(&self) -> Ttl {
        Ttl::from_secs(self.options.ttl)
    }

    /// The response, or `None` to pass the query on.
    fn answer(&self, request: &Request) -> Option<Response> {
        let qname = lowercase(request.qname());
        let zone = self
            .options
            .zones
            .iter()
            .filter(|z| qname.ends_with(*z))
            .max_by_key(|z| z.label_count())?
            .clone();
        let qtype = request.qtype();
        let store = self.shared.store.read().unwrap_or_else(|e| e.into_inner());
        let found = if is_reverse(&zone) {
            self.reverse(&store, &qname, qtype)
        } else {
            self.forward(&store, &qname, &zone, qtype, request.local.ip())
        };
        let (rcode, answer, additional) = match found {
            Found::Records(answer, additional) => (Rcode::NOERROR, answer, additional),
            Found::NoData => (Rcode::NOERROR, Vec::new(), Vec::new()),
            Found::NxDomain => {
                if self.options.fall.matches(&qname) {
                    return None;
                }
                // Until the first sync, "no such name" may be wrong: SERVFAIL, as CoreDNS.
                if !self.shared.has_synced() {
                    return Some(request.reply(Rcode::SERVFAIL));
                }
                (Rcode::NXDOMAIN, Vec::new(), Vec::new())
            }
        };
        let mut response = request.reply(rcode);
        response.authoritative = true;
        if answer.is_empty() {
            response.authority.push(self.soa(&store, &zone));
        }
        response.answer = answer;
        response.additional = additional;
        Some(response)
    }

    fn soa(&self, store: &Store, zone: &Name) -> Record {
        let join =
            |prefix: &str| name_from_str(&format!("{prefix}.{zone}")).unwrap_or(zone.clone());
        Record::new(
            zone.clone(),
            Class::IN,
            Ttl::from_secs(self.options.ttl.min(300)),
            RecordData::Soa(Soa::new(
                join("ns.dns"),
                join("hostmaster"),
                Serial(store.modified),
                Ttl::from_secs(7200),
                Ttl::from_secs(1800),
                Ttl::from_secs(86400),
                self.ttl(),
            )),
        )
    }

    fn record(&self, owner: &Name, data: RecordData) -> Record {
        Record::new(owner.clone(), Class::IN, self.ttl(), data)
    }

    fn address(&self, owner: &Name, ip: IpAddr) -> Record {
        match ip {
            IpAddr::V4(v4) => self.record(owner, RecordData::A(A::new(v4))),
            IpAddr::V6(v6) => self.record(owner, RecordData::Aaaa(Aaaa::new(v6))),
        }
    }

    /// Whether the namespace is served: it exists and `namespaces` allows it.
    fn exposed<'s>(&self, store: &'s Store, ns: &str) -> Option<&'s Namespace> {
        if !self.options.namespaces.is_empty() && !self.options.namespaces.iter().any(|n| n == ns) {
            return None;
        }
        store.namespaces.get(ns).filter(|n| n.exists)
    }

    fn forward(
        &self,
        store: &Store,
        qname: &Name,
        zone: &Name,
        qtype: Rtype,
        local: IpAddr,
    ) -> Found {
        let depth = qname.label_count() - zone.label_count();
        // The name is in lower case already; its labels as text, without copies.
        let mut labels: Vec<&str> = Vec::with_capacity(depth);
        for label in qname.iter().take(depth) {
            match std::str::from_utf8(label.as_slice()) {
                Ok(text) => labels.push(text),
                Err(_) => return Found::NxDomain,
            }
        }
        let addresses = |ips: &mut dyn Iterator<Item = IpAddr>| -> Found {
            let records: Vec<Record> = ips
                .filter(|ip| {
                    matches!(
                        (qtype, ip),
                        (Rtype::A, IpAddr::V4(_)) | (Rtype::AAAA, IpAddr::V6(_))
                    )
                })
                .map(|ip| self.address(qname, ip))
                .collect();
            if records.is_empty() {
                Found::NoData
            } else {
                Found::Records(records, Vec::new())
            }
        };
        match labels.as_slice() {
            [] => {
                let ns_name = name_from_str(&format!("ns.dns.{zone}")).unwrap_or(zone.clone());
                match qtype {
                    Rtype::SOA => Found::Records(vec![self.soa(store, zone)], Vec::new()),
                    Rtype::NS => Found::Records(
                        vec![self.record(zone, RecordData::Ns(Ns::new(ns_name.clone())))],
                        vec![self.address(&ns_name, local)],
                    ),
                    _ => Found::NoData,
                }
            }
            ["ns", "dns"] => addresses(&mut std::iter::once(local)),
            ["dns-version"] => match qtype {
                Rtype::TXT => match Txt::build_from_slice(DNS_SCHEMA_VERSION.as_bytes()) {
                    Ok(txt) => {
                        Found::Records(vec![self.record(qname, RecordData::Txt(txt))], Vec::new())
                    }
                    Err(_) => Found::NoData,
                },
                _ => Found::NoData,
            },
            [.., "pod" | "svc"] if labels.len() == 1 => Found::NoData,
            [rest @ .., ns, "pod"] => {
                let Some(_) = self.exposed(store, ns) else {
                    return Found::NxDomain;
                };
                match (rest, self.options.pods) {
                    ([], _) => Found::NoData,
                    ([pod], PodMode::Insecure) => match pod_ip(pod) {
                        Some(ip) => addresses(&mut std::iter::once(ip)),
                        None => Found::NxDomain,
                    },
                    // Only the address of a pod that runs in this namespace.
                    ([pod], PodMode::Verified) => match pod_ip(pod) {
                        Some(ip) if store.pod_namespaces(ip).any(|n| n == *ns) => {
                            addresses(&mut std::iter::once(ip))
                        }
                        _ => Found::NxDomain,
                    },
                    _ => Found::NxDomain,
                }
            }
            [rest @ .., ns, "svc"] => {
                let Some(namespace) = self.exposed(store, ns) else {
                    return Found::NxDomain;
                };
                match rest {
                    [] => Found::NoData,
                    [service] => {
                        self.service(namespace, qname, zone, ns, service, None, None, "", qtype)
                    }
                    [endpoint, service] => self.service(
                        namespace, qname, zone, ns, service, None, None, endpoint, qtype,
                    ),
                    [port, proto, service] => {
                        match (port.strip_prefix('_'), proto.strip_prefix('_')) {
                            (Some(port), Some(proto)) => self.service(
                                namespace,
                                qname,
                                zone,
                                ns,
                                service,
                                Some(port),
                                Some(proto),
                                "",
                                qtype,
                            ),
                            _ => Found::NxDomain,
                        }
                    }
                    _ => Found::NxDomain,
                }
            }
            _ => Found::NxDomain,
        }
    }

    /// The records of one service (or one endpoint of it), as CoreDNS's findServices.
    #[allow(clippy::too_many_arguments)]
    fn service(
        &self,
        namespace: &Namespace,
        qname: &Name,
        zone: &Name,
        ns: &str,
        name: &str,
        port: Option<&str>,
        proto: Option<&str>,
        endpoint: &str,
        qtype: Rtype,
    ) -> Found {
        let Some(service) = namespace.services.get(name) else {
            return Found::NxDomain;
        };
        let port_matches = |p: &Port| {
            port.is_none_or(|want| *want == *p.name)
                && proto.is_none_or(|want| want == p.protocol.as_str())
        };
        let service_name =
            || name_from_str(&format!("{name}.{ns}.svc.{zone}")).unwrap_or(qname.clone());
        // (endpoint, address, port) per CoreDNS service entry; no endpoint
        // for the service itself. Names are made only for SRV targets.
        let mut entries: Vec<(Option<&Endpoint>, IpAddr, Option<u16>)> = Vec::new();
        match &service.kind {
            ServiceKind::ExternalName(target) => {
                if !endpoint.is_empty() {
                    return Found::NxDomain;
                }
                let Ok(target) = name_from_str(target) else {
                    return Found::NxDomain;
                };
                return match qtype {
                    Rtype::SRV => {
                        let ports: Vec<Record> = service
                            .ports
                            .iter()
                            .filter(|p| port_matches(p))
                            .filter_map(|p| p.port)
                            .map(|p| {
                                self.record(
                                    qname,
                                    RecordData::Srv(Srv::new(0, 100, p, target.clone())),
                                )
                            })
                            .collect();
                        if ports.is_empty() {
                            Found::NoData
                        } else {
                            Found::Records(ports, Vec::new())
                        }
                    }
                    _ => Found::Records(
                        vec![self.record(qname, RecordData::Cname(Cname::new(target)))],
                        Vec::new(),
                    ),
                };
            }
            ServiceKind::Headless => {}
            ServiceKind::ClusterIp(ips) => {
                if self.options.ignore_empty_service
                    && namespace.slices_of(name).all(|s| s.endpoints.is_empty())
                {
                    return Found::NxDomain;
                }
                if endpoint.is_empty() {
                    for p in service.ports.iter().filter(|p| port_matches(p)) {
                        for ip in ips {
                            entries.push((None, *ip, p.port));
                        }
                    }
                }
            }
        }
        if matches!(service.kind, ServiceKind::Headless) || !endpoint.is_empty() {
            let mut placeholder = None;
            for slice in namespace.slices_of(name) {
                let ports: &[Port] = if slice.ports.is_empty() {
                    placeholder.get_or_insert_with(|| {
                        [Port {
                            name: Arc::from(""),
                            protocol: crate::store::Protocol::Tcp,
                            port: None,
                        }]
                    })
                } else {
                    &slice.ports
                };
                for e in &slice.endpoints {
                    if !endpoint.is_empty() && e.label(self.options.endpoint_pod_names) != endpoint
                    {
                        continue;
                    }
                    for p in ports.iter().filter(|p| port_matches(p)) {
                        entries.push((Some(e), e.ip, p.port));
                    }
                }
            }
        }
        if entries.is_empty() {
            return Found::NxDomain;
        }
        match qtype {
            Rtype::A | Rtype::AAAA => {
                let mut seen = Vec::new();
                let records: Vec<Record> = entries
                    .iter()
                    .filter(|(_, ip, _)| {
                        matches!(
                            (qtype, ip),
                            (Rtype::A, IpAddr::V4(_)) | (Rtype::AAAA, IpAddr::V6(_))
                        )
                    })
                    .filter(|(_, ip, _)| {
                        let new = !seen.contains(ip);
                        seen.push(*ip);
                        new
                    })
                    .map(|(_, ip, _)| self.address(qname, *ip))
                    .collect();
                if records.is_empty() {
                    Found::NoData
                } else {
                    Found::Records(records, Vec::new())
                }
            }
            Rtype::SRV => {
                // CoreDNS's weights: 100 shared among every entry of the priority (all 0 here).
                let total = 100.0 * entries.len() as f64;
                let weight = ((100.0 / total * 100.0).floor() as u16).max(1);
                let mut srv = Vec::new();
                let mut extra = Vec::new();
                let mut seen_srv: Vec<(Name, u16)> = Vec::new();
                let mut seen_addr: Vec<(Name, IpAddr)> = Vec::new();
                let base = service_name();
                let named = entries.iter().map(|(e, ip, port)| {
                    let target = match e {
                        None => base.clone(),
                        Some(e) => endpoint_name(&e.label(self.options.endpoint_pod_names), &base),
                    };
                    (target, ip, port)
                });
                for (target, ip, port) in named {
                    let target = &target;
                    let Some(port) = port else { continue };
                    if !seen_srv.iter().any(|(t, p)| t == target && p == port) {
                        seen_srv.push((target.clone(), *port));
                        srv.push(self.record(
                            qname,
                            RecordData::Srv(Srv::new(0, weight, *port, target.clone())),
                        ));
                    }
                    if !seen_addr.iter().any(|(t, a)| t == target && a == ip) {
                        seen_addr.push((target.clone(), *ip));
                        extra.push(self.address(target, *ip));
                    }
                }
                if srv.is_empty() {
                    Found::NoData
                } else {
                    Found::Records(srv, extra)
                }
            }
            _ => Found::NoData,
        }
    }

    fn reverse(&self, store: &Store, qname: &Name, qtype: Rtype) -> Found {
        let Some(ip) = address_from_reverse(qname) else {
            return Found::NxDomain;
        };
        let Some(owners) = store.reverse.get(&ip) else {
            return Found::NxDomain;
        };
        let mut targets: Vec<Name> = Vec::new();
        let mut services = Vec::new();
        let mut endpoints = Vec::new();
        for owner in owners {
            match owner {
                crate::store::Owner::Service { namespace, service } => {
                    if self.exposed(store, namespace).is_some() {
                        services.push(format!("{service}.{namespace}.svc"));
                    }
                }
                crate::store::Owner::Endpoint { namespace, slice } => {
                    let Some(ns) = self.exposed(store, namespace) else {
                        continue;
                    };
                    let Some(slice) = ns.slices.get(slice) else {
                        continue;
                    };
                    for endpoint in slice.endpoints.iter().filter(|e| e.ip == ip) {
                        endpoints.push(format!(
                            "{}.{}.{namespace}.svc",
                            label_of(endpoint, self.options.endpoint_pod_names),
                            slice.service
                        ));
                    }
                }
            }
        }
        let Some(zone) = self.options.zones.iter().find(|z| !is_reverse(z)) else {
            return Found::NxDomain;
        };
        for relative in services.into_iter().chain(endpoints) {
            if let Ok(name) = name_from_str(&format!("{relative}.{zone}"))
                && !targets.contains(&name)
            {
                targets.push(name);
            }
        }
        if targets.is_empty() {
            return Found::NxDomain;
        }
        if qtype != Rtype::PTR {
            return Found::NoData;
        }
        Found::Records(
            targets
                .into_iter()
                .map(|t| self.record(qname, RecordData::Ptr(Ptr::new(t))))
                .collect(),
            Vec::new(),
        )
    }
}

fn label_of(endpoint: &Endpoint, pod_names: bool) -> String {
    endpoint.label(pod_names)
}

fn endpoint_name(label: &str, base: &Name) -> Name {
    name_from_str(&format!("{label}.{base}")).unwrap_or(base.clone())
}

/// `1-2-3-4` → 1.2.3.4; `fd00--1` → fd00::1.
fn pod_ip(label: &str) -> Option<IpAddr> {
    if label.matches('-').count() == 3
        && !label.contains("--")
        && let Ok(ip) = label.replace('-', ".").parse::<std::net::Ipv4Addr>()
    {
        return Some(IpAddr::V4(ip));
    }
    label
        .replace('-', ":")
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// The address of a reverse name (`4.3.2.1.in-addr.arpa`, nibbles under ip6.arpa).
pub fn address_from_reverse(name: &Name) -> Option<IpAddr> {
    let labels: Vec<String> = name
        .iter()
        .map(|l| l.to_string().to_ascii_lowercase())
        .filter(|l| !l.is_empty())
        .collect();
    match labels.as_slice() {
        [d, c, b, a, arpa, top] if arpa == "in-addr" && top == "arpa" => {
            let parts = [a, b, c, d].map(|p| p.parse::<u8>().ok());
            let [Some(a), Some(b), Some(c), Some(d)] = parts else {
                return None;
            };
            Some(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)))
        }
        [nibbles @ .., ip6, top] if nibbles.len() == 32 && ip6 == "ip6" && top == "arpa" => {
            let mut value: u128 = 0;
            for nibble in nibbles.iter().rev() {
                value = value << 4 | u128::from_str_radix(nibble, 16).ok()?;
                if nibble.len() != 1 {
                    return None;
                }
            }
            Some(IpAddr::V6(std::net::Ipv6Addr::from(value)))
        }
        _ => None,
    }
}
