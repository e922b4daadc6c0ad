//! A test Kubernetes API server: list and watch of Namespaces, Services,
//! EndpointSlices and Pods over HTTP/1.1 on loopback, with the JSON the real
//! API server sends (objects serialised from `k8s-openapi`).
//!
//! - list: `GET /api/v1/services?limit=N&continue=T` → a `ServiceList` with
//!   `metadata.resourceVersion` (items without `kind`/`apiVersion`, as the
//!   real server sends them), paginated with `continue`.
//! - watch: `?watch=1&resourceVersion=RV[&allowWatchBookmarks=true][&timeoutSeconds=N]`
//!   → a chunked stream of `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK","object":…}`
//!   lines; a resourceVersion older than the last [`ApiServer::compact`]
//!   gets an `ERROR` event with a 410 `Status` ("too old resource version").
//! - `labelSelector` and `fieldSelector` (`status.phase!=Succeeded`, any
//!   dotted field with `=`, `==`, `!=`) on lists and watches; as on the real
//!   server, an object modified into the selection is ADDED to a watch and
//!   one modified out of it is DELETED.
//! - discovery (`/api`, `/apis`, `/api/v1`, `/apis/discovery.k8s.io/v1`) so
//!   that `kubectl` can talk to it.
//!
//! [`ApiServer::stop`] drops the listener and every connection (an outage);
//! [`ApiServer::restart`] listens again on the same port.
//!
//! Only for tests: built with `cfg(test)` or the `test-api-server` feature.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::Resource;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The resources served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Namespaces,
    Services,
    EndpointSlices,
    Pods,
}

impl Kind {
    fn of<K: Resource>() -> Kind {
        match K::KIND {
            "Namespace" => Kind::Namespaces,
            "Service" => Kind::Services,
            "EndpointSlice" => Kind::EndpointSlices,
            "Pod" => Kind::Pods,
            other => panic!("the test API server does not serve {other}"),
        }
    }

    fn list_kind(self) -> &'static str {
        match self {
            Kind::Namespaces => "NamespaceList",
            Kind::Services => "ServiceList",
            Kind::EndpointSlices => "EndpointSliceList",
            Kind::Pods => "PodList",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Kind::EndpointSlices => "discovery.k8s.io/v1",
            _ => "v1",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Kind::Namespaces => "Namespace",
            Kind::Services => "Service",
            Kind::EndpointSlices => "EndpointSlice",
            Kind::Pods => "Pod",
        }
    }

    /// The kind of a request path, and the namespace it is limited to.
    fn from_path(path: &str) -> Option<(Kind, Option<String>)> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (namespace, plural) = match parts.as_slice() {
            ["api", "v1", plural] | ["apis", "discovery.k8s.io", "v1", plural] => (None, *plural),
            ["api", "v1", "namespaces", ns, plural]
            | ["apis", "discovery.k8s.io", "v1", "namespaces", ns, plural] => {
                (Some((*ns).to_owned()), *plural)
            }
            _ => return None,
        };
        let group = parts[0] == "apis";
        let kind = match (group, plural) {
            (false, "namespaces") if namespace.is_none() => Kind::Namespaces,
            (false, "services") => Kind::Services,
            (false, "pods") => Kind::Pods,
            (true, "endpointslices") => Kind::EndpointSlices,
            _ => return None,
        };
        Some((kind, namespace))
    }
}

struct Event {
    rv: u64,
    kind: Kind,
    kind_text: &'static str,
    object: Value,
    /// The object before a MODIFIED event, to tell selectors' transitions.
    previous: Option<Value>,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<(Kind, String, String), Value>,
    log: Vec<Event>,
    /// Watches from a resourceVersion below this get 410 Gone.
    compacted: u64,
    /// Requests seen (method and path with query), for assertions.
    requests: Vec<String>,
}

struct State {
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
}

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The server; dropping it stops it.
pub struct ApiServer {
    state: Arc<State>,
    addr: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl ApiServer {
    /// Listens on 127.0.0.1 on a free port.
    pub async fn start() -> ApiServer {
        let (changed, _) = watch::channel(0);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound");
        let server = ApiServer {
            state: Arc::new(State {
                inner: Mutex::new(Inner::default()),
                changed,
            }),
            addr,
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        server.serve(listener);
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests served so far (`GET /api/v1/services?…`).
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().requests.clone()
    }

    fn serve(&self, listener: TcpListener) {
        let state = self.state.clone();
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                let connection = tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, request)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                let mut tasks = tasks.lock().unwrap_or_else(|e| e.into_inner());
                tasks.retain(|t| !t.is_finished());
                tasks.push(connection);
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(accept);
    }

    /// An outage: closes the listener and every open connection (watches included).
    pub fn stop(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }

    /// Listens again on the same port, with the same objects.
    pub async fn restart(&self) {
        self.stop();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if tokio::time::Instant::now() > deadline => panic!("rebind: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        self.serve(listener);
    }

    /// Forgets the event history: watches from an older resourceVersion get 410 Gone.
    pub fn compact(&self) {
        let mut inner = self.state.lock();
        inner.compacted = inner.rv + 1;
        inner.log.clear();
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state.lock().rv
    }

    /// Creates or replaces an object (ADDED or MODIFIED), as `kubectl apply` would.
    pub fn apply<K: Resource + serde::Serialize>(&self, object: &K) {
        let kind = Kind::of::<K>();
        let mut value = serde_json::to_value(object).expect("serialisable");
        let name = value["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let namespace = value["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let mut inner = self.state.lock();
        inner.rv += 1;
        let rv = inner.rv;
        let metadata = value["metadata"].as_object_mut().expect("metadata");
        metadata.insert("resourceVersion".into(), json!(rv.to_string()));
        metadata
            .entry("uid")
            .or_insert_with(|| json!(format!("00000000-0000-0000-0000-{rv:012}")));
        metadata
            .entry("creationTimestamp")
            .or_insert_with(|| json!("2024-01-01T00:00:00Z"));
        let key = (kind, namespace, name);
        let previous = inner.objects.insert(key, value.clone());
        let kind_text = if previous.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        inner.log.push(Event {
            rv,
            kind,
            kind_text,
            object: value,
            previous,
        });
        drop(inner);
        self.state.changed.send_replace(rv);
    }

    /// Deletes an object (DELETED); `namespace` is "" for Namespaces.
    pub fn delete<K: Resource>(&self, namespace: &str, name: &str) {
        let kind = Kind::of::<K>();
        let mut inner = self.state.lock();
        let Some(mut value) = inner
            .objects
            .remove(&(kind, namespace.to_owned(), name.to_owned()))
        else {
            return;
        };
        inner.rv += 1;
        let rv = inner.rv;
        value["metadata"]["resourceVersion"] = json!(rv.to_string());
        inner.log.push(Event {
            rv,
            kind,
            kind_text: "DELETED",
            object: value,
            previous: None,
        });
        drop(inner);
        self.state.changed.send_replace(rv);
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed())
        .expect("a valid response")
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn query_params(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=b,c!=d,e,!f` against an object's labels.
fn selector_matches(selector: &str, object: &Value) -> bool {
    let labels = &object["metadata"]["labels"];
    selector
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .all(|requirement| {
            if let Some((k, v)) = requirement.split_once("!=") {
                labels[k.trim()].as_str() != Some(v.trim())
            } else if let Some((k, v)) = requirement
                .split_once("==")
                .or_else(|| requirement.split_once('='))
            {
                labels[k.trim()].as_str() == Some(v.trim())
            } else if let Some(k) = requirement.strip_prefix('!') {
                labels.get(k.trim()).is_none()
            } else {
                labels.get(requirement).is_some()
            }
        })
}

/// `status.phase!=Succeeded,metadata.name=x` against an object's fields.
fn field_selector_matches(selector: &str, object: &Value) -> bool {
    let field = |path: &str| {
        path.split('.')
            .try_fold(object, |value, part| value.get(part))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    selector
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .all(|requirement| {
            if let Some((k, v)) = requirement.split_once("!=") {
                field(k.trim()) != v.trim()
            } else if let Some((k, v)) = requirement
                .split_once("==")
                .or_else(|| requirement.split_once('='))
            {
                field(k.trim()) == v.trim()
            } else {
                false
            }
        })
}

fn handle(state: &Arc<State>, request: Request<hyper::body::Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    state.lock().requests.push(format!(
        "{} {}{}",
        request.method(),
        path,
        query
            .as_deref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default()
    ));
    if request.method() != hyper::Method::GET {
        return full(
            StatusCode::METHOD_NOT_ALLOWED,
            &status(405, "MethodNotAllowed", "the test API server only reads"),
        );
    }
    if let Some(discovery) = discovery(&path) {
        return full(StatusCode::OK, &discovery);
    }
    let Some((kind, namespace)) = Kind::from_path(&path) else {
        return full(
            StatusCode::NOT_FOUND,
            &status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        );
    };
    let params = query_params(query.as_deref());
    let selector = params.get("labelSelector").cloned().unwrap_or_default();
    let fields = params.get("fieldSelector").cloned().unwrap_or_default();
    let wanted = move |object: &Value| {
        namespace
            .as_deref()
            .is_none_or(|ns| object["metadata"]["namespace"].as_str() == Some(ns))
            && selector_matches(&selector, object)
            && field_selector_matches(&fields, object)
    };
    let watching = matches!(params.get("watch").map(String::as_str), Some("1" | "true"));
    if watching {
        return watch_stream(state, kind, &params, wanted);
    }
    list(state, kind, &params, wanted)
}

fn list(
    state: &State,
    kind: Kind,
    params: &BTreeMap<String, String>,
    wanted: impl Fn(&Value) -> bool,
) -> Response<Body> {
    let inner = state.lock();
    let offset: usize = params
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let matching = || {
        inner
            .objects
            .range((kind, String::new(), String::new())..)
            .take_while(|((k, _, _), _)| *k == kind)
            .map(|(_, v)| v)
            .filter(|v| wanted(v))
    };
    let total = matching().count();
    // Only the page is copied: a large list is read in many pages.
    let page: Vec<Value> = matching()
        .skip(offset)
        .take(limit)
        .map(|v| {
            // Items of a list carry no kind or apiVersion.
            let mut item = v.clone();
            if let Some(map) = item.as_object_mut() {
                map.remove("kind");
                map.remove("apiVersion");
            }
            item
        })
        .collect();
    let mut metadata = json!({ "resourceVersion": inner.rv.to_string() });
    if offset.saturating_add(limit) < total {
        metadata["continue"] = json!((offset + limit).to_string());
        metadata["remainingItemCount"] = json!(total - offset - limit);
    }
    full(
        StatusCode::OK,
        &json!({
            "kind": kind.list_kind(),
            "apiVersion": kind.api_version(),
            "metadata": metadata,
            "items": page,
        }),
    )
}

fn watch_stream(
    state: &Arc<State>,
    kind: Kind,
    params: &BTreeMap<String, String>,
    wanted: impl Fn(&Value) -> bool + Send + 'static,
) -> Response<Body> {
    let from: u64 = params
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or_else(|| state.lock().rv);
    let bookmarks = params.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let state = state.clone();
    let mut changed = state.changed.subscribe();
    tokio::spawn(async move {
        let line = |value: Value| Bytes::from(format!("{value}\n"));
        let compacted = state.lock().compacted;
        if from != 0 && from < compacted {
            let gone = status(
                410,
                "Expired",
                &format!("too old resource version: {from} ({compacted})"),
            );
            let _ = tx
                .send(line(json!({ "type": "ERROR", "object": gone })))
                .await;
            return;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut sent = from;
        loop {
            let (events, rv) = {
                let inner = state.lock();
                let events: Vec<Value> = inner
                    .log
                    .iter()
                    .filter(|e| e.rv > sent && e.kind == kind)
                    .filter_map(|e| {
                        let now = wanted(&e.object);
                        let before = e.previous.as_ref().map(&wanted);
                        // Moving into or out of the selection is an addition or a deletion.
                        let kind_text = match (before, now) {
                            (Some(false), true) => "ADDED",
                            (Some(true), false) => "DELETED",
                            (_, true) => e.kind_text,
                            (_, false) => return None,
                        };
                        Some(json!({ "type": kind_text, "object": e.object }))
                    })
                    .collect();
                (events, inner.rv)
            };
            let any = !events.is_empty();
            for event in events {
                if tx.send(line(event)).await.is_err() {
                    return;
                }
            }
            if !any && bookmarks && rv > sent {
                let bookmark = json!({
                    "type": "BOOKMARK",
                    "object": {
                        "kind": kind.kind(),
                        "apiVersion": kind.api_version(),
                        "metadata": { "resourceVersion": rv.to_string() },
                    }
                });
                if tx.send(line(bookmark)).await.is_err() {
                    return;
                }
            }
            sent = rv;
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(StreamBody::new(stream).boxed())
        .expect("a valid response")
}

fn resource(name: &str, kind: &str, namespaced: bool, short: &[&str]) -> Value {
    json!({
        "name": name,
        "singularName": kind.to_ascii_lowercase(),
        "namespaced": namespaced,
        "kind": kind,
        "verbs": ["get", "list", "watch"],
        "shortNames": short,
    })
}

/// The discovery documents kubectl reads first.
fn discovery(path: &str) -> Option<Value> {
    Some(match path.trim_end_matches('/') {
        "/api" => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443" }],
        }),
        "/apis" => json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [{
                "name": "discovery.k8s.io",
                "versions": [{ "groupVersion": "discovery.k8s.io/v1", "version": "v1" }],
                "preferredVersion": { "groupVersion": "discovery.k8s.io/v1", "version": "v1" },
            }],
        }),
        "/api/v1" => json!({
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [
                resource("namespaces", "Namespace", false, &["ns"]),
                resource("services", "Service", true, &["svc"]),
                resource("pods", "Pod", true, &["po"]),
            ],
        }),
        "/apis/discovery.k8s.io/v1" => json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "discovery.k8s.io/v1",
            "resources": [resource("endpointslices", "EndpointSlice", true, &[])],
        }),
        "/version" => json!({
            "major": "1",
            "minor": "35",
            "gitVersion": "v1.35.0",
            "platform": "linux/amd64",
        }),
        _ => return None,
    })
}
