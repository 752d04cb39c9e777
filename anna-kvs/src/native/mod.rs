//! The native protocol: lattice-aware clients talk to a node over ZeroMQ.
//!
//! A node binds a ZeroMQ `ROUTER` socket (default port [`DEFAULT_PORT`]); a client connects a
//! `DEALER` socket and sends single-frame messages. Every message travels in the same
//! versioned, size-limited envelope as gossip (see [`wire`]), with its own magic
//! bytes ([`MAGIC`]) so neither port mistakes the other's traffic:
//!
//! ```text
//! "ANNC" | version: u8 | value-type: u32 | bincode 2 payload
//! ```
//!
//! The value-type field is the CRC32 of the node's [`KvsValue::TYPE_NAME`]: a client speaking
//! another lattice is answered with an error naming the node's type, never misread. Requests
//! and answers carry whole lattice states — clocks, siblings, sets, counters, transaction
//! stamps — so the client-side sessions of every consistency level work over the wire.
//!
//! | client sends | node answers |
//! |---|---|
//! | [`ClientMessage::Ring`] | [`ServerMessage::Ring`]: members, their client addresses, factors |
//! | [`ClientMessage::Batch`] | [`ServerMessage::Batch`]: one [`Response`] per request, in order |
//! | [`ClientMessage::Stats`] | [`ServerMessage::Stats`]: every actor's counters on that node |
//! | [`ClientMessage::Cluster`] | [`ServerMessage::Cluster`]: the members as that node's failure detector sees them |
//! | [`ClientMessage::Leave`] | [`ServerMessage::Cluster`], then the node leaves the cluster and stops (or an error) |
//! | anything malformed | an untyped error envelope (type id 0) carrying a message, counted |
//!
//! Limits: a message is at most [`MAX_MESSAGE_BYTES`](crate::wire::MAX_MESSAGE_BYTES) (also
//! enforced by libzmq before buffering), a batch at most [`MAX_BATCH`] requests, and keys and
//! values are checked against the node's configured limits.

mod server;

pub use server::{FrontEnd, FrontEndConfig, FrontEndStats};

use serde::{Deserialize, Serialize};

use crate::message::{Request, Response};
use crate::node::ActorReport;
use crate::ring::{NodeIndex, Replication, ThreadIndex, Topology};
use crate::value::KvsValue;
use crate::wire::{self, WireError};

/// The envelope's magic bytes on the client port.
pub const MAGIC: &[u8; 4] = b"ANNC";
/// The default client port of `anna-server`.
pub const DEFAULT_PORT: u16 = 6450;
/// Most requests in one [`ClientMessage::Batch`].
pub const MAX_BATCH: usize = 16 * 1024;
/// The type id of untyped error envelopes.
const ERROR_TYPE_ID: u32 = 0;
/// The type id of messages that carry no lattice value (ring and stats requests and answers):
/// any client can ask, whatever lattice it speaks, and learns the node's lattice from the ring.
const CONTROL_TYPE_ID: u32 = 1;

/// A message from a client to a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "V: KvsValue")]
pub enum ClientMessage<V: KvsValue> {
    /// Ask for the cluster's membership and ring.
    Ring,
    /// Requests, answered together in order.
    Batch {
        /// Chosen by the client; echoed in the answer (late answers to retried batches are
        /// recognised and dropped).
        id: u64,
        /// The requests.
        requests: Vec<Request<V>>,
    },
    /// Ask for the counters of every actor on this node.
    Stats,
    /// Ask for the cluster's members as this node's failure detector sees them.
    Cluster,
    /// Make this node leave the cluster for good: it drains its changes to its peers, every
    /// member takes it out of the ring, and it stops. Answered with the cluster as it was (or
    /// an error saying why it may not leave).
    Leave,
}

/// A message from a node to a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "V: KvsValue")]
pub enum ServerMessage<V: KvsValue> {
    /// The cluster's membership.
    Ring(RingInfo),
    /// The answers to a [`ClientMessage::Batch`].
    Batch {
        /// The batch's id.
        id: u64,
        /// The version of the ring the node routes with; a client holding another version
        /// refreshes its copy.
        ring_version: u64,
        /// One answer per request, in order.
        responses: Vec<Response<V>>,
    },
    /// This node's counters.
    Stats(NodeStats),
    /// The membership as this node sees it.
    Cluster(ClusterInfo),
}

/// The cluster as one node sees it: the ring it routes with and what its failure detector
/// says of every member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// The version of the ring the node routes with.
    pub ring_version: u64,
    /// Its members, states, incarnations and the detector's counters (`None`: a single node
    /// without a gossip address has no detector).
    pub membership: Option<crate::node::MembershipReport>,
}

/// One member of the cluster as clients see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Its name in the ring (its gossip address, or `local` for a single node).
    pub name: String,
    /// Its actor threads.
    pub threads: ThreadIndex,
    /// Where clients reach it (`host:port`), when known.
    pub client_addr: Option<String>,
}

/// The cluster's membership and replication: enough for a client to compute each key's owners
/// with the same CRC32 rings the nodes use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingInfo {
    /// Changes whenever membership or replication does.
    pub version: u64,
    /// The value lattice the cluster stores ([`KvsValue::TYPE_NAME`]).
    pub value_type: String,
    /// Which member answered.
    pub me: NodeIndex,
    /// Members in ring order.
    pub members: Vec<MemberInfo>,
    /// Default replication.
    pub replication: Replication,
}

impl RingInfo {
    /// Describes `topology` as seen from member `me`; `client_addrs` is each member's client
    /// address, in ring order.
    pub fn new<V: KvsValue>(
        topology: &Topology,
        me: NodeIndex,
        client_addrs: Vec<Option<String>>,
    ) -> Self {
        let members: Vec<MemberInfo> = topology
            .nodes()
            .iter()
            .enumerate()
            .map(|(i, name)| MemberInfo {
                name: name.clone(),
                threads: topology.threads(i as NodeIndex),
                client_addr: client_addrs.get(i).cloned().flatten(),
            })
            .collect();
        Self {
            version: topology.version(),
            value_type: V::TYPE_NAME.to_owned(),
            me,
            members,
            replication: topology.replication(),
        }
    }

    /// The ring itself, rebuilt from the membership (the same owners the nodes compute).
    pub fn topology(&self) -> Topology {
        Topology::new(
            self.members.iter().map(|m| m.name.clone()).collect(),
            self.members.iter().map(|m| m.threads).collect(),
            self.replication,
        )
    }
}

/// One node's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    /// The node's index in the ring.
    pub node: NodeIndex,
    /// Each actor's counters and time breakdown.
    pub actors: Vec<ActorReport>,
    /// The client port's counters.
    pub front_end: FrontEndStats,
}

/// A client message as sent: the password (when the node requires one) and the message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "V: KvsValue")]
pub struct ClientFrame<V: KvsValue> {
    /// The node's password, if it has one (compared in constant time).
    pub password: Option<String>,
    /// The message.
    pub message: ClientMessage<V>,
}

/// Runs a node storing `V` that serves only the native protocol (for lattices other than the
/// Redis front end's), until `stop` is set; then shuts the node down.
///
/// # Errors
/// The node or its client port could not start.
pub fn serve<V: KvsValue>(
    node: crate::node::NodeConfig,
    front_end: &FrontEndConfig,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<(), crate::node::NodeError> {
    let node = crate::node::Node::<V>::start(node)?;
    let front_end = FrontEnd::bind(front_end, node.handle(), stop)?;
    front_end.run();
    node.shutdown();
    Ok(())
}

/// Encodes a client message (a batch is typed with `V`; ring and stats requests are not).
///
/// # Errors
/// [`WireError::TooLarge`].
pub fn encode_client<V: KvsValue>(frame: &ClientFrame<V>) -> Result<Vec<u8>, WireError> {
    let typed = matches!(frame.message, ClientMessage::Batch { .. });
    wire::encode_envelope(MAGIC, if typed { wire::type_id::<V>() } else { CONTROL_TYPE_ID }, frame)
}

/// Opens an envelope whose payload is typed with `V`, or is a control message (`is_control`
/// must then hold for the decoded message).
fn decode_typed_or_control<V: KvsValue, M: serde::de::DeserializeOwned>(
    bytes: &[u8],
    is_control: impl Fn(&M) -> bool,
) -> Result<(u32, M), WireError> {
    let (got, payload) = wire::open_envelope(MAGIC, bytes)?;
    if got != CONTROL_TYPE_ID {
        wire::check_type::<V>(got)?;
    }
    let message: M = wire::decode_payload(payload)?;
    if got == CONTROL_TYPE_ID && !is_control(&message) {
        return Err(WireError::Malformed("a batch must name its value type".into()));
    }
    Ok((got, message))
}

/// Decodes a client message (what a node does with every frame on its client port).
///
/// # Errors
/// Every way the bytes can be wrong has its [`WireError`]; nothing panics and no length is
/// trusted before it is checked.
pub fn decode_client<V: KvsValue>(bytes: &[u8]) -> Result<ClientFrame<V>, WireError> {
    let (_, frame) = decode_typed_or_control::<V, ClientFrame<V>>(bytes, |f| {
        !matches!(f.message, ClientMessage::Batch { .. })
    })?;
    if let ClientMessage::Batch { requests, .. } = &frame.message
        && requests.len() > MAX_BATCH
    {
        return Err(WireError::Malformed(format!(
            "batch of {} requests exceeds the limit of {MAX_BATCH}",
            requests.len()
        )));
    }
    Ok(frame)
}

/// Encodes a node's answer (batch answers typed with `V`, ring and stats untyped).
///
/// # Errors
/// [`WireError::TooLarge`].
pub fn encode_server<V: KvsValue>(message: &ServerMessage<V>) -> Result<Vec<u8>, WireError> {
    let typed = matches!(message, ServerMessage::Batch { .. });
    wire::encode_envelope(
        MAGIC,
        if typed { wire::type_id::<V>() } else { CONTROL_TYPE_ID },
        message,
    )
}

/// Encodes an untyped error answer (for messages the node could not read).
pub fn encode_error(message: &str) -> Vec<u8> {
    // A message is far below the size limit once truncated, so encoding cannot fail.
    let text: String = message.chars().take(4096).collect();
    wire::encode_envelope(MAGIC, ERROR_TYPE_ID, &text).unwrap_or_default()
}

/// What a client reads from a node.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer<V: KvsValue> {
    /// A typed message.
    Message(ServerMessage<V>),
    /// The node refused what it was sent, with this explanation.
    Refused(String),
}

/// Decodes a node's answer.
///
/// # Errors
/// Every way the bytes can be wrong has its [`WireError`].
pub fn decode_server<V: KvsValue>(bytes: &[u8]) -> Result<Answer<V>, WireError> {
    if let Ok((ERROR_TYPE_ID, payload)) = wire::open_envelope(MAGIC, bytes) {
        return Ok(Answer::Refused(wire::decode_payload(payload)?));
    }
    let (_, message) = decode_typed_or_control::<V, ServerMessage<V>>(bytes, |m| {
        !matches!(m, ServerMessage::Batch { .. })
    })?;
    Ok(Answer::Message(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::levels::Causal;
    use crate::value::Eventual;
    use bytes::Bytes;

    #[test]
    fn messages_round_trip_and_refuse_other_lattices() {
        let message: ClientFrame<Eventual> = ClientFrame {
            password: Some("pw".into()),
            message: ClientMessage::Batch {
                id: 9,
                requests: vec![Request::Get { key: Bytes::from("k") }],
            },
        };
        let bytes = encode_client(&message).unwrap();
        assert_eq!(decode_client::<Eventual>(&bytes).unwrap(), message);
        assert!(matches!(decode_client::<Causal>(&bytes), Err(WireError::WrongValueType { .. })));
        // Ring requests carry no lattice: any node reads them, and tells its lattice back.
        let ring: ClientFrame<Eventual> =
            ClientFrame { password: None, message: ClientMessage::Ring };
        let ring = encode_client(&ring).unwrap();
        assert_eq!(decode_client::<Causal>(&ring).unwrap().message, ClientMessage::Ring);
        // A batch cannot pass as a control message.
        let mut untyped = bytes.clone();
        untyped[5..9].copy_from_slice(&CONTROL_TYPE_ID.to_le_bytes());
        assert!(matches!(decode_client::<Eventual>(&untyped), Err(WireError::Malformed(_))));
        assert_eq!(
            decode_server::<Causal>(&encode_error("no")).unwrap(),
            Answer::Refused("no".into())
        );
        // A gossip envelope is not a client message.
        let mut gossip = bytes.clone();
        gossip[..4].copy_from_slice(crate::wire::MAGIC);
        assert_eq!(decode_client::<Eventual>(&gossip), Err(WireError::BadMagic));
        for cut in 0..bytes.len() {
            assert!(decode_client::<Eventual>(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn oversized_batches_are_refused() {
        let requests = (0..=MAX_BATCH).map(|_| Request::Get { key: Bytes::new() }).collect();
        let message = ClientMessage::Batch { id: 1, requests };
        let bytes = encode_client::<Eventual>(&ClientFrame { password: None, message }).unwrap();
        assert!(matches!(decode_client::<Eventual>(&bytes), Err(WireError::Malformed(_))));
    }

    #[test]
    fn ring_info_rebuilds_the_same_ring() {
        let topology = Topology::new(
            vec!["a:1".into(), "b:1".into(), "c:1".into()],
            vec![2, 2, 2],
            Replication::new(crate::Factor::Count(2), crate::Factor::Count(1)),
        );
        let info = RingInfo::new::<Eventual>(&topology, 1, vec![Some("x:1".into()), None, None]);
        let rebuilt = info.topology();
        for k in 0..200_u32 {
            let key = k.to_le_bytes();
            assert_eq!(rebuilt.owners(&key, None), topology.owners(&key, None));
        }
        let other = RingInfo::new::<Eventual>(&rebuilt, 1, vec![None, None, None]);
        assert_eq!(other.version, info.version, "addresses do not change the ring");
    }
}
