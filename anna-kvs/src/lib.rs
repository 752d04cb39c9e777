//! Anna: a coordination-free, lattice-based key-value store (Wu, Faleiro, Lin, Hellerstein,
//! "Anna: A KVS for any scale", ICDE 2018), built from `lattice-core`.
//!
//! # Map of the crate
//!
//! - [`value`]: [`KvsValue`], the seam between the engine and a consistency level's value
//!   lattice, and the built-in value types ([`Eventual`], [`Set`], [`Counter`]).
//! - [`ring`]: CRC32 consistent hashing over nodes and threads ([`Topology`], [`Replication`]).
//! - [`message`]: what actors consume and produce ([`Request`], [`Response`], [`PeerMessage`]).
//! - [`actor`]: the sans-IO actor state machine ([`Actor`]) — the hot path, top to bottom.
//! - [`wire`]: the versioned, size-limited binary envelope used between nodes.
//! - [`small_bytes`]: byte strings kept inline when short (the store's keys, Redis strings).
//! - [`sim`]: a deterministic, seeded simulated network for whole clusters of actors.
//! - [`node`]: a running node — one thread per actor, waiting in `epoll` on its mailbox, its
//!   gossip socket (ZeroMQ) and its clients ([`Node`], [`NodeHandle`], [`node::Service`]).

#![warn(missing_docs)]

pub mod actor;
pub mod message;
pub mod ring;
pub mod sim;
pub mod small_bytes;
pub mod value;
pub mod wire;

pub use actor::{Actor, ActorConfig, ActorStats, PendingWork};
pub use message::{Input, Output, PeerMessage, Request, RequestError, Response};
pub use ring::{ActorId, Factor, Key, Replication, Topology};
pub use value::{Counter, Eventual, KvsValue, NoOp, Set};
pub mod node;

pub use node::{ActorReport, Node, NodeConfig, NodeError, NodeHandle, PeerSpec};

/// The repository README's Rust examples, compiled (and run, unless marked `no_run`) as
/// doctests so they cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct RepositoryReadmeDoctests;
pub mod client;
pub mod levels;
pub mod native;
pub mod redis;
