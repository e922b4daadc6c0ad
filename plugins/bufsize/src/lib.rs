//! `bufsize [SIZE]`: lowers the EDNS UDP payload size a request advertises to
//! SIZE (1232 by default), as CoreDNS's bufsize does, so that UDP responses
//! are truncated before they would need IP fragmentation. Requests without
//! EDNS, or that already ask for SIZE or less, pass unchanged.

use std::sync::Arc;

use oxidns_server::proto::DEFAULT_UDP_PAYLOAD;
use oxidns_server::{ConfigError, Handler, HandlerFuture, Next, PluginEntry, Request, Setup};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "bufsize",
    setup,
};

/// The smallest SIZE accepted: the payload every DNS client takes (RFC 1035).
const MIN_SIZE: u16 = 512;
/// The largest SIZE accepted, as in CoreDNS (RFC 6891 §6.2.5's example ceiling).
const MAX_SIZE: u16 = 4096;

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?;
    directive.no_block()?;
    let size = match directive.args_between(0, 1)? {
        [] => DEFAULT_UDP_PAYLOAD,
        [arg] => match arg.text.parse::<u16>() {
            Ok(size) if (MIN_SIZE..=MAX_SIZE).contains(&size) => size,
            _ => {
                return Err(directive.error(format!(
                    "SIZE must be an integer from {MIN_SIZE} to {MAX_SIZE}, got '{}'",
                    arg.text
                )));
            }
        },
        _ => unreachable!("args_between allows at most one argument"),
    };
    setup.add_handler(Arc::new(Bufsize { size }));
    Ok(())
}

/// Clamps the request's EDNS UDP payload size, then passes the request on.
struct Bufsize {
    size: u16,
}

impl Handler for Bufsize {
    fn name(&self) -> &'static str {
        "bufsize"
    }

    // Changes the query's EDNS size only.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        if let Some(edns) = request.query.edns.as_mut()
            && edns.udp_payload_size > self.size
        {
            edns.udp_payload_size = self.size;
        }
        next.serve(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::Mutex;

    use oxidns_server::proto::domain::rdata::A;
    use oxidns_server::proto::{
        Class, Edns, EdnsOption, Rcode, Record, RecordData, Response, Rtype, Ttl, name_from_str,
    };
    use oxidns_server::test_util::{
        Fixed, config, config_error, request, request_with, serve_chain,
    };

    /// The end of a test chain: notes the EDNS the request carried when it arrived.
    #[derive(Default)]
    struct Recorder {
        seen: Mutex<Vec<Option<Edns>>>,
    }

    impl Handler for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }

        fn serve<'a>(&'a self, request: &'a mut Request, _: Next<'a>) -> HandlerFuture<'a> {
            self.seen.lock().unwrap().push(request.query.edns.clone());
            HandlerFuture::ready(Ok(request.reply(Rcode::NOERROR)))
        }
    }

    fn edns(size: u16) -> Edns {
        Edns {
            udp_payload_size: size,
            version: 0,
            dnssec_ok: false,
            options: Vec::new(),
        }
    }

    /// The EDNS the next handler sees for a request with `sent`, behind `corefile`.
    async fn edns_seen(corefile: &str, sent: Option<Edns>) -> Option<Edns> {
        let config = config(corefile, &[PLUGIN]).unwrap();
        let recorder = Arc::new(Recorder::default());
        let mut chain: Vec<Arc<dyn Handler>> = config.blocks[0].chain.to_vec();
        chain.push(recorder.clone());
        let mut req = request_with("example.org", Rtype::A, Class::IN, sent);
        serve_chain(&chain, &mut req).await.unwrap();
        let seen = recorder.seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "the next handler runs once");
        seen[0].clone()
    }

    fn size_seen(edns: Option<Edns>) -> u16 {
        edns.expect("the request keeps its EDNS").udp_payload_size
    }

    #[tokio::test]
    async fn default_size_lowers_a_larger_payload_to_1232() {
        let seen = edns_seen(". {\n bufsize\n}", Some(edns(4096))).await;
        assert_eq!(size_seen(seen), 1232);
    }

    #[tokio::test]
    async fn given_size_lowers_a_larger_payload_to_it() {
        let seen = edns_seen(". {\n bufsize 1400\n}", Some(edns(1500))).await;
        assert_eq!(size_seen(seen), 1400);
    }

    #[tokio::test]
    async fn smaller_payload_is_left_alone() {
        let seen = edns_seen(". {\n bufsize 1232\n}", Some(edns(1000))).await;
        assert_eq!(size_seen(seen), 1000);
    }

    #[tokio::test]
    async fn payload_equal_to_size_is_left_alone() {
        let seen = edns_seen(". {\n bufsize 1232\n}", Some(edns(1232))).await;
        assert_eq!(size_seen(seen), 1232);
    }

    #[tokio::test]
    async fn payload_below_512_is_left_alone() {
        let seen = edns_seen(". {\n bufsize 512\n}", Some(edns(100))).await;
        assert_eq!(size_seen(seen), 100);
    }

    #[tokio::test]
    async fn request_without_edns_gets_none_added() {
        assert_eq!(edns_seen(". {\n bufsize 512\n}", None).await, None);
    }

    #[tokio::test]
    async fn other_edns_fields_are_kept() {
        let mut sent = edns(4096);
        sent.dnssec_ok = true;
        sent.options.push(EdnsOption {
            code: 65001,
            data: b"xyz".to_vec().into(),
        });
        let seen = edns_seen(". {\n bufsize\n}", Some(sent.clone())).await;
        sent.udp_payload_size = 1232;
        assert_eq!(seen, Some(sent));
    }

    #[tokio::test]
    async fn udp_response_is_truncated_to_the_lowered_size() {
        let config = config(". {\n bufsize 512\n}", &[PLUGIN]).unwrap();
        let owner = name_from_str("example.org").unwrap();
        let mut big = Response::new(Rcode::NOERROR);
        for i in 0..100u8 {
            let a = RecordData::A(A::new(Ipv4Addr::new(192, 0, 2, i)));
            big.answer
                .push(Record::new(owner.clone(), Class::IN, Ttl::from_secs(60), a));
        }
        let mut chain: Vec<Arc<dyn Handler>> = config.blocks[0].chain.to_vec();
        chain.push(Arc::new(Fixed(big)));
        let mut req = request_with("example.org", Rtype::A, Class::IN, Some(edns(4096)));
        let response = serve_chain(&chain, &mut req).await.unwrap();
        assert_eq!(req.response_limit(), 512);
        let wire = req.finish(&response, Vec::new());
        assert!(wire.len() <= 512, "response is {} bytes", wire.len());
        assert_ne!(wire[2] & 0x02, 0, "TC is set");
    }

    #[tokio::test]
    async fn request_is_passed_on_to_the_next_plugin() {
        let config = config(". {\n bufsize\n}", &[PLUGIN]).unwrap();
        let mut chain: Vec<Arc<dyn Handler>> = config.blocks[0].chain.to_vec();
        chain.push(Arc::new(Fixed(Response::new(Rcode::NXDOMAIN))));
        let mut req = request("example.org", Rtype::A);
        let response = serve_chain(&chain, &mut req).await.unwrap();
        assert_eq!(response.header_rcode(), Rcode::NXDOMAIN);
    }

    #[test]
    fn sizes_512_and_4096_are_accepted() {
        assert!(config(". {\n bufsize 512\n}", &[PLUGIN]).is_ok());
        assert!(config(". {\n bufsize 4096\n}", &[PLUGIN]).is_ok());
    }

    #[test]
    fn size_below_512_is_refused() {
        assert_eq!(
            config_error(". {\n bufsize 511\n}", &[PLUGIN]),
            "Corefile:2: bufsize: SIZE must be an integer from 512 to 4096, got '511'"
        );
    }

    #[test]
    fn size_above_4096_is_refused() {
        assert_eq!(
            config_error(". {\n bufsize 4097\n}", &[PLUGIN]),
            "Corefile:2: bufsize: SIZE must be an integer from 512 to 4096, got '4097'"
        );
    }

    #[test]
    fn size_that_is_not_a_number_is_refused() {
        assert_eq!(
            config_error(". {\n bufsize big\n}", &[PLUGIN]),
            "Corefile:2: bufsize: SIZE must be an integer from 512 to 4096, got 'big'"
        );
    }

    #[test]
    fn two_arguments_are_refused() {
        assert_eq!(
            config_error(". {\n bufsize 512 1232\n}", &[PLUGIN]),
            "Corefile:2: bufsize: takes 0 to 1 arguments, got 2"
        );
    }

    #[test]
    fn options_block_is_refused() {
        assert_eq!(
            config_error(". {\n bufsize {\n  size 512\n }\n}", &[PLUGIN]),
            "Corefile:3: bufsize: takes no options block"
        );
    }

    #[test]
    fn second_bufsize_in_a_block_is_refused() {
        assert_eq!(
            config_error(". {\n bufsize 512\n bufsize 1232\n}", &[PLUGIN]),
            "Corefile:3: bufsize: this plugin can only be used once per server block"
        );
    }
}
