//! Domain certificates: a trust domain admits a router.
//!
//! ```text
//! u8    version = 1
//! u8    type = 4
//! [32]  trust-domain public key
//! [32]  router name
//! u64   not_before
//! u64   not_after
//! [64]  signature by the trust-domain key (SigContext::DomainCert)
//! ```
//!
//! Routers present domain certificates to each other when they peer; a
//! router's peering policy lists the domain keys it trusts.

use bytes::BytesMut;

use super::{CertError, CertType, Signed, Validity, Verified, check_kind, check_name, read_header};
use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::{
    Kind, Metadata, NAME_LEN, Name, PUBLIC_KEY_LEN, PublicKey, SIGNATURE_LEN, SecretKey,
    SigContext, Signature, Timestamp,
};

/// Encoded length of a [`DomainCert`] (it has no variable-length fields).
pub const DOMAIN_CERT_LEN: usize =
    2 + PUBLIC_KEY_LEN + NAME_LEN + super::VALIDITY_LEN + SIGNATURE_LEN;

/// A domain certificate: router `router` is a member of the trust domain
/// whose key is `domain`, signed by that key.
///
/// A decoded `DomainCert` is unchecked; [`DomainCert::verify`] turns it into
/// a [`Verified<DomainCert>`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainCert {
    domain: PublicKey,
    router: Name,
    validity: Validity,
    signature: Signature,
}

impl DomainCert {
    /// Issues a certificate admitting `router` to the trust domain of `domain`.
    pub fn issue(domain: &SecretKey, router: Name, validity: Validity) -> DomainCert {
        let mut cert = DomainCert {
            domain: domain.public(),
            router,
            validity,
            signature: Signature([0; SIGNATURE_LEN]),
        };
        cert.signature = cert.sign_with(domain);
        cert
    }

    /// The trust domain's key.
    pub fn domain(&self) -> &PublicKey {
        &self.domain
    }
    /// The router admitted.
    pub fn router(&self) -> Name {
        self.router
    }
    /// When the certificate is valid.
    pub fn validity(&self) -> Validity {
        self.validity
    }
    /// The domain's signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Checks the certificate at `now`: `router_md` hashes to
    /// [`DomainCert::router`] and describes a router, the domain key is one of
    /// `trusted`, the signature is by that key, and `now` is within validity.
    pub fn verify(
        &self,
        router_md: &Metadata,
        trusted: &[PublicKey],
        now: Timestamp,
    ) -> Result<Verified<DomainCert>, CertError> {
        check_name(router_md, &self.router)?;
        check_kind(router_md, |k| k == Kind::Router, "router")?;
        if !trusted.contains(&self.domain) {
            return Err(CertError::UntrustedDomain {
                domain: Box::new(self.domain),
            });
        }
        self.validity.check(now)?;
        self.check_signature(&self.domain)?;
        Ok(Verified::new(self.clone()))
    }

    /// What can be checked without the router's metadata or the routers'
    /// list of trusted domains: the signature is by the domain key the
    /// certificate names, and `now` is within validity. For inspection
    /// (`gdp cert show`); a router admits a peer only by
    /// [`DomainCert::verify`].
    pub fn check_self_consistent(&self, now: Timestamp) -> Result<(), CertError> {
        self.check_signature(&self.domain)?;
        self.validity.check(now)
    }
}

impl Signed for DomainCert {
    const TYPE: CertType = CertType::DomainCert;
    const CONTEXT: SigContext = SigContext::DomainCert;
    const WHAT: &'static str = "domain certificate";

    fn encode_fields(&self, buf: &mut BytesMut) {
        self.domain.encode(buf);
        self.router.encode(buf);
        self.validity.encode(buf);
    }
    fn fields_len(&self) -> usize {
        PUBLIC_KEY_LEN + NAME_LEN + super::VALIDITY_LEN
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
}

impl Encode for DomainCert {
    fn encode(&self, buf: &mut BytesMut) {
        self.encode_cert(buf);
    }
    fn encoded_len(&self) -> usize {
        self.cert_len()
    }
}

impl Decode for DomainCert {
    const WHAT: &'static str = "domain certificate";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        read_header::<Self>(r)?;
        Ok(DomainCert {
            domain: PublicKey::decode_from(r)?,
            router: Name::decode_from(r)?,
            validity: Validity::decode_from(r)?,
            signature: Signature::decode_from(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::testutil::*;

    fn domain_key() -> SecretKey {
        SecretKey::from_seed(&[42; 32])
    }

    #[test]
    fn trusted_domain_verifies() {
        let f = Fixture::new();
        let cert = DomainCert::issue(&domain_key(), f.router.name(), f.validity);
        assert_eq!(cert.to_bytes().len(), DOMAIN_CERT_LEN);
        let trusted = [
            SecretKey::from_seed(&[1; 32]).public(),
            domain_key().public(),
        ];
        let v = cert
            .verify(f.router.metadata(), &trusted, NOW)
            .expect("verifies");
        assert_eq!(v.domain(), &domain_key().public());
        assert_eq!(v.router(), f.router.name());
    }

    #[test]
    fn untrusted_domain() {
        let f = Fixture::new();
        let rogue = SecretKey::from_seed(&[43; 32]);
        let cert = DomainCert::issue(&rogue, f.router.name(), f.validity);
        assert_eq!(
            cert.verify(f.router.metadata(), &[domain_key().public()], NOW),
            Err(CertError::UntrustedDomain {
                domain: Box::new(rogue.public())
            })
        );
        assert!(matches!(
            cert.verify(f.router.metadata(), &[], NOW),
            Err(CertError::UntrustedDomain { .. })
        ));
    }

    #[test]
    fn other_router_and_wrong_kind() {
        let f = Fixture::new();
        let cert = DomainCert::issue(&domain_key(), f.router.name(), f.validity);
        let trusted = [domain_key().public()];
        assert_eq!(
            cert.verify(f.other_router.metadata(), &trusted, NOW),
            Err(CertError::NameMismatch {
                expected: f.router.name(),
                actual: f.other_router.name()
            })
        );
        let cert = DomainCert::issue(&domain_key(), f.client.name(), f.validity);
        assert_eq!(
            cert.verify(f.client.metadata(), &trusted, NOW),
            Err(CertError::WrongKind {
                expected: "router",
                found: Kind::Client
            })
        );
    }

    #[test]
    fn not_yet_valid() {
        let f = Fixture::new();
        let cert = DomainCert::issue(&domain_key(), f.router.name(), f.validity);
        let early = Timestamp(f.validity.not_before.0 - 1);
        assert!(matches!(
            cert.verify(f.router.metadata(), &[domain_key().public()], early),
            Err(CertError::NotYetValid { now, .. }) if now == early
        ));
    }

    #[test]
    fn self_consistency_checks_signature_and_validity_only() {
        let f = Fixture::new();
        let cert = DomainCert::issue(&domain_key(), f.router.name(), f.validity);
        assert_eq!(cert.check_self_consistent(NOW), Ok(()));
        let early = Timestamp(f.validity.not_before.0 - 1);
        assert!(matches!(
            cert.check_self_consistent(early),
            Err(CertError::NotYetValid { .. })
        ));
        // A certificate whose signature is not by the key it names.
        let mut bytes = cert.to_bytes().to_vec();
        let first_of_signature = bytes.len() - 64;
        bytes[first_of_signature] ^= 1;
        let forged = DomainCert::decode(bytes).expect("still decodes");
        assert_eq!(
            forged.check_self_consistent(NOW),
            Err(CertError::BadSignature {
                cert: "domain certificate"
            })
        );
    }

    #[test]
    fn invalid_domain_key_fails_to_decode() {
        let f = Fixture::new();
        let mut bytes = DomainCert::issue(&domain_key(), f.router.name(), f.validity)
            .to_bytes()
            .to_vec();
        // y = 2 is not the y-coordinate of any point on the curve.
        bytes[2..34].copy_from_slice(&{
            let mut k = [0u8; 32];
            k[0] = 2;
            k
        });
        assert_eq!(
            DomainCert::decode(bytes),
            Err(DecodeError::Invalid {
                what: "ed25519 public key"
            })
        );
    }
}
