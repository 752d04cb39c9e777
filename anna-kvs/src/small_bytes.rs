//! Byte strings kept inline when short, on the heap otherwise: the keys of an actor's store and
//! the Redis port's string values
//! ([`InlineBytes`](crate::redis::inline_bytes::InlineBytes)) are both this type, each with its
//! own inline capacity and heap representation.
//!
//! A hash table entry that holds its bytes inline is compared and read in the cache line the
//! lookup already probed, instead of chasing a pointer to a separate allocation (another cache
//! miss per lookup on a large store), and storing it allocates nothing.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Up to `N` bytes inline, more in `H`. Hashes, compares and borrows exactly like the `[u8]` it
/// holds, so a map keyed by it is looked up with plain byte slices.
#[derive(Clone)]
pub enum SmallBytes<const N: usize, H> {
    /// Short: the first `len` bytes of `data`.
    Inline {
        /// How many bytes of `data` are used.
        len: u8,
        /// The bytes.
        data: [u8; N],
    },
    /// Long: on the heap.
    Heap(H),
}

impl<const N: usize, H: AsRef<[u8]>> SmallBytes<N, H> {
    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, data } => &data[..usize::from(*len)],
            Self::Heap(bytes) => bytes.as_ref(),
        }
    }

    /// `bytes` inline, or `None` if they are longer than `N`.
    pub fn inline(bytes: &[u8]) -> Option<Self> {
        let len = u8::try_from(bytes.len()).ok().filter(|&n| usize::from(n) <= N)?;
        let mut data = [0_u8; N];
        data[..bytes.len()].copy_from_slice(bytes);
        Some(Self::Inline { len, data })
    }
}

impl<const N: usize, H: AsRef<[u8]>> std::ops::Deref for SmallBytes<N, H> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl<const N: usize, H: AsRef<[u8]>> Borrow<[u8]> for SmallBytes<N, H> {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl<const N: usize, H: AsRef<[u8]>> Hash for SmallBytes<N, H> {
    #[inline]
    fn hash<S: Hasher>(&self, state: &mut S) {
        self.as_slice().hash(state);
    }
}

impl<const N: usize, H: AsRef<[u8]>> PartialEq for SmallBytes<N, H> {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<const N: usize, H: AsRef<[u8]>> Eq for SmallBytes<N, H> {}

impl<const N: usize, H: AsRef<[u8]>> PartialOrd for SmallBytes<N, H> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<const N: usize, H: AsRef<[u8]>> Ord for SmallBytes<N, H> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl<const N: usize, H: AsRef<[u8]>> fmt::Debug for SmallBytes<N, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.as_slice().escape_ascii())
    }
}

/// The key of an actor's store: up to 22 bytes inline (Redis benchmarks use 8–16), 24 bytes in
/// all.
pub(crate) type StoreKey = SmallBytes<22, Box<[u8]>>;

impl StoreKey {
    pub(crate) fn new(key: &[u8]) -> Self {
        Self::inline(key).unwrap_or_else(|| Self::Heap(key.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn short_and_long_keys_look_up_by_slice() {
        const INLINE: usize = 22;
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
        assert!(matches!(StoreKey::new(&[1; INLINE]), StoreKey::Inline { .. }));
        assert!(matches!(StoreKey::new(&long), StoreKey::Heap(_)));
    }
}
