//! `health [ADDRESS] { lameduck DURATION }`: `GET /health` answers 200 `OK`
//! while the process runs; with `lameduck`, a shutdown keeps serving DNS for
//! DURATION first, so load balancers can move traffic away.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use oxidns_server::duration::parse_go_duration;
use oxidns_server::http::{self, Reply, Route};
use oxidns_server::{ConfigError, HookFuture, Lifecycle, PluginEntry, Setup};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "health",
    setup,
};

const DEFAULT_ADDRESS: &str = ":8080";

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?;
    let args = directive.args_between(0, 1)?;
    let text = args.first().map_or(DEFAULT_ADDRESS, |t| t.text.as_str());
    let addr = http::parse_address(text).map_err(|e| directive.error(e))?;
    let mut lameduck = Duration::ZERO;
    for line in &directive.block {
        match line.name.text.as_str() {
            "lameduck" => {
                let text = &line.args_between(1, 1)?[0].text;
                lameduck = parse_go_duration(text)
                    .ok_or_else(|| line.error(format!("invalid duration '{text}'")))?;
            }
            _ => return Err(directive.unknown_property(line)),
        }
    }
    setup.add_lifecycle(Arc::new(Health {
        addr,
        lameduck,
        route: Mutex::new(None),
        stop: CancellationToken::new(),
    }));
    Ok(())
}

struct Health {
    addr: SocketAddr,
    lameduck: Duration,
    route: Mutex<Option<Route>>,
    stop: CancellationToken,
}

/// How often the endpoint probes itself, and how long a probe may take, as CoreDNS.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks our own `/health` once a second, as CoreDNS does, so that an
/// overloaded process shows in `coredns_health_request_duration_seconds`
/// and `coredns_health_request_failures_total`.
async fn probe_forever(target: SocketAddr, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(PROBE_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let started = Instant::now();
        match tokio::time::timeout(PROBE_TIMEOUT, probe(target)).await {
            Ok(true) => metrics::histogram!("coredns_health_request_duration_seconds")
                .record(started.elapsed().as_secs_f64()),
            _ => metrics::counter!("coredns_health_request_failures_total").increment(1),
        }
    }
}

/// One `GET /health`; true on a 200 answer.
async fn probe(target: SocketAddr) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(target).await else {
        return false;
    };
    let request = b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return false;
    }
    let mut status = [0u8; 12];
    stream.read_exact(&mut status).await.is_ok() && &status[9..12] == b"200"
}

/// Where to reach a listener bound to `bound`: loopback for a wildcard address.
fn reachable(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), bound.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), bound.port())
        }
        _ => bound,
    }
}

impl Lifecycle for Health {
    fn startup(&self) -> HookFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let route = http::register(self.addr, "/health", Arc::new(|| Reply::text(200, "OK")))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(probe_forever(reachable(route.bound()), self.stop.clone()));
            *self.route.lock().unwrap_or_else(|e| e.into_inner()) = Some(route);
            Ok(())
        })
    }

    fn shutdown(&self) -> HookFuture<'_, ()> {
        self.stop.cancel();
        self.route.lock().unwrap_or_else(|e| e.into_inner()).take();
        Box::pin(std::future::ready(()))
    }

    fn lameduck(&self) -> Duration {
        self.lameduck
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxidns_server::test_util::{config, config_error};

    #[test]
    fn default_address_is_port_8080_everywhere() {
        let config = config(". {\n health\n}", &[PLUGIN]).unwrap();
        assert_eq!(config.blocks[0].lifecycles.len(), 1);
    }

    #[test]
    fn lameduck_is_reported_to_the_server() {
        let config = config(". {\n health :0 {\n  lameduck 3s\n }\n}", &[PLUGIN]).unwrap();
        let (_, lifecycle) = &config.blocks[0].lifecycles[0];
        assert_eq!(lifecycle.lameduck(), Duration::from_secs(3));
    }

    #[test]
    fn mistakes_are_refused_at_their_line() {
        assert_eq!(
            config_error(". {\n health 8080\n}", &[PLUGIN]),
            "Corefile:2: health: invalid address '8080': expected [HOST]:PORT"
        );
        assert_eq!(
            config_error(". {\n health {\n  lameduck soon\n }\n}", &[PLUGIN]),
            "Corefile:3: lameduck: invalid duration 'soon'"
        );
        assert_eq!(
            config_error(". {\n health {\n  bogus\n }\n}", &[PLUGIN]),
            "Corefile:3: health: unknown property 'bogus'"
        );
    }
}
