//! Budgets per peer: token buckets, the bounded tables that hold them, and
//! the lookup budget of each source name and link.
//!
//! A FIB miss to a name nobody is resolving yet costs a directory call.
//! Before the core starts one it asks [`LookupLimits`] whether the PDU's
//! source name and the link it arrived on may start another: each has a
//! rate (a token bucket) and a cap on resolutions in flight. A source that
//! cycles through random names thus gets its own rate of directory calls
//! and negative-cache entries, and no more, while every other source keeps
//! its own budget.
//!
//! The tables are bounded: at most `max_lookup_budgets` sources (and as many
//! links) have a bucket of their own. When a table is full, buckets that
//! have refilled (their owner has been quiet) are forgotten, which changes
//! nothing for their owner since a new bucket starts full; if none has,
//! newcomers share one bucket until some do.

use std::collections::BTreeMap;

use gdp_certs::{Name, Timestamp};

use super::config::{CoreConfig, Rate};
use super::io::LinkId;

/// Units of a bucket's level per token: levels are kept in millionths of
/// a token so that refills by the microsecond stay exact integers.
const UNIT: u64 = 1_000_000;

/// A token bucket; the [`Rate`] is passed on each call so that the bucket
/// stays two words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenBucket {
    /// Millionths of a token.
    level: u64,
    last: Timestamp,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub(crate) fn full(rate: Rate, now: Timestamp) -> Self {
        TokenBucket {
            level: u64::from(rate.burst) * UNIT,
            last: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Timestamp) {
        // Timestamps are microseconds: `per_sec` tokens a second is
        // `per_sec` millionths of a token a microsecond.
        let elapsed = now.0.saturating_sub(self.last.0);
        let added = elapsed.saturating_mul(u64::from(rate.per_sec));
        self.level = self
            .level
            .saturating_add(added)
            .min(u64::from(rate.burst) * UNIT);
        self.last = self.last.max(now);
    }

    /// Whole tokens available at `now`.
    pub(crate) fn available(&mut self, rate: Rate, now: Timestamp) -> u64 {
        self.refill(rate, now);
        self.level / UNIT
    }

    /// Takes `n` tokens if there are that many.
    pub(crate) fn try_take(&mut self, rate: Rate, now: Timestamp, n: u64) -> bool {
        self.refill(rate, now);
        let cost = n.saturating_mul(UNIT);
        if self.level >= cost {
            self.level -= cost;
            true
        } else {
            false
        }
    }

    /// True if the bucket has refilled completely: forgetting it changes
    /// nothing.
    fn is_full(&mut self, rate: Rate, now: Timestamp) -> bool {
        self.refill(rate, now);
        self.level >= u64::from(rate.burst) * UNIT
    }
}

/// Token buckets by key, at most `max` of them, plus one shared by the
/// keys that find the table full.
#[derive(Debug)]
pub(crate) struct Buckets<K> {
    map: BTreeMap<K, TokenBucket>,
    max: usize,
    overflow: Option<TokenBucket>,
    /// Full tables are swept for idle buckets at most once a second.
    next_sweep: Timestamp,
}

impl<K: Ord + Copy> Buckets<K> {
    pub(crate) fn new(max: usize) -> Self {
        Buckets {
            map: BTreeMap::new(),
            max,
            overflow: None,
            next_sweep: Timestamp::ZERO,
        }
    }

    /// The bucket of `key` (created full, or the shared one when the table
    /// is full).
    fn bucket(&mut self, key: K, rate: Rate, now: Timestamp) -> &mut TokenBucket {
        if !self.map.contains_key(&key) && self.map.len() >= self.max && now >= self.next_sweep {
            self.next_sweep = now.saturating_add(std::time::Duration::from_secs(1));
            self.map.retain(|_, b| !b.is_full(rate, now));
        }
        if self.map.contains_key(&key) || self.map.len() < self.max {
            self.map
                .entry(key)
                .or_insert_with(|| TokenBucket::full(rate, now))
        } else {
            self.overflow
                .get_or_insert_with(|| TokenBucket::full(rate, now))
        }
    }

    /// Whole tokens `key` may spend at `now`.
    pub(crate) fn available(&mut self, key: K, rate: Rate, now: Timestamp) -> u64 {
        self.bucket(key, rate, now).available(rate, now)
    }

    /// Takes one token from `key`'s bucket if it has one.
    pub(crate) fn try_take(&mut self, key: K, rate: Rate, now: Timestamp) -> bool {
        self.bucket(key, rate, now).try_take(rate, now, 1)
    }

    /// Forgets `key` (its owner is gone).
    pub(crate) fn remove(&mut self, key: &K) {
        self.map.remove(key);
    }

    /// Buckets held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// Who a resolution is charged to: the source of the PDU that started it
/// and the link that PDU arrived on (none for PDUs the core originated on a
/// timer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) source: Name,
    pub(crate) link: Option<LinkId>,
}

/// Which lookup budget a PDU found spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limited {
    /// The source's resolutions in flight, or its rate.
    Source,
    /// The link's resolutions in flight, or its rate.
    Link,
}

/// Lookup budgets by source name and by link.
#[derive(Debug)]
pub(crate) struct LookupLimits {
    rate_by_source: Buckets<Name>,
    rate_by_link: Buckets<LinkId>,
    in_flight_by_source: BTreeMap<Name, usize>,
    in_flight_by_link: BTreeMap<LinkId, usize>,
}

impl LookupLimits {
    pub(crate) fn new(config: &CoreConfig) -> Self {
        LookupLimits {
            rate_by_source: Buckets::new(config.max_lookup_budgets),
            rate_by_link: Buckets::new(config.max_lookup_budgets),
            in_flight_by_source: BTreeMap::new(),
            in_flight_by_link: BTreeMap::new(),
        }
    }

    /// Whether `origin` may start a resolution now (nothing is spent).
    pub(crate) fn check(
        &mut self,
        config: &CoreConfig,
        origin: Origin,
        now: Timestamp,
    ) -> Result<(), Limited> {
        if let Some(link) = origin.link {
            let in_flight = self.in_flight_by_link.get(&link).copied().unwrap_or(0);
            if in_flight >= config.max_lookups_per_link
                || self
                    .rate_by_link
                    .available(link, config.lookup_rate_per_link, now)
                    == 0
            {
                return Err(Limited::Link);
            }
        }
        let in_flight = self
            .in_flight_by_source
            .get(&origin.source)
            .copied()
            .unwrap_or(0);
        if in_flight >= config.max_lookups_per_source
            || self
                .rate_by_source
                .available(origin.source, config.lookup_rate_per_source, now)
                == 0
        {
            return Err(Limited::Source);
        }
        Ok(())
    }

    /// `origin` started a resolution: spend a token each and count it in
    /// flight until [`LookupLimits::finish`].
    pub(crate) fn start(&mut self, config: &CoreConfig, origin: Origin, now: Timestamp) {
        if let Some(link) = origin.link {
            self.rate_by_link
                .try_take(link, config.lookup_rate_per_link, now);
            *self.in_flight_by_link.entry(link).or_default() += 1;
        }
        self.rate_by_source
            .try_take(origin.source, config.lookup_rate_per_source, now);
        *self.in_flight_by_source.entry(origin.source).or_default() += 1;
    }

    /// A resolution `origin` started is over.
    pub(crate) fn finish(&mut self, origin: Origin) {
        if let Some(link) = origin.link {
            decrement(&mut self.in_flight_by_link, link);
        }
        decrement(&mut self.in_flight_by_source, origin.source);
    }

    /// `link` is gone: its rate budget goes (resolutions it started still
    /// finish and are counted off then).
    pub(crate) fn forget_link(&mut self, link: LinkId) {
        self.rate_by_link.remove(&link);
    }

    /// Resolutions in flight started by `source`.
    #[cfg(test)]
    pub(crate) fn in_flight(&self, source: &Name) -> usize {
        self.in_flight_by_source.get(source).copied().unwrap_or(0)
    }
}

fn decrement<K: Ord>(map: &mut BTreeMap<K, usize>, key: K) {
    if let Some(n) = map.get_mut(&key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T0: Timestamp = Timestamp::from_secs(1_000);

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let rate = Rate::new(10, 5);
        let mut b = TokenBucket::full(rate, T0);
        for _ in 0..5 {
            assert!(b.try_take(rate, T0, 1));
        }
        assert!(!b.try_take(rate, T0, 1));
        // 10 a second: one every 100 ms.
        let later = T0.saturating_add(Duration::from_millis(250));
        assert_eq!(b.available(rate, later), 2);
        let much_later = T0.saturating_add(Duration::from_secs(60));
        assert_eq!(b.available(rate, much_later), 5);
    }

    #[test]
    fn a_full_table_forgets_idle_buckets_and_shares_one_otherwise() {
        let rate = Rate::new(1, 2);
        let mut t: Buckets<u8> = Buckets::new(2);
        assert!(t.try_take(1, rate, T0));
        assert!(t.try_take(2, rate, T0));
        // Full of busy buckets: 3 and 4 share the overflow bucket.
        assert!(t.try_take(3, rate, T0));
        assert!(t.try_take(4, rate, T0));
        assert!(!t.try_take(4, rate, T0));
        assert_eq!(t.len(), 2);
        // Later, the idle buckets have refilled and make room.
        let later = T0.saturating_add(Duration::from_secs(10));
        assert!(t.try_take(5, rate, later));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn lookups_in_flight_are_capped_per_source_and_per_link() {
        let config = CoreConfig {
            max_lookups_per_source: 2,
            max_lookups_per_link: 3,
            ..CoreConfig::default()
        };
        let mut l = LookupLimits::new(&config);
        let a = Name::from_bytes([1; 32]);
        let b = Name::from_bytes([2; 32]);
        let on = |source| Origin {
            source,
            link: Some(LinkId(7)),
        };
        for _ in 0..2 {
            assert_eq!(l.check(&config, on(a), T0), Ok(()));
            l.start(&config, on(a), T0);
        }
        assert_eq!(l.check(&config, on(a), T0), Err(Limited::Source));
        assert_eq!(l.check(&config, on(b), T0), Ok(()));
        l.start(&config, on(b), T0);
        assert_eq!(l.check(&config, on(b), T0), Err(Limited::Link));
        l.finish(on(a));
        assert_eq!(l.in_flight(&a), 1);
        assert_eq!(l.check(&config, on(a), T0), Ok(()));
    }

    #[test]
    fn the_rate_holds_a_source_that_never_waits() {
        let config = CoreConfig {
            lookup_rate_per_source: Rate::new(10, 10),
            ..CoreConfig::default()
        };
        let mut l = LookupLimits::new(&config);
        let origin = Origin {
            source: Name::from_bytes([1; 32]),
            link: None,
        };
        let mut started = 0;
        for i in 0..1_000u64 {
            // 1,000 misses over one second, each finished at once.
            let now = Timestamp(T0.0 + i * 1_000);
            if l.check(&config, origin, now).is_ok() {
                l.start(&config, origin, now);
                l.finish(origin);
                started += 1;
            }
        }
        assert!((10..=20).contains(&started), "{started} started");
    }
}
