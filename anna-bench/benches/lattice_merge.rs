//! lattice-core's merges against the `lattices` (hydro-project) and `crdts` crates, same data.
//!
//! Each group merges a prepared state `b` into a clone of a prepared state `a` (the clone is
//! made outside the timed section with `iter_batched`), so every library does the same join.

use std::collections::{HashMap, HashSet};
use std::hint::black_box;

use anna_bench::numbers;
use crdts::{CmRDT, CvRDT};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use lattice_core::{Lattice, MapLattice, Max, OrSet, PNCounter, SetUnion, VectorClock};

const ENTRIES: usize = 100_000;

/// Two maps of 100k keys each, half of the keys shared, values racing.
fn map_merge(c: &mut Criterion) {
    let xs = numbers(1, ENTRIES);
    let ys = numbers(2, ENTRIES);
    let a_pairs: Vec<(u64, u64)> = xs.iter().map(|&k| (k % (ENTRIES as u64 * 3 / 2), k)).collect();
    let b_pairs: Vec<(u64, u64)> = ys.iter().map(|&k| (k % (ENTRIES as u64 * 3 / 2), k)).collect();
    let mut group = c.benchmark_group("map merge, 100k entries");

    let a: MapLattice<u64, Max<u64>> = a_pairs.iter().map(|&(k, v)| (k, Max::new(v))).collect();
    let b: MapLattice<u64, Max<u64>> = b_pairs.iter().map(|&(k, v)| (k, Max::new(v))).collect();
    group.bench_function("lattice-core MapLattice::merge_ref", |bench| {
        bench.iter_batched(|| a.clone(), |mut a| black_box(a.merge_ref(&b)), BatchSize::LargeInput)
    });
    group.bench_function("lattice-core MapLattice::merge", |bench| {
        bench.iter_batched(
            || (a.clone(), b.clone()),
            |(mut a, b)| black_box(a.merge(b)),
            BatchSize::LargeInput,
        )
    });

    type HydroMap = lattices::map_union::MapUnionHashMap<u64, lattices::Max<u64>>;
    let ha: HydroMap = HydroMap::new(
        a_pairs.iter().map(|&(k, v)| (k, lattices::Max::new(v))).collect::<HashMap<_, _>>(),
    );
    let hb: HydroMap = HydroMap::new(
        b_pairs.iter().map(|&(k, v)| (k, lattices::Max::new(v))).collect::<HashMap<_, _>>(),
    );
    group.bench_function("lattices MapUnionHashMap::merge", |bench| {
        bench.iter_batched(
            || (ha.clone(), hb.clone()),
            |(mut a, b)| black_box(lattices::Merge::merge(&mut a, b)),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// Two sets of 100k numbers, half shared.
fn set_merge(c: &mut Criterion) {
    let xs = numbers(3, ENTRIES);
    let ys: Vec<u64> = xs[..ENTRIES / 2].iter().copied().chain(numbers(4, ENTRIES / 2)).collect();
    let mut group = c.benchmark_group("set merge, 100k elements");
    let a: SetUnion<u64> = xs.iter().copied().collect();
    let b: SetUnion<u64> = ys.iter().copied().collect();
    group.bench_function("lattice-core SetUnion::merge_ref", |bench| {
        bench.iter_batched(|| a.clone(), |mut a| black_box(a.merge_ref(&b)), BatchSize::LargeInput)
    });
    type HydroSet = lattices::set_union::SetUnionHashSet<u64>;
    let ha = HydroSet::new(xs.iter().copied().collect::<HashSet<_>>());
    let hb = HydroSet::new(ys.iter().copied().collect::<HashSet<_>>());
    group.bench_function("lattices SetUnionHashSet::merge", |bench| {
        bench.iter_batched(
            || (ha.clone(), hb.clone()),
            |(mut a, b)| black_box(lattices::Merge::merge(&mut a, b)),
            BatchSize::LargeInput,
        )
    });
    let ga: crdts::GSet<u64> = xs.iter().copied().fold(crdts::GSet::new(), |mut s, x| {
        s.insert(x);
        s
    });
    let gb: crdts::GSet<u64> = ys.iter().copied().fold(crdts::GSet::new(), |mut s, x| {
        s.insert(x);
        s
    });
    group.bench_function("crdts GSet::merge", |bench| {
        bench.iter_batched(
            || (ga.clone(), gb.clone()),
            |(mut a, b)| a.merge(b),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// Vector clocks over 64 actors: merge, and the causal comparison.
fn vector_clock(c: &mut Criterion) {
    let xs = numbers(5, 64);
    let ys = numbers(6, 64);
    let a: VectorClock<u64> = (0..64).map(|i| (i, xs[i as usize] % 1000)).collect();
    let b: VectorClock<u64> = (0..64).map(|i| (i, ys[i as usize] % 1000)).collect();
    let mut ca = crdts::VClock::<u64>::new();
    let mut cb = crdts::VClock::<u64>::new();
    for i in 0..64_u64 {
        ca.apply(crdts::Dot::new(i, xs[i as usize] % 1000 + 1));
        cb.apply(crdts::Dot::new(i, ys[i as usize] % 1000 + 1));
    }
    let mut group = c.benchmark_group("vector clock, 64 actors");
    group.bench_function("lattice-core merge_ref", |bench| {
        bench.iter_batched(|| a.clone(), |mut a| black_box(a.merge_ref(&b)), BatchSize::SmallInput)
    });
    group.bench_function("crdts VClock::merge", |bench| {
        bench.iter_batched(
            || (ca.clone(), cb.clone()),
            |(mut a, b)| a.merge(b),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("lattice-core compare", |bench| {
        bench.iter(|| black_box(a.compare(black_box(&b))))
    });
    group.bench_function("crdts VClock::partial_cmp", |bench| {
        bench.iter(|| black_box(black_box(&ca).partial_cmp(black_box(&cb))))
    });
    group.finish();
}

/// Observed-remove sets of 10k elements from two replicas, with removes.
fn or_set(c: &mut Criterion) {
    const N: u64 = 10_000;
    let mut a = OrSet::<u64, u8>::new();
    let mut b = OrSet::<u64, u8>::new();
    let mut ca = crdts::Orswot::<u64, u8>::new();
    let mut cb = crdts::Orswot::<u64, u8>::new();
    for i in 0..N {
        a.add(1, i);
        b.add(2, i + N / 2);
        let ctx = ca.read_ctx().derive_add_ctx(1);
        ca.apply(ca.add(i, ctx));
        let ctx = cb.read_ctx().derive_add_ctx(2);
        cb.apply(cb.add(i + N / 2, ctx));
    }
    for i in (0..N).step_by(10) {
        a.remove(&i);
        let ctx = ca.contains(&i).derive_rm_ctx();
        ca.apply(ca.rm(i, ctx));
    }
    let mut group = c.benchmark_group("OR-set merge, 10k elements per replica");
    group.bench_function("lattice-core OrSet::merge_ref", |bench| {
        bench.iter_batched(|| a.clone(), |mut a| black_box(a.merge_ref(&b)), BatchSize::LargeInput)
    });
    group.bench_function("crdts Orswot::merge", |bench| {
        bench.iter_batched(
            || (ca.clone(), cb.clone()),
            |(mut a, b)| a.merge(b),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// PN-counters with 256 actors each.
fn pn_counter(c: &mut Criterion) {
    let xs = numbers(7, 256);
    let mut a = PNCounter::<u64>::new();
    let mut b = PNCounter::<u64>::new();
    let mut ca = crdts::PNCounter::<u64>::new();
    let mut cb = crdts::PNCounter::<u64>::new();
    for (i, x) in xs.iter().enumerate() {
        let actor = i as u64;
        a.increment(actor, x % 100);
        b.decrement(actor, x % 37);
        ca.apply(ca.inc_many(actor, x % 100));
        cb.apply(cb.dec_many(actor, x % 37));
    }
    let mut group = c.benchmark_group("PN-counter merge, 256 actors");
    group.bench_function("lattice-core PNCounter::merge_ref", |bench| {
        bench.iter_batched(|| a.clone(), |mut a| black_box(a.merge_ref(&b)), BatchSize::SmallInput)
    });
    group.bench_function("crdts PNCounter::merge", |bench| {
        bench.iter_batched(
            || (ca.clone(), cb.clone()),
            |(mut a, b)| a.merge(b),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, map_merge, set_merge, vector_clock, or_set, pn_counter);
criterion_main!(benches);
