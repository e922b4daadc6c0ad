//! `loadbalance`: reorders the address records of responses, as CoreDNS's
//! loadbalance plugin does.
//!
//! The handler wraps the rest of the chain: it lets the next plugin answer,
//! then reorders the answer (NOERROR only, never zone transfers):
//!
//! - `round_robin` (the default) shuffles A, AAAA and MX records, with CNAMEs
//!   kept first for stub resolvers that want them before the addresses;
//! - `weighted WEIGHTFILE` picks one address at random in proportion to the
//!   weights of the file and puts it first (A, AAAA and SRV queries);
//! - `prefer CIDR...` then moves addresses in those networks first.
//!
//! Records are reordered within their RRset: RRsets are never interleaved,
//! so a truncated response is still cut between whole RRsets.

mod weights;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use oxidns_server::duration::parse_go_duration;
use oxidns_server::plugin::HookFuture;
use oxidns_server::proto::{OptRcode, Query, Record, RecordData, Response, Rtype, WireSections};
use oxidns_server::{
    ConfigError, Directive, Handler, HandlerFuture, Lifecycle, Next, PluginEntry, Request, Setup,
};
use rand::Rng;
use rand::seq::SliceRandom;
use tokio_util::sync::CancellationToken;

pub use weights::{WeightFile, Weights};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "loadbalance",
    setup,
};

/// How often the weight file is checked unless `reload` says otherwise.
const DEFAULT_RELOAD: Duration = Duration::from_secs(30);

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?.clone();
    let args = directive.arg_texts();
    let mut weight_path = None;
    match args.as_slice() {
        [] | ["round_robin"] => {}
        ["round_robin", ..] => return Err(directive.error("round_robin takes no arguments")),
        ["weighted"] => return Err(directive.error("missing weight file argument")),
        ["weighted", path] => weight_path = Some(setup.resolve_path(path)),
        ["weighted", ..] => return Err(directive.error("unexpected argument(s)")),
        [policy, ..] => return Err(directive.error(format!("unknown policy: {policy}"))),
    }
    let mut reload = DEFAULT_RELOAD;
    let mut prefer = Vec::new();
    for line in &directive.block {
        match line.name.text.as_str() {
            "reload" if weight_path.is_none() => {
                return Err(line.error("only the weighted policy has a weight file to reload"));
            }
            "reload" => {
                let text = &line.args_between(1, 1)?[0].text;
                reload = parse_go_duration(text)
                    .ok_or_else(|| line.error(format!("invalid reload duration '{text}'")))?;
            }
            "prefer" => {
                for arg in line.args_between(1, usize::MAX)? {
                    let cidr = Cidr::parse(&arg.text)
                        .ok_or_else(|| line.error(format!("invalid CIDR \"{}\"", arg.text)))?;
                    prefer.push(cidr);
                }
            }
            _ => return Err(directive.unknown_property(line)),
        }
    }
    let policy = match weight_path {
        None => Policy::RoundRobin,
        Some(path) => Policy::Weighted(Arc::new(load_weights(&directive, path, reload)?)),
    };
    let plugin = Arc::new(LoadBalance {
        policy,
        prefer,
        stop: CancellationToken::new(),
    });
    setup.add_handler(plugin.clone());
    setup.add_lifecycle(plugin);
    Ok(())
}

/// Reads the weight file at setup, so that `-check` reports its errors. A
/// file that cannot be read is only a warning when it will be read again.
fn load_weights(
    directive: &Directive,
    path: std::path::PathBuf,
    reload: Duration,
) -> Result<WeightFile, ConfigError> {
    let file = WeightFile::new(path, reload);
    match std::fs::read(&file.path) {
        Ok(bytes) => {
            file.update(bytes).map_err(|(line, message)| {
                ConfigError::new(file.path.display().to_string(), line, message)
            })?;
        }
        Err(e) if !reload.is_zero() => tracing::warn!(
            target: "plugin/loadbalance",
            "Failed to open weight file {}: {e}. Will try again in {}",
            file.path.display(),
            oxidns_server::duration::format_go_duration(reload)
        ),
        Err(e) => {
            return Err(directive.error(format!(
                "cannot open weight file {}: {e}",
                file.path.display()
            )));
        }
    }
    Ok(file)
}

enum Policy {
    RoundRobin,
    Weighted(Arc<WeightFile>),
}

/// A network for `prefer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `ADDRESS/PREFIX`, as Go's `net.ParseCIDR` reads it.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = text.split_once('/')?;
        let network: IpAddr = addr.parse().ok()?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix: u8 = prefix.parse().ok()?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        (prefix <= bits).then_some(Cidr { network, prefix })
    }

    /// Whether `ip` is in the network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

struct LoadBalance {
    policy: Policy,
    prefer: Vec<Cidr>,
    stop: CancellationToken,
}

impl Handler for LoadBalance {
    fn name(&self) -> &'static str {
        "loadbalance"
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        let qtype = request.qtype();
        if qtype == Rtype::AXFR || qtype == Rtype::IXFR {
            return next.serve(request);
        }
        // The question, for answers in wire form that must be decoded.
        let query = request.query.clone();
        next.serve(request).map(move |result| {
            let mut response = result?;
            if response.rcode == OptRcode::NOERROR {
                self.reorder_wire_or_records(&query, &mut response);
            }
            Ok(response)
        })
    }

    /// Round robin alone works on answers in wire form (zones' and the
    /// cache's stored answers, which then stay a copy of bytes); the other
    /// policies read addresses.
    fn reads_answers(&self) -> bool {
        !self.wire_round_robin()
    }
}

impl LoadBalance {
    fn wire_round_robin(&self) -> bool {
        matches!(self.policy, Policy::RoundRobin) && self.prefer.is_empty()
    }

    fn reorder_wire_or_records(&self, query: &Query, response: &mut Response) {
        if let Some(wire) = &response.wire {
            let shuffled = self
                .wire_round_robin()
                .then(|| round_robin_wire(wire, &mut rand::rng()))
                .flatten();
            if let Some(shuffled) = shuffled {
                response.wire = Some(shuffled);
                return;
            }
            // Shapes the wire form cannot reorder in place: as records.
            if !response.decode_wire(query) {
                return;
            }
        }
        self.reorder(query.qtype, response);
    }

    fn reorder(&self, qtype: Rtype, response: &mut Response) {
        match &self.policy {
            Policy::RoundRobin => {
                let mut rng = rand::rng();
                for section in [
                    &mut response.answer,
                    &mut response.authority,
                    &mut response.additional,
                ] {
                    round_robin(section, &mut rng);
                }
            }
            Policy::Weighted(file) => {
                if matches!(qtype, Rtype::A | Rtype::AAAA | Rtype::SRV) {
                    let weights = file.weights();
                    let mut rng = rand::rng();
                    for section in [&mut response.answer, &mut response.additional] {
                        weighted(section, &weights, |total| rng.random_range(0..total));
                    }
                }
            }
        }
        if !self.prefer.is_empty() {
            prefer(&mut response.answer, &self.prefer);
            prefer(&mut response.additional, &self.prefer);
        }
    }
}

impl Lifecycle for LoadBalance {
    fn startup(&self) -> HookFuture<'_, Result<(), String>> {
        if let Policy::Weighted(file) = &self.policy
            && !file.reload.is_zero()
        {
            tokio::spawn(weights::watch(file.clone(), self.stop.clone()));
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn shutdown(&self) -> HookFuture<'_, ()> {
        self.stop.cancel();
        Box::pin(std::future::ready(()))
    }
}

/// A section taken apart as CoreDNS's loadbalance sees it: CNAMEs, address
/// RRsets, MX RRsets, and everything else, each in the order received.
#[derive(Default)]
struct Parts {
    cname: Vec<Record>,
    address: Vec<Vec<Record>>,
    mx: Vec<Vec<Record>>,
    rest: Vec<Record>,
}

/// Which of [`Parts`] a record of this type goes to; in the order
/// [`round_robin`] puts them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Cname,
    Rest,
    Address,
    Mx,
}

impl Part {
    fn of(rtype: Rtype) -> Part {
        match rtype {
            Rtype::CNAME => Part::Cname,
            Rtype::A | Rtype::AAAA => Part::Address,
            Rtype::MX => Part::Mx,
            _ => Part::Rest,
        }
    }
}

impl Parts {
    fn split(records: Vec<Record>) -> Parts {
        let mut parts = Parts::default();
        for record in records {
            match Part::of(record.rtype()) {
                Part::Cname => parts.cname.push(record),
                Part::Address => add_to_rrset(&mut parts.address, record),
                Part::Mx => add_to_rrset(&mut parts.mx, record),
                Part::Rest => parts.rest.push(record),
            }
        }
        parts
    }
}

/// Adds `record` to its RRset (same owner, type and class), or starts one.
fn add_to_rrset(rrsets: &mut Vec<Vec<Record>>, record: Record) {
    let rrset = rrsets.iter_mut().find(|rrset| {
        let first = &rrset[0];
        first.rtype() == record.rtype()
            && first.class() == record.class()
            && *first.owner() == *record.owner()
    });
    match rrset {
        Some(rrset) => rrset.push(record),
        None => rrsets.push(vec![record]),
    }
}

/// CNAMEs, other records, then the address and MX RRsets, each shuffled.
fn round_robin(section: &mut Vec<Record>, rng: &mut impl Rng) {
    if section.len() <= 1 {
        return;
    }
    let Parts {
        mut cname,
        mut address,
        mut mx,
        rest,
    } = Parts::split(std::mem::take(section));
    for rrset in address.iter_mut().chain(mx.iter_mut()) {
        rrset.shuffle(rng);
    }
    cname.extend(rest);
    cname.extend(address.into_iter().flatten());
    cname.extend(mx.into_iter().flatten());
    *section = cname;
}

/// [`round_robin`] on sections in wire form, where it only has to shuffle
/// records in place: each section's RRsets already in [`Parts`]' order, no
/// address or MX RRset in two pieces, and no MX RRset of more than one
/// record (MX data holds names that later records may point to). `None`
/// for any other shape, which then goes the way of records.
fn round_robin_wire(wire: &WireSections, rng: &mut impl Rng) -> Option<WireSections> {
    let mut previous: Option<(u8, Part)> = None;
    for (index, rrset) in wire.rrsets().enumerate() {
        let part = Part::of(rrset.rtype);
        if previous.is_some_and(|(section, before)| section == rrset.section && before > part) {
            return None;
        }
        previous = Some((rrset.section, part));
        if part == Part::Mx && rrset.records > 1 {
            return None;
        }
        // Another piece of the same RRset earlier in the section (owners
        // written out in full cannot be compared here: taken as the same).
        let split = part >= Part::Address
            && wire.rrsets().take(index).any(|other| {
                other.section == rrset.section
                    && other.rtype == rrset.rtype
                    && (other.owner_pointer.is_none() || other.owner_pointer == rrset.owner_pointer)
            });
        if split {
            return None;
        }
    }
    wire.shuffled(
        |rrset| Part::of(rrset.rtype) == Part::Address,
        |below| rng.random_range(0..below),
    )
}

/// Puts one address first, picked at random in proportion to its weight:
/// CNAMEs, other records, the picked address's RRset (the picked address
/// first), the other address RRsets, then MX. A section without addresses is
/// left as it is. `random_below(total)` gives a number in `0..total`.
fn weighted(section: &mut Vec<Record>, weights: &Weights, random_below: impl FnOnce(u32) -> u32) {
    if !section.iter().any(|r| address_of(r).is_some()) {
        return;
    }
    let Parts {
        mut cname,
        mut address,
        mx,
        rest,
    } = Parts::split(std::mem::take(section));
    let weight_of = |record: &Record| {
        address_of(record).map_or(1, |ip| u32::from(weights.weight(record.owner(), ip)))
    };
    let total: u32 = address.iter().flatten().map(weight_of).sum();
    let mut pick = random_below(total);
    let mut chosen = (0, 0);
    'find: for (set, rrset) in address.iter().enumerate() {
        for (index, record) in rrset.iter().enumerate() {
            let weight = weight_of(record);
            if pick < weight {
                chosen = (set, index);
                break 'find;
            }
            pick -= weight;
        }
    }
    let (set, index) = chosen;
    let mut top = address.remove(set);
    let first = top.remove(index);
    top.insert(0, first);
    address.insert(0, top);
    cname.extend(rest);
    cname.extend(address.into_iter().flatten());
    cname.extend(mx.into_iter().flatten());
    *section = cname;
}

/// CNAMEs, the address RRsets with the addresses in `subnets` first (in the
/// order of the subnets, otherwise as they were), MX, then the rest.
fn prefer(section: &mut Vec<Record>, subnets: &[Cidr]) {
    if section.is_empty() {
        return;
    }
    let Parts {
        mut cname,
        mut address,
        mx,
        rest,
    } = Parts::split(std::mem::take(section));
    for rrset in &mut address {
        rrset.sort_by_key(|record| {
            address_of(record)
                .and_then(|ip| subnets.iter().position(|net| net.contains(ip)))
                .unwrap_or(subnets.len())
        });
    }
    cname.extend(address.into_iter().flatten());
    cname.extend(mx.into_iter().flatten());
    cname.extend(rest);
    *section = cname;
}

fn address_of(record: &Record) -> Option<IpAddr> {
    match record.data() {
        RecordData::A(a) => Some(IpAddr::V4(a.addr())),
        RecordData::Aaaa(aaaa) => Some(IpAddr::V6(aaaa.addr())),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
