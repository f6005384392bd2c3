//! PDUs waiting for a route.
//!
//! When the FIB has no entry for a destination, the PDU waits here while the
//! core resolves the name. The queue is bounded twice: at most
//! `per_name` PDUs for one name and `total` PDUs in all, so a flood towards
//! unknown names cannot take more than a fixed amount of memory. Each PDU
//! carries its deadline; the core expires them on timers and answers each
//! expired one with a NAK.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use gdp_certs::{Name, Timestamp};
use gdp_proto::PduHeader;

/// A PDU held until its destination resolves.
#[derive(Debug, Clone)]
pub(crate) struct PendingPdu {
    /// The PDU as it arrived.
    pub(crate) bytes: Bytes,
    /// Its parsed header (for the NAK if it never leaves).
    pub(crate) header: PduHeader,
    /// When it gives up waiting.
    pub(crate) deadline: Timestamp,
}

/// Which bound a push hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueFull {
    /// The name already holds `per_name` PDUs.
    Name,
    /// The queue holds `total` PDUs.
    Total,
}

/// The bounded pending queue, keyed by destination name.
#[derive(Debug)]
pub(crate) struct PendingQueue {
    by_name: BTreeMap<Name, VecDeque<PendingPdu>>,
    len: usize,
    per_name: usize,
    total: usize,
}

impl PendingQueue {
    pub(crate) fn new(per_name: usize, total: usize) -> Self {
        PendingQueue {
            by_name: BTreeMap::new(),
            len: 0,
            per_name,
            total,
        }
    }

    /// Holds `pdu` for `name`. Returns `Ok(true)` if it is the first PDU
    /// waiting for the name (so the caller schedules its deadline).
    pub(crate) fn push(&mut self, name: Name, pdu: PendingPdu) -> Result<bool, QueueFull> {
        if self.len >= self.total {
            return Err(QueueFull::Total);
        }
        let q = self.by_name.entry(name).or_default();
        if q.len() >= self.per_name {
            return Err(QueueFull::Name);
        }
        let first = q.is_empty();
        q.push_back(pdu);
        self.len += 1;
        Ok(first)
    }

    /// Takes every PDU waiting for `name`, oldest first.
    pub(crate) fn take(&mut self, name: &Name) -> VecDeque<PendingPdu> {
        let q = self.by_name.remove(name).unwrap_or_default();
        self.len -= q.len();
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
        self.len -= out.len();
        out
    }

    /// The earliest deadline of the PDUs waiting for `name`.
    pub(crate) fn next_deadline(&self, name: &Name) -> Option<Timestamp> {
        self.by_name.get(name)?.front().map(|p| p.deadline)
    }

    /// PDUs waiting for `name`.
    #[cfg(test)]
    pub(crate) fn len_for(&self, name: &Name) -> usize {
        self.by_name.get(name).map_or(0, VecDeque::len)
    }

    /// PDUs waiting in all.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gdp_proto::PduType;
    use proptest::prelude::*;

    fn pdu(deadline: u64) -> PendingPdu {
        PendingPdu {
            bytes: Bytes::new(),
            header: PduHeader::new(PduType::Data, Name::ZERO, Name::ZERO, deadline),
            deadline: Timestamp(deadline),
        }
    }

    #[test]
    fn bounds_per_name_and_in_total() {
        let mut q = PendingQueue::new(2, 3);
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
    fn expiry_takes_the_expired_prefix() {
        let mut q = PendingQueue::new(8, 8);
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
        fn length_is_always_the_sum(ops in proptest::collection::vec((0u8..4, 0u8..3, 0u64..50), 0..100)) {
            let mut q = PendingQueue::new(5, 12);
            for (n, op, t) in ops {
                let name = Name::from_bytes([n; 32]);
                match op {
                    0 => { let _ = q.push(name, pdu(t)); }
                    1 => { q.expire(&name, Timestamp(t)); }
                    _ => { q.take(&name); }
                }
                let sum: usize = (0u8..4).map(|n| q.len_for(&Name::from_bytes([n; 32]))).sum();
                prop_assert_eq!(q.len(), sum);
                prop_assert!(q.len() <= 12);
            }
        }
    }
}
