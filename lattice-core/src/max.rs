//! [`Max`]: the larger value wins.

crate::extremum::extremum! {
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
    Max, derive(PartialOrd, Ord), wins: >, bottom: min_value, leq: <=
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Lattice;
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
