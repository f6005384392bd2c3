//! The tasks that move one link's bytes.
//!
//! Each link runs five tasks:
//!
//! - the **stream writer** opens the link's one outgoing unidirectional
//!   stream, takes everything in the reliable queue at each wake-up, and
//!   hands it to QUIC in one `write_all_chunks` call (small PDUs coalesced
//!   into one buffer, large ones passed as they are);
//! - the **datagram writer** sends the unreliable queue as QUIC datagrams,
//!   one PDU each;
//! - the **stream reader** accepts the peer's unidirectional stream, reads
//!   up to [`READ_CHUNKS`] chunks at a time, cuts them into PDUs with a
//!   [`FrameDecoder`] (feeding it at most [`PIECE`] bytes at once) and
//!   delivers each read's PDUs as one batch, waiting
//!   when the owner's channel is full (QUIC flow control then slows the
//!   peer);
//! - the **datagram reader** checks each datagram holds one PDU and
//!   delivers what has arrived as one batch, dropping (and counting) the
//!   batch when the owner's channel is full;
//! - the **supervisor** waits for the connection to close, fails pending
//!   and later sends, lets the readers deliver what they hold, removes the
//!   link from the transport and sends the link's last event, `Down`.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use gdp_proto::frame::{DEFAULT_MAX_BUFFERED, FrameDecoder, FrameError};
use gdp_proto::pdu::MAX_PDU_LEN;
use quinn::{ReadError, SendDatagramError, WriteError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::link::{LinkShared, bump, check_pdu};
use super::queue::{Batch, QueueReceiver, WriterMsg};
use super::{CloseCode, DownReason, LinkEvent, LinkId};

/// Chunks the stream reader asks QUIC for at once.
pub(crate) const READ_CHUNKS: usize = 64;
/// Most bytes pushed into the decoder at once. QUIC hands out chunks of
/// any size (it merges what it has buffered when the reader falls behind,
/// into chunks of several MiB), so the reader cuts them, without copying, to
/// pieces that fit next to one incomplete PDU in the decoder's bound.
const PIECE: usize = DEFAULT_MAX_BUFFERED - MAX_PDU_LEN;
/// Most queue messages the stream writer takes per write.
const WRITE_BATCH: usize = 4096;
/// PDUs shorter than this are copied into one buffer per write; longer ones
/// are handed to QUIC without a copy.
const COALESCE_BELOW: usize = 16 * 1024;
/// Most datagrams delivered in one event, and taken from the unreliable
/// queue at once.
const DATAGRAM_BATCH: usize = 64;

/// What a link's tasks need besides the link itself.
pub(crate) struct LinkIo {
    pub(crate) queue: QueueReceiver,
    pub(crate) datagrams: mpsc::Receiver<Bytes>,
    pub(crate) events: mpsc::Sender<LinkEvent>,
    pub(crate) malformed_limit: u64,
}

/// Starts the tasks of a link whose `Up` has been delivered. `on_down` runs
/// once the connection has closed and the readers are done, just before
/// the `Down` event is sent.
pub(crate) fn spawn_link(
    shared: Arc<LinkShared>,
    io: LinkIo,
    on_down: impl FnOnce(LinkId) + Send + 'static,
) {
    let LinkIo {
        queue,
        datagrams,
        events,
        malformed_limit,
    } = io;
    let writers = [
        tokio::spawn(write_stream(shared.clone(), queue)),
        tokio::spawn(write_datagrams(shared.clone(), datagrams)),
    ];
    let readers = [
        tokio::spawn(read_stream(shared.clone(), events.clone(), malformed_limit)),
        tokio::spawn(read_datagrams(
            shared.clone(),
            events.clone(),
            malformed_limit,
        )),
    ];
    tokio::spawn(supervise(shared, readers, writers, events, on_down));
}

async fn supervise(
    shared: Arc<LinkShared>,
    readers: [JoinHandle<()>; 2],
    writers: [JoinHandle<()>; 2],
    events: mpsc::Sender<LinkEvent>,
    on_down: impl FnOnce(LinkId),
) {
    let err = shared.conn.closed().await;
    shared.mark_down();
    for w in writers {
        w.abort();
    }
    for r in readers {
        // A reader ends once the connection is closed and it has delivered
        // what it read; it fails only if it panicked, which changes nothing
        // here.
        let _ = r.await;
    }
    on_down(shared.id);
    let reason = DownReason::from_error(err, shared.local_close());
    tracing::info!(link = %shared.id, peer = %shared.peer.name(), %reason, "link down");
    let _ = events
        .send(LinkEvent::Down {
            link_id: shared.id,
            reason,
        })
        .await;
}

/// Appends one PDU to the write being assembled.
fn stage(pdu: Bytes, small: &mut BytesMut, chunks: &mut Vec<Bytes>) {
    if pdu.len() < COALESCE_BELOW {
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
    let small = |pdu: &Bytes| {
        if pdu.len() < COALESCE_BELOW {
            pdu.len()
        } else {
            0
        }
    };
    msgs.iter()
        .map(|msg| match msg {
            WriterMsg::Pdus {
                pdus: Batch::One(pdu),
                ..
            } => small(pdu),
            WriterMsg::Pdus {
                pdus: Batch::Many(many),
                ..
            } => many.iter().map(small).sum(),
            WriterMsg::Finish(_) => 0,
        })
        .sum()
}

async fn write_stream(shared: Arc<LinkShared>, mut queue: QueueReceiver) {
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
        let mut finish = None;
        for msg in msgs.drain(..) {
            match msg {
                WriterMsg::Pdus {
                    pdus: batch,
                    permits: p,
                } => {
                    permits = permits.saturating_add(p);
                    pdus += batch.len() as u64;
                    match batch {
                        Batch::One(pdu) => {
                            bytes += pdu.len() as u64;
                            stage(pdu, &mut small, &mut chunks);
                        }
                        Batch::Many(many) => {
                            for pdu in many {
                                bytes += pdu.len() as u64;
                                stage(pdu, &mut small, &mut chunks);
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
        queue.release(permits, bytes, pdus);
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

async fn write_datagrams(shared: Arc<LinkShared>, mut queue: mpsc::Receiver<Bytes>) {
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

/// Counts a malformed PDU and closes the link at the limit; returns the
/// event to report.
fn malformed(shared: &LinkShared, error: FrameError, reliable: bool, limit: u64) -> LinkEvent {
    let total = shared
        .counters
        .malformed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    tracing::debug!(link = %shared.id, peer = %shared.peer.name(), %error, reliable, total,
        "malformed pdu");
    if total >= limit {
        shared.close(CloseCode::Malformed, "too many malformed pdus");
    }
    LinkEvent::Malformed {
        link_id: shared.id,
        error,
        reliable,
        total,
    }
}

async fn read_stream(shared: Arc<LinkShared>, events: mpsc::Sender<LinkEvent>, limit: u64) {
    let mut bufs = vec![Bytes::new(); READ_CHUNKS];
    loop {
        let mut recv = match shared.conn.accept_uni().await {
            Ok(r) => r,
            Err(_) => return,
        };
        let mut decoder = FrameDecoder::new();
        loop {
            let n = match recv.read_chunks(&mut bufs).await {
                Ok(Some(n)) => n,
                Ok(None) => {
                    // The peer finished its stream; it may open another.
                    if let Err(e) = decoder.finish() {
                        let _ = events.send(malformed(&shared, e, true, limit)).await;
                    }
                    break;
                }
                // The peer abandoned the stream; whatever was in flight is
                // lost and the next stream starts on a PDU boundary.
                Err(ReadError::Reset(_)) => break,
                Err(_) => return,
            };
            let mut batch = Vec::new();
            let mut bytes = 0u64;
            let mut failed = None;
            'chunks: for chunk in &mut bufs[..n] {
                let mut chunk = std::mem::take(chunk);
                while !chunk.is_empty() {
                    let piece = chunk.split_to(chunk.len().min(PIECE));
                    if let Err(e) = decoder.push(piece) {
                        failed = Some(e);
                        break 'chunks;
                    }
                    loop {
                        match decoder.next_frame() {
                            Ok(Some(frame)) => {
                                bytes += frame.bytes.len() as u64;
                                batch.push(frame.bytes);
                            }
                            Ok(None) => break,
                            Err(e) => {
                                failed = Some(e);
                                break 'chunks;
                            }
                        }
                    }
                }
            }
            if !batch.is_empty() {
                bump(&shared.counters.received_pdus, batch.len() as u64);
                bump(&shared.counters.received_bytes, bytes);
                let event = LinkEvent::Pdus {
                    link_id: shared.id,
                    pdus: batch,
                    reliable: true,
                };
                if events.send(event).await.is_err() {
                    return;
                }
            }
            if let Some(e) = failed {
                // The stream is out of sync: stop it and read no more of it.
                let _ = recv.stop(CloseCode::Malformed.varint());
                let _ = events.send(malformed(&shared, e, true, limit)).await;
                return;
            }
        }
    }
}

async fn read_datagrams(shared: Arc<LinkShared>, events: mpsc::Sender<LinkEvent>, limit: u64) {
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
            let event = LinkEvent::Pdus {
                link_id: shared.id,
                pdus: batch,
                reliable: false,
            };
            match events.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    bump(&counters.dropped_unreliable_in, count)
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        if lost {
            return;
        }
    }
}
