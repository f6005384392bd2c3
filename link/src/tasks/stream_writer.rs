//! The stream writer: the reliable queue onto the link's outgoing stream.
//!
//! In: the link's reliable queue ([`QueueReceiver`]), whose messages are
//! single PDUs, batches, runs of PDUs passed on from another link's reader,
//! and a last `Finish` at a graceful close. Out: one `write_all_chunks`
//! call per wake-up on the one unidirectional stream it opens, with small
//! PDUs coalesced into one buffer (QUIC keeps every buffer it is given
//! until the peer acknowledges it and walks those buffers to build each
//! packet, so a few large ones are cheaper than many small ones). The
//! queue's room is released after each write.
//!
//! It ends when the queue is closed, when the connection is gone, after a
//! `Finish` (once the peer has acknowledged everything), or when the peer
//! stops the stream (a protocol violation: it closes the link).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use quinn::WriteError;

use crate::CloseCode;
use crate::link::{LinkShared, bump};
use crate::queue::{Batch, QueueReceiver, WriterMsg};

/// Most queue messages the stream writer takes per write.
const WRITE_BATCH: usize = 4096;
/// PDUs shorter than this are copied into one buffer per write; longer ones
/// are handed to QUIC without a copy. (QUIC keeps each buffer it is given
/// until the peer acknowledges it, and finds the bytes of each packet it
/// sends by walking those buffers: a few large ones are cheaper than many
/// small ones.)
const COALESCE_BELOW: usize = 16 * 1024;
/// The same for runs of PDUs passed on from another link's reader: each is
/// already one buffer for a whole read, so only short ones are copied.
const COALESCE_RUNS_BELOW: usize = 1024;

/// Appends one PDU, or a run of them, to the write being assembled: a
/// buffer shorter than `below` is copied into `small`, a longer one
/// passed as it is.
fn stage(pdu: Bytes, below: usize, small: &mut BytesMut, chunks: &mut Vec<Bytes>) {
    if pdu.len() < below {
        small.extend_from_slice(&pdu);
    } else {
        if !small.is_empty() {
            chunks.push(small.split().freeze());
        }
        chunks.push(pdu);
    }
}

/// Bytes of the PDUs in `msgs` that [`stage`] copies into one buffer.
fn coalesced_len(msgs: &[WriterMsg]) -> usize {
    // What `stage` copies of one buffer.
    let copied = |buf: &Bytes, below: usize| if buf.len() < below { buf.len() } else { 0 };
    msgs.iter()
        .map(|msg| match msg {
            WriterMsg::Pdus {
                pdus: Batch::One(pdu),
                ..
            } => copied(pdu, COALESCE_BELOW),
            WriterMsg::Pdus {
                pdus: Batch::Many(many),
                ..
            } => many.iter().map(|p| copied(p, COALESCE_BELOW)).sum(),
            WriterMsg::Pdus {
                pdus: Batch::Runs(runs, _),
                ..
            } => runs.iter().map(|r| copied(r, COALESCE_RUNS_BELOW)).sum(),
            WriterMsg::Finish(_) => 0,
        })
        .sum()
}

pub(super) async fn write_stream(shared: Arc<LinkShared>, mut queue: QueueReceiver) {
    let mut send = match shared.conn.open_uni().await {
        Ok(s) => s,
        Err(_) => return,
    };
    let mut msgs = Vec::with_capacity(256);
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut small = BytesMut::new();
    loop {
        if queue.recv_many(&mut msgs, WRITE_BATCH).await == 0 {
            return;
        }
        // Size the coalescing buffer once per write rather than letting it
        // grow (and copy itself) PDU by PDU.
        small.reserve(coalesced_len(&msgs));
        let (mut permits, mut bytes, mut pdus) = (0u32, 0u64, 0u64);
        let mut charged = 0u64;
        let mut finish = None;
        for msg in msgs.drain(..) {
            match msg {
                WriterMsg::Pdus {
                    pdus: batch,
                    permits: p,
                    charged: c,
                } => {
                    permits = permits.saturating_add(p);
                    charged += c;
                    pdus += batch.len() as u64;
                    match batch {
                        Batch::One(pdu) => {
                            bytes += pdu.len() as u64;
                            stage(pdu, COALESCE_BELOW, &mut small, &mut chunks);
                        }
                        Batch::Many(many) => {
                            for pdu in many {
                                bytes += pdu.len() as u64;
                                stage(pdu, COALESCE_BELOW, &mut small, &mut chunks);
                            }
                        }
                        Batch::Runs(runs, _) => {
                            for run in runs {
                                bytes += run.len() as u64;
                                stage(run, COALESCE_RUNS_BELOW, &mut small, &mut chunks);
                            }
                        }
                    }
                }
                WriterMsg::Finish(done) => finish = Some(done),
            }
        }
        if !small.is_empty() {
            chunks.push(small.split().freeze());
        }
        if !chunks.is_empty() {
            let result = send.write_all_chunks(&mut chunks).await;
            chunks.clear();
            match result {
                Ok(()) => {}
                Err(WriteError::Stopped(code)) => {
                    tracing::debug!(link = %shared.id, %code, "peer stopped the reliable stream");
                    shared.close(
                        CloseCode::ProtocolViolation,
                        "the peer stopped the reliable stream",
                    );
                    return;
                }
                Err(_) => return,
            }
        }
        queue.release(permits, charged, pdus);
        bump(&shared.counters.sent_pdus, pdus);
        bump(&shared.counters.sent_bytes, bytes);
        if let Some(done) = finish {
            let _ = send.finish();
            // Resolves once the peer has acknowledged every byte, or the
            // connection is gone.
            let _ = send.stopped().await;
            let _ = done.send(());
            return;
        }
    }
}
