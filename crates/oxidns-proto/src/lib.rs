//! DNS messages as oxidns sees them.
//!
//! This crate is the one place that knows the wire-format library (`domain`,
//! NLnet Labs): everything above it uses the small types here, so that a new
//! version of the library touches one crate.
//!
//! - [`Query`]: a received query, validated in full (RFC 1035 §4.1, RFC 6891 §6).
//! - [`Response`]: an answer under construction, encoded with name compression
//!   and truncated to whole RRsets when it does not fit (RFC 2181 §9).
//! - [`tsig`]: TSIG signing and verification of wire messages (RFC 8945).

mod edns;
mod query;
mod response;
pub mod tsig;
mod wire;
mod zone_map;

pub use edns::{Edns, EdnsOption, option_code};
pub use query::{MalformedQuery, Query, QueryError};
pub use response::{ReceivedResponse, Response, ResponseParseError, encode_error};
pub use wire::{WireBlock, WireHeader, WireRRset, WireSections};
pub use zone_map::ZoneMap;

pub use domain;
pub use domain::base::iana::{Class, Opcode, OptRcode, Rcode, Rtype};
pub use domain::base::{Serial, Ttl};

use bytes::Bytes;

/// An absolute domain name, as received or as loaded; comparisons ignore ASCII case.
pub type Name = domain::base::Name<Bytes>;
/// The record data of every type a zone can hold, unknown types included (RFC 3597).
pub type RecordData = domain::rdata::ZoneRecordData<Bytes, Name>;
/// A resource record with owned name and data.
pub type Record = domain::base::Record<Name, RecordData>;

/// The largest message a UDP client may get without EDNS (RFC 1035 §4.2.1).
pub const MIN_UDP_PAYLOAD: u16 = 512;
/// The EDNS payload size we advertise and use by default: the DNS Flag Day
/// 2020 value, which avoids IP fragmentation on almost every path.
pub const DEFAULT_UDP_PAYLOAD: u16 = 1232;

/// Parses a name in presentation format ("www.example.org" or "www.example.org.").
pub fn name_from_str(text: &str) -> Result<Name, String> {
    let absolute = if text.ends_with('.') {
        text.to_owned()
    } else {
        format!("{text}.")
    };
    let name = absolute
        .parse::<Name>()
        .map_err(|e| format!("invalid domain name '{text}': {e}"))?;
    // The parser lets a name end one octet too long (a last label of one
    // character past 254 octets); RFC 1035 §2.3.4 allows 255.
    if name.as_slice().len() > 255 {
        return Err(format!(
            "invalid domain name '{text}': longer than 255 octets"
        ));
    }
    Ok(name)
}

/// The name in lower case, for use as a map key.
pub fn lowercase(name: &Name) -> Name {
    use domain::base::ToName;
    name.to_canonical_name()
}

/// The wire form of `name` lower-cased at the start of `buffer` (at least
/// as long as the name: 255 bytes hold any), for per-query lookups that
/// must not allocate. Length octets are below 64, so folding the case of
/// the whole wire form leaves them alone.
pub fn lowercase_into<'b>(name: &Name, buffer: &'b mut [u8]) -> &'b [u8] {
    let wire = name.as_slice();
    let lower = &mut buffer[..wire.len()];
    lower.copy_from_slice(wire);
    lower.make_ascii_lowercase();
    lower
}

/// Whether `name` is `zone` or a name below it, without regard to case
/// (RFC 4343). Compares the wire forms from the end in one pass; the
/// name type's own `ends_with` walks the labels, which showed in profiles
/// of the per-query zone checks. Length octets (below 64) are not letters,
/// so case folding leaves them alone.
pub fn in_zone(name: &Name, zone: &Name) -> bool {
    let (name, zone) = (name.as_slice(), zone.as_slice());
    let Some(start) = name.len().checked_sub(zone.len()) else {
        return false;
    };
    // The zone's part must start at a label of the name.
    name[start..].eq_ignore_ascii_case(zone) && label_starts_at(name, start)
}

/// Whether a label of `name` (uncompressed wire form) starts at offset `at`.
pub fn label_starts_at(name: &[u8], at: usize) -> bool {
    let mut pos = 0;
    while pos < at {
        pos += 1 + usize::from(name[pos]);
    }
    pos == at
}

/// The name as text with its trailing dot ("example.org.", "." for the root).
pub fn name_text(name: &Name) -> String {
    if name.is_root() {
        ".".to_owned()
    } else {
        format!("{name}.")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn in_zone_matches_whole_labels_without_regard_to_case() {
        let n = |text: &str| name_from_str(text).unwrap();
        assert!(in_zone(&n("www.Example.ORG"), &n("example.org")));
        assert!(in_zone(&n("example.org"), &n("EXAMPLE.org")));
        assert!(in_zone(&n("anything.net"), &n(".")));
        assert!(!in_zone(&n("wwwexample.org"), &n("example.org")));
        assert!(!in_zone(&n("org"), &n("example.org")));
        assert!(!in_zone(&n("example.net"), &n("example.org")));
        // A label holding the zone's bytes is not a label boundary.
        let tricky =
            Name::from_octets(bytes::Bytes::from_static(b"\x09x\x07example\x03org\x00")).unwrap();
        assert!(!in_zone(&tricky, &n("example.org")));
    }

    use super::*;

    /// Found by fuzzing: `whoami` built `_udp.<name>` for a 251-octet name
    /// and sent a 256-octet owner that no client can read.
    #[test]
    fn a_name_of_256_octets_is_refused() {
        let labels = vec!["a".repeat(61); 4].join(".");
        let text = format!("_udp.{labels}.b");
        assert!(
            name_from_str(&text)
                .unwrap_err()
                .contains("longer than 255 octets")
        );
        assert_eq!(
            name_from_str(&format!("{labels}.b"))
                .unwrap()
                .as_slice()
                .len(),
            251
        );
    }
}
