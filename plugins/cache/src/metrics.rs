//! CoreDNS's cache metrics, with its names and labels.

use std::sync::{Arc, OnceLock};

use metrics::{Counter, Gauge, counter, gauge};

/// The metric handles for one `server` label.
pub(crate) struct ServerMetrics {
    pub requests: Counter,
    pub hits_success: Counter,
    pub hits_denial: Counter,
    pub misses: Counter,
    pub prefetch: Counter,
    pub drops: Counter,
    pub served_stale: Counter,
    pub evictions_success: Counter,
    pub evictions_denial: Counter,
    pub entries_success: Gauge,
    pub entries_denial: Gauge,
}

impl ServerMetrics {
    fn new(server: &Arc<str>, zones: &Arc<str>) -> Self {
        let counter = |name: &'static str| counter!(name, "server" => server.clone(), "zones" => zones.clone(), "view" => "");
        let typed = |name: &'static str, kind: &'static str| counter!(name, "server" => server.clone(), "type" => kind, "zones" => zones.clone(), "view" => "");
        let entries = |kind: &'static str| gauge!("coredns_cache_entries", "server" => server.clone(), "type" => kind, "zones" => zones.clone(), "view" => "");
        ServerMetrics {
            requests: counter("coredns_cache_requests_total"),
            hits_success: typed("coredns_cache_hits_total", "success"),
            hits_denial: typed("coredns_cache_hits_total", "denial"),
            misses: counter("coredns_cache_misses_total"),
            prefetch: counter("coredns_cache_prefetch_total"),
            drops: counter("coredns_cache_drops_total"),
            served_stale: counter("coredns_cache_served_stale_total"),
            evictions_success: typed("coredns_cache_evictions_total", "success"),
            evictions_denial: typed("coredns_cache_evictions_total", "denial"),
            entries_success: entries("success"),
            entries_denial: entries("denial"),
        }
    }
}

/// Server labels a cache keeps handles for without locking; one cache
/// serves the listeners of its server block, rarely more than a few.
const KEPT_SERVERS: usize = 16;

/// Handles by server label, made once per label and then read without a
/// lock or a reference count written (issue #8: no contention per query).
pub(crate) struct Registry {
    /// The cache's zones joined with commas, as CoreDNS labels them.
    zones: Arc<str>,
    servers: [OnceLock<(Arc<str>, Arc<ServerMetrics>)>; KEPT_SERVERS],
}

impl Registry {
    pub fn new(zones: Arc<str>) -> Self {
        Registry {
            zones,
            servers: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Runs `with` on the handles for `server`, made on its first query.
    pub fn with<R>(&self, server: &Arc<str>, with: impl FnOnce(&Arc<ServerMetrics>) -> R) -> R {
        for slot in &self.servers {
            // Two labels racing for one free slot: the loser goes on to the next.
            let (label, metrics) = slot.get_or_init(|| {
                (
                    server.clone(),
                    Arc::new(ServerMetrics::new(server, &self.zones)),
                )
            });
            if label == server {
                return with(metrics);
            }
        }
        // More labels than slots: handles of the same labels share their counts.
        with(&Arc::new(ServerMetrics::new(server, &self.zones)))
    }
}
