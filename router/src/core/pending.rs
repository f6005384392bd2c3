//! PDUs waiting for a route.
//!
//! When the FIB has no entry for a destination, the PDU waits here while the
//! core resolves the name. The queue is bounded five ways: PDUs for one
//! name, PDUs from one source name, PDUs that arrived on one link, PDUs in
//! all, and bytes in all (each PDU counted by its length plus
//! [`PDU_OVERHEAD`]), so a flood towards unknown names cannot take more than
//! a fixed amount of memory, and one source or link cannot take all of it.
//! Each PDU carries its deadline; the core expires them on timers and
//! answers each expired one with a NAK.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use gdp_certs::{Name, Timestamp};
use gdp_proto::PduHeader;

use super::config::CoreConfig;
use super::io::LinkId;

/// Bytes counted for each held PDU besides its own: the queue entry, the
/// parsed header and the buffer handle.
pub(crate) const PDU_OVERHEAD: usize = size_of::<PendingPdu>() + 32;

/// A PDU held until its destination resolves.
#[derive(Debug, Clone)]
pub(crate) struct PendingPdu {
    /// The PDU as it arrived.
    pub(crate) bytes: Bytes,
    /// Its parsed header (for the NAK if it never leaves).
    pub(crate) header: PduHeader,
    /// When it gives up waiting.
    pub(crate) deadline: Timestamp,
    /// The link it arrived on (`None` if this router originated it).
    pub(crate) link: Option<LinkId>,
}

impl PendingPdu {
    fn cost(&self) -> usize {
        self.bytes.len() + PDU_OVERHEAD
    }
}

/// Which bound a push hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueFull {
    /// The name already holds `per_name` PDUs.
    Name,
    /// The queue holds `total` PDUs.
    Total,
    /// The queue holds `bytes` bytes.
    Bytes,
    /// The source already has `per_source` PDUs waiting.
    Source,
    /// The link already has `per_link` PDUs waiting.
    Link,
}

/// The bounds of a [`PendingQueue`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingLimits {
    pub(crate) per_name: usize,
    pub(crate) per_source: usize,
    pub(crate) per_link: usize,
    pub(crate) total: usize,
    pub(crate) bytes: usize,
}

impl PendingLimits {
    pub(crate) fn from_config(c: &CoreConfig) -> Self {
        PendingLimits {
            per_name: c.pending_per_name,
            per_source: c.pending_per_source,
            per_link: c.pending_per_link,
            total: c.pending_total,
            bytes: c.pending_bytes,
        }
    }
}

/// The bounded pending queue, keyed by destination name.
#[derive(Debug)]
pub(crate) struct PendingQueue {
    by_name: BTreeMap<Name, VecDeque<PendingPdu>>,
    by_source: BTreeMap<Name, usize>,
    by_link: BTreeMap<LinkId, usize>,
    len: usize,
    bytes: usize,
    limits: PendingLimits,
}

impl PendingQueue {
    pub(crate) fn new(limits: PendingLimits) -> Self {
        PendingQueue {
            by_name: BTreeMap::new(),
            by_source: BTreeMap::new(),
            by_link: BTreeMap::new(),
            len: 0,
            bytes: 0,
            limits,
        }
    }

    /// Holds `pdu` for `name`. Returns `Ok(true)` if it is the first PDU
    /// waiting for the name (so the caller schedules its deadline).
    pub(crate) fn push(&mut self, name: Name, pdu: PendingPdu) -> Result<bool, QueueFull> {
        let l = self.limits;
        if self.len >= l.total {
            return Err(QueueFull::Total);
        }
        if self.bytes.saturating_add(pdu.cost()) > l.bytes {
            return Err(QueueFull::Bytes);
        }
        if self.by_source.get(&pdu.header.src).copied().unwrap_or(0) >= l.per_source {
            return Err(QueueFull::Source);
        }
        if let Some(link) = pdu.link
            && self.by_link.get(&link).copied().unwrap_or(0) >= l.per_link
        {
            return Err(QueueFull::Link);
        }
        if self.by_name.get(&name).map_or(0, VecDeque::len) >= l.per_name {
            return Err(QueueFull::Name);
        }
        *self.by_source.entry(pdu.header.src).or_default() += 1;
        if let Some(link) = pdu.link {
            *self.by_link.entry(link).or_default() += 1;
        }
        self.len += 1;
        self.bytes += pdu.cost();
        let q = self.by_name.entry(name).or_default();
        let first = q.is_empty();
        q.push_back(pdu);
        Ok(first)
    }

    /// Counts `p` out of the totals.
    fn forget(&mut self, p: &PendingPdu) {
        self.len -= 1;
        self.bytes -= p.cost();
        decrement(&mut self.by_source, p.header.src);
        if let Some(link) = p.link {
            decrement(&mut self.by_link, link);
        }
    }

    /// Takes every PDU waiting for `name`, oldest first.
    pub(crate) fn take(&mut self, name: &Name) -> VecDeque<PendingPdu> {
        let q = self.by_name.remove(name).unwrap_or_default();
        for p in &q {
            self.forget(p);
        }
        q
    }

    /// Takes the PDUs for `name` whose deadline is at or before `now`.
    pub(crate) fn expire(&mut self, name: &Name, now: Timestamp) -> Vec<PendingPdu> {
        let Some(q) = self.by_name.get_mut(name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        // Deadlines are pushed in arrival order, so expired PDUs are a prefix.
        while q.front().is_some_and(|p| p.deadline <= now) {
            if let Some(p) = q.pop_front() {
                out.push(p);
            }
        }
        if q.is_empty() {
            self.by_name.remove(name);
        }
        for p in &out {
            self.forget(p);
        }
        out
    }

    /// The earliest deadline of the PDUs waiting for `name`.
    pub(crate) fn next_deadline(&self, name: &Name) -> Option<Timestamp> {
        self.by_name.get(name)?.front().map(|p| p.deadline)
    }

    /// PDUs waiting for `name`.
    pub(crate) fn len_for(&self, name: &Name) -> usize {
        self.by_name.get(name).map_or(0, VecDeque::len)
    }

    /// PDUs waiting in all.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes counted for the PDUs waiting.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
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
    use gdp_proto::PduType;
    use proptest::prelude::*;

    fn limits(per_name: usize, total: usize) -> PendingLimits {
        PendingLimits {
            per_name,
            per_source: usize::MAX,
            per_link: usize::MAX,
            total,
            bytes: usize::MAX,
        }
    }

    fn from(src: u8, link: u64, deadline: u64, len: usize) -> PendingPdu {
        PendingPdu {
            bytes: Bytes::from(vec![0; len]),
            header: PduHeader::new(
                PduType::Data,
                Name::ZERO,
                Name::from_bytes([src; 32]),
                deadline,
            ),
            deadline: Timestamp(deadline),
            link: Some(LinkId(link)),
        }
    }

    fn pdu(deadline: u64) -> PendingPdu {
        from(0, 0, deadline, 0)
    }

    #[test]
    fn bounds_per_name_and_in_total() {
        let mut q = PendingQueue::new(limits(2, 3));
        let a = Name::from_bytes([1; 32]);
        let b = Name::from_bytes([2; 32]);
        assert_eq!(q.push(a, pdu(1)), Ok(true));
        assert_eq!(q.push(a, pdu(2)), Ok(false));
        assert_eq!(q.push(a, pdu(3)), Err(QueueFull::Name));
        assert_eq!(q.push(b, pdu(4)), Ok(true));
        assert_eq!(q.push(b, pdu(5)), Err(QueueFull::Total));
        assert_eq!(q.len(), 3);
        assert_eq!(q.take(&a).len(), 2);
        assert_eq!(q.len(), 1);
        assert_eq!(q.len_for(&a), 0);
    }

    #[test]
    fn bounds_per_source_per_link_and_in_bytes() {
        let mut q = PendingQueue::new(PendingLimits {
            per_name: 100,
            per_source: 2,
            per_link: 3,
            total: 100,
            bytes: 4 * (1_000 + PDU_OVERHEAD),
        });
        let a = Name::from_bytes([1; 32]);
        assert_eq!(q.push(a, from(1, 1, 1, 10)), Ok(true));
        assert_eq!(q.push(a, from(1, 1, 1, 10)), Ok(false));
        assert_eq!(q.push(a, from(1, 2, 1, 10)), Err(QueueFull::Source));
        assert_eq!(q.push(a, from(2, 1, 1, 10)), Ok(false));
        assert_eq!(q.push(a, from(3, 1, 1, 10)), Err(QueueFull::Link));
        // Another source on another link still gets in, up to the bytes.
        assert_eq!(q.push(a, from(3, 2, 1, 1_000)), Ok(false));
        assert_eq!(q.push(a, from(4, 3, 1, 4_000)), Err(QueueFull::Bytes));
        assert_eq!(q.take(&a).len(), 4);
        assert_eq!((q.len(), q.bytes()), (0, 0));
        assert_eq!(q.push(a, from(1, 1, 1, 10)), Ok(true));
    }

    #[test]
    fn expiry_takes_the_expired_prefix() {
        let mut q = PendingQueue::new(limits(8, 8));
        let a = Name::from_bytes([1; 32]);
        for d in [10, 20, 30] {
            q.push(a, pdu(d)).expect("room");
        }
        assert_eq!(q.expire(&a, Timestamp(20)).len(), 2);
        assert_eq!(q.next_deadline(&a), Some(Timestamp(30)));
        assert_eq!(q.expire(&a, Timestamp(30)).len(), 1);
        assert_eq!(q.next_deadline(&a), None);
        assert_eq!(q.len(), 0);
    }

    proptest! {
        #[test]
        fn length_and_bytes_are_always_the_sums(ops in proptest::collection::vec((0u8..4, 0u8..3, 0u64..50), 0..100)) {
            let mut q = PendingQueue::new(PendingLimits {
                per_name: 5,
                per_source: 7,
                per_link: 9,
                total: 12,
                bytes: 8 * PDU_OVERHEAD + 40,
            });
            for (n, op, t) in ops {
                let name = Name::from_bytes([n; 32]);
                match op {
                    0 => { let _ = q.push(name, from(n % 2, t % 3, t, usize::from(n) * 5)); }
                    1 => { q.expire(&name, Timestamp(t)); }
                    _ => { q.take(&name); }
                }
                let sum: usize = (0u8..4).map(|n| q.len_for(&Name::from_bytes([n; 32]))).sum();
                prop_assert_eq!(q.len(), sum);
                prop_assert!(q.len() <= 12);
                prop_assert!(q.bytes() <= 8 * PDU_OVERHEAD + 40);
                prop_assert_eq!(q.by_source.values().sum::<usize>(), sum);
                prop_assert_eq!(q.by_link.values().sum::<usize>(), sum);
                if sum == 0 {
                    prop_assert_eq!(q.bytes(), 0);
                }
            }
        }
    }
}
