use super::*;
use crate::name_from_str;

/// The secret every captured request below was signed with.
const SECRET: &str = "c2VjcmV0LWtleS1mb3Itb3hpZG5zLXRlc3Rz";

/// `dig -y hmac-sha256:tsig-test.example.:SECRET www.example.org A +noedns`,
/// as captured on the wire.
const DIG_SHA256: &str = "ef2a0120000100000000000103777777076578616d706c65036f7267000001000109747369672d74657374076578616d706c650000fa00ff00000000003d0b686d61632d7368613235360000006b0284fe012c002071cdd68ff1fe1aed35117a81b3287a2ed5c53dedc2277f920bbecff6292b48faef2a00000000";
/// `dig -y hmac-sha1:sha1.key:SECRET example.org SOA` (with EDNS and a cookie).
const DIG_SHA1: &str = "f0d301200001000000000002076578616d706c65036f7267000006000100002904d000000000000c000a0008b95e751361440fca0473686131036b65790000fa00ff00000000002f09686d61632d736861310000006b028501012c0014fffc5a81fde80aab58553cdda4b1457e972fc868f0d300000000";
/// `dig -y hmac-sha512:Other.Key.:SECRET Example.org NS`.
const DIG_SHA512: &str = "68a101200001000000000002074578616d706c65036f7267000002000100002904d000000000000c000a000812652fc8b9c58309056f74686572036b65790000fa00ff00000000005d0b686d61632d7368613531320000006b028505012c0040b2cbf5931a5f2547ef2ca836efe2eea790c3ce844f27db18f865a8e240133aaaa29c59cdcc1f4372a5dc65c797c0296a403fc38299ac2933456170cae44bd49568a100000000";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn key(name: &str, algorithm: Algorithm) -> Key {
    Key::from_base64(&name_from_str(name).unwrap(), algorithm, SECRET).unwrap()
}

fn check<'k>(message: &[u8], key: &'k Key, now: Option<u64>) -> RequestCheck<'k> {
    let record = find(message).unwrap().expect("signed");
    let now = now.unwrap_or(record.time_signed);
    verify_request(
        message,
        &record,
        |name| (name == key.name()).then_some(key),
        now,
    )
    .unwrap()
}

fn query(id: u16) -> Vec<u8> {
    crate::Query::build(
        id,
        &name_from_str("example.org").unwrap(),
        crate::Rtype::AXFR,
        crate::Class::IN,
        None,
    )
}

/// A response-like message: the query with QR set and `n` as its last byte
/// of payload (an A record's address), so messages differ.
fn message(id: u16, n: u8) -> Vec<u8> {
    let mut response = crate::Response::new(crate::Rcode::NOERROR);
    response.answer.push(crate::Record::new(
        name_from_str("example.org").unwrap(),
        crate::Class::IN,
        crate::Ttl::from_secs(60),
        crate::RecordData::A(domain::rdata::A::new([192, 0, 2, n].into())),
    ));
    let query = crate::Query::parse(query(id).into()).unwrap();
    response.encode(&query, 65535)
}

#[test]
fn requests_signed_by_dig_verify_with_each_algorithm() {
    for (wire, key) in [
        (DIG_SHA256, key("tsig-test.example", Algorithm::HmacSha256)),
        (DIG_SHA1, key("sha1.key", Algorithm::HmacSha1)),
        (DIG_SHA512, key("other.key", Algorithm::HmacSha512)),
    ] {
        let message = hex(wire);
        assert!(
            matches!(check(&message, &key, None), RequestCheck::Verified { .. }),
            "{key:?}"
        );
    }
}

#[test]
fn key_names_match_case_insensitively() {
    let key = key("OTHER.key", Algorithm::HmacSha512);
    assert!(matches!(
        check(&hex(DIG_SHA512), &key, None),
        RequestCheck::Verified { .. }
    ));
}

#[test]
fn a_changed_byte_fails_with_badsig() {
    let mut message = hex(DIG_SHA256);
    message[2] ^= 0x01; // the RD bit
    let key = key("tsig-test.example", Algorithm::HmacSha256);
    assert!(matches!(check(&message, &key, None), RequestCheck::BadSig));
}

#[test]
fn a_wrong_secret_fails_with_badsig() {
    let message = hex(DIG_SHA256);
    let key = Key::new(
        &name_from_str("tsig-test.example").unwrap(),
        Algorithm::HmacSha256,
        b"another secret",
    );
    assert!(matches!(check(&message, &key, None), RequestCheck::BadSig));
}

#[test]
fn an_unknown_key_or_another_algorithm_is_badkey() {
    let message = hex(DIG_SHA256);
    let other_name = key("unknown.key", Algorithm::HmacSha256);
    assert!(matches!(
        check(&message, &other_name, None),
        RequestCheck::BadKey
    ));
    let other_algorithm = key("tsig-test.example", Algorithm::HmacSha512);
    assert!(matches!(
        check(&message, &other_algorithm, None),
        RequestCheck::BadKey
    ));
}

#[test]
fn a_request_outside_the_fudge_is_badtime() {
    let message = hex(DIG_SHA256);
    let record = find(&message).unwrap().unwrap();
    let key = key("tsig-test.example", Algorithm::HmacSha256);
    let late = record.time_signed + u64::from(record.fudge) + 1;
    assert!(matches!(
        check(&message, &key, Some(late)),
        RequestCheck::BadTime { .. }
    ));
    let in_time = record.time_signed + u64::from(record.fudge);
    assert!(matches!(
        check(&message, &key, Some(in_time)),
        RequestCheck::Verified { .. }
    ));
}

#[test]
fn a_tsig_that_is_not_the_last_record_is_malformed() {
    let mut message = hex(DIG_SHA256);
    // Append an OPT record after the TSIG and count it.
    message.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
    message[11] += 1;
    assert!(find(&message).is_err());
}

#[test]
fn an_unsigned_message_has_no_tsig() {
    assert_eq!(find(&query(7)).unwrap(), None);
}

#[test]
fn md5_is_refused_by_name() {
    let error = Algorithm::from_name("hmac-md5").unwrap_err();
    assert!(error.contains("not supported"), "{error}");
    assert_eq!(
        Algorithm::from_name("HMAC-SHA384.").unwrap(),
        Algorithm::HmacSha384
    );
}

#[test]
fn a_signed_request_verifies_and_is_stripped_back_to_the_original() {
    let key = key("xfr.key", Algorithm::HmacSha256);
    let original = query(0x4242);
    let mut signed = original.clone();
    sign_request(&key, &mut signed, 1_700_000_000);
    let record = find(&signed).unwrap().unwrap();
    assert_eq!(strip(&signed, &record), original);
    assert!(matches!(
        check(&signed, &key, Some(1_700_000_100)),
        RequestCheck::Verified { .. }
    ));
}

#[test]
fn every_message_of_a_multi_message_answer_is_chained_to_the_one_before() {
    let key = key("xfr.key", Algorithm::HmacSha384);
    let now = 1_700_000_000;
    let mut request = query(9);
    let request_mac = sign_request(&key, &mut request, now);
    let mut signer = Signer::answer(&key, request_mac.clone());
    let messages: Vec<Vec<u8>> = (0..4)
        .map(|n| {
            let mut m = message(9, n);
            signer.sign(&mut m, now + 1);
            m
        })
        .collect();
    let mut verifier = Verifier::new(&key, &request_mac);
    for (n, signed) in messages.iter().enumerate() {
        assert_eq!(
            verifier.verify(signed, now + 2).unwrap(),
            message(9, n as u8)
        );
    }
    verifier.finish().unwrap();

    // Out of order, the chain breaks.
    let mut verifier = Verifier::new(&key, &request_mac);
    verifier.verify(&messages[0], now).unwrap();
    assert_eq!(verifier.verify(&messages[2], now), Err(VerifyError::BadSig));
}

#[test]
fn unsigned_messages_between_signed_ones_are_covered_by_the_next_mac() {
    // §5.3.1: a server may sign only every so often; the MAC then covers
    // every message since the last signed one.
    let key = key("xfr.key", Algorithm::HmacSha256);
    let request_mac = vec![7u8; 32];
    let now = 1_700_000_000;
    let mut first = message(1, 1);
    let mut signer = Signer::answer(&key, request_mac.clone());
    signer.sign(&mut first, now);
    let prior = find(&first).unwrap().unwrap().mac;
    let middle = message(1, 2);
    let mut last = message(1, 3);
    let mut context = chained(&key, &prior);
    context.update(&middle);
    context.update(&last);
    context.update(&timers(now, FUDGE));
    let mac = context.sign().as_ref().to_vec();
    append_record(
        &mut last,
        &key.wire_name,
        &key.algorithm.wire_name(),
        now,
        &mac,
        1,
        0,
        &[],
    );

    let mut verifier = Verifier::new(&key, &request_mac);
    verifier.verify(&first, now).unwrap();
    verifier.verify(&middle, now).unwrap();
    assert_eq!(verifier.finish(), Err(VerifyError::Unsigned));
    verifier.verify(&last, now).unwrap();
    verifier.finish().unwrap();

    let mut tampered = middle.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let mut verifier = Verifier::new(&key, &request_mac);
    verifier.verify(&first, now).unwrap();
    verifier.verify(&tampered, now).unwrap();
    assert_eq!(verifier.verify(&last, now), Err(VerifyError::BadSig));
}

#[test]
fn an_unsigned_first_message_is_refused() {
    let key = key("xfr.key", Algorithm::HmacSha256);
    let mut verifier = Verifier::new(&key, &[1; 32]);
    assert_eq!(
        verifier.verify(&message(1, 1), 0),
        Err(VerifyError::Unsigned)
    );
}

#[test]
fn a_badtime_answer_is_signed_and_carries_the_server_time() {
    let key = key("xfr.key", Algorithm::HmacSha256);
    let mut request = query(3);
    let request_time = 1_000;
    let request_mac = sign_request(&key, &mut request, request_time);
    let server_now = 1_700_000_000;
    let mut answer = message(3, 0);
    Signer::error_answer(&key, request_mac.clone(), error::BADTIME, request_time)
        .sign(&mut answer, server_now);
    let record = find(&answer).unwrap().unwrap();
    assert_eq!(record.error, error::BADTIME);
    assert_eq!(record.time_signed, request_time);
    assert_eq!(record.other, server_now.to_be_bytes()[2..]);
    // The client checks the MAC, then reports the server's error.
    let mut verifier = Verifier::new(&key, &request_mac);
    assert_eq!(
        verifier.verify(&answer, request_time),
        Err(VerifyError::ServerError(error::BADTIME))
    );
}

#[test]
fn badkey_and_badsig_answers_are_unsigned() {
    let message_bytes = hex(DIG_SHA256);
    let record = find(&message_bytes).unwrap().unwrap();
    let mut answer = message(record.original_id, 0);
    append_unsigned_error(&mut answer, &record, error::BADKEY);
    let parsed = find(&answer).unwrap().unwrap();
    assert!(parsed.mac.is_empty());
    assert_eq!(parsed.error, error::BADKEY);
    assert_eq!(parsed.key_name, record.key_name);
    let key = key("tsig-test.example", Algorithm::HmacSha256);
    let mut verifier = Verifier::new(&key, &record.mac);
    assert_eq!(
        verifier.verify(&answer, 0),
        Err(VerifyError::ServerError(error::BADKEY))
    );
}

#[test]
fn record_len_is_what_signing_adds() {
    let key = key("xfr.key", Algorithm::HmacSha512);
    let mut m = message(1, 1);
    let before = m.len();
    Signer::error_answer(&key, vec![0; 64], error::BADTIME, 0).sign(&mut m, 5);
    assert_eq!(m.len() - before, key.record_len());
}
