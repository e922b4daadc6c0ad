//! Upstreams for tests, on loopback only (feature `test-server`): a tiny
//! UDP+TCP (or DoT) DNS server that answers fixed records or misbehaves on
//! command, and Knot DNS (`knotd`) as a real upstream when it is installed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxidns_proto::domain::rdata::{A, Ns, Txt};
use oxidns_proto::{Class, Query, Rcode, Record, RecordData, Response, Rtype, Ttl};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

/// What the test server does with a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// A queries get `192.0.2.TAG`, NS queries an NS record, TXT queries
    /// 20 TXT records of 100 bytes; NOERROR.
    Answer,
    /// An empty answer with this rcode.
    Rcode(Rcode),
    /// Never answers.
    Silent,
    /// Answers after this delay.
    Slow(Duration),
    /// Answers with another ID only.
    WrongId,
    /// A spoofed answer (another ID) first, then the right one.
    WrongIdThenAnswer,
    /// Answers for another question only.
    WrongQuestion,
    /// An answer for another question first, then the right one.
    WrongQuestionThenAnswer,
    /// Bytes that are no DNS message, with the query's ID.
    Garbage,
    /// Garbage first, then the right answer.
    GarbageThenAnswer,
    /// Over UDP an empty answer with TC=1; over TCP the full answer.
    TruncateUdp,
    /// Over TCP, closes every connection at once (UDP answers).
    CloseTcp,
    /// Over TCP, answers and then closes the connection.
    AnswerThenClose,
}

struct State {
    behaviour: Mutex<Behaviour>,
    tag: AtomicU8,
    udp_queries: AtomicUsize,
    tcp_queries: AtomicUsize,
    tcp_connections: AtomicUsize,
    last_query: Mutex<Option<Query>>,
    by_type: Mutex<std::collections::HashMap<Rtype, usize>>,
}

/// A DNS server on 127.0.0.1 (UDP and TCP on one port), or DoT on TCP.
pub struct TestServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Connections and messages a test server handles before it stops reading one connection.
const MAX_MESSAGES_PER_CONN: usize = 100_000;
/// An idle TCP connection is closed after this (CoreDNS and Knot close idle ones too).
const TCP_IDLE: Duration = Duration::from_secs(30);

impl TestServer {
    /// UDP and TCP on 127.0.0.1 with a free port.
    pub async fn start(behaviour: Behaviour) -> TestServer {
        TestServer::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), behaviour).await
    }

    /// UDP and TCP on `ip` (a loopback address) with a free port.
    pub async fn start_on(ip: IpAddr, behaviour: Behaviour) -> TestServer {
        // The UDP port is chosen first; TCP on the same port is almost always free.
        for _ in 0..20 {
            let udp = UdpSocket::bind((ip, 0)).await.expect("bind UDP");
            let addr = udp.local_addr().expect("local address");
            let Ok(tcp) = TcpListener::bind(addr).await else {
                continue;
            };
            let state = State::new(behaviour);
            let tasks = vec![
                tokio::spawn(serve_udp(udp, state.clone())),
                tokio::spawn(serve_tcp(tcp, None, state.clone())),
            ];
            return TestServer { addr, state, tasks };
        }
        panic!("no free port for UDP and TCP on {ip}");
    }

    /// DNS over TLS on 127.0.0.1 with a free port.
    pub async fn start_tls(config: Arc<rustls::ServerConfig>, behaviour: Behaviour) -> TestServer {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind TCP");
        let addr = tcp.local_addr().expect("local address");
        let state = State::new(behaviour);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let tasks = vec![tokio::spawn(serve_tcp(tcp, Some(acceptor), state.clone()))];
        TestServer { addr, state, tasks }
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().unwrap() = behaviour;
    }

    /// The last octet of the A records it answers.
    pub fn set_tag(&self, tag: u8) {
        self.state.tag.store(tag, Ordering::Relaxed);
    }

    pub fn udp_queries(&self) -> usize {
        self.state.udp_queries.load(Ordering::Relaxed)
    }

    pub fn tcp_queries(&self) -> usize {
        self.state.tcp_queries.load(Ordering::Relaxed)
    }

    pub fn queries(&self) -> usize {
        self.udp_queries() + self.tcp_queries()
    }

    pub fn tcp_connections(&self) -> usize {
        self.state.tcp_connections.load(Ordering::Relaxed)
    }

    /// Queries received of this type (health checks are NS queries).
    pub fn queries_for(&self, qtype: Rtype) -> usize {
        self.state
            .by_type
            .lock()
            .unwrap()
            .get(&qtype)
            .copied()
            .unwrap_or(0)
    }

    /// The last query received, as parsed.
    pub fn last_query(&self) -> Option<Query> {
        self.state.last_query.lock().unwrap().clone()
    }
}

impl State {
    fn new(behaviour: Behaviour) -> Arc<State> {
        Arc::new(State {
            behaviour: Mutex::new(behaviour),
            tag: AtomicU8::new(1),
            udp_queries: AtomicUsize::new(0),
            tcp_queries: AtomicUsize::new(0),
            tcp_connections: AtomicUsize::new(0),
            last_query: Mutex::new(None),
            by_type: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// The messages to send for `bytes`, after the returned delay; `None`: close (TCP).
    fn reply(&self, bytes: &[u8], udp: bool) -> Option<(Duration, Vec<Vec<u8>>)> {
        let Ok(query) = Query::parse(bytes::Bytes::copy_from_slice(bytes)) else {
            return Some((Duration::ZERO, Vec::new()));
        };
        *self.by_type.lock().unwrap().entry(query.qtype).or_default() += 1;
        *self.last_query.lock().unwrap() = Some(query.clone());
        let behaviour = self.behaviour.lock().unwrap().clone();
        let limit = if udp {
            usize::from(query.udp_limit())
        } else {
            65535
        };
        let good = || self.answer(&query).encode(&query, limit);
        let wrong_id = || {
            let mut wire = good();
            wire[0] ^= 0x5a;
            wire
        };
        let wrong_question = || {
            let mut other = query.clone();
            other.qname = oxidns_proto::name_from_str("spoofed.invalid").unwrap();
            let mut response = self.answer(&query);
            response.answer.clear();
            response.encode(&other, limit)
        };
        let garbage = || {
            let mut wire = vec![0xffu8; 40];
            wire[..2].copy_from_slice(&query.id.to_be_bytes());
            wire
        };
        let now = Duration::ZERO;
        Some(match behaviour {
            Behaviour::Answer => (now, vec![good()]),
            Behaviour::Rcode(rcode) => (now, vec![Response::new(rcode).encode(&query, limit)]),
            Behaviour::Silent => (now, vec![]),
            Behaviour::Slow(delay) => (delay, vec![good()]),
            Behaviour::WrongId => (now, vec![wrong_id()]),
            Behaviour::WrongIdThenAnswer => (now, vec![wrong_id(), good()]),
            Behaviour::WrongQuestion => (now, vec![wrong_question()]),
            Behaviour::WrongQuestionThenAnswer => (now, vec![wrong_question(), good()]),
            Behaviour::Garbage => (now, vec![garbage()]),
            Behaviour::GarbageThenAnswer => (now, vec![garbage(), good()]),
            Behaviour::TruncateUdp if udp => {
                let mut response = Response::new(Rcode::NOERROR);
                response.truncated = true;
                (now, vec![response.encode(&query, limit)])
            }
            Behaviour::TruncateUdp => (now, vec![good()]),
            Behaviour::CloseTcp if udp => (now, vec![good()]),
            Behaviour::CloseTcp => return None,
            Behaviour::AnswerThenClose => (now, vec![good()]),
        })
    }

    fn answer(&self, query: &Query) -> Response {
        let mut response = Response::new(Rcode::NOERROR);
        response.recursion_available = true;
        let record = |data| Record::new(query.qname.clone(), Class::IN, Ttl::from_secs(60), data);
        match query.qtype {
            Rtype::A => {
                let ip = Ipv4Addr::new(192, 0, 2, self.tag.load(Ordering::Relaxed));
                response.answer.push(record(RecordData::A(A::new(ip))));
            }
            Rtype::NS => {
                let ns = oxidns_proto::name_from_str("ns.test.invalid").unwrap();
                response.answer.push(record(RecordData::Ns(Ns::new(ns))));
            }
            Rtype::TXT => {
                for i in 0..20u8 {
                    let text = vec![b'a' + i % 26; 100];
                    let txt = Txt::build_from_slice(&text).unwrap();
                    response.answer.push(record(RecordData::Txt(txt)));
                }
            }
            _ => {}
        }
        response
    }
}

async fn serve_udp(socket: UdpSocket, state: Arc<State>) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        state.udp_queries.fetch_add(1, Ordering::Relaxed);
        let Some((delay, replies)) = state.reply(&buf[..len], true) else {
            continue;
        };
        let socket = socket.clone();
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            for reply in replies {
                let _ = socket.send_to(&reply, from).await;
            }
        });
    }
}

async fn serve_tcp(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        state.tcp_connections.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_conn(stream, state).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    if let Ok(Ok(stream)) = tokio::time::timeout(TCP_IDLE, handshake).await {
                        serve_conn(stream, state).await;
                    }
                }
            }
        });
    }
}

async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, state: Arc<State>) {
    for _ in 0..MAX_MESSAGES_PER_CONN {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut message).await.is_err() {
            return;
        }
        state.tcp_queries.fetch_add(1, Ordering::Relaxed);
        let Some((delay, replies)) = state.reply(&message, false) else {
            return;
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        for reply in replies {
            let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&reply);
            if stream.write_all(&framed).await.is_err() {
                return;
            }
        }
        if *state.behaviour.lock().unwrap() == Behaviour::AnswerThenClose {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// Knot DNS serving one zone on 127.0.0.1, stopped when dropped.
pub struct Knot {
    pub addr: SocketAddr,
    child: std::process::Child,
    dir: PathBuf,
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Knot {
    /// Starts `knotd` serving `zone_text` as `origin`. `None` if knotd is not
    /// installed, unless `OXIDNS_REQUIRE_TOOLS` is set: then it panics.
    pub fn start(origin: &str, zone_text: &str) -> Option<Knot> {
        let knotd = ["/usr/sbin/knotd", "/usr/bin/knotd", "/usr/local/sbin/knotd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists());
        let Some(knotd) = knotd else {
            if std::env::var_os("OXIDNS_REQUIRE_TOOLS").is_some() {
                panic!("knotd is required (OXIDNS_REQUIRE_TOOLS is set) but not installed");
            }
            eprintln!("knotd not installed: skipping");
            return None;
        };
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("oxidns-knot-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("knot directory");
        let origin = origin.trim_end_matches('.');
        std::fs::write(dir.join("zone"), zone_text).expect("zone file");
        for _ in 0..10 {
            let port = free_port();
            let config = format!(
                "server:\n  listen: 127.0.0.1@{port}\n  rundir: {dir}\n\
                 database:\n  storage: {dir}\n\
                 control:\n  listen: {dir}/knot.sock\n\
                 log:\n  - target: stderr\n    any: error\n\
                 template:\n  - id: default\n    storage: {dir}\n    zonefile-sync: -1\n\
                 zone:\n  - domain: {origin}\n    file: {dir}/zone\n",
                dir = dir.display()
            );
            std::fs::write(dir.join("knot.conf"), config).expect("knot config");
            let child = std::process::Command::new(&knotd)
                .arg("-c")
                .arg(dir.join("knot.conf"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start knotd");
            let addr: SocketAddr = (Ipv4Addr::LOCALHOST, port).into();
            let mut knot = Knot {
                addr,
                child,
                dir: dir.clone(),
            };
            if knot.wait_ready(origin) {
                return Some(knot);
            }
            let _ = knot.child.kill();
            let _ = knot.child.wait();
            std::mem::forget(knot); // keep the directory for the next try
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("knotd did not start");
    }

    /// Polls with an SOA query until Knot answers it (at most ~10s).
    fn wait_ready(&mut self, origin: &str) -> bool {
        let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let name = oxidns_proto::name_from_str(origin).expect("origin");
        let query = Query::build(1, &name, Rtype::SOA, Class::IN, None);
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let _ = socket.send_to(&query, self.addr);
            let mut buf = [0u8; 4096];
            if let Ok((len, _)) = socket.recv_from(&mut buf)
                && let Ok(response) = Response::parse(&buf[..len])
                && response.response.rcode == oxidns_proto::OptRcode::NOERROR
            {
                return true;
            }
        }
        false
    }
}

/// A port free for UDP and TCP on 127.0.0.1 just now.
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = udp.local_addr().expect("address").port();
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}
