//! Reading zone files into records that remember where they were written.
//!
//! The text format is the master-file format of RFC 1035 §5 (§5.1 entries,
//! `$ORIGIN`, `$INCLUDE`, `@`, relative names, omitted owner, TTL and class,
//! parentheses, comments, `\X` and `\DDD` escapes), `$TTL` from RFC 2308 §4,
//! and the generic form `\# <length> <hex>` of RFC 3597 §5 for any type.
//! The parsing itself is done by the `domain` crate; this module adds what it
//! lacks or gets in the way of good diagnostics:
//!
//! - a line number for every record and every error (and the file name, so
//!   that errors in `$INCLUDE`d files point at the right file);
//! - `$INCLUDE` (relative to the including file's folder, with a depth bound
//!   and cycle detection);
//! - BIND's `$GENERATE` extension, expanded here into ordinary record lines
//!   before they reach `domain` (every generated record reports the line of
//!   its `$GENERATE`);
//! - BIND's TTL units (`1h30m`, `2d`, `1w`) in `$TTL`, record TTLs and the
//!   SOA timers, rewritten into seconds before they reach `domain`;
//! - known types written in the RFC 3597 form (`A \# 4 0a000001`) are decoded
//!   into their typed data, as RFC 3597 §5 asks.
//!
//! Checks that need the whole zone (out-of-zone data, SOA and NS at the apex,
//! CNAME next to other data) belong to the zone builder, not here.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use domain::base::iana::{Class, Rtype};
use domain::base::name::FlattenInto;
use domain::base::{ParseRecordData, ParsedName};
use domain::dep::octseq::Parser;
use domain::rdata::ZoneRecordData;
use domain::zonefile::inplace::{Entry, ScannedRecord, Zonefile};
use oxidns_proto::{Name, Record, RecordData};

pub use crate::loaded::LoadedRecords;

/// How deep `$INCLUDE` may nest (the top file is depth 0).
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// The most records a single `$GENERATE` may create.
pub const MAX_GENERATED_RECORDS: u64 = 1_000_000;
/// The widest `${offset,width,base}` field accepted in a `$GENERATE` template.
const MAX_GENERATE_WIDTH: usize = 255;

/// A record with where it was written.
#[derive(Clone, Debug)]
pub struct SourcedRecord {
    /// The record, with absolute owner and names.
    pub record: Record,
    /// The file it was read from (as given or as resolved for `$INCLUDE`).
    pub file: Arc<str>,
    /// The line its entry starts on (1-based); for records made by
    /// `$GENERATE`, the line of the `$GENERATE`.
    pub line: u32,
}

/// A zone file that could not be read: `file:line: reason`.
///
/// `line` is 0 when the problem concerns the whole file (it cannot be read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneFileError {
    /// The file the error is in.
    pub file: String,
    /// The line of the offending entry (1-based).
    pub line: u32,
    /// What is wrong, for people.
    pub message: String,
}

impl fmt::Display for ZoneFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for ZoneFileError {}

/// Reads a zone file (following `$INCLUDE`, relative to the including file's
/// folder, at most [`MAX_INCLUDE_DEPTH`] deep) with `origin` as the initial
/// `$ORIGIN`.
pub fn load_zone_file(path: &Path, origin: &Name) -> Result<LoadedRecords, ZoneFileError> {
    load_into(path, origin)
}

fn load_into<R: RecordSink>(path: &Path, origin: &Name) -> Result<R, ZoneFileError> {
    let file: Arc<str> = Arc::from(path.display().to_string());
    let whole_file_error = |e: std::io::Error| ZoneFileError {
        file: file.to_string(),
        line: 0,
        message: format!("cannot read zone file: {e}"),
    };
    let text = std::fs::read(path).map_err(whole_file_error)?;
    let mut loader = Loader::<R>::default();
    if let Ok(canonical) = std::fs::canonicalize(path) {
        loader.stack.push(canonical);
    }
    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    loader.load(&text, &file, &dir, origin.clone())?;
    Ok(loader.records)
}

/// What a zone file holds, in brief: its records counted and hashed in
/// the order they come ([`RecordDigest::add`]). A zone written out and this
/// of the file read back tell whether the file reads back as written
/// without building a second zone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordDigest {
    records: u64,
    hash: u64,
}

impl RecordDigest {
    /// Adds a record: owner as written, type, class, TTL and RDATA in wire
    /// form (names in the data uncompressed).
    pub fn add(&mut self, record: &Record) {
        use domain::base::rdata::ComposeRecordData;
        use std::hash::{Hash, Hasher};
        // Unkeyed: the digests compared are made by the same process.
        let mut hasher = std::hash::DefaultHasher::new();
        self.hash.hash(&mut hasher);
        record.owner().as_slice().hash(&mut hasher);
        record.rtype().to_int().hash(&mut hasher);
        record.class().to_int().hash(&mut hasher);
        record.ttl().as_secs().hash(&mut hasher);
        let mut data = Vec::new();
        let _ = record.data().compose_rdata(&mut data);
        data.hash(&mut hasher);
        self.hash = hasher.finish();
        self.records += 1;
    }

    /// Records added.
    pub fn records(&self) -> u64 {
        self.records
    }
}

impl RecordSink for RecordDigest {
    fn push(&mut self, record: Record, _: &Arc<str>, _: u32) -> Result<(), String> {
        self.add(&record);
        Ok(())
    }
}

/// The [`RecordDigest`] of a zone file, read as [`load_zone_file`] reads it.
pub fn digest_zone_file(path: &Path, origin: &Name) -> Result<RecordDigest, ZoneFileError> {
    load_into(path, origin)
}

/// Reads zone-file text (for tests and inline zones); `file_name` is used in
/// records and errors, and `$INCLUDE` is relative to the current directory.
pub fn parse_zone_text(
    text: &str,
    file_name: &str,
    origin: &Name,
) -> Result<Vec<SourcedRecord>, ZoneFileError> {
    // Parsed as they are: these records are used one by one (a template's
    // record per query), not held for a zone build.
    let mut loader = Loader::<Vec<SourcedRecord>>::default();
    loader.load(
        text.as_bytes(),
        &Arc::from(file_name),
        Path::new(""),
        origin.clone(),
    )?;
    Ok(loader.records)
}

//------------ Loading -------------------------------------------------------

#[derive(Default)]
struct Loader<R> {
    records: R,
    /// Canonical paths of the files being read, outermost first.
    stack: Vec<PathBuf>,
}

/// Where a [`Loader`] puts the records it reads: parsed, or in wire form
/// for a zone build ([`LoadedRecords`]).
trait RecordSink: Default {
    fn push(&mut self, record: Record, file: &Arc<str>, line: u32) -> Result<(), String>;
}

impl RecordSink for Vec<SourcedRecord> {
    fn push(&mut self, record: Record, file: &Arc<str>, line: u32) -> Result<(), String> {
        Vec::push(
            self,
            SourcedRecord {
                record,
                file: file.clone(),
                line,
            },
        );
        Ok(())
    }
}

impl RecordSink for LoadedRecords {
    fn push(&mut self, record: Record, file: &Arc<str>, line: u32) -> Result<(), String> {
        LoadedRecords::push(self, record, file, line)
    }
}

/// Where `domain` stands in the text it was fed.
struct Feed {
    zonefile: Zonefile,
    /// Line feeds handed to `domain` so far (its line numbers count them).
    lines: usize,
}

impl Feed {
    /// Hands `chunk` (whole lines) to `domain`; returns the line number
    /// `domain` gives to the chunk's first line.
    fn push(&mut self, chunk: &[u8]) -> usize {
        self.zonefile.extend_from_slice(chunk);
        let first = self.lines + 1;
        self.lines += count_line_feeds(chunk);
        first
    }
}

impl<R: RecordSink> Loader<R> {
    /// Reads one file's text with `origin` as its initial origin.
    fn load(
        &mut self,
        text: &[u8],
        file: &Arc<str>,
        dir: &Path,
        origin: Name,
    ) -> Result<(), ZoneFileError> {
        let error = |line: u32, message: String| ZoneFileError {
            file: file.to_string(),
            line,
            message,
        };
        let text: Cow<'_, [u8]> = if text.is_empty() || text.ends_with(b"\n") {
            Cow::Borrowed(text)
        } else {
            let mut owned = text.to_vec();
            owned.push(b'\n');
            Cow::Owned(owned)
        };
        let text = &*text;

        let mut zonefile = Zonefile::new();
        zonefile.set_origin(origin);
        zonefile.set_default_class(Class::IN);
        let mut feed = Feed { zonefile, lines: 0 };
        let mut done = 0;
        for entry in EntrySplitter::new(text) {
            let entry = &entry.map_err(|(line, message)| error(line, message))?;
            // Blank and comment-only lines before the entry.
            feed.push(&text[done..entry.line_start]);
            done = entry.end;
            let current_origin = feed.zonefile.origin().ok();
            let prepared = prepare(entry, text, current_origin.as_ref())
                .map_err(|(line, message)| error(line, message))?;
            match prepared {
                Prepared::Text(chunk) => {
                    let first = feed.push(&chunk);
                    self.drain(&mut feed, file, dir, entry, &chunk, first)?;
                }
                Prepared::Generate(generate) => {
                    let mut line = Vec::new();
                    let mut value = u64::from(generate.start);
                    while value <= u64::from(generate.stop) {
                        line.clear();
                        let at_value = |message: String| {
                            error(
                                entry.first_line,
                                format!("$GENERATE value {value}: {message}"),
                            )
                        };
                        generate.write_line(value, &mut line).map_err(at_value)?;
                        let first = feed.push(&line);
                        loop {
                            match feed.zonefile.next_entry() {
                                Ok(None) => break,
                                Ok(Some(Entry::Record(record))) => {
                                    let record = to_record(record).map_err(at_value)?;
                                    self.records
                                        .push(record, file, entry.first_line)
                                        .map_err(at_value)?;
                                }
                                Ok(Some(Entry::Include { .. })) => {
                                    return Err(at_value("unexpected $INCLUDE".into()));
                                }
                                Err(e) => {
                                    let (_, message) = describe_error(&e, &line, first);
                                    return Err(at_value(message));
                                }
                            }
                        }
                        value += u64::from(generate.step);
                    }
                }
            }
        }
        feed.push(&text[done..]);
        match feed.zonefile.next_entry() {
            Ok(None) => Ok(()),
            Ok(Some(_)) | Err(_) => {
                let line = u32::try_from(count_line_feeds(&text[..done]) + 1).unwrap_or(u32::MAX);
                Err(error(line, "unexpected data at the end of the file".into()))
            }
        }
    }

    /// Takes from `domain` the entries of one fed chunk.
    fn drain(
        &mut self,
        feed: &mut Feed,
        file: &Arc<str>,
        dir: &Path,
        entry: &RawEntry,
        chunk: &[u8],
        first: usize,
    ) -> Result<(), ZoneFileError> {
        let error = |line: u32, message: String| ZoneFileError {
            file: file.to_string(),
            line,
            message,
        };
        loop {
            match feed.zonefile.next_entry() {
                Ok(None) => return Ok(()),
                Ok(Some(Entry::Record(record))) => {
                    let record = to_record(record).map_err(|m| error(entry.first_line, m))?;
                    self.records
                        .push(record, file, entry.first_line)
                        .map_err(|m| error(entry.first_line, m))?;
                }
                Ok(Some(Entry::Include { path, origin })) => {
                    let origin = match origin {
                        Some(origin) => origin,
                        None => feed
                            .zonefile
                            .origin()
                            .map_err(|e| error(entry.first_line, e.to_string()))?,
                    };
                    self.include(path.as_str(), origin, file, dir, entry.first_line)?;
                }
                Err(e) => {
                    let (offset, message) = describe_error(&e, chunk, first);
                    let line = (entry.first_line as usize + offset).min(entry.last_line as usize);
                    return Err(error(line as u32, message));
                }
            }
        }
    }

    /// Reads an `$INCLUDE`d file.
    fn include(
        &mut self,
        path: &str,
        origin: Name,
        file: &Arc<str>,
        dir: &Path,
        line: u32,
    ) -> Result<(), ZoneFileError> {
        let error = |message: String| ZoneFileError {
            file: file.to_string(),
            line,
            message,
        };
        let full = dir.join(path);
        if self.stack.len() > MAX_INCLUDE_DEPTH {
            return Err(error(format!(
                "$INCLUDE of '{}' nests more than {MAX_INCLUDE_DEPTH} files deep",
                full.display()
            )));
        }
        let canonical = std::fs::canonicalize(&full).map_err(|e| {
            error(format!(
                "cannot read included file '{}': {e}",
                full.display()
            ))
        })?;
        if self.stack.contains(&canonical) {
            return Err(error(format!(
                "$INCLUDE cycle: '{}' is already being read",
                full.display()
            )));
        }
        let text = std::fs::read(&canonical).map_err(|e| {
            error(format!(
                "cannot read included file '{}': {e}",
                full.display()
            ))
        })?;
        let included: Arc<str> = Arc::from(full.display().to_string());
        let included_dir = full.parent().unwrap_or(Path::new("")).to_path_buf();
        self.stack.push(canonical);
        let result = self.load(&text, &included, &included_dir, origin);
        self.stack.pop();
        result
    }
}

/// Converts a record as scanned into the owned record type; decodes known
/// types given in the RFC 3597 generic form.
fn to_record(scanned: ScannedRecord) -> Result<Record, String> {
    let record: Record = scanned
        .try_flatten_into()
        .map_err(|_| "domain name too long".to_owned())?;
    let ZoneRecordData::Unknown(unknown) = record.data() else {
        return Ok(record);
    };
    let rtype = unknown.rtype();
    let wire = unknown.data().clone();
    let mut parser = Parser::from_ref(&wire);
    match ZoneRecordData::<Bytes, ParsedName<Bytes>>::parse_rdata(rtype, &mut parser) {
        Ok(None) | Ok(Some(ZoneRecordData::Unknown(_))) => Ok(record),
        Ok(Some(data)) if parser.remaining() == 0 => {
            let data: RecordData = data.flatten_into();
            Ok(Record::new(
                record.owner().clone(),
                record.class(),
                record.ttl(),
                data,
            ))
        }
        Ok(Some(_)) | Err(_) => Err(format!(
            "bad RFC 3597 data for {rtype}: not valid {rtype} record data"
        )),
    }
}

//------------ Errors from domain --------------------------------------------

/// Makes a readable message from `domain`'s error for `chunk`, whose first
/// line `domain` numbers `first`. Returns the error's line as an offset into
/// the chunk, and the message.
fn describe_error(
    error: &domain::zonefile::inplace::Error,
    chunk: &[u8],
    first: usize,
) -> (usize, String) {
    // domain's Error shows as "line:col: message" and offers nothing else.
    let text = error.to_string();
    let mut parts = text.splitn(3, ':');
    let line = parts.next().and_then(|s| s.trim().parse::<usize>().ok());
    let col = parts.next().and_then(|s| s.trim().parse::<usize>().ok());
    let (Some(line), Some(col), Some(message)) = (line, col, parts.next()) else {
        return (0, text);
    };
    let message = message.trim();
    let offset = line.saturating_sub(first);

    let readable = match message {
        "unexpected end of entry" => "the record data ends too early".to_owned(),
        "trailing tokens" => "unexpected data after the end of the record".to_owned(),
        "short buffer" => "unexpected end of the file".to_owned(),
        "unbalanced parens" => "unbalanced parentheses".to_owned(),
        "missing last owner" => {
            return (
                offset,
                "no owner name and no previous record to take it from".into(),
            );
        }
        "unknown record type with concrete data" => {
            return (offset, unsupported_type_message(chunk));
        }
        m if m.starts_with("different class: ") => {
            let classes = &m["different class: ".len()..];
            let found = classes.split(" != ").next().unwrap_or(classes);
            return (
                offset,
                format!("class {found} differs from the zone's class IN"),
            );
        }
        m => m.to_owned(),
    };

    // Find which part of the entry the error is in.
    let position = position_of(chunk, offset, col);
    let Ok(entries) = split_entries(chunk) else {
        return (offset, readable);
    };
    let Some(entry) = entries.first() else {
        return (offset, readable);
    };
    let first_token = entry.tokens[0].content(chunk);
    if !entry.indented && first_token.starts_with('$') {
        return (
            offset,
            format!("bad {} directive: {readable}", first_token.to_uppercase()),
        );
    }
    let Ok(shape) = record_shape(entry, chunk) else {
        return (offset, readable);
    };
    if position >= entry.tokens[shape.type_index].end {
        return (
            offset,
            format!("bad record data for {}: {readable}", shape.rtype),
        );
    }
    if let Some(owner) = shape.owner {
        let owner = entry.tokens[owner];
        if position <= owner.end {
            return (
                offset,
                format!("bad owner name '{}': {readable}", owner.content(chunk)),
            );
        }
    }
    (offset, readable)
}

/// The message for a type `domain` knows by name but cannot read as text.
fn unsupported_type_message(chunk: &[u8]) -> String {
    let rtype = split_entries(chunk)
        .ok()
        .and_then(|entries| {
            let entry = entries.first()?;
            let shape = record_shape(entry, chunk).ok()?;
            Some(shape.rtype.to_string())
        })
        .unwrap_or_else(|| "this type".to_owned());
    format!(
        "record type {rtype} cannot be read in its text form; \
         write it in the RFC 3597 form (\\# length hex)"
    )
}

/// The byte position in `chunk` of line `offset` (0-based), column `col`
/// (1-based).
fn position_of(chunk: &[u8], offset: usize, col: usize) -> usize {
    let mut start = 0;
    for _ in 0..offset {
        match chunk[start..].iter().position(|&b| b == b'\n') {
            Some(i) => start += i + 1,
            None => return chunk.len(),
        }
    }
    start + col.saturating_sub(1)
}

fn count_line_feeds(text: &[u8]) -> usize {
    text.iter().filter(|&&b| b == b'\n').count()
}

//------------ Entries -------------------------------------------------------

/// One entry of the text: a record or a directive, possibly spanning lines
/// in parentheses.
#[derive(Clone, Debug)]
struct RawEntry {
    /// Where the entry's first line starts.
    line_start: usize,
    /// Just past the line feed that ends the entry.
    end: usize,
    first_line: u32,
    last_line: u32,
    /// Whether the first line starts with white space (no owner).
    indented: bool,
    tokens: Vec<Token>,
}

impl RawEntry {
    /// Adds the next token. A quoted string must be set apart from the
    /// tokens beside it by white space or a parenthesis (RFC 1035 §5.1:
    /// items are separated by blanks): `"a"b` is refused rather than read
    /// as two items (`domain` 0.12.3 panics on a name glued to a quoted
    /// string, found by fuzzing: `$INCLUDE"@I"A`).
    fn push_token(&mut self, token: Token) -> Result<(), (u32, String)> {
        if let Some(previous) = self.tokens.last()
            && previous.end == token.start
            && (previous.quoted || token.quoted)
        {
            return Err((
                token.line,
                "a quoted string must be separated from the text beside it by white space".into(),
            ));
        }
        self.tokens.push(token);
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
struct Token {
    /// The token's bytes, quotes included.
    start: usize,
    end: usize,
    line: u32,
    quoted: bool,
}

impl Token {
    /// The token as written, quotes included.
    fn raw<'a>(&self, text: &'a [u8]) -> Cow<'a, str> {
        String::from_utf8_lossy(&text[self.start..self.end])
    }

    /// The token without its quotes (escapes left as written).
    fn content<'a>(&self, text: &'a [u8]) -> Cow<'a, str> {
        if self.quoted {
            let end = if self.end - self.start >= 2 {
                self.end - 1
            } else {
                self.end
            };
            String::from_utf8_lossy(&text[self.start + 1..end])
        } else {
            self.raw(text)
        }
    }
}

/// Splits text (ending in a line feed) into entries the way `domain` does:
/// line feeds end an entry outside parentheses and quotes, `;` starts a
/// comment outside quotes, `\` escapes the next character.
fn split_entries(text: &[u8]) -> Result<Vec<RawEntry>, (u32, String)> {
    EntrySplitter::new(text).collect()
}

/// [`split_entries`] one entry at a time, as a load consumes them: a big
/// zone's tokens are never all held at once (they took some 260 bytes a
/// record). An error ends it.
struct EntrySplitter<'t> {
    text: &'t [u8],
    i: usize,
    line: u32,
    line_start: usize,
    parens: usize,
    paren_line: u32,
    current: Option<RawEntry>,
    done: bool,
}

impl<'t> EntrySplitter<'t> {
    fn new(text: &'t [u8]) -> Self {
        EntrySplitter {
            text,
            i: 0,
            line: 1,
            line_start: 0,
            parens: 0,
            paren_line: 0,
            current: None,
            done: false,
        }
    }

    /// Starts an entry at the current line unless one is open.
    fn begin(&mut self) {
        if self.current.is_none() {
            self.current = Some(RawEntry {
                line_start: self.line_start,
                end: self.line_start,
                first_line: self.line,
                last_line: self.line,
                indented: matches!(self.text.get(self.line_start), Some(b' ' | b'\t' | b'\r')),
                tokens: Vec::new(),
            });
        }
    }

    /// The next entry with tokens (an entry of nothing but parentheses is
    /// passed over: its text is fed as part of the next one's prefix).
    fn next_entry(&mut self) -> Result<Option<RawEntry>, (u32, String)> {
        let text = self.text;
        while self.i < text.len() {
            match text[self.i] {
                b'\n' => {
                    self.i += 1;
                    if self.parens == 0
                        && let Some(mut entry) = self.current.take()
                    {
                        entry.end = self.i;
                        entry.last_line = self.line;
                        self.line += 1;
                        self.line_start = self.i;
                        if !entry.tokens.is_empty() {
                            return Ok(Some(entry));
                        }
                        continue;
                    }
                    self.line += 1;
                    self.line_start = self.i;
                }
                b' ' | b'\t' | b'\r' => self.i += 1,
                b';' => {
                    while self.i < text.len() && text[self.i] != b'\n' {
                        self.i += 1;
                    }
                }
                b'(' => {
                    self.begin();
                    if self.parens == 0 {
                        self.paren_line = self.line;
                    }
                    self.parens += 1;
                    self.i += 1;
                }
                b')' => {
                    if self.parens == 0 {
                        return Err((self.line, "')' without a matching '('".into()));
                    }
                    self.parens -= 1;
                    self.i += 1;
                }
                b'"' => {
                    self.begin();
                    let (start, token_line) = (self.i, self.line);
                    self.i += 1;
                    loop {
                        match text.get(self.i) {
                            None => {
                                return Err((token_line, "quoted string is never closed".into()));
                            }
                            Some(b'\\') => {
                                if text.get(self.i + 1) == Some(&b'\n') {
                                    self.line += 1;
                                }
                                self.i += 2;
                            }
                            Some(b'"') => {
                                self.i += 1;
                                break;
                            }
                            Some(b'\n') => {
                                return Err((
                                    token_line,
                                    "quoted string runs past the end of the line".into(),
                                ));
                            }
                            Some(_) => self.i += 1,
                        }
                    }
                    let end = self.i.min(text.len());
                    if let Some(entry) = self.current.as_mut() {
                        entry.push_token(Token {
                            start,
                            end,
                            line: token_line,
                            quoted: true,
                        })?;
                    }
                }
                _ => {
                    self.begin();
                    let (start, token_line) = (self.i, self.line);
                    while self.i < text.len() {
                        match text[self.i] {
                            b' ' | b'\t' | b'\r' | b'\n' | b'(' | b')' | b';' | b'"' => break,
                            b'\\' => {
                                if text.get(self.i + 1) == Some(&b'\n') {
                                    self.line += 1;
                                }
                                self.i += 2;
                            }
                            _ => self.i += 1,
                        }
                    }
                    let end = self.i.min(text.len());
                    self.i = end;
                    if let Some(entry) = self.current.as_mut() {
                        entry.push_token(Token {
                            start,
                            end,
                            line: token_line,
                            quoted: false,
                        })?;
                    }
                }
            }
        }
        if self.parens > 0 {
            return Err((self.paren_line, "'(' is never closed".into()));
        }
        Ok(self.current.take().and_then(|mut entry| {
            entry.end = text.len();
            entry.last_line = self.line;
            (!entry.tokens.is_empty()).then_some(entry)
        }))
    }
}

impl Iterator for EntrySplitter<'_> {
    type Item = Result<RawEntry, (u32, String)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_entry().transpose();
        if !matches!(next, Some(Ok(_))) {
            self.done = true;
        }
        next
    }
}

/// Where the parts of a record entry are.
struct RecordShape {
    owner: Option<usize>,
    /// Tokens before the type that are TTLs.
    ttls: Vec<usize>,
    type_index: usize,
    rtype: Rtype,
}

/// Finds owner, TTL, class and type in a record entry, in the order
/// `domain` tries them (`[ttl] [class] type` or `[class] [ttl] type`).
fn record_shape(entry: &RawEntry, text: &[u8]) -> Result<RecordShape, (u32, String)> {
    let owner = if entry.indented { None } else { Some(0) };
    let mut index = usize::from(!entry.indented);
    let mut ttls = Vec::new();
    for _ in 0..3 {
        let Some(token) = entry.tokens.get(index) else {
            let line = entry.tokens.last().map_or(entry.first_line, |t| t.line);
            return Err((line, "the record has no type".into()));
        };
        let word = token.content(text);
        if word.starts_with(|c: char| c.is_ascii_digit()) {
            ttls.push(index);
        } else if let Ok(rtype) = Rtype::from_str(&word) {
            return Ok(RecordShape {
                owner,
                ttls,
                type_index: index,
                rtype,
            });
        } else if Class::from_str(&word).is_err() {
            return Err((token.line, format!("unknown record type '{word}'")));
        }
        index += 1;
    }
    let token = entry.tokens[index - 1];
    Err((
        token.line,
        format!("expected a record type, found '{}'", token.content(text)),
    ))
}

/// Parses a TTL in seconds or with BIND's units (`1w2d3h4m5s`).
fn parse_ttl(text: &str) -> Option<u32> {
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            let n = number.unwrap_or(0) * 10 + u64::from(digit);
            if n > u64::from(u32::MAX) {
                return None;
            }
            number = Some(n);
        } else {
            let unit = match c.to_ascii_lowercase() {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 604_800,
                _ => return None,
            };
            total += number.take()? * unit;
            if total > u64::from(u32::MAX) {
                return None;
            }
        }
    }
    total += number.unwrap_or(0);
    u32::try_from(total).ok()
}

/// What to hand to `domain` for one entry.
enum Prepared<'a> {
    /// The entry's lines, possibly with TTLs rewritten into seconds.
    Text(Cow<'a, [u8]>),
    /// A `$GENERATE`, expanded one record at a time.
    Generate(Generate),
}

/// Checks an entry for what `domain` would report badly and rewrites what it
/// does not understand (TTL units); expands `$GENERATE`.
fn prepare<'a>(
    entry: &RawEntry,
    text: &'a [u8],
    origin: Option<&Name>,
) -> Result<Prepared<'a>, (u32, String)> {
    let lines = &text[entry.line_start..entry.end];
    let first = entry.tokens[0].content(text);
    let mut rewrites: Vec<(Token, String)> = Vec::new();
    if !entry.indented && first.starts_with('$') {
        let directive = first.to_ascii_uppercase();
        match directive.as_str() {
            "$GENERATE" => return Generate::parse(entry, text).map(Prepared::Generate),
            "$TTL" => {
                if let Some(&token) = entry.tokens.get(1) {
                    let value = token.content(text);
                    match parse_ttl(&value) {
                        Some(seconds) => rewrites.push((token, seconds.to_string())),
                        None => return Err((token.line, format!("bad $TTL value '{value}'"))),
                    }
                }
            }
            "$ORIGIN" | "$INCLUDE" => {}
            _ => return Err((entry.first_line, format!("unknown directive '{first}'"))),
        }
    } else {
        let shape = record_shape(entry, text)?;
        for &index in &shape.ttls {
            let token = entry.tokens[index];
            let value = token.content(text);
            match parse_ttl(&value) {
                Some(seconds) => rewrites.push((token, seconds.to_string())),
                None => return Err((token.line, format!("bad TTL '{value}'"))),
            }
        }
        // `@` for the origin in record data (RFC 1035 §5.1), which `domain`
        // only knows as an owner; not in types whose data is text.
        let text_types = [Rtype::TXT, Rtype::SPF, Rtype::HINFO, Rtype::CAA];
        let generic = entry
            .tokens
            .get(shape.type_index + 1)
            .is_some_and(|t| !t.quoted && t.content(text) == "\\#");
        if let Some(origin) = origin.filter(|_| !generic && !text_types.contains(&shape.rtype)) {
            for &token in &entry.tokens[shape.type_index + 1..] {
                if !token.quoted && token.content(text) == "@" {
                    rewrites.push((token, oxidns_proto::name_text(origin)));
                }
            }
        }
        if shape.rtype == Rtype::SOA {
            // mname rname serial refresh retry expire minimum
            let names = ["refresh", "retry", "expire", "minimum"];
            for (n, name) in names.iter().enumerate() {
                let Some(&token) = entry.tokens.get(shape.type_index + 4 + n) else {
                    break;
                };
                let value = token.content(text);
                if value.starts_with(|c: char| c.is_ascii_digit()) {
                    match parse_ttl(&value) {
                        Some(seconds) => rewrites.push((token, seconds.to_string())),
                        None => {
                            return Err((token.line, format!("bad SOA {name} '{value}'")));
                        }
                    }
                }
            }
        }
    }
    rewrites.retain(|(token, new)| token.content(text) != new.as_str());
    if rewrites.is_empty() {
        return Ok(Prepared::Text(Cow::Borrowed(lines)));
    }
    rewrites.sort_by_key(|(token, _)| token.start);
    let mut out = Vec::with_capacity(lines.len());
    let mut at = entry.line_start;
    for (token, new) in rewrites {
        out.extend_from_slice(&text[at..token.start]);
        out.extend_from_slice(new.as_bytes());
        at = token.end;
    }
    out.extend_from_slice(&text[at..entry.end]);
    Ok(Prepared::Text(Cow::Owned(out)))
}

//------------ $GENERATE -----------------------------------------------------

/// A parsed `$GENERATE range owner [ttl] [class] type rdata`.
#[derive(Debug)]
struct Generate {
    start: u32,
    stop: u32,
    step: u32,
    owner: Vec<Part>,
    /// TTL (in seconds), class and type, as written.
    middle: String,
    rdata: Vec<Part>,
}

/// A piece of a `$GENERATE` template.
#[derive(Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Value {
        offset: i64,
        width: usize,
        base: char,
    },
}

impl Generate {
    fn parse(entry: &RawEntry, text: &[u8]) -> Result<Self, (u32, String)> {
        let line = entry.first_line;
        let tokens = &entry.tokens;
        let usage = "expected '$GENERATE start-stop[/step] owner [ttl] [class] type rdata'";
        let (Some(range), Some(owner)) = (tokens.get(1), tokens.get(2)) else {
            return Err((line, usage.into()));
        };
        let range = range.content(text);
        let (start, stop, step) =
            parse_range(&range).ok_or_else(|| (line, format!("bad $GENERATE range '{range}'")))?;
        let count = u64::from(stop - start) / u64::from(step) + 1;
        if count > MAX_GENERATED_RECORDS {
            return Err((
                line,
                format!(
                    "$GENERATE would create {count} records, more than the limit of \
                     {MAX_GENERATED_RECORDS}"
                ),
            ));
        }

        // [ttl] [class] type, as for records.
        let mut middle = Vec::new();
        let mut index = 3;
        loop {
            let Some(token) = tokens.get(index) else {
                return Err((line, usage.into()));
            };
            let word = token.content(text);
            index += 1;
            if word.starts_with(|c: char| c.is_ascii_digit()) {
                let ttl = parse_ttl(&word).ok_or_else(|| (line, format!("bad TTL '{word}'")))?;
                middle.push(ttl.to_string());
            } else if Rtype::from_str(&word).is_ok() {
                middle.push(word.into_owned());
                break;
            } else if Class::from_str(&word).is_ok() {
                middle.push(word.into_owned());
            } else {
                return Err((line, format!("unknown record type '{word}'")));
            }
            if middle.len() > 3 {
                return Err((line, usage.into()));
            }
        }
        let rdata = match &tokens[index..] {
            [] => return Err((line, usage.into())),
            // A quoted rdata stands for its content (BIND: quotes allow spaces).
            [single] if single.quoted => single.content(text).into_owned(),
            many => {
                let raw: Vec<_> = many.iter().map(|t| t.raw(text)).collect();
                raw.join(" ")
            }
        };
        let template = |t: &str| parse_template(t).map_err(|m| (line, m));
        let generate = Generate {
            start,
            stop,
            step,
            owner: template(&owner.content(text))?,
            middle: middle.join(" "),
            rdata: template(&rdata)?,
        };
        // Values put in are digits, letters and dots, which never change how
        // a line splits, so the first line shows the shape of them all. A
        // template that leaves a parenthesis or a quote open, or glues a
        // quote to other text, must not reach `domain` (0.12.3 panicked on
        // `$GENERATE 1-2 4 TXT "a("`, found by fuzzing).
        let mut first = Vec::new();
        generate
            .write_line(u64::from(start), &mut first)
            .map_err(|m| (line, m))?;
        match split_entries(&first) {
            Ok(entries) if entries.len() == 1 => Ok(generate),
            Ok(_) => Err((line, "the template does not make one record line".into())),
            Err((_, reason)) => Err((
                line,
                format!("the template makes a bad record line: {reason}"),
            )),
        }
    }

    /// Writes the record line for iterator value `value`.
    fn write_line(&self, value: u64, out: &mut Vec<u8>) -> Result<(), String> {
        let before = out.len();
        expand(&self.owner, value, out)?;
        if out.len() == before {
            return Err("the owner name is empty".into());
        }
        out.push(b' ');
        out.extend_from_slice(self.middle.as_bytes());
        out.push(b' ');
        expand(&self.rdata, value, out)?;
        out.push(b'\n');
        Ok(())
    }
}

/// Parses `start-stop` or `start-stop/step` (each 0 to 2^31-1, start ≤ stop,
/// step ≥ 1).
fn parse_range(text: &str) -> Option<(u32, u32, u32)> {
    let number = |s: &str| -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u32>().ok().filter(|&n| n <= i32::MAX as u32)
    };
    let (range, step) = match text.split_once('/') {
        Some((range, step)) => (range, number(step)?),
        None => (text, 1),
    };
    let (start, stop) = range.split_once('-')?;
    let (start, stop) = (number(start)?, number(stop)?);
    (start <= stop && step >= 1).then_some((start, stop, step))
}

/// Parses a `$GENERATE` template: `$` is the value, `${offset[,width[,base]]}`
/// modifies it, `\$` and `$$` are a literal `$`; other escapes stay as
/// written for the zone-file parser.
fn parse_template(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                literal.push('\\');
                if let Some(next) = chars.next() {
                    literal.push(next);
                }
            }
            '$' if chars.peek() == Some(&'$') => {
                chars.next();
                // Escaped so it cannot be taken for a directive.
                literal.push_str("\\$");
            }
            '$' => {
                let (mut offset, mut width, mut base) = (0i64, 0usize, 'd');
                if chars.peek() == Some(&'{') {
                    chars.next();
                    let mut spec = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => spec.push(c),
                            None => return Err(format!("'${{' without '}}' in '{text}'")),
                        }
                    }
                    let bad = || format!("bad modifier '${{{spec}}}' in '{text}'");
                    let mut fields = spec.split(',');
                    if let Some(f) = fields.next() {
                        offset = f.trim().parse().map_err(|_| bad())?;
                    }
                    if let Some(f) = fields.next() {
                        width = f.trim().parse().map_err(|_| bad())?;
                        if width > MAX_GENERATE_WIDTH {
                            return Err(bad());
                        }
                    }
                    if let Some(f) = fields.next() {
                        base = match f.trim() {
                            b @ ("d" | "o" | "x" | "X" | "n" | "N") => {
                                b.chars().next().unwrap_or('d')
                            }
                            _ => return Err(bad()),
                        };
                    }
                    if fields.next().is_some() {
                        return Err(bad());
                    }
                }
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(Part::Value {
                    offset,
                    width,
                    base,
                });
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    Ok(parts)
}

/// Writes a template for one iterator value.
fn expand(parts: &[Part], value: u64, out: &mut Vec<u8>) -> Result<(), String> {
    for part in parts {
        match *part {
            Part::Text(ref text) => out.extend_from_slice(text.as_bytes()),
            Part::Value {
                offset,
                width,
                base,
            } => {
                let v = i64::try_from(value)
                    .unwrap_or(i64::MAX)
                    .saturating_add(offset);
                let v = u64::try_from(v)
                    .map_err(|_| format!("offset {offset} makes the value negative ({v})"))?;
                let text = match base {
                    'o' => format!("{v:0width$o}"),
                    'x' => format!("{v:0width$x}"),
                    'X' => format!("{v:0width$X}"),
                    'n' | 'N' => nibbles(v, width, base == 'N'),
                    _ => format!("{v:0width$}"),
                };
                out.extend_from_slice(text.as_bytes());
            }
        }
    }
    Ok(())
}

/// BIND's nibble form: hex digits least significant first, separated by
/// dots, for reverse IPv6 names. `width` counts characters, dots included,
/// and is filled with zero nibbles.
fn nibbles(mut value: u64, mut width: usize, upper: bool) -> String {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = String::new();
    loop {
        out.push(char::from(digits[(value & 0xf) as usize]));
        value >>= 4;
        width = width.saturating_sub(1);
        if width > 0 || value != 0 {
            out.push('.');
            width = width.saturating_sub(1);
        }
        if value == 0 && width == 0 {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::base::ToName;
    use std::process::Command;

    fn origin() -> Name {
        oxidns_proto::name_from_str("example.org.").unwrap()
    }

    fn parse(text: &str) -> Vec<SourcedRecord> {
        parse_zone_text(text, "test.zone", &origin()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse_err(text: &str) -> ZoneFileError {
        match parse_zone_text(text, "test.zone", &origin()) {
            Ok(records) => panic!("expected an error, got {} records", records.len()),
            Err(e) => e,
        }
    }

    fn owner(r: &SourcedRecord) -> String {
        oxidns_proto::name_text(r.record.owner())
    }

    fn rtype(r: &SourcedRecord) -> Rtype {
        r.record.rtype()
    }

    /// The record data in presentation format.
    fn data(r: &SourcedRecord) -> String {
        r.record.data().to_string()
    }

    /// A fresh empty folder for file tests.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("oxidns-zone-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn installed(program: &str) -> bool {
        Command::new(program).arg("-v").output().is_ok()
    }

    // --- RFC 1035 basics ---------------------------------------------------

    #[test]
    fn records_get_their_lines_and_absolute_names() {
        let records = parse(
            "$TTL 300\n\
             @ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n\
             \n\
             ; a comment\n\
             www IN A 192.0.2.1\n\
             mail.example.org. 60 IN MX 10 mx.example.net.\n",
        );
        let lines: Vec<_> = records.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 5, 6]);
        assert_eq!(owner(&records[0]), "example.org.");
        assert_eq!(owner(&records[1]), "www.example.org.");
        assert_eq!(data(&records[1]), "192.0.2.1");
        assert_eq!(records[2].record.ttl().as_secs(), 60);
        assert_eq!(data(&records[2]), "10 mx.example.net.");
        assert!(records.iter().all(|r| &*r.file == "test.zone"));
    }

    #[test]
    fn relative_names_in_rdata_take_the_origin() {
        let records = parse("@ 300 IN NS ns1\n@ 300 IN MX 5 mail\n");
        assert_eq!(data(&records[0]), "ns1.example.org.");
        assert_eq!(data(&records[1]), "5 mail.example.org.");
    }

    #[test]
    fn origin_directive_changes_relative_names() {
        let records = parse(
            "$ORIGIN sub.example.org.\nwww 300 IN A 192.0.2.1\n$ORIGIN other\nx 300 IN CNAME www\n",
        );
        assert_eq!(owner(&records[0]), "www.sub.example.org.");
        // A relative $ORIGIN is relative to the current one.
        assert_eq!(owner(&records[1]), "x.other.sub.example.org.");
        assert_eq!(data(&records[1]), "www.other.sub.example.org.");
    }

    #[test]
    fn omitted_owner_repeats_the_previous_owner() {
        let records = parse("www 300 IN A 192.0.2.1\n     300 IN AAAA 2001:db8::1\n\tTXT \"x\"\n");
        assert_eq!(records.len(), 3);
        assert!(records.iter().all(|r| owner(r) == "www.example.org."));
        assert_eq!(records[2].line, 3);
    }

    #[test]
    fn omitted_ttl_uses_dollar_ttl_and_omitted_class_is_in() {
        let records = parse("$TTL 1234\nwww A 192.0.2.1\n$TTL 99\nx A 192.0.2.2\n");
        assert_eq!(records[0].record.ttl().as_secs(), 1234);
        assert_eq!(records[0].record.class(), Class::IN);
        assert_eq!(records[1].record.ttl().as_secs(), 99);
    }

    #[test]
    fn omitted_ttl_without_dollar_ttl_uses_the_last_ttl() {
        let records = parse("www 42 IN A 192.0.2.1\nx IN A 192.0.2.2\n");
        assert_eq!(records[1].record.ttl().as_secs(), 42);
    }

    #[test]
    fn class_and_ttl_in_either_order() {
        let records = parse("a IN 60 A 192.0.2.1\nb 70 IN A 192.0.2.2\n");
        assert_eq!(records[0].record.ttl().as_secs(), 60);
        assert_eq!(records[1].record.ttl().as_secs(), 70);
    }

    #[test]
    fn ttl_units_are_converted() {
        let records = parse(
            "$TTL 1h\na 1h30m IN A 192.0.2.1\nb 2D IN A 192.0.2.2\nc 1w A 192.0.2.3\nd A 192.0.2.4\n",
        );
        let ttls: Vec<_> = records.iter().map(|r| r.record.ttl().as_secs()).collect();
        assert_eq!(ttls, [5400, 172_800, 604_800, 3600]);
    }

    #[test]
    fn soa_timers_accept_units() {
        let records = parse("@ 3600 IN SOA ns1 hostmaster ( 2024010101 1h 15m 2w 1d )\n");
        assert_eq!(
            data(&records[0]),
            "ns1.example.org. hostmaster.example.org. 2024010101 3600 900 1209600 86400"
        );
    }

    #[test]
    fn record_in_parentheses_reports_its_first_line() {
        let records = parse(
            "@ 3600 IN SOA ns1 hostmaster (\n   1 ; serial\n   7200\n   3600\n   1209600\n   300 )\nwww 300 IN A 192.0.2.1\n",
        );
        assert_eq!(records[0].line, 1);
        assert_eq!(records[1].line, 7);
        assert_eq!(
            data(&records[0]),
            "ns1.example.org. hostmaster.example.org. 1 7200 3600 1209600 300"
        );
    }

    #[test]
    fn quoted_text_may_hold_semicolons_and_parentheses() {
        let records = parse("t 300 IN TXT \"a;b\" \"(c)\" \"d\\\"e\"\nv 300 IN A 192.0.2.1\n");
        assert_eq!(records.len(), 2);
        assert_eq!(data(&records[0]), "\"a;b\" \"(c)\" \"d\\\"e\"");
        assert_eq!(records[1].line, 2);
    }

    #[test]
    fn line_feed_inside_quotes_is_an_error() {
        let e = parse_err("a 300 IN A 192.0.2.1\nu 300 IN TXT \"two\nlines\"\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("quoted string"), "{e}");
    }

    #[test]
    fn at_sign_in_record_data_is_the_origin() {
        let records = parse(
            "$ORIGIN sub.example.org.\nwww 300 IN CNAME @\n@ 300 IN MX 10 @\nt 300 IN TXT @\n",
        );
        assert_eq!(data(&records[0]), "sub.example.org.");
        assert_eq!(data(&records[1]), "10 sub.example.org.");
        assert_eq!(data(&records[2]), "\"@\"");
    }

    #[test]
    fn escapes_in_names_and_text() {
        let records = parse("a\\.b 300 IN TXT \"\\065\\066\" \\067\nc\\032d 300 IN A 192.0.2.1\n");
        let first = records[0].record.owner();
        assert_eq!(first.label_count(), 4, "escaped dot stays inside the label");
        let txt = match records[0].record.data() {
            ZoneRecordData::Txt(txt) => txt.iter().map(|s| s.to_vec()).collect::<Vec<_>>(),
            other => panic!("not TXT: {other:?}"),
        };
        assert_eq!(txt, [b"AB".to_vec(), b"C".to_vec()]);
        assert_eq!(records[1].record.owner().first().as_slice(), b"c d");
    }

    #[test]
    fn text_without_final_line_feed_loads() {
        let records = parse("www 300 IN A 192.0.2.1");
        assert_eq!(records.len(), 1);
    }

    #[test]
    fn crlf_line_endings_load() {
        let records = parse("www 300 IN A 192.0.2.1\r\nx 300 IN A 192.0.2.2\r\n");
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].line, 2);
    }

    #[test]
    fn empty_text_gives_no_records() {
        assert!(parse("").is_empty());
        assert!(parse("; only a comment\n\n").is_empty());
    }

    // --- Types ---------------------------------------------------------------

    #[test]
    fn common_types_load() {
        let records = parse(
            "a 300 IN AAAA 2001:db8::1\n\
             b 300 IN CNAME a\n\
             c 300 IN DNAME example.net.\n\
             d 300 IN PTR a\n\
             e 300 IN SRV 10 20 443 a\n\
             f 300 IN CAA 0 issue \"letsencrypt.org\"\n\
             g 300 IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\
             h 300 IN SSHFP 4 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\
             i 300 IN NAPTR 100 10 \"U\" \"E2U+sip\" \"!^.*$!sip:info@example.org!\" .\n\
             j 300 IN HINFO \"cpu\" \"os\"\n\
             k 300 IN CDS 2371 13 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\
             l 300 IN RP mbox txt\n",
        );
        let types: Vec<_> = records.iter().map(rtype).collect();
        assert_eq!(
            types,
            [
                Rtype::AAAA,
                Rtype::CNAME,
                Rtype::DNAME,
                Rtype::PTR,
                Rtype::SRV,
                Rtype::CAA,
                Rtype::TLSA,
                Rtype::SSHFP,
                Rtype::NAPTR,
                Rtype::HINFO,
                Rtype::CDS,
                Rtype::RP
            ]
        );
        assert!(
            records
                .iter()
                .all(|r| !matches!(r.record.data(), ZoneRecordData::Unknown(_)))
        );
        match records[4].record.data() {
            ZoneRecordData::Srv(srv) => {
                assert_eq!(oxidns_proto::name_text(srv.target()), "a.example.org.")
            }
            other => panic!("not SRV: {other:?}"),
        }
    }

    #[test]
    fn svcb_and_https_parameters_load() {
        let records = parse(
            "_dns 300 IN SVCB 1 dns alpn=dot,h2 port=853\n\
             @ 300 IN HTTPS 1 . alpn=h3,h2 ipv4hint=192.0.2.1 ech=AEn+DQBF\n\
             alias 300 IN HTTPS 0 www.example.net.\n",
        );
        assert_eq!(records.len(), 3);
        assert!(matches!(records[0].record.data(), ZoneRecordData::Svcb(_)));
        assert!(matches!(records[1].record.data(), ZoneRecordData::Https(_)));
        assert!(
            data(&records[1]).contains("ipv4hint=192.0.2.1"),
            "{}",
            data(&records[1])
        );
    }

    #[test]
    fn signed_zone_types_load() {
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";
        let text = format!(
            "@ 3600 IN DNSKEY 257 3 13 {key}\n\
             @ 3600 IN RRSIG DNSKEY 13 2 3600 20300101000000 20200101000000 2371 example.org. (\n    {key} )\n\
             @ 3600 IN NSEC www A NS SOA RRSIG NSEC DNSKEY TYPE65000\n\
             @ 0 IN NSEC3PARAM 1 0 10 aabbccdd\n\
             2t7b4g4vsa5smi47k61mv5bv1a22bojr 300 IN NSEC3 1 1 10 aabbccdd 2vptu5timamqttgl4luu9kg21e0aor3s A RRSIG\n\
             nosalt 300 IN NSEC3 1 0 0 - 2vptu5timamqttgl4luu9kg21e0aor3s\n\
             sub 3600 IN DS 2371 13 2 0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\n\
             @ 3600 IN CDNSKEY 0 3 0 AA==\n"
        );
        let records = parse(&text);
        let types: Vec<_> = records.iter().map(rtype).collect();
        assert_eq!(
            types,
            [
                Rtype::DNSKEY,
                Rtype::RRSIG,
                Rtype::NSEC,
                Rtype::NSEC3PARAM,
                Rtype::NSEC3,
                Rtype::NSEC3,
                Rtype::DS,
                Rtype::CDNSKEY
            ]
        );
        assert!(
            records
                .iter()
                .all(|r| !matches!(r.record.data(), ZoneRecordData::Unknown(_)))
        );
        assert_eq!(records[1].line, 2);
        assert_eq!(records[2].line, 4);
        assert!(
            data(&records[2]).contains("TYPE65000"),
            "{}",
            data(&records[2])
        );
        assert!(
            data(&records[1]).starts_with("DNSKEY 13 2 3600"),
            "{}",
            data(&records[1])
        );
    }

    #[test]
    fn unknown_type_in_rfc3597_form_loads() {
        let records = parse("x 300 IN TYPE12345 \\# 3 abcdef\ny 300 IN TYPE65534 \\# 0\n");
        assert_eq!(records[0].record.rtype(), Rtype::from_int(12345));
        match records[0].record.data() {
            ZoneRecordData::Unknown(u) => assert_eq!(u.data().as_ref(), [0xab, 0xcd, 0xef]),
            other => panic!("expected unknown data, got {other:?}"),
        }
        assert_eq!(records[1].record.rtype(), Rtype::from_int(65534));
    }

    #[test]
    fn known_type_in_rfc3597_form_becomes_typed_data() {
        let records = parse("x 300 IN A \\# 4 c0000201\ny 300 IN TYPE1 192.0.2.2\n");
        assert!(matches!(records[0].record.data(), ZoneRecordData::A(_)));
        assert_eq!(data(&records[0]), "192.0.2.1");
        assert!(matches!(records[1].record.data(), ZoneRecordData::A(_)));
    }

    #[test]
    fn known_type_in_rfc3597_form_with_bad_length_is_an_error() {
        let e = parse_err("ok 300 IN A 192.0.2.1\nx 300 IN A \\# 3 c00002\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("RFC 3597"), "{e}");
    }

    #[test]
    fn rfc3597_length_mismatch_is_an_error() {
        let e = parse_err("x 300 IN TYPE12345 \\# 4 abcdef\n");
        assert_eq!(e.line, 1);
        assert!(e.message.contains("TYPE12345"), "{e}");
    }

    // --- Errors --------------------------------------------------------------

    #[test]
    fn error_display_is_file_line_message() {
        let e = ZoneFileError {
            file: "db.example".into(),
            line: 7,
            message: "oops".into(),
        };
        assert_eq!(e.to_string(), "db.example:7: oops");
    }

    #[test]
    fn unknown_type_reports_its_line() {
        let e = parse_err("www 300 IN A 192.0.2.1\n\nwww 300 IN BOGUS foo\n");
        assert_eq!((e.file.as_str(), e.line), ("test.zone", 3));
        assert_eq!(e.message, "unknown record type 'BOGUS'");
    }

    #[test]
    fn bad_ttl_reports_its_line() {
        let e = parse_err("a 300 IN A 192.0.2.1\nb 5x IN A 192.0.2.2\n");
        assert_eq!(e.line, 2);
        assert_eq!(e.message, "bad TTL '5x'");
        let e = parse_err("a 300 IN A 192.0.2.1\n$TTL forever\n");
        assert_eq!(e.line, 2);
        assert_eq!(e.message, "bad $TTL value 'forever'");
        let e = parse_err("a 99999999999 IN A 192.0.2.1\n");
        assert_eq!(e.line, 1);
    }

    #[test]
    fn bad_rdata_names_the_type_and_line() {
        let e = parse_err("a 300 IN A 192.0.2.1\nb 300 IN MX ten mail\n");
        assert_eq!(e.line, 2);
        assert!(e.message.starts_with("bad record data for MX: "), "{e}");
        let e = parse_err("a 300 IN A 192.0.2.1\nb 300 IN A 192.0.2.256\n");
        assert_eq!(e.line, 2);
        assert!(e.message.starts_with("bad record data for A: "), "{e}");
    }

    #[test]
    fn missing_rdata_reports_the_record_line() {
        let e = parse_err("a 300 IN MX 10\nb 300 IN A 192.0.2.1\n");
        assert_eq!(e.line, 1);
        assert!(e.message.starts_with("bad record data for MX: "), "{e}");
    }

    #[test]
    fn bad_rdata_inside_parentheses_reports_its_own_line() {
        let e = parse_err("@ 300 IN SOA ns1 hostmaster (\n 1\n 2\n three\n 4\n 5 )\n");
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("SOA"), "{e}");
    }

    #[test]
    fn trailing_data_is_an_error() {
        let e = parse_err("a 300 IN A 192.0.2.1 192.0.2.2\n");
        assert_eq!(e.line, 1);
        assert!(e.message.contains("after the end of the record"), "{e}");
    }

    #[test]
    fn bad_owner_name_reports_its_line() {
        let long = "a".repeat(64);
        let e = parse_err(&format!(
            "ok 300 IN A 192.0.2.1\n{long} 300 IN A 192.0.2.1\n"
        ));
        assert_eq!(e.line, 2);
        assert!(e.message.starts_with("bad owner name"), "{e}");
    }

    #[test]
    fn unbalanced_parentheses_are_an_error() {
        let e = parse_err(
            "a 300 IN A 192.0.2.1\n@ 300 IN SOA ns1 hostmaster ( 1 2 3 4 5\n\nb 300 IN A 192.0.2.2\n",
        );
        assert_eq!(e.line, 2);
        assert!(e.message.contains("never closed"), "{e}");
        let e = parse_err("a 300 IN A 192.0.2.1 )\n");
        assert_eq!(e.line, 1);
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        let e = parse_err("a 300 IN A 192.0.2.1\nt 300 IN TXT \"open\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("quoted string"), "{e}");
    }

    #[test]
    fn class_mismatch_is_an_error() {
        let e = parse_err("a 300 IN A 192.0.2.1\nb 300 CH TXT \"x\"\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("class CH"), "{e}");
    }

    #[test]
    fn unknown_directive_is_an_error() {
        let e = parse_err("a 300 IN A 192.0.2.1\n$FROB x\n");
        assert_eq!(
            (e.line, e.message.as_str()),
            (2, "unknown directive '$FROB'")
        );
    }

    #[test]
    fn indented_first_record_is_an_error() {
        let e = parse_err("; start\n   300 IN A 192.0.2.1\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("no owner name"), "{e}");
    }

    #[test]
    fn type_known_by_name_but_not_in_text_form_is_an_error() {
        let e = parse_err("a 300 IN A 192.0.2.1\nb 300 IN SPF \"v=spf1 -all\"\n");
        assert_eq!(e.line, 2);
        assert!(
            e.message.contains("SPF") && e.message.contains("RFC 3597"),
            "{e}"
        );
        // The generic form works.
        let records = parse("b 300 IN SPF \\# 3 026869\n");
        assert_eq!(records[0].record.rtype(), Rtype::SPF);
    }

    // --- $INCLUDE --------------------------------------------------------------

    #[test]
    fn include_reads_file_relative_to_including_file() {
        let dir = temp_dir("include-relative");
        std::fs::create_dir_all(dir.join("parts")).unwrap();
        std::fs::write(
            dir.join("main.zone"),
            "a 300 IN A 192.0.2.1\n$INCLUDE parts/hosts.zone\nc 300 IN A 192.0.2.3\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("parts/hosts.zone"),
            "; hosts\nb 300 IN A 192.0.2.2\n$INCLUDE more.zone\n",
        )
        .unwrap();
        std::fs::write(dir.join("parts/more.zone"), "\n\nm 300 IN A 192.0.2.9\n").unwrap();
        let records = load_zone_file(&dir.join("main.zone"), &origin())
            .unwrap()
            .iter()
            .collect::<Vec<_>>();
        let got: Vec<_> = records
            .iter()
            .map(|r| {
                (
                    owner(r),
                    r.file.rsplit('/').next().unwrap().to_owned(),
                    r.line,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a.example.org.".into(), "main.zone".into(), 1),
                ("b.example.org.".into(), "hosts.zone".into(), 2),
                ("m.example.org.".into(), "more.zone".into(), 3),
                ("c.example.org.".into(), "main.zone".into(), 3),
            ]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn include_with_origin_changes_relative_names() {
        let dir = temp_dir("include-origin");
        std::fs::write(
            dir.join("main.zone"),
            "$INCLUDE sub.zone sub\nafter 300 IN A 192.0.2.3\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("sub.zone"),
            "www 300 IN CNAME @\n$ORIGIN deeper\nx 300 IN A 192.0.2.1\n",
        )
        .unwrap();
        let records = load_zone_file(&dir.join("main.zone"), &origin())
            .unwrap()
            .iter()
            .collect::<Vec<_>>();
        assert_eq!(owner(&records[0]), "www.sub.example.org.");
        assert_eq!(data(&records[0]), "sub.example.org.");
        assert_eq!(owner(&records[1]), "x.deeper.sub.example.org.");
        // The including file's origin is not changed by the included file.
        assert_eq!(owner(&records[2]), "after.example.org.");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn include_without_origin_uses_the_current_origin() {
        let dir = temp_dir("include-current-origin");
        std::fs::write(dir.join("main.zone"), "$ORIGIN lab\n$INCLUDE hosts.zone\n").unwrap();
        std::fs::write(dir.join("hosts.zone"), "h1 300 IN A 192.0.2.1\n").unwrap();
        let records = load_zone_file(&dir.join("main.zone"), &origin())
            .unwrap()
            .iter()
            .collect::<Vec<_>>();
        assert_eq!(owner(&records[0]), "h1.lab.example.org.");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_include_reports_the_including_line() {
        let dir = temp_dir("include-missing");
        let main = dir.join("main.zone");
        std::fs::write(&main, "a 300 IN A 192.0.2.1\n\n$INCLUDE nope.zone\n").unwrap();
        let e = load_zone_file(&main, &origin()).unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.line),
            (main.display().to_string().as_str(), 3)
        );
        assert!(e.message.contains("nope.zone"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn include_cycle_is_an_error() {
        let dir = temp_dir("include-cycle");
        std::fs::write(
            dir.join("a.zone"),
            "a 300 IN A 192.0.2.1\n$INCLUDE b.zone\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("b.zone"),
            "b 300 IN A 192.0.2.2\n\n$INCLUDE a.zone\n",
        )
        .unwrap();
        let e = load_zone_file(&dir.join("a.zone"), &origin()).unwrap_err();
        assert!(e.file.ends_with("b.zone"), "{e}");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("cycle"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn self_include_is_an_error() {
        let dir = temp_dir("include-self");
        std::fs::write(dir.join("a.zone"), "$INCLUDE a.zone\n").unwrap();
        let e = load_zone_file(&dir.join("a.zone"), &origin()).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("cycle"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn error_in_included_file_names_that_file() {
        let dir = temp_dir("include-error");
        std::fs::write(
            dir.join("main.zone"),
            "a 300 IN A 192.0.2.1\n$INCLUDE bad.zone\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("bad.zone"),
            "b 300 IN A 192.0.2.2\nc 300 IN A nonsense\n",
        )
        .unwrap();
        let e = load_zone_file(&dir.join("main.zone"), &origin()).unwrap_err();
        assert!(e.file.ends_with("bad.zone"), "{e}");
        assert_eq!(e.line, 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_zone_file_is_an_error() {
        let dir = temp_dir("missing-file");
        let e = load_zone_file(&dir.join("absent.zone"), &origin()).unwrap_err();
        assert_eq!(e.line, 0);
        assert!(e.file.ends_with("absent.zone"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    // --- $GENERATE -------------------------------------------------------------

    #[test]
    fn generate_simple_range() {
        let records =
            parse("$ORIGIN 2.0.192.in-addr.arpa.\n$GENERATE 1-3 $ PTR host-$.example.org.\n");
        let got: Vec<_> = records
            .iter()
            .map(|r| (owner(r), data(r), r.line))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "1.2.0.192.in-addr.arpa.".into(),
                    "host-1.example.org.".into(),
                    2
                ),
                (
                    "2.2.0.192.in-addr.arpa.".into(),
                    "host-2.example.org.".into(),
                    2
                ),
                (
                    "3.2.0.192.in-addr.arpa.".into(),
                    "host-3.example.org.".into(),
                    2
                ),
            ]
        );
    }

    #[test]
    fn generate_with_step() {
        let records = parse("$GENERATE 0-10/5 h$ A 192.0.2.$\n");
        let got: Vec<_> = records.iter().map(|r| (owner(r), data(r))).collect();
        assert_eq!(
            got,
            [
                ("h0.example.org.".into(), "192.0.2.0".into()),
                ("h5.example.org.".into(), "192.0.2.5".into()),
                ("h10.example.org.".into(), "192.0.2.10".into()),
            ]
        );
    }

    #[test]
    fn generate_with_offset_width_and_hex_base() {
        let records =
            parse("$GENERATE 10-11 host${-9,3,d} CNAME x${0,4,x}.y${100,0,X}.z${0,3,o}\n");
        let got: Vec<_> = records.iter().map(|r| (owner(r), data(r))).collect();
        assert_eq!(
            got,
            [
                (
                    "host001.example.org.".into(),
                    "x000a.y6E.z012.example.org.".into()
                ),
                (
                    "host002.example.org.".into(),
                    "x000b.y6F.z013.example.org.".into()
                ),
            ]
        );
    }

    #[test]
    fn generate_nibble_mode() {
        assert_eq!(nibbles(0xab, 0, false), "b.a");
        assert_eq!(nibbles(0xa, 3, false), "a.0");
        assert_eq!(nibbles(0xab, 7, true), "B.A.0.0");
        assert_eq!(nibbles(0, 0, false), "0");
        let records = parse("$GENERATE 254-255 ${0,7,n} PTR h$\n");
        let got: Vec<_> = records.iter().map(owner).collect();
        assert_eq!(got, ["e.f.0.0.example.org.", "f.f.0.0.example.org."]);
    }

    #[test]
    fn generate_escaped_dollar_and_double_dollar() {
        let records = parse("$GENERATE 1-1 a\\$$ TXT \"p$$q$\"\n");
        assert_eq!(owner(&records[0]), "a$1.example.org.");
        assert_eq!(data(&records[0]), "\"p$q1\"");
    }

    #[test]
    fn generate_with_ttl_and_class() {
        let records = parse(
            "$TTL 300\n$GENERATE 1-2 h$ 1h IN A 192.0.2.$\n$GENERATE 3-3 h$ IN 60 A 192.0.2.$\n",
        );
        let ttls: Vec<_> = records.iter().map(|r| r.record.ttl().as_secs()).collect();
        assert_eq!(ttls, [3600, 3600, 60]);
    }

    #[test]
    fn generate_quoted_rdata_loses_its_quotes() {
        let records =
            parse("$GENERATE 1-2 m$ MX \"1$ mail$\"\n$GENERATE 5-5 t$ TXT \"a$\" \"b\"\n");
        assert_eq!(data(&records[0]), "11 mail1.example.org.");
        assert_eq!(data(&records[1]), "12 mail2.example.org.");
        assert_eq!(data(&records[2]), "\"a5\" \"b\"");
    }

    #[test]
    fn generate_template_that_leaves_a_parenthesis_open_is_an_error_not_a_panic() {
        // The fuzzer's input (regressions/zonefile/generate-quoted-rdata-opens-parenthesis).
        for text in [
            "$GENERATE 1-2 4 TXT \"a(\"\n",
            "$GENERATE 1-2 h$ TXT \"a)\"\n",
        ] {
            let e = parse_err(text);
            assert_eq!(e.line, 1, "{text}");
            assert!(e.message.contains("template"), "{text}: {e}");
        }
    }

    #[test]
    fn generate_keeps_line_numbers_of_later_records() {
        let records =
            parse("a 300 IN A 192.0.2.1\n$GENERATE 1-100 g$ A 192.0.2.$\n\nz 300 IN A 192.0.2.9\n");
        assert_eq!(records.len(), 102);
        assert!(records[1..101].iter().all(|r| r.line == 2));
        assert_eq!(records[101].line, 4);
    }

    #[test]
    fn quoted_string_glued_to_another_token_is_an_error_not_a_panic() {
        // The fuzzer's input (regressions/zonefile/include-quoted-path-glued-to-origin).
        for text in [
            "$INCLUDE\"@I\"A",
            "$INCLUDE \"db\"sub\n",
            "a 300 IN TXT \"x\"y\n",
            "a 300 IN TXT y\"x\"\n",
            "a 300 IN TXT \"x\"\"y\"\n",
        ] {
            let e = parse_err(text);
            assert_eq!(e.line, 1, "{text}");
            assert!(e.message.contains("separated"), "{text}: {e}");
        }
        assert_eq!(parse("a 300 IN TXT \"x\" \"y\"\n").len(), 1);
        assert_eq!(parse("a 300 IN TXT (\"x\")\n").len(), 1);
    }

    #[test]
    fn generate_bad_range_is_an_error() {
        for range in ["5-1", "1-", "a-b", "1-2/0", "1-3000000000", "-1-2"] {
            let e = parse_err(&format!(
                "a 300 IN A 192.0.2.1\n$GENERATE {range} h$ A 192.0.2.$\n"
            ));
            assert_eq!(e.line, 2, "{range}");
            assert!(e.message.contains("range"), "{e}");
        }
    }

    #[test]
    fn generate_over_limit_is_an_error() {
        let e = parse_err("$GENERATE 0-1000000 h$ A 192.0.2.1\n");
        assert_eq!(e.line, 1);
        assert!(
            e.message.contains("1000001 records") && e.message.contains("limit"),
            "{e}"
        );
    }

    #[test]
    fn generate_bad_modifier_is_an_error() {
        for template in ["h${1", "h${x}", "h${0,2,q}", "h${0,1,d,9}"] {
            let e = parse_err(&format!("\n$GENERATE 1-2 {template} A 192.0.2.1\n"));
            assert_eq!(e.line, 2, "{template}");
        }
    }

    #[test]
    fn generated_record_error_reports_generate_line() {
        let e = parse_err("a 300 IN A 192.0.2.1\n$GENERATE 250-260 h$ A 192.0.2.$\n");
        assert_eq!(e.line, 2);
        assert!(
            e.message
                .starts_with("$GENERATE value 256: bad record data for A"),
            "{e}"
        );
        let e = parse_err("$GENERATE 1-2 h${-5} A 192.0.2.1\n");
        assert_eq!(e.line, 1);
        assert!(e.message.contains("negative"), "{e}");
        let e = parse_err("$GENERATE 1-2 h$ FROB x\n");
        assert_eq!(e.message, "unknown record type 'FROB'");
    }

    #[test]
    fn ttl_parser_accepts_units_and_rejects_junk() {
        assert_eq!(parse_ttl("0"), Some(0));
        assert_eq!(parse_ttl("4294967295"), Some(u32::MAX));
        assert_eq!(parse_ttl("4294967296"), None);
        assert_eq!(
            parse_ttl("1w2d3h4m5s"),
            Some(604_800 + 2 * 86_400 + 3 * 3600 + 4 * 60 + 5)
        );
        assert_eq!(parse_ttl("1h30"), Some(3630));
        assert_eq!(parse_ttl("h"), None);
        assert_eq!(parse_ttl("1y"), None);
        assert_eq!(parse_ttl(""), None);
    }

    // --- Real signed zones -----------------------------------------------------

    const UNSIGNED: &str = "$ORIGIN example.org.\n$TTL 3600\n\
        @ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n\
        @ NS ns1\nns1 A 192.0.2.1\nwww AAAA 2001:db8::1\n\
        sub NS ns.sub\nns.sub A 192.0.2.9\nmail MX 10 www\ntxt TXT \"hello world\"\n";

    /// Owner and type of each record, sorted, for comparing two loads.
    fn summary(records: &[SourcedRecord]) -> Vec<(String, Rtype)> {
        let mut s: Vec<_> = records
            .iter()
            .map(|r| (owner(r).to_ascii_lowercase(), rtype(r)))
            .collect();
        s.sort();
        s
    }

    #[test]
    fn real_zone_signed_by_ldns_loads() {
        if !installed("ldns-signzone") || !installed("ldns-keygen") {
            eprintln!("ldns-signzone not installed: skipped");
            return;
        }
        let dir = temp_dir("ldns-signed");
        std::fs::write(dir.join("zone"), UNSIGNED).unwrap();
        let keygen = Command::new("ldns-keygen")
            .args(["-a", "ECDSAP256SHA256", "-k", "example.org"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(keygen.status.success(), "{keygen:?}");
        let key = String::from_utf8(keygen.stdout).unwrap().trim().to_owned();
        for (args, denial) in [
            (vec![], Rtype::NSEC),
            (vec!["-n", "-s", "abcd"], Rtype::NSEC3),
        ] {
            let sign = Command::new("ldns-signzone")
                .args(&args)
                .args(["-o", "example.org.", "zone", &key])
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(sign.status.success(), "{sign:?}");
            let signed = std::fs::read_to_string(dir.join("zone.signed")).unwrap();
            let records = load_zone_file(&dir.join("zone.signed"), &origin())
                .unwrap()
                .iter()
                .collect::<Vec<_>>();
            let lines = signed
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
                .count();
            assert_eq!(records.len(), lines);
            for r in &records {
                assert!(
                    !matches!(r.record.data(), ZoneRecordData::Unknown(_)),
                    "{:?}",
                    r.record
                );
                // Each record is on its own line, starting with its owner.
                let line = signed.lines().nth(r.line as usize - 1).unwrap();
                assert!(
                    line.to_ascii_lowercase()
                        .starts_with(&owner(r).to_ascii_lowercase()),
                    "{line}"
                );
            }
            assert!(records.iter().any(|r| rtype(r) == denial));
            assert!(records.iter().any(|r| rtype(r) == Rtype::RRSIG));
            assert!(records.iter().any(|r| rtype(r) == Rtype::DNSKEY));
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn real_zone_signed_by_bind_loads_in_both_output_formats() {
        if !installed("dnssec-signzone") || !installed("dnssec-keygen") {
            eprintln!("dnssec-signzone not installed: skipped");
            return;
        }
        let dir = temp_dir("bind-signed");
        std::fs::write(dir.join("zone"), UNSIGNED).unwrap();
        let keygen = Command::new("dnssec-keygen")
            .args(["-q", "-a", "ECDSAP256SHA256", "-f", "KSK", "example.org"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(keygen.status.success(), "{keygen:?}");
        let key = String::from_utf8(keygen.stdout).unwrap().trim().to_owned();
        let mut loads = Vec::new();
        for (out, extra) in [
            ("default.signed", vec![]),
            ("full.signed", vec!["-O", "full"]),
        ] {
            let mut zone = std::fs::read_to_string(dir.join("zone")).unwrap();
            zone.push_str(&format!("$INCLUDE {key}.key\n"));
            std::fs::write(dir.join("zone.in"), zone).unwrap();
            let sign = Command::new("dnssec-signzone")
                .args(["-q", "-z", "-o", "example.org", "-f", out])
                .args(&extra)
                .args(["zone.in", &key])
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(sign.status.success(), "{sign:?}");
            let records = load_zone_file(&dir.join(out), &origin())
                .unwrap()
                .iter()
                .collect::<Vec<_>>();
            assert!(
                records
                    .iter()
                    .all(|r| !matches!(r.record.data(), ZoneRecordData::Unknown(_)))
            );
            assert!(records.iter().any(|r| rtype(r) == Rtype::NSEC));
            loads.push(summary(&records));
        }
        // The multi-line, relative-name format reads the same as the full one.
        assert_eq!(loads[0], loads[1]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn owner_names_compare_case_insensitively_but_keep_case() {
        let records = parse("WWW 300 IN A 192.0.2.1\n");
        assert_eq!(owner(&records[0]), "WWW.example.org.");
        assert!(
            records[0]
                .record
                .owner()
                .name_eq(&oxidns_proto::name_from_str("www.example.org").unwrap())
        );
    }
}
