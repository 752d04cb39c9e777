//! Anna: a coordination-free, lattice-based key-value store (Wu, Faleiro, Lin, Hellerstein,
//! "Anna: A KVS for any scale", ICDE 2018), built from `lattice-core`.
//!
//! # Map of the crate
//!
//! The engine, pure and sans-IO:
//! - [`value`]: [`KvsValue`], the seam between the engine and a consistency level's value
//!   lattice, the built-in value types ([`Eventual`], [`Set`], [`Counter`]) and [`OpError`].
//! - [`ring`]: CRC32 consistent hashing over nodes and threads ([`Topology`], [`Replication`]),
//!   and a static cluster's membership ([`Topology::of_cluster`]).
//! - [`message`]: what actors consume and produce ([`Request`], [`Response`], [`PeerMessage`]).
//! - [`actor`]: the actor state machine ([`Actor`]) — the request path top to bottom in
//!   `actor/mod.rs`, its gossip (epochs, acknowledgements, reclamation) in `actor/gossip.rs`.
//! - [`small_bytes`]: byte strings kept inline when short (the store's keys, Redis strings).
//! - [`db`]: the sixteen databases, as key prefixes.
//! - [`glob`]: Redis's glob patterns (`KEYS`, `SCAN … MATCH`).
//! - [`sim`]: a deterministic, seeded simulated network for whole clusters of actors.
//!
//! Running it:
//! - [`wire`]: the versioned, size-limited binary envelope used between nodes.
//! - [`node`]: a running node — one thread per actor, waiting in `epoll` on its mailbox, its
//!   gossip socket (ZeroMQ) and its clients ([`Node`], [`NodeHandle`], [`node::Service`]).
//! - [`auth`]: the public-address policy and password comparison of every client port.
//! - [`redis`]: the Redis-protocol port, served by the actors (command table, planners, RESP).
//! - [`native`]: the native protocol over ZeroMQ, carrying whole lattice states.
//! - [`tls`]: TLS for both client ports — rustls configurations from PEM files, and the
//!   tunnel that carries native messages over TLS.
//! - [`server`]: the composition point — a node with its Redis and native ports
//!   ([`server::Server`], [`server::RunningServer`]).
//!
//! Clients:
//! - [`client`]: the Rust client of the native protocol ([`client::Client`]).
//! - [`levels`]: the consistency levels — value lattices plus client-side sessions.

#![warn(missing_docs)]

// The engine.
pub mod actor;
pub mod db;
pub mod glob;
pub mod message;
pub mod ring;
pub mod sim;
pub mod small_bytes;
pub mod value;

// Running it.
pub mod auth;
pub mod memory;
pub mod native;
pub mod node;
pub mod redis;
pub mod server;
pub mod tls;
pub mod wire;

// Clients.
pub mod client;
pub mod levels;

pub use actor::{Actor, ActorConfig, ActorStats, PendingWork};
pub use message::{Input, Output, PeerMessage, Request, RequestError, Response};
pub use node::{
    ActorReport, Fsync, MemberState, MembershipConfig, MembershipReport, Node, NodeConfig,
    NodeError, NodeHandle, PeerSpec, Persistence,
};
pub use ring::{ActorId, Factor, Key, Replication, Topology};
pub use value::{Counter, Eventual, KvsValue, NoOp, OpError, Set};

/// The repository README's Rust examples, compiled (and run, unless marked `no_run`) as
/// doctests so they cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct RepositoryReadmeDoctests;
