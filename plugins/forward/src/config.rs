//! The `forward` directive: `forward FROM TO... { … }`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use oxidns_net::{Protocol, TlsSettings, Upstream, UpstreamConfig, tls_client_config};
use oxidns_server::corefile::key::parse_key;
use oxidns_server::duration::parse_go_duration;
use oxidns_server::proto::{Name, lowercase, name_from_str};
use oxidns_server::rebinding::RebindingProtection;
use oxidns_server::{ConfigError, Directive, Setup};
use tokio_util::sync::CancellationToken;

use crate::proxy::{HealthCheck, Proxy};
use crate::{Forward, Options};

/// At most this many upstreams per directive (CoreDNS's `max`).
const MAX_UPSTREAMS: usize = 15;
const DEFAULT_MAX_FAILS: u32 = 2;
const DEFAULT_EXPIRE: Duration = Duration::from_secs(10);
const DEFAULT_HEALTH_CHECK: Duration = Duration::from_millis(500);

/// How the upstreams are ordered for each query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    Random,
    RoundRobin,
    Sequential,
}

/// One TO after parsing: address, DoT or not, and a per-upstream TLS name
/// (`tls://IP%NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct To {
    pub(crate) addr: SocketAddr,
    pub(crate) tls: bool,
    pub(crate) server_name: Option<String>,
}

/// The `tls` line: paths already made absolute.
#[derive(Default)]
struct TlsFiles {
    cert_key: Option<(std::path::PathBuf, std::path::PathBuf)>,
    ca: Option<std::path::PathBuf>,
}

pub(crate) fn parse(setup: &Setup<'_>, directive: &Directive) -> Result<Forward, ConfigError> {
    let args = directive.args_between(2, usize::MAX)?;
    let from_key = parse_key(&args[0], 53)?;
    let from = from_key.zones[0].clone();
    if from_key.zones.len() > 1 {
        tracing::warn!(target: "plugin/forward", "Unsupported CIDR notation: '{}' expands to multiple zones. Using only '{}'.", args[0].text, oxidns_server::proto::name_text(&from));
    }
    let mut tos = Vec::new();
    for arg in &args[1..] {
        let parsed = parse_to(&arg.text, |path| setup.resolve_path(path))
            .map_err(|e| ConfigError::at(arg, format!("forward: {e}")))?;
        tos.extend(parsed);
    }
    if tos.len() > MAX_UPSTREAMS {
        return Err(directive.error(format!(
            "more than {MAX_UPSTREAMS} TOs configured: {}",
            tos.len()
        )));
    }

    let mut ignored = Vec::new();
    let mut options = Options::default();
    let mut expire = DEFAULT_EXPIRE;
    let mut max_fails = DEFAULT_MAX_FAILS;
    let mut max_connect_attempts = 0;
    let mut tls_files: Option<TlsFiles> = None;
    let mut tls_servername: Option<String> = None;
    let mut policy = Policy::Random;
    let mut health = HealthCheck {
        interval: DEFAULT_HEALTH_CHECK,
        recursion_desired: true,
        domain: Name::root(),
        tcp: false,
    };
    let mut max_concurrent = 0;
    let mut next_rcodes = Vec::new();
    let mut failover_rcodes = Vec::new();
    let mut failfast = false;
    let mut rebinding = None;
    for line in &directive.block {
        match line.name.text.as_str() {
            "except" => {
                for name in line.args_between(1, usize::MAX)? {
                    ignored.extend(parse_key(name, 53)?.zones);
                }
            }
            "force_tcp" => {
                line.bare()?;
                options.force_tcp = true;
            }
            "prefer_udp" => {
                line.bare()?;
                options.prefer_udp = true;
            }
            "failfast_all_unhealthy_upstreams" => {
                line.bare()?;
                failfast = true;
            }
            "expire" => expire = duration(line)?,
            "max_fails" => max_fails = integer(line)?,
            "max_connect_attempts" => max_connect_attempts = integer(line)?,
            // Accepted for compatibility; idle connections are bounded per upstream anyway.
            "max_idle_conns" => {
                integer::<u32>(line)?;
            }
            "max_concurrent" => max_concurrent = integer(line)?,
            "tls" => {
                let paths: Vec<_> = line
                    .args_between(0, 3)?
                    .iter()
                    .map(|a| setup.resolve_path(&a.text))
                    .collect();
                tls_files = Some(match paths.as_slice() {
                    [] => TlsFiles::default(),
                    [ca] => TlsFiles {
                        cert_key: None,
                        ca: Some(ca.clone()),
                    },
                    [cert, key] => TlsFiles {
                        cert_key: Some((cert.clone(), key.clone())),
                        ca: None,
                    },
                    [cert, key, ca] => TlsFiles {
                        cert_key: Some((cert.clone(), key.clone())),
                        ca: Some(ca.clone()),
                    },
                    _ => unreachable!("at most 3 arguments"),
                });
            }
            "tls_servername" => {
                let name = &line.args_between(1, 1)?[0].text;
                tls_servername = Some(name.clone());
            }
            "policy" => {
                policy = match line.args_between(1, 1)?[0].text.as_str() {
                    "random" => Policy::Random,
                    "round_robin" => Policy::RoundRobin,
                    "sequential" => Policy::Sequential,
                    other => return Err(line.error(format!("unknown policy '{other}'"))),
                }
            }
            "health_check" => {
                let args = line.args_between(1, 4)?;
                health.interval = parse_go_duration(&args[0].text)
                    .ok_or_else(|| line.error(format!("invalid duration '{}'", args[0].text)))?;
                let mut rest = args[1..].iter();
                while let Some(arg) = rest.next() {
                    match arg.text.as_str() {
                        "no_rec" => health.recursion_desired = false,
                        "domain" => {
                            let name = rest
                                .next()
                                .ok_or_else(|| line.error("domain needs a name"))?;
                            health.domain = name_from_str(&name.text).map_err(|_| {
                                line.error(format!("invalid domain name {}", name.text))
                            })?;
                        }
                        other => return Err(line.error(format!("unknown option {other}"))),
                    }
                }
            }
            "next" => next_rcodes = rcodes(line, true)?,
            "failover" => failover_rcodes = rcodes(line, false)?,
            "rebinding_protection" => rebinding = Some(RebindingProtection::parse(line)?),
            _ => return Err(directive.unknown_property(line)),
        }
    }
    health.tcp = options.force_tcp;

    let any_tls = tos.iter().any(|t| t.tls);
    if tls_servername.is_some() && tos.iter().any(|t| t.server_name.is_some()) {
        return Err(directive
            .error("both tls_servername and server name in the TO (tls://IP%NAME) are specified"));
    }
    let tls_config = match (&tls_files, any_tls) {
        (None, false) => None,
        (files, _) => {
            let default = TlsFiles::default();
            let files = files.as_ref().unwrap_or(&default);
            let cert_key = files
                .cert_key
                .as_ref()
                .map(|(c, k)| (c.as_path(), k.as_path()));
            Some(tls_client_config(cert_key, files.ca.as_deref()).map_err(|e| directive.error(e))?)
        }
    };

    let mut proxies = Vec::new();
    for to in &tos {
        let tls = match (&tls_config, to.tls) {
            (Some(config), true) => {
                let name = to.server_name.as_deref().or(tls_servername.as_deref());
                Some(
                    TlsSettings::new(config.clone(), name, to.addr.ip())
                        .map_err(|e| directive.error(e))?,
                )
            }
            _ => None,
        };
        let label = to.addr.to_string();
        let upstream = Upstream::new(
            to.addr,
            UpstreamConfig {
                expire: Some(expire),
                tls,
                on_connection: Some(Arc::new(move |protocol: Protocol, reused: bool| {
                    let name = if reused {
                        "coredns_proxy_conn_cache_hits_total"
                    } else {
                        "coredns_proxy_conn_cache_misses_total"
                    };
                    metrics::counter!(
                        name,
                        "proxy_name" => "forward",
                        "to" => label.clone(),
                        "proto" => protocol.as_str(),
                    )
                    .increment(1);
                })),
            },
        );
        proxies.push(Arc::new(Proxy::new(upstream, to.tls)));
    }

    Ok(Forward {
        from: lowercase(&from),
        ignored: ignored.iter().map(lowercase).collect(),
        proxies,
        policy,
        round_robin: AtomicUsize::new(0),
        options,
        max_fails,
        health: Arc::new(health),
        max_concurrent,
        concurrent: AtomicUsize::new(0),
        next_rcodes,
        failover_rcodes,
        max_connect_attempts,
        failfast,
        rebinding,
        stop: CancellationToken::new(),
    })
}

fn duration(line: &Directive) -> Result<Duration, ConfigError> {
    let text = &line.args_between(1, 1)?[0].text;
    parse_go_duration(text).ok_or_else(|| line.error(format!("invalid duration '{text}'")))
}

fn integer<T: std::str::FromStr>(line: &Directive) -> Result<T, ConfigError> {
    let text = &line.args_between(1, 1)?[0].text;
    text.parse()
        .map_err(|_| line.error(format!("invalid number '{text}'")))
}

/// Rcode names for `next` and `failover`; `failover` refuses NOERROR.
fn rcodes(line: &Directive, noerror_allowed: bool) -> Result<Vec<u16>, ConfigError> {
    let mut codes = Vec::new();
    for arg in line.args_between(1, usize::MAX)? {
        let code = rcode_from_text(&arg.text)
            .ok_or_else(|| line.error(format!("'{}' is not a valid rcode", arg.text)))?;
        if code == 0 && !noerror_allowed {
            return Err(line.error("NOERROR cannot be used"));
        }
        codes.push(code);
    }
    Ok(codes)
}

/// Rcode mnemonics as Go's DNS library writes them.
const RCODES: &[(u16, &str)] = &[
    (0, "NOERROR"),
    (1, "FORMERR"),
    (2, "SERVFAIL"),
    (3, "NXDOMAIN"),
    (4, "NOTIMP"),
    (5, "REFUSED"),
    (6, "YXDOMAIN"),
    (7, "YXRRSET"),
    (8, "NXRRSET"),
    (9, "NOTAUTH"),
    (10, "NOTZONE"),
    (16, "BADSIG"),
    (17, "BADKEY"),
    (18, "BADTIME"),
    (19, "BADMODE"),
    (20, "BADNAME"),
    (21, "BADALG"),
    (22, "BADTRUNC"),
    (23, "BADCOOKIE"),
];

pub(crate) fn rcode_text(rcode: u16) -> String {
    match RCODES.iter().find(|(code, _)| *code == rcode) {
        Some((_, name)) => (*name).to_owned(),
        None => rcode.to_string(),
    }
}

fn rcode_from_text(text: &str) -> Option<u16> {
    let upper = text.to_ascii_uppercase();
    let upper = match upper.as_str() {
        "NOTIMPL" => "NOTIMP",
        other => other,
    };
    RCODES
        .iter()
        .find(|(_, name)| *name == upper)
        .map(|(code, _)| *code)
}

/// One TO: `IP[:port]`, `[IPv6]:port`, `dns://…`, `tls://IP[%NAME][:port]`,
/// or a resolv.conf-style file whose `nameserver` lines are taken.
pub(crate) fn parse_to(
    text: &str,
    resolve: impl Fn(&str) -> std::path::PathBuf,
) -> Result<Vec<To>, String> {
    let (tls, rest, explicit) = if let Some(rest) = text.strip_prefix("tls://") {
        (true, rest, true)
    } else if let Some(rest) = text.strip_prefix("dns://") {
        (false, rest, true)
    } else if let Some((scheme, _)) = text.split_once("://") {
        return Err(format!(
            "'{scheme}' is not supported as a destination protocol in forward: {text}"
        ));
    } else {
        (false, text, false)
    };
    let port = if tls { 853 } else { 53 };
    // tls://IP%NAME[:port]: a server name for this upstream alone.
    let (host, server_name) = match rest.split_once('%') {
        Some((ip, name_port)) if tls => {
            let (name, port_text) = match name_port.rsplit_once(':') {
                Some((name, p)) => (name, Some(p)),
                None => (name_port, None),
            };
            let host = match port_text {
                Some(p) => format!("{}:{p}", bracket(ip)),
                None => ip.to_owned(),
            };
            (host, Some(name.to_owned()))
        }
        _ => (rest.to_owned(), None),
    };
    if let Some(addr) = host_port(&host, port) {
        return Ok(vec![To {
            addr,
            tls,
            server_name,
        }]);
    }
    if explicit {
        return Err(format!(
            "not an IP address: '{text}' (host names are not supported)"
        ));
    }
    let path = resolve(text);
    let content = std::fs::read_to_string(&path)
        .map_err(|_| format!("not an IP address or file: '{text}'"))?;
    let mut tos = Vec::new();
    for line in content.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(server) = words.next() else {
            continue;
        };
        // A link-local zone (fe80::1%eth0) cannot be kept in a SocketAddr for IPv4 … drop it.
        let server = server.split('%').next().unwrap_or(server);
        if let Some(addr) = host_port(server, 53) {
            tos.push(To {
                addr,
                tls: false,
                server_name: None,
            });
        }
    }
    if tos.is_empty() {
        return Err(format!("no nameservers found in {}", path.display()));
    }
    Ok(tos)
}

fn bracket(ip: &str) -> String {
    if ip.contains(':') && !ip.starts_with('[') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    }
}

/// `IP`, `IP:port`, `[IPv6]`, `[IPv6]:port`.
fn host_port(text: &str, default_port: u16) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
}
