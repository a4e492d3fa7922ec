//! The encoding: explicit, little-endian, length-prefixed, strict.
//!
//! Every value is written field by field in declaration order, with no padding and no field
//! names:
//!
//! | type | bytes |
//! |---|---|
//! | `u8`, `u16`, `u32`, `u64` | 1, 2, 4, 8 bytes, little-endian |
//! | `bool` | one byte, `0` or `1` (anything else is refused) |
//! | `[u8; N]` | the `N` bytes |
//! | `Vec<u8>`, `String` | `u32` length, then the bytes (a string must be UTF-8) |
//! | `Vec<T>` | `u32` count, then each item |
//! | `Option<T>` | `0`, or `1` then the value |
//! | an enum | a `u8` tag, then the variant's fields |
//!
//! Decoding is strict so that every value has exactly one encoding: an unknown tag, a bool that
//! is not 0 or 1, a length past the end of the input, or bytes left over after a top-level value
//! are refused with a [`DecodeError`]. Nothing is allocated before the input shows it has the
//! bytes for it: a count is checked against the bytes that remain (every item takes at least one
//! byte), so a forged count of four billion costs nothing.
//!
//! Why not serde: what is hashed, signed or stored must not depend on a serializer's defaults
//! (bincode 1 is also unmaintained, RUSTSEC-2025-0141, and serde_json's output depends on field
//! order and float formatting). Every encoding here is written by hand and tested against fixed
//! bytes, so a change to a Rust struct cannot silently change the protocol.

use thiserror::Error;

/// Most bytes of one length-prefixed field (a string, a byte string): 64 MiB. A frame on the
/// network is bounded by the same figure (see [`crate::frame`]).
pub const FIELD_BYTES_MAX: usize = 64 << 20;

/// Why bytes could not be decoded. Always the sender's fault (or a corrupt disk's): the bytes
/// are refused and nothing is changed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("{what}: the input ends {needed} bytes early")]
    Truncated { what: &'static str, needed: usize },
    #[error("{what}: unknown tag {tag}")]
    UnknownTag { what: &'static str, tag: u64 },
    #[error("{what}: {count} items announced but only {remaining} bytes remain")]
    CountTooLarge { what: &'static str, count: u64, remaining: usize },
    #[error("{what}: not valid UTF-8")]
    NotUtf8 { what: &'static str },
    #[error("{remaining} bytes left over after the value")]
    TrailingBytes { remaining: usize },
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("format version {found} is not one this build reads (it reads {expected})")]
    UnknownVersion { found: u8, expected: u8 },
}

impl From<DecodeError> for dtenge_core::Error {
    fn from(e: DecodeError) -> Self {
        dtenge_core::Error::malformed(format!("wire: {e}"))
    }
}

/// Append-only output buffer.
#[derive(Default, Debug)]
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    pub fn with_capacity(bytes: usize) -> Writer {
        Writer { bytes: Vec::with_capacity(bytes) }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    pub fn u16(&mut self, value: u16) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub fn bool(&mut self, value: bool) {
        self.u8(u8::from(value));
    }

    /// Raw bytes of a fixed-size field: no length.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// A length (or count) prefix. Lengths are bounded far below `u32::MAX` by every caller
    /// (transactions, batches and fields all have stated maxima); a larger one is a
    /// programmer error, not input.
    pub fn len_prefix(&mut self, len: usize) {
        assert!(u32::try_from(len).is_ok(), "an encoded length fits in u32 (every field is bounded)");
        self.u32(len as u32);
    }

    /// Length-prefixed bytes.
    pub fn bytes(&mut self, bytes: &[u8]) {
        assert!(bytes.len() <= FIELD_BYTES_MAX, "an encoded field is at most FIELD_BYTES_MAX bytes");
        self.len_prefix(bytes.len());
        self.raw(bytes);
    }

    pub fn str(&mut self, text: &str) {
        self.bytes(text.as_bytes());
    }

    pub fn put<T: Encode + ?Sized>(&mut self, value: &T) {
        value.encode(self);
    }

    /// A count, then each item.
    pub fn seq<T: Encode>(&mut self, items: &[T]) {
        self.len_prefix(items.len());
        for item in items {
            item.encode(self);
        }
    }
}

/// A cursor over input bytes. Every read checks the bytes are there.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, position: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    /// Refuse bytes left over: a top-level value must use all of its input.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            remaining => Err(DecodeError::TrailingBytes { remaining }),
        }
    }

    /// The next `len` bytes.
    pub fn take(&mut self, what: &'static str, len: usize) -> Result<&'a [u8], DecodeError> {
        let remaining = self.remaining();
        if len > remaining {
            return Err(DecodeError::Truncated { what, needed: len - remaining });
        }
        let start = self.position;
        self.position += len;
        debug_assert!(self.position <= self.bytes.len());
        Ok(&self.bytes[start..self.position])
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(what, N)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::UnknownTag { what, tag: u64::from(tag) }),
        }
    }

    /// A count of items that take at least `item_bytes_min` bytes each, checked against what
    /// remains before anything is allocated for them.
    pub fn count(&mut self, what: &'static str, item_bytes_min: usize) -> Result<usize, DecodeError> {
        debug_assert!(item_bytes_min >= 1);
        let count = self.u32(what)?;
        let count_usize = count as usize;
        let remaining = self.remaining();
        if count_usize.saturating_mul(item_bytes_min) > remaining {
            return Err(DecodeError::CountTooLarge { what, count: u64::from(count), remaining });
        }
        Ok(count_usize)
    }

    /// Length-prefixed bytes.
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.count(what, 1)?;
        if len > FIELD_BYTES_MAX {
            return Err(DecodeError::Invalid { what, reason: format!("{len} bytes exceed the field maximum") });
        }
        self.take(what, len)
    }

    pub fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let bytes = self.bytes(what)?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| DecodeError::NotUtf8 { what })
    }

    pub fn get<T: Decode>(&mut self) -> Result<T, DecodeError> {
        T::decode(self)
    }

    /// A count, then each item; at most `items_max`.
    pub fn seq<T: Decode>(&mut self, what: &'static str, items_max: usize) -> Result<Vec<T>, DecodeError> {
        let count = self.count(what, T::ENCODED_BYTES_MIN)?;
        if count > items_max {
            return Err(DecodeError::Invalid { what, reason: format!("{count} items exceed the maximum {items_max}") });
        }
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(T::decode(self)?);
        }
        Ok(items)
    }
}

/// A value with an explicit encoding.
pub trait Encode {
    fn encode(&self, w: &mut Writer);

    /// The encoding alone, as bytes.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.into_bytes()
    }
}

/// A value that decodes from its encoding.
pub trait Decode: Sized {
    /// The fewest bytes any value of this type encodes to (at least 1): bounds a count
    /// before anything is allocated.
    const ENCODED_BYTES_MIN: usize;

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Decode a whole input: bytes left over are refused.
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let value = Self::decode(&mut r)?;
        r.finish()?;
        Ok(value)
    }
}

macro_rules! int_codec {
    ($t:ident, $n:expr) => {
        impl Encode for $t {
            fn encode(&self, w: &mut Writer) {
                w.$t(*self);
            }
        }
        impl Decode for $t {
            const ENCODED_BYTES_MIN: usize = $n;
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                r.$t(stringify!($t))
            }
        }
    };
}
int_codec!(u8, 1);
int_codec!(u16, 2);
int_codec!(u32, 4);
int_codec!(u64, 8);

impl Encode for bool {
    fn encode(&self, w: &mut Writer) {
        w.bool(*self);
    }
}

impl Decode for bool {
    const ENCODED_BYTES_MIN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.bool("bool")
    }
}

impl Encode for String {
    fn encode(&self, w: &mut Writer) {
        w.str(self);
    }
}

impl Encode for str {
    fn encode(&self, w: &mut Writer) {
        w.str(self);
    }
}

impl Decode for String {
    const ENCODED_BYTES_MIN: usize = 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.string("string")
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, w: &mut Writer) {
        match self {
            None => w.u8(0),
            Some(value) => {
                w.u8(1);
                value.encode(w);
            }
        }
    }
}

impl<T: Decode> Decode for Option<T> {
    const ENCODED_BYTES_MIN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("option")? {
            0 => Ok(None),
            1 => Ok(Some(T::decode(r)?)),
            tag => Err(DecodeError::UnknownTag { what: "option", tag: u64::from(tag) }),
        }
    }
}

impl<A: Encode, B: Encode> Encode for (A, B) {
    fn encode(&self, w: &mut Writer) {
        self.0.encode(w);
        self.1.encode(w);
    }
}

impl<A: Decode, B: Decode> Decode for (A, B) {
    const ENCODED_BYTES_MIN: usize = A::ENCODED_BYTES_MIN + B::ENCODED_BYTES_MIN;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok((A::decode(r)?, B::decode(r)?))
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, w: &mut Writer) {
        w.seq(self);
    }
}

/// A sequence bounded only by its input: types with a stated maximum (a transaction's inputs,
/// a batch) read theirs with [`Reader::seq`] and that maximum.
impl<T: Decode> Decode for Vec<T> {
    const ENCODED_BYTES_MIN: usize = 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.seq("sequence", usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_little_endian_and_fixed_width() {
        let mut w = Writer::new();
        w.u8(1);
        w.u16(0x0203);
        w.u32(0x0405_0607);
        w.u64(0x0809_0a0b_0c0d_0e0f);
        assert_eq!(w.into_bytes(), [1, 3, 2, 7, 6, 5, 4, 0x0f, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 9, 8]);
    }

    #[test]
    fn a_string_is_its_length_then_its_bytes() {
        assert_eq!("ab".to_string().to_bytes(), [2, 0, 0, 0, b'a', b'b']);
        assert_eq!(String::from_bytes(&[2, 0, 0, 0, b'a', b'b']).unwrap(), "ab");
    }

    #[test]
    fn a_count_larger_than_the_input_is_refused_before_allocating() {
        let forged = [0xff, 0xff, 0xff, 0xff];
        let err = Vec::<u64>::from_bytes(&forged).unwrap_err();
        assert!(matches!(err, DecodeError::CountTooLarge { count: 0xffff_ffff, .. }), "{err}");
    }

    #[test]
    fn truncated_input_trailing_bytes_bad_bools_and_bad_utf8_are_refused() {
        assert!(matches!(u64::from_bytes(&[1, 2, 3]), Err(DecodeError::Truncated { needed: 5, .. })));
        assert!(matches!(u8::from_bytes(&[1, 2]), Err(DecodeError::TrailingBytes { remaining: 1 })));
        assert!(matches!(bool::from_bytes(&[2]), Err(DecodeError::UnknownTag { tag: 2, .. })));
        assert!(matches!(Option::<u8>::from_bytes(&[7, 0]), Err(DecodeError::UnknownTag { tag: 7, .. })));
        assert!(matches!(String::from_bytes(&[1, 0, 0, 0, 0xff]), Err(DecodeError::NotUtf8 { .. })));
    }

    #[test]
    fn a_sequence_over_its_maximum_is_refused() {
        let bytes = vec![3u8, 0, 0, 0, 1, 2, 3];
        let mut r = Reader::new(&bytes);
        assert!(matches!(r.seq::<u8>("items", 2), Err(DecodeError::Invalid { .. })));
        let mut r = Reader::new(&bytes);
        assert_eq!(r.seq::<u8>("items", 3).unwrap(), vec![1, 2, 3]);
    }
}
