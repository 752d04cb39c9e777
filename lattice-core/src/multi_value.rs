//! [`MultiValue`]: a multi-value register (Anna's single-key causal lattice), as a true lattice.

use crate::{CausalOrder, Lattice, VectorClock};

/// A multi-value register: the set of writes that no other known write causally supersedes.
///
/// Each write carries the vector clock of the state its writer had seen. Merge keeps the
/// *maximal* `(clock, value)` pairs: a pair whose clock is strictly before another pair's clock
/// is dropped; concurrent writes are all kept as siblings for the reader to resolve. ⊥ is the
/// register with no writes.
///
/// Anna's C++ causal lattice is a pair (clock, set of values) that merges "the dominating
/// clock wins, otherwise union"; that is only a lattice for well-formed histories (two
/// different values under one clock, or a clock pair that is concurrent at one replica and
/// ordered at another, make merge order-dependent). Keeping the antichain of maximal pairs is a
/// lattice for *every* input.
///
/// ```
/// use lattice_core::{Lattice, MultiValue};
///
/// // Two clients write concurrently from the empty state.
/// let mut a = MultiValue::<&str>::new();
/// a.write(1, "from client 1");
/// let mut b = MultiValue::<&str>::new();
/// b.write(2, "from client 2");
///
/// let mut merged = a.clone().join(b);
/// assert_eq!(merged.values().count(), 2);       // siblings
///
/// // A write made after reading both supersedes both.
/// merged.write(1, "resolved");
/// assert_eq!(merged.values().copied().collect::<Vec<_>>(), ["resolved"]);
/// assert_eq!(merged.clock().get(&1), 2);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(
        from = "Vec<(VectorClock<A>, T)>",
        into = "Vec<(VectorClock<A>, T)>",
        bound(
            serialize = "T: serde::Serialize + Clone + Ord, A: serde::Serialize + Clone + Ord",
            deserialize = "T: serde::Deserialize<'de> + Ord, A: serde::Deserialize<'de> + Ord"
        )
    )
)]
pub struct MultiValue<T, A = u64> {
    /// Invariant: sorted, no duplicates, and no clock strictly before another entry's clock.
    entries: Vec<(VectorClock<A>, T)>,
}

impl<T: Ord, A: Ord> MultiValue<T, A> {
    /// The register with no writes (⊥).
    pub const fn new() -> Self {
        Self { entries: Vec::new() }
    }

    /// A register holding one write of `value` made with causal context `clock`.
    pub fn from_write(clock: VectorClock<A>, value: T) -> Self {
        Self { entries: vec![(clock, value)] }
    }

    /// The concurrent values (siblings), in a deterministic order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &T> {
        self.entries.iter().map(|(_, value)| value)
    }

    /// The `(clock, value)` pairs.
    pub fn entries(&self) -> &[(VectorClock<A>, T)] {
        &self.entries
    }

    /// Number of siblings.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` if never written (⊥).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn normalize(mut entries: Vec<(VectorClock<A>, T)>) -> Vec<(VectorClock<A>, T)> {
        entries.sort();
        entries.dedup();
        if entries.len() > 1 {
            let dominated: Vec<bool> = entries
                .iter()
                .map(|(clock, _)| {
                    entries.iter().any(|(other, _)| clock.compare(other) == CausalOrder::Before)
                })
                .collect();
            let mut flags = dominated.into_iter();
            entries.retain(|_| !flags.next().unwrap_or(false));
        }
        entries
    }
}

impl<T: Ord, A: Ord + Clone> MultiValue<T, A> {
    /// The causal context of the register: the join of its entries' clocks. A client that
    /// read this state writes with this clock advanced at its own id.
    pub fn clock(&self) -> VectorClock<A> {
        let mut clock = VectorClock::new();
        for (entry, _) in &self.entries {
            clock.merge_ref(entry);
        }
        clock
    }

    /// Writes `value` as `writer` after having seen this state: the write's clock is
    /// [`clock`](Self::clock) advanced at `writer`, so it supersedes every current sibling.
    /// Returns the write's clock.
    pub fn write(&mut self, writer: A, value: T) -> VectorClock<A> {
        let mut clock = self.clock();
        clock.increment(writer);
        self.entries = vec![(clock.clone(), value)];
        clock
    }
}

impl<T: Ord + Clone, A: Ord + Clone> Lattice for MultiValue<T, A> {
    fn merge(&mut self, other: Self) -> bool {
        if other.entries.is_empty() || other.entries == self.entries {
            return false;
        }
        let mut all = std::mem::take(&mut self.entries);
        let before = all.clone();
        all.extend(other.entries);
        self.entries = Self::normalize(all);
        self.entries != before
    }
    fn merge_ref(&mut self, other: &Self) -> bool {
        // `other.entries` is sorted, so `fresh` is too.
        let fresh: Vec<_> = other
            .entries
            .iter()
            .filter(|entry| self.entries.binary_search(entry).is_err())
            .cloned()
            .collect();
        if fresh.is_empty() {
            return false;
        }
        let before_len = self.entries.len();
        let mut all = std::mem::take(&mut self.entries);
        all.extend(fresh.iter().cloned());
        let merged = Self::normalize(all);
        // The result is drawn from old ∪ fresh (disjoint). It equals the old state exactly when
        // no fresh entry survived and no old entry was superseded.
        let fresh_survived = merged.iter().any(|entry| fresh.binary_search(entry).is_ok());
        let changed = fresh_survived || merged.len() != before_len;
        self.entries = merged;
        changed
    }
    fn bottom() -> Self {
        Self::new()
    }
    fn is_bottom(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<T: Ord, A: Ord> Default for MultiValue<T, A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Ord, A: Ord> From<Vec<(VectorClock<A>, T)>> for MultiValue<T, A> {
    /// Builds a register from writes, keeping only the maximal ones.
    fn from(entries: Vec<(VectorClock<A>, T)>) -> Self {
        Self { entries: Self::normalize(entries) }
    }
}

impl<T: Ord, A: Ord> From<MultiValue<T, A>> for Vec<(VectorClock<A>, T)> {
    fn from(register: MultiValue<T, A>) -> Self {
        register.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laws::check_all;

    fn vc(entries: &[(u8, u64)]) -> VectorClock<u8> {
        entries.iter().copied().collect()
    }

    #[test]
    fn edge_values_obey_the_laws() {
        let mv = |pairs: Vec<(VectorClock<u8>, char)>| MultiValue::from(pairs);
        check_all(&[
            MultiValue::new(),
            mv(vec![(vc(&[]), 'a')]),
            mv(vec![(vc(&[]), 'b')]),
            mv(vec![(vc(&[(1, 1)]), 'a')]),
            mv(vec![(vc(&[(1, 1)]), 'b')]),
            mv(vec![(vc(&[(2, 1)]), 'c')]),
            mv(vec![(vc(&[(1, 1), (2, 1)]), 'd')]),
            mv(vec![(vc(&[(1, 2)]), 'e'), (vc(&[(2, 2)]), 'f')]),
        ]);
    }

    #[test]
    fn superseded_writes_are_dropped_and_concurrent_ones_kept() {
        let old = MultiValue::from_write(vc(&[(1, 1)]), "old");
        let new = MultiValue::from_write(vc(&[(1, 2)]), "new");
        let other = MultiValue::from_write(vc(&[(2, 1)]), "other");
        let merged = old.join(other.clone()).join(new);
        assert_eq!(merged.values().copied().collect::<Vec<_>>(), ["new", "other"]);
    }
}
