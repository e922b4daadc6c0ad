//! A zone: an immutable snapshot of its records, checked at load.
//!
//! Names are kept in canonical order ([`CanonicalKey`]), with a node for every
//! empty non-terminal, so that the lookup's closest-encloser, wildcard and
//! NSEC searches are ordered-map lookups. NSEC3 records live in their own
//! chain ordered by hash (RFC 5155 §7.2), out of the way of normal names.
//! A reload builds a new `Zone` beside the old one and swaps it in whole.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use domain::base::iana::Nsec3HashAlgorithm;
use domain::base::{Rtype, Ttl};
use domain::rdata::nsec3::Nsec3Salt;
use oxidns_proto::{Class, Name, Record, RecordData, Serial, name_text};

use crate::canonical::{CanonicalKey, ancestor_lengths};
use crate::zonefile::SourcedRecord;

/// A problem with a zone's data: `file:line: reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneProblem {
    pub file: Arc<str>,
    pub line: u32,
    pub message: String,
}

impl fmt::Display for ZoneProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for ZoneProblem {}

/// The records of one owner, class and type, with their signatures.
#[derive(Clone, Debug)]
pub struct RRset {
    pub rtype: Rtype,
    pub records: Vec<Record>,
    /// RRSIG records covering this type.
    pub signatures: Vec<Record>,
}

impl RRset {
    pub fn ttl(&self) -> Ttl {
        self.records.first().map_or(Ttl::ZERO, |r| r.ttl())
    }
}

/// One name of the zone: its RRsets, or none for an empty non-terminal.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: Name,
    pub rrsets: Vec<RRset>,
    /// Every RRSIG at this name, for RRSIG queries.
    pub signatures: Vec<Record>,
    /// NS here, not at the apex: a delegation to a child zone.
    pub cut: bool,
    /// Below a cut or a DNAME: not authoritative, only glue is served from here.
    pub occluded: bool,
}

impl Node {
    pub fn rrset(&self, rtype: Rtype) -> Option<&RRset> {
        self.rrsets.iter().find(|r| r.rtype == rtype)
    }

    /// No data of its own: a name that exists only because names below it do.
    pub fn is_empty_non_terminal(&self) -> bool {
        self.rrsets.is_empty() && self.signatures.is_empty()
    }

    pub fn has_nsec(&self) -> bool {
        self.rrset(Rtype::NSEC).is_some()
    }
}

/// NSEC3 records by owner hash, with the hashing parameters (RFC 5155).
#[derive(Clone, Debug)]
pub struct Nsec3Chain {
    pub algorithm: Nsec3HashAlgorithm,
    pub iterations: u16,
    pub salt: Nsec3Salt<bytes::Bytes>,
    /// Raw hash → the node holding the NSEC3 record and its signatures.
    pub by_hash: BTreeMap<Vec<u8>, Node>,
}

/// A loaded zone.
#[derive(Debug)]
pub struct Zone {
    pub(crate) apex: Name,
    pub(crate) apex_key: CanonicalKey,
    pub(crate) class: Class,
    pub(crate) nodes: BTreeMap<CanonicalKey, Node>,
    pub(crate) negative_ttl: Ttl,
    pub(crate) nsec3: Option<Nsec3Chain>,
    pub(crate) serial: Serial,
    pub(crate) record_count: usize,
    /// Keys of the delegations and DNAME owners, sorted: the only names
    /// above a query name the lookup must look at.
    pub(crate) redirects: Vec<Box<[u8]>>,
}

impl Zone {
    /// Builds and checks a zone from loaded records. Errors stop the load;
    /// warnings (out-of-zone data dropped, occluded data, TTL mismatches)
    /// come back beside the zone.
    pub fn build(
        apex: &Name,
        records: Vec<SourcedRecord>,
    ) -> Result<(Zone, Vec<ZoneProblem>), Vec<ZoneProblem>> {
        ZoneBuilder::new(apex).build(records)
    }

    /// Reads a zone file and builds the zone: syntax errors and data errors
    /// alike come back as `file:line: reason`.
    pub fn load(
        path: &std::path::Path,
        apex: &Name,
    ) -> Result<(Zone, Vec<ZoneProblem>), Vec<ZoneProblem>> {
        let records = crate::zonefile::load_zone_file(path, apex).map_err(|e| {
            vec![ZoneProblem {
                file: Arc::from(e.file.as_str()),
                line: e.line,
                message: e.message,
            }]
        })?;
        Zone::build(apex, records)
    }

    /// The zone's name, lower-case.
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    pub fn class(&self) -> Class {
        self.class
    }

    /// The SOA serial.
    pub fn serial(&self) -> Serial {
        self.serial
    }

    /// How many records the zone holds, signatures included.
    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// Whether `name` is at or below the apex.
    pub fn contains(&self, name: &Name) -> bool {
        name.ends_with(&self.apex)
    }

    /// Every record, apex first, in canonical order (NSEC3 records last).
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        fn node_records(node: &Node) -> impl Iterator<Item = &Record> {
            node.rrsets
                .iter()
                .flat_map(|r| r.records.iter())
                .chain(node.signatures.iter())
        }
        self.nodes.values().flat_map(node_records).chain(
            self.nsec3
                .iter()
                .flat_map(|c| c.by_hash.values())
                .flat_map(node_records),
        )
    }

    pub(crate) fn node(&self, key: &[u8]) -> Option<&Node> {
        self.nodes.get(key)
    }

    /// Whether `key` owns a delegation or a DNAME.
    pub(crate) fn redirects(&self, key: &[u8]) -> bool {
        self.redirects
            .binary_search_by(|owner| owner.as_ref().cmp(key))
            .is_ok()
    }

    pub(crate) fn apex_node(&self) -> &Node {
        self.nodes
            .get(self.apex_key.as_bytes())
            .expect("the apex node always exists")
    }
}

struct ZoneBuilder {
    apex: Name,
    apex_key: CanonicalKey,
    errors: Vec<ZoneProblem>,
    warnings: Vec<ZoneProblem>,
}

/// Where a record came from, kept while building for messages.
struct Placed {
    record: Record,
    file: Arc<str>,
    line: u32,
}

impl ZoneBuilder {
    fn new(apex: &Name) -> Self {
        let apex = oxidns_proto::lowercase(apex);
        ZoneBuilder {
            apex_key: CanonicalKey::of(&apex),
            apex,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn problem(place: &Placed, message: String) -> ZoneProblem {
        ZoneProblem {
            file: place.file.clone(),
            line: place.line,
            message,
        }
    }

    fn build(
        mut self,
        records: Vec<SourcedRecord>,
    ) -> Result<(Zone, Vec<ZoneProblem>), Vec<ZoneProblem>> {
        let first_file: Arc<str> = records
            .first()
            .map_or_else(|| Arc::from("zone"), |r| r.file.clone());
        let mut by_name: BTreeMap<CanonicalKey, Vec<Placed>> = BTreeMap::new();
        let mut class = None;
        for sourced in records {
            let placed = Placed {
                record: sourced.record,
                file: sourced.file,
                line: sourced.line,
            };
            if !placed.record.owner().ends_with(&self.apex) {
                self.warnings.push(Self::problem(
                    &placed,
                    format!(
                        "{} is outside the zone {}: ignored",
                        name_text(placed.record.owner()),
                        name_text(&self.apex)
                    ),
                ));
                continue;
            }
            let record_class = placed.record.class();
            match class {
                None => class = Some(record_class),
                Some(c) if c != record_class => {
                    self.errors.push(Self::problem(
                        &placed,
                        format!("class {record_class} differs from the zone's class {c}"),
                    ));
                    continue;
                }
                Some(_) => {}
            }
            by_name
                .entry(CanonicalKey::of(placed.record.owner()))
                .or_default()
                .push(placed);
        }

        let soa = self.check_soa_and_ns(&by_name, &first_file);
        let mut nodes = BTreeMap::new();
        let mut nsec3_nodes = Vec::new();
        let mut record_count = 0;
        // Descendants follow their ancestor directly in canonical order, so
        // one pass marks delegations and what lies below them or a DNAME.
        let mut occluder = Occluder::default();
        for (key, placed) in by_name {
            record_count += placed.len();
            let is_nsec3_owner = placed.iter().any(|p| p.record.rtype() == Rtype::NSEC3);
            let (file, line) = (placed[0].file.clone(), placed[0].line);
            let mut node = self.node_from(placed);
            if is_nsec3_owner {
                nsec3_nodes.push(node);
                continue;
            }
            if let Some(warning) = occluder.mark(&key, &mut node, &self.apex_key) {
                self.warnings.push(ZoneProblem {
                    file,
                    line,
                    message: warning,
                });
            }
            nodes.insert(key, node);
        }
        self.add_empty_non_terminals(&mut nodes);
        let nsec3 = self.nsec3_chain(&nodes, nsec3_nodes, &first_file);

        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        let (negative_ttl, serial) = match soa {
            Some(RecordData::Soa(soa_data)) => {
                let ttl = nodes[self.apex_key.as_bytes()]
                    .rrset(Rtype::SOA)
                    .map_or(Ttl::ZERO, RRset::ttl);
                // RFC 2308 §3: the negative TTL is the smaller of the SOA's TTL and MINIMUM.
                (ttl.min(soa_data.minimum()), soa_data.serial())
            }
            _ => unreachable!("a zone without SOA has errors"),
        };
        // Canonical order is byte order, so this list comes out sorted.
        let redirects = nodes
            .iter()
            .filter(|(_, node)| !node.occluded && (node.cut || node.rrset(Rtype::DNAME).is_some()))
            .map(|(key, _)| Box::<[u8]>::from(key.as_bytes()))
            .collect();
        let zone = Zone {
            redirects,
            apex: self.apex,
            apex_key: self.apex_key,
            class: class.unwrap_or(Class::IN),
            nodes,
            negative_ttl,
            nsec3,
            serial,
            record_count,
        };
        Ok((zone, self.warnings))
    }

    /// Exactly one SOA, at the apex, and NS at the apex (RFC 1035 §5.2).
    fn check_soa_and_ns(
        &mut self,
        by_name: &BTreeMap<CanonicalKey, Vec<Placed>>,
        first_file: &Arc<str>,
    ) -> Option<RecordData> {
        let mut soa = None;
        for (key, placed) in by_name {
            for p in placed.iter().filter(|p| p.record.rtype() == Rtype::SOA) {
                if key != &self.apex_key {
                    self.errors.push(Self::problem(
                        p,
                        format!(
                            "SOA record for {} is not at the zone apex {}",
                            name_text(p.record.owner()),
                            name_text(&self.apex)
                        ),
                    ));
                } else if soa.is_some() {
                    self.errors
                        .push(Self::problem(p, "a second SOA record at the apex".into()));
                } else {
                    soa = Some(p.record.data().clone());
                }
            }
        }
        let apex_records = by_name.get(self.apex_key.as_bytes());
        let missing = |what: &str| ZoneProblem {
            file: first_file.clone(),
            line: apex_records.and_then(|p| p.first()).map_or(1, |p| p.line),
            message: format!(
                "no {what} record at the zone apex {}",
                name_text(&self.apex)
            ),
        };
        if soa.is_none() {
            self.errors.push(missing("SOA"));
        }
        let has_ns = apex_records.is_some_and(|p| p.iter().any(|p| p.record.rtype() == Rtype::NS));
        if !has_ns {
            self.errors.push(missing("NS"));
        }
        soa
    }

    /// Groups one name's records into RRsets and checks CNAME and DNAME rules.
    fn node_from(&mut self, placed: Vec<Placed>) -> Node {
        let name = placed[0].record.owner().clone();
        let mut rrsets: Vec<(RRset, u32)> = Vec::new();
        let mut signatures = Vec::new();
        // Duplicates (equal but for the TTL, RFC 2181 §5) are dropped. A set,
        // not a scan of the RRset: one name may own a million records.
        let mut seen: HashSet<&Record> = HashSet::with_capacity(placed.len());
        for p in &placed {
            if !seen.insert(&p.record) {
                continue;
            }
            let rtype = p.record.rtype();
            if rtype == Rtype::RRSIG {
                signatures.push(p.record.clone());
                continue;
            }
            match rrsets.iter_mut().find(|(r, _)| r.rtype == rtype) {
                Some((rrset, _)) => {
                    let mut record = p.record.clone();
                    if record.ttl() != rrset.ttl() {
                        // RFC 2181 §5.2: one TTL per RRset; keep the first.
                        self.warnings.push(Self::problem(
                            p,
                            format!(
                                "TTL {} differs from the {} RRset's TTL {}: using {}",
                                record.ttl().as_secs(),
                                rtype,
                                rrset.ttl().as_secs(),
                                rrset.ttl().as_secs()
                            ),
                        ));
                        record.set_ttl(rrset.ttl());
                    }
                    rrset.records.push(record);
                }
                None => rrsets.push((
                    RRset {
                        rtype,
                        records: vec![p.record.clone()],
                        signatures: Vec::new(),
                    },
                    p.line,
                )),
            }
        }
        let place_of = |rtype: Rtype| placed.iter().find(|p| p.record.rtype() == rtype);
        if let Some(cname) = place_of(Rtype::CNAME) {
            // RFC 2181 §10.1, RFC 4035 §2.5: beside a CNAME only DNSSEC records may stand.
            let others: Vec<String> = rrsets
                .iter()
                .map(|(r, _)| r.rtype)
                .filter(|t| ![Rtype::CNAME, Rtype::NSEC, Rtype::RRSIG].contains(t))
                .map(|t| t.to_string())
                .collect();
            if !others.is_empty() {
                self.errors.push(Self::problem(
                    cname,
                    format!(
                        "CNAME at {} stands beside other data ({})",
                        name_text(&name),
                        others.join(", ")
                    ),
                ));
            }
            let count = rrsets
                .iter()
                .find(|(r, _)| r.rtype == Rtype::CNAME)
                .map_or(0, |(r, _)| r.records.len());
            if count > 1 {
                self.errors.push(Self::problem(
                    cname,
                    format!("more than one CNAME record at {}", name_text(&name)),
                ));
            }
        }
        if let Some(dname) = place_of(Rtype::DNAME) {
            let count = rrsets
                .iter()
                .find(|(r, _)| r.rtype == Rtype::DNAME)
                .map_or(0, |(r, _)| r.records.len());
            if count > 1 {
                // RFC 6672 §2.4: at most one DNAME per owner.
                self.errors.push(Self::problem(
                    dname,
                    format!("more than one DNAME record at {}", name_text(&name)),
                ));
            }
        }
        let mut rrsets: Vec<RRset> = rrsets.into_iter().map(|(r, _)| r).collect();
        for rrset in &mut rrsets {
            rrset.signatures = signatures
                .iter()
                .filter(|sig| covered_type(sig) == Some(rrset.rtype))
                .cloned()
                .collect();
        }
        // Most RRsets hold one or two records: without this, each would keep
        // room for four (Vec's first growth), most of a zone's memory.
        for rrset in &mut rrsets {
            rrset.records.shrink_to_fit();
            rrset.signatures.shrink_to_fit();
        }
        rrsets.shrink_to_fit();
        signatures.shrink_to_fit();
        Node {
            name,
            rrsets,
            signatures,
            cut: false,
            occluded: false,
        }
    }

    fn add_empty_non_terminals(&self, nodes: &mut BTreeMap<CanonicalKey, Node>) {
        let mut missing: Vec<Name> = Vec::new();
        for (key, node) in nodes.iter() {
            let mut name = node.name.clone();
            for len in ancestor_lengths(key.as_bytes())
                .filter(|&l| l > self.apex_key.as_bytes().len() && l < key.as_bytes().len())
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                name = name
                    .parent()
                    .expect("a proper descendant of the apex has a parent");
                let ancestor = &key.as_bytes()[..len];
                if !nodes.contains_key(ancestor) {
                    missing.push(name.clone());
                }
            }
        }
        for name in missing {
            nodes
                .entry(CanonicalKey::of(&name))
                .or_insert_with(|| Node {
                    name,
                    rrsets: Vec::new(),
                    signatures: Vec::new(),
                    cut: false,
                    occluded: false,
                });
        }
    }

    /// The NSEC3 chain, hashed with the apex NSEC3PARAM's parameters.
    fn nsec3_chain(
        &mut self,
        nodes: &BTreeMap<CanonicalKey, Node>,
        nsec3_nodes: Vec<Node>,
        first_file: &Arc<str>,
    ) -> Option<Nsec3Chain> {
        if nsec3_nodes.is_empty() {
            return None;
        }
        let param = nodes
            .get(self.apex_key.as_bytes())
            .and_then(|apex| apex.rrset(Rtype::NSEC3PARAM))
            .and_then(|r| match r.records[0].data() {
                RecordData::Nsec3param(p) => {
                    Some((p.hash_algorithm(), p.iterations(), p.salt().clone()))
                }
                _ => None,
            });
        let Some((algorithm, iterations, salt)) = param else {
            self.warnings.push(ZoneProblem {
                file: first_file.clone(),
                line: 0,
                message:
                    "NSEC3 records without an NSEC3PARAM at the apex: NSEC3 proofs are not served"
                        .into(),
            });
            return None;
        };
        let mut by_hash = BTreeMap::new();
        for node in nsec3_nodes {
            let label = node.name.first().as_slice();
            match base32hex_decode(label) {
                Some(hash) => {
                    by_hash.insert(hash, node);
                }
                None => self.warnings.push(ZoneProblem {
                    file: first_file.clone(),
                    line: 0,
                    message: format!(
                        "NSEC3 owner {} is not a base32hex hash",
                        name_text(&node.name)
                    ),
                }),
            }
        }
        Some(Nsec3Chain {
            algorithm,
            iterations,
            salt,
            by_hash,
        })
    }
}

/// The delegation or DNAME the names being visited lie below, if any.
#[derive(Default)]
struct Occluder {
    above: Option<(Vec<u8>, &'static str)>,
}

impl Occluder {
    /// Sets the node's `cut` and `occluded` flags, visiting names in canonical
    /// order; returns a warning for data that will not be served.
    fn mark(&mut self, key: &CanonicalKey, node: &mut Node, apex: &CanonicalKey) -> Option<String> {
        let key = key.as_bytes();
        if let Some((above, why)) = &self.above {
            if key.starts_with(above) {
                node.occluded = true;
                // Addresses below a delegation are glue; anything else is lost.
                let glue_only = node
                    .rrsets
                    .iter()
                    .all(|r| *why == "delegation" && [Rtype::A, Rtype::AAAA].contains(&r.rtype));
                return (!glue_only).then(|| {
                    format!(
                        "{} is below a {why} and will not be served",
                        name_text(&node.name)
                    )
                });
            }
            self.above = None;
        }
        node.cut = key != apex.as_bytes() && node.rrset(Rtype::NS).is_some();
        if node.cut {
            self.above = Some((key.to_vec(), "delegation"));
        } else if node.rrset(Rtype::DNAME).is_some() {
            self.above = Some((key.to_vec(), "DNAME"));
        }
        None
    }
}

/// The type an RRSIG record covers.
pub(crate) fn covered_type(record: &Record) -> Option<Rtype> {
    match record.data() {
        RecordData::Rrsig(sig) => Some(sig.type_covered()),
        _ => None,
    }
}

/// Decodes an NSEC3 owner label (RFC 4648 §7, base32 with the extended hex
/// alphabet, no padding, either case).
pub(crate) fn base32hex_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &c in text {
        let value = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'v' => c - b'a' + 10,
            b'A'..=b'V' => c - b'A' + 10,
            _ => return None,
        };
        buffer = (buffer << 5) | u32::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zonefile::parse_zone_text;
    use oxidns_proto::name_from_str;

    pub(crate) fn zone(text: &str) -> Result<(Zone, Vec<ZoneProblem>), Vec<ZoneProblem>> {
        let apex = name_from_str("example.org").unwrap();
        let records = parse_zone_text(text, "db.example.org", &apex).expect("zone text parses");
        Zone::build(&apex, records)
    }

    const HEAD: &str =
        "$TTL 3600\n@ SOA ns hostmaster 1 7200 900 1209600 300\n@ NS ns\nns A 192.0.2.1\n";

    fn errors(text: &str) -> Vec<String> {
        zone(text)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn missing_soa_is_refused() {
        assert_eq!(
            errors("$TTL 60\n@ NS ns\nns A 192.0.2.1\n"),
            ["db.example.org:2: no SOA record at the zone apex example.org."]
        );
    }

    #[test]
    fn missing_apex_ns_is_refused() {
        assert_eq!(
            errors("$TTL 60\n@ SOA ns hostmaster 1 2 3 4 5\n"),
            ["db.example.org:2: no NS record at the zone apex example.org."]
        );
    }

    #[test]
    fn second_soa_and_soa_below_apex_are_refused() {
        let errors = errors(&format!("{HEAD}sub SOA ns hostmaster 1 2 3 4 5\n"));
        assert_eq!(
            errors,
            [
                "db.example.org:5: SOA record for sub.example.org. is not at the zone apex example.org."
            ]
        );
    }

    #[test]
    fn cname_beside_other_data_is_refused() {
        let errors = errors(&format!("{HEAD}www CNAME ns\nwww A 192.0.2.9\n"));
        assert_eq!(
            errors,
            ["db.example.org:5: CNAME at www.example.org. stands beside other data (A)"]
        );
    }

    #[test]
    fn out_of_zone_data_is_dropped_with_a_warning() {
        let (zone, warnings) = zone(&format!("{HEAD}www.example.net. A 192.0.2.9\n")).unwrap();
        assert_eq!(warnings.len(), 1);
        assert_eq!(
            warnings[0].to_string(),
            "db.example.org:5: www.example.net. is outside the zone example.org.: ignored"
        );
        assert_eq!(zone.record_count(), 3);
    }

    #[test]
    fn rrset_ttl_mismatch_keeps_the_first_ttl() {
        let (zone, warnings) =
            zone(&format!("{HEAD}x 100 A 192.0.2.1\nx 200 A 192.0.2.2\n")).unwrap();
        assert_eq!(warnings.len(), 1);
        let node = zone
            .node(CanonicalKey::of(&name_from_str("x.example.org").unwrap()).as_bytes())
            .unwrap();
        assert!(
            node.rrset(Rtype::A)
                .unwrap()
                .records
                .iter()
                .all(|r| r.ttl().as_secs() == 100)
        );
    }

    #[test]
    fn empty_non_terminals_exist_as_nodes() {
        let (zone, _) = zone(&format!("{HEAD}a.b.c TXT x\n")).unwrap();
        for name in ["b.c.example.org", "c.example.org"] {
            let node = zone
                .node(CanonicalKey::of(&name_from_str(name).unwrap()).as_bytes())
                .unwrap();
            assert!(node.is_empty_non_terminal(), "{name}");
            assert_eq!(name_text(&node.name), format!("{name}."));
        }
    }

    #[test]
    fn delegations_and_glue_are_marked() {
        let (zone, warnings) = zone(&format!(
            "{HEAD}child NS ns.child\nns.child A 192.0.2.7\nchild DS 1 8 2 ABCD\nbelow.child TXT occluded\n"
        ))
        .unwrap();
        let node = |n: &str| {
            zone.node(CanonicalKey::of(&name_from_str(n).unwrap()).as_bytes())
                .unwrap()
        };
        assert!(node("child.example.org").cut);
        assert!(!node("child.example.org").occluded);
        assert!(node("ns.child.example.org").occluded);
        assert!(node("below.child.example.org").occluded);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].message.contains("below.child.example.org."));
    }

    #[test]
    fn negative_ttl_is_the_smaller_of_soa_ttl_and_minimum() {
        let (first, _) = zone(HEAD).unwrap();
        assert_eq!(first.negative_ttl.as_secs(), 300);
        let (second, _) = zone("@ 60 SOA ns hostmaster 1 2 3 4 300\n@ 60 NS ns\n").unwrap();
        assert_eq!(second.negative_ttl.as_secs(), 60);
    }

    #[test]
    fn duplicate_records_are_dropped_and_a_large_rrset_builds_in_linear_time() {
        // Fuzzing found the duplicate check quadratic: 100,000 records on one
        // name took minutes. This many must build at once.
        let mut text = format!("{HEAD}x TXT a\nx TXT a\n");
        for i in 0..50_000 {
            text.push_str(&format!("big PTR host-{i}.example.org.\n"));
        }
        let (zone, _) = zone(&text).unwrap();
        let node = |n: &str| {
            zone.node(CanonicalKey::of(&name_from_str(n).unwrap()).as_bytes())
                .unwrap()
        };
        assert_eq!(
            node("x.example.org")
                .rrset(Rtype::TXT)
                .unwrap()
                .records
                .len(),
            1
        );
        assert_eq!(
            node("big.example.org")
                .rrset(Rtype::PTR)
                .unwrap()
                .records
                .len(),
            50_000
        );
    }

    #[test]
    fn base32hex_decodes_nsec3_labels() {
        assert_eq!(base32hex_decode(b"CPNMU"), Some(b"foo".to_vec()));
        assert_eq!(base32hex_decode(b"cpnmu"), Some(b"foo".to_vec()));
        assert_eq!(base32hex_decode(b"W"), None);
    }
}
