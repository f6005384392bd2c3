//! What comes in on an endpoint link: the [`EndpointReceiver`], which
//! reads the transport's batches of PDUs and hands them to the owner as
//! [`EndpointEvent`]s, decoding each as it is taken.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use gdp_certs::Name;
use gdp_certs::codec::Decode;
use gdp_proto::control::{ControlMessage, NakReason};
use gdp_proto::pdu::{Pdu, PduType};
use tokio::sync::mpsc;

use super::transport_gone;
use crate::{Credit, DownReason, LinkEvent, LinkId};

/// A NakNoRoute the router sent: a PDU this endpoint sent could not be
/// delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nak {
    /// The destination that could not be reached.
    pub unreachable: Name,
    /// Why.
    pub reason: NakReason,
    /// The `seq` of the PDU that was not delivered.
    pub seq: u64,
    /// The name the undelivered PDU came from (this endpoint, or a capsule
    /// it serves).
    pub to: Name,
    /// The router that gave up.
    pub from: Name,
}

/// What an [`EndpointReceiver`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointEvent {
    /// A PDU from the router (forwarded from anywhere), decoded.
    Pdu {
        /// The PDU; its payload shares the received buffer.
        pdu: Pdu,
        /// True if it came on the reliable stream, false as a datagram.
        reliable: bool,
    },
    /// A PDU sent from here could not be delivered.
    NakNoRoute(Nak),
    /// The link is down; nothing follows.
    Down(DownReason),
}

/// Incoming PDUs of an [`EndpointLink`](super::EndpointLink). See the
/// [module documentation](super).
///
/// It reads the link's transport directly: each batch of PDUs the link's
/// reader hands over is decoded here, one PDU per event as the owner
/// takes it, with no task in between. The batch keeps its share of the
/// transport's queue until the owner has taken every event of it, so an
/// owner that falls behind slows the router down through QUIC flow
/// control instead of losing PDUs.
#[derive(Debug)]
pub struct EndpointReceiver {
    id: LinkId,
    events: mpsc::Receiver<LinkEvent>,
    /// The batch being handed out.
    batch: std::vec::IntoIter<Bytes>,
    reliable: bool,
    /// The batch's share of the transport's queue, given back once it is
    /// handed out.
    credit: Option<Credit>,
    dropped: Arc<Dropped>,
    /// Set once `Down` has been handed out: nothing follows.
    done: bool,
    /// Whether dropping it before `Down` leaves a task reading the rest
    /// (the owner's receiver does; that task's own does not).
    drain_on_drop: bool,
}

impl EndpointReceiver {
    /// The receiver of link `id`, whose transport delivers to `events`;
    /// `early` arrived with the attach and comes first.
    pub(super) fn new(
        id: LinkId,
        early: Vec<Bytes>,
        events: mpsc::Receiver<LinkEvent>,
        dropped: Arc<Dropped>,
    ) -> Self {
        EndpointReceiver {
            id,
            events,
            batch: early.into_iter(),
            reliable: true,
            credit: None,
            dropped,
            done: false,
            drain_on_drop: true,
        }
    }

    /// The next event of the batch being handed out, if one is left.
    fn next_of_batch(&mut self) -> Option<EndpointEvent> {
        for bytes in self.batch.by_ref() {
            if let Some(event) = sort(bytes, self.reliable, &self.dropped) {
                return Some(event);
            }
        }
        self.credit = None;
        None
    }

    /// Takes in one event of the transport; returns the event it makes
    /// for the owner, if it makes one rather than a batch.
    fn take(&mut self, event: Option<LinkEvent>) -> Option<EndpointEvent> {
        let reason = match event {
            Some(LinkEvent::Pdus {
                link_id,
                pdus,
                reliable,
                credit,
            }) if link_id == self.id => {
                self.batch = pdus.into_iter();
                self.reliable = reliable;
                self.credit = Some(credit);
                return None;
            }
            Some(LinkEvent::Down { link_id, reason }) if link_id == self.id => {
                tracing::info!(link = %self.id, %reason, "endpoint link down");
                reason
            }
            Some(LinkEvent::Up { link, .. }) if link.id() != self.id => {
                link.close("an endpoint takes no other links");
                return None;
            }
            Some(_) => return None,
            None => transport_gone(),
        };
        self.done = true;
        Some(EndpointEvent::Down(reason))
    }

    /// The next event, waiting for one; `None` after [`EndpointEvent::Down`].
    /// Cancel-safe: nothing is lost when the future is dropped.
    pub async fn recv(&mut self) -> Option<EndpointEvent> {
        loop {
            if let Some(event) = self.next_of_batch() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            let event = self.events.recv().await;
            if let Some(event) = self.take(event) {
                return Some(event);
            }
        }
    }

    /// The next event if one has arrived.
    pub fn try_recv(&mut self) -> Option<EndpointEvent> {
        loop {
            if let Some(event) = self.next_of_batch() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            let event = match self.events.try_recv() {
                Ok(event) => Some(event),
                Err(mpsc::error::TryRecvError::Empty) => return None,
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
            if let Some(event) = self.take(event) {
                return Some(event);
            }
        }
    }

    /// Waits for at least one event, then moves every event that has
    /// arrived, up to `max`, into `out`. Returns how many were moved; 0
    /// only once the link is down and everything was delivered (or `max`
    /// is 0). Cancel-safe.
    pub async fn recv_many(&mut self, out: &mut Vec<EndpointEvent>, max: usize) -> usize {
        if max == 0 {
            return 0;
        }
        let Some(first) = self.recv().await else {
            return 0;
        };
        out.push(first);
        let mut moved = 1;
        while moved < max {
            match self.try_recv() {
                Some(event) => {
                    out.push(event);
                    moved += 1;
                }
                None => break,
            }
        }
        moved
    }
}

impl Drop for EndpointReceiver {
    /// An owner that drops its receiver discards what arrives: the link's
    /// events are read and dropped until it is down, so that the link
    /// keeps flowing.
    fn drop(&mut self) {
        if self.done || !self.drain_on_drop {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut rest = EndpointReceiver {
            id: self.id,
            events: std::mem::replace(&mut self.events, mpsc::channel(1).1),
            batch: Vec::new().into_iter(),
            reliable: true,
            credit: None,
            dropped: self.dropped.clone(),
            done: false,
            drain_on_drop: false,
        };
        self.done = true;
        runtime.spawn(async move { while rest.recv().await.is_some() {} });
    }
}

/// Counters of what the receiver dropped.
#[derive(Debug, Default)]
pub(super) struct Dropped {
    pub(super) count: AtomicU64,
}

/// The event a raw PDU from the router makes, if it makes one; what does
/// not decode, and link-local control PDUs, are dropped and counted.
fn sort(bytes: Bytes, reliable: bool, dropped: &Dropped) -> Option<EndpointEvent> {
    let pdu = match Pdu::decode(bytes) {
        Ok(p) => p,
        Err(e) => {
            dropped.count.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "undecodable pdu from the router dropped");
            return None;
        }
    };
    match pdu.header.ptype {
        PduType::NakNoRoute => match ControlMessage::from_pdu(&pdu) {
            Ok(ControlMessage::NakNoRoute { dst, reason }) => {
                Some(EndpointEvent::NakNoRoute(Nak {
                    unreachable: dst,
                    reason,
                    seq: pdu.header.seq,
                    to: pdu.header.dst,
                    from: pdu.header.src,
                }))
            }
            _ => {
                dropped.count.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("undecodable nak from the router dropped");
                None
            }
        },
        PduType::Control => {
            dropped.count.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("link-local control pdu after the attach ignored");
            None
        }
        _ => Some(EndpointEvent::Pdu { pdu, reliable }),
    }
}
