use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use oxidns_server::proto::{Rcode, Response, Rtype};
use oxidns_server::test_util::{Fixed, config, config_error, request, serve_chain};
use oxidns_server::{Config, Handler};

use super::PLUGIN;

/// The config's chain with a `Fixed` REFUSED answer at its end, to see pass-through.
fn chain(config: &Config) -> Vec<Arc<dyn Handler>> {
    let mut chain: Vec<Arc<dyn Handler>> = config.blocks[0].chain.to_vec();
    chain.push(Arc::new(Fixed(Response::new(Rcode::REFUSED))));
    chain
}

async fn ask(corefile: &str, qname: &str, qtype: Rtype) -> Response {
    let config = config(corefile, &[PLUGIN]).unwrap();
    serve_chain(&chain(&config), &mut request(qname, qtype))
        .await
        .unwrap()
}

fn texts(records: &[oxidns_server::proto::Record]) -> Vec<String> {
    records.iter().map(ToString::to_string).collect()
}

const INLINE: &str = ". {
    hosts /nonexistent/hosts {
        10.0.0.1 example.org www.example.org
        10.0.0.2 example.org
        2001:db8::1 v6.example.org
        127.0.0.1 localhost localhost.domain
    }
}";

/// A fresh folder under the system's temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "oxidns-hosts-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn corefile_with_file(path: &Path, block: &str) -> String {
    format!(". {{\n    hosts {} {{\n{block}\n    }}\n}}", path.display())
}

#[tokio::test]
async fn a_query_gets_every_address_of_the_name_authoritatively() {
    let response = ask(INLINE, "example.org", Rtype::A).await;
    assert_eq!(response.header_rcode(), Rcode::NOERROR);
    assert!(response.authoritative);
    assert_eq!(
        texts(&response.answer),
        [
            "example.org. 3600 IN A 10.0.0.1",
            "example.org. 3600 IN A 10.0.0.2"
        ]
    );
}

#[tokio::test]
async fn names_match_without_regard_to_case() {
    let response = ask(INLINE, "WWW.Example.ORG", Rtype::A).await;
    assert_eq!(
        texts(&response.answer),
        ["www.example.org. 3600 IN A 10.0.0.1"]
    );
}

#[tokio::test]
async fn aaaa_query_gets_ipv6_addresses() {
    let response = ask(INLINE, "v6.example.org", Rtype::AAAA).await;
    assert_eq!(
        texts(&response.answer),
        ["v6.example.org. 3600 IN AAAA 2001:db8::1"]
    );
}

#[tokio::test]
async fn ptr_query_gets_every_name_of_the_address() {
    let response = ask(INLINE, "1.0.0.127.in-addr.arpa", Rtype::PTR).await;
    assert!(response.authoritative);
    assert_eq!(
        texts(&response.answer),
        [
            "1.0.0.127.in-addr.arpa. 3600 IN PTR localhost.",
            "1.0.0.127.in-addr.arpa. 3600 IN PTR localhost.domain."
        ]
    );
}

#[tokio::test]
async fn ptr_query_for_ipv6_address_uses_ip6_arpa() {
    let response = ask(
        INLINE,
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
        Rtype::PTR,
    )
    .await;
    assert_eq!(response.answer.len(), 1);
    assert_eq!(response.answer[0].data().to_string(), "v6.example.org.");
}

#[tokio::test]
async fn unknown_address_ptr_query_passes_on_even_without_fallthrough() {
    let response = ask(INLINE, "9.9.9.9.in-addr.arpa", Rtype::PTR).await;
    assert_eq!(response.header_rcode(), Rcode::REFUSED);
}

#[tokio::test]
async fn no_reverse_leaves_ptr_queries_to_the_next_plugin() {
    let corefile = ". {\n hosts /nonexistent/hosts {\n  10.0.0.1 example.org\n  no_reverse\n }\n}";
    let response = ask(corefile, "1.0.0.10.in-addr.arpa", Rtype::PTR).await;
    assert_eq!(response.header_rcode(), Rcode::REFUSED);
}

#[tokio::test]
async fn known_name_with_other_type_gets_authoritative_nodata() {
    for qtype in [Rtype::AAAA, Rtype::MX] {
        let response = ask(INLINE, "example.org", qtype).await;
        assert_eq!(response.header_rcode(), Rcode::NOERROR, "{qtype}");
        assert!(response.authoritative, "{qtype}");
        assert!(response.answer.is_empty(), "{qtype}");
    }
}

#[tokio::test]
async fn known_name_with_other_type_gets_nodata_even_with_fallthrough() {
    let corefile = ". {\n hosts /nonexistent/hosts {\n  10.0.0.1 example.org\n  fallthrough\n }\n}";
    let response = ask(corefile, "example.org", Rtype::AAAA).await;
    assert_eq!(response.header_rcode(), Rcode::NOERROR);
    assert!(response.answer.is_empty());
}

#[tokio::test]
async fn unknown_name_without_fallthrough_is_servfail() {
    let response = ask(INLINE, "nowhere.example.org", Rtype::A).await;
    assert_eq!(response.header_rcode(), Rcode::SERVFAIL);
    assert!(!response.authoritative);
}

#[tokio::test]
async fn unknown_name_with_fallthrough_passes_on() {
    let corefile = ". {\n hosts /nonexistent/hosts {\n  10.0.0.1 example.org\n  fallthrough\n }\n}";
    let response = ask(corefile, "nowhere.example.org", Rtype::A).await;
    assert_eq!(response.header_rcode(), Rcode::REFUSED);
}

#[tokio::test]
async fn fallthrough_zones_limit_which_names_pass_on() {
    let corefile = ". {\n hosts /nonexistent/hosts {\n  10.0.0.1 example.org\n  fallthrough example.net\n }\n}";
    let inside = ask(corefile, "a.example.net", Rtype::A).await;
    assert_eq!(inside.header_rcode(), Rcode::REFUSED);
    let outside = ask(corefile, "a.example.org", Rtype::A).await;
    assert_eq!(outside.header_rcode(), Rcode::SERVFAIL);
}

#[tokio::test]
async fn names_outside_the_plugin_zones_pass_on() {
    let corefile = ". {\n hosts /nonexistent/hosts example.org {\n  10.0.0.1 example.org\n  10.0.0.3 example.net\n }\n}";
    let outside = ask(corefile, "example.net", Rtype::A).await;
    assert_eq!(outside.header_rcode(), Rcode::REFUSED);
    let inside = ask(corefile, "example.org", Rtype::A).await;
    assert_eq!(texts(&inside.answer), ["example.org. 3600 IN A 10.0.0.1"]);
}

#[tokio::test]
async fn entries_outside_the_plugin_zones_are_ignored_for_ptr() {
    let corefile = ". {\n hosts /nonexistent/hosts example.org {\n  10.0.0.3 example.net\n }\n}";
    let response = ask(corefile, "3.0.0.10.in-addr.arpa", Rtype::PTR).await;
    assert_eq!(response.header_rcode(), Rcode::REFUSED);
}

#[tokio::test]
async fn ttl_option_sets_the_ttl_of_forward_and_reverse_records() {
    let corefile = ". {\n hosts /nonexistent/hosts {\n  10.0.0.1 example.org\n  ttl 60\n }\n}";
    let forward = ask(corefile, "example.org", Rtype::A).await;
    assert_eq!(texts(&forward.answer), ["example.org. 60 IN A 10.0.0.1"]);
    let reverse = ask(corefile, "1.0.0.10.in-addr.arpa", Rtype::PTR).await;
    assert_eq!(
        texts(&reverse.answer),
        ["1.0.0.10.in-addr.arpa. 60 IN PTR example.org."]
    );
}

#[tokio::test]
async fn wildcard_entry_covers_one_label_below_it() {
    let corefile = ". {\n hosts /nonexistent/hosts {\n  10.0.0.9 *.apps.example.org\n  10.0.0.1 a.apps.example.org\n  fallthrough\n }\n}";
    let covered = ask(corefile, "web.apps.example.org", Rtype::A).await;
    assert_eq!(
        texts(&covered.answer),
        ["web.apps.example.org. 3600 IN A 10.0.0.9"]
    );
    let explicit = ask(corefile, "a.apps.example.org", Rtype::A).await;
    assert_eq!(
        texts(&explicit.answer),
        ["a.apps.example.org. 3600 IN A 10.0.0.1"]
    );
    let deeper = ask(corefile, "x.web.apps.example.org", Rtype::A).await;
    assert_eq!(deeper.header_rcode(), Rcode::REFUSED);
    let apex = ask(corefile, "apps.example.org", Rtype::A).await;
    assert_eq!(apex.header_rcode(), Rcode::REFUSED);
}

#[tokio::test]
async fn wildcard_entries_make_no_ptr_records() {
    let corefile = ". {\n hosts /nonexistent/hosts {\n  10.0.0.9 *.apps.example.org\n }\n}";
    let response = ask(corefile, "9.0.0.10.in-addr.arpa", Rtype::PTR).await;
    assert_eq!(response.header_rcode(), Rcode::REFUSED);
}

#[tokio::test]
async fn fallthrough_unsupported_passes_other_types_of_known_names_on() {
    let corefile = ". {\n hosts /nonexistent/hosts {\n  10.0.0.1 example.org\n  fallthrough\n  fallthrough_unsupported\n }\n}";
    let txt = ask(corefile, "example.org", Rtype::TXT).await;
    assert_eq!(txt.header_rcode(), Rcode::REFUSED);
    let aaaa = ask(corefile, "example.org", Rtype::AAAA).await;
    assert_eq!(aaaa.header_rcode(), Rcode::NOERROR);
    assert!(aaaa.answer.is_empty());
}

#[tokio::test]
async fn file_and_inline_entries_are_both_served() {
    let dir = temp_dir("both");
    let path = dir.join("hosts");
    std::fs::write(&path, "10.0.0.1 example.org\n").unwrap();
    let corefile = corefile_with_file(&path, "        10.0.0.2 example.org");
    let response = ask(&corefile, "example.org", Rtype::A).await;
    assert_eq!(
        texts(&response.answer),
        [
            "example.org. 3600 IN A 10.0.0.1",
            "example.org. 3600 IN A 10.0.0.2"
        ]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn relative_file_is_read_from_the_root_directory() {
    let dir = temp_dir("root");
    std::fs::write(dir.join("my.hosts"), "10.0.0.7 example.org\n").unwrap();
    let corefile = format!(". {{\n root {}\n hosts my.hosts\n}}", dir.display());
    let config = config(&corefile, &[oxidns_plugin_root::PLUGIN, PLUGIN]).unwrap();
    let response = serve_chain(&chain(&config), &mut request("example.org", Rtype::A))
        .await
        .unwrap();
    assert_eq!(texts(&response.answer), ["example.org. 3600 IN A 10.0.0.7"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn changed_file_is_reloaded() {
    let dir = temp_dir("reload");
    let path = dir.join("hosts");
    std::fs::write(&path, "10.0.0.1 example.org\n").unwrap();
    let corefile = corefile_with_file(&path, "        reload 20ms");
    let config = config(&corefile, &[PLUGIN]).unwrap();
    for (_, lifecycle) in config.lifecycles() {
        lifecycle.startup().await.unwrap();
    }
    let chain = chain(&config);
    let first = serve_chain(&chain, &mut request("example.org", Rtype::A))
        .await
        .unwrap();
    assert_eq!(texts(&first.answer), ["example.org. 3600 IN A 10.0.0.1"]);

    // A different size is a change even where mtime has a coarse resolution.
    std::fs::write(&path, "10.0.0.22 example.org\n").unwrap();
    let mut seen = Vec::new();
    for _ in 0..500 {
        let response = serve_chain(&chain, &mut request("example.org", Rtype::A))
            .await
            .unwrap();
        seen = texts(&response.answer);
        if seen != texts(&first.answer) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, ["example.org. 3600 IN A 10.0.0.22"]);
    for (_, lifecycle) in config.lifecycles() {
        lifecycle.shutdown().await;
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn reload_zero_disables_reloading() {
    let dir = temp_dir("noreload");
    let path = dir.join("hosts");
    std::fs::write(&path, "10.0.0.1 example.org\n").unwrap();
    let corefile = corefile_with_file(&path, "        reload 0s");
    let config = config(&corefile, &[PLUGIN]).unwrap();
    for (_, lifecycle) in config.lifecycles() {
        lifecycle.startup().await.unwrap();
    }
    std::fs::write(&path, "10.0.0.22 example.org\n").unwrap();
    // No task runs: only a restart would read the file again.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let response = serve_chain(&chain(&config), &mut request("example.org", Rtype::A))
        .await
        .unwrap();
    assert_eq!(texts(&response.answer), ["example.org. 3600 IN A 10.0.0.1"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_file_is_not_an_error() {
    assert!(config(". {\n hosts /nonexistent/hosts\n}", &[PLUGIN]).is_ok());
}

#[test]
fn second_hosts_in_a_block_is_refused() {
    assert_eq!(
        config_error(". {\n hosts\n hosts\n}", &[PLUGIN]),
        "Corefile:3: hosts: this plugin can only be used once per server block"
    );
}

#[test]
fn ttl_must_be_a_number_of_seconds_from_1_to_65535() {
    let cases = [
        ("ttl", "Corefile:3: hosts: ttl needs a time in seconds"),
        (
            "ttl x",
            "Corefile:3: hosts: ttl needs a number of seconds, got 'x'",
        ),
        (
            "ttl 0",
            "Corefile:3: hosts: ttl 0 is invalid: it must be between 1 and 65535",
        ),
        (
            "ttl 65536",
            "Corefile:3: hosts: ttl 65536 is invalid: it must be between 1 and 65535",
        ),
    ];
    for (line, expected) in cases {
        let corefile = format!(". {{\n hosts /nonexistent/hosts {{\n  {line}\n }}\n}}");
        assert_eq!(config_error(&corefile, &[PLUGIN]), expected, "{line}");
    }
}

#[test]
fn reload_needs_one_go_duration() {
    let cases = [
        (
            "reload",
            "Corefile:3: hosts: reload needs a duration (zero seconds to disable)",
        ),
        (
            "reload 5",
            "Corefile:3: hosts: invalid duration for reload '5'",
        ),
        (
            "reload -1s",
            "Corefile:3: hosts: invalid duration for reload '-1s'",
        ),
    ];
    for (line, expected) in cases {
        let corefile = format!(". {{\n hosts /nonexistent/hosts {{\n  {line}\n }}\n}}");
        assert_eq!(config_error(&corefile, &[PLUGIN]), expected, "{line}");
    }
}

#[test]
fn lines_after_fallthrough_must_be_properties() {
    assert_eq!(
        config_error(
            ". {\n hosts /nonexistent/hosts {\n  fallthrough\n  10.0.0.1 example.org\n }\n}",
            &[PLUGIN]
        ),
        "Corefile:4: hosts: unknown property '10.0.0.1'"
    );
}

#[test]
fn fallthrough_unsupported_requires_fallthrough() {
    assert_eq!(
        config_error(
            ". {\n hosts /nonexistent/hosts {\n  fallthrough_unsupported\n }\n}",
            &[PLUGIN]
        ),
        "Corefile:3: hosts: fallthrough_unsupported requires fallthrough"
    );
}

#[test]
fn no_reverse_takes_no_arguments() {
    assert_eq!(
        config_error(
            ". {\n hosts /nonexistent/hosts {\n  no_reverse yes\n }\n}",
            &[PLUGIN]
        ),
        "Corefile:3: hosts: no_reverse: takes no arguments, got 1"
    );
}

type Recorded = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    metrics_util::debugging::DebugValue,
)>;

/// The gauges recorded under `name`: (labels as `key=value`, value).
fn gauges(recorded: &Recorded, name: &str) -> Vec<(Vec<String>, f64)> {
    use metrics_util::debugging::DebugValue;
    recorded
        .iter()
        .filter(|(key, ..)| key.key().name() == name)
        .map(|(key, _, _, value)| {
            let labels = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            match value {
                DebugValue::Gauge(v) => (labels, v.0),
                other => panic!("{name} is not a gauge: {other:?}"),
            }
        })
        .collect()
}

/// The file's modification time in seconds since the epoch, as CoreDNS reports it.
fn mtime_seconds(path: &Path) -> f64 {
    let modified = std::fs::metadata(path).unwrap().modified().unwrap();
    modified
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn metrics_count_entries_and_stamp_each_read_with_coredns_names() {
    let dir = temp_dir("metrics");
    let path = dir.join("hosts");
    std::fs::write(&path, "10.0.0.1 example.org www.example.org\n").unwrap();
    let corefile = corefile_with_file(
        &path,
        "        10.0.0.9 inline.example.org\n        reload 0s",
    );
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        // Setup reads the file: 2 forward + 2 reverse entries, and inline 1 + 1.
        let config = config(&corefile, &[PLUGIN]).unwrap();
        let recorded = snapshotter.snapshot().into_vec();
        assert_eq!(
            gauges(&recorded, "coredns_hosts_entries"),
            [(vec![], 6.0)],
            "no labels, as CoreDNS"
        );
        assert_eq!(
            gauges(&recorded, "coredns_hosts_reload_timestamp_seconds"),
            [(vec![], mtime_seconds(&path))]
        );

        // A changed file (its size differs) is read again at start-up: 3 + 3 now.
        std::fs::write(
            &path,
            "10.0.0.1 example.org\n10.0.0.2 example.org\n2001:db8::1 example.org\n",
        )
        .unwrap();
        runtime.block_on(async {
            for (_, lifecycle) in config.lifecycles() {
                lifecycle.startup().await.unwrap();
            }
        });
        let recorded = snapshotter.snapshot().into_vec();
        assert_eq!(gauges(&recorded, "coredns_hosts_entries"), [(vec![], 8.0)]);
        assert_eq!(
            gauges(&recorded, "coredns_hosts_reload_timestamp_seconds"),
            [(vec![], mtime_seconds(&path))]
        );
        let names: Vec<String> = recorded
            .iter()
            .map(|(key, ..)| key.key().name().to_owned())
            .collect();
        assert!(
            names.iter().all(|n| n.starts_with("coredns_hosts_")),
            "{names:?}"
        );
    });
    std::fs::remove_dir_all(dir).unwrap();
}
