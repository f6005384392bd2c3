//! Which subscriptions the driver knows of, to act on the router's NAKs.
//!
//! The router answers a PDU it cannot deliver with a NakNoRoute carrying
//! the PDU's destination, source and sequence id. An event is a response to
//! a subscriber's `Subscribe` request, so a NAK whose (subscriber, capsule,
//! request id) is a subscription known here is about a lost event. What it
//! means depends on its reason ([`Subscribers::on_nak`]):
//!
//! - [`NakReason::NoRoute`]: no router knows a route to the subscriber any
//!   more: the peer is gone. Every subscription of that peer is forgotten
//!   here and the service is told ([`Verdict::PeerGone`]), which frees its
//!   subscription slots and rate-limit state.
//! - any other reason (a TTL that ran out, a directory that could not be
//!   asked, a policy): the route may come back, so only that subscription
//!   ends ([`Verdict::EndSubscription`]); the subscriber, which missed an
//!   event, subscribes again from its last seqno.
//!
//! A NAK that matches no known subscription changes nothing: a peer that
//! wants to end someone else's subscriptions would have to know the
//! subscriber's name, the capsule and the id of its current `Subscribe`.
//! The map is bounded ([`MAX_TRACKED`]); beyond it, new subscriptions are
//! not tracked and NAKs for them change nothing.

use std::collections::HashMap;

use gdp_certs::Name;
use gdp_proto::control::NakReason;

/// Most subscriptions tracked for NAK handling.
pub(crate) const MAX_TRACKED: usize = 262_144;

/// What a NAK means for the subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It is not about a known subscription.
    Ignore,
    /// End this one subscription, whose `Subscribe` had this id.
    EndSubscription {
        /// The subscriber.
        peer: Name,
        /// The capsule.
        capsule: Name,
        /// The id of its `Subscribe` request.
        request_id: u64,
    },
    /// The peer is gone; its subscriptions here are forgotten already.
    PeerGone(Name),
}

/// The current `Subscribe` request id of each (subscriber, capsule),
/// grouped by subscriber. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    by_peer: HashMap<Name, HashMap<Name, u64>>,
    len: usize,
}

impl Subscribers {
    /// `peer` subscribed to `capsule` with request `request_id` (replacing
    /// any earlier subscription of the pair).
    pub(crate) fn subscribed(&mut self, peer: Name, capsule: Name, request_id: u64) {
        let known = self
            .by_peer
            .get(&peer)
            .is_some_and(|m| m.contains_key(&capsule));
        if !known && self.len >= MAX_TRACKED {
            return;
        }
        if self
            .by_peer
            .entry(peer)
            .or_default()
            .insert(capsule, request_id)
            .is_none()
        {
            self.len += 1;
        }
    }

    /// `peer` unsubscribed from `capsule`.
    pub(crate) fn unsubscribed(&mut self, peer: &Name, capsule: &Name) {
        if let Some(m) = self.by_peer.get_mut(peer) {
            if m.remove(capsule).is_some() {
                self.len -= 1;
            }
            if m.is_empty() {
                self.by_peer.remove(peer);
            }
        }
    }

    /// What a NAK from the router means: for a PDU from `from` (a capsule)
    /// to `unreachable` with sequence id `seq`, for `reason`.
    pub(crate) fn on_nak(
        &mut self,
        unreachable: Name,
        from: Name,
        seq: u64,
        reason: NakReason,
    ) -> Verdict {
        let current = self
            .by_peer
            .get(&unreachable)
            .and_then(|m| m.get(&from))
            .copied();
        if current != Some(seq) {
            return Verdict::Ignore;
        }
        if reason == NakReason::NoRoute {
            if let Some(m) = self.by_peer.remove(&unreachable) {
                self.len -= m.len();
            }
            return Verdict::PeerGone(unreachable);
        }
        self.unsubscribed(&unreachable, &from);
        Verdict::EndSubscription {
            peer: unreachable,
            capsule: from,
            request_id: seq,
        }
    }

    /// How many subscriptions are tracked.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u8) -> Name {
        Name::from_bytes([i; 32])
    }

    #[test]
    fn a_no_route_nak_for_an_event_means_the_peer_is_gone() {
        let mut s = Subscribers::default();
        s.subscribed(n(1), n(10), 5);
        s.subscribed(n(1), n(11), 6);
        s.subscribed(n(2), n(10), 7);
        assert_eq!(s.len(), 3);
        // Not the current subscription: nothing.
        assert_eq!(
            s.on_nak(n(1), n(10), 4, NakReason::NoRoute),
            Verdict::Ignore
        );
        assert_eq!(
            s.on_nak(n(3), n(10), 5, NakReason::NoRoute),
            Verdict::Ignore
        );
        assert_eq!(
            s.on_nak(n(1), n(10), 5, NakReason::NoRoute),
            Verdict::PeerGone(n(1))
        );
        assert_eq!(s.len(), 1);
        // Everything of that peer is forgotten.
        assert_eq!(
            s.on_nak(n(1), n(11), 6, NakReason::NoRoute),
            Verdict::Ignore
        );
    }

    #[test]
    fn other_naks_end_one_subscription() {
        let mut s = Subscribers::default();
        s.subscribed(n(1), n(10), 5);
        s.subscribed(n(1), n(11), 6);
        assert_eq!(
            s.on_nak(n(1), n(10), 5, NakReason::TtlExpired),
            Verdict::EndSubscription {
                peer: n(1),
                capsule: n(10),
                request_id: 5
            }
        );
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.on_nak(n(1), n(10), 5, NakReason::TtlExpired),
            Verdict::Ignore
        );
        // A new Subscribe replaces the id.
        s.subscribed(n(1), n(11), 9);
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.on_nak(n(1), n(11), 6, NakReason::DirectoryUnavailable),
            Verdict::Ignore
        );
        s.unsubscribed(&n(1), &n(11));
        assert_eq!(s.len(), 0);
        assert!(s.by_peer.is_empty());
    }

    #[test]
    fn tracking_is_bounded() {
        let mut s = Subscribers::default();
        for i in 0..MAX_TRACKED as u64 + 10 {
            let capsule = Name::from_bytes({
                let mut b = [0u8; 32];
                b[..8].copy_from_slice(&i.to_le_bytes());
                b
            });
            s.subscribed(n(1), capsule, i);
        }
        assert_eq!(s.len(), MAX_TRACKED);
        // A known pair may still be replaced.
        s.subscribed(n(1), Name::from_bytes([0; 32]), 99);
        assert_eq!(s.len(), MAX_TRACKED);
        assert_eq!(
            s.on_nak(n(1), Name::from_bytes([0; 32]), 99, NakReason::NoRoute),
            Verdict::PeerGone(n(1))
        );
        assert_eq!(s.len(), 0);
    }
}
