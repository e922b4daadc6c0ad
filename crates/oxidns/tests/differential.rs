//! Differential tests: Knot DNS, BIND 9 and oxidns serving the same zones
//! must give the same answers. See tests/differential/README.md.

mod common;
#[path = "differential/mod.rs"]
mod differential;

use differential::servers::Kind;

/// Proves the harness: the two reference servers agree on the whole corpus
/// (after the documented normalisations).
#[test]
fn knot_and_bind_agree_on_the_corpus() {
    if !differential::tools_available() {
        return;
    }
    differential::run(&[Kind::Knot, Kind::Bind]);
}

/// oxidns against both references; on once oxidns has a `file` plugin (or
/// with OXIDNS_DIFF_WITH_OXIDNS=1).
#[test]
fn oxidns_agrees_with_knot_and_bind() {
    if let Err(why) = differential::oxidns_enabled() {
        eprintln!("skipping: {why}");
        return;
    }
    if !differential::tools_available() {
        return;
    }
    differential::run(&[Kind::Knot, Kind::Bind, Kind::Oxidns]);
}

/// The harness sees a difference: BIND serves example.com with one address
/// changed, and the comparison must report it (and only queries touching it).
#[test]
fn harness_reports_a_changed_record() {
    if !differential::tools_available() {
        return;
    }
    let report = differential::compare_servers(
        &[Kind::Knot, Kind::Bind],
        Some(("example.com", "www A 192.0.2.80", "www A 192.0.2.79")),
    );
    assert!(
        report.mismatch_count() > 0,
        "a changed record went unnoticed"
    );
    for diff in report.mismatches() {
        assert!(diff.contains("192.0.2.79"), "unexpected mismatch:\n{diff}");
    }
}
