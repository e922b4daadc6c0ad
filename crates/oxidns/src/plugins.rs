//! The plugins linked into oxidns, in execution order.
//!
//! This list is the one place that decides the order of every chain, as
//! CoreDNS's plugin.cfg does, and it follows plugin.cfg's order for the
//! plugins the two servers share. Setups also run in this order, so `root`
//! comes first. The order of directives in a Corefile does not matter.

use oxidns_server::PluginEntry;

pub const PLUGINS: &[PluginEntry] = &[
    oxidns_plugin_root::PLUGIN,
    oxidns_plugin_timeouts::PLUGIN,
    oxidns_plugin_limits::PLUGIN,
    oxidns_plugin_reload::PLUGIN,
    oxidns_plugin_nsid::PLUGIN,
    oxidns_plugin_bufsize::PLUGIN,
    oxidns_plugin_bind::PLUGIN,
    oxidns_plugin_debug::PLUGIN,
    oxidns_plugin_ready::PLUGIN,
    oxidns_plugin_health::PLUGIN,
    oxidns_plugin_prometheus::PLUGIN,
    oxidns_plugin_errors::PLUGIN,
    oxidns_plugin_log::PLUGIN,
    oxidns_plugin_ratelimit::PLUGIN,
    oxidns_plugin_cookies::PLUGIN,
    oxidns_plugin_local::PLUGIN,
    oxidns_plugin_acl::PLUGIN,
    oxidns_plugin_any::PLUGIN,
    oxidns_plugin_chaos::PLUGIN,
    oxidns_plugin_loadbalance::PLUGIN,
    oxidns_plugin_tsig::PLUGIN,
    oxidns_plugin_cache::PLUGIN,
    oxidns_plugin_autopath::PLUGIN,
    oxidns_plugin_template::PLUGIN,
    oxidns_plugin_transfer::PLUGIN,
    oxidns_plugin_hosts::PLUGIN,
    #[cfg(feature = "kubernetes")]
    oxidns_plugin_k8s_external::PLUGIN,
    #[cfg(feature = "kubernetes")]
    oxidns_plugin_kubernetes::PLUGIN,
    oxidns_plugin_file::PLUGIN,
    oxidns_plugin_auto::PLUGIN,
    oxidns_plugin_secondary::PLUGIN,
    oxidns_plugin_loop::PLUGIN,
    oxidns_plugin_forward::PLUGIN,
    oxidns_plugin_whoami::PLUGIN,
];
