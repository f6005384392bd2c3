//! Link setup: what the two ends of a new link say first.
//!
//! # Attach (endpoint to router)
//!
//! An endpoint (server or client) opens a link to its router, which sends an
//! [`AttachChallenge`] (its name and a fresh random nonce). The endpoint
//! answers with an [`AttachProof`]: its metadata (which hashes to its name),
//! an [`RtCert`] naming the router, and a signature
//! ([`SigContext::Attach`]) over `nonce || router || endpoint`. The router
//! checks it with [`AttachProof::verify`] and answers `AttachAccepted` or
//! `AttachRejected`. From then on the router accepts PDUs from that link
//! whose source is the endpoint's name (or a name it advertised).
//!
//! # Hello (router to router)
//!
//! On a router-to-router link each side sends a [`RouterHello`]: its
//! metadata, an optional trust-domain certificate and the addresses where it
//! accepts links. The link's TLS key must be the key in the metadata.
//!
//! All of these travel as [`ControlMessage`](crate::control::ControlMessage)s
//! in Control PDUs, which routers never forward.
//!
//! # Encoding
//!
//! ```text
//! AttachChallenge  [32] router, [32] nonce
//! AttachProof      endpoint metadata, RtCert, [64] signature
//! RouterHello      router metadata,
//!                  u8 0 | 1 then DomainCert,
//!                  u8 address count (at most MAX_HELLO_ADDRESSES),
//!                  each address: u8 4, [4] IPv4, u16 port
//!                              | u8 6, [16] IPv6, u16 port
//! ```
//!
//! Addresses are canonical, as in route records: an IPv4 address is always
//! written as IPv4 (never IPv4-mapped IPv6), and IPv6 flow labels and scope
//! ids are not carried.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use bytes::{BufMut, BytesMut};
use gdp_certs::cert::{CertError, DomainCert, RtCert, Validity, Verified};
use gdp_certs::codec::{Decode, DecodeError, Encode, Reader, put};
use gdp_certs::{Identity, Kind, Metadata, NAME_LEN, Name, SigContext, Signature, Timestamp};

use crate::pdu::PduError;

/// Length of an attach challenge nonce.
pub const ATTACH_NONCE_LEN: usize = 32;
/// Most addresses in a [`RouterHello`].
pub const MAX_HELLO_ADDRESSES: usize = 8;

/// A router's challenge to an endpoint that opened a link to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachChallenge {
    /// The router's name.
    pub router: Name,
    /// A fresh random nonce, never reused.
    pub nonce: [u8; ATTACH_NONCE_LEN],
}

impl AttachChallenge {
    /// The bytes an endpoint named `endpoint` signs to answer this challenge:
    /// `nonce || router || endpoint`.
    pub fn signed_body(&self, endpoint: &Name) -> [u8; ATTACH_NONCE_LEN + 2 * NAME_LEN] {
        let mut b = [0u8; ATTACH_NONCE_LEN + 2 * NAME_LEN];
        b[..ATTACH_NONCE_LEN].copy_from_slice(&self.nonce);
        b[ATTACH_NONCE_LEN..ATTACH_NONCE_LEN + NAME_LEN].copy_from_slice(self.router.as_bytes());
        b[ATTACH_NONCE_LEN + NAME_LEN..].copy_from_slice(endpoint.as_bytes());
        b
    }
}

impl Encode for AttachChallenge {
    fn encode(&self, buf: &mut BytesMut) {
        self.router.encode(buf);
        buf.put_slice(&self.nonce);
    }
    fn encoded_len(&self) -> usize {
        NAME_LEN + ATTACH_NONCE_LEN
    }
}

impl Decode for AttachChallenge {
    const WHAT: &'static str = "attach challenge";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(AttachChallenge {
            router: Name::decode_from(r)?,
            nonce: r.array("attach nonce")?,
        })
    }
}

/// Why an [`AttachProof`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// Only servers and clients attach as endpoints.
    #[error("a {kind} cannot attach as an endpoint")]
    NotAnEndpoint {
        /// The kind in the metadata.
        kind: Kind,
    },
    /// The signature is not by the metadata's key over this challenge.
    #[error("attach signature does not verify for this challenge and key")]
    BadSignature,
    /// The router certificate does not check out.
    #[error("attach router certificate: {0}")]
    Cert(#[from] CertError),
}

/// An endpoint's answer to an [`AttachChallenge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachProof {
    /// The endpoint's metadata; its name is the hash.
    pub metadata: Metadata,
    /// The endpoint's certificate naming the challenging router.
    pub rtcert: RtCert,
    /// Signature by the metadata's key over the challenge
    /// ([`AttachChallenge::signed_body`]).
    pub signature: Signature,
}

/// A checked [`AttachProof`]: the endpoint proved its name to the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAttach {
    endpoint: Name,
    metadata: Metadata,
    rtcert: Verified<RtCert>,
}

impl VerifiedAttach {
    /// The endpoint's name.
    pub fn endpoint(&self) -> Name {
        self.endpoint
    }
    /// The endpoint's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }
    /// The endpoint's checked certificate naming the router.
    pub fn rtcert(&self) -> &Verified<RtCert> {
        &self.rtcert
    }
    /// The parts: name, metadata, certificate.
    pub fn into_parts(self) -> (Name, Metadata, Verified<RtCert>) {
        (self.endpoint, self.metadata, self.rtcert)
    }
}

impl AttachProof {
    /// The proof that endpoint `identity` answers `challenge` with, issuing
    /// an [`RtCert`] for the challenging router valid for `validity`.
    pub fn create(
        identity: &Identity,
        challenge: &AttachChallenge,
        validity: Validity,
    ) -> AttachProof {
        let rtcert = RtCert::issue_by(identity, challenge.router, validity);
        let signature = identity
            .secret_key()
            .sign(SigContext::Attach, &challenge.signed_body(&identity.name()));
        AttachProof {
            metadata: identity.metadata().clone(),
            rtcert,
            signature,
        }
    }

    /// Checks the proof against the challenge the router sent, at `now`:
    /// the metadata describes a server or client, the signature is by its
    /// key over this challenge and the endpoint's name, and the RtCert is
    /// the endpoint's, names the challenging router and is valid at `now`.
    pub fn verify(
        &self,
        challenge: &AttachChallenge,
        now: Timestamp,
    ) -> Result<VerifiedAttach, AttachError> {
        let kind = self.metadata.kind();
        if !kind.is_endpoint() {
            return Err(AttachError::NotAnEndpoint { kind });
        }
        let endpoint = self.metadata.name();
        self.metadata
            .key()
            .verify(
                SigContext::Attach,
                &challenge.signed_body(&endpoint),
                &self.signature,
            )
            .map_err(|_| AttachError::BadSignature)?;
        let rtcert = self.rtcert.verify(&self.metadata, &challenge.router, now)?;
        Ok(VerifiedAttach {
            endpoint,
            metadata: self.metadata.clone(),
            rtcert,
        })
    }
}

impl Encode for AttachProof {
    fn encode(&self, buf: &mut BytesMut) {
        self.metadata.encode(buf);
        self.rtcert.encode(buf);
        self.signature.encode(buf);
    }
    fn encoded_len(&self) -> usize {
        self.metadata.encoded_len() + self.rtcert.encoded_len() + self.signature.encoded_len()
    }
}

impl Decode for AttachProof {
    const WHAT: &'static str = "attach proof";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(AttachProof {
            metadata: Metadata::decode_from(r)?,
            rtcert: RtCert::decode_from(r)?,
            signature: Signature::decode_from(r)?,
        })
    }
}

/// A router introducing itself on a router-to-router link.
///
/// The link's TLS key must be the key in `metadata`; the domain certificate,
/// if any, is checked against the receiver's peering policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterHello {
    metadata: Metadata,
    domain_cert: Option<DomainCert>,
    addresses: Vec<SocketAddr>,
}

impl RouterHello {
    /// A hello for the router described by `metadata`, reachable at
    /// `addresses` (at most [`MAX_HELLO_ADDRESSES`]). Addresses are stored
    /// in canonical form: IPv4-mapped IPv6 becomes IPv4, and IPv6 flow
    /// labels and scope ids are dropped.
    pub fn new(
        metadata: Metadata,
        domain_cert: Option<DomainCert>,
        addresses: Vec<SocketAddr>,
    ) -> Result<Self, PduError> {
        PduError::check(
            "router hello addresses",
            addresses.len(),
            MAX_HELLO_ADDRESSES,
        )?;
        Ok(RouterHello {
            metadata,
            domain_cert,
            addresses: addresses.into_iter().map(canonical_address).collect(),
        })
    }
    /// The router's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }
    /// The router's name.
    pub fn name(&self) -> Name {
        self.metadata.name()
    }
    /// The router's trust-domain certificate, unchecked.
    pub fn domain_cert(&self) -> Option<&DomainCert> {
        self.domain_cert.as_ref()
    }
    /// Where the router accepts links.
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }
}

fn canonical_address(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(_) => a,
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), 0, 0)),
        },
    }
}

fn address_len(a: &SocketAddr) -> usize {
    match a {
        SocketAddr::V4(_) => 1 + 4 + 2,
        SocketAddr::V6(_) => 1 + 16 + 2,
    }
}

fn encode_address(a: &SocketAddr, buf: &mut BytesMut) {
    match a {
        SocketAddr::V4(v4) => {
            buf.put_u8(4);
            buf.put_slice(&v4.ip().octets());
        }
        SocketAddr::V6(v6) => {
            buf.put_u8(6);
            buf.put_slice(&v6.ip().octets());
        }
    }
    buf.put_u16(a.port());
}

fn decode_address(r: &mut Reader) -> Result<SocketAddr, DecodeError> {
    let ip = match r.u8("address family")? {
        4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>("ipv4 address")?)),
        6 => {
            let ip = Ipv6Addr::from(r.array::<16>("ipv6 address")?);
            if ip.to_ipv4_mapped().is_some() {
                return Err(DecodeError::Invalid {
                    what: "address (ipv4-mapped ipv6 is written as ipv4)",
                });
            }
            IpAddr::V6(ip)
        }
        v => {
            return Err(DecodeError::UnknownValue {
                what: "address family",
                value: v.into(),
            });
        }
    };
    Ok(SocketAddr::new(ip, r.u16("port")?))
}

impl Encode for RouterHello {
    fn encode(&self, buf: &mut BytesMut) {
        self.metadata.encode(buf);
        match &self.domain_cert {
            Some(c) => {
                put::bool(buf, true);
                c.encode(buf);
            }
            None => put::bool(buf, false),
        }
        buf.put_u8(self.addresses.len() as u8);
        for a in &self.addresses {
            encode_address(a, buf);
        }
    }
    fn encoded_len(&self) -> usize {
        self.metadata.encoded_len()
            + 1
            + self.domain_cert.as_ref().map_or(0, Encode::encoded_len)
            + 1
            + self.addresses.iter().map(address_len).sum::<usize>()
    }
}

impl Decode for RouterHello {
    const WHAT: &'static str = "router hello";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        let metadata = Metadata::decode_from(r)?;
        if metadata.kind() != Kind::Router {
            return Err(DecodeError::Invalid {
                what: "router hello from a non-router",
            });
        }
        let domain_cert = if r.bool("domain cert present")? {
            Some(DomainCert::decode_from(r)?)
        } else {
            None
        };
        let n = usize::from(r.u8("address count")?);
        if n > MAX_HELLO_ADDRESSES {
            return Err(DecodeError::TooLong {
                what: "address count",
                len: n,
                max: MAX_HELLO_ADDRESSES,
            });
        }
        let mut addresses = Vec::with_capacity(n);
        for _ in 0..n {
            addresses.push(decode_address(r)?);
        }
        Ok(RouterHello {
            metadata,
            domain_cert,
            addresses,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use gdp_certs::SecretKey;
    use proptest::prelude::*;

    pub(crate) const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

    pub(crate) fn validity() -> Validity {
        Validity::new(
            Timestamp::from_secs(1_799_990_000),
            Timestamp::from_secs(1_800_010_000),
        )
    }

    pub(crate) fn identity(seed: u8, kind: Kind) -> Identity {
        Identity::from_key(
            SecretKey::from_seed(&[seed; 32]),
            kind,
            "test",
            Timestamp::from_secs(1_700_000_000),
        )
        .expect("fixture metadata is within limits")
    }

    fn challenge(router: &Identity, nonce: u8) -> AttachChallenge {
        AttachChallenge {
            router: router.name(),
            nonce: [nonce; 32],
        }
    }

    pub(crate) fn arb_address() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, p)| SocketAddr::new(IpAddr::V4(ip.into()), p)),
            (any::<[u8; 16]>(), any::<u16>(), any::<u32>()).prop_map(|(ip, p, flow)| {
                SocketAddr::V6(SocketAddrV6::new(ip.into(), p, flow, 0))
            }),
        ]
    }

    proptest! {
        #[test]
        fn hello_round_trips(
            with_cert in any::<bool>(),
            addrs in proptest::collection::vec(arb_address(), 0..=MAX_HELLO_ADDRESSES),
        ) {
            let router = identity(20, Kind::Router);
            let cert = with_cert.then(|| {
                DomainCert::issue(&SecretKey::from_seed(&[21; 32]), router.name(), validity())
            });
            let h = RouterHello::new(router.metadata().clone(), cert, addrs).expect("within limits");
            let bytes = h.to_bytes();
            prop_assert_eq!(bytes.len(), h.encoded_len());
            prop_assert_eq!(RouterHello::decode(bytes), Ok(h));
        }

        #[test]
        fn link_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = AttachChallenge::decode(bytes.clone());
            let _ = AttachProof::decode(bytes.clone());
            let _ = RouterHello::decode(bytes);
        }
    }

    #[test]
    fn attach_proof_verifies() {
        let router = identity(1, Kind::Router);
        let server = identity(2, Kind::Server);
        let ch = challenge(&router, 7);
        let proof = AttachProof::create(&server, &ch, validity());
        let back = AttachProof::decode(proof.to_bytes()).expect("round trips");
        let v = back.verify(&ch, NOW).expect("verifies");
        assert_eq!(v.endpoint(), server.name());
        assert_eq!(v.rtcert().router(), router.name());
        assert_eq!(v.metadata(), server.metadata());
    }

    #[test]
    fn attach_proof_for_another_challenge_is_refused() {
        let router = identity(1, Kind::Router);
        let client = identity(3, Kind::Client);
        let proof = AttachProof::create(&client, &challenge(&router, 7), validity());
        assert_eq!(
            proof.verify(&challenge(&router, 8), NOW),
            Err(AttachError::BadSignature)
        );
        // Same nonce, another router: the signature covers the router too.
        let other = identity(4, Kind::Router);
        assert_eq!(
            proof.verify(&challenge(&other, 7), NOW),
            Err(AttachError::BadSignature)
        );
    }

    #[test]
    fn attach_proof_signed_by_another_key_is_refused() {
        let router = identity(1, Kind::Router);
        let server = identity(2, Kind::Server);
        let thief = identity(5, Kind::Server);
        let ch = challenge(&router, 7);
        let mut proof = AttachProof::create(&thief, &ch, validity());
        // Claim the server's name with the thief's signature.
        proof.metadata = server.metadata().clone();
        assert_eq!(proof.verify(&ch, NOW), Err(AttachError::BadSignature));
    }

    #[test]
    fn attach_proof_checks_the_rtcert() {
        let router = identity(1, Kind::Router);
        let other = identity(4, Kind::Router);
        let server = identity(2, Kind::Server);
        let ch = challenge(&router, 7);
        let mut proof = AttachProof::create(&server, &ch, validity());
        proof.rtcert = RtCert::issue_by(&server, other.name(), validity());
        assert_eq!(
            proof.verify(&ch, NOW),
            Err(AttachError::Cert(CertError::WrongRouter {
                expected: router.name(),
                found: other.name()
            }))
        );
        let late = Timestamp(validity().not_after.0 + 1);
        let proof = AttachProof::create(&server, &ch, validity());
        assert!(matches!(
            proof.verify(&ch, late),
            Err(AttachError::Cert(CertError::Expired { .. }))
        ));
    }

    #[test]
    fn routers_do_not_attach_as_endpoints() {
        let router = identity(1, Kind::Router);
        let other = identity(4, Kind::Router);
        let ch = challenge(&router, 7);
        let proof = AttachProof::create(&other, &ch, validity());
        assert_eq!(
            proof.verify(&ch, NOW),
            Err(AttachError::NotAnEndpoint { kind: Kind::Router })
        );
    }

    #[test]
    fn hello_addresses_are_canonical() {
        let md = identity(1, Kind::Router).metadata().clone();
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:4433".parse().expect("valid");
        let scoped = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 1, 7, 3));
        let h = RouterHello::new(md, None, vec![mapped, scoped]).expect("within limits");
        assert_eq!(
            h.addresses(),
            &[
                "10.0.0.1:4433".parse::<SocketAddr>().expect("valid"),
                "[::1]:1".parse::<SocketAddr>().expect("valid")
            ]
        );
        assert_eq!(RouterHello::decode(h.to_bytes()), Ok(h));
    }

    #[test]
    fn hello_limits_and_kind_are_enforced() {
        let router = identity(1, Kind::Router);
        let addrs = vec!["127.0.0.1:1".parse().expect("valid"); MAX_HELLO_ADDRESSES + 1];
        assert_eq!(
            RouterHello::new(router.metadata().clone(), None, addrs),
            Err(PduError::OverLimit {
                what: "router hello addresses",
                len: MAX_HELLO_ADDRESSES + 1,
                max: MAX_HELLO_ADDRESSES
            })
        );
        let client = identity(2, Kind::Client);
        let h = RouterHello::new(client.metadata().clone(), None, vec![]).expect("within limits");
        assert_eq!(
            RouterHello::decode(h.to_bytes()),
            Err(DecodeError::Invalid {
                what: "router hello from a non-router"
            })
        );
        let mut b = RouterHello::new(router.metadata().clone(), None, vec![])
            .expect("within limits")
            .to_bytes()
            .to_vec();
        let n = b.len();
        b[n - 1] = 1;
        b.extend_from_slice(&[5, 0, 0]);
        assert_eq!(
            RouterHello::decode(b),
            Err(DecodeError::UnknownValue {
                what: "address family",
                value: 5
            })
        );
    }
}
