//! The rustls certificate verifiers of GDP links, and the policy they apply.
//!
//! One type, [`PeerVerifier`], serves both sides: a dialer verifies the
//! server it reached and a listener verifies every client. For each peer it
//!
//! 1. parses the single self-signed certificate into a [`PublicIdentity`]
//!    (ed25519 key, metadata extension, key equal to the metadata's key, see
//!    [`certificate`](super::certificate)),
//! 2. applies the [`PeerPolicy`],
//! 3. verifies the TLS 1.3 handshake signature over the transcript with the
//!    certificate's key, through rustls's own `verify_tls13_signature` and
//!    the ring provider, accepting only `ED25519`.
//!
//! There is no CA and no chain: step 3 proves the peer holds the key, step 1
//! that the key controls the name. Certificate validity dates are ignored
//! (see the certificate module). TLS 1.2 is never negotiated, and its
//! signature check refuses outright.
//!
//! A refusal reaches rustls as
//! `Error::InvalidCertificate(CertificateError::Other(..))` whose text is the
//! [`TlsError`] message; [`TlsError::from_rustls`] recovers the typed error.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, PeerMisbehaved,
    SignatureScheme,
};

use super::{TlsError, certificate};
use crate::{Kind, Name, PublicIdentity};

/// Which peers a link accepts. Every policy first requires that the peer
/// proves *a* valid GDP name of a link principal (router, capsule server or
/// client); the policy then narrows that down.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerPolicy {
    /// Exactly this name, nothing else. For dialing a peer whose name is
    /// known (a router from a route record, the router in a client's
    /// configuration).
    Expect(Name),
    /// Any name the peer can prove; the caller learns which from
    /// [`peer_identity`](super::peer_identity) and decides. For routers
    /// accepting endpoints and for clients bootstrapping from a bare address.
    AnyName,
    /// Any name whose metadata kind is one of these. For example a router's
    /// endpoint listener accepts `[Kind::Server, Kind::Client]` and its
    /// peering listener `[Kind::Router]`.
    Kinds(Vec<Kind>),
}

impl PeerPolicy {
    /// Checks `peer` against the policy.
    pub fn check(&self, peer: &PublicIdentity) -> Result<(), TlsError> {
        match self {
            PeerPolicy::Expect(expected) if *expected != peer.name() => {
                Err(TlsError::UnexpectedName {
                    expected: *expected,
                    found: peer.name(),
                })
            }
            PeerPolicy::Kinds(allowed) if !allowed.contains(&peer.metadata().kind()) => {
                Err(TlsError::UnexpectedKind {
                    name: peer.name(),
                    found: peer.metadata().kind(),
                    allowed: allowed.clone(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// Verifies GDP peers for rustls, as a server certificate verifier (dialer
/// side) and as a client certificate verifier (listener side; client
/// authentication is mandatory).
#[derive(Debug)]
pub struct PeerVerifier {
    policy: PeerPolicy,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PeerVerifier {
    /// A verifier that applies `policy`.
    pub fn new(policy: PeerPolicy) -> Self {
        PeerVerifier {
            policy,
            algorithms: super::crypto_provider().signature_verification_algorithms,
        }
    }

    /// The policy it applies.
    pub fn policy(&self) -> &PeerPolicy {
        &self.policy
    }

    /// Parses the peer's certificates and applies the policy: everything
    /// except the handshake signature. rustls calls this through the verifier
    /// traits; it is public for tests and diagnostics.
    pub fn verify_peer(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<PublicIdentity, TlsError> {
        if !intermediates.is_empty() {
            return Err(TlsError::UnexpectedChain {
                count: 1 + intermediates.len(),
            });
        }
        let peer = certificate::parse_certificate(end_entity)?;
        self.policy.check(&peer)?;
        Ok(peer)
    }

    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only ED25519 was offered; anything else breaks the protocol.
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
        }
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verify_peer(end_entity, intermediates)
            .map_err(into_rustls)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify_peer(end_entity, intermediates)
            .map_err(into_rustls)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered)
}

/// A [`TlsError`] inside a rustls error. Its `Debug` is the error message,
/// because rustls prints `CertificateError::Other` with `Debug` and that text
/// is what reaches the other side of the link as the close reason.
pub(crate) struct Refusal(pub(crate) TlsError);

impl fmt::Debug for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Refusal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn into_rustls(e: TlsError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refusal(e)))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::self_signed_certificate;
    use crate::{Identity, SecretKey, Timestamp};

    fn identity(kind: Kind, seed: u8) -> Identity {
        Identity::from_key(
            SecretKey::from_seed(&[seed; 32]),
            kind,
            "v",
            Timestamp::from_secs(1_800_000_000),
        )
        .expect("valid principal")
    }

    fn cert(id: &Identity) -> CertificateDer<'static> {
        self_signed_certificate(id).expect("generates").0
    }

    #[test]
    fn policies_accept_and_refuse() {
        let router = identity(Kind::Router, 1).to_public();
        let client = identity(Kind::Client, 2).to_public();
        assert_eq!(PeerPolicy::AnyName.check(&router), Ok(()));
        assert_eq!(PeerPolicy::Expect(router.name()).check(&router), Ok(()));
        assert_eq!(
            PeerPolicy::Expect(router.name()).check(&client),
            Err(TlsError::UnexpectedName {
                expected: router.name(),
                found: client.name()
            })
        );
        let endpoints = PeerPolicy::Kinds(vec![Kind::Server, Kind::Client]);
        assert_eq!(endpoints.check(&client), Ok(()));
        let err = endpoints
            .check(&router)
            .expect_err("a router is no endpoint");
        assert!(matches!(
            err,
            TlsError::UnexpectedKind {
                found: Kind::Router,
                ..
            }
        ));
        assert!(err.to_string().contains("server, client"), "{err}");
    }

    #[test]
    fn verifier_refuses_the_wrong_name_with_both_names() {
        let expected = identity(Kind::Router, 1);
        let actual = identity(Kind::Router, 2);
        let v = PeerVerifier::new(PeerPolicy::Expect(expected.name()));
        let err = v.verify_peer(&cert(&actual), &[]).expect_err("wrong name");
        assert_eq!(
            err,
            TlsError::UnexpectedName {
                expected: expected.name(),
                found: actual.name()
            }
        );
        let ok = v.verify_peer(&cert(&expected), &[]).expect("right name");
        assert_eq!(ok.name(), expected.name());
    }

    #[test]
    fn chains_and_missing_certificates_are_refused() {
        let a = cert(&identity(Kind::Server, 3));
        let v = PeerVerifier::new(PeerPolicy::AnyName);
        assert_eq!(
            v.verify_peer(&a, std::slice::from_ref(&a)),
            Err(TlsError::UnexpectedChain { count: 2 })
        );
        assert!(matches!(
            v.verify_peer(&CertificateDer::from(vec![0x30, 0x00]), &[]),
            Err(TlsError::BadCertificate { .. })
        ));
    }

    #[test]
    fn rustls_error_carries_the_message_and_the_typed_error() {
        let expected = identity(Kind::Router, 1);
        let actual = identity(Kind::Client, 2);
        let v = PeerVerifier::new(PeerPolicy::Expect(expected.name()));
        let err = ServerCertVerifier::verify_server_cert(
            &v,
            &cert(&actual),
            &[],
            &ServerName::try_from(super::super::SERVER_NAME).expect("valid DNS name"),
            &[],
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(1)),
        )
        .expect_err("wrong name");
        let text = err.to_string();
        assert!(text.contains(&expected.name().to_string()), "{text}");
        assert!(text.contains(&actual.name().to_string()), "{text}");
        assert_eq!(
            TlsError::from_rustls(&err),
            Some(&TlsError::UnexpectedName {
                expected: expected.name(),
                found: actual.name()
            })
        );
        let err = ClientCertVerifier::verify_client_cert(
            &v,
            &CertificateDer::from(vec![1, 2, 3]),
            &[],
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(1)),
        )
        .expect_err("garbage");
        assert!(matches!(
            TlsError::from_rustls(&err),
            Some(TlsError::BadCertificate { .. })
        ));
        assert_eq!(TlsError::from_rustls(&rustls::Error::DecryptError), None);
    }

    #[test]
    fn only_ed25519_is_offered_and_client_auth_is_mandatory() {
        let v = PeerVerifier::new(PeerPolicy::AnyName);
        assert_eq!(
            ServerCertVerifier::supported_verify_schemes(&v),
            vec![SignatureScheme::ED25519]
        );
        assert_eq!(
            ClientCertVerifier::supported_verify_schemes(&v),
            vec![SignatureScheme::ED25519]
        );
        assert!(v.offer_client_auth() && v.client_auth_mandatory());
        assert!(ClientCertVerifier::root_hint_subjects(&v).is_empty());
    }
}
