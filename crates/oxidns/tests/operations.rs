//! What an operator watches: metrics that add up after traffic, health with
//! lameduck, readiness — through the real binary over loopback.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn metrics_after_traffic_add_up_by_rcode() {
    let port = free_fixed_port();
    let server = Oxidns::start(&format!(
        "example.org:0 {{\n prometheus 127.0.0.1:{port}\n whoami\n}}\nexample.net:0 {{\n prometheus 127.0.0.1:{port}\n}}\n"
    ));
    for i in 0..5 {
        udp(
            server.addr(),
            &query(&format!("q{i}.example.org"), Rtype::A),
        );
    }
    for _ in 0..2 {
        tcp(server.addr(), &query("example.org", Rtype::AAAA));
    }
    for _ in 0..3 {
        // A block whose chain has nothing to answer with: SERVFAIL, still counted.
        udp(server.addr(), &query("example.net", Rtype::TXT));
    }
    let metrics = http_get(([127, 0, 0, 1], port).into(), "/metrics").expect("metrics served");
    let requests = metric_sum(&metrics, "coredns_dns_requests_total", &[]);
    let responses = metric_sum(&metrics, "coredns_dns_responses_total", &[]);
    assert_eq!(requests, 10.0, "{metrics}");
    assert_eq!(responses, requests, "every request has a response");
    assert_eq!(
        metric_sum(
            &metrics,
            "coredns_dns_responses_total",
            &["rcode=\"NOERROR\""]
        ),
        7.0
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "coredns_dns_responses_total",
            &["rcode=\"SERVFAIL\""]
        ),
        3.0
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "coredns_dns_requests_total",
            &["proto=\"tcp\"", "type=\"AAAA\""]
        ),
        2.0
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "coredns_dns_requests_total",
            &["zone=\"example.net.\"", "type=\"TXT\""]
        ),
        3.0
    );
    assert_eq!(
        metric_sum(&metrics, "coredns_dns_request_duration_seconds_count", &[]),
        10.0
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "coredns_plugin_enabled",
            &["zone=\"example.org.\"", "name=\"whoami\""]
        ),
        1.0
    );
    for name in [
        "coredns_build_info",
        "coredns_dns_response_size_bytes_bucket",
        "process_resident_memory_bytes",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
}

#[test]
fn health_answers_ok_and_lameduck_keeps_serving_after_sigterm() {
    let port = free_fixed_port();
    let mut server = Oxidns::start(&format!(
        ".:0 {{\n health 127.0.0.1:{port} {{\n  lameduck 2s\n }}\n whoami\n}}\n"
    ));
    let health: SocketAddr = ([127, 0, 0, 1], port).into();
    let response = http_get(health, "/health").expect("health served");
    assert!(
        response.starts_with("HTTP/1.1 200") && response.ends_with("OK"),
        "{response}"
    );
    // SAFETY: kill(2) on the PID of a child this test started.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "still running in lameduck"
    );
    let got = udp(server.addr(), &query("example.org", Rtype::A));
    assert_eq!(
        got.response.rcode,
        OptRcode::NOERROR,
        "still answering in lameduck"
    );
    assert!(http_get(health, "/health").is_some_and(|r| r.starts_with("HTTP/1.1 200")));
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "did not exit after lameduck");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
}

#[test]
fn ready_answers_ok_when_everything_is_loaded() {
    let port = free_fixed_port();
    let server = Oxidns::start(&format!(".:0 {{\n ready 127.0.0.1:{port}\n whoami\n}}\n"));
    let response = http_get(([127, 0, 0, 1], port).into(), "/ready").expect("ready served");
    assert!(
        response.starts_with("HTTP/1.1 200") && response.ends_with("OK"),
        "{response}"
    );
    drop(server);
}

#[test]
fn health_probes_itself_into_the_metrics() {
    let metrics_port = free_fixed_port();
    let health_port = free_fixed_port();
    let server = Oxidns::start(&format!(
        ".:0 {{\n health 127.0.0.1:{health_port}\n prometheus 127.0.0.1:{metrics_port}\n whoami\n}}\n"
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics =
            http_get(([127, 0, 0, 1], metrics_port).into(), "/metrics").unwrap_or_default();
        if metric_sum(
            &metrics,
            "coredns_health_request_duration_seconds_count",
            &[],
        ) >= 1.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no health probe recorded:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(server);
}

#[test]
fn health_and_metrics_listeners_stay_up_across_reloads() {
    let health_port = free_fixed_port();
    let metrics_port = free_fixed_port();
    let corefile = |version: &str| {
        format!(
            ".:0 {{\n bind 127.0.0.1\n health 127.0.0.1:{health_port}\n prometheus 127.0.0.1:{metrics_port}\n chaos {version}\n}}\n"
        )
    };
    let server = Oxidns::start(&corefile("one"));
    let health: SocketAddr = ([127, 0, 0, 1], health_port).into();
    let metrics: SocketAddr = ([127, 0, 0, 1], metrics_port).into();
    let conf = server.dir.0.join("Corefile");
    let version = || {
        udp(
            server.addr(),
            &query_class("version.bind", Rtype::TXT, Class::CH),
        )
        .response
        .answer[0]
            .data()
            .to_string()
    };
    for generation in ["two", "three", "four"] {
        std::fs::write(&conf, corefile(generation)).unwrap();
        // SAFETY: kill(2) on the PID of a child this test started.
        unsafe { libc::kill(server.child.id() as i32, libc::SIGUSR1) };
        let expected = format!("\"{generation}\"");
        let deadline = Instant::now() + Duration::from_secs(10);
        while version() != expected {
            // Throughout the reload, both endpoints answer.
            assert!(http_get(health, "/health").is_some_and(|r| r.starts_with("HTTP/1.1 200")));
            assert!(http_get(metrics, "/metrics").is_some_and(|r| r.starts_with("HTTP/1.1 200")));
            assert!(Instant::now() < deadline, "reload to {generation} not seen");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(http_get(health, "/health").is_some_and(|r| r.starts_with("HTTP/1.1 200")));
    }
    let text = http_get(metrics, "/metrics").unwrap();
    assert!(text.contains("coredns_reload_version_info"), "{text}");
}
