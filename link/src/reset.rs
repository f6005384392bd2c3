//! The key of QUIC stateless resets (RFC 9000, section 10.3) and of the
//! connection IDs, derived from the identity's secret key.
//!
//! A peer that loses a connection's state (it crashed, was killed, or
//! restarted) answers packets of that connection with a stateless reset,
//! whose token proves it issued the connection's IDs. quinn's default key
//! is random per process, so a restarted router's resets were ignored and
//! its peers held their dead links until the idle timeout (30 s by
//! default); worse, the connection IDs are checked with a keyed hash whose
//! key was random too, so the restarted process dropped the old links'
//! packets as invalid before even thinking of a reset. Deriving both keys
//! from the identity gives a process restarted with the same key file the
//! same tokens and the same valid IDs: its peers drop the old link at the
//! first packet they send and dial again. The key is secret as the
//! identity is: blake3's key derivation with a context of its own, so it
//! reveals nothing of the signing key, and is used only as a keyed hash.

use gdp_certs::Identity;
use quinn::crypto::{CryptoError, HmacKey};

/// blake3's key derivation context for the reset key.
const CONTEXT: &str = "gdp-link 2026-12 quic stateless reset key";
/// blake3's key derivation context for the connection ID key.
const CID_CONTEXT: &str = "gdp-link 2026-12 quic connection id key";

/// The key of quinn's hashed connection ID generator for `identity`, so
/// that a restarted process recognizes its earlier IDs (and answers them
/// with a reset).
pub(crate) fn cid_key(identity: &Identity) -> u64 {
    let key = blake3::derive_key(CID_CONTEXT, &identity.secret_key().to_seed());
    let mut first = [0u8; 8];
    first.copy_from_slice(&key[..8]);
    u64::from_le_bytes(first)
}

/// A keyed blake3 hash as quinn's HMAC for reset tokens.
pub(crate) struct ResetKey([u8; 32]);

impl ResetKey {
    /// The reset key of `identity`.
    pub(crate) fn of(identity: &Identity) -> ResetKey {
        ResetKey(blake3::derive_key(
            CONTEXT,
            &identity.secret_key().to_seed(),
        ))
    }
}

impl HmacKey for ResetKey {
    fn sign(&self, data: &[u8], signature_out: &mut [u8]) {
        let tag = blake3::keyed_hash(&self.0, data);
        let n = signature_out.len().min(32);
        signature_out[..n].copy_from_slice(&tag.as_bytes()[..n]);
    }

    fn signature_len(&self) -> usize {
        32
    }

    fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        let tag = blake3::keyed_hash(&self.0, data);
        // blake3::Hash compares in constant time.
        match <[u8; 32]>::try_from(signature) {
            Ok(sig) if tag == blake3::Hash::from(sig) => Ok(()),
            _ => Err(CryptoError),
        }
    }
}

#[cfg(test)]
mod tests {
    use gdp_certs::{Kind, SecretKey, Timestamp};

    use super::*;

    fn identity(seed: u8) -> Identity {
        Identity::from_key(
            SecretKey::from_seed(&[seed; 32]),
            Kind::Router,
            "r",
            Timestamp::from_secs(1_700_000_000),
        )
        .expect("short label")
    }

    fn token(key: &ResetKey, cid: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        key.sign(cid, &mut out);
        out
    }

    #[test]
    fn the_same_identity_gives_the_same_tokens_and_another_does_not() {
        let (a, again, b) = (
            ResetKey::of(&identity(1)),
            ResetKey::of(&identity(1)),
            ResetKey::of(&identity(2)),
        );
        assert_eq!(token(&a, b"cid-1"), token(&again, b"cid-1"));
        assert_ne!(token(&a, b"cid-1"), token(&a, b"cid-2"));
        assert_ne!(token(&a, b"cid-1"), token(&b, b"cid-1"));
        assert!(a.verify(b"cid-1", &token(&again, b"cid-1")).is_ok());
        assert!(a.verify(b"cid-1", &token(&b, b"cid-1")).is_err());
        assert!(a.verify(b"cid-1", &[0u8; 16]).is_err());
        assert_eq!(a.signature_len(), 32);
        assert_eq!(cid_key(&identity(1)), cid_key(&identity(1)));
        assert_ne!(cid_key(&identity(1)), cid_key(&identity(2)));
    }
}
