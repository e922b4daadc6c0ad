//! Limits on what clients can make the server hold (issue: hardening): a
//! client that stalls a thousand TCP connections does not shut out others,
//! `timeouts` frees stalled connections, and each limit hit is counted.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use oxidns_proto::{Rcode, Rtype};

/// A TCP connection from `source` that sends one byte of a length prefix
/// and then nothing: a client stalled mid-message.
fn stalled_from(source: &str, server: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&server.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.write_all(&[0]).unwrap();
    stream
}

/// Whether the server has closed `stream` (reads end or fail) within `wait`.
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 1];
    matches!(stream.read(&mut buf), Ok(0) | Err(_))
        && !matches!(stream.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[test]
fn a_thousand_stalled_connections_from_one_client_do_not_shut_out_others() {
    let metrics_port = free_fixed_port();
    let server = Oxidns::start(&format!(
        ".:0 {{\n bind 127.0.0.1\n prometheus 127.0.0.1:{metrics_port}\n whoami\n}}\n"
    ));
    let stalled: Vec<TcpStream> = (0..1000)
        .map(|_| stalled_from("127.0.0.1", server.addr()))
        .collect();

    // Another client, over TCP and over UDP, is answered at once.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.connect(&server.addr().into()).unwrap();
    let mut other: TcpStream = socket.into();
    other
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    tcp_send(&mut other, &query("example.org", Rtype::A));
    let answer = tcp_receive(&mut other).expect("the other client is answered over TCP");
    let answer = oxidns_proto::Response::parse(&answer).unwrap();
    assert_eq!(answer.response.header_rcode(), Rcode::NOERROR);
    assert_eq!(
        udp(server.addr(), &query("example.org", Rtype::A))
            .response
            .header_rcode(),
        Rcode::NOERROR
    );

    // The staller got its 100 connections; the other 900 were turned away and counted.
    let metrics =
        http_get(SocketAddr::from(([127, 0, 0, 1], metrics_port)), "/metrics").expect("metrics");
    let refused = metric_sum(
        &metrics,
        "oxidns_limit_reached_total",
        &["limit=\"tcp_connections_per_client\""],
    );
    assert_eq!(refused, 900.0, "{metrics}");
    drop(stalled);
}

#[test]
fn timeouts_close_connections_that_stall() {
    let server =
        Oxidns::start(".:0 {\n bind 127.0.0.1\n timeouts {\n read 1s\n idle 1s\n }\n whoami\n}\n");
    // Stalled mid-message: the read timeout ends it.
    let mut mid_message = stalled_from("127.0.0.1", server.addr());
    // Connected and silent: the idle timeout ends it.
    let mut silent = tcp_connect(server.addr());
    let deadline = Instant::now() + Duration::from_secs(10);
    assert!(closed_within(&mut mid_message, deadline - Instant::now()));
    assert!(closed_within(&mut silent, deadline - Instant::now()));
}

#[test]
fn a_bad_limit_is_refused_at_its_line() {
    let dir = TempDir::new("limits");
    let conf = dir.write(
        "Corefile",
        ".:0 {\n limits {\n tcp_connections none\n }\n whoami\n}\n",
    );
    let (_, stderr, code) = run(
        binary(),
        &["-check", "-conf", conf.to_str().unwrap()],
        &dir.0,
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("Corefile:3: tcp_connections: 'none' is not a count"),
        "{stderr}"
    );
}
