//! The [`Lattice`] trait and the order helpers every lattice gets for free.

use core::cmp::Ordering;

/// A bounded join semilattice: a set of states with a least element ⊥ ("bottom") and a merge
/// (join, ⊔) that only ever moves a state *up*.
///
/// Replicas that exchange states and only ever merge them converge to the same state, whatever
/// the order, batching or duplication of the exchanges. That guarantee rests on the laws below;
/// [`crate::laws`] checks them for any type, so check your own implementations with it.
///
/// # Laws
///
/// For all values `a`, `b`, `c` (writing `a ⊔ b` for the result of `a.merge(b)`):
///
/// 1. **Associativity**: `(a ⊔ b) ⊔ c == a ⊔ (b ⊔ c)`.
/// 2. **Commutativity**: `a ⊔ b == b ⊔ a`.
/// 3. **Idempotence**: `a ⊔ a == a`.
/// 4. **Bottom is the identity**: `⊥ ⊔ a == a` and `a ⊔ ⊥ == a`; `is_bottom(a)` holds exactly
///    when `a == ⊥`.
/// 5. **Truthful change flag**: `a.merge(b)` returns `true` exactly when `a` changed.
/// 6. **By-reference merge agrees**: `merge_ref(&b)` leaves the same state and returns the same
///    flag as `merge(b.clone())`.
/// 7. **The order agrees with merge**: `a.leq(&b)` exactly when `a ⊔ b == b`.
///
/// "Equal" means equal as lattice states; every built-in uses a canonical representation so
/// that this is plain `==`.
///
/// # Example
///
/// ```
/// use lattice_core::{Lattice, Max};
///
/// let mut a = Max::new(3_u32);
/// assert!(a.merge(Max::new(7)));     // moved up: changed
/// assert!(!a.merge(Max::new(5)));    // 5 is below 7: unchanged
/// assert_eq!(a.into_inner(), 7);
/// assert!(Max::<u32>::bottom().is_bottom());
/// assert!(Max::new(2_u32).leq(&Max::new(9)));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a lattice",
    label = "`{Self}` does not implement `Lattice`",
    note = "every field of a `#[derive(Lattice)]` struct must be a lattice: wrap a plain value in one \
            (`Lww<T>` for last-writer-wins, `Max<T>`/`Min<T>` for ordered values, `SetUnion<T>` for sets), \
            or implement `Lattice` for `{Self}`"
)]
pub trait Lattice: Sized + Clone {
    /// Joins `other` into `self`. Returns `true` iff `self` changed.
    fn merge(&mut self, other: Self) -> bool;

    /// Joins `other` into `self` by reference. Returns `true` iff `self` changed.
    ///
    /// The default clones `other`; collection lattices override it to clone only the parts that
    /// actually change `self` (gossip merges one state into many replicas).
    fn merge_ref(&mut self, other: &Self) -> bool {
        self.merge(other.clone())
    }

    /// The least element ⊥: merging it into anything changes nothing.
    fn bottom() -> Self;

    /// `true` iff `self` is ⊥.
    fn is_bottom(&self) -> bool;

    /// The lattice's partial order: `self ≤ other` iff `self ⊔ other == other`.
    ///
    /// The default merges `self` into a copy of `other` and reports whether that copy stayed
    /// the same, so it agrees with merge by construction. Override it only to make it cheaper;
    /// the law checks verify an override.
    fn leq(&self, other: &Self) -> bool {
        let mut joined = other.clone();
        !joined.merge_ref(self)
    }

    /// Compares two states in the lattice order: `None` when they are incomparable.
    ///
    /// This is deliberately *not* [`PartialOrd`]: a set's `PartialOrd` is lexicographic and a
    /// `Min`'s lattice order is the reverse of its values' order, so the two would disagree.
    fn lattice_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self.leq(other), other.leq(self)) {
            (true, true) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Less),
            (false, true) => Some(Ordering::Greater),
            (false, false) => None,
        }
    }

    /// Consumes both states and returns their join (the functional form of [`merge`](Self::merge)).
    ///
    /// ```
    /// use lattice_core::{Lattice, SetUnion};
    /// let s = SetUnion::from_iter([1, 2]).join(SetUnion::from_iter([2, 3]));
    /// assert_eq!(s.len(), 3);
    /// ```
    #[must_use]
    fn join(mut self, other: Self) -> Self {
        self.merge(other);
        self
    }
}

/// Merges every state of `states` into ⊥ and returns the result.
///
/// ```
/// use lattice_core::{Max, lattice::join_all};
/// assert_eq!(join_all([Max::new(1_u8), Max::new(4), Max::new(2)]).into_inner(), 4);
/// ```
pub fn join_all<L: Lattice>(states: impl IntoIterator<Item = L>) -> L {
    let mut acc = L::bottom();
    for state in states {
        acc.merge(state);
    }
    acc
}

impl Lattice for () {
    fn merge(&mut self, _other: Self) -> bool {
        false
    }
    fn bottom() -> Self {}
    fn is_bottom(&self) -> bool {
        true
    }
}

/// `None` is ⊥; `Some(a) ⊔ Some(b) = Some(a ⊔ b)`. A present value is above an absent one
/// even if it is ⊥ itself (as a key present in a map is). Handy for large, rarely used parts of
/// a state: `Option<Box<L>>` costs one pointer until first written.
impl<L: Lattice> Lattice for Option<L> {
    fn merge(&mut self, other: Self) -> bool {
        match (self.as_mut(), other) {
            (_, None) => false,
            (None, Some(theirs)) => {
                *self = Some(theirs);
                true
            }
            (Some(mine), Some(theirs)) => mine.merge(theirs),
        }
    }
    fn merge_ref(&mut self, other: &Self) -> bool {
        match (self.as_mut(), other) {
            (_, None) => false,
            (None, Some(theirs)) => {
                *self = Some(theirs.clone());
                true
            }
            (Some(mine), Some(theirs)) => mine.merge_ref(theirs),
        }
    }
    fn bottom() -> Self {
        None
    }
    fn is_bottom(&self) -> bool {
        self.is_none()
    }
    fn leq(&self, other: &Self) -> bool {
        match (self, other) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mine), Some(theirs)) => mine.leq(theirs),
        }
    }
}

/// A boxed lattice is the lattice itself, on the heap.
impl<L: Lattice> Lattice for Box<L> {
    fn merge(&mut self, other: Self) -> bool {
        (**self).merge(*other)
    }
    fn merge_ref(&mut self, other: &Self) -> bool {
        (**self).merge_ref(other)
    }
    fn bottom() -> Self {
        Box::new(L::bottom())
    }
    fn is_bottom(&self) -> bool {
        (**self).is_bottom()
    }
    fn leq(&self, other: &Self) -> bool {
        (**self).leq(other)
    }
}

#[cfg(test)]
mod tests {
    use crate::laws::check_all;
    use crate::{Max, SetUnion};

    #[test]
    fn option_and_box_obey_the_laws() {
        check_all(&[None, Some(Max::new(0_u8)), Some(Max::new(3)), Some(Max::new(255))]);
        check_all(&[
            None,
            Some(Box::new(SetUnion::new())),
            Some(Box::new(SetUnion::from_iter([1_u8]))),
            Some(Box::new(SetUnion::from_iter([2_u8, 3]))),
        ]);
    }
}
