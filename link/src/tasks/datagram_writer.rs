//! The datagram writer: the unreliable queue onto QUIC datagrams.
//!
//! In: the link's unreliable queue, one encoded PDU per message. Out: one
//! QUIC datagram per PDU, waiting for room in QUIC's datagram buffer. A
//! datagram QUIC refuses (the path MTU shrank, the peer takes no
//! datagrams) is dropped and counted. It ends when the queue is closed or
//! the connection is lost.

use std::sync::Arc;

use bytes::Bytes;
use quinn::SendDatagramError;
use tokio::sync::mpsc;

use super::DATAGRAM_BATCH;
use crate::link::{LinkShared, bump};

pub(super) async fn write_datagrams(shared: Arc<LinkShared>, mut queue: mpsc::Receiver<Bytes>) {
    let mut batch = Vec::with_capacity(DATAGRAM_BATCH);
    let counters = &shared.counters;
    loop {
        if queue.recv_many(&mut batch, DATAGRAM_BATCH).await == 0 {
            return;
        }
        for datagram in batch.drain(..) {
            counters
                .queued_datagrams
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            let len = datagram.len() as u64;
            match shared.conn.send_datagram_wait(datagram).await {
                Ok(()) => {
                    bump(&counters.sent_datagrams, 1);
                    bump(&counters.sent_datagram_bytes, len);
                }
                Err(SendDatagramError::ConnectionLost(_)) => return,
                Err(e) => {
                    // The path MTU shrank under it, or the peer takes no
                    // datagrams after all.
                    tracing::trace!(link = %shared.id, error = %e, "datagram refused");
                    bump(&counters.dropped_unreliable_out, 1);
                }
            }
        }
    }
}
