//! Certificates: signed bindings between names.
//!
//! Five kinds of certificate tie the flat names of GDP together:
//!
//! | type | signer | says |
//! | --- | --- | --- |
//! | [`AdCert`] | capsule owner | server S may serve capsule C |
//! | [`RtCert`] | endpoint (server or client) | endpoint E attaches at router R |
//! | [`RouteRecord`] | router | name N is reached through router R at these addresses |
//! | [`DomainCert`] | trust-domain key | router R is a member of trust domain D |
//! | [`ReplicaSet`] | capsule owner | capsule C lives on servers S1..Sn (version v) |
//!
//! # Wire format
//!
//! Every certificate is one canonical binary structure:
//!
//! ```text
//! u8    version = 1
//! u8    type     (1 AdCert, 2 RtCert, 3 RouteRecord, 4 DomainCert, 5 ReplicaSet)
//! ...   body fields (see each type)
//! [64]  ed25519 signature over every byte before it
//! ```
//!
//! The signature is domain-separated with the matching
//! [`SigContext`], so a signature made for one type can
//! never be replayed as another. Decoding ([`Decode`])
//! checks structure only and accepts nothing but the canonical encoding, so
//! re-encoding a decoded certificate reproduces the signed bytes exactly.
//!
//! # Parse, then verify
//!
//! A decoded certificate is a plain value (`AdCert`, `RtCert`, ...) that
//! nobody has checked. Each type's `verify` takes the metadata it needs and the
//! caller's `now`, and returns a [`Verified`] wrapper that only this crate can
//! construct: code that holds a `Verified<AdCert>` knows its signature, names
//! and validity were checked. Verifiers never read the clock.
//!
//! ```
//! use gdp_certs::cert::{AdCert, Validity};
//! use gdp_certs::codec::{Decode, Encode};
//! use gdp_certs::{Identity, Kind, Metadata, SecretKey, Timestamp};
//!
//! let owner = SecretKey::generate();
//! let now = Timestamp::from_secs(1_800_000_000);
//! let capsule = Metadata::capsule(owner.public(), vec![owner.public()], "log", now, vec![])?;
//! let server = Identity::generate(Kind::Server, "store-1")?;
//!
//! let validity = Validity::new(now, Timestamp::from_secs(1_800_086_400));
//! let cert = AdCert::issue(&owner, capsule.name(), server.name(), validity);
//!
//! // On the wire and back, then checked against the capsule's metadata.
//! let received = AdCert::decode(cert.to_bytes())?;
//! let checked = received.verify(&capsule, now)?;
//! assert_eq!(checked.server(), server.name());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::ops::Deref;
use std::time::Duration;

use bytes::{BufMut, BytesMut};

use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::{Kind, Name, PublicKey, SecretKey, SigContext, Signature, Timestamp};

mod adcert;
mod address;
mod domain;
mod replicas;
mod route;
mod rtcert;

pub use adcert::{ADCERT_LEN, AdCert};
pub use domain::{DOMAIN_CERT_LEN, DomainCert};
pub use replicas::{MAX_REPLICA_SET_LEN, MAX_REPLICAS, ReplicaSet};
pub use route::{MAX_ROUTE_ADDRESSES, MAX_ROUTE_RECORD_LEN, RouteRecord, RouteTarget};
pub use rtcert::{RTCERT_LEN, RtCert};

/// The certificate format version this code reads and writes.
pub const CERT_VERSION: u8 = 1;

/// Encoded length of a [`Validity`].
pub const VALIDITY_LEN: usize = 16;

/// Length of the version and type bytes that open every certificate.
const HEADER_LEN: usize = 2;

/// The type byte of each certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CertType {
    AdCert = 1,
    RtCert = 2,
    RouteRecord = 3,
    DomainCert = 4,
    ReplicaSet = 5,
}

impl CertType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => CertType::AdCert,
            2 => CertType::RtCert,
            3 => CertType::RouteRecord,
            4 => CertType::DomainCert,
            5 => CertType::ReplicaSet,
            _ => return None,
        })
    }
}

/// The time interval in which a certificate is valid, both ends inclusive.
///
/// Encoded as `u64 not_before, u64 not_after` (microseconds since the epoch).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Validity {
    /// The first instant at which the certificate is valid.
    pub not_before: Timestamp,
    /// The last instant at which the certificate is valid.
    pub not_after: Timestamp,
}

impl Validity {
    /// Valid from `not_before` through `not_after`.
    pub const fn new(not_before: Timestamp, not_after: Timestamp) -> Self {
        Validity {
            not_before,
            not_after,
        }
    }

    /// Valid from `start` for `lifetime`.
    pub fn starting_at(start: Timestamp, lifetime: Duration) -> Self {
        Validity::new(start, start.saturating_add(lifetime))
    }

    /// True if `now` lies within the interval.
    pub fn contains(&self, now: Timestamp) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// Checks `now` against the interval.
    pub fn check(&self, now: Timestamp) -> Result<(), CertError> {
        if now < self.not_before {
            Err(CertError::NotYetValid {
                not_before: self.not_before,
                now,
            })
        } else if now > self.not_after {
            Err(CertError::Expired {
                not_after: self.not_after,
                now,
            })
        } else {
            Ok(())
        }
    }

    /// The time left until expiry at `now` (zero once expired).
    pub fn remaining(&self, now: Timestamp) -> Duration {
        self.not_after.since(now)
    }
}

impl fmt::Debug for Validity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Validity({:?} ..= {:?})",
            self.not_before, self.not_after
        )
    }
}

impl Encode for Validity {
    fn encode(&self, buf: &mut BytesMut) {
        self.not_before.encode(buf);
        self.not_after.encode(buf);
    }
    fn encoded_len(&self) -> usize {
        VALIDITY_LEN
    }
}

impl Decode for Validity {
    const WHAT: &'static str = "validity";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        let not_before = Timestamp(r.u64("validity not_before")?);
        let not_after = Timestamp(r.u64("validity not_after")?);
        Ok(Validity {
            not_before,
            not_after,
        })
    }
}

/// A value this crate has verified.
///
/// Only the `verify` methods of this crate construct it, so holding a
/// `Verified<T>` proves the check happened (at the `now` the caller gave).
/// It derefs to the inner value; [`Verified::into_inner`] gives it back as a
/// plain, unchecked value.
///
/// Code outside this crate cannot build one from an unchecked value:
///
/// ```compile_fail
/// # fn forge(cert: gdp_certs::cert::AdCert) -> gdp_certs::cert::Verified<gdp_certs::cert::AdCert> {
/// gdp_certs::cert::Verified(cert)
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<T>(T);

impl<T> Verified<T> {
    /// Wraps a value that has just been verified.
    pub(crate) fn new(value: T) -> Self {
        Verified(value)
    }

    /// The plain value, forgetting that it was verified.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> AsRef<T> for Verified<T> {
    fn as_ref(&self) -> &T {
        &self.0
    }
}

impl<T: Encode> Encode for Verified<T> {
    fn encode(&self, buf: &mut BytesMut) {
        self.0.encode(buf);
    }
    fn encoded_len(&self) -> usize {
        self.0.encoded_len()
    }
}

/// Why a certificate was rejected.
///
/// Variants other than [`CertError::Decode`] describe a well-formed
/// certificate that does not prove what it claims (or not now).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The bytes are not a well-formed certificate.
    #[error("malformed certificate: {0}")]
    Decode(#[from] DecodeError),
    /// The signature does not verify against the key that must have made it.
    #[error("{cert} signature does not verify against the signer's key")]
    BadSignature {
        /// Which certificate.
        cert: &'static str,
    },
    /// The certificate expired.
    #[error("certificate expired at {not_after:?} (now {now:?})")]
    Expired {
        /// The end of validity.
        not_after: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// The certificate is not valid yet.
    #[error("certificate is not valid before {not_before:?} (now {now:?}); check the clocks")]
    NotYetValid {
        /// The start of validity.
        not_before: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// Metadata does not hash to the name the certificate names.
    #[error("metadata hashes to {actual}, not to the certified name {expected}")]
    NameMismatch {
        /// The name the certificate names.
        expected: Name,
        /// The name the presented metadata hashes to.
        actual: Name,
    },
    /// Metadata of the wrong kind (for example a client where a router is
    /// needed).
    #[error("expected metadata of a {expected}, got a {found}")]
    WrongKind {
        /// The kind or kinds that were acceptable.
        expected: &'static str,
        /// The kind found.
        found: Kind,
    },
    /// An RtCert names another router than the one it was presented to or
    /// published by.
    #[error("router certificate names router {found}, not {expected}")]
    WrongRouter {
        /// The router that should have been named.
        expected: Name,
        /// The router the certificate names.
        found: Name,
    },
    /// An AdCert names another server than the one the route record carries.
    #[error("advertisement certificate names server {found}, not {expected}")]
    WrongServer {
        /// The server whose metadata the route record carries.
        expected: Name,
        /// The server the certificate names.
        found: Name,
    },
    /// The capsule's metadata does not allow this server to host it.
    #[error("capsule {capsule} does not allow server {server} to host it")]
    NotPermittedHost {
        /// The capsule.
        capsule: Name,
        /// The server that is not in its hosting list.
        server: Name,
    },
    /// A domain certificate is signed by a key not among the trusted domains.
    #[error("domain certificate is signed by {domain}, which is not a trusted domain key")]
    UntrustedDomain {
        /// The domain key (boxed: a parsed key is large, and errors stay small).
        domain: Box<PublicKey>,
    },
    /// A route record is for another name than the one that was looked up.
    #[error("route record is for {record}, not for the looked-up name {looked_up}")]
    NameNotCovered {
        /// The name that was looked up.
        looked_up: Name,
        /// The name the record routes to.
        record: Name,
    },
    /// A route record would list more addresses than allowed.
    #[error("a route record holds at most {max} addresses, got {count}")]
    TooManyAddresses {
        /// Addresses given.
        count: usize,
        /// [`MAX_ROUTE_ADDRESSES`].
        max: usize,
    },
    /// A route record would have neither addresses nor a `via` gateway.
    #[error("a route record needs at least one address or a via gateway")]
    NoAddress,
}

/// Checks that `md` hashes to `expected`.
fn check_name(md: &crate::Metadata, expected: &Name) -> Result<Name, CertError> {
    let actual = md.name();
    if &actual == expected {
        Ok(actual)
    } else {
        Err(CertError::NameMismatch {
            expected: *expected,
            actual,
        })
    }
}

/// Checks that `md` is of a kind accepted by `ok`; `expected` describes it.
fn check_kind(
    md: &crate::Metadata,
    ok: impl Fn(Kind) -> bool,
    expected: &'static str,
) -> Result<(), CertError> {
    if ok(md.kind()) {
        Ok(())
    } else {
        Err(CertError::WrongKind {
            expected,
            found: md.kind(),
        })
    }
}

/// The parts every certificate type shares: its type byte, its signature
/// context, and how to write its body.
trait Signed {
    /// Type byte.
    const TYPE: CertType;
    /// Signature domain.
    const CONTEXT: SigContext;
    /// Name used in errors.
    const WHAT: &'static str;
    /// Writes the body fields (between the header and the signature).
    fn encode_fields(&self, buf: &mut BytesMut);
    /// Length of the body fields.
    fn fields_len(&self) -> usize;
    /// The signature.
    fn signature(&self) -> &Signature;

    /// Length of the signed part: header and fields.
    fn signed_len(&self) -> usize {
        HEADER_LEN + self.fields_len()
    }

    /// Writes the signed part: header and fields.
    fn encode_signed_part(&self, buf: &mut BytesMut) {
        buf.put_u8(CERT_VERSION);
        buf.put_u8(Self::TYPE as u8);
        self.encode_fields(buf);
    }

    /// The signed part as a buffer.
    fn signed_part(&self) -> BytesMut {
        let mut buf = BytesMut::with_capacity(self.signed_len());
        self.encode_signed_part(&mut buf);
        buf
    }

    /// A signature by `key` over the signed part.
    fn sign_with(&self, key: &SecretKey) -> Signature {
        key.sign(Self::CONTEXT, &self.signed_part())
    }

    /// Checks the signature against `key`.
    fn check_signature(&self, key: &PublicKey) -> Result<(), CertError> {
        key.verify(Self::CONTEXT, &self.signed_part(), self.signature())
            .map_err(|_| CertError::BadSignature { cert: Self::WHAT })
    }

    /// Writes the whole certificate.
    fn encode_cert(&self, buf: &mut BytesMut) {
        self.encode_signed_part(buf);
        self.signature().encode(buf);
    }

    /// Length of the whole certificate.
    fn cert_len(&self) -> usize {
        self.signed_len() + crate::SIGNATURE_LEN
    }
}

/// Reads and checks the version and type bytes of a certificate of type `T`.
fn read_header<T: Signed>(r: &mut Reader) -> Result<(), DecodeError> {
    let version = r.u8("certificate version")?;
    if version != CERT_VERSION {
        return Err(DecodeError::UnknownValue {
            what: "certificate version",
            value: version.into(),
        });
    }
    let code = r.u8("certificate type")?;
    match CertType::from_code(code) {
        Some(t) if t == T::TYPE => Ok(()),
        Some(_) => Err(DecodeError::Invalid {
            what: "certificate type (a different kind of certificate)",
        }),
        None => Err(DecodeError::UnknownValue {
            what: "certificate type",
            value: code.into(),
        }),
    }
}

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_bounds_are_inclusive() {
        let v = Validity::new(Timestamp(10), Timestamp(20));
        assert_eq!(v.check(Timestamp(10)), Ok(()));
        assert_eq!(v.check(Timestamp(20)), Ok(()));
        assert_eq!(
            v.check(Timestamp(9)),
            Err(CertError::NotYetValid {
                not_before: Timestamp(10),
                now: Timestamp(9)
            })
        );
        assert_eq!(
            v.check(Timestamp(21)),
            Err(CertError::Expired {
                not_after: Timestamp(20),
                now: Timestamp(21)
            })
        );
        assert!(v.contains(Timestamp(15)));
        assert_eq!(v.remaining(Timestamp(15)), Duration::from_micros(5));
        assert_eq!(v.remaining(Timestamp(25)), Duration::ZERO);
    }

    #[test]
    fn validity_round_trips() {
        let v = Validity::starting_at(Timestamp(7), Duration::from_secs(1));
        let bytes = v.to_bytes();
        assert_eq!(bytes.len(), VALIDITY_LEN);
        assert_eq!(Validity::decode(bytes), Ok(v));
        assert_eq!(v.not_after, Timestamp(1_000_007));
    }

    #[test]
    fn errors_read_clearly() {
        let e = CertError::WrongKind {
            expected: "router",
            found: Kind::Client,
        };
        assert_eq!(e.to_string(), "expected metadata of a router, got a client");
        let e = CertError::from(DecodeError::Truncated { what: "signature" });
        assert_eq!(
            e.to_string(),
            "malformed certificate: truncated input while reading signature"
        );
    }
}
