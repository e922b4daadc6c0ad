//! CoreDNS's cache metrics, with its names and labels.

use std::sync::{Arc, RwLock};

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

/// Handles by server label, made once per label: a hit only reads a lock.
pub(crate) struct Registry {
    /// The cache's zones joined with commas, as CoreDNS labels them.
    zones: Arc<str>,
    servers: RwLock<Vec<(Arc<str>, Arc<ServerMetrics>)>>,
}

impl Registry {
    pub fn new(zones: Arc<str>) -> Self {
        Registry {
            zones,
            servers: RwLock::new(Vec::new()),
        }
    }

    pub fn get(&self, server: &Arc<str>) -> Arc<ServerMetrics> {
        let known = self.servers.read().unwrap_or_else(|e| e.into_inner());
        if let Some((_, m)) = known.iter().find(|(s, _)| s == server) {
            return m.clone();
        }
        drop(known);
        let mut known = self.servers.write().unwrap_or_else(|e| e.into_inner());
        if let Some((_, m)) = known.iter().find(|(s, _)| s == server) {
            return m.clone();
        }
        let metrics = Arc::new(ServerMetrics::new(server, &self.zones));
        known.push((server.clone(), metrics.clone()));
        metrics
    }
}
