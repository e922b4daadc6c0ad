//! Incoming zone transfers: an AXFR (RFC 5936) and IXFR (RFC 1995) client
//! over TCP, for `secondary`.
//!
//! A transfer is one query on a fresh TCP connection, answered by as many
//! messages as the server needs. They are read until the closing SOA, each
//! checked (ID, QR, opcode, rcode, question when present), with a timeout
//! for every read and for the whole transfer, and bounds on the number of
//! messages and records; anything else fails the whole transfer, so the
//! caller never sees part of a zone.
//!
//! - [`axfr`]: the zone's records, the opening SOA first, the closing SOA
//!   left out.
//! - [`ixfr`]: per RFC 1995 §4, either [`Ixfr::UpToDate`] (a single SOA not
//!   newer than the client's), [`Ixfr::Full`] (an answer in AXFR form), or
//!   [`Ixfr::Diffs`] (sequences of removed and added records, each with its
//!   SOA).
//!
//! With a TSIG key in [`XfrOptions::key`], the query is signed and every
//! message of the answer must verify, each chained to the one before (RFC
//! 8945 §5.3.1; up to 99 unsigned messages between signed ones, the last
//! one signed); anything else fails the transfer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxidns_proto::domain::base::MessageBuilder;
use oxidns_proto::domain::rdata::Soa;
use oxidns_proto::tsig::{self, Key, Verifier, VerifyError};
use oxidns_proto::{
    Class, Name, Opcode, OptRcode, Rcode, Record, RecordData, Response, Rtype, Serial, Ttl,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Limits of one transfer, and its key.
#[derive(Clone, Debug)]
pub struct XfrOptions {
    /// The longest wait for the connection and for each message.
    pub read_timeout: Duration,
    /// The longest a whole transfer may take.
    pub total_timeout: Duration,
    /// The most messages a transfer may have.
    pub max_messages: usize,
    /// The most records a transfer may have.
    pub max_records: usize,
    /// Sign the query with this TSIG key and demand signed answers.
    pub key: Option<Arc<Key>>,
}

impl Default for XfrOptions {
    fn default() -> XfrOptions {
        XfrOptions {
            read_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(600),
            max_messages: 1_000_000,
            max_records: 10_000_000,
            key: None,
        }
    }
}

/// Why a transfer failed.
#[derive(Debug)]
pub enum XfrError {
    Io(std::io::Error),
    /// No connection or message within the read timeout, or the whole
    /// transfer took too long.
    Timeout,
    /// The server answered with an error (REFUSED, NOTAUTH, NOTIMP …).
    Rcode(OptRcode),
    /// A message that is not part of a valid transfer.
    Malformed(&'static str),
    /// More messages or records than allowed.
    TooLarge,
    /// The connection closed before the closing SOA.
    Incomplete,
    /// A TSIG-signed transfer whose answer did not verify, or a TSIG error
    /// from the server (BADKEY, BADSIG, BADTIME).
    Tsig(VerifyError),
}

impl std::fmt::Display for XfrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XfrError::Io(e) => write!(f, "{e}"),
            XfrError::Timeout => f.write_str("timed out"),
            XfrError::Rcode(rcode) => write!(f, "server answered {rcode}"),
            XfrError::Malformed(why) => write!(f, "malformed transfer: {why}"),
            XfrError::TooLarge => f.write_str("transfer exceeds the size limits"),
            XfrError::Incomplete => f.write_str("connection closed before the transfer ended"),
            XfrError::Tsig(e) => write!(f, "TSIG: {e}"),
        }
    }
}

impl std::error::Error for XfrError {}

impl From<std::io::Error> for XfrError {
    fn from(e: std::io::Error) -> XfrError {
        XfrError::Io(e)
    }
}

/// One difference sequence of an incremental transfer (RFC 1995 §4).
#[derive(Clone, Debug)]
pub struct IxfrDiff {
    /// The SOA of the version the difference starts from.
    pub from_soa: Record,
    /// Records removed (the old SOA not included).
    pub removed: Vec<Record>,
    /// The SOA of the version it leads to.
    pub to_soa: Record,
    /// Records added (the new SOA not included).
    pub added: Vec<Record>,
}

/// What an IXFR brought.
#[derive(Clone, Debug)]
pub enum Ixfr {
    /// The server's version is not newer than ours: its SOA.
    UpToDate(Record),
    /// The whole zone (AXFR form), the SOA first, the closing SOA left out.
    Full(Vec<Record>),
    /// The differences from our version to the server's, in order.
    Diffs(Vec<IxfrDiff>),
}

/// The serial of an SOA record, if it is one.
pub fn soa_serial(record: &Record) -> Option<u32> {
    match record.data() {
        RecordData::Soa(soa) => Some(soa.serial().into_int()),
        _ => None,
    }
}

/// Whether serial `new` is newer than `old` (RFC 1982 §3.2; serials that
/// are exactly 2^31 apart are not comparable, and so not newer).
pub fn serial_newer(new: u32, old: u32) -> bool {
    Serial::from(new) > Serial::from(old)
}

/// Transfers `zone` from `addr` with AXFR, handing `take` each record as it
/// arrives, the SOA first and the closing SOA left out: the caller keeps
/// them as it likes (a secondary, in wire form), and a big zone is not held
/// twice on the way.
pub async fn axfr(
    addr: SocketAddr,
    zone: &Name,
    options: XfrOptions,
    mut take: impl FnMut(Record) -> Result<(), XfrError>,
) -> Result<(), XfrError> {
    let id = rand::random();
    let query = MessageBuilder::new_vec();
    let mut question = query.question();
    question.header_mut().set_id(id);
    question
        .push((zone, Rtype::AXFR, Class::IN))
        .map_err(|_| XfrError::Malformed("query does not fit"))?;
    let wire = question.finish();
    let mut reader = Reader::new(zone.clone(), Rtype::AXFR, id, options);
    let mut opening_serial = None;
    reader
        .run(addr, &wire, |record| {
            axfr_step(&mut opening_serial, record, &mut take)
        })
        .await
}

/// Asks `addr` for the changes to `zone` since `serial` with IXFR over TCP.
pub async fn ixfr(
    addr: SocketAddr,
    zone: &Name,
    serial: u32,
    options: XfrOptions,
) -> Result<Ixfr, XfrError> {
    let id = rand::random();
    let mut query = MessageBuilder::new_vec();
    query.header_mut().set_id(id);
    let mut question = query.question();
    question
        .push((zone, Rtype::IXFR, Class::IN))
        .map_err(|_| XfrError::Malformed("query does not fit"))?;
    let mut authority = question.authority();
    // Only the serial counts (RFC 1995 §3); the other fields are placeholders.
    let soa = Soa::new(
        Name::root(),
        Name::root(),
        serial.into(),
        Ttl::ZERO,
        Ttl::ZERO,
        Ttl::ZERO,
        Ttl::ZERO,
    );
    authority
        .push((zone, Class::IN, 0u32, soa))
        .map_err(|_| XfrError::Malformed("query does not fit"))?;
    let wire = authority.finish();
    let mut reader = Reader::new(zone.clone(), Rtype::IXFR, id, options);
    let mut state = IxfrState::new(serial);
    reader.run(addr, &wire, |record| state.push(record)).await?;
    state.finish()
}

/// The serial of `zone`'s SOA at `addr`, asked over TCP: how a secondary
/// with a TSIG key checks for news, the query signed and the answer
/// verified like a transfer's.
pub async fn query_serial(
    addr: SocketAddr,
    zone: &Name,
    options: XfrOptions,
) -> Result<u32, XfrError> {
    let id = rand::random();
    let mut query = MessageBuilder::new_vec();
    query.header_mut().set_id(id);
    let mut question = query.question();
    question
        .push((zone, Rtype::SOA, Class::IN))
        .map_err(|_| XfrError::Malformed("query does not fit"))?;
    let wire = question.finish();
    let mut reader = Reader::new(zone.clone(), Rtype::SOA, id, options);
    let mut serial = None;
    reader
        .run(addr, &wire, |record| {
            if record.rtype() != Rtype::SOA || *record.owner() != *zone {
                return Err(XfrError::Malformed("answer without the zone's SOA"));
            }
            serial = soa_serial(&record);
            Ok(Step::Done)
        })
        .await?;
    serial.ok_or(XfrError::Malformed("answer without the zone's SOA"))
}

/// Whether a transfer is over after a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    More,
    Done,
}

/// Takes one record of an AXFR answer: the opening SOA (its serial noted),
/// a record of the zone, or the closing SOA that ends it.
fn axfr_step(
    opening_serial: &mut Option<Option<u32>>,
    record: Record,
    take: &mut impl FnMut(Record) -> Result<(), XfrError>,
) -> Result<Step, XfrError> {
    let is_soa = record.rtype() == Rtype::SOA;
    match opening_serial {
        None if !is_soa => Err(XfrError::Malformed("the first record is not the SOA")),
        None => {
            *opening_serial = Some(soa_serial(&record));
            take(record)?;
            Ok(Step::More)
        }
        Some(opening) if is_soa => {
            if soa_serial(&record) != *opening {
                return Err(XfrError::Malformed(
                    "the closing SOA differs from the opening one",
                ));
            }
            Ok(Step::Done)
        }
        Some(_) => {
            take(record)?;
            Ok(Step::More)
        }
    }
}

/// The RFC 1995 §4 reading of an IXFR answer, one record at a time.
struct IxfrState {
    client: u32,
    /// The opening SOA (the server's version).
    first: Option<Record>,
    phase: Phase,
    full: Vec<Record>,
    diffs: Vec<IxfrDiff>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Start,
    Second,
    Full,
    Removing,
    Adding,
    Done,
}

impl IxfrState {
    fn new(client: u32) -> IxfrState {
        IxfrState {
            client,
            first: None,
            phase: Phase::Start,
            full: Vec::new(),
            diffs: Vec::new(),
        }
    }

    fn push(&mut self, record: Record) -> Result<Step, XfrError> {
        let serial = soa_serial(&record);
        match self.phase {
            Phase::Start => {
                let Some(serial) = serial else {
                    return Err(XfrError::Malformed("the first record is not the SOA"));
                };
                self.first = Some(record);
                if !serial_newer(serial, self.client) {
                    self.phase = Phase::Done;
                    return Ok(Step::Done);
                }
                self.phase = Phase::Second;
            }
            Phase::Second => match serial {
                Some(s) if Some(s) == self.first.as_ref().and_then(soa_serial) => {
                    // SOA, SOA: a zone of nothing but its SOA, in AXFR form.
                    self.full
                        .push(self.first.clone().expect("set at the start"));
                    self.phase = Phase::Done;
                    return Ok(Step::Done);
                }
                Some(_) => {
                    self.diffs.push(IxfrDiff {
                        from_soa: record.clone(),
                        removed: Vec::new(),
                        to_soa: record,
                        added: Vec::new(),
                    });
                    self.phase = Phase::Removing;
                }
                None => {
                    self.full
                        .push(self.first.clone().expect("set at the start"));
                    self.full.push(record);
                    self.phase = Phase::Full;
                }
            },
            Phase::Full => {
                if let Some(s) = serial {
                    if Some(s) != self.first.as_ref().and_then(soa_serial) {
                        return Err(XfrError::Malformed(
                            "the closing SOA differs from the opening one",
                        ));
                    }
                    self.phase = Phase::Done;
                    return Ok(Step::Done);
                }
                self.full.push(record);
            }
            Phase::Removing => {
                let diff = self.diffs.last_mut().expect("a diff is open");
                if serial.is_some() {
                    diff.to_soa = record;
                    self.phase = Phase::Adding;
                } else {
                    diff.removed.push(record);
                }
            }
            Phase::Adding => {
                if let Some(s) = serial {
                    if Some(s) == self.first.as_ref().and_then(soa_serial) {
                        self.phase = Phase::Done;
                        return Ok(Step::Done);
                    }
                    self.diffs.push(IxfrDiff {
                        from_soa: record.clone(),
                        removed: Vec::new(),
                        to_soa: record,
                        added: Vec::new(),
                    });
                    self.phase = Phase::Removing;
                } else {
                    self.diffs
                        .last_mut()
                        .expect("a diff is open")
                        .added
                        .push(record);
                }
            }
            Phase::Done => return Err(XfrError::Malformed("records after the closing SOA")),
        }
        Ok(Step::More)
    }

    fn finish(self) -> Result<Ixfr, XfrError> {
        if self.phase != Phase::Done {
            return Err(XfrError::Incomplete);
        }
        let first = self.first.expect("done means started");
        if !self.diffs.is_empty() {
            // The sequences must chain from the client's serial to the server's.
            let mut at = self.client;
            for diff in &self.diffs {
                if soa_serial(&diff.from_soa) != Some(at) {
                    return Err(XfrError::Malformed("difference sequences do not chain"));
                }
                at = soa_serial(&diff.to_soa).unwrap_or(at);
            }
            if Some(at) != soa_serial(&first) {
                return Err(XfrError::Malformed("difference sequences end elsewhere"));
            }
            return Ok(Ixfr::Diffs(self.diffs));
        }
        if self.full.is_empty() {
            return Ok(Ixfr::UpToDate(first));
        }
        Ok(Ixfr::Full(self.full))
    }
}

/// Reads the messages of one transfer.
struct Reader {
    zone: Name,
    qtype: Rtype,
    id: u16,
    options: XfrOptions,
}

impl Reader {
    fn new(zone: Name, qtype: Rtype, id: u16, options: XfrOptions) -> Reader {
        Reader {
            zone,
            qtype,
            id,
            options,
        }
    }

    async fn run(
        &mut self,
        addr: SocketAddr,
        query: &[u8],
        mut each: impl FnMut(Record) -> Result<Step, XfrError>,
    ) -> Result<(), XfrError> {
        let deadline = Instant::now() + self.options.total_timeout;
        let wait = |deadline: Instant, read: Duration| {
            read.min(deadline.saturating_duration_since(Instant::now()))
        };
        let mut stream = tokio::time::timeout(
            wait(deadline, self.options.read_timeout),
            TcpStream::connect(addr),
        )
        .await
        .map_err(|_| XfrError::Timeout)??;
        let mut query = query.to_vec();
        let mut verifier = self.options.key.clone().map(|key| {
            let mac = tsig::sign_request(&key, &mut query, tsig::now());
            Verifier::new(key, &mac)
        });
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
        framed.extend_from_slice(&query);
        tokio::time::timeout(
            wait(deadline, self.options.read_timeout),
            stream.write_all(&framed),
        )
        .await
        .map_err(|_| XfrError::Timeout)??;
        let mut records = 0usize;
        for index in 0..self.options.max_messages {
            let message = tokio::time::timeout(
                wait(deadline, self.options.read_timeout),
                read_message(&mut stream),
            )
            .await
            .map_err(|_| XfrError::Timeout)??;
            let message = match verifier.as_mut() {
                None => message,
                Some(verifier) => verify(verifier, &message)?,
            };
            let response = Response::parse(&message).map_err(|e| XfrError::Malformed(e.0))?;
            if response.id != self.id {
                return Err(XfrError::Malformed("message ID does not match the query"));
            }
            if response.opcode != Opcode::QUERY {
                return Err(XfrError::Malformed("unexpected opcode"));
            }
            if response.response.rcode != OptRcode::from_rcode(Rcode::NOERROR) {
                return Err(XfrError::Rcode(response.response.rcode));
            }
            if response.response.truncated {
                return Err(XfrError::Malformed("truncated message"));
            }
            match &response.question {
                Some((qname, qtype, _)) if *qname != self.zone || *qtype != self.qtype => {
                    return Err(XfrError::Malformed("question does not match the query"));
                }
                None if index == 0 => {
                    return Err(XfrError::Malformed("first message without a question"));
                }
                _ => {}
            }
            if response.response.answer.is_empty() {
                return Err(XfrError::Malformed("message without records"));
            }
            let mut done = false;
            for record in response.response.answer {
                if done {
                    return Err(XfrError::Malformed("records after the closing SOA"));
                }
                records += 1;
                if records > self.options.max_records {
                    return Err(XfrError::TooLarge);
                }
                if record.class() != Class::IN {
                    return Err(XfrError::Malformed("record of another class"));
                }
                done = each(record)? == Step::Done;
            }
            if done {
                if let Some(verifier) = &verifier {
                    verifier.finish().map_err(XfrError::Tsig)?;
                }
                return Ok(());
            }
        }
        Err(XfrError::TooLarge)
    }
}

/// Checks one message of a signed transfer; returns it without its TSIG.
/// An unsigned refusal (a server that knows no TSIG) reports its rcode.
fn verify(verifier: &mut Verifier<Arc<Key>>, message: &[u8]) -> Result<Vec<u8>, XfrError> {
    verifier.verify(message, tsig::now()).map_err(|e| {
        let rcode = Response::parse(message).map(|r| r.response.rcode);
        match (e, rcode) {
            (VerifyError::Unsigned, Ok(rcode)) if rcode != OptRcode::NOERROR => {
                XfrError::Rcode(rcode)
            }
            (e, _) => XfrError::Tsig(e),
        }
    })
}

/// One length-prefixed message (RFC 1035 §4.2.2); a close before it ends
/// the transfer as incomplete.
async fn read_message(stream: &mut TcpStream) -> Result<Vec<u8>, XfrError> {
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).await.map_err(closed)?;
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut message).await.map_err(closed)?;
    Ok(message)
}

fn closed(e: std::io::Error) -> XfrError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        XfrError::Incomplete
    } else {
        XfrError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxidns_proto::domain::rdata::{A, Txt};
    use oxidns_proto::name_from_str;
    use tokio::net::TcpListener;

    /// Every record of an AXFR, in a list.
    async fn axfr_all(
        addr: SocketAddr,
        zone: &Name,
        options: XfrOptions,
    ) -> Result<Vec<Record>, XfrError> {
        let mut records = Vec::new();
        axfr(addr, zone, options, |record| {
            records.push(record);
            Ok(())
        })
        .await?;
        Ok(records)
    }

    fn name(text: &str) -> Name {
        name_from_str(text).unwrap()
    }

    fn soa(serial: u32) -> Record {
        Record::new(
            name("example.org"),
            Class::IN,
            Ttl::from_secs(300),
            RecordData::Soa(Soa::new(
                name("ns.example.org"),
                name("h.example.org"),
                serial.into(),
                Ttl::from_secs(60),
                Ttl::from_secs(30),
                Ttl::from_secs(600),
                Ttl::from_secs(60),
            )),
        )
    }

    fn a(owner: &str, last: u8) -> Record {
        Record::new(
            name(owner),
            Class::IN,
            Ttl::from_secs(300),
            RecordData::A(A::from_octets(192, 0, 2, last)),
        )
    }

    fn txt(owner: &str, text: &str) -> Record {
        Record::new(
            name(owner),
            Class::IN,
            Ttl::from_secs(300),
            RecordData::Txt(Txt::build_from_slice(text.as_bytes()).unwrap()),
        )
    }

    /// A message answering the query `query` with `records`.
    fn message(query: &[u8], records: &[Record], rcode: Rcode) -> Vec<u8> {
        let query = oxidns_proto::Query::parse(bytes::Bytes::copy_from_slice(query)).unwrap();
        let mut response = Response::new(rcode);
        response.authoritative = true;
        response.answer = records.to_vec();
        response.encode(&query, 65535)
    }

    /// A primary on loopback that answers one transfer with these messages
    /// (each a list of records), then closes; `None` closes at once.
    async fn primary(messages: Vec<Vec<Record>>, rcode: Rcode) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let query = read_message(&mut stream).await.unwrap();
            for records in messages {
                let wire = message(&query, &records, rcode);
                let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&wire);
                if stream.write_all(&framed).await.is_err() {
                    return;
                }
            }
        });
        addr
    }

    /// A primary that checks the query's TSIG with `key` and signs each
    /// message of its answer with `signing` (another key to forge).
    async fn signed_primary(
        messages: Vec<Vec<Record>>,
        key: Arc<Key>,
        signing: Arc<Key>,
    ) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let query = read_message(&mut stream).await.unwrap();
            let record = tsig::find(&query).unwrap().expect("a signed query");
            let check = tsig::verify_request(&query, &record, |_| Some(&*key), tsig::now());
            let Ok(tsig::RequestCheck::Verified { request_mac, .. }) = check else {
                panic!("the query verifies: {check:?}");
            };
            let unsigned = tsig::strip(&query, &record);
            let mut signer = tsig::Signer::answer(signing, request_mac);
            for records in messages {
                let mut wire = message(&unsigned, &records, Rcode::NOERROR);
                signer.sign(&mut wire, tsig::now());
                let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&wire);
                if stream.write_all(&framed).await.is_err() {
                    return;
                }
            }
        });
        addr
    }

    fn xfr_key(secret: &[u8]) -> Arc<Key> {
        Arc::new(Key::new(
            &name("xfr.key"),
            tsig::Algorithm::HmacSha256,
            secret,
        ))
    }

    fn three_messages() -> Vec<Vec<Record>> {
        vec![
            vec![soa(5), a("www.example.org", 1)],
            vec![txt("example.org", "hello")],
            vec![a("mail.example.org", 2), soa(5)],
        ]
    }

    #[tokio::test]
    async fn a_signed_axfr_verifies_every_message() {
        let key = xfr_key(b"shared");
        let addr = signed_primary(three_messages(), key.clone(), key.clone()).await;
        let options = XfrOptions {
            key: Some(key),
            ..quick()
        };
        let records = axfr_all(addr, &name("example.org"), options).await.unwrap();
        assert_eq!(records.len(), 4);
    }

    #[tokio::test]
    async fn a_signed_soa_query_reads_the_serial() {
        let key = xfr_key(b"shared");
        let addr = signed_primary(vec![vec![soa(9)]], key.clone(), key.clone()).await;
        let options = XfrOptions {
            key: Some(key),
            ..quick()
        };
        assert_eq!(
            query_serial(addr, &name("example.org"), options)
                .await
                .unwrap(),
            9
        );
    }

    #[tokio::test]
    async fn a_transfer_signed_with_another_secret_fails() {
        let key = xfr_key(b"shared");
        let addr = signed_primary(three_messages(), key.clone(), xfr_key(b"forged")).await;
        let options = XfrOptions {
            key: Some(key),
            ..quick()
        };
        let error = axfr_all(addr, &name("example.org"), options)
            .await
            .unwrap_err();
        assert!(
            matches!(error, XfrError::Tsig(VerifyError::BadSig)),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_unsigned_answer_to_a_signed_query_fails() {
        let addr = primary(three_messages(), Rcode::NOERROR).await;
        let options = XfrOptions {
            key: Some(xfr_key(b"shared")),
            ..quick()
        };
        let error = axfr_all(addr, &name("example.org"), options)
            .await
            .unwrap_err();
        assert!(
            matches!(error, XfrError::Tsig(VerifyError::Unsigned)),
            "{error}"
        );
        let addr = primary(vec![vec![]], Rcode::REFUSED).await;
        let options = XfrOptions {
            key: Some(xfr_key(b"shared")),
            ..quick()
        };
        let error = axfr_all(addr, &name("example.org"), options)
            .await
            .unwrap_err();
        assert!(matches!(error, XfrError::Rcode(_)), "{error}");
    }

    fn quick() -> XfrOptions {
        XfrOptions {
            read_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_secs(5),
            ..XfrOptions::default()
        }
    }

    #[tokio::test]
    async fn axfr_reads_messages_until_the_closing_soa() {
        let addr = primary(
            vec![
                vec![soa(5), a("www.example.org", 1)],
                vec![txt("t.example.org", "hello world")],
                vec![a("ns.example.org", 2), soa(5)],
            ],
            Rcode::NOERROR,
        )
        .await;
        let records = axfr_all(addr, &name("example.org"), quick()).await.unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(soa_serial(&records[0]), Some(5));
    }

    #[tokio::test]
    async fn a_transfer_cut_short_fails() {
        let addr = primary(vec![vec![soa(5), a("www.example.org", 1)]], Rcode::NOERROR).await;
        let error = axfr_all(addr, &name("example.org"), quick())
            .await
            .unwrap_err();
        assert!(matches!(error, XfrError::Incomplete), "{error}");
    }

    #[tokio::test]
    async fn a_refusal_is_reported() {
        let addr = primary(vec![vec![]], Rcode::REFUSED).await;
        let error = axfr_all(addr, &name("example.org"), quick())
            .await
            .unwrap_err();
        assert!(
            matches!(error, XfrError::Rcode(r) if r == OptRcode::REFUSED),
            "{error}"
        );
    }

    #[tokio::test]
    async fn the_record_limit_holds() {
        let addr = primary(
            vec![vec![
                soa(5),
                a("a.example.org", 1),
                a("b.example.org", 2),
                soa(5),
            ]],
            Rcode::NOERROR,
        )
        .await;
        let options = XfrOptions {
            max_records: 3,
            ..quick()
        };
        let error = axfr_all(addr, &name("example.org"), options)
            .await
            .unwrap_err();
        assert!(matches!(error, XfrError::TooLarge), "{error}");
    }

    #[tokio::test]
    async fn ixfr_reads_difference_sequences() {
        let addr = primary(
            vec![
                vec![soa(3), soa(1), a("www.example.org", 1), soa(2)],
                vec![
                    a("www.example.org", 2),
                    soa(2),
                    soa(3),
                    a("new.example.org", 3),
                    soa(3),
                ],
            ],
            Rcode::NOERROR,
        )
        .await;
        match ixfr(addr, &name("example.org"), 1, quick()).await.unwrap() {
            Ixfr::Diffs(diffs) => {
                assert_eq!(diffs.len(), 2);
                assert_eq!(diffs[0].removed.len(), 1);
                assert_eq!(diffs[0].added.len(), 1);
                assert!(diffs[1].removed.is_empty());
                assert_eq!(diffs[1].added.len(), 1);
                assert_eq!(soa_serial(&diffs[1].to_soa), Some(3));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn ixfr_takes_an_axfr_form_answer_and_an_up_to_date_soa() {
        let addr = primary(
            vec![vec![soa(3), a("www.example.org", 1), soa(3)]],
            Rcode::NOERROR,
        )
        .await;
        match ixfr(addr, &name("example.org"), 1, quick()).await.unwrap() {
            Ixfr::Full(records) => assert_eq!(records.len(), 2),
            other => panic!("{other:?}"),
        }
        let addr = primary(vec![vec![soa(3)]], Rcode::NOERROR).await;
        assert!(matches!(
            ixfr(addr, &name("example.org"), 3, quick()).await.unwrap(),
            Ixfr::UpToDate(_)
        ));
    }

    #[test]
    fn serial_arithmetic_wraps_around() {
        assert!(serial_newer(2, 1));
        assert!(serial_newer(0, u32::MAX));
        assert!(serial_newer(5, u32::MAX - 5));
        assert!(!serial_newer(u32::MAX, 0));
        assert!(!serial_newer(7, 7));
        // Exactly 2^31 apart: undefined, so not newer either way.
        assert!(!serial_newer(1 << 31, 0));
        assert!(!serial_newer(0, 1 << 31));
        assert!(serial_newer((1 << 31) - 1, 0));
    }
}
