//! [`GCounter`] and [`PNCounter`]: counters that replicas increment independently.

use crate::{Lattice, VectorClock};

/// A grow-only counter: each actor counts its own increments; merge keeps each actor's maximum;
/// the value is the sum. ⊥ is zero everywhere.
///
/// ```
/// use lattice_core::{GCounter, Lattice};
///
/// let mut here = GCounter::new();
/// here.increment(1, 3);
/// let mut there = GCounter::new();
/// there.increment(2, 4);
/// here.merge_ref(&there);
/// here.merge(there);            // merging twice counts once
/// assert_eq!(here.value(), 7);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(
        transparent,
        bound(
            serialize = "A: serde::Serialize + Clone + Ord",
            deserialize = "A: serde::Deserialize<'de> + Ord"
        )
    )
)]
pub struct GCounter<A = u64> {
    counts: VectorClock<A>,
}

impl<A: Ord> GCounter<A> {
    /// The zero counter (⊥).
    pub const fn new() -> Self {
        Self { counts: VectorClock::new() }
    }
    /// Adds `by` to `actor`'s count (saturating at `u64::MAX` per actor).
    pub fn increment(&mut self, actor: A, by: u64) {
        self.counts.advance(actor, by);
    }
    /// The total over all actors.
    pub fn value(&self) -> u128 {
        self.counts.iter().map(|(_, count)| u128::from(count)).sum()
    }
    /// `actor`'s own count.
    pub fn get(&self, actor: &A) -> u64 {
        self.counts.get(actor)
    }
    /// The per-actor counts.
    pub fn counts(&self) -> &VectorClock<A> {
        &self.counts
    }
}

impl<A: Ord + Clone> Lattice for GCounter<A> {
    fn merge(&mut self, other: Self) -> bool {
        self.counts.merge(other.counts)
    }
    fn merge_ref(&mut self, other: &Self) -> bool {
        self.counts.merge_ref(&other.counts)
    }
    fn bottom() -> Self {
        Self::new()
    }
    fn is_bottom(&self) -> bool {
        self.counts.is_bottom()
    }
    fn leq(&self, other: &Self) -> bool {
        self.counts.leq(&other.counts)
    }
}

/// A counter that goes up and down: two [`GCounter`]s, one of increments and one of
/// decrements; the value is their difference. ⊥ is zero. It backs Redis' `INCR` family in Anna.
///
/// ```
/// use lattice_core::{Lattice, PNCounter};
///
/// let mut a = PNCounter::new();
/// a.increment(1, 10);
/// let mut b = PNCounter::new();
/// b.decrement(2, 3);
/// assert_eq!(a.join(b).value(), 7);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(bound(
        serialize = "A: serde::Serialize + Clone + Ord",
        deserialize = "A: serde::Deserialize<'de> + Ord"
    ))
)]
pub struct PNCounter<A = u64> {
    increments: GCounter<A>,
    decrements: GCounter<A>,
}

impl<A: Ord> PNCounter<A> {
    /// The zero counter (⊥).
    pub const fn new() -> Self {
        Self { increments: GCounter::new(), decrements: GCounter::new() }
    }
    /// Adds `by` on behalf of `actor`.
    pub fn increment(&mut self, actor: A, by: u64) {
        self.increments.increment(actor, by);
    }
    /// Subtracts `by` on behalf of `actor`.
    pub fn decrement(&mut self, actor: A, by: u64) {
        self.decrements.increment(actor, by);
    }
    /// Adds a signed amount on behalf of `actor`.
    pub fn add(&mut self, actor: A, delta: i64) {
        if delta >= 0 {
            self.increment(actor, delta.unsigned_abs());
        } else {
            self.decrement(actor, delta.unsigned_abs());
        }
    }
    /// Increments minus decrements.
    pub fn value(&self) -> i128 {
        // Each side is at most (actors × u64::MAX); i128 holds that for 2^63 actors.
        let up = i128::try_from(self.increments.value()).unwrap_or(i128::MAX);
        let down = i128::try_from(self.decrements.value()).unwrap_or(i128::MAX);
        up - down
    }
    /// The increments.
    pub fn increments(&self) -> &GCounter<A> {
        &self.increments
    }
    /// The decrements.
    pub fn decrements(&self) -> &GCounter<A> {
        &self.decrements
    }
}

impl<A: Ord + Clone> Lattice for PNCounter<A> {
    fn merge(&mut self, other: Self) -> bool {
        let up = self.increments.merge(other.increments);
        let down = self.decrements.merge(other.decrements);
        up | down
    }
    fn merge_ref(&mut self, other: &Self) -> bool {
        let up = self.increments.merge_ref(&other.increments);
        let down = self.decrements.merge_ref(&other.decrements);
        up | down
    }
    fn bottom() -> Self {
        Self::new()
    }
    fn is_bottom(&self) -> bool {
        self.increments.is_bottom() && self.decrements.is_bottom()
    }
    fn leq(&self, other: &Self) -> bool {
        self.increments.leq(&other.increments) && self.decrements.leq(&other.decrements)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laws::check_all;

    #[test]
    fn gcounter_edge_values_obey_the_laws() {
        let g = |entries: &[(u8, u64)]| {
            let mut c = GCounter::new();
            for &(a, n) in entries {
                c.increment(a, n);
            }
            c
        };
        check_all(&[g(&[]), g(&[(0, 1)]), g(&[(0, u64::MAX)]), g(&[(1, 2), (0, 1)]), g(&[(0, 0)])]);
    }

    #[test]
    fn pncounter_edge_values_obey_the_laws() {
        let p = |up: u64, down: u64| {
            let mut c = PNCounter::<u8>::new();
            c.increment(0, up);
            c.decrement(1, down);
            c
        };
        check_all(&[p(0, 0), p(1, 0), p(0, 1), p(u64::MAX, u64::MAX), p(5, 2)]);
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let mut c = PNCounter::<u8>::new();
        for actor in 0..4 {
            c.increment(actor, u64::MAX);
        }
        assert_eq!(c.value(), 4 * i128::from(u64::MAX));
        c.add(9, -5);
        assert_eq!(c.value(), 4 * i128::from(u64::MAX) - 5);
    }
}
