//! `cookies`: DNS cookies, RFC 7873, with the interoperable server cookies
//! of RFC 9018 (version 1: SipHash-2-4 over the client cookie, version,
//! reserved octets, timestamp and client address), so that servers sharing
//! an anycast address and a secret accept each other's cookies.
//!
//! A query's COOKIE option is checked before the rest of the chain runs
//! (RFC 7873 §5.2): a malformed one gets FORMERR; a valid server cookie
//! marks the request with the metadata `cookies/valid` (which `ratelimit`
//! honours); without one, a query over UDP gets BADCOOKIE when cookies are
//! required, and is answered normally otherwise. Every answer to a query
//! with a cookie carries the client cookie and a fresh or still-young
//! server cookie.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use oxidns_server::proto::{EdnsOption, OptRcode, Rcode, Response, option_code};
use oxidns_server::{
    ConfigError, Handler, HandlerFuture, Next, PluginEntry, Request, Setup, Transport,
};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "cookies",
    setup,
};

/// The metadata key set (to "true") on requests with a valid server cookie.
pub const VALID_COOKIE: &str = "cookies/valid";

const CLIENT_COOKIE_LEN: usize = 8;
/// RFC 9018 §4: version (1), reserved (3), timestamp (4), hash (8).
const SERVER_COOKIE_LEN: usize = 16;
const VERSION: u8 = 1;
/// RFC 9018 §4.3: a server cookie older than this is invalid …
const MAX_AGE: i64 = 3600;
/// … and so is one from further in the future than this (clock skew).
const MAX_AHEAD: i64 = 300;
/// RFC 9018 §4.3: a cookie older than half an hour is replaced by a new one.
const REFRESH_AGE: i64 = 1800;

type Secret = [u8; 16];

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?;
    directive.args_between(0, 0)?;
    let mut secrets = Vec::new();
    let mut require = false;
    for line in &directive.block {
        match line.name.text.as_str() {
            "secret" => {
                if !secrets.is_empty() {
                    return Err(line.error("given twice"));
                }
                for arg in line.args_between(1, usize::MAX)? {
                    secrets.push(parse_secret(&arg.text).ok_or_else(|| {
                        ConfigError::at(
                            arg,
                            format!(
                                "cookies: secret '{}' is not 32 hexadecimal digits (16 octets)",
                                arg.text
                            ),
                        )
                    })?);
                }
            }
            "require" => {
                line.bare()?;
                require = true;
            }
            _ => return Err(directive.unknown_property(line)),
        }
    }
    if secrets.is_empty() {
        // A secret of this process only: cookies stay valid until a restart.
        secrets.push(rand::random());
    }
    setup.add_handler(Arc::new(Cookies { secrets, require }));
    Ok(())
}

fn parse_secret(text: &str) -> Option<Secret> {
    if text.len() != 32 {
        return None;
    }
    let mut secret = [0u8; 16];
    for (i, byte) in secret.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(secret)
}

struct Cookies {
    /// The first makes new server cookies; all are accepted (a rollover).
    secrets: Vec<Secret>,
    /// Answer UDP queries without a valid server cookie with BADCOOKIE.
    require: bool,
}

/// What to do with a query's COOKIE option.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// RFC 7873 §5.2.2: FORMERR.
    Malformed,
    /// RFC 7873 §5.2.3/§5.2.4: BADCOOKIE with this COOKIE option (no answer).
    BadCookie(Bytes),
    /// Answer normally, adding this COOKIE option.
    Answer { cookie: Bytes, valid: bool },
}

/// The RFC 9018 hash of a server cookie's first eight octets.
fn hash(secret: &Secret, client: &[u8], head: &[u8], ip: IpAddr) -> [u8; 8] {
    use std::hash::Hasher;
    let mut hasher = siphasher::sip::SipHasher24::new_with_key(secret);
    hasher.write(client);
    hasher.write(head);
    match ip {
        IpAddr::V4(v4) => hasher.write(&v4.octets()),
        IpAddr::V6(v6) => hasher.write(&v6.octets()),
    }
    // RFC 9018 §4.4 reads SipHash's output in little-endian order.
    hasher.finish().to_le_bytes()
}

/// A new COOKIE option: the client cookie and our server cookie for `now`.
fn new_cookie(secret: &Secret, client: &[u8], ip: IpAddr, now: u32) -> Bytes {
    let mut option = Vec::with_capacity(CLIENT_COOKIE_LEN + SERVER_COOKIE_LEN);
    option.extend_from_slice(client);
    option.extend_from_slice(&[VERSION, 0, 0, 0]);
    option.extend_from_slice(&now.to_be_bytes());
    let hash = hash(secret, client, &option[CLIENT_COOKIE_LEN..], ip);
    option.extend_from_slice(&hash);
    Bytes::from(option)
}

/// The age in seconds of a server cookie's timestamp, in serial number
/// arithmetic (RFC 1982, as RFC 9018 §4.3 asks): negative if ahead of us.
fn age(timestamp: u32, now: u32) -> i64 {
    i64::from(now.wrapping_sub(timestamp) as i32)
}

impl Cookies {
    /// Checks a COOKIE option's data (RFC 7873 §5.2, RFC 9018 §4.3).
    fn check(&self, data: &[u8], ip: IpAddr, now: u32, transport: Transport) -> Verdict {
        // §5.2.2: 8 octets (client cookie only) or 16 to 40 (with a server cookie).
        if !(data.len() == CLIENT_COOKIE_LEN || (16..=40).contains(&data.len())) {
            return Verdict::Malformed;
        }
        let (client, server) = data.split_at(CLIENT_COOKIE_LEN);
        let young = (server.len() == SERVER_COOKIE_LEN && server[0] == VERSION)
            .then(|| {
                age(
                    u32::from_be_bytes([server[4], server[5], server[6], server[7]]),
                    now,
                )
            })
            .filter(|age| (-MAX_AHEAD..=MAX_AGE).contains(age));
        let valid = young.is_some()
            && self
                .secrets
                .iter()
                .any(|secret| hash(secret, client, &server[..8], ip) == server[8..]);
        if valid {
            // Echo a cookie that is still young; replace one that is getting
            // old, or that another secret (an old one) made.
            let keep = young.is_some_and(|age| age <= REFRESH_AGE)
                && hash(&self.secrets[0], client, &server[..8], ip) == server[8..];
            let cookie = if keep {
                Bytes::copy_from_slice(data)
            } else {
                new_cookie(&self.secrets[0], client, ip, now)
            };
            return Verdict::Answer {
                cookie,
                valid: true,
            };
        }
        let cookie = new_cookie(&self.secrets[0], client, ip, now);
        // §5.2.3: over TCP the client has shown its address already.
        if self.require && transport == Transport::Udp {
            return Verdict::BadCookie(cookie);
        }
        Verdict::Answer {
            cookie,
            valid: false,
        }
    }
}

fn unix_now() -> u32 {
    // Seconds since 1970 modulo 2^32, as RFC 9018 §4.2's serial numbers.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

/// Puts our COOKIE option in the response, replacing any the rest of the
/// chain copied from elsewhere (an upstream's cookie is not the client's).
fn stamp(response: &mut Response, cookie: Bytes) {
    response
        .edns_options
        .retain(|o| o.code != option_code::COOKIE);
    response.edns_options.push(EdnsOption {
        code: option_code::COOKIE,
        data: cookie,
    });
}

impl Handler for Cookies {
    fn name(&self) -> &'static str {
        "cookies"
    }

    // Adds an EDNS option, which stays outside the sections.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        let Some(option) = request
            .query
            .edns
            .as_ref()
            .and_then(|edns| edns.option(option_code::COOKIE))
        else {
            // §5.2.1: no cookie, no change.
            return next.serve(request);
        };
        let verdict = self.check(
            &option.data,
            request.client.ip(),
            unix_now(),
            request.transport,
        );
        let kind = match &verdict {
            Verdict::Malformed => "malformed",
            Verdict::Answer { valid: true, .. } => "valid",
            _ if option.data.len() == CLIENT_COOKIE_LEN => "client_only",
            _ => "invalid",
        };
        metrics::counter!("coredns_cookies_requests_total", "server" => request.server.to_string(), "cookie" => kind)
            .increment(1);
        HandlerFuture::new(async move {
            match verdict {
                Verdict::Malformed => Ok(Response::new(Rcode::FORMERR)),
                Verdict::BadCookie(cookie) => {
                    metrics::counter!("coredns_cookies_badcookie_responses_total", "server" => request.server.to_string())
                        .increment(1);
                    let mut response = Response::new(Rcode::NOERROR);
                    response.rcode = OptRcode::BADCOOKIE;
                    stamp(&mut response, cookie);
                    Ok(response)
                }
                Verdict::Answer { cookie, valid } => {
                    if valid {
                        request.metadata.set(VALID_COOKIE, "true");
                    }
                    let mut response = next.serve(request).await?;
                    stamp(&mut response, cookie);
                    Ok(response)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
