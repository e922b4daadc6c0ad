//! Responses: built by plugins, encoded once, truncated to fit.
//!
//! Truncation (RFC 2181 §9, RFC 6891 §7): RRsets are kept or dropped whole.
//! When an answer or authority RRset does not fit, TC is set and that section
//! is cut there, with everything after it; additional RRsets that do not fit
//! are left out without TC. The OPT record always stays in: the space for it
//! is reserved before any record is placed.

use bytes::Bytes;
use domain::base::iana::{Class, Opcode, OptRcode, Rcode, Rtype};
use domain::base::message::Message;
use domain::base::message_builder::{MessageBuilder, PushError, StaticCompressor};
use domain::base::name::FlattenInto;
use domain::base::rdata::UnknownRecordData;
use domain::base::{ParsedName, ToName};
use domain::dep::octseq::OctetsBuilder;
use domain::rdata::ZoneRecordData;

use crate::edns::{Edns, EdnsOption};
use crate::query::{MalformedQuery, Query};
use crate::wire::{Section, WireHeader, WireSections};
use crate::{DEFAULT_UDP_PAYLOAD, Name, Record};

type Builder = MessageBuilder<StaticCompressor<Vec<u8>>>;

/// Room for the largest header, question (a 255-octet name) and bare OPT
/// record: encoding always fits in it.
const MIN_ROOM: usize = 12 + 255 + 4 + 11 + 18;

/// A response under construction. Header fields that echo the query (ID,
/// opcode, RD, CD, the question) are filled in at encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The full response code; values above 15 need EDNS (RFC 6891 §6.1.3).
    pub rcode: OptRcode,
    /// AA: we are authoritative for the answer.
    pub authoritative: bool,
    /// TC as decided by a plugin (e.g. copied from an upstream); encoding may also set it.
    pub truncated: bool,
    /// RA: recursion available.
    pub recursion_available: bool,
    /// AD: the data is authentic (RFC 4035 §3.2.3).
    pub authentic_data: bool,
    pub answer: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
    /// Options for our OPT record; sent only if the query had EDNS.
    pub edns_options: Vec<EdnsOption>,
    /// The three sections already in wire form (a zone's or the cache's
    /// stored answer to the same question): when set, `answer`, `authority`
    /// and `additional` are empty and encoding copies these. Only blocks
    /// whose plugins never read the records of a passing answer get them
    /// (`Request::wire_answers` in oxidns-server).
    pub wire: Option<WireSections>,
}

/// A response as received from a server: the response and the header fields
/// that were echoed from the query.
#[derive(Clone, Debug)]
pub struct ReceivedResponse {
    pub id: u16,
    pub opcode: Opcode,
    pub rd: bool,
    pub cd: bool,
    pub question: Option<(Name, Rtype, Class)>,
    pub edns: Option<Edns>,
    pub response: Response,
}

/// Why a received response could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseParseError(pub &'static str);

impl std::fmt::Display for ResponseParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ResponseParseError {}

/// How many RRsets of each section to place.
#[derive(Clone, Copy, Debug)]
struct Cut {
    answer: usize,
    authority: usize,
    additional: usize,
    truncated: bool,
}

impl Response {
    /// An empty response with this rcode.
    pub fn new(rcode: Rcode) -> Response {
        Response {
            rcode: OptRcode::from_rcode(rcode),
            authoritative: false,
            truncated: false,
            recursion_available: false,
            authentic_data: false,
            answer: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
            edns_options: Vec::new(),
            wire: None,
        }
    }

    /// The sections of this response in wire form, encoded after the
    /// question (`qname` lower-cased, `qtype`, `qclass`) as for any query
    /// with that question, to be kept and sent again ([`Response::wire`]),
    /// with `tag` stored beside them ([`WireSections::tag`]). `None` if they
    /// do not fit in one message of 65,535 bytes.
    pub fn wire_sections(
        &self,
        qname: &Name,
        qtype: Rtype,
        qclass: Class,
        tag: &[u8],
    ) -> Option<WireSections> {
        let query = Query {
            message: Bytes::new(),
            id: 0,
            opcode: Opcode::QUERY,
            rd: false,
            cd: false,
            ad: false,
            qname: crate::lowercase(qname),
            qtype,
            qclass,
            edns: None,
        };
        let all = Cut {
            answer: usize::MAX,
            authority: usize::MAX,
            additional: usize::MAX,
            truncated: false,
        };
        let message = self
            .try_encode(&query, usize::from(u16::MAX), all, false)
            .ok()?;
        let mut rrsets: Vec<(Section, u16)> = Vec::new();
        let sections = [
            (Section::Answer, &self.answer),
            (Section::Authority, &self.authority),
            (Section::Additional, &self.additional),
        ];
        for (section, records) in sections {
            for (index, record) in records.iter().enumerate() {
                match rrsets.last_mut() {
                    // The same RRset as the record before, as `push_rrsets` counts them.
                    Some((_, count)) if index > 0 && same_rrset(&records[index - 1], record) => {
                        *count += 1
                    }
                    _ => rrsets.push((section, 1)),
                }
            }
        }
        let header = WireHeader {
            rcode: self.rcode,
            authoritative: self.authoritative,
            recursion_available: self.recursion_available,
            authentic_data: self.authentic_data,
        };
        WireSections::from_message(
            &message,
            query.qname.as_slice().len() + 4,
            &rrsets,
            tag,
            header,
        )
    }

    /// A response in wire form: `sections` and the header values kept with
    /// them ([`Response::wire_sections`]), no records.
    pub fn from_wire(sections: WireSections) -> Response {
        let header = sections.header();
        let mut response = Response::new(Rcode::NOERROR);
        response.rcode = header.rcode;
        response.authoritative = header.authoritative;
        response.recursion_available = header.recursion_available;
        response.authentic_data = header.authentic_data;
        response.wire = Some(sections);
        response
    }

    /// Gives a response in wire form its records back, decoded from what
    /// it would send to `query` (TTLs aged, names in the query's case), for
    /// a plugin that must work on records after all. `false`, and the
    /// response left as it was, if they do not decode.
    pub fn decode_wire(&mut self, query: &Query) -> bool {
        let Some(wire) = self.wire.take() else {
            return true;
        };
        // Sections made for another question do not decode under this one.
        if !wire.made_for(&query.qname) {
            self.wire = Some(wire);
            return false;
        }
        // Without EDNS no OPT record is added, and every record fits.
        let plain = Query {
            edns: None,
            ..query.clone()
        };
        let mut message = Vec::new();
        self.encode_wire(&wire, &plain, usize::from(u16::MAX), &mut message);
        match Response::parse(&message) {
            Ok(decoded) => {
                let decoded = decoded.response;
                self.answer = decoded.answer;
                self.authority = decoded.authority;
                self.additional = decoded.additional;
                true
            }
            Err(_) => {
                self.wire = Some(wire);
                false
            }
        }
    }

    /// The 4-bit header part of the rcode.
    pub fn header_rcode(&self) -> Rcode {
        self.rcode.rcode()
    }

    /// Encodes the response to `query` in at most `limit` bytes (at least 512).
    pub fn encode(&self, query: &Query, limit: usize) -> Vec<u8> {
        self.encode_reserving(query, limit, 0)
    }

    /// As [`Response::encode`], leaving `reserved` bytes of the limit free
    /// for a record added to the wire form afterwards (a TSIG, RFC 8945
    /// §5.3: truncate so that the signature still fits). The room left is
    /// never less than a question and OPT record need, so a very large
    /// reservation may still overrun a 512-byte limit.
    pub fn encode_reserving(&self, query: &Query, limit: usize, reserved: usize) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(query, limit, reserved, &mut out);
        out
    }

    /// As [`Response::encode_reserving`], into `out` (emptied first). A
    /// response in wire form is written into `out`'s memory, so a server
    /// that passes the same buffers again sends it without allocating.
    pub fn encode_into(&self, query: &Query, limit: usize, reserved: usize, out: &mut Vec<u8>) {
        let limit = limit
            .max(usize::from(crate::MIN_UDP_PAYLOAD))
            .saturating_sub(reserved)
            .max(MIN_ROOM);
        out.clear();
        if let Some(wire) = &self.wire {
            if wire.made_for(&query.qname) {
                return self.encode_wire(wire, query, limit, out);
            }
            // Sections made for another question are never sent under this one.
            debug_assert!(false, "wire sections for another question");
            return Response::new(Rcode::SERVFAIL).encode_into(query, limit, 0, out);
        }
        let mut cut = Cut {
            answer: usize::MAX,
            authority: usize::MAX,
            additional: usize::MAX,
            truncated: self.truncated,
        };
        let mut with_options = true;
        loop {
            match self.try_encode(query, limit, cut, with_options) {
                Ok(bytes) => {
                    *out = bytes;
                    return;
                }
                Err((Section::Answer, rrset)) => {
                    cut = Cut {
                        answer: rrset,
                        authority: 0,
                        additional: 0,
                        truncated: true,
                    }
                }
                Err((Section::Authority, rrset)) => {
                    cut.authority = rrset;
                    cut.additional = 0;
                    cut.truncated = true;
                }
                Err((Section::Additional, rrset)) if rrset < cut.additional => {
                    cut.additional = rrset
                }
                // The question and OPT alone overflow: send OPT without options.
                Err(_) => with_options = false,
            }
        }
    }

    /// The rcode as it can be sent to `query`: an extended rcode cannot be
    /// said without OPT, so SERVFAIL stands in for it.
    fn sent_rcode(&self, query: &Query) -> OptRcode {
        if self.rcode.is_ext() && query.edns.is_none() {
            OptRcode::SERVFAIL
        } else {
            self.rcode
        }
    }

    /// [`Response::encode_reserving`] for a response in wire form: the
    /// header and question written here, the sections copied.
    fn encode_wire(&self, wire: &WireSections, query: &Query, limit: usize, out: &mut Vec<u8>) {
        let qname = query.qname.as_slice();
        let mut options: &[EdnsOption] = &self.edns_options;
        let before = 12 + qname.len() + 4;
        // The question and OPT alone overflow: send OPT without options.
        if before + opt_len(query, options) > limit {
            options = &[];
        }
        let opt_len = opt_len(query, options);
        let fit = wire.fit(limit.saturating_sub(before + opt_len));
        let rcode = self.sent_rcode(query);

        out.reserve(before + fit.bytes.len() + opt_len);
        out.extend_from_slice(&query.id.to_be_bytes());
        // RFC 1035 §4.1.1: QR, opcode, AA, TC, RD | RA, Z (0), AD, CD, rcode.
        let tc = self.truncated || fit.truncated;
        out.push(
            0x80 | (query.opcode.to_int() << 3)
                | (u8::from(self.authoritative) << 2)
                | (u8::from(tc) << 1)
                | u8::from(query.rd),
        );
        out.push(
            (u8::from(self.recursion_available) << 7)
                | (u8::from(self.authentic_data) << 5)
                | (u8::from(query.cd) << 4)
                | rcode.rcode().to_int(),
        );
        let [answer, authority, additional] = fit.counts;
        let additional = additional + u16::from(query.edns.is_some());
        for count in [1, answer, authority, additional] {
            out.extend_from_slice(&count.to_be_bytes());
        }
        out.extend_from_slice(qname);
        out.extend_from_slice(&query.qtype.to_int().to_be_bytes());
        out.extend_from_slice(&query.qclass.to_int().to_be_bytes());
        wire.append(&fit, out);
        if let Some(edns) = &query.edns {
            // RFC 6891 §6.1.2–6.1.3: root owner, OPT, payload size as the
            // class, extended rcode, version 0 and DO in the TTL.
            out.push(0);
            out.extend_from_slice(&Rtype::OPT.to_int().to_be_bytes());
            out.extend_from_slice(&DEFAULT_UDP_PAYLOAD.to_be_bytes());
            out.push(rcode.ext());
            out.push(0);
            out.push(if edns.dnssec_ok { 0x80 } else { 0 });
            out.push(0);
            let rdlength = opt_len - 11;
            out.extend_from_slice(&(rdlength as u16).to_be_bytes());
            for option in options {
                out.extend_from_slice(&option.code.to_be_bytes());
                out.extend_from_slice(&(option.data.len() as u16).to_be_bytes());
                out.extend_from_slice(&option.data);
            }
        }
    }

    fn try_encode(
        &self,
        query: &Query,
        limit: usize,
        cut: Cut,
        with_options: bool,
    ) -> Result<Vec<u8>, (Section, usize)> {
        let options: &[EdnsOption] = if with_options {
            &self.edns_options
        } else {
            &[]
        };
        let opt_len = opt_len(query, options);
        let rcode = self.sent_rcode(query);

        let mut builder = Builder::from_target(StaticCompressor::new(Vec::with_capacity(512)))
            .expect("a Vec always has room for a header");
        let header = builder.header_mut();
        header.set_id(query.id);
        header.set_qr(true);
        header.set_opcode(query.opcode);
        header.set_aa(self.authoritative);
        header.set_tc(cut.truncated);
        header.set_rd(query.rd);
        header.set_ra(self.recursion_available);
        header.set_ad(self.authentic_data);
        header.set_cd(query.cd);
        header.set_rcode(rcode.rcode());
        // `domain` refuses a push that brings the message to the limit
        // exactly (`new_pos >= limit`), but a message of `limit` bytes fits
        // (RFC 1035 §4.2.1: "512 octets or less"); the wire-form path agrees.
        builder.set_push_limit(limit.saturating_sub(opt_len) + 1);

        let mut question = builder.question();
        if question
            .push((&query.qname, query.qtype, query.qclass))
            .is_err()
        {
            return Err((Section::Answer, 0));
        }
        let mut answer = question.answer();
        push_rrsets(&self.answer, cut.answer, Section::Answer, |r| {
            answer.push(r)
        })?;
        let mut authority = answer.authority();
        push_rrsets(&self.authority, cut.authority, Section::Authority, |r| {
            authority.push(r)
        })?;
        let mut additional = authority.additional();
        push_rrsets(&self.additional, cut.additional, Section::Additional, |r| {
            additional.push(r)
        })?;
        if let Some(edns) = &query.edns {
            additional.as_builder_mut().clear_push_limit();
            additional
                .opt(|opt| {
                    opt.set_udp_payload_size(DEFAULT_UDP_PAYLOAD);
                    opt.set_rcode(rcode);
                    opt.set_dnssec_ok(edns.dnssec_ok);
                    for option in options {
                        opt.push_raw_option(
                            option.code.into(),
                            option.data.len() as u16,
                            |target| target.append_slice(&option.data),
                        )?;
                    }
                    Ok(())
                })
                .map_err(|_| (Section::Additional, usize::MAX))?;
        }
        Ok(additional.finish().into_target())
    }

    /// Reads a response received from a server (upstreams, tests).
    pub fn parse(bytes: &[u8]) -> Result<ReceivedResponse, ResponseParseError> {
        let bytes = Bytes::copy_from_slice(bytes);
        let msg = Message::from_octets(bytes).map_err(|_| ResponseParseError("short header"))?;
        let header = msg.header();
        if !header.qr() {
            return Err(ResponseParseError("QR bit not set"));
        }
        let mut question = None;
        let mut questions = msg.question();
        for item in &mut questions {
            let item = item.map_err(|_| ResponseParseError("bad question"))?;
            question.get_or_insert((item.qname().to_bytes(), item.qtype(), item.qclass()));
        }
        let mut response = Response::new(header.rcode());
        response.authoritative = header.aa();
        response.truncated = header.tc();
        response.recursion_available = header.ra();
        response.authentic_data = header.ad();
        let mut edns = None;
        let mut section = questions
            .answer()
            .map_err(|_| ResponseParseError("bad question"))?;
        for index in 0..3 {
            for record in &mut section {
                let record = record.map_err(|_| ResponseParseError("bad record"))?;
                if record.rtype() == Rtype::OPT {
                    let data = record
                        .to_record::<UnknownRecordData<Bytes>>()
                        .ok()
                        .flatten()
                        .ok_or(ResponseParseError("bad OPT record"))?;
                    let flags = record.ttl().as_secs();
                    let options = Edns::parse_options(data.data().data().as_ref())
                        .ok_or(ResponseParseError("bad EDNS option"))?;
                    response.rcode = OptRcode::from_parts(header.rcode(), (flags >> 24) as u8);
                    edns = Some(Edns {
                        udp_payload_size: record.class().to_int(),
                        version: (flags >> 16) as u8,
                        dnssec_ok: flags & 0x8000 != 0,
                        options,
                    });
                    continue;
                }
                let parsed: domain::base::Record<
                    ParsedName<Bytes>,
                    ZoneRecordData<Bytes, ParsedName<Bytes>>,
                > = record
                    .to_record()
                    .ok()
                    .flatten()
                    .ok_or(ResponseParseError("bad record data"))?;
                let owned: Record = parsed.flatten_into();
                match index {
                    0 => response.answer.push(owned),
                    1 => response.authority.push(owned),
                    _ => response.additional.push(owned),
                }
            }
            match section.next_section() {
                Ok(Some(next)) => section = next,
                Ok(None) => break,
                Err(_) => return Err(ResponseParseError("bad record")),
            }
        }
        response.edns_options = edns.as_ref().map(|e| e.options.clone()).unwrap_or_default();
        Ok(ReceivedResponse {
            id: header.id(),
            opcode: header.opcode(),
            rd: header.rd(),
            cd: header.cd(),
            question,
            edns,
            response,
        })
    }
}

/// Pushes the first `max_rrsets` RRsets of `records`; on overflow names the
/// RRset that did not fit.
fn push_rrsets(
    records: &[Record],
    max_rrsets: usize,
    section: Section,
    mut push: impl FnMut(&Record) -> Result<(), PushError>,
) -> Result<(), (Section, usize)> {
    let mut rrset = 0;
    for (index, record) in records.iter().enumerate() {
        if index > 0 && !same_rrset(&records[index - 1], record) {
            rrset += 1;
        }
        if rrset >= max_rrsets {
            break;
        }
        if push(record).is_err() {
            return Err((section, rrset));
        }
    }
    Ok(())
}

/// Bytes our OPT record takes with `options`; none without EDNS in the query.
fn opt_len(query: &Query, options: &[EdnsOption]) -> usize {
    match &query.edns {
        Some(_) => 11 + options.iter().map(|o| 4 + o.data.len()).sum::<usize>(),
        None => 0,
    }
}

fn same_rrset(a: &Record, b: &Record) -> bool {
    a.rtype() == b.rtype() && a.class() == b.class() && a.owner().name_eq(b.owner())
}

/// A header-only (plus question, when readable) error response to a malformed query.
pub fn encode_error(query: &MalformedQuery, rcode: Rcode) -> Vec<u8> {
    let mut builder = MessageBuilder::new_vec();
    let header = builder.header_mut();
    header.set_id(query.id);
    header.set_qr(true);
    header.set_opcode(query.opcode);
    header.set_rd(query.rd);
    header.set_cd(query.cd);
    header.set_rcode(rcode);
    let mut question = builder.question();
    if let Some(q) = &query.question {
        let _ = question.push((&q.0, q.1, q.2));
    }
    question.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RecordData, Ttl, WireRRset, name_from_str};
    use domain::rdata::{A, Txt};
    use std::net::Ipv4Addr;

    fn query(edns_size: Option<u16>) -> Query {
        let edns = edns_size.map(|size| Edns {
            udp_payload_size: size,
            version: 0,
            dnssec_ok: false,
            options: vec![],
        });
        let bytes = Query::build(
            7,
            &name_from_str("Big.Example").unwrap(),
            Rtype::TXT,
            Class::IN,
            edns.as_ref(),
        );
        Query::parse(bytes.into()).unwrap()
    }

    fn txt(owner: &str, size: usize) -> Record {
        let text = vec![b'x'; size];
        Record::new(
            name_from_str(owner).unwrap(),
            Class::IN,
            Ttl::from_secs(60),
            RecordData::Txt(Txt::build_from_slice(&text).unwrap()),
        )
    }

    fn a(owner: &str, last: u8) -> Record {
        Record::new(
            name_from_str(owner).unwrap(),
            Class::IN,
            Ttl::from_secs(60),
            RecordData::A(A::new(Ipv4Addr::new(192, 0, 2, last))),
        )
    }

    fn query_for(qname: &str, qtype: Rtype, edns: Option<Edns>) -> Query {
        let bytes = Query::build(
            0xBEEF,
            &name_from_str(qname).unwrap(),
            qtype,
            Class::IN,
            edns.as_ref(),
        );
        Query::parse(bytes.into()).unwrap()
    }

    fn edns(size: u16, dnssec_ok: bool) -> Option<Edns> {
        Some(Edns {
            udp_payload_size: size,
            version: 0,
            dnssec_ok,
            options: vec![],
        })
    }

    fn cname(owner: &str, target: &str) -> Record {
        Record::new(
            name_from_str(owner).unwrap(),
            Class::IN,
            Ttl::from_secs(300),
            RecordData::Cname(domain::rdata::Cname::new(name_from_str(target).unwrap())),
        )
    }

    /// The same response with its sections in wire form, made for `query`'s question.
    fn in_wire_form(response: &Response, query: &Query) -> Response {
        let wire = response
            .wire_sections(&query.qname, query.qtype, query.qclass, b"tag")
            .expect("fits");
        assert_eq!(wire.tag(), b"tag");
        Response {
            answer: vec![],
            authority: vec![],
            additional: vec![],
            wire: Some(wire),
            ..response.clone()
        }
    }

    /// Responses of every shape: small, CNAME chains whose names compress
    /// into the question, extended rcodes, options, and ones that must be
    /// cut at 512 bytes in each section.
    fn sample_responses() -> Vec<Response> {
        let mut small = Response::new(Rcode::NOERROR);
        small.authoritative = true;
        small.answer.push(a("www.example", 1));
        small.answer.push(a("www.example", 2));

        let mut chain = Response::new(Rcode::NOERROR);
        chain.answer.push(cname("www.example", "web.example"));
        chain.answer.push(a("web.example", 3));
        chain.authority.push(cname("ns.example", "www.example"));
        chain.additional.push(a("ns.example", 4));

        let mut big_answer = Response::new(Rcode::NOERROR);
        big_answer.answer.push(a("www.example", 1));
        for _ in 0..3 {
            big_answer.answer.push(txt("www.example", 200));
        }
        big_answer.additional.push(a("c.example", 5));

        let mut big_authority = Response::new(Rcode::NXDOMAIN);
        big_authority.authority.push(txt("www.example", 200));
        big_authority.authority.push(txt("other.example", 250));
        big_authority.additional.push(a("c.example", 5));

        let mut big_additional = Response::new(Rcode::NOERROR);
        big_additional.answer.push(txt("www.example", 200));
        big_additional.additional.push(a("g.example", 6));
        big_additional.additional.push(txt("more.example", 250));
        big_additional.additional.push(txt("more.example", 250));

        let mut extended = Response::new(Rcode::NOERROR);
        extended.rcode = OptRcode::BADCOOKIE;
        extended.recursion_available = true;
        extended.authentic_data = true;
        extended.edns_options.push(EdnsOption {
            code: 10,
            data: bytes::Bytes::from_static(&[7; 24]),
        });

        vec![
            small,
            chain,
            big_answer,
            big_authority,
            big_additional,
            extended,
        ]
    }

    #[test]
    fn wire_form_encodes_to_the_same_bytes() {
        let queries = [
            query_for("www.example", Rtype::A, None),
            query_for("www.example", Rtype::A, edns(1232, true)),
            query_for("www.example", Rtype::A, edns(600, false)),
            query_for("www.example", Rtype::A, edns(4096, false)),
        ];
        for (n, response) in sample_responses().iter().enumerate() {
            for query in &queries {
                let wire = in_wire_form(response, query);
                for (limit, reserved) in [(512, 0), (65535, 0), (1232, 0), (700, 100)] {
                    assert_eq!(
                        wire.encode_reserving(query, limit, reserved),
                        response.encode_reserving(query, limit, reserved),
                        "response {n}, limit {limit}, reserved {reserved}, edns {:?}",
                        query.edns
                    );
                }
            }
        }
    }

    #[test]
    fn wire_form_serves_any_case_of_its_name_and_echoes_it() {
        let lower = query_for("www.example", Rtype::A, None);
        let mixed = query_for("WwW.ExAmple", Rtype::A, edns(1232, false));
        for response in sample_responses() {
            let wire = in_wire_form(&response, &lower);
            let got = Response::parse(&wire.encode(&mixed, 1232)).unwrap();
            let want = Response::parse(&response.encode(&mixed, 1232)).unwrap();
            assert_eq!(got.question.as_ref().unwrap().0.to_string(), "WwW.ExAmple");
            assert_eq!(got.response, want.response);
            assert_eq!(got.id, 0xBEEF);
        }
    }

    #[test]
    fn wire_form_keeps_the_header_values_and_decodes_back_to_the_records() {
        let query = query_for("www.example", Rtype::A, edns(1232, true));
        for response in sample_responses() {
            let sections = response
                .wire_sections(&query.qname, query.qtype, query.qclass, &[])
                .unwrap();
            let mut wire = Response::from_wire(sections);
            assert_eq!(
                (wire.rcode, wire.authoritative, wire.recursion_available),
                (
                    response.rcode,
                    response.authoritative,
                    response.recursion_available
                )
            );
            assert_eq!(wire.authentic_data, response.authentic_data);
            let other = query_for("longer.www.example", Rtype::A, None);
            assert!(
                !wire.clone().decode_wire(&other),
                "made for another question"
            );
            assert!(wire.decode_wire(&query));
            assert!(wire.wire.is_none());
            assert_eq!(
                [wire.answer, wire.authority, wire.additional],
                [
                    response.answer.clone(),
                    response.authority.clone(),
                    response.additional.clone()
                ]
            );
        }
    }

    /// The answer records of `response` sent to `query`, as `last octet` of each A.
    fn a_order(response: &Response, query: &Query) -> Vec<String> {
        let got = Response::parse(&response.encode(query, 1232)).unwrap();
        [got.response.answer, got.response.additional]
            .concat()
            .iter()
            .map(|r| r.data().to_string())
            .collect()
    }

    #[test]
    fn shuffled_wire_sections_reorder_address_records_in_place() {
        let query = query_for("www.example", Rtype::A, None);
        let mut response = Response::new(Rcode::NOERROR);
        for last in 1..=3 {
            response.answer.push(a("www.example", last));
        }
        let sections = response
            .wire_sections(&query.qname, query.qtype, query.qclass, &[])
            .unwrap()
            .aged(10);
        let every = |_: &WireRRset| true;
        // Fisher–Yates draws: each record stays, or each swaps with the first.
        let kept = sections.shuffled(every, |below| below - 1).unwrap();
        let rotated = sections.shuffled(every, |_| 0).unwrap();
        let sent = |sections: WireSections| a_order(&Response::from_wire(sections), &query);
        assert_eq!(sent(kept), ["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
        assert_eq!(
            sent(rotated.clone()),
            ["192.0.2.2", "192.0.2.3", "192.0.2.1"]
        );
        // The original is untouched; the age goes with the copy.
        assert_eq!(
            sent(sections.clone()),
            ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
        );
        let ttls = Response::parse(&Response::from_wire(rotated).encode(&query, 512)).unwrap();
        assert!(ttls.response.answer.iter().all(|r| r.ttl().as_secs() == 50));
        let rrsets: Vec<WireRRset> = sections.rrsets().collect();
        assert_eq!(rrsets.len(), 1);
        assert_eq!((rrsets[0].rtype, rrsets[0].records), (Rtype::A, 3));
        assert_eq!(rrsets[0].owner_pointer, Some(12), "the question's name");
    }

    #[test]
    fn records_that_cannot_move_are_never_shuffled() {
        let query = query_for("www.example", Rtype::A, None);
        // The first glue record writes its owner out, the second points to it.
        let mut glue = Response::new(Rcode::NOERROR);
        glue.additional.push(a("g.example", 1));
        glue.additional.push(a("g.example", 2));
        // MX data holds names.
        let mut mx = Response::new(Rcode::NOERROR);
        for (preference, exchange) in [(10, "mx1.example"), (20, "mx2.example")] {
            mx.answer.push(Record::new(
                name_from_str("www.example").unwrap(),
                Class::IN,
                Ttl::from_secs(60),
                RecordData::Mx(domain::rdata::Mx::new(
                    preference,
                    name_from_str(exchange).unwrap(),
                )),
            ));
        }
        for response in [glue, mx] {
            let sections = response
                .wire_sections(&query.qname, query.qtype, query.qclass, &[])
                .unwrap();
            assert!(sections.shuffled(|_| true, |_| 0).is_none());
            // Not chosen: left alone.
            assert!(sections.shuffled(|_| false, |_| 0).is_some());
        }
    }

    #[test]
    fn aged_wire_sections_lower_every_ttl_but_not_below_zero() {
        let query = query_for("www.example", Rtype::A, edns(1232, false));
        let mut response = sample_responses().swap_remove(1);
        response.answer[1].set_ttl(Ttl::from_secs(30));
        let mut wire = in_wire_form(&response, &query);
        wire.wire = Some(wire.wire.unwrap().aged(100));
        let got = Response::parse(&wire.encode(&query, 1232))
            .unwrap()
            .response;
        let ttls: Vec<u32> = [&got.answer, &got.authority, &got.additional]
            .iter()
            .flat_map(|s| s.iter().map(|r| r.ttl().as_secs()))
            .collect();
        assert_eq!(ttls, [200, 0, 200, 0]);
    }

    #[test]
    fn echoes_id_question_case_and_flags() {
        let q = query(None);
        let mut response = Response::new(Rcode::NOERROR);
        response.authoritative = true;
        response.answer.push(txt("big.example", 10));
        let got = Response::parse(&response.encode(&q, 512)).unwrap();
        assert_eq!(got.id, 7);
        assert!(got.rd);
        assert_eq!(got.question.unwrap().0.to_string(), "Big.Example");
        assert!(got.response.authoritative);
        assert_eq!(got.response.answer.len(), 1);
        assert!(got.edns.is_none());
    }

    #[test]
    fn oversized_answer_is_cut_at_an_rrset_boundary_with_tc() {
        let q = query(None);
        let mut response = Response::new(Rcode::NOERROR);
        response.answer.push(a("a.example", 1));
        response.answer.push(a("a.example", 2));
        for _ in 0..4 {
            response.answer.push(txt("big.example", 200));
        }
        response.additional.push(a("c.example", 3));
        let bytes = response.encode(&q, 512);
        assert!(bytes.len() <= 512);
        let got = Response::parse(&bytes).unwrap().response;
        assert!(got.truncated);
        assert_eq!(
            got.answer.len(),
            2,
            "the A RRset fits, the TXT RRset does not"
        );
        assert!(got.additional.is_empty());
    }

    /// Found by fuzzing (`regressions/response_parse/fills-the-limit-exactly`):
    /// the wire-form path kept an RRset that ended at byte 512, the record
    /// path dropped it. A message of exactly the limit fits.
    #[test]
    fn a_response_of_exactly_the_limit_is_not_truncated() {
        let q = query_for("www.example", Rtype::TXT, None);
        let mut response = Response::new(Rcode::NOERROR);
        // 12 + 17 (question) + 12 + 256 + 12 + 203 = 512.
        response.answer.push(txt("www.example", 255));
        response.answer.push(txt("www.example", 202));
        for encoding in [response.clone(), in_wire_form(&response, &q)] {
            let bytes = encoding.encode(&q, 512);
            assert_eq!(bytes.len(), 512);
            let got = Response::parse(&bytes).unwrap().response;
            assert!(!got.truncated);
            assert_eq!(got.answer.len(), 2);
        }
    }

    #[test]
    fn additional_that_does_not_fit_is_dropped_without_tc() {
        let q = query(None);
        let mut response = Response::new(Rcode::NOERROR);
        response.answer.push(txt("big.example", 200));
        response.additional.push(txt("more.example", 250));
        response.additional.push(txt("more.example", 250));
        let got = Response::parse(&response.encode(&q, 512)).unwrap().response;
        assert!(!got.truncated);
        assert_eq!(got.answer.len(), 1);
        assert!(got.additional.is_empty());
    }

    #[test]
    fn opt_survives_truncation_and_limit_follows_edns_size() {
        let q = query(Some(1232));
        let mut response = Response::new(Rcode::NOERROR);
        for i in 0..10 {
            response.answer.push(txt(&format!("t{i}.example"), 200));
        }
        let bytes = response.encode(&q, usize::from(q.udp_limit()));
        assert!(bytes.len() <= 1232 && bytes.len() > 512);
        let got = Response::parse(&bytes).unwrap();
        assert!(got.response.truncated);
        assert_eq!(
            got.response.answer.len(),
            5,
            "five 200-byte RRsets fit in 1232"
        );
        assert_eq!(got.edns.unwrap().udp_payload_size, DEFAULT_UDP_PAYLOAD);
    }

    #[test]
    fn extended_rcode_goes_into_opt() {
        let q = query(Some(1232));
        let mut response = Response::new(Rcode::NOERROR);
        response.rcode = OptRcode::BADVERS;
        let got = Response::parse(&response.encode(&q, 512)).unwrap();
        assert_eq!(got.response.rcode, OptRcode::BADVERS);
    }

    #[test]
    fn error_for_malformed_query_echoes_header() {
        let m = MalformedQuery {
            id: 99,
            opcode: Opcode::QUERY,
            rd: true,
            cd: false,
            question: None,
            reason: "test",
        };
        let got = Response::parse(&encode_error(&m, Rcode::FORMERR)).unwrap();
        assert_eq!(got.id, 99);
        assert_eq!(got.response.rcode, OptRcode::FORMERR);
        assert!(got.question.is_none());
    }
}
