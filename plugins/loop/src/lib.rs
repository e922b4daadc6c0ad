//! `loop`: detects simple forwarding loops at start-up and halts the server,
//! as CoreDNS's loop plugin does.
//!
//! At start-up a task sends one `HINFO` query for a random name,
//! `<random>.<random>.<zone>`, to the server's own listening address over
//! UDP. The handler counts the queries for exactly that name that pass
//! through it; seeing it three times means the query came back to us through
//! a forwarding loop, and the process is halted with CoreDNS's `[FATAL]`
//! message. The probe is retried while the server is not answering yet (the
//! start-up hook runs before the listeners open), and while it is answered
//! without having passed through this plugin (during a reload the previous
//! configuration answers until the new one is swapped in), for at most 30
//! seconds; once it got an answer, or the time is up, the plugin stops
//! counting, so that no later query can kill the server.
//!
//! How the process is halted is a [`Halt`] function given at construction,
//! so that tests can see a detection without ending the test process.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxidns_server::plugin::HookFuture;
use oxidns_server::proto::{Class, Name, Query, Response, Rtype, name_from_str, name_text};
use oxidns_server::{
    ConfigError, Handler, HandlerFuture, Lifecycle, Next, PluginEntry, PluginError, Request, Setup,
};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "loop",
    setup,
};

/// Sightings of the probe that make a loop: CoreDNS's "more than twice".
const LOOP_THRESHOLD: usize = 3;

/// What to do when a loop is found, given the message to log. In production
/// it logs the message as `[FATAL]` and exits; it does not return.
pub type Halt = fn(&str);

/// The production [`Halt`]: CoreDNS's `log.Fatalf`, a `[FATAL]` line on
/// standard output and exit status 1.
pub fn halt_process(message: &str) {
    use std::io::Write;
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "[FATAL] plugin/loop: {message}");
    let _ = out.flush();
    std::process::exit(1);
}

/// How the start-up probe is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeTiming {
    /// The probe is given up (and the plugin disabled) after this long.
    pub give_up_after: Duration,
    /// The wait before sending again when the probe got no answer.
    pub retry_every: Duration,
    /// How long one probe waits for its answer.
    pub answer_timeout: Duration,
}

impl Default for ProbeTiming {
    /// CoreDNS's: 30 seconds in all, a second between tries, and the two
    /// seconds a `dns.Exchange` waits.
    fn default() -> Self {
        ProbeTiming {
            give_up_after: Duration::from_secs(30),
            retry_every: Duration::from_secs(1),
            answer_timeout: Duration::from_secs(2),
        }
    }
}

/// What the directive and the server block decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopConfig {
    /// The block's first zone: the probe name ends in it.
    pub zone: Name,
    /// The probe's name, `<random>.<random>.<zone>`.
    pub qname: Name,
    /// Where the probe is sent; `None` when the port is not known before
    /// start-up (port 0).
    pub target: Option<SocketAddr>,
    /// The listening address as CoreDNS shows it: `:53` when the block
    /// listens on every address, else `ADDRESS:PORT`.
    pub listen: String,
}

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let config = parse(setup)?;
    install(
        setup,
        Arc::new(Loop::new(config, ProbeTiming::default(), halt_process)),
    );
    Ok(())
}

/// Reads the directive and what the block says about where it listens.
/// `bind` must have been set up before (it is earlier in the plugin list).
pub fn parse(setup: &mut Setup<'_>) -> Result<LoopConfig, ConfigError> {
    let directive = setup.single()?;
    directive.bare()?;
    let zone = setup.zones().first().cloned().unwrap_or_else(Name::root);
    let qname = random_qname(&zone)
        .map_err(|e| directive.error(format!("no probe name fits in this zone: {e}")))?;
    let settings = setup.settings();
    let port = settings.keys.first().map_or(53, |key| key.port);
    let (target, listen) = probe_target(&settings.listen_addrs, port);
    Ok(LoopConfig {
        zone,
        qname,
        target,
        listen,
    })
}

/// Adds the handler and its start-up and shutdown hooks to the block.
pub fn install(setup: &mut Setup<'_>, plugin: Arc<Loop>) {
    setup.add_handler(plugin.clone());
    setup.add_lifecycle(plugin);
}

/// Where to send the probe, and the listening address as CoreDNS shows it.
/// A block that listens on every address (or on a wildcard) is probed on the
/// loopback address of that family.
pub fn probe_target(listen_addrs: &[IpAddr], port: u16) -> (Option<SocketAddr>, String) {
    let first = listen_addrs.first().copied();
    let listen = match first {
        None => format!(":{port}"),
        Some(ip) => SocketAddr::new(ip, port).to_string(),
    };
    let ip = match first {
        None | Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        Some(ip) => ip,
    };
    let target = (port != 0).then(|| SocketAddr::new(ip, port));
    (target, listen)
}

/// `<random>.<random>.<zone>`, the labels non-negative 63-bit numbers as
/// Go's `rand.Int()` gives them.
fn random_qname(zone: &Name) -> Result<Name, String> {
    let first = rand::random::<u64>() >> 1;
    let second = rand::random::<u64>() >> 1;
    let zone = name_text(zone);
    let zone = zone.trim_end_matches('.');
    name_from_str(&format!("{first}.{second}.{zone}"))
}

/// One `loop` directive: the probe, and the count of its sightings.
pub struct Loop {
    config: LoopConfig,
    timing: ProbeTiming,
    halt: Halt,
    state: Arc<State>,
    stop: CancellationToken,
}

/// What the handler and the probe task share.
#[derive(Default)]
struct State {
    seen: AtomicUsize,
    disabled: AtomicBool,
    detected: Mutex<Option<String>>,
}

impl State {
    fn disable(&self) {
        self.disabled.store(true, Ordering::Release);
    }

    fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Acquire)
    }
}

impl Loop {
    /// A loop detector; `halt` is called once if a loop is found.
    pub fn new(config: LoopConfig, timing: ProbeTiming, halt: Halt) -> Loop {
        Loop {
            config,
            timing,
            halt,
            state: Arc::new(State::default()),
            stop: CancellationToken::new(),
        }
    }

    /// The probe's query name.
    pub fn qname(&self) -> &Name {
        &self.config.qname
    }

    /// Whether the probe phase is over (the plugin no longer counts).
    pub fn is_disabled(&self) -> bool {
        self.state.is_disabled()
    }

    /// Ends the probe phase: the plugin stops counting.
    pub fn disable(&self) {
        self.state.disable();
    }

    /// How many times the probe name was seen so far.
    pub fn seen(&self) -> usize {
        self.state.seen.load(Ordering::Acquire)
    }

    /// The message of the loop found, if one was.
    pub fn detected(&self) -> Option<String> {
        self.state
            .detected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// CoreDNS's fatal message, for a probe last received from `client`.
    fn message(&self, client: SocketAddr) -> String {
        format!(
            "Loop ({client} -> {}) detected for zone \"{}\", see https://coredns.io/plugins/loop#troubleshooting. Query: \"HINFO {}\"",
            self.config.listen,
            name_text(&self.config.zone),
            name_text(&self.config.qname),
        )
    }
}

impl Handler for Loop {
    fn name(&self) -> &'static str {
        "loop"
    }

    // Looks at the question alone.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        if request.qtype() == Rtype::HINFO
            && !self.state.is_disabled()
            && *request.qname() == self.config.qname
        {
            let seen = self.state.seen.fetch_add(1, Ordering::AcqRel) + 1;
            // Only the first to see the threshold reports (and disables), so
            // a halt that returns (in tests) is called once.
            if seen >= LOOP_THRESHOLD && !self.state.disabled.swap(true, Ordering::AcqRel) {
                let message = self.message(request.client);
                *self
                    .state
                    .detected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(message.clone());
                (self.halt)(&message);
                // Still here (a test's halt): end the loop with SERVFAIL.
                return HandlerFuture::ready(Err(PluginError::new(
                    "loop",
                    "forwarding loop detected",
                )));
            }
        }
        next.serve(request)
    }
}

impl Lifecycle for Loop {
    fn startup(&self) -> HookFuture<'_, Result<(), String>> {
        match self.config.target {
            Some(target) => {
                tokio::spawn(probe(
                    target,
                    self.config.qname.clone(),
                    self.timing,
                    self.state.clone(),
                    self.stop.clone(),
                ));
            }
            None => {
                tracing::warn!(
                    target: "plugin/loop",
                    "the listening port is chosen at start-up (port 0): no loop probe is sent"
                );
                self.state.disable();
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn shutdown(&self) -> HookFuture<'_, ()> {
        self.stop.cancel();
        self.state.disable();
        Box::pin(std::future::ready(()))
    }
}

/// Sends the probe until it is answered or time is up, then disables counting.
async fn probe(
    target: SocketAddr,
    qname: Name,
    timing: ProbeTiming,
    state: Arc<State>,
    stop: CancellationToken,
) {
    let deadline = Instant::now() + timing.give_up_after;
    let attempts = async {
        while Instant::now() < deadline {
            match exchange(target, &qname, timing.answer_timeout).await {
                Ok(()) if state.seen.load(Ordering::Acquire) > 0 => return,
                // Answered by a chain without this plugin: the previous
                // configuration, still serving during a reload. Again later.
                Ok(()) => {
                    tracing::debug!(target: "plugin/loop", "probe to {target} answered without passing through; trying again");
                    tokio::time::sleep(timing.retry_every).await;
                }
                Err(e) => {
                    tracing::debug!(target: "plugin/loop", "probe to {target}: {e}; trying again");
                    // As CoreDNS: a probe that got no answer does not count.
                    state.seen.store(0, Ordering::Release);
                    tokio::time::sleep(timing.retry_every).await;
                }
            }
        }
        tracing::debug!(target: "plugin/loop", "probe to {target} never answered; loop detection off");
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = attempts => {}
    }
    state.disable();
}

/// One HINFO query to `target` over UDP; `Ok` on any answer to it.
async fn exchange(target: SocketAddr, qname: &Name, timeout: Duration) -> io::Result<()> {
    let local = match target.ip() {
        ip if ip.is_loopback() => ip,
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(SocketAddr::new(local, 0)).await?;
    socket.connect(target).await?;
    let id: u16 = rand::random();
    socket
        .send(&Query::build(id, qname, Rtype::HINFO, Class::IN, None))
        .await?;
    let mut buf = vec![0u8; 65_535];
    let answer = async {
        loop {
            let len = socket.recv(&mut buf).await?;
            if let Ok(received) = Response::parse(&buf[..len])
                && received.id == id
            {
                return Ok(());
            }
        }
    };
    tokio::time::timeout(timeout, answer)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no answer")))
}

#[cfg(test)]
mod tests;
