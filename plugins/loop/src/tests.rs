use super::*;
use std::cell::RefCell;
use std::sync::Weak;

use oxidns_server::proto::{OptRcode, Rcode};
use oxidns_server::test_util::{config, config_error, request, serve_chain};
use oxidns_server::{Limits, Server};

thread_local! {
    /// The detectors the test setup made on this thread (setup runs on the test's thread).
    static CREATED: RefCell<Vec<Arc<Loop>>> = const { RefCell::new(Vec::new()) };
}

/// Probes quickly, and records a loop instead of exiting.
const FAST: ProbeTiming = ProbeTiming {
    give_up_after: Duration::from_secs(10),
    retry_every: Duration::from_millis(50),
    answer_timeout: Duration::from_secs(2),
};

fn record_only(_: &str) {}

fn test_setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let config = parse(setup)?;
    let plugin = Arc::new(Loop::new(config, FAST, record_only));
    CREATED.with(|created| created.borrow_mut().push(plugin.clone()));
    install(setup, plugin);
    Ok(())
}

const TEST_LOOP: PluginEntry = PluginEntry {
    name: "loop",
    setup: test_setup,
};

fn last_created() -> Arc<Loop> {
    CREATED.with(|created| created.borrow().last().cloned().expect("a loop was set up"))
}

/// A detector for `1.2.` in the root zone that never probes by itself.
fn detector() -> Arc<Loop> {
    Arc::new(Loop::new(
        LoopConfig {
            zone: Name::root(),
            qname: name_from_str("1.2.").unwrap(),
            target: None,
            listen: ":53".to_owned(),
        },
        FAST,
        record_only,
    ))
}

/// The end of a test chain that sends each query back into the chain
/// (as a forward to ourselves would) a given number of times, then answers.
struct Bounce {
    times: AtomicUsize,
    front: Arc<Loop>,
    this: Weak<Bounce>,
}

impl Bounce {
    fn chain(front: &Arc<Loop>, times: usize) -> Vec<Arc<dyn Handler>> {
        let bounce = Arc::new_cyclic(|this| Bounce {
            times: AtomicUsize::new(times),
            front: front.clone(),
            this: this.clone(),
        });
        vec![front.clone(), bounce]
    }
}

impl Handler for Bounce {
    fn name(&self) -> &'static str {
        "bounce"
    }

    fn serve<'a>(&'a self, request: &'a mut Request, _: Next<'a>) -> HandlerFuture<'a> {
        HandlerFuture::new(async move {
            let again = self
                .times
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok();
            if !again {
                return Ok(Response::new(Rcode::NXDOMAIN));
            }
            let mut forwarded = request_as(&name_text(request.qname()), request.qtype());
            let this: Arc<dyn Handler> = self.this.upgrade().expect("alive");
            let chain = [self.front.clone() as Arc<dyn Handler>, this];
            serve_chain(&chain, &mut forwarded).await
        })
    }
}

/// A request as received from our own forwarding socket.
fn request_as(qname: &str, qtype: Rtype) -> Request {
    let mut req = request(qname, qtype);
    req.client = "127.0.0.1:5300".parse().unwrap();
    req
}

#[tokio::test]
async fn a_probe_seen_three_times_is_a_loop_reported_in_coredns_words() {
    let detector = detector();
    let chain = Bounce::chain(&detector, 5);
    let mut req = request_as("1.2.", Rtype::HINFO);
    let result = serve_chain(&chain, &mut req).await;
    assert!(result.is_err(), "the loop is broken off with an error");
    assert_eq!(
        detector.detected().as_deref(),
        Some(
            "Loop (127.0.0.1:5300 -> :53) detected for zone \".\", see https://coredns.io/plugins/loop#troubleshooting. Query: \"HINFO 1.2.\""
        )
    );
    assert_eq!(detector.seen(), 3, "the third sighting ends it");
}

#[tokio::test]
async fn a_probe_seen_twice_is_not_a_loop() {
    let detector = detector();
    let chain = Bounce::chain(&detector, 1);
    let mut req = request_as("1.2.", Rtype::HINFO);
    let response = serve_chain(&chain, &mut req).await.unwrap();
    assert_eq!(response.rcode, OptRcode::NXDOMAIN);
    assert_eq!(detector.seen(), 2);
    assert!(detector.detected().is_none());
}

#[tokio::test]
async fn the_halt_is_called_once_however_often_the_loop_goes_round() {
    static HALTS: AtomicUsize = AtomicUsize::new(0);
    fn count(_: &str) {
        HALTS.fetch_add(1, Ordering::SeqCst);
    }
    let detector = Arc::new(Loop::new(
        LoopConfig {
            zone: Name::root(),
            qname: name_from_str("7.8.").unwrap(),
            target: None,
            listen: ":53".to_owned(),
        },
        FAST,
        count,
    ));
    let chain = Bounce::chain(&detector, 2);
    for _ in 0..3 {
        let mut req = request_as("7.8.", Rtype::HINFO);
        let _ = serve_chain(&chain, &mut req).await;
    }
    assert_eq!(HALTS.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn other_names_and_other_types_are_not_counted() {
    let detector = detector();
    let chain = Bounce::chain(&detector, 5);
    let mut other_type = request_as("1.2.", Rtype::A);
    serve_chain(&chain, &mut other_type).await.unwrap();
    let chain = Bounce::chain(&detector, 5);
    let mut other_name = request_as("1.3.", Rtype::HINFO);
    serve_chain(&chain, &mut other_name).await.unwrap();
    assert_eq!(detector.seen(), 0);
    assert!(detector.detected().is_none());
}

#[tokio::test]
async fn the_probe_name_is_matched_without_regard_to_case() {
    let detector = Arc::new(Loop::new(
        LoopConfig {
            zone: name_from_str("example.org").unwrap(),
            qname: name_from_str("1.2.example.org").unwrap(),
            target: None,
            listen: ":53".to_owned(),
        },
        FAST,
        record_only,
    ));
    let chain = Bounce::chain(&detector, 5);
    let mut req = request_as("1.2.EXAMPLE.Org", Rtype::HINFO);
    assert!(serve_chain(&chain, &mut req).await.is_err());
    assert!(
        detector
            .detected()
            .unwrap()
            .contains("for zone \"example.org.\"")
    );
}

#[tokio::test]
async fn after_the_probe_phase_nothing_is_counted() {
    let detector = detector();
    detector.disable();
    let chain = Bounce::chain(&detector, 5);
    let mut req = request_as("1.2.", Rtype::HINFO);
    let response = serve_chain(&chain, &mut req).await.unwrap();
    assert_eq!(response.rcode, OptRcode::NXDOMAIN);
    assert_eq!(detector.seen(), 0);
    assert!(detector.detected().is_none());
}

#[test]
fn the_probe_name_is_two_random_numbers_under_the_first_zone() {
    config("example.org:1053 example.net {\n loop\n}", &[TEST_LOOP]).unwrap();
    let first = last_created();
    let text = name_text(first.qname());
    let labels: Vec<&str> = text.trim_end_matches('.').split('.').collect();
    assert_eq!(labels.len(), 4, "{text}");
    assert!(
        labels[..2].iter().all(|l| l.parse::<u64>().is_ok()),
        "{text}"
    );
    assert!(text.ends_with(".example.org."), "{text}");
    config(". {\n loop\n}", &[TEST_LOOP]).unwrap();
    let second = last_created();
    assert_eq!(
        name_text(second.qname()).matches(".").count(),
        2,
        "two labels under the root"
    );
    assert_ne!(first.qname(), second.qname());
}

#[test]
fn a_block_on_every_address_is_probed_on_loopback_at_its_key_port() {
    assert_eq!(
        probe_target(&[], 1053),
        (Some("127.0.0.1:1053".parse().unwrap()), ":1053".to_owned())
    );
}

#[test]
fn a_wildcard_bind_is_probed_on_loopback_of_its_family() {
    assert_eq!(
        probe_target(&["::".parse().unwrap()], 53),
        (Some("[::1]:53".parse().unwrap()), "[::]:53".to_owned())
    );
    assert_eq!(
        probe_target(&["0.0.0.0".parse().unwrap()], 53).0,
        Some("127.0.0.1:53".parse().unwrap())
    );
}

#[test]
fn a_bound_block_is_probed_on_its_first_address() {
    config(
        ".:1053 {\n bind 127.0.0.2 ::1\n loop\n}",
        &[oxidns_plugin_bind::PLUGIN, TEST_LOOP],
    )
    .unwrap();
    let plugin = last_created();
    assert_eq!(
        plugin.config.target,
        Some("127.0.0.2:1053".parse().unwrap())
    );
    assert_eq!(plugin.config.listen, "127.0.0.2:1053");
}

#[tokio::test]
async fn with_port_zero_no_probe_is_sent_and_counting_is_off() {
    let config = config(".:0 {\n loop\n}", &[TEST_LOOP]).unwrap();
    let plugin = last_created();
    assert_eq!(plugin.config.target, None);
    for (_, lifecycle) in config.lifecycles() {
        lifecycle.startup().await.unwrap();
    }
    assert!(plugin.is_disabled());
}

#[test]
fn loop_takes_no_arguments() {
    assert_eq!(
        config_error(". {\n loop 3\n}", &[PLUGIN]),
        "Corefile:2: loop: takes no arguments, got 1"
    );
}

#[test]
fn loop_takes_no_options_block() {
    assert_eq!(
        config_error(". {\n loop {\n  probe 3\n }\n}", &[PLUGIN]),
        "Corefile:3: loop: takes no options block"
    );
}

#[test]
fn loop_may_appear_once_per_block() {
    assert_eq!(
        config_error(". {\n loop\n loop\n}", &[PLUGIN]),
        "Corefile:3: loop: this plugin can only be used once per server block"
    );
}

#[tokio::test]
async fn an_unanswered_probe_is_given_up_after_its_time() {
    let port = free_port();
    let plugin = Loop::new(
        LoopConfig {
            zone: Name::root(),
            qname: name_from_str("1.2.").unwrap(),
            target: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            listen: format!(":{port}"),
        },
        ProbeTiming {
            give_up_after: Duration::from_millis(300),
            retry_every: Duration::from_millis(50),
            answer_timeout: Duration::from_millis(100),
        },
        record_only,
    );
    plugin.startup().await.unwrap();
    assert!(!plugin.is_disabled(), "counting while the probe is out");
    wait_for(|| plugin.is_disabled(), Duration::from_secs(5)).await;
    assert!(plugin.is_disabled());
}

#[tokio::test]
async fn shutdown_ends_the_probe_phase() {
    let port = free_port();
    let plugin = Loop::new(
        LoopConfig {
            zone: Name::root(),
            qname: name_from_str("1.2.").unwrap(),
            target: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            listen: format!(":{port}"),
        },
        FAST,
        record_only,
    );
    plugin.startup().await.unwrap();
    plugin.shutdown().await;
    assert!(plugin.is_disabled());
}

// Black-box: a real server on loopback.

/// A UDP port that was free a moment ago.
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for(mut done: impl FnMut() -> bool, limit: Duration) {
    let until = Instant::now() + limit;
    while !done() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `body` (a server block body) on 127.0.0.1 at a free port.
async fn start(body: &str, plugins: &[PluginEntry]) -> (Server, Arc<Loop>, u16) {
    let mut last_error = None;
    for _ in 0..5 {
        let port = free_port();
        let config = config(
            &format!(".:{port} {{\n bind 127.0.0.1\n{body}\n}}"),
            plugins,
        )
        .unwrap();
        let plugin = last_created();
        match Server::start(config, Limits::default()).await {
            Ok(server) => return (server, plugin, port),
            Err(e) => {
                plugin.disable();
                last_error = Some(e);
            }
        }
    }
    panic!("no server started: {last_error:?}");
}

/// Sends every query to the address it arrived on: a forward to ourselves.
struct ForwardToSelf;

impl Handler for ForwardToSelf {
    fn name(&self) -> &'static str {
        "selfforward"
    }

    fn serve<'a>(&'a self, request: &'a mut Request, _: Next<'a>) -> HandlerFuture<'a> {
        HandlerFuture::new(async move {
            let fail = |e: io::Error| PluginError::new("selfforward", e.to_string());
            let target = SocketAddr::from(([127, 0, 0, 1], request.local.port()));
            let socket = UdpSocket::bind("127.0.0.1:0").await.map_err(fail)?;
            let query = Query::build(7, request.qname(), request.qtype(), Class::IN, None);
            socket.send_to(&query, target).await.map_err(fail)?;
            let mut buf = vec![0u8; 4096];
            let received = tokio::time::timeout(Duration::from_secs(3), socket.recv(&mut buf))
                .await
                .map_err(|_| PluginError::new("selfforward", "timeout"))?
                .map_err(fail)?;
            Response::parse(&buf[..received])
                .map(|r| r.response)
                .map_err(|e| PluginError::new("selfforward", e.to_string()))
        })
    }
}

fn forward_setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    setup.add_handler(Arc::new(ForwardToSelf));
    Ok(())
}

#[tokio::test]
async fn the_probe_is_answered_by_the_server_and_counting_stops() {
    let plugins = [
        oxidns_plugin_bind::PLUGIN,
        TEST_LOOP,
        oxidns_plugin_whoami::PLUGIN,
    ];
    let (server, plugin, _) = start(" loop\n whoami", &plugins).await;
    wait_for(|| plugin.is_disabled(), Duration::from_secs(10)).await;
    assert!(plugin.is_disabled(), "the probe phase ended");
    assert_eq!(plugin.seen(), 1, "the probe came through once");
    assert!(plugin.detected().is_none());
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_server_that_forwards_to_itself_is_halted() {
    let plugins = [
        oxidns_plugin_bind::PLUGIN,
        TEST_LOOP,
        PluginEntry {
            name: "selfforward",
            setup: forward_setup,
        },
    ];
    let (server, plugin, port) = start(" loop\n selfforward", &plugins).await;
    wait_for(|| plugin.detected().is_some(), Duration::from_secs(10)).await;
    let message = plugin.detected().expect("the loop was found");
    assert!(message.starts_with("Loop (127.0.0.1:"), "{message}");
    let tail = format!(
        " -> 127.0.0.1:{port}) detected for zone \".\", see https://coredns.io/plugins/loop#troubleshooting. Query: \"HINFO {}\"",
        name_text(plugin.qname())
    );
    assert!(message.ends_with(&tail), "{message}");
    server.shutdown(Duration::from_secs(2)).await;
}

/// Run in a child process by the next test: the production halt.
#[test]
fn halt_child() {
    if std::env::var_os("OXIDNS_LOOP_HALT_CHILD").is_some() {
        halt_process("Loop (127.0.0.1:1 -> :53) detected");
    }
}

#[test]
fn the_production_halt_logs_fatal_and_exits_with_status_1() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tests::halt_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("OXIDNS_LOOP_HALT_CHILD", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("[FATAL] plugin/loop: Loop (127.0.0.1:1 -> :53) detected\n"),
        "{stdout}"
    );
}

#[test]
fn every_readme_example_is_a_valid_config() {
    let readme = include_str!("../README.md");
    let plugins = [
        oxidns_plugin_errors::PLUGIN,
        oxidns_plugin_log::PLUGIN,
        PLUGIN,
        oxidns_plugin_whoami::PLUGIN,
    ];
    let mut examples = 0;
    for block in readme.split("```corefile\n").skip(1) {
        let body = block.split("```").next().unwrap();
        if let Err(errors) = config(body, &plugins) {
            panic!("{body}\n{errors:?}");
        }
        examples += 1;
    }
    assert_eq!(examples, 2);
}

/// Answers every query on a loopback port with an empty NOERROR, counting them.
async fn other_server() -> (SocketAddr, Arc<AtomicUsize>, CancellationToken) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let (counted, stopped) = (count.clone(), stop.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let (len, from) = tokio::select! {
                _ = stopped.cancelled() => return,
                received = socket.recv_from(&mut buf) => received.unwrap(),
            };
            let bytes = tokio_util::bytes::Bytes::copy_from_slice(&buf[..len]);
            let query = Query::parse(bytes).unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            let answer = Response::new(Rcode::NOERROR).encode(&query, 512);
            socket.send_to(&answer, from).await.unwrap();
        }
    });
    (addr, count, stop)
}

#[tokio::test]
async fn a_probe_answered_without_passing_through_is_sent_again() {
    let (addr, answered, stop) = other_server().await;
    let plugin = Loop::new(
        LoopConfig {
            zone: Name::root(),
            qname: name_from_str("1.2.").unwrap(),
            target: Some(addr),
            listen: format!(":{}", addr.port()),
        },
        FAST,
        record_only,
    );
    plugin.startup().await.unwrap();
    wait_for(
        || answered.load(Ordering::SeqCst) >= 3,
        Duration::from_secs(5),
    )
    .await;
    assert!(
        answered.load(Ordering::SeqCst) >= 3,
        "the probe was sent again"
    );
    assert!(
        !plugin.is_disabled(),
        "still waiting for the probe to come through"
    );
    plugin.shutdown().await;
    stop.cancel();
}
