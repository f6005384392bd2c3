//! PDUs: the datagrams GDP routers forward by destination name.
//!
//! A PDU is a fixed 80-byte header followed by an opaque payload of at most
//! [`MAX_PAYLOAD_LEN`] bytes. Routers read only the header (and the payload
//! of the few types they act on), so the header has a fixed size and fixed
//! offsets: a forwarding loop can [`peek_header`] without allocating and
//! [`decrement_ttl`] in place, then send the original bytes on.
//!
//! # Header layout (version 1)
//!
//! All integers are big-endian.
//!
//! ```text
//! offset size field
//!      0    1 version      WIRE_VERSION = 1
//!      1    1 type         PduType code, see below
//!      2    1 flags        bitset, see Flags; unknown bits are rejected
//!      3    1 ttl          hops left; DEFAULT_TTL = 32 when sent
//!      4   32 dst          destination name
//!     36   32 src          source name
//!     68    8 seq          sequence number / request id
//!     76    4 payload_len  at most MAX_PAYLOAD_LEN
//!     80    - payload      payload_len bytes
//! ```
//!
//! # Types
//!
//! ```text
//! code type         payload                          routers
//! 0x01 Data         application datagram             forward
//! 0x02 Capsule      capsule::CapsuleRequest/Response forward
//! 0x10 Control      control::ControlMessage          link-local, consume
//! 0x11 Advertise    control::ControlMessage          consume (endpoint -> router)
//! 0x12 Withdraw     control::ControlMessage          consume (endpoint -> router)
//! 0x13 NakNoRoute   control::ControlMessage          forward to dst (the original src)
//! 0x14 Ping         opaque, echoed in the Pong       forward
//! 0x15 Pong         the Ping's payload               forward
//! 0x16 Subscribe    control::ControlMessage          act on (tree join); join upstream
//! 0x17 Unsubscribe  control::ControlMessage          act on (tree leave)
//! 0x18 Publish      capsule::CapsuleResponse::Event  copy down the capsule's tree
//! ```
//!
//! A Publish PDU carries a capsule's new records from its server down the
//! capsule's delivery tree: `dst` and `src` are the capsule, and a router
//! accepts one only from the link toward the capsule and copies it once to
//! each link that joined the tree (see [`control`](crate::control)).
//!
//! # TTL
//!
//! The TTL counts the router-to-router hops a PDU may still take. A sender
//! sets [`DEFAULT_TTL`]; a router that forwards a PDU to another router
//! first calls [`decrement_ttl`], which refuses a PDU whose TTL is already
//! zero. Delivery to a locally attached endpoint does not decrement. This
//! bounds every forwarding loop to at most `ttl` hops.

use bytes::{BufMut, Bytes, BytesMut};
use gdp_certs::codec::{Decode, DecodeError, Encode, Reader};
use gdp_certs::{NAME_LEN, Name};

/// The wire version this crate speaks.
pub const WIRE_VERSION: u8 = 1;
/// The TTL a sender puts in a new PDU.
pub const DEFAULT_TTL: u8 = 32;
/// Size of the fixed PDU header.
pub const HEADER_LEN: usize = 80;
/// Largest payload a PDU may carry (1 MiB).
pub const MAX_PAYLOAD_LEN: usize = 1 << 20;
/// Largest encoded PDU.
pub const MAX_PDU_LEN: usize = HEADER_LEN + MAX_PAYLOAD_LEN;

/// Byte offset of the TTL in an encoded header.
pub const TTL_OFFSET: usize = 3;
const DST_OFFSET: usize = 4;
const SRC_OFFSET: usize = DST_OFFSET + NAME_LEN;
const SEQ_OFFSET: usize = SRC_OFFSET + NAME_LEN;
const LEN_OFFSET: usize = SEQ_OFFSET + 8;
const _: () = assert!(LEN_OFFSET + 4 == HEADER_LEN);

/// What a PDU carries, and so what a router does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PduType {
    /// An application datagram to a name.
    Data,
    /// A capsule request or response; opaque to routers.
    Capsule,
    /// Link-local control (attach, router hello); never forwarded.
    Control,
    /// An endpoint advertises names it serves.
    Advertise,
    /// An endpoint withdraws names.
    Withdraw,
    /// A router could not find a route for a PDU from `dst` of this NAK.
    NakNoRoute,
    /// Echo request.
    Ping,
    /// Echo reply.
    Pong,
    /// Join (or refresh) a capsule's delivery tree; routers aggregate these
    /// into trees.
    Subscribe,
    /// Leave a capsule's delivery tree.
    Unsubscribe,
    /// A capsule's new records, copied down its delivery tree.
    Publish,
}

impl PduType {
    /// Every type, in code order.
    pub const ALL: [PduType; 11] = [
        PduType::Data,
        PduType::Capsule,
        PduType::Control,
        PduType::Advertise,
        PduType::Withdraw,
        PduType::NakNoRoute,
        PduType::Ping,
        PduType::Pong,
        PduType::Subscribe,
        PduType::Unsubscribe,
        PduType::Publish,
    ];

    /// The wire code.
    pub const fn code(self) -> u8 {
        match self {
            PduType::Data => 0x01,
            PduType::Capsule => 0x02,
            PduType::Control => 0x10,
            PduType::Advertise => 0x11,
            PduType::Withdraw => 0x12,
            PduType::NakNoRoute => 0x13,
            PduType::Ping => 0x14,
            PduType::Pong => 0x15,
            PduType::Subscribe => 0x16,
            PduType::Unsubscribe => 0x17,
            PduType::Publish => 0x18,
        }
    }

    /// The type with wire code `code`.
    pub fn from_code(code: u8) -> Result<Self, DecodeError> {
        Ok(match code {
            0x01 => PduType::Data,
            0x02 => PduType::Capsule,
            0x10 => PduType::Control,
            0x11 => PduType::Advertise,
            0x12 => PduType::Withdraw,
            0x13 => PduType::NakNoRoute,
            0x14 => PduType::Ping,
            0x15 => PduType::Pong,
            0x16 => PduType::Subscribe,
            0x17 => PduType::Unsubscribe,
            0x18 => PduType::Publish,
            v => {
                return Err(DecodeError::UnknownValue {
                    what: "pdu type",
                    value: v.into(),
                });
            }
        })
    }

    /// True for the types a router consumes or acts on rather than only
    /// forwarding: their payload is a [`ControlMessage`](crate::control::ControlMessage).
    pub const fn is_control(self) -> bool {
        matches!(
            self,
            PduType::Control
                | PduType::Advertise
                | PduType::Withdraw
                | PduType::NakNoRoute
                | PduType::Subscribe
                | PduType::Unsubscribe
        )
    }
}

/// PDU flags: a bitset of known bits. Decoding rejects unknown bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// No flags.
    pub const EMPTY: Flags = Flags(0);
    /// The sender sent this PDU unreliably (as a QUIC datagram); it may be
    /// dropped under load rather than queued.
    pub const UNRELIABLE: Flags = Flags(0x01);
    /// This PDU answers the request with the same `seq` from `dst`.
    pub const RESPONSE: Flags = Flags(0x02);
    /// Every known bit.
    pub const ALL: Flags = Flags(0x03);

    /// The flags encoded as `bits`; unknown bits are an error.
    pub fn from_bits(bits: u8) -> Result<Self, DecodeError> {
        if bits & !Self::ALL.0 == 0 {
            Ok(Flags(bits))
        } else {
            Err(DecodeError::UnknownValue {
                what: "pdu flags",
                value: bits.into(),
            })
        }
    }

    /// The wire byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// True if every flag in `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// `self` with the flags in `other` set.
    #[must_use]
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// `self` with the flags in `other` cleared.
    #[must_use]
    pub const fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        self.with(rhs)
    }
}

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut set = f.debug_set();
        if self.contains(Flags::UNRELIABLE) {
            set.entry(&"UNRELIABLE");
        }
        if self.contains(Flags::RESPONSE) {
            set.entry(&"RESPONSE");
        }
        set.finish()
    }
}

/// The fixed 80-byte PDU header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PduHeader {
    /// Wire version; always [`WIRE_VERSION`] in a decoded header.
    pub version: u8,
    /// What the payload is.
    pub ptype: PduType,
    /// Flags.
    pub flags: Flags,
    /// Router-to-router hops left.
    pub ttl: u8,
    /// Destination name.
    pub dst: Name,
    /// Source name.
    pub src: Name,
    /// Sequence number, or request id for request/response types.
    pub seq: u64,
    /// Payload length in bytes, at most [`MAX_PAYLOAD_LEN`].
    pub payload_len: u32,
}

impl PduHeader {
    /// A version-1 header with no flags, [`DEFAULT_TTL`] and an empty payload.
    pub fn new(ptype: PduType, dst: Name, src: Name, seq: u64) -> Self {
        PduHeader {
            version: WIRE_VERSION,
            ptype,
            flags: Flags::EMPTY,
            ttl: DEFAULT_TTL,
            dst,
            src,
            seq,
            payload_len: 0,
        }
    }

    /// `self` with `flags`.
    #[must_use]
    pub fn with_flags(mut self, flags: Flags) -> Self {
        self.flags = flags;
        self
    }

    /// The header of the pong that answers this ping, sent from `from`
    /// (the name that was pinged): back to the source, with the same
    /// sequence number, marked a response and as unreliable as the ping.
    pub fn pong(&self, from: Name) -> Self {
        let unreliable = if self.flags.contains(Flags::UNRELIABLE) {
            Flags::UNRELIABLE
        } else {
            Flags::EMPTY
        };
        PduHeader::new(PduType::Pong, self.src, from, self.seq)
            .with_flags(Flags::RESPONSE.with(unreliable))
    }

    /// `self` with `ttl`.
    #[must_use]
    pub fn with_ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// The payload length as a `usize`.
    pub fn payload_len(&self) -> usize {
        // u32 -> usize is lossless on every platform this crate builds for
        // (the payload length is also bounded by MAX_PAYLOAD_LEN on decode).
        usize::try_from(self.payload_len).unwrap_or(usize::MAX)
    }

    /// The length of the whole PDU this header starts.
    pub fn pdu_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.payload_len())
    }

    /// The header as its 80 wire bytes.
    pub fn to_array(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = self.version;
        out[1] = self.ptype.code();
        out[2] = self.flags.bits();
        out[TTL_OFFSET] = self.ttl;
        out[DST_OFFSET..SRC_OFFSET].copy_from_slice(self.dst.as_bytes());
        out[SRC_OFFSET..SEQ_OFFSET].copy_from_slice(self.src.as_bytes());
        out[SEQ_OFFSET..LEN_OFFSET].copy_from_slice(&self.seq.to_be_bytes());
        out[LEN_OFFSET..HEADER_LEN].copy_from_slice(&self.payload_len.to_be_bytes());
        out
    }

    /// Parses 80 header bytes, checking version, type, flags and the payload
    /// length limit.
    pub fn from_array(b: &[u8; HEADER_LEN]) -> Result<Self, DecodeError> {
        let (ptype, flags, payload_len) = check_fixed_fields(b)?;
        Ok(PduHeader {
            version: b[0],
            ptype,
            flags,
            ttl: b[TTL_OFFSET],
            dst: Name::from_bytes(sub_array(b, DST_OFFSET)),
            src: Name::from_bytes(sub_array(b, SRC_OFFSET)),
            seq: u64::from_be_bytes(sub_array(b, SEQ_OFFSET)),
            payload_len,
        })
    }
}

/// Checks the header fields that can be invalid (version, type, flags,
/// payload length limit); returns the type, flags and payload length.
fn check_fixed_fields(b: &[u8; HEADER_LEN]) -> Result<(PduType, Flags, u32), DecodeError> {
    if b[0] != WIRE_VERSION {
        return Err(DecodeError::UnknownValue {
            what: "pdu version",
            value: b[0].into(),
        });
    }
    let ptype = PduType::from_code(b[1])?;
    let flags = Flags::from_bits(b[2])?;
    let payload_len = u32::from_be_bytes(sub_array(b, LEN_OFFSET));
    let len = usize::try_from(payload_len).unwrap_or(usize::MAX);
    if len > MAX_PAYLOAD_LEN {
        return Err(DecodeError::TooLong {
            what: "pdu payload length",
            len,
            max: MAX_PAYLOAD_LEN,
        });
    }
    Ok((ptype, flags, payload_len))
}

/// `N` bytes of `b` starting at `at`; the callers' offsets are constants
/// inside the header.
fn sub_array<const N: usize>(b: &[u8; HEADER_LEN], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

impl Encode for PduHeader {
    /// Appends the 80 header bytes; allocates nothing when `buf` has room.
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_slice(&self.to_array());
    }
    fn encoded_len(&self) -> usize {
        HEADER_LEN
    }
}

impl Decode for PduHeader {
    const WHAT: &'static str = "pdu header";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        PduHeader::from_array(&r.array("pdu header")?)
    }
}

/// Parses the header at the start of `buf` without allocating or copying
/// more than the header. Bytes after the header are not looked at; whether
/// the payload is complete is the caller's business (see
/// [`PduHeader::pdu_len`]).
pub fn peek_header(buf: &[u8]) -> Result<PduHeader, DecodeError> {
    let head: &[u8; HEADER_LEN] = buf
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecodeError::Truncated { what: "pdu header" })?;
    PduHeader::from_array(head)
}

/// The length of the whole PDU whose header starts `buf`, after the same
/// checks as [`peek_header`] (version, type, flags, payload length limit)
/// but without building the header: what a reader cutting a stream into
/// PDUs needs, at a fraction of the cost. `Ok(n)` exactly when
/// `peek_header(buf)` is `Ok(h)` with `h.pdu_len() == n`.
pub fn peek_pdu_len(buf: &[u8]) -> Result<usize, DecodeError> {
    let head: &[u8; HEADER_LEN] = buf
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecodeError::Truncated { what: "pdu header" })?;
    let (_, _, payload_len) = check_fixed_fields(head)?;
    // At most MAX_PAYLOAD_LEN, checked.
    Ok(HEADER_LEN + payload_len as usize)
}

/// Why a TTL could not be decremented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TtlError {
    /// The buffer is shorter than a header.
    #[error("buffer of {len} bytes is shorter than a pdu header")]
    Truncated {
        /// The buffer length.
        len: usize,
    },
    /// The TTL is already zero: the PDU may take no further hop.
    #[error("pdu ttl expired")]
    Expired,
}

/// Decrements the TTL of the encoded PDU in `buf` in place and returns the
/// new TTL, so a router can forward the original bytes. Fails without
/// touching `buf` if the TTL is already zero.
pub fn decrement_ttl(buf: &mut [u8]) -> Result<u8, TtlError> {
    if buf.len() < HEADER_LEN {
        return Err(TtlError::Truncated { len: buf.len() });
    }
    let ttl = &mut buf[TTL_OFFSET];
    let new = ttl.checked_sub(1).ok_or(TtlError::Expired)?;
    *ttl = new;
    Ok(new)
}

/// Why a PDU could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PduError {
    /// The payload is longer than [`MAX_PAYLOAD_LEN`].
    #[error("pdu payload of {len} bytes is over the limit of {MAX_PAYLOAD_LEN}")]
    PayloadTooLong {
        /// The payload length.
        len: usize,
    },
    /// A message field is over its named limit, so the message would not
    /// decode at the receiver.
    #[error("{what} is {len}, over the limit of {max}")]
    OverLimit {
        /// The field.
        what: &'static str,
        /// Its length or count.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A message breaks a rule the decoder enforces (for example an empty
    /// record list).
    #[error("invalid message: {what}")]
    Invalid {
        /// The rule.
        what: &'static str,
    },
}

impl PduError {
    /// `Err(OverLimit)` if `len > max`.
    pub(crate) fn check(what: &'static str, len: usize, max: usize) -> Result<(), PduError> {
        if len > max {
            Err(PduError::OverLimit { what, len, max })
        } else {
            Ok(())
        }
    }
}

/// A header and its payload. The payload is shared, not copied, with the
/// buffer it was decoded from.
///
/// Build one with [`Pdu::new`], which sets `header.payload_len`. When a PDU
/// is encoded, the length field is taken from `payload`, so a hand-edited
/// `header.payload_len` can never desynchronise a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    /// The header.
    pub header: PduHeader,
    /// The payload.
    pub payload: Bytes,
}

impl Pdu {
    /// A PDU of `header` carrying `payload`; sets `header.payload_len`.
    pub fn new(mut header: PduHeader, payload: Bytes) -> Result<Self, PduError> {
        let len = payload.len();
        if len > MAX_PAYLOAD_LEN {
            return Err(PduError::PayloadTooLong { len });
        }
        header.payload_len = u32::try_from(len).map_err(|_| PduError::PayloadTooLong { len })?;
        Ok(Pdu { header, payload })
    }

    /// The header as it is encoded: `payload_len` set from the payload.
    pub fn wire_header(&self) -> PduHeader {
        let mut h = self.header;
        debug_assert!(self.payload.len() <= MAX_PAYLOAD_LEN);
        h.payload_len = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        h
    }

    /// True if the payload fits [`MAX_PAYLOAD_LEN`], so the encoding decodes.
    pub fn is_within_limits(&self) -> bool {
        self.payload.len() <= MAX_PAYLOAD_LEN
    }
}

impl Encode for Pdu {
    fn encode(&self, buf: &mut BytesMut) {
        self.wire_header().encode(buf);
        buf.put_slice(&self.payload);
    }
    fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }
}

impl Decode for Pdu {
    const WHAT: &'static str = "pdu";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        let header = PduHeader::decode_from(r)?;
        let payload = r.take(header.payload_len(), "pdu payload")?;
        Ok(Pdu { header, payload })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn arb_name() -> impl Strategy<Value = Name> {
        any::<[u8; 32]>().prop_map(Name::from_bytes)
    }

    pub(crate) fn arb_header() -> impl Strategy<Value = PduHeader> {
        (
            prop::sample::select(PduType::ALL.to_vec()),
            0u8..=Flags::ALL.bits(),
            any::<u8>(),
            arb_name(),
            arb_name(),
            any::<u64>(),
        )
            .prop_map(|(t, f, ttl, dst, src, seq)| {
                PduHeader::new(t, dst, src, seq)
                    .with_flags(Flags::from_bits(f).expect("strategy stays within known bits"))
                    .with_ttl(ttl)
            })
    }

    pub(crate) fn arb_pdu(max_payload: usize) -> impl Strategy<Value = Pdu> {
        (
            arb_header(),
            proptest::collection::vec(any::<u8>(), 0..=max_payload),
        )
            .prop_map(|(h, p)| Pdu::new(h, Bytes::from(p)).expect("strategy stays within limits"))
    }

    fn sample() -> Pdu {
        let h = PduHeader::new(
            PduType::Data,
            Name::from_bytes([1; 32]),
            Name::from_bytes([2; 32]),
            7,
        );
        Pdu::new(h, Bytes::from_static(b"hello")).expect("small payload")
    }

    proptest! {
        #[test]
        fn pdu_round_trips(pdu in arb_pdu(512)) {
            let bytes = pdu.to_bytes();
            prop_assert_eq!(bytes.len(), pdu.encoded_len());
            prop_assert_eq!(peek_header(&bytes), Ok(pdu.header));
            prop_assert_eq!(Pdu::decode(bytes), Ok(pdu));
        }

        #[test]
        fn header_round_trips(h in arb_header(), len in 0u32..=MAX_PAYLOAD_LEN as u32) {
            let h = PduHeader { payload_len: len, ..h };
            let bytes = h.to_bytes();
            prop_assert_eq!(bytes.len(), HEADER_LEN);
            prop_assert_eq!(PduHeader::decode(bytes), Ok(h));
        }

        #[test]
        fn peek_pdu_len_agrees_with_peek_header(
            bytes in proptest::collection::vec(any::<u8>(), 0..120),
            h in arb_header(),
            len in 0u32..=MAX_PAYLOAD_LEN as u32 + 2,
            poke in any::<(usize, u8)>(),
        ) {
            // Arbitrary bytes, and a valid header with one byte changed.
            let mut valid = PduHeader { payload_len: len, ..h }.to_array().to_vec();
            let at = poke.0 % valid.len();
            valid[at] = poke.1;
            for b in [&bytes[..], &valid[..]] {
                prop_assert_eq!(peek_pdu_len(b), peek_header(b).map(|h| h.pdu_len()));
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Pdu::decode(bytes.clone());
            let _ = peek_header(&bytes);
            let mut b = bytes;
            let _ = decrement_ttl(&mut b);
        }

        #[test]
        fn decrement_ttl_matches_header(pdu in arb_pdu(16)) {
            let mut b = pdu.to_bytes().to_vec();
            let res = decrement_ttl(&mut b);
            if pdu.header.ttl == 0 {
                prop_assert_eq!(res, Err(TtlError::Expired));
                prop_assert_eq!(b, pdu.to_bytes().to_vec());
            } else {
                prop_assert_eq!(res, Ok(pdu.header.ttl - 1));
                let back = Pdu::decode(b).expect("still a valid pdu");
                prop_assert_eq!(back.header, pdu.header.with_ttl(pdu.header.ttl - 1));
                prop_assert_eq!(back.payload, pdu.payload);
            }
        }
    }

    #[test]
    fn layout_is_fixed() {
        let b = sample().to_bytes();
        assert_eq!(b.len(), HEADER_LEN + 5);
        assert_eq!(&b[..4], &[WIRE_VERSION, 0x01, 0, DEFAULT_TTL]);
        assert_eq!(&b[4..36], &[1; 32]);
        assert_eq!(&b[36..68], &[2; 32]);
        assert_eq!(&b[68..76], &7u64.to_be_bytes());
        assert_eq!(&b[76..80], &5u32.to_be_bytes());
        assert_eq!(&b[80..], b"hello");
    }

    #[test]
    fn type_codes_round_trip_and_are_distinct() {
        let mut codes: Vec<u8> = PduType::ALL.iter().map(|t| t.code()).collect();
        for t in PduType::ALL {
            assert_eq!(PduType::from_code(t.code()), Ok(t));
        }
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), PduType::ALL.len());
    }

    #[test]
    fn truncated_input_is_rejected() {
        let b = sample().to_bytes();
        assert_eq!(
            Pdu::decode(b.slice(..HEADER_LEN - 1)),
            Err(DecodeError::Truncated { what: "pdu header" })
        );
        assert_eq!(
            Pdu::decode(b.slice(..b.len() - 1)),
            Err(DecodeError::Truncated {
                what: "pdu payload"
            })
        );
        assert_eq!(
            peek_header(&b[..10]),
            Err(DecodeError::Truncated { what: "pdu header" })
        );
        assert_eq!(
            decrement_ttl(&mut [0u8; 3]),
            Err(TtlError::Truncated { len: 3 })
        );
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut b = sample().to_bytes().to_vec();
        b.push(0);
        assert_eq!(
            Pdu::decode(b),
            Err(DecodeError::TrailingBytes {
                what: "pdu",
                count: 1
            })
        );
    }

    #[test]
    fn unknown_version_type_and_flags_are_rejected() {
        let good = sample().to_bytes().to_vec();
        let mut b = good.clone();
        b[0] = 2;
        assert_eq!(
            Pdu::decode(b),
            Err(DecodeError::UnknownValue {
                what: "pdu version",
                value: 2
            })
        );
        let mut b = good.clone();
        b[1] = 0x7f;
        assert_eq!(
            peek_header(&b),
            Err(DecodeError::UnknownValue {
                what: "pdu type",
                value: 0x7f
            })
        );
        let mut b = good;
        b[2] = 0x04;
        assert_eq!(
            Pdu::decode(b),
            Err(DecodeError::UnknownValue {
                what: "pdu flags",
                value: 4
            })
        );
    }

    #[test]
    fn payload_length_over_limit_is_rejected() {
        let mut b = sample().to_bytes().to_vec();
        b[76..80].copy_from_slice(&(MAX_PAYLOAD_LEN as u32 + 1).to_be_bytes());
        assert_eq!(
            peek_header(&b),
            Err(DecodeError::TooLong {
                what: "pdu payload length",
                len: MAX_PAYLOAD_LEN + 1,
                max: MAX_PAYLOAD_LEN
            })
        );
        let big = Bytes::from(vec![0u8; MAX_PAYLOAD_LEN + 1]);
        assert_eq!(
            Pdu::new(sample().header, big),
            Err(PduError::PayloadTooLong {
                len: MAX_PAYLOAD_LEN + 1
            })
        );
    }

    #[test]
    fn ttl_decrements_to_zero_then_expires() {
        let mut pdu = sample();
        pdu.header.ttl = 1;
        let mut b = pdu.to_bytes().to_vec();
        assert_eq!(decrement_ttl(&mut b), Ok(0));
        assert_eq!(decrement_ttl(&mut b), Err(TtlError::Expired));
        assert_eq!(peek_header(&b).map(|h| h.ttl), Ok(0));
    }

    #[test]
    fn header_encode_does_not_allocate_into_reserved_buffer() {
        let h = sample().header;
        let mut buf = BytesMut::with_capacity(HEADER_LEN * 2);
        let ptr = buf.as_ptr();
        h.encode(&mut buf);
        h.encode(&mut buf);
        assert_eq!(buf.as_ptr(), ptr);
        assert_eq!(buf.len(), 2 * HEADER_LEN);
    }

    #[test]
    fn encode_takes_length_from_payload() {
        let mut pdu = sample();
        pdu.header.payload_len = 999;
        let back = Pdu::decode(pdu.to_bytes()).expect("consistent on the wire");
        assert_eq!(back.header.payload_len, 5);
        assert_eq!(back.payload, pdu.payload);
    }

    #[test]
    fn a_pong_answers_its_ping() {
        let (a, b) = (Name::from_bytes([1; 32]), Name::from_bytes([2; 32]));
        for flags in [Flags::EMPTY, Flags::UNRELIABLE] {
            let ping = PduHeader::new(PduType::Ping, b, a, 42).with_flags(flags);
            let pong = ping.pong(b);
            assert_eq!(
                (pong.ptype, pong.dst, pong.src, pong.seq),
                (PduType::Pong, a, b, 42)
            );
            assert_eq!(pong.flags, Flags::RESPONSE.with(flags));
        }
    }

    #[test]
    fn flags_reject_unknown_bits_and_combine() {
        assert_eq!(
            Flags::from_bits(0x80),
            Err(DecodeError::UnknownValue {
                what: "pdu flags",
                value: 0x80
            })
        );
        let f = Flags::UNRELIABLE | Flags::RESPONSE;
        assert_eq!(f, Flags::ALL);
        assert!(f.contains(Flags::RESPONSE));
        assert!(!f.without(Flags::RESPONSE).contains(Flags::RESPONSE));
        assert!(Flags::EMPTY.is_empty());
    }
}
