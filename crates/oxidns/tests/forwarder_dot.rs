//! DNS-over-TLS interop with a real peer: oxidns forwards to BIND 9 (`named`)
//! listening for DoT with a certificate from a CA made at test time.
//!
//! - `tls CA` and `tls CERT KEY CA` with the right `tls_servername`: answers
//!   come through (NOERROR with the zone's data, NXDOMAIN for a missing name).
//! - A wrong `tls_servername`, or a CA that did not sign the server's
//!   certificate: the handshake must fail, so the client gets SERVFAIL.
//!
//! Skipped when `named` is not installed, unless OXIDNS_REQUIRE_TOOLS is set.
//! Everything listens on 127.0.0.1; only the processes started here are
//! stopped, by their PID, and every wait is bounded.

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// The name on the server certificate.
const SERVER_NAME: &str = "dns.test";

fn example_zone() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/db.example.org")
        .canonicalize()
        .unwrap()
}

/// PEM files made at test time: a CA, a server certificate for
/// [`SERVER_NAME`] signed by it, a client certificate signed by it, and a
/// second CA that signed nothing of ours.
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_ca(common_name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn make_pki(dir: &TempDir) -> Pki {
    let ca = make_ca("oxidns test CA");
    let other = make_ca("some other CA");
    let leaf = |name: &str| {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(SERVER_NAME);
    let (client_cert, client_key) = leaf("client.test");
    Pki {
        ca: dir.write("ca.pem", &ca.pem()),
        other_ca: dir.write("other-ca.pem", &other.pem()),
        server_cert: dir.write("server.pem", &server_cert),
        server_key: dir.write("server.key", &server_key),
        client_cert: dir.write("client.pem", &client_cert),
        client_key: dir.write("client.key", &client_key),
    }
}

/// A `named` we started; killed (by PID) when dropped.
struct Named {
    child: Child,
    log: PathBuf,
    tls_port: u16,
}

impl Named {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `named -g -n 1` serving examples/db.example.org over DoT on one
/// port and plain DNS on another (used only to see that the zone is loaded).
fn start_named(dir: &TempDir, pki: &Pki) -> Named {
    let tls_port = free_fixed_port();
    let plain_port = free_fixed_port();
    let run = dir.0.display();
    let conf = format!(
        r#"tls local-tls {{
    cert-file "{cert}";
    key-file "{key}";
}};
options {{
    directory "{run}";
    pid-file "{run}/named.pid";
    session-keyfile "{run}/session.key";
    listen-on port {plain_port} {{ 127.0.0.1; }};
    listen-on port {tls_port} tls local-tls {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    allow-query {{ any; }};
}};
controls {{ }};
zone "example.org" {{ type primary; file "{zone}"; }};
"#,
        cert = pki.server_cert.display(),
        key = pki.server_key.display(),
        zone = example_zone().display(),
    );
    let conf = dir.write("named.conf", &conf);
    let log = dir.0.join("named.log");
    let out = File::create(&log).unwrap();
    let child = Command::new("named")
        .args(["-g", "-n", "1", "-c"])
        .arg(&conf)
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start named");
    let mut named = Named {
        child,
        log,
        tls_port,
    };
    let plain = SocketAddr::from(([127, 0, 0, 1], plain_port));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(bytes) = udp_raw(
            plain,
            &query("example.org", Rtype::SOA),
            Duration::from_millis(500),
        ) && Response::parse(&bytes).is_ok_and(|r| r.response.rcode == OptRcode::NOERROR)
        {
            return named;
        }
        if let Ok(Some(status)) = named.child.try_wait() {
            panic!("named exited ({status}):\n{}", named.log());
        }
        assert!(
            Instant::now() < deadline,
            "named did not answer within 30 s:\n{}",
            named.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// oxidns forwarding everything to named's DoT port with this TLS block.
fn front(named: &Named, tls_block: &str) -> Oxidns {
    Oxidns::start(&format!(
        ".:0 {{\n bind 127.0.0.1\n forward . tls://127.0.0.1:{} {{\n{tls_block}\n }}\n}}\n",
        named.tls_port
    ))
}

/// Asks until an answer other than SERVFAIL comes (named's DoT listener may
/// come up a moment after its plain one), for at most 20 s.
fn ask_until_answered(
    server: &Oxidns,
    named: &Named,
    qname: &str,
    qtype: Rtype,
) -> ReceivedResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(bytes) = udp_raw(server.addr(), &query(qname, qtype), Duration::from_secs(6)) {
            let got = Response::parse(&bytes).expect("a well-formed response");
            if got.response.rcode != OptRcode::SERVFAIL {
                return got;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no answer but SERVFAIL through DoT within 20 s; oxidns said {:?}\nnamed log:\n{}",
            server.output(),
            named.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn forwards_over_dot_to_named_and_refuses_the_wrong_certificate() {
    if !require_tool("named") {
        return;
    }
    let dir = TempDir::new("dot-named");
    let pki = make_pki(&dir);
    let named = start_named(&dir, &pki);

    // The CA-only form, and client authentication plus CA (named does not ask
    // for a client certificate, so this checks that the form loads and works).
    let forms = [
        format!("  tls_servername {SERVER_NAME}\n  tls {}", pki.ca.display()),
        format!(
            "  tls_servername {SERVER_NAME}\n  tls {} {} {}",
            pki.client_cert.display(),
            pki.client_key.display(),
            pki.ca.display()
        ),
    ];
    for form in &forms {
        let server = front(&named, form);
        let got = ask_until_answered(&server, &named, "www.example.org", Rtype::A);
        assert_eq!(got.response.rcode, OptRcode::NOERROR, "{form}");
        let answers: Vec<String> = got
            .response
            .answer
            .iter()
            .map(|r| r.data().to_string())
            .collect();
        assert_eq!(answers, ["192.0.2.80"], "{form}");

        let mx = udp(server.addr(), &query("example.org", Rtype::MX));
        assert_eq!(mx.response.rcode, OptRcode::NOERROR, "{form}");
        assert_eq!(mx.response.answer.len(), 1, "{form}");
        assert!(
            mx.response.answer[0]
                .data()
                .to_string()
                .contains("mail.example.org"),
            "{form}: {}",
            mx.response.answer[0].data()
        );
        let missing = udp(server.addr(), &query("nope.example.org", Rtype::A));
        assert_eq!(missing.response.rcode, OptRcode::NXDOMAIN, "{form}");
        let over_tcp = tcp(server.addr(), &query("web.example.org", Rtype::A));
        assert_eq!(over_tcp.response.rcode, OptRcode::NOERROR, "{form}");
        assert_eq!(
            over_tcp.response.answer.len(),
            2,
            "{form}: CNAME and its target"
        );
    }

    // named is up and answering over DoT (checked above): these must fail in
    // the handshake, and the client gets SERVFAIL within forward's 5 s bound.
    let bad = [
        (
            "wrong tls_servername",
            format!("  tls_servername wrong.test\n  tls {}", pki.ca.display()),
        ),
        (
            "CA that did not sign the server certificate",
            format!(
                "  tls_servername {SERVER_NAME}\n  tls {}",
                pki.other_ca.display()
            ),
        ),
    ];
    for (what, form) in &bad {
        let server = front(&named, form);
        let started = Instant::now();
        let bytes = udp_raw(
            server.addr(),
            &query("www.example.org", Rtype::A),
            Duration::from_secs(15),
        )
        .unwrap_or_else(|| panic!("{what}: no answer at all within 15 s"));
        let got = Response::parse(&bytes).expect("a well-formed response");
        assert_eq!(got.response.rcode, OptRcode::SERVFAIL, "{what}");
        assert!(got.response.answer.is_empty(), "{what}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{what}: took {:?}",
            started.elapsed()
        );
    }
    assert!(
        named
            .log()
            .lines()
            .all(|l| !l.contains("exiting (due to fatal error)")),
        "{}",
        named.log()
    );
}
