//! `limits { … }`: bounds on what clients can make a server block's
//! listeners hold, beyond CoreDNS (which has none of these settings):
//!
//! - `tcp_connections N`: open TCP connections; more are closed at once.
//! - `tcp_connections_per_client N`: open TCP connections from one address.
//! - `tcp_pipeline N`: queries answered at once on one TCP connection
//!   (RFC 7766 §6.2.1.1); reading pauses beyond it.
//! - `udp_in_flight N`: UDP queries waiting for an answer (an upstream);
//!   more are dropped, so a flood cannot queue without bound.
//!
//! What is not given keeps the default. Blocks that share an address and
//! port share one listener: the smallest value given wins. Every time a
//! limit turns something away it counts in `oxidns_limit_reached_total`.

use oxidns_server::{ConfigError, PluginEntry, Setup};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "limits",
    setup,
};

/// The largest count accepted for any limit: beyond it a limit means nothing.
const MOST: usize = 10_000_000;

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?.clone();
    let mut limits = setup.settings().limits.clone();
    limits.read_block(
        &directive,
        |limits, name| match name {
            "tcp_connections" => Some(&mut limits.max_tcp_connections),
            "tcp_connections_per_client" => Some(&mut limits.max_tcp_connections_per_client),
            "tcp_pipeline" => Some(&mut limits.max_tcp_in_flight),
            "udp_in_flight" => Some(&mut limits.max_udp_in_flight),
            _ => None,
        },
        |line, text| {
            text.parse::<usize>()
                .ok()
                .filter(|n| (1..=MOST).contains(n))
                .ok_or_else(|| line.error(format!("'{text}' is not a count from 1 to {MOST}")))
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
    fn each_line_sets_its_limit() {
        let corefile = ".:0 {\n limits {\n tcp_connections 50\n tcp_connections_per_client 5\n tcp_pipeline 8\n udp_in_flight 1000\n }\n}";
        let limits = config(corefile, &[PLUGIN]).unwrap().listeners[0]
            .limits
            .clone();
        assert_eq!(limits.max_tcp_connections, Some(50));
        assert_eq!(limits.max_tcp_connections_per_client, Some(5));
        assert_eq!(limits.max_tcp_in_flight, Some(8));
        assert_eq!(limits.max_udp_in_flight, Some(1000));
    }

    #[test]
    fn mistakes_are_reported_at_their_line() {
        let cases = [
            (
                ".:0 {\n limits\n}",
                "Corefile:2: limits: give at least one setting",
            ),
            (
                ".:0 {\n limits {\n tcp_connections 0\n }\n}",
                "Corefile:3: tcp_connections: '0' is not a count",
            ),
            (
                ".:0 {\n limits {\n tcp_connections many\n }\n}",
                "Corefile:3: tcp_connections: 'many' is not a count",
            ),
            (
                ".:0 {\n limits {\n queries 5\n }\n}",
                "Corefile:3: limits: unknown property 'queries'",
            ),
        ];
        for (corefile, expected) in cases {
            let error = config_error(corefile, &[PLUGIN]);
            assert!(error.starts_with(expected), "{corefile:?}: {error}");
        }
    }
}
