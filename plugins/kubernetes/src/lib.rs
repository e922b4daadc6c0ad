//! `kubernetes`: cluster DNS from the Kubernetes API, as CoreDNS's kubernetes
//! plugin and the Kubernetes DNS specification describe it.
//!
//! - [`setup`]: the directive and its block; setup never connects.
//! - `store`: Services, ready endpoints of EndpointSlices, Namespaces, and
//!   the addresses of Pods (`pods verified`).
//! - `watch`: the API client and one kube-runtime watcher per resource,
//!   started by the lifecycle's start-up; it relists on 410 Gone and retries
//!   with backoff, answering from the last known state meanwhile.
//! - `answer`: the records.
//! - `autopath`: the search path of a client's pod, offered to `autopath`.
//! - `external`: the external addresses of Services, read by `k8s_external`.

mod answer;
mod autopath;
mod external;
mod store;
mod watch;

#[cfg(any(test, feature = "test-api-server"))]
pub mod testing;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use oxidns_server::duration::parse_go_duration;
use oxidns_server::fallthrough::Fallthrough;
use oxidns_server::proto::Name;
use oxidns_server::{ConfigError, Directive, PluginEntry, Setup};

use crate::store::Store;
use crate::watch::{Shared, Watcher};

pub use crate::answer::address_from_reverse;
pub use crate::external::{Cluster, Clusters, ExternalAddress, ExternalLookup, ExternalTarget};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "kubernetes",
    setup,
};

const DEFAULT_TTL: u32 = 5;
/// Whose search domains follow the cluster's in `autopath @kubernetes`.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(5);

/// `pods` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PodMode {
    Disabled,
    Insecure,
    Verified,
}

/// Where the API is and how to reach it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Connection {
    pub endpoint: Option<String>,
    /// CERT, KEY, CACERT.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    pub kubeconfig: Option<(PathBuf, Option<String>)>,
}

/// The parsed directive.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub zones: Vec<Name>,
    pub connection: Connection,
    pub namespaces: Vec<String>,
    pub labels: Option<String>,
    pub namespace_labels: Option<String>,
    pub pods: PodMode,
    pub endpoint_pod_names: bool,
    pub ttl: u32,
    pub no_endpoints: bool,
    pub fall: Fallthrough,
    pub ignore_empty_service: bool,
    pub startup_timeout: Duration,
}

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?.clone();
    let options = parse(setup, &directive)?;
    let mut store = Store::default();
    store.keep_pod_names = options.endpoint_pod_names;
    let shared = Arc::new(Shared::new(RwLock::new(store)));
    setup.add_handler(Arc::new(answer::Kubernetes {
        options: options.clone(),
        shared: shared.clone(),
    }));
    setup.shared::<Clusters>().set(Cluster {
        options: options.clone(),
        shared: shared.clone(),
    });
    let host_search =
        oxidns_plugin_autopath::search_domains_of(std::path::Path::new(HOST_RESOLV_CONF))
            .unwrap_or_default();
    setup
        .shared::<oxidns_plugin_autopath::SearchPaths>()
        .register(
            "kubernetes",
            Arc::new(autopath::PodSearchPath {
                zones: options.zones.clone(),
                pods: options.pods,
                shared: shared.clone(),
                host_search,
            }),
        );
    setup.add_lifecycle(Arc::new(Watcher::new(options, shared)));
    Ok(())
}

fn parse(setup: &Setup<'_>, directive: &Directive) -> Result<Options, ConfigError> {
    let mut options = Options {
        zones: setup.zones_or_block(&directive.args)?,
        connection: Connection::default(),
        namespaces: Vec::new(),
        labels: None,
        namespace_labels: None,
        pods: PodMode::Disabled,
        endpoint_pod_names: false,
        ttl: DEFAULT_TTL,
        no_endpoints: false,
        fall: Fallthrough::Never,
        ignore_empty_service: false,
        startup_timeout: DEFAULT_STARTUP_TIMEOUT,
    };
    let error = |line: &Directive, message: String| {
        ConfigError::at(&line.name, format!("kubernetes: {message}"))
    };
    for line in &directive.block {
        let args = line.arg_texts();
        let name = line.name.text.as_str();
        match name {
            "endpoint" => match args.as_slice() {
                [url] => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(error(line, format!("invalid endpoint URL '{url}'")));
                    }
                    options.connection.endpoint = Some((*url).to_owned());
                }
                [] => return Err(error(line, "endpoint needs a URL".into())),
                _ => {
                    return Err(error(
                        line,
                        "multiple endpoints are not supported (CoreDNS neither)".into(),
                    ));
                }
            },
            "tls" => match args.as_slice() {
                [cert, key, ca] => {
                    options.connection.tls = Some((
                        setup.resolve_path(cert),
                        setup.resolve_path(key),
                        setup.resolve_path(ca),
                    ))
                }
                _ => return Err(error(line, "tls needs CERT KEY CACERT".into())),
            },
            "kubeconfig" => match args.as_slice() {
                [path] => options.connection.kubeconfig = Some((setup.resolve_path(path), None)),
                [path, context] => {
                    options.connection.kubeconfig =
                        Some((setup.resolve_path(path), Some((*context).to_owned())))
                }
                _ => return Err(error(line, "kubeconfig needs KUBECONFIG [CONTEXT]".into())),
            },
            "namespaces" => {
                if args.is_empty() {
                    return Err(error(
                        line,
                        "namespaces needs at least one namespace".into(),
                    ));
                }
                options
                    .namespaces
                    .extend(args.iter().map(|a| a.to_ascii_lowercase()));
            }
            "labels" | "namespace_labels" => {
                if args.is_empty() {
                    return Err(error(line, format!("{name} needs a label selector")));
                }
                let selector = args.join(" ");
                check_selector(&selector)
                    .map_err(|e| error(line, format!("unable to parse label selector: {e}")))?;
                if name == "labels" {
                    options.labels = Some(selector);
                } else {
                    options.namespace_labels = Some(selector);
                }
            }
            "pods" => {
                options.pods = match args.as_slice() {
                    ["disabled"] => PodMode::Disabled,
                    ["insecure"] => PodMode::Insecure,
                    ["verified"] => PodMode::Verified,
                    [other] => {
                        return Err(error(line, format!("invalid value for pods: '{other}'")));
                    }
                    _ => {
                        return Err(error(
                            line,
                            "pods needs one of disabled, insecure, verified".into(),
                        ));
                    }
                }
            }
            "endpoint_pod_names" => {
                no_args(line)?;
                options.endpoint_pod_names = true;
            }
            "noendpoints" => {
                no_args(line)?;
                options.no_endpoints = true;
            }
            "ttl" => {
                let [value] = args.as_slice() else {
                    return Err(error(line, "ttl needs a number of seconds".into()));
                };
                match value.parse::<u32>() {
                    Ok(ttl) if ttl <= 3600 => options.ttl = ttl,
                    _ => {
                        return Err(error(
                            line,
                            format!("ttl must be in range [0, 3600]: '{value}'"),
                        ));
                    }
                }
            }
            "fallthrough" => options.fall = Fallthrough::parse(line)?,
            "ignore" => match args.as_slice() {
                ["empty_service"] => options.ignore_empty_service = true,
                _ => return Err(error(line, "ignore takes only 'empty_service'".into())),
            },
            "startup_timeout" => {
                let [value] = args.as_slice() else {
                    return Err(error(line, "startup_timeout needs a duration".into()));
                };
                options.startup_timeout = parse_go_duration(value)
                    .ok_or_else(|| error(line, format!("invalid duration '{value}'")))?;
            }
            _ => return Err(directive.unknown_property(line)),
        }
    }
    Ok(options)
}

fn no_args(line: &Directive) -> Result<(), ConfigError> {
    if line.args.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::at(
            &line.name,
            format!("kubernetes: {} takes no arguments", line.name.text),
        ))
    }
}

/// A light check of a label selector (`a=b,c!=d,e in (f,g),!h`): the
/// API server parses it in full.
fn check_selector(selector: &str) -> Result<(), String> {
    let mut depth = 0i32;
    for c in selector.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return Err(format!("unbalanced parentheses in '{selector}'"));
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in '{selector}'"));
    }
    if selector.trim().is_empty()
        || selector.split(',').any(|part| part.trim().is_empty()) && !selector.contains('(')
    {
        return Err(format!("empty requirement in '{selector}'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
