//! Helpers for plugin tests: build requests, run chains, set plugins up from Corefile text.

use std::net::SocketAddr;
use std::sync::Arc;

use oxidns_proto::{Class, Edns, Name, Query, Response, Rtype, name_from_str};

use crate::config::{Config, Options, build};
use crate::corefile::{ConfigError, parse_str};
use crate::plugin::{Handler, HandlerFuture, Next, PluginEntry, PluginError, Request, Transport};

/// The client address test requests come from.
pub const CLIENT: &str = "127.0.0.1:40000";
/// The address test requests arrive on.
pub const LOCAL: &str = "127.0.0.1:53";

/// A UDP request for `qname`/`qtype` in class IN, zone ".", without EDNS.
pub fn request(qname: &str, qtype: Rtype) -> Request {
    request_with(qname, qtype, Class::IN, None)
}

/// A UDP request with every part chosen.
pub fn request_with(qname: &str, qtype: Rtype, qclass: Class, edns: Option<Edns>) -> Request {
    let name = name_from_str(qname).expect("a valid test name");
    let bytes = Query::build(4242, &name, qtype, qclass, edns.as_ref());
    let query = Query::parse(bytes.into()).expect("a valid test query");
    Request::new(
        query,
        CLIENT.parse().expect("valid"),
        LOCAL.parse().expect("valid"),
        Transport::Udp,
        Name::root(),
        Arc::from("dns://:53"),
    )
}

/// The same request as if it had arrived over TCP from `client`.
pub fn over_tcp(mut request: Request, client: SocketAddr) -> Request {
    request.transport = Transport::Tcp;
    request.client = client;
    request
}

/// A handler that always gives the same response: the end of a test chain.
pub struct Fixed(pub Response);

impl Handler for Fixed {
    fn name(&self) -> &'static str {
        "fixed"
    }

    fn serve<'a>(&'a self, _: &'a mut Request, _: Next<'a>) -> HandlerFuture<'a> {
        Box::pin(std::future::ready(Ok(self.0.clone())))
    }
}

/// A handler that always fails: the end of a test chain for error paths.
pub struct Failing;

impl Handler for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }

    fn serve<'a>(&'a self, _: &'a mut Request, _: Next<'a>) -> HandlerFuture<'a> {
        Box::pin(std::future::ready(Err(PluginError::new(
            "failing",
            "test failure",
        ))))
    }
}

/// Runs `request` through `chain`.
pub async fn serve_chain(
    chain: &[Arc<dyn Handler>],
    request: &mut Request,
) -> Result<Response, PluginError> {
    let chain: Arc<[Arc<dyn Handler>]> = chain.into();
    Next::new(&chain).serve(request).await
}

/// Builds a config from Corefile text with the given plugins (in this order).
pub fn config(corefile: &str, plugins: &[PluginEntry]) -> Result<Config, Vec<ConfigError>> {
    let blocks = parse_str(corefile, "Corefile").map_err(|e| vec![e])?;
    build(&blocks, plugins, &Options::default())
}

/// The first error setting up `corefile`, as `file:line: reason`.
pub fn config_error(corefile: &str, plugins: &[PluginEntry]) -> String {
    match config(corefile, plugins) {
        Ok(_) => panic!("expected a config error for {corefile:?}"),
        Err(errors) => errors[0].to_string(),
    }
}

/// Runs `request` through the chain of the config's first server block.
pub async fn serve_config(config: &Config, request: &mut Request) -> Result<Response, PluginError> {
    serve_chain(&config.blocks[0].chain, request).await
}

/// Runs `request` through the config's first block as the server does:
/// a chain error becomes SERVFAIL, and write observers see the encoded response.
pub async fn serve_and_finish(config: &Config, mut request: Request) -> (Response, Vec<u8>) {
    let response = serve_config(config, &mut request)
        .await
        .unwrap_or_else(|_| Response::new(oxidns_proto::Rcode::SERVFAIL));
    let wire = request.finish(&response);
    (response, wire)
}

/// Records (level, target, message) of every `tracing` event on this thread
/// while the guard of [`capture_logs`] lives, for tests of what plugins log.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<std::sync::Mutex<Vec<(tracing::Level, String, String)>>>);

/// Starts capturing this thread's log events; they stop with the guard.
pub fn capture_logs() -> (LogCapture, tracing::subscriber::DefaultGuard) {
    let capture = LogCapture::default();
    let guard = tracing::subscriber::set_default(capture.clone());
    (capture, guard)
}

impl LogCapture {
    /// The messages so far.
    pub fn lines(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .map(|(_, _, message)| message)
            .collect()
    }

    /// (level, message) of the events so far, which are then forgotten.
    pub fn take(&self) -> Vec<(tracing::Level, String)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .map(|(level, _, message)| (level, message))
            .collect()
    }

    /// (level, target, message) of the events so far.
    pub fn events(&self) -> Vec<(tracing::Level, String, String)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

struct MessageField(String);

impl tracing::field::Visit for MessageField {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for LogCapture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = MessageField(String::new());
        event.record(&mut message);
        let meta = event.metadata();
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push((
            *meta.level(),
            meta.target().to_owned(),
            message.0,
        ));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
