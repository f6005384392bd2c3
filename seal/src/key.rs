//! Content keys.

use std::fmt;

use rand::RngCore;
use rand::rngs::OsRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of a [`ContentKey`].
pub const CONTENT_KEY_LEN: usize = 32;

/// A symmetric key that seals the records of one epoch of a capsule
/// (XChaCha20-Poly1305).
///
/// The bytes are wiped when the key is dropped, its `Debug` form shows no key
/// material, and comparison takes the same time wherever the keys differ.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ContentKey([u8; CONTENT_KEY_LEN]);

impl ContentKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> ContentKey {
        let mut key = ContentKey([0; CONTENT_KEY_LEN]);
        OsRng.fill_bytes(&mut key.0);
        key
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; CONTENT_KEY_LEN]) -> ContentKey {
        ContentKey(bytes)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; CONTENT_KEY_LEN] {
        &self.0
    }
}

impl PartialEq for ContentKey {
    fn eq(&self, other: &ContentKey) -> bool {
        // blake3's hash comparison is constant-time.
        blake3::Hash::from_bytes(self.0) == blake3::Hash::from_bytes(other.0)
    }
}

impl Eq for ContentKey {}

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_differ() {
        assert_ne!(ContentKey::generate(), ContentKey::generate());
    }

    #[test]
    fn bytes_round_trip() {
        let key = ContentKey::from_bytes([7; 32]);
        assert_eq!(key.as_bytes(), &[7; 32]);
        assert_eq!(key.clone(), key);
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = ContentKey::from_bytes([0xab; 32]);
        let text = format!("{key:?}");
        assert_eq!(text, "ContentKey(..)");
    }
}
