//! A string value kept inside the store's table entry when it is short.
//!
//! Most Redis values are small (counters, flags, ids, short JSON). A `Bytes` keeps its data in a
//! separate allocation with a shared reference count, so every `GET` of it costs two more memory
//! touches (the count, then the data) after the table lookup, and every stored value one more
//! allocation. [`InlineBytes`] holds up to [`INLINE_CAPACITY`] bytes in place, in the same 40 bytes
//! (so a plain string key's entry does not grow), and falls back to `Bytes` beyond that.

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::small_bytes::SmallBytes;

/// The longest value kept inline.
pub const INLINE_CAPACITY: usize = 38;

/// Bytes stored inline up to [`INLINE_CAPACITY`], shared (`Bytes`) beyond. Compares, hashes and
/// serializes as its byte string, exactly like `Bytes`.
pub type InlineBytes = SmallBytes<INLINE_CAPACITY, Bytes>;

impl InlineBytes {
    /// The bytes as `Bytes` (a copy when inline, a shared handle otherwise).
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Self::Inline { .. } => Bytes::copy_from_slice(self.as_slice()),
            Self::Heap(bytes) => bytes.clone(),
        }
    }
}

impl From<&[u8]> for InlineBytes {
    fn from(bytes: &[u8]) -> Self {
        Self::inline(bytes).unwrap_or_else(|| Self::Heap(Bytes::copy_from_slice(bytes)))
    }
}

impl From<Bytes> for InlineBytes {
    fn from(bytes: Bytes) -> Self {
        Self::inline(&bytes).unwrap_or(Self::Heap(bytes))
    }
}

impl From<InlineBytes> for Bytes {
    fn from(bytes: InlineBytes) -> Self {
        match bytes {
            InlineBytes::Heap(bytes) => bytes,
            inline => Bytes::copy_from_slice(inline.as_slice()),
        }
    }
}

impl Serialize for InlineBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.as_slice())
    }
}

impl<'de> Deserialize<'de> for InlineBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The same encodings `Bytes` accepts (its own serialization among them).
        Bytes::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn short_values_are_inline_and_long_ones_shared_and_both_act_as_bytes() {
        assert_eq!(std::mem::size_of::<InlineBytes>(), 40);
        assert_eq!(std::mem::size_of::<Option<InlineBytes>>(), 40);
        for len in [0, 1, 8, INLINE_CAPACITY, INLINE_CAPACITY + 1, 1000] {
            let raw: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let value = InlineBytes::from(&raw[..]);
            assert_eq!(matches!(value, InlineBytes::Inline { .. }), len <= INLINE_CAPACITY);
            assert_eq!(&*value, &raw[..]);
            assert_eq!(value.to_bytes(), Bytes::from(raw.clone()));
            assert_eq!(InlineBytes::from(Bytes::from(raw.clone())), value);
            // Serialized exactly as `Bytes` is, so the wire format does not change.
            let config = bincode::config::standard();
            let ours = bincode::serde::encode_to_vec(&value, config).unwrap();
            let theirs = bincode::serde::encode_to_vec(Bytes::from(raw.clone()), config).unwrap();
            assert_eq!(ours, theirs);
            let (back, _): (InlineBytes, usize) =
                bincode::serde::decode_from_slice(&ours, config).unwrap();
            assert_eq!(back, value);
        }
        let (a, b) = (InlineBytes::from(&b"abc"[..]), InlineBytes::from(&[b'z'; 100][..]));
        assert_eq!(a.cmp(&b), Ordering::Less);
        assert_eq!(b.cmp(&a), Ordering::Greater);
        assert_eq!(a.clone(), a);
    }
}
