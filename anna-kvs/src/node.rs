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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::os::fd::{AsFd, AsRawFd};

use crate::actor::{Actor, ActorConfig, ActorStats};
use crate::message::{Input, Output, PeerMessage, Request, RequestError, Response, Token};
use crate::ring::{ActorId, Key, NodeIndex, Replication, ThreadIndex, Topology};
use crate::value::KvsValue;
use crate::wire;

/// Another node of a static cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    /// Its gossip address, `host:port` (its actors listen on `port + thread`).
    pub gossip_addr: String,
    /// How many actors it runs.
    pub threads: ThreadIndex,
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
    /// This node's gossip address, `host:port`; actor `t` binds `port + t`. `None` runs a
    /// single node with no TCP at all.
    pub gossip_addr: Option<String>,
    /// The other nodes of a static cluster (each must list this node among its peers).
    pub peers: Vec<PeerSpec>,
    /// Largest key accepted.
    pub max_key_bytes: usize,
    /// Largest value accepted (encoded lattice state).
    pub max_value_bytes: usize,
    /// How long a client waits for an answer.
    pub request_timeout: Duration,
    /// Capacity of each actor's mailbox (client requests and messages from local actors).
    pub mailbox_capacity: usize,
    /// Messages queued per remote destination before sends are dropped (ZeroMQ high-water mark).
    pub send_high_water_mark: i32,
    /// Actor tunables (the epoch above overrides `actor.epoch_us`).
    pub actor: ActorConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            pin_threads: false,
            epoch: Duration::from_millis(100),
            replication: Replication::ONE,
            gossip_addr: None,
            peers: Vec::new(),
            max_key_bytes: 64 * 1024,
            max_value_bytes: 64 * 1024 * 1024 / 4,
            request_timeout: Duration::from_secs(2),
            mailbox_capacity: 64 * 1024,
            send_high_water_mark: 10_000,
            actor: ActorConfig::default(),
        }
    }
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
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
}

fn zmq_err(context: impl Into<String>) -> impl FnOnce(zmq::Error) -> NodeError {
    let context = context.into();
    move |source| NodeError::Zmq { context, source }
}

/// What travels in a local actor's mailbox.
enum Mail<V: KvsValue> {
    /// Client requests, answered together: one message in, one message out.
    Batch {
        requests: Vec<(usize, Request<V>)>,
        reply: ReplyTo<V>,
    },
    /// The answers to a batch this actor's [`Service`] sent to another local actor.
    Answers {
        round: u64,
        answers: Vec<(usize, Response<V>)>,
    },
    Peer(PeerMessage<V>),
}

/// Where a batch's answers go.
enum ReplyTo<V: KvsValue> {
    /// A thread blocked in [`NodeHandle::request_batch`].
    Channel(Sender<Vec<(usize, Response<V>)>>),
    /// The round of a local actor's [`Service`] (never blocks either actor).
    Actor { thread: ThreadIndex, round: u64 },
}

/// A batch being answered.
struct PendingBatch<V: KvsValue> {
    reply: ReplyTo<V>,
    answers: Vec<(usize, Response<V>)>,
    outstanding: usize,
    /// Past this, the forwards still out are answered with a timeout (an owner on a dead node
    /// never answers) and forgotten.
    deadline: Instant,
}

/// Client-facing work done on an actor's own thread, as in the paper, where each actor talks
/// to its clients directly instead of through a hand-off thread.
///
/// The actor waits (in `epoll`) on the descriptors the service registers, together with its
/// mailbox and gossip socket. Each round the service does its I/O and hands the actor the
/// engine requests it needs; the actor answers those whose keys it owns on the spot, sends the
/// others to their local owners in one mailbox message per actor (their answers come back
/// through its own mailbox, so two actors waiting on each other both keep serving), and gives
/// the service every answer of the round, in order, once all are in. Rounds overlap: while one
/// waits for another actor, the next can start (a service keeps a client's commands in order
/// by not starting a round for a client whose previous round is still out).
///
/// The Redis port ([`crate::redis::Server`]) is such a service.
pub trait Service<V: KvsValue>: Send {
    /// Whether the service has work that needs no waiting (input already buffered, a new
    /// connection queued). Checked after the actor has announced it may sleep, so work queued
    /// before a [`NodeHandle::wake`] is never missed.
    fn has_work(&self) -> bool;
    /// Round `round`: `ready` lists the registered descriptors with new events since the last
    /// round; `registry` registers new ones. Pushes the engine requests the round needs.
    fn step(
        &mut self,
        round: u64,
        registry: &Registry<'_>,
        ready: &[Readiness],
        requests: &mut Vec<Request<V>>,
    );
    /// The answers to round `round`'s requests, in order (called once for every
    /// [`Service::step`], at once with no answers if it pushed no requests; a request nobody
    /// answered within the node's `request_timeout` gets [`RequestError::Timeout`]).
    fn complete(&mut self, round: u64, answers: Vec<Result<Response<V>, RequestError>>);
}

/// New events on a descriptor a [`Service`] registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// The token it was registered with.
    pub token: u64,
    /// Input, a hang-up or an error is waiting.
    pub readable: bool,
    /// Output can be written (or the descriptor failed).
    pub writable: bool,
}

/// Where a [`Service`] registers the descriptors its actor waits on.
#[derive(Debug)]
pub struct Registry<'a> {
    epoll: &'a Epoll,
}

impl Registry<'_> {
    /// Waits on `fd` for input and output from now on, reporting it with `token`.
    ///
    /// Edge-triggered: an event is reported once per change, so the service reads until the
    /// descriptor has nothing more (a short read or `WouldBlock`) and, after a `WouldBlock` on
    /// write, waits for the next writable event. Closing the descriptor unregisters it.
    ///
    /// # Errors
    /// What `epoll_ctl` says.
    pub fn register(&self, fd: impl AsFd, token: u64) -> std::io::Result<()> {
        let flags = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLOUT
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLET;
        self.epoll.add(fd, EpollEvent::new(flags, token)).map_err(std::io::Error::from)
    }
}

/// The token of an actor's own doorbell in its `epoll` set.
const DOORBELL_TOKEN: u64 = u64::MAX;

/// A service round in flight.
struct ServiceRound<V: KvsValue> {
    id: u64,
    results: Vec<Option<Result<Response<V>, RequestError>>>,
    /// Batches (one per actor involved) not answered yet.
    outstanding: usize,
    deadline: Instant,
}

/// An actor's counters plus where its time went (the paper's Fig. 5 breakdown).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActorReport {
    /// The actor.
    pub id: Option<ActorId>,
    /// Its counters.
    pub stats: ActorStats,
    /// Time spent serving client requests (ns).
    pub request_ns: u64,
    /// Time spent on gossip: epochs, merging and acknowledging peers' batches (ns).
    pub gossip_ns: u64,
    /// Time spent waiting for work (ns).
    pub idle_ns: u64,
    /// Messages from other nodes dropped as malformed (bad envelope, wrong version or lattice
    /// type, unknown sender).
    pub bad_messages: u64,
    /// Messages dropped because a queue was full or a peer unreachable.
    pub send_drops: u64,
    /// Bytes of encoded messages received from other nodes.
    pub bytes_in: u64,
    /// Bytes of encoded messages sent to other nodes.
    pub bytes_out: u64,
}

/// State shared by a node's threads and handles.
struct Shared<V: KvsValue> {
    context: zmq::Context,
    me: NodeIndex,
    topology: Arc<Topology>,
    mailboxes: Vec<Sender<Mail<V>>>,
    /// One per actor, beside its mailbox.
    doorbells: Vec<Doorbell>,
    stop: AtomicBool,
    reports: Vec<Mutex<ActorReport>>,
    config: NodeConfig,
    clock: Clock,
}

impl<V: KvsValue> Shared<V> {
    fn reports(&self) -> Vec<ActorReport> {
        self.reports.iter().map(|r| r.lock().map(|r| r.clone()).unwrap_or_default()).collect()
    }
}

/// Microseconds of wall-clock time, advancing monotonically from the node's start (so epochs
/// keep their pace if the system clock is stepped, and stamps stay comparable across nodes).
#[derive(Clone, Copy, Debug)]
struct Clock {
    wall_at_start_us: u64,
    start: Instant,
}

impl Clock {
    fn new() -> Self {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Self { wall_at_start_us: wall.as_micros() as u64, start: Instant::now() }
    }
    fn now_us(&self) -> u64 {
        self.wall_at_start_us + self.start.elapsed().as_micros() as u64
    }
}

/// Wakes an actor waiting in `epoll`: an eventfd in the actor's set, edge-triggered, so a
/// ring is one `write` and the actor never has to read it back. It is written only when the
/// actor may be asleep (checked with a flag, Dekker-style: the sender queues its mail and then
/// looks at the flag; the actor raises the flag and then looks at its mailbox, so one of the
/// two always sees the other).
struct Doorbell {
    bell: EventFd,
    asleep: AtomicBool,
}

impl Doorbell {
    fn new() -> nix::Result<Self> {
        let bell = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        Ok(Self { bell, asleep: AtomicBool::new(false) })
    }

    /// Call after queueing mail for the actor.
    fn ring(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.asleep.swap(false, Ordering::SeqCst) {
            self.ring_now();
        }
    }

    /// Wakes the actor whatever it is doing (shutdown). Each write raises an event; the
    /// counter it adds to is never read (it would take 2^64 rings to fill).
    fn ring_now(&self) {
        let _ = self.bell.write(1);
    }

    /// The actor is about to check its mailbox and sleep.
    fn going_to_sleep(&self) {
        self.asleep.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    /// The actor woke up.
    fn woke(&self) {
        self.asleep.store(false, Ordering::SeqCst);
    }
}

fn split_host_port(addr: &str) -> Result<(String, u16), NodeError> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| NodeError::Config(format!("gossip address {addr:?} is not host:port")))?;
    let port: u16 = port.parse().map_err(|_| NodeError::Config(format!("bad port in {addr:?}")))?;
    Ok((host.to_owned(), port))
}

fn tcp_endpoint(addr: &str, thread: ThreadIndex) -> Result<String, NodeError> {
    let (host, port) = split_host_port(addr)?;
    let port = port
        .checked_add(thread)
        .ok_or_else(|| NodeError::Config(format!("{addr} + {thread} overflows the port range")))?;
    Ok(format!("tcp://{host}:{port}"))
}

/// A running node. Dropping it shuts it down; [`Node::shutdown`] does so explicitly.
pub struct Node<V: KvsValue> {
    shared: Arc<Shared<V>>,
    threads: Vec<JoinHandle<()>>,
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

        // The cluster: this node and its peers, ordered by address so every node agrees.
        let mut members: Vec<(String, ThreadIndex)> = Vec::new();
        match &config.gossip_addr {
            Some(addr) => {
                split_host_port(addr)?;
                members.push((addr.clone(), threads));
            }
            None if !config.peers.is_empty() => {
                return Err(NodeError::Config("peers need a gossip address for this node".into()));
            }
            None => members.push(("local".to_owned(), threads)),
        }
        for peer in &config.peers {
            split_host_port(&peer.gossip_addr)?;
            if peer.threads == 0 {
                return Err(NodeError::Config(format!("peer {} has no threads", peer.gossip_addr)));
            }
            members.push((peer.gossip_addr.clone(), peer.threads));
        }
        members.sort();
        members.dedup_by(|a, b| a.0 == b.0);
        let me = members
            .iter()
            .position(|(addr, _)| {
                Some(addr) == config.gossip_addr.as_ref()
                    || (addr == "local" && config.gossip_addr.is_none())
            })
            .expect("this node is a member") as NodeIndex;
        let topology = Arc::new(Topology::new(
            members.iter().map(|(a, _)| a.clone()).collect(),
            members.iter().map(|(_, t)| *t).collect(),
            config.replication,
        ));

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
            doorbells.push(
                Doorbell::new()
                    .map_err(|e| NodeError::Config(format!("create a doorbell eventfd: {e}")))?,
            );
            let tcp = match &config.gossip_addr {
                Some(addr) => {
                    let socket =
                        context.socket(zmq::PULL).map_err(zmq_err("create gossip socket"))?;
                    socket
                        .set_maxmsgsize(wire::MAX_MESSAGE_BYTES as i64)
                        .map_err(zmq_err("set ZMQ_MAXMSGSIZE"))?;
                    socket
                        .set_rcvhwm(config.send_high_water_mark)
                        .map_err(zmq_err("set ZMQ_RCVHWM"))?;
                    socket.set_linger(0).map_err(zmq_err("set ZMQ_LINGER"))?;
                    let endpoint = tcp_endpoint(addr, thread)?;
                    socket.bind(&endpoint).map_err(zmq_err(format!("bind {endpoint}")))?;
                    Some(socket)
                }
                None => None,
            };
            bound.push(tcp);
        }
        let shared = Arc::new(Shared {
            context,
            me,
            topology,
            mailboxes: senders,
            doorbells,
            stop: AtomicBool::new(false),
            reports: (0..threads).map(|_| Mutex::new(ActorReport::default())).collect(),
            config: config.clone(),
            clock: Clock::new(),
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
        for (thread, ((tcp, mailbox), service)) in
            bound.into_iter().zip(receivers).zip(services).enumerate()
        {
            let id = ActorId::new(shared.me, thread as ThreadIndex);
            let driver = Driver::new(id, Arc::clone(&shared), tcp, mailbox, service)
                .map_err(|e| NodeError::Config(format!("create an epoll set: {e}")))?;
            drivers.push(driver);
        }
        let mut node = Self { shared: Arc::clone(&shared), threads: Vec::new() };
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
                .map_err(|e| NodeError::Config(format!("spawn actor thread: {e}")))?;
            node.threads.push(handle);
        }
        tracing::info!(node = me, actors = threads, gossip = ?config.gossip_addr, peers = config.peers.len(), "anna node started");
        Ok(node)
    }

    /// A handle for issuing requests to this node (one per client thread: it owns sockets).
    pub fn handle(&self) -> NodeHandle<V> {
        NodeHandle::new(Arc::clone(&self.shared))
    }

    /// The cluster topology this node routes with.
    pub fn topology(&self) -> Arc<Topology> {
        Arc::clone(&self.shared.topology)
    }

    /// This node's index in the cluster.
    pub fn index(&self) -> NodeIndex {
        self.shared.me
    }

    /// Per-actor counters and time breakdown, as of each actor's last epoch.
    pub fn reports(&self) -> Vec<ActorReport> {
        self.shared.reports()
    }

    /// Stops every actor and waits for its thread to finish.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        for doorbell in &self.shared.doorbells {
            doorbell.ring_now();
        }
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
        tracing::info!(node = self.shared.me, "anna node stopped");
    }
}

impl<V: KvsValue> Drop for Node<V> {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Issues requests to a node from one thread. Cloning makes a new handle with its own sockets.
pub struct NodeHandle<V: KvsValue> {
    shared: Arc<Shared<V>>,
    next: usize,
    /// Set by [`NodeHandle::request_at`] for one request.
    pinned: Option<usize>,
    /// The local actor this handle prefers when it owns the key (see
    /// [`NodeHandle::with_affinity`]).
    affinity: Option<usize>,
    /// Reused buffer for a key's owners.
    owners: Vec<ActorId>,
}

impl<V: KvsValue> std::fmt::Debug for NodeHandle<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle").field("node", &self.shared.me).finish()
    }
}

impl<V: KvsValue> Clone for NodeHandle<V> {
    fn clone(&self) -> Self {
        Self::new(Arc::clone(&self.shared))
    }
}

impl<V: KvsValue> NodeHandle<V> {
    fn new(shared: Arc<Shared<V>>) -> Self {
        Self { shared, next: 0, pinned: None, affinity: None, owners: Vec::new() }
    }

    /// Per-actor counters of the node, as of each actor's last epoch.
    pub fn reports(&self) -> Vec<ActorReport> {
        self.shared.reports()
    }

    /// The cluster topology the node routes with.
    pub fn topology(&self) -> Arc<Topology> {
        Arc::clone(&self.shared.topology)
    }

    /// The node's index in the cluster.
    pub fn index(&self) -> NodeIndex {
        self.shared.me
    }

    /// Reads `key`.
    ///
    /// # Errors
    /// Oversized keys, timeouts, shutdown.
    pub fn get(&mut self, key: impl Into<Key>) -> Result<Option<V>, RequestError> {
        match self.request(Request::Get { key: key.into() })? {
            Response::Value(value) => Ok(value),
            other => Err(unexpected(other)),
        }
    }

    /// Merges `value` into `key`; with `stamp_here` the serving actor stamps it.
    ///
    /// # Errors
    /// Oversized keys or values, stale stamps, timeouts, shutdown.
    pub fn put(
        &mut self,
        key: impl Into<Key>,
        value: V,
        stamp_here: bool,
    ) -> Result<(), RequestError> {
        match self.request(Request::Put { key: key.into(), value, stamp_here })? {
            Response::Done(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes `key`.
    ///
    /// # Errors
    /// Oversized keys, timeouts, shutdown.
    pub fn delete(&mut self, key: impl Into<Key>) -> Result<(), RequestError> {
        match self.request(Request::Delete { key: key.into() })? {
            Response::Done(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Sends any request to a replica owner of its key on this node (or, if the key lives only
    /// on other nodes, to a local actor that forwards it) and waits for the answer.
    ///
    /// # Errors
    /// See [`RequestError`].
    pub fn request(&mut self, request: Request<V>) -> Result<Response<V>, RequestError> {
        self.request_batch(vec![request]).pop().unwrap_or(Err(RequestError::Timeout))
    }

    /// Sends `request` to local actor `thread` whether or not it owns the key (a non-owner
    /// forwards it), e.g. to read one particular replica.
    ///
    /// # Errors
    /// See [`RequestError`].
    pub fn request_at(
        &mut self,
        thread: ThreadIndex,
        request: Request<V>,
    ) -> Result<Response<V>, RequestError> {
        self.pinned = Some(usize::from(thread) % self.shared.mailboxes.len());
        let result = self.request(request);
        self.pinned = None;
        result
    }

    /// Prefer local actor `thread` whenever it replicates the key. Every request of this
    /// handle for a key then goes to the same replica, so the handle reads its own writes (a
    /// Redis connection uses one handle with an affinity spread over the actors).
    #[must_use]
    pub fn with_affinity(mut self, thread: usize) -> Self {
        self.affinity = Some(thread % self.shared.mailboxes.len());
        self
    }

    /// Sends every request, then waits for every answer: one doorbell per actor for the whole
    /// batch (pipelined commands). Answers come back in request order.
    pub fn request_batch(
        &mut self,
        requests: Vec<Request<V>>,
    ) -> Vec<Result<Response<V>, RequestError>> {
        let shared = Arc::clone(&self.shared);
        let config = &shared.config;
        let deadline = Instant::now() + config.request_timeout;
        let mut results: Vec<Result<Response<V>, RequestError>> =
            (0..requests.len()).map(|_| Err(RequestError::Timeout)).collect();
        let per_actor = self.group_by_actor(requests, |index, error| results[index] = Err(error));
        let (reply_tx, reply_rx) = crossbeam_channel::unbounded();
        let mut expected = 0;
        for (thread, batch) in per_actor.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let mail = Mail::Batch { requests: batch, reply: ReplyTo::Channel(reply_tx.clone()) };
            if shared.mailboxes[thread].send_deadline(mail, deadline).is_ok() {
                expected += 1;
                self.ring(thread);
            }
        }
        drop(reply_tx);
        for _ in 0..expected {
            let Ok(answers) = reply_rx.recv_deadline(deadline) else {
                if shared.stop.load(Ordering::Relaxed) {
                    for result in &mut results {
                        if matches!(result, Err(RequestError::Timeout)) {
                            *result = Err(RequestError::ShuttingDown);
                        }
                    }
                }
                break;
            };
            for (index, response) in answers {
                results[index] = match response {
                    Response::Error(error) => Err(error),
                    other => Ok(other),
                };
            }
        }
        results
    }

    /// Groups `requests` (numbered in order) by the local actor each goes to; one over the
    /// node's limits, or any while the node stops, is refused through `refuse` instead.
    fn group_by_actor(
        &mut self,
        requests: impl IntoIterator<Item = Request<V>>,
        mut refuse: impl FnMut(usize, RequestError),
    ) -> Vec<Vec<(usize, Request<V>)>> {
        let mut per_actor: Vec<Vec<(usize, Request<V>)>> =
            (0..self.shared.mailboxes.len()).map(|_| Vec::new()).collect();
        for (index, request) in requests.into_iter().enumerate() {
            match check_limits(&self.shared.config, &request) {
                Err(error) => refuse(index, error),
                Ok(()) if self.shared.stop.load(Ordering::Relaxed) => {
                    refuse(index, RequestError::ShuttingDown);
                }
                Ok(()) => {
                    let thread = self.pick_actor(request.key());
                    per_actor[thread].push((index, request));
                }
            }
        }
        per_actor
    }

    /// The handle's affinity actor if it owns `key`, else a local owner chosen by the key (so
    /// one key always goes to the same replica), else any local actor (which forwards).
    fn pick_actor(&mut self, key: &[u8]) -> usize {
        if let Some(thread) = self.pinned {
            return thread;
        }
        let topology = &self.shared.topology;
        if topology.is_full() {
            return self.affinity.unwrap_or(0);
        }
        topology.owners_into(key, None, &mut self.owners);
        let me = self.shared.me;
        if let Some(thread) = self.affinity
            && self.owners.iter().any(|a| a.node == me && usize::from(a.thread) == thread)
        {
            return thread;
        }
        match self.owners.iter().find(|a| a.node == me) {
            Some(owner) => usize::from(owner.thread),
            None => {
                self.next = self.next.wrapping_add(1);
                self.next % self.shared.mailboxes.len()
            }
        }
    }

    fn ring(&mut self, thread: usize) {
        self.shared.doorbells[thread].ring();
    }

    /// Wakes local actor `thread` if it is waiting, so its [`Service`] sees work queued for it
    /// (call after queueing).
    pub fn wake(&self, thread: usize) {
        if let Some(doorbell) = self.shared.doorbells.get(thread) {
            doorbell.ring();
        }
    }
}

/// Refuses keys (and PUT values) over the configured sizes before they reach an actor.
fn check_limits<V: KvsValue>(
    config: &NodeConfig,
    request: &Request<V>,
) -> Result<(), RequestError> {
    let key = request.key().len();
    if key > config.max_key_bytes {
        return Err(RequestError::TooLarge {
            what: "key".into(),
            size: key,
            limit: config.max_key_bytes,
        });
    }
    if let Request::Put { value, .. } = request {
        // The encoded size is what travels and what is stored; measure it only for PUTs.
        let size = bincode::serde::encode_to_vec(value, bincode::config::standard())
            .map_or(usize::MAX, |v| v.len());
        if size > config.max_value_bytes {
            return Err(RequestError::TooLarge {
                what: "value".into(),
                size,
                limit: config.max_value_bytes,
            });
        }
    }
    Ok(())
}

fn unexpected<V: KvsValue>(response: Response<V>) -> RequestError {
    match response {
        Response::Error(e) => e,
        _ => RequestError::Timeout,
    }
}

/// How one remote actor is reached.
struct RemoteLink {
    socket: zmq::Socket,
}

/// The loop around one actor: sockets in, actor, sockets out.
struct Driver<V: KvsValue> {
    id: ActorId,
    shared: Arc<Shared<V>>,
    actor: Actor<V>,
    tcp: Option<zmq::Socket>,
    mailbox: Receiver<Mail<V>>,
    /// PUSH sockets to remote actors (lazily connected).
    remotes: HashMap<ActorId, RemoteLink>,
    /// Clients waiting for an answer, by the token given to the actor.
    /// (batch number, slot) of each forwarded client request.
    waiting: HashMap<Token, (u64, usize)>,
    /// Batches not fully answered yet (some requests were forwarded), by batch number.
    batches: HashMap<u64, PendingBatch<V>>,
    next_batch: u64,
    next_token: Token,
    outputs: Vec<Output<V>>,
    report: ActorReport,
    /// Client-facing work on this thread, and its rounds in flight.
    service: Option<Box<dyn Service<V>>>,
    rounds: Vec<ServiceRound<V>>,
    next_round: u64,
    /// Routes the service's requests (affinity: this actor).
    router: NodeHandle<V>,
    /// Reused buffers of the service loop.
    service_requests: Vec<Request<V>>,
    /// What the actor waits on: its doorbell and its service's descriptors (the gossip
    /// socket, a ZeroMQ socket, is polled beside it).
    epoll: Epoll,
    events: Vec<EpollEvent>,
}

impl<V: KvsValue> Driver<V> {
    fn new(
        id: ActorId,
        shared: Arc<Shared<V>>,
        tcp: Option<zmq::Socket>,
        mailbox: Receiver<Mail<V>>,
        service: Option<Box<dyn Service<V>>>,
    ) -> Result<Self, nix::Error> {
        let now = shared.clock.now_us();
        let router = NodeHandle::new(Arc::clone(&shared)).with_affinity(usize::from(id.thread));
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let doorbell = &shared.doorbells[usize::from(id.thread)].bell;
        let edge = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
        epoll.add(doorbell, EpollEvent::new(edge, DOORBELL_TOKEN))?;
        let actor = Actor::new(id, Arc::clone(&shared.topology), shared.config.actor.clone(), now);
        Ok(Self {
            id,
            shared,
            actor,
            tcp,
            mailbox,
            remotes: HashMap::new(),
            waiting: HashMap::new(),
            batches: HashMap::new(),
            next_batch: 0,
            next_token: 1,
            outputs: Vec::new(),
            report: ActorReport { id: Some(id), ..ActorReport::default() },
            service,
            rounds: Vec::new(),
            next_round: 0,
            router,
            service_requests: Vec::new(),
            epoll,
            events: vec![EpollEvent::empty(); 256],
        })
    }

    fn run(&mut self) {
        self.connect_peers();
        let mut ready: Vec<Readiness> = Vec::new();
        while !self.shared.stop.load(Ordering::Relaxed) {
            let now = self.shared.clock.now_us();
            let mut timeout_ms = self.actor.next_epoch_at().saturating_sub(now).div_ceil(1000);
            if let Some(deadline) = self.rounds.iter().map(|r| r.deadline).min() {
                let left = deadline.saturating_duration_since(Instant::now());
                timeout_ms = timeout_ms.min(left.as_millis() as u64 + 1);
            }
            let idle_start = Instant::now();
            let doorbell = &self.shared.doorbells[usize::from(self.id.thread)];
            doorbell.going_to_sleep();
            // Work queued before the flag went up was not rung for: don't wait then.
            let pending_work = !self.mailbox.is_empty()
                || self.service.as_ref().is_some_and(|s| s.has_work())
                || self
                    .tcp
                    .as_ref()
                    .is_some_and(|t| t.get_events().is_ok_and(|e| e.contains(zmq::POLLIN)));
            let timeout = if pending_work { 0 } else { timeout_ms.min(u64::from(u16::MAX)) as u16 };
            let waited = match &self.tcp {
                // The gossip socket is a ZeroMQ socket: wait on it and the epoll set together.
                Some(tcp) => {
                    let mut items = [
                        zmq::PollItem::from_fd(self.epoll.0.as_raw_fd(), zmq::POLLIN),
                        tcp.as_poll_item(zmq::POLLIN),
                    ];
                    match zmq::poll(&mut items, i64::from(timeout)) {
                        Ok(_) if items[0].is_readable() => self.epoll.wait(&mut self.events, 0u16),
                        Ok(_) => Ok(0),
                        Err(_) => Err(nix::Error::EINTR),
                    }
                }
                None => self.epoll.wait(&mut self.events, timeout),
            };
            ready.clear();
            for event in &self.events[..waited.unwrap_or(0)] {
                let flags = event.events();
                if event.data() == DOORBELL_TOKEN {
                    continue;
                }
                let failed = EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP;
                ready.push(Readiness {
                    token: event.data(),
                    readable: flags
                        .intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | failed),
                    writable: flags.intersects(EpollFlags::EPOLLOUT | failed),
                });
            }
            doorbell.woke();
            self.report.idle_ns += idle_start.elapsed().as_nanos() as u64;
            if self.shared.stop.load(Ordering::Relaxed) {
                continue;
            }
            self.drain_mailbox();
            self.drain_tcp();
            if self.service.is_some() {
                self.start_round(&ready);
            }
            let now = Instant::now();
            while let Some(round) = self.rounds.iter().find(|r| now >= r.deadline).map(|r| r.id) {
                self.finish_round(round);
            }
            let now = self.shared.clock.now_us();
            if now >= self.actor.next_epoch_at() {
                let start = Instant::now();
                self.actor.handle(now, Input::Tick, &mut self.outputs);
                self.deliver();
                self.expire_batches();
                self.report.gossip_ns += start.elapsed().as_nanos() as u64;
                self.publish();
            }
        }
        self.publish();
    }

    /// Answers, with timeouts, the batches whose forwarded requests are overdue, and forgets
    /// them (so requests to a dead node do not pile up here).
    fn expire_batches(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> =
            self.batches.iter().filter(|(_, b)| now >= b.deadline).map(|(&id, _)| id).collect();
        if expired.is_empty() {
            return;
        }
        // A forward still waiting is one no reply has come for (`deliver` removes answered ones).
        let batches = &mut self.batches;
        self.waiting.retain(|_, &mut (batch, index)| match batches.get_mut(&batch) {
            Some(pending) if expired.contains(&batch) => {
                pending.answers.push((index, Response::Error(RequestError::Timeout)));
                false
            }
            _ => true,
        });
        for id in expired {
            if let Some(batch) = self.batches.remove(&id) {
                self.send_answers(batch.reply, batch.answers);
            }
        }
    }

    /// Runs one round of the service: its I/O, then its requests (owned keys on the spot, the
    /// rest in one message per owning actor).
    fn start_round(&mut self, ready: &[Readiness]) {
        let Some(service) = &mut self.service else { return };
        let mut requests = std::mem::take(&mut self.service_requests);
        let round = self.next_round;
        self.next_round += 1;
        service.step(round, &Registry { epoll: &self.epoll }, ready, &mut requests);
        if requests.is_empty() {
            service.complete(round, Vec::new());
            self.service_requests = requests;
            return;
        }
        let start = Instant::now();
        let me = self.id.thread;
        let mut results: Vec<Option<Result<Response<V>, RequestError>>> =
            (0..requests.len()).map(|_| None).collect();
        let per_actor = self
            .router
            .group_by_actor(requests.drain(..), |index, error| results[index] = Some(Err(error)));
        self.service_requests = requests;
        let shared = &self.shared;
        let mut mine = Vec::new();
        let mut outstanding = 0;
        for (thread, batch) in per_actor.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            if thread == usize::from(me) {
                mine = batch;
                outstanding += 1;
                continue;
            }
            let reply = ReplyTo::Actor { thread: me, round };
            match shared.mailboxes[thread].try_send(Mail::Batch { requests: batch, reply }) {
                Ok(()) => {
                    outstanding += 1;
                    shared.doorbells[thread].ring();
                }
                Err(TrySendError::Full(mail) | TrySendError::Disconnected(mail)) => {
                    // An overloaded (or stopping) actor: these requests fail now rather than
                    // block this actor.
                    if let Mail::Batch { requests, .. } = mail {
                        for (index, _) in requests {
                            results[index] = Some(Err(RequestError::Timeout));
                        }
                    }
                }
            }
        }
        let deadline = Instant::now() + shared.config.request_timeout;
        self.rounds.push(ServiceRound { id: round, results, outstanding, deadline });
        if mine.is_empty() {
            if outstanding == 0 {
                self.finish_round(round);
            }
        } else {
            let now = self.shared.clock.now_us();
            self.serve_batch(now, mine, ReplyTo::Actor { thread: me, round });
        }
        self.report.request_ns += start.elapsed().as_nanos() as u64;
    }

    /// Records the answers to one batch of the service's round; completes the round once
    /// every batch is answered. Answers to an abandoned round are dropped.
    fn on_answers(&mut self, round: u64, answers: Vec<(usize, Response<V>)>) {
        let Some(current) = self.rounds.iter_mut().find(|r| r.id == round) else { return };
        for (index, response) in answers {
            if let Some(slot) = current.results.get_mut(index) {
                *slot = Some(match response {
                    Response::Error(error) => Err(error),
                    other => Ok(other),
                });
            }
        }
        current.outstanding = current.outstanding.saturating_sub(1);
        if current.outstanding == 0 {
            self.finish_round(round);
        }
    }

    /// Gives the service its round's answers (a request still unanswered timed out).
    fn finish_round(&mut self, id: u64) {
        let Some(position) = self.rounds.iter().position(|r| r.id == id) else { return };
        let round = self.rounds.swap_remove(position);
        let answers =
            round.results.into_iter().map(|r| r.unwrap_or(Err(RequestError::Timeout))).collect();
        if let Some(service) = &mut self.service {
            service.complete(id, answers);
        }
    }

    /// Serves a batch of client requests: owned keys on the spot; forwarded ones complete the
    /// batch later, when their replies come back.
    fn serve_batch(&mut self, now: u64, requests: Vec<(usize, Request<V>)>, reply: ReplyTo<V>) {
        let mut answers = Vec::with_capacity(requests.len());
        let batch = self.next_batch;
        let mut outstanding = 0;
        for (index, request) in requests {
            let token = self.next_token;
            self.next_token += 1;
            match self.actor.serve(now, token, request, &mut self.outputs) {
                Some(response) => answers.push((index, response)),
                None => {
                    self.waiting.insert(token, (batch, index));
                    outstanding += 1;
                }
            }
        }
        if outstanding == 0 {
            self.send_answers(reply, answers);
        } else {
            self.next_batch += 1;
            let deadline = Instant::now() + self.shared.config.request_timeout;
            self.batches.insert(batch, PendingBatch { reply, answers, outstanding, deadline });
        }
        self.deliver();
    }

    fn send_answers(&mut self, reply: ReplyTo<V>, answers: Vec<(usize, Response<V>)>) {
        match reply {
            ReplyTo::Channel(sender) => {
                let _ = sender.send(answers);
            }
            ReplyTo::Actor { thread, round } if thread == self.id.thread => {
                self.on_answers(round, answers);
            }
            ReplyTo::Actor { thread, round } => {
                let Some(mailbox) = self.shared.mailboxes.get(usize::from(thread)) else { return };
                // A full mailbox drops the answers; the waiting round then times out.
                match mailbox.try_send(Mail::Answers { round, answers }) {
                    Ok(()) => self.ring_local(thread),
                    Err(_) => self.report.send_drops += 1,
                }
            }
        }
    }

    fn drain_mailbox(&mut self) {
        // Bounded per round so a flood of requests cannot starve gossip and epochs.
        for _ in 0..4096 {
            let Ok(mail) = self.mailbox.try_recv() else { break };
            let start = Instant::now();
            let now = self.shared.clock.now_us();
            match mail {
                Mail::Batch { requests, reply } => {
                    self.serve_batch(now, requests, reply);
                    self.report.request_ns += start.elapsed().as_nanos() as u64;
                }
                Mail::Answers { round, answers } => {
                    self.on_answers(round, answers);
                    self.report.request_ns += start.elapsed().as_nanos() as u64;
                }
                Mail::Peer(message) => {
                    self.actor.handle(now, Input::Peer(message), &mut self.outputs);
                    self.deliver();
                    self.report.gossip_ns += start.elapsed().as_nanos() as u64;
                }
            }
        }
    }

    fn drain_tcp(&mut self) {
        for _ in 0..4096 {
            let Some(tcp) = &self.tcp else { return };
            let Ok(bytes) = tcp.recv_bytes(zmq::DONTWAIT) else { return };
            let start = Instant::now();
            self.report.bytes_in += bytes.len() as u64;
            match wire::decode::<V>(&bytes).and_then(|m| self.validate(m)) {
                Ok(message) => {
                    let now = self.shared.clock.now_us();
                    self.actor.handle(now, Input::Peer(message), &mut self.outputs);
                    self.deliver();
                }
                Err(error) => {
                    self.report.bad_messages += 1;
                    tracing::warn!(actor = %self.id, %error, bytes = bytes.len(), "dropped a malformed message from the network");
                }
            }
            self.report.gossip_ns += start.elapsed().as_nanos() as u64;
        }
    }

    /// Checks what a message claims about its sender against the topology.
    fn validate(&self, message: PeerMessage<V>) -> Result<PeerMessage<V>, wire::WireError> {
        let sender = match &message {
            PeerMessage::Gossip(g) => Some(g.from),
            PeerMessage::Ack { from, .. } => Some(*from),
            PeerMessage::Forward { origin, .. } => Some(*origin),
            PeerMessage::ForwardReply { .. } => None,
        };
        if let Some(sender) = sender {
            let known = usize::from(sender.node) < self.shared.topology.nodes().len()
                && sender.thread < self.shared.topology.threads(sender.node)
                && sender.node != self.id.node;
            if !known {
                return Err(wire::WireError::Malformed(format!(
                    "unknown or local sender {sender} on the network"
                )));
            }
        }
        Ok(message)
    }

    fn deliver(&mut self) {
        let mut outputs = std::mem::take(&mut self.outputs);
        for output in outputs.drain(..) {
            match output {
                Output::Reply { token, response } => {
                    // A forwarded request came back: fill its slot, and answer the batch once
                    // every slot is filled. (Replies for abandoned tokens are dropped.)
                    let Some((batch, index)) = self.waiting.remove(&token) else { continue };
                    if let Some(pending) = self.batches.get_mut(&batch) {
                        pending.answers.push((index, response));
                        pending.outstanding -= 1;
                        if pending.outstanding == 0
                            && let Some(done) = self.batches.remove(&batch)
                        {
                            self.send_answers(done.reply, done.answers);
                        }
                    }
                }
                Output::Send { to, message } => self.send(to, message),
            }
        }
        self.outputs = outputs;
    }

    fn send(&mut self, to: ActorId, message: PeerMessage<V>) {
        if to.node == self.id.node {
            let Some(mailbox) = self.shared.mailboxes.get(usize::from(to.thread)) else { return };
            match mailbox.try_send(Mail::Peer(message)) {
                Ok(()) => self.ring_local(to.thread),
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.report.send_drops += 1
                }
            }
            return;
        }
        let bytes = match wire::encode(&message) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(actor = %self.id, %error, "message not sent");
                self.report.send_drops += 1;
                return;
            }
        };
        if !self.remotes.contains_key(&to) {
            match self.connect_remote(to) {
                Ok(link) => {
                    self.remotes.insert(to, link);
                }
                Err(error) => {
                    tracing::warn!(actor = %self.id, to = %to, %error, "cannot reach peer");
                    self.report.send_drops += 1;
                    return;
                }
            }
        }
        let link = &self.remotes[&to];
        match link.socket.send(&bytes[..], zmq::DONTWAIT) {
            Ok(()) => self.report.bytes_out += bytes.len() as u64,
            Err(_) => self.report.send_drops += 1,
        }
    }

    /// Connects to every actor of the other nodes now, so the links are up (ZeroMQ keeps
    /// retrying in the background) before the first request is forwarded: a message for a
    /// link that is not connected yet is dropped (`ZMQ_IMMEDIATE`), which gossip repairs by
    /// resending but a forwarded client request would only see as a timeout.
    fn connect_peers(&mut self) {
        let topology = Arc::clone(&self.shared.topology);
        for node in 0..topology.nodes().len() {
            let node = node as NodeIndex;
            if node == self.id.node {
                continue;
            }
            for thread in 0..topology.threads(node) {
                let to = ActorId::new(node, thread);
                match self.connect_remote(to) {
                    Ok(link) => {
                        self.remotes.insert(to, link);
                    }
                    Err(error) => {
                        tracing::warn!(actor = %self.id, to = %to, %error, "cannot reach peer");
                    }
                }
            }
        }
    }

    fn connect_remote(&self, to: ActorId) -> Result<RemoteLink, NodeError> {
        let addr = &self.shared.topology.nodes()[usize::from(to.node)];
        let endpoint = tcp_endpoint(addr, to.thread)?;
        let socket =
            self.shared.context.socket(zmq::PUSH).map_err(zmq_err("create push socket"))?;
        socket
            .set_sndhwm(self.shared.config.send_high_water_mark)
            .map_err(zmq_err("set ZMQ_SNDHWM"))?;
        socket.set_linger(0).map_err(zmq_err("set ZMQ_LINGER"))?;
        socket.set_immediate(true).map_err(zmq_err("set ZMQ_IMMEDIATE"))?;
        socket.connect(&endpoint).map_err(zmq_err(format!("connect {endpoint}")))?;
        Ok(RemoteLink { socket })
    }

    fn ring_local(&mut self, thread: ThreadIndex) {
        if let Some(doorbell) = self.shared.doorbells.get(usize::from(thread)) {
            doorbell.ring();
        }
    }

    fn publish(&mut self) {
        self.report.stats = self.actor.stats();
        if let Some(slot) = self.shared.reports.get(usize::from(self.id.thread))
            && let Ok(mut shared) = slot.lock()
        {
            *shared = self.report.clone();
        }
    }
}

impl<V: KvsValue> crate::levels::Store<V> for NodeHandle<V> {
    fn get(&mut self, key: &Key) -> Result<Option<V>, RequestError> {
        NodeHandle::get(self, key.clone())
    }
    fn put(&mut self, key: &Key, value: V) -> Result<(), RequestError> {
        NodeHandle::put(self, key.clone(), value, false)
    }
    fn put_here(
        &mut self,
        key: &Key,
        value: V,
    ) -> Result<Option<lattice_core::Stamp>, RequestError> {
        match self.request(Request::Put { key: key.clone(), value, stamp_here: true })? {
            Response::Done(stamp) => Ok(stamp),
            other => Err(unexpected(other)),
        }
    }
    fn now(&self) -> u64 {
        self.shared.clock.now_us()
    }
}
