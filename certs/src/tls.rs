//! TLS identity for QUIC links.
//!
//! A GDP link is one QUIC connection authenticated in both directions by the
//! two principals' GDP identities, with no certificate authority. Each side
//! presents a self-signed X.509 certificate whose key is its ed25519 identity
//! key and which carries its [`Metadata`](crate::Metadata) in an extension
//! ([`METADATA_EXTENSION_OID`]). The other side's [`PeerVerifier`] checks that
//! the certificate's key is the metadata's key, derives the name (the hash of
//! the metadata), applies a [`PeerPolicy`], and lets rustls verify the TLS 1.3
//! handshake signature with that key. A peer that completes the handshake has
//! therefore proved its name. The certificate's validity dates are not
//! checked: the key authenticates, not the dates, and whether a name is still
//! welcome is decided above TLS with caller-supplied time (route records and
//! GDP certificates expire). TLS 1.2 is not offered, only `ED25519`
//! handshake signatures are, and session resumption and 0-RTT are off, so
//! every link runs the full check.
//!
//! After the handshake the driver reads the peer's certificate back with
//! [`peer_identity`] (or `quinn_peer_identity` with the `quinn` feature) to
//! learn which name it proved, which matters under [`PeerPolicy::AnyName`].
//!
//! The TLS server name plays no part: dialers pass [`SERVER_NAME`], the
//! client sends no SNI extension (which would otherwise tell on-path
//! observers whom it dials), and the server certificate's names are never
//! looked at.
//!
//! ```
//! use gdp_certs::tls::{self, PeerPolicy};
//! use gdp_certs::{Identity, Kind};
//!
//! let router = Identity::generate(Kind::Router, "edge-1")?;
//! let client = Identity::generate(Kind::Client, "laptop")?;
//!
//! // The router accepts any endpoint and learns its name after the handshake;
//! // the client accepts only the router it was configured with.
//! let server = tls::server_config(&router, PeerPolicy::Kinds(vec![Kind::Server, Kind::Client]))?;
//! let dialer = tls::client_config(&client, PeerPolicy::Expect(router.name()))?;
//! assert_eq!(server.alpn_protocols, [tls::ALPN.to_vec()]);
//! assert_eq!(dialer.alpn_protocols, [tls::ALPN.to_vec()]);
//!
//! // What the router reads from the client's certificate after the handshake:
//! let (cert, _key) = tls::self_signed_certificate(&client)?;
//! assert_eq!(tls::peer_identity(&[cert])?.name(), client.name());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Without the `quinn` feature, a rustls config becomes a quinn config in
//! three lines:
//!
//! ```text
//! let tls = tls::client_config(&identity, policy)?;
//! let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
//! let config = quinn::ClientConfig::new(Arc::new(quic));
//! ```
//!
//! and likewise `QuicServerConfig` with `quinn::ServerConfig::with_crypto`.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, OtherError};

use crate::{DecodeError, Identity, Kind, Name, PUBLIC_KEY_LEN, PublicIdentity};

mod certificate;
mod verifier;

pub use certificate::{MAX_CERTIFICATE_LEN, METADATA_EXTENSION_OID, self_signed_certificate};
pub use verifier::{PeerPolicy, PeerVerifier};

/// The ALPN protocol of GDP links, version 1: whole PDUs on streams. Every
/// GDP link speaks it; [`server_config`] and [`client_config`] offer it
/// alone.
pub const ALPN: &[u8] = b"gdp/1";

/// The ALPN protocol of GDP links, version 2: version 1 with compact
/// frames on streams, whose senders replace a PDU's two names by a label
/// bound on that stream (`gdp_proto::frame::labels`). Links that can
/// decode them offer it before [`ALPN`] (see
/// [`quinn_server_config_offering`]); a peer that offers only [`ALPN`]
/// gets version 1.
pub const ALPN_COMPACT: &[u8] = b"gdp/2";

/// The TLS server name dialers pass (quinn's `connect(addr, SERVER_NAME)`).
/// It is never sent (SNI is off) and never checked: the peer's GDP name,
/// enforced by [`PeerPolicy`], is what a dialer authenticates.
pub const SERVER_NAME: &str = "gdp";

/// Why a TLS identity could not be built, or why a peer was refused.
///
/// The first variants are local failures; the rest describe what the peer
/// presented.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate or key encoding for the local identity failed.
    #[error("cannot generate the TLS certificate: {reason}")]
    Generate {
        /// What failed.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The local identity is of a kind that does not hold links (see
    /// [`TlsError::NotALinkPrincipal`]).
    #[error("a {kind} identity cannot hold links; only routers, servers and clients do")]
    NotALinkIdentity {
        /// Its kind.
        kind: Kind,
    },
    /// quinn refused the TLS configuration.
    #[error("QUIC configuration: {reason}")]
    QuicConfig {
        /// What failed.
        reason: String,
    },
    /// The peer presented no certificate.
    #[error("the peer presented no certificate")]
    NoCertificate,
    /// The peer presented a chain; GDP peers present one self-signed
    /// certificate.
    #[error("the peer presented {count} certificates; a GDP peer presents exactly one")]
    UnexpectedChain {
        /// How many it presented.
        count: usize,
    },
    /// The peer's certificate is larger than [`MAX_CERTIFICATE_LEN`].
    #[error("the peer certificate is {len} bytes, over the limit of {max}")]
    CertificateTooLong {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer's certificate is not well-formed X.509.
    #[error("the peer certificate is not valid X.509: {reason}")]
    BadCertificate {
        /// What is wrong.
        reason: String,
    },
    /// The peer's certificate key is not ed25519.
    #[error("the peer certificate key is not ed25519 (algorithm {algorithm})")]
    NotEd25519 {
        /// The key algorithm's object identifier.
        algorithm: String,
    },
    /// The peer's key is a weak (small-order) ed25519 key.
    #[error("the peer certificate key is a weak ed25519 key")]
    WeakKey,
    /// The peer's certificate has no metadata extension.
    #[error("the peer certificate has no GDP metadata extension")]
    MissingMetadata,
    /// The metadata extension is not one DER `OCTET STRING`, is critical or
    /// is repeated.
    #[error("the peer certificate's GDP metadata extension is malformed: {reason}")]
    MalformedExtension {
        /// What is wrong.
        reason: &'static str,
    },
    /// The metadata extension does not decode as metadata.
    #[error("the peer certificate's GDP metadata is invalid: {0}")]
    InvalidMetadata(#[source] DecodeError),
    /// The certificate's key is not the key in its metadata, so the handshake
    /// signature would prove nothing about the name. The keys are raw bytes
    /// (a [`PublicKey`](crate::PublicKey) is large for an error) and print
    /// in its text form.
    #[error(
        "the peer certificate key {} is not the key {} of the metadata it carries",
        key_text(.certificate),
        key_text(.metadata)
    )]
    KeyMismatch {
        /// The certificate's (and handshake's) key.
        certificate: [u8; PUBLIC_KEY_LEN],
        /// The key in the metadata.
        metadata: [u8; PUBLIC_KEY_LEN],
    },
    /// The metadata names something that does not hold links (a capsule or
    /// a trust domain).
    #[error("the peer presented {kind} metadata; only routers, servers and clients hold links")]
    NotALinkPrincipal {
        /// The kind it presented.
        kind: Kind,
    },
    /// The peer proved a name other than the one expected.
    #[error("expected peer {expected}, but the peer proved the name {found}")]
    UnexpectedName {
        /// The name the policy required.
        expected: Name,
        /// The name the peer proved.
        found: Name,
    },
    /// The peer proved a name of a kind the policy does not accept.
    #[error("peer {name} is a {found}; this link accepts only {}", kind_list(.allowed))]
    UnexpectedKind {
        /// The name the peer proved.
        name: Name,
        /// Its kind.
        found: Kind,
        /// The kinds the policy accepts.
        allowed: Vec<Kind>,
    },
}

impl TlsError {
    /// The peer refusal inside a rustls error, if a [`PeerVerifier`] made
    /// it. Handshake errors that quinn reports carry only the text.
    pub fn from_rustls(err: &rustls::Error) -> Option<&TlsError> {
        match err {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => inner
                .downcast_ref::<verifier::Refusal>()
                .map(|refusal| &refusal.0),
            _ => None,
        }
    }
}

/// A key's bytes in the text form of [`PublicKey`](crate::PublicKey) (and of
/// names).
fn key_text(key: &[u8; PUBLIC_KEY_LEN]) -> Name {
    Name::from_bytes(*key)
}

fn kind_list(kinds: &[Kind]) -> String {
    let names: Vec<String> = kinds.iter().map(Kind::to_string).collect();
    names.join(", ")
}

/// The cryptography of GDP links: rustls's ring provider. Handshakes use
/// its TLS 1.3 cipher suites and key exchanges; signatures are ed25519 only,
/// which [`PeerVerifier`] enforces.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration of a listener with `identity`. Client
/// authentication is required: every GDP principal has an identity, and
/// `client_policy` decides which are accepted.
pub fn server_config(
    identity: &Identity,
    client_policy: PeerPolicy,
) -> Result<rustls::ServerConfig, TlsError> {
    let (cert, key) = self_signed_certificate(identity)?;
    let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(PeerVerifier::new(client_policy)))
        .with_single_cert(vec![cert], key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    // No resumption: a resumed session skips the verifier, and links are
    // long-lived enough that a full handshake costs nothing worth saving.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(config)
}

/// The rustls configuration of a dialer with `identity`, accepting servers
/// that satisfy `server_policy`. Connect with [`SERVER_NAME`].
pub fn client_config(
    identity: &Identity,
    server_policy: PeerPolicy,
) -> Result<rustls::ClientConfig, TlsError> {
    let (cert, key) = self_signed_certificate(identity)?;
    let mut config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerVerifier::new(server_policy)))
        .with_client_auth_cert(vec![cert], key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_sni = false;
    config.enable_early_data = false;
    Ok(config)
}

/// The identity a peer proved, from the certificates it presented in a
/// completed handshake (for example quinn's `Connection::peer_identity()`
/// downcast to `Vec<CertificateDer>`). The handshake has already checked the
/// key and the policy; this reads the name and metadata back.
pub fn peer_identity(certs: &[CertificateDer<'_>]) -> Result<PublicIdentity, TlsError> {
    match certs {
        [] => Err(TlsError::NoCertificate),
        [one] => certificate::parse_certificate(one),
        more => Err(TlsError::UnexpectedChain { count: more.len() }),
    }
}

/// The quinn configuration of a listener with `identity`: [`server_config`]
/// wrapped for QUIC, with quinn's default transport settings.
#[cfg(feature = "quinn")]
#[cfg_attr(docsrs, doc(cfg(feature = "quinn")))]
pub fn quinn_server_config(
    identity: &Identity,
    client_policy: PeerPolicy,
) -> Result<quinn::ServerConfig, TlsError> {
    quinn_server_config_offering(identity, client_policy, &[ALPN])
}

/// [`quinn_server_config`] accepting the link protocols `protocols` (ALPN
/// names, most preferred first): the listener picks the first of them
/// that the dialer offers, and refuses a dialer that offers none.
#[cfg(feature = "quinn")]
#[cfg_attr(docsrs, doc(cfg(feature = "quinn")))]
pub fn quinn_server_config_offering(
    identity: &Identity,
    client_policy: PeerPolicy,
    protocols: &[&[u8]],
) -> Result<quinn::ServerConfig, TlsError> {
    let mut tls = server_config(identity, client_policy)?;
    tls.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| {
        TlsError::QuicConfig {
            reason: e.to_string(),
        }
    })?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
}

/// The quinn configuration of a dialer with `identity`: [`client_config`]
/// wrapped for QUIC.
///
/// ```no_run
/// # async fn dial(me: &gdp_certs::Identity, router: gdp_certs::Name, addr: std::net::SocketAddr)
/// #     -> Result<(), Box<dyn std::error::Error>> {
/// use gdp_certs::tls::{self, PeerPolicy};
///
/// let endpoint = quinn::Endpoint::client("0.0.0.0:0".parse()?)?;
/// let config = tls::quinn_client_config(me, PeerPolicy::Expect(router))?;
/// let link = endpoint.connect_with(config, addr, tls::SERVER_NAME)?.await?;
/// assert_eq!(tls::quinn_peer_identity(&link)?.name(), router);
/// # Ok(()) }
/// ```
#[cfg(feature = "quinn")]
#[cfg_attr(docsrs, doc(cfg(feature = "quinn")))]
pub fn quinn_client_config(
    identity: &Identity,
    server_policy: PeerPolicy,
) -> Result<quinn::ClientConfig, TlsError> {
    quinn_client_config_offering(identity, server_policy, &[ALPN])
}

/// [`quinn_client_config`] offering the link protocols `protocols` (ALPN
/// names, most preferred first); [`quinn_protocol`] tells which one the
/// listener chose.
#[cfg(feature = "quinn")]
#[cfg_attr(docsrs, doc(cfg(feature = "quinn")))]
pub fn quinn_client_config_offering(
    identity: &Identity,
    server_policy: PeerPolicy,
    protocols: &[&[u8]],
) -> Result<quinn::ClientConfig, TlsError> {
    let mut tls = client_config(identity, server_policy)?;
    tls.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| {
        TlsError::QuicConfig {
            reason: e.to_string(),
        }
    })?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

/// The link protocol (ALPN name) an established quinn connection speaks.
#[cfg(feature = "quinn")]
#[cfg_attr(docsrs, doc(cfg(feature = "quinn")))]
pub fn quinn_protocol(connection: &quinn::Connection) -> Option<Vec<u8>> {
    connection
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
}

/// The identity the peer of an established quinn connection proved.
#[cfg(feature = "quinn")]
#[cfg_attr(docsrs, doc(cfg(feature = "quinn")))]
pub fn quinn_peer_identity(connection: &quinn::Connection) -> Result<PublicIdentity, TlsError> {
    let certs = connection
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or(TlsError::NoCertificate)?;
    peer_identity(&certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SecretKey, Timestamp};

    fn identity(kind: Kind, seed: u8) -> Identity {
        Identity::from_key(
            SecretKey::from_seed(&[seed; 32]),
            kind,
            "t",
            Timestamp::from_secs(1_800_000_000),
        )
        .expect("valid principal")
    }

    #[test]
    fn configs_are_tls13_ed25519_with_alpn() {
        let id = identity(Kind::Router, 1);
        let server = server_config(&id, PeerPolicy::AnyName).expect("builds");
        assert_eq!(server.alpn_protocols, vec![ALPN.to_vec()]);
        assert_eq!(server.send_tls13_tickets, 0);
        assert!(
            server
                .crypto_provider()
                .cipher_suites
                .iter()
                .any(|s| s.version() == &rustls::version::TLS13)
        );
        let client = client_config(&id, PeerPolicy::Expect(id.name())).expect("builds");
        assert_eq!(client.alpn_protocols, vec![ALPN.to_vec()]);
        assert!(!client.enable_sni);
    }

    #[test]
    fn peer_identity_wants_exactly_one_certificate() {
        let id = identity(Kind::Client, 2);
        let (cert, _) = self_signed_certificate(&id).expect("generates");
        assert_eq!(peer_identity(&[]), Err(TlsError::NoCertificate));
        assert_eq!(
            peer_identity(&[cert.clone(), cert.clone()]),
            Err(TlsError::UnexpectedChain { count: 2 })
        );
        assert_eq!(peer_identity(&[cert]), Ok(id.to_public()));
    }

    #[test]
    fn configs_refuse_non_link_identities() {
        let td = identity(Kind::TrustDomain, 3);
        assert!(matches!(
            server_config(&td, PeerPolicy::AnyName),
            Err(TlsError::NotALinkIdentity {
                kind: Kind::TrustDomain
            })
        ));
        assert!(matches!(
            client_config(&td, PeerPolicy::AnyName),
            Err(TlsError::NotALinkIdentity { .. })
        ));
    }
}
