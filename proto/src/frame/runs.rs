//! Cutting a stream into runs of whole PDUs: [`RunDecoder`].

use bytes::{Bytes, BytesMut};
use gdp_certs::codec::DecodeError;

use super::FrameError;
use super::labels::{Expander, Step};
use crate::pdu::{HEADER_LEN, peek_pdu_len};

/// The smallest block the decoder allocates.
const MIN_BLOCK: usize = 4 * 1024;
/// The largest block it allocates for whole PDUs (a block for one larger
/// PDU is as large as that PDU).
const MAX_BLOCK: usize = 64 * 1024;

/// Cuts a stream into runs of whole, checked PDUs.
///
/// A [`FrameDecoder`](super::FrameDecoder) yields one PDU at a time, each
/// its own buffer. A router passing PDUs on wants the opposite: as few
/// buffers as possible, each holding many PDUs back to back, so that one
/// reference count, one queue operation and one segment of the next
/// stream cover them all. A `RunDecoder` copies what a stream delivers
/// into a block of memory of its own and hands out the whole PDUs at its
/// front as one run: a PDU cut by a chunk boundary costs nothing extra, and
/// every byte is copied exactly once.
///
/// ```
/// use bytes::Bytes;
/// use gdp_certs::Name;
/// use gdp_proto::Encode;
/// use gdp_proto::frame::{FrameEncoder, RunDecoder};
/// use gdp_proto::pdu::{Pdu, PduHeader, PduType};
///
/// let header = PduHeader::new(PduType::Data, Name::from_bytes([1; 32]), Name::ZERO, 1);
/// let pdu = Pdu::new(header, Bytes::from_static(b"hi"))?;
/// let mut enc = FrameEncoder::new();
/// for _ in 0..3 {
///     enc.push(&pdu)?;
/// }
/// let wire = enc.take();
///
/// let mut dec = RunDecoder::new();
/// dec.push(&wire[..100])?; // one PDU and part of the next
/// dec.push(&wire[100..200])?;
/// let (run, count) = dec.take_run().expect("two whole pdus");
/// assert_eq!((run.len(), count), (2 * pdu.encoded_len(), 2));
/// dec.push(&wire[200..])?;
/// assert_eq!(dec.take_run().map(|(_, n)| n), Some(1));
/// dec.finish()?; // the stream ended on a PDU boundary
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Each header is checked (as [`peek_header`](crate::pdu::peek_header)
/// does) as soon as its 80 bytes are in, so an oversized or malformed PDU
/// is refused before its body is waited for; after that the stream is out
/// of sync and the decoder keeps returning the error.
///
/// It holds what was pushed and not yet taken: the caller bounds it by how
/// much it pushes between [`take_run`](RunDecoder::take_run)s, plus at most
/// one incomplete PDU, and the memory it holds grows with what has arrived,
/// never with the length a header announces. Blocks are sized by the traffic: about eight times
/// the last run taken, between 4 and 64 KiB, so a quiet stream keeps
/// little memory and a busy one allocates rarely. The runs share their
/// block: it is freed when the last of them is dropped.
#[derive(Debug)]
pub struct RunDecoder {
    buf: BytesMut,
    /// Bytes at the front of `buf` that are whole, checked PDUs.
    whole: usize,
    /// How many PDUs those are.
    count: usize,
    /// The length of the PDU after them, once its header is in.
    next_len: Option<usize>,
    /// The size of the next block.
    block: usize,
    failed: Option<FrameError>,
    /// Set for a stream of compact frames, which are expanded into whole
    /// PDUs as they are copied in.
    labels: Option<Box<Expander>>,
}

impl Default for RunDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl RunDecoder {
    /// An empty decoder; it allocates nothing until bytes are pushed.
    pub fn new() -> Self {
        RunDecoder {
            buf: BytesMut::new(),
            whole: 0,
            count: 0,
            next_len: None,
            block: MIN_BLOCK,
            failed: None,
            labels: None,
        }
    }

    /// An empty decoder for a stream of compact link frames (link protocol
    /// `gdp/2`, see [`labels`](super::labels)): each frame is expanded into
    /// its whole PDU as it is copied in, so the runs it hands out are
    /// whole version-1 PDUs, exactly as [`new`](Self::new)'s. A stream of
    /// plain PDUs is a valid stream of compact frames.
    pub fn with_labels() -> Self {
        RunDecoder {
            labels: Some(Box::new(Expander::new())),
            ..Self::new()
        }
    }

    /// Bytes held: whole PDUs not yet taken, and part of the next one.
    pub fn buffered_len(&self) -> usize {
        self.buf.len() + self.labels.as_ref().map_or(0, |l| l.held())
    }

    /// Bytes of the whole PDUs ready to be taken.
    pub fn ready_len(&self) -> usize {
        self.whole
    }

    /// The framing error that put the stream out of sync, if one did.
    pub fn error(&self) -> Option<FrameError> {
        self.failed
    }

    /// Copies `bytes`, the next bytes of the stream, and checks every
    /// header they complete. After an error the stream is out of sync:
    /// nothing more is taken in, and every later call fails the same way
    /// (whole PDUs before the bad one can still be taken).
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.labels.is_some() {
            return self.expand(bytes).inspect_err(|e| self.failed = Some(*e));
        }
        self.room(bytes.len());
        self.buf.extend_from_slice(bytes);
        self.scan()
    }

    /// Makes room for `n` more bytes: at least a block, and at least
    /// double what is held, so a large PDU is assembled with a few moves,
    /// in memory that grows with what has arrived (never with what a
    /// header announces, which costs a peer nothing to send).
    fn room(&mut self, n: usize) {
        if self.buf.capacity() - self.buf.len() < n {
            self.buf.reserve(n.max(self.block).max(self.buf.len()));
        }
    }

    /// [`push`](Self::push) for compact frames: each payload byte is
    /// copied once, each frame head expanded into a whole header.
    fn expand(&mut self, input: &[u8]) -> Result<(), FrameError> {
        let Some(mut labels) = self.labels.take() else {
            return Ok(());
        };
        let result = self.expand_with(&mut labels, input);
        self.labels = Some(labels);
        result
    }

    fn expand_with(&mut self, labels: &mut Expander, mut input: &[u8]) -> Result<(), FrameError> {
        while !input.is_empty() {
            if labels.body_left == 0 {
                match labels.take_head(&mut input)? {
                    Step::Need => return Ok(()),
                    Step::Header { header, payload } => {
                        self.room(HEADER_LEN);
                        self.buf.extend_from_slice(&header);
                        labels.body_left = payload;
                    }
                }
            } else {
                let n = labels.body_left.min(input.len());
                self.room(n);
                self.buf.extend_from_slice(&input[..n]);
                input = &input[n..];
                labels.body_left -= n;
            }
            if labels.body_left == 0 {
                self.whole = self.buf.len();
                self.count += 1;
            }
        }
        Ok(())
    }

    /// Advances over the whole PDUs after the ones already checked.
    fn scan(&mut self) -> Result<(), FrameError> {
        loop {
            let rest = &self.buf[self.whole..];
            let len = match self.next_len {
                Some(len) => len,
                None => match peek_pdu_len(rest) {
                    Ok(len) => len,
                    Err(DecodeError::Truncated { .. }) if rest.len() < HEADER_LEN => {
                        return Ok(());
                    }
                    Err(e) => {
                        let e = FrameError::from_header(e);
                        self.failed = Some(e);
                        return Err(e);
                    }
                },
            };
            if rest.len() < len {
                self.next_len = Some(len);
                return Ok(());
            }
            self.next_len = None;
            self.whole += len;
            self.count += 1;
        }
    }

    /// Takes the whole PDUs buffered so far, as one buffer and their
    /// number; `None` if there is none.
    pub fn take_run(&mut self) -> Option<(Bytes, usize)> {
        if self.count == 0 {
            return None;
        }
        let run = self.buf.split_to(self.whole).freeze();
        let count = self.count;
        self.block = run.len().saturating_mul(8).clamp(MIN_BLOCK, MAX_BLOCK);
        self.whole = 0;
        self.count = 0;
        Some((run, count))
    }

    /// Call when the stream has ended: fails if part of a PDU is left over
    /// (or the stream was out of sync).
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match self.buffered_len() - self.whole {
            0 => Ok(()),
            buffered => Err(FrameError::Truncated { buffered }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::pdu;
    use super::super::{FrameDecoder, encode_batch};
    use super::*;
    use crate::pdu::tests::arb_pdu;
    use crate::pdu::{MAX_PAYLOAD_LEN, Pdu, peek_header};
    use gdp_certs::codec::{Decode, Encode};
    use proptest::prelude::*;

    /// Cuts a run back into its PDUs.
    fn split(mut run: Bytes, count: usize) -> Vec<Pdu> {
        let mut out = Vec::new();
        while !run.is_empty() {
            let len = peek_header(&run).expect("whole pdus").pdu_len();
            out.push(Pdu::decode(run.split_to(len)).expect("checked pdu"));
        }
        assert_eq!(out.len(), count, "a run's count is its pdus");
        out
    }

    /// What a `FrameDecoder` makes of `chunks`, and whether it failed.
    fn frame_decoder(chunks: &[&[u8]]) -> (Vec<Pdu>, Option<FrameError>) {
        let mut dec = FrameDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            if let Err(e) = dec.extend_from_slice(c) {
                return (out, Some(e));
            }
            loop {
                match dec.next_pdu() {
                    Ok(Some(p)) => out.push(p),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, dec.finish().err())
    }

    /// The same with a `RunDecoder`, taking runs after the pushes `take`
    /// marks.
    fn run_decoder(chunks: &[&[u8]], take: &[bool]) -> (Vec<Pdu>, Option<FrameError>) {
        let mut dec = RunDecoder::new();
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let pushed = dec.push(c);
            if (pushed.is_err() || take.get(i).copied().unwrap_or(false))
                && let Some((run, n)) = dec.take_run()
            {
                out.extend(split(run, n));
            }
            if let Err(e) = pushed {
                return (out, Some(e));
            }
        }
        if let Some((run, n)) = dec.take_run() {
            out.extend(split(run, n));
        }
        (out, dec.finish().err())
    }

    fn cut<'a>(wire: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        points.extend([0, wire.len()]);
        points.sort_unstable();
        points.windows(2).map(|w| &wire[w[0]..w[1]]).collect()
    }

    proptest! {
        #[test]
        fn any_cutting_and_taking_yields_the_pdus_in_order(
            pdus in proptest::collection::vec(arb_pdu(700), 0..12),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
            take in proptest::collection::vec(any::<bool>(), 0..20),
        ) {
            let wire = encode_batch(&pdus).expect("within limits");
            let (out, err) = run_decoder(&cut(&wire, &cuts), &take);
            prop_assert_eq!(err, None);
            prop_assert_eq!(out, pdus);
        }

        #[test]
        fn agrees_with_the_frame_decoder_on_any_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            prefix in proptest::collection::vec(arb_pdu(64), 0..4),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
            take in proptest::collection::vec(any::<bool>(), 0..10),
        ) {
            // Valid PDUs, then garbage: both decoders yield the same PDUs
            // and fail (or not) the same way.
            let mut wire = encode_batch(&prefix).expect("within limits").to_vec();
            wire.extend_from_slice(&bytes);
            let chunks = cut(&wire, &cuts);
            prop_assert_eq!(run_decoder(&chunks, &take), frame_decoder(&chunks));
        }
    }

    #[test]
    fn a_pdu_cut_by_chunk_boundaries_joins_the_run() {
        let pdus = [pdu(64), pdu(64), pdu(64)];
        let wire = encode_batch(&pdus).expect("within limits");
        let mut dec = RunDecoder::new();
        for piece in wire.chunks(100) {
            dec.push(piece).expect("valid");
        }
        let (run, count) = dec.take_run().expect("whole pdus");
        assert_eq!(count, 3);
        assert_eq!(run, wire);
        assert_eq!(dec.take_run(), None);
        assert_eq!(dec.finish(), Ok(()));
    }

    #[test]
    fn a_large_pdu_takes_memory_as_it_arrives_and_a_few_moves() {
        let big = pdu(MAX_PAYLOAD_LEN).to_bytes();
        let mut dec = RunDecoder::new();
        dec.push(&big[..HEADER_LEN]).expect("valid header");
        assert!(
            dec.buf.capacity() <= MIN_BLOCK,
            "a header announcing 1 MiB costs no more than a block"
        );
        let mut moves = 0;
        let mut block = dec.buf.as_ptr();
        for piece in big[HEADER_LEN..].chunks(1200) {
            dec.push(piece).expect("valid");
            if dec.buf.as_ptr() != block {
                moves += 1;
                block = dec.buf.as_ptr();
            }
            assert!(dec.buf.capacity() <= 2 * dec.buf.len() + MAX_BLOCK);
        }
        // 4 KiB doubling up to 1 MiB.
        assert!(moves <= 10, "{moves} moves");
        let (run, count) = dec.take_run().expect("complete");
        assert_eq!((run.len(), count), (big.len(), 1));
    }

    #[test]
    fn an_oversized_header_fails_before_its_body() {
        let mut wire = pdu(10).to_bytes().to_vec();
        wire[76..80].copy_from_slice(&(MAX_PAYLOAD_LEN as u32 + 1).to_be_bytes());
        let mut dec = RunDecoder::new();
        let good = pdu(3).to_bytes();
        dec.push(&good).expect("valid");
        let err = dec.push(&wire[..HEADER_LEN]).expect_err("oversized");
        assert!(matches!(err, FrameError::Oversized { .. }), "{err:?}");
        assert_eq!(dec.push(&good), Err(err), "out of sync for good");
        assert_eq!(dec.finish(), Err(err));
        // The whole PDU before the bad header is still there.
        assert_eq!(dec.take_run(), Some((good, 1)));
    }

    #[test]
    fn a_stream_ending_mid_pdu_is_truncated() {
        let wire = pdu(10).to_bytes();
        let mut dec = RunDecoder::new();
        dec.push(&wire[..HEADER_LEN + 4]).expect("valid");
        assert_eq!(dec.take_run(), None);
        assert_eq!(
            dec.finish(),
            Err(FrameError::Truncated {
                buffered: HEADER_LEN + 4
            })
        );
    }

    #[test]
    fn blocks_follow_the_traffic() {
        let small = pdu(10).to_bytes();
        let mut dec = RunDecoder::new();
        dec.push(&small).expect("valid");
        assert!(dec.buf.capacity() >= MIN_BLOCK && dec.buf.capacity() < MAX_BLOCK);
        let (run, _) = dec.take_run().expect("one pdu");
        drop(run);
        assert_eq!(dec.block, MIN_BLOCK, "a quiet stream keeps small blocks");
        let busy = encode_batch(&vec![pdu(1000); 20]).expect("within limits");
        dec.push(&busy).expect("valid");
        dec.take_run().expect("twenty pdus");
        assert_eq!(dec.block, MAX_BLOCK, "a busy one gets large ones");
    }
}
