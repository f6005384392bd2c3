//! PDUs queued per link until the driver drains them.
//!
//! Everything queued for one (link, reliability) pair between two drains
//! leaves in one [`Transmit`], in the order it was queued, so the driver can
//! write a whole batch with one call. Links come out in the order they first
//! got something to send. Each queue is bounded; a full one refuses the PDU
//! and the caller counts the drop.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::io::{LinkId, Transmit};

/// Per-link transmit queues.
#[derive(Debug)]
pub(crate) struct Outbox {
    queues: BTreeMap<(LinkId, bool), Queue>,
    order: VecDeque<(LinkId, bool)>,
    limit: usize,
}

/// The PDUs queued for one (link, reliability) pair. The entry stays while
/// its link is up, so the length of its last batch is at hand to size the
/// next one at its first push instead of letting it grow PDU by PDU.
#[derive(Debug, Default)]
struct Queue {
    pdus: Vec<Bytes>,
    last_len: usize,
}

/// The queue for a link was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

impl Outbox {
    pub(crate) fn new(limit: usize) -> Self {
        Outbox {
            queues: BTreeMap::new(),
            order: VecDeque::new(),
            limit,
        }
    }

    /// Queues `pdu` for `link`.
    pub(crate) fn push(&mut self, link: LinkId, reliable: bool, pdu: Bytes) -> Result<(), Full> {
        let q = self.queues.entry((link, reliable)).or_default();
        if q.pdus.len() >= self.limit {
            return Err(Full);
        }
        if q.pdus.is_empty() {
            self.order.push_back((link, reliable));
            q.pdus.reserve(q.last_len.min(self.limit));
        }
        q.pdus.push(pdu);
        Ok(())
    }

    /// The next batch.
    pub(crate) fn pop(&mut self) -> Option<Transmit> {
        while let Some(key) = self.order.pop_front() {
            if let Some(q) = self.queues.get_mut(&key)
                && !q.pdus.is_empty()
            {
                q.last_len = q.pdus.len();
                return Some(Transmit {
                    link: key.0,
                    pdus: std::mem::take(&mut q.pdus),
                    reliable: key.1,
                });
            }
        }
        None
    }

    /// Forgets everything queued for `link`.
    pub(crate) fn drop_link(&mut self, link: LinkId) {
        self.queues.remove(&(link, true));
        self.queues.remove(&(link, false));
        self.order.retain(|(l, _)| *l != link);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_per_link_in_first_queued_order() {
        let mut o = Outbox::new(2);
        let b = |x: u8| Bytes::from(vec![x]);
        o.push(LinkId(2), true, b(1)).expect("room");
        o.push(LinkId(1), true, b(2)).expect("room");
        o.push(LinkId(2), true, b(3)).expect("room");
        assert_eq!(o.push(LinkId(2), true, b(4)), Err(Full));
        o.push(LinkId(2), false, b(5)).expect("room");
        let t = o.pop().expect("batch");
        assert_eq!(
            (t.link, t.reliable, t.pdus),
            (LinkId(2), true, vec![b(1), b(3)])
        );
        let t = o.pop().expect("batch");
        assert_eq!((t.link, t.pdus.len()), (LinkId(1), 1));
        o.drop_link(LinkId(2));
        assert_eq!(o.pop(), None);
    }

    #[test]
    fn a_drained_queue_fills_again_sized_by_its_last_batch() {
        let mut o = Outbox::new(8);
        let b = |x: u8| Bytes::from(vec![x]);
        for x in 0..5 {
            o.push(LinkId(1), true, b(x)).expect("room");
        }
        assert_eq!(o.pop().map(|t| t.pdus.len()), Some(5));
        assert_eq!(o.pop(), None);
        o.push(LinkId(1), true, b(9)).expect("room");
        let t = o.pop().expect("batch");
        assert!(t.pdus.capacity() >= 5);
        assert_eq!((t.link, t.reliable, t.pdus), (LinkId(1), true, vec![b(9)]));
        assert_eq!(o.pop(), None);
        o.drop_link(LinkId(1));
        o.push(LinkId(1), true, b(7)).expect("room");
        assert_eq!(o.pop().map(|t| t.pdus), Some(vec![b(7)]));
    }
}
