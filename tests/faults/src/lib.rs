//! Anna's fault test bed: every `anna-server` on its own network host (a Linux network
//! namespace on a bridge), a seeded nemesis (partitions, one-way and random packet loss,
//! `kill -9` and restart under each `appendfsync` policy, a graceful `SIGTERM` stop, `SIGSTOP`
//! pauses, clocks skewed with libfaketime), workloads through real clients, and checkers over
//! the recorded history in the manner of Jepsen.
//!
//! - [`net`]: the hosts and their packet filters.
//! - [`node`]: the server processes.
//! - [`workload`]: the clients, and reading every replica at the end.
//! - [`history`]: what every operation did, as JSON lines.
//! - [`check`]: the checkers (lost acknowledged writes, values never written).
//! - [`cold`]: keys written once, which only anti-entropy brings to a replica that missed them.
//! - [`scenario`]: faults on a timeline, a run, its report.
//! - [`timeline`]: a run as an SVG picture.
//!
//! Needs root (namespaces, iptables), `iproute2`, `iptables` and `faketime`. `anna-faults
//! short` runs the suite CI runs; `tests/faults/run.sh long` runs many seeds and writes the
//! results table under `tests/faults/results/`.

#![warn(missing_docs)]

pub mod check;
pub mod cold;
pub mod history;
pub mod net;
pub mod node;
pub mod scenario;
pub mod timeline;
pub mod workload;
