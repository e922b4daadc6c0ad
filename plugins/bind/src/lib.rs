//! `bind ADDRESS|IFACE ... [{ except ADDRESS|IFACE ... }]`: the addresses a
//! server block listens on, as CoreDNS's bind sets them.
//!
//! Each argument is an IP address, the name of one of the host's interfaces
//! (all its addresses at the time of start-up or reload), or a host name (its
//! first address, IPv4 first). `except` takes addresses out again, for its own
//! `bind` line only. Several `bind` lines in a block add up. No handler: this
//! only fills in [`oxidns_server::config::BlockSettings::listen_addrs`].

use std::net::{IpAddr, ToSocketAddrs};

use oxidns_server::{ConfigError, Directive, PluginEntry, Setup, Token};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "bind",
    setup,
};

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let mut interfaces = Interfaces::default();
    let mut addrs: Vec<IpAddr> = Vec::new();
    for directive in setup.directives() {
        if directive.args.is_empty() {
            return Err(directive.error("at least one address or interface name is expected"));
        }
        let except = except_list(directive, &mut interfaces)?;
        for arg in &directive.args {
            for ip in interfaces.resolve(arg)? {
                if !except.contains(&ip) && !addrs.contains(&ip) {
                    addrs.push(ip);
                }
            }
        }
    }
    if addrs.is_empty() {
        // An empty list would mean "every address": the opposite of what was asked.
        return Err(setup.directives()[0].error("no address left to listen on"));
    }
    setup.settings().listen_addrs = addrs;
    Ok(())
}

/// The addresses of a `bind` line's `except` lines.
fn except_list(
    directive: &Directive,
    interfaces: &mut Interfaces,
) -> Result<Vec<IpAddr>, ConfigError> {
    let mut except = Vec::new();
    for line in &directive.block {
        if line.name.text != "except" {
            return Err(directive.unknown_property(line));
        }
        if line.args.is_empty() {
            return Err(ConfigError::at(
                &line.name,
                "bind: except needs at least one address or interface name",
            ));
        }
        for arg in &line.args {
            except.extend(interfaces.resolve(arg)?);
        }
    }
    Ok(except)
}

/// The host's interfaces, read once and only if an argument is not an address.
#[derive(Default)]
struct Interfaces {
    list: Option<Vec<if_addrs::Interface>>,
}

impl Interfaces {
    /// The addresses an argument stands for: itself, an interface's, or a host name's.
    fn resolve(&mut self, arg: &Token) -> Result<Vec<IpAddr>, ConfigError> {
        if let Ok(ip) = arg.text.parse::<IpAddr>() {
            return Ok(vec![ip.to_canonical()]);
        }
        if self.list.is_none() {
            let list = if_addrs::get_if_addrs().map_err(|e| {
                ConfigError::at(arg, format!("bind: cannot list the host's interfaces: {e}"))
            })?;
            self.list = Some(list);
        }
        let list = self.list.as_deref().unwrap_or_default();
        if list.iter().any(|iface| iface.name == arg.text) {
            return Ok(list
                .iter()
                .filter(|iface| iface.name == arg.text)
                .map(|iface| iface.ip())
                .filter(|ip| !needs_scope(ip))
                .collect());
        }
        host_address(&arg.text).map(|ip| vec![ip]).ok_or_else(|| {
            ConfigError::at(
                arg,
                format!(
                    "bind: not a valid IP address or interface name: '{}'",
                    arg.text
                ),
            )
        })
    }
}

/// IPv6 link-local addresses, which cannot be bound without a zone (`%eth0`).
fn needs_scope(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => false,
        IpAddr::V6(v6) => v6.is_unicast_link_local() || v6.segments()[0] & 0xff0f == 0xff02,
    }
}

/// The first address of a host name, IPv4 preferred, as Go's `ResolveIPAddr("ip", …)`.
fn host_address(name: &str) -> Option<IpAddr> {
    let addrs: Vec<IpAddr> = (name, 0)
        .to_socket_addrs()
        .ok()?
        .map(|a| a.ip().to_canonical())
        .collect();
    addrs
        .iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxidns_server::test_util::{config, config_error};

    fn listen_addrs(corefile: &str) -> Vec<String> {
        let config = config(corefile, &[PLUGIN]).unwrap_or_else(|e| panic!("{}", e[0]));
        config.blocks[0]
            .listen_addrs
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn listeners(corefile: &str) -> Vec<String> {
        let config = config(corefile, &[PLUGIN]).unwrap_or_else(|e| panic!("{}", e[0]));
        config
            .listeners
            .iter()
            .map(|l| l.addr.to_string())
            .collect()
    }

    /// The loopback interface's usable addresses, as the host has them now.
    fn loopback_addrs() -> Vec<IpAddr> {
        if_addrs::get_if_addrs()
            .unwrap()
            .into_iter()
            .filter(|iface| iface.name == "lo")
            .map(|iface| iface.ip())
            .collect()
    }

    #[test]
    fn one_address_is_listened_on() {
        assert_eq!(listen_addrs(". {\n bind 1.2.3.4\n}"), ["1.2.3.4"]);
    }

    #[test]
    fn several_addresses_keep_their_order() {
        assert_eq!(
            listen_addrs(". {\n bind ::1 1.2.3.4 ::5 127.9.9.0\n}"),
            ["::1", "1.2.3.4", "::5", "127.9.9.0"]
        );
    }

    #[test]
    fn several_bind_lines_add_up() {
        assert_eq!(
            listen_addrs(". {\n bind 127.0.0.1\n bind ::1\n}"),
            ["127.0.0.1", "::1"]
        );
    }

    #[test]
    fn repeated_address_is_listed_once() {
        assert_eq!(
            listen_addrs(". {\n bind 127.0.0.1 127.0.0.1\n bind 127.0.0.1\n}"),
            ["127.0.0.1"]
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_address_counts_as_ipv4() {
        assert_eq!(listen_addrs(". {\n bind ::ffff:10.0.0.1\n}"), ["10.0.0.1"]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn interface_name_expands_to_its_addresses() {
        let expected = loopback_addrs();
        let got = listen_addrs(". {\n bind lo\n}");
        assert!(got.contains(&"127.0.0.1".to_owned()), "{got:?}");
        assert_eq!(got.len(), expected.len(), "{got:?} vs {expected:?}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn addresses_and_interfaces_mix() {
        let got = listen_addrs(". {\n bind 1.2.3.4 lo\n}");
        assert_eq!(got[0], "1.2.3.4");
        assert_eq!(got[1], "127.0.0.1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn except_removes_an_interface_address() {
        if !loopback_addrs().contains(&"::1".parse().unwrap()) {
            return; // no IPv6 on this host: nothing would be left
        }
        assert_eq!(
            listen_addrs(". {\n bind lo {\n  except 127.0.0.1\n }\n}"),
            ["::1"]
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn except_takes_an_interface_name() {
        assert_eq!(
            listen_addrs(". {\n bind 1.2.3.4 127.0.0.1 {\n  except lo\n }\n}"),
            ["1.2.3.4"]
        );
    }

    #[test]
    fn except_lines_add_up() {
        assert_eq!(
            listen_addrs(
                ". {\n bind 1.1.1.1 2.2.2.2 3.3.3.3 {\n  except 1.1.1.1\n  except 3.3.3.3\n }\n}"
            ),
            ["2.2.2.2"]
        );
    }

    #[test]
    fn except_applies_to_its_own_bind_line_only() {
        assert_eq!(
            listen_addrs(". {\n bind 127.0.0.1 ::1 {\n  except 127.0.0.1\n }\n bind 127.0.0.1\n}"),
            ["::1", "127.0.0.1"]
        );
    }

    #[test]
    fn host_name_binds_to_its_first_ipv4_address() {
        assert_eq!(listen_addrs(". {\n bind localhost\n}"), ["127.0.0.1"]);
    }

    #[test]
    fn without_bind_every_address_is_listened_on() {
        assert_eq!(listeners(". {\n}"), ["[::]:53"]);
    }

    #[test]
    fn each_address_gets_its_own_listener() {
        assert_eq!(
            listeners(".:1053 {\n bind 127.0.0.1 ::1\n}"),
            ["127.0.0.1:1053", "[::1]:1053"]
        );
    }

    #[test]
    fn same_zone_on_different_addresses_is_allowed() {
        assert_eq!(
            listeners(". {\n bind 127.0.0.1\n}\n. {\n bind 127.0.0.2\n}"),
            ["127.0.0.1:53", "127.0.0.2:53"]
        );
    }

    #[test]
    fn blocks_bound_to_one_address_share_its_listener() {
        let config = config(
            "a.org {\n bind 127.0.0.1\n}\nb.org {\n bind 127.0.0.1\n}",
            &[PLUGIN],
        )
        .unwrap();
        assert_eq!(config.listeners.len(), 1);
        let router = &config.listeners[0].router;
        for (qname, zone) in [("www.a.org", "a.org"), ("www.b.org", "b.org")] {
            let name = oxidns_server::proto::name_from_str(qname).unwrap();
            let (found, _) = router.route(&name).unwrap();
            assert_eq!(oxidns_server::proto::name_text(found), format!("{zone}."));
        }
    }

    #[test]
    fn same_zone_on_an_address_and_on_every_address_is_refused() {
        assert_eq!(
            config_error(". {\n bind 127.0.0.1\n}\n. {\n}", &[PLUGIN]),
            "Corefile:4: zone . on port 53 is already served by the block at Corefile:1"
        );
    }

    #[test]
    fn bind_without_arguments_is_refused() {
        assert_eq!(
            config_error(". {\n bind\n}", &[PLUGIN]),
            "Corefile:2: bind: at least one address or interface name is expected"
        );
    }

    #[test]
    fn invalid_address_is_refused() {
        assert_eq!(
            config_error(". {\n bind 1.2.3.invalid\n}", &[PLUGIN]),
            "Corefile:2: bind: not a valid IP address or interface name: '1.2.3.invalid'"
        );
    }

    #[test]
    fn unknown_name_among_addresses_is_refused() {
        assert_eq!(
            config_error(
                ". {\n bind ::1 1.2.3.4\n bind 127.9.9.0 no-such-iface.invalid\n}",
                &[PLUGIN]
            ),
            "Corefile:3: bind: not a valid IP address or interface name: 'no-such-iface.invalid'"
        );
    }

    #[test]
    fn invalid_except_address_is_refused_at_its_line() {
        assert_eq!(
            config_error(
                ". {\n bind 127.0.0.1 {\n  except 300.1.1.1\n }\n}",
                &[PLUGIN]
            ),
            "Corefile:3: bind: not a valid IP address or interface name: '300.1.1.1'"
        );
    }

    #[test]
    fn except_without_arguments_is_refused() {
        assert_eq!(
            config_error(". {\n bind 127.0.0.1 {\n  except\n }\n}", &[PLUGIN]),
            "Corefile:3: bind: except needs at least one address or interface name"
        );
    }

    #[test]
    fn unknown_property_is_refused() {
        assert_eq!(
            config_error(". {\n bind 127.0.0.1 {\n  only ::1\n }\n}", &[PLUGIN]),
            "Corefile:3: bind: unknown property 'only'"
        );
    }

    #[test]
    fn excepting_every_address_is_refused() {
        assert_eq!(
            config_error(
                ". {\n bind 127.0.0.1 {\n  except 127.0.0.1\n }\n}",
                &[PLUGIN]
            ),
            "Corefile:2: bind: no address left to listen on"
        );
    }

    #[test]
    fn ipv6_link_local_interface_addresses_are_left_out() {
        assert!(needs_scope(&"fe80::1".parse().unwrap()));
        assert!(needs_scope(&"ff02::1".parse().unwrap()));
        assert!(!needs_scope(&"fd00::2".parse().unwrap()));
        assert!(!needs_scope(&"169.254.1.1".parse().unwrap()));
    }
}
