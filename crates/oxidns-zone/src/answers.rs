//! A zone snapshot's answers in wire form (issue #8): the first query for a
//! name and type is answered by the lookup, and its response's sections are
//! kept encoded; later queries for it, in any case, copy them behind their
//! own header and question ([`oxidns_proto::WireSections`]).
//!
//! Kept here rather than in a shared cache because an answer is only right
//! for the snapshot it came from: a new version of the zone is a new
//! [`Zone`] with an empty table, so nothing is ever invalidated. The table
//! is a fixed array of slots, one answer each; a question may sit in one of
//! two slots picked by its hash. Reading is a lock-free load (`arc-swap`), a
//! miss fills an empty candidate or overwrites one, and memory is bounded by
//! the slot count and [`MAX_SECTIONS_LEN`] without any bookkeeping on hits.
//! A slot holds one heap block: the sections with their question key and
//! header values ([`WireBlock`]), about 80 bytes for an A answer.

use std::hash::BuildHasher;

use arc_swap::ArcSwapAny;
use oxidns_proto::{Name, Response, Rtype, WireBlock, WireSections};

use crate::zone::Zone;

/// Larger answers (big DNSSEC or TXT sets) are looked up each time.
const MAX_SECTIONS_LEN: usize = 2048;
/// Slots per zone: twice its names, within these bounds.
const MIN_SLOTS: usize = 1 << 10;
const MAX_SLOTS: usize = 1 << 16;
/// A question key: the lower-case name below the apex, the type and the
/// DO bit.
const MAX_KEY_LEN: usize = 255 + 2 + 1;

pub(crate) struct WireAnswers {
    slots: Box<[ArcSwapAny<Option<WireBlock>>]>,
    hasher: foldhash::fast::RandomState,
}

impl std::fmt::Debug for WireAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireAnswers")
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl WireAnswers {
    /// An empty table for a zone of `names` names.
    pub(crate) fn for_names(names: usize) -> WireAnswers {
        let count = names
            .saturating_mul(2)
            .next_power_of_two()
            .clamp(MIN_SLOTS, MAX_SLOTS);
        WireAnswers {
            slots: (0..count).map(|_| ArcSwapAny::new(None)).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

/// The key of a question, written into `buffer`: the name's labels above
/// `apex` (the zone's, lower-case, which every key leaves out), then the
/// type and the DO bit. `None` for a name not in the zone, which a key
/// could not tell apart. (A buffer of the caller's: a key returned by
/// value was copied twice, 100 instructions a query by callgrind.)
fn question_key<'b>(
    qname: &Name,
    apex: &[u8],
    qtype: Rtype,
    dnssec_ok: bool,
    buffer: &'b mut [u8; MAX_KEY_LEN],
) -> Option<&'b [u8]> {
    let name = oxidns_proto::lowercase_into(qname, buffer);
    let len = name.len().checked_sub(apex.len())?;
    // The apex's part must start at a label of the name.
    if &name[len..] != apex || !oxidns_proto::label_starts_at(name, len) {
        return None;
    }
    buffer[len..len + 2].copy_from_slice(&qtype.to_int().to_be_bytes());
    buffer[len + 2] = u8::from(dnssec_ok);
    Some(&buffer[..len + 3])
}

impl Zone {
    /// [`Zone::lookup`], answered from the table of answers in wire form
    /// when this question was asked before; the response then has
    /// [`Response::wire`] set and no records.
    pub fn lookup_wire(&self, qname: &Name, qtype: Rtype, dnssec_ok: bool) -> Response {
        let answers = &self.answers;
        let mut buffer = [0u8; MAX_KEY_LEN];
        let apex = self.apex.as_slice();
        let Some(key) = question_key(qname, apex, qtype, dnssec_ok, &mut buffer) else {
            return self.lookup(qname, qtype, dnssec_ok);
        };
        // Two candidate slots (from the hash's low and high bits): a
        // question evicted by another that hashes to the same slot is rare.
        let hash = answers.hasher.hash_one(key);
        let mask = answers.slots.len() - 1;
        let candidates = [hash as usize & mask, (hash >> 32) as usize & mask];
        for index in candidates {
            if let Some(stored) = &*answers.slots[index].load()
                && stored.tag() == key
            {
                return Response::from_wire(WireSections::from(stored.clone()));
            }
        }
        let response = self.lookup(qname, qtype, dnssec_ok);
        if let Some(sections) = response
            .wire_sections(qname, qtype, self.class, key)
            .filter(|s| s.len() <= MAX_SECTIONS_LEN)
        {
            // An empty candidate, else the one a hash bit picks.
            let empty = candidates
                .into_iter()
                .find(|&index| answers.slots[index].load().is_none());
            let index = empty.unwrap_or(candidates[(hash >> 63) as usize]);
            answers.slots[index].store(Some(sections.into_block()));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use oxidns_proto::{Class, OptRcode, Query, Rcode, name_from_str};

    use crate::zonefile::parse_zone_text;

    use super::*;

    const ZONE: &str = "\
$ORIGIN example.org.
@ 3600 IN SOA ns hostmaster 1 7200 3600 1209600 300
@ 3600 IN NS ns
ns 3600 IN A 192.0.2.53
www 300 IN A 192.0.2.1
www 300 IN A 192.0.2.2
alias 300 IN CNAME www
*.wild 300 IN TXT \"wild\"
mail 300 IN MX 10 ns
";

    fn zone() -> Zone {
        let apex = name_from_str("example.org").unwrap();
        let records = parse_zone_text(ZONE, "db", &apex).unwrap();
        Zone::build(&apex, records).unwrap().0
    }

    fn query(qname: &str, qtype: Rtype) -> Query {
        let name = name_from_str(qname).unwrap();
        Query::parse(Query::build(9, &name, qtype, Class::IN, None).into()).unwrap()
    }

    #[test]
    fn a_repeated_question_is_answered_in_wire_form_with_the_same_bytes() {
        let zone = zone();
        let questions = [
            ("www.example.org", Rtype::A),
            ("alias.example.org", Rtype::A),
            ("x.wild.example.org", Rtype::TXT),
            ("mail.example.org", Rtype::MX),
            ("nothere.example.org", Rtype::A),
            ("www.example.org", Rtype::AAAA),
            ("example.org", Rtype::SOA),
            ("example.org", Rtype::NS),
        ];
        for (qname, qtype) in questions {
            let query = query(qname, qtype);
            let first = zone.lookup_wire(&query.qname, qtype, false);
            assert!(
                first.wire.is_none(),
                "{qname}: the first answer is looked up"
            );
            let again = zone.lookup_wire(&query.qname, qtype, false);
            assert!(again.wire.is_some(), "{qname}: then kept");
            assert_eq!(
                again.encode(&query, 512),
                first.encode(&query, 512),
                "{qname}"
            );
        }
    }

    #[test]
    fn the_key_ignores_case_but_not_the_type_or_the_do_bit() {
        let zone = zone();
        let lower = query("www.example.org", Rtype::A);
        let upper = query("WWW.Example.ORG", Rtype::A);
        zone.lookup_wire(&lower.qname, Rtype::A, false);
        let hit = zone.lookup_wire(&upper.qname, Rtype::A, false);
        assert!(hit.wire.is_some());
        let got = Response::parse(&hit.encode(&upper, 512)).unwrap();
        assert_eq!(got.question.unwrap().0.to_string(), "WWW.Example.ORG");
        assert_eq!(got.response.answer.len(), 2);
        assert!(
            zone.lookup_wire(&lower.qname, Rtype::A, true)
                .wire
                .is_none()
        );
        let nodata = zone.lookup_wire(&lower.qname, Rtype::TXT, false);
        assert!(nodata.wire.is_none());
        assert_eq!(nodata.rcode, OptRcode::from_rcode(Rcode::NOERROR));
    }

    #[test]
    fn a_name_outside_the_zone_is_never_kept() {
        let zone = zone();
        // Its labels before the apex's length match a name in the zone.
        let outside = query("www.example.net", Rtype::A);
        let inside = query("www.example.org", Rtype::A);
        zone.lookup_wire(&inside.qname, Rtype::A, false);
        for _ in 0..2 {
            let answer = zone.lookup_wire(&outside.qname, Rtype::A, false);
            assert!(answer.wire.is_none());
            assert!(answer.answer.is_empty());
        }
    }
}
