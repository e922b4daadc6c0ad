use std::sync::Arc;

use oxidns_server::proto::tsig::{
    Algorithm, Key, Verifier, VerifyError, error, find, sign_request,
};
use oxidns_server::proto::{Class, Query, Rcode, Response, Rtype, name_from_str};
use oxidns_server::test_util::{CLIENT, LOCAL, config, config_error, serve_and_finish};
use oxidns_server::{
    ConfigError, Handler, HandlerFuture, Next, PluginEntry, Request, Setup, Transport,
};

use super::*;

const SECRET: &str = "c2VjcmV0LWtleS1mb3Itb3hpZG5zLXRlc3Rz";

/// The plugin after `tsig`: answers NOERROR.
struct Answer;

impl Handler for Answer {
    fn name(&self) -> &'static str {
        "answer"
    }

    fn serve<'a>(&'a self, _: &'a mut Request, _: Next<'a>) -> HandlerFuture<'a> {
        let mut response = Response::new(Rcode::NOERROR);
        response.authoritative = true;
        HandlerFuture::ready(Ok(response))
    }
}

fn answer_setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    setup.add_handler(Arc::new(Answer));
    Ok(())
}

/// A plugin that answers with more TXT records than 512 bytes hold.
struct Big;

impl Handler for Big {
    fn name(&self) -> &'static str {
        "big"
    }

    fn serve<'a>(&'a self, request: &'a mut Request, _: Next<'a>) -> HandlerFuture<'a> {
        let mut response = Response::new(Rcode::NOERROR);
        for i in 0..30 {
            response.answer.push(oxidns_server::proto::Record::new(
                request.qname().clone(),
                Class::IN,
                oxidns_server::proto::Ttl::from_secs(60),
                oxidns_server::proto::RecordData::Txt(
                    oxidns_server::proto::domain::rdata::Txt::build_from_slice(
                        format!("{i:02}{}", "x".repeat(38)).as_bytes(),
                    )
                    .unwrap(),
                ),
            ));
        }
        HandlerFuture::ready(Ok(response))
    }
}

fn big_setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    setup.add_handler(Arc::new(Big));
    Ok(())
}

const PLUGINS: &[PluginEntry] = &[
    PLUGIN,
    PluginEntry {
        name: "answer",
        setup: answer_setup,
    },
];

fn corefile(options: &str) -> String {
    format!(
        "example.org {{\n tsig {{\n  secret xfr.example.org. {SECRET}\n  secret sha1.key. {SECRET} hmac-sha1\n{options}\n }}\n answer\n}}"
    )
}

fn key(name: &str, algorithm: Algorithm) -> Key {
    Key::from_base64(&name_from_str(name).unwrap(), algorithm, SECRET).unwrap()
}

fn request_from(bytes: Vec<u8>) -> Request {
    let query = Query::parse(bytes.into()).unwrap();
    Request::new(
        query,
        CLIENT.parse().unwrap(),
        LOCAL.parse().unwrap(),
        Transport::Udp,
        name_from_str("example.org").unwrap(),
        Arc::from("dns://:53"),
    )
}

fn query(qtype: Rtype) -> Vec<u8> {
    Query::build(
        77,
        &name_from_str("www.example.org").unwrap(),
        qtype,
        Class::IN,
        None,
    )
}

/// A query signed with `key` at `time`; also its MAC.
fn signed(qtype: Rtype, key: &Key, time: u64) -> (Vec<u8>, Vec<u8>) {
    let mut bytes = query(qtype);
    let mac = sign_request(key, &mut bytes, time);
    (bytes, mac)
}

#[tokio::test]
async fn a_signed_request_gets_a_signed_answer_that_verifies() {
    for algorithm in [Algorithm::HmacSha256, Algorithm::HmacSha1] {
        let name = match algorithm {
            Algorithm::HmacSha1 => "sha1.key",
            _ => "XFR.example.org",
        };
        let config = config(&corefile(""), PLUGINS).unwrap();
        let key = key(name, algorithm);
        let (bytes, mac) = signed(Rtype::A, &key, tsig::now());
        let (response, wire) = serve_and_finish(&config, request_from(bytes)).await;
        assert_eq!(response.rcode.rcode(), Rcode::NOERROR);
        let mut verifier = Verifier::new(&key, &mac);
        verifier.verify(&wire, tsig::now()).unwrap();
        verifier.finish().unwrap();
    }
}

#[tokio::test]
async fn later_plugins_see_the_request_without_its_tsig_and_the_key_name() {
    let config = config(&corefile(""), PLUGINS).unwrap();
    let key = key("xfr.example.org", Algorithm::HmacSha256);
    let (bytes, _) = signed(Rtype::A, &key, tsig::now());
    let mut request = request_from(bytes);
    oxidns_server::test_util::serve_config(&config, &mut request)
        .await
        .unwrap();
    assert_eq!(&request.query.message[..], &query(Rtype::A)[..]);
    assert_eq!(request.metadata.get(METADATA_KEY), Some("xfr.example.org."));
}

#[tokio::test]
async fn an_unknown_key_gets_notauth_badkey_unsigned() {
    let config = config(&corefile(""), PLUGINS).unwrap();
    let stranger = key("stranger.key", Algorithm::HmacSha256);
    let (bytes, mac) = signed(Rtype::A, &stranger, tsig::now());
    let (response, wire) = serve_and_finish(&config, request_from(bytes)).await;
    assert_eq!(response.rcode.rcode(), Rcode::NOTAUTH);
    let record = find(&wire).unwrap().unwrap();
    assert_eq!(record.error, error::BADKEY);
    assert!(record.mac.is_empty());
    assert_eq!(
        Verifier::new(&stranger, &mac).verify(&wire, tsig::now()),
        Err(VerifyError::ServerError(error::BADKEY))
    );
}

#[tokio::test]
async fn a_key_with_another_algorithm_gets_badkey() {
    let config = config(&corefile(""), PLUGINS).unwrap();
    let wrong = key("xfr.example.org", Algorithm::HmacSha512);
    let (bytes, _) = signed(Rtype::A, &wrong, tsig::now());
    let (_, wire) = serve_and_finish(&config, request_from(bytes)).await;
    assert_eq!(find(&wire).unwrap().unwrap().error, error::BADKEY);
}

#[tokio::test]
async fn a_wrong_secret_gets_notauth_badsig() {
    let config = config(&corefile(""), PLUGINS).unwrap();
    let forged = Key::new(
        &name_from_str("xfr.example.org").unwrap(),
        Algorithm::HmacSha256,
        b"guessed",
    );
    let (bytes, _) = signed(Rtype::A, &forged, tsig::now());
    let (response, wire) = serve_and_finish(&config, request_from(bytes)).await;
    assert_eq!(response.rcode.rcode(), Rcode::NOTAUTH);
    let record = find(&wire).unwrap().unwrap();
    assert_eq!(record.error, error::BADSIG);
    assert!(record.mac.is_empty());
}

#[tokio::test]
async fn a_request_outside_the_fudge_gets_badtime_with_our_time() {
    let config = config(&corefile(""), PLUGINS).unwrap();
    let key = key("xfr.example.org", Algorithm::HmacSha256);
    let long_ago = tsig::now() - 3600;
    let (bytes, mac) = signed(Rtype::A, &key, long_ago);
    let (response, wire) = serve_and_finish(&config, request_from(bytes)).await;
    assert_eq!(response.rcode.rcode(), Rcode::NOTAUTH);
    let record = find(&wire).unwrap().unwrap();
    assert_eq!(record.error, error::BADTIME);
    assert_eq!(record.time_signed, long_ago);
    let ours = record
        .other
        .iter()
        .fold(0u64, |t, b| (t << 8) | u64::from(*b));
    assert!(ours.abs_diff(tsig::now()) < 60, "server time {ours}");
    // Signed: the client can trust the error (RFC 8945 §5.2.3).
    assert_eq!(
        Verifier::new(&key, &mac).verify(&wire, long_ago),
        Err(VerifyError::ServerError(error::BADTIME))
    );
}

#[tokio::test]
async fn unsigned_requests_of_required_types_are_refused() {
    let config = config(&corefile("  require AXFR IXFR"), PLUGINS).unwrap();
    let (response, _) = serve_and_finish(&config, request_from(query(Rtype::AXFR))).await;
    assert_eq!(response.rcode.rcode(), Rcode::REFUSED);
    let (response, _) = serve_and_finish(&config, request_from(query(Rtype::A))).await;
    assert_eq!(response.rcode.rcode(), Rcode::NOERROR);
    let key = key("xfr.example.org", Algorithm::HmacSha256);
    let (bytes, _) = signed(Rtype::AXFR, &key, tsig::now());
    let (response, _) = serve_and_finish(&config, request_from(bytes)).await;
    assert_eq!(response.rcode.rcode(), Rcode::NOERROR);
}

#[tokio::test]
async fn require_all_refuses_every_unsigned_request() {
    let config = config(&corefile("  require all"), PLUGINS).unwrap();
    let (response, _) = serve_and_finish(&config, request_from(query(Rtype::TXT))).await;
    assert_eq!(response.rcode.rcode(), Rcode::REFUSED);
}

#[tokio::test]
async fn unsigned_requests_of_required_opcodes_are_refused() {
    let config = config(&corefile("  require_opcode NOTIFY"), PLUGINS).unwrap();
    let mut notify = query(Rtype::SOA);
    notify[2] = (notify[2] & 0x87) | (4 << 3); // opcode NOTIFY
    let (response, _) = serve_and_finish(&config, request_from(notify)).await;
    assert_eq!(response.rcode.rcode(), Rcode::REFUSED);
    let (response, _) = serve_and_finish(&config, request_from(query(Rtype::SOA))).await;
    assert_eq!(response.rcode.rcode(), Rcode::NOERROR);
}

#[tokio::test]
async fn names_outside_the_zones_pass_unchecked() {
    let config = config(
        &format!("example.org {{\n tsig sub.example.org {{\n  secret k. {SECRET}\n  require all\n }}\n answer\n}}"),
        PLUGINS,
    )
    .unwrap();
    let (response, _) = serve_and_finish(&config, request_from(query(Rtype::A))).await;
    assert_eq!(response.rcode.rcode(), Rcode::NOERROR);
}

#[test]
fn setup_errors_name_their_line() {
    let md5 = config_error(
        "example.org {\n tsig {\n  secret k. c2VjcmV0 hmac-md5\n }\n}",
        PLUGINS,
    );
    assert!(md5.starts_with("Corefile:3: "), "{md5}");
    assert!(md5.contains("not supported"), "{md5}");
    let twice = config_error(
        "example.org {\n tsig {\n  secret k. c2VjcmV0\n  secret K. c2VjcmV0\n }\n}",
        PLUGINS,
    );
    assert!(
        twice.contains("Corefile:4: ") && twice.contains("defined twice"),
        "{twice}"
    );
    let qtype = config_error(
        "example.org {\n tsig {\n  require AXFR NOPE\n }\n}",
        PLUGINS,
    );
    assert!(
        qtype.starts_with("Corefile:3: ") && qtype.contains("NOPE"),
        "{qtype}"
    );
    let unknown = config_error("example.org {\n tsig {\n  colour blue\n }\n}", PLUGINS);
    assert!(unknown.contains("unknown property"), "{unknown}");
    let once = config_error("example.org {\n tsig\n tsig\n}", PLUGINS);
    assert!(once.contains("once"), "{once}");
}

#[test]
fn secrets_are_read_from_a_bind_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.conf");
    std::fs::write(
        &path,
        format!("key \"file.key.\" {{\n algorithm hmac-sha384;\n secret \"{SECRET}\";\n}};\n"),
    )
    .unwrap();
    let config = config(
        &format!(
            "example.org {{\n tsig {{\n  secrets {}\n }}\n answer\n}}",
            path.display()
        ),
        PLUGINS,
    );
    assert!(config.is_ok());
    std::fs::write(
        &path,
        "key \"file.key.\" {\n algorithm hmac-md5;\n secret \"c2Vj\";\n};\n",
    )
    .unwrap();
    let error = config_error(
        &format!(
            "example.org {{\n tsig {{\n  secrets {}\n }}\n}}",
            path.display()
        ),
        PLUGINS,
    );
    assert!(
        error.starts_with(&format!("{}:2: ", path.display())),
        "{error}"
    );
}

#[tokio::test]
async fn a_truncated_udp_answer_keeps_room_for_its_signature() {
    let plugins = [
        PLUGIN,
        PluginEntry {
            name: "big",
            setup: big_setup,
        },
    ];
    let config = config(
        &format!("example.org {{\n tsig {{\n  secret xfr.example.org. {SECRET} hmac-sha512\n }}\n big\n}}"),
        &plugins,
    )
    .unwrap();
    let key = key("xfr.example.org", Algorithm::HmacSha512);
    let (bytes, mac) = signed(Rtype::TXT, &key, tsig::now());
    // No EDNS: 512 bytes at most (RFC 1035 §4.2.1), signature included.
    let (_, wire) = serve_and_finish(&config, request_from(bytes)).await;
    assert!(wire.len() <= 512, "{} bytes", wire.len());
    assert!(wire[2] & 0x02 != 0, "TC set");
    let mut verifier = Verifier::new(&key, &mac);
    verifier.verify(&wire, tsig::now()).unwrap();
}
