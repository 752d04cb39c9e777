//! `quickcheck::Arbitrary` for every built-in lattice, and the law checks as a quickcheck
//! property.

use core::fmt::Debug;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hash};

use num_traits::Bounded;
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

use crate::{
    BoolOr, DomPair, Dot, GCounter, Lattice, Lww, MapLattice, Max, Min, MultiValue, OrSet,
    PNCounter, Pair, Priority, SetUnion, Stamp, TotalF64, VectorClock,
};

/// The law checks as a quickcheck property over three states (⊥ is added).
///
/// ```
/// use lattice_core::{quickcheck_property, OrSet};
/// use lattice_core::quickcheck::{QuickCheck, TestResult};
///
/// QuickCheck::new()
///     .tests(50)
///     .quickcheck(quickcheck_property::<OrSet<u8, bool>> as fn(_, _, _) -> TestResult);
/// ```
pub fn quickcheck_property<T: Lattice + PartialEq + Debug>(a: T, b: T, c: T) -> TestResult {
    match crate::laws::try_check_all(&[a, b, c]) {
        Ok(()) => TestResult::passed(),
        Err(violation) => TestResult::error(violation.to_string()),
    }
}

/// Runs [`quickcheck_property`] with quickcheck's defaults (`QUICKCHECK_TESTS`, …).
///
/// # Panics
/// If a law fails; quickcheck shrinks the states first.
///
/// ```
/// lattice_core::quickcheck_laws::<lattice_core::PNCounter<bool>>();
/// ```
pub fn quickcheck_laws<T: Lattice + PartialEq + Debug + Arbitrary>() {
    QuickCheck::new().quickcheck(quickcheck_property::<T> as fn(T, T, T) -> TestResult);
}

fn small_u64(g: &mut Gen) -> u64 {
    if bool::arbitrary(g) { u64::arbitrary(g) % 4 } else { u64::arbitrary(g) }
}

fn small_len(g: &mut Gen) -> usize {
    usize::arbitrary(g) % 5
}

impl Arbitrary for BoolOr {
    fn arbitrary(g: &mut Gen) -> Self {
        BoolOr::new(bool::arbitrary(g))
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new(self.get().shrink().map(BoolOr::new))
    }
}

impl<T: Arbitrary + Ord + Bounded> Arbitrary for Max<T> {
    fn arbitrary(g: &mut Gen) -> Self {
        Max::new(T::arbitrary(g))
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new(self.get().shrink().map(Max::new))
    }
}

impl<T: Arbitrary + Ord + Bounded> Arbitrary for Min<T> {
    fn arbitrary(g: &mut Gen) -> Self {
        Min::new(T::arbitrary(g))
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new(self.get().shrink().map(Min::new))
    }
}

impl Arbitrary for TotalF64 {
    fn arbitrary(g: &mut Gen) -> Self {
        TotalF64::new(f64::arbitrary(g))
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new(self.get().shrink().map(TotalF64::new))
    }
}

impl<T: Arbitrary + Ord> Arbitrary for SetUnion<T> {
    fn arbitrary(g: &mut Gen) -> Self {
        (0..small_len(g)).map(|_| T::arbitrary(g)).collect()
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let items: Vec<T> = self.iter().cloned().collect();
        Box::new(items.shrink().map(|v| v.into_iter().collect()))
    }
}

impl<K, V, S> Arbitrary for MapLattice<K, V, S>
where
    K: Arbitrary + Eq + Hash,
    V: Arbitrary + Lattice,
    S: BuildHasher + Default + Clone + 'static,
{
    fn arbitrary(g: &mut Gen) -> Self {
        (0..small_len(g)).map(|_| (K::arbitrary(g), V::arbitrary(g))).collect()
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let entries: Vec<(K, V)> = self.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Box::new(entries.shrink().map(|v| v.into_iter().collect()))
    }
}

impl<A: Arbitrary, B: Arbitrary> Arbitrary for Pair<A, B> {
    fn arbitrary(g: &mut Gen) -> Self {
        Pair::new(A::arbitrary(g), B::arbitrary(g))
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new((self.first.clone(), self.second.clone()).shrink().map(|(a, b)| Pair::new(a, b)))
    }
}

impl<K: Arbitrary + Ord + Bounded, V: Arbitrary + Lattice> Arbitrary for DomPair<K, V> {
    fn arbitrary(g: &mut Gen) -> Self {
        let key = if u8::arbitrary(g) % 4 == 0 { K::min_value() } else { K::arbitrary(g) };
        DomPair::new(key, V::arbitrary(g))
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let parts = (self.key().clone(), self.value().clone());
        Box::new(parts.shrink().map(|(k, v)| DomPair::new(k, v)))
    }
}

impl Arbitrary for Stamp {
    fn arbitrary(g: &mut Gen) -> Self {
        Stamp::new(small_u64(g), small_u64(g))
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new((self.time, self.writer).shrink().map(|(t, w)| Stamp::new(t, w)))
    }
}

impl<T: Arbitrary + Ord> Arbitrary for Lww<T> {
    fn arbitrary(g: &mut Gen) -> Self {
        match Option::<(Stamp, T)>::arbitrary(g) {
            Some((stamp, value)) => Lww::new(stamp, value),
            None => Lww::unwritten(),
        }
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let parts = self.clone().into_parts();
        Box::new(parts.shrink().map(|p| match p {
            Some((s, v)) => Lww::new(s, v),
            None => Lww::unwritten(),
        }))
    }
}

impl<A: Arbitrary + Ord> Arbitrary for VectorClock<A> {
    fn arbitrary(g: &mut Gen) -> Self {
        (0..small_len(g)).map(|_| (A::arbitrary(g), small_u64(g))).collect()
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let pairs: Vec<(A, u64)> = self.iter().map(|(a, n)| (a.clone(), n)).collect();
        Box::new(pairs.shrink().map(|v| v.into_iter().collect()))
    }
}

impl<T: Arbitrary + Ord, A: Arbitrary + Ord> Arbitrary for MultiValue<T, A> {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = usize::arbitrary(g) % 4;
        MultiValue::from(
            (0..n).map(|_| (VectorClock::arbitrary(g), T::arbitrary(g))).collect::<Vec<_>>(),
        )
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new(self.entries().to_vec().shrink().map(MultiValue::from))
    }
}

impl<A: Arbitrary + Ord> Arbitrary for GCounter<A> {
    fn arbitrary(g: &mut Gen) -> Self {
        let mut counter = GCounter::new();
        for _ in 0..small_len(g) {
            counter.increment(A::arbitrary(g), small_u64(g));
        }
        counter
    }
}

impl<A: Arbitrary + Ord> Arbitrary for PNCounter<A> {
    fn arbitrary(g: &mut Gen) -> Self {
        let mut counter = PNCounter::new();
        for _ in 0..small_len(g) {
            counter.add(A::arbitrary(g), i64::from(i8::arbitrary(g)));
        }
        counter
    }
}

impl<A: Arbitrary> Arbitrary for Dot<A> {
    fn arbitrary(g: &mut Gen) -> Self {
        Dot { actor: A::arbitrary(g), counter: 1 + u64::arbitrary(g) % 4 }
    }
}

impl<T: Arbitrary + Ord, A: Arbitrary + Ord> Arbitrary for OrSet<T, A> {
    fn arbitrary(g: &mut Gen) -> Self {
        let mut adds: BTreeMap<T, BTreeSet<Dot<A>>> = BTreeMap::new();
        for _ in 0..small_len(g) {
            let dots = (0..1 + usize::arbitrary(g) % 2).map(|_| Dot::arbitrary(g)).collect();
            adds.insert(T::arbitrary(g), dots);
        }
        let removed = (0..small_len(g)).map(|_| Dot::arbitrary(g)).collect();
        OrSet::from_parts(adds, removed, VectorClock::arbitrary(g))
    }
}

impl<P: Arbitrary + Ord, T: Arbitrary + Ord> Arbitrary for Priority<P, T> {
    fn arbitrary(g: &mut Gen) -> Self {
        match Option::<(P, T)>::arbitrary(g) {
            Some((p, v)) => Priority::new(p, v),
            None => Priority::empty(),
        }
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new(self.clone().into_parts().shrink().map(|p| match p {
            Some((p, v)) => Priority::new(p, v),
            None => Priority::empty(),
        }))
    }
}
