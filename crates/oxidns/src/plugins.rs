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

#[cfg(test)]
mod tests {
    use oxidns_server::{Options, build, corefile};

    use super::PLUGINS;

    /// Whether `file`, after `plugins`, may answer in wire form.
    fn wire_answers(plugins: &str) -> bool {
        let zone = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/db.example.org");
        let text = format!("example.org {{\n{plugins}\nfile {zone}\n}}\n");
        let blocks = corefile::parse_str(&text, "Corefile").unwrap();
        let config = build(&blocks, PLUGINS, &Options::default()).unwrap();
        let chain = &config.blocks[0].chain;
        assert_eq!(chain.last().unwrap().name(), "file");
        !chain.iter().any(|handler| handler.reads_answers())
    }

    /// Stored answers in wire form have no records to read or change, so
    /// `file` gives them only when no plugin before it would.
    #[test]
    fn answers_come_in_wire_form_only_where_no_plugin_reads_them() {
        for plugins in [
            "",
            "log",
            "prometheus\nerrors\nlog . {class denial}",
            "acl",
            "cookies",
            "loadbalance",
        ] {
            assert!(wire_answers(plugins), "{plugins:?}");
        }
        for plugins in [
            "loadbalance {\n prefer 10.0.0.0/8\n}",
            "cache",
            "autopath @kubernetes",
        ] {
            assert!(!wire_answers(plugins), "{plugins:?}");
        }
    }
}
