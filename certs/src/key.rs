//! Ed25519 keys and signatures.
//!
//! Every signature in GDP is made over a domain-separated message:
//! `"gdp-v1/" || context || 0x00 || body`, where the context names the kind of
//! structure being signed (see [`SigContext`]). A signature made for one kind
//! of structure can therefore never be replayed as another.

use std::fmt;

use bytes::{BufMut, BytesMut};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::codec::{Decode, DecodeError, Encode, Reader};

/// Length of an ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// What a signature is for. Part of every signed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigContext {
    /// An advertisement certificate (capsule owner -> server).
    AdCert,
    /// A router certificate (endpoint -> router).
    RtCert,
    /// A route record (router -> directory).
    RouteRecord,
    /// A domain certificate (trust-domain key -> router).
    DomainCert,
    /// A heartbeat over a capsule record (writer).
    Heartbeat,
    /// Proof of a name when attaching to a router.
    Attach,
}

impl SigContext {
    fn tag(self) -> &'static [u8] {
        match self {
            SigContext::AdCert => b"adcert",
            SigContext::RtCert => b"rtcert",
            SigContext::RouteRecord => b"route-record",
            SigContext::DomainCert => b"domain-cert",
            SigContext::Heartbeat => b"heartbeat",
            SigContext::Attach => b"attach",
        }
    }

    fn message(self, body: &[u8]) -> Vec<u8> {
        let tag = self.tag();
        let mut m = Vec::with_capacity(7 + tag.len() + 1 + body.len());
        m.extend_from_slice(b"gdp-v1/");
        m.extend_from_slice(tag);
        m.push(0);
        m.extend_from_slice(body);
        m
    }
}

/// A signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bad signature")]
pub struct BadSignature;

/// An ed25519 public key (a verifying key).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        self.0.as_bytes()
    }

    /// Parses 32 bytes; fails if they are not a valid curve point.
    pub fn from_bytes(bytes: &[u8; PUBLIC_KEY_LEN]) -> Result<Self, DecodeError> {
        VerifyingKey::from_bytes(bytes)
            .map(PublicKey)
            .map_err(|_| DecodeError::Invalid {
                what: "ed25519 public key",
            })
    }

    /// Verifies `sig` over `body` in `context`, rejecting weak keys and
    /// malleable signatures (`verify_strict`).
    pub fn verify(
        &self,
        context: SigContext,
        body: &[u8],
        sig: &Signature,
    ) -> Result<(), BadSignature> {
        let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
        self.0
            .verify_strict(&context.message(body), &sig)
            .map_err(|_| BadSignature)
    }

    /// Verifies many signatures in one batch, which is about twice as fast as
    /// one at a time. All must be valid for this to succeed.
    pub fn verify_batch(
        context: SigContext,
        items: &[(&PublicKey, &[u8], &Signature)],
    ) -> Result<(), BadSignature> {
        let msgs: Vec<Vec<u8>> = items.iter().map(|(_, b, _)| context.message(b)).collect();
        let msg_refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        let sigs: Vec<ed25519_dalek::Signature> = items
            .iter()
            .map(|(_, _, s)| ed25519_dalek::Signature::from_bytes(&s.0))
            .collect();
        let keys: Vec<VerifyingKey> = items.iter().map(|(k, _, _)| k.0).collect();
        // Batch verification is not strict about small-order keys; reject
        // those up front so batch and single verification agree.
        if keys.iter().any(VerifyingKey::is_weak) {
            return Err(BadSignature);
        }
        ed25519_dalek::verify_batch(&msg_refs, &sigs, &keys).map_err(|_| BadSignature)
    }

    /// The underlying dalek key.
    pub fn as_dalek(&self) -> &VerifyingKey {
        &self.0
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicKey({})",
            crate::Name::from_bytes(*self.as_bytes())
        )
    }
}

impl fmt::Display for PublicKey {
    /// Same lowercase base32 text form as a [`Name`](crate::Name).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&crate::Name::from_bytes(*self.as_bytes()), f)
    }
}

impl std::str::FromStr for PublicKey {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let raw: crate::Name = s.parse()?;
        Ok(PublicKey::from_bytes(raw.as_bytes())?)
    }
}

impl Encode for PublicKey {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_slice(self.as_bytes());
    }
    fn encoded_len(&self) -> usize {
        PUBLIC_KEY_LEN
    }
}

impl Decode for PublicKey {
    const WHAT: &'static str = "public key";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        PublicKey::from_bytes(&r.array("public key")?)
    }
}

/// An ed25519 signature (64 bytes, not yet checked against anything).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; SIGNATURE_LEN]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Signature({:02x}{:02x}{:02x}{:02x}..)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

impl Encode for Signature {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_slice(&self.0);
    }
    fn encoded_len(&self) -> usize {
        SIGNATURE_LEN
    }
}

impl Decode for Signature {
    const WHAT: &'static str = "signature";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Signature(r.array("signature")?))
    }
}

/// An ed25519 secret key. Zeroed on drop; never printed.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        SecretKey(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// A key from a 32-byte seed. Deterministic: for tests and key files.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SecretKey(SigningKey::from_bytes(seed))
    }

    /// The 32-byte seed. Handle with care.
    pub fn to_seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `body` in `context`.
    pub fn sign(&self, context: SigContext, body: &[u8]) -> Signature {
        Signature(self.0.sign(&context.message(body)).to_bytes())
    }

    /// The underlying dalek key (for TLS identity).
    pub fn as_dalek(&self) -> &SigningKey {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public: {})", self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_separate_signatures() {
        let k = SecretKey::generate();
        let s = k.sign(SigContext::AdCert, b"body");
        assert_eq!(k.public().verify(SigContext::AdCert, b"body", &s), Ok(()));
        assert_eq!(
            k.public().verify(SigContext::RtCert, b"body", &s),
            Err(BadSignature)
        );
        assert_eq!(
            k.public().verify(SigContext::AdCert, b"bodY", &s),
            Err(BadSignature)
        );
    }

    #[test]
    fn batch_agrees_with_single() {
        let keys: Vec<SecretKey> = (0..8u8).map(|i| SecretKey::from_seed(&[i; 32])).collect();
        let pubs: Vec<PublicKey> = keys.iter().map(SecretKey::public).collect();
        let bodies: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 40]).collect();
        let mut sigs: Vec<Signature> = keys
            .iter()
            .zip(&bodies)
            .map(|(k, b)| k.sign(SigContext::Heartbeat, b))
            .collect();
        let items = |sigs: &[Signature]| -> Result<(), BadSignature> {
            let v: Vec<(&PublicKey, &[u8], &Signature)> = pubs
                .iter()
                .zip(&bodies)
                .zip(sigs)
                .map(|((k, b), s)| (k, b.as_slice(), s))
                .collect();
            PublicKey::verify_batch(SigContext::Heartbeat, &v)
        };
        assert_eq!(items(&sigs), Ok(()));
        sigs[5].0[10] ^= 1;
        assert_eq!(items(&sigs), Err(BadSignature));
    }

    #[test]
    fn public_key_text_round_trips() {
        let p = SecretKey::from_seed(&[3; 32]).public();
        assert_eq!(p.to_string().parse::<PublicKey>().ok(), Some(p));
    }
}
