//! Content keys wrapped to readers with HPKE.
//!
//! A reader is named by its ed25519 [`PublicKey`]. Its key is used for HPKE
//! (RFC 9180) in its X25519 form, the birational map from the Edwards curve
//! to the Montgomery curve that libsodium's
//! `crypto_sign_ed25519_pk_to_curve25519` and age's `ssh-ed25519` recipients
//! use: the public key is the Montgomery u-coordinate of the ed25519 point,
//! and the secret scalar is the first half of SHA-512 of the ed25519 seed
//! (clamped by X25519).
//!
//! A grant is HPKE in base mode with the suite DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256 and ChaCha20-Poly1305, a single-shot seal of the 32 bytes of
//! the content key with
//!
//! ```text
//! info = "GDP v1 capsule content key" || capsule (32) || epoch (u32, big-endian)
//! aad  = the reader's ed25519 public key (32)
//! ```
//!
//! so a grant opens only for the capsule, epoch and reader it was made for.
//!
//! ```text
//! [32]  reader (ed25519 public key)
//! [32]  enc (the HPKE encapsulated key)
//! [48]  wrapped (the content key sealed by HPKE: 32 bytes and a 16-byte tag)
//! ```

use bytes::{BufMut, BytesMut};
use gdp_certs::codec::{Decode, DecodeError, Encode, Reader};
use gdp_certs::{Name, PUBLIC_KEY_LEN, PublicKey, SecretKey};
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use crate::error::SealError;
use crate::key::{CONTENT_KEY_LEN, ContentKey};

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;
type X25519Public = <Kem as hpke::Kem>::PublicKey;
type X25519Secret = <Kem as hpke::Kem>::PrivateKey;
type EncappedKey = <Kem as hpke::Kem>::EncappedKey;

/// Length of an HPKE encapsulated key (an X25519 public key).
pub const ENC_LEN: usize = 32;
/// Length of a content key sealed by HPKE: the key and a 16-byte tag.
pub const WRAPPED_KEY_LEN: usize = CONTENT_KEY_LEN + 16;
/// Encoded length of a [`Grant`].
pub const GRANT_LEN: usize = PUBLIC_KEY_LEN + ENC_LEN + WRAPPED_KEY_LEN;

const INFO_CONTEXT: &[u8] = b"GDP v1 capsule content key";

/// One epoch's content key wrapped to one reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    reader: PublicKey,
    enc: [u8; ENC_LEN],
    wrapped: [u8; WRAPPED_KEY_LEN],
}

/// The HPKE info string of a grant for `capsule` and `epoch`.
fn info(capsule: &Name, epoch: u32) -> [u8; 62] {
    let mut info = [0u8; INFO_CONTEXT.len() + 32 + 4];
    info[..INFO_CONTEXT.len()].copy_from_slice(INFO_CONTEXT);
    info[INFO_CONTEXT.len()..INFO_CONTEXT.len() + 32].copy_from_slice(capsule.as_bytes());
    info[INFO_CONTEXT.len() + 32..].copy_from_slice(&epoch.to_be_bytes());
    info
}

/// The X25519 form of a reader's ed25519 public key.
pub fn x25519_public(reader: &PublicKey) -> [u8; 32] {
    reader.as_dalek().to_montgomery().to_bytes()
}

/// The X25519 form of an ed25519 secret key: the scalar bytes, which X25519
/// clamps. Wiped when dropped.
pub fn x25519_secret(reader: &SecretKey) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(reader.as_dalek().to_scalar_bytes())
}

impl Grant {
    /// Wraps `key`, the content key of `epoch` of `capsule`, to `reader`.
    ///
    /// Fails only if the reader's key cannot take part in key agreement (its
    /// X25519 form is a point of small order).
    pub fn wrap(
        key: &ContentKey,
        capsule: &Name,
        epoch: u32,
        reader: &PublicKey,
    ) -> Result<Grant, SealError> {
        let unusable = || SealError::UnusableReaderKey {
            reader: Box::new(*reader),
        };
        let recipient = X25519Public::from_bytes(&x25519_public(reader)).map_err(|_| unusable())?;
        let (enc, sealed) = hpke::single_shot_seal::<Aead, Kdf, Kem, _>(
            &OpModeS::Base,
            &recipient,
            &info(capsule, epoch),
            key.as_bytes(),
            reader.as_bytes(),
            &mut OsRng,
        )
        .map_err(|_| unusable())?;
        let enc: [u8; ENC_LEN] = enc.to_bytes().into();
        let wrapped: [u8; WRAPPED_KEY_LEN] =
            sealed.as_slice().try_into().map_err(|_| unusable())?;
        Ok(Grant {
            reader: *reader,
            enc,
            wrapped,
        })
    }

    /// Unwraps the content key of `epoch` of `capsule` with the reader's
    /// secret key.
    ///
    /// Fails with [`SealError::NotRecipient`] if `reader` is not the grant's
    /// reader, and with [`SealError::GrantTampered`] if the grant was made for
    /// another capsule or epoch or its bytes were altered.
    pub fn unwrap(
        &self,
        capsule: &Name,
        epoch: u32,
        reader: &SecretKey,
    ) -> Result<ContentKey, SealError> {
        let public = reader.public();
        if public != self.reader {
            return Err(SealError::NotRecipient {
                grant_for: Box::new(self.reader),
                key: Box::new(public),
            });
        }
        let secret = X25519Secret::from_bytes(&x25519_secret(reader)[..])
            .map_err(|_| SealError::GrantTampered)?;
        let enc = EncappedKey::from_bytes(&self.enc).map_err(|_| SealError::GrantTampered)?;
        let opened = Zeroizing::new(
            hpke::single_shot_open::<Aead, Kdf, Kem>(
                &OpModeR::Base,
                &secret,
                &enc,
                &info(capsule, epoch),
                &self.wrapped,
                self.reader.as_bytes(),
            )
            .map_err(|_| SealError::GrantTampered)?,
        );
        let bytes: [u8; CONTENT_KEY_LEN] = opened
            .as_slice()
            .try_into()
            .map_err(|_| SealError::GrantTampered)?;
        Ok(ContentKey::from_bytes(bytes))
    }

    /// Assembles a grant from its parts, as read from the wire. Whether it
    /// opens is known only to its reader.
    pub fn from_parts(
        reader: PublicKey,
        enc: [u8; ENC_LEN],
        wrapped: [u8; WRAPPED_KEY_LEN],
    ) -> Grant {
        Grant {
            reader,
            enc,
            wrapped,
        }
    }

    /// The reader the key is wrapped to.
    pub fn reader(&self) -> &PublicKey {
        &self.reader
    }

    /// The HPKE encapsulated key.
    pub fn enc(&self) -> &[u8; ENC_LEN] {
        &self.enc
    }

    /// The content key sealed by HPKE.
    pub fn wrapped(&self) -> &[u8; WRAPPED_KEY_LEN] {
        &self.wrapped
    }
}

impl Encode for Grant {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_slice(self.reader.as_bytes());
        buf.put_slice(&self.enc);
        buf.put_slice(&self.wrapped);
    }

    fn encoded_len(&self) -> usize {
        GRANT_LEN
    }
}

impl Decode for Grant {
    const WHAT: &'static str = "content key grant";

    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Grant {
            reader: PublicKey::decode_from(r)?,
            enc: r.array("grant encapsulated key")?,
            wrapped: r.array("grant wrapped key")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capsule() -> Name {
        Name::from_bytes([3; 32])
    }

    #[test]
    fn wrap_and_unwrap() {
        let reader = SecretKey::from_seed(&[1; 32]);
        let key = ContentKey::generate();
        let grant = Grant::wrap(&key, &capsule(), 4, &reader.public()).expect("wraps");
        assert_eq!(grant.reader(), &reader.public());
        assert_eq!(grant.to_bytes().len(), GRANT_LEN);
        assert_eq!(grant.unwrap(&capsule(), 4, &reader), Ok(key.clone()));
        let again = Grant::wrap(&key, &capsule(), 4, &reader.public()).expect("wraps");
        assert_ne!(
            grant.enc(),
            again.enc(),
            "each grant has a fresh ephemeral key"
        );
        assert_eq!(again.unwrap(&capsule(), 4, &reader), Ok(key));
    }

    #[test]
    fn decode_round_trip() {
        let reader = SecretKey::from_seed(&[1; 32]);
        let grant =
            Grant::wrap(&ContentKey::generate(), &capsule(), 1, &reader.public()).expect("wraps");
        assert_eq!(Grant::decode(grant.to_bytes()), Ok(grant));
    }

    #[test]
    fn non_reader_cannot_unwrap() {
        let reader = SecretKey::from_seed(&[1; 32]);
        let other = SecretKey::from_seed(&[2; 32]);
        let grant =
            Grant::wrap(&ContentKey::generate(), &capsule(), 1, &reader.public()).expect("wraps");
        assert_eq!(
            grant.unwrap(&capsule(), 1, &other),
            Err(SealError::NotRecipient {
                grant_for: Box::new(reader.public()),
                key: Box::new(other.public()),
            })
        );
        // The same grant relabelled for the other reader still does not open.
        let relabelled = Grant::from_parts(other.public(), *grant.enc(), *grant.wrapped());
        assert_eq!(
            relabelled.unwrap(&capsule(), 1, &other),
            Err(SealError::GrantTampered)
        );
    }

    #[test]
    fn grant_is_bound_to_capsule_and_epoch() {
        let reader = SecretKey::from_seed(&[1; 32]);
        let grant =
            Grant::wrap(&ContentKey::generate(), &capsule(), 1, &reader.public()).expect("wraps");
        assert_eq!(
            grant.unwrap(&Name::from_bytes([4; 32]), 1, &reader),
            Err(SealError::GrantTampered)
        );
        assert_eq!(
            grant.unwrap(&capsule(), 2, &reader),
            Err(SealError::GrantTampered)
        );
    }

    #[test]
    fn altered_grant_does_not_open() {
        let reader = SecretKey::from_seed(&[1; 32]);
        let grant =
            Grant::wrap(&ContentKey::generate(), &capsule(), 1, &reader.public()).expect("wraps");
        let bytes = grant.to_bytes();
        for i in PUBLIC_KEY_LEN * 8..GRANT_LEN * 8 {
            let mut b = bytes.to_vec();
            b[i / 8] ^= 1 << (i % 8);
            let altered = Grant::decode(b).expect("enc and wrapped are any bytes");
            assert_eq!(
                altered.unwrap(&capsule(), 1, &reader),
                Err(SealError::GrantTampered),
                "bit {i}"
            );
        }
    }

    #[test]
    fn x25519_forms_agree() {
        // The X25519 public key derived from the ed25519 public key is the
        // one the derived secret scalar produces.
        let reader = SecretKey::from_seed(&[9; 32]);
        let secret = X25519Secret::from_bytes(&x25519_secret(&reader)[..]).expect("32 bytes");
        let public = <Kem as hpke::Kem>::sk_to_pk(&secret);
        assert_eq!(
            public.to_bytes().as_slice(),
            &x25519_public(&reader.public())[..]
        );
    }

    #[test]
    fn small_order_reader_key_is_refused() {
        // The identity point (y = 1) is a valid encoding of a point of small
        // order; its X25519 form yields an all-zero shared secret.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let reader = PublicKey::from_bytes(&identity).expect("a point on the curve");
        assert_eq!(
            Grant::wrap(&ContentKey::generate(), &capsule(), 1, &reader),
            Err(SealError::UnusableReaderKey {
                reader: Box::new(reader)
            })
        );
    }
}
