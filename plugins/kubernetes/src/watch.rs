//! The API client and the watchers that keep the store up to date.
//!
//! One kube-runtime watcher per resource (Namespaces, Services,
//! EndpointSlices, and Pods with `pods verified`). The watcher lists, then watches from the list's
//! resourceVersion; on `410 Gone` it lists again (kube-runtime resets to its
//! initial state), and on other errors it retries with backoff. While it
//! cannot reach the API the store keeps the last known state, and queries
//! are answered from it.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Config};
use oxidns_server::{HookFuture, Lifecycle};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::store::{Listed, Store, listed_key};
use crate::{Connection, Options, PodMode};

const NAMESPACES: u8 = 1;
const SERVICES: u8 = 2;
const SLICES: u8 = 4;
const PODS: u8 = 8;

/// Pods that hold no address any more (CoreDNS's pod list leaves them out too).
const RUNNING_PODS: &str = "status.phase!=Succeeded,status.phase!=Failed,status.phase!=Unknown";

/// The store and its sync state, shared by the handler and the watchers.
pub(crate) struct Shared {
    pub store: RwLock<Store>,
    /// Bits of the resources whose first list completed.
    synced_bits: AtomicU8,
    wanted_bits: AtomicU8,
    synced: AtomicBool,
    notify: Notify,
}

impl Shared {
    pub(crate) fn new(store: RwLock<Store>) -> Shared {
        Shared {
            store,
            synced_bits: AtomicU8::new(0),
            wanted_bits: AtomicU8::new(NAMESPACES | SERVICES | SLICES),
            synced: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }

    /// Whether every watched resource has been listed once.
    pub(crate) fn has_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    fn mark_synced(&self, bit: u8) {
        let bits = self.synced_bits.fetch_or(bit, Ordering::AcqRel) | bit;
        let wanted = self.wanted_bits.load(Ordering::Acquire);
        if bits & wanted == wanted && !self.synced.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
    }

    async fn wait_synced(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            if self.has_synced() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.has_synced();
            }
        }
    }
}

/// The lifecycle: builds the client and runs the watchers from start-up to shutdown.
pub(crate) struct Watcher {
    options: Options,
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Watcher {
    pub(crate) fn new(options: Options, shared: Arc<Shared>) -> Watcher {
        let mut wanted = NAMESPACES | SERVICES;
        if !options.no_endpoints {
            wanted |= SLICES;
        }
        if options.pods == PodMode::Verified {
            wanted |= PODS;
        }
        shared.wanted_bits.store(wanted, Ordering::Release);
        Watcher {
            options,
            shared,
            tasks: Mutex::new(Vec::new()),
        }
    }

    fn stop(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

impl Lifecycle for Watcher {
    fn startup(&self) -> HookFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let config = client_config(&self.options.connection).await?;
            let client = Client::try_from(config)
                .map_err(|e| format!("kubernetes: cannot create the API client: {e}"))?;
            self.stop();
            let mut tasks = Vec::new();
            let labels = self.options.labels.clone();
            let shared = &self.shared;
            let ns_config = match &self.options.namespace_labels {
                Some(selector) => watcher::Config::default().labels(selector),
                None => watcher::Config::default(),
            };
            tasks.push(spawn_watch(
                Api::<Namespace>::all(client.clone()),
                ns_config,
                shared.clone(),
                NAMESPACES,
                Store::apply_namespace,
                |store, o: &Namespace| {
                    store.delete_namespace(o.metadata.name.as_deref().unwrap_or(""))
                },
                Store::retain_namespaces,
            ));
            let config = || match &labels {
                Some(selector) => watcher::Config::default().labels(selector),
                None => watcher::Config::default(),
            };
            tasks.push(spawn_watch(
                Api::<Service>::all(client.clone()),
                config(),
                shared.clone(),
                SERVICES,
                Store::apply_service,
                |store, o: &Service| {
                    store.delete_service(
                        o.metadata.namespace.as_deref().unwrap_or(""),
                        o.metadata.name.as_deref().unwrap_or(""),
                    )
                },
                Store::retain_services,
            ));
            if self.options.pods == PodMode::Verified {
                // As CoreDNS: the `labels` selector applies to pods too.
                tasks.push(spawn_watch(
                    Api::<Pod>::all(client.clone()),
                    config().fields(RUNNING_PODS),
                    shared.clone(),
                    PODS,
                    Store::apply_pod,
                    Store::delete_pod,
                    Store::retain_pods,
                ));
            }
            if !self.options.no_endpoints {
                tasks.push(spawn_watch(
                    Api::<EndpointSlice>::all(client),
                    config(),
                    shared.clone(),
                    SLICES,
                    |store, o: &EndpointSlice| {
                        programming_duration(o);
                        store.apply_slice(o);
                    },
                    |store, o: &EndpointSlice| {
                        store.delete_slice(
                            o.metadata.namespace.as_deref().unwrap_or(""),
                            o.metadata.name.as_deref().unwrap_or(""),
                        )
                    },
                    Store::retain_slices,
                ));
            }
            *self.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
            let timeout = self.options.startup_timeout;
            if !self.shared.wait_synced(timeout).await {
                tracing::warn!(target: "plugin/kubernetes",
                    "starting server with unsynced Kubernetes API");
            }
            Ok(())
        })
    }

    fn shutdown(&self) -> HookFuture<'_, ()> {
        self.stop();
        Box::pin(std::future::ready(()))
    }

    fn ready(&self) -> bool {
        self.shared.has_synced()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The client configuration: `kubeconfig`, else `endpoint` (with `tls`), else in-cluster.
async fn client_config(connection: &Connection) -> Result<Config, String> {
    if let Some((path, context)) = &connection.kubeconfig {
        let kubeconfig = kube::config::Kubeconfig::read_from(path)
            .map_err(|e| format!("kubernetes: cannot read kubeconfig {}: {e}", path.display()))?;
        let options = kube::config::KubeConfigOptions {
            context: context.clone(),
            ..Default::default()
        };
        let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| format!("kubernetes: invalid kubeconfig {}: {e}", path.display()))?;
        if let Some(endpoint) = &connection.endpoint {
            config.cluster_url = endpoint
                .parse()
                .map_err(|e| format!("kubernetes: invalid endpoint '{endpoint}': {e}"))?;
        }
        return Ok(config);
    }
    if let Some(endpoint) = &connection.endpoint {
        let url = endpoint
            .parse()
            .map_err(|e| format!("kubernetes: invalid endpoint '{endpoint}': {e}"))?;
        let mut config = Config::new(url);
        if let Some((cert, key, ca)) = &connection.tls {
            let ca_pem = std::fs::read(ca)
                .map_err(|e| format!("kubernetes: cannot read {}: {e}", ca.display()))?;
            config.root_cert = Some(pem_blocks(&ca_pem));
            config.auth_info.client_certificate = Some(cert.display().to_string());
            config.auth_info.client_key = Some(key.display().to_string());
        }
        return Ok(config);
    }
    Config::incluster().map_err(|e| format!("kubernetes: no in-cluster configuration: {e}"))
}

/// The DER certificates of a PEM bundle.
fn pem_blocks(pem: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut inside = None::<String>;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN CERTIFICATE") {
            inside = Some(String::new());
        } else if line.starts_with("-----END CERTIFICATE") {
            if let Some(body) = inside.take()
                && let Some(der) = base64_decode(&body)
            {
                out.push(der);
            }
        } else if let Some(body) = inside.as_mut() {
            body.push_str(line);
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let bytes: Vec<u8> = text.bytes().filter(|b| *b != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            acc |= value(*b)? << (18 - 6 * i);
        }
        let n = chunk.len() * 6 / 8;
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// `coredns_kubernetes_dns_programming_duration_seconds`: from the slice's
/// last-change-trigger-time annotation to now.
fn programming_duration(slice: &EndpointSlice) {
    let Some(when) = slice
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("endpoints.kubernetes.io/last-change-trigger-time"))
    else {
        return;
    };
    let Ok(when) = when.parse::<jiff_like::Rfc3339>() else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let seconds = (now - when.0).max(0.0);
    let kind = if slice
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key("service.kubernetes.io/headless"))
    {
        "headless_with_selector"
    } else {
        "cluster_ip"
    };
    metrics::histogram!("coredns_kubernetes_dns_programming_duration_seconds", "service_kind" => kind)
        .record(seconds);
}

/// A minimal RFC 3339 parser for `2024-01-02T03:04:05Z` (fractions and offsets allowed).
mod jiff_like {
    pub struct Rfc3339(pub f64);

    impl std::str::FromStr for Rfc3339 {
        type Err = ();

        fn from_str(text: &str) -> Result<Self, ()> {
            let num = |s: &str| s.parse::<i64>().map_err(|_| ());
            let (date, time) = text.split_once(['T', 't']).ok_or(())?;
            let mut d = date.split('-');
            let (y, m, day) = (
                num(d.next().ok_or(())?)?,
                num(d.next().ok_or(())?)?,
                num(d.next().ok_or(())?)?,
            );
            let (clock, offset) = match time.find(['Z', 'z', '+', '-']) {
                Some(i) => (&time[..i], &time[i..]),
                None => return Err(()),
            };
            let mut c = clock.split(':');
            let (h, min) = (num(c.next().ok_or(())?)?, num(c.next().ok_or(())?)?);
            let sec: f64 = c.next().ok_or(())?.parse().map_err(|_| ())?;
            let offset_secs = if offset.eq_ignore_ascii_case("z") {
                0
            } else {
                let sign = if offset.starts_with('-') { -1 } else { 1 };
                let (oh, om) = offset[1..].split_once(':').ok_or(())?;
                sign * (num(oh)? * 3600 + num(om)? * 60)
            };
            // Days from civil (Howard Hinnant's algorithm).
            let y2 = if m <= 2 { y - 1 } else { y };
            let era = y2.div_euclid(400);
            let yoe = y2 - era * 400;
            let mp = (m + 9) % 12;
            let doy = (153 * mp + 2) / 5 + day - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            let days = era * 146097 + doe - 719468;
            let secs = days * 86400 + h * 3600 + min * 60 - offset_secs;
            Ok(Rfc3339(secs as f64 + sec))
        }
    }
}

/// Gives the memory freed after a list (its pages of JSON and the objects
/// decoded from them) back to the system. glibc keeps freed memory in its
/// arenas, and a list of 100,000 endpoints leaves tens of MiB there that the
/// process would otherwise keep as resident for good.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only returns free memory to
    // the kernel; it is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

type Apply<K> = fn(&mut Store, &K);

/// Runs one watcher until aborted, applying its events to the store.
fn spawn_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    shared: Arc<Shared>,
    bit: u8,
    apply: Apply<K>,
    delete: Apply<K>,
    retain: fn(&mut Store, &Listed),
) -> JoinHandle<()>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, config).default_backoff().boxed();
        // A (re)list is applied object by object as its pages arrive (no
        // copy of the whole list is held); what it did not list goes at the end.
        let mut listed = Listed::new();
        let mut last_error: Option<Instant> = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Init) => listed.clear(),
                Ok(Event::InitApply(object)) => {
                    listed.insert(listed_key(object.meta()));
                    let mut store = shared.store.write().unwrap_or_else(|e| e.into_inner());
                    apply(&mut store, &object);
                }
                Ok(Event::InitDone) => {
                    {
                        let mut store = shared.store.write().unwrap_or_else(|e| e.into_inner());
                        retain(&mut store, &listed);
                    }
                    listed = Listed::new();
                    release_free_memory();
                    shared.mark_synced(bit);
                    if last_error.take().is_some() {
                        tracing::info!(target: "plugin/kubernetes", "{kind} watch resynced");
                    }
                }
                Ok(Event::Apply(object)) => {
                    let mut store = shared.store.write().unwrap_or_else(|e| e.into_inner());
                    apply(&mut store, &object);
                }
                Ok(Event::Delete(object)) => {
                    let mut store = shared.store.write().unwrap_or_else(|e| e.into_inner());
                    delete(&mut store, &object);
                }
                Err(e) => {
                    // Log at most every 10 s; the backoff retries.
                    if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(target: "plugin/kubernetes", "{kind} watch: {e}");
                        last_error = Some(Instant::now());
                    }
                }
            }
        }
    })
}
