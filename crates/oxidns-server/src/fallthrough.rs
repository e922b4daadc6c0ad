//! `fallthrough [ZONES...]`, shared by the plugins that take it: pass a query
//! the plugin cannot answer to the next plugin, for every name or only for
//! names in ZONES.

use oxidns_proto::{Name, OptRcode, Response};

use crate::corefile::key::parse_key;
use crate::corefile::{ConfigError, Directive};
use crate::plugin::{HandlerFuture, Next, Request};

/// Which names fall through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fallthrough {
    /// No `fallthrough`: the plugin answers for itself.
    #[default]
    Never,
    /// `fallthrough` with no zones.
    Always,
    /// `fallthrough ZONES...`.
    Zones(Vec<Name>),
}

impl Fallthrough {
    /// Reads a `fallthrough` line of an option block.
    pub fn parse(line: &Directive) -> Result<Fallthrough, ConfigError> {
        if line.args.is_empty() {
            return Ok(Fallthrough::Always);
        }
        let mut zones = Vec::new();
        for arg in &line.args {
            zones.extend(parse_key(arg, 53)?.zones);
        }
        Ok(Fallthrough::Zones(zones))
    }

    /// Whether a query for `qname` falls through.
    pub fn matches(&self, qname: &Name) -> bool {
        match self {
            Fallthrough::Never => false,
            Fallthrough::Always => true,
            Fallthrough::Zones(zones) => zones.iter().any(|z| oxidns_proto::in_zone(qname, z)),
        }
    }

    /// A plugin's own answer, or the next plugin's when the answer is
    /// NXDOMAIN for a name that falls through (as CoreDNS's zone plugins do).
    pub fn answer_or_next<'a>(
        &self,
        response: Response,
        request: &'a mut Request,
        next: Next<'a>,
    ) -> HandlerFuture<'a> {
        if response.rcode == OptRcode::NXDOMAIN && self.matches(request.qname()) {
            return next.serve(request);
        }
        HandlerFuture::ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corefile::parse_str;
    use oxidns_proto::name_from_str;

    fn parse(line: &str) -> Fallthrough {
        let blocks = parse_str(&format!(". {{\n {line}\n}}"), "Corefile").unwrap();
        Fallthrough::parse(&blocks[0].directives[0]).unwrap()
    }

    #[test]
    fn bare_fallthrough_matches_every_name() {
        assert!(parse("fallthrough").matches(&name_from_str("a.example").unwrap()));
        assert!(!Fallthrough::Never.matches(&name_from_str("a.example").unwrap()));
    }

    #[test]
    fn zones_limit_fallthrough_to_names_below_them() {
        let f = parse("fallthrough example.org 10.0.0.0/8");
        assert!(f.matches(&name_from_str("WWW.Example.org").unwrap()));
        assert!(f.matches(&name_from_str("1.2.3.10.in-addr.arpa").unwrap()));
        assert!(!f.matches(&name_from_str("example.net").unwrap()));
    }
}
