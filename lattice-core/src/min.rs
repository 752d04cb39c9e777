//! [`Min`]: the smaller value wins.

crate::extremum::extremum! {
    /// A totally ordered value that only shrinks: merge keeps the smaller of the two.
    ///
    /// ⊥ is `T::max_value()`. Note that the *lattice* order is the reverse of `T`'s order: a
    /// smaller value is higher in the lattice, which is why
    /// [`Lattice::leq`](crate::Lattice::leq) and not `<=` is the order to use on lattices.
    ///
    /// ```
    /// use lattice_core::{Lattice, Min};
    ///
    /// let mut earliest = Min::new(1_700_000_000_u64);
    /// earliest.merge(Min::new(1_600_000_000));
    /// assert_eq!(*earliest.get(), 1_600_000_000);
    /// assert!(Min::new(9_u64).leq(&Min::new(1)));
    /// ```
    Min, derive(), wins: <, bottom: max_value, leq: >=
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Lattice;
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
