//! How a node is configured ([`NodeConfig`], [`PeerSpec`]) and why it may fail to start
//! ([`NodeError`]).

use std::time::Duration;

use crate::actor::ActorConfig;
use crate::auth::Secret;
use crate::message::{Request, RequestError};
use crate::ring::{Replication, ThreadIndex};
use crate::value::KvsValue;

/// Another node of a static cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    /// Its gossip address, `host:port` (its actors listen on `port + thread`).
    pub gossip_addr: String,
    /// How many actors it runs.
    pub threads: ThreadIndex,
}

/// How the failure detector runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipConfig {
    /// How often a random member is probed.
    pub probe_period: Duration,
    /// How long a direct probe waits for its answer before asking others to probe.
    pub probe_rtt: Duration,
    /// How long a suspect member has to refute before it is declared down; `None`: foca's
    /// LAN rule, `4 × probe period × max(1, log10 n)`.
    pub suspect_timeout: Option<Duration>,
    /// How often this node announces itself to members it does not see alive (seeds not yet
    /// reached, members declared down): how soon a partition heals.
    pub announce_period: Duration,
    /// Take a member declared down this long ago out of the ring, so the others own (and
    /// repair among themselves) what it held: keys get their replication factor back. `None`
    /// (the default) keeps a failed member in the ring until it comes back, as a static
    /// cluster does. A member taken out must come back with an empty data directory (see the
    /// book's Membership chapter).
    pub remove_down_after: Option<Duration>,
    /// How long a joining node waits for a member to answer.
    pub join_timeout: Duration,
    /// This node's native client address, announced to the cluster.
    pub native_addr: Option<String>,
    /// This node's Redis address, announced to the cluster.
    pub redis_addr: Option<String>,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(500),
            suspect_timeout: None,
            announce_period: Duration::from_secs(2),
            join_timeout: Duration::from_secs(10),
            remove_down_after: None,
            native_addr: None,
            redis_addr: None,
        }
    }
}

/// How to start a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Actor threads; `0` means one per core.
    pub threads: usize,
    /// Pin each actor thread to its own core (off by default: it pays only when the actors have
    /// the cores to themselves).
    pub pin_threads: bool,
    /// Gossip period (the paper's multicast epoch).
    pub epoch: Duration,
    /// Default replication of keys.
    pub replication: Replication,
    /// This node's gossip address as its peers dial it, `host:port` (its identity in the
    /// cluster: peers list it by this address); actor `t` listens on `port + t`. `None` runs a
    /// single node with no TCP at all. Never an unspecified address such as `0.0.0.0`.
    pub gossip_addr: Option<String>,
    /// Where the gossip sockets bind, `host:port`, when it is not `gossip_addr` (e.g.
    /// `0.0.0.0:7000` behind an announced address).
    pub gossip_bind: Option<String>,
    /// The secret every message between the cluster's nodes is authenticated with (the same
    /// on every node). Required to gossip on a non-loopback address.
    pub cluster_secret: Option<Secret>,
    /// The other nodes of a static cluster (each must list this node among its peers).
    pub peers: Vec<PeerSpec>,
    /// Join a running cluster through the member gossiping at this address (`host:port`)
    /// instead of naming a static one: the node takes a free slot, every member adds it to
    /// its ring, and it catches up on its ranges from them. Needs every key on two nodes or
    /// more ([`crate::Replication::allows_membership_changes`]).
    pub join: Option<String>,
    /// The failure detector's settings and the client addresses this node announces.
    pub membership: MembershipConfig,
    /// Largest key accepted.
    pub max_key_bytes: usize,
    /// Largest value accepted (encoded lattice state).
    pub max_value_bytes: usize,
    /// Redis's `maxmemory` with the `noeviction` policy: past this many bytes held by the
    /// process (see [`crate::memory::used`]), client writes that may grow memory are refused
    /// with [`RequestError::OutOfMemory`]; reads, deletes and gossip from peers go on (a
    /// replica that refused its peers' writes would never converge). 0: no limit.
    pub maxmemory: u64,
    /// How long a client waits for an answer.
    pub request_timeout: Duration,
    /// Capacity of each actor's mailbox (client requests and messages from local actors).
    pub mailbox_capacity: usize,
    /// Messages queued per remote destination before sends are dropped (ZeroMQ high-water mark).
    pub send_high_water_mark: i32,
    /// Actor tunables (the epoch above overrides `actor.epoch_us`).
    pub actor: ActorConfig,
    /// The data directory, its append-only logs and their sync policy (memory only by
    /// default; `anna-server` keeps `./anna-data`).
    pub persistence: super::aof::Persistence,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            pin_threads: false,
            epoch: Duration::from_millis(100),
            replication: Replication::ONE,
            gossip_addr: None,
            gossip_bind: None,
            cluster_secret: None,
            peers: Vec::new(),
            join: None,
            membership: MembershipConfig::default(),
            max_key_bytes: 64 * 1024,
            max_value_bytes: 64 * 1024 * 1024 / 4,
            maxmemory: 0,
            request_timeout: Duration::from_secs(2),
            mailbox_capacity: 64 * 1024,
            send_high_water_mark: 10_000,
            actor: ActorConfig::default(),
            persistence: super::aof::Persistence::default(),
        }
    }
}

impl NodeConfig {
    /// The size rule every front end applies to a key of `len` bytes.
    ///
    /// # Errors
    /// [`RequestError::TooLarge`] over [`NodeConfig::max_key_bytes`].
    pub fn check_key(&self, len: usize) -> Result<(), RequestError> {
        check_size("key", len, self.max_key_bytes)
    }

    /// The size rule every front end applies to a value of `len` bytes (the encoded lattice
    /// state for the native protocol, the argument for Redis commands).
    ///
    /// # Errors
    /// [`RequestError::TooLarge`] over [`NodeConfig::max_value_bytes`].
    pub fn check_value(&self, len: usize) -> Result<(), RequestError> {
        check_size("value", len, self.max_value_bytes)
    }

    /// Refuses keys (and PUT values) over the configured sizes before they reach an actor.
    pub(super) fn check_request<V: KvsValue>(
        &self,
        request: &Request<V>,
    ) -> Result<(), RequestError> {
        self.check_key(request.key().len())?;
        if self.maxmemory > 0 {
            let grows = match request {
                Request::Put { .. } => true,
                Request::Apply { op, .. } => V::op_may_grow(op),
                Request::Get { .. }
                | Request::Delete { .. }
                | Request::Replicated { .. }
                | Request::Local { .. } => false,
            };
            let used = crate::memory::used();
            if grows && used > self.maxmemory {
                return Err(RequestError::OutOfMemory { used, limit: self.maxmemory });
            }
        }
        if let Request::Put { value, .. } = request {
            // The encoded size is what travels and what is stored; measure it only for PUTs.
            let size = bincode::serde::encode_to_vec(value, bincode::config::standard())
                .map_or(usize::MAX, |v| v.len());
            self.check_value(size)?;
        }
        Ok(())
    }
}

fn check_size(what: &str, size: usize, limit: usize) -> Result<(), RequestError> {
    if size > limit {
        return Err(RequestError::TooLarge { what: what.into(), size, limit });
    }
    Ok(())
}

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A socket could not be created or bound.
    #[error("ZeroMQ: {context}: {source}")]
    Zmq {
        /// What was being done.
        context: String,
        /// The error.
        source: zmq::Error,
    },
    /// The operating system refused a resource (an eventfd, an `epoll` set, a thread).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory or a log could not be used (corrupt, locked, unreadable).
    #[error("persistence: {0}")]
    Persistence(#[from] super::aof::AofError),
}

impl NodeError {
    /// Wraps a ZeroMQ error with what was being done: `socket.bind(e).map_err(NodeError::zmq("bind"))`.
    pub(crate) fn zmq(context: impl Into<String>) -> impl FnOnce(zmq::Error) -> Self {
        let context = context.into();
        move |source| Self::Zmq { context, source }
    }

    /// Wraps an operating-system error with what was being done.
    pub(crate) fn io<E: Into<std::io::Error>>(
        context: impl Into<String>,
    ) -> impl FnOnce(E) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source: source.into() }
    }
}
