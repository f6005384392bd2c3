//! Capsule records: the hash-chained entries of a DataCapsule.
//!
//! A record is `{capsule, seqno, timestamp, prev, skips, payload}`. Seqnos
//! start at 1 and have no holes. Every record points back to older records by
//! hash:
//!
//! - pointer `k = 0` is `prev`, the hash of record `seqno - 1`; record 1's
//!   `prev` is the capsule's chain anchor ([`RecordHash::anchor`]), a hash of
//!   the capsule name, so a chain cannot be moved to another capsule;
//! - pointers `k = 1..=trailing_zeros(seqno)` (while `seqno - 2^k >= 1`) are
//!   the skips, `skips[k - 1]` being the hash of record `seqno - 2^k`
//!   ([`skip_count`], [`pointer_target`](crate::chain::pointer_target)).
//!
//! With these pointers a path of headers from any record down to any older
//! one is `O(log n)` long (see [`crate::proof`]).
//!
//! # Hash
//!
//! A record's hash is `blake3::derive_key(RECORD_HASH_CONTEXT, header)` where
//! `header` is the canonical encoding of its [`RecordHeader`]:
//!
//! ```text
//! [32] capsule name
//! u64  seqno            (>= 1)
//! u64  timestamp        (microseconds since the epoch, writer's clock)
//! [32] prev
//! u8   skip count       (exactly skip_count(seqno), at most MAX_SKIPS)
//! [32] each skip
//! u32  payload length   (at most MAX_RECORD_PAYLOAD)
//! [32] payload hash     (plain blake3 of the payload)
//! ```
//!
//! The header commits to the payload through its hash, so proofs carry headers
//! without payloads. A [`Record`] is encoded the same way up to the skips,
//! followed by the `u32`-length-prefixed payload bytes instead of the length
//! and payload hash.
//!
//! [`Record`] and [`RecordHeader`] check their shape when built or decoded
//! (seqno at least 1, the right number of skips, payload size) and compute
//! their hash once, so `hash()` is free afterwards.

use std::fmt;
use std::sync::LazyLock;

use blake3::hazmat::{self, ContextKey, HasherExt};
use bytes::{BufMut, Bytes, BytesMut};
use gdp_certs::codec::{Decode, DecodeError, Encode, Reader, put};
use gdp_certs::{Name, Timestamp};

use crate::chain::skip_count;

/// Largest record payload, in bytes.
pub const MAX_RECORD_PAYLOAD: usize = 256 * 1024;

/// Largest number of skip pointers a record may carry. A `u64` seqno needs at
/// most 62 (see [`skip_count`]).
pub const MAX_SKIPS: usize = 64;

/// Length of a [`RecordHash`].
pub const RECORD_HASH_LEN: usize = 32;

/// The blake3 derive-key context for record hashes. Fixed forever for version 1.
pub const RECORD_HASH_CONTEXT: &str = "GDP v1 2026-11-23 record header";

/// The blake3 derive-key context for a capsule's chain anchor (record 1's
/// `prev`). Fixed forever for version 1.
pub const CHAIN_ANCHOR_CONTEXT: &str = "GDP v1 2026-11-23 capsule chain anchor";

/// Encoded length of a header without its skips.
pub(crate) const HEADER_FIXED_LEN: usize = 32 + 8 + 8 + RECORD_HASH_LEN + 1 + 4 + 32;

/// Encoded length of a record without its skips and payload bytes.
const RECORD_FIXED_LEN: usize = 32 + 8 + 8 + RECORD_HASH_LEN + 1 + 4;

/// Largest encoded [`RecordHeader`].
pub const MAX_HEADER_LEN: usize = HEADER_FIXED_LEN + RECORD_HASH_LEN * MAX_SKIPS;

/// Largest encoded [`Record`], for bounding the messages that carry one.
pub const MAX_RECORD_LEN: usize =
    RECORD_FIXED_LEN + RECORD_HASH_LEN * MAX_SKIPS + MAX_RECORD_PAYLOAD;

/// The blake3 hash of a record header: what chains, skips and heartbeats point to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordHash(pub [u8; RECORD_HASH_LEN]);

impl RecordHash {
    /// The anchor of `capsule`'s chain: the `prev` of its record 1,
    /// `blake3::derive_key(CHAIN_ANCHOR_CONTEXT, capsule name)`.
    pub fn anchor(capsule: &Name) -> Self {
        RecordHash(blake3::derive_key(CHAIN_ANCHOR_CONTEXT, capsule.as_bytes()))
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; RECORD_HASH_LEN] {
        &self.0
    }
}

impl fmt::Display for RecordHash {
    /// Lowercase hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RecordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RecordHash({:02x}{:02x}{:02x}{:02x}..)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

impl Encode for RecordHash {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_slice(&self.0);
    }
    fn encoded_len(&self) -> usize {
        RECORD_HASH_LEN
    }
}

impl Decode for RecordHash {
    const WHAT: &'static str = "record hash";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(RecordHash(r.array("record hash")?))
    }
}

/// Why a record or record header cannot be built or decoded: its shape does
/// not fit its seqno, or its payload is too large.
///
/// Chains and proofs have their own errors: [`ChainError`](crate::chain::ChainError)
/// (records that do not continue a chain) and
/// [`ProofError`](crate::proof::ProofError) (heartbeats and proofs that do
/// not verify).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Seqnos start at 1.
    #[error("record seqno 0: seqnos start at 1")]
    SeqnoZero,
    /// The payload is larger than [`MAX_RECORD_PAYLOAD`].
    #[error("record payload is {len} bytes, over the limit of {MAX_RECORD_PAYLOAD}")]
    PayloadTooLarge {
        /// The payload length.
        len: usize,
    },
    /// A record has the wrong number of skip pointers for its seqno.
    #[error("record {seqno} needs {expected} skip pointers, has {found}")]
    SkipCount {
        /// The record's seqno.
        seqno: u64,
        /// What [`skip_count`] requires.
        expected: usize,
        /// What the record has.
        found: usize,
    },
}

fn check_shape(seqno: u64, skips: usize, payload_len: usize) -> Result<(), RecordError> {
    if seqno == 0 {
        return Err(RecordError::SeqnoZero);
    }
    let expected = skip_count(seqno);
    if skips != expected {
        return Err(RecordError::SkipCount {
            seqno,
            expected,
            found: skips,
        });
    }
    if payload_len > MAX_RECORD_PAYLOAD {
        return Err(RecordError::PayloadTooLarge { len: payload_len });
    }
    Ok(())
}

/// A record's header: everything but the payload, which it commits to by
/// length and hash. Hashes to the same [`RecordHash`] as its record.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordHeader {
    capsule: Name,
    seqno: u64,
    timestamp: Timestamp,
    prev: RecordHash,
    skips: Vec<RecordHash>,
    payload_len: u32,
    payload_hash: [u8; 32],
    hash: RecordHash,
}

impl RecordHeader {
    /// A header from its fields, checking the seqno, skip count and payload
    /// length.
    pub fn new(
        capsule: Name,
        seqno: u64,
        timestamp: Timestamp,
        prev: RecordHash,
        skips: Vec<RecordHash>,
        payload_len: u32,
        payload_hash: [u8; 32],
    ) -> Result<Self, RecordError> {
        check_shape(seqno, skips.len(), payload_len as usize)?;
        let mut h = RecordHeader {
            capsule,
            seqno,
            timestamp,
            prev,
            skips,
            payload_len,
            payload_hash,
            hash: RecordHash([0; RECORD_HASH_LEN]),
        };
        h.hash = h.compute_hash();
        Ok(h)
    }

    /// The hash of the header encoding, fed to the hasher piecewise so that
    /// nothing is allocated.
    fn compute_hash(&self) -> RecordHash {
        // The context's key is hashed once per process, not once per
        // record: a header is three or four blocks, the context one more.
        static CONTEXT_KEY: LazyLock<ContextKey> =
            LazyLock::new(|| hazmat::hash_derive_key_context(RECORD_HASH_CONTEXT));
        let mut h = blake3::Hasher::new_from_context_key(&CONTEXT_KEY);
        h.update(self.capsule.as_bytes());
        h.update(&self.seqno.to_be_bytes());
        h.update(&self.timestamp.0.to_be_bytes());
        h.update(&self.prev.0);
        h.update(&[self.skips.len() as u8]);
        for s in &self.skips {
            h.update(&s.0);
        }
        h.update(&self.payload_len.to_be_bytes());
        h.update(&self.payload_hash);
        RecordHash(*h.finalize().as_bytes())
    }

    /// The capsule the record belongs to.
    pub fn capsule(&self) -> &Name {
        &self.capsule
    }
    /// The record's seqno (at least 1).
    pub fn seqno(&self) -> u64 {
        self.seqno
    }
    /// The writer's timestamp.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }
    /// Hash of the previous record, or the chain anchor for record 1.
    pub fn prev(&self) -> &RecordHash {
        &self.prev
    }
    /// Skip pointers: `skips[k - 1]` is the hash of record `seqno - 2^k`.
    pub fn skips(&self) -> &[RecordHash] {
        &self.skips
    }
    /// Payload length in bytes.
    pub fn payload_len(&self) -> u32 {
        self.payload_len
    }
    /// Plain blake3 hash of the payload.
    pub fn payload_hash(&self) -> &[u8; 32] {
        &self.payload_hash
    }
    /// The record's hash.
    pub fn hash(&self) -> RecordHash {
        self.hash
    }

    /// Pointer `k`: `prev` for 0, `skips[k - 1]` above, if the record has it.
    /// Record 1's pointer 0 is the chain anchor, not a record, and is `None`.
    pub fn pointer(&self, k: u32) -> Option<&RecordHash> {
        crate::chain::pointer_target(self.seqno, k)?;
        match k {
            0 => Some(&self.prev),
            k => self.skips.get(k as usize - 1),
        }
    }

    /// Encodes the fields records and headers share, up to the skips.
    fn encode_common(&self, buf: &mut BytesMut) {
        self.capsule.encode(buf);
        buf.put_u64(self.seqno);
        self.timestamp.encode(buf);
        self.prev.encode(buf);
        buf.put_u8(self.skips.len() as u8);
        for s in &self.skips {
            s.encode(buf);
        }
    }

    /// Decodes the fields records and headers share, up to the skips.
    fn decode_common(
        r: &mut Reader,
    ) -> Result<(Name, u64, Timestamp, RecordHash, Vec<RecordHash>), DecodeError> {
        let capsule = Name::decode_from(r)?;
        let seqno = r.u64("record seqno")?;
        if seqno == 0 {
            return Err(DecodeError::Invalid {
                what: "record seqno 0",
            });
        }
        let timestamp = Timestamp::decode_from(r)?;
        let prev = RecordHash::decode_from(r)?;
        let n = usize::from(r.u8("record skip count")?);
        if n > MAX_SKIPS {
            return Err(DecodeError::TooLong {
                what: "record skip count",
                len: n,
                max: MAX_SKIPS,
            });
        }
        if n != skip_count(seqno) {
            return Err(DecodeError::Invalid {
                what: "record skip count for its seqno",
            });
        }
        let mut skips = Vec::with_capacity(n);
        for _ in 0..n {
            skips.push(RecordHash::decode_from(r)?);
        }
        Ok((capsule, seqno, timestamp, prev, skips))
    }
}

impl fmt::Debug for RecordHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordHeader")
            .field("capsule", &self.capsule.short())
            .field("seqno", &self.seqno)
            .field("timestamp", &self.timestamp)
            .field("skips", &self.skips.len())
            .field("payload_len", &self.payload_len)
            .field("hash", &self.hash)
            .finish()
    }
}

impl Encode for RecordHeader {
    fn encode(&self, buf: &mut BytesMut) {
        self.encode_common(buf);
        buf.put_u32(self.payload_len);
        buf.put_slice(&self.payload_hash);
    }

    fn encoded_len(&self) -> usize {
        HEADER_FIXED_LEN + RECORD_HASH_LEN * self.skips.len()
    }
}

impl Decode for RecordHeader {
    const WHAT: &'static str = "record header";

    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        let (capsule, seqno, timestamp, prev, skips) = Self::decode_common(r)?;
        let payload_len = r.u32("record payload length")?;
        if payload_len as usize > MAX_RECORD_PAYLOAD {
            return Err(DecodeError::TooLong {
                what: "record payload length",
                len: payload_len as usize,
                max: MAX_RECORD_PAYLOAD,
            });
        }
        let payload_hash = r.array("record payload hash")?;
        let mut h = RecordHeader {
            capsule,
            seqno,
            timestamp,
            prev,
            skips,
            payload_len,
            payload_hash,
            hash: RecordHash([0; RECORD_HASH_LEN]),
        };
        h.hash = h.compute_hash();
        Ok(h)
    }
}

/// A capsule record: its [`RecordHeader`] and the payload. Built by a
/// writer's [`crate::chain::ChainState`] or decoded; either way its shape is
/// checked and its hash computed once.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    header: RecordHeader,
    payload: Bytes,
}

impl Record {
    /// A record from its fields, checking the seqno, skip count and payload
    /// size. Writers normally use [`crate::chain::ChainState::next_record`],
    /// which fills in `prev` and `skips`.
    pub fn new(
        capsule: Name,
        seqno: u64,
        timestamp: Timestamp,
        prev: RecordHash,
        skips: Vec<RecordHash>,
        payload: Bytes,
    ) -> Result<Self, RecordError> {
        check_shape(seqno, skips.len(), payload.len())?;
        Ok(Self::new_unchecked(
            capsule, seqno, timestamp, prev, skips, payload,
        ))
    }

    /// Builds a record whose shape the caller has checked.
    fn new_unchecked(
        capsule: Name,
        seqno: u64,
        timestamp: Timestamp,
        prev: RecordHash,
        skips: Vec<RecordHash>,
        payload: Bytes,
    ) -> Self {
        let mut header = RecordHeader {
            capsule,
            seqno,
            timestamp,
            prev,
            skips,
            // The shape check bounds the payload far below u32::MAX.
            payload_len: payload.len() as u32,
            payload_hash: *blake3::hash(&payload).as_bytes(),
            hash: RecordHash([0; RECORD_HASH_LEN]),
        };
        header.hash = header.compute_hash();
        Record { header, payload }
    }

    /// The header: everything but the payload bytes, with the record's hash.
    pub fn as_header(&self) -> &RecordHeader {
        &self.header
    }
    /// A copy of the header, for proofs and stores.
    pub fn header(&self) -> RecordHeader {
        self.header.clone()
    }
    /// The header, dropping the payload.
    pub fn into_header(self) -> RecordHeader {
        self.header
    }
    /// The payload (shares the buffer it was decoded from).
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
    /// The capsule the record belongs to.
    pub fn capsule(&self) -> &Name {
        &self.header.capsule
    }
    /// The record's seqno (at least 1).
    pub fn seqno(&self) -> u64 {
        self.header.seqno
    }
    /// The writer's timestamp.
    pub fn timestamp(&self) -> Timestamp {
        self.header.timestamp
    }
    /// Hash of the previous record, or the chain anchor for record 1.
    pub fn prev(&self) -> &RecordHash {
        &self.header.prev
    }
    /// Skip pointers: `skips[k - 1]` is the hash of record `seqno - 2^k`.
    pub fn skips(&self) -> &[RecordHash] {
        &self.header.skips
    }
    /// The record's hash.
    pub fn hash(&self) -> RecordHash {
        self.header.hash
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Record").field(&self.header).finish()
    }
}

impl Encode for Record {
    fn encode(&self, buf: &mut BytesMut) {
        self.header.encode_common(buf);
        put::bytes_u32(buf, &self.payload);
    }

    fn encoded_len(&self) -> usize {
        RECORD_FIXED_LEN + RECORD_HASH_LEN * self.header.skips.len() + self.payload.len()
    }
}

impl Decode for Record {
    const WHAT: &'static str = "record";

    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        let (capsule, seqno, timestamp, prev, skips) = RecordHeader::decode_common(r)?;
        let payload = r.bytes_u32(MAX_RECORD_PAYLOAD, "record payload")?;
        Ok(Record::new_unchecked(
            capsule, seqno, timestamp, prev, skips, payload,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn capsule() -> Name {
        Name::from_bytes([7; 32])
    }

    /// A record with valid shape and arbitrary pointer values.
    fn arb_record() -> impl Strategy<Value = Record> {
        (
            any::<[u8; 32]>(),
            1..u64::MAX,
            any::<u64>(),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(c, seqno, ts, prev, skip, payload)| {
                let skips = (0..skip_count(seqno) as u8)
                    .map(|i| {
                        let mut s = skip;
                        s[0] = i;
                        RecordHash(s)
                    })
                    .collect();
                Record::new(
                    Name::from_bytes(c),
                    seqno,
                    Timestamp(ts),
                    RecordHash(prev),
                    skips,
                    Bytes::from(payload),
                )
                .expect("strategy builds valid shapes")
            })
    }

    #[test]
    fn anchor_depends_on_the_capsule() {
        let a = RecordHash::anchor(&capsule());
        assert_eq!(a, RecordHash::anchor(&capsule()));
        assert_ne!(a, RecordHash::anchor(&Name::from_bytes([8; 32])));
        assert_eq!(a.to_string().len(), 64);
    }

    #[test]
    fn shape_is_checked_on_construction() {
        let p = RecordHash([1; 32]);
        let c = capsule();
        assert_eq!(
            Record::new(c, 0, Timestamp(1), p, vec![], Bytes::new()),
            Err(RecordError::SeqnoZero)
        );
        assert_eq!(
            Record::new(c, 4, Timestamp(1), p, vec![p, p], Bytes::new()),
            Err(RecordError::SkipCount {
                seqno: 4,
                expected: 1,
                found: 2
            })
        );
        let big = Bytes::from(vec![0; MAX_RECORD_PAYLOAD + 1]);
        assert_eq!(
            Record::new(c, 1, Timestamp(1), p, vec![], big),
            Err(RecordError::PayloadTooLarge {
                len: MAX_RECORD_PAYLOAD + 1
            })
        );
        assert!(matches!(
            RecordHeader::new(c, 3, Timestamp(1), p, vec![p], 0, [0; 32]),
            Err(RecordError::SkipCount { seqno: 3, .. })
        ));
    }

    /// A record with 65 skips, written by hand (the type cannot hold one).
    fn encoding_with_skips(seqno: u64, skips: usize) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(capsule().as_bytes());
        b.extend_from_slice(&seqno.to_be_bytes());
        b.extend_from_slice(&1u64.to_be_bytes());
        b.extend_from_slice(&[3; 32]);
        b.push(skips as u8);
        for _ in 0..skips {
            b.extend_from_slice(&[4; 32]);
        }
        b.extend_from_slice(&0u32.to_be_bytes());
        b
    }

    #[test]
    fn too_many_skips_rejected_on_decode() {
        assert_eq!(
            Record::decode(encoding_with_skips(1 << 40, 65)),
            Err(DecodeError::TooLong {
                what: "record skip count",
                len: 65,
                max: MAX_SKIPS
            })
        );
        // One more skip than the seqno allows.
        assert_eq!(
            Record::decode(encoding_with_skips(8, 3)),
            Err(DecodeError::Invalid {
                what: "record skip count for its seqno"
            })
        );
        assert!(Record::decode(encoding_with_skips(8, 2)).is_ok());
        assert_eq!(
            Record::decode(encoding_with_skips(0, 0)),
            Err(DecodeError::Invalid {
                what: "record seqno 0"
            })
        );
    }

    #[test]
    fn truncated_and_trailing_bytes_rejected() {
        let r = Record::new(
            capsule(),
            6,
            Timestamp(9),
            RecordHash([1; 32]),
            vec![RecordHash([2; 32])],
            Bytes::from_static(b"payload"),
        )
        .expect("valid");
        let bytes = r.to_bytes();
        assert_eq!(
            Record::decode(bytes.slice(..bytes.len() - 1)),
            Err(DecodeError::Truncated {
                what: "record payload"
            })
        );
        let mut long = bytes.to_vec();
        long.push(0);
        assert_eq!(
            Record::decode(long),
            Err(DecodeError::TrailingBytes {
                what: "record",
                count: 1
            })
        );
        let h = r.header().to_bytes();
        assert_eq!(
            RecordHeader::decode(h.slice(..40)),
            Err(DecodeError::Truncated { what: "timestamp" })
        );
    }

    #[test]
    fn oversized_payload_rejected_before_reading_it() {
        let mut b = encoding_with_skips(1, 0);
        let n = b.len();
        b[n - 4..].copy_from_slice(&(MAX_RECORD_PAYLOAD as u32 + 1).to_be_bytes());
        assert_eq!(
            Record::decode(b),
            Err(DecodeError::TooLong {
                what: "record payload",
                len: MAX_RECORD_PAYLOAD + 1,
                max: MAX_RECORD_PAYLOAD
            })
        );
    }

    proptest! {
        #[test]
        fn record_round_trips(r in arb_record()) {
            let bytes = r.to_bytes();
            prop_assert_eq!(bytes.len(), r.encoded_len());
            let back = Record::decode(bytes).expect("decodes");
            prop_assert_eq!(back.hash(), r.hash());
            prop_assert_eq!(back, r);
        }

        #[test]
        fn header_round_trips_and_hashes_like_its_record(r in arb_record()) {
            let h = r.header();
            let bytes = h.to_bytes();
            prop_assert_eq!(bytes.len(), h.encoded_len());
            // The hash is the derive-key hash of exactly the header encoding.
            prop_assert_eq!(blake3::derive_key(RECORD_HASH_CONTEXT, &bytes), r.hash().0);
            let back = RecordHeader::decode(bytes).expect("decodes");
            prop_assert_eq!(back.hash(), r.hash());
            prop_assert_eq!(&back, &h);
            let rebuilt = RecordHeader::new(
                *h.capsule(), h.seqno(), h.timestamp(), *h.prev(), h.skips().to_vec(),
                h.payload_len(), *h.payload_hash(),
            ).expect("valid");
            prop_assert_eq!(rebuilt, h);
        }

        #[test]
        fn any_bit_flip_changes_the_hash_or_fails_to_decode(
            r in arb_record(),
            bit in any::<prop::sample::Index>(),
        ) {
            let mut bytes = r.to_bytes().to_vec();
            let i = bit.index(bytes.len() * 8);
            bytes[i / 8] ^= 1 << (i % 8);
            if let Ok(back) = Record::decode(bytes) {
                prop_assert_ne!(back.hash(), r.hash());
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Record::decode(bytes.clone());
            let _ = RecordHeader::decode(bytes);
        }
    }
}
