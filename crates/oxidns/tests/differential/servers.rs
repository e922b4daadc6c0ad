//! Server runners: `knotd`, `named` and `oxidns` on 127.0.0.1, each in its own
//! temporary directory, on a port picked free; each is ready once it answers
//! SOA for every zone, and is stopped (only the process we started) on drop.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;

use std::time::{Duration, Instant};

use crate::common::{Daemon, Oxidns, TempDir, query_edns};
use oxidns_proto::{Rcode, Response, Rtype};

use super::zones::Corpus;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Knot,
    Bind,
    Oxidns,
}

/// A running server under test.
pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
    process: Process,
}

enum Process {
    Daemon(Daemon),
    Oxidns(Box<Oxidns>),
}

/// How long a server may take to load the corpus and answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at starting a server, each on a new port (another process may
/// take the port between our probe and the server's bind).
const START_ATTEMPTS: usize = 3;

impl Server {
    pub fn start(kind: Kind, corpus: &Corpus) -> Server {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let (name, process) = match kind {
                Kind::Knot => ("knot", Process::Daemon(start_knot(corpus, port))),
                Kind::Bind => ("bind", Process::Daemon(start_bind(corpus, port))),
                Kind::Oxidns => (
                    "oxidns",
                    Process::Oxidns(Box::new(start_oxidns(corpus, port))),
                ),
            };
            let mut server = Server {
                name: name.to_string(),
                addr,
                process,
            };
            match server.wait_ready(corpus) {
                Ok(()) => return server,
                Err(why) => failures.push(format!("{why}\n{}", server.log())),
            }
        }
        panic!("{kind:?} did not start:\n{}", failures.join("\n---\n"));
    }

    /// Waits until every zone's SOA comes back authoritatively.
    fn wait_ready(&mut self, corpus: &Corpus) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind client socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = vec![0u8; 65_535];
        for zone in &corpus.zones {
            let message = query_edns(&zone.origin, Rtype::SOA, crate::common::edns(1232));
            loop {
                if let Some(status) = self.exited() {
                    return Err(format!("{} exited: {status}", self.name));
                }
                if Instant::now() > deadline {
                    return Err(format!("{} gave no SOA for {}", self.name, zone.origin));
                }
                let _ = socket.send_to(&message, self.addr);
                if let Ok((len, _)) = socket.recv_from(&mut buf) {
                    if let Ok(reply) = Response::parse(&buf[..len]) {
                        let r = &reply.response;
                        if r.header_rcode() == Rcode::NOERROR
                            && r.authoritative
                            && r.answer.iter().any(|rr| rr.rtype() == Rtype::SOA)
                        {
                            break;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        Ok(())
    }

    fn exited(&mut self) -> Option<String> {
        let child = match &mut self.process {
            Process::Daemon(d) => &mut d.child,
            Process::Oxidns(o) => &mut o.child,
        };
        child
            .try_wait()
            .ok()
            .flatten()
            .map(|status| status.to_string())
    }

    /// What the server logged (for failure messages).
    pub fn log(&self) -> String {
        match &self.process {
            Process::Daemon(d) => d.log(),
            Process::Oxidns(o) => o.output().join("\n"),
        }
    }
}

/// A port free on 127.0.0.1 for both UDP and TCP at the time of asking.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP probe");
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// knotd with a config of its own: one UDP worker, the zones loaded from their
/// files, never written back, no journal, no automatic signing (the signed
/// zones are served as signed by dnssec-signzone). No knotc is needed.
fn start_knot(corpus: &Corpus, port: u16) -> Daemon {
    let dir = TempDir::new("diff-knot");
    let run = path_text(&dir.0).to_string();
    let mut conf = format!(
        "server:\n    rundir: \"{run}\"\n    pidfile: \"{run}/knot.pid\"\n    \
         listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n    \
         background-workers: 1\n\n\
         control:\n    listen: \"{run}/knot.sock\"\n\n\
         database:\n    storage: \"{run}\"\n\n\
         log:\n  - target: stderr\n    any: info\n\n\
         template:\n  - id: default\n    storage: \"{run}\"\n    \
         zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: none\n    \
         semantic-checks: off\n    dnssec-signing: off\n\nzone:\n"
    );
    for zone in &corpus.zones {
        conf.push_str(&format!(
            "  - domain: {}\n    file: \"{}\"\n",
            zone.origin,
            path_text(&zone.path)
        ));
    }
    let conf_path = dir.write("knot.conf", &conf);
    let conf_arg = path_text(&conf_path).to_string();
    Daemon::spawn_in("knotd", &["-c", &conf_arg], dir)
}

/// named in the foreground with one worker, authoritative only, default
/// (non-minimal) responses.
fn start_bind(corpus: &Corpus, port: u16) -> Daemon {
    let dir = TempDir::new("diff-bind");
    let run = path_text(&dir.0).to_string();
    let mut conf = format!(
        "options {{\n    directory \"{run}\";\n    listen-on port {port} {{ 127.0.0.1; }};\n    \
         listen-on-v6 {{ none; }};\n    recursion no;\n    pid-file none;\n    \
         session-keyfile none;\n    dnssec-validation no;\n    notify no;\n}};\n\
         controls {{ }};\n\
         logging {{ category default {{ default_stderr; }}; }};\n"
    );
    for zone in &corpus.zones {
        conf.push_str(&format!(
            "zone \"{}\" {{ type primary; file \"{}\"; check-names ignore; }};\n",
            zone.origin,
            path_text(&zone.path)
        ));
    }
    let conf_path = dir.write("named.conf", &conf);
    let conf_arg = path_text(&conf_path).to_string();
    Daemon::spawn_in("named", &["-g", "-c", &conf_arg, "-n", "1"], dir)
}

/// oxidns with one server block per zone, each served by the `file` plugin.
fn start_oxidns(corpus: &Corpus, port: u16) -> Oxidns {
    let mut corefile = String::new();
    for zone in &corpus.zones {
        corefile.push_str(&format!(
            "{}:{port} {{\n    file {}\n}}\n",
            zone.origin,
            path_text(&zone.path)
        ));
    }
    Oxidns::start(&corefile)
}
