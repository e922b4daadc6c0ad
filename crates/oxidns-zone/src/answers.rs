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

use std::hash::BuildHasher;

use arc_swap::ArcSwapOption;
use oxidns_proto::{Name, OptRcode, Response, Rtype, WireSections};

use crate::zone::Zone;

/// Larger answers (big DNSSEC or TXT sets) are looked up each time.
const MAX_SECTIONS_LEN: usize = 2048;
/// Slots per zone: twice its names, within these bounds.
const MIN_SLOTS: usize = 1 << 10;
const MAX_SLOTS: usize = 1 << 16;
/// A question key: the lower-case name, the type and the DO bit.
const MAX_KEY_LEN: usize = 255 + 2 + 1;

pub(crate) struct WireAnswers {
    slots: Box<[ArcSwapOption<StoredAnswer>]>,
    hasher: foldhash::fast::RandomState,
}

impl std::fmt::Debug for WireAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireAnswers")
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// An answer and its question key (kept as the sections' tag, so that a
/// hit reads one block of memory besides this).
struct StoredAnswer {
    rcode: OptRcode,
    authoritative: bool,
    authentic_data: bool,
    sections: WireSections,
}

impl WireAnswers {
    /// An empty table for a zone of `names` names.
    pub(crate) fn for_names(names: usize) -> WireAnswers {
        let count = names
            .saturating_mul(2)
            .next_power_of_two()
            .clamp(MIN_SLOTS, MAX_SLOTS);
        WireAnswers {
            slots: (0..count).map(|_| ArcSwapOption::empty()).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

/// The key of a question, built on the stack.
struct Key {
    bytes: [u8; MAX_KEY_LEN],
    len: usize,
}

impl Key {
    fn new(qname: &Name, qtype: Rtype, dnssec_ok: bool) -> Key {
        let mut bytes = [0u8; MAX_KEY_LEN];
        let mut len = oxidns_proto::lowercase_into(qname, &mut bytes).len();
        bytes[len..len + 2].copy_from_slice(&qtype.to_int().to_be_bytes());
        len += 2;
        bytes[len] = u8::from(dnssec_ok);
        Key {
            bytes,
            len: len + 1,
        }
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Zone {
    /// [`Zone::lookup`], answered from the table of answers in wire form
    /// when this question was asked before; the response then has
    /// [`Response::wire`] set and no records.
    pub fn lookup_wire(&self, qname: &Name, qtype: Rtype, dnssec_ok: bool) -> Response {
        let key = Key::new(qname, qtype, dnssec_ok);
        let answers = &self.answers;
        // Two candidate slots (from the hash's low and high bits): a
        // question evicted by another that hashes to the same slot is rare.
        let hash = answers.hasher.hash_one(key.as_slice());
        let mask = answers.slots.len() - 1;
        let candidates = [hash as usize & mask, (hash >> 32) as usize & mask];
        for index in candidates {
            if let Some(stored) = &*answers.slots[index].load()
                && stored.sections.tag() == key.as_slice()
            {
                let mut response = Response::new(oxidns_proto::Rcode::NOERROR);
                response.rcode = stored.rcode;
                response.authoritative = stored.authoritative;
                response.authentic_data = stored.authentic_data;
                response.wire = Some(stored.sections.clone());
                return response;
            }
        }
        let response = self.lookup(qname, qtype, dnssec_ok);
        if let Some(sections) = response
            .wire_sections(qname, qtype, self.class, key.as_slice())
            .filter(|s| s.len() <= MAX_SECTIONS_LEN)
        {
            // An empty candidate, else the one a hash bit picks.
            let empty = candidates
                .into_iter()
                .find(|&index| answers.slots[index].load().is_none());
            let index = empty.unwrap_or(candidates[(hash >> 63) as usize]);
            answers.slots[index].store(Some(std::sync::Arc::new(StoredAnswer {
                rcode: response.rcode,
                authoritative: response.authoritative,
                authentic_data: response.authentic_data,
                sections,
            })));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use oxidns_proto::{Class, Query, Rcode, name_from_str};

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
}
