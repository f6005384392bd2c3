//! Advertisement certificates: a capsule's owner lets a server serve it.
//!
//! ```text
//! u8    version = 1
//! u8    type = 1
//! [32]  capsule name
//! [32]  server name
//! u64   not_before
//! u64   not_after
//! [64]  signature by the capsule owner's key (SigContext::AdCert)
//! ```

use bytes::BytesMut;

use super::{CertError, CertType, Signed, Validity, Verified, check_kind, check_name, read_header};
use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::{Kind, Metadata, NAME_LEN, Name, SIGNATURE_LEN, SecretKey, SigContext, Signature};

/// Encoded length of an [`AdCert`] (it has no variable-length fields).
pub const ADCERT_LEN: usize = 2 + 2 * NAME_LEN + super::VALIDITY_LEN + SIGNATURE_LEN;

/// An advertisement certificate: server `server` may serve capsule
/// `capsule`, signed by the capsule's owner.
///
/// A decoded `AdCert` is unchecked; [`AdCert::verify`] turns it into a
/// [`Verified<AdCert>`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdCert {
    capsule: Name,
    server: Name,
    validity: Validity,
    signature: Signature,
}

impl AdCert {
    /// Issues a certificate letting `server` serve `capsule`. `owner` must be
    /// the key in the capsule's metadata for the certificate to verify.
    pub fn issue(owner: &SecretKey, capsule: Name, server: Name, validity: Validity) -> AdCert {
        let mut cert = AdCert {
            capsule,
            server,
            validity,
            signature: Signature([0; SIGNATURE_LEN]),
        };
        cert.signature = cert.sign_with(owner);
        cert
    }

    /// The capsule.
    pub fn capsule(&self) -> Name {
        self.capsule
    }
    /// The server allowed to serve it.
    pub fn server(&self) -> Name {
        self.server
    }
    /// When the certificate is valid.
    pub fn validity(&self) -> Validity {
        self.validity
    }
    /// The owner's signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Checks the certificate against the capsule's metadata at `now`:
    /// the metadata hashes to [`AdCert::capsule`] and describes a capsule, the
    /// certificate is signed by the capsule's owner, the capsule's hosting
    /// constraints allow [`AdCert::server`], and `now` is within validity.
    pub fn verify(
        &self,
        capsule_md: &Metadata,
        now: crate::Timestamp,
    ) -> Result<Verified<AdCert>, CertError> {
        check_name(capsule_md, &self.capsule)?;
        check_kind(capsule_md, |k| k == Kind::Capsule, "capsule")?;
        if !capsule_md.may_host(&self.server) {
            return Err(CertError::NotPermittedHost {
                capsule: self.capsule,
                server: self.server,
            });
        }
        self.validity.check(now)?;
        self.check_signature(capsule_md.key())?;
        Ok(Verified::new(self.clone()))
    }
}

impl Signed for AdCert {
    const TYPE: CertType = CertType::AdCert;
    const CONTEXT: SigContext = SigContext::AdCert;
    const WHAT: &'static str = "advertisement certificate";

    fn encode_fields(&self, buf: &mut BytesMut) {
        self.capsule.encode(buf);
        self.server.encode(buf);
        self.validity.encode(buf);
    }
    fn fields_len(&self) -> usize {
        2 * NAME_LEN + super::VALIDITY_LEN
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
}

impl Encode for AdCert {
    fn encode(&self, buf: &mut BytesMut) {
        self.encode_cert(buf);
    }
    fn encoded_len(&self) -> usize {
        self.cert_len()
    }
}

impl Decode for AdCert {
    const WHAT: &'static str = "advertisement certificate";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        read_header::<Self>(r)?;
        Ok(AdCert {
            capsule: Name::decode_from(r)?,
            server: Name::decode_from(r)?,
            validity: Validity::decode_from(r)?,
            signature: Signature::decode_from(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;
    use crate::cert::testutil::*;

    #[test]
    fn issued_cert_verifies_and_has_fixed_length() {
        let f = Fixture::new();
        let cert = f.adcert();
        assert_eq!(cert.to_bytes().len(), ADCERT_LEN);
        let v = cert.verify(&f.capsule_md, NOW).expect("verifies");
        assert_eq!(v.capsule(), f.capsule_md.name());
        assert_eq!(v.server(), f.server.name());
        assert_eq!(v.into_inner(), cert);
    }

    #[test]
    fn signed_by_someone_other_than_the_owner() {
        let f = Fixture::new();
        let mallory = SecretKey::from_seed(&[99; 32]);
        let cert = AdCert::issue(&mallory, f.capsule_md.name(), f.server.name(), f.validity);
        assert_eq!(
            cert.verify(&f.capsule_md, NOW),
            Err(CertError::BadSignature {
                cert: "advertisement certificate"
            })
        );
    }

    #[test]
    fn metadata_of_another_capsule() {
        let f = Fixture::new();
        let other = capsule_md(&f.owner, vec![], 7);
        let err = f.adcert().verify(&other, NOW).expect_err("must fail");
        assert_eq!(
            err,
            CertError::NameMismatch {
                expected: f.capsule_md.name(),
                actual: other.name()
            }
        );
    }

    #[test]
    fn certifying_a_principal_is_wrong_kind() {
        let f = Fixture::new();
        // The "capsule" is the server's own metadata, signed by the server.
        let cert = AdCert::issue(
            f.server.secret_key(),
            f.server.name(),
            f.server.name(),
            f.validity,
        );
        assert_eq!(
            cert.verify(f.server.metadata(), NOW),
            Err(CertError::WrongKind {
                expected: "capsule",
                found: Kind::Server
            })
        );
    }

    #[test]
    fn server_outside_hosting_constraints() {
        let f = Fixture::new();
        let md = capsule_md(&f.owner, vec![Name::from_bytes([1; 32])], 3);
        let cert = AdCert::issue(&f.owner, md.name(), f.server.name(), f.validity);
        assert_eq!(
            cert.verify(&md, NOW),
            Err(CertError::NotPermittedHost {
                capsule: md.name(),
                server: f.server.name()
            })
        );
        let allowed = capsule_md(&f.owner, vec![f.server.name()], 3);
        let cert = AdCert::issue(&f.owner, allowed.name(), f.server.name(), f.validity);
        assert!(cert.verify(&allowed, NOW).is_ok());
    }

    #[test]
    fn expired_and_not_yet_valid() {
        let f = Fixture::new();
        let cert = f.adcert();
        let late = Timestamp(f.validity.not_after.0 + 1);
        assert_eq!(
            cert.verify(&f.capsule_md, late),
            Err(CertError::Expired {
                not_after: f.validity.not_after,
                now: late
            })
        );
        let early = Timestamp(f.validity.not_before.0 - 1);
        assert_eq!(
            cert.verify(&f.capsule_md, early),
            Err(CertError::NotYetValid {
                not_before: f.validity.not_before,
                now: early
            })
        );
    }

    #[test]
    fn rtcert_bytes_are_not_an_adcert() {
        let f = Fixture::new();
        let rt = f.server_rtcert(f.router.name());
        assert_eq!(
            AdCert::decode(rt.to_bytes()),
            Err(DecodeError::Invalid {
                what: "certificate type (a different kind of certificate)"
            })
        );
    }
}
