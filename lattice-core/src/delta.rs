//! Delta states: shipping what changed instead of the whole state, and whole states in parts.
//!
//! Replicas of a state-based lattice converge by exchanging states, but a big state (a set
//! with millions of members) cannot travel whole after every small change. Two facts make it
//! unnecessary:
//!
//! - **A delta is a state.** A mutation of `old` into `new` can report a *delta* `δ`: a
//!   (usually tiny) state with `δ ≤ new` and `old ⊔ δ == new`. Any replica that already holds
//!   `old` — or anything at least as recent — reaches `new` by merging `δ`, and since merging is
//!   idempotent, commutative and associative, deltas may be joined into groups, duplicated and
//!   reordered like any other state. [`OrSet::add_delta`](crate::OrSet::add_delta) and
//!   [`OrSet::remove_delta`](crate::OrSet::remove_delta) are such *delta mutators*;
//!   [`laws::try_check_delta`](crate::laws::try_check_delta) checks one.
//! - **A state is the join of its parts.** [`Decompose::split`] cuts a state into parts no
//!   heavier than a bound whose join is the state, each part below it; a whole state then
//!   travels (or is logged) as several bounded messages that may arrive in any order.
//!   [`laws::try_check_split`](crate::laws::try_check_split) checks an implementation.
//!
//! ```
//! use lattice_core::{delta::Decompose, laws, Lattice, OrSet};
//!
//! let mut replica = OrSet::<u32, u8>::new();
//! for n in 0..1000 {
//!     replica.add(1, n);
//! }
//! let mut elsewhere = replica.clone();
//!
//! // A change ships as a delta of one element, not a state of a thousand.
//! let before = replica.clone();
//! let delta = replica.add_delta(2, 5000);
//! assert_eq!(delta.weight(), 1);
//! laws::try_check_delta(&before, &delta, &replica).unwrap();
//! elsewhere.merge(delta);
//! assert_eq!(elsewhere, replica);
//!
//! // A whole state ships in parts of at most 300 elements.
//! let parts = replica.clone().split(300);
//! assert_eq!(parts.len(), 4);
//! laws::try_check_split(&replica, 300).unwrap();
//! ```

use std::hash::{BuildHasher, Hash};

use crate::{Lattice, MapLattice, OrSet, SetUnion};

/// A lattice whose states can be measured and cut into smaller states that join back to them.
///
/// # Laws
///
/// For every state `s` and bound `w ≥ 1`, `s.clone().split(w)` returns at least one part;
/// each part `p` has `p ≤ s` and `p.weight() ≤ w` (unless a single indivisible element
/// outweighs `w`); and the join of all parts is `s`. Check them with
/// [`laws::try_check_split`](crate::laws::try_check_split).
pub trait Decompose: Lattice {
    /// The state's size in the units [`split`](Self::split) bounds: elements of a set, entries
    /// of a map, dots and tombstones of an OR-set. Cheap (`O(1)` for the built-ins).
    fn weight(&self) -> usize;

    /// Cuts the state into parts of at most `max_weight` each (see the trait's laws).
    #[must_use]
    fn split(self, max_weight: usize) -> Vec<Self>;
}

/// Cuts an iterator into vectors of at most `size` items (at least one, possibly empty).
fn chunks<I: Iterator>(items: I, size: usize) -> Vec<Vec<I::Item>> {
    let size = size.max(1);
    let mut out = vec![Vec::new()];
    for item in items {
        if out.last().is_some_and(|last| last.len() >= size) {
            out.push(Vec::new());
        }
        if let Some(last) = out.last_mut() {
            last.push(item);
        }
    }
    out
}

impl<T: Ord + Clone> Decompose for SetUnion<T> {
    fn weight(&self) -> usize {
        self.len()
    }

    fn split(self, max_weight: usize) -> Vec<Self> {
        if self.len() <= max_weight.max(1) {
            return vec![self];
        }
        chunks(self.into_set().into_iter(), max_weight)
            .into_iter()
            .map(SetUnion::from_iter)
            .collect()
    }
}

impl<K: Eq + Hash + Clone, V: Lattice, S: BuildHasher + Default + Clone> Decompose
    for MapLattice<K, V, S>
{
    fn weight(&self) -> usize {
        self.len()
    }

    fn split(self, max_weight: usize) -> Vec<Self> {
        if self.len() <= max_weight.max(1) {
            return vec![self];
        }
        chunks(self.into_map().into_iter(), max_weight)
            .into_iter()
            .map(|entries| entries.into_iter().collect())
            .collect()
    }
}

impl<T: Ord + Clone, A: Ord + Clone> Decompose for OrSet<T, A> {
    /// Present elements plus tombstones.
    fn weight(&self) -> usize {
        self.len() + self.tombstones()
    }

    /// Elements (with all their dots) and tombstones in ranges; the first part carries the
    /// whole clock, the others a clock just covering their own dots.
    fn split(self, max_weight: usize) -> Vec<Self> {
        if self.weight() <= max_weight.max(1) {
            return vec![self];
        }
        self.split_parts(max_weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laws::{try_check_delta, try_check_split};

    fn sample_or_set() -> OrSet<u16, u8> {
        let mut set = OrSet::new();
        for n in 0..50 {
            set.add((n % 3) as u8, n);
            set.add(7, n % 9);
        }
        for n in (0..50).step_by(4) {
            set.remove(&n);
        }
        set
    }

    #[test]
    fn or_set_splits_obey_the_laws_at_every_bound() {
        let set = sample_or_set();
        for bound in [0, 1, 2, 3, 7, 20, 49, 50, 100, 1000] {
            try_check_split(&set, bound).unwrap();
        }
        try_check_split(&OrSet::<u8, u8>::new(), 3).unwrap();
        let only_tombstones = {
            let mut s = OrSet::<u8, u8>::new();
            s.add(1, 1);
            s.add(1, 2);
            s.remove(&1);
            s.remove(&2);
            s
        };
        try_check_split(&only_tombstones, 1).unwrap();
    }

    #[test]
    fn set_union_and_map_splits_obey_the_laws() {
        let set = SetUnion::from_iter(0..100_u32);
        for bound in [0, 1, 9, 100, 101] {
            try_check_split(&set, bound).unwrap();
        }
        let map: MapLattice<u8, SetUnion<u8>> =
            (0..40_u8).map(|k| (k, SetUnion::from_iter([k, k / 2]))).collect();
        for bound in [1, 6, 40] {
            try_check_split(&map, bound).unwrap();
        }
    }

    #[test]
    fn or_set_delta_mutators_obey_the_delta_law() {
        let mut set = sample_or_set();
        for n in 0..60_u16 {
            let before = set.clone();
            let delta = set.add_delta((n % 4) as u8, n);
            try_check_delta(&before, &delta, &set).unwrap();
            let before = set.clone();
            match set.remove_delta(&(n / 2)) {
                Some(delta) => try_check_delta(&before, &delta, &set).unwrap(),
                None => assert_eq!(before, set, "a remove of an absent element changes nothing"),
            }
        }
    }

    #[test]
    fn deltas_joined_into_a_group_and_reordered_still_converge() {
        let start = sample_or_set();
        let mut writer = start.clone();
        let mut deltas = Vec::new();
        for n in 100..140_u16 {
            deltas.push(writer.add_delta(3, n));
            if let Some(delta) = writer.remove_delta(&(n - 1)) {
                deltas.push(delta);
            }
        }
        // Shipped in reverse order, in two groups.
        let (early, late) = deltas.split_at(deltas.len() / 2);
        let mut reader = start;
        reader.merge(crate::lattice::join_all(late.iter().rev().cloned()));
        reader.merge(crate::lattice::join_all(early.iter().cloned()));
        assert_eq!(reader, writer);
    }
}
