//! The query generator (deterministic: a fixed seed and xorshift64*) and the
//! sender (UDP from a few threads, retried; TCP again when UDP is truncated).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::common::{tcp_connect, tcp_receive, tcp_send};
use oxidns_proto::{Class, Edns, Query, Response, Rtype, name_from_str};

use super::compare::{Answer, Observed};
use super::servers::Server;
use super::zones::Corpus;

/// One query as sent.
#[derive(Clone, Debug)]
pub struct Probe {
    pub qname: String,
    pub qtype: Rtype,
    /// EDNS payload size and DO bit; `None` sends no OPT record.
    pub edns: Option<(u16, bool)>,
    pub rd: bool,
}

impl Probe {
    pub fn message(&self, id: u16) -> Vec<u8> {
        let edns = self.edns.map(|(size, dnssec_ok)| Edns {
            udp_payload_size: size,
            version: 0,
            dnssec_ok,
            options: Vec::new(),
        });
        let name = name_from_str(&self.qname).expect("generated names are valid");
        let mut message = Query::build(id, &name, self.qtype, Class::IN, edns.as_ref());
        if !self.rd {
            message[2] &= !0x01;
        }
        message
    }

    /// `dig`-like: the query in one line.
    pub fn describe(&self) -> String {
        let edns = match self.edns {
            None => "+noedns".to_string(),
            Some((size, dnssec_ok)) => {
                format!("+bufsize={size}{}", if dnssec_ok { " +dnssec" } else { "" })
            }
        };
        let rd = if self.rd { "+rec" } else { "+norec" };
        format!("{} {} {edns} {rd}", self.qname, self.qtype)
    }
}

/// xorshift64*: small, fixed, good enough to pick test cases.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Types present somewhere in the corpus, weighted by repetition.
const COMMON_TYPES: &[Rtype] = &[
    Rtype::A,
    Rtype::A,
    Rtype::A,
    Rtype::AAAA,
    Rtype::AAAA,
    Rtype::MX,
    Rtype::TXT,
    Rtype::TXT,
    Rtype::NS,
    Rtype::NS,
    Rtype::SOA,
    Rtype::CNAME,
    Rtype::DNAME,
    Rtype::SRV,
    Rtype::DS,
    Rtype::DS,
    Rtype::DNSKEY,
    Rtype::NSEC,
    Rtype::NSEC3,
    Rtype::NSEC3PARAM,
    Rtype::RRSIG,
    Rtype::CAA,
    Rtype::HTTPS,
    Rtype::SVCB,
    Rtype::PTR,
    Rtype::TLSA,
    Rtype::SSHFP,
    Rtype::NAPTR,
];

/// Types absent from the corpus (or nearly so), and one unknown type that is present.
fn rare_types() -> [Rtype; 6] {
    [
        Rtype::HINFO,
        Rtype::LOC,
        Rtype::CDS,
        Rtype::URI,
        Rtype::from_int(65400),
        Rtype::from_int(65401),
    ]
}

/// Names no zone holds: answered REFUSED by an authoritative-only server.
const FOREIGN: &[&str] = &[
    "example.org.",
    "www.example.org.",
    "test.",
    "com.",
    ".",
    "nothing.invalid.",
    "xexample.com.",
];

/// Labels that make missing names (and wildcard matches, names below cuts
/// and DNAMEs, ...).
const LABELS: &[&str] = &[
    "nx", "foo", "www", "a", "zz", "_tcp", "0", "host", "deep", "x-y",
];

/// The queries: a systematic sweep (every owner name with several types and
/// DO set) and then `random` random ones, all from `seed`.
pub fn generate(corpus: &Corpus, random: usize, seed: u64) -> Vec<Probe> {
    let mut rng = Rng::new(seed);
    let mut probes = Vec::new();
    let all_names: Vec<&str> = corpus
        .zones
        .iter()
        .flat_map(|z| z.names.iter().map(String::as_str))
        .collect();
    for name in &all_names {
        for qtype in [
            Rtype::A,
            Rtype::AAAA,
            Rtype::TXT,
            Rtype::NS,
            Rtype::DS,
            Rtype::MX,
        ] {
            probes.push(Probe {
                qname: name.to_string(),
                qtype,
                edns: Some((1232, true)),
                rd: false,
            });
        }
    }
    // Answers too big for 512 bytes: TC over UDP, then compared over TCP.
    for (qname, qtype) in [
        ("big.example.net.", Rtype::TXT),
        ("nsec.test.", Rtype::DNSKEY),
        ("nx.nsec3.test.", Rtype::A),
        ("nx.optout.test.", Rtype::A),
        ("nx.wild.nsec.test.", Rtype::AAAA),
    ] {
        for edns in [None, Some((512, true)), Some((1232, true))] {
            probes.push(Probe {
                qname: qname.to_string(),
                qtype,
                edns,
                rd: false,
            });
        }
    }
    let rare = rare_types();
    for _ in 0..random {
        let base = *rng.pick(&all_names);
        let qname = match rng.below(100) {
            0..40 => base.to_string(),
            40..65 => format!("{}.{base}", rng.pick(LABELS)),
            65..75 => format!("{}.{}.{base}", rng.pick(LABELS), rng.pick(LABELS)),
            75..85 => parent(base).to_string(),
            85..92 => {
                let zone = rng.pick(&corpus.zones);
                format!("{}{}.{}.", rng.pick(LABELS), rng.below(1000), zone.origin)
            }
            92..95 => rng.pick(FOREIGN).to_string(),
            _ => format!("{}.{}", rng.pick(LABELS), rng.pick(FOREIGN)).replace("..", "."),
        };
        let qname = if rng.chance(50) {
            random_case(&mut rng, &qname)
        } else {
            qname
        };
        let qtype = if rng.chance(85) {
            *rng.pick(COMMON_TYPES)
        } else {
            *rng.pick(&rare)
        };
        let edns = match rng.below(100) {
            0..25 => None,
            25..50 => Some((1232, false)),
            50..90 => Some((1232, true)),
            // Small enough that DNSSEC proofs and big RRsets truncate.
            _ => Some((512, true)),
        };
        probes.push(Probe {
            qname,
            qtype,
            edns,
            rd: rng.chance(20),
        });
    }
    probes
}

/// The name one label up (the root stays the root).
fn parent(name: &str) -> &str {
    match name.split_once('.') {
        Some((_, rest)) if !rest.is_empty() => rest,
        _ => ".",
    }
}

/// DNS 0x20: each letter in random case.
fn random_case(rng: &mut Rng, name: &str) -> String {
    name.chars()
        .map(|c| {
            if rng.chance(50) {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Client threads per server.
const THREADS: usize = 4;
/// UDP tries per query, each waiting this long.
const UDP_TRIES: usize = 3;
const UDP_WAIT: Duration = Duration::from_millis(1000);

/// Sends every probe to `server`; answers in probe order.
pub fn send_all(server: &Server, probes: &[Probe]) -> Vec<Observed> {
    let chunk = probes.len().div_ceil(THREADS).max(1);
    let addr = server.addr;
    std::thread::scope(|scope| {
        let handles: Vec<_> = probes
            .chunks(chunk)
            .enumerate()
            .map(|(thread, part)| {
                scope.spawn(move || {
                    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind client socket");
                    socket.set_read_timeout(Some(UDP_WAIT)).unwrap();
                    part.iter()
                        .enumerate()
                        .map(|(i, probe)| {
                            let id = ((thread * chunk + i) & 0xffff) as u16;
                            observe(&socket, addr, probe, id)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread"))
            .collect()
    })
}

fn observe(socket: &UdpSocket, addr: SocketAddr, probe: &Probe, id: u16) -> Observed {
    let message = probe.message(id);
    let udp = udp_exchange(socket, addr, &message, id);
    let tcp = match &udp {
        Ok(answer) if answer.tc => Some(tcp_exchange(addr, &message)),
        _ => None,
    };
    Observed { udp, tcp }
}

fn udp_exchange(
    socket: &UdpSocket,
    addr: SocketAddr,
    message: &[u8],
    id: u16,
) -> Result<Answer, String> {
    let mut buf = vec![0u8; 65_535];
    for _ in 0..UDP_TRIES {
        socket.send_to(message, addr).expect("send");
        // Skip late answers to earlier queries (bounded: one per try at most).
        for _ in 0..UDP_TRIES + 1 {
            let Ok((len, _)) = socket.recv_from(&mut buf) else {
                break;
            };
            if len >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                return parse(&buf[..len]);
            }
        }
    }
    Err("no answer over UDP".to_string())
}

fn tcp_exchange(addr: SocketAddr, message: &[u8]) -> Result<Answer, String> {
    let mut stream = tcp_connect(addr);
    tcp_send(&mut stream, message);
    let bytes = tcp_receive(&mut stream).ok_or("no answer over TCP")?;
    parse(&bytes)
}

fn parse(bytes: &[u8]) -> Result<Answer, String> {
    Response::parse(bytes)
        .map(|r| Answer::from_response(&r))
        .map_err(|e| format!("unparsable answer: {e}"))
}
