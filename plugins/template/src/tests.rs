use std::sync::Arc;

use oxidns_server::proto::{Class, OptRcode, Rcode, Response, Rtype, option_code};
use oxidns_server::test_util::{Fixed, config, config_error, request, request_with, serve_chain};
use oxidns_server::{Config, Handler, PluginError, Request};

use super::PLUGIN;

/// The config's chain with a `Fixed` REFUSED answer at its end, to see pass-through.
fn chain(config: &Config) -> Vec<Arc<dyn Handler>> {
    let mut chain: Vec<Arc<dyn Handler>> = config.blocks[0].chain.to_vec();
    chain.push(Arc::new(Fixed(Response::new(Rcode::REFUSED))));
    chain
}

async fn serve(corefile: &str, mut request: Request) -> Result<Response, PluginError> {
    let config = config(corefile, &[PLUGIN]).unwrap();
    serve_chain(&chain(&config), &mut request).await
}

async fn ask(corefile: &str, qname: &str, qtype: Rtype) -> Response {
    serve(corefile, request(qname, qtype)).await.unwrap()
}

fn texts(records: &[oxidns_server::proto::Record]) -> Vec<String> {
    records.iter().map(ToString::to_string).collect()
}

const IP_A: &str = r#". {
    template IN A example {
        match (^|[.])ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
        answer "{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
        fallthrough
    }
}"#;

#[tokio::test]
async fn named_groups_fill_the_answer_authoritatively() {
    let response = ask(IP_A, "ip-10-1-2-3.example", Rtype::A).await;
    assert_eq!(response.header_rcode(), Rcode::NOERROR);
    assert!(response.authoritative);
    assert_eq!(
        texts(&response.answer),
        ["ip-10-1-2-3.example. 60 IN A 10.1.2.3"]
    );
}

#[tokio::test]
async fn query_name_is_matched_in_lower_case() {
    let response = ask(IP_A, "IP-10-1-2-3.Example", Rtype::A).await;
    assert_eq!(
        texts(&response.answer),
        ["ip-10-1-2-3.example. 60 IN A 10.1.2.3"]
    );
}

#[tokio::test]
async fn regex_miss_with_fallthrough_passes_on() {
    let response = ask(IP_A, "www.example", Rtype::A).await;
    assert_eq!(response.header_rcode(), Rcode::REFUSED);
}

#[tokio::test]
async fn regex_miss_without_fallthrough_is_nxdomain() {
    let corefile = ". {\n template IN A example {\n  match ^ip[.]example[.]$\n  answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n }\n}";
    let response = ask(corefile, "www.example", Rtype::A).await;
    assert_eq!(response.header_rcode(), Rcode::NXDOMAIN);
    assert!(response.answer.is_empty());
}

#[tokio::test]
async fn fallthrough_zones_limit_which_misses_pass_on() {
    let corefile = ". {\n template IN A example {\n  match ^ip[.]example[.]$\n  answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n  fallthrough a.example\n }\n}";
    let inside = ask(corefile, "x.a.example", Rtype::A).await;
    assert_eq!(inside.header_rcode(), Rcode::REFUSED);
    let outside = ask(corefile, "x.b.example", Rtype::A).await;
    assert_eq!(outside.header_rcode(), Rcode::NXDOMAIN);
}

#[tokio::test]
async fn names_outside_the_template_zones_pass_on() {
    let response = ask(IP_A, "ip-10-1-2-3.example.org", Rtype::A).await;
    assert_eq!(response.header_rcode(), Rcode::REFUSED);
}

#[tokio::test]
async fn other_types_and_classes_pass_on() {
    let corefile = ". {\n template IN A {\n  answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n }\n}";
    let other_type = ask(corefile, "a.example", Rtype::MX).await;
    assert_eq!(other_type.header_rcode(), Rcode::REFUSED);
    let other_class = serve(
        corefile,
        request_with("a.example", Rtype::A, Class::CH, None),
    )
    .await
    .unwrap();
    assert_eq!(other_class.header_rcode(), Rcode::REFUSED);
}

#[tokio::test]
async fn any_query_type_matches_and_takes_the_template_type() {
    let corefile = ". {\n template IN A {\n  answer \"{{ .Name }} 60 IN TXT {{ .Type }}\"\n }\n}";
    let response = ask(corefile, "a.example", Rtype::ANY).await;
    assert_eq!(texts(&response.answer), ["a.example. 60 IN TXT \"A\""]);
}

#[tokio::test]
async fn any_template_class_and_type_match_every_query() {
    let corefile =
        ". {\n template ANY ANY {\n  answer \"{{ .Name }} 60 {{ .Class }} TXT {{ .Type }}\"\n }\n}";
    let response = serve(
        corefile,
        request_with("a.example", Rtype::MX, Class::CH, None),
    )
    .await
    .unwrap();
    assert_eq!(texts(&response.answer), ["a.example. 60 CH TXT \"MX\""]);
}

#[tokio::test]
async fn rcode_is_set_with_the_records() {
    let corefile = ". {\n template ANY ANY invalid {\n  rcode NXDOMAIN\n  authority \"invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)\"\n }\n}";
    let response = ask(corefile, "a.invalid", Rtype::A).await;
    assert_eq!(response.header_rcode(), Rcode::NXDOMAIN);
    assert!(response.authoritative);
    assert_eq!(
        texts(&response.authority),
        ["invalid. 60 IN SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60"]
    );
}

#[tokio::test]
async fn servfail_rcode_answers_without_records() {
    let corefile =
        ". {\n template ANY ANY {\n  rcode SERVFAIL\n  answer \"x. 60 IN A 10.0.0.1\"\n }\n}";
    let response = ask(corefile, "a.example", Rtype::A).await;
    assert_eq!(response.header_rcode(), Rcode::SERVFAIL);
    assert!(!response.authoritative);
    assert!(response.answer.is_empty());
}

#[tokio::test]
async fn additional_and_authority_sections_are_filled() {
    let corefile = r#". {
    template IN MX example {
        match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
        answer "{{ .Name }} 60 IN MX 10 {{ .Name }}"
        additional "{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
        authority "example. 60 IN NS ns0.example."
    }
}"#;
    let response = ask(corefile, "ip-10-1-2-3.example", Rtype::MX).await;
    assert_eq!(
        texts(&response.answer),
        ["ip-10-1-2-3.example. 60 IN MX 10 ip-10-1-2-3.example."]
    );
    assert_eq!(
        texts(&response.additional),
        ["ip-10-1-2-3.example. 60 IN A 10.1.2.3"]
    );
    assert_eq!(
        texts(&response.authority),
        ["example. 60 IN NS ns0.example."]
    );
}

#[tokio::test]
async fn templates_are_tried_in_order_until_one_matches() {
    let corefile = r#"example. {
    template IN SOA {
        match ^example[.]$
        answer "{{ .Zone }} 3600 IN SOA ns1.{{ .Zone }} admin.{{ .Zone }} (1 60 120 86400 3600)"
        fallthrough
    }
    template IN SOA {
        authority "{{ .Zone }} 3600 IN SOA ns1.{{ .Zone }} admin.{{ .Zone }} (1 60 120 86400 3600)"
    }
}"#;
    let apex = ask(corefile, "example", Rtype::SOA).await;
    assert_eq!(apex.answer.len(), 1);
    assert!(apex.authority.is_empty());
    let below = ask(corefile, "a.example", Rtype::SOA).await;
    assert!(below.answer.is_empty());
    assert_eq!(
        texts(&below.authority),
        ["example. 3600 IN SOA ns1.example. admin.example. 1 60 120 86400 3600"]
    );
}

#[tokio::test]
async fn first_matching_regex_gives_the_groups() {
    let corefile = r#". {
    template IN A example {
        match "^ip-(?P<a>10)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]dc[.]example[.]$"
        match "^(?P<a>[0-9]*)[.](?P<b>[0-9]*)[.](?P<c>[0-9]*)[.](?P<d>[0-9]*)[.]ext[.]example[.]$"
        answer "{{ .Name }} 60 IN A {{ .Group.a}}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
    }
}"#;
    let dc = ask(corefile, "ip-10-0-0-1.dc.example", Rtype::A).await;
    assert_eq!(
        texts(&dc.answer),
        ["ip-10-0-0-1.dc.example. 60 IN A 10.0.0.1"]
    );
    let ext = ask(corefile, "192.0.2.1.ext.example", Rtype::A).await;
    assert_eq!(
        texts(&ext.answer),
        ["192.0.2.1.ext.example. 60 IN A 192.0.2.1"]
    );
}

#[tokio::test]
async fn parse_int_turns_hex_groups_into_numbers() {
    let corefile = r#". {
    template IN A example {
      match "^ip0a(?P<b>[a-f0-9]{2})(?P<c>[a-f0-9]{2})(?P<d>[a-f0-9]{2})[.]example[.]$"
      answer "{{ .Name }} 60 IN A 10.{{ parseInt .Group.b 16 8 }}.{{ parseInt .Group.c 16 8 }}.{{ parseInt .Group.d 16 8 }}"
    }
}"#;
    let response = ask(corefile, "ip0a7b7b01.example", Rtype::A).await;
    assert_eq!(
        texts(&response.answer),
        ["ip0a7b7b01.example. 60 IN A 10.123.123.1"]
    );
}

#[tokio::test]
async fn index_of_match_reaches_numbered_groups() {
    let corefile = r#". {
    template IN ANY example.com {
      match "example\.com\.(dc1\.example\.com\.)$"
      rcode NXDOMAIN
      authority "{{ index .Match 1 }} 60 IN SOA ns.{{ index .Match 1 }} hostmaster.{{ index .Match 1 }} (1 60 60 60 60)"
      fallthrough
    }
}"#;
    let response = ask(corefile, "a.example.com.dc1.example.com", Rtype::A).await;
    assert_eq!(response.header_rcode(), Rcode::NXDOMAIN);
    assert_eq!(
        texts(&response.authority),
        [
            "dc1.example.com. 60 IN SOA ns.dc1.example.com. hostmaster.dc1.example.com. 1 60 60 60 60"
        ]
    );
}

#[tokio::test]
async fn remote_is_the_client_address() {
    let corefile =
        ". {\n template IN TXT {\n  answer \"{{ .Name }} 60 IN TXT {{ .Remote }}\"\n }\n}";
    let response = ask(corefile, "a.example", Rtype::TXT).await;
    assert_eq!(
        texts(&response.answer),
        ["a.example. 60 IN TXT \"127.0.0.1\""]
    );
}

#[tokio::test]
async fn meta_reads_request_metadata() {
    let corefile = ". {\n template IN TXT {\n  answer \"{{ .Name }} 60 IN TXT {{ .Meta \\\"test/key\\\" }}\"\n }\n}";
    let mut request = request("a.example", Rtype::TXT);
    request.metadata.set("test/key", "value");
    let response = serve(corefile, request).await.unwrap();
    assert_eq!(texts(&response.answer), ["a.example. 60 IN TXT \"value\""]);
}

#[tokio::test]
async fn relative_names_are_below_the_root_and_ttl_defaults_to_3600() {
    let corefile = ". {\n template IN ANY foogle.com {\n  match \"^foogle\\.com\\.$\"\n  answer \"foogle.com IN CNAME google.com\"\n }\n}";
    let response = ask(corefile, "foogle.com", Rtype::A).await;
    assert_eq!(
        texts(&response.answer),
        ["foogle.com. 3600 IN CNAME google.com."]
    );
}

#[tokio::test]
async fn broken_template_fails_the_query() {
    let corefile =
        ". {\n template IN TXT {\n  answer \"{{ .Name }} 60 IN TXT {{ index .Match 2 }}\"\n }\n}";
    let error = serve(corefile, request("a.example", Rtype::TXT))
        .await
        .unwrap_err();
    assert_eq!(
        error.message,
        "executing answer template \"{{ .Name }} 60 IN TXT {{ index .Match 2 }}\": error calling index: index out of range: 2"
    );
}

#[tokio::test]
async fn rendered_text_that_is_no_record_fails_the_query() {
    let corefile = ". {\n template IN TXT {\n  answer \"{{ .Name }}\"\n }\n}";
    let error = serve(corefile, request("a.example", Rtype::TXT))
        .await
        .unwrap_err();
    assert!(
        error
            .message
            .starts_with("answer template \"{{ .Name }}\" gave \"a.example.\": "),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn ederror_adds_an_extended_dns_error() {
    let corefile = ". {\n template ANY ANY invalid {\n  rcode NXDOMAIN\n  ederror 21 \"Blocked according to RFC2606\"\n }\n}";
    let edns = oxidns_server::proto::Edns {
        udp_payload_size: 1232,
        version: 0,
        dnssec_ok: false,
        options: Vec::new(),
    };
    let response = serve(
        corefile,
        request_with("a.invalid", Rtype::A, Class::IN, Some(edns)),
    )
    .await
    .unwrap();
    assert_eq!(response.rcode, OptRcode::NXDOMAIN);
    let ede = &response.edns_options[0];
    assert_eq!(ede.code, option_code::EXTENDED_ERROR);
    assert_eq!(&ede.data[..2], &21u16.to_be_bytes());
    assert_eq!(&ede.data[2..], b"Blocked according to RFC2606");
}

#[test]
fn class_and_type_are_required_and_checked() {
    let cases = [
        (
            "template",
            "Corefile:2: template: takes at least 2 argument(s), got 0",
        ),
        (
            "template X A",
            "Corefile:2: template: invalid query class X",
        ),
        ("template IN X", "Corefile:2: template: invalid RR type X"),
    ];
    for (line, expected) in cases {
        let corefile = format!(". {{\n {line} {{\n  rcode NXDOMAIN\n }}\n}}");
        assert_eq!(config_error(&corefile, &[PLUGIN]), expected, "{line}");
    }
}

#[test]
fn template_without_answer_authority_or_rcode_is_refused() {
    assert_eq!(
        config_error(". {\n template ANY ANY {\n  match .*\n }\n}", &[PLUGIN]),
        "Corefile:2: template: no answer section for template found"
    );
}

#[test]
fn bad_regex_is_refused_with_its_line() {
    assert_eq!(
        config_error(
            ". {\n template ANY ANY {\n  match (?P<x>\n  rcode NXDOMAIN\n }\n}",
            &[PLUGIN]
        ),
        "Corefile:3: template: could not parse regex: (?P<x>, unclosed group"
    );
}

#[test]
fn unknown_rcode_is_refused() {
    assert_eq!(
        config_error(
            ". {\n template ANY ANY {\n  rcode UNDEFINED\n }\n}",
            &[PLUGIN]
        ),
        "Corefile:3: template: unknown rcode UNDEFINED"
    );
}

#[test]
fn empty_sections_are_refused() {
    for property in ["answer", "additional", "authority", "match"] {
        let corefile =
            format!(". {{\n template ANY ANY {{\n  {property}\n  rcode NXDOMAIN\n }}\n}}");
        let error = config_error(&corefile, &[PLUGIN]);
        assert!(error.starts_with("Corefile:3: template: "), "{error}");
    }
}

#[test]
fn unsupported_template_syntax_is_refused_at_setup() {
    assert_eq!(
        config_error(
            ". {\n template ANY ANY {\n  answer \"{{ range .Match }}x{{ end }}\"\n }\n}",
            &[PLUGIN]
        ),
        "Corefile:3: template: could not compile answer template \"{{ range .Match }}x{{ end }}\": 'range' is not supported: only pipelines of fields, literals and functions are"
    );
}

#[test]
fn unclosed_action_is_refused_at_setup() {
    assert_eq!(
        config_error(
            ". {\n template ANY ANY {\n  authority \"{{\"\n }\n}",
            &[PLUGIN]
        ),
        "Corefile:3: template: could not compile authority template \"{{\": unclosed action"
    );
}

#[test]
fn invalid_fixed_record_is_refused_at_setup() {
    let error = config_error(
        ". {\n template ANY ANY {\n  answer \"example. 60 IN A not-an-address\"\n }\n}",
        &[PLUGIN],
    );
    assert!(
        error.starts_with(
            "Corefile:3: template: answer \"example. 60 IN A not-an-address\" is not a valid record: "
        ),
        "{error}"
    );
}

#[test]
fn unknown_property_is_refused() {
    assert_eq!(
        config_error(
            ". {\n template ANY ANY {\n  notavailable\n  rcode NXDOMAIN\n }\n}",
            &[PLUGIN]
        ),
        "Corefile:3: template: unknown property 'notavailable'"
    );
}

#[test]
fn unknown_field_is_accepted_at_setup_as_coredns_does() {
    let corefile =
        ". {\n template ANY A example.com {\n  answer \"{{ .Name }} A {{ .Grup.d }}\"\n }\n}";
    assert!(config(corefile, &[PLUGIN]).is_ok());
}

#[test]
fn quoted_zone_list_is_split_on_spaces() {
    let corefile = ". {\n template ANY ANY \" a.example  b.example\" {\n  rcode NXDOMAIN\n }\n}";
    assert!(config(corefile, &[PLUGIN]).is_ok());
}

/// Every counter recorded: (name, labels as `key=value`, value), sorted.
fn counters(recorder: &metrics_util::debugging::Snapshotter) -> Vec<(String, Vec<String>, u64)> {
    use metrics_util::debugging::DebugValue;
    let mut found: Vec<_> = recorder
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let DebugValue::Counter(count) = value else {
                panic!("{key:?} is not a counter");
            };
            let labels = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            (key.key().name().to_owned(), labels, count)
        })
        .collect();
    found.sort();
    found
}

/// Serves the queries with a local metrics recorder, on this thread.
fn counted(corefile: &str, queries: Vec<Request>) -> Vec<(String, Vec<String>, u64)> {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            for request in queries {
                let _ = serve(corefile, request).await;
            }
        })
    });
    counters(&snapshotter)
}

fn labels(pairs: &[&str]) -> Vec<String> {
    pairs.iter().map(|p| (*p).to_owned()).collect()
}

#[test]
fn matches_are_counted_with_coredns_labels() {
    let found = counted(
        IP_A,
        vec![
            request("ip-10-1-2-3.example", Rtype::A),
            request("ip-10-1-2-4.example", Rtype::A),
            // No regex matches: not counted.
            request("www.example", Rtype::A),
            // Another type: the template is skipped, not counted.
            request("ip-10-1-2-3.example", Rtype::AAAA),
        ],
    );
    assert_eq!(
        found,
        [(
            "coredns_template_matches_total".to_owned(),
            labels(&[
                "server=dns://:53",
                "zone=example.",
                "view=",
                "class=IN",
                "type=A"
            ]),
            2
        )]
    );
}

#[test]
fn servfail_templates_count_their_matches() {
    let corefile = ". {\n template ANY ANY invalid {\n  rcode SERVFAIL\n }\n}";
    let found = counted(
        corefile,
        vec![request_with("x.invalid", Rtype::ANY, Class::CH, None)],
    );
    // The query's class; for an ANY query, the template's type.
    assert_eq!(
        found,
        [(
            "coredns_template_matches_total".to_owned(),
            labels(&[
                "server=dns://:53",
                "zone=invalid.",
                "view=",
                "class=CH",
                "type=ANY"
            ]),
            1
        )]
    );
}

#[test]
fn template_and_record_failures_are_counted_by_section_and_template() {
    let corefile = ". {
    template IN TXT a.example {
        answer \"{{ .Name }} 60 IN TXT ok\"
        authority \"{{ .Name }} 60 IN TXT {{ index .Match 2 }}\"
    }
    template IN TXT b.example {
        additional \"{{ .Name }}\"
        rcode NXDOMAIN
    }
}";
    let found = counted(
        corefile,
        vec![
            request("x.a.example", Rtype::TXT),
            request("x.b.example", Rtype::TXT),
            request("y.b.example", Rtype::TXT),
        ],
    );
    let base = |zone: &str| {
        labels(&[
            "server=dns://:53",
            &format!("zone={zone}"),
            "view=",
            "class=IN",
            "type=TXT",
        ])
    };
    let with = |zone: &str, extra: &[&str]| {
        let mut all = base(zone);
        all.extend(labels(extra));
        all
    };
    assert_eq!(
        found,
        [
            (
                "coredns_template_matches_total".to_owned(),
                base("a.example."),
                1
            ),
            (
                "coredns_template_matches_total".to_owned(),
                base("b.example."),
                2
            ),
            (
                "coredns_template_rr_failures_total".to_owned(),
                with(
                    "b.example.",
                    &["section=additional", "template={{ .Name }}"]
                ),
                2
            ),
            (
                "coredns_template_template_failures_total".to_owned(),
                with(
                    "a.example.",
                    &[
                        "section=authority",
                        "template={{ .Name }} 60 IN TXT {{ index .Match 2 }}"
                    ]
                ),
                1
            ),
        ]
    );
}
