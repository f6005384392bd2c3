//! Reconnecting: exponential backoff with jitter, and the connect loop
//! that uses it.

use std::time::Duration;

use gdp_certs::Identity;
use rand::Rng;

use super::{EndpointConfig, EndpointError, EndpointLink, EndpointReceiver};

/// Exponential backoff with jitter, for reconnect loops.
///
/// The `n`th delay is drawn uniformly from half to all of
/// `min(initial * 2^n, max)`, so that many endpoints losing the same
/// router do not all come back at the same instant.
#[derive(Clone, Debug)]
pub struct Backoff {
    /// The first delay (before jitter).
    pub initial: Duration,
    /// The longest delay (before jitter).
    pub max: Duration,
    /// Give up after this many failed attempts in a row; `None` never gives up.
    pub max_attempts: Option<u32>,
    attempts: u32,
}

impl Default for Backoff {
    /// 100 ms doubling up to 10 s, never giving up.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
    }
}

impl Backoff {
    /// A backoff from `initial` doubling up to `max`, never giving up.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            max_attempts: None,
            attempts: 0,
        }
    }

    /// The same, giving up after `attempts` failures in a row.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Failures counted since the last [`Backoff::reset`].
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The un-jittered delay after the failure counted now.
    fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempts.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Counts a failure and returns how long to wait before the next
    /// attempt, or `None` once `max_attempts` failures were counted.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self.max_attempts.is_some_and(|max| self.attempts >= max) {
            return None;
        }
        let ceiling = self.ceiling();
        self.attempts = self.attempts.saturating_add(1);
        let half = ceiling / 2;
        let jitter = rand::thread_rng().gen_range(0..=half.as_micros().min(u64::MAX.into()) as u64);
        Some(half + Duration::from_micros(jitter))
    }

    /// Forgets the failures (after a success).
    pub fn reset(&mut self) {
        self.attempts = 0;
    }
}

/// Connects as [`EndpointLink::connect`] does, retrying transient failures
/// ([`EndpointError::is_transient`]) after the delays of `backoff` until an
/// attach succeeds, a failure is not transient, or `backoff` gives up (the
/// last error is returned).
///
/// After a success the backoff is reset, and if `config.router` was `None`
/// it is set to the name the router proved: trust on first use, so later
/// reconnects through `config` accept only that router.
///
/// To give up on a shutdown, race it against the shutdown signal (the
/// future may be dropped at any point).
pub async fn connect_with_retry(
    identity: &Identity,
    config: &mut EndpointConfig,
    backoff: &mut Backoff,
) -> Result<(EndpointLink, EndpointReceiver), EndpointError> {
    loop {
        match EndpointLink::connect(identity, config).await {
            Ok((link, rx)) => {
                backoff.reset();
                if config.router.is_none() {
                    tracing::info!(router = %link.router_name(), "router name pinned (trust on first use)");
                    config.router = Some(link.router_name());
                }
                return Ok((link, rx));
            }
            Err(e) if e.is_transient() => match backoff.next_delay() {
                Some(delay) => {
                    tracing::warn!(router = %config.router_addr, error = %e, ?delay,
                        attempt = backoff.attempts(), "attach failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn backoff_delays_stay_within_bounds(
            initial_ms in 1u64..2_000,
            max_ms in 1u64..60_000,
            failures in 1usize..40,
        ) {
            let initial = Duration::from_millis(initial_ms);
            let max = Duration::from_millis(max_ms);
            let mut b = Backoff::new(initial, max);
            let mut ceiling = initial.min(max);
            for _ in 0..failures {
                let d = b.next_delay().expect("never gives up");
                prop_assert!(d <= ceiling, "{d:?} over {ceiling:?}");
                prop_assert!(d >= ceiling / 2, "{d:?} under half of {ceiling:?}");
                ceiling = (ceiling * 2).min(max);
            }
            b.reset();
            prop_assert_eq!(b.attempts(), 0);
            prop_assert!(b.next_delay().expect("reset") <= initial.min(max));
        }
    }

    #[test]
    fn backoff_gives_up_after_max_attempts() {
        let mut b =
            Backoff::new(Duration::from_millis(1), Duration::from_millis(4)).with_max_attempts(3);
        assert!(b.next_delay().is_some());
        assert!(b.next_delay().is_some());
        assert!(b.next_delay().is_some());
        assert_eq!(b.next_delay(), None);
        assert_eq!(b.attempts(), 3);
    }
}
