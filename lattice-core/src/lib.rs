#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

//! # Map of the crate
//!
//! - [`Lattice`] (module [`lattice`]): the trait, its laws, and [`lattice::join_all`].
//! - [`laws`]: the law checks, for your own tests.
//! - [`delta`]: delta states ([`OrSet::add_delta`]) and [`delta::Decompose`] (whole states
//!   cut into bounded parts).
//! - One module per built-in lattice: [`Max`], [`Min`], [`BoolOr`], [`SetUnion`],
//!   [`MapLattice`], [`Pair`] (and tuples), [`DomPair`], [`Lww`], [`VectorClock`],
//!   [`MultiValue`], [`GCounter`], [`PNCounter`], [`OrSet`], [`Priority`].
//! - Feature `proptest`: [`Arbitrary`](proptest::arbitrary::Arbitrary) for every built-in and
//!   the [`lattice_law_tests!`] macro. Feature `quickcheck`: `quickcheck::Arbitrary` for every
//!   built-in and `laws::quickcheck_laws`.

pub mod delta;
mod dots;
pub mod lattice;
pub mod laws;

pub mod bool_or;
pub mod counters;
pub mod dom_pair;
mod extremum;
pub mod lww;
pub mod map;
pub mod max;
pub mod min;
pub mod multi_value;
pub mod or_set;
pub mod pair;
pub mod priority;
pub mod set_union;
pub mod vector_clock;

#[cfg(feature = "proptest")]
mod proptest_support;
#[cfg(feature = "quickcheck")]
mod quickcheck_support;

pub use bool_or::BoolOr;
pub use counters::{GCounter, PNCounter};
pub use dom_pair::DomPair;
pub use lattice::Lattice;
pub use lww::{Lww, Stamp};
pub use map::MapLattice;
pub use max::Max;
pub use min::Min;
pub use multi_value::MultiValue;
pub use or_set::{Dot, OrSet};
pub use pair::Pair;
pub use priority::{Priority, TotalF64};
pub use set_union::SetUnion;
pub use vector_clock::{CausalOrder, VectorClock};

#[cfg(feature = "proptest")]
pub use proptest;
#[cfg(feature = "proptest")]
pub use proptest_support::run_law_suite;

#[cfg(feature = "quickcheck")]
pub use quickcheck;
#[cfg(feature = "quickcheck")]
pub use quickcheck_support::{quickcheck_laws, quickcheck_property};

pub use num_traits::Bounded;

/// Derives [`Lattice`](trait@Lattice) for a struct: the product lattice of its fields.
///
/// Merge is field-wise and reports a change if any field changed; ⊥ has every field at ⊥;
/// `is_bottom` holds when every field is ⊥; the order is field-wise; `merge_ref` works field by
/// field without cloning the struct. Works on structs with named fields, tuple structs, unit
/// structs, generic structs (a `FieldType: Lattice` bound is inferred per field) and structs
/// with where-clauses. Every field must be a lattice; the struct must be `Clone`.
///
/// ```
/// use lattice_core::{Lattice, OrSet, PNCounter, VectorClock};
///
/// #[derive(Lattice, Clone, Debug, PartialEq)]
/// struct Session {
///     seen: VectorClock,
///     cart: OrSet<String>,
///     total: PNCounter,
/// }
///
/// let mut phone = Session::bottom();
/// phone.cart.add(1, "milk".to_owned());
/// phone.total.increment(1, 3);
/// let mut laptop = Session::bottom();
/// laptop.seen.increment(2);
/// assert!(phone.merge_ref(&laptop));
/// assert_eq!(phone.seen.get(&2), 1);
/// assert_eq!(phone.total.value(), 3);
/// ```
///
/// # Attributes
///
/// On the struct:
/// - `#[lattice(crate = "path")]`: where lattice-core is, if your `Cargo.toml` renamed it
///   (`my_lattices = { package = "lattice-core", ... }` → `#[lattice(crate = "my_lattices")]`).
/// - `#[lattice(bound = "T: Lattice + Ord")]`: the where-clause to use instead of the inferred
///   one (`Self: Clone` is always added).
/// - `#[lattice(arbitrary)]`: also derive proptest's `Arbitrary` and quickcheck's `Arbitrary`
///   from the fields' generators. Each impl exists only while lattice-core's `proptest` /
///   `quickcheck` feature is on, so enabling those features in `[dev-dependencies]` gives your
///   tests the generators without adding anything to normal builds. Then the randomized law
///   suite is one line: `lattice_law_tests!(session_laws, Session);`. Needs `Debug`.
///
/// On one field:
/// - `#[lattice(dominating)]`: order the struct lexicographically by this field first: a
///   greater value replaces the whole struct, an equal one merges the other fields, a smaller
///   one is ignored. The field must be totally ordered and bounded (`Ord + Bounded`, e.g. a
///   `u64` version or an `(epoch, counter)` tuple); ⊥ has it at its minimum. This is
///   [`DomPair`] over several fields.
///
/// ```
/// use lattice_core::{Lattice, SetUnion};
///
/// #[derive(Lattice, Clone, Debug, PartialEq)]
/// struct Config {
///     #[lattice(dominating)]
///     version: u64,
///     flags: SetUnion<String>,
/// }
///
/// let mut live = Config { version: 3, flags: SetUnion::from_iter(["a".to_owned()]) };
/// live.merge(Config { version: 3, flags: SetUnion::from_iter(["b".to_owned()]) });
/// assert_eq!(live.flags.len(), 2);                         // same version: flags merge
/// live.merge(Config { version: 4, flags: SetUnion::new() });
/// assert!(live.flags.is_empty());                          // newer version replaces
/// ```
///
/// # Errors
///
/// Enums, unions, fields that are not lattices, and unknown or malformed attributes each give
/// one compile error at the offending tokens that says what to do.
#[cfg(feature = "derive")]
pub use lattice_derive::Lattice;

/// Emits its input when lattice-core's `proptest` feature is on (used by `#[derive(Lattice)]`).
#[cfg(feature = "proptest")]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_proptest {
    ($($tokens:tt)*) => { $($tokens)* };
}

/// Emits nothing: lattice-core's `proptest` feature is off.
#[cfg(not(feature = "proptest"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_proptest {
    ($($tokens:tt)*) => {};
}

/// Emits its input when lattice-core's `quickcheck` feature is on (used by `#[derive(Lattice)]`).
#[cfg(feature = "quickcheck")]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_quickcheck {
    ($($tokens:tt)*) => { $($tokens)* };
}

/// Emits nothing: lattice-core's `quickcheck` feature is off.
#[cfg(not(feature = "quickcheck"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_quickcheck {
    ($($tokens:tt)*) => {};
}
