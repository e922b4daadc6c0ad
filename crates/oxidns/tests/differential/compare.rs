//! Answers as compared: header fields and sections as multisets of records,
//! after [`normalise`]; and the report of every difference.

use std::collections::BTreeMap;

use oxidns_proto::{ReceivedResponse, Record, Rtype, lowercase, name_text};

use super::queries::Probe;
use super::servers::Server;

/// One record as compared: the owner in lower case, TTL, class, type, data as
/// presented by `domain` (RRSIGs in full: the zones are presigned, so every
/// server serves the same signatures).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rec {
    pub owner: String,
    pub rtype: Rtype,
    /// For RRSIG, the type covered; otherwise the type itself.
    pub covers: Rtype,
    pub ttl: u32,
    pub class: String,
    pub data: String,
    /// The name whose addresses additional-section processing adds (RFC 1035
    /// §3.3: NS, MX; RFC 2782: SRV); for CNAME, the canonical name (used to
    /// spot loops only). Lower case. SVCB and HTTPS targets are left out: RFC
    /// 9460 §4 only recommends their addresses (BIND adds them, Knot not).
    pub target: Option<String>,
}

impl Rec {
    fn from_record(record: &Record) -> Rec {
        use oxidns_proto::RecordData as D;
        let owner = name_text(&lowercase(record.owner()));
        let covers = match record.data() {
            D::Rrsig(sig) => sig.type_covered(),
            _ => record.rtype(),
        };
        let target = match record.data() {
            D::Ns(ns) => Some(ns.nsdname().clone()),
            D::Mx(mx) => Some(mx.exchange().clone()),
            D::Srv(srv) => Some(srv.target().clone()),
            D::Cname(cname) => Some(cname.cname().clone()),
            _ => None,
        }
        .map(|name| name_text(&lowercase(&name)));
        Rec {
            owner,
            rtype: record.rtype(),
            covers,
            ttl: record.ttl().as_secs(),
            class: record.class().to_string(),
            data: record.data().to_string(),
            target,
        }
    }

    pub fn text(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.owner, self.ttl, self.class, self.rtype, self.data
        )
    }
}

/// A response reduced to what is compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub rcode: String,
    pub aa: bool,
    pub tc: bool,
    /// Whether the response had an OPT record, and its DO bit.
    pub edns: Option<bool>,
    pub answer: Vec<Rec>,
    pub authority: Vec<Rec>,
    pub additional: Vec<Rec>,
}

impl Answer {
    pub fn from_response(received: &ReceivedResponse) -> Answer {
        let r = &received.response;
        let section = |records: &[Record]| records.iter().map(Rec::from_record).collect();
        Answer {
            rcode: r.rcode.to_string(),
            aa: r.authoritative,
            tc: r.truncated,
            edns: received.edns.as_ref().map(|e| e.dnssec_ok),
            answer: section(&r.answer),
            authority: section(&r.authority),
            additional: section(&r.additional),
        }
    }

    fn header(&self) -> String {
        let edns = match self.edns {
            None => "no OPT",
            Some(true) => "OPT do",
            Some(false) => "OPT",
        };
        format!(
            "rcode {}{}{} {edns}",
            self.rcode,
            if self.aa { " aa" } else { "" },
            if self.tc { " tc" } else { "" }
        )
    }

    fn render(&self) -> String {
        let mut out = format!("    {}\n", self.header());
        for (title, records) in self.sections() {
            for record in records {
                out.push_str(&format!("    {title:<10} {}\n", record.text()));
            }
        }
        out
    }

    fn sections(&self) -> [(&'static str, &Vec<Rec>); 3] {
        [
            ("ANSWER", &self.answer),
            ("AUTHORITY", &self.authority),
            ("ADDITIONAL", &self.additional),
        ]
    }
}

/// What one server sent back for one probe: the UDP answer and, when that was
/// truncated, the answer over TCP.
#[derive(Clone, Debug)]
pub struct Observed {
    pub udp: Result<Answer, String>,
    pub tcp: Option<Result<Answer, String>>,
}

/// THE normalisation: every place where the RFCs let the servers choose.
/// Applied to each server's answer alone, before comparison. Each rule names
/// the text that allows the choice; README.md lists them too. `apexes` are
/// the served zones' origins ("example.com."). Rule 8 (TC) is applied in
/// `diff`, as it is about which of two messages (UDP, TCP) is compared.
pub fn normalise(probe: &Probe, apexes: &[String], answer: &Answer) -> Answer {
    let mut out = answer.clone();

    // 1. Case of names inside RDATA: names compare without case (RFC 4343
    //    §3), and a compressed name (RFC 1035 §4.1.4) takes the case of the
    //    earlier name it points to, e.g. the query name as the client cased
    //    it (Knot compresses against the question, BIND does not). Only types
    //    whose data is names and numbers are lower-cased, so TXT, CAA, NAPTR
    //    strings and base64 keys and signatures stay exact.
    for section in [&mut out.answer, &mut out.authority, &mut out.additional] {
        for rec in section.iter_mut() {
            if matches!(
                rec.rtype,
                Rtype::NS
                    | Rtype::CNAME
                    | Rtype::SOA
                    | Rtype::MX
                    | Rtype::PTR
                    | Rtype::SRV
                    | Rtype::DNAME
            ) {
                rec.data = rec.data.to_ascii_lowercase();
            }
        }
    }

    // 2. The TTL of the SOA record in the authority section of a negative
    //    answer to a query for type SOA: RFC 1035 §3.3.13 says SOA records are
    //    distributed with TTL 0, RFC 2308 §3 says the TTL is the SOA MINIMUM;
    //    BIND sends 0 when the query type is SOA, Knot the RFC 2308 TTL.
    //    The same for the RRSIG(SOA) beside it.
    if probe.qtype == Rtype::SOA {
        for rec in out.authority.iter_mut() {
            if rec.covers == Rtype::SOA {
                rec.ttl = 0;
            }
        }
    }
    let is_nsish = |r: &Rec| r.covers == Rtype::NS;

    // 3. A query for NSEC at a delegation point: the NSEC there is parent-side
    //    data like DS, but RFC 4035 §3.1.4.1 only names DS. BIND answers it
    //    authoritatively, Knot sends a referral carrying the NSEC in the
    //    authority section. The referral form is rewritten into the answer form.
    let qname = probe.qname.to_ascii_lowercase();
    if probe.qtype == Rtype::NSEC
        && out.answer.is_empty()
        && out
            .authority
            .iter()
            .any(|r| r.rtype == Rtype::NS && r.owner == qname)
        && out
            .authority
            .iter()
            .any(|r| r.covers == Rtype::NSEC && r.owner == qname)
    {
        let authority = std::mem::take(&mut out.authority);
        out.answer = authority
            .into_iter()
            .filter(|r| r.covers == Rtype::NSEC && r.owner == qname)
            .collect();
        out.aa = true;
    }

    // 4. The zone's own NS RRset (and its RRSIG) in the authority section of
    //    an answer that has data: RFC 1034 §4.3.2 step 3.a puts only the
    //    matching RRset in the answer and asks for nothing in the authority
    //    section; the zone's NS RRset there is optional (RFC 2181 §5.4.1 ranks
    //    it as authority data). BIND adds it (`minimal-responses no`), Knot
    //    does not. Referrals keep theirs: their NS owner is not an apex.
    if !out.answer.is_empty() {
        out.authority
            .retain(|r| !(is_nsish(r) && apexes.contains(&r.owner)));
    }

    // 5. The additional section beyond what the kept records call for:
    //    RFC 1034 §4.3.2 step 6 and RFC 2181 §5.4.1 make additional data
    //    optional ("may"). Kept: A/AAAA (and their RRSIGs) of the targets of
    //    NS, MX, SRV, SVCB and HTTPS records left in the answer and authority
    //    sections (SVCB/HTTPS targets: see `Rec::target`). Dropped: addresses of the apex NS names removed by rule 4
    //    (BIND sends them, Knot does not).
    //    In a referral, only in-domain glue (at or below the cut) counts:
    //    RFC 9471 §3.1 requires it; sibling glue (§3.2, Knot sends it, BIND
    //    does not) and other out-of-domain addresses stay optional.
    //    With a 512-byte limit (no EDNS, or EDNS 512) only referral glue is
    //    compared: RFC 2181 §9 lets a server leave out additional data that
    //    does not fit without setting TC, and BIND leaves it out early.
    let small = probe.edns.map_or(512, |(size, _)| size) <= 512;
    let targets: Vec<&String> = out
        .answer
        .iter()
        .filter(|_| !small)
        .filter(|r| r.rtype != Rtype::CNAME)
        .filter_map(|r| r.target.as_ref())
        .chain(out.authority.iter().filter_map(|r| {
            let target = r.target.as_ref()?;
            let referral = r.rtype == Rtype::NS && !apexes.contains(&r.owner);
            let wanted = if referral {
                is_at_or_below(target, &r.owner)
            } else {
                !small
            };
            wanted.then_some(target)
        }))
        .collect();
    let additional = std::mem::take(&mut out.additional);
    out.additional = additional
        .into_iter()
        .filter(|r| matches!(r.covers, Rtype::A | Rtype::AAAA) && targets.contains(&&r.owner))
        .collect();

    // 6. CNAME loops: RFC 1034 §3.6.2 calls them an error but gives no
    //    response code; BIND answers SERVFAIL, Knot NOERROR, both with the
    //    chain. Either is accepted when the answer's CNAMEs form a loop.
    if matches!(out.rcode.as_str(), "NOERROR" | "SERVFAIL") && cname_loop(&out.answer) {
        out.rcode = "NOERROR or SERVFAIL (CNAME loop)".to_string();
    }

    // 7. A query for type RRSIG: no RFC says which signatures answer it (RFC
    //    4035 §3.1 covers RRSIGs that go with other data). BIND sends every
    //    RRSIG at the name, Knot those of one type. Compared: which owners
    //    have signatures, with the TTL, class and data left out.
    if probe.qtype == Rtype::RRSIG && out.answer.iter().all(|r| r.rtype == Rtype::RRSIG) {
        let mut owners: Vec<Rec> = std::mem::take(&mut out.answer)
            .into_iter()
            .map(|r| Rec {
                ttl: 0,
                class: "IN".into(),
                covers: Rtype::RRSIG,
                data: "(some of the RRSIGs at this name)".into(),
                target: None,
                ..r
            })
            .collect();
        owners.sort();
        owners.dedup();
        out.answer = owners;
    }

    for section in [&mut out.answer, &mut out.authority, &mut out.additional] {
        section.sort();
    }
    out
}

/// Whether `name` is `ancestor` or below it (both lower case, absolute).
fn is_at_or_below(name: &str, ancestor: &str) -> bool {
    ancestor == "." || name == ancestor || name.ends_with(&format!(".{ancestor}"))
}

/// Whether following the CNAMEs of the answer section from any of them comes
/// back to a name already seen.
fn cname_loop(answer: &[Rec]) -> bool {
    let next = |owner: &str| {
        answer
            .iter()
            .find(|r| r.rtype == Rtype::CNAME && r.owner == owner)
            .and_then(|r| r.target.clone())
    };
    answer
        .iter()
        .filter(|r| r.rtype == Rtype::CNAME)
        .any(|start| {
            let mut seen = vec![start.owner.clone()];
            let mut current = start.owner.clone();
            for _ in 0..answer.len() {
                match next(&current) {
                    Some(target) if seen.contains(&target) => return true,
                    Some(target) => {
                        seen.push(target.clone());
                        current = target;
                    }
                    None => return false,
                }
            }
            false
        })
}

/// The comparable form of an observation: the TCP answer when UDP was
/// truncated (RFC 2181 §9 and RFC 1035 §4.2.1 leave what a truncated message
/// still holds to the server; only TC itself is compared there).
fn comparable(
    probe: &Probe,
    apexes: &[String],
    observed: &Observed,
) -> Result<(Answer, Option<Answer>), String> {
    let udp = normalise(probe, apexes, observed.udp.as_ref().map_err(Clone::clone)?);
    match &observed.tcp {
        None => Ok((udp, None)),
        Some(tcp) => {
            let tcp = normalise(probe, apexes, tcp.as_ref().map_err(Clone::clone)?);
            Ok((udp, Some(tcp)))
        }
    }
}

#[derive(Default)]
pub struct Report {
    compared: usize,
    mismatches: Vec<String>,
    /// Mismatch counts by (zone or qname tail, qtype) for the summary.
    kinds: BTreeMap<String, usize>,
}

/// How many mismatches are printed in full.
const SHOWN: usize = 40;

impl Report {
    pub fn compare(
        &mut self,
        left: &Server,
        right: &Server,
        probes: &[Probe],
        apexes: &[String],
        a: &[Observed],
        b: &[Observed],
    ) {
        for ((probe, a), b) in probes.iter().zip(a).zip(b) {
            self.compared += 1;
            if let Some(diff) = diff(probe, apexes, &left.name, a, &right.name, b) {
                let zone_tail: Vec<&str> = probe.qname.trim_end_matches('.').rsplit('.').collect();
                let tail = zone_tail
                    .iter()
                    .take(2)
                    .rev()
                    .copied()
                    .collect::<Vec<_>>()
                    .join(".")
                    .to_ascii_lowercase();
                *self
                    .kinds
                    .entry(format!(
                        "{} vs {} {tail} {}",
                        left.name, right.name, probe.qtype
                    ))
                    .or_default() += 1;
                self.mismatches.push(diff);
            }
        }
    }

    pub fn mismatch_count(&self) -> usize {
        self.mismatches.len()
    }

    /// The mismatch texts (for tests of the harness itself).
    pub fn mismatches(&self) -> &[String] {
        &self.mismatches
    }

    pub fn summary(&self) -> String {
        format!(
            "{} comparisons, {} mismatches",
            self.compared,
            self.mismatches.len()
        )
    }

    pub fn assert_clean(&self) {
        if self.mismatches.is_empty() {
            return;
        }
        let mut text = String::new();
        for diff in self.mismatches.iter().take(SHOWN) {
            text.push_str(diff);
            text.push('\n');
        }
        if self.mismatches.len() > SHOWN {
            text.push_str(&format!(
                "... and {} more mismatches\n",
                self.mismatches.len() - SHOWN
            ));
        }
        text.push_str("mismatches by server pair, zone and type:\n");
        for (kind, count) in &self.kinds {
            text.push_str(&format!("    {count:5}  {kind}\n"));
        }
        panic!(
            "{}: answers differ after normalisation\n\n{text}",
            self.summary()
        );
    }
}

/// A readable diff of two observations, or `None` if they agree.
fn diff(
    probe: &Probe,
    apexes: &[String],
    left: &str,
    a: &Observed,
    right: &str,
    b: &Observed,
) -> Option<String> {
    let (a, b) = match (comparable(probe, apexes, a), comparable(probe, apexes, b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), Err(f)) if e == f => return None,
        (a, b) => {
            return Some(format!(
                "query: {}\n  {left}: {}\n  {right}: {}\n",
                probe.describe(),
                a.map(|(x, _)| x.header()).unwrap_or_else(|e| e),
                b.map(|(x, _)| x.header()).unwrap_or_else(|e| e),
            ));
        }
    };
    let mut out = String::new();
    // 8. TC over UDP may differ where the complete answers agree: whether an
    //    answer fits depends on name compression, which RFC 1035 §4.1.4 makes
    //    optional, and on the space a server keeps back (BIND truncates
    //    some answers that Knot fits into 512 bytes). So TC is compared by
    //    comparing the complete answers: those received over TCP when UDP was
    //    truncated. A difference is shown only alongside one in the contents.
    let tc_note = if a.0.tc != b.0.tc {
        format!(
            "  over UDP: TC {} from {left}, {} from {right}\n",
            a.0.tc, b.0.tc
        )
    } else {
        String::new()
    };
    // Truncated answers: the TCP ones are compared (see `comparable`).
    let x = a.1.as_ref().unwrap_or(&a.0);
    let y = b.1.as_ref().unwrap_or(&b.0);
    if x.header() != y.header() {
        out.push_str(&format!(
            "  header: {left}: {}  /  {right}: {}\n",
            x.header(),
            y.header()
        ));
    }
    for ((title, xs), (_, ys)) in x.sections().into_iter().zip(y.sections()) {
        let only_x = multiset_minus(xs, ys);
        let only_y = multiset_minus(ys, xs);
        if only_x.is_empty() && only_y.is_empty() {
            continue;
        }
        out.push_str(&format!("  {title}:\n"));
        for rec in only_x {
            out.push_str(&format!("    - {left:<7} {}\n", rec.text()));
        }
        for rec in only_y {
            out.push_str(&format!("    + {right:<7} {}\n", rec.text()));
        }
    }
    if out.is_empty() {
        return None;
    }
    Some(format!(
        "query: {}\n{tc_note}{out}  full answer from {left}:\n{}  full answer from {right}:\n{}",
        probe.describe(),
        x.render(),
        y.render()
    ))
}

/// Records of `xs` not matched one-for-one in `ys` (both sorted).
fn multiset_minus<'a>(xs: &'a [Rec], ys: &[Rec]) -> Vec<&'a Rec> {
    let mut left = Vec::new();
    let mut j = 0;
    for x in xs {
        while j < ys.len() && ys[j] < *x {
            j += 1;
        }
        if j < ys.len() && ys[j] == *x {
            j += 1;
        } else {
            left.push(x);
        }
    }
    left
}

/// What the answers held, so a run shows it tested something: response codes,
/// truncations, DNSSEC records, referrals.
pub fn statistics(observed: &[Observed]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for item in observed {
        let Ok(udp) = &item.udp else {
            *counts.entry("no answer".into()).or_default() += 1;
            continue;
        };
        if udp.tc {
            *counts.entry("TC (then TCP)".into()).or_default() += 1;
        }
        let answer = match &item.tcp {
            Some(Ok(tcp)) => tcp,
            _ => udp,
        };
        *counts.entry(answer.rcode.clone()).or_default() += 1;
        let all = || answer.answer.iter().chain(&answer.authority);
        for (label, rtype) in [
            ("with NSEC", Rtype::NSEC),
            ("with NSEC3", Rtype::NSEC3),
            ("with RRSIG", Rtype::RRSIG),
            ("with CNAME", Rtype::CNAME),
            ("with DNAME", Rtype::DNAME),
        ] {
            if all().any(|r| r.rtype == rtype) {
                *counts.entry(label.into()).or_default() += 1;
            }
        }
        if !answer.aa && answer.authority.iter().any(|r| r.rtype == Rtype::NS) {
            *counts.entry("referral".into()).or_default() += 1;
        }
        if !answer.additional.is_empty() {
            *counts.entry("with additional".into()).or_default() += 1;
        }
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
