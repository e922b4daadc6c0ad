//! A received query, validated in full before any plugin sees it.
//!
//! What is wrong with a message decides what we send back:
//! - no complete header, or QR=1 (a response sent to us): drop it, so that
//!   two servers can never be made to loop answering each other;
//! - any other structural fault (bad name, compression loop or forward
//!   pointer, counts that overrun the message, trailing bytes, QDCOUNT ≠ 1,
//!   OPT outside the additional section, two OPT records, an OPT owner that is
//!   not the root): FORMERR with the query's ID (RFC 1035 §4.1.1, RFC 6891 §6.1.1).

use bytes::Bytes;
use domain::base::iana::{Class, Opcode, Rtype};
use domain::base::message::Message;
use domain::base::rdata::UnknownRecordData;
use domain::base::{ParsedName, ToName};
use domain::dep::octseq::OctetsBuilder;

use crate::Name;
use crate::edns::Edns;

/// A query that passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The message as received; plugins that need more (TSIG, UPDATE) re-read it.
    pub message: Bytes,
    pub id: u16,
    pub opcode: Opcode,
    /// Recursion desired.
    pub rd: bool,
    /// Checking disabled (RFC 4035 §3.2.2).
    pub cd: bool,
    /// Authentic data (RFC 6840 §5.7: a query may set it to ask for the bit back).
    pub ad: bool,
    /// The question name exactly as sent: responses echo its case.
    pub qname: Name,
    pub qtype: Rtype,
    pub qclass: Class,
    /// The OPT record, if the query had one.
    pub edns: Option<Edns>,
}

/// The parts of a malformed query we need to answer it with FORMERR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedQuery {
    pub id: u16,
    pub opcode: Opcode,
    pub rd: bool,
    pub cd: bool,
    /// The question, when it could be read.
    pub question: Option<(Name, Rtype, Class)>,
    /// What was wrong, for logs.
    pub reason: &'static str,
}

/// Why a message is not a query we can serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryError {
    /// Not worth a reply: too short for a header, or a response.
    Drop,
    /// Answer FORMERR.
    FormErr(MalformedQuery),
}

impl Query {
    /// Validates a received message; see the module docs for what is checked.
    pub fn parse(message: Bytes) -> Result<Query, QueryError> {
        match Query::parse_common(&message) {
            Some(query) => Ok(query),
            None => Query::parse_full(message),
        }
    }

    /// The shape nearly every query has, read in place (issue #8): a
    /// header with QR clear and counts 1/0/0/0-1, one question whose name
    /// has no compression pointer, and at most an OPT record that ends the
    /// message. The question name is a slice of the message, not a copy.
    /// `None` for anything else, valid or not: [`Query::parse_full`] then
    /// decides, and it reads these messages the same way.
    fn parse_common(message: &Bytes) -> Option<Query> {
        let bytes = &message[..];
        let word = |at: usize| -> Option<u16> {
            Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
        };
        let (flags, more_flags) = (*bytes.get(2)?, *bytes.get(3)?);
        let counts = (word(4)?, word(6)?, word(8)?, word(10)?);
        if flags & 0x80 != 0 || counts.0 != 1 || counts.1 != 0 || counts.2 != 0 || counts.3 > 1 {
            return None;
        }
        // RFC 1035 §3.1: labels of at most 63 octets, a name of at most 255.
        let mut at = 12;
        loop {
            let len = usize::from(*bytes.get(at)?);
            if len > 63 {
                return None;
            }
            at += 1 + len;
            if at - 12 > 255 {
                return None;
            }
            if len == 0 {
                break;
            }
        }
        let name_end = at;
        let (qtype, qclass) = (word(at)?, word(at + 2)?);
        at += 4;
        let mut edns = None;
        if counts.3 == 1 {
            // RFC 6891 §6.1.2: root owner, type OPT, the payload size as the
            // class, extended rcode, version and flags in the TTL.
            if *bytes.get(at)? != 0 || word(at + 1)? != Rtype::OPT.to_int() {
                return None;
            }
            let payload = word(at + 3)?;
            let ttl = u32::from_be_bytes(bytes.get(at + 5..at + 9)?.try_into().ok()?);
            let rdlength = usize::from(word(at + 9)?);
            let data = bytes.get(at + 11..at + 11 + rdlength)?;
            edns = Some(Edns {
                udp_payload_size: payload,
                version: (ttl >> 16) as u8,
                dnssec_ok: ttl & 0x8000 != 0,
                options: Edns::parse_options(data)?,
            });
            at += 11 + rdlength;
        }
        if at != bytes.len() {
            return None;
        }
        Some(Query {
            message: message.clone(),
            id: word(0)?,
            opcode: Opcode::from_int((flags >> 3) & 0x0F),
            rd: flags & 0x01 != 0,
            cd: more_flags & 0x10 != 0,
            ad: more_flags & 0x20 != 0,
            qname: Name::from_octets(message.slice(12..name_end)).ok()?,
            qtype: Rtype::from_int(qtype),
            qclass: Class::from_int(qclass),
            edns,
        })
    }

    /// [`Query::parse`] by the general path alone, every record read in
    /// full: for tests and fuzzing that compare the two.
    pub fn parse_full(message: Bytes) -> Result<Query, QueryError> {
        let msg = Message::from_octets(message.clone()).map_err(|_| QueryError::Drop)?;
        let header = msg.header();
        if header.qr() {
            return Err(QueryError::Drop);
        }
        let mut malformed = MalformedQuery {
            id: header.id(),
            opcode: header.opcode(),
            rd: header.rd(),
            cd: header.cd(),
            question: None,
            reason: "",
        };
        let formerr = |mut m: MalformedQuery, reason| {
            m.reason = reason;
            QueryError::FormErr(m)
        };

        let mut questions = msg.question();
        let mut question = None;
        for (index, item) in (&mut questions).enumerate() {
            let item = item.map_err(|_| formerr(malformed.clone(), "bad question"))?;
            if index == 0 {
                question = Some((item.qname().to_bytes(), item.qtype(), item.qclass()));
            }
        }
        malformed.question = question.clone();
        if msg.header_counts().qdcount() != 1 {
            return Err(formerr(malformed, "QDCOUNT is not 1"));
        }
        let (qname, qtype, qclass) = question.expect("one question was read");

        let mut section = questions
            .answer()
            .map_err(|_| formerr(malformed.clone(), "bad question"))?;
        let mut edns = None;
        for section_index in 0..3 {
            for record in &mut section {
                let record = record.map_err(|_| formerr(malformed.clone(), "bad record"))?;
                if record.rtype() != Rtype::OPT {
                    // Reading the data checks the names inside it as well.
                    record
                        .to_record::<UnknownRecordData<Bytes>>()
                        .map_err(|_| formerr(malformed.clone(), "bad record"))?;
                    continue;
                }
                if section_index != 2 {
                    return Err(formerr(malformed, "OPT outside the additional section"));
                }
                if edns.is_some() {
                    return Err(formerr(malformed, "two OPT records"));
                }
                let owner: ParsedName<_> = record.owner();
                if !owner.is_root() {
                    return Err(formerr(malformed, "OPT owner is not the root"));
                }
                let data = record
                    .to_record::<UnknownRecordData<Bytes>>()
                    .ok()
                    .flatten()
                    .ok_or_else(|| formerr(malformed.clone(), "bad OPT record"))?;
                let options = Edns::parse_options(data.data().data().as_ref())
                    .ok_or_else(|| formerr(malformed.clone(), "bad EDNS option"))?;
                // The TTL field of OPT holds extended rcode, version and flags (RFC 6891 §6.1.3).
                let flags = record.ttl().as_secs();
                edns = Some(Edns {
                    udp_payload_size: record.class().to_int(),
                    version: (flags >> 16) as u8,
                    dnssec_ok: flags & 0x8000 != 0,
                    options,
                });
            }
            match section.next_section() {
                Ok(Some(next)) => section = next,
                Ok(None) => break,
                Err(_) => return Err(formerr(malformed, "bad record")),
            }
        }
        if section.pos() != message.len() {
            return Err(formerr(malformed, "trailing bytes after the last record"));
        }

        Ok(Query {
            message,
            id: header.id(),
            opcode: header.opcode(),
            rd: header.rd(),
            cd: header.cd(),
            ad: header.ad(),
            qname,
            qtype,
            qclass,
            edns,
        })
    }

    /// The largest UDP response this client accepts (RFC 6891 §6.2.3, §6.2.5).
    pub fn udp_limit(&self) -> u16 {
        match &self.edns {
            Some(edns) => edns.udp_payload_size.max(crate::MIN_UDP_PAYLOAD),
            None => crate::MIN_UDP_PAYLOAD,
        }
    }

    /// Whether the client asked for DNSSEC records (the DO bit).
    pub fn dnssec_ok(&self) -> bool {
        self.edns.as_ref().is_some_and(|e| e.dnssec_ok)
    }

    /// Builds a query message, for clients and tests.
    pub fn build(
        id: u16,
        qname: &Name,
        qtype: Rtype,
        qclass: Class,
        edns: Option<&Edns>,
    ) -> Vec<u8> {
        let mut builder = domain::base::MessageBuilder::new_vec();
        builder.header_mut().set_id(id);
        builder.header_mut().set_rd(true);
        let mut question = builder.question();
        question
            .push((qname, qtype, qclass))
            .expect("a question always fits");
        let mut additional = question.additional();
        if let Some(edns) = edns {
            additional
                .opt(|opt| {
                    opt.set_udp_payload_size(edns.udp_payload_size);
                    opt.set_version(edns.version);
                    opt.set_dnssec_ok(edns.dnssec_ok);
                    for option in &edns.options {
                        opt.push_raw_option(
                            option.code.into(),
                            option.data.len() as u16,
                            |target| target.append_slice(&option.data),
                        )?;
                    }
                    Ok(())
                })
                .expect("an OPT record always fits");
        }
        additional.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EdnsOption, name_from_str};

    fn query_bytes(edns: Option<&Edns>) -> Vec<u8> {
        Query::build(
            0x1234,
            &name_from_str("WwW.Example.org").unwrap(),
            Rtype::A,
            Class::IN,
            edns,
        )
    }

    fn edns0() -> Edns {
        Edns {
            udp_payload_size: 4096,
            version: 0,
            dnssec_ok: true,
            options: vec![EdnsOption {
                code: 65001,
                data: Bytes::from_static(b"xyz"),
            }],
        }
    }

    fn formerr_reason(bytes: Vec<u8>) -> &'static str {
        match Query::parse(Bytes::from(bytes)) {
            Err(QueryError::FormErr(m)) => m.reason,
            other => panic!("expected FORMERR, got {other:?}"),
        }
    }

    /// The in-place reading of common queries gives what the full
    /// validation gives, name case included.
    #[test]
    fn common_queries_read_in_place_as_in_full() {
        let mut with_flags = query_bytes(Some(&edns0()));
        with_flags[3] |= 0x30; // AD and CD
        let mut no_options = edns0();
        no_options.options.clear();
        for bytes in [
            query_bytes(None),
            query_bytes(Some(&no_options)),
            with_flags,
        ] {
            let message = Bytes::from(bytes);
            let fast = Query::parse_common(&message).expect("a common query");
            let full = Query::parse_full(message).unwrap();
            assert_eq!(fast, full);
            assert_eq!(fast.qname.as_slice(), full.qname.as_slice());
        }
    }

    /// Other shapes go to the full validation, which answers for them.
    #[test]
    fn uncommon_queries_are_left_to_the_full_validation() {
        let base = query_bytes(Some(&edns0()));
        let mut compressed = query_bytes(None);
        compressed.truncate(12);
        compressed.extend_from_slice(&[1, b'a', 0xc0, 12, 0, 1, 0, 1]);
        let mut bad_option = base.clone();
        let len = bad_option.len();
        bad_option[len - 4] = 0x00;
        bad_option[len - 3] = 0x09; // option length 9, only 3 bytes present
        let mut trailing = base.clone();
        trailing.push(0);
        let mut response = base.clone();
        response[2] |= 0x80;
        for bytes in [compressed, bad_option, trailing, response, vec![0; 11]] {
            assert!(Query::parse_common(&Bytes::from(bytes)).is_none());
        }
    }

    #[test]
    fn question_name_keeps_its_case() {
        let query = Query::parse(query_bytes(None).into()).unwrap();
        assert_eq!(query.qname.to_string(), "WwW.Example.org");
        assert_eq!(query.id, 0x1234);
        assert!(query.edns.is_none());
        assert_eq!(query.udp_limit(), 512);
    }

    #[test]
    fn edns_fields_and_unknown_options_are_read() {
        let query = Query::parse(query_bytes(Some(&edns0())).into()).unwrap();
        assert_eq!(query.edns, Some(edns0()));
        assert!(query.dnssec_ok());
        assert_eq!(query.udp_limit(), 4096);
    }

    #[test]
    fn tiny_payload_size_counts_as_512() {
        let mut edns = edns0();
        edns.udp_payload_size = 100;
        let query = Query::parse(query_bytes(Some(&edns)).into()).unwrap();
        assert_eq!(query.udp_limit(), 512);
    }

    #[test]
    fn short_header_is_dropped() {
        assert_eq!(
            Query::parse(Bytes::from_static(&[0; 11])).err(),
            Some(QueryError::Drop)
        );
    }

    #[test]
    fn response_is_dropped() {
        let mut bytes = query_bytes(None);
        bytes[2] |= 0x80;
        assert_eq!(Query::parse(bytes.into()).err(), Some(QueryError::Drop));
    }

    #[test]
    fn two_questions_are_formerr() {
        let mut bytes = query_bytes(None);
        bytes[5] = 2;
        let q = bytes[12..].to_vec();
        bytes.extend_from_slice(&q);
        assert_eq!(formerr_reason(bytes), "QDCOUNT is not 1");
    }

    #[test]
    fn no_question_is_formerr() {
        let mut bytes = query_bytes(None);
        bytes[5] = 0;
        bytes.truncate(12);
        assert_eq!(formerr_reason(bytes), "QDCOUNT is not 1");
    }

    #[test]
    fn trailing_bytes_are_formerr() {
        let mut bytes = query_bytes(None);
        bytes.push(0);
        assert_eq!(
            formerr_reason(bytes),
            "trailing bytes after the last record"
        );
    }

    #[test]
    fn count_beyond_the_message_is_formerr() {
        let mut bytes = query_bytes(None);
        bytes[11] = 1; // ARCOUNT 1, but no record follows
        assert_eq!(formerr_reason(bytes), "bad record");
    }

    #[test]
    fn compression_loop_in_question_is_formerr() {
        let mut bytes = query_bytes(None);
        bytes.truncate(12);
        bytes.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]); // points at itself
        assert_eq!(formerr_reason(bytes), "bad question");
    }

    #[test]
    fn forward_compression_pointer_is_formerr() {
        let mut bytes = query_bytes(None);
        bytes.truncate(12);
        bytes.extend_from_slice(&[0xc0, 18, 0, 1, 0, 1, 1, b'a', 0]);
        assert_eq!(formerr_reason(bytes), "bad question");
    }

    #[test]
    fn label_over_63_octets_is_formerr() {
        let mut bytes = query_bytes(None);
        bytes.truncate(12);
        bytes.push(64);
        bytes.extend_from_slice(&[b'a'; 64]);
        bytes.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(formerr_reason(bytes), "bad question");
    }

    #[test]
    fn name_over_255_octets_is_formerr() {
        let mut bytes = query_bytes(None);
        bytes.truncate(12);
        for _ in 0..5 {
            bytes.push(60);
            bytes.extend_from_slice(&[b'a'; 60]);
        }
        bytes.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(formerr_reason(bytes), "bad question");
    }

    #[test]
    fn two_opt_records_are_formerr() {
        let mut bytes = query_bytes(Some(&edns0()));
        let opt_start = bytes.len() - (11 + 7);
        let opt = bytes[opt_start..].to_vec();
        bytes.extend_from_slice(&opt);
        bytes[11] = 2;
        assert_eq!(formerr_reason(bytes), "two OPT records");
    }

    #[test]
    fn opt_with_overrunning_option_is_formerr() {
        let mut bytes = query_bytes(Some(&edns0()));
        let len = bytes.len();
        bytes[len - 4] = 0x00;
        bytes[len - 3] = 0x09; // option length 9, only 3 bytes present
        assert_eq!(formerr_reason(bytes), "bad EDNS option");
    }

    #[test]
    fn opt_in_answer_section_is_formerr() {
        let mut bytes = query_bytes(Some(&edns0()));
        bytes[7] = 1; // ANCOUNT 1
        bytes[11] = 0; // ARCOUNT 0
        assert_eq!(formerr_reason(bytes), "OPT outside the additional section");
    }

    #[test]
    fn formerr_keeps_id_and_readable_question() {
        let mut bytes = query_bytes(None);
        bytes.push(7);
        match Query::parse(bytes.into()) {
            Err(QueryError::FormErr(m)) => {
                assert_eq!(m.id, 0x1234);
                assert!(m.rd);
                assert_eq!(m.question.unwrap().1, Rtype::A);
            }
            other => panic!("{other:?}"),
        }
    }
}
