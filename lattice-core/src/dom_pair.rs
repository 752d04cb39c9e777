//! [`DomPair`]: a lexicographic pair whose totally ordered key dominates.

use num_traits::Bounded;

use crate::Lattice;

/// A `(key, value)` pair ordered lexicographically: the greater key wins outright; equal keys
/// merge their values. ⊥ is `(K::min_value(), ⊥)`.
///
/// The key must be **totally** ordered (`K: Ord`), which the type demands. With a merely
/// partially ordered key (say a vector clock) the textbook construction is not associative:
/// for incomparable keys neither side dominates and replicas can diverge. Use
/// [`MultiValue`](crate::MultiValue) for that case.
///
/// Anna's transactional levels use `DomPair<Timestamp, Value>`: a later transaction's write
/// replaces an earlier one's, and writes within one transaction merge.
///
/// ```
/// use lattice_core::{DomPair, Lattice, SetUnion};
///
/// let mut v = DomPair::new(1_u64, SetUnion::from_iter(["a"]));
/// v.merge(DomPair::new(1, SetUnion::from_iter(["b"])));   // same key: values merge
/// assert_eq!(v.value().len(), 2);
/// v.merge(DomPair::new(2, SetUnion::from_iter(["c"])));   // greater key: replaces
/// assert_eq!(v.value().iter().copied().collect::<Vec<_>>(), ["c"]);
/// v.merge(DomPair::new(0, SetUnion::from_iter(["old"]))); // smaller key: ignored
/// assert_eq!(*v.key(), 2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DomPair<K, V> {
    key: K,
    value: V,
}

impl<K, V> DomPair<K, V> {
    /// A pair with the given key and value.
    pub const fn new(key: K, value: V) -> Self {
        Self { key, value }
    }
    /// The dominating key.
    pub const fn key(&self) -> &K {
        &self.key
    }
    /// The value.
    pub const fn value(&self) -> &V {
        &self.value
    }
    /// Splits the pair.
    pub fn into_parts(self) -> (K, V) {
        (self.key, self.value)
    }
}

impl<K: Ord + Clone + Bounded, V: Lattice> Lattice for DomPair<K, V> {
    fn merge(&mut self, other: Self) -> bool {
        match other.key.cmp(&self.key) {
            core::cmp::Ordering::Greater => {
                *self = other;
                true
            }
            core::cmp::Ordering::Equal => self.value.merge(other.value),
            core::cmp::Ordering::Less => false,
        }
    }
    fn merge_ref(&mut self, other: &Self) -> bool {
        match other.key.cmp(&self.key) {
            core::cmp::Ordering::Greater => {
                self.key.clone_from(&other.key);
                self.value.clone_from(&other.value);
                true
            }
            core::cmp::Ordering::Equal => self.value.merge_ref(&other.value),
            core::cmp::Ordering::Less => false,
        }
    }
    fn bottom() -> Self {
        Self::new(K::min_value(), V::bottom())
    }
    fn is_bottom(&self) -> bool {
        self.key == K::min_value() && self.value.is_bottom()
    }
    fn leq(&self, other: &Self) -> bool {
        match self.key.cmp(&other.key) {
            core::cmp::Ordering::Less => true,
            core::cmp::Ordering::Equal => self.value.leq(&other.value),
            core::cmp::Ordering::Greater => false,
        }
    }
}

impl<K: Bounded, V: Lattice> Default for DomPair<K, V> {
    fn default() -> Self {
        Self::new(K::min_value(), V::bottom())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laws::check_all;
    use crate::{Max, SetUnion};

    #[test]
    fn edge_values_obey_the_laws() {
        let d = |k: u32, v: &[u8]| DomPair::new(k, SetUnion::from_iter(v.iter().copied()));
        check_all(&[
            d(0, &[]),
            d(0, &[1]),
            d(0, &[2]),
            d(1, &[]),
            d(1, &[1, 2]),
            d(u32::MAX, &[]),
            d(u32::MAX, &[9]),
        ]);
        check_all(&[
            DomPair::new((0_u64, 0_u64), Max::new(0_u8)),
            DomPair::new((1, 0), Max::new(3)),
            DomPair::new((1, 0), Max::new(200)),
            DomPair::new((0, 7), Max::new(1)),
        ]);
    }
}
