//! What an operator watches: metrics that add up after traffic, health with
//! lameduck, readiness — through the real binary over loopback.

mod common;

use std::io::Write;
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

/// Parses a scrape with the Prometheus Python client's parser (Debian's
/// `python3-prometheus-client`, under the system interpreter) and checks
/// what a scraper relies on: every histogram's buckets are cumulative and
/// end in `+Inf` equal to `_count`. Prints the summed requests.
const PROMETHEUS_PARSE: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
requests = 0
for family in text_string_to_metric_families(sys.stdin.read()):
    if family.name == "coredns_dns_requests":
        assert family.type == "counter", family.type
        requests += sum(s.value for s in family.samples if s.name.endswith("_total"))
    if family.type != "histogram":
        continue
    series = {}
    for s in family.samples:
        labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        series.setdefault(labels, []).append(s)
    for labels, samples in series.items():
        buckets = [s for s in samples if s.name.endswith("_bucket")]
        counts = [s.value for s in buckets]
        assert counts == sorted(counts), (family.name, labels, counts)
        assert buckets[-1].labels["le"] == "+Inf", (family.name, labels)
        count = [s.value for s in samples if s.name.endswith("_count")]
        assert count == [counts[-1]], (family.name, labels, count, counts)
print(int(requests))
"#;

#[test]
fn a_scrape_parses_as_prometheus_text_with_a_real_parser() {
    let python = "/usr/bin/python3";
    let importable = std::process::Command::new(python)
        .args(["-c", "import prometheus_client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !importable {
        assert!(
            std::env::var_os("OXIDNS_REQUIRE_TOOLS").is_none(),
            "python3-prometheus-client is required (OXIDNS_REQUIRE_TOOLS is set)"
        );
        eprintln!("skipping: python3-prometheus-client is not installed");
        return;
    }
    let port = free_fixed_port();
    let server = Oxidns::start(&format!(
        ".:0 {{\n prometheus 127.0.0.1:{port}\n whoami\n}}\n"
    ));
    for i in 0..7 {
        udp(server.addr(), &query(&format!("q{i}.example"), Rtype::A));
    }
    tcp(server.addr(), &query("example", Rtype::TXT));
    let response = http_get(([127, 0, 0, 1], port).into(), "/metrics").expect("metrics served");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let mut parser = std::process::Command::new(python)
        .args(["-c", PROMETHEUS_PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    parser
        .stdin
        .take()
        .expect("a pipe")
        .write_all(body.as_bytes())
        .expect("the scrape is written");
    let parsed = parser.wait_with_output().expect("the parser ends");
    assert!(
        parsed.status.success(),
        "{}\n{body}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&parsed.stdout).trim(),
        "8",
        "{body}"
    );
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
