//! `reload [INTERVAL] [JITTER]`: check the Corefile (and every file it
//! imports) for changes and apply a changed one without dropping a query.
//!
//! The plugin only records its settings; the binary runs the check, since it
//! owns the server (and SIGUSR1 asks for the same check at any time).

use std::time::Duration;

use oxidns_server::duration::parse_go_duration;
use oxidns_server::{ConfigError, PluginEntry, Setup};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "reload",
    setup,
};

/// CoreDNS's defaults and lower bounds.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_JITTER: Duration = Duration::from_secs(15);
const MIN_INTERVAL: Duration = Duration::from_secs(2);
const MIN_JITTER: Duration = Duration::from_secs(1);

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?;
    directive.no_block()?;
    let args = directive.args_between(0, 2)?;
    let duration = |index: usize, default: Duration| match args.get(index) {
        None => Ok(default),
        Some(token) => parse_go_duration(&token.text)
            .ok_or_else(|| directive.error(format!("invalid duration '{}'", token.text))),
    };
    let interval = duration(0, DEFAULT_INTERVAL)?;
    let mut jitter = duration(1, DEFAULT_JITTER)?;
    if interval < MIN_INTERVAL {
        return Err(directive.error(format!("interval must be at least {MIN_INTERVAL:?}")));
    }
    if jitter < MIN_JITTER {
        return Err(directive.error(format!("jitter must be at least {MIN_JITTER:?}")));
    }
    if jitter > interval / 2 {
        tracing::warn!(target: "plugin/reload", "jitter {jitter:?} is more than half the interval; using {:?}", interval / 2);
        jitter = interval / 2;
    }
    setup.settings().reload = Some((interval, jitter));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxidns_server::test_util::{config, config_error};

    fn reload_of(corefile: &str) -> Option<(Duration, Duration)> {
        config(corefile, &[PLUGIN]).unwrap().reload()
    }

    #[test]
    fn defaults_are_thirty_seconds_with_fifteen_of_jitter() {
        assert_eq!(
            reload_of(". {\n reload\n}"),
            Some((Duration::from_secs(30), Duration::from_secs(15)))
        );
    }

    #[test]
    fn interval_and_jitter_are_read_as_go_durations() {
        assert_eq!(
            reload_of(". {\n reload 10s 2s\n}"),
            Some((Duration::from_secs(10), Duration::from_secs(2)))
        );
    }

    #[test]
    fn jitter_is_capped_at_half_the_interval() {
        assert_eq!(
            reload_of(". {\n reload 10s 9s\n}"),
            Some((Duration::from_secs(10), Duration::from_secs(5)))
        );
    }

    #[test]
    fn without_reload_nothing_is_checked() {
        assert_eq!(config(". {\n}", &[PLUGIN]).unwrap().reload(), None);
    }

    #[test]
    fn mistakes_are_refused_at_their_line() {
        assert_eq!(
            config_error(". {\n reload 1s\n}", &[PLUGIN]),
            "Corefile:2: reload: interval must be at least 2s"
        );
        assert_eq!(
            config_error(". {\n reload 5s 100ms\n}", &[PLUGIN]),
            "Corefile:2: reload: jitter must be at least 1s"
        );
        assert_eq!(
            config_error(". {\n reload soon\n}", &[PLUGIN]),
            "Corefile:2: reload: invalid duration 'soon'"
        );
        assert_eq!(
            config_error(". {\n reload 5s 2s 1s\n}", &[PLUGIN]),
            "Corefile:2: reload: takes 0 to 2 arguments, got 3"
        );
    }
}
