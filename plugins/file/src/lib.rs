//! `file`: serves zones from RFC 1035 zone files, as CoreDNS's file plugin,
//! with the lookup of [`oxidns_zone::Zone`] (RFC 1034 §4.3.2, wildcards,
//! DNAME, pre-signed zones with NSEC and NSEC3).
//!
//! Zones are read at setup, so `oxidns -check` reports zone errors as
//! `file:line: reason`. Every `reload` interval the files are checked; a
//! changed file with a new SOA serial is swapped in whole, and one with
//! errors is logged while the old zone keeps serving.
//!
//! The zones are registered in the block's [`ZoneSources`], where `transfer`
//! finds them to send them out and to hear of new versions (journal, NOTIFY).

use std::sync::Arc;
use std::time::Duration;

use oxidns_server::duration::parse_go_duration;
use oxidns_server::fallthrough::Fallthrough;
use oxidns_server::plugin::HookFuture;
use oxidns_server::proto::name_text;
use oxidns_server::{
    ConfigError, Handler, HandlerFuture, Lifecycle, Next, PluginEntry, Request, Setup,
};
use oxidns_zone::{Reload, ServedZone, ZoneProblem, ZoneSet, ZoneSources};
use tokio_util::sync::CancellationToken;

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "file",
    setup,
};

/// How often zone files are checked for changes unless `reload` says otherwise.
const DEFAULT_RELOAD: Duration = Duration::from_secs(60);

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let mut zones = Vec::new();
    let mut fallthrough = Fallthrough::Never;
    let mut reload = DEFAULT_RELOAD;
    for directive in setup.directives() {
        let args = directive.args_between(1, usize::MAX)?;
        let path = setup.resolve_path(&args[0].text);
        for apex in setup.zones_or_block(&args[1..])? {
            let (served, warnings) = ServedZone::load(&path, &apex).map_err(|p| zone_error(&p))?;
            for warning in warnings {
                tracing::warn!(target: "plugin/file", "{warning}");
            }
            zones.push(served);
        }
        for line in &directive.block {
            match line.name.text.as_str() {
                "reload" => {
                    let text = &line.args_between(1, 1)?[0].text;
                    reload = parse_go_duration(text)
                        .ok_or_else(|| line.error(format!("invalid duration '{text}'")))?;
                }
                "fallthrough" => fallthrough = Fallthrough::parse(line)?,
                // Accepted and ignored, as CoreDNS does since 1.7.
                "upstream" => {}
                _ => return Err(directive.unknown_property(line)),
            }
        }
    }
    let zones = Arc::new(ZoneSet::new(zones));
    // For `transfer` (and others that work on served zones) to find them.
    setup.shared::<ZoneSources>().register(zones.clone());
    let file = Arc::new(File {
        zones,
        fallthrough,
        reload,
        stop: CancellationToken::new(),
    });
    setup.add_handler(file.clone());
    setup.add_lifecycle(file);
    Ok(())
}

/// A zone that fails to load stops the config; its first problem is the error.
fn zone_error(problems: &[ZoneProblem]) -> ConfigError {
    let first = &problems[0];
    let more = match problems.len() {
        1 => String::new(),
        n => format!(" (and {} more problem(s) in this zone)", n - 1),
    };
    ConfigError::new(
        first.file.as_ref(),
        first.line,
        format!("{}{more}", first.message),
    )
}

struct File {
    zones: Arc<ZoneSet>,
    fallthrough: Fallthrough,
    reload: Duration,
    stop: CancellationToken,
}

impl Handler for File {
    fn name(&self) -> &'static str {
        "file"
    }

    // Answers from its zones; what `fallthrough` brings back passes unread.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        let query = &request.query;
        let answer = self.zones.answer(
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

impl Lifecycle for File {
    fn startup(&self) -> HookFuture<'_, Result<(), String>> {
        if !self.reload.is_zero() {
            let zones: Vec<Arc<ServedZone>> = self.zones.zones();
            tokio::spawn(watch(zones, self.reload, self.stop.clone()));
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn shutdown(&self) -> HookFuture<'_, ()> {
        self.stop.cancel();
        Box::pin(std::future::ready(()))
    }
}

/// Checks the zone files every `interval` until stopped.
async fn watch(zones: Vec<Arc<ServedZone>>, interval: Duration, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        for zone in &zones {
            let checked = zone.clone();
            let Ok(outcome) =
                tokio::task::spawn_blocking(move || checked.reload_if_changed()).await
            else {
                continue;
            };
            log_reload(zone, outcome);
        }
    }
}

fn log_reload(zone: &ServedZone, outcome: Reload) {
    let apex = name_text(&zone.apex);
    let path = zone.path.display();
    match outcome {
        Reload::Unchanged => {}
        Reload::SameSerial => tracing::info!(
            target: "plugin/file",
            "{path} changed but the SOA serial of {apex} did not: not reloaded"
        ),
        Reload::Reloaded { serial, warnings } => {
            for warning in warnings {
                tracing::warn!(target: "plugin/file", "{warning}");
            }
            tracing::info!(target: "plugin/file", "Successfully reloaded zone \"{apex}\" in \"{path}\" with serial {serial}");
        }
        Reload::Failed(problems) => {
            for problem in problems {
                tracing::error!(target: "plugin/file", "failed to reload zone \"{apex}\": {problem}; still serving the previous version");
            }
        }
    }
}

#[cfg(test)]
mod tests;
