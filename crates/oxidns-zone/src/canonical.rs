//! Names as byte strings that sort in DNSSEC canonical order (RFC 4034 §6.1).
//!
//! Labels are written from the root down, each lower-cased and ended by a
//! 0x00 byte; the bytes 0x00 and 0x01 inside a label are escaped as 0x01 0x01
//! and 0x01 0x02, so that the terminator stays the smallest byte. Then plain
//! byte comparison is canonical order, an ancestor's key is a prefix of its
//! descendants' keys, and "the name just before X" is a binary search of the
//! sorted keys — never a scan.

use std::borrow::Borrow;

use oxidns_proto::Name;

/// The longest key: 255 octets of name, every one escaped.
pub const MAX_KEY_LEN: usize = 512;

/// A name's canonical-order key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CanonicalKey(Box<[u8]>);

impl CanonicalKey {
    pub fn of(name: &Name) -> CanonicalKey {
        let mut buffer = [0u8; MAX_KEY_LEN];
        CanonicalKey(Self::encode(name, &mut buffer).into())
    }

    /// Writes the key of `name` into `buffer` and returns it: the lookup's
    /// way, with no allocation.
    pub fn encode<'b>(name: &Name, buffer: &'b mut [u8; MAX_KEY_LEN]) -> &'b [u8] {
        let wire = name.as_slice();
        // Label start offsets, so the labels can be written root first.
        let mut starts = [0u8; 128];
        let mut count = 0;
        let mut pos = 0;
        while let Some(&len) = wire.get(pos) {
            if len == 0 {
                break;
            }
            starts[count] = pos as u8;
            count += 1;
            pos += 1 + usize::from(len);
        }
        let mut at = 0;
        for &start in starts[..count].iter().rev() {
            let start = usize::from(start);
            let len = usize::from(wire[start]);
            for &byte in &wire[start + 1..start + 1 + len] {
                match byte {
                    0 | 1 => {
                        buffer[at] = 1;
                        buffer[at + 1] = byte + 1;
                        at += 2;
                    }
                    b => {
                        buffer[at] = b.to_ascii_lowercase();
                        at += 1;
                    }
                }
            }
            buffer[at] = 0;
            at += 1;
        }
        &buffer[..at]
    }

    /// A key from bytes that are already a key (a prefix of one, cut at a label end).
    pub(crate) fn from_bytes(bytes: &[u8]) -> CanonicalKey {
        CanonicalKey(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key of the child `label.<self>`.
    pub fn child(&self, label: &[u8]) -> CanonicalKey {
        let mut key = self.0.to_vec();
        for &byte in label {
            match byte {
                0 => key.extend_from_slice(&[1, 1]),
                1 => key.extend_from_slice(&[1, 2]),
                b => key.push(b.to_ascii_lowercase()),
            }
        }
        key.push(0);
        CanonicalKey(key.into_boxed_slice())
    }

    /// The number of labels (the root has none).
    pub fn label_count(&self) -> usize {
        self.0.iter().filter(|&&b| b == 0).count()
    }
}

impl Borrow<[u8]> for CanonicalKey {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

/// The lengths of `key`'s ancestors' keys, from the root down to `key` itself.
pub fn ancestor_lengths(key: &[u8]) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(0).chain(
        key.iter()
            .enumerate()
            .filter(|(_, b)| **b == 0)
            .map(|(i, _)| i + 1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxidns_proto::name_from_str;

    fn key(text: &str) -> CanonicalKey {
        CanonicalKey::of(&name_from_str(text).unwrap())
    }

    /// The example order of RFC 4034 §6.1.
    #[test]
    fn sorts_as_rfc4034_section_6_1_example() {
        let ordered = [
            "example.",
            "a.example.",
            "yljkjljk.a.example.",
            "Z.a.example.",
            "zABC.a.EXAMPLE.",
            "z.example.",
            "\\001.z.example.",
            "*.z.example.",
            "\\200.z.example.",
        ];
        let keys: Vec<CanonicalKey> = ordered.iter().map(|n| key(n)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn a_label_that_is_a_prefix_of_another_sorts_first() {
        assert!(key("a\\000.example") > key("a.example"));
        assert!(key("b.a.example") < key("a\\000.example"));
        assert!(key("ab.example") > key("a.example"));
    }

    #[test]
    fn case_is_ignored() {
        assert_eq!(key("WWW.Example.ORG"), key("www.example.org"));
    }

    #[test]
    fn ancestors_are_prefixes() {
        let k = key("a.b.example.org");
        let prefixes: Vec<&[u8]> = ancestor_lengths(k.as_bytes())
            .map(|l| &k.as_bytes()[..l])
            .collect();
        assert_eq!(prefixes.len(), 5);
        assert_eq!(prefixes[0], key(".").as_bytes());
        assert_eq!(prefixes[2], key("example.org").as_bytes());
        assert_eq!(prefixes[4], k.as_bytes());
        assert_eq!(key("example.org").child(b"B"), key("b.example.org"));
        assert_eq!(k.label_count(), 4);
    }
}
