//! The zone corpus: plain zone files from `zones/`, plus signed zones made at
//! test time from `zones/signed.zone.in` with `dnssec-keygen` and
//! `dnssec-signzone` (fixed inception and expiration, so answers are stable).

use std::path::{Path, PathBuf};

use crate::common::{TempDir, run};

/// Zone files served as they are: (origin, file name under `zones/`).
const PLAIN: &[(&str, &str)] = &[
    ("example.com", "example.com.zone"),
    ("example.net", "example.net.zone"),
    ("dname.test", "dname.test.zone"),
    ("wild.test", "wild.test.zone"),
];

/// Zones signed from the template: (origin, dnssec-signzone arguments).
/// NSEC; NSEC3 without salt and 0 extra iterations (RFC 9276); NSEC3 with
/// opt-out (RFC 5155 §6), which leaves the unsigned delegations out of the chain.
const SIGNED: &[(&str, &[&str])] = &[
    ("nsec.test", &[]),
    ("nsec3.test", &["-3", "-", "-H", "0"]),
    ("optout.test", &["-3", "-", "-H", "0", "-A"]),
];

/// RRSIG inception and expiration: fixed, far from today either way.
pub const INCEPTION: &str = "20240101000000";
pub const EXPIRATION: &str = "20700101000000";

pub struct Zone {
    /// Origin without the trailing dot, lower case.
    pub origin: String,
    /// The file the servers load.
    pub path: PathBuf,
    /// Every owner name in the (unsigned) source, absolute, as written.
    pub names: Vec<String>,
    pub signed: bool,
}

pub struct Corpus {
    pub dir: TempDir,
    pub zones: Vec<Zone>,
}

pub fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential/zones")
}

impl Corpus {
    pub fn build() -> Corpus {
        let dir = TempDir::new("diff-zones");
        let mut zones = Vec::new();
        for (origin, file) in PLAIN {
            let text = std::fs::read_to_string(source_dir().join(file)).expect("read zone file");
            let path = dir.write(&format!("{origin}.zone"), &text);
            zones.push(Zone {
                origin: origin.to_string(),
                names: owner_names(&text, origin),
                path,
                signed: false,
            });
        }
        let template = std::fs::read_to_string(source_dir().join("signed.zone.in"))
            .expect("read signed.zone.in");
        for (origin, args) in SIGNED {
            let text = template.replace("@ORIGIN@", origin);
            let path = sign(&dir, origin, &text, args);
            zones.push(Zone {
                origin: origin.to_string(),
                names: owner_names(&text, origin),
                path,
                signed: true,
            });
        }
        Corpus { dir, zones }
    }
}

impl Corpus {
    /// A corpus whose zone `origin` has the line `from` replaced by `to` (the
    /// other zones are shared with `self`, which must outlive the copy).
    pub fn edited(&self, origin: &str, from: &str, to: &str) -> Corpus {
        let dir = TempDir::new("diff-edited");
        let zones = self
            .zones
            .iter()
            .map(|zone| {
                let mut path = zone.path.clone();
                if zone.origin == origin {
                    let text = std::fs::read_to_string(&zone.path).expect("read zone");
                    assert!(text.contains(from), "{origin} has no line {from:?}");
                    path = dir.write(&format!("{origin}.zone"), &text.replace(from, to));
                }
                Zone {
                    origin: zone.origin.clone(),
                    path,
                    names: zone.names.clone(),
                    signed: zone.signed,
                }
            })
            .collect();
        Corpus { dir, zones }
    }
}

/// Signs `text` as zone `origin` with a fresh KSK and ZSK (ECDSA P-256) and
/// returns the path of the signed file.
fn sign(dir: &TempDir, origin: &str, text: &str, extra: &[&str]) -> PathBuf {
    let keys = dir.0.join(format!("keys-{origin}"));
    std::fs::create_dir_all(&keys).expect("create key dir");
    let keys_arg = keys.to_str().expect("utf-8 path");
    for ksk in [true, false] {
        let mut args = vec!["-q", "-K", keys_arg, "-a", "ECDSAP256SHA256", "-n", "ZONE"];
        if ksk {
            args.extend(["-f", "KSK"]);
        }
        args.push(origin);
        let (out, err, code) = run("dnssec-keygen", &args, &dir.0);
        assert_eq!(code, 0, "dnssec-keygen {args:?}: {out}{err}");
    }
    let unsigned = dir.write(&format!("{origin}.unsigned"), text);
    let signed = dir.0.join(format!("{origin}.zone"));
    let mut args = vec![
        "-q",
        "-S",
        "-K",
        keys_arg,
        "-o",
        origin,
        "-s",
        INCEPTION,
        "-e",
        EXPIRATION,
        "-f",
        signed.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    args.push(unsigned.to_str().expect("utf-8 path"));
    let (out, err, code) = run("dnssec-signzone", &args, &dir.0);
    assert_eq!(code, 0, "dnssec-signzone {args:?}: {out}{err}");
    signed
}

/// Owner names of a zone file written one record per line (as ours are).
fn owner_names(text: &str, origin: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines() {
        let Some(first) = line.chars().next() else {
            continue;
        };
        if first.is_whitespace() || first == '$' || first == ';' {
            continue;
        }
        let owner = line.split_whitespace().next().unwrap_or("@");
        let name = if owner == "@" {
            format!("{origin}.")
        } else if owner.ends_with('.') {
            owner.to_string()
        } else {
            format!("{owner}.{origin}.")
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}
