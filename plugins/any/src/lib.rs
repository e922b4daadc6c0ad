//! `any`: answers queries of type ANY with one small HINFO record, as RFC 8482
//! §4.2 allows and as CoreDNS's any plugin does. Every other query passes on.

use std::sync::Arc;

use bytes::Bytes;
use oxidns_server::proto::domain::base::CharStr;
use oxidns_server::proto::domain::rdata::Hinfo;
use oxidns_server::proto::{Class, Rcode, Record, RecordData, Rtype, Ttl};
use oxidns_server::{ConfigError, Handler, HandlerFuture, Next, PluginEntry, Request, Setup};

pub const PLUGIN: PluginEntry = PluginEntry { name: "any", setup };

/// The TTL of the HINFO record; CoreDNS uses the RFC's number.
const TTL: u32 = 8482;
/// The record's CPU and OS strings, as CoreDNS sends them.
const CPU: &[u8] = b"ANY obsoleted";
const OS: &[u8] = b"See RFC 8482";

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?;
    directive.args_between(0, 0)?;
    if let Some(line) = directive.block.first() {
        return Err(directive.unknown_property(line));
    }
    setup.add_handler(Arc::new(Any));
    Ok(())
}

struct Any;

impl Handler for Any {
    fn name(&self) -> &'static str {
        "any"
    }

    // Answers ANY itself; other answers pass unread.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        if request.qtype() != Rtype::ANY {
            return next.serve(request);
        }
        let hinfo = Hinfo::new(
            CharStr::from_octets(Bytes::from_static(CPU)).expect("shorter than 256 octets"),
            CharStr::from_octets(Bytes::from_static(OS)).expect("shorter than 256 octets"),
        );
        // Like CoreDNS: class IN whatever the query's class, owner as asked, AA clear.
        let mut response = request.reply(Rcode::NOERROR);
        response.answer.push(Record::new(
            request.qname().clone(),
            Class::IN,
            Ttl::from_secs(TTL),
            RecordData::Hinfo(hinfo),
        ));
        HandlerFuture::ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxidns_server::proto::{Response, name_text};
    use oxidns_server::test_util::{Fixed, config, config_error, request, serve_chain};

    /// What the rest of the chain answers, to tell pass-through from our answer.
    fn from_next() -> Response {
        Response::new(Rcode::REFUSED)
    }

    async fn serve(corefile: &str, qname: &str, qtype: Rtype) -> Response {
        let config = config(corefile, &[PLUGIN]).unwrap();
        let mut chain = config.blocks[0].chain.to_vec();
        chain.push(Arc::new(Fixed(from_next())));
        let mut req = request(qname, qtype);
        serve_chain(&chain, &mut req).await.unwrap()
    }

    #[tokio::test]
    async fn any_query_gets_one_hinfo_record_as_coredns_sends_it() {
        let response = serve(". {\n any\n}", "Example.ORG", Rtype::ANY).await;
        assert_eq!(response.rcode, Rcode::NOERROR.into());
        assert_eq!(response.answer.len(), 1);
        assert_eq!(
            response.answer[0].to_string(),
            "Example.ORG. 8482 IN HINFO \"ANY obsoleted\" \"See RFC 8482\""
        );
        assert!(response.authority.is_empty());
        assert!(response.additional.is_empty());
    }

    #[tokio::test]
    async fn any_answer_is_not_authoritative() {
        let response = serve(". {\n any\n}", "example.org", Rtype::ANY).await;
        assert!(!response.authoritative);
        assert!(!response.truncated);
    }

    #[tokio::test]
    async fn hinfo_owner_keeps_the_question_case() {
        let response = serve(". {\n any\n}", "WWW.example.Org", Rtype::ANY).await;
        assert_eq!(name_text(response.answer[0].owner()), "WWW.example.Org.");
    }

    #[tokio::test]
    async fn other_query_types_pass_to_next() {
        for qtype in [Rtype::A, Rtype::AAAA, Rtype::TXT, Rtype::HINFO, Rtype::AXFR] {
            let response = serve(". {\n any\n}", "example.org", qtype).await;
            assert_eq!(response, from_next(), "{qtype}");
        }
    }

    #[test]
    fn arguments_are_refused() {
        assert_eq!(
            config_error(". {\n any example.org\n}", &[PLUGIN]),
            "Corefile:2: any: takes no arguments, got 1"
        );
    }

    #[test]
    fn option_block_is_refused_as_unknown_property() {
        assert_eq!(
            config_error(". {\n any {\n  minimal\n }\n}", &[PLUGIN]),
            "Corefile:3: any: unknown property 'minimal'"
        );
    }

    #[test]
    fn second_any_in_a_block_is_refused() {
        assert_eq!(
            config_error(". {\n any\n any\n}", &[PLUGIN]),
            "Corefile:3: any: this plugin can only be used once per server block"
        );
    }
}
