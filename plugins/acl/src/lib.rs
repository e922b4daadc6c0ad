//! `acl`: access control by source address and query type, as CoreDNS's
//! acl. Each `acl` directive is a rule for some zones holding policies
//! (`allow`, `block`, `filter`, `drop`), tried in order; the first policy
//! whose types and networks match the query decides. A query no policy
//! matches goes on to the next rule, and past the last one is allowed.
//!
//! `block` answers REFUSED and `filter` an empty NOERROR, both with an
//! Extended DNS Error (RFC 8914 §4.16 Blocked, §4.18 Filtered) as CoreDNS
//! sends; `drop` sends nothing at all.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use ipnet::IpNet;
use oxidns_server::proto::{
    EdnsOption, Name, Rcode, Response, Rtype, in_zone, name_text, option_code,
};
use oxidns_server::{
    ConfigError, Directive, Handler, HandlerFuture, Next, PluginEntry, Request, Setup,
};

pub const PLUGIN: PluginEntry = PluginEntry { name: "acl", setup };

/// RFC 8914 §5.2 INFO-CODEs.
const EDE_BLOCKED: u16 = 15;
const EDE_FILTERED: u16 = 17;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Allow,
    Block,
    Filter,
    Drop,
}

/// `ACTION [type QTYPE...] [net SOURCE...]`; empty lists match everything.
#[derive(Debug)]
struct Policy {
    action: Action,
    /// Query types; empty for all (`*` or no `type` section).
    types: Vec<Rtype>,
    /// Source networks; empty for all (`*` or no `net` section).
    nets: Vec<IpNet>,
}

impl Policy {
    fn matches(&self, qtype: Rtype, source: IpAddr) -> bool {
        (self.types.is_empty() || self.types.contains(&qtype))
            && (self.nets.is_empty() || self.nets.iter().any(|net| net.contains(&source)))
    }
}

/// One `acl` directive: its zones and policies.
#[derive(Debug)]
struct Rule {
    zones: Vec<Name>,
    policies: Vec<Policy>,
}

impl Rule {
    /// The most specific of the rule's zones holding `qname`.
    fn zone_of(&self, qname: &Name) -> Option<&Name> {
        self.zones
            .iter()
            .filter(|zone| in_zone(qname, zone))
            .max_by_key(|zone| zone.label_count())
    }
}

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let mut rules = Vec::new();
    for directive in setup.directives() {
        let zones = setup.zones_or_block(&directive.args)?;
        let policies = directive
            .block
            .iter()
            .map(|line| parse_policy(directive, line))
            .collect::<Result<_, _>>()?;
        rules.push(Rule { zones, policies });
    }
    setup.add_handler(Arc::new(Acl { rules }));
    Ok(())
}

fn parse_policy(directive: &Directive, line: &Directive) -> Result<Policy, ConfigError> {
    let error = |message: String| ConfigError::at(&line.name, format!("acl: {message}"));
    let action = match line.name.text.to_ascii_lowercase().as_str() {
        "allow" => Action::Allow,
        "block" => Action::Block,
        "filter" => Action::Filter,
        "drop" => Action::Drop,
        _ => return Err(directive.unknown_property(line)),
    };
    let mut policy = Policy {
        action,
        types: Vec::new(),
        nets: Vec::new(),
    };
    let (mut all_types, mut all_nets) = (false, false);
    let mut section: Option<&str> = None;
    let mut section_empty = false;
    for token in &line.args {
        let word = token.text.as_str();
        if word.eq_ignore_ascii_case("type") || word.eq_ignore_ascii_case("net") {
            if section.is_some() && section_empty {
                return Err(error(format!(
                    "no token specified in '{}' section",
                    section.unwrap_or_default()
                )));
            }
            section = Some(if word.eq_ignore_ascii_case("type") {
                "type"
            } else {
                "net"
            });
            section_empty = true;
            continue;
        }
        section_empty = false;
        match section {
            Some("type") if word == "*" => all_types = true,
            Some("type") => {
                let qtype = Rtype::from_str(&word.to_ascii_uppercase())
                    .map_err(|_| error(format!("unexpected token '{word}'; expect legal QTYPE")))?;
                policy.types.push(qtype);
            }
            Some(_) if word == "*" => all_nets = true,
            Some(_) => policy.nets.push(
                parse_net(word).ok_or_else(|| error(format!("illegal CIDR notation '{word}'")))?,
            ),
            None => {
                return Err(error(format!(
                    "unexpected token '{word}'; expect 'type | net'"
                )));
            }
        }
    }
    if let Some(section) = section.filter(|_| section_empty) {
        return Err(error(format!("no token specified in '{section}' section")));
    }
    if all_types {
        policy.types.clear();
    }
    if all_nets {
        policy.nets.clear();
    }
    Ok(policy)
}

/// A network in CIDR notation, or one address (as /32 or /128).
fn parse_net(text: &str) -> Option<IpNet> {
    if text.contains('/') {
        return IpNet::from_str(text).ok().map(|net| net.trunc());
    }
    let addr = IpAddr::from_str(text).ok()?;
    Some(IpNet::from(addr))
}

struct Acl {
    rules: Vec<Rule>,
}

impl Acl {
    /// The action for this query and the zone of the rule that decided it.
    fn decide(&self, qname: &Name, qtype: Rtype, source: IpAddr) -> Option<(Action, &Name)> {
        for rule in &self.rules {
            let Some(zone) = rule.zone_of(qname) else {
                continue;
            };
            if let Some(policy) = rule.policies.iter().find(|p| p.matches(qtype, source)) {
                return Some((policy.action, zone));
            }
        }
        None
    }
}

fn with_ede(rcode: Rcode, info_code: u16) -> Response {
    let mut response = Response::new(rcode);
    response.edns_options.push(EdnsOption {
        code: option_code::EXTENDED_ERROR,
        data: Bytes::copy_from_slice(&info_code.to_be_bytes()),
    });
    response
}

impl Handler for Acl {
    fn name(&self) -> &'static str {
        "acl"
    }

    // Decides on the question alone.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        let decision = self.decide(request.qname(), request.qtype(), request.client.ip());
        let server = request.server.to_string();
        let counter = |name: &'static str, zone: &Name| {
            metrics::counter!(name, "server" => server.clone(), "zone" => name_text(zone), "view" => "")
                .increment(1);
        };
        let response = match decision {
            None | Some((Action::Allow, _)) => {
                metrics::counter!("coredns_acl_allowed_requests_total", "server" => server.clone(), "view" => "")
                    .increment(1);
                return next.serve(request);
            }
            Some((Action::Block, zone)) => {
                counter("coredns_acl_blocked_requests_total", zone);
                with_ede(Rcode::REFUSED, EDE_BLOCKED)
            }
            Some((Action::Filter, zone)) => {
                counter("coredns_acl_filtered_requests_total", zone);
                with_ede(Rcode::NOERROR, EDE_FILTERED)
            }
            Some((Action::Drop, zone)) => {
                counter("coredns_acl_dropped_requests_total", zone);
                request.drop_response();
                Response::new(Rcode::NOERROR)
            }
        };
        HandlerFuture::ready(Ok(response))
    }
}

#[cfg(test)]
mod tests;
