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
        HandlerFuture::ready(Ok(self.0.clone()))
    }
}

/// A handler that always fails: the end of a test chain for error paths.
pub struct Failing;

impl Handler for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }

    fn serve<'a>(&'a self, _: &'a mut Request, _: Next<'a>) -> HandlerFuture<'a> {
        HandlerFuture::ready(Err(PluginError::new("failing", "test failure")))
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
    let wire = request.finish(&response, Vec::new());
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

/// Counts the heap allocations of every thread but the asking one while
/// [`allocations_per_udp_query`] measures: the server's runtime and the
/// thread of its UDP socket, wherever the work runs. A test binary (one
/// test in it) installs it with
/// `#[global_allocator] static ALLOCATOR: CountingAllocator = CountingAllocator;`.
pub struct CountingAllocator;

thread_local! {
    /// The asking thread: its own allocations are not the server's.
    static ASKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static ALLOCATIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        count_allocation();
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        count_allocation();
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }
}

fn count_allocation() {
    use std::sync::atomic::Ordering;
    // `try_with`: the thread-local may be gone while a thread ends.
    if COUNTING.load(Ordering::Relaxed) && !ASKING.try_with(std::cell::Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Serves `config` (one block, on 127.0.0.1 port 0: a port free for UDP and
/// TCP is picked) from a thread of its own (a one-thread runtime, as one
/// worker), asks it each of `questions` `warm` times, then each once more,
/// and returns the heap allocations made per query in that last round on
/// every thread but the asking one. Needs [`CountingAllocator`] installed; each
/// answer must be to its question and hold records.
pub fn allocations_per_udp_query(config: Config, questions: &[(&str, Rtype)], warm: usize) -> f64 {
    use std::sync::atomic::Ordering;
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let server = crate::Server::start(config, crate::Limits::default())
                .await
                .expect("the server starts");
            addr_tx
                .send(server.local_addrs()[0])
                .expect("the test waits");
            let _ = stop_rx.await;
            drop(server);
        });
    });
    let addr = addr_rx
        .recv()
        .expect("the server thread reports its address");
    let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("a client socket");
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("a timeout");
    let queries: Vec<(Name, Rtype, Vec<u8>)> = questions
        .iter()
        .enumerate()
        .map(|(id, &(qname, qtype))| {
            let name = name_from_str(qname).expect("a valid test name");
            let wire = Query::build(id as u16, &name, qtype, Class::IN, None).to_vec();
            (name, qtype, wire)
        })
        .collect();
    let ask_all = || {
        for (name, qtype, wire) in &queries {
            client.send_to(wire, addr).expect("sent");
            let mut buf = [0u8; 4096];
            let len = client.recv(&mut buf).expect("an answer within 5 s");
            let answer = Response::parse(&buf[..len]).expect("a well-formed answer");
            let asked = answer.question.as_ref().map(|(n, t, _)| (n, *t));
            assert_eq!(
                asked,
                Some((name, *qtype)),
                "an answer to the question asked"
            );
            assert!(
                !answer.response.answer.is_empty(),
                "{name} {qtype} answered"
            );
        }
    };
    for _ in 0..warm {
        ask_all();
    }
    ASKING.with(|asking| asking.set(true));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    ask_all();
    COUNTING.store(false, Ordering::Relaxed);
    let made = ALLOCATIONS.load(Ordering::Relaxed) - before;
    ASKING.with(|asking| asking.set(false));
    let _ = stop_tx.send(());
    server.join().expect("the server thread ends");
    made as f64 / queries.len() as f64
}
