//! The plugins linked into oxidns, in execution order.
//!
//! This list is the one place that decides the order of every chain, as
//! CoreDNS's plugin.cfg does; it follows plugin.cfg's order for the plugins
//! the two servers share. The order of directives in a Corefile does not matter.

use oxidns_server::PluginEntry;

pub const PLUGINS: &[PluginEntry] = &[oxidns_plugin_whoami::PLUGIN];
