//! Control messages: the payloads routers act on.
//!
//! Attach, router hello, advertise, withdraw, no-route NAKs and subscription
//! control all travel as a [`ControlMessage`]: one type byte, then the
//! message. Each message belongs in one PDU type ([`ControlMessage::pdu_type`]);
//! [`ControlMessage::from_pdu`] rejects a message found in a PDU of another
//! type, so a router that dispatches on the header can trust the payload
//! to match.
//!
//! The link-setup messages (attach and router hello) are defined in
//! [`link`](crate::link) and re-exported here.
//!
//! # Encoding
//!
//! Integers are big-endian; metadata and certificates are their own
//! canonical encodings (self-delimiting).
//!
//! ```text
//! u8 tag, then                                           PDU type
//! 0x01 AttachChallenge [32] router, [32] nonce          Control
//! 0x02 AttachProof     metadata, RtCert, [64] signature Control
//! 0x03 AttachAccepted  [32] endpoint                    Control
//! 0x04 AttachRejected  u8 length, UTF-8 reason          Control
//!                      (at most MAX_REASON_LEN bytes)
//! 0x05 RouterHello     metadata (a router),             Control
//!                      u8 0 | 1 then DomainCert,
//!                      u8 address count (at most MAX_HELLO_ADDRESSES),
//!                      each address: u8 4, [4] IPv4, u16 port
//!                                  | u8 6, [16] IPv6, u16 port
//! 0x10 Advertise       u16 count (at most MAX_ADVERTISE_ENTRIES),  Advertise
//!                      each: capsule metadata, AdCert
//! 0x11 Withdraw        u16 count (at most MAX_WITHDRAW_NAMES),     Withdraw
//!                      [32] each
//! 0x12 NakNoRoute      [32] unreachable name, u8 NakReason         NakNoRoute
//! 0x20 Subscribe       [32] capsule (= the PDU's dst)              Subscribe
//! 0x21 Unsubscribe     [32] capsule (= the PDU's dst)              Unsubscribe
//! ```
//!
//! A NAK travels from the router that gave up back to the source of the
//! PDU it could not route: the NAK PDU's `dst` is that source and its `seq`
//! echoes the undelivered PDU's `seq`.
//!
//! Subscription control PDUs join, refresh and leave a capsule's delivery
//! tree. They are addressed to the capsule and their `src` is the sender's
//! own name (a subscribing endpoint, or a router joining upstream); the
//! capsule in the payload must be the PDU's `dst`. A router never forwards
//! one: it records the link it came on as a member of the capsule's tree
//! (a lease the member refreshes), joins upstream itself, toward the
//! capsule, when it has no tree yet, and copies the capsule's
//! [`Publish`](crate::pdu::PduType::Publish) PDUs once per member link.

use bytes::{BufMut, Bytes, BytesMut};
use gdp_certs::MAX_METADATA_LEN;
use gdp_certs::cert::{ADCERT_LEN, AdCert};
use gdp_certs::codec::{Decode, DecodeError, Encode, Reader, put};
use gdp_certs::{Metadata, NAME_LEN, Name};

pub use crate::link::{
    ATTACH_NONCE_LEN, AttachChallenge, AttachError, AttachProof, MAX_HELLO_ADDRESSES, RouterHello,
    VerifiedAttach,
};
use crate::pdu::{MAX_PAYLOAD_LEN, Pdu, PduError, PduHeader, PduType};

/// Longest `AttachRejected` reason, in bytes.
pub const MAX_REASON_LEN: usize = 255;
/// Most entries in one `Advertise`.
pub const MAX_ADVERTISE_ENTRIES: usize = 256;
/// Most names in one `Withdraw`.
pub const MAX_WITHDRAW_NAMES: usize = 4096;

/// Largest encoding of one advertise entry.
const MAX_ADVERTISE_ENTRY_LEN: usize = MAX_METADATA_LEN + ADCERT_LEN;
const _: () = assert!(1 + 2 + MAX_ADVERTISE_ENTRIES * MAX_ADVERTISE_ENTRY_LEN <= MAX_PAYLOAD_LEN);
const _: () = assert!(1 + 2 + MAX_WITHDRAW_NAMES * NAME_LEN <= MAX_PAYLOAD_LEN);

const TAG_ATTACH_CHALLENGE: u8 = 0x01;
const TAG_ATTACH_PROOF: u8 = 0x02;
const TAG_ATTACH_ACCEPTED: u8 = 0x03;
const TAG_ATTACH_REJECTED: u8 = 0x04;
const TAG_ROUTER_HELLO: u8 = 0x05;
const TAG_ADVERTISE: u8 = 0x10;
const TAG_WITHDRAW: u8 = 0x11;
const TAG_NAK_NO_ROUTE: u8 = 0x12;
const TAG_SUBSCRIBE: u8 = 0x20;
const TAG_UNSUBSCRIBE: u8 = 0x21;

/// `s` cut to at most `max` bytes at a character boundary.
pub(crate) fn bounded_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One advertised capsule: its metadata and the owner's certificate letting
/// the advertising server serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertiseEntry {
    /// The capsule's metadata; hashes to [`AdCert::capsule`].
    pub capsule_md: Metadata,
    /// The owner's certificate for the advertising server.
    pub adcert: AdCert,
}

impl Encode for AdvertiseEntry {
    fn encode(&self, buf: &mut BytesMut) {
        self.capsule_md.encode(buf);
        self.adcert.encode(buf);
    }
    fn encoded_len(&self) -> usize {
        self.capsule_md.encoded_len() + self.adcert.encoded_len()
    }
}

impl Decode for AdvertiseEntry {
    const WHAT: &'static str = "advertise entry";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(AdvertiseEntry {
            capsule_md: Metadata::decode_from(r)?,
            adcert: AdCert::decode_from(r)?,
        })
    }
}

/// Why a router could not route a PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NakReason {
    /// No valid route exists for the name.
    NoRoute,
    /// The PDU's TTL ran out.
    TtlExpired,
    /// The directory could not be asked.
    DirectoryUnavailable,
    /// Policy forbids routing to the name.
    PolicyDenied,
    /// The name is no longer where the route that brought the PDU here
    /// leads (it left this router, or the route leads back to the router
    /// that sent it): each router that passes this NAK back drops its
    /// cached route for the name through the link it came by, so the next
    /// PDU is looked up afresh.
    Moved,
}

impl NakReason {
    /// The wire code.
    pub const fn code(self) -> u8 {
        match self {
            NakReason::NoRoute => 1,
            NakReason::TtlExpired => 2,
            NakReason::DirectoryUnavailable => 3,
            NakReason::PolicyDenied => 4,
            NakReason::Moved => 5,
        }
    }

    /// The reason with wire code `code`.
    pub fn from_code(code: u8) -> Result<Self, DecodeError> {
        Ok(match code {
            1 => NakReason::NoRoute,
            2 => NakReason::TtlExpired,
            3 => NakReason::DirectoryUnavailable,
            4 => NakReason::PolicyDenied,
            5 => NakReason::Moved,
            v => {
                return Err(DecodeError::UnknownValue {
                    what: "nak reason",
                    value: v.into(),
                });
            }
        })
    }
}

/// A control message: the payload of Control, Advertise, Withdraw,
/// NakNoRoute, Subscribe and Unsubscribe PDUs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlMessage {
    /// Router -> endpoint: prove your name.
    AttachChallenge(AttachChallenge),
    /// Endpoint -> router: the proof.
    AttachProof(AttachProof),
    /// Router -> endpoint: attached as `endpoint`.
    AttachAccepted {
        /// The endpoint's name.
        endpoint: Name,
    },
    /// Router -> endpoint: not attached, and why. Encoded cut to
    /// [`MAX_REASON_LEN`] bytes.
    AttachRejected {
        /// A human-readable reason.
        reason: String,
    },
    /// Router -> router: who I am.
    RouterHello(RouterHello),
    /// Server -> router: capsules it serves (at most
    /// [`MAX_ADVERTISE_ENTRIES`]).
    Advertise {
        /// The capsules.
        entries: Vec<AdvertiseEntry>,
    },
    /// Endpoint -> router: names it no longer serves (at most
    /// [`MAX_WITHDRAW_NAMES`]).
    Withdraw {
        /// The names.
        names: Vec<Name>,
    },
    /// Router -> source: no route to `dst`.
    NakNoRoute {
        /// The name that could not be reached.
        dst: Name,
        /// Why.
        reason: NakReason,
    },
    /// Join (or refresh the lease in) `capsule`'s delivery tree: send its
    /// new records down this link.
    Subscribe {
        /// The capsule.
        capsule: Name,
    },
    /// Leave `capsule`'s delivery tree.
    Unsubscribe {
        /// The capsule.
        capsule: Name,
    },
}

impl ControlMessage {
    /// An `AttachRejected` with `reason` cut to [`MAX_REASON_LEN`] bytes.
    pub fn rejected(reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        let len = bounded_str(&reason, MAX_REASON_LEN).len();
        reason.truncate(len);
        ControlMessage::AttachRejected { reason }
    }

    /// Splits `entries` into `Advertise` messages of at most
    /// [`MAX_ADVERTISE_ENTRIES`] each.
    pub fn advertise_batches(entries: Vec<AdvertiseEntry>) -> Vec<ControlMessage> {
        let mut out = Vec::with_capacity(entries.len().div_ceil(MAX_ADVERTISE_ENTRIES));
        let mut it = entries.into_iter().peekable();
        while it.peek().is_some() {
            let entries: Vec<_> = it.by_ref().take(MAX_ADVERTISE_ENTRIES).collect();
            out.push(ControlMessage::Advertise { entries });
        }
        out
    }

    /// Splits `names` into `Withdraw` messages of at most
    /// [`MAX_WITHDRAW_NAMES`] each.
    pub fn withdraw_batches(names: &[Name]) -> Vec<ControlMessage> {
        names
            .chunks(MAX_WITHDRAW_NAMES)
            .map(|c| ControlMessage::Withdraw { names: c.to_vec() })
            .collect()
    }

    fn tag(&self) -> u8 {
        match self {
            ControlMessage::AttachChallenge(_) => TAG_ATTACH_CHALLENGE,
            ControlMessage::AttachProof(_) => TAG_ATTACH_PROOF,
            ControlMessage::AttachAccepted { .. } => TAG_ATTACH_ACCEPTED,
            ControlMessage::AttachRejected { .. } => TAG_ATTACH_REJECTED,
            ControlMessage::RouterHello(_) => TAG_ROUTER_HELLO,
            ControlMessage::Advertise { .. } => TAG_ADVERTISE,
            ControlMessage::Withdraw { .. } => TAG_WITHDRAW,
            ControlMessage::NakNoRoute { .. } => TAG_NAK_NO_ROUTE,
            ControlMessage::Subscribe { .. } => TAG_SUBSCRIBE,
            ControlMessage::Unsubscribe { .. } => TAG_UNSUBSCRIBE,
        }
    }

    /// The PDU type this message travels in.
    pub fn pdu_type(&self) -> PduType {
        match self {
            ControlMessage::AttachChallenge(_)
            | ControlMessage::AttachProof(_)
            | ControlMessage::AttachAccepted { .. }
            | ControlMessage::AttachRejected { .. }
            | ControlMessage::RouterHello(_) => PduType::Control,
            ControlMessage::Advertise { .. } => PduType::Advertise,
            ControlMessage::Withdraw { .. } => PduType::Withdraw,
            ControlMessage::NakNoRoute { .. } => PduType::NakNoRoute,
            ControlMessage::Subscribe { .. } => PduType::Subscribe,
            ControlMessage::Unsubscribe { .. } => PduType::Unsubscribe,
        }
    }

    /// Checks the limits the decoder enforces, so the message will decode.
    pub fn check_limits(&self) -> Result<(), PduError> {
        match self {
            ControlMessage::Advertise { entries } => {
                PduError::check("advertise entries", entries.len(), MAX_ADVERTISE_ENTRIES)
            }
            ControlMessage::Withdraw { names } => {
                PduError::check("withdraw names", names.len(), MAX_WITHDRAW_NAMES)
            }
            _ => Ok(()),
        }
    }

    /// This message in a PDU of its type from `src` to `dst`.
    pub fn to_pdu(&self, dst: Name, src: Name, seq: u64) -> Result<Pdu, PduError> {
        self.check_limits()?;
        Pdu::new(
            PduHeader::new(self.pdu_type(), dst, src, seq),
            self.to_bytes(),
        )
    }

    /// Decodes the control message in `pdu`, checking that it belongs in a
    /// PDU of that type.
    /// A `Subscribe` or `Unsubscribe` whose capsule is not the PDU's `dst`
    /// is rejected.
    pub fn from_pdu(pdu: &Pdu) -> Result<Self, DecodeError> {
        let msg = Self::from_payload(pdu.header.ptype, pdu.payload.clone())?;
        msg.check_addressed(&pdu.header)?;
        Ok(msg)
    }

    /// Checks what the message says against the header of its PDU: the
    /// capsule of a `Subscribe` or `Unsubscribe` must be the PDU's `dst`.
    /// ([`from_pdu`](Self::from_pdu) does this; a caller of
    /// [`from_payload`](Self::from_payload) calls it itself.)
    pub fn check_addressed(&self, header: &PduHeader) -> Result<(), DecodeError> {
        match self {
            ControlMessage::Subscribe { capsule } | ControlMessage::Unsubscribe { capsule }
                if *capsule != header.dst =>
            {
                Err(DecodeError::Invalid {
                    what: "subscription for another capsule than the pdu's destination",
                })
            }
            _ => Ok(()),
        }
    }

    /// Decodes the control message `payload` of a PDU of type `ptype`.
    pub fn from_payload(ptype: PduType, payload: Bytes) -> Result<Self, DecodeError> {
        if !ptype.is_control() {
            return Err(DecodeError::Invalid {
                what: "control message in a non-control pdu",
            });
        }
        let msg = Self::decode(payload)?;
        if msg.pdu_type() != ptype {
            return Err(DecodeError::Invalid {
                what: "control message in a pdu of another type",
            });
        }
        Ok(msg)
    }
}

impl Encode for ControlMessage {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(self.tag());
        match self {
            ControlMessage::AttachChallenge(c) => c.encode(buf),
            ControlMessage::AttachProof(p) => p.encode(buf),
            ControlMessage::AttachAccepted { endpoint } => endpoint.encode(buf),
            ControlMessage::AttachRejected { reason } => {
                put::bytes_u8(buf, bounded_str(reason, MAX_REASON_LEN).as_bytes());
            }
            ControlMessage::RouterHello(h) => h.encode(buf),
            ControlMessage::Advertise { entries } => put::vec_u16(buf, entries),
            ControlMessage::Withdraw { names } => put::vec_u16(buf, names),
            ControlMessage::NakNoRoute { dst, reason } => {
                dst.encode(buf);
                buf.put_u8(reason.code());
            }
            ControlMessage::Subscribe { capsule } | ControlMessage::Unsubscribe { capsule } => {
                capsule.encode(buf);
            }
        }
    }

    fn encoded_len(&self) -> usize {
        1 + match self {
            ControlMessage::AttachChallenge(c) => c.encoded_len(),
            ControlMessage::AttachProof(p) => p.encoded_len(),
            ControlMessage::AttachAccepted { .. } => NAME_LEN,
            ControlMessage::AttachRejected { reason } => {
                1 + bounded_str(reason, MAX_REASON_LEN).len()
            }
            ControlMessage::RouterHello(h) => h.encoded_len(),
            ControlMessage::Advertise { entries } => put::vec_len(2, entries),
            ControlMessage::Withdraw { names } => 2 + NAME_LEN * names.len(),
            ControlMessage::NakNoRoute { .. } => NAME_LEN + 1,
            ControlMessage::Subscribe { .. } | ControlMessage::Unsubscribe { .. } => NAME_LEN,
        }
    }
}

impl Decode for ControlMessage {
    const WHAT: &'static str = "control message";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match r.u8("control message type")? {
            TAG_ATTACH_CHALLENGE => {
                ControlMessage::AttachChallenge(AttachChallenge::decode_from(r)?)
            }
            TAG_ATTACH_PROOF => ControlMessage::AttachProof(AttachProof::decode_from(r)?),
            TAG_ATTACH_ACCEPTED => ControlMessage::AttachAccepted {
                endpoint: Name::decode_from(r)?,
            },
            TAG_ATTACH_REJECTED => ControlMessage::AttachRejected {
                reason: r.string_u8(MAX_REASON_LEN, "attach rejected reason")?,
            },
            TAG_ROUTER_HELLO => ControlMessage::RouterHello(RouterHello::decode_from(r)?),
            TAG_ADVERTISE => ControlMessage::Advertise {
                entries: r.vec_u16(MAX_ADVERTISE_ENTRIES)?,
            },
            TAG_WITHDRAW => ControlMessage::Withdraw {
                names: r.vec_u16(MAX_WITHDRAW_NAMES)?,
            },
            TAG_NAK_NO_ROUTE => ControlMessage::NakNoRoute {
                dst: Name::decode_from(r)?,
                reason: NakReason::from_code(r.u8("nak reason")?)?,
            },
            TAG_SUBSCRIBE => ControlMessage::Subscribe {
                capsule: Name::decode_from(r)?,
            },
            TAG_UNSUBSCRIBE => ControlMessage::Unsubscribe {
                capsule: Name::decode_from(r)?,
            },
            v => {
                return Err(DecodeError::UnknownValue {
                    what: "control message type",
                    value: v.into(),
                });
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    pub(crate) use crate::link::tests::{NOW, arb_address, identity, validity};
    use crate::pdu::tests::arb_name;
    use gdp_certs::cert::{DomainCert, Validity};
    use gdp_certs::{Kind, SecretKey, Timestamp};
    use proptest::prelude::*;

    /// A capsule owned and written by the key from `seed`, with hosting list.
    pub(crate) fn capsule_md(seed: u8, label: &str, hosting: Vec<Name>) -> Metadata {
        let k = SecretKey::from_seed(&[seed; 32]).public();
        Metadata::capsule(k, vec![k], label, Timestamp(seed.into()), hosting)
            .expect("fixture metadata is within limits")
            .with_nonce([seed; 16])
    }

    /// Metadata of any kind; keys come from a few fixed seeds (deriving a key
    /// is the slow part).
    pub(crate) fn arb_metadata() -> impl Strategy<Value = Metadata> {
        prop_oneof![
            (
                0u8..4,
                "[a-z ]{0,20}",
                proptest::collection::vec(arb_name(), 0..3)
            )
                .prop_map(|(s, l, h)| capsule_md(s, &l, h)),
            (
                0u8..4,
                prop::sample::select(vec![Kind::Router, Kind::Server, Kind::Client]),
                "[a-z]{0,10}"
            )
                .prop_map(|(s, kind, l)| {
                    Metadata::principal(kind, SecretKey::from_seed(&[s; 32]).public(), l, NOW)
                        .expect("within limits")
                }),
        ]
    }

    pub(crate) fn arb_adcert() -> impl Strategy<Value = AdCert> {
        (0u8..4, arb_name(), arb_name(), any::<u64>(), any::<u64>()).prop_map(
            |(s, c, srv, a, b)| {
                AdCert::issue(
                    &SecretKey::from_seed(&[s; 32]),
                    c,
                    srv,
                    Validity::new(Timestamp(a), Timestamp(b)),
                )
            },
        )
    }

    fn arb_control() -> impl Strategy<Value = ControlMessage> {
        let router = identity(20, Kind::Router);
        let domain = SecretKey::from_seed(&[21; 32]);
        prop_oneof![
            (arb_name(), any::<[u8; 32]>()).prop_map(|(router, nonce)| {
                ControlMessage::AttachChallenge(AttachChallenge { router, nonce })
            }),
            (0u8..2, arb_name(), any::<[u8; 32]>()).prop_map(|(s, router, nonce)| {
                let kind = if s == 0 { Kind::Server } else { Kind::Client };
                ControlMessage::AttachProof(AttachProof::create(
                    &identity(s, kind),
                    &AttachChallenge { router, nonce },
                    validity(),
                ))
            }),
            arb_name().prop_map(|endpoint| ControlMessage::AttachAccepted { endpoint }),
            ".{0,80}".prop_map(ControlMessage::rejected),
            (
                any::<bool>(),
                proptest::collection::vec(arb_address(), 0..=MAX_HELLO_ADDRESSES)
            )
                .prop_map(move |(dc, addrs)| {
                    let cert = dc.then(|| DomainCert::issue(&domain, router.name(), validity()));
                    ControlMessage::RouterHello(
                        RouterHello::new(router.metadata().clone(), cert, addrs)
                            .expect("within limits"),
                    )
                }),
            proptest::collection::vec(
                (arb_metadata(), arb_adcert())
                    .prop_map(|(capsule_md, adcert)| { AdvertiseEntry { capsule_md, adcert } }),
                0..4
            )
            .prop_map(|entries| ControlMessage::Advertise { entries }),
            proptest::collection::vec(arb_name(), 0..40)
                .prop_map(|names| ControlMessage::Withdraw { names }),
            (arb_name(), 1u8..=5).prop_map(|(dst, c)| ControlMessage::NakNoRoute {
                dst,
                reason: NakReason::from_code(c).expect("known code"),
            }),
            arb_name().prop_map(|capsule| ControlMessage::Subscribe { capsule }),
            arb_name().prop_map(|capsule| ControlMessage::Unsubscribe { capsule }),
        ]
    }

    proptest! {
        #[test]
        fn control_messages_round_trip(msg in arb_control(), src in arb_name(), dst in arb_name()) {
            let bytes = msg.to_bytes();
            prop_assert_eq!(bytes.len(), msg.encoded_len());
            prop_assert_eq!(ControlMessage::decode(bytes), Ok(msg.clone()));
            // A subscription is addressed to its capsule.
            let dst = match &msg {
                ControlMessage::Subscribe { capsule } | ControlMessage::Unsubscribe { capsule } => {
                    *capsule
                }
                _ => dst,
            };
            let pdu = msg.to_pdu(dst, src, 5).expect("within limits");
            prop_assert_eq!(pdu.header.ptype, msg.pdu_type());
            prop_assert_eq!(ControlMessage::from_pdu(&pdu), Ok(msg));
        }

        #[test]
        fn control_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = ControlMessage::decode(bytes);
        }

        #[test]
        fn control_decode_of_mutated_messages_never_panics(
            msg in arb_control(),
            flips in proptest::collection::vec(any::<prop::sample::Index>(), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut b = msg.to_bytes().to_vec();
            for f in &flips {
                let i = f.index(b.len() * 8);
                b[i / 8] ^= 1 << (i % 8);
            }
            let _ = ControlMessage::decode(b.clone());
            b.truncate(cut.index(b.len() + 1));
            let _ = ControlMessage::decode(b);
        }
    }

    #[test]
    fn unknown_tag_and_reason_are_rejected() {
        assert_eq!(
            ControlMessage::decode(Bytes::from_static(&[0x7f])),
            Err(DecodeError::UnknownValue {
                what: "control message type",
                value: 0x7f
            })
        );
        let mut b = ControlMessage::NakNoRoute {
            dst: Name::ZERO,
            reason: NakReason::NoRoute,
        }
        .to_bytes()
        .to_vec();
        *b.last_mut().expect("not empty") = 9;
        assert_eq!(
            ControlMessage::decode(b),
            Err(DecodeError::UnknownValue {
                what: "nak reason",
                value: 9
            })
        );
    }

    #[test]
    fn truncated_and_trailing_are_rejected() {
        let msg = ControlMessage::Subscribe {
            capsule: Name::from_bytes([9; 32]),
        };
        let b = msg.to_bytes();
        assert!(matches!(
            ControlMessage::decode(b.slice(..b.len() - 1)),
            Err(DecodeError::Truncated { .. })
        ));
        let mut long = b.to_vec();
        long.push(0);
        assert_eq!(
            ControlMessage::decode(long),
            Err(DecodeError::TrailingBytes {
                what: "control message",
                count: 1
            })
        );
    }

    #[test]
    fn counts_over_limits_are_rejected() {
        let mut b = vec![TAG_WITHDRAW];
        b.extend_from_slice(&(MAX_WITHDRAW_NAMES as u16 + 1).to_be_bytes());
        assert_eq!(
            ControlMessage::decode(b),
            Err(DecodeError::TooLong {
                what: "name",
                len: MAX_WITHDRAW_NAMES + 1,
                max: MAX_WITHDRAW_NAMES
            })
        );
        let names = vec![Name::ZERO; MAX_WITHDRAW_NAMES + 1];
        let msg = ControlMessage::Withdraw {
            names: names.clone(),
        };
        assert_eq!(
            msg.to_pdu(Name::ZERO, Name::ZERO, 0),
            Err(PduError::OverLimit {
                what: "withdraw names",
                len: MAX_WITHDRAW_NAMES + 1,
                max: MAX_WITHDRAW_NAMES
            })
        );
        let batches = ControlMessage::withdraw_batches(&names);
        assert_eq!(batches.len(), 2);
        assert!(batches.iter().all(|m| m.check_limits().is_ok()));
        let addrs = vec!["127.0.0.1:1".parse().expect("valid"); MAX_HELLO_ADDRESSES + 1];
        assert!(matches!(
            RouterHello::new(identity(1, Kind::Router).metadata().clone(), None, addrs),
            Err(PduError::OverLimit { .. })
        ));
    }

    #[test]
    fn message_in_the_wrong_pdu_type_is_rejected() {
        let msg = ControlMessage::Unsubscribe {
            capsule: Name::ZERO,
        };
        let mut pdu = msg.to_pdu(Name::ZERO, Name::ZERO, 1).expect("small");
        pdu.header.ptype = PduType::Subscribe;
        assert_eq!(
            ControlMessage::from_pdu(&pdu),
            Err(DecodeError::Invalid {
                what: "control message in a pdu of another type"
            })
        );
        pdu.header.ptype = PduType::Data;
        assert_eq!(
            ControlMessage::from_pdu(&pdu),
            Err(DecodeError::Invalid {
                what: "control message in a non-control pdu"
            })
        );
    }

    #[test]
    fn subscription_for_another_capsule_is_rejected() {
        let capsule = Name::from_bytes([7; 32]);
        let me = Name::from_bytes([8; 32]);
        for msg in [
            ControlMessage::Subscribe { capsule },
            ControlMessage::Unsubscribe { capsule },
        ] {
            let pdu = msg.to_pdu(capsule, me, 1).expect("small");
            assert_eq!(ControlMessage::from_pdu(&pdu), Ok(msg.clone()));
            let elsewhere = msg.to_pdu(me, me, 1).expect("small");
            assert!(matches!(
                ControlMessage::from_pdu(&elsewhere),
                Err(DecodeError::Invalid { .. })
            ));
        }
    }

    #[test]
    fn long_reason_is_cut_at_a_char_boundary() {
        let msg = ControlMessage::rejected("é".repeat(200));
        let ControlMessage::AttachRejected { reason } = &msg else {
            panic!("constructor builds AttachRejected");
        };
        assert_eq!(reason.len(), 254);
        assert_eq!(ControlMessage::decode(msg.to_bytes()), Ok(msg.clone()));
        // A hand-built over-long reason is cut on the wire the same way.
        let raw = ControlMessage::AttachRejected {
            reason: "é".repeat(200),
        };
        assert_eq!(raw.encoded_len(), raw.to_bytes().len());
        assert_eq!(ControlMessage::decode(raw.to_bytes()), Ok(msg));
    }
}
