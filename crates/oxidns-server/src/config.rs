//! From parsed server blocks to a checked configuration: keys normalised,
//! every directive set up by its plugin, listeners grouped by address and port.
//!
//! Everything is checked before anything is served: [`build`] returns every
//! problem it finds (for `oxidns -check`), not only the first.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use oxidns_proto::{Name, ZoneMap};

use crate::corefile::key::{Scheme, ZoneKey, parse_key};
use crate::corefile::{ConfigError, Directive, ServerBlock, Token};
use crate::plugin::{Handler, Lifecycle, PluginEntry, Setup};
use crate::server::LimitSettings;

/// CoreDNS plugins that oxidns does not have yet: named in errors so the
/// message says "not supported yet" rather than "unknown".
const COREDNS_PLUGINS: &[&str] = &[
    "acl",
    "any",
    "auto",
    "autopath",
    "azure",
    "bind",
    "bufsize",
    "cache",
    "cancel",
    "chaos",
    "clouddns",
    "debug",
    "dns64",
    "dnssec",
    "dnstap",
    "erratic",
    "errors",
    "etcd",
    "file",
    "forward",
    "geoip",
    "grpc",
    "grpc_server",
    "header",
    "health",
    "hosts",
    "import",
    "k8s_external",
    "kubernetes",
    "loadbalance",
    "local",
    "log",
    "loop",
    "metadata",
    "minimal",
    "multisocket",
    "nomad",
    "nsid",
    "on",
    "pprof",
    "prometheus",
    "quic",
    "ready",
    "reload",
    "rewrite",
    "root",
    "route53",
    "secondary",
    "sign",
    "template",
    "timeouts",
    "tls",
    "trace",
    "transfer",
    "tsig",
    "view",
    "whoami",
];

/// What the directives of one server block decide.
pub struct BlockSettings {
    pub keys: Vec<ZoneKey>,
    /// Every zone of every key, lower-case, without repeats.
    pub zones: Vec<Name>,
    /// Addresses to listen on (`bind`); empty means every address.
    pub listen_addrs: Vec<IpAddr>,
    /// Base for relative paths (`root`).
    pub root: PathBuf,
    /// `debug`: panics are not recovered and debug logs are shown.
    pub debug: bool,
    /// `reload`: how often to check the Corefile for changes, and the jitter.
    pub reload: Option<(Duration, Duration)>,
    /// Opcodes besides QUERY that a plugin serves (`secondary`: NOTIFY).
    pub opcodes: Vec<oxidns_proto::Opcode>,
    /// Limits for this block's listeners (`timeouts`, `limits`).
    pub limits: LimitSettings,
    pub(crate) handlers: Vec<Arc<dyn Handler>>,
    pub(crate) lifecycles: Vec<(&'static str, Arc<dyn Lifecycle>)>,
    /// Values plugins of this block share, one per type (see [`Setup::shared`]).
    pub(crate) shared: Vec<Arc<dyn std::any::Any + Send + Sync>>,
}

impl Block {
    /// The block's listeners as CoreDNS labels servers in metrics, with each zone.
    pub fn served(&self) -> Vec<(String, &Name)> {
        let mut served = Vec::new();
        for key in &self.keys {
            for zone in &key.zones {
                if self.listen_addrs.is_empty() {
                    served.push((format!("dns://:{}", key.port), zone));
                }
                for addr in &self.listen_addrs {
                    served.push((format!("dns://{}", SocketAddr::new(*addr, key.port)), zone));
                }
            }
        }
        served
    }
}

/// A server block ready to serve.
pub struct Block {
    pub keys: Vec<ZoneKey>,
    pub zones: Vec<Name>,
    pub listen_addrs: Vec<IpAddr>,
    pub debug: bool,
    pub reload: Option<(Duration, Duration)>,
    /// The plugins this block's Corefile names, in execution order.
    pub plugins: Vec<&'static str>,
    /// Opcodes besides QUERY that a plugin of this block serves.
    pub opcodes: Vec<oxidns_proto::Opcode>,
    /// Limits for this block's listeners (`timeouts`, `limits`).
    pub limits: LimitSettings,
    pub chain: Arc<[Arc<dyn Handler>]>,
    pub lifecycles: Vec<(&'static str, Arc<dyn Lifecycle>)>,
}

/// Settings from the command line that shape the config.
#[derive(Clone, Debug)]
pub struct Options {
    /// The port of `dns://` keys that name none (`-dns.port`).
    pub dns_port: u16,
}

impl Default for Options {
    fn default() -> Self {
        Options { dns_port: 53 }
    }
}

/// One socket address and the zones served on it.
pub struct ListenerSpec {
    pub addr: SocketAddr,
    pub router: Arc<ZoneRouter>,
    /// The tightest limits of the blocks served here.
    pub limits: LimitSettings,
}

/// A checked configuration.
pub struct Config {
    pub blocks: Vec<Arc<Block>>,
    pub listeners: Vec<ListenerSpec>,
}

impl Config {
    /// How often to check the Corefile for changes (interval, jitter): the
    /// shortest any block asked for; `None` without `reload`.
    pub fn reload(&self) -> Option<(Duration, Duration)> {
        self.blocks.iter().filter_map(|b| b.reload).min()
    }

    /// Whether any block asked for `debug`.
    pub fn debug(&self) -> bool {
        self.blocks.iter().any(|b| b.debug)
    }

    /// Every plugin instance's lifecycle hooks, in block order.
    pub fn lifecycles(&self) -> impl Iterator<Item = &(&'static str, Arc<dyn Lifecycle>)> {
        self.blocks.iter().flat_map(|b| b.lifecycles.iter())
    }

    /// The lifecycle hooks, owned, for running after the config is gone.
    pub fn clone_lifecycles(&self) -> Vec<(&'static str, Arc<dyn Lifecycle>)> {
        self.lifecycles().cloned().collect()
    }
}

/// Zones, each with its block.
type ZoneTable = ZoneMap<(Name, Arc<Block>)>;

/// Picks the server block for a question: the longest zone that contains it.
pub struct ZoneRouter {
    zones: ZoneTable,
}

impl ZoneRouter {
    /// The block and zone for `qname`, walking from the full name up to the root.
    pub fn route(&self, qname: &Name) -> Option<(&Name, &Arc<Block>)> {
        self.zones
            .longest_match(qname)
            .map(|(_, (zone, block))| (zone, block))
    }
}

/// Checks the whole configuration and sets up every plugin.
pub fn build(
    server_blocks: &[ServerBlock],
    plugins: &[PluginEntry],
    options: &Options,
) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut blocks = Vec::new();
    for server_block in server_blocks {
        match build_block(server_block, plugins, options) {
            Ok(block) => blocks.push(Arc::new(block)),
            Err(mut block_errors) => errors.append(&mut block_errors),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let listeners = group_listeners(&blocks)?;
    Ok(Config { blocks, listeners })
}

fn build_block(
    server_block: &ServerBlock,
    plugins: &[PluginEntry],
    options: &Options,
) -> Result<Block, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut keys = Vec::new();
    for token in &server_block.keys {
        match parse_key(token, options.dns_port) {
            Ok(key) if key.scheme != Scheme::Dns => errors.push(ConfigError::at(
                token,
                format!("{}:// servers are not supported yet", key.scheme),
            )),
            Ok(key) => keys.push(key),
            Err(e) => errors.push(e),
        }
    }
    let mut zones: Vec<Name> = Vec::new();
    for zone in keys.iter().flat_map(|k| k.zones.iter()) {
        if !zones.contains(zone) {
            zones.push(zone.clone());
        }
    }

    for directive in &server_block.directives {
        if !plugins.iter().any(|p| p.name == directive.name.text) {
            errors.push(unknown_directive(&directive.name));
        }
    }

    let mut settings = BlockSettings {
        keys,
        zones,
        listen_addrs: Vec::new(),
        root: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        debug: false,
        reload: None,
        opcodes: Vec::new(),
        limits: LimitSettings::default(),
        handlers: Vec::new(),
        lifecycles: Vec::new(),
        shared: Vec::new(),
    };
    let mut enabled = Vec::new();
    for plugin in plugins {
        let directives: Vec<Directive> = server_block
            .directives
            .iter()
            .filter(|d| d.name.text == plugin.name)
            .cloned()
            .collect();
        if directives.is_empty() {
            continue;
        }
        enabled.push(plugin.name);
        let mut setup = Setup {
            name: plugin.name,
            directives: &directives,
            block: &mut settings,
        };
        if let Err(e) = (plugin.setup)(&mut setup) {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Block {
        keys: settings.keys,
        zones: settings.zones,
        listen_addrs: settings.listen_addrs,
        debug: settings.debug,
        reload: settings.reload,
        plugins: enabled,
        opcodes: settings.opcodes,
        limits: settings.limits,
        chain: settings.handlers.into(),
        lifecycles: settings.lifecycles,
    })
}

fn unknown_directive(name: &Token) -> ConfigError {
    if COREDNS_PLUGINS.contains(&name.text.as_str()) {
        ConfigError::at(name, format!("plugin '{}' is not supported yet", name.text))
    } else {
        ConfigError::at(name, format!("unknown directive '{}'", name.text))
    }
}

/// One listener per address and port; refuses a zone served twice on the same socket.
fn group_listeners(blocks: &[Arc<Block>]) -> Result<Vec<ListenerSpec>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut routes: Vec<(SocketAddr, ZoneTable, LimitSettings)> = Vec::new();
    // Where each (zone, port) is served so far: the address (None: every address) and key.
    type Served = Vec<(Option<IpAddr>, Token)>;
    let mut seen: HashMap<(Name, u16), Served> = HashMap::new();
    for block in blocks {
        let addrs: Vec<Option<IpAddr>> = if block.listen_addrs.is_empty() {
            vec![None]
        } else {
            block.listen_addrs.iter().copied().map(Some).collect()
        };
        for key in &block.keys {
            for zone in &key.zones {
                let earlier = seen.entry((zone.clone(), key.port)).or_default();
                for addr in &addrs {
                    if let Some((_, first)) = earlier
                        .iter()
                        .find(|(other, _)| other.is_none() || addr.is_none() || other == addr)
                    {
                        errors.push(ConfigError::at(
                            &key.token,
                            format!(
                                "zone {} on port {} is already served by the block at {}",
                                oxidns_proto::name_text(zone),
                                key.port,
                                first.location()
                            ),
                        ));
                        continue;
                    }
                    let socket = SocketAddr::new(
                        addr.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
                        key.port,
                    );
                    let index = match routes.iter().position(|(a, ..)| *a == socket) {
                        Some(i) => i,
                        None => {
                            routes.push((socket, ZoneMap::default(), LimitSettings::default()));
                            routes.len() - 1
                        }
                    };
                    let (_, zones, limits) = &mut routes[index];
                    zones.insert(zone, (zone.clone(), block.clone()));
                    limits.tighten(&block.limits);
                }
                earlier.extend(addrs.iter().map(|a| (*a, key.token.clone())));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(routes
        .into_iter()
        .map(|(addr, zones, limits)| ListenerSpec {
            addr,
            router: Arc::new(ZoneRouter { zones }),
            limits,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use crate::test_util::config;
    use oxidns_proto::{name_from_str, name_text};

    #[test]
    fn the_longest_zone_that_contains_the_name_gets_it() {
        let config = config(
            "example.org:0 {\n}\nsub.example.org:0 {\n}\n.:0 {\n}\nexample.net:0 {\n}\n",
            &[],
        )
        .unwrap();
        assert_eq!(config.listeners.len(), 1);
        let router = &config.listeners[0].router;
        let zone_of = |name: &str| {
            router
                .route(&name_from_str(name).unwrap())
                .map(|(zone, _)| name_text(zone))
        };
        assert_eq!(
            zone_of("a.b.sub.example.org").as_deref(),
            Some("sub.example.org.")
        );
        assert_eq!(zone_of("A.Example.ORG").as_deref(), Some("example.org."));
        assert_eq!(zone_of("example.net").as_deref(), Some("example.net."));
        assert_eq!(zone_of("xexample.org").as_deref(), Some("."));
        assert_eq!(zone_of(".").as_deref(), Some("."));
    }

    #[test]
    fn without_a_root_zone_other_names_have_no_block() {
        let config = config("example.org:0 {\n}\n", &[]).unwrap();
        let router = &config.listeners[0].router;
        assert!(
            router
                .route(&name_from_str("example.com").unwrap())
                .is_none()
        );
        assert!(router.route(&name_from_str("org").unwrap()).is_none());
    }
}
