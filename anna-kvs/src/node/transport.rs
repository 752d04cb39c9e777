//! The links between nodes: one ZeroMQ `PULL` socket per actor at `gossip_port + thread` for
//! what other nodes send it, and a `PUSH` socket per remote actor for what it sends them. Every
//! message travels in the [`crate::wire`] envelope. Sends never block: a full queue or an
//! unreachable peer costs a dropped message (counted), which gossip's retransmission repairs.

use std::collections::HashMap;
use std::sync::Arc;

use super::{NodeConfig, NodeError, Shared};
use crate::message::PeerMessage;
use crate::ring::{ActorId, NodeIndex, ThreadIndex, Topology};
use crate::value::KvsValue;
use crate::wire::{self, ClusterKey, Origin, WireError};

/// Splits `host:port`.
pub(crate) fn split_host_port(addr: &str) -> Result<(String, u16), NodeError> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| NodeError::Config(format!("gossip address {addr:?} is not host:port")))?;
    let port: u16 = port.parse().map_err(|_| NodeError::Config(format!("bad port in {addr:?}")))?;
    Ok((host.to_owned(), port))
}

/// The ZeroMQ endpoint of actor `thread` of the node gossiping at `addr`.
fn tcp_endpoint(addr: &str, thread: ThreadIndex) -> Result<String, NodeError> {
    let (host, port) = split_host_port(addr)?;
    let port = port
        .checked_add(thread)
        .ok_or_else(|| NodeError::Config(format!("{addr} + {thread} overflows the port range")))?;
    Ok(format!("tcp://{host}:{port}"))
}

/// Binds actor `thread`'s inbound gossip socket at the node's gossip bind address, else at
/// `addr` (done for every actor before any starts, so a busy port fails the start cleanly).
pub(super) fn bind_inbound(
    context: &zmq::Context,
    config: &NodeConfig,
    addr: &str,
    thread: ThreadIndex,
) -> Result<zmq::Socket, NodeError> {
    let socket = context.socket(zmq::PULL).map_err(NodeError::zmq("create gossip socket"))?;
    socket
        .set_maxmsgsize(wire::MAX_MESSAGE_BYTES as i64)
        .map_err(NodeError::zmq("set ZMQ_MAXMSGSIZE"))?;
    socket.set_rcvhwm(config.send_high_water_mark).map_err(NodeError::zmq("set ZMQ_RCVHWM"))?;
    socket.set_linger(0).map_err(NodeError::zmq("set ZMQ_LINGER"))?;
    heartbeats(&socket)?;
    let bind = config.gossip_bind.as_deref().unwrap_or(addr);
    let endpoint = tcp_endpoint(bind, thread)?;
    socket.bind(&endpoint).map_err(NodeError::zmq(format!("bind {endpoint}")))?;
    Ok(socket)
}

/// ZMTP heartbeats on a gossip socket: a connection that carries nothing back for 3 s (a
/// partition, a peer paused or gone) is dropped and dialled again. Without them a TCP
/// connection whose packets were dropped for a minute stays stalled in TCP's retransmission
/// backoff (its timer doubles up to two minutes) long after the network heals: the fault bed's
/// 60 s partition left gossip and repair silent for more than 30 s after the heal.
fn heartbeats(socket: &zmq::Socket) -> Result<(), NodeError> {
    socket.set_heartbeat_ivl(1000).map_err(NodeError::zmq("set ZMQ_HEARTBEAT_IVL"))?;
    socket.set_heartbeat_timeout(3000).map_err(NodeError::zmq("set ZMQ_HEARTBEAT_TIMEOUT"))?;
    socket.set_heartbeat_ttl(3000).map_err(NodeError::zmq("set ZMQ_HEARTBEAT_TTL"))?;
    Ok(())
}

/// Why a message from the network was refused (each reason is counted apart).
#[derive(Debug)]
pub(super) enum Refusal {
    /// The tag does not match this cluster's key: another cluster, a forgery, corruption.
    Unauthenticated,
    /// Well authenticated or not, the bytes are not a message this node can read.
    Malformed(WireError),
    /// The sender is not another actor of this cluster.
    UnknownSender(ActorId),
    /// An authentic message meant for another actor: replayed.
    Misdirected(ActorId),
    /// The sender's node has started again since: a message from an earlier life, replayed.
    OldIncarnation {
        /// The message's incarnation.
        got: u64,
        /// The newest incarnation seen from that node.
        newest: u64,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unauthenticated => write!(f, "{}", WireError::BadTag),
            Self::Malformed(error) => write!(f, "{error}"),
            Self::UnknownSender(actor) => write!(f, "unknown or local sender {actor}"),
            Self::Misdirected(to) => write!(f, "meant for actor {to}, not this one: a replay"),
            Self::OldIncarnation { got, newest } => {
                write!(
                    f,
                    "incarnation {got} is older than the sender's newest ({newest}): a replay"
                )
            }
        }
    }
}

/// A message from the network, and whether its node was seen to restart.
pub(super) struct Inbound<V: KvsValue> {
    pub(super) message: PeerMessage<V>,
    /// The sender's node started again since its last message (a newer incarnation).
    pub(super) restarted: Option<NodeIndex>,
}

/// Why a send did not go out.
#[derive(Debug)]
pub(super) enum SendError {
    /// The message could not be encoded (too large, say).
    Encode(WireError),
    /// No socket to the peer could be made.
    Connect(NodeError),
    /// The peer's queue is full or the link is not up (`ZMQ_IMMEDIATE`).
    Dropped,
    /// The receiver is not in the ring (it left, or was taken out).
    Gone,
}

/// One actor's links to the other nodes.
pub(super) struct Transport {
    me: ActorId,
    context: zmq::Context,
    topology: Arc<Topology>,
    /// Messages queued per remote destination before sends are dropped.
    high_water_mark: i32,
    /// Where other nodes' actors send this actor messages (`None` on a single node).
    inbound: Option<zmq::Socket>,
    /// PUSH sockets to remote actors, connected at start (and again lazily if that failed).
    remotes: HashMap<ActorId, zmq::Socket>,
    /// Authenticates every message sent and received.
    key: ClusterKey,
    /// This node's incarnation, in every message it sends.
    incarnation: u64,
    /// The newest incarnation seen from each other node (older ones are replays).
    incarnations: HashMap<NodeIndex, u64>,
}

impl Transport {
    /// Actor `me`'s links, over the node's ZeroMQ context, ring, key and incarnation.
    pub(super) fn new<V: KvsValue>(
        me: ActorId,
        shared: &Shared<V>,
        inbound: Option<zmq::Socket>,
    ) -> Self {
        Self {
            me,
            context: shared.context.clone(),
            topology: shared.topology.get(),
            high_water_mark: shared.config.send_high_water_mark,
            inbound,
            remotes: HashMap::new(),
            key: shared.cluster_key.clone(),
            incarnation: shared.incarnation,
            incarnations: HashMap::new(),
        }
    }

    /// Routes with `topology` from now on: links to members that joined are dialled, links to
    /// members that left are closed.
    pub(super) fn set_topology(&mut self, topology: Arc<Topology>) {
        let old = std::mem::replace(&mut self.topology, topology);
        self.remotes.retain(|to, _| {
            self.topology.has_actor(*to)
                && self.topology.nodes()[usize::from(to.node)] == old.nodes()[usize::from(to.node)]
        });
        self.connect_all();
    }

    /// The inbound socket, to wait on beside the actor's `epoll` set.
    pub(super) fn inbound(&self) -> Option<&zmq::Socket> {
        self.inbound.as_ref()
    }

    /// Whether a message is waiting on the inbound socket.
    pub(super) fn has_input(&self) -> bool {
        self.inbound.as_ref().is_some_and(|t| t.get_events().is_ok_and(|e| e.contains(zmq::POLLIN)))
    }

    /// The next waiting message's bytes, without blocking.
    pub(super) fn try_recv(&self) -> Option<Vec<u8>> {
        self.inbound.as_ref()?.recv_bytes(zmq::DONTWAIT).ok()
    }

    /// Authenticates and decodes a message from the network, and checks its sender: an actor
    /// of another node of the cluster, in that node's newest incarnation.
    pub(super) fn decode<V: KvsValue>(&mut self, bytes: &[u8]) -> Result<Inbound<V>, Refusal> {
        let (origin, message) =
            wire::decode::<V>(bytes, &self.key).map_err(|error| match error {
                WireError::BadTag => Refusal::Unauthenticated,
                other => Refusal::Malformed(other),
            })?;
        let Origin { actor, incarnation, to } = origin;
        if to != self.me {
            // Authentic, but meant for another actor: a capture replayed here.
            return Err(Refusal::Misdirected(to));
        }
        if actor.node == self.me.node || !self.topology.has_actor(actor) {
            return Err(Refusal::UnknownSender(actor));
        }
        let newest = self.incarnations.entry(actor.node).or_insert(incarnation);
        if incarnation < *newest {
            return Err(Refusal::OldIncarnation { got: incarnation, newest: *newest });
        }
        let restarted = (incarnation > *newest).then_some(actor.node);
        *newest = incarnation;
        Ok(Inbound { message, restarted })
    }

    /// Encodes and sends `message` to remote actor `to`, without blocking. Returns the bytes
    /// sent.
    pub(super) fn send<V: KvsValue>(
        &mut self,
        to: ActorId,
        message: &PeerMessage<V>,
    ) -> Result<usize, SendError> {
        if !self.topology.has_actor(to) {
            // Not a member (any more): the ring changed since the message was made.
            return Err(SendError::Gone);
        }
        let origin = Origin { actor: self.me, incarnation: self.incarnation, to };
        let bytes = wire::encode(message, origin, &self.key).map_err(SendError::Encode)?;
        if !self.remotes.contains_key(&to) {
            let socket = self.connect(to).map_err(SendError::Connect)?;
            self.remotes.insert(to, socket);
        }
        match self.remotes[&to].send(&bytes[..], zmq::DONTWAIT) {
            Ok(()) => Ok(bytes.len()),
            Err(_) => Err(SendError::Dropped),
        }
    }

    /// Connects to every actor of the other nodes now, so the links are up (ZeroMQ keeps
    /// retrying in the background) before the first request is forwarded: a message for a
    /// link that is not connected yet is dropped (`ZMQ_IMMEDIATE`), which gossip repairs by
    /// resending but a forwarded client request would only see as a timeout.
    pub(super) fn connect_all(&mut self) {
        let topology = Arc::clone(&self.topology);
        for node in 0..topology.nodes().len() {
            let node = node as NodeIndex;
            if node == self.me.node {
                continue;
            }
            for thread in 0..topology.threads(node) {
                let to = ActorId::new(node, thread);
                if self.remotes.contains_key(&to) {
                    continue;
                }
                match self.connect(to) {
                    Ok(socket) => {
                        self.remotes.insert(to, socket);
                    }
                    Err(error) => {
                        tracing::warn!(actor = %self.me, to = %to, %error, "cannot reach peer");
                    }
                }
            }
        }
    }

    fn connect(&self, to: ActorId) -> Result<zmq::Socket, NodeError> {
        let addr = &self.topology.nodes()[usize::from(to.node)];
        let endpoint = tcp_endpoint(addr, to.thread)?;
        let socket =
            self.context.socket(zmq::PUSH).map_err(NodeError::zmq("create push socket"))?;
        socket.set_sndhwm(self.high_water_mark).map_err(NodeError::zmq("set ZMQ_SNDHWM"))?;
        socket.set_linger(0).map_err(NodeError::zmq("set ZMQ_LINGER"))?;
        socket.set_immediate(true).map_err(NodeError::zmq("set ZMQ_IMMEDIATE"))?;
        heartbeats(&socket)?;
        // A connection attempt into a partition gives up after a second and is retried, so
        // the link is back within about a second of the heal (TCP's own SYN retries back
        // off for minutes).
        socket.set_connect_timeout(1000).map_err(NodeError::zmq("set ZMQ_CONNECT_TIMEOUT"))?;
        socket.connect(&endpoint).map_err(NodeError::zmq(format!("connect {endpoint}")))?;
        Ok(socket)
    }
}
