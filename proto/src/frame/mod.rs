//! Link framing: PDUs on QUIC streams and datagrams.
//!
//! # Streams
//!
//! On a QUIC stream, encoded PDUs ([`pdu`](crate::pdu) layout) follow each
//! other with nothing in between: the header's `payload_len` says where the
//! next one starts. A [`FrameDecoder`] takes the stream's chunks as they
//! arrive, in any sizes, and yields complete PDUs:
//!
//! ```
//! use bytes::Bytes;
//! use gdp_certs::Name;
//! use gdp_proto::frame::{FrameDecoder, FrameEncoder};
//! use gdp_proto::pdu::{Pdu, PduHeader, PduType};
//!
//! let header = PduHeader::new(PduType::Data, Name::from_bytes([1; 32]), Name::ZERO, 1);
//! let pdu = Pdu::new(header, Bytes::from_static(b"hi"))?;
//! let mut enc = FrameEncoder::new();
//! enc.push(&pdu)?;
//! enc.push(&pdu)?;
//! let wire = enc.take();
//!
//! let mut dec = FrameDecoder::new();
//! dec.push(wire.slice(..50))?; // half a header: nothing yet
//! assert_eq!(dec.next_pdu()?, None);
//! dec.push(wire.slice(50..))?;
//! assert_eq!(dec.next_pdu()?, Some(pdu.clone()));
//! assert_eq!(dec.next_pdu()?, Some(pdu));
//! assert_eq!(dec.next_pdu()?, None);
//! dec.finish()?; // the stream ended on a PDU boundary
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The decoder checks each header as soon as its 80 bytes are in, so an
//! oversized payload length is rejected before any of the body is waited
//! for. Its buffer is bounded ([`DEFAULT_MAX_BUFFERED`]): a caller that
//! drains every complete PDU after each [`FrameDecoder::push`] never holds
//! more than one partial PDU plus one chunk. Chunks are kept as they arrive
//! (small ones are coalesced), so a payload that lies inside one chunk is
//! returned without a copy. After a framing error the stream is out of sync;
//! the decoder keeps returning that error and the link should be closed.
//!
//! # Compact frames
//!
//! On links that speak link protocol `gdp/2`, a stream's sender replaces
//! the two names of a header by a label bound on that stream
//! ([`labels`]: a 64-byte payload costs 81 bytes on the wire instead of
//! 144); [`RunDecoder::with_labels`] expands the frames back into whole
//! PDUs as it copies them in.
//!
//! # Datagrams
//!
//! A QUIC datagram holds exactly one PDU ([`decode_datagram`]); bytes after
//! it are an error.
//!
//! # Batching
//!
//! A [`FrameEncoder`] writes many PDUs into one buffer, so a router can hand
//! all the frames produced by one read to the link in a single write.
//! [`FrameEncoder::push_forward`] appends an already-encoded PDU and
//! decrements its TTL in the copy, so forwarding never re-encodes.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use gdp_certs::codec::{Decode, DecodeError, Encode};

pub mod labels;
mod runs;

pub use labels::LabelEncoder;
pub use runs::RunDecoder;

use crate::pdu::{
    HEADER_LEN, MAX_PAYLOAD_LEN, MAX_PDU_LEN, Pdu, PduHeader, TtlError, decrement_ttl, peek_header,
};

/// Default bound on the bytes a [`FrameDecoder`] buffers: one largest PDU
/// in progress plus one more of input.
pub const DEFAULT_MAX_BUFFERED: usize = 2 * MAX_PDU_LEN;

/// Chunks shorter than this are copied into a shared tail buffer rather
/// than queued on their own, which bounds the queue length.
const COALESCE_BELOW: usize = 1024;

/// The tail buffer grows by at least this much at a time.
const TAIL_BLOCK: usize = 4096;

/// Why framing failed.
///
/// `Oversized`, `Malformed` and `Truncated` are the peer's fault: the link
/// should count them and, if they persist, disconnect. `BufferFull` means
/// the caller pushed without draining.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A header announced a payload longer than [`MAX_PAYLOAD_LEN`], or a
    /// datagram or PDU is longer than [`MAX_PDU_LEN`].
    #[error("pdu of {len} bytes is over the limit of {max}")]
    Oversized {
        /// The announced or actual length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A header or datagram could not be decoded.
    #[error("malformed pdu: {0}")]
    Malformed(#[from] DecodeError),
    /// The stream ended in the middle of a PDU.
    #[error("stream ended with {buffered} bytes of an incomplete pdu")]
    Truncated {
        /// Bytes of the incomplete PDU.
        buffered: usize,
    },
    /// Pushing would exceed the decoder's buffer bound.
    #[error("frame buffer full: {buffered} bytes buffered, {pushed} more pushed, limit {max}")]
    BufferFull {
        /// Bytes already buffered.
        buffered: usize,
        /// Bytes being pushed.
        pushed: usize,
        /// The bound.
        max: usize,
    },
    /// A PDU to be forwarded has no hops left.
    #[error("pdu ttl expired")]
    TtlExpired,
}

impl FrameError {
    /// The framing error for a PDU header that does not parse: an
    /// oversized payload length is [`FrameError::Oversized`] (in whole-PDU
    /// bytes), anything else [`FrameError::Malformed`].
    pub fn from_header(e: DecodeError) -> Self {
        match e {
            DecodeError::TooLong { len, max, .. } => FrameError::Oversized {
                len: len.saturating_add(HEADER_LEN),
                max: max.saturating_add(HEADER_LEN),
            },
            e => FrameError::Malformed(e),
        }
    }
}

/// One complete encoded PDU taken from a stream: its parsed header and
/// its exact bytes (header included), shared with the input chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The parsed header.
    pub header: PduHeader,
    /// The whole encoded PDU, `HEADER_LEN + header.payload_len` bytes.
    pub bytes: Bytes,
}

impl Frame {
    /// The payload, without a copy.
    pub fn payload(&self) -> Bytes {
        self.bytes.slice(HEADER_LEN..)
    }

    /// As a [`Pdu`].
    pub fn into_pdu(self) -> Pdu {
        let mut payload = self.bytes;
        payload.advance(HEADER_LEN);
        Pdu {
            header: self.header,
            payload,
        }
    }
}

/// Reassembles PDUs from the chunks of a QUIC stream.
#[derive(Debug)]
pub struct FrameDecoder {
    /// Queued input, oldest first; each chunk is non-empty.
    chunks: VecDeque<Bytes>,
    /// Small chunks, coalesced; logically after every queued chunk.
    tail: BytesMut,
    /// Total bytes in `chunks` and `tail`.
    buffered: usize,
    max_buffered: usize,
    /// The checked header of the PDU being waited for.
    pending: Option<PduHeader>,
    /// The first framing error; the stream is unusable after it.
    failed: Option<FrameError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder bounded by [`DEFAULT_MAX_BUFFERED`].
    pub fn new() -> Self {
        Self::with_max_buffered(DEFAULT_MAX_BUFFERED)
    }

    /// A decoder that buffers at most `max` bytes. A bound below
    /// [`MAX_PDU_LEN`] makes large PDUs undeliverable, which a link may want.
    pub fn with_max_buffered(max: usize) -> Self {
        FrameDecoder {
            chunks: VecDeque::new(),
            tail: BytesMut::new(),
            buffered: 0,
            max_buffered: max,
            pending: None,
            failed: None,
        }
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered_len(&self) -> usize {
        self.buffered
    }

    /// True if nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.buffered == 0
    }

    /// The error the decoder stopped on, if any.
    pub fn error(&self) -> Option<FrameError> {
        self.failed
    }

    fn fail(&mut self, e: FrameError) -> FrameError {
        self.failed = Some(e);
        e
    }

    fn check_room(&mut self, pushed: usize) -> Result<(), FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.buffered.saturating_add(pushed) > self.max_buffered {
            return Err(self.fail(FrameError::BufferFull {
                buffered: self.buffered,
                pushed,
                max: self.max_buffered,
            }));
        }
        Ok(())
    }

    /// Appends a chunk of the stream. Large chunks are kept without a copy.
    pub fn push(&mut self, chunk: Bytes) -> Result<(), FrameError> {
        let len = chunk.len();
        self.check_room(len)?;
        if len < COALESCE_BELOW {
            self.append_tail(&chunk);
        } else {
            if !self.tail.is_empty() {
                self.chunks.push_back(self.tail.split().freeze());
            }
            self.chunks.push_back(chunk);
        }
        self.buffered += len;
        Ok(())
    }

    /// Appends bytes of the stream by copying them.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        self.check_room(bytes.len())?;
        self.append_tail(bytes);
        self.buffered += bytes.len();
        Ok(())
    }

    /// Appends `bytes` to the tail. The tail grows a block at a time, and
    /// the PDUs cut from it share the block: a stream whose PDUs are often
    /// cut by chunk boundaries costs one allocation per block, not one or
    /// two per PDU.
    fn append_tail(&mut self, bytes: &[u8]) {
        if self.tail.capacity() - self.tail.len() < bytes.len() {
            self.tail.reserve(bytes.len().max(TAIL_BLOCK));
        }
        self.tail.extend_from_slice(bytes);
    }

    /// Copies the first `HEADER_LEN` buffered bytes; the caller checked
    /// that that many are buffered.
    fn copy_header(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let mut filled = 0;
        for src in self
            .chunks
            .iter()
            .map(|c| &c[..])
            .chain(std::iter::once(&self.tail[..]))
        {
            let n = src.len().min(HEADER_LEN - filled);
            out[filled..filled + n].copy_from_slice(&src[..n]);
            filled += n;
            if filled == HEADER_LEN {
                break;
            }
        }
        debug_assert_eq!(filled, HEADER_LEN);
        out
    }

    /// Removes the first `n` buffered bytes (`n <= buffered`), without a copy
    /// when they lie in one chunk.
    fn take(&mut self, n: usize) -> Bytes {
        debug_assert!(n <= self.buffered);
        self.buffered -= n;
        if let Some(front) = self.chunks.front_mut() {
            if front.len() > n {
                return front.split_to(n);
            }
            if front.len() == n {
                return self.chunks.pop_front().unwrap_or_default();
            }
        } else {
            return self.tail.split_to(n).freeze();
        }
        let mut out = BytesMut::with_capacity(n);
        while out.len() < n {
            let want = n - out.len();
            match self.chunks.front_mut() {
                Some(front) if front.len() > want => {
                    out.extend_from_slice(&front[..want]);
                    front.advance(want);
                }
                Some(_) => {
                    if let Some(front) = self.chunks.pop_front() {
                        out.extend_from_slice(&front);
                    }
                }
                None => {
                    let n = want.min(self.tail.len());
                    debug_assert_eq!(n, want, "buffered counts every byte");
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&self.tail[..n]);
                    self.tail.advance(n);
                }
            }
        }
        out.freeze()
    }

    /// The next complete encoded PDU, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let header = match self.pending {
            Some(h) => h,
            None => {
                if self.buffered < HEADER_LEN {
                    return Ok(None);
                }
                let h = PduHeader::from_array(&self.copy_header())
                    .map_err(|e| self.fail(FrameError::from_header(e)))?;
                self.pending = Some(h);
                h
            }
        };
        let len = header.pdu_len();
        if len > self.max_buffered {
            return Err(self.fail(FrameError::BufferFull {
                buffered: self.buffered,
                pushed: len - self.buffered.min(len),
                max: self.max_buffered,
            }));
        }
        if self.buffered < len {
            return Ok(None);
        }
        self.pending = None;
        Ok(Some(Frame {
            header,
            bytes: self.take(len),
        }))
    }

    /// The next complete PDU, if one is buffered.
    pub fn next_pdu(&mut self) -> Result<Option<Pdu>, FrameError> {
        Ok(self.next_frame()?.map(Frame::into_pdu))
    }

    /// Call when the stream has ended: fails if part of a PDU is left over.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.buffered == 0 {
            Ok(())
        } else {
            Err(FrameError::Truncated {
                buffered: self.buffered,
            })
        }
    }
}

/// Decodes the one PDU in a QUIC datagram; trailing bytes are an error.
pub fn decode_datagram(datagram: Bytes) -> Result<Pdu, FrameError> {
    if datagram.len() > MAX_PDU_LEN {
        return Err(FrameError::Oversized {
            len: datagram.len(),
            max: MAX_PDU_LEN,
        });
    }
    let header = peek_header(&datagram).map_err(FrameError::from_header)?;
    let pdu = Pdu::decode(datagram)?;
    debug_assert_eq!(pdu.header, header);
    Ok(pdu)
}

/// Encodes one PDU as a QUIC datagram.
pub fn encode_datagram(pdu: &Pdu) -> Result<Bytes, FrameError> {
    check_pdu(pdu)?;
    Ok(pdu.to_bytes())
}

fn check_pdu(pdu: &Pdu) -> Result<(), FrameError> {
    if pdu.payload.len() > MAX_PAYLOAD_LEN {
        Err(FrameError::Oversized {
            len: pdu.encoded_len(),
            max: MAX_PDU_LEN,
        })
    } else {
        Ok(())
    }
}

/// Writes many PDUs back to back into one buffer, for one stream write.
#[derive(Debug, Default)]
pub struct FrameEncoder {
    buf: BytesMut,
    frames: usize,
}

impl FrameEncoder {
    /// An empty encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty encoder with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        FrameEncoder {
            buf: BytesMut::with_capacity(bytes),
            frames: 0,
        }
    }

    /// Appends `pdu`; fails if its payload is over [`MAX_PAYLOAD_LEN`].
    pub fn push(&mut self, pdu: &Pdu) -> Result<(), FrameError> {
        check_pdu(pdu)?;
        self.buf.reserve(pdu.encoded_len());
        pdu.encode(&mut self.buf);
        self.frames += 1;
        Ok(())
    }

    /// Appends the already-encoded PDU `frame` (exactly one, checked) and
    /// decrements the TTL of the copy; returns the new TTL. A PDU whose TTL
    /// is zero is not appended.
    pub fn push_forward(&mut self, frame: &[u8]) -> Result<u8, FrameError> {
        let header = peek_header(frame).map_err(FrameError::from_header)?;
        if frame.len() != header.pdu_len() {
            return Err(FrameError::Malformed(if frame.len() < header.pdu_len() {
                DecodeError::Truncated {
                    what: "pdu payload",
                }
            } else {
                DecodeError::TrailingBytes {
                    what: "pdu",
                    count: frame.len() - header.pdu_len(),
                }
            }));
        }
        if header.ttl == 0 {
            return Err(FrameError::TtlExpired);
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(frame);
        let ttl = decrement_ttl(&mut self.buf[start..]).map_err(|e| match e {
            TtlError::Expired => FrameError::TtlExpired,
            _ => FrameError::Malformed(DecodeError::Truncated { what: "pdu header" }),
        })?;
        self.frames += 1;
        Ok(ttl)
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True if nothing is written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// PDUs written so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Takes everything written, leaving the encoder empty (and reusing its
    /// spare capacity).
    pub fn take(&mut self) -> Bytes {
        self.frames = 0;
        self.buf.split().freeze()
    }
}

/// Encodes `pdus` back to back into one buffer of exactly the right size.
pub fn encode_batch(pdus: &[Pdu]) -> Result<Bytes, FrameError> {
    let total = pdus.iter().map(Encode::encoded_len).sum();
    let mut enc = FrameEncoder::with_capacity(total);
    for p in pdus {
        enc.push(p)?;
    }
    Ok(enc.take())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::tests::arb_pdu;
    use crate::pdu::{DEFAULT_TTL, PduType};
    use gdp_certs::Name;
    use proptest::prelude::*;

    pub(super) fn pdu(payload_len: usize) -> Pdu {
        let h = PduHeader::new(
            PduType::Data,
            Name::from_bytes([3; 32]),
            Name::from_bytes([4; 32]),
            9,
        );
        Pdu::new(h, Bytes::from(vec![0xab; payload_len])).expect("within limits")
    }

    /// Pushes `wire` cut at `cuts`, draining after each push.
    fn decode_in_pieces(wire: &Bytes, cuts: &[usize], copy: bool) -> Vec<Pdu> {
        let mut dec = FrameDecoder::new();
        let mut out = Vec::new();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        points.push(0);
        points.push(wire.len());
        points.sort_unstable();
        for w in points.windows(2) {
            if copy {
                dec.extend_from_slice(&wire[w[0]..w[1]]).expect("room");
            } else {
                dec.push(wire.slice(w[0]..w[1])).expect("room");
            }
            while let Some(p) = dec.next_pdu().expect("valid stream") {
                out.push(p);
            }
        }
        assert_eq!(dec.finish(), Ok(()));
        out
    }

    proptest! {
        #[test]
        fn frames_round_trip_at_any_chunk_boundaries(
            pdus in proptest::collection::vec(arb_pdu(3000), 0..8),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
            copy in any::<bool>(),
        ) {
            let wire = encode_batch(&pdus).expect("within limits");
            prop_assert_eq!(wire.len(), pdus.iter().map(Encode::encoded_len).sum::<usize>());
            prop_assert_eq!(decode_in_pieces(&wire, &cuts, copy), pdus);
        }

        #[test]
        fn decoder_never_panics(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..300), 0..6)) {
            let mut dec = FrameDecoder::with_max_buffered(1000);
            for c in chunks {
                if dec.push(Bytes::from(c)).is_err() {
                    break;
                }
                while let Ok(Some(_)) = dec.next_pdu() {}
            }
            let _ = dec.finish();
        }

        #[test]
        fn datagram_round_trips(p in arb_pdu(1200)) {
            let d = encode_datagram(&p).expect("within limits");
            prop_assert_eq!(d.len(), p.encoded_len());
            prop_assert_eq!(decode_datagram(d), Ok(p));
        }

        #[test]
        fn datagram_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_datagram(Bytes::from(bytes));
        }
    }

    #[test]
    fn oversized_length_is_rejected_from_the_header_alone() {
        let mut h = pdu(0).header;
        h.payload_len = MAX_PAYLOAD_LEN as u32 + 1;
        let mut dec = FrameDecoder::new();
        dec.push(Bytes::copy_from_slice(&h.to_array()))
            .expect("room");
        let err = dec.next_pdu().expect_err("oversized");
        assert_eq!(
            err,
            FrameError::Oversized {
                len: MAX_PDU_LEN + 1,
                max: MAX_PDU_LEN
            }
        );
        assert_eq!(dec.buffered_len(), HEADER_LEN);
        // The stream is out of sync now: the error sticks.
        assert_eq!(dec.push(Bytes::from_static(b"more")), Err(err));
        assert_eq!(dec.next_pdu(), Err(err));
    }

    #[test]
    fn unknown_type_on_a_stream_is_malformed() {
        let mut b = pdu(3).to_bytes().to_vec();
        b[1] = 0xee;
        let mut dec = FrameDecoder::new();
        dec.extend_from_slice(&b).expect("room");
        assert_eq!(
            dec.next_pdu(),
            Err(FrameError::Malformed(DecodeError::UnknownValue {
                what: "pdu type",
                value: 0xee
            }))
        );
    }

    #[test]
    fn buffer_bound_is_enforced() {
        let mut dec = FrameDecoder::with_max_buffered(100);
        dec.push(Bytes::from(vec![0u8; 60])).expect("room");
        assert_eq!(
            dec.push(Bytes::from(vec![0u8; 41])),
            Err(FrameError::BufferFull {
                buffered: 60,
                pushed: 41,
                max: 100
            })
        );
        // A PDU that could never fit is refused as soon as its header is in.
        let mut dec = FrameDecoder::with_max_buffered(200);
        dec.push(pdu(500).to_bytes().slice(..HEADER_LEN))
            .expect("room");
        assert!(matches!(
            dec.next_pdu(),
            Err(FrameError::BufferFull { max: 200, .. })
        ));
    }

    #[test]
    fn stream_ending_mid_pdu_is_truncated() {
        let wire = pdu(10).to_bytes();
        let mut dec = FrameDecoder::new();
        dec.push(wire.slice(..HEADER_LEN + 4)).expect("room");
        assert_eq!(dec.next_pdu(), Ok(None));
        assert_eq!(
            dec.finish(),
            Err(FrameError::Truncated {
                buffered: HEADER_LEN + 4
            })
        );
    }

    #[test]
    fn payload_inside_one_chunk_is_not_copied() {
        let wire = encode_batch(&[pdu(2000), pdu(3000)]).expect("within limits");
        let mut dec = FrameDecoder::new();
        dec.push(wire.clone()).expect("room");
        let a = dec.next_pdu().expect("valid").expect("complete");
        let b = dec.next_pdu().expect("valid").expect("complete");
        assert_eq!(a.payload.as_ptr(), wire[HEADER_LEN..].as_ptr());
        assert_eq!(b.payload.as_ptr(), wire[2 * HEADER_LEN + 2000..].as_ptr());
    }

    #[test]
    fn datagram_with_trailing_bytes_is_rejected() {
        let mut b = pdu(5).to_bytes().to_vec();
        b.extend_from_slice(&[1, 2]);
        assert_eq!(
            decode_datagram(Bytes::from(b)),
            Err(FrameError::Malformed(DecodeError::TrailingBytes {
                what: "pdu",
                count: 2
            }))
        );
        let short = pdu(5).to_bytes().slice(..HEADER_LEN + 2);
        assert_eq!(
            decode_datagram(short),
            Err(FrameError::Malformed(DecodeError::Truncated {
                what: "pdu payload"
            }))
        );
    }

    #[test]
    fn oversized_datagram_and_pdu_are_rejected() {
        let big = Bytes::from(vec![0u8; MAX_PDU_LEN + 1]);
        assert_eq!(
            decode_datagram(big),
            Err(FrameError::Oversized {
                len: MAX_PDU_LEN + 1,
                max: MAX_PDU_LEN
            })
        );
        let mut p = pdu(0);
        p.payload = Bytes::from(vec![0u8; MAX_PAYLOAD_LEN + 1]);
        assert_eq!(
            FrameEncoder::new().push(&p),
            Err(FrameError::Oversized {
                len: MAX_PDU_LEN + 1,
                max: MAX_PDU_LEN
            })
        );
    }

    #[test]
    fn forwarding_copies_bytes_and_decrements_ttl() {
        let p = pdu(7);
        let wire = p.to_bytes();
        let mut enc = FrameEncoder::new();
        assert_eq!(enc.push_forward(&wire), Ok(DEFAULT_TTL - 1));
        assert_eq!(enc.frames(), 1);
        let out = decode_datagram(enc.take()).expect("valid");
        assert_eq!(out.header, p.header.with_ttl(DEFAULT_TTL - 1));
        assert_eq!(out.payload, p.payload);

        let mut dead = p.clone();
        dead.header.ttl = 0;
        assert_eq!(
            enc.push_forward(&dead.to_bytes()),
            Err(FrameError::TtlExpired)
        );
        assert!(enc.is_empty());
        assert!(matches!(
            enc.push_forward(&wire[..wire.len() - 1]),
            Err(FrameError::Malformed(DecodeError::Truncated { .. }))
        ));
    }
}
