//! The datagram reader: QUIC datagrams into batches of PDUs.
//!
//! In: the connection's datagrams. Each must hold exactly one valid PDU;
//! one that does not is dropped and reported as [`LinkEvent::Malformed`]
//! (never waiting on the owner). Out: what has already arrived, up to
//! [`DATAGRAM_BATCH`] datagrams, as one unreliable [`LinkEvent::Pdus`]
//! batch; when the owner's channel is full, or the link already has its
//! share of datagram batches with the owner
//! ([`datagram_events_per_link`](crate::TransportConfig::datagram_events_per_link)), the
//! batch is dropped and counted, since an unreliable PDU is not worth
//! stalling for. It ends when
//! the connection is gone or the owner's channel is closed.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{DATAGRAM_BATCH, malformed};
use crate::link::{LinkShared, bump, check_pdu};
use crate::{Credit, LinkEvent};

pub(super) async fn read_datagrams(
    shared: Arc<LinkShared>,
    events: mpsc::Sender<LinkEvent>,
    limit: u64,
) {
    let counters = &shared.counters;
    loop {
        let mut next = match shared.conn.read_datagram().await {
            Ok(d) => Some(d),
            Err(_) => return,
        };
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        let mut taken = 0;
        let mut lost = false;
        while let Some(datagram) = next.take() {
            taken += 1;
            match check_pdu(&datagram) {
                Ok(()) => {
                    bytes += datagram.len() as u64;
                    batch.push(datagram);
                }
                Err(e) => {
                    // Never wait on the owner for a datagram.
                    let _ = events.try_send(malformed(&shared, e, false, limit));
                }
            }
            if taken == DATAGRAM_BATCH {
                break;
            }
            // Take whatever else has already arrived, without waiting.
            next = tokio::select! {
                biased;
                r = shared.conn.read_datagram() => match r {
                    Ok(d) => Some(d),
                    Err(_) => {
                        lost = true;
                        None
                    }
                },
                () = std::future::ready(()) => None,
            };
        }
        if !batch.is_empty() {
            let count = batch.len() as u64;
            bump(&counters.received_datagrams, count);
            bump(&counters.received_datagram_bytes, bytes);
            // A link with its share of datagram batches waiting drops
            // rather than waits: datagrams never wait on the owner.
            match shared.datagram_credit.clone().try_acquire_owned() {
                Ok(permit) => {
                    let event = LinkEvent::Pdus {
                        link_id: shared.id,
                        pdus: batch,
                        reliable: false,
                        credit: Credit::new(permit),
                    };
                    match events.try_send(event) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            bump(&counters.dropped_unreliable_in, count);
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
                Err(_) => bump(&counters.dropped_unreliable_in, count),
            }
        }
        if lost {
            return;
        }
    }
}
