//! `nsid`: the name server identifier of RFC 5001. When a query's OPT record
//! carries an NSID option, the response gets an NSID option with this
//! server's identifier (by default its host name), as CoreDNS's nsid does.
//! Queries without it are left alone.

use std::sync::Arc;

use bytes::Bytes;
use oxidns_server::proto::{EdnsOption, Response, option_code};
use oxidns_server::{ConfigError, Handler, HandlerFuture, Next, PluginEntry, Request, Setup};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "nsid",
    setup,
};

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?;
    if let Some(line) = directive.block.first() {
        return Err(directive.unknown_property(line));
    }
    // As CoreDNS: the arguments joined by single spaces, else the host name.
    let args = directive.arg_texts();
    let data = if args.is_empty() {
        oxidns_server::hostname()
    } else {
        args.join(" ")
    };
    setup.add_handler(Arc::new(Nsid {
        data: Bytes::from(data.into_bytes()),
    }));
    Ok(())
}

struct Nsid {
    data: Bytes,
}

impl Nsid {
    /// Sets the response's NSID option to ours, replacing any the rest of the
    /// chain put there (an upstream's, copied by a proxy).
    fn stamp(&self, response: &mut Response) {
        let mut found = false;
        for option in &mut response.edns_options {
            if option.code == option_code::NSID {
                option.data = self.data.clone();
                found = true;
            }
        }
        if !found {
            response.edns_options.push(EdnsOption {
                code: option_code::NSID,
                data: self.data.clone(),
            });
        }
    }
}

impl Handler for Nsid {
    fn name(&self) -> &'static str {
        "nsid"
    }

    // Adds an EDNS option, which stays outside the sections.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        let requested = request
            .query
            .edns
            .as_ref()
            .is_some_and(|edns| edns.option(option_code::NSID).is_some());
        if !requested {
            return next.serve(request);
        }
        next.serve(request).map(move |result| {
            let mut response = result?;
            self.stamp(&mut response);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxidns_server::proto::{Class, Edns, Rcode, Rtype};
    use oxidns_server::test_util::{
        Failing, Fixed, config, config_error, request_with, serve_chain,
    };
    use oxidns_server::{Handler, PluginError};

    fn edns(options: Vec<EdnsOption>) -> Edns {
        Edns {
            udp_payload_size: 1232,
            version: 0,
            dnssec_ok: false,
            options,
        }
    }

    fn option(code: u16, data: &'static [u8]) -> EdnsOption {
        EdnsOption {
            code,
            data: Bytes::from_static(data),
        }
    }

    /// The empty NSID option a client sends to ask (RFC 5001 §2.1).
    fn nsid_request() -> EdnsOption {
        option(option_code::NSID, b"")
    }

    async fn serve_with(
        corefile: &str,
        edns: Option<Edns>,
        next: Arc<dyn Handler>,
    ) -> Result<Response, PluginError> {
        let config = config(corefile, &[PLUGIN]).unwrap();
        let mut chain = config.blocks[0].chain.to_vec();
        chain.push(next);
        let mut req = request_with("example.org", Rtype::A, Class::IN, edns);
        serve_chain(&chain, &mut req).await
    }

    async fn serve(corefile: &str, edns: Option<Edns>) -> Response {
        let next = Arc::new(Fixed(Response::new(Rcode::NOERROR)));
        serve_with(corefile, edns, next).await.unwrap()
    }

    #[tokio::test]
    async fn nsid_in_query_gets_configured_data_in_response() {
        let response = serve(". {\n nsid ps0\n}", Some(edns(vec![nsid_request()]))).await;
        assert_eq!(response.edns_options, [option(option_code::NSID, b"ps0")]);
    }

    #[tokio::test]
    async fn nsid_absent_in_query_is_absent_in_response() {
        let other = option(option_code::COOKIE, b"01234567");
        let response = serve(". {\n nsid ps0\n}", Some(edns(vec![other]))).await;
        assert!(response.edns_options.is_empty());
    }

    #[tokio::test]
    async fn query_without_edns_gets_no_nsid() {
        let response = serve(". {\n nsid ps0\n}", None).await;
        assert!(response.edns_options.is_empty());
    }

    #[tokio::test]
    async fn nsid_is_found_among_other_options() {
        let options = vec![
            option(option_code::COOKIE, b"01234567"),
            nsid_request(),
            option(65001, b"x"),
        ];
        let response = serve(". {\n nsid ps0\n}", Some(edns(options))).await;
        assert_eq!(response.edns_options, [option(option_code::NSID, b"ps0")]);
    }

    #[tokio::test]
    async fn several_arguments_are_joined_with_spaces() {
        let response = serve(". {\n nsid tf \"2 b\"\n}", Some(edns(vec![nsid_request()]))).await;
        assert_eq!(
            response.edns_options,
            [option(option_code::NSID, b"tf 2 b")]
        );
    }

    #[tokio::test]
    async fn default_data_is_the_host_name() {
        let response = serve(". {\n nsid\n}", Some(edns(vec![nsid_request()]))).await;
        assert_eq!(
            response.edns_options,
            [EdnsOption {
                code: option_code::NSID,
                data: Bytes::from(oxidns_server::hostname().into_bytes()),
            }]
        );
    }

    #[tokio::test]
    async fn nsid_from_the_rest_of_the_chain_is_replaced_and_other_options_kept() {
        let mut upstream = Response::new(Rcode::NOERROR);
        upstream.edns_options = vec![
            option(option_code::NSID, b"upstream"),
            option(option_code::PADDING, b"\0\0"),
        ];
        let response = serve_with(
            ". {\n nsid ps0\n}",
            Some(edns(vec![nsid_request()])),
            Arc::new(Fixed(upstream)),
        )
        .await
        .unwrap();
        assert_eq!(
            response.edns_options,
            [
                option(option_code::NSID, b"ps0"),
                option(option_code::PADDING, b"\0\0"),
            ]
        );
    }

    #[tokio::test]
    async fn rest_of_the_response_is_passed_through_unchanged() {
        let mut upstream = Response::new(Rcode::NXDOMAIN);
        upstream.authoritative = true;
        let response = serve_with(
            ". {\n nsid ps0\n}",
            Some(edns(vec![nsid_request()])),
            Arc::new(Fixed(upstream.clone())),
        )
        .await
        .unwrap();
        upstream.edns_options = vec![option(option_code::NSID, b"ps0")];
        assert_eq!(response, upstream);
    }

    #[tokio::test]
    async fn error_from_the_rest_of_the_chain_is_passed_on() {
        let result = serve_with(
            ". {\n nsid ps0\n}",
            Some(edns(vec![nsid_request()])),
            Arc::new(Failing),
        )
        .await;
        assert_eq!(result, Err(PluginError::new("failing", "test failure")));
    }

    #[tokio::test]
    async fn nsid_reaches_the_wire_in_the_opt_record() {
        let config = config(". {\n nsid ps0\n}", &[PLUGIN]).unwrap();
        let mut chain = config.blocks[0].chain.to_vec();
        chain.push(Arc::new(Fixed(Response::new(Rcode::NOERROR))));
        let mut req = request_with(
            "example.org",
            Rtype::A,
            Class::IN,
            Some(edns(vec![nsid_request()])),
        );
        let response = serve_chain(&chain, &mut req).await.unwrap();
        let received = Response::parse(&req.finish(&response, Vec::new())).unwrap();
        assert_eq!(
            received.edns.unwrap().options,
            [option(option_code::NSID, b"ps0")]
        );
    }

    #[test]
    fn option_block_is_refused_as_unknown_property() {
        assert_eq!(
            config_error(". {\n nsid ps0 {\n  ttl 5\n }\n}", &[PLUGIN]),
            "Corefile:3: nsid: unknown property 'ttl'"
        );
    }

    #[test]
    fn second_nsid_in_a_block_is_refused() {
        assert_eq!(
            config_error(". {\n nsid a\n nsid b\n}", &[PLUGIN]),
            "Corefile:3: nsid: this plugin can only be used once per server block"
        );
    }
}
