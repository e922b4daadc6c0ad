//! `ratelimit`: response rate limiting (RRL) in the model of BIND's
//! `rate-limit` and Knot's `rrl`, against reflection and amplification
//! attacks over UDP.
//!
//! Each client network (/24 for IPv4, /56 for IPv6 by default) has a token
//! account per kind of response (answers, NXDOMAIN, errors), credited
//! `RATE` tokens a second up to `RATE`, debited one per response, and
//! allowed to fall to `-RATE × window` so that a network that keeps
//! flooding stays limited. A response beyond the rate is dropped, except
//! every `slip`-th, which is sent empty with TC=1 so that a real client
//! behind a spoofed flood can retry over TCP. TCP, exempt networks and
//! queries with a valid server cookie (`cookies`) are never limited.
//!
//! The accounts live in a table of fixed capacity (`max_table_size`): a
//! flood from many networks evicts the least used accounts, never grows
//! memory.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ipnet::IpNet;
use oxidns_server::proto::{Rcode, Response};
use oxidns_server::{
    ConfigError, Directive, Handler, HandlerFuture, Next, PluginEntry, PluginError, Request, Setup,
    Token, Transport,
};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "ratelimit",
    setup,
};

/// The metadata `cookies` sets on requests with a valid server cookie.
const VALID_COOKIE: &str = "cookies/valid";

/// What the accounts are kept apart by (BIND's separate rates).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Answer,
    Nxdomain,
    Error,
}

impl Kind {
    fn of(rcode: Rcode) -> Kind {
        match rcode {
            Rcode::NOERROR => Kind::Answer,
            Rcode::NXDOMAIN => Kind::Nxdomain,
            _ => Kind::Error,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Limits {
    /// Responses a second per network and kind; 0 is no limit.
    responses: u32,
    nxdomains: u32,
    errors: u32,
    /// Seconds of debt a flooding network may run up (BIND's `window`).
    window: u32,
    /// Every `slip`-th limited response is sent truncated; 0 drops all.
    slip: u32,
    ipv4_prefix: u8,
    ipv6_prefix: u8,
    exempt: Vec<IpNet>,
    table_size: usize,
    /// Count what would be limited, but send everything.
    log_only: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            responses: 20,
            nxdomains: 20,
            errors: 20,
            window: 15,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: Vec::new(),
            table_size: 100_000,
            log_only: false,
        }
    }
}

impl Limits {
    fn rate(&self, kind: Kind) -> u32 {
        match kind {
            Kind::Answer => self.responses,
            Kind::Nxdomain => self.nxdomains,
            Kind::Error => self.errors,
        }
    }
}

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?;
    let limits = parse(directive)?;
    setup.add_handler(Arc::new(RateLimit::new(limits)));
    Ok(())
}

fn number<T>(line: &Directive, min: T, max: T) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let arg = &line.args_between(1, 1)?[0];
    match arg.text.parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(line.error(format!(
            "'{}' is not a number from {min} to {max}",
            arg.text
        ))),
    }
}

fn parse_net(token: &Token) -> Result<IpNet, ConfigError> {
    let text = token.text.as_str();
    let net = if text.contains('/') {
        IpNet::from_str(text).ok().map(|net| net.trunc())
    } else {
        IpAddr::from_str(text).ok().map(IpNet::from)
    };
    net.ok_or_else(|| ConfigError::at(token, format!("ratelimit: '{text}' is not a network")))
}

fn parse(directive: &Directive) -> Result<Limits, ConfigError> {
    let mut limits = Limits::default();
    let (mut nxdomains, mut errors) = (None, None);
    if let Some(rate) = directive.args_between(0, 1)?.first() {
        limits.responses = rate.text.parse().map_err(|_| {
            directive.error(format!("'{}' is not a number of responses", rate.text))
        })?;
    }
    for line in &directive.block {
        match line.name.text.as_str() {
            "responses_per_second" => limits.responses = number(line, 0, 1_000_000)?,
            "nxdomains_per_second" => nxdomains = Some(number(line, 0, 1_000_000)?),
            "errors_per_second" => errors = Some(number(line, 0, 1_000_000)?),
            "window" => limits.window = number(line, 1, 3600)?,
            "slip" => limits.slip = number(line, 0, 10)?,
            "ipv4_prefix_length" => limits.ipv4_prefix = number(line, 0, 32)?,
            "ipv6_prefix_length" => limits.ipv6_prefix = number(line, 0, 128)?,
            "max_table_size" => limits.table_size = number(line, 1, 100_000_000)?,
            "exempt" => {
                for arg in line.args_between(1, usize::MAX)? {
                    limits.exempt.push(parse_net(arg)?);
                }
            }
            "log_only" => {
                line.bare()?;
                limits.log_only = true;
            }
            _ => return Err(directive.unknown_property(line)),
        }
    }
    // As BIND: the NXDOMAIN and error rates default to the response rate.
    limits.nxdomains = nxdomains.unwrap_or(limits.responses);
    limits.errors = errors.unwrap_or(limits.responses);
    Ok(limits)
}

/// One network's tokens for one kind of response.
#[derive(Debug)]
struct Account {
    /// Tokens in thousandths, at most `rate × 1000`, at least `-rate × window × 1000`.
    balance: i64,
    /// When the balance was last brought up to date, in ms since start.
    updated: u64,
    /// Limited responses so far, for the slip.
    limited: u32,
}

/// What happens to one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Send,
    Slip,
    Drop,
}

type Key = (IpAddr, Kind);

struct RateLimit {
    limits: Limits,
    accounts: quick_cache::sync::Cache<Key, Arc<Mutex<Account>>>,
    start: Instant,
}

impl RateLimit {
    fn new(limits: Limits) -> RateLimit {
        RateLimit {
            accounts: quick_cache::sync::Cache::new(limits.table_size),
            limits,
            start: Instant::now(),
        }
    }

    /// The client's network, as accounts are kept.
    fn network(&self, ip: IpAddr) -> IpAddr {
        let prefix = match ip {
            IpAddr::V4(_) => self.limits.ipv4_prefix,
            IpAddr::V6(_) => self.limits.ipv6_prefix,
        };
        IpNet::new(ip, prefix).map_or(ip, |net| net.network())
    }

    /// Debits one response of `kind` to `client`'s network at `now_ms`.
    fn account(&self, client: IpAddr, kind: Kind, now_ms: u64) -> Verdict {
        let rate = i64::from(self.limits.rate(kind));
        if rate == 0 {
            return Verdict::Send;
        }
        let key = (self.network(client), kind);
        let account = self
            .accounts
            .get_or_insert_with(&key, || {
                Ok::<_, ()>(Arc::new(Mutex::new(Account {
                    balance: rate * 1000,
                    updated: now_ms,
                    limited: 0,
                })))
            })
            .unwrap_or_else(|()| unreachable!("the account is made without failing"));
        let mut account = account.lock().unwrap_or_else(|e| e.into_inner());
        // Credit `rate` tokens a second since the last response (ms × rate
        // = thousandths of tokens), up to one second's worth.
        let elapsed = now_ms.saturating_sub(account.updated);
        account.updated = account.updated.max(now_ms);
        let credit = i64::try_from(elapsed)
            .unwrap_or(i64::MAX)
            .saturating_mul(rate);
        account.balance = account.balance.saturating_add(credit).min(rate * 1000);
        let floor = -rate * i64::from(self.limits.window) * 1000;
        account.balance = (account.balance - 1000).max(floor);
        if account.balance >= 0 {
            return Verdict::Send;
        }
        account.limited = account.limited.wrapping_add(1);
        match self.limits.slip {
            0 => Verdict::Drop,
            slip if account.limited.is_multiple_of(slip) => Verdict::Slip,
            _ => Verdict::Drop,
        }
    }

    fn exempt(&self, request: &Request) -> bool {
        request.transport != Transport::Udp
            || request.metadata.get(VALID_COOKIE) == Some("true")
            || self
                .limits
                .exempt
                .iter()
                .any(|net| net.contains(&request.client.ip()))
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// The slipped form of a response: no records, TC=1, so that the client
/// retries over TCP (BIND's slip). EDNS options stay (a server cookie).
fn slipped(rcode: Rcode, full: Option<&Response>) -> Response {
    let mut response = Response::new(rcode);
    response.truncated = true;
    if let Some(full) = full {
        response.rcode = full.rcode;
        response.edns_options = full.edns_options.clone();
    }
    response
}

impl Handler for RateLimit {
    fn name(&self) -> &'static str {
        "ratelimit"
    }

    // Classifies answers by rcode only.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        HandlerFuture::new(async move {
            let result = next.serve(request).await;
            // Checked after the chain: `cookies` runs after us and marks
            // the request on its way in.
            if request.is_dropped() || self.exempt(request) {
                return result;
            }
            // A plugin error becomes SERVFAIL: an error response.
            let rcode = match &result {
                Ok(response) => response.header_rcode(),
                Err(_) => Rcode::SERVFAIL,
            };
            let verdict = self.account(request.client.ip(), Kind::of(rcode), self.now_ms());
            let server = request.server.to_string();
            match verdict {
                Verdict::Send => return result,
                Verdict::Slip => {
                    metrics::counter!("coredns_ratelimit_slipped_responses_total", "server" => server)
                        .increment(1);
                }
                Verdict::Drop => {
                    metrics::counter!("coredns_ratelimit_dropped_responses_total", "server" => server)
                        .increment(1);
                }
            }
            if self.limits.log_only {
                return result;
            }
            if verdict == Verdict::Drop {
                request.drop_response();
                return result;
            }
            Ok::<_, PluginError>(slipped(rcode, result.as_ref().ok()))
        })
    }
}

#[cfg(test)]
mod tests;
