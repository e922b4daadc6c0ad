//! `tsig`: TSIG keys (RFC 8945), as CoreDNS's *tsig*: verifies signed
//! requests for its zones, signs the answers, and refuses unsigned requests
//! of the query types and opcodes it is told to require signed.
//!
//! A signed request is checked in the order of RFC 8945 §5.2 (the wire work
//! is in [`oxidns_server::proto::tsig`]):
//! - unknown key or algorithm: NOTAUTH, TSIG error BADKEY, unsigned;
//! - MAC does not verify: NOTAUTH, BADSIG, unsigned;
//! - time outside the fudge: NOTAUTH, BADTIME, signed, our time in Other Data;
//! - a TSIG that is not the last record, or malformed: FORMERR.
//!
//! A verified request goes on down the chain without its TSIG record (as
//! CoreDNS strips it, so `forward` never relays it), with the key's name in
//! the metadata as `tsig/keyname` (so `transfer` and `secondary` can demand a
//! particular key), and every message of its answer is signed as it is sent
//! ([`Request::sign_with`]): the first over the request's MAC, the rest of a
//! zone transfer chained to the one before (§5.3.1).
//!
//! The keys are put in the block's shared [`KeyRing`], where `transfer` and
//! `secondary` find the keys their `key NAME` options name.

mod keyfile;

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use oxidns_server::plugin::MessageSigner;
use oxidns_server::proto::tsig::{
    self, Algorithm, Key, KeyRing, RequestCheck, Signer, TsigRecord, error,
};
use oxidns_server::proto::{
    Name, Opcode, Rcode, Response, Rtype, in_zone, lowercase, name_from_str, name_text,
};
use oxidns_server::{
    ConfigError, Directive, Handler, HandlerFuture, Next, PluginEntry, Request, Setup,
};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "tsig",
    setup,
};

pub use tsig::METADATA_KEY;

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?.clone();
    let zones: Vec<Name> = setup
        .zones_or_block(&directive.args)?
        .iter()
        .map(lowercase)
        .collect();
    let keys = setup.shared::<KeyRing>();
    let mut require = Requirement::default();
    let mut require_opcode = Requirement::default();
    for line in &directive.block {
        match line.name.text.as_str() {
            "secret" => {
                let args = line.args_between(2, 3)?;
                let name = name_from_str(&args[0].text).map_err(|e| line.error(e))?;
                let algorithm = match args.get(2) {
                    Some(token) => Algorithm::from_name(&token.text).map_err(|e| line.error(e))?,
                    None => Algorithm::HmacSha256,
                };
                let key =
                    Key::from_base64(&name, algorithm, &args[1].text).map_err(|e| line.error(e))?;
                add_key(&keys, key, line)?;
            }
            "secrets" => {
                let path = setup.resolve_path(&line.args_between(1, 1)?[0].text);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| line.error(format!("cannot read {}: {e}", path.display())))?;
                for key in keyfile::parse(&text, &path.display().to_string())? {
                    add_key(&keys, key, line)?;
                }
            }
            "require" => {
                require =
                    Requirement::parse(line, |text| text.parse::<Rtype>().ok().map(Rtype::to_int))?
            }
            "require_opcode" => {
                require_opcode = Requirement::parse(line, |text| {
                    text.parse::<Opcode>().ok().map(|o| u16::from(o.to_int()))
                })?
            }
            _ => return Err(directive.unknown_property(line)),
        }
    }
    setup.add_handler(Arc::new(Tsig {
        zones,
        keys,
        require,
        require_opcode,
    }));
    Ok(())
}

fn add_key(keys: &KeyRing, key: Key, line: &Directive) -> Result<(), ConfigError> {
    let name = name_text(key.name());
    if !keys.insert(key) {
        return Err(line.error(format!("key '{name}' is defined twice")));
    }
    Ok(())
}

/// Which query types (or opcodes) must come signed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Requirement {
    #[default]
    None,
    All,
    Some(HashSet<u16>),
}

impl Requirement {
    /// `require all`, `require none` or a list of mnemonics.
    fn parse(
        line: &Directive,
        value: impl Fn(&str) -> Option<u16>,
    ) -> Result<Requirement, ConfigError> {
        let args = line.args_between(1, usize::MAX)?;
        match args[0].text.to_ascii_lowercase().as_str() {
            "all" if args.len() == 1 => return Ok(Requirement::All),
            "none" if args.len() == 1 => return Ok(Requirement::None),
            _ => {}
        }
        let mut set = HashSet::new();
        for arg in args {
            let code = value(&arg.text.to_ascii_uppercase()).ok_or_else(|| {
                ConfigError::at(arg, format!("{}: unknown '{}'", line.name.text, arg.text))
            })?;
            set.insert(code);
        }
        Ok(Requirement::Some(set))
    }

    fn covers(&self, code: u16) -> bool {
        match self {
            Requirement::None => false,
            Requirement::All => true,
            Requirement::Some(set) => set.contains(&code),
        }
    }
}

struct Tsig {
    zones: Vec<Name>,
    keys: Arc<KeyRing>,
    require: Requirement,
    require_opcode: Requirement,
}

impl Tsig {
    fn required(&self, request: &Request) -> bool {
        self.require.covers(request.qtype().to_int())
            || self
                .require_opcode
                .covers(u16::from(request.query.opcode.to_int()))
    }
}

impl Handler for Tsig {
    fn name(&self) -> &'static str {
        "tsig"
    }

    // Signs the encoded message, whatever its records.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        if !self.zones.iter().any(|zone| in_zone(request.qname(), zone)) {
            return next.serve(request);
        }
        let record = match tsig::find(&request.query.message) {
            Ok(record) => record,
            Err(malformed) => {
                tracing::debug!(target: "plugin/tsig", "FORMERR to {}: {malformed}", request.client);
                return ready(Response::new(Rcode::FORMERR));
            }
        };
        let Some(record) = record else {
            if self.required(request) {
                tracing::debug!(target: "plugin/tsig", "refused unsigned {} {} from {}", request.qtype(), name_text(request.qname()), request.client);
                return ready(Response::new(Rcode::REFUSED));
            }
            return next.serve(request);
        };
        let keys = &self.keys;
        let found = keys.get(&record.key_name);
        let check = tsig::verify_request(
            &request.query.message,
            &record,
            |_| found.as_deref(),
            tsig::now(),
        );
        let (key, request_mac) = match check {
            Err(malformed) => {
                tracing::debug!(target: "plugin/tsig", "FORMERR to {}: {malformed}", request.client);
                return ready(Response::new(Rcode::FORMERR));
            }
            Ok(RequestCheck::BadKey) => return refuse(request, record, error::BADKEY),
            Ok(RequestCheck::BadSig) => return refuse(request, record, error::BADSIG),
            Ok(RequestCheck::BadTime { request_mac, .. }) => {
                let key = found.expect("a key verified the MAC");
                tracing::debug!(target: "plugin/tsig", "BADTIME to {} (key {})", request.client, name_text(key.name()));
                request.sign_with(Signed(Signer::error_answer(
                    key,
                    request_mac,
                    error::BADTIME,
                    record.time_signed,
                )));
                return ready(Response::new(Rcode::NOTAUTH));
            }
            Ok(RequestCheck::Verified { request_mac, .. }) => {
                (found.expect("a key verified the MAC"), request_mac)
            }
        };
        request.metadata.set(METADATA_KEY, name_text(key.name()));
        request.query.message = Bytes::from(tsig::strip(&request.query.message, &record));
        request.sign_with(Signed(Signer::answer(key, request_mac)));
        next.serve(request)
    }
}

/// BADKEY and BADSIG: NOTAUTH with an unsigned TSIG naming the error (§5.3.2).
fn refuse(request: &mut Request, record: TsigRecord, code: u16) -> HandlerFuture<'static> {
    tracing::debug!(target: "plugin/tsig", "{} to {} (key {})", tsig::error_name(code), request.client, name_text(&record.key_name));
    request.sign_with(UnsignedError { record, code });
    ready(Response::new(Rcode::NOTAUTH))
}

fn ready(response: Response) -> HandlerFuture<'static> {
    HandlerFuture::ready(Ok(response))
}

/// Signs each message of an answer with the request's key.
struct Signed(Signer<Arc<Key>>);

impl MessageSigner for Signed {
    fn reserve(&self) -> usize {
        self.0.key().record_len()
    }

    fn sign(&mut self, message: &mut Vec<u8>) {
        self.0.sign(message, tsig::now());
    }
}

/// Adds the unsigned TSIG of a BADKEY or BADSIG answer.
struct UnsignedError {
    record: TsigRecord,
    code: u16,
}

impl MessageSigner for UnsignedError {
    fn reserve(&self) -> usize {
        self.record.key_name.as_slice().len() + self.record.algorithm.len() + 2 + 26
    }

    fn sign(&mut self, message: &mut Vec<u8>) {
        tsig::append_unsigned_error(message, &self.record, self.code);
    }
}

#[cfg(test)]
mod tests;
