//! The key type of an actor's store: short keys inline, long keys in one exact-size allocation.
//!
//! Most keys are short (Redis benchmarks use 8–16 bytes). Storing them inline in the hash
//! table's entry means a lookup compares bytes that are already in the cache line it probed,
//! instead of chasing a pointer to a separately allocated buffer (a second cache miss per
//! lookup on a large store), and a stored key costs no allocation at all.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// Keys up to this many bytes are stored inline.
pub(crate) const INLINE: usize = 22;

/// A stored key (24 bytes). Hashes and compares exactly like the `[u8]` it holds, so the
/// store is looked up with plain byte slices.
#[derive(Clone)]
pub(crate) enum StoreKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl StoreKey {
    pub(crate) fn new(key: &[u8]) -> Self {
        if key.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..key.len()].copy_from_slice(key);
            Self::Inline { len: key.len() as u8, bytes }
        } else {
            Self::Heap(key.into())
        }
    }

    #[inline]
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(bytes) => bytes,
        }
    }
}

impl Borrow<[u8]> for StoreKey {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Hash for StoreKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl PartialEq for StoreKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for StoreKey {}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_slice().escape_ascii().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn short_and_long_keys_look_up_by_slice() {
        assert_eq!(std::mem::size_of::<StoreKey>(), 24);
        let mut map: HashMap<StoreKey, u32> = HashMap::new();
        let long = vec![7_u8; 100];
        for (i, key) in [&b""[..], b"k", &[1; INLINE], &[2; INLINE + 1], &long].iter().enumerate() {
            map.insert(StoreKey::new(key), i as u32);
        }
        assert_eq!(map.get(&b""[..]), Some(&0));
        assert_eq!(map.get(&b"k"[..]), Some(&1));
        assert_eq!(map.get(&[1; INLINE][..]), Some(&2));
        assert_eq!(map.get(&[2; INLINE + 1][..]), Some(&3));
        assert_eq!(map.get(&long[..]), Some(&4));
        assert_eq!(map.get(&b"missing"[..]), None);
        assert!(matches!(StoreKey::new(&long), StoreKey::Heap(_)));
    }
}
