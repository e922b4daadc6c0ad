//! `auto`: serves every zone file in a directory whose name matches a
//! pattern, as CoreDNS's auto plugin. Zones appear and disappear with their
//! files; changed files are reloaded when their SOA serial changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oxidns_server::duration::parse_go_duration;
use oxidns_server::fallthrough::Fallthrough;
use oxidns_server::plugin::HookFuture;
use oxidns_server::proto::{Name, name_from_str, name_text};
use oxidns_server::{
    ConfigError, Handler, HandlerFuture, Lifecycle, Next, PluginEntry, Request, Setup,
};
use oxidns_zone::{Reload, ServedZone, ZoneSet, ZoneSources};
use regex::Regex;
use tokio_util::sync::CancellationToken;

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "auto",
    setup,
};

const DEFAULT_PATTERN: &str = r"db\.(.*)";
const DEFAULT_TEMPLATE: &str = "{1}";
const DEFAULT_RELOAD: Duration = Duration::from_secs(60);
/// CoreDNS's bound on the pattern's length.
const MAX_PATTERN_LEN: usize = 10_000;

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?;
    let zones = setup.zones_or_block(&directive.args)?;
    let mut directory = None;
    let mut pattern = Regex::new(DEFAULT_PATTERN).expect("a valid default pattern");
    let mut template = DEFAULT_TEMPLATE.to_owned();
    let mut reload = DEFAULT_RELOAD;
    let mut fallthrough = Fallthrough::Never;
    for line in &directive.block {
        match line.name.text.as_str() {
            "directory" => {
                let args = line.args_between(1, 3)?;
                directory = Some(setup.resolve_path(&args[0].text));
                match args {
                    [_] => {}
                    [_, regex, origin] => {
                        if regex.text.len() > MAX_PATTERN_LEN {
                            return Err(line.error(format!(
                                "pattern longer than {MAX_PATTERN_LEN} characters"
                            )));
                        }
                        pattern = Regex::new(&regex.text)
                            .map_err(|e| line.error(format!("invalid pattern: {e}")))?;
                        template = origin.text.clone();
                    }
                    _ => return Err(line.error("takes DIR, or DIR REGEXP ORIGIN_TEMPLATE")),
                }
            }
            "reload" => {
                let text = &line.args_between(1, 1)?[0].text;
                reload = parse_go_duration(text)
                    .ok_or_else(|| line.error(format!("invalid duration '{text}'")))?;
            }
            "fallthrough" => fallthrough = Fallthrough::parse(line)?,
            "upstream" => {}
            _ => return Err(directive.unknown_property(line)),
        }
    }
    let directory = directory.ok_or_else(|| directive.error("needs a 'directory' line"))?;
    if !directory.is_dir() {
        return Err(directive.error(format!("{} is not a directory", directory.display())));
    }
    let directory_zones = Arc::new(DirectoryZones {
        directory,
        pattern,
        template,
        zones,
        set: Arc::new(ZoneSet::default()),
    });
    directory_zones.rescan();
    // For `transfer` to find the zones, including those found later.
    setup
        .shared::<ZoneSources>()
        .register(directory_zones.set.clone());
    let auto = Arc::new(Auto {
        served: directory_zones,
        fallthrough,
        reload,
        stop: CancellationToken::new(),
    });
    setup.add_handler(auto.clone());
    setup.add_lifecycle(auto);
    Ok(())
}

struct Auto {
    served: Arc<DirectoryZones>,
    fallthrough: Fallthrough,
    reload: Duration,
    stop: CancellationToken,
}

/// The zone files of one directory and the zones served from them.
struct DirectoryZones {
    directory: PathBuf,
    pattern: Regex,
    template: String,
    /// Only origins at or below these zones are served.
    zones: Vec<Name>,
    set: Arc<ZoneSet>,
}

impl DirectoryZones {
    /// The zone a file name stands for, if it matches and falls in our zones.
    fn origin_of(&self, file_name: &str) -> Option<Name> {
        let captures = self.pattern.captures(file_name)?;
        let mut origin = self.template.clone();
        for index in (1..captures.len()).rev() {
            let value = captures.get(index).map_or("", |m| m.as_str());
            origin = origin.replace(&format!("{{{index}}}"), value);
        }
        let origin = oxidns_server::proto::lowercase(&name_from_str(&origin).ok()?);
        self.zones
            .iter()
            .any(|z| origin.ends_with(z))
            .then_some(origin)
    }

    /// Zone files in the directory now, by origin.
    fn scan(&self) -> HashMap<Name, PathBuf> {
        let mut found = HashMap::new();
        let Ok(entries) = std::fs::read_dir(&self.directory) else {
            tracing::error!(target: "plugin/auto", "cannot read directory {}", self.directory.display());
            return found;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_file() {
                continue;
            }
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(origin) = self.origin_of(name) {
                found.insert(origin, path);
            }
        }
        found
    }

    /// Brings the served set in line with the directory: new files loaded,
    /// removed files dropped, changed files reloaded (blocking).
    fn rescan(&self) {
        let found = self.scan();
        let current: HashMap<Name, Arc<ServedZone>> = self
            .set
            .zones()
            .into_iter()
            .map(|z| (z.apex.clone(), z))
            .collect();
        let mut next = Vec::with_capacity(found.len());
        for (origin, path) in found {
            match current.get(&origin) {
                Some(zone) if zone.path == path => {
                    log_reload(zone, zone.reload_if_changed());
                    next.push(zone.clone());
                }
                _ => match load(&path, &origin) {
                    Some(zone) => next.push(Arc::new(zone)),
                    None => {
                        // A file that does not load keeps any version already serving.
                        if let Some(zone) = current.get(&origin) {
                            next.push(zone.clone());
                        }
                    }
                },
            }
        }
        for gone in current
            .keys()
            .filter(|o| !next.iter().any(|z| z.apex == **o))
        {
            tracing::info!(target: "plugin/auto", "zone {} removed: its file is gone", name_text(gone));
        }
        self.set.replace(next);
    }
}

fn load(path: &Path, origin: &Name) -> Option<ServedZone> {
    match ServedZone::load(path, origin) {
        Ok((zone, warnings)) => {
            for warning in warnings {
                tracing::warn!(target: "plugin/auto", "{warning}");
            }
            tracing::info!(target: "plugin/auto", "serving zone {} from {}", name_text(origin), path.display());
            Some(zone)
        }
        Err(problems) => {
            for problem in problems {
                tracing::error!(target: "plugin/auto", "zone {} not loaded: {problem}", name_text(origin));
            }
            None
        }
    }
}

fn log_reload(zone: &ServedZone, outcome: Reload) {
    let apex = name_text(&zone.apex);
    match outcome {
        Reload::Unchanged | Reload::SameSerial => {}
        Reload::Reloaded { serial, .. } => {
            tracing::info!(target: "plugin/auto", "reloaded zone {apex} with serial {serial}")
        }
        Reload::Failed(problems) => {
            for problem in problems {
                tracing::error!(target: "plugin/auto", "failed to reload zone {apex}: {problem}; still serving the previous version");
            }
        }
    }
}

impl Handler for Auto {
    fn name(&self) -> &'static str {
        "auto"
    }

    // Answers from its zones; what `fallthrough` brings back passes unread.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        let query = &request.query;
        let answer = self.served.set.answer(
            &query.qname,
            query.qtype,
            query.qclass,
            query.dnssec_ok(),
            request.wire_answers,
        );
        match answer {
            None => next.serve_or_refuse(request),
            Some(response) => self.fallthrough.answer_or_next(response, request, next),
        }
    }
}

impl Lifecycle for Auto {
    fn startup(&self) -> HookFuture<'_, Result<(), String>> {
        if !self.reload.is_zero() {
            tokio::spawn(watch(self.served.clone(), self.reload, self.stop.clone()));
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn shutdown(&self) -> HookFuture<'_, ()> {
        self.stop.cancel();
        Box::pin(std::future::ready(()))
    }
}

/// Rescans the directory every `interval` until stopped.
async fn watch(served: Arc<DirectoryZones>, interval: Duration, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let scanned = served.clone();
        let _ = tokio::task::spawn_blocking(move || scanned.rescan()).await;
    }
}

#[cfg(test)]
mod tests;
