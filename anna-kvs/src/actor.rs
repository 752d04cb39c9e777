//! The actor: one worker thread's share of the store, as a sans-IO state machine.
//!
//! An [`Actor`] owns a private replica of the keys it is responsible for and never shares
//! mutable state. Everything it does is a reaction to [`Input`]s fed by a driver (the ZeroMQ
//! loop in production, a seeded simulated network in tests) at a time the driver supplies; it
//! answers with [`Output`]s for the driver to deliver. The hot path is
//! [`Actor::handle`] → `put`/`get`: one hash lookup, one lattice merge, one dirty-flag check.
//!
//! **Epoch gossip, merged at the sender.** A write marks its key dirty. At each epoch the actor
//! sends, for every dirty key, the key's *current state* (the merge of every update it has seen)
//! to the key's other replica owners, one batch per destination, and clears the marks. A key
//! written a million times in an epoch costs one entry per destination.
//!
//! **Reliable over an unreliable network.** Batches are numbered per destination and
//! acknowledged; an unacknowledged batch is sent again (with the keys' then-current states)
//! until acknowledged, so drops and partitions heal without full-state exchanges. Merges are
//! idempotent and commutative, so duplicates and reordering need no care.
//!
//! **Deletes and reclamation (paper §VII.A, made safe without ordered channels).** A DELETE is
//! a tombstone write. A replica frees a tombstoned key once every other owner has acknowledged
//! the tombstone *and* this replica has received every batch those owners sent before their
//! acknowledgement, so no older update of the key is still in flight towards it. Client writes
//! stamped at or below the newest freed tombstone are refused, so a freed key cannot be
//! resurrected by a stale write.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use lattice_core::Stamp;

use crate::message::{Gossip, Input, Output, PeerMessage, Request, RequestError, Response, Token};
use crate::ring::{ActorId, Key, NodeIndex, Topology};
use crate::small_bytes::StoreKey;
use crate::value::KvsValue;

/// The hasher of the actor's store (fast, seeded per process).
pub type StoreHasher = foldhash::fast::RandomState;

/// Tunables of an actor; [`ActorConfig::default`] matches the paper where it has a number.
#[derive(Clone, Debug)]
pub struct ActorConfig {
    /// Gossip period in microseconds (the paper's multicast epoch: 100 ms).
    pub epoch_us: u64,
    /// Resend a batch that is unacknowledged after this many epochs.
    pub retransmit_after_epochs: u64,
    /// Most keys kept for retransmission per destination; beyond it the oldest batches are
    /// given up (counted in [`ActorStats::gossip_given_up`]) so a dead peer cannot exhaust memory.
    pub max_unacked_keys_per_peer: usize,
    /// Most times a client request is forwarded between actors before it fails.
    pub max_hops: u8,
    /// Free the memory of deleted keys (on by default).
    pub reclaim_tombstones: bool,
    /// Refuse writes (from clients and from gossip) stamped more than this far ahead of this
    /// actor's clock, in µs: a write from the far future would win every last-writer-wins
    /// comparison until then, pinning its key. Default 30 s.
    pub max_clock_ahead_us: u64,
    /// Most gossip batches from one peer tracked above the last contiguous one; a batch
    /// further ahead is refused unacknowledged (the sender resends it), so the receipt
    /// bookkeeping per peer stays bounded whatever the peer sends.
    pub max_receipts_ahead: u64,
}

impl Default for ActorConfig {
    fn default() -> Self {
        Self {
            epoch_us: 100_000,
            retransmit_after_epochs: 3,
            max_unacked_keys_per_peer: 1 << 20,
            max_hops: 4,
            reclaim_tombstones: true,
            max_clock_ahead_us: 30_000_000,
            max_receipts_ahead: 4096,
        }
    }
}

/// Counters an actor keeps about its own work.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActorStats {
    /// GET requests served.
    pub gets: u64,
    /// PUT requests served.
    pub puts: u64,
    /// DELETE requests served.
    pub deletes: u64,
    /// Requests sent on to an owner because this actor does not replicate the key.
    pub forwarded: u64,
    /// Requests refused (stale stamps, too many hops).
    pub refused: u64,
    /// Incoming gossip entries merged into the store.
    pub merges: u64,
    /// Incoming gossip entries that changed the store.
    pub merges_changed: u64,
    /// Gossip batches sent (first sends and resends).
    pub gossip_out: u64,
    /// Gossip entries sent.
    pub gossip_entries_out: u64,
    /// Gossip batches received.
    pub gossip_in: u64,
    /// Gossip entries received.
    pub gossip_entries_in: u64,
    /// Batches sent again after no acknowledgement.
    pub gossip_resent: u64,
    /// Batches given up on (retransmission buffer full, e.g. a long-dead peer).
    pub gossip_given_up: u64,
    /// Deleted keys whose memory was freed.
    pub reclaimed: u64,
    /// Keys currently stored (tombstones included).
    pub keys: u64,
    /// Writes refused for a stamp beyond [`ActorConfig::max_clock_ahead_us`] (client writes
    /// and gossip entries).
    pub future_stamps_refused: u64,
    /// Gossip batches refused unacknowledged for being too far ahead of the last contiguous
    /// one (see [`ActorConfig::max_receipts_ahead`]).
    pub gossip_refused_ahead: u64,
    /// Peer messages dropped because their sender is not an actor of the cluster.
    pub unknown_senders: u64,
}

/// What keeps an actor from being quiet (see [`Actor::pending_work`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingWork {
    /// Keys waiting for the next epoch's gossip.
    pub changeset: Vec<Key>,
    /// Hot-key overrides waiting to be gossiped.
    pub overrides: usize,
    /// Unacknowledged batch numbers, per destination.
    pub unacked: Vec<(ActorId, Vec<u64>)>,
}

impl PendingWork {
    /// `true` if nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.changeset.is_empty() && self.overrides == 0 && self.unacked.is_empty()
    }
}

/// A stored value and whether it changed since the last epoch.
#[derive(Debug)]
struct Slot<V> {
    value: V,
    /// Set by a write, cleared when the epoch's gossip takes the key; the changeset holds
    /// exactly the keys whose flag is set.
    dirty: bool,
}

/// What this actor knows about its traffic with one other actor.
#[derive(Debug, Default)]
struct PeerLink {
    /// Sequence number of the next batch to it.
    next_seq: u64,
    /// Batches sent and not yet acknowledged: seq → (keys, epoch of the last send).
    unacked: BTreeMap<u64, (Vec<Key>, u64)>,
    /// Keys held in `unacked`.
    unacked_keys: usize,
    /// Highest seq such that every batch from it up to there has arrived.
    received_contiguous: u64,
    /// Batches from it that arrived above `received_contiguous`.
    received_ahead: BTreeSet<u64>,
}

/// What a receiver makes of a gossip batch's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Receipt {
    /// Not seen before: apply it.
    New,
    /// Seen before (or below the sender's low-water mark): acknowledge, do not apply.
    Duplicate,
    /// Beyond the receipt window: neither acknowledge nor apply (the sender resends it).
    TooFarAhead,
}

impl PeerLink {
    /// Records batch `seq` as received, within `window` batches above the contiguous ones.
    fn record_received(&mut self, seq: u64, window: u64) -> Receipt {
        if seq <= self.received_contiguous || self.received_ahead.contains(&seq) {
            return Receipt::Duplicate;
        }
        if seq - self.received_contiguous > window {
            return Receipt::TooFarAhead;
        }
        self.received_ahead.insert(seq);
        while self.received_ahead.remove(&(self.received_contiguous + 1)) {
            self.received_contiguous += 1;
        }
        Receipt::New
    }

    /// The sender will never send a batch below `low_water` again (each was acknowledged, or
    /// given up): count everything below it as received.
    fn advance_to(&mut self, low_water: u64) {
        let below = low_water.saturating_sub(1);
        if below <= self.received_contiguous {
            return;
        }
        self.received_contiguous = below;
        self.received_ahead = self.received_ahead.split_off(&(below + 1));
        while self.received_ahead.remove(&(self.received_contiguous + 1)) {
            self.received_contiguous += 1;
        }
    }

    /// The lowest batch this side may still send again: the oldest unacknowledged one, or
    /// the next one.
    fn low_water(&self) -> u64 {
        self.unacked.first_key_value().map_or(self.next_seq + 1, |(&seq, _)| seq)
    }
}

/// A tombstone waiting until it is safe to free.
#[derive(Debug)]
struct PendingTombstone {
    key: Key,
    stamp: Stamp,
    /// Per other owner: the batch that carried the tombstone, and once acknowledged, the seq of
    /// that owner's own batches this actor must have received.
    peers: Vec<(ActorId, u64, Option<u64>)>,
}

/// One actor: a private replica of its keys, its changeset, and its gossip state.
#[derive(Debug)]
pub struct Actor<V: KvsValue> {
    id: ActorId,
    topology: Arc<Topology>,
    config: ActorConfig,
    /// The replica: every key this actor holds.
    store: HashMap<StoreKey, Slot<V>, StoreHasher>,
    /// Keys written since the last epoch (those with `dirty` set).
    changeset: Vec<Key>,
    /// Hot-key replication overrides: key → actors per node (only grows; gossiped).
    overrides: HashMap<Key, u32, StoreHasher>,
    /// Overrides learned or set since the last epoch.
    override_changes: Vec<(Key, u32)>,
    /// Per other actor: sequence numbers, retransmission buffer, receipt tracking.
    links: BTreeMap<ActorId, PeerLink>,
    /// Forwarded requests already executed here, so a duplicated forward is not executed
    /// twice (a late duplicate DELETE would otherwise delete a newer write): id → epoch seen.
    executed_forwards: HashMap<(ActorId, Token), u64, StoreHasher>,
    /// Forwarded client requests awaiting a reply: our token → the client's token.
    forwarded: HashMap<Token, Token>,
    next_forward_token: Token,
    /// Tombstones not yet freed.
    tombstones: Vec<PendingTombstone>,
    /// Newest stamp of a freed tombstone: client writes must be newer.
    floor: Option<Stamp>,
    /// Every key has exactly one replica cluster-wide (this one): nothing to gossip.
    solo: bool,
    /// Keys freed in the last few epochs, with their tombstone's stamp: late echoes of the same
    /// tombstone from other replicas are ignored instead of re-creating the key (which would
    /// make two replicas free and re-learn it from each other forever).
    recently_freed: HashMap<Key, (Stamp, u64), StoreHasher>,
    /// Last stamp time this actor handed out (keeps its stamps strictly increasing).
    last_stamp_time: u64,
    /// When the next epoch is due, in driver time (µs).
    next_epoch_at: u64,
    /// Epochs run so far.
    epoch: u64,
    /// Owners of the key being handled, reused to avoid an allocation per request.
    owners_buf: Vec<ActorId>,
    stats: ActorStats,
}

impl<V: KvsValue> Actor<V> {
    /// A new, empty actor `id` in `topology`, starting its epochs at time `now` (µs).
    pub fn new(id: ActorId, topology: Arc<Topology>, config: ActorConfig, now: u64) -> Self {
        let next_epoch_at = now + config.epoch_us;
        let solo = topology.max_replicas() == 1;
        Self {
            solo,
            id,
            topology,
            config,
            store: HashMap::with_hasher(StoreHasher::default()),
            changeset: Vec::new(),
            overrides: HashMap::with_hasher(StoreHasher::default()),
            override_changes: Vec::new(),
            links: BTreeMap::new(),
            forwarded: HashMap::new(),
            executed_forwards: HashMap::with_hasher(StoreHasher::default()),
            next_forward_token: 0,
            tombstones: Vec::new(),
            floor: None,
            recently_freed: HashMap::with_hasher(StoreHasher::default()),
            last_stamp_time: 0,
            next_epoch_at,
            epoch: 0,
            owners_buf: Vec::new(),
            stats: ActorStats::default(),
        }
    }

    /// This actor's id.
    pub fn id(&self) -> ActorId {
        self.id
    }

    /// The topology it routes with.
    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    /// When the next epoch is due (µs, driver time): the driver should feed [`Input::Tick`] then.
    pub fn next_epoch_at(&self) -> u64 {
        self.next_epoch_at
    }

    /// Its counters.
    pub fn stats(&self) -> ActorStats {
        let mut stats = self.stats.clone();
        stats.keys = self.store.len() as u64;
        stats
    }

    /// The local state of `key`, tombstones included (for tests and inspection).
    pub fn peek(&self, key: &[u8]) -> Option<&V> {
        self.store.get(key).map(|slot| &slot.value)
    }

    /// Every key held (tombstones included), in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.store.keys().map(StoreKey::as_slice)
    }

    /// The hot-key override for `key`, if any.
    pub fn override_for(&self, key: &[u8]) -> Option<u32> {
        self.overrides.get(key).copied()
    }

    /// `true` if nothing is waiting to be gossiped, resent or acknowledged.
    pub fn is_quiet(&self) -> bool {
        self.changeset.is_empty()
            && self.override_changes.is_empty()
            && self.links.values().all(|l| l.unacked.is_empty())
    }

    /// Why the actor is not quiet (for diagnostics): changeset size, override changes, and the
    /// unacknowledged batch numbers per destination.
    pub fn pending_work(&self) -> PendingWork {
        let unacked = self
            .links
            .iter()
            .filter(|(_, l)| !l.unacked.is_empty())
            .map(|(id, l)| (*id, l.unacked.keys().copied().collect()))
            .collect();
        PendingWork {
            changeset: self.changeset.clone(),
            overrides: self.override_changes.len(),
            unacked,
        }
    }

    /// Raises the replication of a hot key to `actors_per_node` on each owning node. The
    /// override is a lattice (it only grows) and spreads with gossip.
    pub fn set_override(&mut self, key: Key, actors_per_node: u32) {
        self.merge_override(key, actors_per_node);
    }

    fn merge_override(&mut self, key: Key, actors_per_node: u32) -> bool {
        let slot = self.overrides.entry(key.clone()).or_insert(0);
        if actors_per_node > *slot {
            *slot = actors_per_node;
            self.override_changes.push((key, actors_per_node));
            true
        } else {
            false
        }
    }

    /// Feeds one input at time `now` (µs); outputs are appended to `out`.
    pub fn handle(&mut self, now: u64, input: Input<V>, out: &mut Vec<Output<V>>) {
        match input {
            Input::Client { token, request } => {
                if let Some(response) = self.serve(now, token, request, out) {
                    out.push(Output::Reply { token, response });
                }
            }
            Input::Peer(message) => self.peer(now, message, out),
            Input::Tick => {
                if now >= self.next_epoch_at {
                    self.epoch_work(out);
                    self.epoch += 1;
                    // Skip epochs missed while busy instead of running them back to back.
                    let period = self.config.epoch_us.max(1);
                    let behind = (now - self.next_epoch_at) / period;
                    self.next_epoch_at += (behind + 1) * period;
                }
            }
        }
    }

    /// Serves a client request: the answer if this actor owns the key (the hot path: one
    /// lookup, one merge, no output), otherwise `None` after queueing a forward to an owner in
    /// `out` (the answer then arrives as an [`Output::Reply`] with `token`).
    #[inline]
    pub fn serve(
        &mut self,
        now: u64,
        token: Token,
        request: Request<V>,
        out: &mut Vec<Output<V>>,
    ) -> Option<Response<V>> {
        // The hot read: one table lookup answers both "do I own it" and "what is it".
        if let Request::Get { key } = &request
            && let Some(response) = self.get_held(key)
        {
            return Some(response);
        }
        if !self.owns(request.key()) {
            return self.client(now, token, request, 0, None, out);
        }
        Some(self.execute(now, request))
    }

    /// Executes a request for a key this actor owns.
    #[inline]
    fn execute(&mut self, now: u64, request: Request<V>) -> Response<V> {
        match request {
            Request::Put { key, value, stamp_here } => self.put(now, key, value, stamp_here),
            Request::Get { key } => self.get(&key),
            Request::Delete { key } => self.delete(now, key),
            Request::Apply { key, op } => self.apply(now, key, op),
        }
    }

    /// A stamp for a write made now: strictly increasing per actor, newer than any freed
    /// tombstone, unique cluster-wide through the writer id.
    #[inline]
    pub fn next_stamp(&mut self, now: u64) -> Stamp {
        let floor = self.floor.map_or(0, |f| f.time);
        let time = now.max(self.last_stamp_time + 1).max(floor + 1);
        self.last_stamp_time = time;
        Stamp::new(time, self.id.writer_id())
    }

    #[inline]
    fn owns(&mut self, key: &[u8]) -> bool {
        // A stored key is owned: keys are only stored by their owners, and ownership only
        // grows (hot-key overrides add replicas, never remove them), so the ring walk is only
        // needed for keys this actor does not hold yet.
        if self.topology.is_full() || self.store.contains_key(key) {
            return true;
        }
        self.owns_slow(key)
    }

    fn owns_slow(&mut self, key: &[u8]) -> bool {
        let over = if self.overrides.is_empty() { None } else { self.overrides.get(key).copied() };
        let mut owners = std::mem::take(&mut self.owners_buf);
        self.topology.owners_into(key, over, &mut owners);
        let mine = owners.contains(&self.id);
        self.owners_buf = owners;
        mine
    }

    /// Serves a client request, or forwards it. `Some` is the answer to give now.
    fn client(
        &mut self,
        now: u64,
        token: Token,
        request: Request<V>,
        hops: u8,
        origin: Option<ActorId>,
        out: &mut Vec<Output<V>>,
    ) -> Option<Response<V>> {
        if !self.owns(request.key()) {
            if hops >= self.config.max_hops {
                self.stats.refused += 1;
                return Some(Response::Error(RequestError::TooManyHops(hops)));
            }
            self.stats.forwarded += 1;
            let owner = self.owners_buf[(token as usize) % self.owners_buf.len()];
            let (origin, token) = match origin {
                Some(origin) => (origin, token),
                None => {
                    let ours = self.next_forward_token;
                    self.next_forward_token += 1;
                    self.forwarded.insert(ours, token);
                    (self.id, ours)
                }
            };
            out.push(Output::Send {
                to: owner,
                message: PeerMessage::Forward { origin, token, hops: hops + 1, request },
            });
            return None;
        }
        Some(self.execute(now, request))
    }

    fn get(&mut self, key: &[u8]) -> Response<V> {
        self.get_held(key).unwrap_or_else(|| {
            self.stats.gets += 1;
            Response::Value(None)
        })
    }

    /// A GET of a key this actor holds (`None` if it holds no state for it).
    #[inline]
    fn get_held(&mut self, key: &[u8]) -> Option<Response<V>> {
        let slot = self.store.get(key)?;
        self.stats.gets += 1;
        Some(Response::Value((!slot.value.is_deleted()).then(|| slot.value.clone())))
    }

    #[inline]
    fn put(&mut self, now: u64, key: Key, mut value: V, stamp_here: bool) -> Response<V> {
        let assigned = if stamp_here {
            let stamp = self.next_stamp(now);
            value.restamp(stamp);
            Some(stamp)
        } else {
            None
        };
        if let (Some(floor), Some(stamp)) = (self.floor, value.write_stamp())
            && stamp <= floor
        {
            self.stats.refused += 1;
            return Response::Error(RequestError::StaleStamp { stamp, floor });
        }
        if let Some(stamp) = value.newest_stamp()
            && stamp.time > now.saturating_add(self.config.max_clock_ahead_us)
        {
            self.stats.refused += 1;
            self.stats.future_stamps_refused += 1;
            return Response::Error(RequestError::FutureStamp { stamp, now });
        }
        self.stats.puts += 1;
        self.merge_local(key, value);
        Response::Done(assigned)
    }

    /// Merges a client's write into the replica and marks the key for the next epoch.
    #[inline]
    fn merge_local(&mut self, key: Key, value: V) {
        let gossiped = self.gossiped();
        match self.store.get_mut(&key[..]) {
            Some(slot) => {
                if slot.value.merge(value)
                    && !slot.dirty
                    && (gossiped || slot.value.tombstone_stamp().is_some())
                {
                    slot.dirty = true;
                    self.changeset.push(key);
                }
            }
            None => {
                if value.is_bottom() {
                    return;
                }
                let dirty = gossiped || value.tombstone_stamp().is_some();
                self.store.insert(StoreKey::new(&key), Slot { value, dirty });
                if dirty {
                    self.changeset.push(key);
                }
            }
        }
    }

    /// `false` when every key has this actor as its only replica (replication 1 on one node,
    /// no hot-key overrides): writes then need no changeset at all, except tombstones, which
    /// the epoch frees.
    #[inline]
    fn gossiped(&self) -> bool {
        !self.solo || !self.overrides.is_empty()
    }

    fn delete(&mut self, now: u64, key: Key) -> Response<V> {
        self.stats.deletes += 1;
        let stamp = self.next_stamp(now);
        let writer = self.id.writer_id();
        let _ = self.update(key, |value| Ok::<_, ()>((value.delete(stamp, writer), ())));
        Response::Done(Some(stamp))
    }

    fn apply(&mut self, now: u64, key: Key, op: V::Op) -> Response<V> {
        let stamp = self.next_stamp(now);
        let writer = self.id.writer_id();
        match self.update(key, |value| value.apply(op, stamp, writer)) {
            Ok((changed, output)) => {
                self.stats.puts += u64::from(changed);
                Response::Applied(output)
            }
            Err(message) => Response::Error(RequestError::Op(message)),
        }
    }

    /// Changes the state of `key` in place with `change` (starting from ⊥ for an absent key,
    /// which is stored only if it moved above ⊥), and marks the key for the next epoch if it
    /// changed. A refusal leaves the store untouched.
    fn update<T, E>(
        &mut self,
        key: Key,
        change: impl FnOnce(&mut V) -> Result<(bool, T), E>,
    ) -> Result<(bool, T), E> {
        let gossiped = self.gossiped();
        match self.store.get_mut(&key[..]) {
            Some(slot) => {
                let (changed, output) = change(&mut slot.value)?;
                if changed && !slot.dirty && (gossiped || slot.value.tombstone_stamp().is_some()) {
                    slot.dirty = true;
                    self.changeset.push(key);
                }
                Ok((changed, output))
            }
            None => {
                let mut value = V::bottom();
                let (changed, output) = change(&mut value)?;
                if changed && !value.is_bottom() {
                    let dirty = gossiped || value.tombstone_stamp().is_some();
                    self.store.insert(StoreKey::new(&key), Slot { value, dirty });
                    if dirty {
                        self.changeset.push(key);
                    }
                }
                Ok((changed, output))
            }
        }
    }

    fn peer(&mut self, now: u64, message: PeerMessage<V>, out: &mut Vec<Output<V>>) {
        match message {
            PeerMessage::Gossip(gossip) => self.receive_gossip(now, gossip, out),
            PeerMessage::Ack { from, seq, sent_to_you } => self.receive_ack(from, seq, sent_to_you),
            PeerMessage::Forward { origin, token, hops, request } => {
                if self.executed_forwards.insert((origin, token), self.epoch).is_some() {
                    return;
                }
                if let Some(response) = self.client(now, token, request, hops, Some(origin), out) {
                    if origin == self.id {
                        self.finish_forward(token, response, out);
                    } else {
                        out.push(Output::Send {
                            to: origin,
                            message: PeerMessage::ForwardReply { token, response },
                        });
                    }
                }
            }
            PeerMessage::ForwardReply { token, response } => {
                self.finish_forward(token, response, out)
            }
        }
    }

    fn finish_forward(&mut self, token: Token, response: Response<V>, out: &mut Vec<Output<V>>) {
        // A reply to a forward we gave up on (or a duplicate) has no client left: drop it.
        if let Some(client) = self.forwarded.remove(&token) {
            out.push(Output::Reply { token: client, response });
        }
    }

    /// Whether `actor` is another actor of the cluster (only those get per-peer state).
    fn is_peer(&self, actor: ActorId) -> bool {
        actor != self.id
            && usize::from(actor.node) < self.topology.nodes().len()
            && actor.thread < self.topology.threads(actor.node)
    }

    /// Forgets which batches arrived from the actors of `node`, which restarted: its new life
    /// numbers its batches from 1 again (each batch's low-water mark then moves the receipt
    /// window to where its numbering is).
    pub fn forget_receipts_from(&mut self, node: NodeIndex) {
        for (peer, link) in &mut self.links {
            if peer.node == node {
                link.received_contiguous = 0;
                link.received_ahead.clear();
            }
        }
    }

    fn receive_gossip(&mut self, now: u64, gossip: Gossip<V>, out: &mut Vec<Output<V>>) {
        let Gossip { from, seq, low_water, updates, overrides } = gossip;
        if !self.is_peer(from) {
            self.stats.unknown_senders += 1;
            return;
        }
        let window = self.config.max_receipts_ahead.max(1);
        let link = self.links.entry(from).or_default();
        link.advance_to(low_water);
        let receipt = link.record_received(seq, window);
        if receipt == Receipt::TooFarAhead {
            self.stats.gossip_refused_ahead += 1;
            return;
        }
        self.stats.gossip_in += 1;
        self.stats.gossip_entries_in += updates.len() as u64;
        let first_time = receipt == Receipt::New;
        let sent_to_you = link.next_seq;
        // Always acknowledge (the first ack may have been lost)...
        out.push(Output::Send {
            to: from,
            message: PeerMessage::Ack { from: self.id, seq, sent_to_you },
        });
        // ...but apply a batch once: a late duplicate may predate a tombstone freed since.
        // (A resend reuses its seq; whatever changed after the first send went out in a newer
        // batch, because every change marks its key for the next epoch.)
        if !first_time {
            return;
        }
        let horizon = now.saturating_add(self.config.max_clock_ahead_us);
        for (key, value) in updates {
            if value.newest_stamp().is_some_and(|stamp| stamp.time > horizon) {
                // Acknowledged like the rest of the batch, but never applied: it would pin
                // the key until its time comes. Counted (and visible in INFO).
                self.stats.future_stamps_refused += 1;
                continue;
            }
            self.stats.merges += 1;
            let changed_to_tombstone = match self.store.get_mut(&key[..]) {
                Some(slot) => {
                    let changed = slot.value.merge(value);
                    self.stats.merges_changed += u64::from(changed);
                    // Tombstones are passed on by every replica that learns of them, so each
                    // replica can track the acknowledgements it needs before freeing the key.
                    changed
                        && slot.value.tombstone_stamp().is_some()
                        && !std::mem::replace(&mut slot.dirty, true)
                }
                None => {
                    let echo = match (value.tombstone_stamp(), self.recently_freed.get(&key)) {
                        (Some(incoming), Some(&(freed, _))) => incoming <= freed,
                        _ => false,
                    };
                    if value.is_bottom() || echo {
                        false
                    } else {
                        self.stats.merges_changed += 1;
                        let tombstone = value.tombstone_stamp().is_some();
                        self.store.insert(StoreKey::new(&key), Slot { value, dirty: tombstone });
                        tombstone
                    }
                }
            };
            if changed_to_tombstone {
                self.changeset.push(key);
            }
        }
        for (key, level) in overrides {
            self.merge_override(key, level);
        }
    }

    fn receive_ack(&mut self, from: ActorId, seq: u64, sent_to_you: u64) {
        let Some(link) = self.links.get_mut(&from) else {
            self.stats.unknown_senders += u64::from(!self.is_peer(from));
            return;
        };
        if let Some((keys, _)) = link.unacked.remove(&seq) {
            link.unacked_keys -= keys.len();
        }
        for pending in &mut self.tombstones {
            for (peer, batch, need) in &mut pending.peers {
                if *peer == from && *batch == seq && need.is_none() {
                    *need = Some(sent_to_you);
                }
            }
        }
    }

    /// The epoch: gossip the changeset, resend what is overdue, free what is safe to free.
    fn epoch_work(&mut self, out: &mut Vec<Output<V>>) {
        let mut batches: BTreeMap<ActorId, Vec<(Key, V)>> = BTreeMap::new();
        let mut new_tombstones = Vec::new();
        let changeset = std::mem::take(&mut self.changeset);
        let mut owners = std::mem::take(&mut self.owners_buf);
        for key in &changeset {
            let Some(slot) = self.store.get_mut(&key[..]) else { continue };
            slot.dirty = false;
            let over = self.overrides.get(key).copied();
            self.topology.owners_into(key, over, &mut owners);
            for &owner in &owners {
                if owner != self.id {
                    batches.entry(owner).or_default().push((key.clone(), slot.value.clone()));
                }
            }
            if let Some(stamp) = slot.value.tombstone_stamp() {
                let peers: Vec<ActorId> =
                    owners.iter().copied().filter(|&o| o != self.id).collect();
                new_tombstones.push((key.clone(), stamp, peers));
            }
        }
        self.owners_buf = owners;
        self.changeset = changeset;
        self.changeset.clear();

        // Overrides go to every actor: any of them may route a request for the key.
        let override_changes = std::mem::take(&mut self.override_changes);
        if !override_changes.is_empty() {
            let everyone: Vec<ActorId> =
                self.topology.all_actors().filter(|&a| a != self.id).collect();
            for actor in everyone {
                batches.entry(actor).or_default();
            }
        }

        let mut sent_seq: HashMap<ActorId, u64> = HashMap::new();
        for (to, updates) in batches {
            let link = self.links.entry(to).or_default();
            link.next_seq += 1;
            let seq = link.next_seq;
            let keys: Vec<Key> = updates.iter().map(|(k, _)| k.clone()).collect();
            link.unacked_keys += keys.len();
            link.unacked.insert(seq, (keys, self.epoch));
            while link.unacked_keys > self.config.max_unacked_keys_per_peer {
                let Some((_, (dropped, _))) = link.unacked.pop_first() else { break };
                link.unacked_keys -= dropped.len();
                self.stats.gossip_given_up += 1;
            }
            sent_seq.insert(to, seq);
            let gossip = Gossip {
                from: self.id,
                seq,
                low_water: link.low_water(),
                updates,
                overrides: override_changes.clone(),
            };
            send_gossip(&mut self.stats, out, to, gossip);
        }

        if self.config.reclaim_tombstones {
            for (key, stamp, peers) in new_tombstones {
                let peers = peers
                    .into_iter()
                    .map(|p| (p, sent_seq.get(&p).copied().unwrap_or(0), None))
                    .collect();
                self.tombstones.retain(|t| t.key != key);
                self.tombstones.push(PendingTombstone { key, stamp, peers });
            }
        }

        self.resend_overdue(out);
        if self.config.reclaim_tombstones {
            self.reclaim();
        }
    }

    fn resend_overdue(&mut self, out: &mut Vec<Output<V>>) {
        let epoch = self.epoch;
        let wait = self.config.retransmit_after_epochs.max(1);
        for (&to, link) in &mut self.links {
            let low_water = link.low_water();
            for (&seq, (keys, sent_epoch)) in link.unacked.iter_mut() {
                if epoch < *sent_epoch + wait {
                    continue;
                }
                *sent_epoch = epoch;
                // The keys' current states: at least what was first sent, often more.
                let updates: Vec<(Key, V)> = keys
                    .iter()
                    .filter_map(|k| {
                        self.store.get(&k[..]).map(|slot| (k.clone(), slot.value.clone()))
                    })
                    .collect();
                self.stats.gossip_resent += 1;
                let gossip =
                    Gossip { from: self.id, seq, low_water, updates, overrides: Vec::new() };
                send_gossip(&mut self.stats, out, to, gossip);
            }
        }
    }

    fn reclaim(&mut self) {
        let horizon = self.config.retransmit_after_epochs.max(1) * 10;
        let epoch = self.epoch;
        self.recently_freed.retain(|_, &mut (_, at)| epoch < at + horizon);
        self.executed_forwards.retain(|_, &mut at| epoch < at + horizon);
        let links = &self.links;
        let store = &mut self.store;
        let recently_freed = &mut self.recently_freed;
        let mut floor = self.floor;
        let mut reclaimed = 0;
        self.tombstones.retain(|pending| {
            let safe = pending.peers.iter().all(|&(peer, _, need)| match need {
                Some(need) => links.get(&peer).is_some_and(|l| l.received_contiguous >= need),
                None => false,
            });
            if !safe {
                return true;
            }
            if let Some(slot) = store.get(&pending.key[..])
                && !slot.dirty
                && slot.value.tombstone_stamp() == Some(pending.stamp)
            {
                store.remove(&pending.key[..]);
                recently_freed.insert(pending.key.clone(), (pending.stamp, epoch));
                floor = floor.max(Some(pending.stamp));
                reclaimed += 1;
            }
            false
        });
        self.floor = floor;
        self.stats.reclaimed += reclaimed;
    }

    /// The reclamation floor: client writes stamped at or below it are refused.
    pub fn floor(&self) -> Option<Stamp> {
        self.floor
    }
}

/// Queues a gossip batch for `to` and counts it.
fn send_gossip<V: KvsValue>(
    stats: &mut ActorStats,
    out: &mut Vec<Output<V>>,
    to: ActorId,
    gossip: Gossip<V>,
) {
    stats.gossip_out += 1;
    stats.gossip_entries_out += gossip.updates.len() as u64;
    out.push(Output::Send { to, message: PeerMessage::Gossip(gossip) });
}
