//! The plugin API: handlers in a chain, their setup, and lifecycle hooks.
//!
//! As in CoreDNS, each plugin is a [`Handler`] that either answers, or passes
//! the request on with [`Next::serve`] (and may then look at or change the
//! answer on its way back). The order of the chain is the order of the
//! plugin list the binary hands to [`crate::config::build`], never the order
//! of directives in the Corefile.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use oxidns_proto::{Class, Name, Query, Rcode, Response, Rtype};
use smallvec::SmallVec;
use tokio::sync::mpsc;

use crate::config::BlockSettings;
use crate::corefile::key::parse_key;
use crate::corefile::{ConfigError, Directive, Token};

/// A handler's outcome: the response, or an error that becomes SERVFAIL.
pub type HandlerResult = Result<Response, PluginError>;

/// What a handler returns. A handler that answers at once (a zone, a cache
/// hit) returns its result [`HandlerFuture::ready`], with no allocation:
/// the hot path makes none. One that waits (an upstream, the rest of the
/// chain) boxes its future with [`HandlerFuture::new`].
#[must_use = "a handler's answer does nothing unless awaited"]
pub struct HandlerFuture<'a>(Outcome<'a>);

enum Outcome<'a> {
    /// Taken when polled.
    Ready(Option<HandlerResult>),
    Waiting(Pin<Box<dyn Future<Output = HandlerResult> + Send + 'a>>),
}

impl<'a> HandlerFuture<'a> {
    pub fn ready(result: HandlerResult) -> Self {
        HandlerFuture(Outcome::Ready(Some(result)))
    }

    pub fn new(future: impl Future<Output = HandlerResult> + Send + 'a) -> Self {
        HandlerFuture(Outcome::Waiting(Box::pin(future)))
    }

    /// The result passed through `then`: at once, with no allocation, when
    /// it is ready (for handlers that look at what the rest of the chain
    /// answered); else when it comes. `then` cannot borrow the request the
    /// rest of the chain holds: it takes copies of what it needs.
    pub fn map(self, then: impl FnOnce(HandlerResult) -> HandlerResult + Send + 'a) -> Self {
        match self.0 {
            Outcome::Ready(Some(result)) => HandlerFuture::ready(then(result)),
            Outcome::Ready(None) => self,
            Outcome::Waiting(future) => HandlerFuture::new(async move { then(future.await) }),
        }
    }
}

impl Future for HandlerFuture<'_> {
    type Output = HandlerResult;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<HandlerResult> {
        match &mut self.get_mut().0 {
            Outcome::Ready(result) => Poll::Ready(
                result
                    .take()
                    .expect("a HandlerFuture polled after it finished"),
            ),
            Outcome::Waiting(future) => future.as_mut().poll(cx),
        }
    }
}

/// A boxed future for lifecycle hooks.
pub type HookFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One plugin's query handler.
pub trait Handler: Send + Sync + 'static {
    /// The plugin's name, as in the Corefile.
    fn name(&self) -> &'static str;

    /// Answers `request`, or calls `next.serve(request)` to pass it on.
    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a>;

    /// Whether this handler reads or changes the records (`answer`,
    /// `authority`, `additional`) of responses that come back to it from
    /// the rest of the chain, or that its write observers are shown. The
    /// handlers after it then get no answers in wire form
    /// ([`Request::wire_answers`]). Answers a handler makes itself do not
    /// count. The default is the safe one.
    fn reads_answers(&self) -> bool {
        true
    }
}

/// The rest of the chain after the running handler.
#[derive(Clone, Copy)]
pub struct Next<'a> {
    chain: &'a Arc<[Arc<dyn Handler>]>,
    start: usize,
}

impl<'a> Next<'a> {
    pub(crate) fn new(chain: &'a Arc<[Arc<dyn Handler>]>) -> Self {
        Next { chain, start: 0 }
    }

    /// Runs the next handler; with none left, fails as CoreDNS does (SERVFAIL).
    pub fn serve<'r>(self, request: &'r mut Request) -> HandlerFuture<'r>
    where
        'a: 'r,
    {
        // Answers in wire form only where no handler before the next one
        // reads the records of what comes back.
        if let Some(caller) = self.start.checked_sub(1).and_then(|i| self.chain.get(i))
            && caller.reads_answers()
        {
            request.wire_answers = false;
        }
        match self.chain.get(self.start) {
            Some(handler) => handler.serve(
                request,
                Next {
                    chain: self.chain,
                    start: self.start + 1,
                },
            ),
            None => HandlerFuture::ready(Err(PluginError::new("chain", "no next plugin found"))),
        }
    }

    /// For names a plugin is not authoritative for: the next handler, or
    /// REFUSED when none follows (as an authoritative server answers names
    /// outside its zones).
    pub fn serve_or_refuse<'r>(self, request: &'r mut Request) -> HandlerFuture<'r>
    where
        'a: 'r,
    {
        if self.is_empty() {
            return HandlerFuture::ready(Ok(Response::new(Rcode::REFUSED)));
        }
        self.serve(request)
    }

    /// Whether any handler follows.
    pub fn is_empty(&self) -> bool {
        self.start >= self.chain.len()
    }

    /// The rest of the chain as a value a background task can keep (cache
    /// prefetch, serve-stale refreshes): one reference count, no copy.
    pub fn to_owned(&self) -> OwnedNext {
        OwnedNext {
            chain: self.chain.clone(),
            start: self.start,
        }
    }
}

/// [`Next`] that owns its chain.
#[derive(Clone)]
pub struct OwnedNext {
    chain: Arc<[Arc<dyn Handler>]>,
    start: usize,
}

impl OwnedNext {
    /// A whole chain, from its first handler.
    pub fn new(chain: Arc<[Arc<dyn Handler>]>) -> OwnedNext {
        OwnedNext { chain, start: 0 }
    }

    pub fn serve<'r>(&'r self, request: &'r mut Request) -> HandlerFuture<'r> {
        Next {
            chain: &self.chain,
            start: self.start,
        }
        .serve(request)
    }
}

/// A plugin's failure to answer; the client gets SERVFAIL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginError {
    pub plugin: &'static str,
    pub message: String,
}

impl PluginError {
    pub fn new(plugin: &'static str, message: impl Into<String>) -> Self {
        PluginError {
            plugin,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "plugin/{}: {}", self.plugin, self.message)
    }
}

impl std::error::Error for PluginError {}

/// How the query arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Https,
    Quic,
    Grpc,
}

impl Transport {
    /// As CoreDNS names it in logs and metrics ("udp", "tcp", …).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Https => "https",
            Transport::Quic => "quic",
            Transport::Grpc => "grpc",
        }
    }
}

/// Values plugins share about one request (CoreDNS's `metadata`), keyed `plugin/name`.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    entries: Vec<(String, String)>,
}

impl Metadata {
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Called once the response to a request has been encoded, with its wire form.
pub type WriteObserver = Box<dyn FnOnce(&Request, &Response, &[u8]) + Send>;

/// Transforms each encoded message of an answer just before it is sent:
/// how `tsig` signs responses (RFC 8945 §5.3), including every message of
/// a zone transfer.
pub trait MessageSigner: Send + 'static {
    /// Bytes the signature adds; encoding keeps them free under the
    /// transport's limit, so a signed UDP answer still fits.
    fn reserve(&self) -> usize;

    /// Signs one finished message; called for each message of the answer,
    /// in the order they are sent.
    fn sign(&mut self, message: &mut Vec<u8>);
}

type SharedSigner = Arc<std::sync::Mutex<Box<dyn MessageSigner>>>;

/// A query on its way through a server block's chain.
pub struct Request {
    pub query: Query,
    /// The client's address (IPv4-mapped IPv6 addresses are shown as IPv4).
    pub client: SocketAddr,
    /// The address and port the query arrived on.
    pub local: SocketAddr,
    pub transport: Transport,
    /// The server block zone that matched the question.
    pub zone: Name,
    /// The listener, as CoreDNS names it in metric labels (`dns://:53`).
    pub server: Arc<str>,
    pub metadata: Metadata,
    pub received: Instant,
    /// Answers may be given in wire form ([`Response::wire`]): no handler
    /// before the running one reads the records of answers coming back
    /// ([`Handler::reads_answers`]). The server starts it true and [`Next`]
    /// clears it on the way down; false for requests made elsewhere.
    pub wire_answers: bool,
    /// Inline room for two (`log`'s and `prometheus`'s): the list costs no
    /// allocation per request, and `prometheus`'s observer, which captures
    /// nothing, none either.
    observers: SmallVec<[WriteObserver; 2]>,
    follow_ups: Option<mpsc::Receiver<Response>>,
    signer: Option<SharedSigner>,
    dropped: bool,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("query", &self.query)
            .field("client", &self.client)
            .field("transport", &self.transport)
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

impl Request {
    pub fn new(
        query: Query,
        client: SocketAddr,
        local: SocketAddr,
        transport: Transport,
        zone: Name,
        server: Arc<str>,
    ) -> Self {
        Request {
            query,
            client: canonical(client),
            local: canonical(local),
            transport,
            zone,
            server,
            metadata: Metadata::default(),
            received: Instant::now(),
            wire_answers: false,
            observers: SmallVec::new(),
            follow_ups: None,
            signer: None,
            dropped: false,
        }
    }

    /// Asks the server to send nothing at all for this request, as if the
    /// query had been lost (`acl`'s drop, response rate limiting). The
    /// response the chain returns is discarded, and write observers are not
    /// called.
    pub fn drop_response(&mut self) {
        self.dropped = true;
    }

    /// Whether a handler asked for no response ([`Request::drop_response`]).
    pub fn is_dropped(&self) -> bool {
        self.dropped
    }

    /// Makes the handler's response the first message of several: the
    /// server sends every response received on `messages` after it, in
    /// order and back to back on the same connection, until the sender is
    /// dropped (zone transfers, RFC 5936 §2.2). Only TCP sends them; on
    /// other transports they are dropped, which the sender sees as a closed
    /// channel. Follow-ups are encoded for this request's query but do not
    /// pass back through the chain, and write observers see only the first.
    pub fn follow_with(&mut self, messages: mpsc::Receiver<Response>) {
        self.follow_ups = Some(messages);
    }

    /// The follow-up messages a handler asked for, if any (for the server).
    pub fn take_follow_ups(&mut self) -> Option<FollowUps> {
        let messages = self.follow_ups.take()?;
        Some(FollowUps {
            query: self.query.clone(),
            messages,
            signer: self.signer.clone(),
        })
    }

    /// Has every message of the answer (the first and any follow-ups)
    /// pass through `signer` after encoding, before observers see it.
    pub fn sign_with(&mut self, signer: impl MessageSigner) {
        self.signer = Some(Arc::new(std::sync::Mutex::new(Box::new(signer))));
    }

    /// Asks to see the response as it is sent: its final rcode, flags and
    /// size, after every plugin has had its say (for `log` and metrics).
    pub fn on_written(
        &mut self,
        observer: impl FnOnce(&Request, &Response, &[u8]) + Send + 'static,
    ) {
        self.observers.push(Box::new(observer));
    }

    /// Encodes the response for this request into `buffer` (emptied
    /// first; a server passes its spent buffers again, so that answers in
    /// wire form cost no allocation) and tells the observers.
    pub fn finish(mut self, response: &Response, mut buffer: Vec<u8>) -> Vec<u8> {
        let limit = self.response_limit();
        encode_signed(response, &self.query, limit, &self.signer, &mut buffer);
        for observer in std::mem::take(&mut self.observers) {
            observer(&self, response, &buffer);
        }
        buffer
    }

    pub fn qname(&self) -> &Name {
        &self.query.qname
    }

    pub fn qtype(&self) -> Rtype {
        self.query.qtype
    }

    pub fn qclass(&self) -> Class {
        self.query.qclass
    }

    /// The size of the query as received, in bytes.
    pub fn size(&self) -> usize {
        self.query.message.len()
    }

    /// An empty response with this rcode.
    pub fn reply(&self, rcode: Rcode) -> Response {
        Response::new(rcode)
    }

    /// The largest response this request may get on its transport.
    pub fn response_limit(&self) -> usize {
        match self.transport {
            Transport::Udp => usize::from(self.query.udp_limit()),
            _ => usize::from(u16::MAX),
        }
    }
}

/// The messages after the first of a multi-message answer (see
/// [`Request::follow_with`]).
pub struct FollowUps {
    query: Query,
    messages: mpsc::Receiver<Response>,
    signer: Option<SharedSigner>,
}

impl FollowUps {
    /// The next message in wire form; `None` when there are no more.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        let response = self.messages.recv().await?;
        let mut wire = Vec::new();
        let limit = usize::from(u16::MAX);
        encode_signed(&response, &self.query, limit, &self.signer, &mut wire);
        Some(wire)
    }
}

fn encode_signed(
    response: &Response,
    query: &Query,
    limit: usize,
    signer: &Option<SharedSigner>,
    out: &mut Vec<u8>,
) {
    let Some(signer) = signer else {
        return response.encode_into(query, limit, 0, out);
    };
    let mut signer = signer.lock().unwrap_or_else(|e| e.into_inner());
    response.encode_into(query, limit, signer.reserve(), out);
    signer.sign(out);
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Start-up, shutdown and readiness of a plugin instance.
pub trait Lifecycle: Send + Sync + 'static {
    /// Runs before the server listens; an error stops the start (or the reload).
    fn startup(&self) -> HookFuture<'_, Result<(), String>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Runs after the server stopped listening (or after a reload replaced this config).
    fn shutdown(&self) -> HookFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    /// Whether the plugin is ready to serve (zones loaded, caches synced …), for `ready`.
    fn ready(&self) -> bool {
        true
    }

    /// How long to keep serving after a shutdown signal before closing the
    /// listeners (`health`'s `lameduck`).
    fn lameduck(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// A plugin as the binary registers it.
#[derive(Clone, Copy)]
pub struct PluginEntry {
    pub name: &'static str,
    pub setup: fn(&mut Setup<'_>) -> Result<(), ConfigError>,
}

/// What a plugin's setup gets: its directives in one server block, and the block.
pub struct Setup<'a> {
    pub(crate) name: &'static str,
    pub(crate) directives: &'a [Directive],
    pub(crate) block: &'a mut BlockSettings,
}

impl Setup<'_> {
    /// Every occurrence of this plugin's directive in the block, in order.
    pub fn directives(&self) -> &[Directive] {
        self.directives
    }

    /// The one occurrence, for plugins that may appear once per server block.
    pub fn single(&self) -> Result<&Directive, ConfigError> {
        match self.directives {
            [one] => Ok(one),
            [_, second, ..] => {
                Err(second.error("this plugin can only be used once per server block"))
            }
            [] => unreachable!("setup runs only for directives that are present"),
        }
    }

    /// The server block's zones, lower-case, in key order.
    pub fn zones(&self) -> &[Name] {
        &self.block.zones
    }

    /// Zones named in arguments (CIDR allowed), or the block's zones when there are none.
    pub fn zones_or_block(&self, args: &[Token]) -> Result<Vec<Name>, ConfigError> {
        if args.is_empty() {
            return Ok(self.block.zones.clone());
        }
        let mut zones = Vec::new();
        for arg in args {
            let key = parse_key(arg, 53)?;
            zones.extend(key.zones);
        }
        Ok(zones)
    }

    /// The server block's settings, for plugins that configure the server itself.
    pub fn settings(&mut self) -> &mut BlockSettings {
        self.block
    }

    /// Appends this plugin's handler to the block's chain.
    pub fn add_handler(&mut self, handler: Arc<dyn Handler>) {
        self.block.handlers.push(handler);
    }

    /// Registers start-up, shutdown and readiness hooks.
    pub fn add_lifecycle(&mut self, lifecycle: Arc<dyn Lifecycle>) {
        self.block.lifecycles.push((self.name, lifecycle));
    }

    /// A value shared by the plugins of this server block, one per type,
    /// created on first use: how plugins that must cooperate find each other
    /// without depending on each other (e.g. `transfer` reaching the zones
    /// that `file` and `secondary` serve). Setups run in plugin order, so a
    /// plugin that reads what a later one adds must read it at start-up or
    /// at query time, not during its own setup.
    pub fn shared<T: Default + Send + Sync + 'static>(&mut self) -> Arc<T> {
        for value in &self.block.shared {
            if let Ok(found) = value.clone().downcast::<T>() {
                return found;
            }
        }
        let value = Arc::new(T::default());
        self.block.shared.push(value.clone());
        value
    }

    /// A path from the Corefile, made absolute against the `root` directive.
    pub fn resolve_path(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.block.root.join(path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::OptRcode;
    use crate::test_util::config;
    use std::sync::Mutex;

    #[tokio::test]
    async fn a_mapped_result_is_ready_at_once_or_when_it_comes() {
        let servfail = |result: HandlerResult| result.map(|_| Response::new(Rcode::SERVFAIL));
        let ready = HandlerFuture::ready(Ok(Response::new(Rcode::NOERROR))).map(servfail);
        assert!(matches!(ready.0, Outcome::Ready(Some(_))), "no future made");
        assert_eq!(ready.await.unwrap().rcode, OptRcode::SERVFAIL);
        let waiting = HandlerFuture::new(async {
            tokio::task::yield_now().await;
            Ok(Response::new(Rcode::NOERROR))
        })
        .map(servfail);
        assert_eq!(waiting.await.unwrap().rcode, OptRcode::SERVFAIL);
    }

    #[derive(Default)]
    struct Names(Mutex<Vec<&'static str>>);

    fn first(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
        setup.shared::<Names>().0.lock().unwrap().push("first");
        Ok(())
    }

    fn second(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
        let names = setup.shared::<Names>();
        names.0.lock().unwrap().push("second");
        assert_eq!(*names.0.lock().unwrap(), ["first", "second"]);
        Ok(())
    }

    /// Passes requests on; says whether it reads the answers coming back.
    struct PassOn {
        reads: bool,
    }

    impl Handler for PassOn {
        fn name(&self) -> &'static str {
            "pass"
        }

        fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
            next.serve(request)
        }

        fn reads_answers(&self) -> bool {
            self.reads
        }
    }

    /// Answers whether the request it got allows wire-form answers.
    struct Probe;

    impl Handler for Probe {
        fn name(&self) -> &'static str {
            "probe"
        }

        fn serve<'a>(&'a self, request: &'a mut Request, _: Next<'a>) -> HandlerFuture<'a> {
            let mut response = Response::new(Rcode::NOERROR);
            response.authentic_data = request.wire_answers;
            HandlerFuture::ready(Ok(response))
        }
    }

    #[tokio::test]
    async fn wire_answers_stop_below_the_first_handler_that_reads_answers() {
        let cases: [(&[bool], bool); 4] = [
            (&[], true),
            (&[false, false], true),
            (&[false, true], false),
            (&[true, false], false),
        ];
        for (reads, allowed) in cases {
            let mut chain: Vec<Arc<dyn Handler>> = reads
                .iter()
                .map(|&reads| Arc::new(PassOn { reads }) as Arc<dyn Handler>)
                .collect();
            chain.push(Arc::new(Probe));
            let mut request = crate::test_util::request("example.org", Rtype::A);
            request.wire_answers = true;
            let response = crate::test_util::serve_chain(&chain, &mut request)
                .await
                .unwrap();
            assert_eq!(response.authentic_data, allowed, "{reads:?}");
        }
    }

    #[test]
    fn plugins_of_a_block_share_one_value_per_type() {
        let plugins = [
            PluginEntry {
                name: "first",
                setup: first,
            },
            PluginEntry {
                name: "second",
                setup: second,
            },
        ];
        config(
            ". {\n second\n first\n}\nexample.org {\n first\n second\n}",
            &plugins,
        )
        .unwrap();
    }
}
