//! A zone: an immutable snapshot of its records, checked at load.
//!
//! Names are kept in canonical order ([`CanonicalKey`]), with a node for every
//! empty non-terminal, so that the lookup's closest-encloser, wildcard and
//! NSEC searches are binary searches of one sorted array. Records are kept in
//! wire form in one buffer and decoded when answered (see [`Store`]). NSEC3 records live in their own
//! chain ordered by hash (RFC 5155 §7.2), out of the way of normal names.
//! A reload builds a new `Zone` beside the old one and swaps it in whole.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;
use domain::base::iana::Nsec3HashAlgorithm;
use domain::base::name::FlattenInto;
use domain::base::rdata::{ComposeRecordData, ParseRecordData};
use domain::base::{ParsedName, Rtype, Ttl};
use domain::dep::octseq::Parser;
use domain::rdata::ZoneRecordData;
use domain::rdata::nsec3::Nsec3Salt;
use oxidns_proto::{Class, Name, Record, RecordData, Serial, name_text};

use crate::canonical::{CanonicalKey, MAX_KEY_LEN, ancestor_lengths};
use crate::loaded::LoadedRecords;
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

/// Where a run of records lies in a zone's record store: `count` entries
/// from byte `at`, each `TTL (u32) RDLENGTH (u16) RDATA` as in a message
/// (RFC 1035 §3.2.1), names in RDATA uncompressed.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Span {
    at: u32,
    count: u32,
}

/// One RRset of a node: its records and the RRSIGs covering its type.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RRsetEntry {
    rtype: Rtype,
    records: Span,
    signatures: Span,
}

/// One name of the zone, as stored: 28 bytes beside its name and records.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NodeEntry {
    /// The owner name (wire form, case as loaded) in the store.
    name_at: u32,
    /// Where this node's key ends in the zone's key arena.
    key_end: u32,
    /// The node's RRsets in the store's RRset list.
    rrsets_at: u32,
    rrsets_len: u32,
    /// Every RRSIG at the name, grouped by the type they cover.
    signatures: Span,
    name_len: u8,
    cut: bool,
    occluded: bool,
}

/// The zone's records in wire form, one allocation for all of them: a
/// `Record` is 184 bytes in memory even for an A record's four bytes of data,
/// so records are decoded only when they are answered.
#[derive(Debug)]
pub(crate) struct Store {
    bytes: Bytes,
    rrsets: Vec<RRsetEntry>,
    class: Class,
}

impl Store {
    fn name(&self, node: &NodeEntry) -> Name {
        let at = node.name_at as usize;
        let wire = self.bytes.slice(at..at + usize::from(node.name_len));
        Name::from_octets(wire).expect("the store holds names as they were loaded")
    }

    fn ttl_at(&self, at: u32) -> Ttl {
        let at = at as usize;
        let mut ttl = [0; 4];
        ttl.copy_from_slice(&self.bytes[at..at + 4]);
        Ttl::from_secs(u32::from_be_bytes(ttl))
    }
}

/// One name of the zone: its RRsets, or none for an empty non-terminal.
#[derive(Clone, Copy)]
pub struct Node<'z> {
    store: &'z Store,
    entry: &'z NodeEntry,
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Node({})", name_text(&self.name()))
    }
}

impl<'z> Node<'z> {
    /// The owner name, as written in the zone.
    pub fn name(&self) -> Name {
        self.store.name(self.entry)
    }

    /// NS here, not at the apex: a delegation to a child zone.
    pub fn cut(&self) -> bool {
        self.entry.cut
    }

    /// Below a cut or a DNAME: not authoritative, only glue is served from here.
    pub fn occluded(&self) -> bool {
        self.entry.occluded
    }

    pub fn rrsets(self) -> impl Iterator<Item = RRset<'z>> + 'z {
        let (store, node) = (self.store, self.entry);
        let at = node.rrsets_at as usize;
        store.rrsets[at..at + node.rrsets_len as usize]
            .iter()
            .map(move |entry| RRset { store, node, entry })
    }

    pub fn rrset(self, rtype: Rtype) -> Option<RRset<'z>> {
        self.rrsets().find(|r| r.rtype() == rtype)
    }

    /// Every RRSIG at this name, for RRSIG queries.
    pub fn signatures(&self) -> Records<'z> {
        Records::new(self.store, self.entry, Rtype::RRSIG, self.entry.signatures)
    }

    /// No data of its own: a name that exists only because names below it do.
    pub fn is_empty_non_terminal(&self) -> bool {
        self.entry.rrsets_len == 0 && self.entry.signatures.count == 0
    }

    pub fn has_nsec(self) -> bool {
        self.rrset(Rtype::NSEC).is_some()
    }
}

/// The records of one owner, class and type, with their signatures.
#[derive(Clone, Copy)]
pub struct RRset<'z> {
    store: &'z Store,
    node: &'z NodeEntry,
    entry: &'z RRsetEntry,
}

impl<'z> RRset<'z> {
    pub fn rtype(&self) -> Rtype {
        self.entry.rtype
    }

    /// The RRset's TTL (one for all its records, RFC 2181 §5.2).
    pub fn ttl(&self) -> Ttl {
        self.store.ttl_at(self.entry.records.at)
    }

    pub fn len(&self) -> usize {
        self.entry.records.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.entry.records.count == 0
    }

    pub fn records(&self) -> Records<'z> {
        Records::new(self.store, self.node, self.entry.rtype, self.entry.records)
    }

    /// RRSIG records covering this type.
    pub fn signatures(&self) -> Records<'z> {
        Records::new(self.store, self.node, Rtype::RRSIG, self.entry.signatures)
    }

    /// The first record's data (CNAME and DNAME RRsets hold one record).
    pub fn first_data(&self) -> Option<RecordData> {
        self.records().next().map(|r| r.into_data())
    }
}

/// Records decoded from the store, owned by their node's name or by the
/// name given with [`Records::owned_by`] (a wildcard's answers).
#[derive(Clone)]
pub struct Records<'z> {
    store: &'z Store,
    node: &'z NodeEntry,
    owner: Option<Name>,
    rtype: Rtype,
    at: usize,
    left: u32,
}

impl<'z> Records<'z> {
    fn new(store: &'z Store, node: &'z NodeEntry, rtype: Rtype, span: Span) -> Self {
        Records {
            store,
            node,
            owner: None,
            rtype,
            at: span.at as usize,
            left: span.count,
        }
    }

    /// The same records with `owner` as their owner name.
    pub fn owned_by(mut self, owner: &Name) -> Self {
        self.owner = Some(owner.clone());
        self
    }
}

impl Iterator for Records<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        while self.left > 0 {
            self.left -= 1;
            let bytes = &self.store.bytes;
            let at = self.at;
            let ttl = self.store.ttl_at(at as u32);
            let len = usize::from(u16::from_be_bytes([bytes[at + 4], bytes[at + 5]]));
            self.at = at + 6 + len;
            // Every stored record was decoded once at build: this does not fail.
            let Some(data) = decode(self.rtype, bytes.slice(at + 6..at + 6 + len)) else {
                continue;
            };
            let owner = self
                .owner
                .get_or_insert_with(|| self.store.name(self.node))
                .clone();
            return Some(Record::new(owner, self.store.class, ttl, data));
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

/// RDATA from the store, its octets and names sharing the store's bytes.
pub(crate) fn decode(rtype: Rtype, rdata: Bytes) -> Option<RecordData> {
    let mut parser = Parser::from_ref(&rdata);
    let parsed: ZoneRecordData<Bytes, ParsedName<Bytes>> =
        ZoneRecordData::parse_rdata(rtype, &mut parser).ok()??;
    Some(parsed.flatten_into())
}

/// Whether `wire` decodes to exactly `data`: what the store gives back.
pub(crate) fn decodes_to(rtype: Rtype, wire: &[u8], data: &RecordData) -> bool {
    let mut parser = Parser::from_ref(wire);
    let parsed = ZoneRecordData::<&[u8], ParsedName<&[u8]>>::parse_rdata(rtype, &mut parser);
    matches!(parsed, Ok(Some(d)) if parser.remaining() == 0 && d == *data)
}

/// NSEC3 records by owner hash, with the hashing parameters (RFC 5155).
#[derive(Clone, Debug)]
pub struct Nsec3Chain {
    pub algorithm: Nsec3HashAlgorithm,
    pub iterations: u16,
    pub salt: Nsec3Salt<bytes::Bytes>,
    /// Raw hash → the node holding the NSEC3 record and its signatures.
    pub(crate) by_hash: BTreeMap<Vec<u8>, NodeEntry>,
}

/// A loaded zone.
#[derive(Debug)]
pub struct Zone {
    pub(crate) apex: Name,
    pub(crate) apex_key: CanonicalKey,
    pub(crate) class: Class,
    store: Store,
    /// Every name but the NSEC3 owners, in canonical order.
    nodes: Vec<NodeEntry>,
    /// The nodes' keys end to end: node `i`'s key ends at `nodes[i].key_end`.
    keys: Vec<u8>,
    /// Exact-name lookups by hash: most lookups are of one name, and a
    /// binary search of a million keys costs some twenty key comparisons.
    index: NameIndex,
    pub(crate) negative_ttl: Ttl,
    pub(crate) nsec3: Option<Nsec3Chain>,
    pub(crate) serial: Serial,
    pub(crate) record_count: usize,
    /// Keys of the delegations and DNAME owners, sorted: the only names
    /// above a query name the lookup must look at.
    pub(crate) redirects: Vec<Box<[u8]>>,
    /// Answers already given, in wire form (`answers.rs`).
    pub(crate) answers: crate::answers::WireAnswers,
}

impl Zone {
    /// Builds and checks a zone from loaded records. Errors stop the load;
    /// warnings (out-of-zone data dropped, occluded data, TTL mismatches)
    /// come back beside the zone.
    pub fn build(
        apex: &Name,
        records: Vec<SourcedRecord>,
    ) -> Result<(Zone, Vec<ZoneProblem>), Vec<ZoneProblem>> {
        let file = records.first().map(|r| r.file.clone());
        let loaded = LoadedRecords::from_records(records).map_err(|message| {
            vec![ZoneProblem {
                file: file.unwrap_or_else(|| Arc::from("zone")),
                line: 0,
                message,
            }]
        })?;
        Zone::build_loaded(apex, loaded)
    }

    /// [`Zone::build`] from records kept in wire form (a zone file's).
    pub fn build_loaded(
        apex: &Name,
        records: LoadedRecords,
    ) -> Result<(Zone, Vec<ZoneProblem>), Vec<ZoneProblem>> {
        let loaded = records.len();
        let built = ZoneBuilder::new(apex).build(records);
        if loaded >= RELEASE_AFTER_RECORDS {
            release_free_memory();
        }
        built
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
        Zone::build_loaded(apex, records)
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

    /// Every record, apex first, in canonical order (NSEC3 records last),
    /// decoded from the store as it goes.
    pub fn records(&self) -> impl Iterator<Item = Record> + '_ {
        fn node_records(node: Node<'_>) -> impl Iterator<Item = Record> + '_ {
            node.rrsets()
                .flat_map(|r| r.records())
                .chain(node.signatures())
        }
        self.nodes
            .iter()
            .chain(self.nsec3.iter().flat_map(|c| c.by_hash.values()))
            .flat_map(|entry| node_records(self.node_of(entry)))
    }

    fn node_of<'z>(&'z self, entry: &'z NodeEntry) -> Node<'z> {
        Node {
            store: &self.store,
            entry,
        }
    }

    fn key_at(&self, index: usize) -> &[u8] {
        let start = index
            .checked_sub(1)
            .map_or(0, |i| self.nodes[i].key_end as usize);
        &self.keys[start..self.nodes[index].key_end as usize]
    }

    /// Where `key` is among the nodes, or where it would be.
    fn search(&self, key: &[u8]) -> Result<usize, usize> {
        let (mut low, mut high) = (0, self.nodes.len());
        while low < high {
            let middle = low + (high - low) / 2;
            match self.key_at(middle).cmp(key) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => return Ok(middle),
            }
        }
        Err(low)
    }

    pub(crate) fn node(&self, key: &[u8]) -> Option<Node<'_>> {
        let index = self.index.find(key, |i| self.key_at(i))?;
        Some(self.node_of(&self.nodes[index]))
    }

    /// The nodes before `key` in canonical order, nearest first.
    pub(crate) fn nodes_before(&self, key: &[u8]) -> impl Iterator<Item = Node<'_>> {
        let (Ok(end) | Err(end)) = self.search(key);
        self.nodes[..end]
            .iter()
            .rev()
            .map(|entry| self.node_of(entry))
    }

    /// The node of an NSEC3 chain entry.
    pub(crate) fn nsec3_node<'z>(&'z self, entry: &'z NodeEntry) -> Node<'z> {
        self.node_of(entry)
    }

    /// Whether `key` owns a delegation or a DNAME.
    pub(crate) fn redirects(&self, key: &[u8]) -> bool {
        self.redirects
            .binary_search_by(|owner| owner.as_ref().cmp(key))
            .is_ok()
    }

    pub(crate) fn apex_node(&self) -> Node<'_> {
        self.node(self.apex_key.as_bytes())
            .expect("the apex node always exists")
    }
}

/// Zones of at least this many records give the memory of their load back
/// to the system once built.
const RELEASE_AFTER_RECORDS: usize = 10_000;

/// Returns the memory freed after a load (the parsed records, about twice
/// the built zone) to the system. glibc keeps freed memory in its arenas:
/// after a 1M-record zone the process would otherwise keep ~130 MB more
/// resident than the zone needs, for good.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            /// glibc's `malloc_trim(3)`.
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes no pointers and only returns free memory
        // to the kernel; it is safe to call at any time from any thread.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// A hash table of node numbers (open addressing, linear probing, at most
/// half full): 4 bytes a slot, the keys themselves stay in the key arena.
#[derive(Debug, Default)]
struct NameIndex {
    /// Node number + 1; 0 is an empty slot.
    slots: Box<[u32]>,
    hasher: std::hash::RandomState,
}

impl NameIndex {
    fn new<'k>(count: usize, key_at: impl Fn(usize) -> &'k [u8]) -> NameIndex {
        let mut index = NameIndex {
            slots: vec![0; (count * 2).next_power_of_two().max(8)].into_boxed_slice(),
            hasher: std::hash::RandomState::new(),
        };
        let mask = index.slots.len() - 1;
        for node in 0..count {
            let mut slot = index.slot_of(key_at(node));
            while index.slots[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            // Fits: every node put at least its name in the store, whose
            // offsets are u32.
            index.slots[slot] = node as u32 + 1;
        }
        index
    }

    fn slot_of(&self, key: &[u8]) -> usize {
        self.hasher.hash_one(key) as usize & (self.slots.len() - 1)
    }

    /// The node whose key is `key`.
    fn find<'k>(&self, key: &[u8], key_at: impl Fn(usize) -> &'k [u8]) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut slot = self.slot_of(key);
        // The table is never more than half full: an empty slot comes.
        loop {
            let node = self.slots[slot].checked_sub(1)? as usize;
            if key_at(node) == key {
                return Some(node);
            }
            slot = (slot + 1) & mask;
        }
    }
}

struct ZoneBuilder {
    apex: Name,
    apex_key: CanonicalKey,
    errors: Vec<ZoneProblem>,
    warnings: Vec<ZoneProblem>,
    /// The store being written.
    bytes: Vec<u8>,
    rrsets: Vec<RRsetEntry>,
}

/// The names of the zone while building: a run of the sorted records, or an
/// empty non-terminal.
/// 20 bytes a name, its key in a shared arena: a million names cost 20 MB
/// of the load's peak, not a hundred.
struct Group {
    key_at: u32,
    key_len: u16,
    /// The name's records in the sorted record list.
    records: std::ops::Range<u32>,
    /// An empty non-terminal's name in the list of them, plus one; 0 if none.
    empty: u32,
}

impl Group {
    fn key<'k>(&self, arena: &'k [u8]) -> &'k [u8] {
        &arena[self.key_at as usize..][..usize::from(self.key_len)]
    }

    fn records(&self) -> std::ops::Range<usize> {
        self.records.start as usize..self.records.end as usize
    }
}

impl ZoneBuilder {
    fn new(apex: &Name) -> Self {
        let apex = oxidns_proto::lowercase(apex);
        ZoneBuilder {
            apex_key: CanonicalKey::of(&apex),
            apex,
            errors: Vec::new(),
            warnings: Vec::new(),
            bytes: Vec::new(),
            rrsets: Vec::new(),
        }
    }

    fn problem(place: &SourcedRecord, message: String) -> ZoneProblem {
        ZoneProblem {
            file: place.file.clone(),
            line: place.line,
            message,
        }
    }

    /// [`ZoneBuilder::problem`] at loaded record `index`.
    fn problem_at(records: &LoadedRecords, index: usize, message: String) -> ZoneProblem {
        let (file, line) = records.place(index);
        ZoneProblem {
            file: file.clone(),
            line,
            message,
        }
    }

    fn build(
        mut self,
        records: LoadedRecords,
    ) -> Result<(Zone, Vec<ZoneProblem>), Vec<ZoneProblem>> {
        let first_file: Arc<str> = records
            .first_file()
            .map_or_else(|| Arc::from("zone"), Arc::clone);
        let mut class = None;

        // The records in the zone and of its class, sorted by name, each
        // name's in file order; their keys end to end in one arena.
        let mut arena: Vec<u8> = Vec::new();
        let mut buffer = [0u8; MAX_KEY_LEN];
        let mut order: Vec<(u32, u16, u32)> = Vec::with_capacity(records.len());
        for index in 0..records.len() {
            let owner = records.owner(index);
            if !owner.ends_with(&self.apex) {
                self.warnings.push(Self::problem_at(
                    &records,
                    index,
                    format!(
                        "{} is outside the zone {}: ignored",
                        name_text(&owner),
                        name_text(&self.apex)
                    ),
                ));
                continue;
            }
            let record_class = records.class(index);
            match class {
                None => class = Some(record_class),
                Some(c) if c != record_class => {
                    self.errors.push(Self::problem_at(
                        &records,
                        index,
                        format!("class {record_class} differs from the zone's class {c}"),
                    ));
                    continue;
                }
                Some(_) => {}
            }
            let key = CanonicalKey::encode(&owner, &mut buffer);
            let at = self.offset(arena.len(), &first_file);
            arena.extend_from_slice(key);
            // A key is at most MAX_KEY_LEN bytes; records are fewer than store bytes.
            order.push((at, key.len() as u16, index as u32));
        }
        let class = class.unwrap_or(Class::IN);
        self.offset(arena.len(), &first_file);
        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        let key_of = |&(at, len, _): &(u32, u16, u32)| &arena[at as usize..][..usize::from(len)];
        order.sort_unstable_by(|a, b| key_of(a).cmp(key_of(b)).then(a.2.cmp(&b.2)));
        let mut sorted: Vec<u32> = Vec::with_capacity(order.len());
        let mut groups: Vec<Group> = Vec::new();
        for entry in &order {
            let same = groups
                .last()
                .is_some_and(|g| g.key(&arena) == key_of(entry));
            if !same {
                groups.push(Group {
                    key_at: entry.0,
                    key_len: entry.1,
                    records: sorted.len() as u32..sorted.len() as u32,
                    empty: 0,
                });
            }
            sorted.push(entry.2);
            if let Some(last) = groups.last_mut() {
                last.records.end = sorted.len() as u32;
            }
        }
        drop(order);
        let empties = self.add_empty_non_terminals(&mut groups, &mut arena, &records, &sorted);

        let soa = self.check_soa_and_ns(&groups, &arena, &records, &sorted, &first_file);
        let mut nodes = Vec::with_capacity(groups.len());
        let mut keys = Vec::new();
        let mut nsec3_nodes = Vec::new();
        let mut nsec3param = None;
        let mut record_count = 0;
        // Descendants follow their ancestor directly in canonical order, so
        // one pass marks delegations and what lies below them or a DNAME.
        let mut occluder = Occluder::default();
        for group in &groups {
            let key = group.key(&arena);
            let decoded: Vec<SourcedRecord> = sorted[group.records()]
                .iter()
                .map(|&i| records.get(i as usize))
                .collect();
            let placed: Vec<&SourcedRecord> = decoded.iter().collect();
            record_count += placed.len();
            let empty = (group.empty as usize).checked_sub(1).map(|i| &empties[i]);
            let (mut node, name) = match (empty, placed.first()) {
                (Some(name), _) => (self.empty_node(name), name.clone()),
                (None, Some(first)) => (self.node_from(&placed), first.record.owner().clone()),
                (None, None) => continue,
            };
            if placed.iter().any(|p| p.record.rtype() == Rtype::NSEC3) {
                nsec3_nodes.push((node, name));
                continue;
            }
            if key == self.apex_key.as_bytes() {
                nsec3param = placed
                    .iter()
                    .find(|p| p.record.rtype() == Rtype::NSEC3PARAM)
                    .map(|p| p.record.data().clone());
            }
            let types = &self.rrsets[node.rrsets_at as usize..][..node.rrsets_len as usize];
            if let Some(warning) = occluder.mark(key, &mut node, types, &name, &self.apex_key)
                && let Some(first) = placed.first()
            {
                self.warnings.push(Self::problem(first, warning));
            }
            keys.extend_from_slice(key);
            node.key_end = self.offset(keys.len(), &first_file);
            nodes.push(node);
        }
        drop(groups);
        drop(arena);
        drop(sorted);
        drop(records);
        let nsec3 = self.nsec3_chain(nsec3param, nsec3_nodes, &first_file);
        self.offset(self.bytes.len(), &first_file);

        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        let (negative_ttl, serial) = match soa.as_ref().map(|r| (r.ttl(), r.data())) {
            // RFC 2308 §3: the negative TTL is the smaller of the SOA's TTL and MINIMUM.
            Some((ttl, RecordData::Soa(soa_data))) => {
                (ttl.min(soa_data.minimum()), soa_data.serial())
            }
            _ => unreachable!("a zone without SOA has errors"),
        };
        self.rrsets.shrink_to_fit();
        nodes.shrink_to_fit();
        keys.shrink_to_fit();
        let store = Store {
            bytes: Bytes::from(self.bytes.into_boxed_slice()),
            rrsets: self.rrsets,
            class,
        };
        let mut zone = Zone {
            redirects: Vec::new(),
            answers: crate::answers::WireAnswers::for_names(nodes.len()),
            apex: self.apex,
            apex_key: self.apex_key,
            class,
            store,
            nodes,
            keys,
            index: NameIndex::default(),
            negative_ttl,
            nsec3,
            serial,
            record_count,
        };
        zone.index = NameIndex::new(zone.nodes.len(), |i| zone.key_at(i));
        // Canonical order is byte order, so this list comes out sorted.
        zone.redirects = (0..zone.nodes.len())
            .filter(|&i| {
                let node = zone.node_of(&zone.nodes[i]);
                !node.occluded() && (node.cut() || node.rrset(Rtype::DNAME).is_some())
            })
            .map(|i| Box::<[u8]>::from(zone.key_at(i)))
            .collect();
        Ok((zone, self.warnings))
    }

    /// A store offset as the store keeps it: zones up to 4 GiB of data.
    fn offset(&mut self, at: usize, file: &Arc<str>) -> u32 {
        u32::try_from(at).unwrap_or_else(|_| {
            if self.errors.is_empty() {
                self.errors.push(ZoneProblem {
                    file: file.clone(),
                    line: 0,
                    message: "the zone holds more than 4 GiB of data".into(),
                });
            }
            0
        })
    }

    /// Exactly one SOA, at the apex, and NS at the apex (RFC 1035 §5.2).
    fn check_soa_and_ns(
        &mut self,
        groups: &[Group],
        arena: &[u8],
        records: &LoadedRecords,
        sorted: &[u32],
        first_file: &Arc<str>,
    ) -> Option<Record> {
        let mut soa = None;
        let mut apex_records: &[u32] = &[];
        for group in groups {
            let placed = &sorted[group.records()];
            let is_apex = group.key(arena) == self.apex_key.as_bytes();
            if is_apex {
                apex_records = placed;
            }
            for index in placed.iter().map(|&i| i as usize) {
                if records.rtype(index) != Rtype::SOA {
                    continue;
                }
                if !is_apex {
                    self.errors.push(Self::problem_at(
                        records,
                        index,
                        format!(
                            "SOA record for {} is not at the zone apex {}",
                            name_text(&records.owner(index)),
                            name_text(&self.apex)
                        ),
                    ));
                } else if soa.is_some() {
                    self.errors.push(Self::problem_at(
                        records,
                        index,
                        "a second SOA record at the apex".into(),
                    ));
                } else {
                    soa = Some(records.get(index).record);
                }
            }
        }
        let mut apex_records = apex_records.iter().map(|&i| i as usize);
        let missing = |what: &str, line: Option<u32>| ZoneProblem {
            file: first_file.clone(),
            line: line.unwrap_or(1),
            message: format!(
                "no {what} record at the zone apex {}",
                name_text(&self.apex)
            ),
        };
        let first_line = apex_records.clone().next().map(|i| records.place(i).1);
        if soa.is_none() {
            self.errors.push(missing("SOA", first_line));
        }
        if !apex_records.any(|i| records.rtype(i) == Rtype::NS) {
            self.errors.push(missing("NS", first_line));
        }
        soa
    }

    /// Writes the owner name into the store and makes its node.
    fn node_named(&mut self, name: &Name) -> NodeEntry {
        let name_at = self.bytes.len() as u32;
        self.bytes.extend_from_slice(name.as_slice());
        NodeEntry {
            name_at,
            key_end: 0,
            rrsets_at: self.rrsets.len() as u32,
            rrsets_len: 0,
            signatures: Span::default(),
            // A name is at most 255 octets (RFC 1035 §3.1).
            name_len: name.as_slice().len() as u8,
            cut: false,
            occluded: false,
        }
    }

    fn empty_node(&mut self, name: &Name) -> NodeEntry {
        self.node_named(name)
    }

    /// Writes one record into the store; false (and an error) if it would
    /// not come back as it went in.
    fn write_record(&mut self, place: &SourcedRecord, record: &Record, ttl: Ttl) -> bool {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&ttl.as_secs().to_be_bytes());
        self.bytes.extend_from_slice(&[0, 0]);
        // Composing into a Vec cannot fail.
        let _ = record.data().compose_rdata(&mut self.bytes);
        let wire = &self.bytes[at + 6..];
        let stored = u16::try_from(wire.len())
            .ok()
            .filter(|_| decodes_to(record.rtype(), wire, record.data()));
        match stored {
            Some(len) => {
                self.bytes[at + 4..at + 6].copy_from_slice(&len.to_be_bytes());
                true
            }
            None => {
                self.bytes.truncate(at);
                self.errors.push(Self::problem(
                    place,
                    format!("the {} record's data cannot be stored", record.rtype()),
                ));
                false
            }
        }
    }

    /// Groups one name's records into RRsets, checks CNAME and DNAME rules,
    /// and writes them into the store.
    fn node_from(&mut self, placed: &[&SourcedRecord]) -> NodeEntry {
        let name = placed[0].record.owner();
        // (type, TTL, records with where they came from)
        type Set<'a> = (Rtype, Ttl, Vec<&'a SourcedRecord>);
        let mut rrsets: Vec<Set<'_>> = Vec::new();
        let mut signatures: Vec<&SourcedRecord> = Vec::new();
        // Duplicates (equal but for the TTL, RFC 2181 §5) are dropped. A set,
        // not a scan of the RRset: one name may own a million records.
        let mut seen: HashSet<&Record> = HashSet::with_capacity(placed.len());
        for &p in placed {
            if !seen.insert(&p.record) {
                continue;
            }
            let rtype = p.record.rtype();
            if rtype == Rtype::RRSIG {
                signatures.push(p);
                continue;
            }
            match rrsets.iter_mut().find(|(t, _, _)| *t == rtype) {
                Some((_, ttl, records)) => {
                    if p.record.ttl() != *ttl {
                        // RFC 2181 §5.2: one TTL per RRset; keep the first.
                        self.warnings.push(Self::problem(
                            p,
                            format!(
                                "TTL {} differs from the {} RRset's TTL {}: using {}",
                                p.record.ttl().as_secs(),
                                rtype,
                                ttl.as_secs(),
                                ttl.as_secs()
                            ),
                        ));
                    }
                    records.push(p);
                }
                None => rrsets.push((rtype, p.record.ttl(), vec![p])),
            }
        }
        let count_of = |rtype: Rtype| {
            rrsets
                .iter()
                .find(|(t, _, _)| *t == rtype)
                .map_or(0, |(_, _, r)| r.len())
        };
        let place_of = |rtype: Rtype| placed.iter().find(|p| p.record.rtype() == rtype);
        if let Some(cname) = place_of(Rtype::CNAME) {
            // RFC 2181 §10.1, RFC 4035 §2.5: beside a CNAME only DNSSEC records may stand.
            let others: Vec<String> = rrsets
                .iter()
                .map(|(t, _, _)| *t)
                .filter(|t| ![Rtype::CNAME, Rtype::NSEC, Rtype::RRSIG].contains(t))
                .map(|t| t.to_string())
                .collect();
            if !others.is_empty() {
                self.errors.push(Self::problem(
                    cname,
                    format!(
                        "CNAME at {} stands beside other data ({})",
                        name_text(name),
                        others.join(", ")
                    ),
                ));
            }
            if count_of(Rtype::CNAME) > 1 {
                self.errors.push(Self::problem(
                    cname,
                    format!("more than one CNAME record at {}", name_text(name)),
                ));
            }
        }
        if let Some(dname) = place_of(Rtype::DNAME)
            && count_of(Rtype::DNAME) > 1
        {
            // RFC 6672 §2.4: at most one DNAME per owner.
            self.errors.push(Self::problem(
                dname,
                format!("more than one DNAME record at {}", name_text(name)),
            ));
        }

        let mut node = self.node_named(name);
        // Signatures grouped by the type they cover, so that each RRset's
        // are a run of the node's.
        signatures.sort_by_key(|sig| covered_type(&sig.record).map(Rtype::to_int));
        let mut signature_offsets = Vec::with_capacity(signatures.len());
        for sig in &signatures {
            let at = self.bytes.len() as u32;
            if self.write_record(sig, &sig.record, sig.record.ttl()) {
                signature_offsets.push(at);
            }
        }
        node.signatures = Span {
            at: signature_offsets.first().copied().unwrap_or(0),
            count: signature_offsets.len() as u32,
        };
        for (rtype, ttl, records) in rrsets {
            let at = self.bytes.len() as u32;
            let count = records
                .iter()
                .filter(|p| self.write_record(p, &p.record, ttl))
                .count() as u32;
            let covering: Vec<usize> = signatures
                .iter()
                .enumerate()
                .filter(|(_, sig)| covered_type(&sig.record) == Some(rtype))
                .map(|(i, _)| i)
                .collect();
            let signatures = match (
                covering.first(),
                signature_offsets.len() == signatures.len(),
            ) {
                (Some(&first), true) => Span {
                    at: signature_offsets[first],
                    count: covering.len() as u32,
                },
                _ => Span::default(),
            };
            self.rrsets.push(RRsetEntry {
                rtype,
                records: Span { at, count },
                signatures,
            });
            node.rrsets_len += 1;
        }
        node
    }

    /// Adds a group for every empty non-terminal: a name with no records of
    /// its own but names below it (RFC 4592 §2.2.2), and sorts the groups.
    /// Returns the empty non-terminals' names.
    fn add_empty_non_terminals(
        &mut self,
        groups: &mut Vec<Group>,
        arena: &mut Vec<u8>,
        records: &LoadedRecords,
        sorted: &[u32],
    ) -> Vec<Name> {
        let apex_len = self.apex_key.as_bytes().len();
        // (key, name) of each missing ancestor.
        let mut missing: Vec<(Box<[u8]>, Name)> = Vec::new();
        for group in groups.iter() {
            let key = group.key(arena);
            let lengths: Vec<usize> = ancestor_lengths(key)
                .filter(|&l| l > apex_len && l < key.len())
                .collect();
            if lengths.is_empty() {
                continue;
            }
            let mut name = records.owner(sorted[group.records.start as usize] as usize);
            for &len in lengths.iter().rev() {
                name = name
                    .parent()
                    .expect("a proper descendant of the apex has a parent");
                let ancestor = &key[..len];
                if groups
                    .binary_search_by(|g| g.key(arena).cmp(ancestor))
                    .is_err()
                {
                    missing.push((ancestor.into(), name.clone()));
                }
            }
        }
        if missing.is_empty() {
            return Vec::new();
        }
        missing.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        missing.dedup_by(|a, b| a.0 == b.0);
        let mut names = Vec::with_capacity(missing.len());
        for (key, name) in missing {
            let key_at = self.offset(arena.len(), &Arc::from("zone"));
            arena.extend_from_slice(&key);
            names.push(name);
            groups.push(Group {
                key_at,
                key_len: key.len() as u16,
                records: 0..0,
                empty: names.len() as u32,
            });
        }
        groups.sort_unstable_by(|a, b| a.key(arena).cmp(b.key(arena)));
        names
    }

    /// The NSEC3 chain, hashed with the apex NSEC3PARAM's parameters.
    fn nsec3_chain(
        &mut self,
        param: Option<RecordData>,
        nsec3_nodes: Vec<(NodeEntry, Name)>,
        first_file: &Arc<str>,
    ) -> Option<Nsec3Chain> {
        if nsec3_nodes.is_empty() {
            return None;
        }
        let param = param.and_then(|data| match data {
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
        for (node, name) in nsec3_nodes {
            let label = name.first().as_slice();
            match base32hex_decode(label) {
                Some(hash) => {
                    by_hash.insert(hash, node);
                }
                None => self.warnings.push(ZoneProblem {
                    file: first_file.clone(),
                    line: 0,
                    message: format!("NSEC3 owner {} is not a base32hex hash", name_text(&name)),
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
    fn mark(
        &mut self,
        key: &[u8],
        node: &mut NodeEntry,
        rrsets: &[RRsetEntry],
        name: &Name,
        apex: &CanonicalKey,
    ) -> Option<String> {
        let has = |rtype: Rtype| rrsets.iter().any(|r| r.rtype == rtype);
        if let Some((above, why)) = &self.above {
            if key.starts_with(above) {
                node.occluded = true;
                // Addresses below a delegation are glue; anything else is lost.
                let glue_only = rrsets
                    .iter()
                    .all(|r| *why == "delegation" && [Rtype::A, Rtype::AAAA].contains(&r.rtype));
                return (!glue_only).then(|| {
                    format!(
                        "{} is below a {why} and will not be served",
                        name_text(name)
                    )
                });
            }
            self.above = None;
        }
        node.cut = key != apex.as_bytes() && has(Rtype::NS);
        if node.cut {
            self.above = Some((key.to_vec(), "delegation"));
        } else if has(Rtype::DNAME) {
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
                .records()
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
            assert_eq!(name_text(&node.name()), format!("{name}."));
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
        assert!(node("child.example.org").cut());
        assert!(!node("child.example.org").occluded());
        assert!(node("ns.child.example.org").occluded());
        assert!(node("below.child.example.org").occluded());
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
        assert_eq!(node("x.example.org").rrset(Rtype::TXT).unwrap().len(), 1);
        assert_eq!(
            node("big.example.org").rrset(Rtype::PTR).unwrap().len(),
            50_000
        );
    }

    #[test]
    fn records_come_back_from_the_store_as_loaded() {
        let text = format!(
            "{HEAD}x 100 A 192.0.2.1\nx 100 A 192.0.2.2\nx MX 10 Mail.Example.org.\n\
             x TXT \"a\" \"b c\"\nx TYPE65280 \\# 3 010203\nx HTTPS 1 . alpn=h2\n\
             y TYPE1 \\# 4 c0000201\ny TYPE16 \\# 0\ny SVCB 0 target.example.\n"
        );
        let apex = name_from_str("example.org").unwrap();
        let loaded = parse_zone_text(&text, "db.example.org", &apex).unwrap();
        let (zone, _) = zone(&text).unwrap();
        let mut want: Vec<String> = loaded.iter().map(|r| r.record.to_string()).collect();
        let mut got: Vec<String> = zone.records().map(|r| r.to_string()).collect();
        want.sort();
        got.sort();
        assert_eq!(got, want);
    }

    /// Data that would not come back from the store as it went in (here
    /// three octets given as an A record's) is refused at its line: the
    /// loaded records keep such a record whole for the builder to say so.
    #[test]
    fn data_that_would_not_come_back_is_refused_at_its_line() {
        use domain::base::rdata::UnknownRecordData;
        let apex = name_from_str("example.org").unwrap();
        let mut records = parse_zone_text(HEAD, "db.example.org", &apex).unwrap();
        let data =
            UnknownRecordData::from_octets(Rtype::A, Bytes::from_static(&[192, 0, 2])).unwrap();
        records.push(SourcedRecord {
            record: Record::new(
                name_from_str("odd.example.org").unwrap(),
                Class::IN,
                Ttl::from_secs(60),
                RecordData::Unknown(data),
            ),
            file: Arc::from("transfer"),
            line: 7,
        });
        let problems: Vec<String> = Zone::build(&apex, records)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            problems,
            ["transfer:7: the A record's data cannot be stored"]
        );
    }

    #[test]
    fn every_name_is_found_by_the_index_and_no_other() {
        let mut text = HEAD.to_string();
        for i in 0..2_000 {
            text.push_str(&format!("h{i}.sub A 192.0.2.1\n"));
        }
        let (zone, _) = zone(&text).unwrap();
        let key = |n: &str| CanonicalKey::of(&name_from_str(n).unwrap());
        for i in 0..2_000 {
            let name = format!("H{i}.sub.example.org");
            let node = zone.node(key(&name).as_bytes()).expect("an existing name");
            assert_eq!(name_text(&node.name()), format!("h{i}.sub.example.org."));
        }
        assert!(
            zone.node(key("sub.example.org").as_bytes())
                .unwrap()
                .is_empty_non_terminal()
        );
        for missing in [
            "h2000.sub.example.org",
            "sub.sub.example.org",
            "example.net",
        ] {
            assert!(zone.node(key(missing).as_bytes()).is_none(), "{missing}");
        }
    }

    #[test]
    fn base32hex_decodes_nsec3_labels() {
        assert_eq!(base32hex_decode(b"CPNMU"), Some(b"foo".to_vec()));
        assert_eq!(base32hex_decode(b"cpnmu"), Some(b"foo".to_vec()));
        assert_eq!(base32hex_decode(b"W"), None);
    }
}
