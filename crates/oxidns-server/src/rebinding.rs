//! DNS rebinding protection, for `forward` and `cache`: an answer that puts
//! a private, loopback or link-local address under a public name is refused.
//!
//! A rebinding attack (a web page whose name first resolves to the
//! attacker's server, then to an address inside the victim's network) lets
//! a browser reach internal services under the attacker's origin. As
//! dnsmasq's `--stop-dns-rebind`, the whole answer is refused (REFUSED, with
//! the Extended DNS Error *Blocked*, RFC 8914 §4.16) rather than stripped of
//! the addresses as Unbound's `private-address` does: a stripped answer
//! looks like NODATA and is cached as such by the client, while a refusal
//! says what happened. Names under the allowed zones (an internal domain)
//! may carry private addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bytes::Bytes;
use oxidns_proto::{EdnsOption, Name, Rcode, RecordData, Response, name_text, option_code};

use crate::corefile::key::parse_key;
use crate::corefile::{ConfigError, Directive};
use crate::plugin::{Handler, HandlerFuture, Next, Request};

/// RFC 8914 §5.2: the answer is blocked by operator policy.
const EDE_BLOCKED: u16 = 15;

/// The `rebinding_protection [ZONES...]` option: names under `allowed` may
/// have private addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RebindingProtection {
    pub allowed: Vec<Name>,
}

/// Whether an address is one a public name must not resolve to: this
/// network (0/8), private (RFC 1918), shared (RFC 6598), loopback,
/// link-local (RFC 3927, RFC 4291), unique local (RFC 4193), unspecified,
/// or an IPv4-mapped IPv6 form of these.
pub fn is_internal(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal_v4(v4),
            None => is_internal_v6(v6),
        },
    }
}

fn is_internal_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    a == 0
        || v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || (a == 100 && (64..128).contains(&b))
}

fn is_internal_v6(v6: Ipv6Addr) -> bool {
    let first = v6.segments()[0];
    v6.is_unspecified()
        || v6.is_loopback()
        || (first & 0xffc0) == 0xfe80
        || (first & 0xfe00) == 0xfc00
}

impl RebindingProtection {
    /// Reads `rebinding_protection [ZONES...]`.
    pub fn parse(line: &Directive) -> Result<RebindingProtection, ConfigError> {
        line.no_block()?;
        let mut allowed = Vec::new();
        for arg in &line.args {
            allowed.extend(parse_key(arg, 53)?.zones);
        }
        Ok(RebindingProtection { allowed })
    }

    fn allows(&self, name: &Name) -> bool {
        self.allowed.iter().any(|zone| name.ends_with(zone))
    }

    /// The first internal address of `response` that `qname` may not have,
    /// with its owner: in the answer, or in the additional section under a
    /// name outside the allowed zones.
    pub fn violation(&self, qname: &Name, response: &Response) -> Option<(Name, IpAddr)> {
        if self.allows(qname) {
            return None;
        }
        let answers = response.answer.iter();
        let additional = response
            .additional
            .iter()
            .filter(|record| !self.allows(record.owner()));
        answers.chain(additional).find_map(|record| {
            let addr = match record.data() {
                RecordData::A(a) => IpAddr::V4(a.addr()),
                RecordData::Aaaa(aaaa) => IpAddr::V6(aaaa.addr()),
                _ => return None,
            };
            is_internal(addr).then(|| (record.owner().clone(), addr))
        })
    }

    /// `response`, or the refusal that replaces it when it breaks the rule;
    /// `plugin` names who refused in the log and the metric.
    pub fn check(&self, plugin: &'static str, qname: &Name, response: Response) -> Response {
        let Some((owner, addr)) = self.violation(qname, &response) else {
            return response;
        };
        tracing::warn!(
            target: "rebinding",
            "plugin/{plugin}: possible DNS rebinding attack: {} has {addr}; answer refused",
            name_text(&owner)
        );
        metrics::counter!("coredns_rebinding_blocked_responses_total", "plugin" => plugin)
            .increment(1);
        refusal()
    }
}

/// REFUSED with the Extended DNS Error *Blocked* and a reason.
fn refusal() -> Response {
    let mut response = Response::new(Rcode::REFUSED);
    let mut data = EDE_BLOCKED.to_be_bytes().to_vec();
    data.extend_from_slice(b"DNS rebinding protection");
    response.edns_options.push(EdnsOption {
        code: option_code::EXTENDED_ERROR,
        data: Bytes::from(data),
    });
    response
}

/// A handler that applies the rule to every response from the rest of the
/// chain: how `cache` keeps such answers out of its store.
pub struct RebindingFilter {
    pub plugin: &'static str,
    pub protection: RebindingProtection,
}

impl RebindingFilter {
    pub fn new(plugin: &'static str, protection: RebindingProtection) -> Arc<RebindingFilter> {
        Arc::new(RebindingFilter { plugin, protection })
    }
}

impl Handler for RebindingFilter {
    fn name(&self) -> &'static str {
        self.plugin
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        HandlerFuture::new(async move {
            let response = next.serve(request).await?;
            Ok(self
                .protection
                .check(self.plugin, request.qname(), response))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{Fixed, request, serve_chain};
    use oxidns_proto::{Class, Record, Rtype, Ttl, name_from_str};

    fn internal(text: &str) -> bool {
        is_internal(text.parse().unwrap())
    }

    #[test]
    fn private_loopback_link_local_and_unique_local_addresses_are_internal() {
        for addr in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "fc12::1",
            "::ffff:192.168.1.1",
        ] {
            assert!(internal(addr), "{addr}");
        }
    }

    #[test]
    fn public_addresses_are_not_internal() {
        for addr in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.2.1",
            "2001:db8::1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!internal(addr), "{addr}");
        }
    }

    fn name(text: &str) -> Name {
        name_from_str(text).unwrap()
    }

    fn a(owner: &str, addr: &str) -> Record {
        let data = match addr.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => RecordData::A(v4.into()),
            IpAddr::V6(v6) => RecordData::Aaaa(v6.into()),
        };
        Record::new(name(owner), Class::IN, Ttl::from_secs(60), data)
    }

    fn answer(records: Vec<Record>) -> Response {
        let mut response = Response::new(Rcode::NOERROR);
        response.answer = records;
        response
    }

    fn protection(allowed: &[&str]) -> RebindingProtection {
        RebindingProtection {
            allowed: allowed.iter().map(|z| name(z)).collect(),
        }
    }

    #[test]
    fn a_private_address_under_a_public_name_is_refused_with_ede_blocked() {
        let response = answer(vec![a("evil.example", "192.168.0.1")]);
        let checked = protection(&[]).check("forward", &name("evil.example"), response);
        assert_eq!(checked.header_rcode(), Rcode::REFUSED);
        assert!(checked.answer.is_empty());
        let ede = &checked.edns_options[0];
        assert_eq!(ede.code, option_code::EXTENDED_ERROR);
        assert_eq!(ede.data[..2], EDE_BLOCKED.to_be_bytes());
    }

    #[test]
    fn public_addresses_pass_unchanged() {
        let response = answer(vec![
            a("www.example", "192.0.2.1"),
            a("www.example", "2001:db8::1"),
        ]);
        let checked = protection(&[]).check("forward", &name("www.example"), response.clone());
        assert_eq!(checked, response);
    }

    #[test]
    fn names_under_an_allowed_zone_may_have_private_addresses() {
        let response = answer(vec![a("nas.corp.example", "10.0.0.5")]);
        let rule = protection(&["corp.example"]);
        assert_eq!(
            rule.check("cache", &name("nas.corp.example"), response.clone()),
            response
        );
        let elsewhere = answer(vec![a("nas.other.example", "10.0.0.5")]);
        let checked = rule.check("cache", &name("nas.other.example"), elsewhere);
        assert_eq!(checked.header_rcode(), Rcode::REFUSED);
    }

    #[test]
    fn a_cname_from_a_public_name_into_an_allowed_zone_is_still_refused() {
        // The browser's origin is the query name, not the CNAME target.
        let response = answer(vec![a("nas.corp.example", "10.0.0.5")]);
        let rule = protection(&["corp.example"]);
        assert!(rule.violation(&name("evil.example"), &response).is_some());
    }

    #[test]
    fn private_addresses_in_the_additional_section_are_refused_outside_allowed_zones() {
        let mut response = Response::new(Rcode::NOERROR);
        response.additional = vec![a("mx.evil.example", "fd00::25")];
        let rule = protection(&["corp.example"]);
        assert!(rule.violation(&name("evil.example"), &response).is_some());
        response.additional = vec![a("mx.corp.example", "fd00::25")];
        assert!(rule.violation(&name("evil.example"), &response).is_none());
    }

    #[tokio::test]
    async fn the_filter_handler_checks_what_the_rest_of_the_chain_answers() {
        let mut req = request("evil.example", Rtype::A);
        let chain: Vec<Arc<dyn Handler>> = vec![
            RebindingFilter::new("cache", protection(&[])),
            Arc::new(Fixed(answer(vec![a("evil.example", "127.0.0.1")]))),
        ];
        let response = serve_chain(&chain, &mut req).await.unwrap();
        assert_eq!(response.header_rcode(), Rcode::REFUSED);
    }
}
