//! Values keyed by zone, found by the longest zone that holds a name: how a
//! query is routed to its server block, and to its zone within a plugin.

use std::collections::HashMap;

use crate::Name;

/// Zones (lower-case wire names) and their values.
///
/// A lookup tries the suffixes of the name from the longest, but only those
/// of a length some zone has: most servers have a zone or two, so a query
/// costs one hash lookup instead of one per label.
#[derive(Clone, Debug)]
pub struct ZoneMap<V> {
    zones: HashMap<Box<[u8]>, V, foldhash::fast::RandomState>,
    /// Which wire lengths (1 to 255) the zones have, one bit each.
    lengths: [u64; 4],
}

impl<V> Default for ZoneMap<V> {
    fn default() -> Self {
        ZoneMap {
            zones: HashMap::default(),
            lengths: [0; 4],
        }
    }
}

impl<V> ZoneMap<V> {
    /// Adds `zone` (in any case); returns the value it replaces.
    pub fn insert(&mut self, zone: &Name, value: V) -> Option<V> {
        let key = crate::lowercase(zone).as_slice().into();
        let len = zone.as_slice().len();
        self.lengths[len / 64] |= 1 << (len % 64);
        self.zones.insert(key, value)
    }

    /// The value of the longest zone that is `name` or holds it, with the
    /// zone's wire form.
    pub fn longest_match(&self, name: &Name) -> Option<(&[u8], &V)> {
        // Lower-cased on the stack: this runs for every query.
        let mut buffer = [0u8; 255];
        let wire = crate::lowercase_into(name, &mut buffer);
        let mut pos = 0;
        loop {
            let suffix = &wire[pos..];
            if self.lengths[suffix.len() / 64] & (1 << (suffix.len() % 64)) != 0
                && let Some((zone, value)) = self.zones.get_key_value(suffix)
            {
                return Some((zone, value));
            }
            let len = usize::from(*wire.get(pos)?);
            if len == 0 {
                return None;
            }
            pos += 1 + len;
        }
    }

    /// Every value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.zones.values()
    }

    /// How many zones there are.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// Whether there are no zones.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }
}

impl<V> FromIterator<(Name, V)> for ZoneMap<V> {
    fn from_iter<I: IntoIterator<Item = (Name, V)>>(iter: I) -> Self {
        let mut map = ZoneMap::default();
        for (zone, value) in iter {
            map.insert(&zone, value);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name_from_str;

    fn map(zones: &[&str]) -> ZoneMap<String> {
        zones
            .iter()
            .map(|z| (name_from_str(z).unwrap(), z.to_string()))
            .collect()
    }

    fn find(map: &ZoneMap<String>, name: &str) -> Option<String> {
        map.longest_match(&name_from_str(name).unwrap())
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn the_longest_zone_holding_the_name_wins_without_regard_to_case() {
        let zones = map(&["Example.org", "sub.example.org", "."]);
        assert_eq!(
            find(&zones, "www.EXAMPLE.org").as_deref(),
            Some("Example.org")
        );
        assert_eq!(
            find(&zones, "a.Sub.example.org").as_deref(),
            Some("sub.example.org")
        );
        assert_eq!(
            find(&zones, "sub.example.org").as_deref(),
            Some("sub.example.org")
        );
        assert_eq!(find(&zones, "example.net").as_deref(), Some("."));
        assert_eq!(find(&map(&["example.org"]), "wwwexample.org"), None);
        assert_eq!(find(&map(&["example.org"]), "org"), None);
    }

    #[test]
    fn the_zone_comes_back_in_lower_case_wire_form() {
        let zones = map(&["Example.org"]);
        let name = name_from_str("www.example.ORG").unwrap();
        let (zone, _) = zones.longest_match(&name).unwrap();
        assert_eq!(zone, b"\x07example\x03org\x00");
        assert_eq!(zones.len(), 1);
    }
}
