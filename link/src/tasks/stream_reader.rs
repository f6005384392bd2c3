//! The stream reader: the peer's stream into runs of PDUs.
//!
//! In: the peer's unidirectional streams, one after the other, read up to
//! [`READ_CHUNKS`] chunks at a time and framed at most [`BATCH_BYTES`] at a
//! time (a read can return several MiB when the reader fell behind). Those
//! bytes are copied into a [`RunDecoder`], which checks each header as it
//! completes, and its whole PDUs taken as one run (or runs of about
//! [`RUN_BYTES`]). Out, in stream order: the prefix the link's
//! [`LinkForwarder`] takes, if the owner set one, and the rest as one
//! [`LinkEvent::Pdus`] batch,
//! waiting while the link already has its share of batches with the owner
//! ([`events_per_link`](crate::TransportConfig::events_per_link)) or the
//! owner's channel is full (QUIC flow control then slows the peer).
//!
//! A framing error leaves the stream out of sync: the PDUs before it are
//! delivered, the stream is stopped, the error reported as
//! [`LinkEvent::Malformed`], and the reader ends. It also ends when the
//! connection is gone or the owner's channel is closed.

use std::sync::Arc;

use bytes::Bytes;
use gdp_proto::frame::{FrameError, RunDecoder};
use gdp_proto::pdu::peek_pdu_len;
use quinn::ReadError;
use tokio::sync::mpsc;

use super::malformed;
use crate::forward::LinkForwarder;
use crate::link::{LinkShared, bump};
use crate::{CloseCode, Credit, LinkEvent};

/// Chunks the stream reader asks QUIC for at once.
pub(super) const READ_CHUNKS: usize = 64;
/// Most bytes the stream reader copies into its decoder before it takes
/// the whole PDUs out: QUIC hands out chunks of any size (it merges what it
/// has buffered when the reader falls behind, into chunks of several MiB),
/// so this, plus one incomplete PDU, bounds what a reader holds.
const RUN_BYTES: usize = 64 * 1024;
/// Most stream bytes framed into one batch for the owner: with the link's
/// share of batches ([`events_per_link`](crate::TransportConfig::events_per_link))
/// it bounds what one link has waiting ahead of the others in bytes, not
/// only in batches, and an owner that keeps a batch's credit slows the
/// link by as much.
pub(super) const BATCH_BYTES: usize = 2 * RUN_BYTES;

/// Where the PDUs of one read go, in stream order: to the link's
/// forwarder while it takes them, and from the first one it leaves on, to
/// the batch for the owner.
struct Sink<'a> {
    forwarder: Option<&'a mut (dyn LinkForwarder + 'static)>,
    batch: &'a mut Vec<Bytes>,
    /// The read's runs, kept for the forwarder until the read is whole
    /// (the reader's buffer, empty between reads).
    runs: &'a mut Vec<Bytes>,
    /// PDUs of the read so far.
    pdus: u64,
    /// Their bytes.
    bytes: u64,
}

impl<'a> Sink<'a> {
    fn new(
        forwarder: Option<&'a mut (dyn LinkForwarder + 'static)>,
        batch: &'a mut Vec<Bytes>,
        runs: &'a mut Vec<Bytes>,
    ) -> Self {
        runs.clear();
        Sink {
            forwarder,
            batch,
            runs,
            pdus: 0,
            bytes: 0,
        }
    }

    /// `run` is `count` whole PDUs back to back.
    fn run(&mut self, run: Bytes, count: u64) {
        self.pdus += count;
        self.bytes += run.len() as u64;
        if self.forwarder.is_some() {
            self.runs.push(run);
        } else {
            split_into(run, self.batch);
        }
    }

    /// The read is over: the forwarder takes what it can of its runs, the
    /// rest goes to the batch.
    fn finish(&mut self) {
        let Some(f) = self.forwarder.as_deref_mut() else {
            return;
        };
        if self.runs.is_empty() {
            return;
        }
        let mut taken = f.forward(self.runs);
        if taken as u64 == self.pdus {
            // All of it, as usual: nothing to cut.
            self.runs.clear();
            return;
        }
        for mut run in self.runs.drain(..) {
            if taken > 0 {
                let (skip, count) = run_prefix(&run, taken);
                taken -= count as usize;
                let _ = run.split_to(skip);
            }
            if !run.is_empty() {
                split_into(run, self.batch);
            }
        }
    }
}

/// Cuts `run` (whole PDUs back to back) into PDUs, appended to `batch`.
fn split_into(mut run: Bytes, batch: &mut Vec<Bytes>) {
    while let Ok(len) = peek_pdu_len(&run) {
        if len > run.len() {
            break;
        }
        batch.push(run.split_to(len));
    }
}

/// The bytes and number of the whole PDUs at the front of `bytes`, at most
/// `max` of them.
fn run_prefix(bytes: &[u8], max: usize) -> (usize, u64) {
    let (mut at, mut count) = (0, 0u64);
    while (count as usize) < max
        && let Ok(len) = peek_pdu_len(&bytes[at..])
    {
        if len > bytes.len() - at {
            break;
        }
        at += len;
        count += 1;
    }
    (at, count)
}

/// Cuts the chunks of one read into runs of PDUs, given to `sink` in
/// order; returns the framing error that stopped it, if any (the stream is
/// then out of sync and the rest of the chunks is left unread).
///
/// The chunks are copied into the decoder's block, at most [`RUN_BYTES`]
/// at a time, and its whole PDUs taken as one run per read (or per about
/// [`RUN_BYTES`] of them): a PDU cut by a chunk boundary costs nothing
/// extra, and the runs go on as a few large buffers.
///
/// An incomplete PDU of more than `limit` bytes is reported as
/// [`FrameError::Oversized`]: what the reader holds stays within `limit`
/// plus one piece.
fn frame_chunks(
    bufs: &mut [Bytes],
    decoder: &mut RunDecoder,
    sink: &mut Sink<'_>,
    limit: usize,
) -> Option<FrameError> {
    for chunk in bufs {
        // Copied, so QUIC's buffer is let go now rather than at the next
        // read.
        let chunk = std::mem::take(chunk);
        for piece in chunk.chunks(RUN_BYTES) {
            if decoder.ready_len() + piece.len() > RUN_BYTES
                && let Some((run, count)) = decoder.take_run()
            {
                sink.run(run, count as u64);
            }
            let pushed = decoder.push(piece).err().or_else(|| {
                let partial = decoder.buffered_len() - decoder.ready_len();
                (partial > limit).then_some(FrameError::Oversized {
                    len: partial,
                    max: limit,
                })
            });
            if let Some(e) = pushed {
                if let Some((run, count)) = decoder.take_run() {
                    sink.run(run, count as u64);
                }
                return Some(e);
            }
        }
    }
    if let Some((run, count)) = decoder.take_run() {
        sink.run(run, count as u64);
    }
    None
}

/// Reads the next chunks of `recv` into `bufs`: `Some(Some(n))` for `n`
/// chunks, `Some(None)` when the stream is over (finished, after checking
/// that it ended on a PDU boundary, or reset: whatever was in flight is
/// lost and the next stream starts on a PDU boundary), `None` when the
/// connection is gone.
async fn read_more(
    recv: &mut quinn::RecvStream,
    bufs: &mut [Bytes],
    shared: &LinkShared,
    events: &mpsc::Sender<LinkEvent>,
    decoder: &RunDecoder,
    limit: u64,
) -> Option<Option<usize>> {
    match recv.read_chunks(bufs).await {
        Ok(Some(n)) => Some(Some(n)),
        Ok(None) => {
            // The peer finished its stream; it may open another.
            if let Err(e) = decoder.finish() {
                let _ = events.send(malformed(shared, e, true, limit)).await;
            }
            Some(None)
        }
        Err(ReadError::Reset(_)) => Some(None),
        Err(_) => None,
    }
}

/// Moves chunks from the front of `held` to `next` until `next` has `max`
/// bytes, splitting the last one if it is longer.
fn take_bytes(held: &mut std::collections::VecDeque<Bytes>, next: &mut Vec<Bytes>, max: usize) {
    let mut room = max;
    while room > 0
        && let Some(mut chunk) = held.pop_front()
    {
        if chunk.len() > room {
            held.push_front(chunk.split_off(room));
        }
        room -= chunk.len();
        next.push(chunk);
    }
}

pub(super) async fn read_stream(
    shared: Arc<LinkShared>,
    events: mpsc::Sender<LinkEvent>,
    limit: u64,
    mut forwarder: Option<Box<dyn LinkForwarder>>,
) {
    let mut bufs = vec![Bytes::new(); READ_CHUNKS];
    // What QUIC handed over and is not framed yet, oldest first.
    let mut held = std::collections::VecDeque::new();
    // The part of it framed next, at most BATCH_BYTES.
    let mut next = Vec::new();
    // One read's PDUs; kept while a forwarder takes them all, replaced when
    // they go to the owner.
    let mut batch = Vec::new();
    // One read's runs of PDUs, for the forwarder.
    let mut runs = Vec::new();
    loop {
        let mut recv = match shared.conn.accept_uni().await {
            Ok(r) => r,
            Err(_) => return,
        };
        // Labels are bound per stream: each starts afresh.
        let mut decoder = if shared.compact {
            RunDecoder::with_labels()
        } else {
            RunDecoder::new()
        };
        loop {
            if held.is_empty() {
                let n = match read_more(&mut recv, &mut bufs, &shared, &events, &decoder, limit)
                    .await
                {
                    Some(Some(n)) => n,
                    Some(None) => break,
                    None => return,
                };
                held.extend(bufs[..n].iter_mut().map(std::mem::take));
            }
            take_bytes(&mut held, &mut next, BATCH_BYTES);
            batch.clear();
            let mut sink = Sink::new(forwarder.as_deref_mut(), &mut batch, &mut runs);
            let pdu_limit = shared.pdu_limit.load(std::sync::atomic::Ordering::Relaxed);
            let failed = frame_chunks(&mut next, &mut decoder, &mut sink, pdu_limit);
            next.clear();
            sink.finish();
            let (read, bytes) = (sink.pdus, sink.bytes);
            if read > 0 {
                bump(&shared.counters.received_pdus, read);
                bump(&shared.counters.received_bytes, bytes);
            }
            if !batch.is_empty() {
                // This link's earlier batches are handled first: until then
                // it reads no more, and flow control slows its peer alone.
                let Ok(permit) = shared.credit.clone().acquire_owned().await else {
                    return;
                };
                // Sized for a read like this one rather than grown PDU by PDU.
                let pdus = std::mem::replace(&mut batch, Vec::with_capacity(read as usize));
                let event = LinkEvent::Pdus {
                    link_id: shared.id,
                    pdus,
                    reliable: true,
                    credit: Credit::new(permit),
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

#[cfg(test)]
mod tests {
    use super::*;
    use gdp_certs::Name;
    use gdp_proto::Encode;
    use gdp_proto::pdu::{Pdu, PduHeader, PduType, peek_header};

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
        frame_all_with(wire, cuts, per_read, None)
    }

    /// [`frame_all`], offering each read to `forwarder` first.
    fn frame_all_with(
        wire: &Bytes,
        cuts: &[usize],
        per_read: usize,
        mut forwarder: Option<&mut (dyn LinkForwarder + 'static)>,
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
        let mut decoder = RunDecoder::new();
        let mut out = Vec::new();
        let mut total = 0;
        let mut runs = Vec::new();
        for read in chunks.chunks(per_read) {
            let mut bufs = read.to_vec();
            let mut sink = Sink::new(forwarder.as_deref_mut(), &mut out, &mut runs);
            let failed = frame_chunks(&mut bufs, &mut decoder, &mut sink, usize::MAX);
            sink.finish();
            total += sink.bytes;
            if failed.is_some() {
                return (out, failed);
            }
        }
        if forwarder.is_none() {
            assert_eq!(total, out.iter().map(|p| p.len() as u64).sum::<u64>());
        }
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

    /// Takes PDUs from the front of each read while their sequence number
    /// is not a multiple of `refuse_every`.
    struct TakeSome {
        refuse_every: u64,
        taken: Vec<Bytes>,
    }

    impl LinkForwarder for TakeSome {
        fn forward(&mut self, runs: &[Bytes]) -> usize {
            let mut n = 0;
            for run in runs {
                let mut rest = run.clone();
                while !rest.is_empty() {
                    let header = peek_header(&rest).expect("the reader offers whole pdus");
                    assert!(
                        header.pdu_len() <= rest.len(),
                        "a run ends on a pdu boundary"
                    );
                    if header.seq.is_multiple_of(self.refuse_every) {
                        return n;
                    }
                    self.taken.push(rest.split_to(header.pdu_len()));
                    n += 1;
                }
            }
            n
        }
    }

    #[test]
    fn a_forwarder_takes_a_prefix_of_each_read_and_the_owner_gets_the_rest_in_order() {
        let pdus: Vec<Bytes> = (0..60u64)
            .map(|seq| pdu([64, 0, 700, 3000][seq as usize % 4], seq))
            .collect();
        let wire = Bytes::from(pdus.concat());
        for step in [1, 100, 144, 1100, 5000] {
            let cuts: Vec<usize> = (step..wire.len()).step_by(step).collect();
            for per_read in [1, 3, 64] {
                for refuse_every in [1, 7, 1000] {
                    let mut f = TakeSome {
                        refuse_every,
                        taken: Vec::new(),
                    };
                    let (out, failed) = frame_all_with(&wire, &cuts, per_read, Some(&mut f));
                    assert_eq!(failed, None);
                    // Nothing lost or doubled, and each side in stream order.
                    let mut all: Vec<Bytes> = f.taken.iter().chain(&out).cloned().collect();
                    all.sort_by_key(|p| peek_header(p).map(|h| h.seq).unwrap_or(u64::MAX));
                    assert_eq!(all, pdus, "step {step}, {per_read} per read");
                    let seqs = |v: &[Bytes]| -> Vec<u64> {
                        v.iter()
                            .filter_map(|p| peek_header(p).ok().map(|h| h.seq))
                            .collect()
                    };
                    assert!(seqs(&f.taken).is_sorted() && seqs(&out).is_sorted());
                    if refuse_every == 1 {
                        assert!(f.taken.is_empty());
                    }
                    if refuse_every == 1000 {
                        // Only PDU 0 is refused: the owner gets it and the
                        // rest of its read, the forwarder every later read.
                        assert_eq!(seqs(&out).first(), Some(&0));
                        let first_read_len = out.len();
                        assert_eq!(f.taken.len(), pdus.len() - first_read_len);
                    }
                }
            }
        }
    }

    /// Takes every PDU and remembers the runs it was offered.
    #[derive(Default)]
    struct TakeAll {
        runs: Vec<Bytes>,
    }

    impl LinkForwarder for TakeAll {
        fn forward(&mut self, runs: &[Bytes]) -> usize {
            self.runs.extend_from_slice(runs);
            runs.iter()
                .map(|r| run_prefix(r, usize::MAX).1 as usize)
                .sum()
        }
    }

    #[test]
    fn a_read_becomes_one_run_and_a_huge_one_runs_of_bounded_size() {
        let pdus: Vec<Bytes> = (0..400u64).map(|seq| pdu(1000, seq)).collect();
        let wire = Bytes::from(pdus.concat());
        // Chunks of 1,200 bytes, every PDU but a few cut by a boundary:
        // one run per read all the same.
        let cuts: Vec<usize> = (1200..wire.len()).step_by(1200).collect();
        let mut f = TakeAll::default();
        let (out, failed) = frame_all_with(&wire, &cuts, 10, Some(&mut f));
        assert_eq!((out.len(), failed), (0, None));
        assert_eq!(f.runs.len(), cuts.len().div_ceil(10));
        assert_eq!(f.runs.concat(), wire.to_vec());
        // The whole stream as one chunk: runs of about RUN_BYTES.
        let mut f = TakeAll::default();
        let (_, failed) = frame_all_with(&wire, &[], 1, Some(&mut f));
        assert_eq!(failed, None);
        assert_eq!(f.runs.len(), wire.len().div_ceil(RUN_BYTES));
        assert!(f.runs.iter().all(|r| r.len() < RUN_BYTES + 1080));
        assert_eq!(f.runs.concat(), wire.to_vec());
    }

    #[test]
    fn an_incomplete_pdu_over_the_limit_is_oversized() {
        let small = pdu(64, 1);
        let big = pdu(20_000, 2);
        let wire = Bytes::from([small.to_vec(), big.to_vec()].concat());
        let chunks: Vec<Bytes> = wire.chunks(1000).map(Bytes::copy_from_slice).collect();
        let mut decoder = RunDecoder::new();
        let (mut out, mut runs) = (Vec::new(), Vec::new());
        let mut failed = None;
        for chunk in chunks {
            let mut bufs = vec![chunk];
            let mut sink = Sink::new(None, &mut out, &mut runs);
            failed = frame_chunks(&mut bufs, &mut decoder, &mut sink, 4096);
            if failed.is_some() {
                break;
            }
        }
        assert_eq!(out, vec![small], "the pdus before it are delivered");
        assert!(
            matches!(failed, Some(FrameError::Oversized { len, max: 4096 }) if len > 4096 && len <= 4096 + 1000),
            "{failed:?}"
        );
        // Without the bound the same stream reads whole.
        let (out, failed) = frame_all(&wire, &[1000], 1);
        assert_eq!((out.len(), failed), (2, None));
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

    proptest::proptest! {
        /// Taken `max` bytes at a time, chunks come out whole, in order,
        /// and never more than `max` bytes per take.
        #[test]
        fn reads_are_framed_at_most_max_bytes_at_a_time(
            lens in proptest::collection::vec(0usize..3000, 0..40),
            max in 1usize..5000,
        ) {
            let wire: Vec<u8> = (0..lens.iter().sum::<usize>()).map(|i| i as u8).collect();
            let wire = Bytes::from(wire);
            let mut held = std::collections::VecDeque::new();
            let mut at = 0;
            for len in &lens {
                held.push_back(wire.slice(at..at + len));
                at += len;
            }
            let mut out = Vec::new();
            let mut next = Vec::new();
            while !held.is_empty() {
                take_bytes(&mut held, &mut next, max);
                let taken: usize = next.iter().map(Bytes::len).sum();
                proptest::prop_assert!(taken <= max);
                proptest::prop_assert!(taken == max || held.is_empty());
                out.extend(next.drain(..).flat_map(|b| b.to_vec()));
            }
            proptest::prop_assert_eq!(&out[..], &wire[..]);
        }
    }
}
