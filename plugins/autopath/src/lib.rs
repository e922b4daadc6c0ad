//! `autopath`: server-side search path completion, as CoreDNS's autopath.
//!
//! A stub resolver with `search a b c` and `ndots` asks `name.a`, then
//! `name.b`, … until one is not NXDOMAIN. When a query is for a name under
//! the first search domain, this plugin walks the rest of the list itself
//! (through the rest of the chain) and answers with the first reply that is
//! not NXDOMAIN, with a CNAME from the name asked to the name found, so the
//! client is done after one round trip.
//!
//! The search path comes from a resolv.conf-like file, or from another
//! plugin per query (`@kubernetes`: the search path of the client's pod).
//! Plugins offer theirs through [`SearchPaths`], shared by the plugins of a
//! server block ([`Setup::shared`]), so that autopath needs no dependency on
//! them.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use oxidns_server::proto::domain::rdata::Cname;
use oxidns_server::proto::{
    Class, Name, Rcode, Record, RecordData, Response, lowercase, name_from_str, name_text,
};
use oxidns_server::{
    ConfigError, Handler, HandlerFuture, HookFuture, Lifecycle, Next, PluginEntry, Request, Setup,
};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "autopath",
    setup,
};

/// A plugin that knows a client's search path (CoreDNS's `AutoPather`).
pub trait SearchPath: Send + Sync + 'static {
    /// The search domains for this request, most specific first, ending
    /// with the root (the name as asked); empty when autopath should leave
    /// the query alone.
    fn search_path(&self, request: &Request) -> Vec<Name>;
}

/// The search path providers of a server block, by plugin name.
#[derive(Default)]
pub struct SearchPaths {
    providers: Mutex<Vec<(&'static str, Arc<dyn SearchPath>)>>,
}

impl SearchPaths {
    /// Offers `plugin`'s search paths to `autopath @plugin`.
    pub fn register(&self, plugin: &'static str, provider: Arc<dyn SearchPath>) {
        let mut providers = self.providers.lock().unwrap_or_else(|e| e.into_inner());
        providers.retain(|(name, _)| *name != plugin);
        providers.push((plugin, provider));
    }

    pub fn find(&self, plugin: &str) -> Option<Arc<dyn SearchPath>> {
        let providers = self.providers.lock().unwrap_or_else(|e| e.into_inner());
        providers
            .iter()
            .find(|(name, _)| *name == plugin)
            .map(|(_, p)| p.clone())
    }
}

/// The domains of the last `search` (or `domain`) line of a resolv.conf, as
/// the stub resolver reads it (resolv.conf(5)).
pub fn search_domains(resolv_conf: &str) -> Vec<Name> {
    let mut domains = Vec::new();
    for line in resolv_conf.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("search") | Some("domain") => {
                domains = words
                    .take_while(|w| !w.starts_with(['#', ';']))
                    .filter_map(|w| name_from_str(w).ok())
                    .map(|n| lowercase(&n))
                    .collect();
            }
            _ => {}
        }
    }
    domains
}

/// The search domains of a resolv.conf file.
pub fn search_domains_of(path: &Path) -> std::io::Result<Vec<Name>> {
    Ok(search_domains(&std::fs::read_to_string(path)?))
}

enum Source {
    /// From a file: the domains, then the root.
    Fixed(Vec<Name>),
    /// From a plugin of the block, found at start-up (or on first use).
    Plugin {
        name: String,
        registry: Arc<SearchPaths>,
        provider: OnceLock<Arc<dyn SearchPath>>,
    },
}

impl Source {
    fn provider(&self) -> Option<&Arc<dyn SearchPath>> {
        match self {
            Source::Fixed(_) => None,
            Source::Plugin {
                name,
                registry,
                provider,
            } => {
                if let Some(found) = provider.get() {
                    return Some(found);
                }
                let found = registry.find(name)?;
                Some(provider.get_or_init(|| found))
            }
        }
    }
}

struct AutoPath {
    zones: Vec<Name>,
    source: Source,
}

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?.clone();
    directive.no_block()?;
    let Some((resolv, zones)) = directive.args.split_last() else {
        return Err(directive.error("needs a resolv.conf file or @plugin"));
    };
    let zones = setup.zones_or_block(zones)?;
    let source = match resolv.text.strip_prefix('@') {
        Some("") => return Err(directive.error("'@' needs a plugin name")),
        Some(plugin) => Source::Plugin {
            name: plugin.to_owned(),
            registry: setup.shared::<SearchPaths>(),
            provider: OnceLock::new(),
        },
        None => {
            let path = setup.resolve_path(&resolv.text);
            let mut domains = search_domains_of(&path).map_err(|e| {
                ConfigError::at(
                    resolv,
                    format!("autopath: failed to parse {}: {e}", path.display()),
                )
            })?;
            domains.push(Name::root());
            Source::Fixed(domains)
        }
    };
    let autopath = Arc::new(AutoPath { zones, source });
    if matches!(autopath.source, Source::Plugin { .. }) {
        setup.add_lifecycle(autopath.clone());
    }
    setup.add_handler(autopath);
    Ok(())
}

impl Lifecycle for AutoPath {
    /// The plugin named must be in the block and offer search paths.
    fn startup(&self) -> HookFuture<'_, Result<(), String>> {
        let result = match &self.source {
            Source::Plugin { name, .. } if self.source.provider().is_none() => Err(format!(
                "autopath: plugin '{name}' is not in this server block or has no search path"
            )),
            _ => Ok(()),
        };
        Box::pin(std::future::ready(result))
    }
}

impl Handler for AutoPath {
    fn name(&self) -> &'static str {
        "autopath"
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        let qname = lowercase(request.qname());
        if !self.zones.iter().any(|z| qname.ends_with(z)) {
            return next.serve(request);
        }
        let search = match &self.source {
            Source::Fixed(domains) => domains.clone(),
            Source::Plugin { .. } => match self.source.provider() {
                Some(provider) => provider.search_path(request),
                None => Vec::new(),
            },
        };
        // Only a name under the first search domain is a stub resolver's first try.
        let Some(first) = search.first() else {
            return next.serve(request);
        };
        if qname.label_count() <= first.label_count() || !qname.ends_with(first) {
            return next.serve(request);
        }
        let depth = qname.label_count() - first.label_count();
        let base: Vec<String> = request
            .qname()
            .iter()
            .take(depth)
            .map(|l| l.to_string())
            .collect();
        let base = base.join(".");
        HandlerFuture::new(async move {
            let original = request.qname().clone();
            let mut first_reply = None;
            for (i, suffix) in search.iter().enumerate() {
                // The root suffix is the name as asked.
                let text = match suffix.is_root() {
                    true => format!("{base}."),
                    false => format!("{base}.{}", name_text(suffix)),
                };
                let Ok(candidate) = name_from_str(&text) else {
                    continue;
                };
                let mut attempt = with_qname(request, candidate);
                let mut response = match next.serve(&mut attempt).await {
                    Ok(response) => response,
                    // A later element that fails (no plugin serves it) is not found;
                    // the name as asked failing is the answer.
                    Err(error) if i == 0 => return Err(error),
                    Err(_) => continue,
                };
                let rcode = response.rcode.rcode();
                // NXDOMAIN sends the walk on; so does a failure to answer.
                if matches!(rcode, Rcode::NXDOMAIN | Rcode::SERVFAIL | Rcode::REFUSED) {
                    if i == 0 {
                        first_reply = Some(response);
                    }
                    continue;
                }
                // As CoreDNS, a first try that succeeds counts too (and needs no CNAME).
                cname_from(&mut response, &original);
                metrics::counter!("coredns_autopath_success_total", "server" => request.server.to_string())
                    .increment(1);
                return Ok(response);
            }
            // Nothing found: the reply to the name as asked, and the client walks its list.
            match first_reply {
                Some(response) => Ok(response),
                None => next.serve(request).await,
            }
        })
    }
}

/// A copy of the request asking for `qname` instead.
fn with_qname(request: &Request, qname: Name) -> Request {
    let mut query = request.query.clone();
    query.qname = qname;
    let mut copy = Request::new(
        query,
        request.client,
        request.local,
        request.transport,
        request.zone.clone(),
        request.server.clone(),
    );
    copy.metadata = request.metadata.clone();
    copy
}

/// Puts a CNAME from the name asked to the owner of the answer in front
/// of it, as CoreDNS's autopath does (its TTL is the answer's).
fn cname_from(response: &mut Response, original: &Name) {
    let original_key = lowercase(original);
    let Some(found) = response
        .answer
        .iter()
        .find(|r| lowercase(r.owner()) != original_key)
    else {
        return;
    };
    let cname = Record::new(
        original.clone(),
        Class::IN,
        found.ttl(),
        RecordData::Cname(Cname::new(found.owner().clone())),
    );
    response.answer.insert(0, cname);
}

#[cfg(test)]
mod tests;
