//! [`OrSet`]: an observed-remove set where a concurrent add wins over a remove.

use std::collections::{BTreeMap, BTreeSet};

use crate::dots::Dots;
use crate::{Lattice, VectorClock};

/// A unique tag for one add: the adding actor and its per-actor sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Dot<A = u64> {
    /// The actor that made the add.
    pub actor: A,
    /// The actor's sequence number for it (starting at 1).
    pub counter: u64,
}

/// An [`OrSet`]'s live add dots per element (see [`OrSet::into_parts`]).
pub type AddDots<T, A> = BTreeMap<T, BTreeSet<Dot<A>>>;

/// An observed-remove set (add-wins).
///
/// Every add is tagged with a fresh [`Dot`]; a remove tombstones the dots it has *observed* for
/// the element. An element is present while it has a live (untombstoned) dot, so an add that a
/// remove did not see survives it. The state is the product of two grow-only sets (add dots and
/// tombstones) plus a clock for minting dots, kept in a canonical form (tombstoned dots are
/// dropped from the adds), so merge is a true lattice join for every input. ⊥ is the empty set
/// with no history.
///
/// ```
/// use lattice_core::{Lattice, OrSet};
///
/// let mut phone = OrSet::new();
/// phone.add(1, "milk");
/// let mut laptop = phone.clone();
///
/// laptop.remove(&"milk");          // removes the add it saw...
/// phone.add(1, "milk");            // ...but not this concurrent re-add
/// phone.add(1, "eggs");
///
/// let cart = phone.join(laptop);
/// assert!(cart.contains(&"milk"));  // add wins
/// assert_eq!(cart.len(), 2);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(
        from = "OrSetParts<T, A>",
        bound(
            deserialize = "T: serde::Deserialize<'de> + Ord, A: serde::Deserialize<'de> + Ord + Clone"
        )
    )
)]
pub struct OrSet<T, A = u64> {
    /// Live add dots per element (one, inline, for an element added once). Invariant: no dot
    /// here is in `removed`; none is empty.
    adds: BTreeMap<T, Dots<A>>,
    /// Tombstoned dots.
    removed: BTreeSet<Dot<A>>,
    /// Per actor, at least the largest counter of any dot above, so new dots are fresh.
    clock: VectorClock<A>,
}

/// The serialized form of an [`OrSet`] (each element's dots as a set); deserializing
/// re-establishes its invariants.
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
#[serde(bound(
    deserialize = "T: serde::Deserialize<'de> + Ord, A: serde::Deserialize<'de> + Ord + Clone"
))]
struct OrSetParts<T, A> {
    adds: BTreeMap<T, Dots<A>>,
    removed: BTreeSet<Dot<A>>,
    clock: VectorClock<A>,
}

/// [`OrSetParts`] by reference: serializing a set copies nothing.
#[cfg(feature = "serde")]
#[derive(serde::Serialize)]
#[serde(
    rename = "OrSetParts",
    bound(serialize = "T: serde::Serialize, A: serde::Serialize + Ord + Clone")
)]
struct OrSetPartsRef<'a, T, A> {
    adds: &'a BTreeMap<T, Dots<A>>,
    removed: &'a BTreeSet<Dot<A>>,
    clock: &'a VectorClock<A>,
}

#[cfg(feature = "serde")]
impl<T: serde::Serialize, A: serde::Serialize + Ord + Clone> serde::Serialize for OrSet<T, A> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        OrSetPartsRef { adds: &self.adds, removed: &self.removed, clock: &self.clock }
            .serialize(serializer)
    }
}

#[cfg(feature = "serde")]
impl<T: Ord, A: Ord + Clone> From<OrSetParts<T, A>> for OrSet<T, A> {
    fn from(parts: OrSetParts<T, A>) -> Self {
        Self::canonical(parts.adds, parts.removed, parts.clock)
    }
}

impl<T: Ord, A: Ord> OrSet<T, A> {
    /// The empty set with no history (⊥).
    pub const fn new() -> Self {
        Self { adds: BTreeMap::new(), removed: BTreeSet::new(), clock: VectorClock::new() }
    }

    /// `true` if `value` is present.
    pub fn contains(&self, value: &T) -> bool {
        self.adds.contains_key(value)
    }

    /// The present elements, in ascending order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &T> {
        self.adds.keys()
    }

    /// Number of present elements.
    pub fn len(&self) -> usize {
        self.adds.len()
    }

    /// `true` if no element is present (the set may still carry tombstones).
    pub fn is_empty(&self) -> bool {
        self.adds.is_empty()
    }

    /// Removes every observed add of `value`. Returns `true` if it was present.
    pub fn remove(&mut self, value: &T) -> bool {
        match self.adds.remove(value) {
            Some(dots) => {
                self.removed.extend(dots.into_set());
                true
            }
            None => false,
        }
    }

    /// The number of tombstones carried (the memory cost of removes).
    pub fn tombstones(&self) -> usize {
        self.removed.len()
    }
}

impl<T: Ord, A: Ord + Clone> OrSet<T, A> {
    /// Adds `value` on behalf of `actor`. Returns the dot that tags this add.
    pub fn add(&mut self, actor: A, value: T) -> Dot<A> {
        let counter = self.clock.increment(actor.clone());
        let dot = Dot { actor, counter };
        match self.adds.entry(value) {
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(Dots::one(dot.clone()));
            }
            std::collections::btree_map::Entry::Occupied(mut entry) => {
                entry.get_mut().insert(dot.clone());
            }
        }
        dot
    }

    /// Adds `value` on behalf of `actor`, like [`add`](Self::add), and returns the delta: the
    /// one-dot state that, merged into the set as it was, makes it what it is now (see
    /// [`crate::delta`]).
    ///
    /// ```
    /// use lattice_core::{Lattice, OrSet};
    /// let mut set = OrSet::<&str, u8>::new();
    /// set.add(1, "a");
    /// let mut replica = set.clone();
    /// replica.merge(set.add_delta(1, "b"));
    /// assert_eq!(replica, set);
    /// ```
    pub fn add_delta(&mut self, actor: A, value: T) -> Self
    where
        T: Clone,
    {
        let dot = self.add(actor, value.clone());
        let mut clock = VectorClock::new();
        clock.observe(dot.actor.clone(), dot.counter);
        Self { adds: BTreeMap::from([(value, Dots::one(dot))]), removed: BTreeSet::new(), clock }
    }

    /// Removes every observed add of `value`, like [`remove`](Self::remove), and returns the
    /// delta (the tombstones it made), or `None` if `value` was not present.
    pub fn remove_delta(&mut self, value: &T) -> Option<Self> {
        let dots = self.adds.remove(value)?.into_set();
        self.removed.extend(dots.iter().cloned());
        Some(Self::canonical(BTreeMap::new(), dots, VectorClock::new()))
    }

    /// The raw parts: live add dots per element, tombstones, clock (see
    /// [`from_parts`](Self::from_parts)).
    pub fn into_parts(self) -> (AddDots<T, A>, BTreeSet<Dot<A>>, VectorClock<A>) {
        let adds = self.adds.into_iter().map(|(value, dots)| (value, dots.into_set())).collect();
        (adds, self.removed, self.clock)
    }

    /// Cuts the set into parts of at most `max_weight` elements or tombstones (see
    /// [`crate::delta::Decompose`]): elements with all their dots and tombstones in ranges;
    /// the first part carries the whole clock, the others one just covering their dots.
    pub(crate) fn split_parts(self, max_weight: usize) -> Vec<Self> {
        let max_weight = max_weight.max(1);
        let mut parts = Vec::new();
        let mut adds = self.adds.into_iter().peekable();
        while adds.peek().is_some() {
            let chunk: BTreeMap<T, Dots<A>> = adds.by_ref().take(max_weight).collect();
            parts.push(Self::canonical(chunk, BTreeSet::new(), VectorClock::new()));
        }
        let mut removed = self.removed.into_iter().peekable();
        while removed.peek().is_some() {
            let chunk: BTreeSet<Dot<A>> = removed.by_ref().take(max_weight).collect();
            parts.push(Self::canonical(BTreeMap::new(), chunk, VectorClock::new()));
        }
        let clock = Self::canonical(BTreeMap::new(), BTreeSet::new(), self.clock);
        match parts.first_mut() {
            Some(first) => {
                first.clock = clock.clock;
            }
            None => parts.push(clock),
        }
        parts
    }

    /// Builds a set from raw parts, restoring the invariants (tombstoned dots dropped from the
    /// adds, empty entries dropped, the clock raised to cover every dot).
    pub fn from_parts(
        adds: BTreeMap<T, BTreeSet<Dot<A>>>,
        removed: BTreeSet<Dot<A>>,
        clock: VectorClock<A>,
    ) -> Self {
        let adds =
            adds.into_iter().filter_map(|(v, dots)| Some((v, Dots::from_set(dots)?))).collect();
        Self::canonical(adds, removed, clock)
    }

    /// [`from_parts`](Self::from_parts) of the inner representation.
    fn canonical(
        mut adds: BTreeMap<T, Dots<A>>,
        removed: BTreeSet<Dot<A>>,
        mut clock: VectorClock<A>,
    ) -> Self {
        adds.retain(|_, dots| dots.retain(|dot| !removed.contains(dot)));
        for dot in adds.values().flat_map(Dots::iter).chain(&removed) {
            clock.observe(dot.actor.clone(), dot.counter);
        }
        Self { adds, removed, clock }
    }

    fn absorb_tombstones<'a>(&mut self, tombstones: impl Iterator<Item = &'a Dot<A>>) -> bool
    where
        A: 'a,
    {
        let mut fresh = false;
        for dot in tombstones {
            if !self.removed.contains(dot) {
                self.removed.insert(dot.clone());
                fresh = true;
            }
        }
        if fresh {
            let removed = &self.removed;
            self.adds.retain(|_, dots| dots.retain(|dot| !removed.contains(dot)));
        }
        fresh
    }
}

impl<T: Ord + Clone, A: Ord + Clone> Lattice for OrSet<T, A> {
    fn merge(&mut self, other: Self) -> bool {
        let mut changed = self.absorb_tombstones(other.removed.iter());
        for (value, mut dots) in other.adds {
            if !dots.retain(|dot| !self.removed.contains(dot)) {
                continue;
            }
            match self.adds.entry(value) {
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(dots);
                    changed = true;
                }
                std::collections::btree_map::Entry::Occupied(mut entry) => {
                    let mine = entry.get_mut();
                    for dot in dots.iter() {
                        changed |= mine.insert(dot.clone());
                    }
                }
            }
        }
        changed |= self.clock.merge(other.clock);
        changed
    }
    fn merge_ref(&mut self, other: &Self) -> bool {
        let mut changed = self.absorb_tombstones(other.removed.iter());
        for (value, dots) in &other.adds {
            for dot in dots.iter() {
                if self.removed.contains(dot) {
                    continue;
                }
                match self.adds.get_mut(value) {
                    Some(mine) => {
                        if !mine.contains(dot) {
                            mine.insert(dot.clone());
                            changed = true;
                        }
                    }
                    None => {
                        self.adds.insert(value.clone(), Dots::one(dot.clone()));
                        changed = true;
                    }
                }
            }
        }
        changed |= self.clock.merge_ref(&other.clock);
        changed
    }
    fn bottom() -> Self {
        Self::new()
    }
    fn is_bottom(&self) -> bool {
        self.adds.is_empty() && self.removed.is_empty() && self.clock.is_bottom()
    }
    fn leq(&self, other: &Self) -> bool {
        self.removed.is_subset(&other.removed)
            && self.clock.leq(&other.clock)
            && self.adds.iter().all(|(value, dots)| {
                let theirs = other.adds.get(value);
                dots.iter().all(|dot| {
                    other.removed.contains(dot) || theirs.is_some_and(|t| t.contains(dot))
                })
            })
    }
}

impl<T: Ord, A: Ord> Default for OrSet<T, A> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laws::check_all;

    #[test]
    fn edge_values_obey_the_laws() {
        let mut one = OrSet::<u8, u8>::new();
        one.add(1, 10);
        let mut removed = one.clone();
        removed.remove(&10);
        let mut readded = removed.clone();
        readded.add(1, 10);
        let mut other = OrSet::new();
        other.add(2, 10);
        other.add(2, 11);
        // Same dot on two different elements: not produced by `add`, but a state all the same.
        let weird = OrSet::from_parts(
            BTreeMap::from([
                (10, BTreeSet::from([Dot { actor: 1, counter: 1 }])),
                (12, BTreeSet::from([Dot { actor: 1, counter: 1 }])),
            ]),
            BTreeSet::new(),
            VectorClock::new(),
        );
        check_all(&[OrSet::new(), one, removed, readded, other, weird]);
    }

    #[test]
    fn remove_only_removes_what_it_observed() {
        let mut a = OrSet::<&str, u8>::new();
        a.add(1, "x");
        let mut b = a.clone();
        b.remove(&"x");
        assert!(!b.contains(&"x"));
        a.add(1, "x");
        assert!(a.clone().join(b.clone()).contains(&"x"));
        let mut c = a.clone();
        c.remove(&"x");
        assert!(!c.join(a).join(b).contains(&"x"));
    }

    /// The inline single dot changes nothing on the wire or on disk: a set serializes exactly
    /// as its dot sets did (logs and peers of earlier versions read it the same).
    #[cfg(feature = "serde")]
    #[test]
    fn serializes_as_the_sets_of_dots_it_holds() {
        #[derive(serde::Serialize)]
        struct OrSetParts {
            adds: BTreeMap<u8, BTreeSet<Dot<u8>>>,
            removed: BTreeSet<Dot<u8>>,
            clock: VectorClock<u8>,
        }
        let mut set = OrSet::<u8, u8>::new();
        set.add(1, 5);
        set.add(2, 5);
        set.add(1, 6);
        set.add(3, 7);
        set.remove(&7);
        let (adds, removed, clock) = set.clone().into_parts();
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, serde_json::to_string(&OrSetParts { adds, removed, clock }).unwrap());
        assert_eq!(serde_json::from_str::<OrSet<u8, u8>>(&json).unwrap(), set);
    }
}
