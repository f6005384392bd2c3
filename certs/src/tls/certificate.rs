//! The self-signed X.509 certificate a GDP principal presents on a link, and
//! the parser that turns a peer's certificate into a [`PublicIdentity`].
//!
//! # Certificate profile
//!
//! - Subject public key: the principal's ed25519 identity key (RFC 8410,
//!   algorithm `1.3.101.112`, no parameters). The certificate is self-signed
//!   with that key.
//! - Extension [`METADATA_EXTENSION_OID`], not critical: the principal's
//!   canonical [`Metadata`] encoding, wrapped in one DER `OCTET STRING` (an
//!   extension value is DER by definition). Exactly one such extension.
//! - Subject: `CN=<name>` for people reading a certificate dump; ignored by
//!   verifiers.
//! - Validity: 1975-01-01 to 4096-01-01. The dates authenticate nothing and
//!   are never checked: what authenticates a peer is the TLS 1.3
//!   `CertificateVerify` signature made with the key in the certificate,
//!   which must be the key in the metadata, which hashes to the name.
//!   Whether a name is still welcome on a link is policy, decided above TLS
//!   with caller-supplied time (route records and certificates expire).
//!
//! The self-signature is not checked either: the handshake signature covers
//! the whole `Certificate` message (it signs the transcript), metadata
//! extension included, so it already proves that the key holder sent this
//! metadata.

use rcgen::{CertificateParams, CustomExtension, DnType, KeyPair, PKCS_ED25519};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::TlsError;
use crate::codec::Decode;
use crate::{Identity, Kind, MAX_METADATA_LEN, Metadata, PublicIdentity, PublicKey, SecretKey};

/// Object identifier of the X.509 extension that carries a principal's
/// canonical metadata encoding: `1.3.6.1.4.1.4670544.1.1`.
///
/// The arc is `iso.org.dod.internet.private.enterprise` followed by
/// `4670544` (`0x474450`, "GDP" in ASCII), then `1` (TLS) and `1`
/// (metadata). GDP has no IANA Private Enterprise Number yet; enterprise
/// numbers are assigned in sequence and are nowhere near this value.
/// Registering one means changing this constant, which old and new peers
/// would not agree on, so do it before the first release.
///
/// Collisions cannot weaken authentication: a certificate is accepted only if
/// the metadata in this extension holds the very key that signed the
/// handshake, whatever else some other software might put under this OID.
pub const METADATA_EXTENSION_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 4_670_544, 1, 1];

/// Largest peer certificate the parser looks at, in bytes. A GDP certificate
/// is about 300 bytes plus the metadata (at most [`MAX_METADATA_LEN`]).
pub const MAX_CERTIFICATE_LEN: usize = 8 * 1024;

/// Object identifier of ed25519 keys (RFC 8410).
const ED25519_OID: &[u64] = &[1, 3, 101, 112];

/// DER tag of an `OCTET STRING`.
const DER_OCTET_STRING: u8 = 0x04;

/// The self-signed certificate and the PKCS#8 private key of `identity`, as
/// rustls wants them.
///
/// Only routers, capsule servers and clients hold links; any other kind is
/// refused with [`TlsError::NotALinkPrincipal`].
pub fn self_signed_certificate(
    identity: &Identity,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    if !is_link_principal(identity.metadata().kind()) {
        return Err(TlsError::NotALinkIdentity {
            kind: identity.metadata().kind(),
        });
    }
    let pkcs8 = pkcs8(identity.secret_key())?;
    let key_pair = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &PKCS_ED25519)
        .map_err(|e| generate_error(&e))?;
    let cert = build(
        &key_pair,
        &identity.name().to_string(),
        vec![metadata_extension(identity.metadata())],
    )?;
    Ok((cert, PrivateKeyDer::Pkcs8(pkcs8)))
}

/// Parses a peer's end-entity certificate into the identity it proves.
///
/// Checks everything the certificate itself can show: well-formed X.509 with
/// nothing after it, an ed25519 key that is not weak, exactly one
/// non-critical metadata extension holding valid metadata of a link principal
/// whose key is the certificate's key. That the peer holds the key is the
/// handshake's job, not this function's.
pub(crate) fn parse_certificate(der: &[u8]) -> Result<PublicIdentity, TlsError> {
    if der.len() > MAX_CERTIFICATE_LEN {
        return Err(TlsError::CertificateTooLong {
            len: der.len(),
            max: MAX_CERTIFICATE_LEN,
        });
    }
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| TlsError::BadCertificate {
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(TlsError::BadCertificate {
            reason: format!("{} trailing bytes after the certificate", rest.len()),
        });
    }
    let cert_key = ed25519_key(&cert)?;

    let mut found = None;
    for ext in cert.extensions() {
        let ours = ext
            .oid
            .iter()
            .is_some_and(|arcs| arcs.eq(METADATA_EXTENSION_OID.iter().copied()));
        if !ours {
            continue;
        }
        if found.is_some() {
            return Err(TlsError::MalformedExtension {
                reason: "the metadata extension appears twice",
            });
        }
        if ext.critical {
            return Err(TlsError::MalformedExtension {
                reason: "the metadata extension is marked critical",
            });
        }
        found = Some(ext.value);
    }
    let value = found.ok_or(TlsError::MissingMetadata)?;
    let body = der_octet_string_contents(value)?;
    let metadata = Metadata::decode(body.to_vec()).map_err(TlsError::InvalidMetadata)?;
    if !is_link_principal(metadata.kind()) {
        return Err(TlsError::NotALinkPrincipal {
            kind: metadata.kind(),
        });
    }
    if metadata.key() != &cert_key {
        return Err(TlsError::KeyMismatch {
            certificate: *cert_key.as_bytes(),
            metadata: *metadata.key().as_bytes(),
        });
    }
    Ok(PublicIdentity::new(metadata))
}

/// Whether `kind` holds links. A capsule does not (its key is its owner's,
/// who must not pass for the capsule), nor does a trust domain (its key only
/// signs domain certificates).
fn is_link_principal(kind: Kind) -> bool {
    matches!(kind, Kind::Router | Kind::Server | Kind::Client)
}

/// The certificate's subject key, which must be a valid, non-weak ed25519
/// key.
fn ed25519_key(cert: &X509Certificate<'_>) -> Result<PublicKey, TlsError> {
    let spki = cert.public_key();
    let algorithm = &spki.algorithm;
    let is_ed25519 = algorithm
        .algorithm
        .iter()
        .is_some_and(|arcs| arcs.eq(ED25519_OID.iter().copied()));
    if !is_ed25519 || algorithm.parameters.is_some() {
        return Err(TlsError::NotEd25519 {
            algorithm: algorithm.algorithm.to_id_string(),
        });
    }
    let bits = &spki.subject_public_key;
    let raw: &[u8; 32] = bits
        .data
        .as_ref()
        .try_into()
        .ok()
        .filter(|_| bits.unused_bits == 0)
        .ok_or(TlsError::BadCertificate {
            reason: "an ed25519 key is 32 bytes".to_owned(),
        })?;
    let key = PublicKey::from_bytes(raw).map_err(|_| TlsError::BadCertificate {
        reason: "the ed25519 key is not a curve point".to_owned(),
    })?;
    if key.as_dalek().is_weak() {
        return Err(TlsError::WeakKey);
    }
    Ok(key)
}

/// `key` in PKCS#8, the form both rcgen and rustls load.
fn pkcs8(key: &SecretKey) -> Result<PrivatePkcs8KeyDer<'static>, TlsError> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let doc = key
        .as_dalek()
        .to_pkcs8_der()
        .map_err(|e| TlsError::Generate {
            reason: format!("PKCS#8 encoding of the identity key: {e}"),
        })?;
    Ok(PrivatePkcs8KeyDer::from(doc.as_bytes().to_vec()))
}

/// The metadata extension for `metadata`.
pub(crate) fn metadata_extension(metadata: &Metadata) -> CustomExtension {
    use crate::codec::Encode;
    CustomExtension::from_oid_content(
        METADATA_EXTENSION_OID,
        der_octet_string(&metadata.to_bytes()),
    )
}

/// A self-signed certificate for `key_pair` with `extensions`. Separate from
/// [`self_signed_certificate`] so that tests can build broken ones.
pub(crate) fn build(
    key_pair: &KeyPair,
    common_name: &str,
    extensions: Vec<CustomExtension>,
) -> Result<CertificateDer<'static>, TlsError> {
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| generate_error(&e))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.custom_extensions = extensions;
    let cert = params
        .self_signed(key_pair)
        .map_err(|e| generate_error(&e))?;
    Ok(cert.der().clone())
}

fn generate_error(e: &rcgen::Error) -> TlsError {
    TlsError::Generate {
        reason: e.to_string(),
    }
}

/// `content` as a DER `OCTET STRING`.
pub(crate) fn der_octet_string(content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 4);
    out.push(DER_OCTET_STRING);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// The contents of one DER `OCTET STRING` that fills `input` exactly, with a
/// minimal length encoding (so that every metadata has one extension value).
fn der_octet_string_contents(input: &[u8]) -> Result<&[u8], TlsError> {
    let bad = |reason| TlsError::MalformedExtension { reason };
    let (&tag, rest) = input
        .split_first()
        .ok_or(bad("the metadata extension is empty"))?;
    if tag != DER_OCTET_STRING {
        return Err(bad("the metadata extension is not a DER OCTET STRING"));
    }
    let (&first, rest) = rest
        .split_first()
        .ok_or(bad("the metadata extension has no length"))?;
    let (len, body) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => match rest.split_first() {
            Some((&n, body)) if n >= 0x80 => (usize::from(n), body),
            _ => return Err(bad("the metadata extension length is not minimal DER")),
        },
        0x82 => match rest {
            [hi, lo, body @ ..] if *hi != 0 => (usize::from(*hi) << 8 | usize::from(*lo), body),
            _ => return Err(bad("the metadata extension length is not minimal DER")),
        },
        _ => return Err(bad("the metadata extension is too long")),
    };
    if len > MAX_METADATA_LEN {
        return Err(bad("the metadata extension is too long"));
    }
    if body.len() != len {
        return Err(bad(
            "the metadata extension length does not match its contents",
        ));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Name, Timestamp};
    use proptest::prelude::*;

    fn identity(kind: Kind, seed: u8) -> Identity {
        Identity::from_key(
            SecretKey::from_seed(&[seed; 32]),
            kind,
            format!("{kind}-{seed}"),
            Timestamp::from_secs(1_800_000_000),
        )
        .expect("valid principal")
    }

    fn ed25519_pair() -> KeyPair {
        KeyPair::generate_for(&PKCS_ED25519).expect("ring generates ed25519 keys")
    }

    #[test]
    fn own_certificate_parses_to_own_identity() {
        for kind in [Kind::Router, Kind::Server, Kind::Client] {
            let id = identity(kind, 1);
            let (cert, key) = self_signed_certificate(&id).expect("generates");
            assert!(matches!(key, PrivateKeyDer::Pkcs8(_)));
            assert!(cert.len() < MAX_CERTIFICATE_LEN);
            let peer = parse_certificate(&cert).expect("parses");
            assert_eq!(peer, id.to_public());
            assert_eq!(peer.name(), id.name());
        }
    }

    #[test]
    fn metadata_under_another_key_is_a_key_mismatch() {
        let victim = identity(Kind::Router, 7);
        let pair = ed25519_pair();
        let cert = build(&pair, "x", vec![metadata_extension(victim.metadata())]).expect("builds");
        let err = parse_certificate(&cert).expect_err("must refuse");
        assert!(
            matches!(err, TlsError::KeyMismatch { metadata, .. } if &metadata == victim.public_key().as_bytes()),
            "{err:?}"
        );
        assert!(err.to_string().contains(&victim.public_key().to_string()));
    }

    #[test]
    fn missing_extension_is_refused() {
        let cert = build(&ed25519_pair(), "x", vec![]).expect("builds");
        assert!(matches!(
            parse_certificate(&cert),
            Err(TlsError::MissingMetadata)
        ));
    }

    #[test]
    fn garbage_extension_is_refused() {
        let pair = ed25519_pair();
        let garbage = CustomExtension::from_oid_content(
            METADATA_EXTENSION_OID,
            der_octet_string(b"not metadata at all"),
        );
        let cert = build(&pair, "x", vec![garbage]).expect("builds");
        assert!(matches!(
            parse_certificate(&cert),
            Err(TlsError::InvalidMetadata(_))
        ));

        let unwrapped = CustomExtension::from_oid_content(METADATA_EXTENSION_OID, vec![0x30, 0x00]);
        let cert = build(&pair, "x", vec![unwrapped]).expect("builds");
        assert!(matches!(
            parse_certificate(&cert),
            Err(TlsError::MalformedExtension { .. })
        ));
    }

    #[test]
    fn critical_or_duplicate_extension_is_refused() {
        let id = identity(Kind::Client, 3);
        let pkcs8 = pkcs8(id.secret_key()).expect("encodes");
        let pair = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &PKCS_ED25519).expect("loads");

        let mut critical = metadata_extension(id.metadata());
        critical.set_criticality(true);
        let cert = build(&pair, "x", vec![critical]).expect("builds");
        assert!(matches!(
            parse_certificate(&cert),
            Err(TlsError::MalformedExtension {
                reason: "the metadata extension is marked critical"
            })
        ));

        let twice = vec![
            metadata_extension(id.metadata()),
            metadata_extension(id.metadata()),
        ];
        let cert = build(&pair, "x", twice).expect("builds");
        assert_eq!(
            parse_certificate(&cert),
            Err(TlsError::MalformedExtension {
                reason: "the metadata extension appears twice"
            })
        );
    }

    #[test]
    fn non_ed25519_key_is_refused() {
        let id = identity(Kind::Router, 4);
        let pair =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ring generates p256");
        let cert = build(&pair, "x", vec![metadata_extension(id.metadata())]).expect("builds");
        let err = parse_certificate(&cert).expect_err("must refuse");
        assert!(
            matches!(&err, TlsError::NotEd25519 { algorithm } if algorithm == "1.2.840.10045.2.1"),
            "{err:?}"
        );
    }

    #[test]
    fn non_link_principals_are_refused() {
        let td = identity(Kind::TrustDomain, 5);
        assert!(matches!(
            self_signed_certificate(&td),
            Err(TlsError::NotALinkIdentity {
                kind: Kind::TrustDomain
            })
        ));

        // A capsule owner cannot present the capsule's metadata as a peer.
        let owner = SecretKey::from_seed(&[6; 32]);
        let capsule = Metadata::capsule(
            owner.public(),
            vec![owner.public()],
            "c",
            Timestamp(1),
            vec![Name::ZERO],
        )
        .expect("valid capsule");
        let pkcs8 = pkcs8(&owner).expect("encodes");
        let pair = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &PKCS_ED25519).expect("loads");
        let cert = build(&pair, "x", vec![metadata_extension(&capsule)]).expect("builds");
        assert!(matches!(
            parse_certificate(&cert),
            Err(TlsError::NotALinkPrincipal {
                kind: Kind::Capsule
            })
        ));
    }

    #[test]
    fn weak_key_is_refused() {
        let id = identity(Kind::Router, 9);
        let (cert, _) = self_signed_certificate(&id).expect("generates");
        let key = id.public_key();
        let at = cert
            .windows(32)
            .position(|w| w == key.as_bytes())
            .expect("the key appears in the certificate");
        // The identity point, of order 1: every signature "verifies" under it.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let mut bytes = cert.to_vec();
        bytes[at..at + 32].copy_from_slice(&weak);
        assert_eq!(parse_certificate(&bytes), Err(TlsError::WeakKey));
    }

    #[test]
    fn trailing_bytes_and_oversize_are_refused() {
        let (cert, _) = self_signed_certificate(&identity(Kind::Server, 8)).expect("generates");
        let mut long = cert.to_vec();
        long.push(0);
        assert!(matches!(
            parse_certificate(&long),
            Err(TlsError::BadCertificate { .. })
        ));
        let huge = vec![0x30; MAX_CERTIFICATE_LEN + 1];
        assert_eq!(
            parse_certificate(&huge),
            Err(TlsError::CertificateTooLong {
                len: MAX_CERTIFICATE_LEN + 1,
                max: MAX_CERTIFICATE_LEN
            })
        );
    }

    #[test]
    fn der_octet_string_lengths_are_minimal() {
        for len in [0usize, 1, 127, 128, 255, 256, MAX_METADATA_LEN] {
            let content = vec![0xab; len];
            let der = der_octet_string(&content);
            assert_eq!(
                der_octet_string_contents(&der).expect("round trips"),
                &content[..]
            );
        }
        // 5 bytes in long form: valid BER, not DER.
        assert!(der_octet_string_contents(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5]).is_err());
        assert!(der_octet_string_contents(&[0x04, 0x82, 0x00, 0x05, 1, 2, 3, 4, 5]).is_err());
        assert!(der_octet_string_contents(&[0x04, 0x02, 1]).is_err());
        assert!(der_octet_string_contents(&[0x04, 0x01, 1, 2]).is_err());
        assert!(der_octet_string_contents(&[0x04, 0x83, 1, 0, 0]).is_err());
        assert!(der_octet_string_contents(&[]).is_err());
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_certificate(&bytes);
        }

        #[test]
        fn a_mutated_certificate_never_panics_and_never_splits_key_from_metadata(
            seed in any::<u8>(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let id = identity(Kind::Router, seed);
            let (cert, _) = self_signed_certificate(&id).expect("generates");
            let mut bytes = cert.to_vec();
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            if let Ok(peer) = parse_certificate(&bytes) {
                // Whatever survived the edits, the identity is self-consistent
                // and its key is the certificate's key.
                prop_assert_eq!(peer.name(), peer.metadata().name());
                let (_, parsed) = X509Certificate::from_der(&bytes).expect("parsed above");
                prop_assert_eq!(
                    parsed.public_key().subject_public_key.data.as_ref(),
                    peer.metadata().key().as_bytes().as_slice()
                );
                prop_assert!(matches!(
                    peer.metadata().kind(),
                    Kind::Router | Kind::Server | Kind::Client
                ));
            }
        }

        #[test]
        fn der_octet_string_contents_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(body) = der_octet_string_contents(&bytes) {
                prop_assert_eq!(der_octet_string(body), bytes);
            }
        }
    }
}
