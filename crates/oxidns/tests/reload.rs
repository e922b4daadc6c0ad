//! Configuration reloads: a changed Corefile is applied without failing or
//! dropping a query, listeners come and go, and a bad Corefile is refused
//! while the running one keeps serving.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

fn version(addr: SocketAddr, over_tcp: bool) -> Option<String> {
    let message = query_class("version.bind", Rtype::TXT, Class::CH);
    let response = if over_tcp {
        let mut stream =
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        tcp_send(&mut stream, &message);
        Response::parse(&tcp_receive(&mut stream)?).ok()?
    } else {
        Response::parse(&udp_raw(addr, &message, Duration::from_secs(2))?).ok()?
    };
    response
        .response
        .answer
        .first()
        .map(|r| r.data().to_string())
}

fn signal(server: &Oxidns, signal: i32) {
    // SAFETY: kill(2) on the PID of a child this test started.
    unsafe { libc::kill(server.child.id() as i32, signal) };
}

fn wait_until(server: &Oxidns, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "timed out waiting for {what}; server said:\n{}",
        server.output().join("\n")
    );
}

#[test]
fn twenty_reloads_under_load_lose_no_query() {
    let main_port = free_fixed_port();
    let mut extra_port = free_fixed_port();
    while extra_port == main_port {
        extra_port = free_fixed_port();
    }
    let corefile = |generation: usize, extra: bool| {
        let mut text = format!(".:{main_port} {{\n bind 127.0.0.1\n chaos v{generation}\n}}\n");
        if extra {
            text.push_str(&format!(
                ".:{extra_port} {{\n bind 127.0.0.1\n chaos extra{generation}\n}}\n"
            ));
        }
        text
    };
    let mut server = Oxidns::start(&corefile(0, false));
    let main: SocketAddr = ([127, 0, 0, 1], main_port).into();
    let extra: SocketAddr = ([127, 0, 0, 1], extra_port).into();
    let conf = server.dir.0.join("Corefile");

    // Clients on UDP and TCP for the whole run; every query must be answered.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = [false, true]
        .into_iter()
        .map(|over_tcp| {
            let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120)
                {
                    sent.fetch_add(1, Ordering::Relaxed);
                    if version(main, over_tcp).is_none() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    let mut last_valid = 0;
    for generation in 1..=20 {
        let invalid = generation % 5 == 0;
        let with_extra = generation % 3 == 0;
        let text = if invalid {
            format!(
                "{}\nbroken {{\n no_such_directive\n}}\n",
                corefile(generation, with_extra)
            )
        } else {
            corefile(generation, with_extra)
        };
        std::fs::write(&conf, text).unwrap();
        signal(&server, libc::SIGUSR1);
        if invalid {
            assert!(
                server.wait_for_output("still serving the previous one"),
                "generation {generation}: the bad config is refused"
            );
            assert_eq!(
                version(main, false).as_deref(),
                Some(format!("\"v{last_valid}\"").as_str())
            );
            // Clear the log so the next refusal is seen anew.
            server.output.lock().unwrap().clear();
        } else {
            let expected = format!("\"v{generation}\"");
            wait_until(&server, &format!("generation {generation}"), || {
                version(main, false).as_deref() == Some(expected.as_str())
            });
            last_valid = generation;
            if with_extra {
                let expected = format!("\"extra{generation}\"");
                wait_until(&server, "the added listener", || {
                    version(extra, true).as_deref() == Some(expected.as_str())
                });
            } else {
                wait_until(&server, "the removed listener to close", || {
                    version(extra, false).is_none()
                });
            }
        }
    }

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent > 40, "the clients ran ({sent} queries)");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "of {sent} queries");
    assert_eq!(
        version(main, true).as_deref(),
        Some(format!("\"v{last_valid}\"").as_str())
    );
    assert!(server.terminate().success());
}

#[test]
fn the_reload_plugin_notices_a_changed_import() {
    let server_dir = TempDir::new("reload-import");
    server_dir.write("answers.conf", "chaos first\n");
    let corefile = format!(
        ".:0 {{\n bind 127.0.0.1\n reload 2s 1s\n import {}\n}}\n",
        server_dir.0.join("answers.conf").display()
    );
    let server = Oxidns::start(&corefile);
    let addr = server.addr();
    assert_eq!(version(addr, false).as_deref(), Some("\"first\""));
    server_dir.write("answers.conf", "chaos second\n");
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && version(addr, false).as_deref() != Some("\"second\"") {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        version(addr, false).as_deref(),
        Some("\"second\""),
        "server said:\n{}",
        server.output().join("\n")
    );
    drop(server);
}
