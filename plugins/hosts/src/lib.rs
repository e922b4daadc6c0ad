//! `hosts`: answers A, AAAA and PTR queries from an /etc/hosts-style file and
//! from entries written inline in the Corefile, as CoreDNS's hosts does.
//!
//! The file is re-read every `reload` interval when its modification time or
//! size changed; the parsed entries sit behind an [`ArcSwap`], so queries
//! never wait for a reload.
//!
//! Metrics (CoreDNS's names): `coredns_hosts_entries` and
//! `coredns_hosts_reload_timestamp_seconds`, set each time the file is read.

mod hostsfile;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use oxidns_server::duration::parse_go_duration;
use oxidns_server::fallthrough::Fallthrough;
use oxidns_server::proto::domain::rdata::{A, Aaaa, Ptr};
use oxidns_server::proto::{
    Class, Name, Rcode, Record, RecordData, Rtype, Ttl, in_zone, lowercase,
};
use oxidns_server::{
    ConfigError, Directive, Handler, HandlerFuture, Lifecycle, Next, PluginEntry, Request, Setup,
};
use tokio::task::JoinHandle;

use crate::hostsfile::{HostsMap, address_from_reverse};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "hosts",
    setup,
};

const DEFAULT_PATH: &str = "/etc/hosts";
const DEFAULT_TTL: u32 = 3600;
const DEFAULT_RELOAD: Duration = Duration::from_secs(5);

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?.clone();
    let path = match directive.args.first() {
        Some(file) => {
            let path = setup.resolve_path(&file.text);
            check_path(&directive, &path)?;
            path
        }
        None => PathBuf::from(DEFAULT_PATH),
    };
    let origins = setup.zones_or_block(directive.args.get(1..).unwrap_or_default())?;

    let mut ttl = DEFAULT_TTL;
    let mut reverse = true;
    let mut reload = DEFAULT_RELOAD;
    let mut fall = Fallthrough::Never;
    let mut fall_unsupported = None;
    let mut inline = Vec::new();
    for line in &directive.block {
        match line.name.text.as_str() {
            "fallthrough" => fall = Fallthrough::parse(line)?,
            "fallthrough_unsupported" => {
                line.args_between(0, 0)
                    .map_err(|e| prefixed(&directive, e))?;
                fall_unsupported = Some(line);
            }
            "no_reverse" => {
                line.args_between(0, 0)
                    .map_err(|e| prefixed(&directive, e))?;
                reverse = false;
            }
            "ttl" => ttl = parse_ttl(line)?,
            "reload" => reload = parse_reload(line)?,
            // As in CoreDNS, any other line before `fallthrough` is a hosts entry.
            _ if fall == Fallthrough::Never => {
                let mut entry = line.name.text.clone();
                for arg in &line.args {
                    entry.push(' ');
                    entry.push_str(&arg.text);
                }
                inline.push(entry);
            }
            _ => return Err(directive.unknown_property(line)),
        }
    }
    if let Some(line) = fall_unsupported
        && fall == Fallthrough::Never
    {
        return Err(ConfigError::at(
            &line.name,
            "hosts: fallthrough_unsupported requires fallthrough",
        ));
    }

    let inline = HostsMap::parse(&inline.join("\n"), &origins, reverse);
    let data = Arc::new(Hostsfile {
        path,
        origins: origins.clone(),
        reverse,
        file: ArcSwap::from_pointee(HostsMap::default()),
        inline,
        stamp: Mutex::new(None),
    });
    data.read();
    setup.add_handler(Arc::new(Hosts {
        data: data.clone(),
        origins,
        ttl: Ttl::from_secs(ttl),
        fall,
        fall_unsupported: fall_unsupported.is_some(),
    }));
    setup.add_lifecycle(Arc::new(Reloader {
        data,
        interval: reload,
        task: Mutex::new(None),
    }));
    Ok(())
}

/// Puts `hosts: ` in front of an error about a line of the block.
fn prefixed(directive: &Directive, error: ConfigError) -> ConfigError {
    ConfigError {
        message: format!("{}: {}", directive.name.text, error.message),
        ..error
    }
}

/// A missing file is only warned about (it may appear later); an unreadable one is an error.
fn check_path(directive: &Directive, path: &std::path::Path) -> Result<(), ConfigError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            tracing::warn!(target: "plugin/hosts", "hosts file {} is a directory", path.display());
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(target: "plugin/hosts", "hosts file does not exist: {}", path.display());
            Ok(())
        }
        Err(e) => Err(directive.error(format!(
            "unable to access hosts file '{}': {e}",
            path.display()
        ))),
    }
}

fn parse_ttl(line: &Directive) -> Result<u32, ConfigError> {
    let error = |message: &str| ConfigError::at(&line.name, format!("hosts: {message}"));
    let Some(value) = line.args.first() else {
        return Err(error("ttl needs a time in seconds"));
    };
    let ttl: i64 = value.text.parse().map_err(|_| {
        error(&format!(
            "ttl needs a number of seconds, got '{}'",
            value.text
        ))
    })?;
    if !(1..=65535).contains(&ttl) {
        return Err(error(&format!(
            "ttl {ttl} is invalid: it must be between 1 and 65535"
        )));
    }
    Ok(ttl as u32)
}

fn parse_reload(line: &Directive) -> Result<Duration, ConfigError> {
    let error = |message: String| ConfigError::at(&line.name, format!("hosts: {message}"));
    match line.arg_texts().as_slice() {
        [value] => parse_go_duration(value)
            .ok_or_else(|| error(format!("invalid duration for reload '{value}'"))),
        _ => Err(error(
            "reload needs a duration (zero seconds to disable)".to_owned(),
        )),
    }
}

/// The entries: from the file (replaced on reload) and inline (fixed).
struct Hostsfile {
    path: PathBuf,
    origins: Vec<Name>,
    reverse: bool,
    file: ArcSwap<HostsMap>,
    inline: HostsMap,
    /// Modification time and size of the file as last read.
    stamp: Mutex<Option<(SystemTime, u64)>>,
}

impl Hostsfile {
    /// Re-reads the file if its modification time or size changed. A file
    /// that cannot be read leaves the entries as they were (as in CoreDNS).
    fn read(&self) {
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return;
        };
        if meta.is_dir() {
            return;
        }
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        let mut last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if *last == Some(stamp) {
            return;
        }
        let text = match std::fs::read(&self.path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                tracing::warn!(target: "plugin/hosts", "cannot read hosts file {}: {e}", self.path.display());
                return;
            }
        };
        let map = HostsMap::parse(&text, &self.origins, self.reverse);
        tracing::debug!(target: "plugin/hosts",
            "parsed hosts file {} into {} entries",
            self.path.display(),
            map.len()
        );
        // CoreDNS's gauges, set on every read of the file: the entries of the
        // file and the inline ones together, and the file's modification time.
        metrics::gauge!("coredns_hosts_entries").set((self.inline.len() + map.len()) as f64);
        metrics::gauge!("coredns_hosts_reload_timestamp_seconds").set(unix_seconds(stamp.0));
        self.file.store(Arc::new(map));
        *last = Some(stamp);
    }
}

/// Seconds since the Unix epoch, with fractions (negative before it).
fn unix_seconds(time: SystemTime) -> f64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => after.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// Reads the file at start-up and then every interval, until shutdown.
struct Reloader {
    data: Arc<Hostsfile>,
    interval: Duration,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Lifecycle for Reloader {
    fn startup(&self) -> oxidns_server::plugin::HookFuture<'_, Result<(), String>> {
        self.data.read();
        if !self.interval.is_zero() {
            let data = self.data.clone();
            let interval = self.interval;
            let task = tokio::spawn(async move {
                let start = tokio::time::Instant::now() + interval;
                let mut ticker = tokio::time::interval_at(start, interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    let data = data.clone();
                    let _ = tokio::task::spawn_blocking(move || data.read()).await;
                }
            });
            let old = self
                .task
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .replace(task);
            if let Some(old) = old {
                old.abort();
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn shutdown(&self) -> oxidns_server::plugin::HookFuture<'_, ()> {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
        Box::pin(std::future::ready(()))
    }
}

struct Hosts {
    data: Arc<Hostsfile>,
    origins: Vec<Name>,
    ttl: Ttl,
    fall: Fallthrough,
    fall_unsupported: bool,
}

impl Hosts {
    /// The answer, or `None` to pass the query on.
    fn answer(&self, request: &Request) -> Option<oxidns_server::proto::Response> {
        let qname = lowercase(request.qname());
        let qtype = request.qtype();
        let in_zone = self.origins.iter().any(|zone| in_zone(&qname, zone));
        // Reverse zones need not be among the plugin's zones.
        if !in_zone && qtype != Rtype::PTR {
            return None;
        }
        let file = self.data.file.load();
        let maps = [&**file, &self.data.inline];
        let record = |data: RecordData| Record::new(qname.clone(), Class::IN, self.ttl, data);
        let answers: Vec<Record> = match qtype {
            Rtype::PTR => {
                let names: Vec<&Name> = match address_from_reverse(&qname) {
                    Some(address) => maps.iter().flat_map(|m| m.names(&address)).collect(),
                    None => Vec::new(),
                };
                // No reverse entry: the next plugin may know, fallthrough or not.
                if names.is_empty() {
                    return None;
                }
                names
                    .into_iter()
                    .map(|name| record(RecordData::Ptr(Ptr::new(name.clone()))))
                    .collect()
            }
            Rtype::A => maps
                .iter()
                .flat_map(|m| m.v4(&qname))
                .map(|ip| record(RecordData::A(A::new(*ip))))
                .collect(),
            Rtype::AAAA => maps
                .iter()
                .flat_map(|m| m.v6(&qname))
                .map(|ip| record(RecordData::Aaaa(Aaaa::new(*ip))))
                .collect(),
            _ => Vec::new(),
        };
        if answers.is_empty() {
            let exists = maps
                .iter()
                .any(|m| !m.v4(&qname).is_empty() || !m.v6(&qname).is_empty());
            if !exists {
                // Only a name the entries do not know falls through.
                if self.fall.matches(&qname) {
                    return None;
                }
                // Without a SOA there is no proper NXDOMAIN: CoreDNS says SERVFAIL.
                return Some(request.reply(Rcode::SERVFAIL));
            }
            let unsupported = !matches!(qtype, Rtype::A | Rtype::AAAA | Rtype::PTR);
            if unsupported && self.fall_unsupported && self.fall.matches(&qname) {
                return None;
            }
        }
        let mut response = request.reply(Rcode::NOERROR);
        response.authoritative = true;
        response.answer = answers;
        Some(response)
    }
}

impl Handler for Hosts {
    fn name(&self) -> &'static str {
        "hosts"
    }

    // Makes its own answers only.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        match self.answer(request) {
            Some(response) => HandlerFuture::ready(Ok(response)),
            None => next.serve(request),
        }
    }
}

#[cfg(test)]
mod tests;
