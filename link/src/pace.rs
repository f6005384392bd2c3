//! Pacing of inbound handshakes per source address.
//!
//! A handshake costs the accepting side a signature, a certificate check
//! and QUIC key setup; a host that opens hundreds at once makes that burst
//! of work land on everyone else's traffic. [`HandshakePacer`] spaces the
//! handshakes of each source address at most `rate` a second, with a burst
//! of `burst` at once (the generic cell rate algorithm: each address keeps
//! only the time its next handshake is due). A handshake that is not due
//! yet waits for its turn rather than being refused, up to `max_wait`; one
//! that would wait longer is refused. Addresses are forgotten once their
//! burst has refilled, and at most `max_addresses` are tracked: beyond
//! that, handshakes from addresses not tracked are refused until some are
//! forgotten.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// What the pacer says about one handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    /// Start it now.
    Now,
    /// Start it after this long.
    After(Duration),
    /// Refuse it: its address would wait longer than allowed, or too many
    /// addresses are tracked.
    Refuse,
}

/// Handshake schedules by source address (see the module documentation).
#[derive(Debug)]
pub(crate) struct HandshakePacer {
    /// Time between two handshakes of one address; zero: no pacing.
    interval: Duration,
    /// How far ahead of its schedule an address may start handshakes:
    /// `burst - 1` intervals.
    tolerance: Duration,
    max_wait: Duration,
    max_addresses: usize,
    /// When each address's next handshake is due, on its own schedule.
    due: HashMap<IpAddr, Instant>,
}

impl HandshakePacer {
    /// A pacer of `rate` handshakes a second per address (0: none), `burst`
    /// at once (at least 1), waits of at most `max_wait`, and at most
    /// `max_addresses` addresses tracked.
    pub(crate) fn new(rate: u32, burst: u32, max_wait: Duration, max_addresses: usize) -> Self {
        let interval = if rate == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs(1) / rate
        };
        HandshakePacer {
            interval,
            tolerance: interval * burst.max(1).saturating_sub(1),
            max_wait,
            max_addresses,
            due: HashMap::new(),
        }
    }

    /// When a handshake from `ip`, arriving at `now`, may start; a
    /// handshake that is not refused takes its place in the address's
    /// schedule.
    pub(crate) fn admit(&mut self, ip: IpAddr, now: Instant) -> Pace {
        if self.interval.is_zero() {
            return Pace::Now;
        }
        if !self.due.contains_key(&ip) && self.due.len() >= self.max_addresses {
            self.forget_refilled(now);
            if self.due.len() >= self.max_addresses {
                return Pace::Refuse;
            }
        }
        let due = self.due.get(&ip).map_or(now, |d| (*d).max(now));
        let start = due.checked_sub(self.tolerance).unwrap_or(now).max(now);
        let wait = start - now;
        if wait > self.max_wait {
            return Pace::Refuse;
        }
        self.due.insert(ip, due + self.interval);
        if wait.is_zero() {
            Pace::Now
        } else {
            Pace::After(wait)
        }
    }

    /// Forgets the addresses whose whole burst is available again at
    /// `now`: their schedule says nothing a fresh one would not.
    fn forget_refilled(&mut self, now: Instant) {
        self.due.retain(|_, due| *due > now);
    }

    /// Addresses tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.due.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_starts_at_once_and_the_rest_waits_its_turn() {
        // 100 a second (one each 10 ms), 4 at once, waits up to 25 ms.
        let mut p = HandshakePacer::new(100, 4, 25 * MS, 16);
        let t = Instant::now();
        for _ in 0..4 {
            assert_eq!(p.admit(ip(1), t), Pace::Now);
        }
        assert_eq!(p.admit(ip(1), t), Pace::After(10 * MS));
        assert_eq!(p.admit(ip(1), t), Pace::After(20 * MS));
        // A third would wait 30 ms: refused, and it takes no turn.
        assert_eq!(p.admit(ip(1), t), Pace::Refuse);
        assert_eq!(p.admit(ip(1), t + 5 * MS), Pace::After(25 * MS));
        // Another address has a schedule of its own.
        assert_eq!(p.admit(ip(2), t), Pace::Now);
        // Once the schedule has caught up, a burst is available again.
        let later = t + 200 * MS;
        for _ in 0..4 {
            assert_eq!(p.admit(ip(1), later), Pace::Now);
        }
        assert_eq!(p.admit(ip(1), later), Pace::After(10 * MS));
    }

    #[test]
    fn over_a_long_run_an_address_gets_the_rate() {
        let mut p = HandshakePacer::new(50, 8, Duration::from_secs(30), 16);
        let t = Instant::now();
        // 1,000 handshakes asked for within one second, all admitted; the
        // last is due 999 intervals (of 20 ms) in and may start 7 early.
        let mut last = Duration::ZERO;
        for i in 0..1000u64 {
            let now = t + Duration::from_millis(i);
            let start = match p.admit(ip(1), now) {
                Pace::Now => now,
                Pace::After(d) => now + d,
                Pace::Refuse => panic!("handshake {i} refused"),
            };
            last = last.max(start - t);
        }
        assert_eq!(last, 992 * 20 * MS);
    }

    #[test]
    fn tracked_addresses_are_bounded() {
        let mut p = HandshakePacer::new(10, 1, Duration::ZERO, 3);
        let t = Instant::now();
        for i in 1..=3 {
            assert_eq!(p.admit(ip(i), t), Pace::Now);
        }
        // Full, and every schedule still ahead: a fourth address waits.
        assert_eq!(p.admit(ip(4), t), Pace::Refuse);
        // Known addresses still get their turns.
        assert_eq!(p.admit(ip(1), t + 100 * MS), Pace::Now);
        // Once schedules have refilled they are forgotten for newcomers.
        assert_eq!(p.admit(ip(4), t + 150 * MS), Pace::Now);
        assert!(p.tracked() <= 3);
    }

    #[test]
    fn rate_zero_paces_nothing() {
        let mut p = HandshakePacer::new(0, 1, Duration::ZERO, 1);
        let t = Instant::now();
        for i in 0..10 {
            assert_eq!(p.admit(ip(i), t), Pace::Now);
        }
    }
}
