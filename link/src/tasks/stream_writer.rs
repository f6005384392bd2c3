//! The stream writer: the reliable queue onto the link's outgoing stream.
//!
//! In: the link's reliable queue ([`QueueReceiver`]), whose messages are
//! single PDUs, runs of PDUs (a batch's small PDUs, copied into runs when
//! it was queued, or a read passed on from another link's reader), and a
//! last `Finish` at a graceful close. Out: one `write_all_chunks`
//! call per wake-up on the one unidirectional stream it opens, with small
//! PDUs coalesced into one buffer (QUIC keeps every buffer it is given
//! until the peer acknowledges it and walks those buffers to build each
//! packet, so a few large ones are cheaper than many small ones). The
//! queue's room is released after each write.
//!
//! On a link that speaks `gdp/2` each PDU is written as its compact frame
//! ([`gdp_proto::frame::labels`]): its head, with the two names replaced
//! by a label once the stream has bound one, is written into the
//! coalescing buffer and its payload copied after it (or, from
//! [`COALESCE_BELOW`] bytes on, passed to QUIC as a buffer of its own).
//!
//! It ends when the queue is closed, when the connection is gone, after a
//! `Finish` (once the peer has acknowledged everything), or when the peer
//! stops the stream (a protocol violation: it closes the link).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use gdp_proto::frame::LabelEncoder;
use gdp_proto::frame::labels::whole_pdu_header;
use gdp_proto::pdu::HEADER_LEN;
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

/// [`stage`] for a link that speaks `gdp/2`: each PDU of `pdus` (one, or
/// a run) as its compact frame, with its payload copied into `small`, or
/// passed as a buffer of its own from [`COALESCE_BELOW`] bytes on.
fn stage_labelled(
    labels: &mut LabelEncoder,
    pdus: Bytes,
    small: &mut BytesMut,
    chunks: &mut Vec<Bytes>,
) {
    let mut at = 0;
    while at < pdus.len() {
        let Some((header, len)) = whole_pdu_header(&pdus[at..]) else {
            // Never from this crate's senders, which check every PDU;
            // passed as it is, the peer refuses it as it would on gdp/1.
            small.extend_from_slice(&pdus[at..]);
            return;
        };
        labels.push_head(header, small);
        let payload = at + HEADER_LEN..at + len;
        if payload.len() >= COALESCE_BELOW {
            chunks.push(small.split().freeze());
            chunks.push(pdus.slice(payload));
        } else {
            small.extend_from_slice(&pdus[payload]);
        }
        at += len;
    }
}

/// Where one write's PDUs go: the buffers for QUIC, and how they are
/// framed.
struct Stager<'a> {
    labels: Option<&'a mut LabelEncoder>,
    small: &'a mut BytesMut,
    chunks: &'a mut Vec<Bytes>,
}

impl Stager<'_> {
    fn stage(&mut self, pdus: Bytes, below: usize) {
        match self.labels.as_deref_mut() {
            Some(labels) => stage_labelled(labels, pdus, self.small, self.chunks),
            None => stage(pdus, below, self.small, self.chunks),
        }
    }
}

/// Bytes of the PDUs in `msgs` that [`stage`] copies into one buffer (at
/// most that many, on a link with compact frames, which copies nearly
/// everything in a shorter form).
fn coalesced_len(msgs: &[WriterMsg], compact: bool) -> usize {
    // What `stage` copies of one buffer.
    let copied = |buf: &Bytes, below: usize| {
        if compact || buf.len() < below {
            buf.len()
        } else {
            0
        }
    };
    msgs.iter()
        .map(|msg| match msg {
            WriterMsg::Pdus {
                pdus: Batch::One(pdu),
                ..
            } => copied(pdu, COALESCE_BELOW),
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
    // Labels are bound per stream, and this is the link's one stream.
    let mut labels = shared.compact.then(LabelEncoder::new);
    loop {
        if queue.recv_many(&mut msgs, WRITE_BATCH).await == 0 {
            return;
        }
        // Size the coalescing buffer once per write rather than letting it
        // grow (and copy itself) PDU by PDU.
        small.reserve(coalesced_len(&msgs, labels.is_some()));
        let (mut permits, mut bytes, mut pdus) = (0u32, 0u64, 0u64);
        let mut charged = 0u64;
        let mut finish = None;
        let mut stager = Stager {
            labels: labels.as_mut(),
            small: &mut small,
            chunks: &mut chunks,
        };
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
                            stager.stage(pdu, COALESCE_BELOW);
                        }
                        Batch::Runs(runs, _) => {
                            for run in runs {
                                bytes += run.len() as u64;
                                stager.stage(run, COALESCE_RUNS_BELOW);
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
        let wire: usize = chunks.iter().map(Bytes::len).sum();
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
        bump(&shared.counters.sent_stream_bytes, wire as u64);
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
