use super::*;
use oxidns_server::proto::{Class, Edns, EdnsOption, Name, Record, RecordData, Rtype, Ttl};
use oxidns_server::test_util::{Fixed, config, config_error, request_with, serve_chain};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn limiter(configure: impl FnOnce(&mut Limits)) -> RateLimit {
    let mut limits = Limits::default();
    configure(&mut limits);
    RateLimit::new(limits)
}

/// The verdicts for `count` responses to `client` at the same instant.
fn burst(limiter: &RateLimit, client: &str, kind: Kind, count: usize, now_ms: u64) -> Vec<Verdict> {
    (0..count)
        .map(|_| limiter.account(ip(client), kind, now_ms))
        .collect()
}

use Verdict::{Drop, Send, Slip};

#[test]
fn responses_within_the_rate_are_sent() {
    let rl = limiter(|l| l.responses = 5);
    assert_eq!(burst(&rl, "192.0.2.1", Kind::Answer, 5, 0), [Send; 5]);
}

#[test]
fn beyond_the_rate_every_second_response_slips_by_default() {
    let rl = limiter(|l| l.responses = 2);
    assert_eq!(
        burst(&rl, "192.0.2.1", Kind::Answer, 6, 0),
        [Send, Send, Drop, Slip, Drop, Slip]
    );
}

#[test]
fn slip_zero_drops_every_limited_response() {
    let rl = limiter(|l| {
        l.responses = 1;
        l.slip = 0;
    });
    assert_eq!(
        burst(&rl, "192.0.2.1", Kind::Answer, 4, 0),
        [Send, Drop, Drop, Drop]
    );
}

#[test]
fn slip_one_truncates_every_limited_response() {
    let rl = limiter(|l| {
        l.responses = 1;
        l.slip = 1;
    });
    assert_eq!(
        burst(&rl, "192.0.2.1", Kind::Answer, 3, 0),
        [Send, Slip, Slip]
    );
}

#[test]
fn slip_three_sends_every_third_limited_response_truncated() {
    let rl = limiter(|l| {
        l.responses = 1;
        l.slip = 3;
    });
    assert_eq!(
        burst(&rl, "192.0.2.1", Kind::Answer, 7, 0),
        [Send, Drop, Drop, Slip, Drop, Drop, Slip]
    );
}

#[test]
fn tokens_come_back_at_the_rate() {
    let rl = limiter(|l| {
        l.responses = 10;
        l.slip = 0;
    });
    assert_eq!(burst(&rl, "192.0.2.1", Kind::Answer, 10, 0), [Send; 10]);
    assert_eq!(rl.account(ip("192.0.2.1"), Kind::Answer, 0), Drop);
    // 100 ms later: one token (10 a second) less the one debt.
    assert_eq!(rl.account(ip("192.0.2.1"), Kind::Answer, 200), Send);
}

#[test]
fn a_network_that_keeps_flooding_stays_limited_for_the_window() {
    let rl = limiter(|l| {
        l.responses = 1;
        l.window = 5;
        l.slip = 0;
    });
    // A long flood runs the account down to its floor: five seconds' worth.
    burst(&rl, "192.0.2.1", Kind::Answer, 100, 0);
    // Four quiet seconds later, still in debt.
    assert_eq!(rl.account(ip("192.0.2.1"), Kind::Answer, 4_000), Drop);
    // After a quiet spell as long as the window, it is served again.
    assert_eq!(rl.account(ip("192.0.2.1"), Kind::Answer, 10_000), Send);
}

#[test]
fn addresses_in_one_ipv4_slash_24_share_an_account() {
    let rl = limiter(|l| {
        l.responses = 1;
        l.slip = 0;
    });
    assert_eq!(rl.account(ip("192.0.2.1"), Kind::Answer, 0), Send);
    assert_eq!(rl.account(ip("192.0.2.200"), Kind::Answer, 0), Drop);
    assert_eq!(rl.account(ip("192.0.3.1"), Kind::Answer, 0), Send);
}

#[test]
fn addresses_in_one_ipv6_slash_56_share_an_account() {
    let rl = limiter(|l| {
        l.responses = 1;
        l.slip = 0;
    });
    assert_eq!(rl.account(ip("2001:db8:0:100::1"), Kind::Answer, 0), Send);
    assert_eq!(rl.account(ip("2001:db8:0:1ff::9"), Kind::Answer, 0), Drop);
    assert_eq!(rl.account(ip("2001:db8:0:200::1"), Kind::Answer, 0), Send);
}

#[test]
fn prefix_lengths_are_configurable() {
    let rl = limiter(|l| {
        l.responses = 1;
        l.slip = 0;
        l.ipv4_prefix = 32;
    });
    assert_eq!(rl.account(ip("192.0.2.1"), Kind::Answer, 0), Send);
    assert_eq!(rl.account(ip("192.0.2.2"), Kind::Answer, 0), Send);
}

#[test]
fn nxdomain_and_errors_are_accounted_apart_from_answers() {
    let rl = limiter(|l| {
        l.responses = 1;
        l.nxdomains = 2;
        l.errors = 0;
        l.slip = 0;
    });
    assert_eq!(burst(&rl, "192.0.2.1", Kind::Answer, 2, 0), [Send, Drop]);
    assert_eq!(
        burst(&rl, "192.0.2.1", Kind::Nxdomain, 3, 0),
        [Send, Send, Drop]
    );
    // A rate of 0 is no limit.
    assert_eq!(burst(&rl, "192.0.2.1", Kind::Error, 50, 0), [Send; 50]);
}

#[test]
fn the_table_of_accounts_never_grows_past_its_size() {
    let rl = limiter(|l| l.table_size = 64);
    for i in 0..10_000u32 {
        let client = IpAddr::from(std::net::Ipv4Addr::from(i << 8));
        rl.account(client, Kind::Answer, 0);
    }
    assert!(rl.accounts.len() <= 64, "{} accounts", rl.accounts.len());
}

fn answer_with_records() -> Response {
    let mut response = Response::new(Rcode::NOERROR);
    response.authoritative = true;
    let owner: Name = "example.org.".parse().unwrap();
    for i in 0..4u8 {
        response.answer.push(Record::new(
            owner.clone(),
            Class::IN,
            Ttl::from_secs(60),
            RecordData::A(std::net::Ipv4Addr::new(192, 0, 2, i).into()),
        ));
    }
    response.edns_options.push(EdnsOption {
        code: 10,
        data: vec![7u8; 24].into(),
    });
    response
}

/// Serves `count` queries from `client` through a `ratelimit` block;
/// returns each response, or `None` where it was dropped.
async fn serve(
    corefile: &str,
    count: usize,
    prepare: impl Fn(&mut Request),
) -> Vec<Option<Response>> {
    let config = config(corefile, &[PLUGIN]).unwrap();
    let mut chain = config.blocks[0].chain.to_vec();
    chain.push(Arc::new(Fixed(answer_with_records())));
    let edns = Edns {
        udp_payload_size: 1232,
        version: 0,
        dnssec_ok: false,
        options: Vec::new(),
    };
    let mut responses = Vec::new();
    for _ in 0..count {
        let mut request = request_with("example.org", Rtype::A, Class::IN, Some(edns.clone()));
        prepare(&mut request);
        let response = serve_chain(&chain, &mut request).await.unwrap();
        responses.push((!request.is_dropped()).then_some(response));
    }
    responses
}

#[tokio::test]
async fn a_slipped_response_is_empty_truncated_and_keeps_its_edns_options() {
    let got = serve(". {\n ratelimit 1 {\n  slip 1\n }\n}", 2, |_| {}).await;
    assert_eq!(got[0], Some(answer_with_records()));
    let slipped = got[1].as_ref().expect("slipped, not dropped");
    assert!(slipped.truncated && slipped.answer.is_empty() && !slipped.authoritative);
    assert_eq!(slipped.header_rcode(), Rcode::NOERROR);
    assert_eq!(slipped.edns_options, answer_with_records().edns_options);
}

#[tokio::test]
async fn a_dropped_response_is_not_sent() {
    let got = serve(". {\n ratelimit 1 {\n  slip 0\n }\n}", 3, |_| {}).await;
    assert!(got[0].is_some());
    assert_eq!(got[1..], [None, None]);
}

#[tokio::test]
async fn tcp_is_never_limited() {
    let got = serve(". {\n ratelimit 1 {\n  slip 0\n }\n}", 5, |request| {
        request.transport = Transport::Tcp;
    })
    .await;
    assert!(got.iter().all(|r| r == &Some(answer_with_records())));
}

#[tokio::test]
async fn exempt_networks_are_never_limited() {
    let corefile = ". {\n ratelimit 1 {\n  slip 0\n  exempt 127.0.0.0/8 ::1\n }\n}";
    let got = serve(corefile, 5, |_| {}).await;
    assert!(got.iter().all(Option::is_some));
}

#[tokio::test]
async fn queries_with_a_valid_server_cookie_are_never_limited() {
    let got = serve(". {\n ratelimit 1 {\n  slip 0\n }\n}", 5, |request| {
        request.metadata.set(VALID_COOKIE, "true");
    })
    .await;
    assert!(got.iter().all(Option::is_some));
}

#[tokio::test]
async fn log_only_counts_but_sends_everything() {
    let got = serve(
        ". {\n ratelimit 1 {\n  slip 0\n  log_only\n }\n}",
        5,
        |_| {},
    )
    .await;
    assert!(got.iter().all(|r| r == &Some(answer_with_records())));
}

#[test]
fn directive_settings_are_read() {
    let directive = &oxidns_server::corefile::parse_str(
        ". {\n ratelimit {\n  responses_per_second 5\n  errors_per_second 2\n  window 10\n  slip 3\n  ipv4_prefix_length 32\n  ipv6_prefix_length 64\n  max_table_size 500\n  exempt 10.0.0.0/8 2001:db8::1\n }\n}",
        "Corefile",
    )
    .unwrap()[0]
        .directives[0];
    let limits = parse(directive).unwrap();
    assert_eq!(
        limits,
        Limits {
            responses: 5,
            nxdomains: 5,
            errors: 2,
            window: 10,
            slip: 3,
            ipv4_prefix: 32,
            ipv6_prefix: 64,
            exempt: vec![
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8::1/128".parse().unwrap()
            ],
            table_size: 500,
            log_only: false,
        }
    );
}

#[test]
fn bad_settings_are_refused_at_their_line() {
    assert_eq!(
        config_error(". {\n ratelimit {\n  slip 11\n }\n}", &[PLUGIN]),
        "Corefile:3: slip: '11' is not a number from 0 to 10"
    );
    assert_eq!(
        config_error(". {\n ratelimit {\n  exempt 10.0.0.0/40\n }\n}", &[PLUGIN]),
        "Corefile:3: ratelimit: '10.0.0.0/40' is not a network"
    );
    assert_eq!(
        config_error(". {\n ratelimit {\n  burst 5\n }\n}", &[PLUGIN]),
        "Corefile:3: ratelimit: unknown property 'burst'"
    );
    assert_eq!(
        config_error(". {\n ratelimit many\n}", &[PLUGIN]),
        "Corefile:2: ratelimit: 'many' is not a number of responses"
    );
}
