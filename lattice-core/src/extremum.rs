//! The code [`Max`](crate::Max) and [`Min`](crate::Min) share: a value that only moves one way
//! through a total order, with the bound of that order as ⊥. Each type is one invocation of
//! [`extremum!`] naming the direction; only their docs, tests and derives differ.

/// Defines a one-way lattice over a totally ordered, bounded `T`: `$name<T>(T)` whose merge
/// keeps `other` when `other.0 $wins self.0`, whose ⊥ is `T::$bottom()`, and whose lattice
/// order is `self.0 $leq other.0`.
macro_rules! extremum {
    (
        $(#[$doc:meta])*
        $name:ident, derive($($derive:ident),*), wins: $wins:tt, bottom: $bottom:ident, leq: $leq:tt
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash $(, $derive)*)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        #[cfg_attr(feature = "serde", serde(transparent))]
        pub struct $name<T>(T);

        impl<T> $name<T> {
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

        impl<T: Ord + Clone + ::num_traits::Bounded> $crate::Lattice for $name<T> {
            fn merge(&mut self, other: Self) -> bool {
                if other.0 $wins self.0 {
                    self.0 = other.0;
                    true
                } else {
                    false
                }
            }
            fn merge_ref(&mut self, other: &Self) -> bool {
                if other.0 $wins self.0 {
                    self.0.clone_from(&other.0);
                    true
                } else {
                    false
                }
            }
            fn bottom() -> Self {
                Self(T::$bottom())
            }
            fn is_bottom(&self) -> bool {
                self.0 == T::$bottom()
            }
            fn leq(&self, other: &Self) -> bool {
                self.0 $leq other.0
            }
        }

        impl<T: ::num_traits::Bounded> Default for $name<T> {
            fn default() -> Self {
                Self(T::$bottom())
            }
        }

        impl<T> From<T> for $name<T> {
            fn from(value: T) -> Self {
                Self(value)
            }
        }
    };
}

pub(crate) use extremum;
