//! `template`: answers queries whose name matches a regular expression with
//! records rendered from Go-style templates, as CoreDNS's template does.
//!
//! Every `template` directive of a server block becomes one entry in one
//! handler; entries are tried in Corefile order (see [`Template::try_match`]).
//!
//! Metrics, with CoreDNS's names and labels: `coredns_template_matches_total`,
//! `coredns_template_template_failures_total` and `coredns_template_rr_failures_total`.

mod gotmpl;

use std::collections::BTreeMap;
use std::sync::Arc;

use oxidns_server::fallthrough::Fallthrough;
use oxidns_server::proto::{
    Class, EdnsOption, Name, OptRcode, Rcode, Record, Response, Rtype, lowercase, name_text,
    option_code,
};
use oxidns_server::{
    ConfigError, Directive, Handler, HandlerFuture, Next, PluginEntry, PluginError, Request, Setup,
    Token,
};
use regex::Regex;

use crate::gotmpl::Data;

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "template",
    setup,
};

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let mut templates = Vec::new();
    for directive in setup.directives().to_vec() {
        templates.push(parse_template(setup, &directive)?);
    }
    let mut zones: Vec<Name> = Vec::new();
    for template in &templates {
        for zone in &template.zones {
            if !zones.contains(zone) {
                zones.push(zone.clone());
            }
        }
    }
    setup.add_handler(Arc::new(TemplateHandler { zones, templates }));
    Ok(())
}

/// `template CLASS TYPE [ZONE...] { … }`
fn parse_template(setup: &Setup<'_>, directive: &Directive) -> Result<Template, ConfigError> {
    let args = directive.args_between(2, usize::MAX)?;
    let qclass = parse_class(&args[0].text)
        .ok_or_else(|| directive.error(format!("invalid query class {}", args[0].text)))?;
    let qtype = Rtype::from_mnemonic(args[1].text.as_bytes())
        .ok_or_else(|| directive.error(format!("invalid RR type {}", args[1].text)))?;
    // A quoted argument may hold several zones separated by spaces.
    let zone_tokens: Vec<Token> = args[2..]
        .iter()
        .flat_map(|token| {
            token.text.split_whitespace().map(|text| Token {
                text: text.to_owned(),
                ..token.clone()
            })
        })
        .collect();
    let zones = setup.zones_or_block(&zone_tokens)?;

    let error = |line: &Directive, message: String| {
        ConfigError::at(&line.name, format!("{}: {message}", directive.name.text))
    };
    let mut template = Template {
        qclass,
        qtype,
        zones,
        regexes: Vec::new(),
        answer: Vec::new(),
        additional: Vec::new(),
        authority: Vec::new(),
        rcode: OptRcode::NOERROR,
        ede: None,
        fall: Fallthrough::Never,
    };
    for line in &directive.block {
        let name = line.name.text.as_str();
        if !line.block.is_empty() {
            return Err(error(
                &line.block[0],
                format!("{name} takes no options block"),
            ));
        }
        match name {
            "match" => {
                if line.args.is_empty() {
                    return Err(error(line, "match needs at least one regex".to_owned()));
                }
                for arg in &line.args {
                    let regex = Regex::new(&arg.text).map_err(|e| {
                        error(
                            line,
                            format!("could not parse regex: {}, {}", arg.text, regex_reason(&e)),
                        )
                    })?;
                    template.regexes.push(regex);
                }
            }
            "answer" | "additional" | "authority" => {
                if line.args.is_empty() {
                    return Err(error(
                        line,
                        format!("{name} needs at least one record template"),
                    ));
                }
                for arg in &line.args {
                    let rr = RrTemplate::compile(name, &arg.text).map_err(|e| error(line, e))?;
                    match name {
                        "answer" => template.answer.push(rr),
                        "additional" => template.additional.push(rr),
                        _ => template.authority.push(rr),
                    }
                }
            }
            "rcode" => {
                let [code] = line.args.as_slice() else {
                    return Err(error(
                        line,
                        "rcode needs exactly one response code".to_owned(),
                    ));
                };
                template.rcode = parse_rcode(&code.text)
                    .ok_or_else(|| error(line, format!("unknown rcode {}", code.text)))?;
            }
            "ederror" => {
                let (code, reason) = match line.arg_texts().as_slice() {
                    [code] => (*code, ""),
                    [code, reason] => (*code, *reason),
                    _ => {
                        return Err(error(
                            line,
                            "ederror needs a code and at most one reason".to_owned(),
                        ));
                    }
                };
                let code: u16 = code
                    .parse()
                    .map_err(|_| error(line, format!("invalid extended error code '{code}'")))?;
                let mut data = code.to_be_bytes().to_vec();
                data.extend_from_slice(reason.as_bytes());
                template.ede = Some(EdnsOption {
                    code: option_code::EXTENDED_ERROR,
                    data: data.into(),
                });
            }
            "fallthrough" => template.fall = Fallthrough::parse(line)?,
            _ => return Err(directive.unknown_property(line)),
        }
    }
    if template.regexes.is_empty() {
        template
            .regexes
            .push(Regex::new(".*").expect("a valid regex"));
    }
    if template.answer.is_empty()
        && template.authority.is_empty()
        && template.rcode == OptRcode::NOERROR
    {
        return Err(directive.error("no answer section for template found"));
    }
    Ok(template)
}

/// The classes CoreDNS knows by name.
fn parse_class(text: &str) -> Option<Class> {
    Some(match text {
        "IN" => Class::IN,
        "CS" => Class::from_int(2),
        "CH" => Class::CH,
        "HS" => Class::HS,
        "NONE" => Class::NONE,
        "ANY" => Class::ANY,
        _ => return None,
    })
}

/// The response codes CoreDNS knows by name (miekg/dns's StringToRcode).
fn parse_rcode(text: &str) -> Option<OptRcode> {
    let value: u16 = match text {
        "NOERROR" => 0,
        "FORMERR" => 1,
        "SERVFAIL" => 2,
        "NXDOMAIN" => 3,
        "NOTIMP" => 4,
        "REFUSED" => 5,
        "YXDOMAIN" => 6,
        "YXRRSET" => 7,
        "NXRRSET" => 8,
        "NOTAUTH" => 9,
        "NOTZONE" => 10,
        "BADSIG" | "BADVERS" => 16,
        "BADKEY" => 17,
        "BADTIME" => 18,
        "BADMODE" => 19,
        "BADNAME" => 20,
        "BADALG" => 21,
        "BADTRUNC" => 22,
        "BADCOOKIE" => 23,
        _ => return None,
    };
    Some(OptRcode::masked_from_int(value))
}

/// The one line that says what is wrong with a regex.
fn regex_reason(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .find_map(|line| line.strip_prefix("error: "))
        .unwrap_or(&text)
        .to_owned()
}

/// One `answer`, `additional` or `authority` record template.
struct RrTemplate {
    source: String,
    template: gotmpl::Template,
    /// For a template without actions: its record, parsed once at setup.
    fixed: Option<Record>,
}

impl RrTemplate {
    fn compile(section: &str, text: &str) -> Result<RrTemplate, String> {
        let template = gotmpl::Template::parse(text)
            .map_err(|e| format!("could not compile {section} template {text:?}: {e}"))?;
        for field in template.unknown_fields() {
            tracing::warn!(
                target: "plugin/template",
                "{section} template {text:?} names .{field}, which does not exist: it fails when used"
            );
        }
        let fixed = if template.is_static() {
            Some(
                parse_rr(text)
                    .map_err(|e| format!("{section} {text:?} is not a valid record: {e}"))?,
            )
        } else {
            None
        };
        Ok(RrTemplate {
            source: text.to_owned(),
            template,
            fixed,
        })
    }

    fn render(
        &self,
        server: &Arc<str>,
        section: &'static str,
        data: &Data<'_>,
    ) -> Result<Record, PluginError> {
        if let Some(record) = &self.fixed {
            return Ok(record.clone());
        }
        let text = self.template.render(data).map_err(|e| {
            self.failed(
                "coredns_template_template_failures_total",
                server,
                section,
                data,
            );
            PluginError::new(
                "template",
                format!("executing {section} template {:?}: {e}", self.source),
            )
        })?;
        parse_rr(&text).map_err(|e| {
            self.failed("coredns_template_rr_failures_total", server, section, data);
            PluginError::new(
                "template",
                format!("{section} template {:?} gave {text:?}: {e}", self.source),
            )
        })
    }

    /// Counts a failure as CoreDNS does: by server, zone, view, class, type,
    /// section and template (the template's text).
    fn failed(
        &self,
        metric: &'static str,
        server: &Arc<str>,
        section: &'static str,
        data: &Data<'_>,
    ) {
        metrics::counter!(
            metric,
            "server" => server.clone(),
            "zone" => data.zone.clone(),
            "view" => "",
            "class" => data.class.clone(),
            "type" => data.rtype.clone(),
            "section" => section,
            "template" => self.source.clone(),
        )
        .increment(1);
    }
}

/// The first record in zone-file text, as miekg/dns's NewRR reads it:
/// relative names are below the root, the TTL defaults to 3600 and the class to IN.
fn parse_rr(text: &str) -> Result<Record, String> {
    let zone_text = format!("$TTL 3600\n{text}\n");
    match oxidns_zone::zonefile::parse_zone_text(&zone_text, "template", &Name::root()) {
        Ok(records) => records
            .into_iter()
            .next()
            .map(|sourced| sourced.record)
            .ok_or_else(|| "no resource record".to_owned()),
        // A zone is all of one class; a lone record may be of any (CH TXT, …).
        Err(e) if e.message.contains("differs from the zone's class") => {
            parse_rr_any_class(&zone_text)
        }
        Err(e) => Err(e.message),
    }
}

/// Reads a record that names its class, whatever the class.
fn parse_rr_any_class(zone_text: &str) -> Result<Record, String> {
    use domain::base::name::FlattenInto;
    use domain::zonefile::inplace::{Entry, Zonefile};
    let mut zonefile = Zonefile::new();
    zonefile.extend_from_slice(zone_text.as_bytes());
    zonefile.set_origin(Name::root());
    match zonefile.next_entry() {
        Ok(Some(Entry::Record(record))) => {
            let record: Record = record
                .try_flatten_into()
                .map_err(|_| "domain name too long".to_owned())?;
            Ok(record)
        }
        Ok(_) => Err("no resource record".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// One `template` directive.
struct Template {
    qclass: Class,
    qtype: Rtype,
    zones: Vec<Name>,
    regexes: Vec<Regex>,
    answer: Vec<RrTemplate>,
    additional: Vec<RrTemplate>,
    authority: Vec<RrTemplate>,
    rcode: OptRcode,
    ede: Option<EdnsOption>,
    fall: Fallthrough,
}

/// What one template makes of a query.
enum Matched<'r> {
    Yes(Box<Data<'r>>),
    /// Try the next template.
    Next,
    /// Zone, class and type matched but no regex did, and no fallthrough.
    Stop,
}

impl Template {
    fn try_match<'r>(&self, request: &'r Request, qname: &Name, name: &str) -> Matched<'r> {
        let Some(zone) = self
            .zones
            .iter()
            .filter(|zone| qname.ends_with(*zone))
            .max_by_key(|zone| zone.len())
        else {
            return Matched::Next;
        };
        let (qclass, qtype) = (request.qclass(), request.qtype());
        if self.qclass != Class::ANY && qclass != Class::ANY && qclass != self.qclass {
            return Matched::Next;
        }
        if self.qtype != Rtype::ANY && qtype != Rtype::ANY && qtype != self.qtype {
            return Matched::Next;
        }
        for regex in &self.regexes {
            let Some(captures) = regex.captures(name) else {
                continue;
            };
            let matches: Vec<String> = captures
                .iter()
                .map(|m| m.map_or("", |m| m.as_str()).to_owned())
                .collect();
            let mut groups = BTreeMap::new();
            for (i, m) in matches.iter().enumerate() {
                groups.insert(i.to_string(), m.clone());
            }
            for (i, group) in regex.capture_names().enumerate() {
                if let Some(group) = group {
                    groups.insert(group.to_owned(), matches[i].clone());
                }
            }
            let class = if qclass == Class::ANY {
                self.qclass
            } else {
                qclass
            };
            let rtype = if qtype == Rtype::ANY {
                self.qtype
            } else {
                qtype
            };
            return Matched::Yes(Box::new(Data {
                zone: name_text(zone),
                name: name.to_owned(),
                regex: regex.as_str().to_owned(),
                matches,
                groups,
                class: class.to_string(),
                rtype: rtype.to_string(),
                remote: request.client.ip().to_string(),
                question: (name_text(request.qname()), qtype.to_int(), qclass.to_int()),
                meta: Some(&request.metadata),
            }));
        }
        if self.fall.matches(qname) {
            Matched::Next
        } else {
            Matched::Stop
        }
    }

    fn respond(&self, request: &Request, data: Data<'_>) -> Result<Response, PluginError> {
        // CoreDNS answers SERVFAIL itself, without the template's records.
        if self.rcode == OptRcode::SERVFAIL {
            return Ok(request.reply(Rcode::SERVFAIL));
        }
        let mut response = request.reply(Rcode::NOERROR);
        response.rcode = self.rcode;
        response.authoritative = true;
        let server = &request.server;
        for rr in &self.answer {
            response.answer.push(rr.render(server, "answer", &data)?);
        }
        for rr in &self.additional {
            response
                .additional
                .push(rr.render(server, "additional", &data)?);
        }
        for rr in &self.authority {
            response
                .authority
                .push(rr.render(server, "authority", &data)?);
        }
        if let Some(ede) = &self.ede {
            response.edns_options.push(ede.clone());
        }
        Ok(response)
    }
}

struct TemplateHandler {
    /// Every template's zones: queries outside them go straight on.
    zones: Vec<Name>,
    templates: Vec<Template>,
}

impl TemplateHandler {
    /// The response, `Ok(None)` to pass the query on.
    fn answer(&self, request: &Request) -> Result<Option<Response>, PluginError> {
        let qname = lowercase(request.qname());
        if !self.zones.iter().any(|zone| qname.ends_with(zone)) {
            return Ok(None);
        }
        let name = name_text(&qname);
        for template in &self.templates {
            match template.try_match(request, &qname, &name) {
                Matched::Yes(data) => {
                    metrics::counter!(
                        "coredns_template_matches_total",
                        "server" => request.server.clone(),
                        "zone" => data.zone.clone(),
                        "view" => "",
                        "class" => data.class.clone(),
                        "type" => data.rtype.clone(),
                    )
                    .increment(1);
                    return template.respond(request, *data).map(Some);
                }
                Matched::Next => continue,
                // CoreDNS returns NXDOMAIN here without writing a response, so
                // the client hears nothing; we send the NXDOMAIN.
                Matched::Stop => return Ok(Some(request.reply(Rcode::NXDOMAIN))),
            }
        }
        Ok(None)
    }
}

impl Handler for TemplateHandler {
    fn name(&self) -> &'static str {
        "template"
    }

    // Makes its own answers only.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        match self.answer(request) {
            Ok(Some(response)) => HandlerFuture::ready(Ok(response)),
            Ok(None) => next.serve(request),
            Err(e) => HandlerFuture::ready(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests;
