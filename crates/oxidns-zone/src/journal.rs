//! The history of a zone for incremental transfers (RFC 1995): the
//! differences between successive versions, kept in memory and on disk.
//!
//! A [`Diff`] is what changed from one serial to the next: the old SOA and the
//! records removed, the new SOA and the records added, the form of one IXFR
//! "difference sequence" (RFC 1995 §4). A record whose TTL changed is removed
//! and added again. [`Journal::changes_since`] condenses the chain of diffs
//! from a client's serial to the current one into a single diff, or says the
//! history does not reach back that far (the caller then sends the whole
//! zone).
//!
//! # File format
//!
//! A journal file starts with the 8 bytes `OXJRNL01`, followed by frames, one
//! per diff, oldest first. A frame is its payload's length (u32, big-endian),
//! the payload's CRC-32 (IEEE, u32 big-endian), and the payload: the old and
//! new serial (u32 each), the number of removed and of added records (u32
//! each), then the old SOA, the removed records, the new SOA and the added
//! records, each in uncompressed wire format (RFC 1035 §4.1.3).
//!
//! Writes are crash-safe: a diff is appended as one frame and the file synced
//! before the call returns; a frame cut short by a crash (or corrupted) fails
//! its length or checksum, and it and anything after it are dropped when the
//! journal is next opened. When the journal grows past its bound, the newest
//! half is written to a temporary file that is synced and renamed over the
//! journal, so the file is always either the old or the new version.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use domain::base::name::FlattenInto;
use domain::base::{ParsedName, Rtype};
use domain::dep::octseq::Parser;
use domain::rdata::ZoneRecordData;
use oxidns_proto::{Record, Serial};

use crate::zone::Zone;

const MAGIC: &[u8; 8] = b"OXJRNL01";
/// Frame header: payload length and checksum.
const FRAME_HEADER: usize = 8;
/// Diffs kept by default; beyond it, the oldest half is dropped.
pub const DEFAULT_MAX_DIFFS: usize = 100;

/// What changed between two versions of a zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diff {
    /// The SOA of the older version.
    pub old_soa: Record,
    /// Records of the older version that are not in the newer (SOA excluded).
    pub removed: Vec<Record>,
    /// The SOA of the newer version.
    pub new_soa: Record,
    /// Records of the newer version that are not in the older (SOA excluded).
    pub added: Vec<Record>,
}

impl Diff {
    /// The differences from `old` to `new`; `None` if either has no SOA.
    pub fn between(old: &Zone, new: &Zone) -> Option<Diff> {
        let old_soa = soa(old)?;
        let new_soa = soa(new)?;
        let before = keyed(old.records());
        let mut after = keyed(new.records());
        let mut removed = Vec::new();
        for (key, record) in before {
            if after.remove(&key).is_none() {
                removed.push(record);
            }
        }
        // What is left of the new version was not in the old.
        let added = after.into_values().collect();
        Some(Diff {
            old_soa,
            removed,
            new_soa,
            added,
        })
    }

    /// The serial of the older version.
    pub fn from(&self) -> u32 {
        soa_serial(&self.old_soa)
    }

    /// The serial of the newer version.
    pub fn to(&self) -> u32 {
        soa_serial(&self.new_soa)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&self.from().to_be_bytes());
        out.extend_from_slice(&self.to().to_be_bytes());
        out.extend_from_slice(&(self.removed.len() as u32).to_be_bytes());
        out.extend_from_slice(&(self.added.len() as u32).to_be_bytes());
        for record in std::iter::once(&self.old_soa)
            .chain(&self.removed)
            .chain(std::iter::once(&self.new_soa))
            .chain(&self.added)
        {
            compose(record, &mut out);
        }
        out
    }

    fn decode(payload: &[u8]) -> Option<Diff> {
        let bytes = Bytes::copy_from_slice(payload);
        let mut parser = Parser::from_ref(&bytes);
        let from = parser.parse_u32_be().ok()?;
        let to = parser.parse_u32_be().ok()?;
        let removed = parser.parse_u32_be().ok()? as usize;
        let added = parser.parse_u32_be().ok()? as usize;
        // Every record takes at least 11 bytes: a bound before allocating.
        if removed.saturating_add(added) > payload.len() / 11 {
            return None;
        }
        let old_soa = parse_record(&mut parser)?;
        let removed = (0..removed)
            .map(|_| parse_record(&mut parser))
            .collect::<Option<Vec<_>>>()?;
        let new_soa = parse_record(&mut parser)?;
        let added = (0..added)
            .map(|_| parse_record(&mut parser))
            .collect::<Option<Vec<_>>>()?;
        let diff = Diff {
            old_soa,
            removed,
            new_soa,
            added,
        };
        (parser.remaining() == 0
            && diff.old_soa.rtype() == Rtype::SOA
            && diff.new_soa.rtype() == Rtype::SOA
            && diff.from() == from
            && diff.to() == to)
            .then_some(diff)
    }
}

/// The zone's SOA record.
pub fn soa(zone: &Zone) -> Option<Record> {
    zone.records().find(|r| r.rtype() == Rtype::SOA)
}

/// The serial of an SOA record (0 for any other record).
pub fn soa_serial(record: &Record) -> u32 {
    match record.data() {
        ZoneRecordData::Soa(soa) => soa.serial().into_int(),
        _ => 0,
    }
}

/// Records other than the SOA, by their canonical wire form (TTL included),
/// which is how two versions' records are matched.
fn keyed(records: impl Iterator<Item = Record>) -> BTreeMap<Vec<u8>, Record> {
    records
        .filter(|r| r.rtype() != Rtype::SOA)
        .map(|r| (key(&r), r))
        .collect()
}

fn key(record: &Record) -> Vec<u8> {
    let mut key = Vec::with_capacity(64);
    let _ = record.compose_canonical(&mut key);
    key
}

fn compose(record: &Record, out: &mut Vec<u8>) {
    // Composing into a Vec cannot fail.
    let _ = record.compose(out);
}

fn parse_record(parser: &mut Parser<'_, Bytes>) -> Option<Record> {
    let parsed: domain::base::Record<ParsedName<Bytes>, ZoneRecordData<Bytes, ParsedName<Bytes>>> =
        domain::base::Record::parse(parser).ok()??;
    Some(parsed.flatten_into())
}

/// CRC-32 (IEEE 802.3, reflected), the checksum of a frame.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn frame(diff: &Diff) -> Vec<u8> {
    let payload = diff.encode();
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The history of one zone, in memory and in its file.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    /// Oldest first.
    diffs: Vec<Diff>,
    max_diffs: usize,
}

impl Journal {
    /// The journal file of the zone file `zone_file` in `directory`, or next
    /// to the zone file when there is none: `<zone file name>.ixfr`.
    pub fn path_for(zone_file: &Path, directory: Option<&Path>) -> PathBuf {
        let mut name = zone_file
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "zone".into());
        name.push(".ixfr");
        match directory {
            Some(dir) => dir.join(name),
            None => zone_file.with_file_name(name),
        }
    }

    /// Reads the journal at `path` (empty if there is none). A torn or
    /// corrupted frame ends the history there; the file is cut back to the
    /// last whole frame so that appends continue from it.
    pub fn open(path: &Path, max_diffs: usize) -> io::Result<Journal> {
        let mut journal = Journal {
            path: path.to_owned(),
            diffs: Vec::new(),
            max_diffs: max_diffs.max(1),
        };
        let mut bytes = Vec::new();
        match File::open(path) {
            Ok(mut file) => {
                file.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(journal),
            Err(e) => return Err(e),
        }
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            // Not a journal of ours (or a header torn at creation): start over.
            journal.rewrite()?;
            return Ok(journal);
        }
        let mut pos = MAGIC.len();
        while let Some(header) = bytes.get(pos..pos + FRAME_HEADER) {
            let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
            let sum = u32::from_be_bytes(header[4..].try_into().expect("4 bytes"));
            let start = pos + FRAME_HEADER;
            let Some(payload) = bytes.get(start..start.saturating_add(len)) else {
                break;
            };
            if crc32(payload) != sum {
                break;
            }
            let Some(diff) = Diff::decode(payload) else {
                break;
            };
            journal.diffs.push(diff);
            pos = start + len;
        }
        if pos < bytes.len() {
            let file = OpenOptions::new().write(true).open(path)?;
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        Ok(journal)
    }

    /// The diffs kept, oldest first.
    pub fn diffs(&self) -> &[Diff] {
        &self.diffs
    }

    /// The serial the history ends at.
    pub fn last_serial(&self) -> Option<u32> {
        self.diffs.last().map(Diff::to)
    }

    /// Appends a diff, in memory and durably on disk. The diff is kept in
    /// memory even when writing fails (a read-only directory): incremental
    /// transfers still work until the next restart.
    pub fn append(&mut self, diff: Diff) -> io::Result<()> {
        let framed = frame(&diff);
        self.diffs.push(diff);
        if self.diffs.len() > self.max_diffs {
            let keep = self.max_diffs.div_ceil(2);
            let drop = self.diffs.len().saturating_sub(keep);
            self.diffs.drain(..drop);
            return self.rewrite();
        }
        if !self.path.exists() {
            return self.rewrite();
        }
        let mut file = OpenOptions::new().append(true).open(&self.path)?;
        file.write_all(&framed)?;
        file.sync_data()
    }

    /// Writes the whole journal to a temporary file and renames it over the
    /// old one.
    fn rewrite(&self) -> io::Result<()> {
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let mut bytes = MAGIC.to_vec();
        for diff in &self.diffs {
            bytes.extend_from_slice(&frame(diff));
        }
        {
            let mut file = File::create(&temporary)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, &self.path)?;
        if let Some(dir) = self.path.parent()
            && let Ok(dir) = File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
        {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// The changes from version `from` to version `to`, condensed into one
    /// diff (a record added and removed again in between appears in
    /// neither list); `None` when the history has no unbroken chain of
    /// diffs from `from` to `to`.
    pub fn changes_since(&self, from: u32, to: u32) -> Option<Diff> {
        // The newest chain that starts at `from`: a serial may recur.
        let start = self.diffs.iter().rposition(|d| d.from() == from)?;
        let chain = &self.diffs[start..];
        let end = chain.iter().position(|d| d.to() == to)?;
        let chain = &chain[..=end];
        if chain.windows(2).any(|w| w[0].to() != w[1].from()) {
            return None;
        }
        let mut removed: BTreeMap<Vec<u8>, Record> = BTreeMap::new();
        let mut added: BTreeMap<Vec<u8>, Record> = BTreeMap::new();
        for diff in chain {
            for record in &diff.removed {
                let key = key(record);
                if added.remove(&key).is_none() {
                    removed.insert(key, record.clone());
                }
            }
            for record in &diff.added {
                let key = key(record);
                if removed.remove(&key).is_none() {
                    added.insert(key, record.clone());
                }
            }
        }
        Some(Diff {
            old_soa: chain[0].old_soa.clone(),
            removed: removed.into_values().collect(),
            new_soa: chain[end].new_soa.clone(),
            added: added.into_values().collect(),
        })
    }
}

/// Whether serial `a` is older than `b` (RFC 1982 arithmetic).
pub fn serial_older(a: u32, b: u32) -> bool {
    Serial::from(a) < Serial::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxidns_proto::name_from_str;

    fn zone(serial: u32, body: &str) -> Zone {
        let text = format!(
            "$ORIGIN example.org.\n$TTL 300\n@ SOA ns hostmaster {serial} 7200 900 1209600 300\n@ NS ns\nns A 192.0.2.1\n{body}"
        );
        let apex = name_from_str("example.org").unwrap();
        let records = crate::zonefile::parse_zone_text(&text, "test", &apex).unwrap();
        Zone::build(&apex, records).unwrap().0
    }

    struct TempFile(PathBuf);

    impl TempFile {
        fn new() -> TempFile {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            TempFile(
                std::env::temp_dir()
                    .join(format!("oxidns-journal-{}-{n}.ixfr", std::process::id())),
            )
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn texts(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn a_diff_lists_removed_and_added_records() {
        let old = zone(1, "www A 192.0.2.80\nmail A 192.0.2.25\nttl 60 TXT \"x\"\n");
        let new = zone(
            2,
            "www A 192.0.2.81\nmail A 192.0.2.25\nttl 120 TXT \"x\"\n",
        );
        let diff = Diff::between(&old, &new).unwrap();
        assert_eq!((diff.from(), diff.to()), (1, 2));
        assert_eq!(
            texts(&diff.removed),
            [
                "ttl.example.org. 60 IN TXT \"x\"",
                "www.example.org. 300 IN A 192.0.2.80"
            ]
        );
        assert_eq!(
            texts(&diff.added),
            [
                "ttl.example.org. 120 IN TXT \"x\"",
                "www.example.org. 300 IN A 192.0.2.81"
            ]
        );
    }

    #[test]
    fn diffs_survive_a_reopen_and_condense() {
        let file = TempFile::new();
        let v1 = zone(1, "a A 192.0.2.1\n");
        let v2 = zone(2, "a A 192.0.2.1\nb A 192.0.2.2\n");
        let v3 = zone(3, "c A 192.0.2.3\n");
        {
            let mut journal = Journal::open(&file.0, 10).unwrap();
            journal.append(Diff::between(&v1, &v2).unwrap()).unwrap();
            journal.append(Diff::between(&v2, &v3).unwrap()).unwrap();
        }
        let journal = Journal::open(&file.0, 10).unwrap();
        assert_eq!(journal.diffs().len(), 2);
        assert_eq!(journal.last_serial(), Some(3));
        let changes = journal.changes_since(1, 3).unwrap();
        assert_eq!(soa_serial(&changes.old_soa), 1);
        assert_eq!(soa_serial(&changes.new_soa), 3);
        // b was added and removed again: in neither list.
        assert_eq!(
            texts(&changes.removed),
            ["a.example.org. 300 IN A 192.0.2.1"]
        );
        assert_eq!(texts(&changes.added), ["c.example.org. 300 IN A 192.0.2.3"]);
        assert_eq!(
            journal.changes_since(2, 3).unwrap(),
            Diff::between(&v2, &v3).unwrap()
        );
        assert!(journal.changes_since(7, 3).is_none(), "no history from 7");
        assert!(journal.changes_since(1, 4).is_none(), "no history to 4");
    }

    #[test]
    fn a_torn_last_write_is_ignored_and_cut_off() {
        let file = TempFile::new();
        let v1 = zone(1, "a A 192.0.2.1\n");
        let v2 = zone(2, "b A 192.0.2.2\n");
        let v3 = zone(3, "c A 192.0.2.3\n");
        {
            let mut journal = Journal::open(&file.0, 10).unwrap();
            journal.append(Diff::between(&v1, &v2).unwrap()).unwrap();
        }
        let good_len = std::fs::metadata(&file.0).unwrap().len();
        // A crash in the middle of the second append.
        let torn = frame(&Diff::between(&v2, &v3).unwrap());
        let mut f = OpenOptions::new().append(true).open(&file.0).unwrap();
        f.write_all(&torn[..torn.len() / 2]).unwrap();
        drop(f);
        let mut journal = Journal::open(&file.0, 10).unwrap();
        assert_eq!(journal.diffs().len(), 1);
        assert_eq!(std::fs::metadata(&file.0).unwrap().len(), good_len);
        // Appends go on from the last whole frame.
        journal.append(Diff::between(&v2, &v3).unwrap()).unwrap();
        let journal = Journal::open(&file.0, 10).unwrap();
        assert!(journal.changes_since(1, 3).is_some());
    }

    #[test]
    fn a_corrupted_frame_ends_the_history() {
        let file = TempFile::new();
        let v1 = zone(1, "a A 192.0.2.1\n");
        let v2 = zone(2, "b A 192.0.2.2\n");
        let v3 = zone(3, "c A 192.0.2.3\n");
        {
            let mut journal = Journal::open(&file.0, 10).unwrap();
            journal.append(Diff::between(&v1, &v2).unwrap()).unwrap();
            journal.append(Diff::between(&v2, &v3).unwrap()).unwrap();
        }
        let mut bytes = std::fs::read(&file.0).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        std::fs::write(&file.0, &bytes).unwrap();
        let journal = Journal::open(&file.0, 10).unwrap();
        assert_eq!(journal.diffs().len(), 1);
        assert!(journal.changes_since(2, 3).is_none());
    }

    #[test]
    fn the_journal_is_bounded_and_compacted() {
        let file = TempFile::new();
        let mut journal = Journal::open(&file.0, 4).unwrap();
        let mut previous = zone(1, "");
        for serial in 2..=9 {
            let next = zone(serial, &format!("v{serial} A 192.0.2.{serial}\n"));
            journal
                .append(Diff::between(&previous, &next).unwrap())
                .unwrap();
            previous = next;
        }
        assert!(journal.diffs().len() <= 4);
        let reopened = Journal::open(&file.0, 4).unwrap();
        assert_eq!(reopened.diffs(), journal.diffs());
        assert!(
            reopened.changes_since(1, 9).is_none(),
            "the oldest were dropped"
        );
        assert!(reopened.changes_since(7, 9).is_some());
    }

    #[test]
    fn serials_compare_in_sequence_space() {
        assert!(serial_older(1, 2));
        assert!(serial_older(u32::MAX, 1));
        assert!(!serial_older(2, 2));
    }

    #[test]
    fn the_journal_lives_next_to_the_zone_file_or_in_a_directory() {
        assert_eq!(
            Journal::path_for(Path::new("/z/db.example.org"), None),
            Path::new("/z/db.example.org.ixfr")
        );
        assert_eq!(
            Journal::path_for(Path::new("/z/db.example.org"), Some(Path::new("/j"))),
            Path::new("/j/db.example.org.ixfr")
        );
    }
}
