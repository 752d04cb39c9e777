//! Benchmarks of lattice-core and Anna. The criterion benches live in `benches/`:
//!
//! - `lattice_merge`: lattice-core's collection lattices against the same operations in the
//!   hydro-project `lattices` crate and the `crdts` crate, on the same data
//!   (`cargo bench -p anna-bench --bench lattice_merge`).
//!
//! The paper's in-process and over-the-wire experiments are planned in this crate (issue 8);
//! until then `anna-kvs/examples/throughput.rs` and `anna-kvs/scripts/compare-redis.sh` give
//! first numbers.
#![warn(missing_docs)]

/// Deterministic pseudo-random `u64`s (SplitMix64), so every library merges the same data.
pub fn numbers(seed: u64, count: usize) -> Vec<u64> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
        .collect()
}
