//! `chaos`: answers class CH TXT queries for `version.bind`, `version.server`,
//! `authors.bind`, `hostname.bind` and `id.server`, as CoreDNS's chaos does.
//! Other CH names, and other classes or types, pass on to the next plugin.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use oxidns_server::proto::domain::rdata::Txt;
use oxidns_server::proto::{Class, Name, Rcode, Record, RecordData, Rtype, Ttl, name_from_str};
use oxidns_server::{ConfigError, Handler, HandlerFuture, Next, PluginEntry, Request, Setup};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "chaos",
    setup,
};

/// The version answered when the directive names none.
pub const DEFAULT_VERSION: &str = concat!("oxidns-", env!("CARGO_PKG_VERSION"));

/// The authors answered when the directive names none.
pub const DEFAULT_AUTHORS: &[&str] = &["oxidns developers"];

/// The longest character-string a TXT record can hold (RFC 1035 §3.3).
const MAX_TEXT: usize = 255;

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?;
    if let Some(line) = directive.block.first() {
        return Err(directive.unknown_property(line));
    }
    let args = directive.arg_texts();
    let version = trim(args.first().copied().unwrap_or(DEFAULT_VERSION));
    let mut authors: Vec<String> = match args.get(1..) {
        Some(named) if !named.is_empty() => named.iter().map(|a| trim(a)).collect(),
        _ => DEFAULT_AUTHORS.iter().map(|a| trim(a)).collect(),
    };
    // As CoreDNS: named authors are kept once each, sorted.
    authors.sort();
    authors.dedup();
    setup.add_handler(Arc::new(Chaos::new(version, authors)));
    Ok(())
}

/// Cuts text to what one TXT character-string holds, at a character boundary.
fn trim(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The names this plugin answers.
struct Names {
    version_bind: Name,
    version_server: Name,
    authors_bind: Name,
    hostname_bind: Name,
    id_server: Name,
}

impl Names {
    fn new() -> Self {
        let name = |text| name_from_str(text).expect("a valid name");
        Names {
            version_bind: name("version.bind"),
            version_server: name("version.server"),
            authors_bind: name("authors.bind"),
            hostname_bind: name("hostname.bind"),
            id_server: name("id.server"),
        }
    }
}

struct Chaos {
    version: String,
    authors: Vec<String>,
    names: Names,
}

impl Chaos {
    fn new(version: String, authors: Vec<String>) -> Self {
        Chaos {
            version,
            authors,
            names: Names::new(),
        }
    }

    /// The TXT strings for `qname` (compared ignoring case), if it is ours.
    fn texts(&self, qname: &Name) -> Option<Vec<String>> {
        let names = &self.names;
        if *qname == names.authors_bind {
            let mut authors = self.authors.clone();
            shuffle(&mut authors);
            Some(authors)
        } else if *qname == names.version_bind || *qname == names.version_server {
            Some(vec![self.version.clone()])
        } else if *qname == names.hostname_bind || *qname == names.id_server {
            Some(vec![trim(&oxidns_server::hostname())])
        } else {
            None
        }
    }
}

impl Handler for Chaos {
    fn name(&self) -> &'static str {
        "chaos"
    }

    // Answers CH TXT itself; other answers pass unread.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        if request.qclass() != Class::CH || request.qtype() != Rtype::TXT {
            return next.serve(request);
        }
        let Some(texts) = self.texts(request.qname()) else {
            return next.serve(request);
        };
        // As CoreDNS: owner as asked, class CH, TTL 0, AA clear.
        let mut response = request.reply(Rcode::NOERROR);
        for text in texts {
            let txt = Txt::build_from_slice(text.as_bytes()).expect("trimmed to 255 octets");
            response.answer.push(Record::new(
                request.qname().clone(),
                Class::CH,
                Ttl::ZERO,
                RecordData::Txt(txt),
            ));
        }
        HandlerFuture::ready(Ok(response))
    }
}

/// Puts the authors in a new random order for each answer, as CoreDNS does.
fn shuffle(items: &mut [String]) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // SplitMix64: ample for ordering a handful of strings.
    let mut state = nanos ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxidns_server::proto::{Response, name_text};
    use oxidns_server::test_util::{Fixed, config, config_error, request_with, serve_chain};

    /// What the rest of the chain answers, to tell pass-through from our answer.
    fn from_next() -> Response {
        Response::new(Rcode::REFUSED)
    }

    async fn serve_class(corefile: &str, qname: &str, qtype: Rtype, qclass: Class) -> Response {
        let config = config(corefile, &[PLUGIN]).unwrap();
        let mut chain = config.blocks[0].chain.to_vec();
        chain.push(Arc::new(Fixed(from_next())));
        let mut req = request_with(qname, qtype, qclass, None);
        serve_chain(&chain, &mut req).await.unwrap()
    }

    async fn serve(corefile: &str, qname: &str) -> Response {
        serve_class(corefile, qname, Rtype::TXT, Class::CH).await
    }

    /// The strings of the TXT records in the answer section, in order.
    fn texts(response: &Response) -> Vec<String> {
        response
            .answer
            .iter()
            .map(|record| match record.data() {
                RecordData::Txt(txt) => String::from_utf8(txt.text::<Vec<u8>>()).unwrap(),
                other => panic!("expected TXT, got {other:?}"),
            })
            .collect()
    }

    const PLAIN: &str = ". {\n chaos\n}";

    #[tokio::test]
    async fn version_bind_in_class_ch_returns_configured_version() {
        let response = serve(". {\n chaos v1.2.3\n}", "version.bind").await;
        assert_eq!(response.rcode, Rcode::NOERROR.into());
        assert_eq!(texts(&response), ["v1.2.3"]);
        assert_eq!(
            response.answer[0].to_string(),
            "version.bind. 0 CH TXT \"v1.2.3\""
        );
    }

    #[tokio::test]
    async fn version_server_returns_the_same_version() {
        let response = serve(". {\n chaos v1.2.3\n}", "version.server").await;
        assert_eq!(texts(&response), ["v1.2.3"]);
    }

    #[tokio::test]
    async fn default_version_is_oxidns_and_crate_version() {
        let response = serve(PLAIN, "version.bind").await;
        assert_eq!(
            texts(&response),
            [format!("oxidns-{}", env!("CARGO_PKG_VERSION"))]
        );
    }

    #[tokio::test]
    async fn default_authors_are_the_oxidns_developers() {
        let response = serve(PLAIN, "authors.bind").await;
        assert_eq!(texts(&response), ["oxidns developers"]);
    }

    #[tokio::test]
    async fn one_argument_sets_version_and_keeps_default_authors() {
        let response = serve(". {\n chaos v9\n}", "authors.bind").await;
        assert_eq!(texts(&response), ["oxidns developers"]);
    }

    #[tokio::test]
    async fn named_authors_each_get_one_record_without_repeats() {
        let corefile = ". {\n chaos v2 \"Zoe Z\" Ann \"Zoe Z\" Bob\n}";
        let response = serve(corefile, "authors.bind").await;
        let mut got = texts(&response);
        got.sort();
        assert_eq!(got, ["Ann", "Bob", "Zoe Z"]);
        assert!(response.answer.iter().all(|r| r.class() == Class::CH));
    }

    #[tokio::test]
    async fn authors_come_in_random_order() {
        let corefile = ". {\n chaos v2 a b c d e f g h\n}";
        let mut orders = std::collections::HashSet::new();
        for _ in 0..50 {
            orders.insert(texts(&serve(corefile, "authors.bind").await));
        }
        assert!(orders.len() > 1, "50 answers all had the same order");
    }

    #[tokio::test]
    async fn hostname_bind_and_id_server_return_the_host_name() {
        for qname in ["hostname.bind", "id.server"] {
            let response = serve(PLAIN, qname).await;
            assert_eq!(
                texts(&response),
                [trim(&oxidns_server::hostname())],
                "{qname}"
            );
        }
    }

    #[tokio::test]
    async fn answer_keeps_question_case_has_ttl_zero_and_no_aa() {
        let response = serve(PLAIN, "VERSION.Bind").await;
        assert_eq!(response.answer.len(), 1);
        assert_eq!(name_text(response.answer[0].owner()), "VERSION.Bind.");
        assert_eq!(response.answer[0].ttl(), Ttl::ZERO);
        assert_eq!(response.answer[0].class(), Class::CH);
        assert!(!response.authoritative);
    }

    #[tokio::test]
    async fn other_names_in_class_ch_pass_to_next() {
        for qname in [
            "version.bind.example",
            "example.bind",
            "bind",
            "server",
            "id.bind",
        ] {
            let response = serve(PLAIN, qname).await;
            assert_eq!(response, from_next(), "{qname}");
        }
    }

    #[tokio::test]
    async fn other_types_in_class_ch_pass_to_next() {
        for qtype in [Rtype::A, Rtype::ANY, Rtype::SRV] {
            let response = serve_class(PLAIN, "version.bind", qtype, Class::CH).await;
            assert_eq!(response, from_next(), "{qtype}");
        }
    }

    #[tokio::test]
    async fn other_classes_pass_to_next() {
        for qclass in [Class::IN, Class::HS, Class::ANY] {
            let response = serve_class(PLAIN, "version.bind", Rtype::TXT, qclass).await;
            assert_eq!(response, from_next(), "{qclass}");
        }
    }

    #[tokio::test]
    async fn long_version_is_cut_to_255_octets() {
        let long = "v".repeat(300);
        let response = serve(&format!(". {{\n chaos {long} me\n}}"), "version.bind").await;
        assert_eq!(texts(&response), ["v".repeat(255)]);
    }

    #[test]
    fn trim_cuts_at_a_character_boundary() {
        let text = format!("{}é", "a".repeat(254));
        assert_eq!(trim(&text), "a".repeat(254));
        assert_eq!(trim("short"), "short");
    }

    #[test]
    fn option_block_is_refused_as_unknown_property() {
        assert_eq!(
            config_error(". {\n chaos v2 {\n  unknown\n }\n}", &[PLUGIN]),
            "Corefile:3: chaos: unknown property 'unknown'"
        );
    }

    #[test]
    fn second_chaos_in_a_block_is_refused() {
        assert_eq!(
            config_error(". {\n chaos v1\n chaos v2\n}", &[PLUGIN]),
            "Corefile:3: chaos: this plugin can only be used once per server block"
        );
    }
}
