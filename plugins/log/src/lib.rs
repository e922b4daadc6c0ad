//! `log`: query logging, as CoreDNS's log plugin does.
//!
//! Each `log` directive makes one rule per name it lists; a query is logged
//! by the first rule whose name contains the question name (CoreDNS checks
//! the rules in order and stops at the first match). The line is written
//! once the response has been encoded, through [`Request::on_written`], so
//! the rcode, flags and size in it are those of the message sent.

use oxidns_server::duration::parse_go_duration;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oxidns_server::proto::{
    Class, Name, Opcode, Rcode, RecordData, Response, Rtype, in_zone, lowercase, name_from_str,
    name_text,
};
use oxidns_server::{
    ConfigError, Directive, Handler, HandlerFuture, Next, PluginEntry, Request, Setup, Transport,
};

pub const PLUGIN: PluginEntry = PluginEntry { name: "log", setup };

/// CoreDNS's Common Log Format.
pub const COMMON_LOG_FORMAT: &str = "{remote}:{port} - {>id} \"{type} {class} {name} {proto} {size} {>do} {>bufsize}\" {rcode} {>rflags} {rsize} {duration}";
/// The Common Log Format and the query opcode.
pub const COMBINED_LOG_FORMAT: &str = "{remote}:{port} - {>id} \"{type} {class} {name} {proto} {size} {>do} {>bufsize}\" {rcode} {>rflags} {rsize} {duration} \"{>opcode}\"";
/// What a placeholder without a value becomes.
const EMPTY_VALUE: &str = "-";
/// `minDuration` without an argument.
const DEFAULT_MIN_DURATION: Duration = Duration::from_millis(100);

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let mut rules = Vec::new();
    for directive in setup.directives() {
        rules.extend(parse_directive(directive)?);
    }
    setup.add_handler(Arc::new(Logger { rules }));
    Ok(())
}

/// The rules of one `log` line: one per name, sharing format and classes.
fn parse_directive(directive: &Directive) -> Result<Vec<Arc<Rule>>, ConfigError> {
    let args = directive.arg_texts();
    let (names, format): (&[&str], &str) = match args.as_slice() {
        [] => (&["."], COMMON_LOG_FORMAT),
        // CoreDNS reads a lone argument as a name even when it is a format
        // (and then never logs); we take it for the format it clearly is.
        [one] if one.contains('{') => (&["."], *one),
        [_] => (&args[..], COMMON_LOG_FORMAT),
        [names @ .., last] if last.contains('{') => (names, *last),
        _ => (&args[..], COMMON_LOG_FORMAT),
    };
    let format: Arc<[Node]> = parse_format(shortcut(format)).into();

    let mut classes = Classes::default();
    let mut min_duration = Duration::ZERO;
    for line in &directive.block {
        line.no_block()?;
        match line.name.text.as_str() {
            "class" => {
                if line.args.is_empty() {
                    return Err(ConfigError::at(
                        &line.name,
                        "log: class needs one or more of all, denial, error, success",
                    ));
                }
                for arg in &line.args {
                    let class = ResponseClass::from_config(&arg.text).ok_or_else(|| {
                        ConfigError::at(
                            arg,
                            format!(
                                "log: invalid class '{}': want all, denial, error or success",
                                arg.text
                            ),
                        )
                    })?;
                    classes.add(class);
                }
            }
            "minDuration" => {
                min_duration = match line.arg_texts().as_slice() {
                    [] => DEFAULT_MIN_DURATION,
                    [text] => parse_go_duration(text).ok_or_else(|| {
                        ConfigError::at(
                            &line.name,
                            format!("log: invalid duration '{text}' for minDuration"),
                        )
                    })?,
                    more => {
                        return Err(ConfigError::at(
                            &line.name,
                            format!(
                                "log: minDuration takes at most 1 argument, got {}",
                                more.len()
                            ),
                        ));
                    }
                }
            }
            _ => return Err(directive.unknown_property(line)),
        }
    }
    if classes.is_empty() {
        classes.add(ResponseClass::All);
    }

    names
        .iter()
        .map(|name| {
            let scope = name_from_str(name).map_err(|e| directive.error(e))?;
            Ok(Arc::new(Rule {
                scope,
                format: format.clone(),
                classes,
                min_duration,
            }))
        })
        .collect()
}

/// `{common}` and `{combined}` as the whole format.
fn shortcut(format: &str) -> &str {
    match format {
        "{common}" => COMMON_LOG_FORMAT,
        "{combined}" => COMBINED_LOG_FORMAT,
        other => other,
    }
}

/// One name scope with its format and the responses it logs.
#[derive(Debug)]
struct Rule {
    scope: Name,
    format: Arc<[Node]>,
    classes: Classes,
    min_duration: Duration,
}

impl Rule {
    /// Whether a response of this class that took `elapsed` is logged.
    fn wants(&self, class: impl FnOnce() -> ResponseClass, elapsed: Duration) -> bool {
        self.classes.all
            || self.classes.contains(class())
            || (!self.min_duration.is_zero() && elapsed > self.min_duration)
    }
}

struct Logger {
    rules: Vec<Arc<Rule>>,
}

impl Handler for Logger {
    fn name(&self) -> &'static str {
        "log"
    }

    // The class of an answer in wire form is read from the bytes sent (`classify`).
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        let qname = request.qname();
        if let Some(rule) = self.rules.iter().find(|r| in_zone(qname, &r.scope)) {
            let rule = rule.clone();
            let start = Instant::now();
            request.on_written(move |request, response, wire| {
                let elapsed = start.elapsed();
                let sent = Sent {
                    request,
                    response,
                    wire,
                    elapsed,
                };
                if rule.wants(|| classify(&sent, unix_now()), elapsed) {
                    let line = render(&rule.format, &sent);
                    tracing::info!(target: "query", "{}", line);
                }
            });
        }
        next.serve(request)
    }
}

/// A request and the response that was sent for it.
pub struct Sent<'a> {
    pub request: &'a Request,
    pub response: &'a Response,
    /// The encoded response, as sent.
    pub wire: &'a [u8],
    /// From the log plugin seeing the request to the response being encoded.
    pub elapsed: Duration,
}

impl Sent<'_> {
    /// The rcode as sent: an extended rcode without EDNS goes out as SERVFAIL.
    fn rcode(&self) -> u16 {
        let intended = self.response.rcode;
        match self.wire.get(3) {
            Some(byte) if byte & 0x0f != intended.rcode().to_int() => u16::from(byte & 0x0f),
            _ => intended.to_int(),
        }
    }
}

// ---- Formats -------------------------------------------------------------

/// A placeholder with a value taken from the request or the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label {
    Type,
    Name,
    Class,
    Proto,
    Size,
    Remote,
    Port,
    Local,
    Id,
    Opcode,
    Do,
    Bufsize,
    Rcode,
    Rsize,
    Duration,
    Rflags,
}

impl Label {
    fn from_placeholder(text: &str) -> Option<Label> {
        Some(match text {
            "{type}" => Label::Type,
            "{name}" => Label::Name,
            "{class}" => Label::Class,
            "{proto}" => Label::Proto,
            "{size}" => Label::Size,
            "{remote}" => Label::Remote,
            "{port}" => Label::Port,
            "{local}" => Label::Local,
            "{>id}" => Label::Id,
            "{>opcode}" => Label::Opcode,
            "{>do}" => Label::Do,
            "{>bufsize}" => Label::Bufsize,
            "{rcode}" => Label::Rcode,
            "{rsize}" => Label::Rsize,
            "{duration}" => Label::Duration,
            "{>rflags}" => Label::Rflags,
            _ => return None,
        })
    }
}

/// A piece of a parsed format.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Literal(String),
    Label(Label),
    /// `{/key}`: a metadata value, `-` when unset.
    Metadata(String),
}

/// Splits a format into literals and placeholders as CoreDNS's replacer
/// does: each `}` closes the nearest `{` before it; what is not a known
/// placeholder stays as written.
fn parse_format(mut s: &str) -> Vec<Node> {
    let mut nodes = Vec::new();
    let mut literal = String::new();
    while let Some(close) = s.find('}') {
        let Some(open) = s[..close].rfind('{') else {
            literal.push_str(&s[..=close]);
            s = &s[close + 1..];
            continue;
        };
        let placeholder = &s[open..=close];
        let node = if let Some(label) = Label::from_placeholder(placeholder) {
            Some(vec![Node::Label(label)])
        } else if let Some(key) = placeholder.strip_prefix("{/") {
            Some(vec![Node::Metadata(key[..key.len() - 1].to_owned())])
        } else if placeholder == "{common}" || placeholder == "{combined}" {
            Some(parse_format(shortcut(placeholder)))
        } else {
            None
        };
        match node {
            Some(inner) => {
                literal.push_str(&s[..open]);
                if !literal.is_empty() {
                    nodes.push(Node::Literal(std::mem::take(&mut literal)));
                }
                nodes.extend(inner);
            }
            None => literal.push_str(&s[..=close]),
        }
        s = &s[close + 1..];
    }
    literal.push_str(s);
    if !literal.is_empty() {
        nodes.push(Node::Literal(literal));
    }
    nodes
}

/// The log line for `sent` in `format`.
fn render(format: &[Node], sent: &Sent<'_>) -> String {
    let mut out = String::with_capacity(128);
    for node in format {
        match node {
            Node::Literal(text) => out.push_str(text),
            Node::Label(label) => push_value(&mut out, *label, sent),
            Node::Metadata(key) => {
                out.push_str(sent.request.metadata.get(key).unwrap_or(EMPTY_VALUE))
            }
        }
    }
    out
}

/// Formats `sent` with a format as written in a Corefile.
pub fn format_line(format: &str, sent: &Sent<'_>) -> String {
    render(&parse_format(shortcut(format)), sent)
}

fn push_value(out: &mut String, label: Label, sent: &Sent<'_>) {
    use std::fmt::Write;
    let request = sent.request;
    let query = &request.query;
    let _ = match label {
        Label::Type => write!(out, "{}", type_text(request.qtype())),
        Label::Name => write!(out, "{}", name_text(&lowercase(request.qname()))),
        Label::Class => write!(out, "{}", class_text(request.qclass())),
        Label::Proto => write!(out, "{}", request.transport.as_str()),
        Label::Size => write!(out, "{}", request.size()),
        Label::Remote => write!(out, "{}", ip_text(request.client)),
        Label::Port => write!(out, "{}", request.client.port()),
        Label::Local => write!(out, "{}", ip_text(request.local)),
        Label::Id => write!(out, "{}", query.id),
        Label::Opcode => write!(out, "{}", query.opcode.to_int()),
        Label::Do => write!(out, "{}", query.dnssec_ok()),
        Label::Bufsize => write!(out, "{}", bufsize(request)),
        Label::Rcode => write!(out, "{}", rcode_text(sent.rcode())),
        Label::Rsize => write!(out, "{}", sent.wire.len()),
        Label::Duration => write!(out, "{}s", sent.elapsed.as_secs_f64()),
        Label::Rflags => write!(out, "{}", flags_text(sent.wire)),
    };
}

/// The address part, IPv6 in brackets (RFC 3986).
fn ip_text(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The buffer size the client advertised, as CoreDNS reports it: 65535 for
/// TCP, otherwise the EDNS size but at least 512.
fn bufsize(request: &Request) -> u16 {
    if request.transport == Transport::Tcp {
        return u16::MAX;
    }
    let advertised = request
        .query
        .edns
        .as_ref()
        .map_or(0, |e| e.udp_payload_size);
    advertised.max(512)
}

/// Type mnemonics as Go's DNS library writes them.
fn type_text(rtype: Rtype) -> String {
    if rtype.to_int() == 23 {
        return "NSAP-PTR".to_owned();
    }
    rtype.to_string()
}

/// Class mnemonics as Go's DNS library writes them.
fn class_text(class: Class) -> String {
    match class.to_int() {
        1 => "IN".to_owned(),
        2 => "CS".to_owned(),
        3 => "CH".to_owned(),
        4 => "HS".to_owned(),
        254 => "NONE".to_owned(),
        255 => "ANY".to_owned(),
        other => format!("CLASS{other}"),
    }
}

/// Rcode mnemonics as Go's DNS library writes them; the number otherwise.
fn rcode_text(rcode: u16) -> String {
    let name = match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        11 => "DSOTYPENI",
        16 => "BADSIG",
        17 => "BADKEY",
        18 => "BADTIME",
        19 => "BADMODE",
        20 => "BADNAME",
        21 => "BADALG",
        22 => "BADTRUNC",
        23 => "BADCOOKIE",
        other => return other.to_string(),
    };
    name.to_owned()
}

/// The header flags of the encoded response, e.g. `qr,aa,rd`.
fn flags_text(wire: &[u8]) -> String {
    let (Some(&high), Some(&low)) = (wire.get(2), wire.get(3)) else {
        return EMPTY_VALUE.to_owned();
    };
    let flags = [
        (high & 0x80 != 0, "qr"),
        (high & 0x04 != 0, "aa"),
        (high & 0x02 != 0, "tc"),
        (high & 0x01 != 0, "rd"),
        (low & 0x80 != 0, "ra"),
        (low & 0x40 != 0, "z"),
        (low & 0x20 != 0, "ad"),
        (low & 0x10 != 0, "cd"),
    ];
    let set: Vec<&str> = flags
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, f)| *f)
        .collect();
    set.join(",")
}

// ---- Response classes -----------------------------------------------------

/// The classes of `class CLASSES...`, as CoreDNS's response package has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResponseClass {
    All,
    Success,
    Denial,
    Error,
}

impl ResponseClass {
    fn from_config(text: &str) -> Option<ResponseClass> {
        Some(match text {
            "all" => ResponseClass::All,
            "success" => ResponseClass::Success,
            "denial" => ResponseClass::Denial,
            "error" => ResponseClass::Error,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Classes {
    all: bool,
    success: bool,
    denial: bool,
    error: bool,
}

impl Classes {
    fn add(&mut self, class: ResponseClass) {
        match class {
            ResponseClass::All => self.all = true,
            ResponseClass::Success => self.success = true,
            ResponseClass::Denial => self.denial = true,
            ResponseClass::Error => self.error = true,
        }
    }

    fn contains(&self, class: ResponseClass) -> bool {
        match class {
            ResponseClass::All => self.all,
            ResponseClass::Success => self.success,
            ResponseClass::Denial => self.denial,
            ResponseClass::Error => self.error,
        }
    }

    fn is_empty(&self) -> bool {
        !(self.all || self.success || self.denial || self.error)
    }
}

/// CoreDNS's response types (plugin/pkg/response), before grouping into classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResponseType {
    NoError,
    NameError,
    ServerError,
    NoData,
    Delegation,
    Meta,
    Update,
    OtherError,
}

impl ResponseType {
    fn class(self) -> ResponseClass {
        match self {
            ResponseType::NoError | ResponseType::Delegation => ResponseClass::Success,
            ResponseType::NameError | ResponseType::NoData => ResponseClass::Denial,
            _ => ResponseClass::Error,
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The class of the response that was sent, at Unix time `now`.
fn classify(sent: &Sent<'_>, now: i64) -> ResponseClass {
    // An answer sent in wire form has its records only in the bytes sent.
    if sent.response.wire.is_some()
        && let Ok(received) = Response::parse(sent.wire)
    {
        let decoded = Sent {
            response: &received.response,
            ..*sent
        };
        return typify(&decoded, now).class();
    }
    typify(sent, now).class()
}

/// CoreDNS's `response.Typify`, on the response as sent.
fn typify(sent: &Sent<'_>, now: i64) -> ResponseType {
    let query = &sent.request.query;
    let response = sent.response;
    if query.opcode == Opcode::UPDATE {
        return ResponseType::Update;
    }
    if query.opcode == Opcode::NOTIFY || matches!(query.qtype, Rtype::AXFR | Rtype::IXFR) {
        return ResponseType::Meta;
    }
    // The response carries the query's DO bit; with it, expired signatures are an error.
    if query.dnssec_ok() && has_expired_signature(response, now) {
        return ResponseType::OtherError;
    }
    let rcode = sent.rcode();
    let noerror = rcode == u16::from(Rcode::NOERROR.to_int());
    let addr_lookup = matches!(query.qtype, Rtype::A | Rtype::AAAA);
    let answer_match = response.answer.iter().any(|r| r.rtype() == query.qtype);
    if !response.answer.is_empty() && noerror {
        return if addr_lookup && !answer_match {
            ResponseType::NoData
        } else {
            ResponseType::NoError
        };
    }
    let soa = response.authority.iter().any(|r| r.rtype() == Rtype::SOA);
    let ns = response.authority.iter().any(|r| r.rtype() == Rtype::NS);
    if soa && noerror {
        return ResponseType::NoData;
    }
    if soa && rcode == u16::from(Rcode::NXDOMAIN.to_int()) {
        return ResponseType::NameError;
    }
    if rcode == u16::from(Rcode::SERVFAIL.to_int()) || rcode == u16::from(Rcode::NOTIMP.to_int()) {
        return ResponseType::ServerError;
    }
    if ns && noerror {
        return ResponseType::Delegation;
    }
    if noerror {
        return ResponseType::NoError;
    }
    ResponseType::OtherError
}

fn has_expired_signature(response: &Response, now: i64) -> bool {
    const YEAR68: i64 = 1 << 31;
    let sections = [&response.answer, &response.authority, &response.additional];
    sections.iter().flat_map(|s| s.iter()).any(|record| {
        let RecordData::Rrsig(rrsig) = record.data() else {
            return false;
        };
        // Serial-number arithmetic on the 32-bit times (RFC 4034 §3.1.5), as Go's library does.
        let inception = i64::from(rrsig.inception().into_int());
        let expiration = i64::from(rrsig.expiration().into_int());
        let start = inception + (inception - now) / YEAR68 * YEAR68;
        let end = expiration + (expiration - now) / YEAR68 * YEAR68;
        !(start <= now && now <= end)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxidns_server::proto::domain::rdata::{A, Cname, Soa};
    use oxidns_server::proto::{Edns, Record, Serial, Ttl};
    use oxidns_server::test_util::capture_logs as capture;
    use oxidns_server::test_util::{
        Failing, Fixed, config, config_error, over_tcp, request, request_with, serve_and_finish,
        serve_chain,
    };
    use std::net::Ipv4Addr;
    use tracing::Level;

    fn name(text: &str) -> Name {
        name_from_str(text).unwrap()
    }

    fn a_record(owner: &str) -> Record {
        Record::new(
            name(owner),
            Class::IN,
            Ttl::from_secs(60),
            RecordData::A(A::new(Ipv4Addr::new(192, 0, 2, 1))),
        )
    }

    fn soa_record() -> Record {
        let soa = Soa::new(
            name("ns.example.org"),
            name("admin.example.org"),
            Serial(1),
            Ttl::from_secs(3600),
            Ttl::from_secs(600),
            Ttl::from_secs(86400),
            Ttl::from_secs(60),
        );
        Record::new(
            name("example.org"),
            Class::IN,
            Ttl::from_secs(60),
            RecordData::Soa(soa),
        )
    }

    fn answer_a() -> Response {
        let mut response = Response::new(Rcode::NOERROR);
        response.authoritative = true;
        response.answer.push(a_record("example.org"));
        response
    }

    /// Formats `response` to `request` with `format`, 123456 ns after arrival.
    fn line(format: &str, request: &Request, response: &Response) -> String {
        let wire = response.encode(&request.query, request.response_limit());
        let sent = Sent {
            request,
            response,
            wire: &wire,
            elapsed: Duration::from_nanos(123_456),
        };
        format_line(format, &sent)
    }

    fn class_of(request: &Request, response: &Response) -> ResponseClass {
        let wire = response.encode(&request.query, request.response_limit());
        let sent = Sent {
            request,
            response,
            wire: &wire,
            elapsed: Duration::ZERO,
        };
        classify(&sent, unix_now())
    }

    #[test]
    fn placeholders_table() {
        let edns = Edns {
            udp_payload_size: 4096,
            version: 0,
            dnssec_ok: true,
            options: vec![],
        };
        let mut req = request_with("Example.ORG", Rtype::MX, Class::CH, Some(edns));
        req.metadata.set("test/key", "value");
        let response = answer_a();
        let v6 = over_tcp(
            request("example.org", Rtype::A),
            "[2001:db8::1]:5353".parse().unwrap(),
        );
        let cases: &[(&str, &Request, &str)] = &[
            ("{type}", &req, "MX"),
            ("{name}", &req, "example.org."),
            ("{class}", &req, "CH"),
            ("{proto}", &req, "udp"),
            ("{proto}", &v6, "tcp"),
            ("{size}", &req, &req.size().to_string()),
            ("{remote}", &req, "127.0.0.1"),
            ("{remote}", &v6, "[2001:db8::1]"),
            ("{port}", &req, "40000"),
            ("{port}", &v6, "5353"),
            ("{local}", &req, "127.0.0.1"),
            ("{>id}", &req, "4242"),
            ("{>opcode}", &req, "0"),
            ("{>do}", &req, "true"),
            ("{>do}", &v6, "false"),
            ("{>bufsize}", &req, "4096"),
            ("{>bufsize}", &v6, "65535"),
            ("{rcode}", &req, "NOERROR"),
            ("{>rflags}", &req, "qr,aa,rd"),
            ("{duration}", &req, "0.000123456s"),
            ("{/test/key}", &req, "value"),
            ("{/other}", &req, "-"),
            ("{unknown} {type}", &req, "{unknown} MX"),
            ("a } {type} {", &req, "a } MX {"),
            ("{ {type} }", &req, "{ MX }"),
            ("{type}{class}", &req, "MXCH"),
            ("no placeholders", &req, "no placeholders"),
        ];
        for (format, request, expected) in cases {
            assert_eq!(
                line(format, request, &response),
                *expected,
                "format {format:?}"
            );
        }
        let wire = response.encode(&req.query, req.response_limit());
        assert_eq!(line("{rsize}", &req, &response), wire.len().to_string());
    }

    #[test]
    fn default_format_for_a_known_request() {
        let req = request("Example.org", Rtype::A);
        let response = answer_a();
        let wire = response.encode(&req.query, req.response_limit());
        assert_eq!(
            line("{common}", &req, &response),
            format!(
                "127.0.0.1:40000 - 4242 \"A IN example.org. udp {} false 512\" NOERROR qr,aa,rd {} 0.000123456s",
                req.size(),
                wire.len()
            )
        );
        assert_eq!(
            line("{combined}", &req, &response),
            format!("{} \"0\"", line(COMMON_LOG_FORMAT, &req, &response))
        );
    }

    #[test]
    fn extended_rcode_without_edns_is_logged_as_servfail() {
        let req = request("example.org", Rtype::A);
        let mut response = Response::new(Rcode::NOERROR);
        // The encoder sends SERVFAIL for an extended rcode the client cannot see.
        let mut wire = response.encode(&req.query, 512);
        wire[3] |= 2;
        response.rcode = oxidns_server::proto::OptRcode::BADVERS;
        let sent = Sent {
            request: &req,
            response: &response,
            wire: &wire,
            elapsed: Duration::ZERO,
        };
        assert_eq!(format_line("{rcode}", &sent), "SERVFAIL");
        let edns = Edns {
            udp_payload_size: 1232,
            version: 0,
            dnssec_ok: false,
            options: vec![],
        };
        let req = request_with("example.org", Rtype::A, Class::IN, Some(edns));
        assert_eq!(line("{rcode}", &req, &response), "BADSIG");
    }

    #[tokio::test]
    async fn observer_logs_the_response_as_sent() {
        let config = config(". {\n log\n}", &[PLUGIN]).unwrap();
        let (capture, _guard) = capture();
        let (response, wire) = serve_and_finish(&config, request("example.org", Rtype::A)).await;
        assert_eq!(
            response.header_rcode(),
            Rcode::SERVFAIL,
            "log alone has no next plugin"
        );
        let events = capture.events();
        assert_eq!(events.len(), 1);
        let (level, target, message) = &events[0];
        assert_eq!((*level, target.as_str()), (Level::INFO, "query"));
        let prefix = format!(
            "127.0.0.1:40000 - 4242 \"A IN example.org. udp 29 false 512\" SERVFAIL qr,rd {} ",
            wire.len()
        );
        assert!(message.starts_with(&prefix), "{message}");
        assert!(message.ends_with('s'), "{message}");
    }

    #[tokio::test]
    async fn custom_format_from_corefile() {
        let corefile = ". {\n log . \"{proto} Request: {name} {type} {>id}\"\n}";
        let config = config(corefile, &[PLUGIN]).unwrap();
        let (capture, _guard) = capture();
        serve_and_finish(&config, request("example.org", Rtype::AAAA)).await;
        assert_eq!(capture.lines(), ["udp Request: example.org. AAAA 4242"]);
    }

    async fn logged(rule: Rule, req: Request, end: Arc<dyn Handler>) -> Vec<String> {
        let (capture, _guard) = capture();
        let chain: Vec<Arc<dyn Handler>> = vec![
            Arc::new(Logger {
                rules: vec![Arc::new(rule)],
            }),
            end,
        ];
        let mut req = req;
        let response = serve_chain(&chain, &mut req)
            .await
            .unwrap_or_else(|_| Response::new(Rcode::SERVFAIL));
        req.finish(&response, Vec::new());
        capture.lines()
    }

    fn rule(scope: &str, classes: &[ResponseClass]) -> Rule {
        let mut set = Classes::default();
        for class in classes {
            set.add(*class);
        }
        Rule {
            scope: name(scope),
            format: parse_format("{name} {rcode}").into(),
            classes: set,
            min_duration: Duration::ZERO,
        }
    }

    #[test]
    fn responses_are_classified_as_coredns_does() {
        let a = request("example.org", Rtype::A);
        let nxdomain_soa = {
            let mut r = Response::new(Rcode::NXDOMAIN);
            r.authority.push(soa_record());
            r
        };
        let nodata_soa = {
            let mut r = Response::new(Rcode::NOERROR);
            r.authority.push(soa_record());
            r
        };
        let cname_only = {
            let mut r = Response::new(Rcode::NOERROR);
            r.answer.push(Record::new(
                name("example.org"),
                Class::IN,
                Ttl::from_secs(60),
                RecordData::Cname(Cname::new(name("other.example"))),
            ));
            r
        };
        let delegation = {
            let mut r = Response::new(Rcode::NOERROR);
            r.authority.push(Record::new(
                name("sub.example.org"),
                Class::IN,
                Ttl::from_secs(60),
                RecordData::Ns(oxidns_server::proto::domain::rdata::Ns::new(name(
                    "ns.example.org",
                ))),
            ));
            r
        };
        let cases: &[(&str, &Request, Response, ResponseClass)] = &[
            ("answer", &a, answer_a(), ResponseClass::Success),
            (
                "empty NOERROR",
                &a,
                Response::new(Rcode::NOERROR),
                ResponseClass::Success,
            ),
            ("delegation", &a, delegation, ResponseClass::Success),
            ("NXDOMAIN with SOA", &a, nxdomain_soa, ResponseClass::Denial),
            ("NODATA with SOA", &a, nodata_soa, ResponseClass::Denial),
            (
                "CNAME only for A",
                &a,
                cname_only.clone(),
                ResponseClass::Denial,
            ),
            (
                "NXDOMAIN without SOA",
                &a,
                Response::new(Rcode::NXDOMAIN),
                ResponseClass::Error,
            ),
            (
                "SERVFAIL",
                &a,
                Response::new(Rcode::SERVFAIL),
                ResponseClass::Error,
            ),
            (
                "REFUSED",
                &a,
                Response::new(Rcode::REFUSED),
                ResponseClass::Error,
            ),
        ];
        for (what, req, response, expected) in cases {
            assert_eq!(class_of(req, response), *expected, "{what}");
            // The same answer in wire form, as a zone's stored answers come.
            let query = &req.query;
            let wire = Response {
                answer: vec![],
                authority: vec![],
                additional: vec![],
                wire: response.wire_sections(&query.qname, query.qtype, query.qclass, &[]),
                ..response.clone()
            };
            assert!(wire.wire.is_some());
            assert_eq!(class_of(req, &wire), *expected, "{what}, in wire form");
        }
        let cname_query = request("example.org", Rtype::CNAME);
        assert_eq!(class_of(&cname_query, &cname_only), ResponseClass::Success);
        let axfr = request("example.org", Rtype::AXFR);
        assert_eq!(class_of(&axfr, &answer_a()), ResponseClass::Error, "meta");
    }

    #[tokio::test]
    async fn class_filters_select_what_is_logged() {
        use ResponseClass::*;
        let nxdomain = {
            let mut r = Response::new(Rcode::NXDOMAIN);
            r.authority.push(soa_record());
            r
        };
        let ends: [(&str, Arc<dyn Handler>); 3] = [
            ("success", Arc::new(Fixed(answer_a()))),
            ("denial", Arc::new(Fixed(nxdomain))),
            ("error", Arc::new(Failing)),
        ];
        let filters: &[(&[ResponseClass], [bool; 3])] = &[
            (&[All], [true, true, true]),
            (&[Success], [true, false, false]),
            (&[Denial], [false, true, false]),
            (&[Error], [false, false, true]),
            (&[Denial, Error], [false, true, true]),
            (&[Success, All], [true, true, true]),
        ];
        for (classes, expected) in filters {
            for ((what, end), want) in ends.iter().zip(expected) {
                let lines = logged(
                    rule(".", classes),
                    request("example.org", Rtype::A),
                    end.clone(),
                )
                .await;
                assert_eq!(
                    lines.len(),
                    usize::from(*want),
                    "{classes:?} on {what}: {lines:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn failing_chain_is_logged_as_servfail() {
        let lines = logged(
            rule(".", &[ResponseClass::Error]),
            request("example.org", Rtype::A),
            Arc::new(Failing),
        )
        .await;
        assert_eq!(lines, ["example.org. SERVFAIL"]);
    }

    #[tokio::test]
    async fn min_duration_logs_slow_responses_of_other_classes() {
        let mut slow = rule(".", &[ResponseClass::Error]);
        slow.min_duration = Duration::from_nanos(1);
        let end = || -> Arc<dyn Handler> { Arc::new(Fixed(answer_a())) };
        let req = || request("example.org", Rtype::A);
        assert_eq!(logged(slow, req(), end()).await.len(), 1);
        let mut fast = rule(".", &[ResponseClass::Error]);
        fast.min_duration = Duration::from_secs(3600);
        assert!(logged(fast, req(), end()).await.is_empty());
    }

    #[tokio::test]
    async fn names_filter_logs_only_queries_below_them() {
        let corefile = ". {\n log example.org Example.NET {name}\n}";
        let config = config(corefile, &[PLUGIN]).unwrap();
        let (capture, _guard) = capture();
        for qname in [
            "example.org",
            "www.EXAMPLE.org",
            "example.net",
            "example.com",
            "org",
        ] {
            serve_and_finish(&config, request(qname, Rtype::A)).await;
        }
        assert_eq!(
            capture.lines(),
            ["example.org.", "www.example.org.", "example.net."]
        );
    }

    #[tokio::test]
    async fn first_matching_rule_decides() {
        // The example.org rule logs only denials; the "." rule does not get a say for its names.
        let corefile = ". {\n log example.org {\n  class denial\n }\n log . \"all {name}\"\n}";
        let config = config(corefile, &[PLUGIN]).unwrap();
        let (capture, _guard) = capture();
        serve_and_finish(&config, request("www.example.org", Rtype::A)).await;
        serve_and_finish(&config, request("example.com", Rtype::A)).await;
        assert_eq!(capture.lines(), ["all example.com."]);
    }

    #[test]
    fn arguments_become_names_and_format() {
        let rules_of = |line: &str| -> Vec<(String, Vec<Node>)> {
            let corefile = format!(". {{\n {line}\n}}");
            let blocks = oxidns_server::corefile::parse_str(&corefile, "Corefile").unwrap();
            parse_directive(&blocks[0].directives[0])
                .unwrap()
                .iter()
                .map(|r| (name_text(&r.scope), r.format.to_vec()))
                .collect()
        };
        let common = parse_format(COMMON_LOG_FORMAT);
        let combined = parse_format(COMBINED_LOG_FORMAT);
        assert_eq!(rules_of("log"), [(".".to_owned(), common.clone())]);
        assert_eq!(
            rules_of("log example.org"),
            [("example.org.".to_owned(), common.clone())]
        );
        assert_eq!(
            rules_of("log a.org b.org"),
            [
                ("a.org.".to_owned(), common.clone()),
                ("b.org.".to_owned(), common.clone())
            ]
        );
        assert_eq!(
            rules_of("log . {combined}"),
            [(".".to_owned(), combined.clone())]
        );
        assert_eq!(
            rules_of("log . {common}"),
            [(".".to_owned(), common.clone())]
        );
        assert_eq!(rules_of("log {combined}"), [(".".to_owned(), combined)]);
        assert_eq!(
            rules_of("log a.org \"{name}\""),
            [("a.org.".to_owned(), vec![Node::Label(Label::Name)])]
        );
    }

    #[test]
    fn setup_errors() {
        let cases = [
            (
                ". {\n log {\n  class\n }\n}",
                "Corefile:3: log: class needs one or more of all, denial, error, success",
            ),
            (
                ". {\n log {\n  class denial bogus\n }\n}",
                "Corefile:3: log: invalid class 'bogus': want all, denial, error or success",
            ),
            (
                ". {\n log {\n  color red\n }\n}",
                "Corefile:3: log: unknown property 'color'",
            ),
            (
                ". {\n log {\n  minDuration 1x\n }\n}",
                "Corefile:3: log: invalid duration '1x' for minDuration",
            ),
            (
                ". {\n log {\n  minDuration 1s 2s\n }\n}",
                "Corefile:3: log: minDuration takes at most 1 argument, got 2",
            ),
            (
                ". {\n log a..b\n}",
                "Corefile:2: log: invalid domain name 'a..b': empty label",
            ),
        ];
        for (corefile, expected) in cases {
            assert_eq!(config_error(corefile, &[PLUGIN]), expected, "{corefile:?}");
        }
    }

    #[test]
    fn valid_blocks_are_accepted() {
        for corefile in [
            ". {\n log\n log\n}",
            ". {\n log . {combined} {\n  class denial error\n }\n}",
            ". {\n log . {\n  class denial\n  class success\n  minDuration\n }\n}",
            ". {\n log . {\n  minDuration 1m30.5s\n }\n}",
        ] {
            assert!(config(corefile, &[PLUGIN]).is_ok(), "{corefile:?}");
        }
    }
}
