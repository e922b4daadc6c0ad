//! `cache`: a frontend cache, as CoreDNS's cache plugin.
//!
//! Responses are cached by name (without regard to case), type, class and
//! the DO and CD bits, in two bounded caches (`success` and `denial`) with
//! eviction that keeps hot entries ([`quick_cache`]). TTLs count down from
//! when the answer was stored. Negative answers are cached for the SOA's
//! negative TTL, and an NXDOMAIN answers every type of its name (RFC 2308).
//! Concurrent misses for one key become one upstream query. `prefetch`
//! renews popular entries before they expire and `serve_stale` answers
//! with expired data when upstream fails (RFC 8767).
//!
//! Time is read from a [`Clock`], so tests move it by hand.

mod cache;
mod clock;
mod metrics;

use std::sync::Arc;
use std::time::Duration;

use oxidns_server::duration::parse_go_duration;
use oxidns_server::rebinding::{RebindingFilter, RebindingProtection};
use oxidns_server::{ConfigError, Directive, PluginEntry, Setup, Token};

pub use cache::{
    CLIENT_RESPONSE_TIMER, Cache, FAILURE_RECHECK, Prefetch, STALE_TTL, ServeStale, Settings, Tier,
    Upstream,
};
pub use clock::{Clock, ManualClock, SystemClock};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "cache",
    setup,
};

/// Responses each cache holds unless told otherwise (CoreDNS: 256 shards of 39).
pub const DEFAULT_CAPACITY: usize = 9984;
/// The longest a positive answer is kept.
pub const MAX_SUCCESS_TTL: Duration = Duration::from_secs(3600);
/// The longest a negative answer is kept.
pub const MAX_DENIAL_TTL: Duration = Duration::from_secs(1800);
/// The shortest any answer is kept.
pub const MIN_TTL: Duration = Duration::from_secs(5);
/// How long SERVFAIL answers are kept unless `servfail` says otherwise.
pub const DEFAULT_SERVFAIL: Duration = Duration::from_secs(5);
/// The longest `servfail` may ask for (RFC 2308 §7.1).
pub const MAX_SERVFAIL: Duration = Duration::from_secs(300);
/// How long after expiry `serve_stale` serves an entry unless told otherwise.
pub const DEFAULT_STALE: Duration = Duration::from_secs(3600);
/// `prefetch`'s window between hits unless told otherwise.
pub const DEFAULT_PREFETCH_WINDOW: Duration = Duration::from_secs(60);
/// `prefetch`'s share of the TTL unless told otherwise.
pub const DEFAULT_PREFETCH_PERCENTAGE: u32 = 10;

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let settings = parse(setup)?;
    let rebinding = rebinding_protection(setup.single()?)?;
    setup.add_handler(Arc::new(Cache::new(settings, Arc::new(SystemClock::new()))));
    // Right after the cache in the chain: what the rest of the chain answers
    // is checked before the cache stores it, so a refused answer is never
    // stored, and hits need no check.
    if let Some(protection) = rebinding {
        setup.add_handler(RebindingFilter::new("cache", protection));
    }
    Ok(())
}

/// The `rebinding_protection [ZONES...]` line, if there is one.
fn rebinding_protection(directive: &Directive) -> Result<Option<RebindingProtection>, ConfigError> {
    let mut found = None;
    for line in &directive.block {
        if line.name.text == "rebinding_protection" {
            found = Some(RebindingProtection::parse(line)?);
        }
    }
    Ok(found)
}

/// Reads `cache [TTL] [ZONES...] { … }`.
pub fn parse(setup: &Setup<'_>) -> Result<Settings, ConfigError> {
    let directive = setup.single()?;
    let mut settings = Settings::default();
    let mut args: &[Token] = &directive.args;
    if let Some(first) = args.first()
        && let Ok(ttl) = first.text.parse::<i64>()
    {
        let ttl = positive_ttl(directive, ttl)?;
        settings.success.max_ttl = ttl;
        settings.denial.max_ttl = ttl;
        args = &args[1..];
    }
    settings.zones = setup.zones_or_block(args)?;

    for line in &directive.block {
        match line.name.text.as_str() {
            "success" => tier(line, &mut settings.success)?,
            "denial" => tier(line, &mut settings.denial)?,
            "prefetch" => settings.prefetch = prefetch(line)?,
            "serve_stale" => settings.serve_stale = serve_stale(line)?,
            "servfail" => {
                let text = &line.args_between(1, 1)?[0].text;
                let duration = duration(line, text)?;
                if duration > MAX_SERVFAIL {
                    return Err(
                        line.error("caching SERVFAIL responses over 5 minutes is not permitted")
                    );
                }
                settings.servfail = duration;
            }
            "disable" => {
                let args = line.args_between(1, usize::MAX)?;
                let zones = if args.len() > 1 {
                    setup.zones_or_block(&args[1..])?
                } else {
                    vec![oxidns_server::proto::Name::root()]
                };
                match args[0].text.as_str() {
                    "success" => settings.disable_success.extend(zones),
                    "denial" => settings.disable_denial.extend(zones),
                    other => {
                        return Err(line.error(format!(
                            "cache type for disable must be 'success' or 'denial', not '{other}'"
                        )));
                    }
                }
            }
            "keepttl" => {
                line.bare()?;
                settings.keepttl = true;
            }
            // Read by `setup`: a filter after the cache, not a cache setting.
            "rebinding_protection" => {
                RebindingProtection::parse(line)?;
            }
            _ => return Err(directive.unknown_property(line)),
        }
    }
    Ok(settings)
}

fn positive_ttl(line: &Directive, ttl: i64) -> Result<Duration, ConfigError> {
    if ttl <= 0 {
        return Err(line.error(format!("cache TTL can not be zero or negative: {ttl}")));
    }
    Ok(Duration::from_secs(ttl as u64))
}

fn integer(line: &Directive, what: &str, text: &str) -> Result<i64, ConfigError> {
    text.parse()
        .map_err(|_| line.error(format!("invalid {what} '{text}'")))
}

fn duration(line: &Directive, text: &str) -> Result<Duration, ConfigError> {
    parse_go_duration(text).ok_or_else(|| line.error(format!("invalid duration '{text}'")))
}

/// `success|denial CAPACITY [TTL] [MINTTL]`.
fn tier(line: &Directive, tier: &mut Tier) -> Result<(), ConfigError> {
    let args = line.args_between(1, 3)?;
    let capacity = integer(line, "capacity", &args[0].text)?;
    if capacity <= 0 {
        return Err(line.error(format!("capacity must be positive: {capacity}")));
    }
    tier.capacity = capacity as usize;
    if let Some(ttl) = args.get(1) {
        tier.max_ttl = positive_ttl(line, integer(line, "TTL", &ttl.text)?)?;
    }
    if let Some(min) = args.get(2) {
        let min = integer(line, "minimum TTL", &min.text)?;
        if min < 0 {
            return Err(line.error(format!("cache min TTL can not be negative: {min}")));
        }
        tier.min_ttl = Duration::from_secs(min as u64);
    }
    Ok(())
}

/// `prefetch AMOUNT [[DURATION] [PERCENTAGE%]]`; an AMOUNT of 0 turns it off.
fn prefetch(line: &Directive) -> Result<Option<Prefetch>, ConfigError> {
    let args = line.args_between(1, 3)?;
    let amount = integer(line, "amount", &args[0].text)?;
    if amount < 0 {
        return Err(line.error(format!("prefetch amount should be positive: {amount}")));
    }
    let mut prefetch = Prefetch {
        amount: u32::try_from(amount).unwrap_or(u32::MAX),
        window: DEFAULT_PREFETCH_WINDOW,
        percentage: DEFAULT_PREFETCH_PERCENTAGE,
    };
    if let Some(window) = args.get(1) {
        prefetch.window = duration(line, &window.text)?;
    }
    if let Some(percentage) = args.get(2) {
        let Some(number) = percentage.text.strip_suffix('%') else {
            return Err(line.error(format!(
                "percentage should end with '%': {}",
                percentage.text
            )));
        };
        let number = integer(line, "percentage", number)?;
        if !(10..=90).contains(&number) {
            return Err(line.error(format!(
                "percentage should fall in range [10, 90]: {number}"
            )));
        }
        prefetch.percentage = number as u32;
    }
    Ok((amount > 0).then_some(prefetch))
}

/// `serve_stale [DURATION] [immediate|verify]`; a DURATION of 0 turns it off.
fn serve_stale(line: &Directive) -> Result<Option<ServeStale>, ConfigError> {
    let args = line.args_between(0, 2)?;
    let mut stale = ServeStale {
        up_to: DEFAULT_STALE,
        verify: false,
    };
    if let Some(up_to) = args.first() {
        stale.up_to = duration(line, &up_to.text)?;
    }
    if let Some(mode) = args.get(1) {
        stale.verify = match mode.text.to_ascii_lowercase().as_str() {
            "immediate" => false,
            "verify" => true,
            _ => {
                return Err(line.error(format!(
                    "invalid value for serve_stale refresh mode: {}",
                    mode.text
                )));
            }
        };
    }
    Ok((!stale.up_to.is_zero()).then_some(stale))
}

#[cfg(test)]
mod tests;
