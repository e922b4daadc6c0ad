//! The command line as CoreDNS's: flags, `-check`, the default Corefile,
//! signals and the pidfile.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn oxidns(args: &[&str], cwd: &std::path::Path) -> (String, String, i32) {
    run(binary(), args, cwd)
}

#[test]
fn version_prints_the_name_and_exits_zero() {
    let dir = TempDir::new("cli");
    let (out, _, code) = oxidns(&["-version"], &dir.0);
    assert_eq!(code, 0);
    assert!(out.starts_with("oxidns-"), "{out}");
}

#[test]
fn plugins_are_listed_in_execution_order() {
    let dir = TempDir::new("cli");
    let (out, _, code) = oxidns(&["-plugins"], &dir.0);
    assert_eq!(code, 0);
    assert!(out.contains("dns.whoami"), "{out}");
}

#[test]
fn unknown_flag_exits_two_with_usage() {
    let dir = TempDir::new("cli");
    let (_, err, code) = oxidns(&["-bogus"], &dir.0);
    assert_eq!(code, 2);
    assert!(
        err.contains("flag provided but not defined: -bogus"),
        "{err}"
    );
    assert!(err.contains("-conf"), "usage follows: {err}");
}

#[test]
fn check_accepts_a_good_config_silently() {
    let dir = TempDir::new("cli");
    dir.write("Corefile", "example.org:1053 {\n whoami\n}\n");
    let (out, err, code) = oxidns(&["-check"], &dir.0);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
}

#[test]
fn check_reports_every_problem_with_file_and_line() {
    let dir = TempDir::new("cli");
    let conf = dir.write(
        "Corefile",
        "example.org:1053 {\n whoami\n frobnicate\n}\nbad..name {\n whoami extra\n}\n",
    );
    let (_, err, code) = oxidns(&["-check", "-conf", conf.to_str().unwrap()], &dir.0);
    assert_eq!(code, 1);
    let file = conf.display().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{file}:3: unknown directive 'frobnicate'"),
            format!("{file}:5: invalid domain name 'bad..name': empty label"),
            format!("{file}:6: whoami: takes no arguments, got 1"),
        ],
    );
}

#[test]
fn check_refuses_a_zone_served_twice_on_one_port() {
    let dir = TempDir::new("cli");
    dir.write(
        "Corefile",
        "example.org:1053 {\n whoami\n}\nEXAMPLE.org.:1053 {\n whoami\n}\n",
    );
    let (_, err, code) = oxidns(&["-check"], &dir.0);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "Corefile:4: zone example.org. on port 1053 is already served by the block at Corefile:1"
    );
}

#[test]
fn check_reports_syntax_errors_with_line() {
    let dir = TempDir::new("cli");
    dir.write("Corefile", ". {\n whoami\n");
    let (_, err, code) = oxidns(&["-check"], &dir.0);
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "Corefile:1: block is not closed: missing '}'");
}

#[test]
fn schemes_other_than_dns_are_refused_as_not_supported_yet() {
    let dir = TempDir::new("cli");
    dir.write("Corefile", "tls://.:8853 {\n whoami\n}\n");
    let (_, err, code) = oxidns(&[], &dir.0);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "Corefile:1: tls:// servers are not supported yet"
    );
}

#[test]
fn a_missing_conf_file_is_an_error() {
    let dir = TempDir::new("cli");
    let (_, err, code) = oxidns(&["-conf", "nope/Corefile"], &dir.0);
    assert_eq!(code, 1);
    assert!(err.starts_with("nope/Corefile:0: cannot read"), "{err}");
}

#[test]
fn without_a_corefile_whoami_and_log_serve_the_dns_port() {
    let dir = TempDir::new("cli");
    let port = free_fixed_port();
    let child = Command::new(binary())
        .args(["-dns.port", &port.to_string()])
        .current_dir(&dir.0)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut answered = None;
    for _ in 0..50 {
        if let Some(bytes) = udp_raw(
            addr,
            &query("example.org", Rtype::A),
            Duration::from_millis(200),
        ) {
            answered = Some(Response::parse(&bytes).unwrap());
            break;
        }
    }
    // SAFETY: kill(2) on the PID of the child started above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output().unwrap();
    let got = answered.expect("the default config answers");
    assert_eq!(got.response.additional.len(), 2, "whoami answered");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with(&format!(".:{port}\n")), "{stdout}");
}

#[test]
fn sigterm_finishes_and_exits_zero_removing_the_pidfile() {
    let pid_dir = TempDir::new("pid");
    let pidfile = pid_dir.0.join("oxidns.pid");
    let mut server = Oxidns::start_with(
        ".:0 {\n whoami\n}\n",
        &["-pidfile", pidfile.to_str().unwrap()],
    );
    assert_eq!(
        udp(server.addr(), &query("example.org", Rtype::A))
            .response
            .rcode,
        OptRcode::NOERROR
    );
    let written = std::fs::read_to_string(&pidfile).expect("pidfile written");
    assert_eq!(written.trim(), server.child.id().to_string());
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(!pidfile.exists(), "pidfile removed on exit");
}

#[test]
fn quiet_suppresses_the_banner() {
    let dir = TempDir::new("cli");
    let port = free_fixed_port();
    dir.write("Corefile", &format!(".:{port} {{\n whoami\n}}\n"));
    let child = Command::new(binary())
        .arg("-quiet")
        .current_dir(&dir.0)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut up = false;
    for _ in 0..50 {
        if udp_raw(
            addr,
            &query("example.org", Rtype::A),
            Duration::from_millis(200),
        )
        .is_some()
        {
            up = true;
            break;
        }
    }
    // SAFETY: kill(2) on the PID of the child started above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output().unwrap();
    assert!(up);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains(&format!(".:{port}")), "{stdout}");
}
