//! `whoami`: answers every query with the client's address and port and the
//! transport it used, as CoreDNS's whoami does (records in the additional section).

use std::net::IpAddr;
use std::sync::Arc;

use oxidns_server::proto::domain::rdata::{A, Aaaa, Srv};
use oxidns_server::proto::{Class, Name, Rcode, Record, RecordData, Ttl, lowercase, name_from_str};
use oxidns_server::{ConfigError, Handler, HandlerFuture, Next, PluginEntry, Request, Setup};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "whoami",
    setup,
};

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    setup.single()?.bare()?;
    setup.add_handler(Arc::new(Whoami));
    Ok(())
}

struct Whoami;

impl Handler for Whoami {
    fn name(&self) -> &'static str {
        "whoami"
    }

    // Makes its own answers only.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, _next: Next<'a>) -> HandlerFuture<'a> {
        let mut response = request.reply(Rcode::NOERROR);
        response.authoritative = true;
        let owner = lowercase(request.qname());
        let address = match request.client.ip() {
            IpAddr::V4(v4) => RecordData::A(A::new(v4)),
            IpAddr::V6(v6) => RecordData::Aaaa(Aaaa::new(v6)),
        };
        let srv_owner = name_from_str(&format!(
            "_{}.{}",
            request.transport.as_str(),
            oxidns_server::proto::name_text(&owner)
        ))
        // A query name too long for the extra label gets no SRV record.
        .ok();
        response
            .additional
            .push(Record::new(owner, Class::IN, Ttl::ZERO, address));
        if let Some(srv_owner) = srv_owner {
            let srv = Srv::new(0, 0, request.client.port(), Name::root());
            response.additional.push(Record::new(
                srv_owner,
                Class::IN,
                Ttl::ZERO,
                RecordData::Srv(srv),
            ));
        }
        HandlerFuture::ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxidns_server::proto::Rtype;
    use oxidns_server::test_util::{config, config_error, over_tcp, request, serve_config};

    #[tokio::test]
    async fn answers_with_client_address_and_port_in_additional() {
        let config = config(". {\n whoami\n}", &[PLUGIN]).unwrap();
        let mut req = request("Example.ORG", Rtype::A);
        let response = serve_config(&config, &mut req).await.unwrap();
        assert!(response.authoritative);
        assert!(response.answer.is_empty());
        assert_eq!(response.additional.len(), 2);
        assert_eq!(
            response.additional[0].to_string(),
            "example.org. 0 IN A 127.0.0.1"
        );
        assert_eq!(
            response.additional[1].to_string(),
            "_udp.example.org. 0 IN SRV 0 0 40000 ."
        );
    }

    #[tokio::test]
    async fn tcp_and_ipv6_clients_are_told_so() {
        let config = config(". {\n whoami\n}", &[PLUGIN]).unwrap();
        let mut req = over_tcp(
            request("example.org", Rtype::A),
            "[2001:db8::1]:5353".parse().unwrap(),
        );
        let response = serve_config(&config, &mut req).await.unwrap();
        assert_eq!(
            response.additional[0].to_string(),
            "example.org. 0 IN AAAA 2001:db8::1"
        );
        assert_eq!(
            response.additional[1].to_string(),
            "_tcp.example.org. 0 IN SRV 0 0 5353 ."
        );
    }

    #[test]
    fn arguments_and_repeats_are_refused() {
        assert_eq!(
            config_error(". {\n whoami extra\n}", &[PLUGIN]),
            "Corefile:2: whoami: takes no arguments, got 1"
        );
        assert_eq!(
            config_error(". {\n whoami\n whoami\n}", &[PLUGIN]),
            "Corefile:3: whoami: this plugin can only be used once per server block"
        );
    }
}
