//! One upstream of a `forward` directive and its health.
//!
//! As CoreDNS: a failed exchange starts a health check loop for that
//! upstream (one at a time): every interval a `. IN NS` query (RD unless
//! `no_rec`, the name from `health_check … domain`) over the upstream's
//! transport, with a 1s timeout. Any answer, whatever its rcode, counts as
//! healthy, resets the failure count and ends the loop; each failed check
//! adds one. The upstream is down while the count is `max_fails` or more.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use oxidns_net::{ExchangeOptions, OutgoingQuery, Protocol, Upstream};
use oxidns_server::proto::{Name, Rtype};
use tokio_util::sync::CancellationToken;

/// A health check waits this long for its answer (CoreDNS: 1s).
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// How health checks are made, shared by the upstreams of one directive.
#[derive(Clone, Debug)]
pub(crate) struct HealthCheck {
    pub(crate) interval: Duration,
    pub(crate) recursion_desired: bool,
    pub(crate) domain: Name,
    /// `force_tcp`: plain upstreams are checked over TCP.
    pub(crate) tcp: bool,
}

pub(crate) struct Proxy {
    pub(crate) upstream: Upstream,
    /// The `to` label of metrics: `IP:port`.
    pub(crate) label: String,
    pub(crate) tls: bool,
    fails: AtomicU32,
    checking: AtomicBool,
}

impl Proxy {
    pub(crate) fn new(upstream: Upstream, tls: bool) -> Proxy {
        Proxy {
            label: upstream.addr().to_string(),
            upstream,
            tls,
            fails: AtomicU32::new(0),
            checking: AtomicBool::new(false),
        }
    }

    /// Whether `max_fails` health checks in a row failed (never with 0).
    pub(crate) fn down(&self, max_fails: u32) -> bool {
        max_fails != 0 && self.fails.load(Ordering::Relaxed) >= max_fails
    }

    /// Starts the check loop unless one runs already (or checks are off).
    pub(crate) fn start_health_check(
        self: &Arc<Self>,
        health: &Arc<HealthCheck>,
        stop: &CancellationToken,
    ) {
        if health.interval.is_zero() || self.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.checking.store(false, Ordering::Release);
            return;
        };
        let proxy = self.clone();
        let health = health.clone();
        let stop = stop.clone();
        runtime.spawn(async move {
            // Ends when the upstream answers or the config is shut down.
            loop {
                if proxy.check(&health).await {
                    break;
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(health.interval) => {}
                }
            }
            proxy.checking.store(false, Ordering::Release);
        });
    }

    /// One health check; true if the upstream answered.
    async fn check(&self, health: &HealthCheck) -> bool {
        let mut query = OutgoingQuery::new(health.domain.clone(), Rtype::NS);
        query.rd = health.recursion_desired;
        let protocol = if self.tls {
            Protocol::Tls
        } else if health.tcp {
            Protocol::Tcp
        } else {
            Protocol::Udp
        };
        let options = ExchangeOptions {
            timeout: Some(CHECK_TIMEOUT),
            ..ExchangeOptions::new(protocol)
        };
        match self.upstream.exchange(&query, options).await {
            Ok(_) => {
                self.fails.store(0, Ordering::Relaxed);
                true
            }
            Err(e) => {
                metrics::counter!(
                    "coredns_proxy_healthcheck_failures_total",
                    "proxy_name" => "forward",
                    "to" => self.label.clone(),
                )
                .increment(1);
                let before = self
                    .fails
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                        Some(f.saturating_add(1))
                    })
                    .unwrap_or(u32::MAX);
                let fails = before.saturating_add(1);
                tracing::warn!(target: "plugin/forward", "health check of {} failed ({fails} in a row): {e}", self.label);
                false
            }
        }
    }
}
