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
    queues: BTreeMap<(LinkId, bool), Vec<Bytes>>,
    order: VecDeque<(LinkId, bool)>,
    limit: usize,
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
        if q.len() >= self.limit {
            return Err(Full);
        }
        if q.is_empty() {
            self.order.push_back((link, reliable));
        }
        q.push(pdu);
        Ok(())
    }

    /// The next batch.
    pub(crate) fn pop(&mut self) -> Option<Transmit> {
        while let Some(key) = self.order.pop_front() {
            if let Some(pdus) = self.queues.remove(&key)
                && !pdus.is_empty()
            {
                return Some(Transmit {
                    link: key.0,
                    pdus,
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
}
