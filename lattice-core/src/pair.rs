//! [`Pair`]: the product of two lattices.

use crate::Lattice;

/// The product of two lattices: merge each side independently. ⊥ is `(⊥, ⊥)`.
///
/// Tuples `(A, B)`, `(A, B, C)` and `(A, B, C, D)` of lattices are lattices in the same way;
/// `Pair` gives the two sides names and a serde form of its own.
///
/// ```
/// use lattice_core::{Lattice, Max, Min, Pair};
///
/// let mut range = Pair::new(Min::new(10_i32), Max::new(10_i32));
/// range.merge(Pair::new(Min::new(3), Max::new(7)));
/// assert_eq!((*range.first.get(), *range.second.get()), (3, 10));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Pair<A, B> {
    /// The first component.
    pub first: A,
    /// The second component.
    pub second: B,
}

impl<A, B> Pair<A, B> {
    /// Pairs two lattice states.
    pub const fn new(first: A, second: B) -> Self {
        Self { first, second }
    }
    /// Splits the pair.
    pub fn into_parts(self) -> (A, B) {
        (self.first, self.second)
    }
}

impl<A: Lattice, B: Lattice> Lattice for Pair<A, B> {
    fn merge(&mut self, other: Self) -> bool {
        let a = self.first.merge(other.first);
        let b = self.second.merge(other.second);
        a | b
    }
    fn merge_ref(&mut self, other: &Self) -> bool {
        let a = self.first.merge_ref(&other.first);
        let b = self.second.merge_ref(&other.second);
        a | b
    }
    fn bottom() -> Self {
        Self::new(A::bottom(), B::bottom())
    }
    fn is_bottom(&self) -> bool {
        self.first.is_bottom() && self.second.is_bottom()
    }
    fn leq(&self, other: &Self) -> bool {
        self.first.leq(&other.first) && self.second.leq(&other.second)
    }
}

macro_rules! tuple_lattice {
    ($($name:ident . $idx:tt),+) => {
        impl<$($name: Lattice),+> Lattice for ($($name,)+) {
            fn merge(&mut self, other: Self) -> bool {
                let mut changed = false;
                $(changed |= self.$idx.merge(other.$idx);)+
                changed
            }
            fn merge_ref(&mut self, other: &Self) -> bool {
                let mut changed = false;
                $(changed |= self.$idx.merge_ref(&other.$idx);)+
                changed
            }
            fn bottom() -> Self {
                ($($name::bottom(),)+)
            }
            fn is_bottom(&self) -> bool {
                true $(&& self.$idx.is_bottom())+
            }
            fn leq(&self, other: &Self) -> bool {
                true $(&& self.$idx.leq(&other.$idx))+
            }
        }
    };
}

tuple_lattice!(A.0);
tuple_lattice!(A.0, B.1);
tuple_lattice!(A.0, B.1, C.2);
tuple_lattice!(A.0, B.1, C.2, D.3);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laws::check_all;
    use crate::{BoolOr, Max, SetUnion};

    #[test]
    fn edge_values_obey_the_laws() {
        let p = |a: u8, b: &[u8]| Pair::new(Max::new(a), SetUnion::from_iter(b.iter().copied()));
        check_all(&[p(0, &[]), p(255, &[]), p(0, &[1]), p(3, &[1, 2]), p(2, &[2, 3])]);
    }

    #[test]
    fn tuples_obey_the_laws() {
        check_all(&[
            (Max::new(0_u8), BoolOr::new(false), Max::new(0_u8)),
            (Max::new(1), BoolOr::new(false), Max::new(9)),
            (Max::new(0), BoolOr::new(true), Max::new(3)),
        ]);
    }
}
