//! The forwarding path.
//!
//! For each PDU: check its size, parse the fixed header in place
//! ([`peek_header`], no allocation), then ask [`decide`] (the fast path's
//! predicate over the FIB, the same one link readers run): when it
//! forwards, the PDU is queued on its hop and that is all. Otherwise the
//! slow path: dispatch by link role and PDU type, check the source on
//! endpoint links and on links to directory-vouched routers (the `entitle`
//! module), then look the destination up:
//!
//! - destination is this router: answer a Ping with a Pong, consume a NAK;
//! - FIB hit: queue the *same* bytes for the next hop. Towards a router the
//!   TTL is decremented in place first (a PDU whose TTL is already zero is
//!   dropped and counted: this ends loops); delivery to a local endpoint
//!   leaves it alone;
//! - miss: the `resolve` module answers from the negative cache, or parks
//!   the PDU and resolves the name within its source's and link's budgets.
//!
//! A delivery tree's PDUs (Subscribe, Unsubscribe, Publish) are never
//! forwarded by the FIB: the `tree` module acts on them, after the same
//! source checks (a Subscribe's source must be the name proven on its
//! link: the attached endpoint's, or the peer router's).
//!
//! Malformed, oversized and spoofed PDUs are violations: dropped, counted per
//! link, and the link is closed when they reach `max_violations`.

use bytes::{Bytes, BytesMut};
use gdp_certs::codec::{DecodeError, Encode};
use gdp_certs::{Name, Timestamp};
use gdp_proto::control::{ControlMessage, NakReason};
use gdp_proto::pdu::{HEADER_LEN, MAX_PDU_LEN, Pdu, decrement_ttl, peek_header};
use gdp_proto::{Flags, PduHeader, PduType};

use super::attach::LinkKind;
use super::fast::{CoreView, Hop, Ingress, Verdict, decide};
use super::io::LinkId;
use super::{DropReason, FibEntry, RouterCore};

impl RouterCore {
    /// One PDU arrived on `link`: `bytes` is exactly one encoded PDU (one
    /// stream frame or one datagram).
    pub fn handle_pdu(&mut self, now: Timestamp, link: LinkId, bytes: Bytes) {
        self.handle_pdus(now, link, std::iter::once(bytes));
    }

    /// Several PDUs arrived on `link`, in order: the same as one
    /// [`handle_pdu`](RouterCore::handle_pdu) each, with the gauges
    /// refreshed once for the batch instead of once per PDU.
    pub fn handle_pdus(
        &mut self,
        now: Timestamp,
        link: LinkId,
        pdus: impl IntoIterator<Item = Bytes>,
    ) {
        self.start(now);
        self.ingress = Some(link);
        for bytes in pdus {
            self.on_pdu(now, link, bytes);
        }
        self.ingress = None;
        self.refresh_gauges();
    }

    fn on_pdu(&mut self, now: Timestamp, link: LinkId, bytes: Bytes) {
        let Some(state) = self.links.get(&link) else {
            // A link the core never saw or already closed.
            return;
        };
        if bytes.len() > MAX_PDU_LEN {
            return self.violation(now, link, DropReason::Oversized);
        }
        let header = match peek_header(&bytes) {
            Ok(h) => h,
            Err(DecodeError::TooLong { .. }) => {
                return self.violation(now, link, DropReason::Oversized);
            }
            Err(_) => return self.violation(now, link, DropReason::Malformed),
        };
        if header.pdu_len() != bytes.len() {
            return self.violation(now, link, DropReason::Malformed);
        }
        let view = CoreView {
            fib: &self.fib,
            links: &self.links,
            now,
        };
        let at = Ingress {
            router: self.name,
            link,
            peer: state.fast_peer(),
        };
        if let Verdict::Forward(hop) = decide(&view, &at, &header) {
            self.debug_check_agreement(now, link, &header, hop);
            self.stats.cache_hits += 1;
            return self.send_hop(hop, &header, bytes);
        }
        // The slow path: what `decide` left to the core, judged by the
        // link table.
        match &state.kind {
            LinkKind::Attaching { .. } => self.on_attaching_pdu(now, link, &header, bytes),
            LinkKind::Endpoint(att) => {
                let source_ok = att.sends_as(&header.src);
                let own_name = att.name == header.src;
                match header.ptype {
                    PduType::Control => {
                        // Endpoints have nothing more to say on the control
                        // channel once attached.
                        self.stats.dropped.count(DropReason::Policy);
                    }
                    PduType::Advertise => self.on_advertise(now, link, bytes.slice(HEADER_LEN..)),
                    PduType::Withdraw => self.on_withdraw(now, link, bytes.slice(HEADER_LEN..)),
                    // An endpoint joins and leaves trees as itself only.
                    PduType::Subscribe | PduType::Unsubscribe if !own_name => {
                        self.violation(now, link, DropReason::BadSource);
                    }
                    PduType::Subscribe | PduType::Unsubscribe => {
                        self.on_tree_control(now, link, &header, &bytes);
                    }
                    _ if !source_ok => self.violation(now, link, DropReason::BadSource),
                    PduType::Publish => self.on_publish(now, link, &header, bytes),
                    _ => self.forward(now, header, bytes),
                }
            }
            LinkKind::Router { name, ready, .. } => {
                let (peer, ready) = (*name, *ready);
                match header.ptype {
                    PduType::Control => self.on_router_control(now, link, &header, bytes),
                    PduType::Advertise | PduType::Withdraw => {
                        self.stats.dropped.count(DropReason::Policy);
                    }
                    // A router joins and leaves trees as itself only.
                    PduType::Subscribe | PduType::Unsubscribe if header.src != peer => {
                        self.violation(now, link, DropReason::BadSource);
                    }
                    // A link not in use is nobody's upstream.
                    PduType::Publish if !ready => self.stats.trees.publish_not_upstream += 1,
                    _ if !ready => self.on_unready_router_pdu(link, peer, header, bytes),
                    PduType::Subscribe | PduType::Unsubscribe => {
                        self.on_tree_control(now, link, &header, &bytes);
                    }
                    PduType::Publish => self.on_publish(now, link, &header, bytes),
                    _ => self.on_router_pdu(now, link, peer, header, bytes),
                }
            }
        }
    }

    /// A PDU from the ready router link `link`, held while its source's
    /// entitlement (or the peer's vouching) was looked up, and now
    /// admitted: a delivery tree's PDUs are acted on, the rest forwarded.
    pub(crate) fn release_held(
        &mut self,
        now: Timestamp,
        link: LinkId,
        header: PduHeader,
        bytes: Bytes,
    ) {
        match header.ptype {
            PduType::Subscribe | PduType::Unsubscribe => {
                if self.tree_sender_ok(link, &header.src) {
                    self.on_tree_control(now, link, &header, &bytes);
                } else {
                    self.violation(now, link, DropReason::BadSource);
                }
            }
            PduType::Publish => self.on_publish(now, link, &header, bytes),
            _ => self.forward_from_router(now, link, header, bytes),
        }
    }

    /// Sends on a PDU from the ready router link `link` whose source passed
    /// its check; a NAK on its way back drops a stale route through `link`
    /// first (see the `moved` module).
    pub(crate) fn forward_from_router(
        &mut self,
        now: Timestamp,
        link: LinkId,
        header: PduHeader,
        bytes: Bytes,
    ) {
        self.learn_from_nak(link, &header, &bytes);
        if let Some(entry) = self.fib.lookup(&header.dst, now)
            && entry.next_hop == link
        {
            return self.hairpin(now, link, entry, header, bytes);
        }
        self.forward(now, header, bytes);
    }

    /// Sends a PDU (received, or originated here) towards `header.dst`.
    pub(crate) fn forward(&mut self, now: Timestamp, header: PduHeader, bytes: Bytes) {
        let dst = header.dst;
        if dst == self.name {
            return self.deliver_here(now, &header, bytes);
        }
        if let Some(entry) = self.fib.lookup(&dst, now) {
            self.stats.cache_hits += 1;
            return self.send_via(entry, &header, bytes);
        }
        self.stats.cache_misses += 1;
        self.on_miss(now, header, bytes);
    }

    /// Queues `bytes` on the entry's link, decrementing the TTL in place
    /// when the next hop is a router.
    pub(crate) fn send_via(&mut self, entry: FibEntry, header: &PduHeader, bytes: Bytes) {
        let link = entry.next_hop;
        let Some(state) = self.links.get(&link) else {
            // The FIB never outlives a link; count rather than trust that.
            self.stats.dropped.count(DropReason::NoRoute);
            return;
        };
        let to_router = state.is_router();
        self.send_hop(Hop { link, to_router }, header, bytes);
    }

    /// Queues `bytes` on `hop`'s link, decrementing the TTL in place when
    /// it leads to a router.
    fn send_hop(&mut self, hop: Hop, header: &PduHeader, bytes: Bytes) {
        let Hop { link, to_router } = hop;
        let bytes = if to_router {
            if header.ttl == 0 {
                self.stats.dropped.count(DropReason::Ttl);
                return;
            }
            match decrement_in_place(bytes) {
                Some(b) => b,
                None => {
                    self.stats.dropped.count(DropReason::Ttl);
                    return;
                }
            }
        } else {
            bytes
        };
        let reliable = !header.flags.contains(Flags::UNRELIABLE);
        if self.outbox.push(link, reliable, bytes).is_err() {
            self.stats.dropped.count(DropReason::QueueFull);
            return;
        }
        self.stats.forwarded += 1;
        if !to_router {
            self.stats.delivered_local += 1;
        }
        if header.ptype == PduType::Subscribe && header.src == self.name {
            // This router's own join (it never forwards another's): the
            // link it leaves on is the tree's upstream.
            self.joined_via(header.dst, link);
        }
    }

    /// A PDU addressed to this router.
    fn deliver_here(&mut self, now: Timestamp, header: &PduHeader, bytes: Bytes) {
        match header.ptype {
            PduType::Ping => match Pdu::new(header.pong(self.name), bytes.slice(HEADER_LEN..)) {
                Ok(pong) => {
                    self.stats.pongs_sent += 1;
                    let header = pong.wire_header();
                    self.forward(now, header, pong.to_bytes());
                }
                Err(_) => self.stats.dropped.count(DropReason::Oversized),
            },
            // A NAK for something this router sent: nothing waits for it.
            PduType::NakNoRoute => {}
            _ => self.stats.dropped.count(DropReason::Unhandled),
        }
    }

    /// Answers the PDU `header` with a NakNoRoute to its source. NAKs and
    /// link-local types are never answered, so NAKs cannot multiply.
    pub(crate) fn nak(&mut self, now: Timestamp, header: &PduHeader, reason: NakReason) {
        let answerable = matches!(
            header.ptype,
            PduType::Data
                | PduType::Capsule
                | PduType::Ping
                | PduType::Pong
                | PduType::Subscribe
                | PduType::Unsubscribe
        );
        if !answerable || header.src == self.name || header.src == Name::ZERO {
            return;
        }
        let msg = ControlMessage::NakNoRoute {
            dst: header.dst,
            reason,
        };
        match msg.to_pdu(header.src, self.name, header.seq) {
            Ok(pdu) => {
                self.stats.naks_sent += 1;
                let h = pdu.wire_header();
                self.forward(now, h, pdu.to_bytes());
            }
            Err(e) => tracing::warn!(error = %e, "nak not built"),
        }
    }
}

/// `bytes` with its TTL decremented, without copying when `bytes` is the
/// only handle on its buffer. `None` if the TTL is already zero.
fn decrement_in_place(bytes: Bytes) -> Option<Bytes> {
    let mut buf = match bytes.try_into_mut() {
        Ok(b) => b,
        Err(shared) => BytesMut::from(&shared[..]),
    };
    decrement_ttl(&mut buf).ok()?;
    Some(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decrement_reuses_a_unique_buffer() {
        let header = PduHeader::new(PduType::Data, Name::ZERO, Name::ZERO, 1).with_ttl(3);
        let pdu = Pdu::new(header, Bytes::from_static(b"payload")).expect("small");
        let bytes = Bytes::from(pdu.to_bytes().to_vec());
        let ptr = bytes.as_ptr();
        let out = decrement_in_place(bytes).expect("ttl left");
        assert_eq!(out.as_ptr(), ptr);
        assert_eq!(peek_header(&out).map(|h| h.ttl), Ok(2));
    }

    #[test]
    fn decrement_refuses_zero_ttl() {
        let header = PduHeader::new(PduType::Data, Name::ZERO, Name::ZERO, 1).with_ttl(0);
        let pdu = Pdu::new(header, Bytes::new()).expect("small");
        assert_eq!(decrement_in_place(pdu.to_bytes()), None);
    }
}
