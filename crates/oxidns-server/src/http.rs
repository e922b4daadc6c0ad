//! The HTTP endpoints of `health`, `ready` and `prometheus`.
//!
//! Listeners are shared by address across server blocks and survive
//! configuration reloads: a plugin registers a path on an address and keeps
//! the returned [`Route`]; the listener stays open while any route on it is
//! registered. A reload registers the new plugins' routes before the old
//! ones are dropped, so the address never closes in between (CoreDNS closes
//! and reopens it, failing health checks during reloads).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

/// What a handler answers.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// Answers a GET of one path.
pub type Handler = Arc<dyn Fn() -> Reply + Send + Sync>;

struct Endpoint {
    /// path → (registration id, handler); the newest registration wins.
    routes: HashMap<String, (u64, Handler)>,
    stop: CancellationToken,
    bound: SocketAddr,
}

struct Registry {
    next_id: u64,
    endpoints: HashMap<SocketAddr, Arc<Mutex<Endpoint>>>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn with_registry<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let mut guard = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let registry = guard.get_or_insert_with(|| Registry {
        next_id: 1,
        endpoints: HashMap::new(),
    });
    f(registry)
}

/// A registered path; dropping it unregisters the path, and closes the
/// listener when it was the last one there.
pub struct Route {
    addr: SocketAddr,
    path: String,
    id: u64,
    bound: SocketAddr,
}

impl Route {
    /// The address the listener is bound to (the port the kernel chose for port 0).
    pub fn bound(&self) -> SocketAddr {
        self.bound
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        with_registry(|registry| {
            let Some(endpoint) = registry.endpoints.get(&self.addr).cloned() else {
                return;
            };
            let mut endpoint = endpoint.lock().unwrap_or_else(|e| e.into_inner());
            if endpoint
                .routes
                .get(&self.path)
                .is_some_and(|(id, _)| *id == self.id)
            {
                endpoint.routes.remove(&self.path);
            }
            if endpoint.routes.is_empty() {
                endpoint.stop.cancel();
                registry.endpoints.remove(&self.addr);
            }
        });
    }
}

/// Parses CoreDNS's address forms: `:8080`, `localhost:9153`,
/// `127.0.0.1:8181`, `[::1]:8080`. An empty host means every address.
pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
    let bad = || format!("invalid address '{text}': expected [HOST]:PORT");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let ip = match host.trim_start_matches('[').trim_end_matches(']') {
        "" => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        other => other.parse().map_err(|_| bad())?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// Serves `handler` for GET `path` on `addr`, opening the listener if needed.
pub async fn register(addr: SocketAddr, path: &str, handler: Handler) -> std::io::Result<Route> {
    let existing = with_registry(|registry| {
        let id = registry.next_id;
        registry.next_id += 1;
        let endpoint = registry.endpoints.get(&addr).cloned();
        if let Some(endpoint) = &endpoint {
            let mut endpoint = endpoint.lock().unwrap_or_else(|e| e.into_inner());
            endpoint
                .routes
                .insert(path.to_owned(), (id, handler.clone()));
            return Some(Route {
                addr,
                path: path.to_owned(),
                id,
                bound: endpoint.bound,
            });
        }
        None
    });
    if let Some(route) = existing {
        return Ok(route);
    }
    let listener = bind(addr)?;
    let bound = listener.local_addr()?;
    let stop = CancellationToken::new();
    let endpoint = Arc::new(Mutex::new(Endpoint {
        routes: HashMap::new(),
        stop: stop.clone(),
        bound,
    }));
    let route = with_registry(|registry| {
        let id = registry.next_id;
        registry.next_id += 1;
        endpoint
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .routes
            .insert(path.to_owned(), (id, handler));
        registry.endpoints.insert(addr, endpoint.clone());
        Route {
            addr,
            path: path.to_owned(),
            id,
            bound,
        }
    });
    tokio::spawn(accept(listener, endpoint, stop));
    Ok(route)
}

fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(!addr.ip().is_unspecified())?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| std::io::Error::new(e.kind(), format!("listen on {addr}: {e}")))?;
    socket.listen(128)?;
    tokio::net::TcpListener::from_std(socket.into())
}

async fn accept(
    listener: tokio::net::TcpListener,
    endpoint: Arc<Mutex<Endpoint>>,
    stop: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let endpoint = endpoint.clone();
                async move { Ok::<_, Infallible>(respond(&endpoint, &request)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(endpoint: &Mutex<Endpoint>, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let handler = endpoint
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .routes
        .get(request.uri().path())
        .map(|(_, handler)| handler.clone());
    let reply = match handler {
        Some(handler) => handler(),
        None => Reply::text(404, "404 page not found\n"),
    };
    Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("Content-Type", reply.content_type)
        .body(Full::new(Bytes::from(reply.body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> Option<String> {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        Some(response)
    }

    fn ok(body: &'static str) -> Handler {
        Arc::new(move || Reply::text(200, body))
    }

    #[test]
    fn coredns_address_forms_parse() {
        assert_eq!(
            parse_address(":8080").unwrap(),
            "[::]:8080".parse().unwrap()
        );
        assert_eq!(
            parse_address("localhost:9153").unwrap(),
            "127.0.0.1:9153".parse().unwrap()
        );
        assert_eq!(
            parse_address("[::1]:8181").unwrap(),
            "[::1]:8181".parse().unwrap()
        );
        assert!(parse_address("8080").is_err());
        assert!(parse_address("host:port").is_err());
    }

    #[tokio::test]
    async fn routes_share_a_listener_and_a_newer_route_replaces_an_older_one() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let first = register(addr, "/health", ok("first")).await.unwrap();
        let bound = first.bound();
        // Same configured address: same listener.
        let other = register(addr, "/ready", ok("ready")).await.unwrap();
        assert_eq!(other.bound(), bound);
        let newer = register(addr, "/health", ok("newer")).await.unwrap();
        assert!(get(bound, "/health").await.unwrap().ends_with("newer"));
        // Dropping the replaced route does not remove the newer one.
        drop(first);
        assert!(get(bound, "/health").await.unwrap().ends_with("newer"));
        assert!(
            get(bound, "/nope")
                .await
                .unwrap()
                .starts_with("HTTP/1.1 404")
        );
        drop(newer);
        drop(other);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            get(bound, "/ready").await.is_none(),
            "the last route closed the listener"
        );
    }
}
