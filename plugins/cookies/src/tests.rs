use super::*;
use oxidns_server::proto::{Class, Edns, Rtype};
use oxidns_server::test_util::{Fixed, config, config_error, over_tcp, request_with, serve_chain};

/// RFC 9018 Appendix A: the secret and clients of the test vectors.
const SECRET: Secret = [
    0xe5, 0xe9, 0x73, 0xe5, 0xa6, 0xb2, 0xa4, 0x3f, 0x48, 0xe7, 0xdc, 0x84, 0x9e, 0x37, 0xbf, 0xcf,
];
const SECRET_HEX: &str = "e5e973e5a6b2a43f48e7dc849e37bfcf";
const OLD_SECRET: Secret = [
    0xdd, 0x3b, 0xdf, 0x93, 0x44, 0xb6, 0x78, 0xb1, 0x85, 0xa6, 0xf5, 0xcb, 0x60, 0xfc, 0xa7, 0x15,
];
const NEW_SECRET: Secret = [
    0x44, 0x55, 0x36, 0xbc, 0xd2, 0x51, 0x32, 0x98, 0x07, 0x5a, 0x5d, 0x37, 0x96, 0x63, 0xc9, 0x62,
];

fn client_1() -> IpAddr {
    "198.51.100.100".parse().unwrap()
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn cookies(secrets: Vec<Secret>, require: bool) -> Cookies {
    Cookies { secrets, require }
}

fn answer(cookie: &str, valid: bool) -> Verdict {
    Verdict::Answer {
        cookie: Bytes::from(hex(cookie)),
        valid,
    }
}

#[test]
fn rfc9018_a1_a_client_cookie_alone_learns_a_new_server_cookie() {
    let verdict = cookies(vec![SECRET], false).check(
        &hex("2464c4abcf10c957"),
        client_1(),
        1559731985,
        Transport::Udp,
    );
    assert_eq!(
        verdict,
        answer("2464c4abcf10c957010000005cf79f111f8130c3eee29480", false)
    );
}

#[test]
fn rfc9018_a2_a_cookie_older_than_half_an_hour_is_valid_and_renewed() {
    let verdict = cookies(vec![SECRET], false).check(
        &hex("2464c4abcf10c957010000005cf79f111f8130c3eee29480"),
        client_1(),
        1559734385,
        Transport::Udp,
    );
    assert_eq!(
        verdict,
        answer("2464c4abcf10c957010000005cf7a871d4a564a1442aca77", true)
    );
}

#[test]
fn rfc9018_a3_reserved_octets_are_hashed_as_received() {
    let ip: IpAddr = "203.0.113.203".parse().unwrap();
    let data = hex("fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5");
    // Issued at 1559727985; checked while still valid (the appendix's
    // server checks it later, with a longer lifetime than ours).
    let verdict = cookies(vec![SECRET], false).check(&data, ip, 1559727985 + 1900, Transport::Udp);
    assert!(matches!(verdict, Verdict::Answer { valid: true, .. }));
    assert_eq!(
        new_cookie(&SECRET, &data[..8], ip, 1559734700),
        hex("fc93fc62807ddb86010000005cf7a9acf73a7810aca2381e")
    );
}

#[test]
fn rfc9018_a4_a_cookie_of_the_previous_secret_is_accepted_and_renewed() {
    let ip: IpAddr = "2001:db8:220:1:59de:d0f4:8769:82b8".parse().unwrap();
    let data = hex("22681ab97d52c298010000005cf7c57926556bd0934c72f8");
    let now = 1559741961;
    assert_eq!(
        cookies(vec![NEW_SECRET, OLD_SECRET], false).check(&data, ip, now, Transport::Udp),
        answer("22681ab97d52c298010000005cf7c609a6bb79d16625507a", true)
    );
    // Without the old secret, the cookie is not ours.
    let Verdict::Answer { valid, .. } =
        cookies(vec![NEW_SECRET], false).check(&data, ip, now, Transport::Udp)
    else {
        panic!("expected an answer");
    };
    assert!(!valid);
}

#[test]
fn a_young_valid_cookie_is_echoed_unchanged() {
    let jar = cookies(vec![SECRET], false);
    let data = hex("2464c4abcf10c957010000005cf79f111f8130c3eee29480");
    let verdict = jar.check(&data, client_1(), 1559731985 + 60, Transport::Udp);
    assert_eq!(
        verdict,
        answer("2464c4abcf10c957010000005cf79f111f8130c3eee29480", true)
    );
}

#[test]
fn a_cookie_older_than_an_hour_is_invalid() {
    let jar = cookies(vec![SECRET], false);
    let data = hex("2464c4abcf10c957010000005cf79f111f8130c3eee29480");
    let now = 1559731985 + 3601;
    let Verdict::Answer { valid, cookie } = jar.check(&data, client_1(), now, Transport::Udp)
    else {
        panic!("expected an answer");
    };
    assert!(!valid);
    assert_eq!(cookie, new_cookie(&SECRET, &data[..8], client_1(), now));
}

#[test]
fn a_cookie_more_than_five_minutes_ahead_is_invalid() {
    let jar = cookies(vec![SECRET], false);
    let data = hex("2464c4abcf10c957010000005cf79f111f8130c3eee29480");
    let ahead = |seconds: u32| jar.check(&data, client_1(), 1559731985 - seconds, Transport::Udp);
    assert!(matches!(ahead(300), Verdict::Answer { valid: true, .. }));
    assert!(matches!(ahead(301), Verdict::Answer { valid: false, .. }));
}

#[test]
fn a_cookie_from_another_address_is_invalid() {
    let jar = cookies(vec![SECRET], false);
    let data = hex("2464c4abcf10c957010000005cf79f111f8130c3eee29480");
    let verdict = jar.check(
        &data,
        "198.51.100.101".parse().unwrap(),
        1559731985,
        Transport::Udp,
    );
    assert!(matches!(verdict, Verdict::Answer { valid: false, .. }));
}

#[test]
fn malformed_lengths_are_formerr() {
    let jar = cookies(vec![SECRET], false);
    for len in [0, 7, 9, 15, 41] {
        let verdict = jar.check(&vec![1; len], client_1(), 0, Transport::Udp);
        assert_eq!(verdict, Verdict::Malformed, "length {len}");
    }
    for len in [8, 16, 40] {
        let verdict = jar.check(&vec![1; len], client_1(), 0, Transport::Udp);
        assert_ne!(verdict, Verdict::Malformed, "length {len}");
    }
}

#[test]
fn required_cookies_get_badcookie_over_udp_only() {
    let jar = cookies(vec![SECRET], true);
    let client = hex("2464c4abcf10c957");
    let expected = new_cookie(&SECRET, &client, client_1(), 1559731985);
    assert_eq!(
        jar.check(&client, client_1(), 1559731985, Transport::Udp),
        Verdict::BadCookie(expected.clone())
    );
    assert_eq!(
        jar.check(&client, client_1(), 1559731985, Transport::Tcp),
        Verdict::Answer {
            cookie: expected.clone(),
            valid: false
        }
    );
    // The client retries with the server cookie it learnt: answered.
    assert_eq!(
        jar.check(&expected, client_1(), 1559731990, Transport::Udp),
        Verdict::Answer {
            cookie: expected,
            valid: true
        }
    );
}

fn with_cookie(data: &[u8]) -> Edns {
    Edns {
        udp_payload_size: 1232,
        version: 0,
        dnssec_ok: false,
        options: vec![EdnsOption {
            code: option_code::COOKIE,
            data: Bytes::copy_from_slice(data),
        }],
    }
}

async fn serve(corefile: &str, edns: Option<Edns>, tcp: bool) -> (Response, Request) {
    let config = config(corefile, &[PLUGIN]).unwrap();
    let mut chain = config.blocks[0].chain.to_vec();
    let mut upstream = Response::new(Rcode::NOERROR);
    upstream.authoritative = true;
    upstream.edns_options.push(EdnsOption {
        code: option_code::COOKIE,
        data: Bytes::from_static(b"upstreamcookie!!"),
    });
    chain.push(Arc::new(Fixed(upstream)));
    let mut request = request_with("example.org", Rtype::A, Class::IN, edns);
    if tcp {
        let client = request.client;
        request = over_tcp(request, client);
    }
    let response = serve_chain(&chain, &mut request).await.unwrap();
    (response, request)
}

fn cookie_of(response: &Response) -> Vec<&EdnsOption> {
    response
        .edns_options
        .iter()
        .filter(|o| o.code == option_code::COOKIE)
        .collect()
}

const WITH_SECRET: &str = ". {\n cookies {\n  secret e5e973e5a6b2a43f48e7dc849e37bfcf\n }\n}";

#[tokio::test]
async fn a_query_with_a_client_cookie_gets_an_answer_with_both_cookies() {
    let (response, request) = serve(WITH_SECRET, Some(with_cookie(b"clientck")), false).await;
    assert!(response.authoritative);
    let cookies = cookie_of(&response);
    assert_eq!(cookies.len(), 1, "the upstream's cookie is replaced");
    assert_eq!(cookies[0].data.len(), 24);
    assert_eq!(&cookies[0].data[..8], b"clientck");
    assert_eq!(request.metadata.get(VALID_COOKIE), None);
}

#[tokio::test]
async fn a_query_echoing_our_server_cookie_is_marked_valid() {
    let (first, _) = serve(WITH_SECRET, Some(with_cookie(b"clientck")), false).await;
    let learnt = cookie_of(&first)[0].data.clone();
    let (response, request) = serve(WITH_SECRET, Some(with_cookie(&learnt)), false).await;
    assert_eq!(request.metadata.get(VALID_COOKIE), Some("true"));
    assert!(response.authoritative);
    assert_eq!(cookie_of(&response)[0].data, learnt);
}

#[tokio::test]
async fn a_malformed_cookie_gets_formerr_without_running_the_chain() {
    let (response, _) = serve(WITH_SECRET, Some(with_cookie(b"short")), false).await;
    assert_eq!(response.header_rcode(), Rcode::FORMERR);
    assert!(!response.authoritative);
}

#[tokio::test]
async fn require_answers_badcookie_with_a_server_cookie_over_udp() {
    let corefile = ". {\n cookies {\n  require\n }\n}";
    let (response, _) = serve(corefile, Some(with_cookie(b"clientck")), false).await;
    assert_eq!(response.rcode, OptRcode::BADCOOKIE);
    assert!(!response.authoritative);
    assert_eq!(cookie_of(&response)[0].data.len(), 24);
    let (response, _) = serve(corefile, Some(with_cookie(b"clientck")), true).await;
    assert!(response.authoritative);
}

#[tokio::test]
async fn queries_without_a_cookie_are_answered_unchanged() {
    let corefile = ". {\n cookies {\n  require\n }\n}";
    let (response, _) = serve(corefile, None, false).await;
    assert!(response.authoritative);
    let (response, _) = serve(corefile, Some(with_cookie(b"clientck")), false).await;
    assert_eq!(response.rcode, OptRcode::BADCOOKIE);
}

#[tokio::test]
async fn badcookie_reaches_the_wire_as_extended_rcode_23() {
    let corefile = ". {\n cookies {\n  require\n }\n}";
    let (response, request) = serve(corefile, Some(with_cookie(b"clientck")), false).await;
    let received = Response::parse(&request.finish(&response, Vec::new())).unwrap();
    assert_eq!(received.response.rcode, OptRcode::BADCOOKIE);
}

#[test]
fn secret_must_be_32_hex_digits() {
    assert_eq!(
        config_error(". {\n cookies {\n  secret abcd\n }\n}", &[PLUGIN]),
        "Corefile:3: cookies: secret 'abcd' is not 32 hexadecimal digits (16 octets)"
    );
    assert_eq!(parse_secret(SECRET_HEX), Some(SECRET));
    assert_eq!(parse_secret("zz".repeat(16).as_str()), None);
}

#[test]
fn unknown_property_is_refused() {
    assert_eq!(
        config_error(". {\n cookies {\n  lifetime 5\n }\n}", &[PLUGIN]),
        "Corefile:3: cookies: unknown property 'lifetime'"
    );
}

#[test]
fn without_a_secret_each_start_picks_a_random_one() {
    assert!(config(". {\n cookies\n}", &[PLUGIN]).is_ok());
}
