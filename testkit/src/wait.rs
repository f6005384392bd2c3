//! Waiting for a condition instead of sleeping a fixed time.
//!
//! A test that sleeps and then asserts is slow when the sleep is long and
//! flaky when it is short. These helpers poll the condition every
//! [`POLL`] until it holds, and panic with what was awaited once the
//! deadline passes, so a test waits exactly as long as the code under test
//! needs and fails with a message when it never gets there.
//!
//! The async helpers measure the deadline with tokio's clock and sleep with
//! tokio's timer, so under paused time (`#[tokio::test(start_paused =
//! true)]`) they advance virtual time and cost no real time. A condition
//! that depends on the wall clock (a record's expiry, a real process) must
//! then be awaited with time running.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is checked.
pub const POLL: Duration = Duration::from_millis(10);

/// Waits until `check` returns true, checking every [`POLL`].
///
/// # Panics
///
/// When `check` is still false after `within`, with `what` in the message.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("not the case after {within:?}: {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Calls `attempt` until it succeeds and returns its value, trying again
/// every [`POLL`] (for a peer that is still starting, a route that is not
/// there yet).
///
/// # Panics
///
/// When it still fails after `within`, with the last error.
pub async fn eventually_ok<T, E, F, Fut>(within: Duration, mut attempt: F) -> T
where
    E: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                panic!("still failing after {within:?}: {e:?}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Waits until `check` returns true, blocking the thread, checking every
/// [`POLL`]: the synchronous [`eventually`], for tests without a runtime.
///
/// # Panics
///
/// When `check` is still false after `within`, with `what` in the message.
pub fn eventually_blocking(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("not the case after {within:?}: {what}");
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test(start_paused = true)]
    async fn eventually_waits_for_the_condition_in_virtual_time() {
        let start = tokio::time::Instant::now();
        let ready = start + Duration::from_secs(30);
        eventually(Duration::from_secs(60), "the deadline passed", || async {
            tokio::time::Instant::now() >= ready
        })
        .await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(30) && waited < Duration::from_secs(31));
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "not the case after 1s: never")]
    async fn eventually_panics_with_what_was_awaited() {
        eventually(Duration::from_secs(1), "never", || async { false }).await;
    }

    #[tokio::test(start_paused = true)]
    async fn eventually_ok_returns_the_first_success() {
        let tries = Cell::new(0);
        let value = eventually_ok(Duration::from_secs(1), || {
            tries.set(tries.get() + 1);
            let n = tries.get();
            async move { if n < 3 { Err("not yet") } else { Ok(n * 10) } }
        })
        .await;
        assert_eq!((value, tries.get()), (30, 3));
    }

    #[test]
    fn eventually_blocking_polls_until_true() {
        let mut calls = 0;
        eventually_blocking(Duration::from_secs(5), "the third call", || {
            calls += 1;
            calls == 3
        });
        assert_eq!(calls, 3);
    }
}
