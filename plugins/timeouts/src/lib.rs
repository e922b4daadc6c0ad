//! `timeouts { read DURATION; write DURATION; idle DURATION }`, as CoreDNS's:
//! the server block's TCP connections give up on a client that takes longer
//! than `read` to send a started message, longer than `write` to take a
//! response, or that sends nothing for `idle` (RFC 7766 §6.2.3 leaves the
//! idle time to the server). What is not given keeps the default (5 s, 10 s,
//! 10 s). Blocks that share an address and port share one listener: the
//! shortest value given wins. Each timeout that ends a connection counts in
//! `oxidns_limit_reached_total`.

use std::time::Duration;

use oxidns_server::duration::parse_go_duration;
use oxidns_server::{ConfigError, PluginEntry, Setup};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "timeouts",
    setup,
};

/// The range CoreDNS accepts.
const SHORTEST: Duration = Duration::from_secs(1);
const LONGEST: Duration = Duration::from_secs(24 * 60 * 60);

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?.clone();
    let mut limits = setup.settings().limits.clone();
    limits.read_block(
        &directive,
        |limits, name| match name {
            "read" => Some(&mut limits.tcp_read_timeout),
            "write" => Some(&mut limits.tcp_write_timeout),
            "idle" => Some(&mut limits.tcp_idle_timeout),
            _ => None,
        },
        |line, text| {
            parse_go_duration(text)
                .filter(|d| (SHORTEST..=LONGEST).contains(d))
                .ok_or_else(|| {
                    line.error(format!(
                        "timeout provided '{text}' needs to be between 1 second and 24 hours"
                    ))
                })
        },
    )?;
    setup.settings().limits = limits;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxidns_server::test_util::{config, config_error};

    #[test]
    fn each_timeout_sets_its_limit_and_the_rest_keep_their_defaults() {
        let config = config(".:0 {\n timeouts {\n read 2s\n idle 1m\n }\n}", &[PLUGIN]).unwrap();
        let limits = &config.listeners[0].limits;
        assert_eq!(limits.tcp_read_timeout, Some(Duration::from_secs(2)));
        assert_eq!(limits.tcp_idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(limits.tcp_write_timeout, None);
    }

    #[test]
    fn blocks_on_one_listener_get_the_shortest_timeout() {
        let corefile =
            "a.org:0 {\n timeouts {\n idle 30s\n }\n}\nb.org:0 {\n timeouts {\n idle 5s\n }\n}";
        let config = config(corefile, &[PLUGIN]).unwrap();
        assert_eq!(config.listeners.len(), 1);
        assert_eq!(
            config.listeners[0].limits.tcp_idle_timeout,
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn mistakes_are_reported_at_their_line() {
        let cases = [
            (
                ".:0 {\n timeouts\n}",
                "Corefile:2: timeouts: give at least one setting",
            ),
            (
                ".:0 {\n timeouts {\n read 500ms\n }\n}",
                "Corefile:3: read: timeout provided '500ms' needs to be between 1 second and 24 hours",
            ),
            (
                ".:0 {\n timeouts {\n idle 25h\n }\n}",
                "Corefile:3: idle: timeout provided '25h'",
            ),
            (
                ".:0 {\n timeouts {\n slow 5s\n }\n}",
                "Corefile:3: timeouts: unknown property 'slow'",
            ),
            (
                ".:0 {\n timeouts {\n read\n }\n}",
                "Corefile:3: read: takes 1 argument(s), got 0",
            ),
        ];
        for (corefile, expected) in cases {
            let error = config_error(corefile, &[PLUGIN]);
            assert!(error.starts_with(expected), "{corefile:?}: {error}");
        }
    }
}
