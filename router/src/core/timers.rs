//! The core's deadlines, in one ordered set.
//!
//! Timers are never cancelled: when one fires, the handler checks that the
//! state it was set for still exists and is still due (for example that the
//! record it republishes still has this republish time). This keeps
//! scheduling O(log n) and the handlers simple; a stale timer costs one
//! spurious check.

use std::collections::BTreeSet;

use gdp_certs::{Name, Timestamp};

use super::io::LinkId;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// Republish the record for a name.
    Republish(Name),
    /// A cached or static FIB entry expires.
    FibExpiry(Name),
    /// PDUs waiting for a name time out.
    Pending(Name),
    /// A resolution gives up.
    Resolve(Name),
    /// A dial gives up.
    Dial(Name),
    /// A negative-cache entry expires.
    Negative(Name),
    /// Dial the gateway again.
    Redial,
    /// An unproven link's deadline to attach (or pass its hello).
    Attach(LinkId),
    /// A delivery tree's leases and upstream refresh.
    Tree(Name),
    /// An attached endpoint is accepted even though its record's write
    /// has not finished.
    Accept(LinkId),
}

/// Deadlines ordered by time (then by timer, so firing order is
/// deterministic).
#[derive(Debug, Default)]
pub(crate) struct Timers {
    set: BTreeSet<(Timestamp, Timer)>,
}

impl Timers {
    /// Fires `timer` at `at`.
    pub(crate) fn schedule(&mut self, at: Timestamp, timer: Timer) {
        self.set.insert((at, timer));
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Timestamp> {
        self.set.first().map(|(t, _)| *t)
    }

    /// Removes and returns the earliest timer due at `now`.
    pub(crate) fn pop_due(&mut self, now: Timestamp) -> Option<Timer> {
        if self.set.first().is_some_and(|(t, _)| *t <= now) {
            self.set.pop_first().map(|(_, timer)| timer)
        } else {
            None
        }
    }

    /// Number of scheduled timers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_time_order_and_only_when_due() {
        let mut t = Timers::default();
        let n = Name::from_bytes([1; 32]);
        t.schedule(Timestamp(20), Timer::Pending(n));
        t.schedule(Timestamp(10), Timer::Redial);
        t.schedule(Timestamp(10), Timer::Redial);
        assert_eq!(t.len(), 2);
        assert_eq!(t.next(), Some(Timestamp(10)));
        assert_eq!(t.pop_due(Timestamp(9)), None);
        assert_eq!(t.pop_due(Timestamp(15)), Some(Timer::Redial));
        assert_eq!(t.pop_due(Timestamp(15)), None);
        assert_eq!(t.pop_due(Timestamp(20)), Some(Timer::Pending(n)));
        assert_eq!(t.next(), None);
    }
}
