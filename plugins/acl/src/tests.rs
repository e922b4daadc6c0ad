use super::*;
use oxidns_server::proto::{Class, Edns};
use oxidns_server::test_util::{Fixed, config, config_error, request_with, serve_chain};

/// What the rest of the chain answers when a query is let through.
fn answered() -> Response {
    let mut response = Response::new(Rcode::NOERROR);
    response.authoritative = true;
    response
}

async fn serve_from(
    corefile: &str,
    qname: &str,
    qtype: Rtype,
    client: &str,
) -> (Response, Request) {
    let config = config(corefile, &[PLUGIN]).unwrap();
    let mut chain = config.blocks[0].chain.to_vec();
    chain.push(Arc::new(Fixed(answered())));
    let edns = Edns {
        udp_payload_size: 1232,
        version: 0,
        dnssec_ok: false,
        options: Vec::new(),
    };
    let mut request = request_with(qname, qtype, Class::IN, Some(edns));
    request.client = std::net::SocketAddr::new(client.parse().unwrap(), 5353);
    let response = serve_chain(&chain, &mut request).await.unwrap();
    (response, request)
}

fn ede(response: &Response) -> Option<u16> {
    response
        .edns_options
        .iter()
        .find(|o| o.code == option_code::EXTENDED_ERROR)
        .map(|o| u16::from_be_bytes([o.data[0], o.data[1]]))
}

/// What the acl decided for one query: let through, or refused.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Answered,
    Refused,
}

/// Asks each `(qname, qtype, client)` of `cases` through `corefile`'s acl
/// and checks the decision.
async fn expect(corefile: &str, cases: &[(&str, Rtype, &str, Decision)]) {
    for (qname, qtype, client, expected) in cases {
        let (response, _) = serve_from(corefile, qname, *qtype, client).await;
        let decision = if response == answered() {
            Decision::Answered
        } else {
            assert_eq!(
                response.header_rcode(),
                Rcode::REFUSED,
                "{qname} {qtype} from {client}"
            );
            Decision::Refused
        };
        assert_eq!(&decision, expected, "{qname} {qtype} from {client}");
    }
}

const BLOCK_A_FROM_192_168: &str = ". {\n acl {\n  block type A net 192.168.0.0/16\n }\n}";

#[tokio::test]
async fn block_answers_refused_with_ede_blocked() {
    let (response, request) = serve_from(
        BLOCK_A_FROM_192_168,
        "www.example.org",
        Rtype::A,
        "192.168.0.2",
    )
    .await;
    assert_eq!(response.header_rcode(), Rcode::REFUSED);
    assert_eq!(ede(&response), Some(EDE_BLOCKED));
    assert!(!request.is_dropped());
}

#[tokio::test]
async fn other_types_from_a_blocked_network_are_allowed() {
    let (response, _) = serve_from(
        BLOCK_A_FROM_192_168,
        "www.example.org",
        Rtype::AAAA,
        "192.168.0.2",
    )
    .await;
    assert_eq!(response, answered());
}

#[tokio::test]
async fn other_networks_are_allowed() {
    let (response, _) = serve_from(
        BLOCK_A_FROM_192_168,
        "www.example.org",
        Rtype::A,
        "192.167.0.2",
    )
    .await;
    assert_eq!(response, answered());
}

#[tokio::test]
async fn filter_answers_empty_noerror_with_ede_filtered() {
    let corefile = ". {\n acl {\n  filter type A net 192.168.0.0/16\n }\n}";
    let (response, _) = serve_from(corefile, "www.example.org", Rtype::A, "192.168.0.2").await;
    assert_eq!(response.header_rcode(), Rcode::NOERROR);
    assert!(response.answer.is_empty() && !response.authoritative);
    assert_eq!(ede(&response), Some(EDE_FILTERED));
}

#[tokio::test]
async fn drop_asks_the_server_to_send_nothing() {
    let corefile = ". {\n acl {\n  drop net 10.0.0.0/8\n }\n}";
    let (_, request) = serve_from(corefile, "www.example.org", Rtype::A, "10.1.2.3").await;
    assert!(request.is_dropped());
    let (_, request) = serve_from(corefile, "www.example.org", Rtype::A, "11.1.2.3").await;
    assert!(!request.is_dropped());
}

#[tokio::test]
async fn first_matching_policy_wins() {
    let corefile = ". {\n acl {\n  allow net 192.168.1.0/24\n  block net 192.168.0.0/16\n }\n}";
    expect(
        corefile,
        &[
            ("example.org", Rtype::A, "192.168.1.9", Decision::Answered),
            ("example.org", Rtype::A, "192.168.2.9", Decision::Refused),
        ],
    )
    .await;
}

#[tokio::test]
async fn allow_list_then_block_everyone_else() {
    let corefile = ". {\n acl {\n  allow net 127.0.0.0/8 ::1\n  block\n }\n}";
    expect(
        corefile,
        &[
            ("example.org", Rtype::A, "127.0.0.1", Decision::Answered),
            ("example.org", Rtype::A, "::1", Decision::Answered),
            ("example.org", Rtype::A, "2001:db8::1", Decision::Refused),
        ],
    )
    .await;
}

#[tokio::test]
async fn ipv6_networks_match_ipv6_clients() {
    let corefile = ". {\n acl {\n  block net 2001:db8::/32\n }\n}";
    expect(
        corefile,
        &[
            ("example.org", Rtype::A, "2001:db8:5::1", Decision::Refused),
            ("example.org", Rtype::A, "2001:db9::1", Decision::Answered),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_single_address_matches_only_itself() {
    let corefile = ". {\n acl {\n  block type A net 192.168.1.2\n }\n}";
    expect(
        corefile,
        &[
            ("example.org", Rtype::A, "192.168.1.2", Decision::Refused),
            ("example.org", Rtype::A, "192.168.1.3", Decision::Answered),
        ],
    )
    .await;
}

#[tokio::test]
async fn star_matches_every_type_and_network() {
    let corefile = ". {\n acl {\n  block type * net *\n }\n}";
    expect(
        corefile,
        &[("example.org", Rtype::MX, "2001:db8::1", Decision::Refused)],
    )
    .await;
}

#[tokio::test]
async fn rules_apply_only_to_names_in_their_zones() {
    let corefile = "example.org {\n acl a.example.org {\n  block net 192.168.1.0/24\n }\n}";
    expect(
        corefile,
        &[
            (
                "x.a.example.org",
                Rtype::A,
                "192.168.1.1",
                Decision::Refused,
            ),
            ("b.example.org", Rtype::A, "192.168.1.1", Decision::Answered),
        ],
    )
    .await;
}

#[tokio::test]
async fn an_allow_in_an_earlier_rule_skips_later_rules() {
    let corefile = ". {\n acl {\n  allow net 10.0.0.0/8\n }\n acl {\n  block\n }\n}";
    expect(
        corefile,
        &[
            ("example.org", Rtype::A, "10.0.0.1", Decision::Answered),
            ("example.org", Rtype::A, "11.0.0.1", Decision::Refused),
        ],
    )
    .await;
}

#[tokio::test]
async fn sections_may_come_in_any_order() {
    let corefile = ". {\n acl {\n  block net 10.0.0.0/8 type MX AAAA\n }\n}";
    expect(
        corefile,
        &[
            ("example.org", Rtype::AAAA, "10.0.0.1", Decision::Refused),
            ("example.org", Rtype::A, "10.0.0.1", Decision::Answered),
        ],
    )
    .await;
}

#[tokio::test]
async fn block_reaches_the_wire_with_refused_and_the_ede() {
    let (response, request) = serve_from(
        BLOCK_A_FROM_192_168,
        "www.example.org",
        Rtype::A,
        "192.168.0.2",
    )
    .await;
    let received = Response::parse(&request.finish(&response, Vec::new())).unwrap();
    assert_eq!(received.response.header_rcode(), Rcode::REFUSED);
    let options = received.edns.unwrap().options;
    assert_eq!(options[0].code, option_code::EXTENDED_ERROR);
    assert_eq!(options[0].data[..], EDE_BLOCKED.to_be_bytes());
}

#[test]
fn unknown_action_is_refused() {
    assert_eq!(
        config_error(". {\n acl {\n  deny net 10.0.0.0/8\n }\n}", &[PLUGIN]),
        "Corefile:3: acl: unknown property 'deny'"
    );
}

#[test]
fn unknown_qtype_is_refused() {
    assert_eq!(
        config_error(". {\n acl {\n  block type NOPE\n }\n}", &[PLUGIN]),
        "Corefile:3: acl: unexpected token 'NOPE'; expect legal QTYPE"
    );
}

#[test]
fn bad_network_is_refused() {
    assert_eq!(
        config_error(". {\n acl {\n  block net 10.0.0.0/33\n }\n}", &[PLUGIN]),
        "Corefile:3: acl: illegal CIDR notation '10.0.0.0/33'"
    );
}

#[test]
fn empty_section_is_refused() {
    assert_eq!(
        config_error(". {\n acl {\n  block type net 10.0.0.0/8\n }\n}", &[PLUGIN]),
        "Corefile:3: acl: no token specified in 'type' section"
    );
    assert_eq!(
        config_error(". {\n acl {\n  block net\n }\n}", &[PLUGIN]),
        "Corefile:3: acl: no token specified in 'net' section"
    );
}

#[test]
fn words_before_a_section_are_refused() {
    assert_eq!(
        config_error(". {\n acl {\n  block 10.0.0.0/8\n }\n}", &[PLUGIN]),
        "Corefile:3: acl: unexpected token '10.0.0.0/8'; expect 'type | net'"
    );
}

#[tokio::test]
async fn zones_match_without_regard_to_case() {
    let corefile = "example.org {\n acl a.example.org {\n  block\n }\n}";
    expect(
        corefile,
        &[("X.A.Example.ORG", Rtype::A, "192.0.2.1", Decision::Refused)],
    )
    .await;
}
