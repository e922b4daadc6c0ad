//! Responses kept in wire form: the answer, authority and additional
//! sections encoded once, then sent again by copying them behind a new
//! header and question (issue #8: zones and the cache answer repeated
//! questions without decoding, cloning or compressing records again).
//!
//! Sections are encoded after a question whose name starts at offset 12, so
//! their compression pointers may point into it (RFC 1035 §4.1.4). Every
//! query for the same name, in any case, has its name at that place with
//! that length: copying the query's own name into the question keeps the
//! pointers right, and echoes its case (RFC 1035 §7.3, RFC 4343 §4).
//! Truncation keeps whole RRsets as [`crate::Response::encode`] does (RFC
//! 2181 §9), from the ends of RRsets recorded at encoding.

use std::ops::Range;

use crate::{Name, OptRcode, Rtype};

/// The sections of a response in wire form, for one question (see the
/// module docs), with an optional tag the keeper stores beside them (the
/// zone's question key), and what the response's header said. Everything is
/// in one block of memory ([`WireBlock`]), so a hit reads one place;
/// cloning is one reference count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireSections {
    block: WireBlock,
    /// Seconds to take off every record's TTL when sent (cache hits).
    age: u32,
}

/// The shared block of [`WireSections`]: a thin pointer (a slot of an
/// `arc_swap` table holds one without a second allocation). Its bytes are
/// an [`RRSET_LEN`]-byte entry per RRset (end u32, records u16, section u8,
/// unused u8), then the tag, then the records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireBlock(triomphe::ThinArc<WireHead, u8>);

/// The fixed part of a [`WireBlock`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct WireHead {
    question_len: u16,
    rrsets: u16,
    tag_len: u16,
    header: WireHeader,
}

// SAFETY: every function is the `RefCnt` of the one field of this
// wrapper, so pointers handed out and taken back are `ThinArc`'s own.
unsafe impl arc_swap::RefCnt for WireBlock {
    type Base = std::ffi::c_void;

    fn into_ptr(me: Self) -> *mut Self::Base {
        arc_swap::RefCnt::into_ptr(me.0)
    }

    fn as_ptr(me: &Self) -> *mut Self::Base {
        arc_swap::RefCnt::as_ptr(&me.0)
    }

    unsafe fn from_ptr(ptr: *const Self::Base) -> Self {
        // SAFETY: `ptr` came from `into_ptr` above, as the caller promises.
        WireBlock(unsafe { arc_swap::RefCnt::from_ptr(ptr) })
    }
}

/// The header values kept with [`WireSections`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireHeader {
    pub rcode: OptRcode,
    pub authoritative: bool,
    pub recursion_available: bool,
    pub authentic_data: bool,
}

const RRSET_LEN: usize = 8;

/// The sections after the question, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Section {
    Answer = 0,
    Authority = 1,
    Additional = 2,
}

/// The RRsets of the sections that fit a budget.
pub(crate) struct Fit<'a> {
    pub bytes: &'a [u8],
    /// Records per section.
    pub counts: [u16; 3],
    /// An answer or authority RRset was left out (TC, RFC 2181 §9);
    /// additional RRsets are left out without it.
    pub truncated: bool,
}

impl WireSections {
    /// Sections from an encoded message: `message` holds a header, one
    /// question of `question_len` bytes, and then records, whose RRsets
    /// (section, record count) are `rrsets` in order. `None` if the records
    /// do not read as the RRsets say.
    pub(crate) fn from_message(
        message: &[u8],
        question_len: usize,
        rrsets: &[(Section, u16)],
        tag: &[u8],
        header: WireHeader,
    ) -> Option<WireSections> {
        let records = message.get(12 + question_len..)?;
        let mut bytes = Vec::with_capacity(rrsets.len() * RRSET_LEN + tag.len() + records.len());
        let mut at = 0;
        for &(section, count) in rrsets {
            for _ in 0..count {
                at = record_parts(records, at)?.1;
            }
            bytes.extend_from_slice(&u32::try_from(at).ok()?.to_le_bytes());
            bytes.extend_from_slice(&count.to_le_bytes());
            bytes.extend_from_slice(&[section as u8, 0]);
        }
        if at != records.len() {
            return None;
        }
        bytes.extend_from_slice(tag);
        bytes.extend_from_slice(records);
        let head = WireHead {
            question_len: u16::try_from(question_len).ok()?,
            rrsets: u16::try_from(rrsets.len()).ok()?,
            tag_len: u16::try_from(tag.len()).ok()?,
            header,
        };
        Some(WireSections::from(WireBlock(
            triomphe::ThinArc::from_header_and_slice(head, &bytes),
        )))
    }

    /// The same sections with every TTL lowered by `seconds` when sent
    /// (never below 0): what a cache hit sends after that long.
    pub fn aged(&self, seconds: u32) -> WireSections {
        WireSections {
            block: self.block.clone(),
            age: seconds,
        }
    }

    /// The shared block, to keep (as sections again with `from`).
    pub fn into_block(self) -> WireBlock {
        self.block
    }

    /// Whether these sections were made for a question of `qname` (its
    /// length, in any case: what their compression pointers assume).
    pub fn made_for(&self, qname: &Name) -> bool {
        usize::from(self.block.head().question_len) == qname.as_slice().len() + 4
    }

    /// The header values of the response these sections came from.
    pub fn header(&self) -> WireHeader {
        self.block.head().header
    }

    /// The tag stored with the sections.
    pub fn tag(&self) -> &[u8] {
        self.block.tag()
    }

    /// Bytes the records take in full.
    pub fn len(&self) -> usize {
        self.block.records().len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.block.records().is_empty()
    }

    /// The longest run of whole RRsets that fits in `budget` bytes.
    pub(crate) fn fit(&self, budget: usize) -> Fit<'_> {
        let mut counts = [0u16; 3];
        let mut end = 0;
        let mut truncated = false;
        for (rrset_end, records, section) in self.block.rrsets() {
            if rrset_end > budget {
                truncated = section != Section::Additional as u8;
                break;
            }
            counts[usize::from(section)] += records;
            end = rrset_end;
        }
        Fit {
            bytes: &self.block.records()[..end],
            counts,
            truncated,
        }
    }

    /// Appends `fit` to `out`, with the TTLs aged.
    pub(crate) fn append(&self, fit: &Fit<'_>, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(fit.bytes);
        if self.age == 0 {
            return;
        }
        let records = &mut out[start..];
        let mut at = 0;
        while let Some((fixed, end)) = record_parts(records, at) {
            // TYPE and CLASS, then the TTL (RFC 1035 §4.1.3).
            let ttl_at = fixed + 4;
            let ttl = u32::from_be_bytes(records[ttl_at..ttl_at + 4].try_into().expect("4 bytes"));
            let aged = ttl.saturating_sub(self.age);
            records[ttl_at..ttl_at + 4].copy_from_slice(&aged.to_be_bytes());
            at = end;
        }
    }
}

/// An RRset of [`WireSections`], as [`WireSections::rrsets`] lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireRRset {
    /// 0 answer, 1 authority, 2 additional.
    pub section: u8,
    pub rtype: Rtype,
    pub records: u16,
    /// Where the owner name of its first record points when it is only a
    /// compression pointer: RRsets of one type with the same pointer have
    /// the same owner.
    pub owner_pointer: Option<u16>,
}

impl WireSections {
    /// The RRsets in the order they are sent.
    pub fn rrsets(&self) -> impl Iterator<Item = WireRRset> + '_ {
        self.rrset_spans().map(|(_, rrset)| rrset)
    }

    /// Each RRset with where its records are in [`WireBlock::records`].
    fn rrset_spans(&self) -> impl Iterator<Item = (Range<usize>, WireRRset)> + '_ {
        let records = self.block.records();
        let mut start = 0;
        self.block.rrsets().map(move |(end, count, section)| {
            let fixed = skip_name(records, start).unwrap_or(start);
            let owner_pointer = (fixed == start + 2 && records[start] >= 0xC0)
                .then(|| u16::from_be_bytes([records[start] & 0x3F, records[start + 1]]));
            let rtype = Rtype::from_int(u16::from_be_bytes([records[fixed], records[fixed + 1]]));
            let span = start..end;
            start = end;
            let rrset = WireRRset {
                section,
                rtype,
                records: count,
                owner_pointer,
            };
            (span, rrset)
        })
    }

    /// These sections with the records of each RRset that `chosen` picks in
    /// a random order, each order as likely, as `random_below(n)` (a number
    /// below `n`) draws it: round robin in wire form. Only A and AAAA RRsets
    /// whose owners are compression pointers can be reordered so (their
    /// records then have one length, and no name of the message starts
    /// inside them); `None` if `chosen` picks another. The copy is one new
    /// block, made only when there is something to reorder.
    pub fn shuffled(
        &self,
        chosen: impl Fn(&WireRRset) -> bool,
        mut random_below: impl FnMut(usize) -> usize,
    ) -> Option<WireSections> {
        let mut copy: Option<triomphe::ThinArc<WireHead, u8>> = None;
        for (span, rrset) in self.rrset_spans() {
            let count = usize::from(rrset.records);
            if count < 2 || !chosen(&rrset) {
                continue;
            }
            let records = &self.block.records()[span.clone()];
            let length = records.len() / count;
            let movable = records.chunks(length).all(|record| {
                // A bare pointer as the owner, then the fixed fields.
                record_parts(record, 0) == Some((2, length))
                    && record[0] >= 0xC0
                    && [Rtype::A, Rtype::AAAA]
                        .contains(&Rtype::from_int(u16::from_be_bytes([record[2], record[3]])))
            });
            if !movable {
                return None;
            }
            let block = copy.get_or_insert_with(|| {
                triomphe::ThinArc::from_header_and_slice(*self.block.head(), &self.block.0.slice)
            });
            let at = self.block.records_start();
            block.with_arc_mut(|block| {
                let bytes = triomphe::Arc::get_mut(block)
                    .expect("a block of our own, made above")
                    .slice_mut();
                let rrset = &mut bytes[at + span.start..at + span.end];
                // Fisher–Yates over records of one length.
                for i in (1..count).rev() {
                    let j = random_below(i + 1);
                    if j != i {
                        let (low, high) = rrset.split_at_mut(i * length);
                        low[j * length..(j + 1) * length].swap_with_slice(&mut high[..length]);
                    }
                }
            });
        }
        Some(WireSections {
            block: copy.map_or_else(|| self.block.clone(), WireBlock),
            age: self.age,
        })
    }
}

impl From<WireBlock> for WireSections {
    /// Kept sections, sent with their TTLs as stored.
    fn from(block: WireBlock) -> WireSections {
        WireSections { block, age: 0 }
    }
}

impl WireBlock {
    fn head(&self) -> &WireHead {
        &self.0.header.header
    }

    fn rrset_bytes(&self) -> usize {
        usize::from(self.head().rrsets) * RRSET_LEN
    }

    /// The tag stored with the sections.
    pub fn tag(&self) -> &[u8] {
        let start = self.rrset_bytes();
        &self.0.slice[start..start + usize::from(self.head().tag_len)]
    }

    /// Where the records start in the block's bytes.
    fn records_start(&self) -> usize {
        self.rrset_bytes() + usize::from(self.head().tag_len)
    }

    /// The records of the three sections.
    fn records(&self) -> &[u8] {
        &self.0.slice[self.records_start()..]
    }

    /// Each RRset: where it ends in [`WireBlock::records`], its records and section.
    fn rrsets(&self) -> impl Iterator<Item = (usize, u16, u8)> + '_ {
        self.0.slice[..self.rrset_bytes()]
            .chunks_exact(RRSET_LEN)
            .map(|e| {
                let end = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as usize;
                (end, u16::from_le_bytes([e[4], e[5]]), e[6])
            })
    }
}

/// Where the name starting at `at` ends (labels, then a zero octet or a
/// compression pointer).
fn skip_name(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let length = *bytes.get(at)?;
        match length {
            0 => return Some(at + 1),
            1..=63 => at += 1 + usize::from(length),
            0xC0..=0xFF => return (at + 2 <= bytes.len()).then_some(at + 2),
            _ => return None,
        }
    }
}

/// Where the fixed fields (type, class, TTL, RDLENGTH) of the record
/// starting at `at` begin, and where the record ends.
fn record_parts(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    let fixed = skip_name(bytes, at)?;
    let rdlength = bytes.get(fixed + 8..fixed + 10)?;
    let end = fixed + 10 + usize::from(u16::from_be_bytes([rdlength[0], rdlength[1]]));
    (end <= bytes.len()).then_some((fixed, end))
}
