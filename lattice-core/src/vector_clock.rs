//! [`VectorClock`]: per-actor event counters with a causal comparison.

use std::collections::BTreeMap;

use crate::Lattice;

/// How two vector clocks (or the events they stamp) relate causally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CausalOrder {
    /// Both clocks are the same.
    Equal,
    /// The left clock happened before the right one (left < right).
    Before,
    /// The left clock happened after the right one (left > right).
    After,
    /// Neither saw the other: the events are concurrent.
    Concurrent,
}

/// A vector clock: for each actor, the number of its events seen. Merge is the point-wise
/// maximum (it is `MapLattice<A, Max<u64>>` in a compact, canonical form). ⊥ is the empty clock.
///
/// Actors at zero are not stored, so two clocks that mean the same thing are `==`.
/// [`compare`](Self::compare) gives the causal relation, including
/// [`CausalOrder::Concurrent`].
///
/// ```
/// use lattice_core::{CausalOrder, Lattice, VectorClock};
///
/// let mut alice = VectorClock::new();
/// alice.increment(1);
/// let mut bob = alice.clone();
/// bob.increment(2);                       // bob saw alice's event, then acted
/// assert_eq!(alice.compare(&bob), CausalOrder::Before);
///
/// alice.increment(1);                     // alice acts without seeing bob
/// assert_eq!(alice.compare(&bob), CausalOrder::Concurrent);
///
/// alice.merge(bob.clone());               // she catches up
/// assert_eq!(alice.compare(&bob), CausalOrder::After);
/// assert_eq!((alice.get(&1), alice.get(&2)), (2, 1));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(
        from = "BTreeMap<A, u64>",
        into = "BTreeMap<A, u64>",
        bound(
            serialize = "A: serde::Serialize + Clone + Ord",
            deserialize = "A: serde::Deserialize<'de> + Ord"
        )
    )
)]
pub struct VectorClock<A = u64> {
    /// Invariant: no entry is zero, so equal clocks are equal maps.
    counters: BTreeMap<A, u64>,
}

impl<A: Ord> VectorClock<A> {
    /// The empty clock (⊥).
    pub const fn new() -> Self {
        Self { counters: BTreeMap::new() }
    }

    /// The counter for `actor` (zero if never seen).
    pub fn get(&self, actor: &A) -> u64 {
        self.counters.get(actor).copied().unwrap_or(0)
    }

    /// Records one more event by `actor` and returns its new counter.
    ///
    /// Saturates at `u64::MAX` (2^64 events by one actor will not happen).
    pub fn increment(&mut self, actor: A) -> u64 {
        self.advance(actor, 1)
    }

    /// Adds `by` events for `actor` (saturating) and returns the new counter.
    pub(crate) fn advance(&mut self, actor: A, by: u64) -> u64 {
        if by == 0 {
            return self.get(&actor);
        }
        let counter = self.counters.entry(actor).or_insert(0);
        *counter = counter.saturating_add(by);
        *counter
    }

    /// Raises `actor`'s counter to at least `counter`. Returns `true` if it changed.
    pub fn observe(&mut self, actor: A, counter: u64) -> bool {
        if counter == 0 {
            return false;
        }
        let slot = self.counters.entry(actor).or_insert(0);
        if counter > *slot {
            *slot = counter;
            true
        } else {
            false
        }
    }

    /// The causal relation between `self` and `other`.
    pub fn compare(&self, other: &Self) -> CausalOrder {
        let mut self_ahead = false;
        let mut other_ahead = false;
        let mut mine = self.counters.iter().peekable();
        let mut theirs = other.counters.iter().peekable();
        loop {
            match (mine.peek(), theirs.peek()) {
                (None, None) => break,
                (Some(_), None) => {
                    self_ahead = true;
                    break;
                }
                (None, Some(_)) => {
                    other_ahead = true;
                    break;
                }
                (Some((a, x)), Some((b, y))) => match a.cmp(b) {
                    core::cmp::Ordering::Less => {
                        self_ahead = true;
                        mine.next();
                    }
                    core::cmp::Ordering::Greater => {
                        other_ahead = true;
                        theirs.next();
                    }
                    core::cmp::Ordering::Equal => {
                        self_ahead |= x > y;
                        other_ahead |= y > x;
                        mine.next();
                        theirs.next();
                    }
                },
            }
            if self_ahead && other_ahead {
                break;
            }
        }
        match (self_ahead, other_ahead) {
            (false, false) => CausalOrder::Equal,
            (false, true) => CausalOrder::Before,
            (true, false) => CausalOrder::After,
            (true, true) => CausalOrder::Concurrent,
        }
    }

    /// `true` if `self` saw everything `other` saw (`other ≤ self`).
    pub fn dominates(&self, other: &Self) -> bool {
        matches!(self.compare(other), CausalOrder::After | CausalOrder::Equal)
    }

    /// `true` if neither clock saw the other.
    pub fn concurrent_with(&self, other: &Self) -> bool {
        self.compare(other) == CausalOrder::Concurrent
    }

    /// The actors and their (non-zero) counters, in ascending actor order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&A, u64)> {
        self.counters.iter().map(|(actor, counter)| (actor, *counter))
    }

    /// Number of actors with a non-zero counter.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    /// `true` for the empty clock (⊥).
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }
}

impl<A: Ord + Clone> Lattice for VectorClock<A> {
    fn merge(&mut self, other: Self) -> bool {
        let mut changed = false;
        for (actor, counter) in other.counters {
            changed |= self.observe(actor, counter);
        }
        changed
    }
    fn merge_ref(&mut self, other: &Self) -> bool {
        if other.counters.is_empty() {
            return false;
        }
        if self.counters.is_empty() {
            self.counters.clone_from(&other.counters);
            return true;
        }
        // One pass over both sorted maps, updating counters in place; only actors new to
        // `self` are inserted afterwards.
        let mut changed = false;
        let mut missing: Vec<(A, u64)> = Vec::new();
        let mut theirs = other.counters.iter().peekable();
        for (actor, count) in &mut self.counters {
            while let Some(&(b, &y)) = theirs.peek() {
                match b.cmp(actor) {
                    core::cmp::Ordering::Less => {
                        missing.push((b.clone(), y));
                        theirs.next();
                    }
                    core::cmp::Ordering::Equal => {
                        if y > *count {
                            *count = y;
                            changed = true;
                        }
                        theirs.next();
                        break;
                    }
                    core::cmp::Ordering::Greater => break,
                }
            }
        }
        missing.extend(theirs.map(|(b, &y)| (b.clone(), y)));
        changed |= !missing.is_empty();
        self.counters.extend(missing);
        changed
    }
    fn bottom() -> Self {
        Self::new()
    }
    fn is_bottom(&self) -> bool {
        self.counters.is_empty()
    }
    fn leq(&self, other: &Self) -> bool {
        other.dominates(self)
    }
}

impl<A> Default for VectorClock<A> {
    fn default() -> Self {
        Self { counters: BTreeMap::new() }
    }
}

impl<A: Ord> From<BTreeMap<A, u64>> for VectorClock<A> {
    /// Builds a clock from counters, dropping zero entries.
    fn from(mut counters: BTreeMap<A, u64>) -> Self {
        counters.retain(|_, counter| *counter != 0);
        Self { counters }
    }
}

impl<A: Ord> From<VectorClock<A>> for BTreeMap<A, u64> {
    fn from(clock: VectorClock<A>) -> Self {
        clock.counters
    }
}

impl<A: Ord> FromIterator<(A, u64)> for VectorClock<A> {
    /// Builds a clock from `(actor, counter)` pairs, keeping the largest counter per actor.
    fn from_iter<I: IntoIterator<Item = (A, u64)>>(iter: I) -> Self {
        let mut clock = Self::new();
        for (actor, counter) in iter {
            clock.observe(actor, counter);
        }
        clock
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
        check_all(&[
            vc(&[]),
            vc(&[(0, 1)]),
            vc(&[(0, u64::MAX)]),
            vc(&[(1, 1)]),
            vc(&[(0, 1), (1, 1)]),
            vc(&[(0, 2), (1, 0)]),
            vc(&[(2, 3), (0, 1)]),
        ]);
    }

    #[test]
    fn zero_counters_are_not_stored() {
        assert_eq!(vc(&[(1, 0)]), VectorClock::new());
        assert_eq!(VectorClock::from(BTreeMap::from([(1_u8, 0)])), VectorClock::new());
    }

    #[test]
    fn compare_sees_all_four_relations() {
        assert_eq!(vc(&[(0, 1)]).compare(&vc(&[(0, 1)])), CausalOrder::Equal);
        assert_eq!(vc(&[]).compare(&vc(&[(0, 1)])), CausalOrder::Before);
        assert_eq!(vc(&[(0, 2), (1, 1)]).compare(&vc(&[(0, 1)])), CausalOrder::After);
        assert_eq!(vc(&[(0, 2)]).compare(&vc(&[(1, 1)])), CausalOrder::Concurrent);
        assert_eq!(vc(&[(0, 2), (1, 1)]).compare(&vc(&[(0, 1), (1, 2)])), CausalOrder::Concurrent);
    }
}
