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
//!   up to [`READ_CHUNKS`] chunks at a time (runs of small chunks merged
//!   into one buffer), cuts whole PDUs off the front of each piece itself
//!   while nothing is buffered, leaves the rest to a [`FrameDecoder`]
//!   (feeding it at most [`PIECE`] bytes at once) and delivers each read's
//!   PDUs as one batch, waiting
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
use gdp_proto::pdu::{MAX_PDU_LEN, peek_header};
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
/// Consecutive chunks shorter than this are merged into one buffer before
/// they go to the decoder.
const MERGE_BELOW: usize = 1024;
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

/// Takes the chunk at `bufs[*next]` and advances `next`. A run of chunks
/// shorter than [`MERGE_BELOW`] is taken as one buffer of at most [`PIECE`]
/// bytes: QUIC hands out a chunk per STREAM frame, often a few hundred
/// bytes, and the decoder would copy each into its own small buffer (and
/// copy every PDU cut across two of them), so merging them costs the same
/// copy but one allocation per run instead of a few per chunk.
fn take_piece(bufs: &mut [Bytes], next: &mut usize) -> Bytes {
    let start = *next;
    let mut len = 0;
    let mut end = start;
    while let Some(chunk) = bufs.get(end) {
        if chunk.len() >= MERGE_BELOW || len + chunk.len() > PIECE {
            break;
        }
        len += chunk.len();
        end += 1;
    }
    if end - start < 2 {
        *next = start + 1;
        return std::mem::take(&mut bufs[start]);
    }
    let mut merged = BytesMut::with_capacity(len);
    for chunk in &mut bufs[start..end] {
        merged.extend_from_slice(chunk);
        *chunk = Bytes::new();
    }
    *next = end;
    merged.freeze()
}

/// Moves the whole PDUs at the front of `piece` to `batch`; returns their
/// bytes. For a decoder holding nothing, these are the frames it would
/// return for `piece`, found with one header parse each and without
/// buffering; what is left (a partial PDU, or bytes whose header does not
/// parse) goes to the decoder, which keeps it or reports the error.
fn cut_whole_pdus(piece: &mut Bytes, batch: &mut Vec<Bytes>) -> u64 {
    let mut bytes = 0u64;
    while let Ok(header) = peek_header(piece) {
        let len = header.pdu_len();
        if len > piece.len() {
            break;
        }
        bytes += len as u64;
        batch.push(piece.split_to(len));
    }
    bytes
}

/// Cuts the chunks of one read into PDUs, appended to `batch`; returns
/// their bytes, and the framing error that stopped it, if any (the stream
/// is then out of sync and the rest of the chunks is left unread).
fn frame_chunks(
    bufs: &mut [Bytes],
    decoder: &mut FrameDecoder,
    batch: &mut Vec<Bytes>,
) -> (u64, Option<FrameError>) {
    let mut bytes = 0u64;
    let mut next = 0;
    while next < bufs.len() {
        let mut chunk = take_piece(bufs, &mut next);
        while !chunk.is_empty() {
            let mut piece = chunk.split_to(chunk.len().min(PIECE));
            if decoder.is_empty() {
                bytes += cut_whole_pdus(&mut piece, batch);
                if piece.is_empty() {
                    continue;
                }
            }
            if let Err(e) = decoder.push(piece) {
                return (bytes, Some(e));
            }
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => {
                        bytes += frame.bytes.len() as u64;
                        batch.push(frame.bytes);
                    }
                    Ok(None) => break,
                    Err(e) => return (bytes, Some(e)),
                }
            }
        }
    }
    (bytes, None)
}

async fn read_stream(shared: Arc<LinkShared>, events: mpsc::Sender<LinkEvent>, limit: u64) {
    let mut bufs = vec![Bytes::new(); READ_CHUNKS];
    // The length of the last batch, to size the next one at once rather
    // than letting it grow PDU by PDU.
    let mut last_len = 0;
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
            let mut batch = Vec::with_capacity(last_len);
            let (bytes, failed) = frame_chunks(&mut bufs[..n], &mut decoder, &mut batch);
            last_len = batch.len();
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

#[cfg(test)]
mod tests {
    use super::*;
    use gdp_certs::Name;
    use gdp_proto::Encode;
    use gdp_proto::pdu::{Pdu, PduHeader, PduType};

    fn pdu(len: usize, seq: u64) -> Bytes {
        let h = PduHeader::new(PduType::Data, Name::from_bytes([1; 32]), Name::ZERO, seq);
        Pdu::new(h, Bytes::from(vec![seq as u8; len]))
            .expect("within limits")
            .to_bytes()
    }

    /// Frames `wire` cut at `cuts`, `per_read` chunks per read.
    fn frame_all(
        wire: &Bytes,
        cuts: &[usize],
        per_read: usize,
    ) -> (Vec<Bytes>, Option<FrameError>) {
        let mut chunks = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain(std::iter::once(&wire.len())) {
            let cut = cut.min(wire.len());
            if cut > at {
                chunks.push(wire.slice(at..cut));
                at = cut;
            }
        }
        let mut decoder = FrameDecoder::new();
        let mut out = Vec::new();
        let mut total = 0;
        for read in chunks.chunks(per_read) {
            let mut bufs = read.to_vec();
            let (bytes, failed) = frame_chunks(&mut bufs, &mut decoder, &mut out);
            total += bytes;
            if failed.is_some() {
                return (out, failed);
            }
        }
        assert_eq!(total, out.iter().map(|p| p.len() as u64).sum::<u64>());
        assert!(decoder.finish().is_ok());
        (out, None)
    }

    #[test]
    fn framing_returns_every_pdu_whatever_the_chunking() {
        let pdus: Vec<Bytes> = [64, 0, 1024, 3, 20_000, 64, 64, 500, 2000, 64]
            .iter()
            .enumerate()
            .map(|(i, &len)| pdu(len, i as u64))
            .collect();
        let wire = Bytes::from(pdus.concat());
        let mut cut_sets: Vec<Vec<usize>> = vec![vec![]];
        for step in [1, 7, 100, 144, 300, 1023, 1024, 1500, 5000] {
            cut_sets.push((step..wire.len()).step_by(step).collect());
        }
        // Small and large chunks mixed.
        cut_sets.push(vec![10, 90, 1200, 1300, 1310, 3000, 25_000, 25_100, 25_200]);
        for cuts in &cut_sets {
            for per_read in [1, 2, 5, 64] {
                let (out, failed) = frame_all(&wire, cuts, per_read);
                assert_eq!(failed, None);
                assert_eq!(
                    out,
                    pdus,
                    "cuts every {:?}, {per_read} per read",
                    cuts.first()
                );
            }
        }
    }

    #[test]
    fn framing_reports_a_bad_header_after_the_good_pdus() {
        let good = pdu(64, 1);
        let mut bad = pdu(64, 2).to_vec();
        bad[0] = 0xff;
        let wire = Bytes::from([good.to_vec(), bad, pdu(64, 3).to_vec()].concat());
        for step in [1, 50, 144, 1000] {
            let cuts: Vec<usize> = (step..wire.len()).step_by(step).collect();
            let (out, failed) = frame_all(&wire, &cuts, 3);
            assert_eq!(out, vec![good.clone()]);
            assert!(
                matches!(failed, Some(FrameError::Malformed(_))),
                "{failed:?}"
            );
        }
    }

    #[test]
    fn small_chunks_are_merged_up_to_a_piece() {
        let mut bufs: Vec<Bytes> = vec![
            Bytes::from(vec![1; 300]),
            Bytes::from(vec![2; 300]),
            Bytes::from(vec![3; 2000]),
            Bytes::from(vec![4; 10]),
        ];
        let mut next = 0;
        let merged = take_piece(&mut bufs, &mut next);
        assert_eq!(merged.len(), 600);
        assert_eq!(&merged[..300], &[1; 300][..]);
        assert_eq!(next, 2);
        assert_eq!(take_piece(&mut bufs, &mut next).len(), 2000);
        assert_eq!(take_piece(&mut bufs, &mut next).len(), 10);
        assert_eq!(next, 4);
    }
}
