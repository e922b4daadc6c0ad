//! TSIG, secret key transaction authentication (RFC 8945), over messages in
//! wire form.
//!
//! - [`Key`]: a named HMAC key (hmac-sha1, -sha256, -sha384, -sha512; RFC
//!   8945 §6 makes MD5 optional and we refuse it).
//! - [`find`]: the TSIG record of a received message, which must be the last
//!   record of the additional section (§5.2, §4.2).
//! - Server side: [`verify_request`] checks a request in the order of §5.2
//!   (key, MAC, time, truncation) and [`Signer`] signs each message of the
//!   answer: the first over the request's MAC and all TSIG variables, the
//!   following ones of a multi-message answer over the prior MAC and the
//!   timers only (§4.3.1, §5.3.1). Error answers: BADKEY and BADSIG unsigned,
//!   BADTIME signed with the server's time in Other Data (§5.2.3, §5.3.2).
//! - Client side: [`sign_request`] and [`Verifier`], which checks every
//!   message of an answer and allows up to 99 unsigned messages between
//!   signed ones, digesting them into the next MAC (§5.3.1).
//!
//! Why not `domain`'s `tsig` module: it signs only into a `MessageBuilder`
//! that is still being built, and verifies a `Message` it may edit in place.
//! Our responses are finished wire messages (encoded once, truncated, and in
//! zone transfers encoded in another task), and a transfer client reads raw
//! frames off a TCP stream; working on wire bytes lets the one code path
//! sign or check any message, with nothing re-encoded.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ring::hmac;

use crate::Name;

/// The request metadata key under which the `tsig` plugin leaves the name
/// of the key a request was verified with (`xfr.example.org.`), for the
/// plugins that demand a particular key.
pub const METADATA_KEY: &str = "tsig/keyname";

/// TSIG's record type (RFC 8945 §4.2).
const TSIG_TYPE: u16 = 250;
/// The class of a TSIG record: ANY (RFC 8945 §4.2).
const CLASS_ANY: u16 = 255;
/// The fudge we sign with: the RFC's recommended 300 seconds (§10).
pub const FUDGE: u16 = 300;

/// TSIG errors in the record's Error field (RFC 8945 §3, IANA "DNS RCODEs").
pub mod error {
    pub const NOERROR: u16 = 0;
    pub const BADSIG: u16 = 16;
    pub const BADKEY: u16 = 17;
    pub const BADTIME: u16 = 18;
}

/// A MAC algorithm (RFC 8945 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    HmacSha1,
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl Algorithm {
    /// Reads an algorithm as BIND and CoreDNS write it (`hmac-sha256`,
    /// case-insensitive, with or without the trailing dot).
    pub fn from_name(text: &str) -> Result<Algorithm, String> {
        let lower = text.trim_end_matches('.').to_ascii_lowercase();
        match lower.as_str() {
            "hmac-sha1" => Ok(Algorithm::HmacSha1),
            "hmac-sha256" => Ok(Algorithm::HmacSha256),
            "hmac-sha384" => Ok(Algorithm::HmacSha384),
            "hmac-sha512" => Ok(Algorithm::HmacSha512),
            "hmac-md5" | "hmac-md5.sig-alg.reg.int" => Err(format!(
                "TSIG algorithm '{text}' is not supported: MD5 is broken (RFC 8945 §6); use hmac-sha256"
            )),
            _ => Err(format!(
                "unknown TSIG algorithm '{text}' (hmac-sha1, hmac-sha256, hmac-sha384, hmac-sha512)"
            )),
        }
    }

    /// The algorithm's name as it goes on the wire, lower case.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha1 => "hmac-sha1",
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha384 => "hmac-sha384",
            Algorithm::HmacSha512 => "hmac-sha512",
        }
    }

    fn ring(self) -> hmac::Algorithm {
        match self {
            Algorithm::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Algorithm::HmacSha256 => hmac::HMAC_SHA256,
            Algorithm::HmacSha384 => hmac::HMAC_SHA384,
            Algorithm::HmacSha512 => hmac::HMAC_SHA512,
        }
    }

    /// The length of a full MAC.
    pub fn mac_len(self) -> usize {
        self.ring().digest_algorithm().output_len()
    }

    fn wire_name(self) -> Vec<u8> {
        wire_from_text(self.name())
    }
}

/// A named secret shared with a peer.
pub struct Key {
    name: Name,
    /// The name in canonical wire form (lower case, uncompressed), as it is
    /// written into records and MAC input.
    wire_name: Vec<u8>,
    algorithm: Algorithm,
    key: hmac::Key,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl AsRef<Key> for Key {
    fn as_ref(&self) -> &Key {
        self
    }
}

impl Key {
    pub fn new(name: &Name, algorithm: Algorithm, secret: &[u8]) -> Key {
        let name = crate::lowercase(name);
        Key {
            wire_name: name.as_slice().to_vec(),
            name,
            algorithm,
            key: hmac::Key::new(algorithm.ring(), secret),
        }
    }

    /// A key from its secret in base64, as key files and Corefiles hold it.
    pub fn from_base64(name: &Name, algorithm: Algorithm, secret: &str) -> Result<Key, String> {
        let secret: Vec<u8> = domain::utils::base64::decode(secret)
            .map_err(|e| format!("TSIG secret for '{name}' is not valid base64: {e}"))?;
        if secret.is_empty() {
            return Err(format!("TSIG secret for '{name}' is empty"));
        }
        Ok(Key::new(name, algorithm, &secret))
    }

    /// The key's name, lower case.
    pub fn name(&self) -> &Name {
        &self.name
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// How many bytes a TSIG record with this key adds to a message (with
    /// six bytes of Other Data, as in a BADTIME answer).
    pub fn record_len(&self) -> usize {
        self.wire_name.len()
            + 10
            + self.algorithm.wire_name().len()
            + 16
            + 6
            + self.algorithm.mac_len()
    }
}

/// The keys of one server block, by name: filled by the `tsig` plugin's
/// setup, read by the plugins that sign or demand signatures (`transfer`,
/// `secondary`), which find it through the block's shared values.
#[derive(Debug, Default)]
pub struct KeyRing(std::sync::RwLock<std::collections::HashMap<Name, std::sync::Arc<Key>>>);

impl KeyRing {
    /// Adds a key; `false` if one of that name is already there.
    pub fn insert(&self, key: Key) -> bool {
        let mut keys = self.0.write().unwrap_or_else(|e| e.into_inner());
        let name = key.name.clone();
        if keys.contains_key(&name) {
            return false;
        }
        keys.insert(name, std::sync::Arc::new(key));
        true
    }

    /// The key of this name (any case).
    pub fn get(&self, name: &Name) -> Option<std::sync::Arc<Key>> {
        let keys = self.0.read().unwrap_or_else(|e| e.into_inner());
        keys.get(&crate::lowercase(name)).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.0.read().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
}

/// A TSIG record as read from a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsigRecord {
    /// Where the record starts in the message.
    pub start: usize,
    /// The key name, lower case.
    pub key_name: Name,
    /// The algorithm name, lower case, without the trailing dot.
    pub algorithm: String,
    /// Seconds since the epoch (48 bits).
    pub time_signed: u64,
    pub fudge: u16,
    pub mac: Vec<u8>,
    pub original_id: u16,
    pub error: u16,
    pub other: Vec<u8>,
}

/// Why a message's TSIG could not be read: the request gets FORMERR (§5.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedTsig(pub &'static str);

impl std::fmt::Display for MalformedTsig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for MalformedTsig {}

/// The message's TSIG record, if it has one. A TSIG anywhere but last in
/// the additional section is malformed (RFC 8945 §5.2).
pub fn find(message: &[u8]) -> Result<Option<TsigRecord>, MalformedTsig> {
    let bad = MalformedTsig("bad message");
    if message.len() < 12 {
        return Err(bad);
    }
    let count = |at: usize| usize::from(u16::from_be_bytes([message[at], message[at + 1]]));
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(message, pos).ok_or(bad.clone())? + 4;
    }
    let total = an + ns + ar;
    let mut found = None;
    for index in 0..total {
        let start = pos;
        pos = skip_name(message, pos).ok_or(bad.clone())?;
        let fixed = message.get(pos..pos + 10).ok_or(bad.clone())?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let rdata_at = pos + 10;
        pos = rdata_at + rdlen;
        if pos > message.len() {
            return Err(bad);
        }
        if rtype == TSIG_TYPE {
            if index + 1 != total || ar == 0 {
                return Err(MalformedTsig("TSIG is not the last additional record"));
            }
            found = Some((start, rdata_at, pos));
        }
    }
    let Some((start, rdata_at, end)) = found else {
        return Ok(None);
    };
    let malformed = MalformedTsig("bad TSIG record");
    let (key_name, _) = read_name(message, start).ok_or(malformed.clone())?;
    let (algorithm, mut at) = read_name(message, rdata_at).ok_or(malformed.clone())?;
    let field = |at: usize, len: usize| message.get(at..at + len).filter(|_| at + len <= end);
    let fixed = field(at, 10).ok_or(malformed.clone())?;
    let time_signed = fixed[..6]
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let fudge = u16::from_be_bytes([fixed[6], fixed[7]]);
    let mac_len = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    at += 10;
    let mac = field(at, mac_len).ok_or(malformed.clone())?.to_vec();
    at += mac_len;
    let tail = field(at, 6).ok_or(malformed.clone())?;
    let original_id = u16::from_be_bytes([tail[0], tail[1]]);
    let error = u16::from_be_bytes([tail[2], tail[3]]);
    let other_len = usize::from(u16::from_be_bytes([tail[4], tail[5]]));
    at += 6;
    let other = field(at, other_len).ok_or(malformed.clone())?.to_vec();
    if at + other_len != end {
        return Err(malformed);
    }
    let key_name = Name::from_octets(Bytes::from(key_name)).map_err(|_| malformed.clone())?;
    let algorithm = text_from_wire(&algorithm);
    Ok(Some(TsigRecord {
        start,
        key_name,
        algorithm,
        time_signed,
        fudge,
        mac,
        original_id,
        error,
        other,
    }))
}

/// The message as it was before `record` was added: TSIG removed, ARCOUNT
/// one less, the original ID back (RFC 8945 §4.3.1).
pub fn strip(message: &[u8], record: &TsigRecord) -> Vec<u8> {
    let mut stripped = message[..record.start].to_vec();
    stripped[..2].copy_from_slice(&record.original_id.to_be_bytes());
    let arcount = u16::from_be_bytes([stripped[10], stripped[11]]).saturating_sub(1);
    stripped[10..12].copy_from_slice(&arcount.to_be_bytes());
    stripped
}

/// The current time as TSIG counts it.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What the server makes of a signed request (RFC 8945 §5.2).
#[derive(Debug)]
pub enum RequestCheck<'k> {
    /// Signed with this key: answer, and sign the answer with a [`Signer`].
    Verified { key: &'k Key, request_mac: Vec<u8> },
    /// Unknown key or algorithm: NOTAUTH, BADKEY, unsigned (§5.2.1).
    BadKey,
    /// The MAC does not verify: NOTAUTH, BADSIG, unsigned (§5.2.2).
    BadSig,
    /// Signed, but outside the fudge: NOTAUTH, BADTIME, signed (§5.2.3).
    BadTime { key: &'k Key, request_mac: Vec<u8> },
}

/// Checks a signed request's key, MAC, time and MAC length, in the order of
/// RFC 8945 §5.2. `lookup` finds a key by name.
pub fn verify_request<'k>(
    message: &[u8],
    record: &TsigRecord,
    lookup: impl FnOnce(&Name) -> Option<&'k Key>,
    now: u64,
) -> Result<RequestCheck<'k>, MalformedTsig> {
    let Some(key) = lookup(&record.key_name).filter(|k| k.algorithm.name() == record.algorithm)
    else {
        return Ok(RequestCheck::BadKey);
    };
    // §5.2.2.1: a MAC longer than the algorithm's, or truncated below half
    // of it or 10 octets, is malformed.
    let full = key.algorithm.mac_len();
    if record.mac.len() > full || record.mac.len() < (full / 2).max(10) {
        return Err(MalformedTsig("TSIG MAC size out of range"));
    }
    let stripped = strip(message, record);
    let mut context = hmac::Context::with_key(&key.key);
    context.update(&stripped);
    context.update(&variables(
        &key.wire_name,
        &wire_from_text(&record.algorithm),
        record.time_signed,
        record.fudge,
        record.error,
        &record.other,
    ));
    let mac = context.sign();
    if !equal_prefix(mac.as_ref(), &record.mac) {
        return Ok(RequestCheck::BadSig);
    }
    let request_mac = record.mac.clone();
    if now.abs_diff(record.time_signed) > u64::from(record.fudge) {
        return Ok(RequestCheck::BadTime { key, request_mac });
    }
    Ok(RequestCheck::Verified { key, request_mac })
}

/// Compares a received (possibly truncated) MAC with the start of the
/// computed one, in time independent of where they differ.
fn equal_prefix(computed: &[u8], received: &[u8]) -> bool {
    received.len() <= computed.len()
        && computed
            .iter()
            .zip(received)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// Signs the messages of one answer (the server's side), or one request
/// (the client's, through [`sign_request`]).
pub struct Signer<K> {
    key: K,
    /// The MAC the next message is chained to: the request's for the first
    /// message of an answer, then each message's own (§4.3.1).
    prior_mac: Option<Vec<u8>>,
    first: bool,
    error: u16,
    /// The request's time, for a BADTIME answer (§5.2.3).
    time_signed: Option<u64>,
}

impl<K: AsRef<Key>> Signer<K> {
    /// Signs the answer to a request that carried `request_mac`.
    pub fn answer(key: K, request_mac: Vec<u8>) -> Signer<K> {
        Signer {
            key,
            prior_mac: Some(request_mac),
            first: true,
            error: error::NOERROR,
            time_signed: None,
        }
    }

    /// Signs an error answer (BADTIME) to a request whose MAC verified: the
    /// record carries the request's time and our own in Other Data (§5.2.3).
    pub fn error_answer(key: K, request_mac: Vec<u8>, error: u16, request_time: u64) -> Signer<K> {
        Signer {
            key,
            prior_mac: Some(request_mac),
            first: true,
            error,
            time_signed: (error == self::error::BADTIME).then_some(request_time),
        }
    }

    /// The key signing.
    pub fn key(&self) -> &Key {
        self.key.as_ref()
    }

    /// Appends a TSIG record to `message` (a finished message in wire form).
    pub fn sign(&mut self, message: &mut Vec<u8>, now: u64) {
        let key = self.key.as_ref();
        let id = u16::from_be_bytes([message[0], message[1]]);
        let time_signed = self.time_signed.unwrap_or(now);
        let other = if self.error == error::BADTIME {
            now.to_be_bytes()[2..].to_vec()
        } else {
            Vec::new()
        };
        let algorithm = key.algorithm.wire_name();
        let mut context = hmac::Context::with_key(&key.key);
        if let Some(prior) = &self.prior_mac {
            context.update(&(prior.len() as u16).to_be_bytes());
            context.update(prior);
        }
        context.update(message);
        if self.first {
            context.update(&variables(
                &key.wire_name,
                &algorithm,
                time_signed,
                FUDGE,
                self.error,
                &other,
            ));
        } else {
            context.update(&timers(time_signed, FUDGE));
        }
        let mac = context.sign().as_ref().to_vec();
        append_record(
            message,
            &key.wire_name,
            &algorithm,
            time_signed,
            &mac,
            id,
            self.error,
            &other,
        );
        self.prior_mac = Some(mac);
        self.first = false;
    }
}

/// Appends an unsigned TSIG record naming `record`'s key with an error
/// (BADKEY, BADSIG: §5.3.2, the MAC empty).
pub fn append_unsigned_error(message: &mut Vec<u8>, record: &TsigRecord, error: u16) {
    let id = u16::from_be_bytes([message[0], message[1]]);
    append_record(
        message,
        record.key_name.as_slice(),
        &wire_from_text(&record.algorithm),
        record.time_signed,
        &[],
        id,
        error,
        &[],
    );
}

/// Signs a request (a finished message) with `key`; the MAC it returns
/// is what the answer is chained to ([`Verifier::new`]).
pub fn sign_request(key: &Key, message: &mut Vec<u8>, now: u64) -> Vec<u8> {
    let mut signer = Signer {
        key,
        prior_mac: None,
        first: true,
        error: error::NOERROR,
        time_signed: None,
    };
    signer.sign(message, now);
    signer.prior_mac.expect("a signed message has a MAC")
}

/// Why a signed answer was not accepted (the client's side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyError {
    Malformed(&'static str),
    /// The first message of the answer is not signed.
    Unsigned,
    /// More than 99 unsigned messages in a row (§5.3.1).
    TooManyUnsigned,
    /// Signed with another key or algorithm.
    WrongKey,
    /// The server reports a TSIG error (BADKEY, BADSIG, BADTIME …).
    ServerError(u16),
    BadSig,
    BadTime,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyError::Malformed(why) => write!(f, "malformed TSIG: {why}"),
            VerifyError::Unsigned => f.write_str("answer is not TSIG-signed"),
            VerifyError::TooManyUnsigned => f.write_str("more than 99 unsigned messages in a row"),
            VerifyError::WrongKey => f.write_str("answer is signed with another key"),
            VerifyError::ServerError(code) => {
                write!(f, "server answered TSIG error {}", error_name(*code))
            }
            VerifyError::BadSig => f.write_str("TSIG signature does not verify"),
            VerifyError::BadTime => f.write_str("TSIG time is outside the fudge"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// The name of a TSIG error code.
pub fn error_name(code: u16) -> String {
    match code {
        error::BADSIG => "BADSIG".to_owned(),
        error::BADKEY => "BADKEY".to_owned(),
        error::BADTIME => "BADTIME".to_owned(),
        other => other.to_string(),
    }
}

/// Checks the messages of a signed answer in order (the client's side).
pub struct Verifier<K> {
    key: K,
    /// The running digest: prior MAC, then the messages since it (§5.3.1).
    context: hmac::Context,
    first: bool,
    unsigned: usize,
}

impl<K: AsRef<Key>> Verifier<K> {
    /// For the answer to a request signed with `key` whose MAC was `request_mac`.
    pub fn new(key: K, request_mac: &[u8]) -> Verifier<K> {
        Verifier {
            context: chained(key.as_ref(), request_mac),
            key,
            first: true,
            unsigned: 0,
        }
    }

    /// Checks the next message; returns it with its TSIG removed.
    pub fn verify(&mut self, message: &[u8], now: u64) -> Result<Vec<u8>, VerifyError> {
        let key = self.key.as_ref();
        let record = find(message).map_err(|e| VerifyError::Malformed(e.0))?;
        let Some(record) = record else {
            // §5.3.1: only messages after the first may go unsigned, up to 99.
            if self.first {
                return Err(VerifyError::Unsigned);
            }
            self.unsigned += 1;
            if self.unsigned > 99 {
                return Err(VerifyError::TooManyUnsigned);
            }
            self.context.update(message);
            return Ok(message.to_vec());
        };
        if record.key_name != key.name || record.algorithm != key.algorithm.name() {
            return Err(VerifyError::WrongKey);
        }
        if record.error != error::NOERROR && record.mac.is_empty() {
            return Err(VerifyError::ServerError(record.error));
        }
        let full = key.algorithm.mac_len();
        if record.mac.len() > full || record.mac.len() < (full / 2).max(10) {
            return Err(VerifyError::Malformed("TSIG MAC size out of range"));
        }
        let stripped = strip(message, &record);
        let mut context = std::mem::replace(&mut self.context, chained(key, &[]));
        context.update(&stripped);
        if self.first {
            context.update(&variables(
                &key.wire_name,
                &key.algorithm.wire_name(),
                record.time_signed,
                record.fudge,
                record.error,
                &record.other,
            ));
        } else {
            context.update(&timers(record.time_signed, record.fudge));
        }
        if !equal_prefix(context.sign().as_ref(), &record.mac) {
            return Err(VerifyError::BadSig);
        }
        if record.error != error::NOERROR {
            return Err(VerifyError::ServerError(record.error));
        }
        if now.abs_diff(record.time_signed) > u64::from(record.fudge) {
            return Err(VerifyError::BadTime);
        }
        self.context = chained(key, &record.mac);
        self.first = false;
        self.unsigned = 0;
        Ok(stripped)
    }

    /// Whether the answer may end here: its last message must be signed (§5.3.1).
    pub fn finish(&self) -> Result<(), VerifyError> {
        if self.first || self.unsigned > 0 {
            return Err(VerifyError::Unsigned);
        }
        Ok(())
    }
}

fn chained(key: &Key, prior_mac: &[u8]) -> hmac::Context {
    let mut context = hmac::Context::with_key(&key.key);
    if !prior_mac.is_empty() {
        context.update(&(prior_mac.len() as u16).to_be_bytes());
        context.update(prior_mac);
    }
    context
}

/// The TSIG variables a MAC covers (RFC 8945 §4.3.3): names in canonical
/// wire form, class ANY, TTL 0, then the record's fields without the MAC
/// and original ID.
fn variables(
    key_name: &[u8],
    algorithm: &[u8],
    time_signed: u64,
    fudge: u16,
    error: u16,
    other: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(key_name.len() + algorithm.len() + 24 + other.len());
    out.extend_from_slice(key_name);
    out.extend_from_slice(&CLASS_ANY.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(algorithm);
    out.extend_from_slice(&timers(time_signed, fudge));
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&(other.len() as u16).to_be_bytes());
    out.extend_from_slice(other);
    out
}

/// Time Signed and Fudge, all that later messages of an answer cover (§4.3.1).
fn timers(time_signed: u64, fudge: u16) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..6].copy_from_slice(&time_signed.to_be_bytes()[2..]);
    out[6..].copy_from_slice(&fudge.to_be_bytes());
    out
}

#[allow(clippy::too_many_arguments)]
fn append_record(
    message: &mut Vec<u8>,
    key_name: &[u8],
    algorithm: &[u8],
    time_signed: u64,
    mac: &[u8],
    original_id: u16,
    error: u16,
    other: &[u8],
) {
    let rdlen = algorithm.len() + 16 + mac.len() + other.len();
    message.extend_from_slice(key_name);
    message.extend_from_slice(&TSIG_TYPE.to_be_bytes());
    message.extend_from_slice(&CLASS_ANY.to_be_bytes());
    message.extend_from_slice(&0u32.to_be_bytes());
    message.extend_from_slice(&(rdlen as u16).to_be_bytes());
    message.extend_from_slice(algorithm);
    message.extend_from_slice(&timers(time_signed, FUDGE)[..6]);
    message.extend_from_slice(&FUDGE.to_be_bytes());
    message.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    message.extend_from_slice(mac);
    message.extend_from_slice(&original_id.to_be_bytes());
    message.extend_from_slice(&error.to_be_bytes());
    message.extend_from_slice(&(other.len() as u16).to_be_bytes());
    message.extend_from_slice(other);
    let arcount = u16::from_be_bytes([message[10], message[11]]).wrapping_add(1);
    message[10..12].copy_from_slice(&arcount.to_be_bytes());
}

/// The end of the (possibly compressed) name at `pos`.
fn skip_name(message: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *message.get(pos)?;
        match len & 0xC0 {
            0xC0 => return (pos + 2 <= message.len()).then_some(pos + 2),
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => pos += 1 + usize::from(len),
            _ => return None,
        }
    }
}

/// The name at `pos` in canonical wire form (lower case, pointers
/// followed), and where the name ends in the message.
fn read_name(message: &[u8], mut pos: usize) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut end = None;
    // Each pointer must go backwards, so a name is read in bounded steps.
    let mut limit = pos;
    loop {
        let len = *message.get(pos)?;
        match len & 0xC0 {
            0xC0 => {
                let target =
                    usize::from(u16::from_be_bytes([len, *message.get(pos + 1)?]) & 0x3FFF);
                end.get_or_insert(pos + 2);
                if target >= limit {
                    return None;
                }
                limit = target;
                pos = target;
            }
            0x00 if len == 0 => {
                out.push(0);
                return (out.len() <= 255).then(|| (out, end.unwrap_or(pos + 1)));
            }
            0x00 => {
                let label = message.get(pos + 1..pos + 1 + usize::from(len))?;
                out.push(len);
                out.extend(label.iter().map(u8::to_ascii_lowercase));
                if out.len() > 255 {
                    return None;
                }
                pos += 1 + usize::from(len);
            }
            _ => return None,
        }
    }
}

fn wire_from_text(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in text
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    out.push(0);
    out
}

fn text_from_wire(wire: &[u8]) -> String {
    let mut labels = Vec::new();
    let mut pos = 0;
    while let Some(&len) = wire.get(pos) {
        if len == 0 {
            break;
        }
        let label = &wire[pos + 1..pos + 1 + usize::from(len)];
        labels.push(String::from_utf8_lossy(label).into_owned());
        pos += 1 + usize::from(len);
    }
    labels.join(".")
}

#[cfg(test)]
mod tests;
