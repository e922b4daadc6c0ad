//! Listeners and the way of a query: receive, validate, route, run the chain, send.
//!
//! - UDP: [`Limits::udp_sockets`] sockets per address and port (SO_REUSEPORT),
//!   each read by a thread of its own in batches ([`crate::udp`]). Answers
//!   that are ready at once go back in the same batch; an answer that waits
//!   (an upstream) becomes a runtime task, so a slow upstream never holds up
//!   other clients. Beyond [`Limits::max_udp_in_flight`] waiting answers per socket
//!   datagrams are shed (dropped), so a flood cannot queue without bound.
//! - TCP (RFC 7766): length-prefixed messages; pipelined queries are answered
//!   as they complete, out of order (§6.2.1.1); a connection is closed when idle
//!   (§6.2.3) or when a started message stalls; connections in total and
//!   queries in flight per connection are bounded. A handler may follow its
//!   response with more messages ([`Request::follow_with`], for zone
//!   transfers): they go out back to back after it; other transports send
//!   the first message only.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::FutureExt;
use oxidns_proto::{Opcode, OptRcode, Query, QueryError, Rcode, Response, encode_error};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Block, Config, ListenerSpec, ZoneRouter};
use crate::corefile::{ConfigError, Directive};
use crate::future_slot::FutureSlot;
use crate::plugin::{FollowUps, Next, Request, Transport};
use crate::udp::{BATCH, ReceiveBatch, SendBatch};

/// Bounds on what clients can make the server hold.
#[derive(Clone, Debug)]
pub struct Limits {
    /// UDP queries being answered at once; more are dropped.
    pub max_udp_in_flight: usize,
    /// Open TCP connections per listener; more are closed at once.
    pub max_tcp_connections: usize,
    /// Open TCP connections from one client address per listener, so that
    /// one client stalling connections cannot take them all.
    pub max_tcp_connections_per_client: usize,
    /// Queries in flight on one TCP connection; reading pauses beyond it.
    pub max_tcp_in_flight: usize,
    /// A TCP connection with no new query for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// A TCP message must arrive in full within this time once started.
    pub tcp_read_timeout: Duration,
    /// A response that cannot be written within this time ends the connection.
    pub tcp_write_timeout: Duration,
    /// UDP sockets per address, each read by a thread of its own. More than
    /// one are bound with SO_REUSEPORT, and the kernel spreads clients over
    /// them by a hash of their address (as Knot and NSD do). SO_REUSEPORT
    /// lets only processes of the same user share the port.
    pub udp_sockets: usize,
    /// Pins the thread of the `i`th UDP socket of each address to the `i`th
    /// CPU the process may run on (Linux; `-pin`).
    pub pin_udp_threads: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_udp_in_flight: 10_000,
            max_tcp_connections: 1_000,
            max_tcp_connections_per_client: 100,
            max_tcp_in_flight: 64,
            tcp_idle_timeout: Duration::from_secs(10),
            tcp_read_timeout: Duration::from_secs(5),
            tcp_write_timeout: Duration::from_secs(10),
            udp_sockets: 1,
            pin_udp_threads: false,
        }
    }
}

/// Limits a server block sets for its listeners (`timeouts`, `limits`);
/// what is unset keeps the server's default. Where blocks share a listener,
/// the tightest value wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitSettings {
    pub max_udp_in_flight: Option<usize>,
    pub max_tcp_connections: Option<usize>,
    pub max_tcp_connections_per_client: Option<usize>,
    pub max_tcp_in_flight: Option<usize>,
    pub tcp_idle_timeout: Option<Duration>,
    pub tcp_read_timeout: Option<Duration>,
    pub tcp_write_timeout: Option<Duration>,
}

impl LimitSettings {
    /// Reads the block of a directive that sets limits (`timeouts`,
    /// `limits`): one `NAME VALUE` line per setting, at least one line.
    /// `slot` finds a name's setting, `value` reads and checks its value.
    pub fn read_block<T>(
        &mut self,
        directive: &Directive,
        slot: for<'a> fn(&'a mut LimitSettings, &str) -> Option<&'a mut Option<T>>,
        value: impl Fn(&Directive, &str) -> Result<T, ConfigError>,
    ) -> Result<(), ConfigError> {
        directive.args_between(0, 0)?;
        if directive.block.is_empty() {
            return Err(directive.error("give at least one setting, or leave the directive out"));
        }
        for line in &directive.block {
            let text = &line.args_between(1, 1)?[0].text;
            let parsed = value(line, text)?;
            let setting =
                slot(self, &line.name.text).ok_or_else(|| directive.unknown_property(line))?;
            *setting = Some(parsed);
        }
        Ok(())
    }

    /// Takes the smaller of each pair of values set.
    pub fn tighten(&mut self, other: &LimitSettings) {
        fn min<T: Ord + Copy>(mine: &mut Option<T>, theirs: Option<T>) {
            *mine = match (*mine, theirs) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        min(&mut self.max_udp_in_flight, other.max_udp_in_flight);
        min(&mut self.max_tcp_connections, other.max_tcp_connections);
        min(
            &mut self.max_tcp_connections_per_client,
            other.max_tcp_connections_per_client,
        );
        min(&mut self.max_tcp_in_flight, other.max_tcp_in_flight);
        min(&mut self.tcp_idle_timeout, other.tcp_idle_timeout);
        min(&mut self.tcp_read_timeout, other.tcp_read_timeout);
        min(&mut self.tcp_write_timeout, other.tcp_write_timeout);
    }
}

impl Limits {
    /// These limits with a block's settings applied.
    pub fn with(&self, settings: &LimitSettings) -> Limits {
        Limits {
            max_udp_in_flight: settings.max_udp_in_flight.unwrap_or(self.max_udp_in_flight),
            max_tcp_connections: settings
                .max_tcp_connections
                .unwrap_or(self.max_tcp_connections),
            max_tcp_connections_per_client: settings
                .max_tcp_connections_per_client
                .unwrap_or(self.max_tcp_connections_per_client),
            max_tcp_in_flight: settings.max_tcp_in_flight.unwrap_or(self.max_tcp_in_flight),
            tcp_idle_timeout: settings.tcp_idle_timeout.unwrap_or(self.tcp_idle_timeout),
            tcp_read_timeout: settings.tcp_read_timeout.unwrap_or(self.tcp_read_timeout),
            tcp_write_timeout: settings.tcp_write_timeout.unwrap_or(self.tcp_write_timeout),
            udp_sockets: self.udp_sockets,
            pin_udp_threads: self.pin_udp_threads,
        }
    }
}

/// Which limit a query or connection ran into, for `oxidns_limit_reached_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitReached {
    UdpInFlight,
    TcpConnections,
    TcpConnectionsPerClient,
    TcpIdleTimeout,
    TcpReadTimeout,
    TcpWriteTimeout,
}

impl LimitReached {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitReached::UdpInFlight => "udp_in_flight",
            LimitReached::TcpConnections => "tcp_connections",
            LimitReached::TcpConnectionsPerClient => "tcp_connections_per_client",
            LimitReached::TcpIdleTimeout => "tcp_idle_timeout",
            LimitReached::TcpReadTimeout => "tcp_read_timeout",
            LimitReached::TcpWriteTimeout => "tcp_write_timeout",
        }
    }
}

/// Open TCP connections of one listener, in all and by client address.
#[derive(Default)]
struct TcpConnections {
    by_client: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
}

/// One open TCP connection, counted until dropped.
struct TcpSlot {
    listener: Arc<Listener>,
    client: IpAddr,
}

impl Drop for TcpSlot {
    fn drop(&mut self) {
        let mut by_client = self
            .listener
            .tcp
            .by_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = by_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                by_client.remove(&self.client);
            }
        }
        self.listener.tcp_total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One address and port we listen on (UDP and TCP), and the zones served there.
pub struct Listener {
    /// The bound address.
    pub local: SocketAddr,
    /// As CoreDNS labels servers in metrics: `dns://:53`, `dns://127.0.0.1:53`.
    pub label: Arc<str>,
    /// Swapped whole when the configuration is reloaded.
    pub router: ArcSwap<ZoneRouter>,
    /// This listener's limits, swapped with the router on reload.
    pub limits: ArcSwap<Limits>,
    tcp: TcpConnections,
    tcp_total: AtomicUsize,
}

impl Listener {
    fn new(local: SocketAddr, router: Arc<ZoneRouter>, limits: Limits) -> Listener {
        let label = if local.ip().is_unspecified() {
            format!("dns://:{}", local.port())
        } else {
            format!("dns://{local}")
        };
        Listener {
            local,
            label: label.into(),
            router: ArcSwap::new(router),
            limits: ArcSwap::from_pointee(limits),
            tcp: TcpConnections::default(),
            tcp_total: AtomicUsize::new(0),
        }
    }

    /// Counts `limit` as reached on this listener.
    fn reached(&self, limit: LimitReached) {
        metrics::counter!("oxidns_limit_reached_total", "server" => self.label.clone(), "limit" => limit.as_str())
            .increment(1);
    }

    /// Takes a TCP connection slot for `client`, or says which limit is full.
    fn open_tcp(
        self: &Arc<Self>,
        client: IpAddr,
        limits: &Limits,
    ) -> Result<TcpSlot, LimitReached> {
        let mut by_client = self.tcp.by_client.lock().unwrap_or_else(|e| e.into_inner());
        if self.tcp_total.load(Ordering::Relaxed) >= limits.max_tcp_connections {
            return Err(LimitReached::TcpConnections);
        }
        let count = by_client.entry(client).or_insert(0);
        if *count >= limits.max_tcp_connections_per_client {
            return Err(LimitReached::TcpConnectionsPerClient);
        }
        *count += 1;
        self.tcp_total.fetch_add(1, Ordering::Relaxed);
        Ok(TcpSlot {
            listener: self.clone(),
            client,
        })
    }

    /// A listener for `config.listeners[index]` that opens no socket, for
    /// tests and fuzzing that call [`answer`] directly; `local` is the
    /// configured address (port 0 stays 0). Panics if `index` is out of range.
    pub fn for_config(config: &Config, index: usize) -> Listener {
        let spec = &config.listeners[index];
        Listener::new(
            spec.addr,
            spec.router.clone(),
            Limits::default().with(&spec.limits),
        )
    }
}

/// Answers one received message; `None` means send nothing.
pub async fn answer(
    listener: &Listener,
    message: Bytes,
    client: SocketAddr,
    transport: Transport,
    buffer: Vec<u8>,
) -> Option<Vec<u8>> {
    answer_all(listener, message, client, transport, buffer)
        .await
        .map(|answer| answer.message)
}

/// A response in wire form, and the rest of a multi-message answer.
pub struct Answer {
    pub message: Vec<u8>,
    /// Further messages a handler asked for ([`Request::follow_with`]).
    pub follow_ups: Option<FollowUps>,
}

impl From<Vec<u8>> for Answer {
    fn from(message: Vec<u8>) -> Answer {
        Answer {
            message,
            follow_ups: None,
        }
    }
}

/// As [`answer`], with the follow-up messages of a multi-message answer
/// (zone transfers), for transports that can send them. The answer is
/// written into `buffer` (see [`Request::finish`]).
pub async fn answer_all(
    listener: &Listener,
    message: Bytes,
    client: SocketAddr,
    transport: Transport,
    buffer: Vec<u8>,
) -> Option<Answer> {
    let router = listener.router.load();
    let query = match Query::parse(message) {
        Ok(query) => query,
        Err(QueryError::Drop) => return None,
        Err(QueryError::FormErr(malformed)) => {
            tracing::debug!("FORMERR to {client}: {}", malformed.reason);
            return Some(encode_error(&malformed, Rcode::FORMERR).into());
        }
    };
    let limit = match transport {
        Transport::Udp => usize::from(query.udp_limit()),
        _ => usize::from(u16::MAX),
    };
    // RFC 6891 §6.1.3: an unknown EDNS version gets BADVERS, with our version (0).
    if query.edns.as_ref().is_some_and(|e| e.version > 0) {
        let mut response = Response::new(Rcode::NOERROR);
        response.rcode = OptRcode::BADVERS;
        return Some(response.encode(&query, limit).into());
    }
    let route = router.route(&query.qname);
    // Opcodes other than QUERY reach the chain only where a plugin serves
    // them (NOTIFY for `secondary`, UPDATE later); elsewhere NOTIMP.
    if query.opcode != Opcode::QUERY
        && !route.is_some_and(|(_, block)| block.opcodes.contains(&query.opcode))
    {
        return Some(Response::new(Rcode::NOTIMP).encode(&query, limit).into());
    }
    let Some((zone, block)) = route else {
        return Some(Response::new(Rcode::REFUSED).encode(&query, limit).into());
    };
    if block.chain.is_empty() {
        return Some(Response::new(Rcode::REFUSED).encode(&query, limit).into());
    }
    let mut request = Request::new(
        query,
        client,
        listener.local,
        transport,
        zone.clone(),
        listener.label.clone(),
    );
    request.wire_answers = true;
    let response = run_chain(block, &mut request).await;
    if request.is_dropped() {
        return None;
    }
    let follow_ups = request.take_follow_ups();
    Some(Answer {
        message: request.finish(&response, buffer),
        follow_ups,
    })
}

/// Runs a block's chain; errors and (unless `debug`) panics become SERVFAIL.
async fn run_chain(block: &Block, request: &mut Request) -> Response {
    let chain = Next::new(&block.chain);
    let result = if block.debug {
        chain.serve(request).await
    } else {
        match AssertUnwindSafe(chain.serve(request)).catch_unwind().await {
            Ok(result) => result,
            Err(_) => {
                metrics::counter!("coredns_panics_total").increment(1);
                tracing::error!("recovered from a panic while answering; sent SERVFAIL");
                return Response::new(Rcode::SERVFAIL);
            }
        }
    };
    result.unwrap_or_else(|error| {
        tracing::debug!("{error}");
        Response::new(Rcode::SERVFAIL)
    })
}

/// A running server: its listeners, and the tasks answering queries.
pub struct Server {
    listeners: Vec<RunningListener>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    /// The defaults, before each block's `timeouts` and `limits`.
    limits: Limits,
    config: Arc<Config>,
}

/// A listener with the address the config asked for (port 0 stays 0 here).
struct RunningListener {
    configured: SocketAddr,
    listener: Arc<Listener>,
    stop: CancellationToken,
}

/// Why a new configuration was not applied; the old one keeps serving.
#[derive(Debug)]
pub struct ReloadError(pub String);

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReloadError {}

impl Server {
    /// Runs every plugin's start-up hook, then opens every listener.
    pub async fn start(config: Config, limits: Limits) -> io::Result<Server> {
        start_lifecycles(&config)
            .await
            .map_err(|e| io::Error::other(e.0))?;
        let cancel = CancellationToken::new();
        let mut server = Server {
            listeners: Vec::new(),
            tracker: TaskTracker::new(),
            limits,
            cancel,
            config: Arc::new(Config {
                blocks: Vec::new(),
                listeners: Vec::new(),
            }),
        };
        for spec in &config.listeners {
            match server.open(spec) {
                Ok(running) => server.listeners.push(running),
                Err(e) => {
                    server.cancel.cancel();
                    stop_lifecycles(config.clone_lifecycles()).await;
                    return Err(e);
                }
            }
        }
        server.config = Arc::new(config);
        crate::state::set_running(Some(server.config.clone()));
        report_enabled_plugins(None, &server.config);
        Ok(server)
    }

    fn open(&self, spec: &ListenerSpec) -> io::Result<RunningListener> {
        let (udp, tcp) = bind_pair(spec.addr, self.limits.udp_sockets.max(1))?;
        let listener = Arc::new(Listener::new(
            udp[0].local_addr()?,
            spec.router.clone(),
            self.limits.with(&spec.limits),
        ));
        let stop = self.cancel.child_token();
        for (index, socket) in udp.into_iter().enumerate() {
            let pin = self.limits.pin_udp_threads.then_some(index);
            let tracker = self.tracker.clone();
            serve_udp(socket, listener.clone(), stop.clone(), tracker, pin)?;
        }
        self.tracker.spawn(serve_tcp(
            tcp,
            listener.clone(),
            stop.clone(),
            self.tracker.clone(),
        ));
        Ok(RunningListener {
            configured: spec.addr,
            listener,
            stop,
        })
    }

    /// The bound address of each listener (UDP and TCP share it), in config order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.listener.local).collect()
    }

    /// The configuration being served.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Replaces the configuration without dropping a query: listeners that
    /// stay are kept and get the new zones and chains (a query in flight
    /// finishes with the chain it started on), new ones are opened, removed
    /// ones closed. If the new plugins fail to start or a new address cannot
    /// be bound, nothing changes. The old plugins' shutdown hooks run after
    /// `grace`, once queries they may still serve have finished.
    pub async fn reload(&mut self, config: Config, grace: Duration) -> Result<(), ReloadError> {
        start_lifecycles(&config).await?;
        let mut opened = Vec::new();
        for spec in &config.listeners {
            if self.listeners.iter().any(|l| l.configured == spec.addr) {
                continue;
            }
            match self.open(spec) {
                Ok(running) => opened.push(running),
                Err(e) => {
                    for running in opened {
                        running.stop.cancel();
                    }
                    stop_lifecycles(config.clone_lifecycles()).await;
                    return Err(ReloadError(e.to_string()));
                }
            }
        }
        let mut kept = Vec::new();
        for running in std::mem::take(&mut self.listeners) {
            match config
                .listeners
                .iter()
                .find(|s| s.addr == running.configured)
            {
                Some(spec) => {
                    running.listener.router.store(spec.router.clone());
                    running
                        .listener
                        .limits
                        .store(Arc::new(self.limits.with(&spec.limits)));
                    kept.push(running);
                }
                None => running.stop.cancel(),
            }
        }
        kept.extend(opened);
        // Keep config order, as local_addrs promises.
        kept.sort_by_key(|r| {
            config
                .listeners
                .iter()
                .position(|s| s.addr == r.configured)
                .unwrap_or(usize::MAX)
        });
        self.listeners = kept;
        let old = std::mem::replace(&mut self.config, Arc::new(config));
        crate::state::set_running(Some(self.config.clone()));
        report_enabled_plugins(Some(&old), &self.config);
        self.tracker.spawn(async move {
            tokio::time::sleep(grace).await;
            stop_lifecycles(old.clone_lifecycles()).await;
        });
        Ok(())
    }

    /// Keeps serving through the plugins' lameduck time (`health`), stops
    /// listening, lets queries in flight finish (up to `grace`), then runs
    /// the plugins' shutdown hooks.
    pub async fn shutdown(self, grace: Duration) {
        let lameduck = self
            .config
            .lifecycles()
            .map(|(_, l)| l.lameduck())
            .max()
            .unwrap_or_default();
        if !lameduck.is_zero() {
            tracing::info!("lameduck: serving for {lameduck:?} more before shutting down");
            tokio::time::sleep(lameduck).await;
        }
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown: queries still in flight after {grace:?}");
        }
        drop(self.listeners);
        crate::state::set_running(None);
        stop_lifecycles(self.config.clone_lifecycles()).await;
    }
}

/// `coredns_plugin_enabled`: 1 for each plugin of each served zone, 0 for
/// those a reload removed.
fn report_enabled_plugins(old: Option<&Config>, new: &Config) {
    let enabled = |config: &Config| {
        let mut set = Vec::new();
        for block in &config.blocks {
            for (server, zone) in block.served() {
                for name in &block.plugins {
                    set.push((server.clone(), oxidns_proto::name_text(zone), *name));
                }
            }
        }
        set
    };
    let now = enabled(new);
    if let Some(old) = old {
        for gone in enabled(old).into_iter().filter(|e| !now.contains(e)) {
            let (server, zone, name) = gone;
            metrics::gauge!("coredns_plugin_enabled", "server" => server, "zone" => zone, "view" => "", "name" => name).set(0.0);
        }
    }
    for (server, zone, name) in now {
        metrics::gauge!("coredns_plugin_enabled", "server" => server, "zone" => zone, "view" => "", "name" => name).set(1.0);
    }
}

/// Runs the start-up hooks in order; if one fails, those already started are stopped.
async fn start_lifecycles(config: &Config) -> Result<(), ReloadError> {
    let mut started = Vec::new();
    for (name, lifecycle) in config.lifecycles() {
        if let Err(e) = lifecycle.startup().await {
            stop_lifecycles(started).await;
            return Err(ReloadError(format!("plugin/{name}: {e}")));
        }
        started.push((*name, lifecycle.clone()));
    }
    Ok(())
}

async fn stop_lifecycles(lifecycles: Vec<(&'static str, Arc<dyn crate::plugin::Lifecycle>)>) {
    for (_, lifecycle) in lifecycles {
        lifecycle.shutdown().await;
    }
}

/// Binds `udp_sockets` UDP sockets and one TCP socket on one address; port
/// 0 picks a port free for both. The unspecified IPv6 address listens
/// dual-stack, or falls back to IPv4.
fn bind_pair(addr: SocketAddr, udp_sockets: usize) -> io::Result<(Vec<UdpSocket>, TcpListener)> {
    let shared = udp_sockets > 1;
    let mut last_error = None;
    for _ in 0..16 {
        let udp = match bind_udp(addr, shared) {
            Ok(socket) => socket,
            Err(e) if addr.ip().is_unspecified() && addr.is_ipv6() => {
                tracing::debug!("IPv6 unavailable ({e}); listening on IPv4 only");
                bind_udp(
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port()),
                    shared,
                )?
            }
            Err(e) => return Err(with_addr(e, addr)),
        };
        let bound = udp.local_addr()?;
        match bind_tcp(bound) {
            Ok(tcp) => {
                let mut sockets = vec![udp];
                for _ in 1..udp_sockets {
                    sockets.push(bind_udp(bound, true).map_err(|e| with_addr(e, bound))?);
                }
                return Ok((sockets, tcp));
            }
            // Another socket holds this TCP port: with port 0, try another.
            Err(e) if addr.port() == 0 => last_error = Some(e),
            Err(e) => return Err(with_addr(e, bound)),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no free port")))
}

fn with_addr(error: io::Error, addr: SocketAddr) -> io::Error {
    io::Error::new(error.kind(), format!("listen on {addr}: {error}"))
}

fn new_socket(
    addr: SocketAddr,
    kind: Type,
    protocol: Protocol,
    reuse_port: bool,
) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() {
        socket.set_only_v6(!addr.ip().is_unspecified())?;
    }
    // TCP needs it to rebind over connections in TIME_WAIT. UDP must not have
    // it: on Linux it would let a second process bind the same port and take
    // its queries, where "address in use" is the right answer.
    socket.set_reuse_address(kind == Type::STREAM)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    #[cfg(not(unix))]
    let _ = reuse_port;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Receive buffer asked for on UDP sockets, so bursts queue rather than drop
/// (the kernel caps it at net.core.rmem_max).
const UDP_RECEIVE_BUFFER: usize = 8 << 20;

/// How long the thread of a UDP socket blocks at most before it looks
/// whether its listener stopped (a stop also wakes it at once, where the
/// system allows: `shutdown` on Linux).
const UDP_STOP_CHECK: Duration = Duration::from_millis(500);

/// `shared`: SO_REUSEPORT, for the sockets of one listener (never across processes
/// of other users). Blocking: a thread of its own waits on it.
fn bind_udp(addr: SocketAddr, shared: bool) -> io::Result<UdpSocket> {
    let socket = new_socket(addr, Type::DGRAM, Protocol::UDP, shared)?;
    let _ = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER);
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(UDP_STOP_CHECK))?;
    Ok(socket.into())
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = new_socket(addr, Type::STREAM, Protocol::TCP, false)?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Below capacity (a batch that emptied the socket's queue), answers go
/// out at least this often, so that the first answers of a batch need not
/// wait for the last ones: held for whole batches, the median latency at
/// 100,000 q/s was 0.077 ms against Knot's 0.057 (0.062 sent every 8;
/// bench/README.md). A full batch means queries are queueing anyway: it
/// is answered with one system call, as sending in eights cost 3–7% more
/// CPU per query at capacity.
const SEND_EVERY: usize = 8;

/// Serves one UDP socket from a thread of its own, as Knot and NSD do: it
/// blocks in `recvmmsg` and answers the batch, so a query costs no wake-up
/// of the runtime (at 1,500 q/s, the runtime's park and wake-up were about
/// half of the server's user-space instructions; bench/README.md).
/// Answers that wait (an upstream, a slow plugin) go on as runtime tasks
/// and send by themselves. The thread ends when `stop` is cancelled or the
/// runtime goes away; the tracker's task waits for it. `pin`: the index of
/// the CPU (among those allowed) to keep the thread on.
fn serve_udp(
    socket: UdpSocket,
    listener: Arc<Listener>,
    stop: CancellationToken,
    tracker: TaskTracker,
    pin: Option<usize>,
) -> io::Result<()> {
    let socket = Arc::new(socket);
    let stopping = Arc::new(AtomicBool::new(false));
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Handle::current();
    let worker = UdpWorker {
        socket: socket.clone(),
        listener,
        stopping: stopping.clone(),
        tracker: tracker.clone(),
    };
    std::thread::Builder::new()
        .name("oxidns-udp".into())
        .spawn(move || {
            if let Some(index) = pin
                && let Err(e) = pin_thread(index)
            {
                tracing::warn!("cannot pin the UDP thread to a CPU: {e}");
            }
            // Plugins spawn tasks and make timers as on the runtime's own threads.
            let _runtime = runtime.enter();
            worker.run();
            let _ = done.send(());
        })?;
    let stopper = UdpStopper { socket, stopping };
    tracker.spawn(async move {
        let mut finished = finished;
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = &mut finished => return,
        }
        stopper.stop();
        let _ = finished.await;
    });
    Ok(())
}

/// Keeps the calling thread on the `index`th CPU (wrapping around) of those
/// it may run on; returns that CPU.
#[cfg(target_os = "linux")]
fn pin_thread(index: usize) -> io::Result<usize> {
    let cpus = allowed_cpus()?;
    let Some(&cpu) = cpus.get(index % cpus.len().max(1)) else {
        return Err(io::Error::other("no CPU allowed"));
    };
    // SAFETY: cpu_set_t is plain data, zero is an empty set, and the call
    // is given its size.
    unsafe {
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(cpu)
}

/// The CPUs the calling thread may run on.
#[cfg(target_os = "linux")]
fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: as in pin_thread.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &allowed))
            .collect())
    }
}

#[cfg(not(target_os = "linux"))]
fn pin_thread(_: usize) -> io::Result<usize> {
    Err(io::Error::other("pinning threads is done on Linux only"))
}

/// Stops a UDP socket's thread: now, or when dropped with the runtime.
struct UdpStopper {
    socket: Arc<UdpSocket>,
    stopping: Arc<AtomicBool>,
}

impl UdpStopper {
    fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        // Wakes the thread out of `recvmmsg` (Linux; elsewhere the read
        // timeout does). The sending side stays open for answers still in
        // flight. An error only means it was stopped already.
        let _ = socket2::SockRef::from(&*self.socket).shutdown(std::net::Shutdown::Read);
    }
}

impl Drop for UdpStopper {
    fn drop(&mut self) {
        self.stop();
    }
}

struct UdpWorker {
    socket: Arc<UdpSocket>,
    listener: Arc<Listener>,
    stopping: Arc<AtomicBool>,
    tracker: TaskTracker,
}

impl UdpWorker {
    fn run(self) {
        let listener = &self.listener;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut received = ReceiveBatch::new();
        let mut replies = SendBatch::default();
        let mut answers = FutureSlot::new();
        while !self.stopping.load(Ordering::Acquire) {
            let count = match received.receive(&self.socket) {
                Ok(count) => count,
                // The read timeout (a look at `stopping`), a signal, or an
                // ICMP error from an earlier send: keep serving.
                Err(e) => {
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) {
                        tracing::debug!("udp receive on {}: {e}", listener.local);
                    }
                    continue;
                }
            };
            // After a shutdown, `recvmmsg` counts empty "datagrams".
            if self.stopping.load(Ordering::Acquire) {
                break;
            }
            for index in 0..count {
                let (datagram, client) = received.datagram(index);
                let Some(client) = client else { continue };
                let message = query_bytes(datagram);
                let owned = listener.clone();
                let buffer = replies.spare_buffer();
                // Most answers (zones, cache hits) complete without waiting:
                // answer those here, sent with the rest of the batch; only
                // answers that wait get a task of their own.
                let answering = match answers.poll_once(async move {
                    answer(&owned, message, client, Transport::Udp, buffer).await
                }) {
                    Ok(response) => {
                        if let Some(response) = response {
                            replies.push(response, client);
                            if count < BATCH && replies.len() >= SEND_EVERY {
                                replies.flush(&self.socket);
                            }
                        }
                        continue;
                    }
                    Err(answering) => answering,
                };
                if in_flight.load(Ordering::Relaxed) >= listener.limits.load().max_udp_in_flight {
                    listener.reached(LimitReached::UdpInFlight);
                    continue;
                }
                in_flight.fetch_add(1, Ordering::Relaxed);
                let socket = self.socket.clone();
                let in_flight = in_flight.clone();
                self.tracker.spawn(async move {
                    if let Some(response) = answering.await {
                        send_udp(&socket, &response, client).await;
                    }
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                });
            }
            replies.flush(&self.socket);
        }
    }
}

/// A received query's bytes in one heap block with their reference count.
///
/// Why not `Bytes::copy_from_slice`: its block becomes shared at the first
/// clone (the query name is sliced out of the message at once), which
/// costs a second allocation per query; an owner block is shared from the
/// start. Two sizes, so that a name kept from the query (a record's owner
/// in a cache entry) keeps little more than the query itself alive;
/// longer queries (rare) take the general way.
fn query_bytes(datagram: &[u8]) -> Bytes {
    match datagram.len() {
        0..=128 => Bytes::from_owner(InlineQuery::<128>::new(datagram)),
        129..=320 => Bytes::from_owner(InlineQuery::<320>::new(datagram)),
        _ => Bytes::copy_from_slice(datagram),
    }
}

struct InlineQuery<const N: usize> {
    len: usize,
    bytes: [u8; N],
}

impl<const N: usize> InlineQuery<N> {
    fn new(datagram: &[u8]) -> Self {
        let mut inline = InlineQuery {
            len: datagram.len(),
            bytes: [0; N],
        };
        inline.bytes[..datagram.len()].copy_from_slice(datagram);
        inline
    }
}

impl<const N: usize> AsRef<[u8]> for InlineQuery<N> {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Sends a UDP response from a runtime task, never blocking the task's
/// thread: a full send buffer is waited out a few milliseconds at most,
/// then the answer is dropped (as a datagram may be anywhere on its way).
async fn send_udp(socket: &UdpSocket, response: &[u8], client: SocketAddr) {
    for _ in 0..10 {
        match crate::udp::send_now(socket, response, client) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => {
                tracing::debug!("udp send to {client}: {e}");
                return;
            }
            Ok(()) => return,
        }
    }
    tracing::debug!("udp send to {client}: the send buffer stayed full");
}

async fn serve_tcp(
    socket: TcpListener,
    listener: Arc<Listener>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let (stream, client) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = socket.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!("tcp accept: {e}");
                    // Out of file descriptors, most likely: let some close.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let limits = listener.limits.load_full();
        let slot = match listener.open_tcp(client.ip(), &limits) {
            Ok(slot) => slot,
            Err(limit) => {
                tracing::debug!("tcp connection from {client} refused: {}", limit.as_str());
                listener.reached(limit);
                continue;
            }
        };
        let listener = listener.clone();
        let cancel = cancel.clone();
        let inner_tracker = tracker.clone();
        tracker.spawn(async move {
            serve_tcp_connection(stream, client, listener, limits, cancel, inner_tracker).await;
            drop(slot);
        });
    }
}

async fn serve_tcp_connection(
    stream: TcpStream,
    client: SocketAddr,
    listener: Arc<Listener>,
    limits: Arc<Limits>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (responses, mut outbox) = mpsc::channel::<Answer>(limits.max_tcp_in_flight);
    let write_timeout = limits.tcp_write_timeout;
    let writer_listener = listener.clone();
    let writer_task = tracker.spawn(async move {
        let mut frame = Vec::with_capacity(512);
        while let Some(answer) = outbox.recv().await {
            let mut next = Some(answer.message);
            let mut follow_ups = answer.follow_ups;
            // A multi-message answer goes out back to back; a producer that
            // stalls is given up on like a client that stops reading.
            while let Some(response) = next {
                frame.clear();
                frame.extend_from_slice(&(response.len() as u16).to_be_bytes());
                frame.extend_from_slice(&response);
                match tokio::time::timeout(write_timeout, writer.write_all(&frame)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => {
                        writer_listener.reached(LimitReached::TcpWriteTimeout);
                        return;
                    }
                }
                next = match follow_ups.as_mut() {
                    None => None,
                    Some(more) => match tokio::time::timeout(write_timeout, more.next()).await {
                        Ok(message) => message,
                        Err(_) => return,
                    },
                };
            }
        }
        let _ = writer.shutdown().await;
    });
    let in_flight = Arc::new(Semaphore::new(limits.max_tcp_in_flight));
    loop {
        let mut prefix = [0u8; 2];
        let read = tokio::select! {
            _ = cancel.cancelled() => break,
            read = tokio::time::timeout(limits.tcp_idle_timeout, reader.read_exact(&mut prefix)) => read,
        };
        match read {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                listener.reached(LimitReached::TcpIdleTimeout);
                break;
            }
        }
        let len = usize::from(u16::from_be_bytes(prefix));
        let mut message = vec![0u8; len];
        match tokio::time::timeout(limits.tcp_read_timeout, reader.read_exact(&mut message)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                listener.reached(LimitReached::TcpReadTimeout);
                break;
            }
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let listener = listener.clone();
        let responses = responses.clone();
        tracker.spawn(async move {
            if let Some(answer) = answer_all(
                &listener,
                message.into(),
                client,
                Transport::Tcp,
                Vec::new(),
            )
            .await
            {
                let _ = responses.send(answer).await;
            }
            drop(permit);
        });
    }
    drop(responses);
    let _ = writer_task.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corefile::ConfigError;
    use crate::plugin::{Handler, HandlerFuture, PluginEntry, Setup};
    use crate::test_util::config;
    use oxidns_proto::{Class, Rtype, name_from_str};

    #[cfg(target_os = "linux")]
    #[test]
    fn a_pinned_thread_runs_on_one_allowed_cpu_only() {
        let allowed = || allowed_cpus().unwrap();
        let before = allowed();
        for index in [0, 1, before.len()] {
            let (cpu, after) = std::thread::spawn(move || (pin_thread(index).unwrap(), allowed()))
                .join()
                .unwrap();
            assert_eq!(after, vec![cpu], "pinned to one CPU");
            assert_eq!(
                cpu,
                before[index % before.len()],
                "the index-th allowed CPU"
            );
        }
        assert_eq!(allowed(), before, "other threads keep their CPUs");
    }

    #[test]
    fn query_bytes_keep_every_size_of_query_whole() {
        for len in [0, 12, 128, 129, 320, 321, 4096] {
            let datagram: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let bytes = query_bytes(&datagram);
            assert_eq!(&bytes[..], &datagram[..], "{len} bytes");
            assert_eq!(&bytes.slice(len / 2..)[..], &datagram[len / 2..]);
        }
    }

    /// Answers NOERROR after the delay given as its argument (milliseconds).
    struct Slow(u64);

    impl Handler for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }

        fn serve<'a>(&'a self, _: &'a mut Request, _: Next<'a>) -> HandlerFuture<'a> {
            HandlerFuture::new(async move {
                tokio::time::sleep(Duration::from_millis(self.0)).await;
                Ok(Response::new(Rcode::NOERROR))
            })
        }
    }

    struct Panics;

    impl Handler for Panics {
        fn name(&self) -> &'static str {
            "panics"
        }

        fn serve<'a>(&'a self, _: &'a mut Request, _: Next<'a>) -> HandlerFuture<'a> {
            HandlerFuture::new(async { panic!("a plugin bug") })
        }
    }

    /// Answers with as many messages as its argument says, the first
    /// NOERROR and the rest NXDOMAIN (to tell them apart).
    struct Several(u8);

    impl Handler for Several {
        fn name(&self) -> &'static str {
            "several"
        }

        fn serve<'a>(&'a self, request: &'a mut Request, _: Next<'a>) -> HandlerFuture<'a> {
            let (sender, receiver) = mpsc::channel(1);
            let more = self.0 - 1;
            tokio::spawn(async move {
                for _ in 0..more {
                    if sender.send(Response::new(Rcode::NXDOMAIN)).await.is_err() {
                        return;
                    }
                }
            });
            request.follow_with(receiver);
            HandlerFuture::new(async { Ok(Response::new(Rcode::NOERROR)) })
        }
    }

    fn several_setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
        let count = setup.single()?.args[0].text.parse().unwrap();
        setup.add_handler(Arc::new(Several(count)));
        Ok(())
    }

    fn slow_setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
        let millis = setup.single()?.args[0].text.parse().unwrap();
        setup.add_handler(Arc::new(Slow(millis)));
        Ok(())
    }

    fn panics_setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
        setup.add_handler(Arc::new(Panics));
        Ok(())
    }

    /// Answers NOTIFY (and anything else) with NOERROR.
    fn notify_setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
        setup.settings().opcodes.push(Opcode::NOTIFY);
        setup.add_handler(Arc::new(Slow(0)));
        Ok(())
    }

    const TEST_PLUGINS: &[PluginEntry] = &[
        PluginEntry {
            name: "notify",
            setup: notify_setup,
        },
        PluginEntry {
            name: "slow",
            setup: slow_setup,
        },
        PluginEntry {
            name: "panics",
            setup: panics_setup,
        },
        PluginEntry {
            name: "several",
            setup: several_setup,
        },
    ];

    async fn start(corefile: &str, limits: Limits) -> Server {
        let config = config(corefile, TEST_PLUGINS).unwrap();
        Server::start(config, limits).await.unwrap()
    }

    fn message(id: u16) -> Vec<u8> {
        Query::build(
            id,
            &name_from_str("example.org").unwrap(),
            Rtype::A,
            Class::IN,
            None,
        )
    }

    fn v4(server: &Server) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], server.local_addrs()[0].port()))
    }

    async fn udp_exchange(addr: SocketAddr, id: u16, wait: Duration) -> Option<Vec<u8>> {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&message(id), addr).await.unwrap();
        let mut buf = vec![0; 4096];
        match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
            Ok(Ok((len, _))) => Some(buf[..len].to_vec()),
            _ => None,
        }
    }

    fn rcode(bytes: &[u8]) -> u8 {
        bytes[3] & 0x0f
    }

    #[tokio::test]
    async fn other_opcodes_reach_only_blocks_that_serve_them() {
        let server = start(
            "example.org:0 {\n notify\n}\nexample.net:0 {\n slow 0\n}",
            Limits::default(),
        )
        .await;
        let notify = |name: &str| {
            let mut bytes = Query::build(
                5,
                &name_from_str(name).unwrap(),
                Rtype::SOA,
                Class::IN,
                None,
            );
            bytes[2] = (bytes[2] & 0x87) | (4 << 3);
            bytes
        };
        for (name, expected) in [("example.org", 0), ("example.net", 4)] {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            socket.send_to(&notify(name), v4(&server)).await.unwrap();
            let mut buf = vec![0; 512];
            let (len, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(rcode(&buf[..len]), expected, "{name}");
        }
        server.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_panicking_plugin_gets_servfail_and_the_server_goes_on() {
        let server = start(".:0 {\n panics\n}", Limits::default()).await;
        for id in 0..3 {
            let answer = udp_exchange(v4(&server), id, Duration::from_secs(2))
                .await
                .unwrap();
            assert_eq!(rcode(&answer), 2);
        }
        server.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_chain_that_runs_out_of_plugins_gets_servfail() {
        let config = config(".:0 {\n slow 0\n}", TEST_PLUGINS).unwrap();
        let block = config.blocks[0].clone();
        // A chain whose only handler passes on: nothing answers.
        struct PassOn;
        impl Handler for PassOn {
            fn name(&self) -> &'static str {
                "pass"
            }
            fn serve<'a>(&'a self, r: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
                next.serve(r)
            }
        }
        let chained = Block {
            keys: block.keys.clone(),
            zones: block.zones.clone(),
            listen_addrs: vec![],
            debug: false,
            reload: None,
            plugins: vec![],
            opcodes: vec![],
            limits: LimitSettings::default(),
            chain: vec![Arc::new(PassOn) as Arc<dyn Handler>].into(),
            lifecycles: vec![],
        };
        let mut request = crate::test_util::request("example.org", Rtype::A);
        let response = run_chain(&chained, &mut request).await;
        assert_eq!(response.rcode, OptRcode::SERVFAIL);
    }

    #[tokio::test]
    async fn every_udp_socket_of_a_listener_answers() {
        let limits = Limits {
            udp_sockets: 3,
            ..Limits::default()
        };
        let server = start(".:0 {\n slow 0\n}", limits).await;
        let addr = v4(&server);
        // The kernel picks a socket by the client's address: many clients reach all three.
        let answers = futures_util::future::join_all(
            (0..24).map(|id| udp_exchange(addr, id, Duration::from_secs(5))),
        )
        .await;
        assert!(
            answers.iter().all(Option::is_some),
            "every client is answered"
        );
    }

    #[tokio::test]
    async fn a_second_server_cannot_take_a_port_in_use() {
        let limits = Limits {
            udp_sockets: 2,
            ..Limits::default()
        };
        let server = start(".:0 {\n slow 0\n}", limits.clone()).await;
        let taken = v4(&server);
        let error = bind_pair(taken, 1).expect_err("the port is in use");
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    }

    #[tokio::test]
    async fn udp_beyond_the_in_flight_limit_is_shed() {
        let limits = Limits {
            max_udp_in_flight: 1,
            ..Limits::default()
        };
        let server = start(".:0 {\n slow 400\n}", limits).await;
        let addr = v4(&server);
        let first = tokio::spawn(udp_exchange(addr, 1, Duration::from_secs(2)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = udp_exchange(addr, 2, Duration::from_millis(600)).await;
        assert!(
            first.await.unwrap().is_some(),
            "the first query is answered"
        );
        assert!(
            second.is_none(),
            "the second is dropped while the first is in flight"
        );
        let third = udp_exchange(addr, 3, Duration::from_secs(2)).await;
        assert!(third.is_some(), "service resumes once the load is gone");
        server.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn follow_up_messages_are_sent_over_tcp_and_the_connection_goes_on() {
        let server = start(".:0 {\n several 4\n}", Limits::default()).await;
        let mut stream = TcpStream::connect(v4(&server)).await.unwrap();
        let read = async |stream: &mut TcpStream| {
            let mut prefix = [0u8; 2];
            stream.read_exact(&mut prefix).await.unwrap();
            let mut message = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
            stream.read_exact(&mut message).await.unwrap();
            message
        };
        for id in [1, 2] {
            let query = message(id);
            let mut frame = (query.len() as u16).to_be_bytes().to_vec();
            frame.extend_from_slice(&query);
            stream.write_all(&frame).await.unwrap();
            let mut rcodes = Vec::new();
            for _ in 0..4 {
                let answer = tokio::time::timeout(Duration::from_secs(3), read(&mut stream))
                    .await
                    .unwrap();
                assert_eq!(u16::from_be_bytes([answer[0], answer[1]]), id);
                rcodes.push(rcode(&answer));
            }
            assert_eq!(
                rcodes,
                [0, 3, 3, 3],
                "the first, then the follow-ups in order"
            );
        }
        // Over UDP, only the first message goes out.
        let answer = udp_exchange(v4(&server), 5, Duration::from_secs(2)).await;
        assert_eq!(rcode(&answer.unwrap()), 0);
        server.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn idle_tcp_connections_are_closed() {
        let limits = Limits {
            tcp_idle_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let server = start(".:0 {\n slow 0\n}", limits).await;
        let mut stream = TcpStream::connect(v4(&server)).await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0))),
            "server closed the idle connection"
        );
        server.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_stalled_tcp_message_is_given_up_after_the_read_timeout() {
        let limits = Limits {
            tcp_read_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let server = start(".:0 {\n slow 0\n}", limits).await;
        let mut stream = TcpStream::connect(v4(&server)).await.unwrap();
        stream.write_all(&[0, 50, 1, 2, 3]).await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0))),
            "server closed the stalled connection"
        );
        server.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn one_client_cannot_take_every_tcp_connection() {
        let limits = Limits {
            max_tcp_connections_per_client: 2,
            ..Limits::default()
        };
        let server = start(".:0 {\n slow 0\n}", limits).await;
        let from = |ip: &str| {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
            socket.connect(v4(&server))
        };
        let _a = from("127.0.0.1").await.unwrap();
        let _b = from("127.0.0.1").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = from("127.0.0.1").await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(3), third.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "third connection closed"
        );
        // Another client still gets in and is answered.
        let mut other = from("127.0.0.2").await.unwrap();
        let query = message(7);
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&query);
        other.write_all(&framed).await.unwrap();
        let mut len = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(3), other.read_exact(&mut len))
            .await
            .expect("answered in time")
            .unwrap();
        server.shutdown(Duration::from_secs(1)).await;
    }

    #[test]
    fn the_tightest_limit_of_blocks_sharing_a_listener_wins() {
        let mut shared = LimitSettings {
            tcp_idle_timeout: Some(Duration::from_secs(30)),
            ..LimitSettings::default()
        };
        shared.tighten(&LimitSettings {
            tcp_idle_timeout: Some(Duration::from_secs(5)),
            max_tcp_connections: Some(10),
            ..LimitSettings::default()
        });
        let limits = Limits::default().with(&shared);
        assert_eq!(limits.tcp_idle_timeout, Duration::from_secs(5));
        assert_eq!(limits.max_tcp_connections, 10);
        assert_eq!(limits.tcp_read_timeout, Limits::default().tcp_read_timeout);
    }

    #[tokio::test]
    async fn tcp_connections_beyond_the_limit_are_closed_at_once() {
        let limits = Limits {
            max_tcp_connections: 2,
            ..Limits::default()
        };
        let server = start(".:0 {\n slow 0\n}", limits).await;
        let _a = TcpStream::connect(v4(&server)).await.unwrap();
        let _b = TcpStream::connect(v4(&server)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = TcpStream::connect(v4(&server)).await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "third connection closed"
        );
        // UDP is unaffected.
        assert!(
            udp_exchange(v4(&server), 9, Duration::from_secs(2))
                .await
                .is_some()
        );
        server.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn shutdown_lets_queries_in_flight_finish() {
        let server = start(".:0 {\n slow 300\n}", Limits::default()).await;
        let addr = v4(&server);
        let pending = tokio::spawn(udp_exchange(addr, 7, Duration::from_secs(3)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        server.shutdown(Duration::from_secs(2)).await;
        let answer = pending
            .await
            .unwrap()
            .expect("the query in flight was answered");
        assert_eq!(rcode(&answer), 0);
        // And nothing listens any more.
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        probe.send_to(&message(8), addr).unwrap();
        assert!(probe.recv_from(&mut [0u8; 512]).is_err());
    }
}
