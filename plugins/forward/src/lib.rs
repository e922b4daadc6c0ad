//! `forward`: proxies queries to upstream resolvers, as CoreDNS's forward
//! plugin, over UDP, TCP and DNS-over-TLS with [`oxidns_net`].
//!
//! For each query under FROM (and not under an `except` name) the upstreams
//! are tried in the order of the `policy`, skipping those marked down, until
//! one answers or the overall deadline (5s, as CoreDNS) passes; the client
//! then gets SERVFAIL. An upstream is marked down after `max_fails` failed
//! health checks in a row; a failed exchange starts health checking it every
//! `health_check` interval until it answers again. When every upstream is
//! down one is tried at random anyway (or SERVFAIL at once with
//! `failfast_all_unhealthy_upstreams`).
//!
//! The query sent upstream is built from the request's fields (question,
//! flags, the current EDNS, which `bufsize` may have lowered) with a fresh ID;
//! the answer is encoded for the client with the client's ID and question.

mod config;
mod proxy;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oxidns_net::{ExchangeError, ExchangeOptions, OutgoingQuery, Protocol};
use oxidns_server::plugin::HookFuture;
use oxidns_server::proto::{Name, Rcode, Response, option_code};
use oxidns_server::rebinding::RebindingProtection;
use oxidns_server::{
    ConfigError, Handler, HandlerFuture, Lifecycle, Next, PluginEntry, PluginError, Request, Setup,
    Transport,
};
use tokio_util::sync::CancellationToken;

use crate::config::Policy;
use crate::proxy::{HealthCheck, Proxy};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "forward",
    setup,
};

/// The longest a client waits for an answer (CoreDNS's `defaultTimeout`).
const DEADLINE: Duration = Duration::from_secs(5);
/// Tries per query at most, over all upstreams: with upstreams that fail at
/// once (connection refused) the deadline alone would allow thousands.
const TRIES_PER_UPSTREAM: usize = 3;

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let forwards = setup
        .directives()
        .iter()
        .map(|directive| config::parse(setup, directive).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    for forward in forwards {
        setup.add_handler(forward.clone());
        setup.add_lifecycle(forward);
    }
    Ok(())
}

/// Options of one `forward` directive that shape each query.
#[derive(Clone, Copy, Debug, Default)]
struct Options {
    force_tcp: bool,
    prefer_udp: bool,
}

/// One `forward` directive.
struct Forward {
    from: Name,
    ignored: Vec<Name>,
    proxies: Vec<Arc<Proxy>>,
    policy: Policy,
    round_robin: AtomicUsize,
    options: Options,
    max_fails: u32,
    health: Arc<HealthCheck>,
    max_concurrent: usize,
    concurrent: AtomicUsize,
    next_rcodes: Vec<u16>,
    failover_rcodes: Vec<u16>,
    max_connect_attempts: u32,
    failfast: bool,
    /// `rebinding_protection`: answers with internal addresses are refused.
    rebinding: Option<RebindingProtection>,
    stop: CancellationToken,
}

/// Why no answer came back.
enum Failure {
    /// Every upstream is down and `failfast_all_unhealthy_upstreams` is set.
    NoHealthy,
    Upstream(ExchangeError),
}

/// Decrements the count of queries in flight when dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Handler for Forward {
    fn name(&self) -> &'static str {
        "forward"
    }

    // Makes its own answers (from upstreams) only.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        HandlerFuture::new(async move {
            if !self.matches(&request.query.qname) {
                return next.serve(request).await;
            }
            let _in_flight = if self.max_concurrent > 0 {
                let count = self.concurrent.fetch_add(1, Ordering::AcqRel) + 1;
                let guard = InFlight(&self.concurrent);
                if count > self.max_concurrent {
                    metrics::counter!("coredns_forward_max_concurrent_rejects_total").increment(1);
                    return Ok(Response::new(Rcode::REFUSED));
                }
                Some(guard)
            } else {
                None
            };
            let query = OutgoingQuery::from_query(&request.query);
            let outcome = tokio::time::timeout(DEADLINE, self.forward(&query, request.transport))
                .await
                .unwrap_or(Err(Failure::Upstream(ExchangeError::Timeout)));
            let (mut response, upstream) = match outcome {
                Ok(answer) => answer,
                Err(Failure::NoHealthy) => {
                    return Err(PluginError::new("forward", "no healthy proxies"));
                }
                Err(Failure::Upstream(e)) => {
                    let name = oxidns_server::proto::name_text(&request.query.qname);
                    return Err(PluginError::new(
                        "forward",
                        format!("{name} {}: {e}", request.query.qtype),
                    ));
                }
            };
            request.metadata.set("forward/upstream", upstream);
            let rcode = response.rcode.to_int();
            if self.next_rcodes.contains(&rcode) && !next.is_empty() {
                return next.serve(request).await;
            }
            // Padding is for the upstream link (RFC 7830 §4), not the client's.
            response
                .edns_options
                .retain(|o| o.code != option_code::PADDING);
            Ok(match &self.rebinding {
                Some(rule) => rule.check("forward", &request.query.qname, response),
                None => response,
            })
        })
    }
}

impl Forward {
    /// Under FROM, and FROM itself or not under an `except` name.
    fn matches(&self, qname: &Name) -> bool {
        if !qname.ends_with(&self.from) {
            return false;
        }
        *qname == self.from || !self.ignored.iter().any(|i| qname.ends_with(i))
    }

    /// The upstreams in the order the policy gives for this query.
    fn list(&self) -> Vec<Arc<Proxy>> {
        let mut list = self.proxies.clone();
        match self.policy {
            Policy::Random => {
                use rand::seq::SliceRandom;
                list.shuffle(&mut rand::rng());
            }
            Policy::RoundRobin => {
                let start = self.round_robin.fetch_add(1, Ordering::Relaxed);
                let len = list.len();
                list.rotate_left(start % len);
            }
            Policy::Sequential => {}
        }
        list
    }

    /// The transport to `proxy` for a query that came over `client`.
    fn protocol(&self, proxy: &Proxy, client: Transport) -> Protocol {
        if proxy.tls {
            Protocol::Tls
        } else if self.options.force_tcp {
            Protocol::Tcp
        } else if self.options.prefer_udp || client == Transport::Udp {
            Protocol::Udp
        } else {
            Protocol::Tcp
        }
    }

    /// CoreDNS's loop: walk the list, skip upstreams that are down, start
    /// health checks on failures, until an answer or the deadline.
    async fn forward(
        &self,
        query: &OutgoingQuery,
        client: Transport,
    ) -> Result<(Response, String), Failure> {
        let list = self.list();
        let deadline = Instant::now() + DEADLINE;
        let max_tries = TRIES_PER_UPSTREAM * list.len();
        let mut last_error = None;
        let mut index = 0;
        let mut fails = 0;
        let mut attempts = 0;
        for _ in 0..max_tries * 2 {
            if Instant::now() >= deadline || attempts >= max_tries {
                break;
            }
            if index >= list.len() {
                index = 0;
                fails = 0;
            }
            let mut proxy = &list[index];
            index += 1;
            if proxy.down(self.max_fails) {
                fails += 1;
                if fails < list.len() {
                    continue;
                }
                metrics::counter!("coredns_forward_healthcheck_broken_total").increment(1);
                if self.failfast {
                    return Err(Failure::NoHealthy);
                }
                // Health checking looks broken: try any upstream.
                proxy = &self.proxies[rand::random_range(0..self.proxies.len())];
            }
            let protocol = self.protocol(proxy, client);
            let options = ExchangeOptions {
                tcp_on_truncation: self.options.prefer_udp && protocol == Protocol::Udp,
                ..ExchangeOptions::new(protocol)
            };
            attempts += 1;
            let started = Instant::now();
            match proxy.upstream.exchange(query, options).await {
                Err(e) => {
                    tracing::debug!(target: "plugin/forward", upstream = %proxy.label, "{e}");
                    if self.max_fails != 0 {
                        proxy.start_health_check(&self.health, &self.stop);
                    }
                    last_error = Some(e);
                    if self.max_connect_attempts > 0
                        && attempts >= self.max_connect_attempts as usize
                    {
                        break;
                    }
                }
                Ok(exchanged) => {
                    let response = exchanged.response.response;
                    let rcode = response.rcode.to_int();
                    metrics::histogram!(
                        "coredns_proxy_request_duration_seconds",
                        "proxy_name" => "forward",
                        "to" => proxy.label.clone(),
                        "rcode" => config::rcode_text(rcode),
                    )
                    .record(started.elapsed().as_secs_f64());
                    if self.failover_rcodes.contains(&rcode) && fails + 1 < list.len() {
                        fails += 1;
                        continue;
                    }
                    return Ok((response, proxy.label.clone()));
                }
            }
        }
        Err(Failure::Upstream(
            last_error.unwrap_or(ExchangeError::Timeout),
        ))
    }
}

impl Lifecycle for Forward {
    fn shutdown(&self) -> HookFuture<'_, ()> {
        self.stop.cancel();
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests;
