//! The messages an actor consumes and produces. Pure data: no sockets here.

use lattice_core::Stamp;
use serde::{Deserialize, Serialize};

use crate::ring::{ActorId, Key};
use crate::value::{KvsValue, OpError};

/// An opaque number the driver uses to route a reply back to whoever asked.
pub type Token = u64;

/// A client operation on one key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "V: KvsValue")]
pub enum Request<V: KvsValue> {
    /// Read the key from this replica.
    Get {
        /// The key.
        key: Key,
    },
    /// Merge `value` into the key.
    Put {
        /// The key.
        key: Key,
        /// The lattice state to merge.
        value: V,
        /// Let the actor stamp the write with its own clock (for values with a stamp, such as
        /// last-writer-wins registers); clients without a clock of their own use this.
        stamp_here: bool,
    },
    /// Delete the key (a tombstone write, stamped by the actor).
    Delete {
        /// The key.
        key: Key,
    },
    /// Apply a value-specific operation that reads the replica's current state (an increment,
    /// a set insertion), stamped by the actor. See [`KvsValue::apply`].
    Apply {
        /// The key.
        key: Key,
        /// The operation.
        op: <V as KvsValue>::Op,
    },
    /// How many other nodes have acknowledged the key's state as of its last change on the
    /// actor that serves this (what `WAIT` polls). Answered with [`Response::Replicated`].
    Replicated {
        /// The key.
        key: Key,
    },
    /// A question to one actor of the node that takes it about the keys it holds (`DBSIZE`,
    /// `SCAN`, `KEYS`, `RANDOMKEY`): never forwarded, never about one key.
    Local {
        /// The actor, by its index on the node.
        actor: crate::ring::ThreadIndex,
        /// The question.
        query: LocalQuery,
    },
}

/// What a [`Request::Local`] asks an actor. Keys are those of one database
/// ([`crate::db`]), given and answered without the database's prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LocalQuery {
    /// How many keys of database `db` it holds that are not deleted (an expired key counts
    /// until it is deleted, as in Redis). Answered with [`Response::Count`].
    Count {
        /// The database.
        db: u8,
    },
    /// Its keys of database `db` in scan order (a fixed hash of the stored key) from position
    /// `from` on: keys are looked at until `count` have been (then the rest of the last
    /// position's), and those not deleted, not expired and matching `pattern` (a Redis glob)
    /// and `type_name` are answered, with the position to go on from ([`Response::Keys`]). A
    /// key held for a whole scan (from 0 to the end) is answered at least once.
    Scan {
        /// The database.
        db: u8,
        /// Where to start (0: the beginning).
        from: u64,
        /// How many keys to look at.
        count: usize,
        /// Only keys matching this glob.
        pattern: Option<bytes::Bytes>,
        /// Only keys of this type ([`KvsValue::type_name`], any case).
        type_name: Option<bytes::Bytes>,
    },
    /// One live key of database `db` at random, if it holds any ([`Response::Keys`] of at most
    /// one key).
    Random {
        /// The database.
        db: u8,
    },
    /// Flushes databases `dbs` as of `stamp`: every key whose every write is older than the
    /// stamp is removed, older states arriving later are dropped, and the stamp is logged and
    /// passed on to the other nodes ([`Response::Done`]). A stamp further ahead of the actor's
    /// clock than it accepts from peers is ignored.
    Flush {
        /// The databases.
        dbs: Vec<u8>,
        /// The flush's stamp (above every stamp the node's actors had handed out).
        stamp: Stamp,
    },
}

/// The key of requests about no key.
static NO_KEY: Key = bytes::Bytes::from_static(b"");

impl<V: KvsValue> Request<V> {
    /// The key the request is about.
    pub fn key(&self) -> &Key {
        match self {
            Self::Get { key }
            | Self::Put { key, .. }
            | Self::Delete { key }
            | Self::Apply { key, .. }
            | Self::Replicated { key } => key,
            Self::Local { .. } => &NO_KEY,
        }
    }
}

/// The outcome of a [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "V: KvsValue")]
pub enum Response<V: KvsValue> {
    /// A GET's result: `None` if the key is absent or deleted.
    Value(Option<V>),
    /// A PUT or DELETE was applied; the write's stamp when the actor assigned one.
    Done(Option<Stamp>),
    /// The result of an [`Request::Apply`].
    Applied(<V as KvsValue>::OpOutput),
    /// The answer to a [`Request::Replicated`]: how many other nodes acknowledged the key.
    Replicated(u32),
    /// The answer to [`LocalQuery::Count`].
    Count(u64),
    /// The answer to [`LocalQuery::Scan`] and [`LocalQuery::Random`]: keys, and where a scan
    /// goes on (`None`: this actor is done).
    Keys {
        /// The keys.
        keys: Vec<Key>,
        /// The next position, if any.
        next: Option<u64>,
    },
    /// The request was refused.
    Error(RequestError),
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The write's stamp is at or below a tombstone this actor already reclaimed; writing it
    /// could resurrect a deleted key. Retry with a current timestamp (or `stamp_here`).
    #[error(
        "write stamp {stamp:?} is not newer than reclaimed tombstones (floor {floor:?}); retry with a current timestamp"
    )]
    StaleStamp {
        /// The write's stamp.
        stamp: Stamp,
        /// The actor's reclamation floor.
        floor: Stamp,
    },
    /// The write's stamp is further ahead of the serving actor's clock than it accepts (a
    /// client clock far off, or a forged stamp meant to pin the key). Fix the clock, or let
    /// the server stamp the write.
    #[error(
        "write stamp {stamp:?} is too far ahead of this node's clock ({now} µs); check the writer's clock"
    )]
    FutureStamp {
        /// The write's stamp.
        stamp: Stamp,
        /// The actor's clock when it refused it.
        now: u64,
    },
    /// The node restarted and is catching up with its replicas (anti-entropy), and no replica
    /// it could forward the read to has been heard from yet: retry in a moment.
    #[error(
        "this node is catching up with its replicas and has not reached an up-to-date one yet; retry"
    )]
    CatchingUp,
    /// The request was forwarded too many times (the sender's view of the ring is stale).
    #[error("request forwarded {0} times without reaching an owner; refresh the ring and retry")]
    TooManyHops(u8),
    /// No owner answered in time.
    #[error("no replica answered in time; retry")]
    Timeout,
    /// The key or value is larger than the configured limit.
    #[error("{what} of {size} bytes exceeds max-{what}-bytes {limit}")]
    TooLarge {
        /// `"key"` or `"value"`.
        what: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// A write that may grow memory, refused while the node holds more than its `maxmemory`
    /// (reads, deletes and replication from peers still go through).
    #[error("command not allowed when used memory > 'maxmemory' ({used} > {limit} bytes)")]
    OutOfMemory {
        /// Bytes held.
        used: u64,
        /// The limit.
        limit: u64,
    },
    /// The value-specific operation was refused (for example, incrementing a set).
    #[error(transparent)]
    Op(#[from] OpError),
    /// The node answered with a response of another kind than the request calls for (a
    /// version mismatch or a bug; not a timeout: the node did answer).
    #[error("unexpected answer: {0}")]
    UnexpectedAnswer(String),
    /// The request never reached an actor: the client's connection refused it (another value
    /// lattice, a failing socket); the message says why.
    #[error("refused: {0}")]
    Refused(String),
}

/// A batch of merged updates from one actor to another, sent once per epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "V: KvsValue")]
pub struct Gossip<V: KvsValue> {
    /// The sender.
    pub from: ActorId,
    /// Per (sender, receiver) sequence number, for acknowledgements and retransmission.
    pub seq: u64,
    /// The sender's low-water mark: it will never send this receiver a batch numbered below
    /// it again (each was acknowledged or given up), so the receiver counts them as received
    /// (this keeps receipt tracking bounded, and lets a restarted receiver pick up the
    /// numbering where it is).
    pub low_water: u64,
    /// The current state of every key the sender changed, for keys the receiver replicates.
    pub updates: Vec<(Key, V)>,
    /// Hot-key replication overrides (a `MapLattice<Key, Max<u32>>` delta).
    pub overrides: Vec<(Key, u32)>,
}

/// A ring range's name on the wire: its end point (see [`crate::ring::Topology::range_ends`]).
pub type RangeId = u32;

/// Which of a range's digest buckets a repair asks about: one bit per bucket.
pub type BucketMask = [u64; 4];

/// Anti-entropy between two replicas of the same ring ranges (see the actor's `repair`
/// module): the initiator sends its ranges' root hashes, the other side answers which are
/// equal and its bucket hashes for the others, the initiator sends its states of the keys in
/// the differing buckets and asks for the other side's, which it merges. Every message is
/// best effort: a lost one only ends the round early, and the next round starts over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "V: KvsValue")]
pub enum Repair<V: KvsValue> {
    /// Initiator → replica: the root hash of each range they share.
    Roots {
        /// The initiator.
        from: ActorId,
        /// The initiator's round number (echoed back).
        round: u64,
        /// `(range, root)`.
        roots: Vec<(RangeId, u64)>,
        /// The flushes the initiator knows, `(database, stamp)` (see [`PeerMessage::Flush`]):
        /// a replica that missed one learns it here.
        flushes: Vec<(u8, Stamp)>,
    },
    /// Replica → initiator: the ranges found equal, and each differing range's bucket hashes.
    Buckets {
        /// The replica.
        from: ActorId,
        /// The round.
        round: u64,
        /// Ranges whose roots matched.
        equal: Vec<RangeId>,
        /// `(range, bucket hashes)` of ranges whose roots differed.
        differing: Vec<(RangeId, Vec<u64>)>,
        /// Those of the compared ranges the replica is itself still catching up on (after a
        /// restart): equal to it proves less.
        unsettled: Vec<RangeId>,
        /// The flushes the replica knows (as in [`Repair::Roots`]).
        flushes: Vec<(u8, Stamp)>,
    },
    /// Initiator → replica: its states of the keys in some of the differing buckets (whole
    /// buckets, in order, up to the byte budget), and those buckets, whose keys the replica
    /// sends back.
    Exchange {
        /// The initiator.
        from: ActorId,
        /// The round.
        round: u64,
        /// The buckets that differ, per range.
        want: Vec<(RangeId, BucketMask)>,
        /// The initiator's states of the keys in them (big states in parts).
        states: Vec<(Key, V)>,
    },
    /// Replica → initiator: its states of the keys in the wanted buckets (those the initiator
    /// did not already send alike).
    Reply {
        /// The replica.
        from: ActorId,
        /// The round.
        round: u64,
        /// The states.
        states: Vec<(Key, V)>,
        /// `false` if the repair byte budget cut the states short (the next round goes on).
        complete: bool,
        /// Big states of those buckets were left to gossip (sent whole by the gossip link, or
        /// changing right now): the buckets are not fully repaired yet.
        deferred: bool,
    },
    /// A catching-up actor asks a replica for one key's state (a read of a range it has not
    /// repaired yet).
    Fetch {
        /// The catching-up actor.
        from: ActorId,
        /// Its number for the fetch (echoed back).
        token: Token,
        /// The key.
        key: Key,
    },
    /// The replica's state of a fetched key (tombstones included; `None`: it holds none).
    Fetched {
        /// The replica.
        from: ActorId,
        /// The fetch's token.
        token: Token,
        /// The key (checked against the fetch).
        key: Key,
        /// The state.
        value: Option<V>,
        /// `false` if the state was too big for one message (the replica's gossip sends it
        /// whole in parts instead) and `value` is `None`.
        whole: bool,
        /// The replica is not catching up on the key's range itself.
        settled: bool,
    },
}

impl<V: KvsValue> Repair<V> {
    /// The actor that sent it.
    pub fn from(&self) -> ActorId {
        match self {
            Self::Roots { from, .. }
            | Self::Buckets { from, .. }
            | Self::Exchange { from, .. }
            | Self::Reply { from, .. }
            | Self::Fetch { from, .. }
            | Self::Fetched { from, .. } => *from,
        }
    }
}

/// Messages between actors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "V: KvsValue")]
pub enum PeerMessage<V: KvsValue> {
    /// An epoch's updates.
    Gossip(Gossip<V>),
    /// Receipt of a gossip batch.
    Ack {
        /// Who received it.
        from: ActorId,
        /// Which batch.
        seq: u64,
        /// The receiver's last sequence number sent *to* the batch's sender, so the sender knows
        /// which of the receiver's batches it must still see before freeing tombstones.
        sent_to_you: u64,
    },
    /// A client request that reached an actor that does not own the key.
    Forward {
        /// The actor the client is waiting on.
        origin: ActorId,
        /// The origin's token for the reply.
        token: Token,
        /// How many times it was forwarded so far.
        hops: u8,
        /// The sender's clock: the owner stamps the write after it, so a write forwarded after
        /// a flush the sender knows is newer than the flush.
        clock: u64,
        /// The request.
        request: Request<V>,
    },
    /// The answer to a [`PeerMessage::Forward`].
    ForwardReply {
        /// The answering owner's clock (past the stamp it gave the write): the origin moves its
        /// own past it, so a flush it plans later is newer than the write.
        clock: u64,
        /// The origin's token.
        token: Token,
        /// The answer.
        response: Response<V>,
    },
    /// Anti-entropy between replicas of the same ranges.
    Repair(Repair<V>),
    /// Databases flushed on the sender's node: `(database, stamp)`, every write to the
    /// database stamped before it is gone (`FLUSHDB`, `FLUSHALL`).
    Flush {
        /// The sender.
        from: ActorId,
        /// The flushes.
        flushes: Vec<(u8, Stamp)>,
    },
}

/// What the driver feeds an actor.
#[derive(Debug)]
pub enum Input<V: KvsValue> {
    /// A client request; the reply carries the same token.
    Client {
        /// The driver's routing token.
        token: Token,
        /// The request.
        request: Request<V>,
    },
    /// A message from another actor.
    Peer(PeerMessage<V>),
    /// Time passed: run the epoch work that is due (gossip, retransmission, reclamation).
    Tick,
}

/// What an actor asks its driver to do.
#[derive(Debug, PartialEq)]
pub enum Output<V: KvsValue> {
    /// Answer the client behind `token`.
    Reply {
        /// The routing token from [`Input::Client`].
        token: Token,
        /// The answer.
        response: Response<V>,
    },
    /// Send a message to another actor (best effort: it may be dropped).
    Send {
        /// The destination.
        to: ActorId,
        /// The message.
        message: PeerMessage<V>,
    },
}
