//! XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03): HChaCha20 derives a
//! subkey from the key and the first 16 bytes of the 24-byte nonce, and
//! ChaCha20-Poly1305 (RFC 8439) seals under that subkey with the nonce
//! `0u32 || nonce[16..24]`.
//!
//! HChaCha20 comes from the `chacha20` crate and ChaCha20-Poly1305 from
//! `ring`, whose assembly keeps the fixed cost of a short record low (the
//! AVX2 Poly1305 of the RustCrypto crates spends most of a 64-byte record
//! on setting up). The result is byte for byte the XChaCha20-Poly1305 of
//! the `chacha20poly1305` crate, which a test checks.

use chacha20::cipher::consts::U10;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag as RingTag, UnboundKey};
use zeroize::Zeroizing;

/// Bytes of a nonce.
pub(crate) const NONCE_LEN: usize = 24;
/// Bytes of a tag.
pub(crate) const TAG_LEN: usize = 16;

/// Bytes of the nonce prefix that, with the key, derives a subkey.
pub(crate) const PREFIX_LEN: usize = 16;
/// Bytes of the nonce that follow the prefix.
pub(crate) const TAIL_LEN: usize = NONCE_LEN - PREFIX_LEN;

/// The ChaCha20-Poly1305 key that a key and a nonce prefix stand for:
/// every nonce that starts with the prefix seals and opens under it, so a
/// run of records sharing a prefix derives it once.
pub(crate) struct Subkey(LessSafeKey);

impl Subkey {
    /// HChaCha20 of `key` and `prefix`.
    pub(crate) fn derive(key: &[u8; 32], prefix: &[u8; PREFIX_LEN]) -> Subkey {
        let derived = Zeroizing::new(<[u8; 32]>::from(chacha20::hchacha::<U10>(
            key.into(),
            prefix.into(),
        )));
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &derived[..])
            .expect("ChaCha20-Poly1305 takes 32-byte keys");
        Subkey(LessSafeKey::new(unbound))
    }

    /// Encrypts `buf` in place under the nonce `prefix || tail`; returns the
    /// tag.
    pub(crate) fn seal_in_place(
        &self,
        tail: &[u8; TAIL_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let tag: RingTag = self
            .0
            .seal_in_place_separate_tag(inner_nonce(tail), Aad::from(aad), buf)
            // The only failure is a plaintext over ChaCha20's 2^38-byte limit.
            .expect("plaintext within ChaCha20-Poly1305's limit");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Decrypts `buf` in place if `tag` authenticates it (and `aad`) under
    /// the nonce `prefix || tail`; on failure `buf` holds nothing of the
    /// plaintext.
    pub(crate) fn open_in_place(
        &self,
        tail: &[u8; TAIL_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), ()> {
        let tag = RingTag::from(*tag);
        let len = buf.len();
        match self
            .0
            .open_in_place_separate_tag(inner_nonce(tail), Aad::from(aad), tag, buf, 0..)
        {
            Ok(plain) if plain.len() == len => Ok(()),
            _ => {
                buf.fill(0);
                Err(())
            }
        }
    }
}

/// The ChaCha20-Poly1305 nonce of an XChaCha20 nonce's tail: `0u32 || tail`.
fn inner_nonce(tail: &[u8; TAIL_LEN]) -> Nonce {
    let mut inner = [0u8; 12];
    inner[4..].copy_from_slice(tail);
    Nonce::assume_unique_for_key(inner)
}

/// The prefix and the tail of `nonce`.
pub(crate) fn split_nonce(nonce: &[u8; NONCE_LEN]) -> (&[u8; PREFIX_LEN], &[u8; TAIL_LEN]) {
    let (prefix, tail) = nonce.split_at(PREFIX_LEN);
    (
        prefix.try_into().expect("16 bytes"),
        tail.try_into().expect("8 bytes"),
    )
}

/// Encrypts `buf` in place; returns the tag.
#[cfg(test)]
pub(crate) fn seal_in_place(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
) -> [u8; TAG_LEN] {
    let (prefix, tail) = split_nonce(nonce);
    Subkey::derive(key, prefix).seal_in_place(tail, aad, buf)
}

/// Decrypts `buf` in place if `tag` authenticates it (and `aad`); on
/// failure `buf` holds nothing of the plaintext.
#[cfg(test)]
pub(crate) fn open_in_place(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), ()> {
    let (prefix, tail) = split_nonce(nonce);
    Subkey::derive(key, prefix).open_in_place(tail, aad, buf, tag)
}

#[cfg(test)]
mod tests {
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The same bytes as the reference XChaCha20-Poly1305, both ways.
        #[test]
        fn agrees_with_the_reference_implementation(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; 24]>(),
            aad in proptest::collection::vec(any::<u8>(), 0..80),
            plaintext in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let reference = XChaCha20Poly1305::new(Key::from_slice(&key));
            let mut expected = plaintext.clone();
            let expected_tag = reference
                .encrypt_in_place_detached(XNonce::from_slice(&nonce), &aad, &mut expected)
                .expect("within limits");
            let mut ours = plaintext.clone();
            let tag = seal_in_place(&key, &nonce, &aad, &mut ours);
            prop_assert_eq!(&ours, &expected);
            prop_assert_eq!(&tag[..], &expected_tag[..]);
            prop_assert_eq!(open_in_place(&key, &nonce, &aad, &mut ours, &tag), Ok(()));
            prop_assert_eq!(ours, plaintext);
        }
    }

    /// The test vector of draft-irtf-cfrg-xchacha-03, appendix A.3.1.
    #[test]
    fn the_draft_test_vector() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
                .collect()
        };
        let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let aad = hex("50515253c0c1c2c3c4c5c6c7");
        let key: [u8; 32] = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
            .try_into()
            .expect("32 bytes");
        let nonce: [u8; 24] = hex("404142434445464748494a4b4c4d4e4f5051525354555657")
            .try_into()
            .expect("24 bytes");
        let mut buf = plaintext.to_vec();
        let tag = seal_in_place(&key, &nonce, &aad, &mut buf);
        assert_eq!(
            buf,
            hex(concat!(
                "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb",
                "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452",
                "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9",
                "21f9664c97637da9768812f615c68b13b52e"
            ))
        );
        assert_eq!(tag.to_vec(), hex("c0875924c1c7987947deafd8780acf49"));
        let mut altered = buf.clone();
        altered[0] ^= 1;
        assert_eq!(
            open_in_place(&key, &nonce, &aad, &mut altered, &tag),
            Err(())
        );
        assert!(altered.iter().all(|b| *b == 0));
    }
}
