//! Black-box tests of the hardening plugins: `acl`, `ratelimit`, `cookies`,
//! with real packets over loopback to the real binary (and `dig`/`kdig`
//! for cookies).

mod common;

use std::time::Duration;

use common::*;

/// How long a test waits before concluding that no answer is coming.
const SILENCE: Duration = Duration::from_millis(700);

#[test]
fn acl_drop_sends_nothing_and_the_server_goes_on_answering_others() {
    let server =
        Oxidns::start(".:0 {\n acl {\n  allow net ::1\n  drop net 127.0.0.0/8\n }\n whoami\n}\n");
    let message = query("example.org", Rtype::A);
    assert_eq!(udp_raw(server.addr(), &message, SILENCE), None);
    let got = udp(server.addr_v6(), &message);
    assert_eq!(got.response.rcode, OptRcode::NOERROR);
    // Dropped over TCP too: the connection stays open and nothing comes.
    let mut stream = tcp_connect(server.addr());
    stream.set_read_timeout(Some(SILENCE)).unwrap();
    tcp_send(&mut stream, &message);
    assert_eq!(tcp_receive(&mut stream), None);
}

#[test]
fn acl_block_refuses_and_filter_answers_empty() {
    let server = Oxidns::start(
        ".:0 {\n acl {\n  filter type AAAA net 127.0.0.0/8\n  block net 127.0.0.0/8\n }\n whoami\n}\n",
    );
    let blocked = udp(server.addr(), &query_edns("example.org", Rtype::A, edns(1232)));
    assert_eq!(blocked.response.rcode, OptRcode::REFUSED);
    let ede = &blocked.edns.expect("an OPT record").options[0];
    assert_eq!((ede.code, &ede.data[..]), (15, &[0u8, 15][..]));
    let filtered = udp(server.addr(), &query("example.org", Rtype::AAAA));
    assert_eq!(filtered.response.rcode, OptRcode::NOERROR);
    assert!(filtered.response.answer.is_empty());
    let allowed = udp(server.addr_v6(), &query("example.org", Rtype::A));
    assert!(allowed.response.authoritative);
}
