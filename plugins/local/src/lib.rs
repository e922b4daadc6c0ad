//! `local`: answers for names that must never leave the host, as CoreDNS's
//! local plugin does: the zones `localhost.`, `0.in-addr.arpa.`,
//! `127.in-addr.arpa.` and `255.in-addr.arpa.`, every name under
//! `localhost.` (RFC 6761 §6.3), and — unless `localhost_prefix off` — every
//! name whose first label is `localhost` (`localhost.example.net.`).
//!
//! What is answered:
//! - names under `localhost.`, and `localhost.<anything>`: A 127.0.0.1,
//!   AAAA ::1, anything else NODATA with an SOA owned by the question name;
//! - a zone apex: A and AAAA (`localhost.` only), SOA and NS; other types,
//!   and A/AAAA at the reverse apexes, NODATA with the apex's SOA;
//! - `1.0.0.127.in-addr.arpa.`: PTR `localhost.`, other types NODATA;
//! - any other name in the reverse zones: NXDOMAIN with the zone's SOA.
//!
//! As in CoreDNS the answers are not marked authoritative, the query class is
//! not looked at, and `ip6.arpa.` names are not intercepted.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use oxidns_server::proto::domain::base::name::Label;
use oxidns_server::proto::domain::rdata::{A, Aaaa, Ns, Ptr, Soa};
use oxidns_server::proto::{
    Class, Name, Rcode, Record, RecordData, Response, Rtype, Serial, Ttl, name_from_str,
};
use oxidns_server::{ConfigError, Handler, HandlerFuture, Next, PluginEntry, Request, Setup};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "local",
    setup,
};

/// The TTL of every record, and the SOA minimum: one week, as CoreDNS.
const TTL: u32 = 604_800;

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    // CoreDNS reads every `local` line of the block; the last setting wins.
    let mut localhost_prefix = true;
    for directive in setup.directives() {
        directive.args_between(0, 0)?;
        for line in &directive.block {
            match line.name.text.as_str() {
                "localhost_prefix" => {
                    let [value] = line.args.as_slice() else {
                        return Err(ConfigError::at(
                            &line.name,
                            format!(
                                "local: localhost_prefix takes 1 argument(s), got {}",
                                line.args.len()
                            ),
                        ));
                    };
                    localhost_prefix = match value.text.as_str() {
                        "on" => true,
                        "off" => false,
                        other => {
                            return Err(ConfigError::at(
                                value,
                                format!(
                                    "local: localhost_prefix expects 'on' or 'off', got '{other}'"
                                ),
                            ));
                        }
                    };
                    if let Some(nested) = line.block.first() {
                        return Err(ConfigError::at(
                            &nested.name,
                            "local: localhost_prefix takes no options block",
                        ));
                    }
                }
                _ => return Err(directive.unknown_property(line)),
            }
        }
    }
    setup.add_handler(Arc::new(Local::new(localhost_prefix)));
    Ok(())
}

/// Which of the four zones a name is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Zone {
    Localhost,
    Reverse,
}

struct Local {
    localhost_prefix: bool,
    /// The four zones, with the kind of each.
    zones: Vec<(Name, Zone)>,
    loopback_ptr: Name,
    localhost: Name,
    mbox: Name,
}

impl Local {
    fn new(localhost_prefix: bool) -> Self {
        let name = |text| name_from_str(text).expect("a valid name");
        Local {
            localhost_prefix,
            zones: vec![
                (name("localhost"), Zone::Localhost),
                (name("0.in-addr.arpa"), Zone::Reverse),
                (name("127.in-addr.arpa"), Zone::Reverse),
                (name("255.in-addr.arpa"), Zone::Reverse),
            ],
            loopback_ptr: name("1.0.0.127.in-addr.arpa"),
            localhost: name("localhost"),
            mbox: name("root.localhost"),
        }
    }

    /// Whether `qname` is answered with loopback addresses: a name under
    /// `localhost.`, or (with the prefix handling on) `localhost.<anything>`.
    fn is_localhost_name(&self, qname: &Name) -> bool {
        let labels: Vec<&Label> = qname.iter().collect();
        // At least two labels besides the root: `localhost.` itself is the zone apex.
        if labels.len() < 3 {
            return false;
        }
        let is_localhost = |label: &Label| label.as_slice().eq_ignore_ascii_case(b"localhost");
        let under_localhost = is_localhost(labels[labels.len() - 2]);
        let prefixed = self.localhost_prefix && is_localhost(labels[0]);
        under_localhost || prefixed
    }

    fn soa(&self, owner: Name) -> Record {
        let soa = Soa::new(
            self.localhost.clone(),
            self.mbox.clone(),
            Serial(1),
            Ttl::ZERO,
            Ttl::ZERO,
            Ttl::ZERO,
            Ttl::from_secs(TTL),
        );
        record(owner, RecordData::Soa(soa))
    }

    /// A, AAAA or NODATA for a loopback name.
    fn answer_localhost(&self, request: &Request) -> Response {
        let qname = request.qname().clone();
        let mut response = request.reply(Rcode::NOERROR);
        match request.qtype() {
            Rtype::A => response.answer.push(loopback_a(qname)),
            Rtype::AAAA => response.answer.push(loopback_aaaa(qname)),
            _ => response.authority.push(self.soa(qname)),
        }
        response
    }

    /// The answer for a name inside one of the zones; `zone` is the zone's
    /// apex as a suffix of the question (so in the question's case).
    fn answer_in_zone(&self, request: &Request, zone: Name, kind: Zone) -> Response {
        let qname = request.qname().clone();
        let qtype = request.qtype();
        let mut response = request.reply(Rcode::NOERROR);
        if qname == zone {
            match qtype {
                Rtype::A if kind == Zone::Localhost => response.answer.push(loopback_a(qname)),
                Rtype::AAAA if kind == Zone::Localhost => {
                    response.answer.push(loopback_aaaa(qname))
                }
                Rtype::SOA => response.answer.push(self.soa(qname)),
                Rtype::NS => {
                    let ns = Ns::new(self.localhost.clone());
                    response.answer.push(record(qname, RecordData::Ns(ns)));
                }
                _ => response.authority.push(self.soa(qname)),
            }
        } else if qname == self.loopback_ptr {
            match qtype {
                Rtype::PTR => {
                    let ptr = Ptr::new(self.localhost.clone());
                    response.answer.push(record(qname, RecordData::Ptr(ptr)));
                }
                _ => response.authority.push(self.soa(zone)),
            }
        } else {
            response.rcode = Rcode::NXDOMAIN.into();
            response.authority.push(self.soa(zone));
        }
        response
    }
}

impl Handler for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    // Makes its own answers only.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        let qname = request.qname();
        if self.is_localhost_name(qname) {
            metrics::counter!("coredns_local_localhost_requests_total").increment(1);
            tracing::debug!(
                "intercepting localhost query for {} {} from {}",
                qname,
                request.qtype(),
                request.client.ip()
            );
            let response = self.answer_localhost(request);
            return HandlerFuture::ready(Ok(response));
        }
        let found = self.zones.iter().find_map(|(zone, kind)| {
            // The apex as the question spells it, for the owner of its SOA.
            qname
                .iter_suffixes()
                .find(|suffix| suffix == zone)
                .map(|suffix| (suffix, *kind))
        });
        let Some((zone, kind)) = found else {
            return next.serve(request);
        };
        let response = self.answer_in_zone(request, zone, kind);
        HandlerFuture::ready(Ok(response))
    }
}

fn record(owner: Name, data: RecordData) -> Record {
    Record::new(owner, Class::IN, Ttl::from_secs(TTL), data)
}

fn loopback_a(owner: Name) -> Record {
    record(owner, RecordData::A(A::new(Ipv4Addr::LOCALHOST)))
}

fn loopback_aaaa(owner: Name) -> Record {
    record(owner, RecordData::Aaaa(Aaaa::new(Ipv6Addr::LOCALHOST)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxidns_server::proto::name_text;
    use oxidns_server::test_util::{Fixed, config, config_error, request, serve_chain};

    /// What the rest of the chain answers, to tell pass-through from our answer.
    fn from_next() -> Response {
        Response::new(Rcode::REFUSED)
    }

    async fn serve_in(corefile: &str, qname: &str, qtype: Rtype) -> Response {
        let config = config(corefile, &[PLUGIN]).unwrap();
        let mut chain = config.blocks[0].chain.to_vec();
        chain.push(Arc::new(Fixed(from_next())));
        let mut req = request(qname, qtype);
        serve_chain(&chain, &mut req).await.unwrap()
    }

    async fn serve(qname: &str, qtype: Rtype) -> Response {
        serve_in(". {\n local\n}", qname, qtype).await
    }

    const SOA: &str = "604800 IN SOA localhost. root.localhost. 1 0 0 0 604800";

    /// Rcode, answer and authority in one line: `RCODE | answer | authority`,
    /// records as `owner TYPE data` (TTL and class are checked on their own).
    fn render(response: &Response) -> String {
        let text = |records: &[Record]| {
            records
                .iter()
                .map(|r| match r.data() {
                    RecordData::Soa(_) => format!("{} SOA", r.owner()),
                    data => format!("{} {} {data}", r.owner(), r.rtype()),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{} | {} | {}",
            response.header_rcode(),
            text(&response.answer),
            text(&response.authority)
        )
    }

    /// The full text of every record in the answer and authority sections.
    fn records(response: &Response) -> Vec<String> {
        let all = response.answer.iter().chain(&response.authority);
        all.map(|r| r.to_string()).collect()
    }

    #[tokio::test]
    async fn table_of_answers_matches_coredns() {
        let rows = [
            ("localhost", Rtype::A, "NOERROR | localhost A 127.0.0.1 | "),
            ("localhost", Rtype::AAAA, "NOERROR | localhost AAAA ::1 | "),
            (
                "localhost",
                Rtype::NS,
                "NOERROR | localhost NS localhost. | ",
            ),
            ("localhost", Rtype::SOA, "NOERROR | localhost SOA | "),
            ("localhost", Rtype::MX, "NOERROR |  | localhost SOA"),
            (
                "127.in-addr.arpa",
                Rtype::A,
                "NOERROR |  | 127.in-addr.arpa SOA",
            ),
            (
                "127.in-addr.arpa",
                Rtype::AAAA,
                "NOERROR |  | 127.in-addr.arpa SOA",
            ),
            (
                "127.in-addr.arpa",
                Rtype::SOA,
                "NOERROR | 127.in-addr.arpa SOA | ",
            ),
            (
                "0.in-addr.arpa",
                Rtype::NS,
                "NOERROR | 0.in-addr.arpa NS localhost. | ",
            ),
            (
                "255.in-addr.arpa",
                Rtype::TXT,
                "NOERROR |  | 255.in-addr.arpa SOA",
            ),
            (
                "1.0.0.127.in-addr.arpa",
                Rtype::PTR,
                "NOERROR | 1.0.0.127.in-addr.arpa PTR localhost. | ",
            ),
            (
                "1.0.0.127.in-addr.arpa",
                Rtype::MX,
                "NOERROR |  | 127.in-addr.arpa SOA",
            ),
            (
                "2.0.0.127.in-addr.arpa",
                Rtype::PTR,
                "NXDOMAIN |  | 127.in-addr.arpa SOA",
            ),
            (
                "0.0.0.0.in-addr.arpa",
                Rtype::PTR,
                "NXDOMAIN |  | 0.in-addr.arpa SOA",
            ),
            (
                "9.255.255.255.in-addr.arpa",
                Rtype::A,
                "NXDOMAIN |  | 255.in-addr.arpa SOA",
            ),
            (
                "a.localhost",
                Rtype::A,
                "NOERROR | a.localhost A 127.0.0.1 | ",
            ),
            (
                "a.localhost",
                Rtype::AAAA,
                "NOERROR | a.localhost AAAA ::1 | ",
            ),
            ("a.localhost", Rtype::MX, "NOERROR |  | a.localhost SOA"),
            (
                "localhost.example.net",
                Rtype::A,
                "NOERROR | localhost.example.net A 127.0.0.1 | ",
            ),
            (
                "localhost.example.net",
                Rtype::SOA,
                "NOERROR |  | localhost.example.net SOA",
            ),
        ];
        for (qname, qtype, expected) in rows {
            let response = serve(qname, qtype).await;
            assert_eq!(render(&response), expected, "{qname} {qtype}");
        }
    }

    #[tokio::test]
    async fn records_have_class_in_and_a_one_week_ttl() {
        let response = serve("localhost", Rtype::A).await;
        assert_eq!(records(&response), ["localhost. 604800 IN A 127.0.0.1"]);
        let response = serve("localhost", Rtype::NS).await;
        assert_eq!(records(&response), ["localhost. 604800 IN NS localhost."]);
    }

    #[tokio::test]
    async fn soa_is_localhost_root_localhost_serial_1_minimum_one_week() {
        let response = serve("2.0.0.127.in-addr.arpa", Rtype::PTR).await;
        assert_eq!(records(&response), [format!("127.in-addr.arpa. {SOA}")]);
    }

    #[tokio::test]
    async fn localhost_a_keeps_the_question_case() {
        let response = serve("localHOst", Rtype::A).await;
        assert_eq!(
            response.answer[0].to_string(),
            "localHOst. 604800 IN A 127.0.0.1"
        );
    }

    #[tokio::test]
    async fn nxdomain_soa_owner_is_the_zone_in_the_question_case() {
        let response = serve("5.0.0.127.IN-ADDR.Arpa", Rtype::PTR).await;
        assert_eq!(response.header_rcode(), Rcode::NXDOMAIN);
        assert_eq!(
            name_text(response.authority[0].owner()),
            "127.IN-ADDR.Arpa."
        );
    }

    #[tokio::test]
    async fn names_under_localhost_get_loopback_addresses() {
        for qname in ["a.localhost", "deep.sub.LOCALHOST", "localhost.localhost"] {
            let a = serve(qname, Rtype::A).await;
            assert_eq!(
                a.answer[0].to_string(),
                format!("{qname}. 604800 IN A 127.0.0.1")
            );
            let aaaa = serve(qname, Rtype::AAAA).await;
            assert_eq!(
                aaaa.answer[0].to_string(),
                format!("{qname}. 604800 IN AAAA ::1")
            );
        }
    }

    #[tokio::test]
    async fn names_under_localhost_get_nodata_for_other_types_with_their_own_soa() {
        let response = serve("a.localhost", Rtype::MX).await;
        assert_eq!(response.header_rcode(), Rcode::NOERROR);
        assert_eq!(records(&response), [format!("a.localhost. {SOA}")]);
    }

    #[tokio::test]
    async fn localhost_prefix_names_get_loopback_addresses() {
        let a = serve("localhost.example.net", Rtype::A).await;
        assert_eq!(
            a.answer[0].to_string(),
            "localhost.example.net. 604800 IN A 127.0.0.1"
        );
        let aaaa = serve("LocalHost.example.net", Rtype::AAAA).await;
        assert_eq!(
            aaaa.answer[0].to_string(),
            "LocalHost.example.net. 604800 IN AAAA ::1"
        );
        let soa = serve("localhost.example.net", Rtype::SOA).await;
        assert!(soa.answer.is_empty());
        assert_eq!(records(&soa), [format!("localhost.example.net. {SOA}")]);
    }

    #[tokio::test]
    async fn localhost_prefix_off_passes_prefixed_names_to_next() {
        let corefile = ". {\n local {\n  localhost_prefix off\n }\n}";
        let response = serve_in(corefile, "localhost.example.net", Rtype::A).await;
        assert_eq!(response, from_next());
        // Names under localhost. are still answered.
        let under = serve_in(corefile, "a.localhost", Rtype::A).await;
        assert_eq!(under.answer.len(), 1);
    }

    #[tokio::test]
    async fn localhost_prefix_on_is_the_default() {
        let corefile = ". {\n local {\n  localhost_prefix on\n }\n}";
        let response = serve_in(corefile, "localhost.example.net", Rtype::A).await;
        assert_eq!(response.answer.len(), 1);
    }

    #[tokio::test]
    async fn answers_are_not_authoritative() {
        for (qname, qtype) in [
            ("localhost", Rtype::A),
            ("a.localhost", Rtype::A),
            ("2.0.0.127.in-addr.arpa", Rtype::PTR),
        ] {
            assert!(!serve(qname, qtype).await.authoritative, "{qname}");
        }
    }

    #[tokio::test]
    async fn other_names_pass_to_next() {
        for qname in [
            "example.org",
            "notlocalhost",
            "localhostx.example.net",
            "example.localhost.net",
            "1.in-addr.arpa",
            "1.0.0.10.in-addr.arpa",
            "in-addr.arpa",
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
            ".",
        ] {
            let response = serve(qname, Rtype::A).await;
            assert_eq!(response, from_next(), "{qname}");
        }
    }

    #[test]
    fn arguments_are_refused() {
        assert_eq!(
            config_error(". {\n local example.org\n}", &[PLUGIN]),
            "Corefile:2: local: takes no arguments, got 1"
        );
    }

    #[test]
    fn unknown_property_is_refused() {
        assert_eq!(
            config_error(". {\n local {\n  ttl 5\n }\n}", &[PLUGIN]),
            "Corefile:3: local: unknown property 'ttl'"
        );
    }

    #[test]
    fn localhost_prefix_value_other_than_on_or_off_is_refused() {
        assert_eq!(
            config_error(". {\n local {\n  localhost_prefix maybe\n }\n}", &[PLUGIN]),
            "Corefile:3: local: localhost_prefix expects 'on' or 'off', got 'maybe'"
        );
    }

    #[test]
    fn localhost_prefix_without_a_value_is_refused() {
        assert_eq!(
            config_error(". {\n local {\n  localhost_prefix\n }\n}", &[PLUGIN]),
            "Corefile:3: local: localhost_prefix takes 1 argument(s), got 0"
        );
    }

    #[tokio::test]
    async fn repeated_local_is_accepted_and_the_last_setting_wins() {
        let corefile = ". {\n local\n local {\n  localhost_prefix off\n }\n}";
        let config = config(corefile, &[PLUGIN]).unwrap();
        assert_eq!(config.blocks[0].chain.len(), 1);
        let response = serve_in(corefile, "localhost.example.net", Rtype::A).await;
        assert_eq!(response, from_next());
    }
}
