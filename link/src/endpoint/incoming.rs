//! What comes in on an endpoint link: the pump task that decodes the
//! transport's PDU batches and sorts them into [`EndpointEvent`]s, and the
//! [`EndpointReceiver`] the owner reads them from.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use gdp_certs::Name;
use gdp_certs::codec::Decode;
use gdp_proto::control::{ControlMessage, NakReason};
use gdp_proto::pdu::{Pdu, PduType};
use tokio::sync::{mpsc, watch};

use super::transport_gone;
use crate::{DownReason, LinkEvent, LinkId};

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
#[derive(Debug)]
pub struct EndpointReceiver {
    rx: mpsc::Receiver<Vec<EndpointEvent>>,
    buf: VecDeque<EndpointEvent>,
}

impl EndpointReceiver {
    pub(super) fn new(rx: mpsc::Receiver<Vec<EndpointEvent>>) -> Self {
        EndpointReceiver {
            rx,
            buf: VecDeque::new(),
        }
    }

    /// The next event, waiting for one; `None` after [`EndpointEvent::Down`].
    /// Cancel-safe: nothing is lost when the future is dropped.
    pub async fn recv(&mut self) -> Option<EndpointEvent> {
        loop {
            if let Some(event) = self.buf.pop_front() {
                return Some(event);
            }
            let batch = self.rx.recv().await?;
            self.buf.extend(batch);
        }
    }

    /// The next event if one has arrived.
    pub fn try_recv(&mut self) -> Option<EndpointEvent> {
        if self.buf.is_empty()
            && let Ok(batch) = self.rx.try_recv()
        {
            self.buf.extend(batch);
        }
        self.buf.pop_front()
    }

    /// Waits for at least one event, then moves every event that has
    /// arrived, up to `max`, into `out`. Returns how many were moved; 0
    /// only once the link is down and everything was delivered (or `max`
    /// is 0). Cancel-safe.
    pub async fn recv_many(&mut self, out: &mut Vec<EndpointEvent>, max: usize) -> usize {
        if max == 0 {
            return 0;
        }
        if self.buf.is_empty() {
            match self.rx.recv().await {
                Some(batch) => self.buf.extend(batch),
                None => return 0,
            }
        }
        let mut moved = 0;
        while moved < max {
            if self.buf.is_empty() {
                match self.rx.try_recv() {
                    Ok(batch) => self.buf.extend(batch),
                    Err(_) => break,
                }
            }
            match self.buf.pop_front() {
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

/// Counters of what the pump dropped.
#[derive(Debug, Default)]
pub(super) struct Dropped {
    pub(super) count: AtomicU64,
}

/// Sorts raw PDUs into events, counting what is dropped.
fn sort(pdus: Vec<Bytes>, reliable: bool, dropped: &Dropped) -> Vec<EndpointEvent> {
    let mut out = Vec::with_capacity(pdus.len());
    for bytes in pdus {
        let pdu = match Pdu::decode(bytes) {
            Ok(p) => p,
            Err(e) => {
                dropped.count.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "undecodable pdu from the router dropped");
                continue;
            }
        };
        match pdu.header.ptype {
            PduType::NakNoRoute => match ControlMessage::from_pdu(&pdu) {
                Ok(ControlMessage::NakNoRoute { dst, reason }) => {
                    out.push(EndpointEvent::NakNoRoute(Nak {
                        unreachable: dst,
                        reason,
                        seq: pdu.header.seq,
                        to: pdu.header.dst,
                        from: pdu.header.src,
                    }));
                }
                _ => {
                    dropped.count.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("undecodable nak from the router dropped");
                }
            },
            PduType::Control => {
                dropped.count.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("link-local control pdu after the attach ignored");
            }
            _ => out.push(EndpointEvent::Pdu { pdu, reliable }),
        }
    }
    out
}

/// Moves the link's events to the receiver until the link is down.
pub(super) async fn pump(
    id: LinkId,
    early: Vec<Bytes>,
    mut events: mpsc::Receiver<LinkEvent>,
    tx: mpsc::Sender<Vec<EndpointEvent>>,
    down: watch::Sender<Option<DownReason>>,
    dropped: Arc<Dropped>,
) {
    // Once the receiver is gone, incoming PDUs are read and discarded so
    // that the link keeps flowing.
    let mut deliver = true;
    let early = sort(early, true, &dropped);
    if !early.is_empty() && tx.send(early).await.is_err() {
        deliver = false;
    }
    while let Some(event) = events.recv().await {
        match event {
            // The batch's credit is held until it is passed on.
            LinkEvent::Pdus {
                link_id,
                pdus,
                reliable,
                ..
            } if link_id == id => {
                let batch = sort(pdus, reliable, &dropped);
                if deliver && !batch.is_empty() && tx.send(batch).await.is_err() {
                    deliver = false;
                }
            }
            LinkEvent::Down { link_id, reason } if link_id == id => {
                tracing::info!(link = %id, %reason, "endpoint link down");
                down.send_replace(Some(reason.clone()));
                if deliver {
                    let _ = tx.send(vec![EndpointEvent::Down(reason)]).await;
                }
                return;
            }
            LinkEvent::Up { link, .. } if link.id() != id => {
                link.close("an endpoint takes no other links");
            }
            _ => {}
        }
    }
    let reason = transport_gone();
    down.send_replace(Some(reason.clone()));
    if deliver {
        let _ = tx.send(vec![EndpointEvent::Down(reason)]).await;
    }
}
