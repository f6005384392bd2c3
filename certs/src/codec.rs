//! The one codec style every GDP structure uses.
//!
//! Encoding appends to a [`BytesMut`]; decoding reads from a [`Reader`] over
//! [`Bytes`], so that payloads are sliced out of the input without a copy.
//! Every read is bounds-checked and returns a small [`DecodeError`];
//! length-prefixed fields are read through bounded sub-readers and checked
//! against a caller-given limit *before* anything is allocated; a top-level
//! decode rejects trailing bytes ([`Reader::finish`]).
//!
//! All integers are big-endian. Variable-length fields carry an explicit
//! length prefix (`u8`, `u16` or `u32`, chosen per field) and every collection
//! has a named maximum count.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Why bytes could not be decoded. Small and `Copy`, so decoders stay cheap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended while `what` was being read.
    #[error("truncated input while reading {what}")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// Bytes were left over after a complete structure.
    #[error("{count} trailing bytes after {what}")]
    TrailingBytes {
        /// The structure that was complete.
        what: &'static str,
        /// How many bytes were left.
        count: usize,
    },
    /// A length or count field exceeded its limit.
    #[error("{what} is {len}, over the limit of {max}")]
    TooLong {
        /// The field.
        what: &'static str,
        /// The value found.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An enumeration tag, version or flag had a value this code does not know.
    #[error("unknown {what} value {value}")]
    UnknownValue {
        /// The field.
        what: &'static str,
        /// The value found.
        value: u64,
    },
    /// A field is well-formed but its value is not allowed.
    #[error("invalid {what}")]
    Invalid {
        /// The field or rule.
        what: &'static str,
    },
}

/// A type with one canonical binary encoding.
pub trait Encode {
    /// Appends the encoding to `buf`.
    fn encode(&self, buf: &mut BytesMut);

    /// The exact number of bytes [`Encode::encode`] appends.
    fn encoded_len(&self) -> usize;

    /// The encoding as a fresh buffer of exactly [`Encode::encoded_len`] bytes.
    fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        buf.freeze()
    }
}

/// A type that can be read back from its canonical encoding.
pub trait Decode: Sized {
    /// Name used in errors.
    const WHAT: &'static str;

    /// Reads one value from `r`, leaving the rest of the input in `r`.
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError>;

    /// Decodes a complete value from `bytes`; trailing bytes are an error.
    fn decode(bytes: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes.into());
        let v = Self::decode_from(&mut r)?;
        r.finish(Self::WHAT)?;
        Ok(v)
    }
}

/// A bounds-checked reader over shared bytes.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    /// A reader over `buf`.
    pub fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Succeeds only if every byte was read.
    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                what,
                count: self.buf.len(),
            })
        }
    }

    /// Takes the next `n` bytes without copying.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated { what });
        }
        Ok(self.buf.split_to(n))
    }

    /// Takes everything left.
    pub fn take_rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Reads a fixed-size array. It copies from the buffer in place: no
    /// second handle on the shared bytes is made and dropped, which would
    /// cost two atomic operations per field.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let Some(head) = self.buf.first_chunk::<N>() else {
            return Err(DecodeError::Truncated { what });
        };
        let out = *head;
        self.buf.advance(N);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// Reads a big-endian `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    /// Reads a big-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// Reads a big-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// Reads a boolean encoded as one byte, 0 or 1; any other value is an error.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::UnknownValue {
                what,
                value: v.into(),
            }),
        }
    }

    fn checked_len(len: usize, max: usize, what: &'static str) -> Result<usize, DecodeError> {
        if len > max {
            Err(DecodeError::TooLong { what, len, max })
        } else {
            Ok(len)
        }
    }

    /// Reads a `u8` length prefix (at most `max`) and that many bytes.
    pub fn bytes_u8(&mut self, max: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = Self::checked_len(self.u8(what)?.into(), max, what)?;
        self.take(len, what)
    }

    /// Reads a `u16` length prefix (at most `max`) and that many bytes.
    pub fn bytes_u16(&mut self, max: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = Self::checked_len(self.u16(what)?.into(), max, what)?;
        self.take(len, what)
    }

    /// Reads a `u32` length prefix (at most `max`) and that many bytes.
    pub fn bytes_u32(&mut self, max: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = usize::try_from(self.u32(what)?).unwrap_or(usize::MAX);
        let len = Self::checked_len(len, max, what)?;
        self.take(len, what)
    }

    /// Reads a UTF-8 string with a `u8` length prefix (at most `max` bytes).
    pub fn string_u8(&mut self, max: usize, what: &'static str) -> Result<String, DecodeError> {
        let b = self.bytes_u8(max, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Invalid { what })
    }

    /// Reads a `u32`-length-prefixed sub-structure (at most `max` bytes) and
    /// decodes it completely: the sub-reader must be consumed exactly.
    pub fn nested<T: Decode>(&mut self, max: usize) -> Result<T, DecodeError> {
        let b = self.bytes_u32(max, T::WHAT)?;
        T::decode(b)
    }

    /// Reads a `u16` count (at most `max`) followed by that many values.
    ///
    /// The vector is allocated for at most as many items as the remaining
    /// input could possibly hold, so a lying count cannot force a large
    /// allocation.
    pub fn vec_u16<T: Decode>(&mut self, max: usize) -> Result<Vec<T>, DecodeError> {
        let n = Self::checked_len(self.u16(T::WHAT)?.into(), max, T::WHAT)?;
        let mut out = Vec::with_capacity(n.min(self.remaining()));
        for _ in 0..n {
            out.push(T::decode_from(self)?);
        }
        Ok(out)
    }

    /// Reads a `u32` count (at most `max`) followed by that many values.
    pub fn vec_u32<T: Decode>(&mut self, max: usize) -> Result<Vec<T>, DecodeError> {
        let n = usize::try_from(self.u32(T::WHAT)?).unwrap_or(usize::MAX);
        let n = Self::checked_len(n, max, T::WHAT)?;
        let mut out = Vec::with_capacity(n.min(self.remaining()));
        for _ in 0..n {
            out.push(T::decode_from(self)?);
        }
        Ok(out)
    }
}

/// Helpers for writing the encodings [`Reader`] reads.
///
/// The `put_*` length-prefixed writers take values the caller has already
/// bounded (by construction or by the matching decode limit); they do not
/// truncate. Lengths past the prefix width are a programming error and panic
/// in debug builds.
pub mod put {
    use super::{BufMut, BytesMut, Encode};

    /// Writes a `u8` length prefix and the bytes.
    pub fn bytes_u8(buf: &mut BytesMut, b: &[u8]) {
        debug_assert!(b.len() <= usize::from(u8::MAX));
        buf.put_u8(b.len() as u8);
        buf.put_slice(b);
    }

    /// Writes a `u16` length prefix and the bytes.
    pub fn bytes_u16(buf: &mut BytesMut, b: &[u8]) {
        debug_assert!(b.len() <= usize::from(u16::MAX));
        buf.put_u16(b.len() as u16);
        buf.put_slice(b);
    }

    /// Writes a `u32` length prefix and the bytes.
    pub fn bytes_u32(buf: &mut BytesMut, b: &[u8]) {
        debug_assert!(u32::try_from(b.len()).is_ok());
        buf.put_u32(b.len() as u32);
        buf.put_slice(b);
    }

    /// Writes a `u32`-length-prefixed nested structure.
    pub fn nested<T: Encode>(buf: &mut BytesMut, v: &T) {
        let len = v.encoded_len();
        debug_assert!(u32::try_from(len).is_ok());
        buf.put_u32(len as u32);
        v.encode(buf);
    }

    /// Writes a bool as one byte.
    pub fn bool(buf: &mut BytesMut, v: bool) {
        buf.put_u8(u8::from(v));
    }

    /// Writes a `u16` count and each value.
    pub fn vec_u16<T: Encode>(buf: &mut BytesMut, items: &[T]) {
        debug_assert!(items.len() <= usize::from(u16::MAX));
        buf.put_u16(items.len() as u16);
        for i in items {
            i.encode(buf);
        }
    }

    /// Writes a `u32` count and each value.
    pub fn vec_u32<T: Encode>(buf: &mut BytesMut, items: &[T]) {
        debug_assert!(u32::try_from(items.len()).is_ok());
        buf.put_u32(items.len() as u32);
        for i in items {
            i.encode(buf);
        }
    }

    /// Encoded length of a `u16`- or `u32`-counted vector, given the width of its count.
    pub fn vec_len<T: Encode>(count_width: usize, items: &[T]) -> usize {
        count_width + items.iter().map(Encode::encoded_len).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounds_checked() {
        let mut r = Reader::new(Bytes::from_static(&[1, 2, 3]));
        assert_eq!(r.u16("a"), Ok(0x0102));
        assert_eq!(r.u16("b"), Err(DecodeError::Truncated { what: "b" }));
        assert_eq!(r.u8("c"), Ok(3));
        assert_eq!(r.finish("x"), Ok(()));
    }

    #[test]
    fn length_limits_checked_before_reading() {
        let mut r = Reader::new(Bytes::from_static(&[0, 0, 0, 200, 1, 2]));
        assert_eq!(
            r.bytes_u32(100, "blob"),
            Err(DecodeError::TooLong {
                what: "blob",
                len: 200,
                max: 100
            })
        );
    }

    #[test]
    fn trailing_bytes_rejected() {
        let r = Reader::new(Bytes::from_static(&[9]));
        assert_eq!(
            r.finish("thing"),
            Err(DecodeError::TrailingBytes {
                what: "thing",
                count: 1
            })
        );
    }

    #[test]
    fn bool_rejects_other_values() {
        let mut r = Reader::new(Bytes::from_static(&[2]));
        assert_eq!(
            r.bool("flag"),
            Err(DecodeError::UnknownValue {
                what: "flag",
                value: 2
            })
        );
    }
}
