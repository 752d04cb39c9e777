//! `#[derive(Lattice)]` on every struct shape, each checked by the randomized law suite (the
//! generators come from `#[lattice(arbitrary)]`) and by hand-written expectations.

use std::fmt::Debug;

use lattice_core::{
    BoolOr, GCounter, Lattice, Lww, MapLattice, Max, Min, OrSet, PNCounter, SetUnion, Stamp,
    VectorClock, lattice_law_tests, quickcheck_laws,
};

/// The issue's example: a user session, derived and law-tested in one line.
#[derive(Lattice, Clone, Debug, PartialEq)]
#[lattice(arbitrary)]
struct Session {
    seen: VectorClock,
    cart: OrSet<String>,
    total: PNCounter,
}

lattice_law_tests!(session_obeys_the_laws, Session);

#[derive(Lattice, Clone, Debug, PartialEq)]
#[lattice(arbitrary)]
struct Tuple(Max<u8>, SetUnion<bool>, BoolOr);

lattice_law_tests!(tuple_struct_obeys_the_laws, Tuple);

#[derive(Lattice, Clone, Debug, PartialEq)]
#[lattice(arbitrary)]
struct Unit;

lattice_law_tests!(unit_struct_obeys_the_laws, Unit);

#[derive(Lattice, Clone, Debug, PartialEq)]
#[lattice(arbitrary)]
struct Empty {}

lattice_law_tests!(empty_braced_struct_obeys_the_laws, Empty);

/// Generic: `Max<T>: Lattice` and `SetUnion<U>: Lattice` are inferred from the fields.
#[derive(Lattice, Clone, Debug, PartialEq)]
#[lattice(arbitrary)]
struct Generic<T, U: Ord> {
    high: Max<T>,
    low: Min<T>,
    members: SetUnion<U>,
}

lattice_law_tests!(generic_struct_obeys_the_laws, Generic<i16, u8>);

/// A bare type parameter as a field, plus a where-clause of the user's.
#[derive(Lattice, Clone, Debug, PartialEq)]
#[lattice(arbitrary)]
struct WithWhere<L, K>
where
    K: Ord + Clone + Debug,
{
    inner: L,
    counts: GCounter<K>,
}

lattice_law_tests!(where_clause_struct_obeys_the_laws, WithWhere<Lww<u8>, bool>);

/// A dominating version field: lexicographic order.
#[derive(Lattice, Clone, Debug, PartialEq)]
#[lattice(arbitrary)]
struct Versioned {
    tags: SetUnion<u8>,
    #[lattice(dominating)]
    version: u8,
    flag: BoolOr,
}

lattice_law_tests!(dominating_struct_obeys_the_laws, Versioned);

/// A user-supplied bound instead of the inferred one.
#[derive(Lattice, Clone, Debug, PartialEq)]
#[lattice(arbitrary, bound = "T: Ord + Clone + 'static")]
struct ExplicitBound<T> {
    set: SetUnion<T>,
}

lattice_law_tests!(explicit_bound_struct_obeys_the_laws, ExplicitBound<u8>);

/// More fields than proptest's largest tuple strategy (12): the generator nests pairs.
#[derive(Lattice, Clone, Debug, PartialEq)]
#[lattice(arbitrary)]
struct Wide {
    f0: Max<u8>,
    f1: Max<u8>,
    f2: Max<u8>,
    f3: Max<u8>,
    f4: Max<u8>,
    f5: Max<u8>,
    f6: Max<u8>,
    f7: Max<u8>,
    f8: Max<u8>,
    f9: Max<u8>,
    f10: Max<u8>,
    f11: Max<u8>,
    f12: Max<u8>,
    f13: BoolOr,
}

lattice_law_tests!(wide_struct_obeys_the_laws, Wide);

/// Derived structs nest in built-ins and in each other.
#[derive(Lattice, Clone, Debug, PartialEq)]
#[lattice(arbitrary)]
struct Nested {
    per_user: MapLattice<bool, Tuple>,
    latest: Versioned,
}

lattice_law_tests!(nested_struct_obeys_the_laws, Nested);

#[test]
fn quickcheck_generators_are_derived_too() {
    quickcheck_laws::<Session>();
    quickcheck_laws::<Tuple>();
    quickcheck_laws::<Generic<i8, bool>>();
    quickcheck_laws::<Versioned>();
}

#[test]
fn merge_is_field_wise_and_reports_change() {
    let mut a = Tuple(Max::new(1), SetUnion::from_iter([false]), BoolOr::new(false));
    let b = Tuple(Max::new(0), SetUnion::from_iter([true]), BoolOr::new(false));
    assert!(a.merge_ref(&b));
    assert_eq!(a, Tuple(Max::new(1), SetUnion::from_iter([false, true]), BoolOr::new(false)));
    assert!(!a.merge(b));
    assert!(Tuple::bottom().is_bottom());
    assert!(!a.is_bottom());
    assert!(Tuple::bottom().leq(&a));
    assert!(!a.leq(&Tuple::bottom()));
}

#[test]
fn dominating_field_orders_lexicographically() {
    let v = |version, tags: &[u8]| Versioned {
        tags: tags.iter().copied().collect(),
        version,
        flag: BoolOr::new(false),
    };
    assert_eq!(v(1, &[1]).join(v(1, &[2])), v(1, &[1, 2]));
    assert_eq!(v(2, &[3]).join(v(1, &[1, 2])), v(2, &[3]));
    assert_eq!(v(1, &[1, 2]).join(v(2, &[3])), v(2, &[3]));
    assert!(v(1, &[9]).leq(&v(2, &[])));
    assert_eq!(Versioned::bottom(), v(0, &[]));
}

#[test]
fn session_from_the_issue_merges_across_devices() {
    let mut phone = Session::bottom();
    phone.seen.increment(1);
    phone.cart.add(1, "milk".to_owned());
    phone.total.increment(1, 250);
    let mut laptop = phone.clone();
    laptop.cart.remove(&"milk".to_owned());
    laptop.cart.add(2, "eggs".to_owned());
    laptop.total.decrement(2, 50);
    laptop.seen.increment(2);
    let merged = phone.join(laptop.clone());
    assert_eq!(merged, laptop, "the laptop saw everything the phone did");
    assert_eq!(merged.cart.iter().collect::<Vec<_>>(), ["eggs"]);
    assert_eq!(merged.total.value(), 200);
}

#[test]
fn generic_struct_with_lww_field() {
    let a = WithWhere { inner: Lww::new(Stamp::new(1, 1), 5_u8), counts: GCounter::<bool>::new() };
    let b = WithWhere { inner: Lww::new(Stamp::new(2, 1), 7_u8), counts: GCounter::new() };
    assert_eq!(a.join(b).inner.value(), Some(&7));
}
