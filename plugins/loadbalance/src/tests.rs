use super::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use oxidns_server::proto::domain::rdata::{A, Aaaa, Cname, Mx, Ns, Txt};
use oxidns_server::proto::{Class, Rcode, Ttl, name_from_str};
use oxidns_server::test_util::{Fixed, config, config_error, request, serve_chain};

/// A record from `owner TYPE data...` (A, AAAA, CNAME, MX, NS, TXT).
fn rr(text: &str) -> Record {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let name = |text: &str| name_from_str(text).unwrap();
    let data = match fields[1] {
        "A" => RecordData::A(A::new(fields[2].parse().unwrap())),
        "AAAA" => RecordData::Aaaa(Aaaa::new(fields[2].parse().unwrap())),
        "CNAME" => RecordData::Cname(Cname::new(name(fields[2]))),
        "MX" => RecordData::Mx(Mx::new(fields[2].parse().unwrap(), name(fields[3]))),
        "NS" => RecordData::Ns(Ns::new(name(fields[2]))),
        "TXT" => RecordData::Txt(Txt::build_from_slice(fields[2].as_bytes()).unwrap()),
        other => panic!("no test records of type {other}"),
    };
    Record::new(name(fields[0]), Class::IN, Ttl::from_secs(60), data)
}

fn records(lines: &[&str]) -> Vec<Record> {
    lines.iter().map(|line| rr(line)).collect()
}

/// `owner TYPE data` of each record, to compare orders.
fn texts(section: &[Record]) -> Vec<String> {
    section
        .iter()
        .map(|r| format!("{} {} {}", r.owner(), r.rtype(), r.data()))
        .collect()
}

fn answer(lines: &[&str]) -> Response {
    let mut response = Response::new(Rcode::NOERROR);
    response.answer = records(lines);
    response
}

/// The loadbalance handler of `. { loadbalance ARGS }`.
fn handler(args: &str) -> Arc<dyn Handler> {
    let config = config(&format!(". {{\n loadbalance {args}\n}}"), &[PLUGIN]).unwrap();
    config.blocks[0].chain[0].clone()
}

/// Runs a `qtype` query through `loadbalance` in front of a fixed `response`.
async fn through(lb: &Arc<dyn Handler>, qtype: Rtype, response: &Response) -> Response {
    let chain = [
        lb.clone(),
        Arc::new(Fixed(response.clone())) as Arc<dyn Handler>,
    ];
    let mut req = request("www.example.org", qtype);
    serve_chain(&chain, &mut req).await.unwrap()
}

/// As [`through`], with `response` given in wire form (as zones and the
/// cache store it); what comes back is decoded (a wire answer as sent).
/// Also says whether it stayed in wire form.
async fn through_wire(
    lb: &Arc<dyn Handler>,
    qtype: Rtype,
    response: &Response,
) -> (Response, bool) {
    let mut req = request("www.example.org", qtype);
    let query = req.query.clone();
    let sections = response
        .wire_sections(&query.qname, qtype, query.qclass, &[])
        .expect("fits");
    let mut wire = Response::from_wire(sections);
    wire.rcode = response.rcode;
    let chain = [lb.clone(), Arc::new(Fixed(wire)) as Arc<dyn Handler>];
    let mut out = serve_chain(&chain, &mut req).await.unwrap();
    let stayed = out.wire.is_some();
    assert!(out.decode_wire(&query));
    (out, stayed)
}

/// Every order the handler produced for `response`, over 200 queries; the
/// same orders come out when the response is in wire form.
async fn orders(lb: &Arc<dyn Handler>, qtype: Rtype, response: &Response) -> HashSet<Vec<String>> {
    let mut seen = HashSet::new();
    let mut seen_wire = HashSet::new();
    for _ in 0..200 {
        seen.insert(texts(&through(lb, qtype, response).await.answer));
        seen_wire.insert(texts(&through_wire(lb, qtype, response).await.0.answer));
    }
    assert_eq!(seen_wire, seen, "wire form and records agree");
    seen
}

#[tokio::test]
async fn round_robin_reorders_common_answers_without_leaving_wire_form() {
    let lb = handler("");
    let cname_then_addresses = answer(&[
        "www.example.org CNAME a.example.org",
        "a.example.org A 192.0.2.1",
        "a.example.org A 192.0.2.2",
    ]);
    for response in [answer(THREE_A), cname_then_addresses] {
        assert!(through_wire(&lb, Rtype::A, &response).await.1);
    }
    // Shapes it cannot do in place are reordered as records.
    let mx_first = answer(&[
        "example.org MX 10 mx1.example.org",
        "example.org MX 20 mx2.example.org",
        "mx1.example.org A 192.0.2.1",
    ]);
    assert!(!through_wire(&lb, Rtype::MX, &mx_first).await.1);
    // The other policies read addresses: no wire form reaches them.
    assert!(handler("{\n prefer 10.0.0.0/8\n}").reads_answers());
    assert!(!lb.reads_answers());
}

const THREE_A: &[&str] = &[
    "www.example.org A 192.0.2.1",
    "www.example.org A 192.0.2.2",
    "www.example.org A 192.0.2.3",
];

#[tokio::test]
async fn round_robin_shuffles_the_addresses_of_an_answer() {
    let response = answer(THREE_A);
    let seen = orders(&handler("round_robin"), Rtype::A, &response).await;
    assert_eq!(seen.len(), 6, "every order of three addresses shows up");
    let mut sorted_original = texts(&response.answer);
    sorted_original.sort();
    for order in seen {
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, sorted_original, "the same records, reordered");
    }
}

#[tokio::test]
async fn round_robin_is_the_default_policy() {
    let seen = orders(&handler(""), Rtype::A, &answer(THREE_A)).await;
    assert!(seen.len() > 1);
}

#[tokio::test]
async fn cnames_come_first_and_keep_their_order() {
    let response = answer(&[
        "a.example.org A 192.0.2.1",
        "www.example.org CNAME b.example.org",
        "a.example.org A 192.0.2.2",
        "b.example.org CNAME a.example.org",
    ]);
    for order in orders(&handler(""), Rtype::A, &response).await {
        assert_eq!(order[0], "www.example.org CNAME b.example.org.");
        assert_eq!(order[1], "b.example.org CNAME a.example.org.");
    }
}

#[tokio::test]
async fn mx_records_are_shuffled_after_the_addresses() {
    let response = answer(&[
        "example.org MX 10 mx1.example.org",
        "example.org MX 20 mx2.example.org",
        "mx1.example.org A 192.0.2.1",
    ]);
    let seen = orders(&handler(""), Rtype::MX, &response).await;
    assert_eq!(seen.len(), 2);
    for order in seen {
        assert_eq!(order[0], "mx1.example.org A 192.0.2.1");
        assert!(order[1].contains(" MX "), "{order:?}");
    }
}

#[tokio::test]
async fn other_records_keep_their_order_before_the_addresses() {
    let response = answer(&[
        "www.example.org A 192.0.2.1",
        "www.example.org TXT one",
        "www.example.org A 192.0.2.2",
        "www.example.org TXT two",
    ]);
    for order in orders(&handler(""), Rtype::ANY, &response).await {
        assert_eq!(order[0], "www.example.org TXT \"one\"");
        assert_eq!(order[1], "www.example.org TXT \"two\"");
    }
}

#[tokio::test]
async fn rrsets_are_shuffled_each_on_their_own_never_interleaved() {
    let response = answer(&[
        "www.example.org A 192.0.2.1",
        "www.example.org AAAA 2001:db8::1",
        "www.example.org A 192.0.2.2",
        "www.example.org AAAA 2001:db8::2",
    ]);
    let seen = orders(&handler(""), Rtype::ANY, &response).await;
    assert_eq!(seen.len(), 4, "two orders of each RRset");
    for order in seen {
        assert!(
            order[0].contains(" A ") && order[1].contains(" A "),
            "{order:?}"
        );
        assert!(order[2].contains(" AAAA ") && order[3].contains(" AAAA "));
    }
}

#[tokio::test]
async fn authority_and_additional_addresses_are_shuffled_too() {
    let mut response = Response::new(Rcode::NOERROR);
    response.authority = records(&["example.org NS ns.example.org"]);
    response.additional = records(&["ns.example.org A 192.0.2.53", "ns.example.org A 192.0.2.54"]);
    let lb = handler("");
    let mut firsts = HashSet::new();
    let mut firsts_wire = HashSet::new();
    for _ in 0..100 {
        let got = through(&lb, Rtype::NS, &response).await;
        assert_eq!(texts(&got.authority), texts(&response.authority));
        firsts.insert(texts(&got.additional)[0].clone());
        // The glue's owner points into the NS data: movable in wire form.
        let (got, stayed) = through_wire(&lb, Rtype::NS, &response).await;
        assert!(stayed);
        assert_eq!(texts(&got.authority), texts(&response.authority));
        firsts_wire.insert(texts(&got.additional)[0].clone());
    }
    assert_eq!(firsts.len(), 2);
    assert_eq!(firsts_wire, firsts);
}

#[tokio::test]
async fn error_responses_are_left_as_they_are() {
    let mut response = answer(THREE_A);
    response.rcode = Rcode::SERVFAIL.into();
    let seen = orders(&handler(""), Rtype::A, &response).await;
    assert_eq!(seen.len(), 1);
}

#[tokio::test]
async fn zone_transfers_are_left_as_they_are() {
    let response = answer(THREE_A);
    let lb = handler("");
    for qtype in [Rtype::AXFR, Rtype::IXFR] {
        assert_eq!(orders(&lb, qtype, &response).await.len(), 1);
    }
}

#[tokio::test]
async fn errors_of_the_next_plugin_pass_through() {
    let chain = [
        handler(""),
        Arc::new(oxidns_server::test_util::Failing) as _,
    ];
    let mut req = request("www.example.org", Rtype::A);
    assert!(serve_chain(&chain, &mut req).await.is_err());
}

// weighted

const WEIGHTS: &str = "www.example.org\n192.0.2.1 3\n192.0.2.2 1\n";

#[test]
fn weighted_puts_the_address_picked_by_weight_first() {
    let weights = Weights::parse(WEIGHTS).unwrap();
    // Weights 3 (192.0.2.1), 1 (192.0.2.2), 1 (192.0.2.3, not in the file): 5 in all.
    for (pick, first) in [(0, 1), (2, 1), (3, 2), (4, 3)] {
        let mut section = records(THREE_A);
        weighted(&mut section, &weights, |total| {
            assert_eq!(total, 5);
            pick
        });
        assert_eq!(
            texts(&section)[0],
            format!("www.example.org A 192.0.2.{first}"),
            "pick {pick}"
        );
        assert_eq!(section.len(), 3);
    }
}

#[test]
fn weighted_moves_only_the_picked_address_and_keeps_the_rest_in_order() {
    let weights = Weights::default();
    let mut section = records(THREE_A);
    weighted(&mut section, &weights, |_| 2);
    assert_eq!(
        texts(&section),
        [
            "www.example.org A 192.0.2.3",
            "www.example.org A 192.0.2.1",
            "www.example.org A 192.0.2.2"
        ]
    );
}

#[test]
fn weighted_leaves_a_section_without_addresses_alone() {
    let lines = [
        "example.org MX 20 mx2.example.org",
        "example.org MX 10 mx1.example.org",
        "www.example.org CNAME example.org",
    ];
    let mut section = records(&lines);
    weighted(&mut section, &Weights::default(), |_| unreachable!());
    assert_eq!(texts(&section), texts(&records(&lines)));
}

#[test]
fn weight_file_names_and_addresses_match_without_regard_to_case_or_form() {
    let weights = Weights::parse("WWW.Example.ORG.\n::ffff:192.0.2.1 7\n").unwrap();
    let owner = name_from_str("www.example.org").unwrap();
    assert_eq!(weights.weight(&owner, "192.0.2.1".parse().unwrap()), 7);
    assert_eq!(weights.weight(&owner, "192.0.2.9".parse().unwrap()), 1);
}

#[test]
fn weight_file_comments_and_blank_lines_are_ignored() {
    let weights =
        Weights::parse("# comment\n\n  www.example.org  \n # more\n192.0.2.1   9\n").unwrap();
    let owner = name_from_str("www.example.org").unwrap();
    assert_eq!(weights.weight(&owner, "192.0.2.1".parse().unwrap()), 9);
}

#[test]
fn weight_file_mistakes_are_reported_at_their_line() {
    for (text, line, message) in [
        (
            "192.0.2.1\n",
            1,
            "wrong domain name \"192.0.2.1\" (maybe a missing weight value?)",
        ),
        (
            "a.example\n192.0.2.300 1\n",
            2,
            "wrong IP address \"192.0.2.300\"",
        ),
        ("a.example\n192.0.2.1 0\n", 2, "wrong weight value \"0\""),
        (
            "a.example\n192.0.2.1 256\n",
            2,
            "wrong weight value \"256\"",
        ),
        ("\n192.0.2.1 2\n", 2, "missing domain name"),
        (
            "a.example\n192.0.2.1 2 3\n",
            2,
            "could not parse weight line \"192.0.2.1 2 3\"",
        ),
    ] {
        assert_eq!(
            Weights::parse(text),
            Err((line, message.to_owned())),
            "{text:?}"
        );
    }
}

/// A weight file in a directory of its own, removed when dropped.
struct TempWeights(std::path::PathBuf);

impl TempWeights {
    fn new(text: &str) -> TempWeights {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("oxidns-lb-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = TempWeights(dir);
        file.write(text);
        file
    }

    fn path(&self) -> String {
        self.0.join("weights").display().to_string()
    }

    fn write(&self, text: &str) {
        std::fs::write(self.path(), text).unwrap();
    }
}

impl Drop for TempWeights {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn weighted_tops_converge_to_the_weights() {
    let file = TempWeights::new("www.example.org\n192.0.2.1 3\n192.0.2.2 1\n192.0.2.3 4\n");
    let lb = handler(&format!("weighted {}", file.path()));
    let response = answer(THREE_A);
    let mut firsts = [0usize; 3];
    for _ in 0..4000 {
        let got = through(&lb, Rtype::A, &response).await;
        let first = texts(&got.answer)[0].clone();
        let last = first.rsplit('.').next().unwrap().parse::<usize>().unwrap();
        firsts[last - 1] += 1;
    }
    // Expected 1500 : 500 : 2000; the bounds are many standard deviations wide.
    assert!((1250..1750).contains(&firsts[0]), "{firsts:?}");
    assert!((350..650).contains(&firsts[1]), "{firsts:?}");
    assert!((1750..2250).contains(&firsts[2]), "{firsts:?}");
}

#[tokio::test]
async fn weighted_applies_to_a_aaaa_and_srv_queries_only() {
    let file = TempWeights::new("www.example.org\n192.0.2.3 255\n");
    let lb = handler(&format!("weighted {}", file.path()));
    let response = answer(THREE_A);
    let mut tops = HashSet::new();
    for _ in 0..50 {
        tops.insert(texts(&through(&lb, Rtype::A, &response).await.answer)[0].clone());
        let other = through(&lb, Rtype::TXT, &response).await;
        assert_eq!(texts(&other.answer), texts(&response.answer));
    }
    assert!(tops.contains("www.example.org A 192.0.2.3"));
}

#[tokio::test]
async fn weighted_sorts_the_additional_addresses_of_srv_answers() {
    let file = TempWeights::new("target.example.org\n192.0.2.2 255\n");
    let lb = handler(&format!("weighted {}", file.path()));
    let mut response = Response::new(Rcode::NOERROR);
    response.additional = records(&[
        "target.example.org A 192.0.2.1",
        "target.example.org A 192.0.2.2",
    ]);
    let mut tops = HashSet::new();
    for _ in 0..50 {
        tops.insert(texts(&through(&lb, Rtype::SRV, &response).await.additional)[0].clone());
    }
    assert!(tops.contains("target.example.org A 192.0.2.2"));
}

#[tokio::test]
async fn a_changed_weight_file_is_reloaded() {
    let file = TempWeights::new("www.example.org\n192.0.2.1 255\n");
    let config = config(
        &format!(
            ". {{\n loadbalance weighted {} {{\n  reload 50ms\n }}\n}}",
            file.path()
        ),
        &[PLUGIN],
    )
    .unwrap();
    for (_, lifecycle) in config.lifecycles() {
        lifecycle.startup().await.unwrap();
    }
    let lb = config.blocks[0].chain[0].clone();
    let response = answer(&["www.example.org A 192.0.2.1", "www.example.org A 192.0.2.2"]);
    let top_counts = |lb: Arc<dyn Handler>, response: Response| async move {
        let mut second_first = 0;
        for _ in 0..200 {
            if texts(&through(&lb, Rtype::A, &response).await.answer)[0].ends_with(".2") {
                second_first += 1;
            }
        }
        second_first
    };
    assert!(top_counts(lb.clone(), response.clone()).await < 10);
    file.write("www.example.org\n192.0.2.2 255\n");
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while top_counts(lb.clone(), response.clone()).await < 190 {
        assert!(
            tokio::time::Instant::now() < until,
            "the new weights were never used"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (_, lifecycle) in config.lifecycles() {
        lifecycle.shutdown().await;
    }
}

#[test]
fn a_broken_weight_file_keeps_the_previous_weights() {
    let file = WeightFile::new("weights".into(), Duration::from_secs(1));
    assert_eq!(file.update(b"a.example\n192.0.2.1 9\n".to_vec()), Ok(true));
    assert_eq!(file.update(b"a.example\n192.0.2.1 9\n".to_vec()), Ok(false));
    assert_eq!(
        file.update(b"a.example\n192.0.2.1 x\n".to_vec()),
        Err((2, "wrong weight value \"x\"".to_owned()))
    );
    let owner = name_from_str("a.example").unwrap();
    assert_eq!(
        file.weights().weight(&owner, "192.0.2.1".parse().unwrap()),
        9
    );
    assert_eq!(
        file.update(b"a.example\n192.0.2.1 x\n".to_vec()),
        Ok(false),
        "the same broken contents are reported once"
    );
}

#[test]
fn a_weight_file_error_is_a_config_error_at_its_line() {
    let file = TempWeights::new("www.example.org\n192.0.2.1 heavy\n");
    assert_eq!(
        config_error(
            &format!(". {{\n loadbalance weighted {}\n}}", file.path()),
            &[PLUGIN]
        ),
        format!("{}:2: wrong weight value \"heavy\"", file.path())
    );
}

#[test]
fn a_missing_weight_file_is_an_error_only_when_it_is_never_reloaded() {
    let missing = "/nonexistent/oxidns/weights";
    assert!(
        config(
            &format!(". {{\n loadbalance weighted {missing}\n}}"),
            &[PLUGIN]
        )
        .is_ok()
    );
    let error = config_error(
        &format!(". {{\n loadbalance weighted {missing} {{\n  reload 0\n }}\n}}"),
        &[PLUGIN],
    );
    assert!(
        error.starts_with(&format!(
            "Corefile:2: loadbalance: cannot open weight file {missing}: "
        )),
        "{error}"
    );
}

#[test]
fn a_relative_weight_file_is_found_under_root() {
    let file = TempWeights::new("www.example.org\n192.0.2.1 2\n");
    let config = config(
        &format!(
            ". {{\n loadbalance weighted weights {{\n  reload 0\n }}\n root {}\n}}",
            file.0.display()
        ),
        &[oxidns_plugin_root::PLUGIN, PLUGIN],
    );
    assert!(config.is_ok(), "{:?}", config.err());
}

// prefer

#[tokio::test]
async fn prefer_puts_addresses_in_the_given_networks_first_in_network_order() {
    let lb = handler("{\n  prefer 10.9.30.0/24 10.9.20.0/24\n }");
    let response = answer(&[
        "www.example.org A 172.0.100.1",
        "www.example.org A 10.9.20.1",
        "www.example.org A 172.0.200.1",
        "www.example.org A 10.9.30.1",
    ]);
    for _ in 0..50 {
        let got = texts(&through(&lb, Rtype::A, &response).await.answer);
        assert_eq!(got[0], "www.example.org A 10.9.30.1");
        assert_eq!(got[1], "www.example.org A 10.9.20.1");
    }
}

#[test]
fn prefer_keeps_the_order_within_matched_and_unmatched_addresses() {
    let mut section = records(&[
        "www.example.org A 172.0.100.1",
        "www.example.org A 10.9.20.1",
        "www.example.org A 172.0.200.1",
        "www.example.org A 10.9.30.1",
        "www.example.org CNAME x.example.org.",
    ]);
    prefer(&mut section, &[Cidr::parse("10.0.0.0/8").unwrap()]);
    assert_eq!(
        texts(&section),
        [
            "www.example.org CNAME x.example.org.",
            "www.example.org A 10.9.20.1",
            "www.example.org A 10.9.30.1",
            "www.example.org A 172.0.100.1",
            "www.example.org A 172.0.200.1",
        ]
    );
}

#[tokio::test]
async fn prefer_applies_to_ipv6_and_after_weighted() {
    let file = TempWeights::new("www.example.org\n2001:db8::1 255\n");
    let lb = handler(&format!(
        "weighted {} {{\n  prefer 2001:db8:1::/48\n }}",
        file.path()
    ));
    let mut response = answer(&["www.example.org AAAA 2001:db8::1"]);
    response
        .answer
        .push(rr("www.example.org AAAA 2001:db8:1::1"));
    for _ in 0..20 {
        let got = texts(&through(&lb, Rtype::AAAA, &response).await.answer);
        assert_eq!(got[0], "www.example.org AAAA 2001:db8:1::1");
    }
}

#[test]
fn cidrs_are_read_as_go_reads_them() {
    let net = Cidr::parse("192.0.2.0/24").unwrap();
    assert!(net.contains("192.0.2.200".parse().unwrap()));
    assert!(net.contains("::ffff:192.0.2.1".parse().unwrap()));
    assert!(!net.contains("192.0.3.1".parse().unwrap()));
    assert!(!net.contains("2001:db8::1".parse().unwrap()));
    assert!(
        Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap())
    );
    assert!(
        Cidr::parse("::/0")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap())
    );
    for bad in [
        "192.0.2.0",
        "192.0.2.0/33",
        "2001:db8::/129",
        "x/8",
        "10.0.0.0/",
        "10.0.0.0/+8",
    ] {
        assert_eq!(Cidr::parse(bad), None, "{bad}");
    }
}

// setup

#[test]
fn setup_mistakes_are_reported_at_their_line() {
    let weights = TempWeights::new("www.example.org\n192.0.2.1 2\n");
    let path = weights.path();
    for (body, error) in [
        (
            "loadbalance fastest",
            "Corefile:2: loadbalance: unknown policy: fastest",
        ),
        (
            "loadbalance round_robin x",
            "Corefile:2: loadbalance: round_robin takes no arguments",
        ),
        (
            "loadbalance weighted",
            "Corefile:2: loadbalance: missing weight file argument",
        ),
        (
            &format!("loadbalance weighted {path} x"),
            "Corefile:2: loadbalance: unexpected argument(s)",
        ),
        (
            "loadbalance {\n  reload 10s\n }",
            "Corefile:3: reload: only the weighted policy has a weight file to reload",
        ),
        (
            &format!("loadbalance weighted {path} {{\n  reload\n }}"),
            "Corefile:3: reload: takes 1 argument(s), got 0",
        ),
        (
            &format!("loadbalance weighted {path} {{\n  reload soon\n }}"),
            "Corefile:3: reload: invalid reload duration 'soon'",
        ),
        (
            "loadbalance {\n  prefer 10.0.0.0\n }",
            "Corefile:3: prefer: invalid CIDR \"10.0.0.0\"",
        ),
        (
            "loadbalance {\n  prefer\n }",
            "Corefile:3: prefer: takes at least 1 argument(s), got 0",
        ),
        (
            "loadbalance {\n  limit_answers 2\n }",
            "Corefile:3: loadbalance: unknown property 'limit_answers'",
        ),
        (
            "loadbalance\n loadbalance",
            "Corefile:3: loadbalance: this plugin can only be used once per server block",
        ),
    ] {
        assert_eq!(
            config_error(&format!(". {{\n {body}\n}}"), &[PLUGIN]),
            error,
            "{body}"
        );
    }
}

#[test]
fn every_readme_example_is_a_valid_config() {
    // Relative paths in the examples start from the repository root, as for a user there.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
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
        let absolute = body.replace(
            "plugins/loadbalance/",
            &format!("{}/plugins/loadbalance/", root.display()),
        );
        // The weight files named must exist: a reload would hide a missing one.
        let words: Vec<&str> = absolute.split_whitespace().collect();
        for pair in words.windows(2) {
            if pair[0] == "weighted" {
                assert!(std::path::Path::new(pair[1]).is_file(), "{}", pair[1]);
            }
        }
        if let Err(errors) = config(&absolute, &plugins) {
            panic!("{body}\n{errors:?}");
        }
        examples += 1;
    }
    assert!(examples >= 3, "{examples}");
}
