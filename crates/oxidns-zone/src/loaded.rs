//! Records as a zone is loaded, kept in wire form until the zone is built.
//!
//! A parsed record (`SourcedRecord`) takes 208 bytes plus heap blocks for
//! its names; in wire form with its place it takes some 60. All of a zone's
//! records are held at once while the zone is built, so this is the load's
//! peak memory (issue #8: bench/README.md, "the load's peak").

use std::sync::Arc;

use bytes::Bytes;
use domain::base::rdata::ComposeRecordData;
use domain::base::{Rtype, Ttl};
use oxidns_proto::{Class, Name, Record};

use crate::zone::{decode, decodes_to};
use crate::zonefile::SourcedRecord;

/// Where a record is: its bytes (or its index in `whole`) and its place.
#[derive(Clone, Copy)]
struct Entry {
    /// Offset in `bytes`; in `whole` when `owner_len` is 0.
    at: u32,
    line: u32,
    /// Index in `files`.
    file: u32,
    /// The owner name's wire length (1 to 255); 0 for a record kept whole.
    owner_len: u8,
}

/// A zone's records in the order they were read, each as owner name, class,
/// type, TTL, RDATA length and RDATA (uncompressed wire form, names as
/// written), with the file and line it came from.
#[derive(Default)]
pub struct LoadedRecords {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    /// Files records came from, each once per run of records from it.
    files: Vec<Arc<str>>,
    /// Records whose data would not come back from wire form as it went in:
    /// kept as they are, so that the builder reports them.
    whole: Vec<Record>,
}

impl std::fmt::Debug for LoadedRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedRecords")
            .field("records", &self.entries.len())
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Class, type, TTL and RDATA length after the owner name.
const FIXED_LEN: usize = 10;

impl LoadedRecords {
    /// Adds a record read from `file` at `line`.
    pub fn push(&mut self, record: Record, file: &Arc<str>, line: u32) -> Result<(), String> {
        if !self
            .files
            .last()
            .is_some_and(|last| Arc::ptr_eq(last, file))
        {
            self.files.push(file.clone());
        }
        let file = (self.files.len() - 1) as u32;
        let too_big = || "the zone's records take more than 4 GiB".to_owned();
        let at = self.bytes.len();
        let owner = record.owner().as_slice();
        self.bytes.extend_from_slice(owner);
        self.bytes
            .extend_from_slice(&record.class().to_int().to_be_bytes());
        self.bytes
            .extend_from_slice(&record.rtype().to_int().to_be_bytes());
        self.bytes
            .extend_from_slice(&record.ttl().as_secs().to_be_bytes());
        self.bytes.extend_from_slice(&[0, 0]);
        let rdata_at = self.bytes.len();
        // Composing into a Vec cannot fail.
        let _ = record.data().compose_rdata(&mut self.bytes);
        let rdata = &self.bytes[rdata_at..];
        let faithful = u16::try_from(rdata.len())
            .ok()
            .filter(|_| decodes_to(record.rtype(), rdata, record.data()));
        let entry = match faithful {
            Some(len) => {
                self.bytes[rdata_at - 2..rdata_at].copy_from_slice(&len.to_be_bytes());
                Entry {
                    at: u32::try_from(at).map_err(|_| too_big())?,
                    line,
                    file,
                    // A name is at most 255 octets (RFC 1035 §3.1).
                    owner_len: owner.len() as u8,
                }
            }
            None => {
                self.bytes.truncate(at);
                self.whole.push(record);
                Entry {
                    at: u32::try_from(self.whole.len() - 1).map_err(|_| too_big())?,
                    line,
                    file,
                    owner_len: 0,
                }
            }
        };
        self.entries.push(entry);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Record `index`, decoded.
    pub fn get(&self, index: usize) -> SourcedRecord {
        let entry = self.entries[index];
        let record = match self.wire(entry) {
            None => self.whole[entry.at as usize].clone(),
            Some(wire) => {
                // A copy of its own: what is kept of a record (the SOA, the
                // NSEC3 salt) must not hold every record's bytes.
                let bytes = Bytes::copy_from_slice(wire);
                let owner_len = usize::from(entry.owner_len);
                let fixed = &wire[owner_len..owner_len + FIXED_LEN];
                let class = Class::from_int(u16::from_be_bytes([fixed[0], fixed[1]]));
                let rtype = Rtype::from_int(u16::from_be_bytes([fixed[2], fixed[3]]));
                let ttl =
                    Ttl::from_secs(u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]));
                let owner = Name::from_octets(bytes.slice(..owner_len))
                    .expect("a name that was one when pushed");
                let data = decode(rtype, bytes.slice(owner_len + FIXED_LEN..))
                    .expect("data checked to decode when pushed");
                Record::new(owner, class, ttl, data)
            }
        };
        SourcedRecord {
            record,
            file: self.files[entry.file as usize].clone(),
            line: entry.line,
        }
    }

    /// Record `index`'s type, without decoding it.
    pub fn rtype(&self, index: usize) -> Rtype {
        let entry = self.entries[index];
        match self.wire(entry) {
            None => self.whole[entry.at as usize].rtype(),
            Some(wire) => {
                let at = usize::from(entry.owner_len) + 2;
                Rtype::from_int(u16::from_be_bytes([wire[at], wire[at + 1]]))
            }
        }
    }

    /// Record `index`'s owner name, without decoding its data.
    pub fn owner(&self, index: usize) -> Name {
        let entry = self.entries[index];
        match self.wire(entry) {
            None => self.whole[entry.at as usize].owner().clone(),
            Some(wire) => Name::from_octets(Bytes::copy_from_slice(
                &wire[..usize::from(entry.owner_len)],
            ))
            .expect("a name that was one when pushed"),
        }
    }

    /// Record `index`'s class, without decoding it.
    pub fn class(&self, index: usize) -> Class {
        let entry = self.entries[index];
        match self.wire(entry) {
            None => self.whole[entry.at as usize].class(),
            Some(wire) => {
                let at = usize::from(entry.owner_len);
                Class::from_int(u16::from_be_bytes([wire[at], wire[at + 1]]))
            }
        }
    }

    /// The file and line record `index` was read from.
    pub fn place(&self, index: usize) -> (&Arc<str>, u32) {
        let entry = self.entries[index];
        (&self.files[entry.file as usize], entry.line)
    }

    /// The file the first record was read from.
    pub fn first_file(&self) -> Option<&Arc<str>> {
        self.files.first()
    }

    /// Records parsed elsewhere (a transfer, an update, a test).
    pub fn from_records(records: Vec<SourcedRecord>) -> Result<LoadedRecords, String> {
        let mut loaded = LoadedRecords::default();
        for placed in records {
            loaded.push(placed.record, &placed.file, placed.line)?;
        }
        Ok(loaded)
    }

    /// Every record, decoded.
    pub fn iter(&self) -> impl Iterator<Item = SourcedRecord> + '_ {
        (0..self.len()).map(|index| self.get(index))
    }

    /// A record's wire form, or `None` for one kept whole.
    fn wire(&self, entry: Entry) -> Option<&[u8]> {
        if entry.owner_len == 0 {
            return None;
        }
        let at = entry.at as usize;
        let rdlen_at = at + usize::from(entry.owner_len) + FIXED_LEN - 2;
        let rdlen = usize::from(u16::from_be_bytes([
            self.bytes[rdlen_at],
            self.bytes[rdlen_at + 1],
        ]));
        Some(&self.bytes[at..rdlen_at + 2 + rdlen])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zonefile::parse_zone_text;
    use oxidns_proto::name_from_str;

    const ZONE: &str = "$TTL 300\n\
        @ IN SOA ns1 host. 1 7200 3600 1209600 300\n\
        @ NS ns1\n\
        Ns1 A 192.0.2.1\n\
        www 60 AAAA 2001:db8::1\n\
        txt TXT \"a b\" \"c\"\n\
        srv SRV 10 20 53 Ns1.Example.ORG.\n\
        * MX 10 mail\n\
        svc HTTPS 1 . alpn=h2,h3 port=8443\n\
        gen TYPE65280 \\# 3 010203\n";

    #[test]
    fn records_come_back_as_they_went_in_with_their_places() {
        let apex = name_from_str("example.org").unwrap();
        let parsed = parse_zone_text(ZONE, "db.example", &apex).unwrap();
        let loaded = LoadedRecords::from_records(parsed.clone()).unwrap();
        assert_eq!(loaded.len(), parsed.len());
        for (index, original) in parsed.iter().enumerate() {
            let back = loaded.get(index);
            assert_eq!(back.record, original.record);
            assert_eq!(back.record.ttl(), original.record.ttl());
            // Case as written: the store keeps names as the file has them.
            assert_eq!(
                back.record.owner().as_slice(),
                original.record.owner().as_slice()
            );
            assert_eq!(back.record.data(), original.record.data());
            assert_eq!((&*back.file, back.line), (&*original.file, original.line));
            assert_eq!(loaded.rtype(index), original.record.rtype());
            assert_eq!(loaded.class(index), original.record.class());
            assert_eq!(&loaded.owner(index), original.record.owner());
        }
    }

    #[test]
    fn one_file_is_kept_once_per_run_of_its_records() {
        let apex = name_from_str("example.org").unwrap();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let record = parse_zone_text("www A 192.0.2.1\n", "x", &apex).unwrap()[0]
            .record
            .clone();
        let mut loaded = LoadedRecords::default();
        for (file, line) in [(&a, 1), (&a, 2), (&b, 1), (&a, 3)] {
            loaded.push(record.clone(), file, line).unwrap();
        }
        assert_eq!(loaded.files.len(), 3);
        assert_eq!(loaded.place(3), (&a, 3));
        assert_eq!(loaded.first_file(), Some(&a));
    }
}
