//! Benchmarks of lattice-core and Anna against the systems users would pick instead.
//!
//! - [`micro`]: the paper's single-node microbenchmark in process (Anna's actors against
//!   dashmap, scc, a sharded `Mutex<HashMap>` and a thread-local bound).
//! - [`loadgen`]: a Redis-protocol load generator (Zipf keys, YCSB mixes, pipelining, HDR
//!   latency histograms); [`servers`] starts anna-server and redis-server and wraps
//!   `redis-benchmark`.
//! - The criterion bench `lattice_merge`: lattice-core's collection lattices against the
//!   hydro-project `lattices` crate and the `crdts` crate, on the same data
//!   (`cargo bench -p anna-bench --bench lattice_merge`).
//! - [`report`] and [`plots`]: CSV, a Markdown report and SVG plots.
//!
//! `bash anna-bench/run.sh quick` runs everything in about 3 minutes on 2 cores once built.
#![warn(missing_docs)]

pub mod elastic;
pub mod loadgen;
pub mod micro;
pub mod plots;
pub mod report;
pub mod servers;
pub mod workload;

pub use workload::numbers;
