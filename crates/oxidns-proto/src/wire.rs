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

use std::sync::Arc;

/// The sections of a response in wire form, for one question (see the
/// module docs). Cloning is one reference count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireSections {
    encoded: Arc<Encoded>,
    /// Seconds to take off every record's TTL when sent (cache hits).
    age: u32,
}

#[derive(Debug, PartialEq, Eq)]
struct Encoded {
    /// Wire length of the question: name, type and class.
    question_len: usize,
    /// Each RRset, in order.
    rrsets: Box<[RrsetEnd]>,
    /// The records of the three sections, as they follow the question.
    bytes: Box<[u8]>,
}

/// Where an RRset ends in [`Encoded::bytes`], and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RrsetEnd {
    pub end: u32,
    pub section: Section,
    pub records: u16,
}

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
    ) -> Option<WireSections> {
        let start = 12 + question_len;
        let bytes = message.get(start..)?;
        let mut ends = Vec::with_capacity(rrsets.len());
        let mut at = 0;
        for &(section, records) in rrsets {
            for _ in 0..records {
                at = record_end(bytes, at)?;
            }
            ends.push(RrsetEnd {
                end: u32::try_from(at).ok()?,
                section,
                records,
            });
        }
        (at == bytes.len()).then(|| WireSections {
            encoded: Arc::new(Encoded {
                question_len,
                rrsets: ends.into_boxed_slice(),
                bytes: bytes.into(),
            }),
            age: 0,
        })
    }

    /// The same sections with every TTL lowered by `seconds` when sent
    /// (never below 0): what a cache hit sends after that long.
    pub fn aged(&self, seconds: u32) -> WireSections {
        WireSections {
            encoded: self.encoded.clone(),
            age: seconds,
        }
    }

    /// Wire length of the question these sections follow.
    pub fn question_len(&self) -> usize {
        self.encoded.question_len
    }

    /// Bytes the sections take in full.
    pub fn len(&self) -> usize {
        self.encoded.bytes.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.encoded.bytes.is_empty()
    }

    /// Records in each section (answer, authority, additional).
    pub fn counts(&self) -> [u16; 3] {
        let mut counts = [0u16; 3];
        for rrset in self.encoded.rrsets.iter() {
            counts[rrset.section as usize] += rrset.records;
        }
        counts
    }

    /// The longest run of whole RRsets that fits in `budget` bytes.
    pub(crate) fn fit(&self, budget: usize) -> Fit<'_> {
        let mut counts = [0u16; 3];
        let mut end = 0;
        let mut truncated = false;
        for rrset in self.encoded.rrsets.iter() {
            if rrset.end as usize > budget {
                truncated = rrset.section != Section::Additional;
                break;
            }
            counts[rrset.section as usize] += rrset.records;
            end = rrset.end as usize;
        }
        Fit {
            bytes: &self.encoded.bytes[..end],
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
        while at < records.len() {
            let Some(ttl_at) = skip_name(records, at).map(|end| end + 4) else {
                return;
            };
            let ttl = u32::from_be_bytes(records[ttl_at..ttl_at + 4].try_into().expect("4 bytes"));
            let aged = ttl.saturating_sub(self.age);
            records[ttl_at..ttl_at + 4].copy_from_slice(&aged.to_be_bytes());
            match record_end(records, at) {
                Some(end) => at = end,
                None => return,
            }
        }
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

/// Where the record starting at `at` ends.
fn record_end(bytes: &[u8], at: usize) -> Option<usize> {
    let fixed = skip_name(bytes, at)?;
    let rdlength = bytes.get(fixed + 8..fixed + 10)?;
    let end = fixed + 10 + usize::from(u16::from_be_bytes([rdlength[0], rdlength[1]]));
    (end <= bytes.len()).then_some(end)
}
