//! `ready [ADDRESS]`: `GET /ready` answers 200 `OK` once every plugin of the
//! running configuration that reports readiness is ready (zones loaded,
//! Kubernetes synced …), else 503 with the names of those that are not.

use std::sync::{Arc, Mutex};

use oxidns_server::http::{self, Reply, Route};
use oxidns_server::{ConfigError, HookFuture, Lifecycle, PluginEntry, Setup, state};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "ready",
    setup,
};

const DEFAULT_ADDRESS: &str = ":8181";

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?;
    directive.no_block()?;
    let args = directive.args_between(0, 1)?;
    let text = args.first().map_or(DEFAULT_ADDRESS, |t| t.text.as_str());
    let addr = http::parse_address(text).map_err(|e| directive.error(e))?;
    setup.add_lifecycle(Arc::new(Ready {
        addr,
        route: Mutex::new(None),
    }));
    Ok(())
}

struct Ready {
    addr: std::net::SocketAddr,
    route: Mutex<Option<Route>>,
}

/// The answer to `GET /ready` for the process as it is now.
pub fn report() -> Reply {
    match state::not_ready() {
        None => Reply::text(503, "no configuration is being served\n"),
        Some(waiting) if waiting.is_empty() => Reply::text(200, "OK"),
        Some(waiting) => Reply::text(503, format!("{}\n", waiting.join(", "))),
    }
}

impl Lifecycle for Ready {
    fn startup(&self) -> HookFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let route = http::register(self.addr, "/ready", Arc::new(report))
                .await
                .map_err(|e| e.to_string())?;
            *self.route.lock().unwrap_or_else(|e| e.into_inner()) = Some(route);
            Ok(())
        })
    }

    fn shutdown(&self) -> HookFuture<'_, ()> {
        self.route.lock().unwrap_or_else(|e| e.into_inner()).take();
        Box::pin(std::future::ready(()))
    }
}

/// Held by the tests that start a server or read whether one runs: the
/// running server is process-wide state, and tests run side by side.
#[cfg(test)]
static RUNNING_SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[cfg(test)]
mod tests {
    use super::*;
    use oxidns_server::test_util::config_error;

    #[test]
    fn without_a_running_server_it_is_not_ready() {
        let _alone = RUNNING_SERVER.blocking_lock();
        assert_eq!(report().status, 503);
    }

    #[test]
    fn mistakes_are_refused_at_their_line() {
        assert_eq!(
            config_error(". {\n ready localhost\n}", &[PLUGIN]),
            "Corefile:2: ready: invalid address 'localhost': expected [HOST]:PORT"
        );
        assert_eq!(
            config_error(". {\n ready :1 :2\n}", &[PLUGIN]),
            "Corefile:2: ready: takes 0 to 1 arguments, got 2"
        );
    }
}

#[cfg(test)]
mod end_to_end {
    use super::*;
    use oxidns_server::test_util::config;
    use oxidns_server::{Limits, Server};
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A plugin that becomes ready when told to.
    struct Slowpoke(Arc<AtomicBool>);

    impl Lifecycle for Slowpoke {
        fn ready(&self) -> bool {
            self.0.load(Ordering::Relaxed)
        }
    }

    static READY: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

    fn slowpoke_setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
        let flag = READY
            .get_or_init(|| Arc::new(AtomicBool::new(false)))
            .clone();
        setup.add_lifecycle(Arc::new(Slowpoke(flag)));
        Ok(())
    }

    const SLOWPOKE: PluginEntry = PluginEntry {
        name: "slowpoke",
        setup: slowpoke_setup,
    };

    async fn get(addr: std::net::SocketAddr) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn ready_goes_from_503_with_the_waiting_plugin_to_200() {
        let _alone = RUNNING_SERVER.lock().await;
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let corefile =
            format!("127.0.0.1:0 {{\n bind 127.0.0.1\n ready 127.0.0.1:{port}\n slowpoke\n}}");
        let plugins = [PLUGIN, SLOWPOKE, oxidns_plugin_bind_for_tests()];
        let server = Server::start(config(&corefile, &plugins).unwrap(), Limits::default())
            .await
            .unwrap();
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let waiting = get(addr).await;
        assert!(waiting.starts_with("HTTP/1.1 503"), "{waiting}");
        assert!(waiting.ends_with("slowpoke\n"), "{waiting}");
        READY.get().unwrap().store(true, Ordering::Relaxed);
        let ready = get(addr).await;
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
        assert!(ready.ends_with("OK"), "{ready}");
        server.shutdown(std::time::Duration::from_secs(1)).await;
    }

    /// `bind` without depending on its crate: the test only needs loopback.
    fn oxidns_plugin_bind_for_tests() -> PluginEntry {
        fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
            setup.settings().listen_addrs = vec!["127.0.0.1".parse().unwrap()];
            Ok(())
        }
        PluginEntry {
            name: "bind",
            setup,
        }
    }
}
