//! Answering a question from a zone: RFC 1034 §4.3.2 step 3, with wildcards
//! (RFC 4592), DNAME (RFC 6672), negative answers (RFC 2308) and, for DO
//! queries of signed zones, RRSIGs and the denial proofs of RFC 4035 §3.1.3
//! (NSEC) and RFC 5155 §7.2 (NSEC3).
//!
//! Names are found by their canonical key: an exact name through the zone's
//! hash index, the closest encloser as the longest existing ancestor (one
//! lookup per label), and the NSEC covering a name as the nearest node before
//! it in canonical order (a binary search).

use bytes::Bytes;
use domain::base::iana::Rtype;
use domain::dnssec::common::nsec3_hash;
use domain::rdata::nsec3::OwnerHash;
use domain::rdata::{Cname, ZoneRecordData};
use oxidns_proto::{Name, Rcode, Record, RecordData, Response};

use crate::canonical::{CanonicalKey, MAX_KEY_LEN, ancestor_lengths};
use crate::zone::{Node, RRset, Zone};

/// The most CNAME and DNAME links followed inside one zone.
const MAX_CHAIN: usize = 16;

/// What one step of the lookup decided.
enum Step {
    Done,
    /// A CNAME (or a CNAME synthesised from a DNAME) leads on to this name.
    Follow(Name),
}

struct Answer<'z> {
    zone: &'z Zone,
    response: Response,
    dnssec: bool,
}

impl Zone {
    /// Answers `qname`/`qtype`, a name at or below the apex. With `dnssec_ok`
    /// the RRSIGs and denial proofs of a signed zone are included.
    pub fn lookup(&self, qname: &Name, qtype: Rtype, dnssec_ok: bool) -> Response {
        let mut response = Response::new(Rcode::NOERROR);
        response.authoritative = true;
        let mut answer = Answer {
            zone: self,
            response,
            // DNSSEC records are answered only from signed zones (Knot and BIND agree).
            dnssec: dnssec_ok && self.is_signed(),
        };
        let mut name = qname.clone();
        let mut visited: Vec<Box<[u8]>> = Vec::new();
        let mut buffer = [0u8; MAX_KEY_LEN];
        for _ in 0..=MAX_CHAIN {
            let key = CanonicalKey::encode(&name, &mut buffer);
            // A chain that leaves the zone, or comes back to a name seen, ends here.
            if !key.starts_with(self.apex_key.as_bytes()) || visited.iter().any(|v| **v == *key) {
                break;
            }
            match answer.step(&name, key, qtype) {
                Step::Done => break,
                Step::Follow(next) => {
                    visited.push(key.into());
                    name = next;
                }
            }
        }
        answer.add_additional();
        answer.response
    }
}

impl<'z> Answer<'z> {
    fn step(&mut self, name: &Name, key_bytes: &[u8], qtype: Rtype) -> Step {
        let zone = self.zone;
        let apex_len = zone.apex_key.as_bytes().len();

        // Delegations and DNAMEs between the apex and the name: only names
        // in the zone's short list of such owners are looked up.
        for len in ancestor_lengths(key_bytes).filter(|&l| l >= apex_len) {
            let prefix = &key_bytes[..len];
            if !zone.redirects(prefix) {
                continue;
            }
            let Some(node) = zone.node(prefix) else {
                break;
            };
            let is_target = len == key_bytes.len();
            // RFC 4035 §3.1.4.1: DS is answered from the parent side of the cut.
            if node.cut() && !(is_target && qtype == Rtype::DS) {
                self.referral(node);
                return Step::Done;
            }
            if !is_target && let Some(dname) = node.rrset(Rtype::DNAME) {
                return self.dname(name, node, dname, qtype);
            }
        }

        if let Some(node) = zone.node(key_bytes) {
            return self.answer_from(node, name, qtype, false);
        }

        let (closest_encloser, closest_len) = zone.closest_encloser(key_bytes);
        let wildcard_key = closest_encloser_key(key_bytes, closest_len).child(b"*");
        if let Some(wildcard) = zone.node(wildcard_key.as_bytes()) {
            // RFC 4592 §3.3.1: the wildcard's data, owned by the query name.
            return self.answer_from(wildcard, name, qtype, true);
        }

        // RFC 2308 §2.1 / RFC 6604: NXDOMAIN speaks for the last name of a chain.
        self.response.rcode = oxidns_proto::OptRcode::NXDOMAIN;
        self.add_soa();
        if self.dnssec {
            if let Some(chain) = &zone.nsec3 {
                // RFC 5155 §7.2.2: closest encloser, next closer, and the wildcard.
                self.nsec3_closest_encloser_proof(chain, name, &closest_encloser.name());
                let wildcard = wildcard_name(closest_encloser);
                self.nsec3_covering(chain, &wildcard);
            } else {
                // RFC 4035 §3.1.3.2: no such name, and no wildcard that could match.
                self.nsec_covering(key_bytes);
                self.nsec_covering(wildcard_key.as_bytes());
            }
        }
        Step::Done
    }

    /// Answers from a node, or from a wildcard node on behalf of `name`.
    fn answer_from(&mut self, node: Node<'_>, name: &Name, qtype: Rtype, wildcard: bool) -> Step {
        let owner = wildcard.then_some(name);
        // RFC 4035 §2.5: NSEC and RRSIG stand beside a CNAME and are answered, not followed.
        if !matches!(qtype, Rtype::CNAME | Rtype::RRSIG | Rtype::NSEC)
            && let Some(cname) = node.rrset(Rtype::CNAME)
        {
            self.push(Section::Answer, cname, owner);
            if wildcard {
                self.wildcard_answer_proof(name);
            }
            return match cname.first_data() {
                Some(ZoneRecordData::Cname(target)) => Step::Follow(target.into_cname()),
                _ => Step::Done,
            };
        }
        let found: Vec<RRset<'_>> = match qtype {
            Rtype::ANY => node.rrsets().collect(),
            Rtype::RRSIG => Vec::new(),
            _ => node.rrset(qtype).into_iter().collect(),
        };
        let mut signatures = node.signatures().peekable();
        if qtype == Rtype::RRSIG && signatures.peek().is_some() {
            match owner {
                Some(owner) => self
                    .response
                    .answer
                    .extend(signatures.map(|sig| with_owner(&sig, owner))),
                None => self.response.answer.extend(signatures),
            }
            if wildcard {
                self.wildcard_answer_proof(name);
            }
            return Step::Done;
        }
        if !found.is_empty() {
            for rrset in found {
                self.push(Section::Answer, rrset, owner);
            }
            if wildcard {
                self.wildcard_answer_proof(name);
            }
            return Step::Done;
        }
        self.nodata(node, name, wildcard);
        Step::Done
    }

    /// NODATA: SOA, and with DO the proof that the type does not exist.
    fn nodata(&mut self, node: Node<'_>, name: &Name, wildcard: bool) {
        self.add_soa();
        if !self.dnssec {
            return;
        }
        let zone = self.zone;
        let key = CanonicalKey::of(name);
        if let Some(chain) = &zone.nsec3 {
            if wildcard {
                // RFC 5155 §7.2.5: closest encloser, next closer, and the wildcard's NSEC3.
                let (closest, _) = zone.closest_encloser(key.as_bytes());
                self.nsec3_closest_encloser_proof(chain, name, &closest.name());
                self.nsec3_matching(chain, &node.name());
            } else if !self.nsec3_matching(chain, name)
                && let Some(parent) = name.parent()
            {
                // RFC 5155 §7.2.4: no NSEC3 for the name (opt-out): the closest provable encloser.
                self.nsec3_closest_encloser_proof(chain, name, &parent);
            }
            return;
        }
        if wildcard {
            // RFC 4035 §3.1.3.4: the name does not exist, and the wildcard lacks the type.
            self.nsec_covering(key.as_bytes());
            self.push_nsec_of(node);
        } else if node.has_nsec() {
            // RFC 4035 §3.1.3.1.
            self.push_nsec_of(node);
        } else {
            // An empty non-terminal has no NSEC: the one before it covers it.
            self.nsec_covering(key.as_bytes());
        }
    }

    /// RFC 4035 §3.1.3.3 and RFC 5155 §7.2.6: a wildcard answer proves that
    /// the query name itself does not exist.
    fn wildcard_answer_proof(&mut self, name: &Name) {
        if !self.dnssec {
            return;
        }
        let zone = self.zone;
        let key = CanonicalKey::of(name);
        match &zone.nsec3 {
            Some(chain) => {
                let (closest, _) = zone.closest_encloser(key.as_bytes());
                if let Some(next_closer) = next_closer_name(name, &closest.name()) {
                    self.nsec3_covering(chain, &next_closer);
                }
            }
            None => self.nsec_covering(key.as_bytes()),
        }
    }

    /// RFC 6672 §3.1: the DNAME, a CNAME synthesised from it, and on to the new name.
    fn dname(&mut self, name: &Name, owner: Node<'_>, dname: RRset<'_>, qtype: Rtype) -> Step {
        let Some(first) = dname.records().next() else {
            return Step::Done;
        };
        // A DNAME whose target lies below it is met again on every link.
        if !self.response.answer.contains(&first) {
            self.push(Section::Answer, dname, None);
        }
        let ZoneRecordData::Dname(data) = first.data() else {
            return Step::Done;
        };
        let prefix_len = name.as_slice().len() - owner.name().as_slice().len();
        let mut wire = name.as_slice()[..prefix_len].to_vec();
        wire.extend_from_slice(data.dname().as_slice());
        let Ok(target) = Name::from_octets(Bytes::from(wire)) else {
            // RFC 6672 §2.2: the substituted name would be too long.
            self.response.rcode = oxidns_proto::OptRcode::YXDOMAIN;
            return Step::Done;
        };
        self.response.answer.push(Record::new(
            name.clone(),
            first.class(),
            dname.ttl(),
            RecordData::Cname(Cname::new(target.clone())),
        ));
        if qtype == Rtype::CNAME {
            return Step::Done;
        }
        Step::Follow(target)
    }

    /// A referral to a child zone: NS in authority, glue in additional, and
    /// with DO the DS or the proof there is none (RFC 4035 §3.1.4).
    fn referral(&mut self, cut: Node<'_>) {
        let zone = self.zone;
        self.response.authoritative = !self.response.answer.is_empty();
        let Some(ns) = cut.rrset(Rtype::NS) else {
            return;
        };
        let start = self.response.authority.len();
        self.response.authority.extend(ns.records());
        if self.dnssec {
            if let Some(ds) = cut.rrset(Rtype::DS) {
                self.push(Section::Authority, ds, None);
            } else if let Some(chain) = &zone.nsec3 {
                let cut_name = cut.name();
                if !self.nsec3_matching(chain, &cut_name)
                    && let Some(parent) = cut_name.parent()
                {
                    // RFC 5155 §7.2.7: an opt-out span covers the delegation.
                    self.nsec3_closest_encloser_proof(chain, &cut_name, &parent);
                }
            } else {
                self.push_nsec_of(cut);
            }
        }
        let targets: Vec<Name> = self.response.authority[start..]
            .iter()
            .filter_map(|record| match record.data() {
                ZoneRecordData::Ns(target) => Some(target.nsdname().clone()),
                _ => None,
            })
            .collect();
        for target in &targets {
            self.add_addresses(target, false);
        }
    }

    /// RFC 1034 §4.3.2 step 6 (and RFC 2782 for SRV): addresses of the names
    /// the answer points at, when they are in this zone.
    fn add_additional(&mut self) {
        let targets: Vec<Name> = self
            .response
            .answer
            .iter()
            .filter_map(|r| match r.data() {
                ZoneRecordData::Mx(mx) => Some(mx.exchange().clone()),
                ZoneRecordData::Srv(srv) => Some(srv.target().clone()),
                ZoneRecordData::Ns(ns) => Some(ns.nsdname().clone()),
                _ => None,
            })
            .collect();
        for target in targets {
            self.add_addresses(&target, true);
        }
    }

    /// A and AAAA of `target` from this zone: authoritative data with its
    /// signatures, or glue below a cut.
    fn add_addresses(&mut self, target: &Name, authoritative_only: bool) {
        if !self.zone.contains(target) {
            return;
        }
        let Some(node) = self.zone.node(CanonicalKey::of(target).as_bytes()) else {
            return;
        };
        if node.occluded() && authoritative_only {
            return;
        }
        for rtype in [Rtype::A, Rtype::AAAA] {
            let Some(rrset) = node.rrset(rtype) else {
                continue;
            };
            let Some(first) = rrset.records().next() else {
                continue;
            };
            if self.response.additional.contains(&first) || self.response.answer.contains(&first) {
                continue;
            }
            self.response.additional.extend(rrset.records());
            if self.dnssec && !node.occluded() {
                self.response.additional.extend(rrset.signatures());
            }
        }
    }

    /// The apex SOA in authority, its TTL the negative TTL (RFC 2308 §3).
    fn add_soa(&mut self) {
        let apex = self.zone.apex_node();
        let Some(soa) = apex.rrset(Rtype::SOA) else {
            return;
        };
        let ttl = self.zone.negative_ttl;
        let Some(mut record) = soa.records().next() else {
            return;
        };
        record.set_ttl(ttl);
        self.response.authority.push(record);
        if self.dnssec {
            for mut sig in soa.signatures() {
                sig.set_ttl(ttl);
                self.response.authority.push(sig);
            }
        }
    }

    fn push(&mut self, section: Section, rrset: RRset<'_>, owner: Option<&Name>) {
        let (mut records, mut signatures) = (rrset.records(), rrset.signatures());
        if let Some(owner) = owner {
            records = records.owned_by(owner);
            signatures = signatures.owned_by(owner);
        }
        let dnssec = self.dnssec;
        for record in records.chain(signatures.filter(|_| dnssec)) {
            match section {
                // Each answer RRset is added once: a chain never visits a name twice.
                Section::Answer => self.response.answer.push(record),
                // Denial proofs may name the same NSEC or NSEC3 twice.
                Section::Authority => {
                    if !self.response.authority.contains(&record) {
                        self.response.authority.push(record);
                    }
                }
            }
        }
    }

    fn push_nsec_of(&mut self, node: Node<'_>) {
        if let Some(nsec) = node.rrset(Rtype::NSEC) {
            self.push(Section::Authority, nsec, None);
        }
    }

    /// The NSEC of the nearest name before `key` (the one whose span covers it).
    fn nsec_covering(&mut self, key: &[u8]) {
        let zone = self.zone;
        let before = zone
            .nodes_before(key)
            .find(|node| node.has_nsec() && !node.occluded());
        if let Some(node) = before {
            self.push_nsec_of(node);
        }
    }

    /// The NSEC3 whose owner hash equals `name`'s; false if there is none.
    fn nsec3_matching(&mut self, chain: &crate::zone::Nsec3Chain, name: &Name) -> bool {
        let hash = hash_name(chain, name);
        match chain.by_hash.get(&hash) {
            Some(entry) => {
                self.push_nsec3(self.zone.nsec3_node(entry));
                true
            }
            None => false,
        }
    }

    /// The NSEC3 whose span covers `name`'s hash (the last one wraps round).
    fn nsec3_covering(&mut self, chain: &crate::zone::Nsec3Chain, name: &Name) {
        let hash = hash_name(chain, name);
        let covering = chain
            .by_hash
            .range::<[u8], _>((
                std::ops::Bound::Unbounded,
                std::ops::Bound::Excluded(hash.as_slice()),
            ))
            .next_back()
            .or_else(|| chain.by_hash.iter().next_back())
            .map(|(_, entry)| self.zone.nsec3_node(entry));
        if let Some(node) = covering {
            self.push_nsec3(node);
        }
    }

    /// RFC 5155 §7.2.1: the NSEC3 matching the closest provable encloser and
    /// the one covering the next closer name. The search starts at
    /// `encloser` and goes up past names without an NSEC3 (in opt-out spans).
    fn nsec3_closest_encloser_proof(
        &mut self,
        chain: &crate::zone::Nsec3Chain,
        name: &Name,
        encloser: &Name,
    ) {
        let mut candidate = encloser.clone();
        loop {
            if self.nsec3_matching(chain, &candidate) {
                break;
            }
            match candidate.parent() {
                Some(parent) if self.zone.contains(&parent) => candidate = parent,
                _ => return,
            }
        }
        if let Some(next_closer) = next_closer_name(name, &candidate) {
            self.nsec3_covering(chain, &next_closer);
        }
    }

    fn push_nsec3(&mut self, node: Node<'_>) {
        if let Some(nsec3) = node.rrset(Rtype::NSEC3) {
            self.push(Section::Authority, nsec3, None);
        }
    }
}

#[derive(Clone, Copy)]
enum Section {
    Answer,
    Authority,
}

impl Zone {
    /// The longest existing ancestor of a name that does not exist, and its key length.
    pub(crate) fn closest_encloser(&self, key: &[u8]) -> (Node<'_>, usize) {
        let apex_len = self.apex_key.as_bytes().len();
        let mut best = (self.apex_node(), apex_len);
        for len in ancestor_lengths(key).filter(|&l| l > apex_len) {
            match self.node(&key[..len]) {
                Some(node) => best = (node, len),
                None => break,
            }
        }
        best
    }

    /// Whether DO queries get signatures: the apex carries a DNSKEY.
    pub fn is_signed(&self) -> bool {
        self.apex_node().rrset(Rtype::DNSKEY).is_some()
    }
}

fn closest_encloser_key(key: &[u8], len: usize) -> CanonicalKey {
    CanonicalKey::from_bytes(&key[..len])
}

/// `*.<closest encloser>`.
fn wildcard_name(closest: Node<'_>) -> Name {
    let name = closest.name();
    let mut wire = vec![1, b'*'];
    wire.extend_from_slice(name.as_slice());
    Name::from_octets(Bytes::from(wire)).unwrap_or(name)
}

/// The ancestor of `name` one label below the closest encloser (RFC 5155 §1.3).
fn next_closer_name(name: &Name, closest: &Name) -> Option<Name> {
    let wanted = closest.label_count() + 1;
    let mut current = name.clone();
    while current.label_count() > wanted {
        current = current.parent()?;
    }
    (current.label_count() == wanted).then_some(current)
}

fn hash_name(chain: &crate::zone::Nsec3Chain, name: &Name) -> Vec<u8> {
    let hash: Result<OwnerHash<Vec<u8>>, _> =
        nsec3_hash(name, chain.algorithm, chain.iterations, &chain.salt);
    hash.map(|h| h.into_octets()).unwrap_or_default()
}

fn with_owner(record: &Record, owner: &Name) -> Record {
    Record::new(
        owner.clone(),
        record.class(),
        record.ttl(),
        record.data().clone(),
    )
}

#[cfg(test)]
#[path = "lookup_tests.rs"]
mod tests;
