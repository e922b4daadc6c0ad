//! `k8s_external`: the external addresses of Kubernetes Services (external
//! IPs, load balancer ingress), and optionally headless Services' endpoints,
//! under a zone outside the cluster, as CoreDNS's k8s_external.
//!
//! `<svc>.<ns>.<zone>` A/AAAA, `_<port>._<proto>.<svc>.<ns>.<zone>` SRV,
//! PTR of external addresses in reverse zones, and the apex: SOA, NS
//! `ns1.<apex>.<zone>` with its address. The data is the `kubernetes`
//! plugin's of the same server block, found through
//! [`oxidns_plugin_kubernetes::Clusters`].

use std::net::IpAddr;
use std::sync::Arc;

use oxidns_plugin_kubernetes::{
    Cluster, Clusters, ExternalLookup, ExternalTarget, address_from_reverse,
};
use oxidns_server::proto::domain::rdata::{A, Aaaa, Cname, Ns, Ptr, Soa, Srv};
use oxidns_server::proto::{
    Class, Name, Rcode, Record, RecordData, Response, Rtype, Serial, Ttl, lowercase, name_from_str,
    name_text,
};
use oxidns_server::{ConfigError, Handler, HandlerFuture, Next, PluginEntry, Request, Setup};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "k8s_external",
    setup,
};

const DEFAULT_TTL: u32 = 5;
const DEFAULT_APEX: &str = "dns";

struct External {
    zones: Vec<Name>,
    /// The label under which the name servers live (`dns`).
    apex: String,
    ttl: u32,
    headless: bool,
    clusters: Arc<Clusters>,
}

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?.clone();
    let mut external = External {
        zones: setup.zones_or_block(&directive.args)?,
        apex: DEFAULT_APEX.to_owned(),
        ttl: DEFAULT_TTL,
        headless: false,
        clusters: setup.shared::<Clusters>(),
    };
    for line in &directive.block {
        let args = line.arg_texts();
        match (line.name.text.as_str(), args.as_slice()) {
            ("ttl", [value]) => match value.parse::<u32>() {
                Ok(ttl) if ttl <= 3600 => external.ttl = ttl,
                _ => {
                    return Err(line.error(format!("ttl must be in range [0, 3600]: '{value}'")));
                }
            },
            ("apex", [label]) => {
                let label = label.trim_end_matches('.').to_ascii_lowercase();
                if name_from_str(&label).is_err() || label.is_empty() {
                    return Err(line.error(format!("invalid apex '{label}'")));
                }
                external.apex = label;
            }
            ("headless", []) => external.headless = true,
            ("ttl" | "apex", _) => return Err(line.error("needs one argument")),
            ("headless", _) => return Err(line.error("takes no arguments")),
            _ => return Err(directive.unknown_property(line)),
        }
    }
    setup.add_handler(Arc::new(external));
    Ok(())
}

fn is_reverse(zone: &Name) -> bool {
    let text = name_text(zone);
    text.ends_with("in-addr.arpa.") || text.ends_with("ip6.arpa.")
}

impl Handler for External {
    fn name(&self) -> &'static str {
        "k8s_external"
    }

    // Makes its own answers only.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        let qname = lowercase(request.qname());
        let zone = self
            .zones
            .iter()
            .filter(|z| qname.ends_with(*z))
            .max_by_key(|z| z.label_count());
        // Without a kubernetes plugin in the block there is nothing to serve.
        match (zone, self.clusters.get()) {
            (Some(zone), Some(cluster)) => {
                let response = self.answer(request, &qname, zone, cluster);
                HandlerFuture::ready(Ok(response))
            }
            _ => next.serve(request),
        }
    }
}

impl External {
    fn ttl(&self) -> Ttl {
        Ttl::from_secs(self.ttl)
    }

    fn under(&self, prefix: &str, zone: &Name) -> Name {
        name_from_str(&format!("{prefix}.{}", name_text(zone))).unwrap_or_else(|_| zone.clone())
    }

    /// `ns1.<apex>.<zone>`.
    fn ns_name(&self, zone: &Name) -> Name {
        self.under(&format!("ns1.{}", self.apex), zone)
    }

    fn soa(&self, zone: &Name, cluster: &Cluster) -> Record {
        Record::new(
            zone.clone(),
            Class::IN,
            self.ttl(),
            RecordData::Soa(Soa::new(
                self.ns_name(zone),
                self.under(&format!("hostmaster.{}", self.apex), zone),
                Serial(cluster.serial()),
                Ttl::from_secs(7200),
                Ttl::from_secs(1800),
                Ttl::from_secs(86400),
                self.ttl(),
            )),
        )
    }

    fn address(&self, owner: &Name, ip: IpAddr) -> Record {
        let data = match ip {
            IpAddr::V4(v4) => RecordData::A(A::new(v4)),
            IpAddr::V6(v6) => RecordData::Aaaa(Aaaa::new(v6)),
        };
        Record::new(owner.clone(), Class::IN, self.ttl(), data)
    }

    fn answer(&self, request: &Request, qname: &Name, zone: &Name, cluster: &Cluster) -> Response {
        let qtype = request.qtype();
        let mut response = request.reply(Rcode::NOERROR);
        response.authoritative = true;
        let depth = qname.label_count() - zone.label_count();
        let labels: Vec<String> = qname
            .iter()
            .take(depth)
            .map(|l| l.to_string().to_ascii_lowercase())
            .collect();
        // The name server's own address: the one the query arrived on.
        let local = request.local.ip();
        match labels.as_slice() {
            [] => match qtype {
                Rtype::SOA => response.answer.push(self.soa(zone, cluster)),
                Rtype::NS => {
                    let ns = self.ns_name(zone);
                    response.answer.push(Record::new(
                        zone.clone(),
                        Class::IN,
                        self.ttl(),
                        RecordData::Ns(Ns::new(ns.clone())),
                    ));
                    response.additional.push(self.address(&ns, local));
                }
                _ => {}
            },
            // The apex subdomain: `<apex>` is an empty non-terminal, `ns1.<apex>` the server.
            [.., apex] if *apex == self.apex => match labels.len() {
                1 => {}
                2 if labels[0] == "ns1" => {
                    if matches!(
                        (qtype, local),
                        (Rtype::A, IpAddr::V4(_)) | (Rtype::AAAA, IpAddr::V6(_))
                    ) {
                        response.answer.push(self.address(request.qname(), local));
                    }
                }
                _ => response.rcode = Rcode::NXDOMAIN.into(),
            },
            _ if is_reverse(zone) => self.reverse(&mut response, request, qname, cluster),
            _ => match cluster.external(&labels, self.headless) {
                ExternalLookup::NxDomain => response.rcode = Rcode::NXDOMAIN.into(),
                ExternalLookup::NoData => {}
                ExternalLookup::Found(found) => match qtype {
                    Rtype::A | Rtype::AAAA => {
                        let mut seen = Vec::new();
                        for entry in &found {
                            let ExternalTarget::Address(ip) = entry.target else {
                                continue;
                            };
                            let family = matches!(
                                (qtype, ip),
                                (Rtype::A, IpAddr::V4(_)) | (Rtype::AAAA, IpAddr::V6(_))
                            );
                            if family && !seen.contains(&ip) {
                                seen.push(ip);
                                response.answer.push(self.address(request.qname(), ip));
                            }
                        }
                        // A load balancer known only by name: a CNAME to it (a name
                        // with addresses has no CNAME, RFC 1034 §3.6.2).
                        let any_address = found
                            .iter()
                            .any(|e| matches!(e.target, ExternalTarget::Address(_)));
                        let host = found.iter().find_map(|e| match &e.target {
                            ExternalTarget::Host(host) => name_from_str(host).ok(),
                            ExternalTarget::Address(_) => None,
                        });
                        if let (false, Some(host)) = (any_address, host) {
                            response.answer.push(Record::new(
                                request.qname().clone(),
                                Class::IN,
                                self.ttl(),
                                RecordData::Cname(Cname::new(host)),
                            ));
                        }
                    }
                    Rtype::SRV => {
                        // CoreDNS's weights: 100 shared among the records of priority 0.
                        let weight = ((100.0 / found.len() as f64).floor() as u16).max(1);
                        let mut seen_srv = Vec::new();
                        let mut seen_addr = Vec::new();
                        for entry in found {
                            let Some(port) = entry.port else { continue };
                            let target = self.under(&entry.labels.join("."), zone);
                            if !seen_srv.contains(&(target.clone(), port)) {
                                seen_srv.push((target.clone(), port));
                                response.answer.push(Record::new(
                                    request.qname().clone(),
                                    Class::IN,
                                    self.ttl(),
                                    RecordData::Srv(Srv::new(0, weight, port, target.clone())),
                                ));
                            }
                            if let ExternalTarget::Address(ip) = entry.target
                                && !seen_addr.contains(&(target.clone(), ip))
                            {
                                seen_addr.push((target.clone(), ip));
                                response.additional.push(self.address(&target, ip));
                            }
                        }
                    }
                    _ => {}
                },
            },
        }
        if response.answer.is_empty() {
            response.authority.push(self.soa(zone, cluster));
        }
        response
    }

    /// PTR of an external address: `<svc>.<ns>.<zone>` under the first
    /// forward zone of the plugin.
    fn reverse(&self, response: &mut Response, request: &Request, qname: &Name, cluster: &Cluster) {
        let forward = self.zones.iter().find(|z| !is_reverse(z));
        let services = match (address_from_reverse(qname), forward) {
            (Some(ip), Some(_)) => cluster.external_reverse(ip),
            _ => Vec::new(),
        };
        let Some(forward) = forward.filter(|_| !services.is_empty()) else {
            response.rcode = Rcode::NXDOMAIN.into();
            return;
        };
        if request.qtype() != Rtype::PTR {
            return;
        }
        for [service, namespace] in services {
            let target = self.under(&format!("{service}.{namespace}"), forward);
            response.answer.push(Record::new(
                request.qname().clone(),
                Class::IN,
                self.ttl(),
                RecordData::Ptr(Ptr::new(target)),
            ));
        }
    }
}

#[cfg(test)]
mod tests;
