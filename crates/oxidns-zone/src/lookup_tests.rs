//! One behaviour per test, for an unsigned zone. Signed-zone proofs are
//! checked against Knot and BIND by the differential tests.

use super::*;
use crate::zonefile::parse_zone_text;
use oxidns_proto::{OptRcode, name_from_str};

const ZONE: &str = r#"$ORIGIN example.org.
$TTL 3600
@        SOA  ns1 hostmaster 2024010101 7200 900 1209600 300
@        NS   ns1
@        NS   ns2.example.net.
@        MX   10 mail
ns1      A    192.0.2.1
ns1      AAAA 2001:db8::1
mail     A    192.0.2.2
www      A    192.0.2.3
alias    CNAME www
chain1   CNAME chain2
chain2   CNAME www
loop1    CNAME loop2
loop2    CNAME loop1
out      CNAME www.example.net.
dangling CNAME nothere
*.wild   A    192.0.2.10
*.wild   TXT  "wild"
*.cwild  CNAME www
a.b.ent  TXT  "deep"
*.ent    A    192.0.2.11
child    NS   ns.child
child    NS   ns.elsewhere.example.net.
ns.child A    192.0.2.20
child    DS   12345 8 2 49FD46E6C4B45C55D4AC49FD46E6C4B45C55D4AC49FD46E6C4B45C55D4ACABCD
srv._tcp SRV  0 5 443 www
dn       DNAME example.net.
"#;

fn zone() -> Zone {
    let apex = name_from_str("example.org").unwrap();
    let records = parse_zone_text(ZONE, "db", &apex).unwrap();
    Zone::build(&apex, records).unwrap().0
}

fn ask(qname: &str, qtype: Rtype) -> Response {
    zone().lookup(&name_from_str(qname).unwrap(), qtype, false)
}

fn texts(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.to_string()).collect()
}

#[test]
fn exact_match_is_an_authoritative_answer() {
    let r = ask("www.example.org", Rtype::A);
    assert_eq!(r.rcode, OptRcode::NOERROR);
    assert!(r.authoritative);
    assert_eq!(texts(&r.answer), ["www.example.org. 3600 IN A 192.0.2.3"]);
    assert!(r.authority.is_empty());
}

#[test]
fn nodata_has_the_soa_with_the_negative_ttl() {
    let r = ask("www.example.org", Rtype::AAAA);
    assert_eq!(r.rcode, OptRcode::NOERROR);
    assert!(r.answer.is_empty());
    assert_eq!(r.authority.len(), 1);
    assert_eq!(r.authority[0].rtype(), Rtype::SOA);
    assert_eq!(r.authority[0].ttl().as_secs(), 300, "min(SOA TTL, MINIMUM)");
}

#[test]
fn nxdomain_has_the_soa_with_the_negative_ttl() {
    let r = ask("nope.example.org", Rtype::A);
    assert_eq!(r.rcode, OptRcode::NXDOMAIN);
    assert!(r.authoritative);
    assert_eq!(r.authority[0].rtype(), Rtype::SOA);
    assert_eq!(r.authority[0].ttl().as_secs(), 300);
}

#[test]
fn cname_is_followed_inside_the_zone() {
    let r = ask("alias.example.org", Rtype::A);
    assert_eq!(
        texts(&r.answer),
        [
            "alias.example.org. 3600 IN CNAME www.example.org.",
            "www.example.org. 3600 IN A 192.0.2.3"
        ]
    );
}

#[test]
fn cname_chain_is_followed_to_its_end() {
    let r = ask("chain1.example.org", Rtype::A);
    assert_eq!(r.answer.len(), 3);
    assert_eq!(r.answer[2].rtype(), Rtype::A);
}

#[test]
fn cname_loop_stops_after_one_round() {
    let r = ask("loop1.example.org", Rtype::A);
    assert_eq!(r.rcode, OptRcode::NOERROR);
    assert_eq!(r.answer.len(), 2, "{:?}", texts(&r.answer));
}

#[test]
fn cname_leaving_the_zone_ends_the_answer() {
    let r = ask("out.example.org", Rtype::A);
    assert_eq!(
        texts(&r.answer),
        ["out.example.org. 3600 IN CNAME www.example.net."]
    );
    assert_eq!(r.rcode, OptRcode::NOERROR);
}

#[test]
fn cname_to_a_missing_name_is_nxdomain_with_the_chain() {
    let r = ask("dangling.example.org", Rtype::A);
    assert_eq!(r.rcode, OptRcode::NXDOMAIN);
    assert_eq!(r.answer.len(), 1);
    assert_eq!(r.authority[0].rtype(), Rtype::SOA);
}

#[test]
fn cname_query_gets_the_cname_alone() {
    let r = ask("alias.example.org", Rtype::CNAME);
    assert_eq!(
        texts(&r.answer),
        ["alias.example.org. 3600 IN CNAME www.example.org."]
    );
}

#[test]
fn wildcard_answer_is_owned_by_the_query_name() {
    let r = ask("Host.Wild.example.org", Rtype::A);
    assert_eq!(
        texts(&r.answer),
        ["Host.Wild.example.org. 3600 IN A 192.0.2.10"]
    );
    assert!(r.authoritative);
}

#[test]
fn wildcard_matches_several_labels_below_it() {
    let r = ask("a.b.c.wild.example.org", Rtype::TXT);
    assert_eq!(
        texts(&r.answer),
        ["a.b.c.wild.example.org. 3600 IN TXT \"wild\""]
    );
}

#[test]
fn wildcard_without_the_type_is_nodata() {
    let r = ask("x.wild.example.org", Rtype::MX);
    assert_eq!(r.rcode, OptRcode::NOERROR);
    assert!(r.answer.is_empty());
    assert_eq!(r.authority[0].rtype(), Rtype::SOA);
}

#[test]
fn wildcard_does_not_match_an_existing_empty_non_terminal() {
    let r = ask("b.ent.example.org", Rtype::A);
    assert_eq!(r.rcode, OptRcode::NOERROR);
    assert!(
        r.answer.is_empty(),
        "b.ent exists (empty), so *.ent does not apply"
    );
}

#[test]
fn wildcard_does_not_reach_below_a_closer_existing_name() {
    let r = ask("x.b.ent.example.org", Rtype::A);
    assert_eq!(
        r.rcode,
        OptRcode::NXDOMAIN,
        "the closest encloser is b.ent, which has no wildcard"
    );
    let r = ask("x.ent.example.org", Rtype::A);
    assert_eq!(
        texts(&r.answer),
        ["x.ent.example.org. 3600 IN A 192.0.2.11"]
    );
}

#[test]
fn wildcard_cname_is_synthesised_and_followed() {
    let r = ask("any.cwild.example.org", Rtype::A);
    assert_eq!(
        texts(&r.answer),
        [
            "any.cwild.example.org. 3600 IN CNAME www.example.org.",
            "www.example.org. 3600 IN A 192.0.2.3"
        ]
    );
}

#[test]
fn empty_non_terminal_is_nodata_not_nxdomain() {
    let r = ask("ent.example.org", Rtype::TXT);
    assert_eq!(r.rcode, OptRcode::NOERROR);
    assert!(r.answer.is_empty());
}

#[test]
fn names_at_and_below_a_cut_get_a_referral_with_glue_and_no_aa() {
    for qname in [
        "child.example.org",
        "www.child.example.org",
        "ns.child.example.org",
    ] {
        let r = ask(qname, Rtype::A);
        assert_eq!(r.rcode, OptRcode::NOERROR, "{qname}");
        assert!(!r.authoritative, "{qname}");
        assert!(r.answer.is_empty(), "{qname}");
        assert_eq!(r.authority.len(), 2, "{qname}: the NS RRset");
        assert!(r.authority.iter().all(|r| r.rtype() == Rtype::NS));
        assert_eq!(
            texts(&r.additional),
            ["ns.child.example.org. 3600 IN A 192.0.2.20"],
            "{qname}"
        );
    }
}

#[test]
fn ds_at_a_cut_is_answered_from_the_parent_side() {
    let r = ask("child.example.org", Rtype::DS);
    assert!(r.authoritative);
    assert_eq!(r.answer.len(), 1);
    assert_eq!(r.answer[0].rtype(), Rtype::DS);
}

#[test]
fn ds_below_a_cut_is_a_referral() {
    let r = ask("x.child.example.org", Rtype::DS);
    assert!(!r.authoritative);
    assert_eq!(r.authority[0].rtype(), Rtype::NS);
}

#[test]
fn dname_synthesises_a_cname_to_the_new_name() {
    let r = ask("www.dn.example.org", Rtype::A);
    assert_eq!(
        texts(&r.answer),
        [
            "dn.example.org. 3600 IN DNAME example.net.",
            "www.dn.example.org. 3600 IN CNAME www.example.net."
        ]
    );
    assert_eq!(r.rcode, OptRcode::NOERROR);
}

#[test]
fn dname_owner_itself_is_answered_normally() {
    let r = ask("dn.example.org", Rtype::DNAME);
    assert_eq!(r.answer.len(), 1);
    let r = ask("dn.example.org", Rtype::A);
    assert!(r.answer.is_empty(), "DNAME does not apply to its owner");
}

#[test]
fn dname_substitution_too_long_is_yxdomain() {
    let apex = name_from_str("example.org").unwrap();
    let long_target = format!("{}.example.net.", vec!["x".repeat(60); 3].join("."));
    let text = format!("{ZONE}long DNAME {long_target}\n");
    let zone = Zone::build(&apex, parse_zone_text(&text, "db", &apex).unwrap())
        .unwrap()
        .0;
    let qname = format!("{}.long.example.org", "y".repeat(60));
    let r = zone.lookup(&name_from_str(&qname).unwrap(), Rtype::A, false);
    assert_eq!(r.rcode, OptRcode::YXDOMAIN);
}

#[test]
fn mx_targets_in_the_zone_come_with_their_addresses() {
    let r = ask("example.org", Rtype::MX);
    assert_eq!(
        texts(&r.additional),
        ["mail.example.org. 3600 IN A 192.0.2.2"]
    );
}

#[test]
fn srv_targets_in_the_zone_come_with_their_addresses() {
    let r = ask("srv._tcp.example.org", Rtype::SRV);
    assert_eq!(
        texts(&r.additional),
        ["www.example.org. 3600 IN A 192.0.2.3"]
    );
}

#[test]
fn apex_ns_query_gets_in_zone_addresses_only() {
    let r = ask("example.org", Rtype::NS);
    assert_eq!(r.answer.len(), 2);
    assert_eq!(
        texts(&r.additional),
        [
            "ns1.example.org. 3600 IN A 192.0.2.1",
            "ns1.example.org. 3600 IN AAAA 2001:db8::1"
        ]
    );
}

#[test]
fn any_returns_every_rrset_of_the_name() {
    let r = ask("example.org", Rtype::ANY);
    let mut types: Vec<String> = r.answer.iter().map(|r| r.rtype().to_string()).collect();
    types.dedup();
    assert_eq!(types, ["SOA", "NS", "MX"]);
}
