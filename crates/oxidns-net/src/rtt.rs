//! Per-upstream round-trip time and the timeout of one try derived from it.
//!
//! The estimator is TCP's retransmission timer (RFC 6298 §2): a smoothed RTT
//! and its mean deviation, the timeout being `SRTT + 4·RTTVAR`, doubled after
//! each try that timed out (§5.5) and reset by the next answer. Unlike TCP the
//! result is bounded by [`MIN_TIMEOUT`] and [`MAX_TIMEOUT`]: a DNS client has
//! other upstreams to try and a client waiting.

use std::sync::Mutex;
use std::time::Duration;

/// The shortest timeout of one try, however fast the upstream answered so far.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// The longest timeout of one try (CoreDNS's static read timeout).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(2);
/// The timeout before any answer was measured (RFC 6298 §2.1 uses 1s too).
pub const INITIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Doubling stops here: 2^5 times the estimate is beyond [`MAX_TIMEOUT`] anyway.
const MAX_BACKOFF: u32 = 5;

#[derive(Debug, Default)]
struct State {
    /// `None` until the first answer.
    srtt: Option<Duration>,
    rttvar: Duration,
    backoff: u32,
}

/// Smoothed round-trip time of one upstream; shared by all its queries.
#[derive(Debug, Default)]
pub(crate) struct RttEstimator {
    state: Mutex<State>,
}

impl RttEstimator {
    /// The timeout for the next try.
    pub(crate) fn timeout(&self) -> Duration {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let base = match state.srtt {
            Some(srtt) => srtt + 4 * state.rttvar,
            None => INITIAL_TIMEOUT,
        };
        (base * (1 << state.backoff)).clamp(MIN_TIMEOUT, MAX_TIMEOUT)
    }

    /// The smoothed RTT, once one answer has been measured.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).srtt
    }

    /// Feeds the RTT of one answered query (RFC 6298 §2.2, §2.3).
    pub(crate) fn sample(&self, rtt: Duration) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.srtt {
            None => {
                state.srtt = Some(rtt);
                state.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let deviation = srtt.abs_diff(rtt);
                state.rttvar = (state.rttvar * 3 + deviation) / 4;
                state.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        state.backoff = 0;
    }

    /// Notes a try that timed out: the next one waits twice as long (RFC 6298 §5.5).
    pub(crate) fn timed_out(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.backoff = (state.backoff + 1).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_the_initial_timeout() {
        let rtt = RttEstimator::default();
        assert_eq!(rtt.timeout(), INITIAL_TIMEOUT);
        assert_eq!(rtt.srtt(), None);
    }

    #[test]
    fn fast_upstream_is_bounded_below() {
        let rtt = RttEstimator::default();
        for _ in 0..20 {
            rtt.sample(Duration::from_micros(80));
        }
        assert_eq!(rtt.timeout(), MIN_TIMEOUT);
    }

    #[test]
    fn slow_upstream_gets_a_longer_timeout_bounded_above() {
        let rtt = RttEstimator::default();
        rtt.sample(Duration::from_millis(300));
        // 300ms + 4 × 150ms
        assert_eq!(rtt.timeout(), Duration::from_millis(900));
        rtt.sample(Duration::from_secs(5));
        assert_eq!(rtt.timeout(), MAX_TIMEOUT);
    }

    #[test]
    fn timeouts_double_until_an_answer_resets_them() {
        let rtt = RttEstimator::default();
        for _ in 0..20 {
            rtt.sample(Duration::from_millis(300));
        }
        let base = rtt.timeout();
        rtt.timed_out();
        assert_eq!(rtt.timeout(), base * 2);
        for _ in 0..10 {
            rtt.timed_out();
        }
        assert_eq!(rtt.timeout(), MAX_TIMEOUT);
        rtt.sample(Duration::from_millis(300));
        assert!(rtt.timeout() < MAX_TIMEOUT);
    }
}
