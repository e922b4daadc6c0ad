//! Upstream DNS clients: the exchange of one query with one server over
//! UDP, TCP or DNS-over-TLS, for `forward` (and later `recursive` and
//! `secondary`).
//!
//! An [`Upstream`] is one server address. [`Upstream::exchange`] sends an
//! [`OutgoingQuery`] once over the [`Protocol`] asked and returns the answer
//! that matches it, or why there was none. Choosing among upstreams, retrying
//! and health are the caller's business.
//!
//! - **UDP** (RFC 1035 §4.2.1), hardened as RFC 5452 §9 asks: every try uses
//!   a new socket (so a new random source port) connected to the upstream,
//!   bound to its address family, and a new random ID; a datagram is taken
//!   only if its source address and port, ID and question all match. Anything
//!   else is ignored and the try keeps waiting until its timeout. A truncated
//!   answer (TC=1) may be asked again over TCP ([`ExchangeOptions::tcp_on_truncation`]).
//! - **TCP** (RFC 7766) and **TLS** (RFC 7858, rustls with `ring`):
//!   connections are pooled per upstream and reused one query at a time, and
//!   closed once idle for `expire` (10s by default, as CoreDNS). A pooled
//!   connection the server closed meanwhile is replaced transparently.
//! - **Timeouts** adapt to each upstream's measured RTT (RFC 6298's
//!   estimator, bounded between 100ms and 2s, doubled after a timeout).
//!
//! ```no_run
//! # async fn demo() -> Result<(), oxidns_net::ExchangeError> {
//! use oxidns_net::{ExchangeOptions, OutgoingQuery, Protocol, Upstream, UpstreamConfig};
//! use oxidns_proto::{Rtype, name_from_str};
//!
//! let upstream = Upstream::new("127.0.0.1:5300".parse().unwrap(), UpstreamConfig::default());
//! let query = OutgoingQuery::new(name_from_str("example.org").unwrap(), Rtype::A);
//! let answer = upstream.exchange(&query, ExchangeOptions::new(Protocol::Udp)).await?;
//! println!("{:?}", answer.response.response.rcode);
//! # Ok(()) }
//! ```

mod rtt;
mod tls;
mod upstream;
pub mod xfr;

#[cfg(feature = "test-server")]
pub mod test_server;

pub use rtt::{INITIAL_TIMEOUT, MAX_TIMEOUT, MIN_TIMEOUT};
pub use tls::{TlsSettings, client_config as tls_client_config};
pub use upstream::{
    ConnObserver, DEFAULT_EXPIRE, ExchangeError, ExchangeOptions, Exchanged, OutgoingQuery,
    Protocol, Upstream, UpstreamConfig,
};

/// The TLS library, for callers that build their own configs (tests serving DoT).
pub use rustls;
