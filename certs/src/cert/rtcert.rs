//! Router certificates: an endpoint names the router it attaches to.
//!
//! ```text
//! u8    version = 1
//! u8    type = 2
//! [32]  endpoint name (a server or a client)
//! [32]  router name
//! u64   not_before
//! u64   not_after
//! [64]  signature by the endpoint's key (SigContext::RtCert)
//! ```
//!
//! A router that publishes a route to an endpoint must hold an `RtCert` from
//! that endpoint naming *this* router; otherwise any router could claim any
//! endpoint.

use bytes::BytesMut;

use super::{CertError, CertType, Signed, Validity, Verified, check_kind, check_name, read_header};
use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::{
    Identity, Kind, Metadata, NAME_LEN, Name, SIGNATURE_LEN, SecretKey, SigContext, Signature,
    Timestamp,
};

/// Encoded length of an [`RtCert`] (it has no variable-length fields).
pub const RTCERT_LEN: usize = 2 + 2 * NAME_LEN + super::VALIDITY_LEN + SIGNATURE_LEN;

/// A router certificate: endpoint `endpoint` attaches at router `router`,
/// signed by the endpoint.
///
/// A decoded `RtCert` is unchecked; [`RtCert::verify`] turns it into a
/// [`Verified<RtCert>`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtCert {
    endpoint: Name,
    router: Name,
    validity: Validity,
    signature: Signature,
}

impl RtCert {
    /// Issues a certificate saying that `endpoint` (whose key is
    /// `endpoint_key`) attaches at `router`.
    pub fn issue(
        endpoint_key: &SecretKey,
        endpoint: Name,
        router: Name,
        validity: Validity,
    ) -> RtCert {
        let mut cert = RtCert {
            endpoint,
            router,
            validity,
            signature: Signature([0; SIGNATURE_LEN]),
        };
        cert.signature = cert.sign_with(endpoint_key);
        cert
    }

    /// Issues a certificate saying that the endpoint `identity` attaches at
    /// `router`.
    pub fn issue_by(identity: &Identity, router: Name, validity: Validity) -> RtCert {
        RtCert::issue(identity.secret_key(), identity.name(), router, validity)
    }

    /// The endpoint.
    pub fn endpoint(&self) -> Name {
        self.endpoint
    }
    /// The router it attaches at.
    pub fn router(&self) -> Name {
        self.router
    }
    /// When the certificate is valid.
    pub fn validity(&self) -> Validity {
        self.validity
    }
    /// The endpoint's signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Checks the certificate at `now`: `endpoint_md` hashes to
    /// [`RtCert::endpoint`] and describes an endpoint (server or client), the
    /// certificate names `router`, it is signed by the endpoint's key, and
    /// `now` is within validity.
    pub fn verify(
        &self,
        endpoint_md: &Metadata,
        router: &Name,
        now: Timestamp,
    ) -> Result<Verified<RtCert>, CertError> {
        check_name(endpoint_md, &self.endpoint)?;
        check_kind(endpoint_md, Kind::is_endpoint, "server or client")?;
        if &self.router != router {
            return Err(CertError::WrongRouter {
                expected: *router,
                found: self.router,
            });
        }
        self.validity.check(now)?;
        self.check_signature(endpoint_md.key())?;
        Ok(Verified::new(self.clone()))
    }
}

impl Signed for RtCert {
    const TYPE: CertType = CertType::RtCert;
    const CONTEXT: SigContext = SigContext::RtCert;
    const WHAT: &'static str = "router certificate";

    fn encode_fields(&self, buf: &mut BytesMut) {
        self.endpoint.encode(buf);
        self.router.encode(buf);
        self.validity.encode(buf);
    }
    fn fields_len(&self) -> usize {
        2 * NAME_LEN + super::VALIDITY_LEN
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
}

impl Encode for RtCert {
    fn encode(&self, buf: &mut BytesMut) {
        self.encode_cert(buf);
    }
    fn encoded_len(&self) -> usize {
        self.cert_len()
    }
}

impl Decode for RtCert {
    const WHAT: &'static str = "router certificate";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        read_header::<Self>(r)?;
        Ok(RtCert {
            endpoint: Name::decode_from(r)?,
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

    #[test]
    fn server_and_client_certs_verify() {
        let f = Fixture::new();
        let rt = f.server_rtcert(f.router.name());
        assert_eq!(rt.to_bytes().len(), RTCERT_LEN);
        let v = rt
            .verify(f.server.metadata(), &f.router.name(), NOW)
            .expect("verifies");
        assert_eq!(v.endpoint(), f.server.name());
        assert_eq!(v.router(), f.router.name());
        let rt = RtCert::issue_by(&f.client, f.router.name(), f.validity);
        assert!(
            rt.verify(f.client.metadata(), &f.router.name(), NOW)
                .is_ok()
        );
    }

    #[test]
    fn naming_another_router() {
        let f = Fixture::new();
        let rt = f.server_rtcert(f.other_router.name());
        assert_eq!(
            rt.verify(f.server.metadata(), &f.router.name(), NOW),
            Err(CertError::WrongRouter {
                expected: f.router.name(),
                found: f.other_router.name()
            })
        );
    }

    #[test]
    fn signed_by_another_key() {
        let f = Fixture::new();
        let rt = RtCert::issue(
            f.client.secret_key(),
            f.server.name(),
            f.router.name(),
            f.validity,
        );
        assert_eq!(
            rt.verify(f.server.metadata(), &f.router.name(), NOW),
            Err(CertError::BadSignature {
                cert: "router certificate"
            })
        );
    }

    #[test]
    fn router_is_not_an_endpoint() {
        let f = Fixture::new();
        let rt = RtCert::issue_by(&f.other_router, f.router.name(), f.validity);
        assert_eq!(
            rt.verify(f.other_router.metadata(), &f.router.name(), NOW),
            Err(CertError::WrongKind {
                expected: "server or client",
                found: Kind::Router
            })
        );
    }

    #[test]
    fn metadata_that_does_not_hash_to_the_endpoint() {
        let f = Fixture::new();
        let rt = f.server_rtcert(f.router.name());
        assert_eq!(
            rt.verify(f.client.metadata(), &f.router.name(), NOW),
            Err(CertError::NameMismatch {
                expected: f.server.name(),
                actual: f.client.name()
            })
        );
    }

    #[test]
    fn expired() {
        let f = Fixture::new();
        let late = Timestamp(f.validity.not_after.0 + 1);
        assert!(matches!(
            f.server_rtcert(f.router.name())
                .verify(f.server.metadata(), &f.router.name(), late),
            Err(CertError::Expired { now, .. }) if now == late
        ));
    }
}
