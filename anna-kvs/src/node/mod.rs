//! A running node: one thread per actor (pinned to a core if asked), each driving its
//! [`Actor`] from its mailbox, its gossip socket and, optionally, a client-facing [`Service`]
//! (the Redis port runs as one, so clients are served on the actors' own threads).
//!
//! Inside a node, actors hand each other messages without serializing them (the paper passes
//! buffer ownership too): the message goes into the receiver's bounded mailbox, and if the
//! receiver may be asleep in `epoll`, a doorbell (an eventfd) wakes it (a busy receiver is not
//! woken at all: it finds the mail on its next round). Across nodes, messages are encoded
//! in the [`crate::wire`] envelope and sent over ZeroMQ `tcp` (PUSH → PULL, one PULL per
//! actor at `gossip_port + thread`). Every send is non-blocking: a full queue or a dead peer
//! costs a dropped message (counted; retransmission repairs it), never a stalled actor. An actor
//! waits in `epoll` until its next epoch, so an idle node sleeps.
//!
//! # Layout
//!
//! | file | what it holds |
//! |---|---|
//! | [`config`] | [`NodeConfig`], [`PeerSpec`], [`NodeError`], the size rule of every front end |
//! | [`aof`] | durability: the node's identity on disk and each actor's append-only log |
//! | `mailbox` | mail between local actors, the doorbell that wakes a sleeping actor, the clock |
//! | [`service`] | [`Service`]: the plug-in trait of client-facing front ends |
//! | [`handle`] | [`NodeHandle`]: routing a request to a local owner, limits, deadlines |
//! | `driver` | the per-actor loop: wait, feed the actor, run the service round, deliver |
//! | `transport` | ZeroMQ links to other nodes' actors |
//! | [`membership`] | who is in the cluster and alive: SWIM failure detection (foca) over UDP |
//! | this file | [`Node`]: start (bind everything, then spawn) and shutdown |

pub mod aof;
pub mod config;
mod driver;
pub mod handle;
mod mailbox;
pub mod membership;
pub mod service;
mod transport;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

pub use aof::{Fsync, Persistence};
pub use config::{NodeConfig, NodeError, PeerSpec};
pub use handle::{NodeClocks, NodeHandle};
pub use membership::{MemberId, MemberState, MemberStatus, MembershipConfig, MembershipReport};
pub use service::{Readiness, Registry, Service};

use crate::actor::{Actor, ActorStats};
use crate::ring::{ActorId, NodeIndex, ThreadIndex, Topology};
use crate::value::KvsValue;
use crate::wire::ClusterKey;
use driver::Driver;
use mailbox::{Clock, Doorbell, Mail};

/// An actor's counters plus where its time went (the paper's Fig. 5 breakdown).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActorReport {
    /// The actor.
    pub id: Option<ActorId>,
    /// Its counters.
    pub stats: ActorStats,
    /// Time spent serving client requests (ns).
    pub request_ns: u64,
    /// Rounds whose append-only-file write failed (their writes were refused).
    pub aof_write_errors: u64,
    /// Bytes in its logs since its last snapshot.
    pub aof_bytes: u64,
    /// Bytes in its last snapshot.
    pub snapshot_bytes: u64,
    /// Keys logged since its last snapshot began (`rdb_changes_since_last_save`).
    pub changes_since_save: u64,
    /// A snapshot is being written.
    pub saving: bool,
    /// Snapshots written since the start.
    pub saves: u64,
    /// When the last one finished (Unix seconds; 0: none since the start).
    pub last_save_unix: u64,
    /// How long it took (ms).
    pub last_save_ms: u64,
    /// Why the last snapshot failed, if it did (cleared by the next one that succeeds).
    pub last_save_error: Option<String>,
    /// The highest `SAVE`/`BGSAVE` request number a finished snapshot answers (see
    /// [`NodeHandle::request_save`]).
    pub saved_request: u64,
    /// The highest request number a failed snapshot was for.
    pub failed_request: u64,
    /// Time spent on gossip: epochs, merging and acknowledging peers' batches (ns).
    pub gossip_ns: u64,
    /// Time spent waiting for work (ns).
    pub idle_ns: u64,
    /// Messages from other nodes refused, for any reason (the four counters below).
    pub bad_messages: u64,
    /// ... not authenticated by this cluster's secret (another cluster, a forgery).
    pub refused_unauthenticated: u64,
    /// ... authenticated but unreadable (version, lattice type, payload).
    pub refused_malformed: u64,
    /// ... from an actor that is not another member of the cluster.
    pub refused_unknown_sender: u64,
    /// ... replays: from an earlier life of a node that has restarted since, or meant for
    /// another actor.
    pub refused_replayed: u64,
    /// Messages dropped because a queue was full or a peer unreachable.
    pub send_drops: u64,
    /// Bytes of encoded messages received from other nodes.
    pub bytes_in: u64,
    /// Bytes of encoded messages sent to other nodes.
    pub bytes_out: u64,
    /// The root hash of each ring range the actor owns, by the range's end (see
    /// [`Topology::range_ends`]): two replicas of a range agree on its visible keys when
    /// their roots are equal (`DEBUG DIGEST`). A big key being written is folded in at the
    /// next repair round.
    pub range_roots: Vec<(u32, u64)>,
}

/// Longest a node leaving for good waits, at its stop, for its keys to be handed over.
pub const HANDOVER_TIMEOUT: Duration = Duration::from_secs(60);

/// The file in a joined node's data directory that keeps its slot across restarts.
pub const SLOT_FILE: &str = "slot";

/// The file that marks a data directory whose node left its cluster for good.
pub const LEFT_MARKER: &str = "LEFT";

/// Longest a stopping node waits for its peers to acknowledge its last changes.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// State shared by a node's threads and handles.
struct Shared<V: KvsValue> {
    /// Creates the gossip sockets.
    context: zmq::Context,
    /// This node's index in the topology.
    me: NodeIndex,
    /// The ring every actor and handle routes with (a new version when membership changes).
    topology: Arc<crate::ring::RingCell>,
    /// One bounded mailbox per actor: how handles and other actors reach it.
    mailboxes: Vec<Sender<Mail<V>>>,
    /// One per actor, beside its mailbox.
    doorbells: Vec<Doorbell>,
    /// Set once at shutdown; every actor loop checks it each round.
    stop: AtomicBool,
    /// Set first at shutdown: actors take no new client commands, finish those in flight,
    /// log and gossip their last changes, and count themselves in `drained` once every peer
    /// acknowledged (or [`DRAIN_TIMEOUT`] passes).
    draining: AtomicBool,
    /// Actors done draining.
    drained: std::sync::atomic::AtomicUsize,
    /// Each actor's counters as of its last epoch (read by INFO and the stats request).
    reports: Vec<Mutex<ActorReport>>,
    /// Each actor's clock (the last stamp it handed out or saw), stored before its answers
    /// go out: a flush takes its stamp above all of them, so it is newer than every write
    /// this node acknowledged before it.
    clocks: Arc<[std::sync::atomic::AtomicU64]>,
    /// The configuration the node was started with (thread count resolved).
    config: NodeConfig,
    /// Stamps writes and paces epochs.
    clock: Clock,
    /// Authenticates the messages between nodes (from the cluster secret).
    cluster_key: ClusterKey,
    /// This node's incarnation: raised at every start (and never below the start time in µs),
    /// in every message it sends, so peers can tell its lives apart.
    incarnation: u64,
    /// Its id and incarnation (holding the data directory's lock while the node runs).
    identity: aof::Identity,
    /// `SAVE`/`BGSAVE` requests so far: an actor whose last snapshot answers fewer starts one.
    save_requests: std::sync::atomic::AtomicU64,
    /// The failure detector's view of the cluster (a node with a gossip address only).
    membership: Option<Arc<membership::Membership>>,
}

impl<V: KvsValue> Shared<V> {
    fn reports(&self) -> Vec<ActorReport> {
        self.reports.iter().map(|r| r.lock().map(|r| r.clone()).unwrap_or_default()).collect()
    }
}

/// A running node. Dropping it shuts it down; [`Node::shutdown`] does so explicitly.
pub struct Node<V: KvsValue> {
    shared: Arc<Shared<V>>,
    threads: Vec<JoinHandle<()>>,
    /// The membership thread, if the node has one.
    membership: Option<JoinHandle<()>>,
}

impl<V: KvsValue> std::fmt::Debug for Node<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("actors", &self.threads.len()).finish()
    }
}

impl<V: KvsValue> Node<V> {
    /// Starts a node: binds its sockets and spawns (and optionally pins) its actor threads.
    ///
    /// # Errors
    /// A bad configuration or a socket that cannot be bound (e.g. a port in use).
    pub fn start(config: NodeConfig) -> Result<Self, NodeError> {
        Self::start_with(config, |_, _| Vec::new())
    }

    /// Starts a node whose actors also run client-facing [`Service`]s: `services` is called
    /// once, with the number of actors and a handle to the node, before any actor runs, and
    /// returns one service per actor (or none).
    ///
    /// # Errors
    /// As [`Node::start`]; also a service list of the wrong length.
    pub fn start_with(
        mut config: NodeConfig,
        services: impl FnOnce(usize, NodeHandle<V>) -> Vec<Box<dyn Service<V>>>,
    ) -> Result<Self, NodeError> {
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        if config.threads == 0 {
            config.threads = cores.len().max(1);
        }
        let threads = ThreadIndex::try_from(config.threads)
            .map_err(|_| NodeError::Config(format!("{} threads is too many", config.threads)))?;
        config.actor.epoch_us = config.epoch.as_micros().max(1) as u64;

        // The cluster: this node and its peers, numbered alike on every node.
        match &config.gossip_addr {
            Some(addr) => {
                let (host, _) = transport::split_host_port(addr)?;
                if crate::auth::is_unspecified(&host) {
                    return Err(NodeError::Config(format!(
                        "this node would announce itself as {addr}, which no peer can dial: give the address peers reach it on (--announce-ip), and bind {host} with --bind"
                    )));
                }
                let bind_host = match &config.gossip_bind {
                    Some(bind) => transport::split_host_port(bind)?.0,
                    None => host,
                };
                crate::auth::check_public_gossip(&bind_host, config.cluster_secret.as_ref())
                    .map_err(NodeError::Config)?;
            }
            None if !config.peers.is_empty() => {
                return Err(NodeError::Config("peers need a gossip address for this node".into()));
            }
            None => {}
        }
        for peer in &config.peers {
            transport::split_host_port(&peer.gossip_addr)?;
            if peer.threads == 0 {
                return Err(NodeError::Config(format!("peer {} has no threads", peer.gossip_addr)));
            }
        }
        let (me, topology) = Topology::of_cluster(
            (config.gossip_addr.as_deref(), threads),
            config.peers.iter().map(|p| (p.gossip_addr.clone(), p.threads)),
            config.replication,
        );
        if config.join.is_some() {
            if config.gossip_addr.is_none() {
                return Err(NodeError::Config(
                    "--join needs a gossip address for this node".into(),
                ));
            }
            if let Some(why) = config.replication.membership_changes_refused() {
                return Err(NodeError::Config(format!("cannot join: {why}")));
            }
        }
        if config.membership.remove_down_after.is_some()
            && let Some(why) = config.replication.membership_changes_refused()
        {
            return Err(NodeError::Config(format!("cannot remove failed members: {why}")));
        }
        let ring = Arc::new(crate::ring::RingCell::new(topology.clone()));
        let topology = Arc::new(topology);

        let context = zmq::Context::new();
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..threads {
            let (tx, rx) = crossbeam_channel::bounded(config.mailbox_capacity);
            senders.push(tx);
            receivers.push(rx);
        }
        // Bind every socket before any thread starts, so a busy port fails `start` cleanly.
        let mut bound = Vec::new();
        let mut doorbells = Vec::new();
        for thread in 0..threads {
            doorbells.push(Doorbell::new().map_err(NodeError::io("create a doorbell eventfd"))?);
            let inbound = match &config.gossip_addr {
                Some(addr) => Some(transport::bind_inbound(&context, &config, addr, thread)?),
                None => None,
            };
            bound.push(inbound);
        }
        let clock = Clock::new();
        if let Some(dir) = &config.persistence.dir
            && dir.join(LEFT_MARKER).exists()
        {
            return Err(NodeError::Config(format!(
                "{} belongs to a node that left its cluster for good (see {}): its keys live on in the cluster; start a new member with an empty directory",
                dir.display(),
                dir.join(LEFT_MARKER).display()
            )));
        }
        if config.join.is_some() {
            // A joining node has nothing yet: it reads through the members until repaired.
            config.actor.catch_up = true;
        }
        let identity = match &config.persistence.dir {
            Some(dir) => aof::Identity::load(dir, clock.now_us(), V::TYPE_NAME)?,
            None => aof::Identity::ephemeral(clock.now_us()),
        };
        let cluster_key = config
            .cluster_secret
            .as_ref()
            .map_or_else(ClusterKey::open, |secret| ClusterKey::derive(secret.expose().as_bytes()));
        // The failure detector listens (UDP) at the gossip address's port.
        let joining = config.join.is_some();
        // A node that joined before, restarted on its directory, keeps its slot: its actors,
        // and what its peers owe them, stay the same.
        let slot_file = config.persistence.dir.as_ref().map(|dir| dir.join(SLOT_FILE));
        let saved_slot: Option<u16> = slot_file
            .as_ref()
            .filter(|_| joining)
            .and_then(|file| std::fs::read_to_string(file).ok())
            .and_then(|text| text.trim().parse().ok());
        let mut membership = match &config.gossip_addr {
            Some(addr) => {
                let me = membership::MemberId {
                    node_id: identity.node_id,
                    incarnation: identity.incarnation,
                    rejoin: 0,
                    gossip: addr.clone(),
                    threads,
                    native: config.membership.native_addr.clone(),
                    redis: config.membership.redis_addr.clone(),
                    slot: if joining { saved_slot.unwrap_or(membership::NO_SLOT) } else { me },
                    // The slots this node has seen in use: its own, until it hears more.
                    reserved: if joining {
                        saved_slot.map_or(0, |slot| slot.saturating_add(1))
                    } else {
                        topology.nodes().len() as u16
                    },
                    leaving: false,
                };
                let mut seeds: Vec<String> =
                    config.peers.iter().map(|p| p.gossip_addr.clone()).collect();
                seeds.extend(config.join.clone());
                let statics = if joining {
                    Vec::new()
                } else {
                    topology
                        .member_slots()
                        .map(|slot| {
                            (
                                slot,
                                topology.nodes()[usize::from(slot)].clone(),
                                topology.threads(slot),
                            )
                        })
                        .collect()
                };
                let rule = membership::RingRule {
                    statics,
                    replication: config.replication,
                    dynamic: config.replication.allows_membership_changes(),
                    remove_down_after: config.membership.remove_down_after,
                };
                let bind = config.gossip_bind.as_deref().unwrap_or(addr);
                let (shared, pending) = membership::bind(
                    me,
                    bind,
                    &seeds,
                    &config.membership,
                    cluster_key.clone(),
                    rule,
                )?;
                Some((shared, membership::Thread::pending(pending)))
            }
            None => None,
        };
        // A joining node learns the cluster first: its slot, and the ring it joins.
        let (me, topology, ring) = match (&config.join, &mut membership) {
            (Some(seed), Some((shared, thread))) => {
                thread.start()?;
                let deadline = std::time::Instant::now() + config.membership.join_timeout;
                let joined = loop {
                    // Its slot, and at least one other member to catch up from.
                    if let Some(ring) = shared.ring().filter(|ring| ring.members() >= 2) {
                        break ring;
                    }
                    if std::time::Instant::now() >= deadline {
                        return Err(NodeError::Config(format!(
                            "no member answered through {seed} within {:?} (is it running, and is the cluster secret the same?)",
                            config.membership.join_timeout
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                };
                let gossip = config.gossip_addr.as_deref().unwrap_or_default();
                let slot = joined
                    .member_slots()
                    .find(|&slot| joined.nodes()[usize::from(slot)] == gossip)
                    .ok_or_else(|| NodeError::Config("the joined ring lacks this node".into()))?;
                if let Some(file) = &slot_file
                    && saved_slot != Some(slot)
                    && let Err(error) = std::fs::write(file, format!("{slot}\n"))
                {
                    tracing::warn!(%error, file = %file.display(), "cannot keep this node's slot: a restart will take a new one");
                }
                let ring = Arc::new(crate::ring::RingCell::new(joined.clone()));
                (slot, Arc::new(joined), ring)
            }
            _ => (me, topology, ring),
        };
        if let Some((shared, _)) = &membership {
            shared.attach(Arc::clone(&ring));
        }
        // Each actor's log, read before anything is served. Keys live in the log of the actor
        // that owns them, so the actor count must not change under a directory.
        if let Some(dir) = &config.persistence.dir
            && config.persistence.appendonly
            && let Some(logged) = aof::logged_actors(dir)
            && logged != usize::from(threads)
        {
            return Err(NodeError::Config(format!(
                "{} holds the logs of {logged} actors: start with --threads {logged} (or move the directory away)",
                dir.display()
            )));
        }
        // Each actor, with what its log holds merged in (record by record) before it serves.
        let mut actors = Vec::new();
        for thread in 0..threads {
            let id = ActorId::new(me, thread);
            let mut actor_config = config.actor.clone();
            actor_config.writer =
                Some(aof::writer_id(identity.node_id, identity.incarnation, thread));
            let mut actor = Actor::new(id, Arc::clone(&topology), actor_config, clock.now_us());
            let log = match &config.persistence.dir {
                Some(dir) if config.persistence.appendonly => {
                    let restore = |key, value| actor.restore(key, value);
                    let (log, records) =
                        aof::Aof::open::<V>(dir, thread, &config.persistence, restore)?;
                    if records > 0 {
                        tracing::info!(actor = %id, records, bytes = log.len(), "recovered from the append-only file");
                    }
                    actor.enable_journal();
                    Some(log)
                }
                _ => None,
            };
            actors.push((actor, log));
        }
        let shared = Arc::new(Shared {
            context,
            me,
            topology: ring,
            mailboxes: senders,
            doorbells,
            stop: AtomicBool::new(false),
            reports: (0..threads).map(|_| Mutex::new(ActorReport::default())).collect(),
            clocks: (0..threads)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect::<Vec<_>>()
                .into(),
            cluster_key,
            incarnation: identity.incarnation,
            identity,
            save_requests: std::sync::atomic::AtomicU64::new(0),
            membership: membership.as_ref().map(|(shared, _)| Arc::clone(shared)),
            draining: AtomicBool::new(false),
            drained: std::sync::atomic::AtomicUsize::new(0),
            config: config.clone(),
            clock,
        });
        let mut services: Vec<Option<Box<dyn Service<V>>>> =
            services(usize::from(threads), NodeHandle::new(Arc::clone(&shared)))
                .into_iter()
                .map(Some)
                .collect();
        if services.is_empty() {
            services.resize_with(usize::from(threads), || None);
        }
        if services.len() != usize::from(threads) {
            return Err(NodeError::Config(format!(
                "{} services for {threads} actors",
                services.len()
            )));
        }
        // Every driver is built before any thread starts, so a failure leaves nothing running.
        let mut drivers = Vec::new();
        for (thread, (((tcp, mailbox), service), (actor, log))) in
            bound.into_iter().zip(receivers).zip(services).zip(actors).enumerate()
        {
            let id = ActorId::new(shared.me, thread as ThreadIndex);
            let driver = Driver::new(id, Arc::clone(&shared), tcp, mailbox, service, actor, log)
                .map_err(NodeError::io("create an epoll set"))?;
            drivers.push(driver);
        }
        let mut node = Self { shared: Arc::clone(&shared), threads: Vec::new(), membership: None };
        if let Some((_, mut thread)) = membership {
            thread.start()?;
            node.membership = thread.take();
        }
        for (thread, mut driver) in drivers.into_iter().enumerate() {
            let core = if config.pin_threads && !cores.is_empty() {
                Some(cores[thread % cores.len()])
            } else {
                None
            };
            let handle = std::thread::Builder::new()
                .name(format!("anna-actor-{thread}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    driver.run();
                })
                // Dropping `node` stops and joins the actors already started.
                .map_err(NodeError::io("spawn an actor thread"))?;
            node.threads.push(handle);
        }
        let dir = config.persistence.dir.as_ref().map(|d| d.display().to_string());
        tracing::info!(node = me, actors = threads, gossip = ?config.gossip_addr, peers = config.peers.len(), node_id = %format!("{:016x}", shared.identity.node_id), incarnation = shared.incarnation, dir, "anna node started");
        Ok(node)
    }

    /// A handle for issuing requests to this node (one per client thread: it owns sockets).
    pub fn handle(&self) -> NodeHandle<V> {
        NodeHandle::new(Arc::clone(&self.shared))
    }

    /// The cluster topology this node routes with.
    pub fn topology(&self) -> Arc<Topology> {
        self.shared.topology.get()
    }

    /// This node's id (random, kept in its data directory) and this start's incarnation.
    pub fn identity(&self) -> (u64, u64) {
        (self.shared.identity.node_id, self.shared.incarnation)
    }

    /// This node's index in the cluster.
    pub fn index(&self) -> NodeIndex {
        self.shared.me
    }

    /// Per-actor counters and time breakdown, as of each actor's last epoch.
    pub fn reports(&self) -> Vec<ActorReport> {
        self.shared.reports()
    }

    /// The cluster's members as this node's failure detector sees them (`None` for a node
    /// without a gossip address).
    pub fn membership(&self) -> Option<MembershipReport> {
        self.shared.membership.as_ref().map(|m| m.report())
    }

    /// Stops every actor and waits for its thread to finish.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if self.threads.is_empty() {
            self.stop_membership();
            return;
        }
        // A node leaving for good first hands every key over to the members that own it now.
        if let Some(membership) = &self.shared.membership
            && membership.leaving_for_good()
        {
            let handle = NodeHandle::new(Arc::clone(&self.shared));
            let started = std::time::Instant::now();
            while !handle.handed_over() && started.elapsed() < HANDOVER_TIMEOUT {
                std::thread::sleep(Duration::from_millis(10));
            }
            if !handle.handed_over() {
                tracing::error!(waited = ?started.elapsed(), "not leaving for good: the other members did not take every key; stopping as a member instead (its directory can start it again)");
                membership.cancel_leave_for_good();
            }
        }
        // Drain first: what was acknowledged reaches the log and the peers before the stop.
        self.shared.draining.store(true, Ordering::SeqCst);
        for doorbell in &self.shared.doorbells {
            doorbell.ring_now();
        }
        let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
        while self.shared.drained.load(Ordering::SeqCst) < self.threads.len()
            && std::time::Instant::now() < deadline
            && !self.threads.iter().any(JoinHandle::is_finished)
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let drained = self.shared.drained.load(Ordering::SeqCst);
        if drained < self.threads.len() {
            tracing::warn!(node = self.shared.me, drained, actors = self.threads.len(), timeout = ?DRAIN_TIMEOUT, "stopping with gossip unacknowledged (a peer is down or slow): its writes stay in this node's log");
        }
        // Then tell the cluster this node leaves, so its peers stop probing it at once. A node
        // leaving for good whose last changes did not all reach its peers stays a member
        // instead: its directory keeps them, and can start it again.
        if let Some(membership) = &self.shared.membership {
            let others_alive =
                || {
                    membership.report().members.iter().any(|m| {
                        !m.me && !m.id.is_seed() && m.state == membership::MemberState::Alive
                    })
                };
            if membership.leaving_for_good() && !others_alive() {
                tracing::error!(
                    "not leaving for good: no other member is alive to hear it; stopping as a member instead"
                );
                membership.cancel_leave_for_good();
            }
            if drained < self.threads.len() && membership.leaving_for_good() {
                tracing::error!(
                    "not leaving for good: the last changes did not reach the other members; stopping as a member instead"
                );
                membership.cancel_leave_for_good();
            }
            membership.leave(Duration::from_millis(500));
            if membership.leaving_for_good()
                && let Some(dir) = &self.shared.config.persistence.dir
            {
                let note = format!(
                    "node {:016x} left its cluster for good at Unix time {}: its keys live on in the cluster.\nRemove this directory to start a new member here.\n",
                    self.shared.identity.node_id,
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs())
                );
                if let Err(error) = std::fs::write(dir.join(LEFT_MARKER), note) {
                    tracing::error!(%error, dir = %dir.display(), "could not mark the data directory as left");
                }
            }
        }
        self.stop_membership();
        self.shared.stop.store(true, Ordering::SeqCst);
        for doorbell in &self.shared.doorbells {
            doorbell.ring_now();
        }
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
        // Every log is closed: another process may open the directory now.
        self.shared.identity.release();
        tracing::info!(node = self.shared.me, "anna node stopped");
    }
}

impl<V: KvsValue> Node<V> {
    fn stop_membership(&mut self) {
        if let Some(membership) = &self.shared.membership {
            membership.stop();
        }
        if let Some(thread) = self.membership.take() {
            let _ = thread.join();
        }
    }
}

impl<V: KvsValue> Drop for Node<V> {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
