//! Black-box test support: run the real `oxidns` binary on a Corefile and
//! talk to it over loopback UDP and TCP.

#![allow(dead_code, unused_imports)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use oxidns_proto::{
    Class, Edns, EdnsOption, OptRcode, Query, ReceivedResponse, Response, Rtype, name_from_str,
};

/// How long a test waits for one answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// A scratch directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("oxidns-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// Writes the file whole, through a rename, so that a server watching
    /// it (reload) never reads it half written.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        let partial = self.0.join(format!(".{name}.partial"));
        std::fs::write(&partial, text).expect("write temp file");
        std::fs::rename(&partial, &path).expect("rename temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_oxidns")
}

/// An `oxidns` process serving a Corefile whose keys use port 0; the kernel's
/// choice is read from the start-up banner.
pub struct Oxidns {
    pub child: Child,
    pub port: u16,
    pub dir: TempDir,
    pub output: Arc<Mutex<Vec<String>>>,
}

impl Oxidns {
    /// Starts `oxidns -conf Corefile` in a fresh directory.
    pub fn start(corefile: &str) -> Oxidns {
        Self::start_with(corefile, &[])
    }

    pub fn start_with(corefile: &str, extra_args: &[&str]) -> Oxidns {
        let dir = TempDir::new("server");
        let conf = dir.write("Corefile", corefile);
        let mut child = Command::new(binary())
            .arg("-conf")
            .arg(&conf)
            .args(extra_args)
            .current_dir(&dir.0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start oxidns");
        let stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut port_tx = Some(port_tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(tx) = &port_tx
                    && let Some(port) = line.rsplit(':').next().and_then(|p| p.parse::<u16>().ok())
                {
                    let _ = tx.send(port);
                    port_tx = None;
                }
                sink.lock().unwrap().push(line);
            }
        });
        let port = match port_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let mut err = String::new();
                let _ = stderr.read_to_string(&mut err);
                panic!("oxidns did not start: {err}");
            }
        };
        Oxidns {
            child,
            port,
            dir,
            output,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn addr_v6(&self) -> SocketAddr {
        format!("[::1]:{}", self.port).parse().unwrap()
    }

    /// Lines the server printed so far.
    pub fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// Waits until some printed line contains `needle`.
    pub fn wait_for_output(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.output().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on the PID of a child this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "oxidns did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Oxidns {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A query message: RD set, ID 0x4242 unless changed by the caller.
pub fn query(qname: &str, qtype: Rtype) -> Vec<u8> {
    Query::build(
        0x4242,
        &name_from_str(qname).unwrap(),
        qtype,
        Class::IN,
        None,
    )
}

pub fn query_class(qname: &str, qtype: Rtype, qclass: Class) -> Vec<u8> {
    Query::build(0x4242, &name_from_str(qname).unwrap(), qtype, qclass, None)
}

pub fn query_edns(qname: &str, qtype: Rtype, edns: Edns) -> Vec<u8> {
    Query::build(
        0x4242,
        &name_from_str(qname).unwrap(),
        qtype,
        Class::IN,
        Some(&edns),
    )
}

pub fn edns(size: u16) -> Edns {
    Edns {
        udp_payload_size: size,
        version: 0,
        dnssec_ok: false,
        options: Vec::new(),
    }
}

/// Sends raw bytes over UDP; `None` if nothing came back in time.
pub fn udp_raw(addr: SocketAddr, message: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let bind: SocketAddr = if addr.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    }
    .parse()
    .unwrap();
    let socket = UdpSocket::bind(bind).expect("bind client socket");
    socket.set_read_timeout(Some(wait)).unwrap();
    socket.send_to(message, addr).expect("send");
    let mut buf = vec![0u8; 65_535];
    match socket.recv_from(&mut buf) {
        Ok((len, _)) => Some(buf[..len].to_vec()),
        Err(_) => None,
    }
}

/// Sends a query over UDP and parses the answer.
pub fn udp(addr: SocketAddr, message: &[u8]) -> ReceivedResponse {
    let bytes = udp_raw(addr, message, ANSWER_TIMEOUT).expect("an answer over UDP");
    Response::parse(&bytes).expect("a well-formed response")
}

/// Like [`udp`], but retries as a real client does (a flood may fill the
/// server's receive buffer, and UDP drops what does not fit).
pub fn udp_with_retries(addr: SocketAddr, message: &[u8], tries: usize) -> ReceivedResponse {
    for _ in 0..tries {
        if let Some(bytes) = udp_raw(addr, message, Duration::from_secs(1)) {
            return Response::parse(&bytes).expect("a well-formed response");
        }
    }
    panic!("no answer over UDP after {tries} tries");
}

/// Opens a TCP connection with a read timeout.
pub fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, ANSWER_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Writes one length-prefixed message.
pub fn tcp_send(stream: &mut TcpStream, message: &[u8]) {
    let mut frame = (message.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(message);
    stream.write_all(&frame).expect("tcp write");
}

/// Reads one length-prefixed message; `None` on close or timeout.
pub fn tcp_receive(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix).ok()?;
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(&mut message).ok()?;
    Some(message)
}

/// One query over a new TCP connection.
pub fn tcp(addr: SocketAddr, message: &[u8]) -> ReceivedResponse {
    let mut stream = tcp_connect(addr);
    tcp_send(&mut stream, message);
    let bytes = tcp_receive(&mut stream).expect("an answer over TCP");
    Response::parse(&bytes).expect("a well-formed response")
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Tools tests need: skipped where missing, unless CI demands them.
pub fn require_tool(program: &str) -> bool {
    if have(program) {
        return true;
    }
    assert!(
        std::env::var_os("OXIDNS_REQUIRE_TOOLS").is_none(),
        "{program} is required (OXIDNS_REQUIRE_TOOLS is set) but not installed"
    );
    eprintln!("skipping: {program} is not installed");
    false
}

/// Runs a command, returning its stdout and exit status.
pub fn run(program: &str, args: &[&str], cwd: &Path) -> (String, String, i32) {
    let output = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.code().unwrap_or(-1),
    )
}

/// A port free for UDP and TCP, below Linux's ephemeral range (32768–60999),
/// so that no client socket of a concurrent test can be handed it before the
/// server under test binds it.
pub fn free_fixed_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 500) * 20;
    for _ in 0..2_000 {
        let offset = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = (base + offset % 10_000) as u16;
        let udp = UdpSocket::bind(("::", port));
        let tcp = std::net::TcpListener::bind(("::", port));
        if udp.is_ok() && tcp.is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

/// Stops a child this test started: SIGTERM, up to 5 s to exit, then SIGKILL.
pub fn stop_child(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A plain HTTP GET; `None` if nothing listens.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// Sums a metric's samples whose label set contains every `labels` pair.
pub fn metric_sum(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|pair| l.contains(pair)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A daemon we started (knotd, named), its output appended to `log` in its
/// directory; SIGTERM, then SIGKILL, when stopped or dropped.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    /// The directory, when the daemon owns it ([`Daemon::spawn_in`]).
    pub dir: Option<TempDir>,
}

impl Daemon {
    /// Starts `program` in `dir`.
    pub fn spawn(program: &str, args: &[&str], dir: &Path) -> Daemon {
        let log = dir.join("log");
        let file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("create log");
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        Daemon {
            child,
            log,
            dir: None,
        }
    }

    /// Starts `program` in `dir`, which lives as long as the daemon.
    pub fn spawn_in(program: &str, args: &[&str], dir: TempDir) -> Daemon {
        let mut daemon = Daemon::spawn(program, args, &dir.0);
        daemon.dir = Some(dir);
        daemon
    }

    /// What it printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A NOTIFY for `apex`'s SOA, as a primary sends it (RFC 1996).
pub fn notify_message(apex: &str) -> Vec<u8> {
    let mut wire = query(apex, Rtype::SOA);
    wire[2] = (oxidns_proto::Opcode::NOTIFY.to_int() & 0x0f) << 3 | 0x04;
    wire
}

/// The answer of a primary of example.org at serial 2 to `query` (its ID
/// and question echoed): the SOA, then `records` TXT records of 100 bytes,
/// and no closing SOA (a piece of a transfer, or an SOA answer).
fn serial_2_answer(query: &[u8], records: usize) -> Vec<u8> {
    use oxidns_proto::domain::base::{Message, MessageBuilder, Ttl};
    use oxidns_proto::domain::rdata::{Soa, Txt};
    let query = Message::from_octets(query.to_vec()).expect("a query");
    let question = query.first_question().expect("a question");
    let mut builder = MessageBuilder::new_vec();
    builder.header_mut().set_id(query.header().id());
    builder.header_mut().set_qr(true);
    builder.header_mut().set_aa(true);
    let mut section = builder.question();
    section.push(question).unwrap();
    let mut answer = section.answer();
    let apex = oxidns_proto::name_from_str("example.org").unwrap();
    let soa = Soa::new(
        oxidns_proto::name_from_str("ns1.example.org").unwrap(),
        oxidns_proto::name_from_str("hostmaster.example.org").unwrap(),
        2.into(),
        Ttl::from_secs(3600),
        Ttl::from_secs(600),
        Ttl::from_secs(86400),
        Ttl::from_secs(300),
    );
    answer.push((&apex, Class::IN, 300u32, soa)).unwrap();
    for i in 0..records {
        let owner = oxidns_proto::name_from_str(&format!("half{i}.example.org")).unwrap();
        let txt = Txt::<Vec<u8>>::build_from_slice(&[b'z'; 100]).unwrap();
        answer.push((&owner, Class::IN, 300u32, txt)).unwrap();
    }
    answer.finish()
}

/// A primary of example.org on `addr` (port 0: any) that never finishes a
/// transfer. Its SOA answers over UDP say serial 2; asked for a transfer
/// over TCP, it sends `messages` messages of `records` records each, never
/// the closing SOA, and then closes the connection, or with `stalled` says
/// so there and keeps the connection open (up to a minute). Returns the
/// bound address.
pub fn unfinished_transfer_primary(
    addr: SocketAddr,
    messages: usize,
    records: usize,
    stalled: Option<std::sync::mpsc::Sender<()>>,
) -> std::io::Result<SocketAddr> {
    let tcp = std::net::TcpListener::bind(addr)?;
    let addr = tcp.local_addr()?;
    let udp = UdpSocket::bind(addr)?;
    udp.set_read_timeout(Some(Duration::from_secs(60)))?;
    std::thread::spawn(move || {
        let mut buffer = [0u8; 512];
        for _ in 0..1000 {
            let Ok((len, from)) = udp.recv_from(&mut buffer) else {
                return;
            };
            let _ = udp.send_to(&serial_2_answer(&buffer[..len], 0), from);
        }
    });
    std::thread::spawn(move || {
        for stream in tcp.incoming().take(100) {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut length = [0u8; 2];
            if stream.read_exact(&mut length).is_err() {
                continue;
            }
            let mut message = vec![0u8; usize::from(u16::from_be_bytes(length))];
            if stream.read_exact(&mut message).is_err() {
                continue;
            }
            for _ in 0..messages {
                let wire = serial_2_answer(&message, records);
                if stream
                    .write_all(&(wire.len() as u16).to_be_bytes())
                    .is_err()
                    || stream.write_all(&wire).is_err()
                {
                    break;
                }
            }
            if let Some(stalled) = &stalled {
                let _ = stalled.send(());
                let mut rest = [0u8; 512];
                let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                let _ = stream.read(&mut rest);
            }
        }
    });
    Ok(addr)
}
