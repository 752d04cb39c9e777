//! proptest strategies for every built-in lattice, and the randomized law suite.

use core::fmt::Debug;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hash};

use num_traits::Bounded;
use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::{
    BoolOr, DomPair, Dot, GCounter, Lattice, Lww, MapLattice, Max, Min, MultiValue, OrSet,
    PNCounter, Pair, Priority, SetUnion, Stamp, TotalF64, VectorClock,
};

/// Collections stay small: law checks look at triples, and small states collide more.
const SIZE: core::ops::Range<usize> = 0..5;

/// Runs the randomized law suite: for each generated triple `(a, b, c)` of states from
/// `strategy`, [`laws::try_check_all`](crate::laws::try_check_all) over `[a, b, c]` (⊥ added).
///
/// The number of cases follows proptest's configuration (`PROPTEST_CASES`, default 256). On a
/// failure proptest shrinks the triple and this panics with the law and the smallest values.
/// The [`lattice_law_tests!`](crate::lattice_law_tests) macro wraps this in a `#[test]`.
///
/// # Panics
/// If a law fails for some generated triple.
#[track_caller]
pub fn run_law_suite<T>(strategy: impl Strategy<Value = T> + 'static)
where
    T: Lattice + PartialEq + Debug + 'static,
{
    let config = Config { failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let one = strategy.boxed();
    let triples = (one.clone(), one.clone(), one);
    let outcome = runner.run(&triples, |(a, b, c)| {
        crate::laws::try_check_all(&[a, b, c]).map_err(|v| TestCaseError::fail(v.to_string()))
    });
    if let Err(error) = outcome {
        panic!("randomized lattice law suite failed: {error}");
    }
}

/// Generates a `#[test]` that runs the randomized law suite for a lattice type.
///
/// `lattice_law_tests!(name, Type)` uses `Type`'s proptest [`Arbitrary`] strategy;
/// `lattice_law_tests!(name, Type, strategy)` uses the strategy you give. Everything the
/// expansion needs is reached through `lattice_core`, so your crate needs no direct proptest
/// dependency (write strategies with `lattice_core::proptest::prelude::*`).
///
/// ```
/// use lattice_core::{Lattice, Max, SetUnion, lattice_law_tests};
/// use lattice_core::proptest::prelude::*;
///
/// // Your own lattice: a product written by hand.
/// #[derive(Clone, Debug, PartialEq)]
/// struct Stats { peak: Max<u32>, seen: SetUnion<u8> }
/// impl Lattice for Stats {
///     fn merge(&mut self, other: Self) -> bool {
///         let a = self.peak.merge(other.peak);
///         let b = self.seen.merge(other.seen);
///         a | b
///     }
///     fn bottom() -> Self { Stats { peak: Max::bottom(), seen: SetUnion::bottom() } }
///     fn is_bottom(&self) -> bool { self.peak.is_bottom() && self.seen.is_bottom() }
/// }
///
/// fn stats() -> impl Strategy<Value = Stats> {
///     (any::<Max<u32>>(), any::<SetUnion<u8>>()).prop_map(|(peak, seen)| Stats { peak, seen })
/// }
///
/// // The one line, in your tests (a type with `Arbitrary` needs no strategy argument):
/// lattice_law_tests!(stats_obey_the_laws, Stats, stats());
/// lattice_law_tests!(max_obeys_the_laws, Max<u16>);
///
/// // What each generated test runs:
/// lattice_core::run_law_suite(stats());
/// /// ```
#[macro_export]
macro_rules! lattice_law_tests {
    ($name:ident, $ty:ty $(,)?) => {
        $crate::lattice_law_tests!($name, $ty, $crate::proptest::prelude::any::<$ty>());
    };
    ($name:ident, $ty:ty, $strategy:expr $(,)?) => {
        #[test]
        fn $name() {
            $crate::run_law_suite::<$ty>($strategy);
        }
    };
}

fn small_u64() -> BoxedStrategy<u64> {
    prop_oneof![3 => 0_u64..4, 1 => any::<u64>()].boxed()
}

impl Arbitrary for BoolOr {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        any::<bool>().prop_map(BoolOr::new).boxed()
    }
}

impl<T: Arbitrary + Ord + Clone + Bounded + 'static> Arbitrary for Max<T> {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        prop_oneof![1 => Just(Max::new(T::min_value())), 1 => Just(Max::new(T::max_value())), 6 => any::<T>().prop_map(Max::new)].boxed()
    }
}

impl<T: Arbitrary + Ord + Clone + Bounded + 'static> Arbitrary for Min<T> {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        prop_oneof![1 => Just(Min::new(T::min_value())), 1 => Just(Min::new(T::max_value())), 6 => any::<T>().prop_map(Min::new)].boxed()
    }
}

impl Arbitrary for TotalF64 {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        prop_oneof![
            4 => any::<f64>(),
            1 => Just(f64::NAN),
            1 => Just(-f64::NAN),
            1 => Just(0.0),
            1 => Just(-0.0),
            1 => Just(f64::INFINITY),
            1 => Just(f64::NEG_INFINITY),
        ]
        .prop_map(TotalF64::new)
        .boxed()
    }
}

impl<T: Arbitrary + Ord + Clone + 'static> Arbitrary for SetUnion<T> {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        btree_set(any::<T>(), SIZE).prop_map(SetUnion::from).boxed()
    }
}

impl<K, V, S> Arbitrary for MapLattice<K, V, S>
where
    K: Arbitrary + Eq + Hash + Clone + 'static,
    V: Arbitrary + Lattice + 'static,
    S: BuildHasher + Default + Clone + 'static,
{
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        vec((any::<K>(), any::<V>()), SIZE)
            .prop_map(|entries| entries.into_iter().collect())
            .boxed()
    }
}

impl<A: Arbitrary + 'static, B: Arbitrary + 'static> Arbitrary for Pair<A, B> {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        (any::<A>(), any::<B>()).prop_map(|(a, b)| Pair::new(a, b)).boxed()
    }
}

impl<K, V> Arbitrary for DomPair<K, V>
where
    K: Arbitrary + Ord + Clone + Bounded + 'static,
    V: Arbitrary + Lattice + 'static,
{
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        prop_oneof![
            1 => Just(DomPair::new(K::min_value(), V::bottom())),
            2 => any::<V>().prop_map(|v| DomPair::new(K::min_value(), v)),
            6 => (any::<K>(), any::<V>()).prop_map(|(k, v)| DomPair::new(k, v)),
        ]
        .boxed()
    }
}

impl Arbitrary for Stamp {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        (small_u64(), small_u64()).prop_map(|(time, writer)| Stamp::new(time, writer)).boxed()
    }
}

impl<T: Arbitrary + Ord + Clone + 'static> Arbitrary for Lww<T> {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        prop_oneof![
            1 => Just(Lww::unwritten()),
            6 => (any::<Stamp>(), any::<T>()).prop_map(|(s, v)| Lww::new(s, v)),
        ]
        .boxed()
    }
}

impl<A: Arbitrary + Ord + Clone + 'static> Arbitrary for VectorClock<A> {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        vec((any::<A>(), small_u64()), SIZE).prop_map(|pairs| pairs.into_iter().collect()).boxed()
    }
}

impl<T, A> Arbitrary for MultiValue<T, A>
where
    T: Arbitrary + Ord + Clone + 'static,
    A: Arbitrary + Ord + Clone + 'static,
{
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        vec((any::<VectorClock<A>>(), any::<T>()), 0..4).prop_map(MultiValue::from).boxed()
    }
}

impl<A: Arbitrary + Ord + Clone + 'static> Arbitrary for GCounter<A> {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        vec((any::<A>(), small_u64()), SIZE)
            .prop_map(|adds| {
                let mut counter = GCounter::new();
                for (actor, by) in adds {
                    counter.increment(actor, by);
                }
                counter
            })
            .boxed()
    }
}

impl<A: Arbitrary + Ord + Clone + 'static> Arbitrary for PNCounter<A> {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        vec((any::<A>(), any::<i8>()), SIZE)
            .prop_map(|ops| {
                let mut counter = PNCounter::new();
                for (actor, delta) in ops {
                    counter.add(actor, i64::from(delta));
                }
                counter
            })
            .boxed()
    }
}

impl<A: Arbitrary + 'static> Arbitrary for Dot<A> {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        (any::<A>(), 1_u64..5).prop_map(|(actor, counter)| Dot { actor, counter }).boxed()
    }
}

impl<T, A> Arbitrary for OrSet<T, A>
where
    T: Arbitrary + Ord + Clone + 'static,
    A: Arbitrary + Ord + Clone + 'static,
{
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        (
            btree_map(any::<T>(), btree_set(any::<Dot<A>>(), 1..3), SIZE),
            btree_set(any::<Dot<A>>(), SIZE),
            any::<VectorClock<A>>(),
        )
            .prop_map(|(adds, removed, clock): (BTreeMap<T, BTreeSet<Dot<A>>>, _, _)| {
                OrSet::from_parts(adds, removed, clock)
            })
            .boxed()
    }
}

impl<P, T> Arbitrary for Priority<P, T>
where
    P: Arbitrary + Ord + Clone + 'static,
    T: Arbitrary + Ord + Clone + 'static,
{
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        prop_oneof![
            1 => Just(Priority::empty()),
            6 => (any::<P>(), any::<T>()).prop_map(|(p, v)| Priority::new(p, v)),
        ]
        .boxed()
    }
}
