//! One upstream server and the exchange of one query with it.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use oxidns_proto::{Class, Edns, Name, Opcode, OptRcode, Query, ReceivedResponse, Response, Rtype};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::{TcpStream, UdpSocket};

use crate::rtt::{MAX_TIMEOUT, RttEstimator};
use crate::tls::TlsSettings;

/// How long an idle TCP or TLS connection is kept for reuse unless told otherwise.
pub const DEFAULT_EXPIRE: Duration = Duration::from_secs(10);
/// Idle connections kept per upstream and transport; the oldest go first.
const MAX_IDLE: usize = 64;
/// Datagrams that do not match read on one UDP try before giving up on it.
const MAX_IGNORED: usize = 64;

/// A transport to an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Udp,
    Tcp,
    /// DNS over TLS (RFC 7858).
    Tls,
}

impl Protocol {
    /// As CoreDNS labels it in metrics: `udp`, `tcp`, `tcp-tls`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tcp-tls",
        }
    }
}

/// A query to send, built anew for every try from these fields (never by
/// copying a client's bytes): each try gets its own random ID (RFC 5452 §9.2).
#[derive(Clone, Debug)]
pub struct OutgoingQuery {
    pub qname: Name,
    pub qtype: Rtype,
    pub qclass: Class,
    pub opcode: Opcode,
    pub rd: bool,
    pub cd: bool,
    pub ad: bool,
    /// The OPT record to send, if any.
    pub edns: Option<Edns>,
}

impl OutgoingQuery {
    /// A recursive query in class IN without EDNS.
    pub fn new(qname: Name, qtype: Rtype) -> OutgoingQuery {
        OutgoingQuery {
            qname,
            qtype,
            qclass: Class::IN,
            opcode: Opcode::QUERY,
            rd: true,
            cd: false,
            ad: false,
            edns: None,
        }
    }

    /// The question, flags and EDNS of a received query.
    pub fn from_query(query: &Query) -> OutgoingQuery {
        OutgoingQuery {
            qname: query.qname.clone(),
            qtype: query.qtype,
            qclass: query.qclass,
            opcode: query.opcode,
            rd: query.rd,
            cd: query.cd,
            ad: query.ad,
            edns: query.edns.clone(),
        }
    }

    /// The message with this ID.
    pub fn encode(&self, id: u16) -> Vec<u8> {
        let mut wire = Query::build(id, &self.qname, self.qtype, self.qclass, self.edns.as_ref());
        // Header flags (RFC 1035 §4.1.1, RFC 4035 §3.2): byte 2 is QR|Opcode|AA|TC|RD,
        // byte 3 is RA|Z|AD|CD|RCODE.
        wire[2] = (self.opcode.to_int() & 0x0f) << 3 | u8::from(self.rd);
        wire[3] = if self.ad { 0x20 } else { 0 } | if self.cd { 0x10 } else { 0 };
        wire
    }

    /// Whether `response` answers this question (RFC 5452 §9.1): same
    /// question, compared without regard to case. Error responses without a
    /// question, as some servers send for FORMERR, NOTIMP and REFUSED, count.
    fn answered_by(&self, response: &ReceivedResponse) -> bool {
        if response.opcode != self.opcode {
            return false;
        }
        match &response.question {
            Some((qname, qtype, qclass)) => {
                *qname == self.qname && *qtype == self.qtype && *qclass == self.qclass
            }
            None => matches!(
                response.response.rcode,
                OptRcode::FORMERR | OptRcode::NOTIMP | OptRcode::REFUSED
            ),
        }
    }
}

/// How to send one query.
#[derive(Clone, Copy, Debug)]
pub struct ExchangeOptions {
    pub protocol: Protocol,
    /// Over UDP, ask again over TCP when the answer is truncated (TC=1).
    pub tcp_on_truncation: bool,
    /// A fixed timeout for the try instead of the one from the measured RTT.
    pub timeout: Option<Duration>,
}

impl ExchangeOptions {
    pub fn new(protocol: Protocol) -> ExchangeOptions {
        ExchangeOptions {
            protocol,
            tcp_on_truncation: false,
            timeout: None,
        }
    }
}

/// A response that matched the query.
#[derive(Clone, Debug)]
pub struct Exchanged {
    pub response: ReceivedResponse,
    /// The transport that brought it (TCP after a truncated UDP answer).
    pub protocol: Protocol,
    /// From sending the query to reading the answer, connecting excluded.
    pub rtt: Duration,
}

/// Why a try brought no answer.
#[derive(Debug)]
pub enum ExchangeError {
    /// Nothing that matched came back in time.
    Timeout,
    /// The network said no: refused, reset, unreachable, TLS failure.
    Io(io::Error),
    /// The upstream's answer to our ID could not be read (TCP and TLS).
    BadResponse(&'static str),
    /// A TLS exchange was asked of an upstream without TLS settings.
    NoTls,
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::Timeout => f.write_str("i/o timeout"),
            ExchangeError::Io(e) => write!(f, "{e}"),
            ExchangeError::BadResponse(why) => write!(f, "bad response: {why}"),
            ExchangeError::NoTls => f.write_str("no TLS settings for this upstream"),
        }
    }
}

impl std::error::Error for ExchangeError {}

impl From<io::Error> for ExchangeError {
    fn from(e: io::Error) -> Self {
        ExchangeError::Io(e)
    }
}

/// Told of every connection a TCP or TLS try uses (`true`: reused from the
/// pool) and of every UDP socket (always new), for metrics.
pub type ConnObserver = Arc<dyn Fn(Protocol, bool) + Send + Sync>;

/// How an [`Upstream`] behaves.
#[derive(Clone, Default)]
pub struct UpstreamConfig {
    /// Idle connections older than this are closed; `None` means [`DEFAULT_EXPIRE`],
    /// zero means no reuse.
    pub expire: Option<Duration>,
    /// For [`Protocol::Tls`].
    pub tls: Option<TlsSettings>,
    pub on_connection: Option<ConnObserver>,
}

/// One upstream server: its address, pooled connections and measured RTT.
/// Cloning is cheap and shares all three.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    expire: Duration,
    tls: Option<TlsSettings>,
    observer: Option<ConnObserver>,
    rtt: RttEstimator,
    tcp: Pool,
    tls_pool: Pool,
    reaper: AtomicBool,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.inner.addr)
            .field("tls", &self.inner.tls.is_some())
            .finish_non_exhaustive()
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

struct Idle {
    conn: Box<dyn Stream>,
    since: Instant,
}

/// Idle connections, newest last.
#[derive(Default)]
struct Pool {
    idle: Mutex<Vec<Idle>>,
}

impl Pool {
    fn take(&self, expire: Duration) -> Option<Box<dyn Stream>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|c| c.since.elapsed() < expire);
        idle.pop().map(|c| c.conn)
    }

    fn put(&self, conn: Box<dyn Stream>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    fn purge(&self, expire: Duration) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|c| c.since.elapsed() < expire);
    }

    fn len(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// What went wrong on a stream, and whether it was a pooled connection the
/// server had closed before we wrote (then a fresh connection is tried).
enum StreamError {
    Stale,
    Failed(ExchangeError),
}

impl From<io::Error> for StreamError {
    fn from(e: io::Error) -> Self {
        StreamError::Failed(ExchangeError::Io(e))
    }
}

impl Upstream {
    pub fn new(addr: SocketAddr, config: UpstreamConfig) -> Upstream {
        Upstream {
            inner: Arc::new(Inner {
                addr,
                expire: config.expire.unwrap_or(DEFAULT_EXPIRE),
                tls: config.tls,
                observer: config.on_connection,
                rtt: RttEstimator::default(),
                tcp: Pool::default(),
                tls_pool: Pool::default(),
                reaper: AtomicBool::new(false),
            }),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The timeout of the next try, from the RTT measured so far.
    pub fn timeout(&self) -> Duration {
        self.inner.rtt.timeout()
    }

    /// The smoothed RTT, once an answer was measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.inner.rtt.srtt()
    }

    /// Idle pooled connections for this protocol (for tests and debugging).
    pub fn idle_connections(&self, protocol: Protocol) -> usize {
        match protocol {
            Protocol::Udp => 0,
            Protocol::Tcp => self.inner.tcp.len(),
            Protocol::Tls => self.inner.tls_pool.len(),
        }
    }

    /// Sends `query` once and waits for the answer that matches it.
    pub async fn exchange(
        &self,
        query: &OutgoingQuery,
        options: ExchangeOptions,
    ) -> Result<Exchanged, ExchangeError> {
        let timeout = options.timeout.unwrap_or_else(|| self.timeout());
        match options.protocol {
            Protocol::Udp => {
                let (response, rtt) = self.udp(query, timeout).await?;
                if response.response.truncated && options.tcp_on_truncation {
                    // RFC 7766 §5: a truncated answer is asked again over TCP.
                    let (response, rtt) = self.stream(Protocol::Tcp, query, timeout).await?;
                    return Ok(Exchanged {
                        response,
                        protocol: Protocol::Tcp,
                        rtt,
                    });
                }
                Ok(Exchanged {
                    response,
                    protocol: Protocol::Udp,
                    rtt,
                })
            }
            protocol => {
                let (response, rtt) = self.stream(protocol, query, timeout).await?;
                Ok(Exchanged {
                    response,
                    protocol,
                    rtt,
                })
            }
        }
    }

    fn observe(&self, protocol: Protocol, reused: bool) {
        if let Some(observer) = &self.inner.observer {
            observer(protocol, reused);
        }
    }

    /// One UDP try, RFC 5452 §9: a new socket, so a new port chosen at random
    /// by the kernel (Linux randomises ephemeral ports), connected to the
    /// upstream so the kernel drops datagrams from any other address; a
    /// random ID; and only an answer with our ID and question is taken. Others
    /// are ignored and we keep waiting until the timeout.
    async fn udp(
        &self,
        query: &OutgoingQuery,
        timeout: Duration,
    ) -> Result<(ReceivedResponse, Duration), ExchangeError> {
        let addr = self.inner.addr;
        let local: SocketAddr = match addr {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(addr).await?;
        self.observe(Protocol::Udp, false);
        let id: u16 = rand::random();
        let wire = query.encode(id);
        let start = Instant::now();
        let deadline = tokio::time::Instant::from_std(start + timeout);
        socket.send(&wire).await?;
        for _ in 0..MAX_IGNORED {
            // The buffer is taken only once a datagram is there: a query that
            // waits holds no 64 KiB of it (a flood of queries to a silent
            // upstream must not grow the server by that much per query).
            let waited = tokio::time::timeout_at(
                deadline,
                socket.ready(Interest::READABLE | Interest::ERROR),
            );
            let Ok(ready) = waited.await else {
                self.inner.rtt.timed_out();
                return Err(ExchangeError::Timeout);
            };
            // A refusal (ICMP port unreachable) shows as an error on the
            // socket, never as readable: unseen, every try to a stopped
            // upstream waited out its whole timeout.
            if ready?.is_error()
                && let Some(e) = socket.take_error()?
            {
                return Err(e.into());
            }
            let mut buf = Vec::with_capacity(65535);
            let (len, from) = match socket.try_recv_buf_from(&mut buf) {
                Ok(received) => received,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            };
            if !same_endpoint(from, addr) {
                continue;
            }
            if let Some(response) = matching(&buf[..len], id, query) {
                let rtt = start.elapsed();
                self.inner.rtt.sample(rtt);
                return Ok((response, rtt));
            }
            tracing::debug!(upstream = %addr, "ignored a datagram that does not answer our query");
        }
        Err(ExchangeError::BadResponse(
            "too many datagrams that do not match",
        ))
    }

    /// One TCP or TLS try (RFC 7766, RFC 7858) on a pooled connection, or a
    /// new one. One query at a time per connection; the connection goes back
    /// to the pool after a clean answer and is closed after an error.
    async fn stream(
        &self,
        protocol: Protocol,
        query: &OutgoingQuery,
        timeout: Duration,
    ) -> Result<(ReceivedResponse, Duration), ExchangeError> {
        let pool = match protocol {
            Protocol::Tls => &self.inner.tls_pool,
            _ => &self.inner.tcp,
        };
        let expire = self.inner.expire;
        // Every pooled connection the server closed is dropped; a few in a row at most.
        for _ in 0..4 {
            let pooled = if expire.is_zero() {
                None
            } else {
                pool.take(expire)
            };
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(conn) => conn,
                // Connecting takes one RTT, and a TLS handshake one or two more.
                None => {
                    tokio::time::timeout((timeout * 3).min(2 * MAX_TIMEOUT), self.connect(protocol))
                        .await
                        .map_err(|_| {
                            self.inner.rtt.timed_out();
                            ExchangeError::Timeout
                        })??
                }
            };
            self.observe(protocol, reused);
            match self.query_on(&mut conn, query, timeout, reused).await {
                Ok(done) => {
                    if !expire.is_zero() {
                        pool.put(conn);
                        self.start_reaper();
                    }
                    return Ok(done);
                }
                Err(StreamError::Stale) => continue,
                Err(StreamError::Failed(e)) => return Err(e),
            }
        }
        Err(ExchangeError::Io(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "pooled connections closed by the upstream",
        )))
    }

    async fn connect(&self, protocol: Protocol) -> Result<Box<dyn Stream>, ExchangeError> {
        let tcp = TcpStream::connect(self.inner.addr).await?;
        tcp.set_nodelay(true)?;
        if protocol != Protocol::Tls {
            return Ok(Box::new(tcp));
        }
        let tls = self.inner.tls.as_ref().ok_or(ExchangeError::NoTls)?;
        let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
        let stream = connector.connect(tls.server_name.clone(), tcp).await?;
        Ok(Box::new(stream))
    }

    /// Writes the query with its two-byte length (RFC 1035 §4.2.2) and reads
    /// messages until the one with our ID and question.
    async fn query_on(
        &self,
        conn: &mut Box<dyn Stream>,
        query: &OutgoingQuery,
        timeout: Duration,
        reused: bool,
    ) -> Result<(ReceivedResponse, Duration), StreamError> {
        let id: u16 = rand::random();
        let wire = query.encode(id);
        let mut framed = Vec::with_capacity(wire.len() + 2);
        framed.extend_from_slice(&(wire.len() as u16).to_be_bytes());
        framed.extend_from_slice(&wire);
        let start = Instant::now();
        let deadline = tokio::time::Instant::from_std(start + timeout);
        let timed_out = || {
            self.inner.rtt.timed_out();
            StreamError::Failed(ExchangeError::Timeout)
        };
        let written = tokio::time::timeout_at(deadline, async {
            conn.write_all(&framed).await?;
            conn.flush().await
        })
        .await
        .map_err(|_| timed_out())?;
        if let Err(e) = written {
            return Err(if reused { StreamError::Stale } else { e.into() });
        }
        let mut first = true;
        for _ in 0..MAX_IGNORED {
            let mut len = [0u8; 2];
            match tokio::time::timeout_at(deadline, conn.read_exact(&mut len))
                .await
                .map_err(|_| timed_out())?
            {
                Ok(_) => {}
                // A pooled connection the server closed while it sat idle.
                Err(_) if reused && first => return Err(StreamError::Stale),
                Err(e) => return Err(e.into()),
            }
            first = false;
            let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
            tokio::time::timeout_at(deadline, conn.read_exact(&mut message))
                .await
                .map_err(|_| timed_out())??;
            if message.len() >= 2 && message[..2] == id.to_be_bytes() {
                let response = Response::parse(&message)
                    .map_err(|e| StreamError::Failed(ExchangeError::BadResponse(e.0)))?;
                if !query.answered_by(&response) {
                    return Err(StreamError::Failed(ExchangeError::BadResponse(
                        "the question does not match",
                    )));
                }
                let rtt = start.elapsed();
                self.inner.rtt.sample(rtt);
                return Ok((response, rtt));
            }
        }
        Err(StreamError::Failed(ExchangeError::BadResponse(
            "too many messages that do not match",
        )))
    }

    /// Closes idle connections once they are `expire` old, while the upstream lives.
    fn start_reaper(&self) {
        if self.inner.reaper.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.reaper.store(false, Ordering::Relaxed);
            return;
        };
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let period = (self.inner.expire / 2).max(Duration::from_millis(50));
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(inner) = weak.upgrade() else { return };
                inner.tcp.purge(inner.expire);
                inner.tls_pool.purge(inner.expire);
            }
        });
    }
}

/// Addresses compared with IPv4-mapped IPv6 seen as IPv4.
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

/// The response, if `bytes` is one to our ID and question.
fn matching(bytes: &[u8], id: u16, query: &OutgoingQuery) -> Option<ReceivedResponse> {
    if bytes.len() < 12 || bytes[..2] != id.to_be_bytes() {
        return None;
    }
    let response = Response::parse(bytes).ok()?;
    query.answered_by(&response).then_some(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxidns_proto::{EdnsOption, name_from_str};

    fn query() -> OutgoingQuery {
        OutgoingQuery::new(name_from_str("www.example.org").unwrap(), Rtype::A)
    }

    fn answer(q: &OutgoingQuery, id: u16, question: Option<&str>, rcode: u16) -> Vec<u8> {
        let mut wire = q.encode(id);
        if let Some(name) = question {
            let other = OutgoingQuery::new(name_from_str(name).unwrap(), q.qtype);
            wire = other.encode(id);
        }
        wire[2] |= 0x80;
        wire[3] |= rcode as u8;
        wire
    }

    #[test]
    fn encode_sets_flags_and_edns_from_fields() {
        let mut q = query();
        q.rd = false;
        q.cd = true;
        q.ad = true;
        q.edns = Some(Edns {
            udp_payload_size: 1000,
            version: 0,
            dnssec_ok: true,
            options: vec![EdnsOption {
                code: 8,
                data: bytes::Bytes::from_static(&[0, 1, 24, 0, 192, 0, 2]),
            }],
        });
        let parsed = Query::parse(q.encode(77).into()).unwrap();
        assert_eq!(parsed.id, 77);
        assert!(!parsed.rd && parsed.cd && parsed.ad);
        assert_eq!(parsed.edns, q.edns);
        let again = OutgoingQuery::from_query(&parsed);
        assert_eq!(again.encode(77), q.encode(77));
    }

    #[test]
    fn only_our_id_and_question_match() {
        let q = query();
        assert!(matching(&answer(&q, 9, None, 0), 9, &q).is_some());
        assert!(matching(&answer(&q, 10, None, 0), 9, &q).is_none());
        assert!(matching(&answer(&q, 9, Some("evil.example"), 0), 9, &q).is_none());
        assert!(matching(&q.encode(9)[..5], 9, &q).is_none());
        let mut upper = q.clone();
        upper.qname = name_from_str("WWW.EXAMPLE.ORG").unwrap();
        assert!(
            matching(&answer(&upper, 9, None, 0), 9, &q).is_some(),
            "case does not matter"
        );
    }

    #[test]
    fn question_less_answers_count_only_for_errors() {
        let q = query();
        let header_only = |rcode: u8| {
            let mut wire = q.encode(5)[..12].to_vec();
            wire[2] |= 0x80;
            wire[3] |= rcode;
            wire[5] = 0; // QDCOUNT 0
            wire[11] = 0;
            wire
        };
        assert!(matching(&header_only(1), 5, &q).is_some(), "FORMERR");
        assert!(matching(&header_only(0), 5, &q).is_none(), "NOERROR");
    }

    #[test]
    fn protocol_labels_are_coredns_s() {
        assert_eq!(Protocol::Udp.as_str(), "udp");
        assert_eq!(Protocol::Tcp.as_str(), "tcp");
        assert_eq!(Protocol::Tls.as_str(), "tcp-tls");
    }
}
