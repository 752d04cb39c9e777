//! [`Max`]: the larger value wins.

use num_traits::Bounded;

use crate::Lattice;

/// A totally ordered value that only grows: merge keeps the larger of the two.
///
/// ⊥ is `T::min_value()` (from [`num_traits::Bounded`]), so `Max<u64>` starts at 0.
/// `Max`'s `PartialOrd`/`Ord` are `T`'s, which here *is* the lattice order.
///
/// ```
/// use lattice_core::{Lattice, Max};
///
/// let mut high_water = Max::new(10_i64);
/// high_water.merge(Max::new(-3));
/// high_water.merge(Max::new(42));
/// assert_eq!(*high_water.get(), 42);
/// assert_eq!(Max::<i64>::bottom().into_inner(), i64::MIN);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct Max<T>(T);

impl<T> Max<T> {
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

impl<T: Ord + Clone + Bounded> Lattice for Max<T> {
    fn merge(&mut self, other: Self) -> bool {
        if other.0 > self.0 {
            self.0 = other.0;
            true
        } else {
            false
        }
    }
    fn merge_ref(&mut self, other: &Self) -> bool {
        if other.0 > self.0 {
            self.0.clone_from(&other.0);
            true
        } else {
            false
        }
    }
    fn bottom() -> Self {
        Self(T::min_value())
    }
    fn is_bottom(&self) -> bool {
        self.0 == T::min_value()
    }
    fn leq(&self, other: &Self) -> bool {
        self.0 <= other.0
    }
}

impl<T: Bounded> Default for Max<T> {
    fn default() -> Self {
        Self(T::min_value())
    }
}

impl<T> From<T> for Max<T> {
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
        check_all(&[Max::new(u8::MIN), Max::new(1), Max::new(127), Max::new(u8::MAX)]);
        check_all(&[Max::new(i64::MIN), Max::new(-1), Max::new(0), Max::new(i64::MAX)]);
    }

    #[test]
    fn bottom_is_min_value_and_default() {
        assert_eq!(Max::<i32>::bottom(), Max::default());
        assert!(Max::new(i32::MIN).is_bottom());
        assert!(!Max::new(0_i32).is_bottom());
    }
}
