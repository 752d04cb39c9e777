//! Every built-in lattice passes the randomized law suite, through both proptest (the
//! `lattice_law_tests!` macro) and quickcheck (`quickcheck_laws`).
//!
//! Small domains (`bool` actors, `u8` values) make generated states collide and overlap, which
//! is where merge bugs live.

use lattice_core::{
    BoolOr, DomPair, GCounter, Lww, MapLattice, Max, Min, MultiValue, OrSet, PNCounter, Pair,
    Priority, SetUnion, TotalF64, VectorClock, lattice_law_tests, quickcheck_laws,
};

lattice_law_tests!(max_u8, Max<u8>);
lattice_law_tests!(max_i64, Max<i64>);
lattice_law_tests!(max_total_f64, Max<TotalF64>);
lattice_law_tests!(min_u8, Min<u8>);
lattice_law_tests!(min_total_f64, Min<TotalF64>);
lattice_law_tests!(bool_or, BoolOr);
lattice_law_tests!(set_union, SetUnion<u8>);
lattice_law_tests!(map_of_max, MapLattice<bool, Max<u8>>);
lattice_law_tests!(map_of_sets, MapLattice<u8, SetUnion<bool>>);
lattice_law_tests!(pair, Pair<Max<u8>, SetUnion<bool>>);
lattice_law_tests!(dom_pair, DomPair<u8, SetUnion<bool>>);
lattice_law_tests!(dom_pair_of_clock, DomPair<u8, VectorClock<bool>>);
lattice_law_tests!(lww, Lww<u8>);
lattice_law_tests!(vector_clock, VectorClock<bool>);
lattice_law_tests!(vector_clock_u8, VectorClock<u8>);
lattice_law_tests!(multi_value, MultiValue<bool, bool>);
lattice_law_tests!(multi_value_u8, MultiValue<u8, u8>);
lattice_law_tests!(gcounter, GCounter<bool>);
lattice_law_tests!(pncounter, PNCounter<bool>);
lattice_law_tests!(or_set, OrSet<u8, bool>);
lattice_law_tests!(or_set_bool, OrSet<bool, bool>);
lattice_law_tests!(priority, Priority<u8, bool>);
lattice_law_tests!(priority_f64, Priority<TotalF64, u8>);
lattice_law_tests!(nested_map_of_or_sets, MapLattice<bool, OrSet<bool, bool>>);
lattice_law_tests!(option_of_sets, Option<SetUnion<u8>>);
lattice_law_tests!(option_of_boxed_counters, Option<Box<PNCounter<bool>>>);

macro_rules! quickcheck_suite {
    ($($name:ident: $ty:ty;)+) => {
        $(#[test] fn $name() { quickcheck_laws::<$ty>(); })+
    };
}

quickcheck_suite! {
    qc_max: Max<u8>;
    qc_min: Min<i16>;
    qc_bool_or: BoolOr;
    qc_set_union: SetUnion<u8>;
    qc_map: MapLattice<bool, Max<u8>>;
    qc_pair: Pair<Max<u8>, BoolOr>;
    qc_dom_pair: DomPair<u8, SetUnion<bool>>;
    qc_lww: Lww<u8>;
    qc_vector_clock: VectorClock<bool>;
    qc_multi_value: MultiValue<bool, bool>;
    qc_gcounter: GCounter<bool>;
    qc_pncounter: PNCounter<bool>;
    qc_or_set: OrSet<u8, bool>;
    qc_priority: Priority<u8, bool>;
    qc_priority_f64: Priority<TotalF64, bool>;
}
