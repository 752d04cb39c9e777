#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

//! # Map of the crate
//!
//! - [`Lattice`] (module [`lattice`]): the trait, its laws, and [`lattice::join_all`].
//! - [`laws`]: the law checks, for your own tests.
//! - One module per built-in lattice: [`Max`], [`Min`], [`BoolOr`], [`SetUnion`],
//!   [`MapLattice`], [`Pair`] (and tuples), [`DomPair`], [`Lww`], [`VectorClock`],
//!   [`MultiValue`], [`GCounter`], [`PNCounter`], [`OrSet`], [`Priority`].
//! - Feature `proptest`: [`Arbitrary`](proptest::arbitrary::Arbitrary) for every built-in and
//!   the [`lattice_law_tests!`] macro. Feature `quickcheck`: `quickcheck::Arbitrary` for every
//!   built-in and `laws::quickcheck_laws`.

pub mod lattice;
pub mod laws;

pub mod bool_or;
pub mod counters;
pub mod dom_pair;
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

/// The repository README's Rust examples, compiled and run as doctests so they cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct RepositoryReadmeDoctests;
