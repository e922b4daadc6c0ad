//! Differential testing: the same zones served by Knot DNS (`knotd`), BIND 9
//! (`named`) and, once its `file` plugin exists, oxidns; the same queries sent
//! to every server; the answers compared section by section after the one
//! documented normalisation in [`compare::normalise`]. See README.md.

#![allow(dead_code)]

pub mod compare;
pub mod queries;
pub mod servers;
pub mod zones;

use std::time::Instant;

use crate::common::require_tool;

/// Programs the harness needs; `false` (after a message) when one is missing,
/// a failure instead when OXIDNS_REQUIRE_TOOLS is set.
pub fn tools_available() -> bool {
    ["knotd", "named", "dnssec-keygen", "dnssec-signzone"]
        .iter()
        .all(|tool| require_tool(tool))
}

/// Whether the oxidns side takes part: OXIDNS_DIFF_WITH_OXIDNS=1 forces it
/// (=0 forbids it); otherwise it is on once `oxidns -plugins` lists `dns.file`.
pub fn oxidns_enabled() -> Result<(), String> {
    match std::env::var("OXIDNS_DIFF_WITH_OXIDNS").as_deref() {
        Ok("1") => return Ok(()),
        Ok("0") => return Err("OXIDNS_DIFF_WITH_OXIDNS=0".into()),
        _ => {}
    }
    let output = std::process::Command::new(crate::common::binary())
        .arg("-plugins")
        .output()
        .map_err(|e| format!("cannot run oxidns -plugins: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if text.lines().any(|line| line.trim() == "dns.file") {
        Ok(())
    } else {
        Err(
            "`oxidns -plugins` does not list dns.file yet (set OXIDNS_DIFF_WITH_OXIDNS=1 to force)"
                .into(),
        )
    }
}

/// Seed of the query generator: fixed, so every run sends the same queries.
pub const SEED: u64 = 0x0D15_EA5E_D1FF_0001;
/// Random queries on top of the systematic sweep.
pub const RANDOM_QUERIES: usize = 2_400;

/// Builds the corpus, starts the servers `kinds` names (the first is the
/// reference), sends every query to each and fails on any difference.
pub fn run(kinds: &[servers::Kind]) {
    compare_servers(kinds, None).assert_clean();
}

/// A zone edit given to every server but the first: (origin, line, new line).
pub type Edit<'a> = (&'a str, &'a str, &'a str);

/// Runs the queries against every server and returns the report; with `edit`,
/// the servers after the first serve an edited copy of one zone.
pub fn compare_servers(kinds: &[servers::Kind], edit: Option<Edit>) -> compare::Report {
    let started = Instant::now();
    let corpus = zones::Corpus::build();
    let edited = edit.map(|(origin, from, to)| corpus.edited(origin, from, to));
    let probes = queries::generate(&corpus, RANDOM_QUERIES, SEED);
    let running: Vec<servers::Server> = kinds
        .iter()
        .enumerate()
        .map(|(index, kind)| {
            let zones = match &edited {
                Some(edited) if index > 0 => edited,
                _ => &corpus,
            };
            servers::Server::start(*kind, zones)
        })
        .collect();
    let ready = Instant::now();
    // Every question twice: asked again, oxidns answers from the answers it
    // keeps in wire form, and both times must agree with the references.
    let answers: Vec<[Vec<compare::Observed>; 2]> = running
        .iter()
        .map(|server| {
            [
                queries::send_all(server, &probes),
                queries::send_all(server, &probes),
            ]
        })
        .collect();
    let sent = Instant::now();
    let apexes: Vec<String> = corpus
        .zones
        .iter()
        .map(|z| format!("{}.", z.origin))
        .collect();
    let mut report = compare::Report::default();
    for (index, other) in running.iter().enumerate().skip(1) {
        for pass in &answers[index] {
            report.compare(&running[0], other, &probes, &apexes, &answers[0][0], pass);
        }
    }
    eprintln!(
        "differential: {} zones, {} queries to {}; setup {:.1?}, queries {:.1?}
           reference answers: {}
  {}",
        corpus.zones.len(),
        probes.len(),
        running
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        ready - started,
        sent - ready,
        compare::statistics(&answers[0][0]),
        report.summary(),
    );
    report
}
