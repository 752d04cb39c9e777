//! [`Min`]: the smaller value wins.

use num_traits::Bounded;

use crate::Lattice;

/// A totally ordered value that only shrinks: merge keeps the smaller of the two.
///
/// ⊥ is `T::max_value()`. Note that the *lattice* order is the reverse of `T`'s order: a
/// smaller value is higher in the lattice, which is why [`Lattice::leq`] and not `<=` is the
/// order to use on lattices.
///
/// ```
/// use lattice_core::{Lattice, Min};
///
/// let mut earliest = Min::new(1_700_000_000_u64);
/// earliest.merge(Min::new(1_600_000_000));
/// assert_eq!(*earliest.get(), 1_600_000_000);
/// assert!(Min::new(9_u64).leq(&Min::new(1)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct Min<T>(T);

impl<T> Min<T> {
    /// Wraps a value.
    pub const fn new(value: T) -> Self {
        Self(value)
    }
    /// The current value.
    pub const fn get(&self) -> &T {
        &self.0
    }
    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: Ord + Clone + Bounded> Lattice for Min<T> {
    fn merge(&mut self, other: Self) -> bool {
        if other.0 < self.0 {
            self.0 = other.0;
            true
        } else {
            false
        }
    }
    fn merge_ref(&mut self, other: &Self) -> bool {
        if other.0 < self.0 {
            self.0.clone_from(&other.0);
            true
        } else {
            false
        }
    }
    fn bottom() -> Self {
        Self(T::max_value())
    }
    fn is_bottom(&self) -> bool {
        self.0 == T::max_value()
    }
    fn leq(&self, other: &Self) -> bool {
        self.0 >= other.0
    }
}

impl<T: Bounded> Default for Min<T> {
    fn default() -> Self {
        Self(T::max_value())
    }
}

impl<T> From<T> for Min<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laws::check_all;

    #[test]
    fn edge_values_obey_the_laws() {
        check_all(&[Min::new(u16::MIN), Min::new(1), Min::new(u16::MAX - 1), Min::new(u16::MAX)]);
        check_all(&[Min::new(i8::MIN), Min::new(0), Min::new(i8::MAX)]);
    }

    #[test]
    fn order_is_reversed() {
        assert!(Min::new(5_u8).leq(&Min::new(3)));
        assert!(!Min::new(3_u8).leq(&Min::new(5)));
        assert!(Min::<u8>::bottom().leq(&Min::new(0)));
    }
}
