//! [`SetUnion`]: a grow-only set.

use std::collections::BTreeSet;

use crate::Lattice;

/// A set that only grows: merge is set union. ⊥ is the empty set.
///
/// Backed by a [`BTreeSet`] so that iteration, equality and serialization are deterministic.
/// [`merge_ref`](Lattice::merge_ref) clones only the elements that are new to `self`.
///
/// ```
/// use lattice_core::{Lattice, SetUnion};
///
/// let mut tags = SetUnion::from_iter(["rust", "crdt"]);
/// assert!(tags.merge(SetUnion::from_iter(["crdt", "anna"])));
/// assert_eq!(tags.iter().copied().collect::<Vec<_>>(), ["anna", "crdt", "rust"]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(transparent, bound(deserialize = "T: serde::Deserialize<'de> + Ord"))
)]
pub struct SetUnion<T>(BTreeSet<T>);

impl<T: Ord> SetUnion<T> {
    /// The empty set (⊥).
    pub const fn new() -> Self {
        Self(BTreeSet::new())
    }
    /// Adds one element; returns `true` if it was new.
    pub fn insert(&mut self, value: T) -> bool {
        self.0.insert(value)
    }
    /// `true` if `value` is in the set.
    pub fn contains(&self, value: &T) -> bool {
        self.0.contains(value)
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// `true` if the set is empty (⊥).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The elements in ascending order.
    pub fn iter(&self) -> std::collections::btree_set::Iter<'_, T> {
        self.0.iter()
    }
    /// The underlying set.
    pub fn as_set(&self) -> &BTreeSet<T> {
        &self.0
    }
    /// Unwraps the underlying set.
    pub fn into_set(self) -> BTreeSet<T> {
        self.0
    }
}

impl<T: Ord + Clone> Lattice for SetUnion<T> {
    fn merge(&mut self, mut other: Self) -> bool {
        if other.0.len() > self.0.len() {
            // Insert the smaller set into the larger one. The union has at least
            // `other.len() > self.len()` elements, so `self` certainly changes.
            std::mem::swap(&mut self.0, &mut other.0);
            self.0.extend(other.0);
            true
        } else {
            let before = self.0.len();
            self.0.extend(other.0);
            self.0.len() != before
        }
    }
    fn merge_ref(&mut self, other: &Self) -> bool {
        let mut changed = false;
        for value in &other.0 {
            if !self.0.contains(value) {
                self.0.insert(value.clone());
                changed = true;
            }
        }
        changed
    }
    fn bottom() -> Self {
        Self::new()
    }
    fn is_bottom(&self) -> bool {
        self.0.is_empty()
    }
    fn leq(&self, other: &Self) -> bool {
        self.0.is_subset(&other.0)
    }
}

impl<T> Default for SetUnion<T> {
    fn default() -> Self {
        Self(BTreeSet::new())
    }
}

impl<T: Ord> FromIterator<T> for SetUnion<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl<T: Ord> From<BTreeSet<T>> for SetUnion<T> {
    fn from(set: BTreeSet<T>) -> Self {
        Self(set)
    }
}

impl<T: Ord> IntoIterator for SetUnion<T> {
    type Item = T;
    type IntoIter = std::collections::btree_set::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, T: Ord> IntoIterator for &'a SetUnion<T> {
    type Item = &'a T;
    type IntoIter = std::collections::btree_set::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T: Ord> Extend<T> for SetUnion<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laws::check_all;

    #[test]
    fn edge_values_obey_the_laws() {
        check_all(&[
            SetUnion::new(),
            SetUnion::from_iter([0_u32]),
            SetUnion::from_iter([0, u32::MAX]),
            SetUnion::from_iter([1, 2, 3]),
            SetUnion::from_iter([3, 4]),
        ]);
    }

    #[test]
    fn merge_of_a_superset_into_a_subset_reports_change() {
        let mut small = SetUnion::from_iter([1]);
        assert!(small.merge(SetUnion::from_iter([1, 2, 3])));
        let mut same = SetUnion::from_iter([1, 2]);
        assert!(!same.merge(SetUnion::from_iter([2])));
    }
}
