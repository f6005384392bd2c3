//! Compact link frames: between neighbours, the two names of a PDU header
//! travel as a one-byte label.
//!
//! Of a PDU's 80-byte header, 64 bytes are its destination and source
//! names, and the PDUs on one link mostly belong to a few (destination,
//! source) pairs: a 64-byte payload costs 144 bytes on the wire. On links
//! that speak link protocol `gdp/2` (negotiated by ALPN, see
//! `gdp_certs::tls::ALPN_COMPACT`), the sender of each reliable stream
//! binds a label to a pair the first time it sends a PDU of that pair, and
//! from then on sends the label in place of the names:
//!
//! ```text
//! kind  frame                                                      bytes before the payload
//! 0x01  the 80-byte header (its version byte is the kind) | payload      80
//! 0x81  label | the 80-byte header | payload                             82
//!       binds `label` to the header's (dst, src), then is that PDU
//! 0x82  type flags ttl label | seq (8) | payload_len (4) | payload       17
//!       the PDU whose names are those bound to `label`
//! ```
//!
//! The 80-byte header stays the unit of meaning: a receiver expands every
//! frame back into a whole version-1 PDU as it copies the stream into its
//! [`RunDecoder`](super::RunDecoder) (which it does anyway), so routing by
//! name, the source check, the TTL and the fast path see exactly what
//! `gdp/1` gives them. A 64-byte payload then costs 81 bytes on the wire.
//!
//! Labels are per stream and per direction: the table starts empty with
//! each stream and dies with it, so a reconnected link starts afresh and
//! no state survives a peer. It has at most [`LABELS`] entries on each
//! side and holds memory only for the labels in use (half a KiB, and 64
//! bytes for each pair bound: 16.5 KiB at most), which bounds what a peer
//! can make a receiver hold. The sender's table is direct-mapped by a keyed hash of
//! the pair: a pair whose slot holds another is bound again (a bind frame,
//! two bytes more than `gdp/1`), so the worst case, every PDU of a
//! different pair, costs two bytes per PDU and nothing else. A label used
//! before it is bound, or an unknown kind, is a framing error: the stream
//! is out of sync and the link is closed, as for any malformed header.
//!
//! Datagrams always carry whole PDUs: they may be lost or reordered, so
//! nothing can be bound by them.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use gdp_certs::Name;
//! use gdp_proto::Encode;
//! use gdp_proto::frame::{LabelEncoder, RunDecoder};
//! use gdp_proto::pdu::{Pdu, PduHeader, PduType};
//!
//! let header = PduHeader::new(PduType::Data, Name::from_bytes([1; 32]), Name::ZERO, 1);
//! let pdu = Pdu::new(header, Bytes::from_static(&[7; 64]))?.to_bytes();
//! let mut enc = LabelEncoder::new();
//! let mut wire = BytesMut::new();
//! enc.push_pdus(&pdu, &mut wire); // binds a label: 2 + 144 bytes
//! enc.push_pdus(&pdu, &mut wire); // uses it: 17 + 64 bytes
//! assert_eq!(wire.len(), 146 + 81);
//!
//! let mut dec = RunDecoder::with_labels();
//! dec.push(&wire)?;
//! let (run, count) = dec.take_run().expect("two whole pdus");
//! assert_eq!(count, 2);
//! assert_eq!(run, [pdu.clone(), pdu].concat());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::hash::BuildHasher;

use bytes::{BufMut, BytesMut};
use gdp_certs::NAME_LEN;
use gdp_certs::codec::DecodeError;

use super::FrameError;
use crate::pdu::{HEADER_LEN, TTL_OFFSET, WIRE_VERSION, peek_pdu_len};

/// Labels per stream and direction.
pub const LABELS: usize = 256;
/// The kind byte of a whole PDU: its version byte.
pub const KIND_FULL: u8 = WIRE_VERSION;
/// The kind byte of a frame that binds a label and carries a whole PDU.
pub const KIND_BIND: u8 = 0x81;
/// The kind byte of a PDU whose names are a label.
pub const KIND_LABELLED: u8 = 0x82;
/// Bytes of a bind frame before its PDU's payload.
pub const BIND_HEAD_LEN: usize = 2 + HEADER_LEN;
/// Bytes of a labelled frame before its PDU's payload.
pub const LABELLED_HEAD_LEN: usize = 17;

/// Both names of a header, as they lie in it.
const NAMES_LEN: usize = 2 * NAME_LEN;
/// Where the names start in a header.
const NAMES_OFFSET: usize = 4;
/// Where the sequence number starts in a header; the payload length
/// follows it.
const SEQ_OFFSET: usize = NAMES_OFFSET + NAMES_LEN;
/// Where a labelled frame's sequence number starts.
const LABELLED_SEQ_OFFSET: usize = 5;
const _: () = assert!(LABELLED_SEQ_OFFSET + (HEADER_LEN - SEQ_OFFSET) == LABELLED_HEAD_LEN);

/// The pairs bound to labels on one side of one stream: memory for the
/// labels in use only (a stream of a few pairs holds a few pairs), up to
/// [`LABELS`] of them.
#[derive(Clone)]
struct Table {
    /// For each label, one more than the index of its pair in `names`, or
    /// 0 while it is unbound.
    slot: [u16; LABELS],
    names: Vec<[u8; NAMES_LEN]>,
}

impl Table {
    fn new() -> Self {
        Table {
            slot: [0; LABELS],
            names: Vec::new(),
        }
    }

    fn get(&self, label: u8) -> Option<&[u8; NAMES_LEN]> {
        let slot = usize::from(self.slot[usize::from(label)]);
        slot.checked_sub(1).and_then(|i| self.names.get(i))
    }

    fn bind(&mut self, label: u8, names: &[u8; NAMES_LEN]) {
        let slot = &mut self.slot[usize::from(label)];
        match usize::from(*slot).checked_sub(1) {
            Some(i) => self.names[i] = *names,
            None => {
                self.names.push(*names);
                // At most LABELS pairs, one per label: it fits.
                *slot = u16::try_from(self.names.len()).unwrap_or(u16::MAX);
            }
        }
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("bound", &self.names.len())
            .finish()
    }
}

/// The names of the header that starts `header`.
fn names_of(header: &[u8; HEADER_LEN]) -> &[u8; NAMES_LEN] {
    header[NAMES_OFFSET..SEQ_OFFSET]
        .try_into()
        .expect("the names lie inside the header")
}

/// The sending half of compact framing: writes each PDU of one stream as
/// the shortest frame the labels it has bound allow. See the [module
/// documentation](self) for the frames.
#[derive(Debug)]
pub struct LabelEncoder {
    /// Allocated with the first PDU.
    table: Option<Table>,
    /// The key of the slot hash, fresh for every encoder.
    keys: [u64; 2],
}

impl Default for LabelEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl LabelEncoder {
    /// An encoder for a new stream: no label bound yet.
    pub fn new() -> Self {
        let random = std::collections::hash_map::RandomState::new();
        LabelEncoder {
            table: None,
            keys: [random.hash_one(0u8), random.hash_one(1u8)],
        }
    }

    /// An encoder whose slot hash has the key `keys`, so that its output is
    /// reproducible (for tests and corpora). A link uses [`new`](Self::new):
    /// which pairs share a slot must not be predictable from outside.
    pub fn with_keys(keys: [u64; 2]) -> Self {
        LabelEncoder { table: None, keys }
    }

    /// The label of a pair: a keyed hash of both names, so that which pairs
    /// share a slot cannot be chosen from outside.
    fn slot(&self, names: &[u8; NAMES_LEN]) -> u8 {
        let word = |at: usize| {
            u64::from_le_bytes(
                names[at..at + 8]
                    .try_into()
                    .expect("eight bytes inside the names"),
            )
        };
        let h = (word(0) ^ self.keys[0]).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (word(NAME_LEN) ^ self.keys[1]).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        // The top byte of a multiplicative hash mixes every bit below it.
        (h.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
    }

    /// Appends the frame head of the PDU whose header is `header` to
    /// `out`; its payload follows unchanged (the caller appends it, by
    /// copy or as a buffer of its own). Returns the bytes written.
    pub fn push_head(&mut self, header: &[u8; HEADER_LEN], out: &mut BytesMut) -> usize {
        let names = names_of(header);
        let label = self.slot(names);
        let table = self.table.get_or_insert_with(Table::new);
        if table.get(label) == Some(names) {
            out.put_slice(&[
                KIND_LABELLED,
                header[1],
                header[2],
                header[TTL_OFFSET],
                label,
            ]);
            out.put_slice(&header[SEQ_OFFSET..]);
            LABELLED_HEAD_LEN
        } else {
            table.bind(label, names);
            out.put_slice(&[KIND_BIND, label]);
            out.put_slice(header);
            BIND_HEAD_LEN
        }
    }

    /// Appends the frames of `pdus`, whole encoded PDUs back to back, to
    /// `out`, payloads copied. Bytes that do not start a whole, valid PDU
    /// (which no sender of this crate hands a link) are appended as they
    /// are, from there to the end: the receiver then fails on them exactly
    /// as it would have without labels.
    pub fn push_pdus(&mut self, mut pdus: &[u8], out: &mut BytesMut) {
        while !pdus.is_empty() {
            let Some((header, len)) = whole_pdu_header(pdus) else {
                out.put_slice(pdus);
                return;
            };
            self.push_head(header, out);
            out.put_slice(&pdus[HEADER_LEN..len]);
            pdus = &pdus[len..];
        }
    }
}

/// The header and length of the whole, valid PDU `bytes` starts with, if
/// it does.
pub fn whole_pdu_header(bytes: &[u8]) -> Option<(&[u8; HEADER_LEN], usize)> {
    let len = peek_pdu_len(bytes).ok()?;
    if len > bytes.len() {
        return None;
    }
    Some((bytes[..HEADER_LEN].try_into().ok()?, len))
}

/// The receiving half of compact framing, inside a
/// [`RunDecoder`](super::RunDecoder): collects each frame's head, expands
/// it into a whole header, and counts the payload bytes still to come.
#[derive(Debug)]
pub(super) struct Expander {
    /// Allocated with the first bind.
    table: Option<Table>,
    /// The head of the frame being collected.
    head: [u8; BIND_HEAD_LEN],
    /// Bytes of it in so far.
    have: usize,
    /// Payload bytes of the current PDU still to come.
    pub(super) body_left: usize,
}

/// What one step of the expander needs done.
pub(super) enum Step {
    /// More input is needed (all of it was taken).
    Need,
    /// A header was completed: append it, then `payload` bytes.
    Header {
        header: [u8; HEADER_LEN],
        payload: usize,
    },
}

impl Expander {
    pub(super) fn new() -> Self {
        Expander {
            table: None,
            head: [0; BIND_HEAD_LEN],
            have: 0,
            body_left: 0,
        }
    }

    /// Bytes of a frame head held.
    pub(super) fn held(&self) -> usize {
        self.have
    }

    /// Takes bytes of a frame head from the front of `input` (advancing
    /// it) until a head is complete, and expands it. Call only between
    /// payloads (`body_left == 0`).
    pub(super) fn take_head(&mut self, input: &mut &[u8]) -> Result<Step, FrameError> {
        let first = match (self.have, input.first()) {
            (0, None) => return Ok(Step::Need),
            (0, Some(&kind)) => kind,
            _ => self.head[0],
        };
        let need = match first {
            KIND_FULL => HEADER_LEN,
            KIND_BIND => BIND_HEAD_LEN,
            KIND_LABELLED => LABELLED_HEAD_LEN,
            kind => {
                return Err(FrameError::Malformed(DecodeError::UnknownValue {
                    what: "link frame kind",
                    value: kind.into(),
                }));
            }
        };
        let n = (need - self.have).min(input.len());
        self.head[self.have..self.have + n].copy_from_slice(&input[..n]);
        self.have += n;
        *input = &input[n..];
        if self.have < need {
            return Ok(Step::Need);
        }
        self.have = 0;
        let header = self.expand(first)?;
        let pdu_len = peek_pdu_len(&header).map_err(FrameError::from_header)?;
        Ok(Step::Header {
            header,
            payload: pdu_len - HEADER_LEN,
        })
    }

    /// The whole header the complete head of kind `kind` stands for.
    fn expand(&mut self, kind: u8) -> Result<[u8; HEADER_LEN], FrameError> {
        let sub = |from: usize| -> [u8; HEADER_LEN] {
            self.head[from..from + HEADER_LEN]
                .try_into()
                .expect("a whole header inside the head")
        };
        match kind {
            KIND_FULL => Ok(sub(0)),
            KIND_BIND => {
                let header = sub(2);
                // Checked before anything is bound: a bad header binds
                // nothing.
                peek_pdu_len(&header).map_err(FrameError::from_header)?;
                self.table
                    .get_or_insert_with(Table::new)
                    .bind(self.head[1], names_of(&header));
                Ok(header)
            }
            _ => {
                let label = self.head[4];
                let names =
                    self.table
                        .as_ref()
                        .and_then(|t| t.get(label))
                        .ok_or(FrameError::Malformed(DecodeError::UnknownValue {
                            what: "unbound link label",
                            value: label.into(),
                        }))?;
                let mut header = [0u8; HEADER_LEN];
                header[0] = WIRE_VERSION;
                header[1..NAMES_OFFSET].copy_from_slice(&self.head[1..4]);
                header[NAMES_OFFSET..SEQ_OFFSET].copy_from_slice(names);
                header[SEQ_OFFSET..]
                    .copy_from_slice(&self.head[LABELLED_SEQ_OFFSET..LABELLED_HEAD_LEN]);
                Ok(header)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::RunDecoder;
    use super::super::encode_batch;
    use super::*;
    use crate::pdu::tests::arb_pdu;
    use crate::pdu::{Pdu, PduHeader, PduType, peek_header};
    use bytes::Bytes;
    use gdp_certs::Name;
    use gdp_certs::codec::{Decode, Encode};
    use proptest::prelude::*;

    /// Cuts runs back into their PDUs.
    fn split(runs: &[(Bytes, usize)]) -> Vec<Pdu> {
        let mut out = Vec::new();
        for (run, count) in runs {
            let mut run = run.clone();
            let before = out.len();
            while !run.is_empty() {
                let len = peek_header(&run).expect("whole pdus").pdu_len();
                out.push(Pdu::decode(run.split_to(len)).expect("checked pdu"));
            }
            assert_eq!(out.len() - before, *count, "a run's count is its pdus");
        }
        out
    }

    /// Decodes `chunks` with labels, taking runs where `take` says; the
    /// PDUs and the error that stopped it.
    fn decode(chunks: &[&[u8]], take: &[bool]) -> (Vec<Pdu>, Option<FrameError>) {
        let mut dec = RunDecoder::with_labels();
        let mut runs = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let pushed = dec.push(c);
            if pushed.is_err() || take.get(i).copied().unwrap_or(false) {
                runs.extend(dec.take_run());
            }
            if let Err(e) = pushed {
                return (split(&runs), Some(e));
            }
        }
        runs.extend(dec.take_run());
        (split(&runs), dec.finish().err())
    }

    fn cut<'a>(wire: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        points.extend([0, wire.len()]);
        points.sort_unstable();
        points.windows(2).map(|w| &wire[w[0]..w[1]]).collect()
    }

    /// A PDU from `arb_pdu` with its names taken from a small pool, so
    /// that pairs repeat (labels used) and collide (labels bound again).
    fn arb_flow_pdu() -> impl Strategy<Value = Pdu> {
        (arb_pdu(200), 0u8..6, 0u8..6).prop_map(|(pdu, d, s)| {
            let header = PduHeader {
                dst: Name::from_bytes([d; 32]),
                src: Name::from_bytes([s.wrapping_mul(7); 32]),
                ..pdu.header
            };
            Pdu::new(header, pdu.payload).expect("same payload")
        })
    }

    fn encode(pdus: &[Pdu]) -> BytesMut {
        let mut enc = LabelEncoder::new();
        let mut wire = BytesMut::new();
        for p in pdus {
            enc.push_pdus(&p.to_bytes(), &mut wire);
        }
        wire
    }

    proptest! {
        #[test]
        fn any_cutting_and_taking_yields_the_pdus_in_order(
            pdus in proptest::collection::vec(arb_flow_pdu(), 0..24),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
            take in proptest::collection::vec(any::<bool>(), 0..20),
        ) {
            let wire = encode(&pdus);
            let (out, err) = decode(&cut(&wire, &cuts), &take);
            prop_assert_eq!(err, None);
            prop_assert_eq!(out, pdus);
        }

        #[test]
        fn a_run_of_many_pdus_is_encoded_as_its_pdus_one_by_one(
            pdus in proptest::collection::vec(arb_flow_pdu(), 0..12),
        ) {
            let run = encode_batch(&pdus).expect("within limits");
            let mut enc = LabelEncoder::new();
            let mut wire = BytesMut::new();
            enc.push_pdus(&run, &mut wire);
            prop_assert_eq!(decode(&[&wire], &[]), (pdus, None));
        }

        #[test]
        fn a_gdp1_stream_decodes_as_without_labels(
            pdus in proptest::collection::vec(arb_pdu(300), 0..8),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            // Kind 0x01 is a whole PDU: a labelled decoder reads gdp/1.
            let wire = encode_batch(&pdus).expect("within limits");
            prop_assert_eq!(decode(&cut(&wire, &cuts), &[]), (pdus, None));
        }

        #[test]
        fn any_bytes_decode_to_valid_pdus_or_an_error_that_sticks(
            prefix in proptest::collection::vec(arb_flow_pdu(), 0..4),
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            let mut wire = encode(&prefix).to_vec();
            wire.extend_from_slice(&bytes);
            let chunks = cut(&wire, &cuts);
            let (out, err) = decode(&chunks, &[]);
            // The valid PDUs first, whatever follows.
            prop_assert!(out.len() >= prefix.len());
            prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
            // Cutting differently changes nothing.
            prop_assert_eq!(decode(&[&wire], &[]), (out, err));
            // Memory follows the input: at most five times what came in.
            let mut dec = RunDecoder::with_labels();
            for c in &chunks {
                if dec.push(c).is_err() {
                    break;
                }
            }
            prop_assert!(dec.buffered_len() <= 5 * wire.len() + HEADER_LEN);
        }
    }

    fn data(dst: u8, src: u8, payload: usize) -> Pdu {
        let header = PduHeader::new(
            PduType::Data,
            Name::from_bytes([dst; 32]),
            Name::from_bytes([src; 32]),
            9,
        );
        Pdu::new(header, Bytes::from(vec![3; payload])).expect("small")
    }

    #[test]
    fn a_repeated_pair_costs_seventeen_bytes_a_header() {
        let pdus = vec![data(1, 2, 64); 10];
        let wire = encode(&pdus);
        assert_eq!(
            wire.len(),
            (BIND_HEAD_LEN + 64) + 9 * (LABELLED_HEAD_LEN + 64)
        );
        assert_eq!(decode(&[&wire], &[]), (pdus, None));
    }

    #[test]
    fn more_pairs_than_labels_bind_again_and_stay_correct() {
        // 600 pairs round robin, twice: slots are shared, pairs rebound.
        let pdus: Vec<Pdu> = (0..1200u32)
            .map(|i| data((i % 600 / 3) as u8, (i % 3) as u8, 5))
            .collect();
        let wire = encode(&pdus);
        assert_eq!(decode(&cut(&wire, &[7, 1000, 5000]), &[true]), (pdus, None));
    }

    #[test]
    fn an_unbound_label_or_unknown_kind_is_malformed_and_sticks() {
        let mut enc = LabelEncoder::new();
        let mut wire = BytesMut::new();
        let pdu = data(1, 2, 4).to_bytes();
        enc.push_pdus(&pdu, &mut wire);
        enc.push_pdus(&pdu, &mut wire);
        // Drop the bind frame: the labelled one refers to nothing.
        let labelled = wire.split_off(BIND_HEAD_LEN + 4);
        let mut dec = RunDecoder::with_labels();
        let err = dec.push(&labelled).expect_err("unbound");
        assert!(
            matches!(err, FrameError::Malformed(DecodeError::UnknownValue { what, .. }) if what == "unbound link label"),
            "{err:?}"
        );
        assert_eq!(dec.push(&pdu), Err(err));
        let mut dec = RunDecoder::with_labels();
        let err = dec.push(&[0x7f, 0, 0]).expect_err("unknown kind");
        assert!(matches!(err, FrameError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn a_bad_header_in_a_bind_frame_binds_nothing() {
        let mut bad = vec![KIND_BIND, 0];
        let mut header = data(1, 2, 0).to_bytes().to_vec();
        header[1] = 0xee; // no such type
        bad.extend_from_slice(&header);
        let mut dec = RunDecoder::with_labels();
        assert!(matches!(dec.push(&bad), Err(FrameError::Malformed(_))));
        let mut expander = Expander::new();
        let mut input = &bad[..];
        assert!(expander.take_head(&mut input).is_err());
        assert!(expander.table.as_ref().is_none_or(|t| t.get(0).is_none()));
    }

    #[test]
    fn an_oversized_labelled_frame_fails_before_its_body() {
        let mut enc = LabelEncoder::new();
        let mut wire = BytesMut::new();
        let pdu = data(1, 2, 0).to_bytes();
        enc.push_pdus(&pdu, &mut wire);
        enc.push_pdus(&pdu, &mut wire);
        let at = wire.len() - 4;
        wire[at..].copy_from_slice(&(crate::pdu::MAX_PAYLOAD_LEN as u32 + 1).to_be_bytes());
        let mut dec = RunDecoder::with_labels();
        assert!(matches!(dec.push(&wire), Err(FrameError::Oversized { .. })));
        assert_eq!(dec.take_run().map(|(_, n)| n), Some(1));
    }

    #[test]
    fn a_stream_ending_inside_a_head_is_truncated() {
        let wire = encode(&[data(1, 2, 0), data(1, 2, 0)]);
        let mut dec = RunDecoder::with_labels();
        dec.push(&wire[..wire.len() - 3]).expect("valid so far");
        assert_eq!(dec.take_run().map(|(_, n)| n), Some(1));
        assert_eq!(
            dec.finish(),
            Err(FrameError::Truncated {
                buffered: LABELLED_HEAD_LEN - 3
            })
        );
    }
}
