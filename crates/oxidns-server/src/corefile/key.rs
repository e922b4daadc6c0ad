//! Server block keys: `[scheme://]zone[:port]`, as CoreDNS normalises them.
//!
//! A zone may be written as a CIDR network, which stands for its reverse
//! zone(s). Networks that do not end on a label boundary (8 bits for IPv4,
//! 4 for IPv6) are split into the boundary networks they cover, so
//! `10.0.0.0/15` serves `0.10.in-addr.arpa.` and `1.10.in-addr.arpa.`.

use std::fmt;
use std::net::IpAddr;

use oxidns_proto::{Name, name_from_str};

use super::{ConfigError, Token};

/// How queries reach a server block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    Dns,
    Tls,
    Https,
    Https3,
    Quic,
    Grpc,
}

impl Scheme {
    fn from_prefix(key: &str) -> Option<(Scheme, &str)> {
        const SCHEMES: [(&str, Scheme); 6] = [
            ("dns://", Scheme::Dns),
            ("tls://", Scheme::Tls),
            ("https://", Scheme::Https),
            ("https3://", Scheme::Https3),
            ("quic://", Scheme::Quic),
            ("grpc://", Scheme::Grpc),
        ];
        SCHEMES
            .iter()
            .find_map(|(prefix, scheme)| key.strip_prefix(prefix).map(|rest| (*scheme, rest)))
    }

    /// The port used when the key names none (DNS uses `-dns.port`).
    pub fn default_port(self, dns_port: u16) -> u16 {
        match self {
            Scheme::Dns => dns_port,
            Scheme::Tls | Scheme::Quic => 853,
            Scheme::Https | Scheme::Https3 | Scheme::Grpc => 443,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Dns => "dns",
            Scheme::Tls => "tls",
            Scheme::Https => "https",
            Scheme::Https3 => "https3",
            Scheme::Quic => "quic",
            Scheme::Grpc => "grpc",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One normalised key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneKey {
    pub scheme: Scheme,
    /// Lower-case zones; several when a CIDR key spans label boundaries.
    pub zones: Vec<Name>,
    pub port: u16,
    /// Where the key was written.
    pub token: Token,
}

/// Parses a key; `dns_port` is the default port for `dns://` keys.
pub fn parse_key(token: &Token, dns_port: u16) -> Result<ZoneKey, ConfigError> {
    let error = |message: String| ConfigError::at(token, message);
    let text = token.text.as_str();
    let (scheme, rest) = match Scheme::from_prefix(text) {
        Some(found) => found,
        None if text.contains("://") => {
            return Err(error(format!("unknown scheme in '{text}'")));
        }
        None => (Scheme::Dns, text),
    };
    // A trailing :digits is the port; a CIDR always has its /mask before it.
    let (host, port) = match rest.rfind(':') {
        Some(colon) if colon + 1 == rest.len() => {
            return Err(error(format!(
                "expecting a port after the last colon in '{text}'"
            )));
        }
        Some(colon) if rest[colon + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            let port = rest[colon + 1..]
                .parse::<u16>()
                .map_err(|_| error(format!("invalid port in '{text}'")))?;
            (&rest[..colon], port)
        }
        _ => (rest, scheme.default_port(dns_port)),
    };
    if host.is_empty() {
        return Err(error(format!("no zone in '{text}'")));
    }
    let zones = match parse_cidr(host) {
        Some((addr, prefix)) => {
            if host.starts_with(':') || (host.starts_with('0') && host.contains(':')) {
                return Err(error(format!("invalid CIDR '{host}'")));
            }
            reverse_zones(addr, prefix).map_err(error)?
        }
        None => vec![oxidns_proto::lowercase(
            &name_from_str(host).map_err(error)?,
        )],
    };
    Ok(ZoneKey {
        scheme,
        zones,
        port,
        token: token.clone(),
    })
}

fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, prefix) = text.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((addr, prefix))
}

/// The reverse zones of a network, one per label-boundary subnet it covers.
fn reverse_zones(addr: IpAddr, prefix: u8) -> Result<Vec<Name>, String> {
    let (bits, step, suffix) = match addr {
        IpAddr::V4(_) => (32u32, 8u32, "in-addr.arpa."),
        IpAddr::V6(_) => (128, 4, "ip6.arpa."),
    };
    let value: u128 = match addr {
        IpAddr::V4(v4) => u32::from(v4).into(),
        IpAddr::V6(v6) => u128::from(v6),
    };
    let prefix = u32::from(prefix);
    let rounded = prefix.div_ceil(step) * step;
    // At most 2^7 (IPv4) or 2^3 (IPv6) zones.
    let count = 1usize << (rounded - prefix);
    let keep_mask = |len: u32| {
        if len == 0 {
            0
        } else {
            u128::MAX << (bits - len) & mask(bits)
        }
    };
    let base = value & keep_mask(prefix);
    let mut zones = Vec::with_capacity(count);
    for index in 0..count as u128 {
        // `::/0` rounds to 0 bits: one zone (index 0) and a 128-bit shift,
        // which `<<` does not allow on a u128.
        let net = base | index.checked_shl(bits - rounded).unwrap_or(0) & mask(bits);
        let mut labels = Vec::new();
        for i in 0..rounded / step {
            let shift = bits - step * (i + 1);
            let unit = (net >> shift) & ((1u128 << step) - 1);
            labels.push(if step == 8 {
                unit.to_string()
            } else {
                format!("{unit:x}")
            });
        }
        labels.reverse();
        labels.push(suffix.to_owned());
        let text = labels.join(".");
        zones.push(name_from_str(&text)?);
    }
    Ok(zones)
}

fn mask(bits: u32) -> u128 {
    if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key(text: &str) -> Result<(Scheme, Vec<String>, u16), String> {
        let token = Token {
            text: text.into(),
            file: Arc::from("Corefile"),
            line: 1,
            quoted: false,
        };
        parse_key(&token, 53)
            .map(|k| {
                (
                    k.scheme,
                    k.zones.iter().map(oxidns_proto::name_text).collect(),
                    k.port,
                )
            })
            .map_err(|e| e.message)
    }

    fn ok(scheme: Scheme, zones: &[&str], port: u16) -> Result<(Scheme, Vec<String>, u16), String> {
        Ok((scheme, zones.iter().map(|z| z.to_string()).collect(), port))
    }

    #[test]
    fn key_table() {
        use Scheme::*;
        assert_eq!(key("."), ok(Dns, &["."], 53));
        assert_eq!(key("Example.ORG"), ok(Dns, &["example.org."], 53));
        assert_eq!(key("example.org.:1053"), ok(Dns, &["example.org."], 1053));
        assert_eq!(key("dns://.:5300"), ok(Dns, &["."], 5300));
        assert_eq!(key("tls://example.org"), ok(Tls, &["example.org."], 853));
        assert_eq!(key("https://."), ok(Https, &["."], 443));
        assert_eq!(key("https3://."), ok(Https3, &["."], 443));
        assert_eq!(key("quic://.:8853"), ok(Quic, &["."], 8853));
        assert_eq!(key("grpc://."), ok(Grpc, &["."], 443));
        assert_eq!(key("10.0.0.0/8"), ok(Dns, &["10.in-addr.arpa."], 53));
        assert_eq!(
            key("192.168.1.0/24:1053"),
            ok(Dns, &["1.168.192.in-addr.arpa."], 1053)
        );
        assert_eq!(
            key("10.0.0.0/15"),
            ok(Dns, &["0.10.in-addr.arpa.", "1.10.in-addr.arpa."], 53)
        );
        assert_eq!(key("0.0.0.0/0"), ok(Dns, &["in-addr.arpa."], 53));
        assert_eq!(key("10.1.2.3/32"), ok(Dns, &["3.2.1.10.in-addr.arpa."], 53));
        assert_eq!(
            key("2001:db8::/32"),
            ok(Dns, &["8.b.d.0.1.0.0.2.ip6.arpa."], 53)
        );
        assert_eq!(
            key("2001:db8::/31"),
            ok(
                Dns,
                &["8.b.d.0.1.0.0.2.ip6.arpa.", "9.b.d.0.1.0.0.2.ip6.arpa."],
                53
            )
        );
        assert_eq!(key("2001:db8::/32:5353").unwrap().2, 5353);
    }

    #[test]
    fn non_octet_prefix_expands_to_every_covered_zone() {
        let (_, zones, _) = key("172.16.0.0/12").unwrap();
        assert_eq!(zones.len(), 16);
        assert_eq!(zones[0], "16.172.in-addr.arpa.");
        assert_eq!(zones[15], "31.172.in-addr.arpa.");
    }

    #[test]
    fn ipv6_cidr_key_with_prefix_0_does_not_overflow_the_shift() {
        // Found by fuzzing (fuzz/regressions/corefile/ipv6-cidr-key-prefix-0-shift-overflow).
        assert_eq!(key("2001::/0"), ok(Scheme::Dns, &["ip6.arpa."], 53));
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(
            key("ftp://example.org")
                .unwrap_err()
                .contains("unknown scheme")
        );
        assert!(
            key("example.org:")
                .unwrap_err()
                .contains("expecting a port")
        );
        assert!(
            key("example.org:99999")
                .unwrap_err()
                .contains("invalid port")
        );
        assert!(
            key("exa mple..org")
                .unwrap_err()
                .contains("invalid domain name")
        );
        assert!(key("::/0").unwrap_err().contains("invalid CIDR"));
    }
}
