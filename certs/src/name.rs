//! Flat 256-bit names.
//!
//! Every capsule, router, server and client is named by 32 bytes that say
//! nothing about where it lives. A name is self-certifying: it is the blake3
//! derive-key hash of its [`Metadata`](crate::Metadata) (see
//! [`Metadata::name`](crate::Metadata::name)).
//!
//! # Text form
//!
//! Names are written as 52 characters of lowercase RFC 4648 base32 without
//! padding (alphabet `a`–`z`, `2`–`7`). It has no punctuation, so a
//! double-click selects a whole name, and no characters that look alike in
//! most fonts (`0`/`o`, `1`/`l` are absent). Parsing accepts exactly this form
//! and nothing else: no uppercase, no padding, no surrounding whitespace.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use bytes::{BufMut, BytesMut};

use crate::codec::{Decode, DecodeError, Encode, Reader};

/// Length of a name in bytes.
pub const NAME_LEN: usize = 32;

/// Length of a name's text form.
pub const NAME_TEXT_LEN: usize = 52;

/// A flat 256-bit GDP name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name([u8; NAME_LEN]);

impl Name {
    /// The all-zero name, used where a PDU has no meaningful source or
    /// destination (for example link-local control traffic).
    pub const ZERO: Name = Name([0; NAME_LEN]);

    /// Wraps raw bytes. Use [`Metadata::name`](crate::Metadata::name) to derive
    /// the name of something; this constructor is for decoding.
    pub const fn from_bytes(bytes: [u8; NAME_LEN]) -> Self {
        Name(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; NAME_LEN] {
        &self.0
    }

    /// A short prefix of the text form, for logs.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(10);
        s
    }
}

fn encoding() -> &'static data_encoding::Encoding {
    static ENC: OnceLock<data_encoding::Encoding> = OnceLock::new();
    ENC.get_or_init(|| {
        let mut spec = data_encoding::Specification::new();
        spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
        spec.check_trailing_bits = true;
        spec.encoding()
            .expect("the lowercase base32 specification is statically valid")
    })
}

/// Why a string is not a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameParseError {
    /// The string has the wrong length.
    #[error("a GDP name is {NAME_TEXT_LEN} characters of lowercase base32, got {0} characters")]
    Length(usize),
    /// The string has a character outside the alphabet, or non-zero padding bits.
    #[error(
        "a GDP name is lowercase base32 (a-z, 2-7); bad character or trailing bits at position {0}"
    )]
    Character(usize),
}

impl FromStr for Name {
    type Err = NameParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != NAME_TEXT_LEN {
            return Err(NameParseError::Length(s.chars().count()));
        }
        let mut out = [0u8; NAME_LEN];
        match encoding().decode_mut(s.as_bytes(), &mut out) {
            Ok(NAME_LEN) => Ok(Name(out)),
            Ok(_) => Err(NameParseError::Length(s.len())),
            Err(e) => Err(NameParseError::Character(e.error.position)),
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encoding().encode(&self.0))
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

impl Encode for Name {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_slice(&self.0);
    }
    fn encoded_len(&self) -> usize {
        NAME_LEN
    }
}

impl Decode for Name {
    const WHAT: &'static str = "name";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Name(r.array("name")?))
    }
}

impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn text_round_trips(bytes in any::<[u8; 32]>()) {
            let n = Name::from_bytes(bytes);
            let s = n.to_string();
            prop_assert_eq!(s.len(), NAME_TEXT_LEN);
            prop_assert_eq!(s.parse::<Name>(), Ok(n));
        }

        #[test]
        fn parse_never_panics(s in ".{0,60}") {
            let _ = s.parse::<Name>();
        }
    }

    #[test]
    fn rejects_other_forms() {
        let good = Name::from_bytes([7; 32]).to_string();
        assert!(matches!(
            good.to_uppercase().parse::<Name>(),
            Err(NameParseError::Character(0))
        ));
        assert!(matches!(
            good[..51].parse::<Name>(),
            Err(NameParseError::Length(51))
        ));
        assert!(matches!(
            format!(" {}", &good[1..]).parse::<Name>(),
            Err(NameParseError::Character(0))
        ));
        // The last character carries 4 padding bits that must be zero.
        let mut bad = good.clone();
        bad.pop();
        bad.push('7');
        assert!(matches!(
            bad.parse::<Name>(),
            Err(NameParseError::Character(_))
        ));
    }
}
