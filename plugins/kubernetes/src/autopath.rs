//! The search path of a client's pod, for `autopath @kubernetes` (as
//! CoreDNS's kubernetes `AutoPath`): `<ns>.svc.<zone>`, `svc.<zone>`,
//! `<zone>`, then the search domains of this server's own resolv.conf, then
//! the name as asked. The client is found by its address among the pods,
//! so this needs `pods verified`.

use std::sync::Arc;

use oxidns_plugin_autopath::SearchPath;
use oxidns_server::Request;
use oxidns_server::proto::{Name, lowercase, name_from_str, name_text};

use crate::PodMode;
use crate::watch::Shared;

pub(crate) struct PodSearchPath {
    pub zones: Vec<Name>,
    pub pods: PodMode,
    pub shared: Arc<Shared>,
    /// The search domains of the host's /etc/resolv.conf.
    pub host_search: Vec<Name>,
}

impl SearchPath for PodSearchPath {
    fn search_path(&self, request: &Request) -> Vec<Name> {
        if self.pods != PodMode::Verified {
            return Vec::new();
        }
        let qname = lowercase(request.qname());
        let Some(zone) = self
            .zones
            .iter()
            .filter(|z| qname.ends_with(*z))
            .max_by_key(|z| z.label_count())
        else {
            return Vec::new();
        };
        let namespace = {
            let store = self.shared.store.read().unwrap_or_else(|e| e.into_inner());
            match store.pod_namespaces(request.client.ip()).next() {
                Some(ns) => ns.to_owned(),
                None => return Vec::new(),
            }
        };
        let zone_text = name_text(zone);
        let under = |prefix: &str| {
            let text = match zone.is_root() {
                true => format!("{prefix}."),
                false => format!("{prefix}.{zone_text}"),
            };
            name_from_str(&text).ok()
        };
        let (Some(namespace_svc), Some(svc)) = (under(&format!("{namespace}.svc")), under("svc"))
        else {
            return Vec::new();
        };
        let mut search = vec![namespace_svc, svc, zone.clone()];
        search.extend(self.host_search.iter().cloned());
        search.push(Name::root());
        search
    }
}
