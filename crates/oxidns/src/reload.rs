//! Signals and configuration reloads.
//!
//! SIGTERM and SIGINT end the run. SIGUSR1, and the `reload` plugin's timer,
//! check the Corefile and every file it imports: when their SHA-512 changed
//! (or on SIGUSR1), the new configuration is checked in full and swapped in
//! without dropping a query; a bad one is logged and counted, and the
//! running one keeps serving.

use std::path::PathBuf;
use std::time::Duration;

use oxidns_server::{ConfigError, Server, logging};
use rand::Rng;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::{Loaded, SHUTDOWN_GRACE};

/// The signals oxidns acts on, installed before the server listens so that
/// none arrives while the default action (exit) still applies.
pub struct Signals {
    term: Signal,
    int: Signal,
    usr1: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }
}

pub struct Watcher {
    sources: Vec<PathBuf>,
    digest: String,
}

/// Why a check ran.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Timer,
    Signal,
}

impl Watcher {
    pub fn new(sources: Vec<PathBuf>, digest: String) -> Watcher {
        if !sources.is_empty() {
            tracing::info!(target: "plugin/reload", "Running configuration SHA512 = {digest}");
            metrics::gauge!("coredns_reload_version_info", "hash" => "sha512", "value" => digest.clone())
                .set(1.0);
        }
        Watcher { sources, digest }
    }

    /// Serves until SIGTERM or SIGINT, applying configuration changes.
    pub async fn run(
        &mut self,
        server: &mut Server,
        signals: &mut Signals,
        load: impl Fn() -> Result<Loaded, Vec<ConfigError>>,
    ) {
        loop {
            let wait = next_wait(server.config().reload());
            let trigger = tokio::select! {
                _ = signals.term.recv() => return,
                _ = signals.int.recv() => return,
                _ = signals.usr1.recv() => Trigger::Signal,
                _ = sleep_or_forever(wait) => Trigger::Timer,
            };
            self.check(server, &load, trigger).await;
        }
    }

    async fn check(
        &mut self,
        server: &mut Server,
        load: &impl Fn() -> Result<Loaded, Vec<ConfigError>>,
        trigger: Trigger,
    ) {
        let digest = digest(&self.sources);
        if trigger == Trigger::Timer && digest == self.digest {
            return;
        }
        // Remember this version even if it fails, so it is reported once, not every interval.
        self.digest = digest;
        let loaded = match load() {
            Ok(loaded) => loaded,
            Err(errors) => {
                for error in errors {
                    tracing::error!(target: "plugin/reload", "{error}");
                }
                failed("the new configuration has errors; still serving the previous one");
                return;
            }
        };
        let debug = loaded.config.debug();
        if let Err(e) = server.reload(loaded.config, SHUTDOWN_GRACE).await {
            tracing::error!(target: "plugin/reload", "{e}");
            failed("the new configuration could not start; still serving the previous one");
            return;
        }
        logging::set_debug(debug);
        self.sources = loaded.sources;
        self.digest = loaded.digest;
        tracing::info!(target: "plugin/reload", "Running configuration SHA512 = {}", self.digest);
        metrics::gauge!("coredns_reload_version_info", "hash" => "sha512", "value" => self.digest.clone())
            .set(1.0);
        tracing::info!("Reloading complete");
    }
}

fn failed(message: &str) {
    metrics::counter!("coredns_reload_failed_total").increment(1);
    tracing::error!(target: "plugin/reload", "{message}");
}

/// The wait before the next timed check: the interval plus a random part of the jitter.
fn next_wait(reload: Option<(Duration, Duration)>) -> Option<Duration> {
    let (interval, jitter) = reload?;
    let extra = rand::rng().random_range(0..=jitter.as_millis() as u64);
    Some(interval + Duration::from_millis(extra))
}

async fn sleep_or_forever(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

/// SHA-512 over the contents of every source file, in order (a missing file counts as empty).
pub fn digest(sources: &[PathBuf]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA512);
    for path in sources {
        context.update(path.to_string_lossy().as_bytes());
        context.update(&std::fs::read(path).unwrap_or_default());
    }
    context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
