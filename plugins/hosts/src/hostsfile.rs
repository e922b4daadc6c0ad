//! The hosts(5) format: `ADDRESS NAME [ALIASES...]`, `#` comments.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use oxidns_server::proto::{Name, lowercase, name_from_str};

/// Names and addresses read from one source (the file, or the inline entries).
#[derive(Debug, Default)]
pub(crate) struct HostsMap {
    v4: HashMap<Name, Vec<Ipv4Addr>>,
    v6: HashMap<Name, Vec<Ipv6Addr>>,
    /// Reverse entries; empty with `no_reverse`.
    by_addr: HashMap<IpAddr, Vec<Name>>,
}

impl HostsMap {
    /// Parses hosts-file text, keeping the names inside `origins`.
    pub(crate) fn parse(text: &str, origins: &[Name], reverse: bool) -> HostsMap {
        let mut map = HostsMap::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let [address, names @ ..] = fields.as_slice() else {
                continue;
            };
            if names.is_empty() {
                continue;
            }
            let Some(address) = parse_address(address) else {
                continue;
            };
            for name in names {
                let Ok(name) = name_from_str(name) else {
                    continue;
                };
                let name = lowercase(&name);
                if !origins.iter().any(|origin| name.ends_with(origin)) {
                    continue;
                }
                match address {
                    IpAddr::V4(v4) => map.v4.entry(name.clone()).or_default().push(v4),
                    IpAddr::V6(v6) => map.v6.entry(name.clone()).or_default().push(v6),
                }
                // A wildcard owner stands for many names: no PTR points at it.
                if reverse && !is_wildcard(&name) {
                    map.by_addr.entry(address).or_default().push(name);
                }
            }
        }
        map
    }

    /// The number of entries, forward and reverse.
    pub(crate) fn len(&self) -> usize {
        self.v4.values().map(Vec::len).sum::<usize>()
            + self.v6.values().map(Vec::len).sum::<usize>()
            + self.by_addr.values().map(Vec::len).sum::<usize>()
    }

    pub(crate) fn v4(&self, name: &Name) -> &[Ipv4Addr] {
        lookup(&self.v4, name)
    }

    pub(crate) fn v6(&self, name: &Name) -> &[Ipv6Addr] {
        lookup(&self.v6, name)
    }

    pub(crate) fn names(&self, address: &IpAddr) -> &[Name] {
        self.by_addr.get(address).map_or(&[], Vec::as_slice)
    }
}

/// The entries of `name` (lower case), or of the wildcard one label above it.
fn lookup<'m, T>(map: &'m HashMap<Name, Vec<T>>, name: &Name) -> &'m [T] {
    if let Some(found) = map.get(name) {
        return found;
    }
    if let Some(parent) = name.parent()
        && let Ok(wildcard) =
            name_from_str(&format!("*.{}", oxidns_server::proto::name_text(&parent)))
        && let Some(found) = map.get(&wildcard)
    {
        return found;
    }
    &[]
}

fn is_wildcard(name: &Name) -> bool {
    name.first().as_slice() == b"*"
}

/// An address as hosts files write it; an IPv6 zone (`%eth0`) is dropped and
/// IPv4-mapped IPv6 addresses count as IPv4, as in Go.
fn parse_address(text: &str) -> Option<IpAddr> {
    let text = text.split('%').next().unwrap_or_default();
    text.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// The address a reverse name (`4.3.2.1.in-addr.arpa.`, nibbles in `ip6.arpa.`) stands for.
pub(crate) fn address_from_reverse(name: &Name) -> Option<IpAddr> {
    let labels: Vec<String> = name
        .iter()
        .filter(|l| !l.is_root())
        .map(|l| l.to_string().to_ascii_lowercase())
        .collect();
    match labels.as_slice() {
        [d, c, b, a, in_addr, arpa] if in_addr == "in-addr" && arpa == "arpa" => {
            let octets = [a, b, c, d].map(|o| o.parse::<u8>().ok());
            if octets.iter().any(|o| o.is_none()) || [a, b, c, d].iter().any(|o| o.len() > 3) {
                return None;
            }
            let o = octets.map(Option::unwrap_or_default);
            Some(IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3])))
        }
        [nibbles @ .., ip6, arpa] if ip6 == "ip6" && arpa == "arpa" && nibbles.len() == 32 => {
            let mut value: u128 = 0;
            for nibble in nibbles.iter().rev() {
                if nibble.len() != 1 {
                    return None;
                }
                value = value << 4 | u128::from_str_radix(nibble, 16).ok()?;
            }
            Some(IpAddr::V6(Ipv6Addr::from(value)).to_canonical())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        name_from_str(text).unwrap()
    }

    #[test]
    fn comments_short_lines_and_bad_addresses_are_skipped() {
        let map = HostsMap::parse(
            "# comment\n10.0.0.1 a.example # trailing\nlonely\nnot-an-ip b.example\n",
            &[Name::root()],
            true,
        );
        assert_eq!(map.v4(&name("a.example")), &[Ipv4Addr::new(10, 0, 0, 1)]);
        assert!(map.v4(&name("b.example")).is_empty());
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4_and_zones_are_dropped() {
        let map = HostsMap::parse(
            "::ffff:10.0.0.2 a.example\nfe80::1%eth0 b.example\n",
            &[Name::root()],
            true,
        );
        assert_eq!(map.v4(&name("a.example")), &[Ipv4Addr::new(10, 0, 0, 2)]);
        assert_eq!(
            map.v6(&name("b.example")),
            &["fe80::1".parse::<Ipv6Addr>().unwrap()]
        );
    }

    #[test]
    fn names_outside_the_origins_are_left_out() {
        let map = HostsMap::parse("10.0.0.1 a.example b.other\n", &[name("example")], true);
        assert_eq!(map.v4(&name("a.example")).len(), 1);
        assert!(map.v4(&name("b.other")).is_empty());
    }

    #[test]
    fn reverse_names_give_addresses() {
        assert_eq!(
            address_from_reverse(&name("1.0.0.10.in-addr.arpa")),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            address_from_reverse(&name(
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa"
            )),
            Some("::1".parse().unwrap())
        );
        assert_eq!(address_from_reverse(&name("0.10.in-addr.arpa")), None);
        assert_eq!(address_from_reverse(&name("x.0.0.10.in-addr.arpa")), None);
    }
}
