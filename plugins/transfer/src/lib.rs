//! `transfer`: outgoing zone transfers for the zones of `file` and `auto`
//! (CoreDNS's *transfer*), with IXFR from a journal and NOTIFY.
//!
//! - AXFR over TCP (RFC 5936): the SOA, every other record, the SOA again,
//!   in as many messages as it takes (each filled to about 16 KiB, names
//!   compressed), sent back to back through [`Request::follow_with`]. The
//!   connection stays open for further queries.
//! - IXFR over TCP (RFC 1995): the changes since the client's serial,
//!   condensed from the zone's [`Journal`], or the whole zone in AXFR form
//!   when the journal does not reach back that far; a single SOA when the
//!   client is up to date.
//! - Over UDP, AXFR is refused (RFC 5936 §4.2: AXFR is TCP-only) and IXFR gets
//!   the single current SOA (RFC 1995 §2: a client that is behind then asks
//!   again over TCP).
//! - Only clients listed with `to` (addresses, networks, `*`) get a
//!   transfer; others get REFUSED.
//! - NOTIFY (RFC 1996) to every address listed with `to` at start-up and
//!   whenever a zone swaps in a version with a new serial, over UDP, tried up
//!   to five times with the wait doubling from one second.
//!
//! - With `key NAME` (a key of the block's `tsig` plugin), transfers are
//!   given only to requests that `tsig` verified with that key (others get
//!   REFUSED), and NOTIFY is signed with it (RFC 8945); its answer must
//!   verify.
//!
//! Zones are found in the block's [`ZoneSources`], where `file` and `auto`
//! register theirs; their reloads reach us through a swap observer, which
//! appends the difference to the journal before any NOTIFY goes out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxidns_server::plugin::HookFuture;
use oxidns_server::proto::domain::base::message_builder::MessageBuilder;
use oxidns_server::proto::domain::base::{Message, ParsedName};
use oxidns_server::proto::domain::rdata::Soa;
use oxidns_server::proto::tsig::{self, Key, KeyRing, Verifier, VerifyError};
use oxidns_server::proto::{
    Class, Name, Opcode, Rcode, Record, Response, Rtype, lowercase, name_from_str, name_text,
};
use oxidns_server::{
    ConfigError, Handler, HandlerFuture, Lifecycle, Next, PluginEntry, Request, Setup, Transport,
};
use oxidns_zone::journal::{DEFAULT_MAX_DIFFS, serial_older, soa, soa_serial};
use oxidns_zone::{Diff, Journal, ServedZone, Zone, ZoneSources};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "transfer",
    setup,
};

/// A transfer message is closed once its records reach this many bytes
/// (uncompressed): well under the 64 KiB a TCP message may hold.
const MESSAGE_BYTES: usize = 16 * 1024;
/// …or this many records.
const MESSAGE_RECORDS: usize = 1000;
/// NOTIFY: tries, and the wait for an answer to the first (doubled after each).
const NOTIFY_TRIES: u32 = 5;
const NOTIFY_FIRST_WAIT: Duration = Duration::from_secs(1);

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    // `tsig` sets up first (plugin order): its keys are here for `key`.
    let keys = setup.shared::<KeyRing>();
    let mut rules = Vec::new();
    for directive in setup.directives() {
        let zones = setup
            .zones_or_block(&directive.args)?
            .iter()
            .map(lowercase)
            .collect();
        let mut to = Vec::new();
        let mut journal = None;
        let mut key = None;
        for line in &directive.block {
            match line.name.text.as_str() {
                "to" => {
                    for arg in line.args_between(1, usize::MAX)? {
                        to.push(Peer::parse(&arg.text).ok_or_else(|| {
                            line.error(format!("invalid address '{}'", arg.text))
                        })?);
                    }
                }
                "journal" => {
                    let dir = &line.args_between(1, 1)?[0].text;
                    journal = Some(setup.resolve_path(dir));
                }
                "key" => {
                    let text = &line.args_between(1, 1)?[0].text;
                    let name = name_from_str(text).map_err(|e| line.error(e))?;
                    key = Some(keys.get(&name).ok_or_else(|| {
                        line.error(format!(
                            "no TSIG key '{text}': define it with the tsig plugin's secret or secrets in this server block"
                        ))
                    })?);
                }
                _ => return Err(directive.unknown_property(line)),
            }
        }
        if to.is_empty() {
            return Err(directive.error("'to' is required"));
        }
        rules.push(Rule {
            zones,
            to,
            journal,
            key,
        });
    }
    let transfer = Arc::new(Transfer {
        rules: Arc::new(rules),
        sources: setup.shared::<ZoneSources>(),
        journals: Arc::new(Journals::default()),
        stop: CancellationToken::new(),
    });
    setup.add_handler(transfer.clone());
    setup.add_lifecycle(transfer);
    Ok(())
}

/// Who may transfer, and who is notified.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Peer {
    /// `*`: anyone may transfer; nobody is notified.
    Any,
    /// An address (port 53 unless given): may transfer, and is notified.
    Host(SocketAddr),
    /// A network in CIDR notation: may transfer; not notified.
    Network(IpAddr, u8),
}

impl Peer {
    fn parse(text: &str) -> Option<Peer> {
        if text == "*" {
            return Some(Peer::Any);
        }
        if let Some((address, prefix)) = text.split_once('/') {
            let address: IpAddr = address.parse().ok()?;
            let prefix: u8 = prefix.parse().ok()?;
            let bits = if address.is_ipv4() { 32 } else { 128 };
            return (prefix <= bits).then_some(Peer::Network(address.to_canonical(), prefix));
        }
        if let Ok(address) = text.parse::<IpAddr>() {
            return Some(Peer::Host(SocketAddr::new(address.to_canonical(), 53)));
        }
        let address: SocketAddr = text.parse().ok()?;
        Some(Peer::Host(SocketAddr::new(
            address.ip().to_canonical(),
            address.port(),
        )))
    }

    fn allows(&self, client: IpAddr) -> bool {
        match self {
            Peer::Any => true,
            Peer::Host(address) => address.ip() == client,
            Peer::Network(network, prefix) => in_network(client, *network, *prefix),
        }
    }
}

fn in_network(address: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (address, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// One `transfer` directive.
struct Rule {
    zones: Vec<Name>,
    to: Vec<Peer>,
    /// Where journals are kept; next to the zone file when `None`.
    journal: Option<PathBuf>,
    /// The TSIG key transfers must be signed with and NOTIFY is signed with.
    key: Option<Arc<Key>>,
}

impl Rule {
    fn allows(&self, client: IpAddr) -> bool {
        self.to.iter().any(|peer| peer.allows(client))
    }

    fn notify_targets(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.to.iter().filter_map(|peer| match peer {
            Peer::Host(address) => Some(*address),
            _ => None,
        })
    }
}

/// The directive whose zones match `name` longest.
fn rule_for<'r>(rules: &'r [Rule], name: &Name) -> Option<&'r Rule> {
    rules
        .iter()
        .flat_map(|rule| rule.zones.iter().map(move |zone| (zone, rule)))
        .filter(|(zone, _)| name.ends_with(*zone))
        .max_by_key(|(zone, _)| zone.label_count())
        .map(|(_, rule)| rule)
}

/// The journals of the zones we transfer, by apex (lower case).
#[derive(Default)]
struct Journals(Mutex<HashMap<Name, Arc<Mutex<Journal>>>>);

impl Journals {
    /// The zone's journal, read from disk the first time (blocking).
    fn of(&self, zone: &ServedZone, rule: &Rule) -> Arc<Mutex<Journal>> {
        let apex = lowercase(&zone.apex);
        let mut journals = self.0.lock().unwrap_or_else(|e| e.into_inner());
        journals
            .entry(apex)
            .or_insert_with(|| {
                let path = Journal::path_for(&zone.path, rule.journal.as_deref());
                let journal = Journal::open(&path, DEFAULT_MAX_DIFFS).unwrap_or_else(|e| {
                    tracing::warn!(target: "plugin/transfer", "cannot read journal {}: {e}; starting an empty one", path.display());
                    // An empty history; appends will try to create the file anew.
                    let _ = std::fs::remove_file(&path);
                    Journal::open(&path, DEFAULT_MAX_DIFFS).expect("a missing file opens empty")
                });
                Arc::new(Mutex::new(journal))
            })
            .clone()
    }
}

struct Transfer {
    rules: Arc<Vec<Rule>>,
    sources: Arc<ZoneSources>,
    journals: Arc<Journals>,
    stop: CancellationToken,
}

impl Handler for Transfer {
    fn name(&self) -> &'static str {
        "transfer"
    }

    // Makes its own answers only.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        let qtype = request.qtype();
        if qtype != Rtype::AXFR && qtype != Rtype::IXFR {
            return next.serve(request);
        }
        let Some(rule) = rule_for(&self.rules, request.qname()) else {
            return next.serve(request);
        };
        let client = request.client;
        if !rule.allows(client.ip()) {
            tracing::info!(target: "plugin/transfer", "refused transfer of {} to {client}: not listed in 'to'", name_text(request.qname()));
            return ready(Response::new(Rcode::REFUSED));
        }
        if let Some(key) = &rule.key
            && request.metadata.get(tsig::METADATA_KEY) != Some(name_text(key.name()).as_str())
        {
            tracing::info!(target: "plugin/transfer", "refused transfer of {} to {client}: not signed with key {}", name_text(request.qname()), name_text(key.name()));
            return ready(Response::new(Rcode::REFUSED));
        }
        if qtype == Rtype::AXFR && request.transport == Transport::Udp {
            return ready(Response::new(Rcode::REFUSED));
        }
        let Some(served) = self.sources.zone(request.qname()) else {
            return next.serve_or_refuse(request);
        };
        let zone = served.current();
        let Some(current_soa) = soa(&zone) else {
            return ready(Response::new(Rcode::SERVFAIL));
        };
        let current = zone.serial().into_int();
        let mut plan = Plan::Full;
        if qtype == Rtype::IXFR {
            let Some(theirs) = client_serial(&request.query.message[..]) else {
                return ready(Response::new(Rcode::FORMERR));
            };
            if request.transport == Transport::Udp || !serial_older(theirs, current) {
                // Up to date, or (over UDP) "ask again over TCP".
                let mut response = Response::new(Rcode::NOERROR);
                response.authoritative = true;
                response.answer.push(current_soa);
                return ready(response);
            }
            let journal = self.journals.of(&served, rule);
            let changes = journal
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .changes_since(theirs, current);
            match changes {
                Some(diff) => plan = Plan::Incremental(Box::new(diff)),
                None => {
                    tracing::info!(target: "plugin/transfer", "no history of {} from serial {theirs}: sending the whole zone to {client}", name_text(&zone.apex().clone()))
                }
            }
        }
        let (sender, mut receiver) = mpsc::channel(2);
        tokio::spawn(produce(zone, current_soa, plan, sender, client));
        HandlerFuture::new(async move {
            let first = receiver.recv().await.unwrap_or_else(|| {
                let mut response = Response::new(Rcode::NOERROR);
                response.authoritative = true;
                response
            });
            request.follow_with(receiver);
            Ok(first)
        })
    }
}

fn ready(response: Response) -> HandlerFuture<'static> {
    HandlerFuture::ready(Ok(response))
}

/// What a transfer sends.
enum Plan {
    /// The whole zone (AXFR, or IXFR falling back to it).
    Full,
    /// The changes since the client's version (IXFR).
    Incremental(Box<Diff>),
}

/// The serial of the SOA in the authority section of an IXFR query.
fn client_serial(message: &[u8]) -> Option<u32> {
    let message = Message::from_octets(message).ok()?;
    for record in message.authority().ok()? {
        let record = record.ok()?;
        if record.rtype() == Rtype::SOA {
            let soa = record.to_record::<Soa<ParsedName<&[u8]>>>().ok()??;
            return Some(soa.data().serial().into_int());
        }
    }
    None
}

/// Sends the messages of one transfer to `sender`, until done or the
/// connection is gone.
async fn produce(
    zone: Arc<Zone>,
    current_soa: Record,
    plan: Plan,
    sender: mpsc::Sender<Response>,
    client: SocketAddr,
) {
    let apex = name_text(zone.apex());
    let mut chunker = Chunker::new(sender);
    let sent = match &plan {
        Plan::Full => {
            let records = std::iter::once(current_soa.clone())
                .chain(zone.records().filter(|r| r.rtype() != Rtype::SOA))
                .chain(std::iter::once(current_soa.clone()));
            chunker.send_all(records).await
        }
        Plan::Incremental(diff) => {
            let records = std::iter::once(&current_soa)
                .chain(std::iter::once(&diff.old_soa))
                .chain(&diff.removed)
                .chain(std::iter::once(&diff.new_soa))
                .chain(&diff.added)
                .chain(std::iter::once(&current_soa));
            chunker.send_all(records).await
        }
    };
    match (sent, &plan) {
        (Some(count), Plan::Full) => {
            tracing::info!(target: "plugin/transfer", "Outgoing transfer of {count} records of zone \"{apex}\" to {client} for {} SOA serial", zone.serial().into_int())
        }
        (Some(count), Plan::Incremental(diff)) => {
            tracing::info!(target: "plugin/transfer", "Outgoing incremental transfer of {count} records of zone \"{apex}\" to {client} from serial {} to {}", diff.from(), diff.to())
        }
        (None, _) => {
            tracing::info!(target: "plugin/transfer", "transfer of zone \"{apex}\" to {client} ended early: connection gone")
        }
    }
}

/// Groups records into messages.
struct Chunker {
    sender: mpsc::Sender<Response>,
    current: Response,
    bytes: usize,
    scratch: Vec<u8>,
}

impl Chunker {
    fn new(sender: mpsc::Sender<Response>) -> Chunker {
        Chunker {
            sender,
            current: message(),
            bytes: 0,
            scratch: Vec::with_capacity(512),
        }
    }

    /// Sends every record; the count sent, or `None` if the receiver is gone.
    async fn send_all<R: std::borrow::Borrow<Record>>(
        &mut self,
        records: impl Iterator<Item = R>,
    ) -> Option<usize> {
        let mut count = 0;
        for record in records {
            // Owned records come from the zone, decoded as they are sent.
            let record = record.borrow();
            self.scratch.clear();
            let _ = record.compose(&mut self.scratch);
            let size = self.scratch.len();
            if !self.current.answer.is_empty()
                && (self.bytes + size > MESSAGE_BYTES
                    || self.current.answer.len() >= MESSAGE_RECORDS)
            {
                let full = std::mem::replace(&mut self.current, message());
                self.bytes = 0;
                self.sender.send(full).await.ok()?;
            }
            self.current.answer.push(record.clone());
            self.bytes += size;
            count += 1;
        }
        let last = std::mem::replace(&mut self.current, message());
        self.sender.send(last).await.ok()?;
        Some(count)
    }
}

fn message() -> Response {
    let mut response = Response::new(Rcode::NOERROR);
    response.authoritative = true;
    response
}

impl Lifecycle for Transfer {
    fn startup(&self) -> HookFuture<'_, Result<(), String>> {
        let (notices, queue) = mpsc::unbounded_channel::<(Name, Record)>();
        tokio::spawn(notifier(queue, self.rules.clone(), self.stop.clone()));
        // Journal first, then NOTIFY: a secondary that asks at once finds the diff.
        let rules = self.rules.clone();
        let journals = self.journals.clone();
        let observer_notices = notices.clone();
        self.sources
            .on_swap(Arc::new(move |served: &ServedZone, old: &Arc<Zone>, new: &Arc<Zone>| {
                let Some(rule) = rule_for(&rules, &served.apex) else {
                    return;
                };
                // The same version twice: newly served, nothing to journal.
                if !Arc::ptr_eq(old, new)
                    && let Some(diff) = Diff::between(old, new)
                {
                    let journal = journals.of(served, rule);
                    let mut journal = journal.lock().unwrap_or_else(|e| e.into_inner());
                    if let Err(e) = journal.append(diff) {
                        tracing::warn!(target: "plugin/transfer", "cannot write the journal of {}: {e}; the change is kept in memory", name_text(&served.apex));
                    }
                }
                if let Some(record) = soa(new) {
                    let _ = observer_notices.send((served.apex.clone(), record));
                }
            }));
        // Tell the secondaries what we serve now (as CoreDNS does at start-up).
        let sources = self.sources.clone();
        let rules = self.rules.clone();
        let journals = self.journals.clone();
        Box::pin(async move {
            let zones = sources.zones();
            let opened = tokio::task::spawn_blocking(move || {
                let mut found = Vec::new();
                for served in zones {
                    if let Some(rule) = rule_for(&rules, &served.apex) {
                        journals.of(&served, rule);
                        if let Some(record) = soa(&served.current()) {
                            found.push((served.apex.clone(), record));
                        }
                    }
                }
                found
            })
            .await
            .unwrap_or_default();
            for notice in opened {
                let _ = notices.send(notice);
            }
            Ok(())
        })
    }

    fn shutdown(&self) -> HookFuture<'_, ()> {
        self.stop.cancel();
        Box::pin(std::future::ready(()))
    }
}

/// Sends NOTIFY for every zone change queued, each target in its own task.
async fn notifier(
    mut queue: mpsc::UnboundedReceiver<(Name, Record)>,
    rules: Arc<Vec<Rule>>,
    stop: CancellationToken,
) {
    loop {
        let (apex, record) = tokio::select! {
            _ = stop.cancelled() => return,
            notice = queue.recv() => match notice {
                Some(notice) => notice,
                None => return,
            },
        };
        let Some(rule) = rule_for(&rules, &apex) else {
            continue;
        };
        for target in rule.notify_targets() {
            let stop = stop.clone();
            let apex = apex.clone();
            let record = record.clone();
            let key = rule.key.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = notify(&apex, &record, target, NOTIFY_FIRST_WAIT, key) => {}
                }
            });
        }
    }
}

/// Sends one NOTIFY (RFC 1996 §3.7) until it is answered or the tries run out;
/// whether the secondary answered. With a key, the NOTIFY is signed and
/// only an answer that verifies (or reports a TSIG error) counts.
async fn notify(
    apex: &Name,
    soa: &Record,
    target: SocketAddr,
    first_wait: Duration,
    key: Option<Arc<Key>>,
) -> bool {
    let zone = name_text(apex);
    let serial = soa_serial(soa);
    let bind: SocketAddr = if target.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = match tokio::net::UdpSocket::bind(bind).await {
        Ok(socket) => socket,
        Err(e) => {
            tracing::warn!(target: "plugin/transfer", "cannot send NOTIFY for {zone} to {target}: {e}");
            return false;
        }
    };
    let id: u16 = rand::random();
    let mut message = notify_message(id, apex, soa);
    let request_mac = key
        .as_ref()
        .map(|key| tsig::sign_request(key, &mut message, tsig::now()));
    let mut wait = first_wait;
    let mut buffer = vec![0u8; 4096];
    for _ in 0..NOTIFY_TRIES {
        if socket.send_to(&message, target).await.is_ok() {
            let deadline = tokio::time::Instant::now() + wait;
            // Read until our answer comes or the wait is over; others are ignored.
            while let Ok(Ok((len, from))) =
                tokio::time::timeout_at(deadline, socket.recv_from(&mut buffer)).await
            {
                if from.ip().to_canonical() != target.ip() {
                    continue;
                }
                let Ok(reply) = Response::parse(&buffer[..len]) else {
                    continue;
                };
                if reply.id != id || reply.opcode != Opcode::NOTIFY {
                    continue;
                }
                if let (Some(key), Some(mac)) = (&key, &request_mac) {
                    match Verifier::new(key, mac).verify(&buffer[..len], tsig::now()) {
                        Ok(_) => {}
                        Err(VerifyError::ServerError(code)) => {
                            tracing::warn!(target: "plugin/transfer", "NOTIFY for \"{zone}\" to {target} answered TSIG error {}", tsig::error_name(code));
                            return true;
                        }
                        // Not from the holder of the key: not our answer.
                        Err(e) => {
                            tracing::debug!(target: "plugin/transfer", "NOTIFY answer for \"{zone}\" from {target} ignored: {e}");
                            continue;
                        }
                    }
                }
                let rcode = reply.response.header_rcode();
                if rcode == Rcode::NOERROR {
                    tracing::info!(target: "plugin/transfer", "Sent NOTIFY for \"{zone}\" serial {serial} to {target}");
                } else {
                    tracing::warn!(target: "plugin/transfer", "NOTIFY for \"{zone}\" to {target} answered {rcode}");
                }
                return true;
            }
        } else {
            tokio::time::sleep(wait).await;
        }
        wait *= 2;
    }
    tracing::warn!(target: "plugin/transfer", "no answer to NOTIFY for \"{zone}\" serial {serial} from {target} after {NOTIFY_TRIES} tries");
    false
}

/// A NOTIFY message: opcode NOTIFY, AA, the zone's SOA as question and,
/// as a hint, its current SOA in the answer (RFC 1996 §3.7).
fn notify_message(id: u16, apex: &Name, soa: &Record) -> Vec<u8> {
    let mut builder = MessageBuilder::new_vec();
    let header = builder.header_mut();
    header.set_id(id);
    header.set_opcode(Opcode::NOTIFY);
    header.set_aa(true);
    let mut question = builder.question();
    question
        .push((apex, Rtype::SOA, Class::IN))
        .expect("a question fits");
    let mut answer = question.answer();
    answer.push(soa).expect("an SOA fits");
    answer.finish()
}

#[cfg(test)]
mod tests;
