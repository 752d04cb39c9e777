//! The actor: one worker thread's share of the store, as a sans-IO state machine.
//!
//! An [`Actor`] owns a private replica of the keys it is responsible for and never shares
//! mutable state. Everything it does is a reaction to [`Input`]s fed by a driver (the ZeroMQ
//! loop in production, a seeded simulated network in tests) at a time the driver supplies; it
//! answers with [`Output`]s for the driver to deliver. The hot path is
//! [`Actor::handle`] → `put`/`get`: one hash lookup, one lattice merge, one dirty-flag check.
//! That request path is this file, top to bottom; the gossip half (epochs, acknowledgements,
//! receipts from peers, reclamation) is `actor/gossip.rs`.
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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use lattice_core::Stamp;

use crate::message::{Input, Output, PeerMessage, Repair, Request, RequestError, Response, Token};
use crate::ring::{ActorId, Key, Topology};
use crate::small_bytes::StoreKey;
use crate::value::{Change, KvsValue};

pub mod expiry;
mod flush;
mod gossip;
pub mod keys;
mod repair;

pub use gossip::{GOSSIP_BATCH_BYTES, PART_BYTES};
use gossip::{PeerLink, PendingHandoff, PendingTombstone};
pub use repair::{BUCKETS, digest};

/// The hasher of the actor's store (fast, seeded per process).
pub type StoreHasher = foldhash::fast::RandomState;

/// States at least this heavy ([`KvsValue::weight`]) are gossiped and logged by deltas: what
/// each change added or removed, not the whole state.
pub const DELTA_MIN_WEIGHT: usize = 64;

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
    /// Most bytes of deltas and parts of big states kept for retransmission per destination
    /// (the oldest batches beyond it are given up the same way; a peer that lost a delta
    /// gets the key's whole state again once it keeps up). A batch is given up only after its
    /// retransmission wait, so a big state's parts always go out together.
    pub max_unacked_bytes_per_peer: usize,
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
    /// The writer id this actor stamps its writes with and keys its counter slots and set
    /// dots by; `None` uses [`ActorId::writer_id`]. A node derives it from its id and
    /// incarnation, so no two lives of a node write under the same id.
    pub writer: Option<u64>,
    /// Mean time between anti-entropy rounds, in µs (each drawn ±50%; 0 turns repair off). A
    /// round compares the root hashes of the ranges this actor shares with one other replica
    /// and exchanges only the keys of differing buckets (see the `repair` module).
    pub repair_interval_us: u64,
    /// Most bytes of states one repair message carries (the rest follows in the next round,
    /// which comes at once): with one round in flight per actor, this caps repair traffic.
    pub repair_bytes_per_round: usize,
    /// Start by catching up (a restarted node, which may have missed writes or lost its
    /// data): until a repair round has compared a shared range with a replica, a read of it
    /// first fetches the key's state from one and merges it (see the `repair` module).
    pub catch_up: bool,
    /// How long catching up may hold reads of ranges no replica has repaired (every other
    /// replica down), in µs; then the actor serves them from what it has.
    pub catch_up_timeout_us: u64,
}

impl Default for ActorConfig {
    fn default() -> Self {
        Self {
            epoch_us: 100_000,
            retransmit_after_epochs: 3,
            max_unacked_keys_per_peer: 1 << 20,
            max_unacked_bytes_per_peer: 64 << 20,
            max_hops: 4,
            reclaim_tombstones: true,
            max_clock_ahead_us: 30_000_000,
            max_receipts_ahead: 4096,
            writer: None,
            repair_interval_us: 10_000_000,
            repair_bytes_per_round: 4 << 20,
            catch_up: false,
            catch_up_timeout_us: 60_000_000,
        }
    }
}

/// Counters an actor keeps about its own work.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActorStats {
    /// Keys deleted because their deadline passed (Redis's `expired_keys`).
    pub expired_keys: u64,
    /// Flushes applied (`FLUSHDB`, `FLUSHALL`, here or learned from another node).
    pub flushes: u64,
    /// Live keys held, per database ([`crate::db`]).
    pub keys_by_db: [u64; crate::db::DATABASES as usize],
    /// Keys held with a deadline, per database.
    pub deadlines_by_db: [u64; crate::db::DATABASES as usize],
    /// Expired keys by how late after their deadline they were deleted: within 1 ms, 10 ms,
    /// 100 ms, 1 s, and later (see [`expiry::LATENESS_BOUNDS_US`]).
    pub expire_lateness: [u64; 5],
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
    /// Gossip entries sent as deltas (what changed in a big state since the last epoch)
    /// instead of whole states.
    pub gossip_deltas_out: u64,
    /// Parts sent of states or deltas too big for one piece (see [`KvsValue::split`]).
    pub gossip_parts_out: u64,
    /// Whole states of big keys sent again to a peer that may have lost some of their deltas.
    pub gossip_whole_repairs: u64,
    /// Batches that could not be sent at all (past the message limit), given up.
    pub gossip_undeliverable: u64,
    /// Deleted keys whose memory was freed.
    pub reclaimed: u64,
    /// Keys currently stored that are not deleted.
    pub keys: u64,
    /// Tombstones currently stored (deleted keys waiting to be freed, or kept).
    pub tombstones: u64,
    /// Writes refused for a stamp beyond [`ActorConfig::max_clock_ahead_us`] (client writes
    /// and gossip entries).
    pub future_stamps_refused: u64,
    /// Gossip batches refused unacknowledged for being too far ahead of the last contiguous
    /// one (see [`ActorConfig::max_receipts_ahead`]).
    pub gossip_refused_ahead: u64,
    /// Peer messages dropped because their sender is not an actor of the cluster.
    pub unknown_senders: u64,
    /// Anti-entropy rounds started.
    pub repair_rounds: u64,
    /// Ranges compared at another replica's request.
    pub repair_ranges_compared: u64,
    /// ... of which differed.
    pub repair_ranges_differing: u64,
    /// States (keys, or parts of big ones) sent by repair.
    pub repair_keys_out: u64,
    /// States received by repair.
    pub repair_keys_in: u64,
    /// ... that changed the store.
    pub repair_keys_changed: u64,
    /// Bytes repair sent: encoded states plus hashes.
    pub repair_bytes_out: u64,
    /// Rounds abandoned for want of an answer.
    pub repair_timeouts: u64,
    /// Reads forwarded to another replica while their range was catching up.
    pub catch_up_forwards: u64,
    /// Ranges not repaired yet since a restart.
    pub ranges_unrepaired: u64,
    /// Catch-ups that timed out with ranges no replica repaired.
    pub catch_up_expired: u64,
    /// Keys this actor held but no longer owns (the ring changed), dropped once their
    /// owners acknowledged them.
    pub handed_off: u64,
    /// Big keys left out of a repair exchange because they changed recently (their deltas
    /// are in flight).
    pub repair_hot_skipped: u64,
    /// Big keys a repair exchange found different and handed to the gossip link, which
    /// sends them whole, in parts.
    pub repair_big_to_gossip: u64,
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
    /// The epoch (plus one; 0: never) whose gossip last took the key to its other owners:
    /// what [`Actor::replicated`] asks their acknowledgements about.
    shipped: u32,
    /// Changed by a peer since its digest was computed (and queued for the next refresh).
    stale: bool,
    /// Its digest as counted in its range's bucket (see the `repair` module).
    digest: u64,
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
    /// For changeset keys whose every change since the last epoch had a delta (changes to big
    /// states): the join of those deltas, gossiped instead of the whole state.
    deltas: HashMap<Key, V, StoreHasher>,
    /// Hot-key replication overrides: key → actors per node (only grows; gossiped).
    overrides: HashMap<Key, u32, StoreHasher>,
    /// Overrides learned or set since the last epoch.
    override_changes: Vec<(Key, u32)>,
    /// Per other actor: sequence numbers, retransmission buffer, receipt tracking.
    links: BTreeMap<ActorId, PeerLink<V>>,
    /// Forwarded requests already executed here, so a duplicated forward is not executed
    /// twice (a late duplicate DELETE would otherwise delete a newer write): id → epoch seen.
    executed_forwards: HashMap<(ActorId, Token), u64, StoreHasher>,
    /// Forwarded client requests awaiting a reply: our token → the client's token.
    forwarded: HashMap<Token, Token>,
    next_forward_token: Token,
    /// Tombstones not yet freed.
    tombstones: Vec<PendingTombstone>,
    /// Keys no longer owned (the ring changed), sent to their owners and not yet acknowledged.
    handoffs: Vec<PendingHandoff>,
    /// Some held keys may not be owned any more (a ring change): ownership is checked on the
    /// ring, not assumed from holding the key.
    disowned: bool,
    /// The epoch of the last ring change (none since the start).
    ring_changed_at: Option<u64>,
    /// When every held key was last checked for ownership (while `disowned`).
    ownership_checked_at: u64,
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
    /// Its writer id (see [`ActorConfig::writer`]).
    writer: u64,
    /// What changed since the driver last logged it (when logging is on): keys, with the
    /// change's delta for big states.
    journal: Option<Vec<(Key, Option<V>)>>,
    /// Digests of its ranges and anti-entropy state.
    digests: repair::Digests<V>,
    /// What is tracked of the keys beyond their states: those with a deadline (for active
    /// expiry) and, per database, how many are held and how many are tombstones.
    tracked: expiry::Tracked,
    /// The keys sorted by scan position, while a scan uses them.
    scan_index: Option<keys::ScanIndex>,
    /// The latest flush of each database.
    flushes: flush::Flushes,
    stats: ActorStats,
}

impl<V: KvsValue> Actor<V> {
    /// A new, empty actor `id` in `topology`, starting its epochs at time `now` (µs).
    pub fn new(id: ActorId, topology: Arc<Topology>, config: ActorConfig, now: u64) -> Self {
        let new_to_the_cluster = config.catch_up;
        let next_epoch_at = now + config.epoch_us;
        let solo = topology.max_replicas() == 1;
        let digests = repair::Digests::new(id, &topology, &config, now);
        let first_token = (config.writer.unwrap_or_else(|| id.writer_id()) ^ now)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Self {
            digests,
            writer: config.writer.unwrap_or_else(|| id.writer_id()),
            journal: None,
            solo,
            id,
            topology,
            config,
            store: HashMap::with_hasher(StoreHasher::default()),
            changeset: Vec::new(),
            deltas: HashMap::with_hasher(StoreHasher::default()),
            overrides: HashMap::with_hasher(StoreHasher::default()),
            override_changes: Vec::new(),
            links: BTreeMap::new(),
            forwarded: HashMap::new(),
            executed_forwards: HashMap::with_hasher(StoreHasher::default()),
            // Numbered from a point of its own per life, so an answer to a forward of an
            // earlier life of this node matches none of this life's.
            next_forward_token: first_token,
            tombstones: Vec::new(),
            handoffs: Vec::new(),
            disowned: false,
            // A node catching up is new to a running cluster (a joiner, a restart): members
            // may still route by rings from before it, as after a ring change.
            ring_changed_at: new_to_the_cluster.then_some(0),
            ownership_checked_at: 0,
            floor: None,
            recently_freed: HashMap::with_hasher(StoreHasher::default()),
            last_stamp_time: 0,
            next_epoch_at,
            epoch: 0,
            owners_buf: Vec::new(),
            tracked: expiry::Tracked::default(),
            scan_index: None,
            flushes: flush::Flushes::default(),
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

    /// Routes with `topology` from now on (a new ring version: a node joined or left).
    ///
    /// Links to actors that left are dropped (what they had not acknowledged can no longer
    /// be) and deletes stop waiting for them; deletes still waiting go out again to the new
    /// owners, so a joining replica learns them before this one forgets the key; the digests
    /// are rebuilt over the new ranges, and ranges this actor newly owns are caught up through
    /// their other replicas (see the `repair` module) before their reads are served from here.
    pub fn set_topology(&mut self, now: u64, topology: Arc<Topology>) {
        if topology.version() == self.topology.version() {
            return;
        }
        let old = std::mem::replace(&mut self.topology, topology);
        self.solo = self.topology.max_replicas() == 1;
        let topology = Arc::clone(&self.topology);
        for (actor, link) in &mut self.links {
            if !topology.has_actor(*actor) {
                link.park();
            }
        }
        self.resend_pending_tombstones();
        self.ring_changed_at = Some(self.epoch);
        // Keys this actor no longer owns go to their owners, and are dropped here once they
        // have them.
        if !self.owns_everything() {
            let held: Vec<Key> =
                self.store.keys().map(|k| Key::copy_from_slice(k.as_slice())).collect();
            for key in held {
                if !self.owns_slow(&key) {
                    self.disowned = true;
                    self.mark_whole(key);
                }
            }
        }
        self.digests.rebuild(self.id, &old, &self.topology, &self.config, now);
        // Every key counts again, in its new range.
        let enabled = self.digests.enabled;
        for (key, slot) in &mut self.store {
            slot.digest = 0;
            slot.stale = enabled;
            if enabled {
                self.digests.stale.push_back(Key::copy_from_slice(key.as_slice()));
            }
        }
        tracing::info!(actor = %self.id, version = %format!("{:x}", self.topology.version()), members = self.topology.members(), unrepaired = self.unrepaired_ranges(), "new ring version");
    }

    /// When the next epoch is due (µs, driver time): the driver should feed [`Input::Tick`] then.
    pub fn next_epoch_at(&self) -> u64 {
        // While catching up, repair rounds do not wait for epochs; nor does active expiry.
        let next = match self.digests.catch_up_due() {
            Some(due) => self.next_epoch_at.min(due),
            None => self.next_epoch_at,
        };
        self.tracked.next_run().map_or(next, |due| next.min(due))
    }

    /// Makes the next epoch due at `now` (a stopping node gossips its last changes at once).
    pub fn bring_epoch_forward(&mut self, now: u64) {
        self.next_epoch_at = self.next_epoch_at.min(now);
    }

    /// Its counters.
    pub fn stats(&self) -> ActorStats {
        let mut stats = self.stats.clone();
        stats.keys = self.live_keys();
        stats.tombstones = (self.store.len() as u64).saturating_sub(stats.keys);
        for db in 0..crate::db::DATABASES {
            stats.keys_by_db[usize::from(db)] = self.tracked.live(db);
            stats.deadlines_by_db[usize::from(db)] = self.tracked.with_deadline[usize::from(db)];
        }
        stats.ranges_unrepaired = self.unrepaired_ranges() as u64;
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

    /// A copy of every key held, for a snapshot to walk while the store changes.
    pub(crate) fn key_list(&self) -> Vec<StoreKey> {
        self.store.keys().cloned().collect()
    }

    /// The hot-key override for `key`, if any.
    pub fn override_for(&self, key: &[u8]) -> Option<u32> {
        self.overrides.get(key).copied()
    }

    /// `true` if nothing is waiting to be gossiped, resent or acknowledged.
    pub fn is_quiet(&self) -> bool {
        self.changeset.is_empty()
            && self.override_changes.is_empty()
            && self.links.values().all(|l| l.unacked.is_empty() && l.needs_whole.is_empty())
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
            self.override_changes.push((key.clone(), actors_per_node));
            // The replicas the override adds have nothing of the key yet: they get its whole
            // state, not just the deltas to come.
            self.mark_whole(key);
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
                // Before the epoch, so the expiries go out with its gossip.
                self.expire_due(now);
                self.drop_idle_scan_index(now);
                if now >= self.next_epoch_at {
                    self.announce_flushes(out);
                    self.epoch_work(out);
                    self.epoch += 1;
                    // Skip epochs missed while busy instead of running them back to back.
                    let period = self.config.epoch_us.max(1);
                    let behind = (now - self.next_epoch_at) / period;
                    self.next_epoch_at += (behind + 1) * period;
                }
                self.repair_tick(now, out);
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
        // (A catching-up actor takes the long way: its reads may be forwarded.)
        if let Request::Local { .. } = request {
            // About this actor's keys, whoever owns them: answered here, never forwarded (a
            // flush goes to the other nodes at once).
            let response = self.execute(now, request);
            self.announce_flushes(out);
            return Some(response);
        }
        // A held key is answered in place, unless a ring change may have left keys here that
        // are no longer this actor's (their owners may have newer states).
        if !self.digests.gating() && !self.disowned {
            if let Request::Get { key } = &request
                && let Some(response) = self.get_held(key)
            {
                return Some(response);
            }
            if self.owns(request.key()) {
                return Some(self.execute(now, request));
            }
        }
        self.client(now, token, request, 0, None, out)
    }

    /// Executes a request for a key this actor owns.
    #[inline]
    fn execute(&mut self, now: u64, request: Request<V>) -> Response<V> {
        match request {
            Request::Put { key, value, stamp_here } => self.put(now, key, value, stamp_here),
            Request::Get { key } => self.get(&key),
            Request::Delete { key } => self.delete(now, key),
            Request::Apply { key, op } => self.apply(now, key, op),
            Request::Replicated { key } => Response::Replicated(self.replicated(&key)),
            Request::Local { query, .. } => self.local(now, query),
        }
    }

    /// A stamp for a write made now: a hybrid logical clock — after the local clock, after
    /// every stamp this actor handed out or saw (client writes, gossip, its log), and after any
    /// freed tombstone — so a write always beats what its key held here, whatever the clocks
    /// do; unique cluster-wide through the writer id.
    #[inline]
    pub fn next_stamp(&mut self, now: u64) -> Stamp {
        let floor = self.floor.map_or(0, |f| f.time);
        let time = now.max(self.last_stamp_time + 1).max(floor + 1);
        self.last_stamp_time = time;
        Stamp::new(time, self.writer)
    }

    /// Advances the clock past a stamp seen (never past the future bound: such stamps are
    /// refused before they get here).
    #[inline]
    fn observe(&mut self, stamp: Option<Stamp>) {
        if let Some(stamp) = stamp {
            self.last_stamp_time = self.last_stamp_time.max(stamp.time);
        }
    }

    /// Its clock: the last stamp time it handed out or saw.
    pub fn clock(&self) -> u64 {
        self.last_stamp_time
    }

    /// Moves the clock past a peer's (not past the bound on clocks ahead: a peer's clock that
    /// far ahead is not followed).
    fn observe_clock(&mut self, now: u64, clock: u64) {
        if clock <= now.saturating_add(self.config.max_clock_ahead_us) {
            self.last_stamp_time = self.last_stamp_time.max(clock);
        }
    }

    /// Its writer id.
    pub fn writer(&self) -> u64 {
        self.writer
    }

    /// Turns on the journal of changed keys the driver logs (see [`take_journal`](Self::take_journal)).
    pub fn enable_journal(&mut self) {
        self.journal.get_or_insert_with(Vec::new);
    }

    /// What changed since the last call, for the log: `(key, None)` once per key whose whole
    /// current state should be logged, `(key, Some(delta))` for each change of a big state
    /// that a delta describes (replaying the deltas in any order rebuilds the state). A key
    /// logged whole has no deltas beside it: its state includes them.
    pub fn take_journal(&mut self) -> Vec<(Key, Option<V>)> {
        let Some(journal) = &mut self.journal else { return Vec::new() };
        let mut entries = std::mem::take(journal);
        if entries.len() > 1 {
            let whole: std::collections::HashSet<Key> = entries
                .iter()
                .filter(|(_, delta)| delta.is_none())
                .map(|(k, _)| k.clone())
                .collect();
            let mut logged = std::collections::HashSet::new();
            entries.retain(|(key, delta)| match delta {
                Some(_) => !whole.contains(key),
                None => logged.insert(key.clone()),
            });
        }
        entries
    }

    /// Puts entries taken from the journal back (their log write failed: the next try logs
    /// them).
    pub fn return_journal(&mut self, entries: Vec<(Key, Option<V>)>) {
        if let Some(journal) = &mut self.journal {
            journal.extend(entries);
        }
    }

    #[inline]
    fn journal(&mut self, key: &Key, delta: Option<V>) {
        if let Some(journal) = &mut self.journal {
            journal.push((key.clone(), delta));
        }
    }

    /// Merges a state read back from the log at start. The key is gossiped again at the next
    /// epoch: the crash may have come before its peers heard of it.
    pub fn restore(&mut self, key: Key, value: V) {
        if self.restore_flush(&key, &value) || self.flushes.hides(&key, &value) {
            return;
        }
        self.observe(value.newest_stamp());
        match self.store.get_mut(&key[..]) {
            Some(slot) => {
                let before = expiry::Facts::of(&slot.value);
                slot.value.merge(value);
                self.tracked.track(&key, before, expiry::Facts::of(&slot.value));
            }
            None => {
                if value.is_bottom() {
                    return;
                }
                self.tracked.track(&key, expiry::Facts::ABSENT, expiry::Facts::of(&value));
                self.store.insert(
                    StoreKey::new(&key),
                    Slot { value, dirty: false, shipped: 0, stale: false, digest: 0 },
                );
            }
        }
        self.mark_whole(key);
    }

    /// Marks a held key for the next epoch's gossip as a whole state (dropping any delta
    /// gathered for it): a restored key, a tombstone to pass on again, a key whose owners grew.
    pub(super) fn mark_whole(&mut self, key: Key) {
        self.deltas.remove(&key);
        if let Some(slot) = self.store.get_mut(&key[..])
            && !std::mem::replace(&mut slot.dirty, true)
        {
            self.changeset.push(key);
        }
    }

    /// Every key it holds with its state (for rewriting the log).
    pub fn states(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.store.iter().map(|(k, slot)| (&k[..], &slot.value))
    }

    /// A state a peer sent (by gossip or repair) that may be merged: its newest stamp, or
    /// `None` if it is refused: stamped beyond `horizon` (counted), or written before its
    /// database was flushed (gone, wherever it comes from; the sender learns the flush from
    /// this round's messages and deletes it too).
    pub(super) fn admit_from_peer(
        &mut self,
        key: &[u8],
        value: &V,
        horizon: u64,
    ) -> Option<Option<Stamp>> {
        let newest = value.newest_stamp();
        if newest.is_some_and(|stamp| stamp.time > horizon) {
            self.stats.future_stamps_refused += 1;
            return None;
        }
        if self.flushes.hides(key, value) {
            return None;
        }
        Some(newest)
    }

    /// Whether `key` was freed here lately by a tombstone at least as new as everything in
    /// `value`: `value` is then a copy from before the delete, not something to bring back.
    /// (A newer delete is let in: every replica must pass its tombstones on.)
    pub(super) fn freed_after(&self, key: &[u8], value: &V) -> bool {
        self.recently_freed
            .get(key)
            .is_some_and(|&(freed, _)| value.newest_stamp().is_none_or(|newest| newest <= freed))
    }

    #[inline]
    fn owns(&mut self, key: &[u8]) -> bool {
        // A stored key is owned: keys are only stored by their owners, and ownership only
        // grows (hot-key overrides add replicas, never remove them) until the ring changes,
        // so the ring walk is only needed for keys this actor does not hold yet, or after a
        // ring change while keys it no longer owns are handed off.
        if self.owns_everything() || (!self.disowned && self.store.contains_key(key)) {
            return true;
        }
        self.owns_slow(key)
    }

    /// Every key is this actor's: full replication, and it is in the ring (one leaving the
    /// cluster routes by a ring without itself).
    #[inline]
    pub(super) fn owns_everything(&self) -> bool {
        self.topology.is_full() && self.topology.has_actor(self.id)
    }

    pub(super) fn owns_slow(&mut self, key: &[u8]) -> bool {
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
            // Every request on one key goes to the same owner (spread by key): a client reading
            // through this actor reads from the owner that took its writes (read-your-writes,
            // which reads spread over the owners broke for a client of a node that owns nothing,
            // such as one leaving the cluster), and `WAIT` asks the actor that took the write.
            // (Hot keys' extra local replicas share reads through the handles' affinity.)
            let spread = request.key().iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            let owner = self.owners_buf[(spread % self.owners_buf.len() as u64) as usize];
            let (origin, token) = match origin {
                Some(origin) => (origin, token),
                None => {
                    let ours = self.next_forward_token;
                    self.next_forward_token = self.next_forward_token.wrapping_add(1);
                    self.forwarded.insert(ours, token);
                    (self.id, ours)
                }
            };
            // A key this actor still holds though it no longer owns it (being handed over after
            // a ring change) may be newer here than at its owner: its state goes to the owner
            // first, on the same link, so the owner answers from both (a client reads what it
            // wrote through here, and a delete still wins over what is held).
            if self.disowned
                && let Some(slot) = self.store.get(&request.key()[..])
                && !slot.value.is_bottom()
            {
                let handover = Request::Put {
                    key: request.key().clone(),
                    value: slot.value.clone(),
                    stamp_here: false,
                };
                let unanswered = self.next_forward_token;
                self.next_forward_token = self.next_forward_token.wrapping_add(1);
                out.push(Output::Send {
                    to: owner,
                    message: PeerMessage::Forward {
                        origin: self.id,
                        token: unanswered,
                        hops: hops + 1,
                        clock: self.last_stamp_time,
                        request: handover,
                    },
                });
            }
            out.push(Output::Send {
                to: owner,
                message: PeerMessage::Forward {
                    origin,
                    token,
                    hops: hops + 1,
                    clock: self.last_stamp_time,
                    request,
                },
            });
            return None;
        }
        // While catching up, a read of a range not repaired yet fetches a replica's state
        // first.
        let request = if self.digests.gating() {
            match self.catch_up_read(now, token, origin, request, out) {
                Ok(response) => return response,
                Err(request) => request,
            }
        } else {
            request
        };
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
        // The floor: freed tombstones, and the flush of the key's database.
        let floor = self.floor.max(self.flushes.of(&key));
        if let (Some(floor), Some(stamp)) = (floor, value.write_stamp())
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
        if !stamp_here && !self.store.contains_key(&key[..]) && self.freed_after(&key, &value) {
            // A state handed over from before a delete freed here lately (see `freed_after`):
            // the delete has it already.
            return Response::Done(None);
        }
        self.stats.puts += 1;
        self.observe(value.newest_stamp());
        self.merge_local(key, value);
        Response::Done(assigned)
    }

    /// Merges a client's write into the replica and marks the key for the next epoch. Into a
    /// big state, the write itself is the delta to gossip and log.
    #[inline]
    fn merge_local(&mut self, key: Key, value: V) {
        let _ = self.update(key, |state| {
            let change = if state.weight() >= DELTA_MIN_WEIGHT {
                if state.merge_ref(&value) { Change::Delta(value) } else { Change::Unchanged }
            } else if state.merge(value) {
                Change::Whole
            } else {
                Change::Unchanged
            };
            Ok::<_, std::convert::Infallible>((change, ()))
        });
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
        let writer = self.writer;
        let _ = self.update(key, |value| {
            let change =
                if value.delete(stamp, writer) { Change::Whole } else { Change::Unchanged };
            Ok::<_, ()>((change, ()))
        });
        Response::Done(Some(stamp))
    }

    fn apply(&mut self, now: u64, key: Key, op: V::Op) -> Response<V> {
        // A read-only operation takes no stamp: reads must not push the clock ahead.
        // (Its time is still the clock's, for values whose reads depend on it: a deadline.)
        let stamp = if V::op_reads_only(&op) {
            Stamp::new(now.max(self.last_stamp_time), self.writer)
        } else {
            self.next_stamp(now)
        };
        let writer = self.writer;
        let change = |value: &mut V| {
            if value.weight() >= DELTA_MIN_WEIGHT {
                value.apply_delta(op, stamp, writer)
            } else {
                let (changed, output) = value.apply(op, stamp, writer)?;
                Ok((if changed { Change::Whole } else { Change::Unchanged }, output))
            }
        };
        match self.update(key, change) {
            Ok((changed, output)) => {
                self.stats.puts += u64::from(changed);
                Response::Applied(output)
            }
            Err(message) => Response::Error(RequestError::Op(message)),
        }
    }

    /// Changes the state of `key` in place with `change` (starting from ⊥ for an absent key,
    /// which is stored only if it moved above ⊥), and marks the key for the next epoch if it
    /// changed, with the change's delta where it has one. A refusal leaves the store untouched.
    fn update<T, E>(
        &mut self,
        key: Key,
        change: impl FnOnce(&mut V) -> Result<(Change<V>, T), E>,
    ) -> Result<(bool, T), E> {
        let gossiped = self.gossiped();
        match self.store.get_mut(&key[..]) {
            Some(slot) => {
                let before = expiry::Facts::of(&slot.value);
                let (change, output) = change(&mut slot.value)?;
                let changed = change.changed();
                if changed {
                    self.tracked.track(&key, before, expiry::Facts::of(&slot.value));
                    let was_dirty = slot.dirty;
                    let mark = !was_dirty && (gossiped || slot.value.tombstone_stamp().is_some());
                    if mark {
                        slot.dirty = true;
                    }
                    let delta = match change {
                        Change::Delta(delta) => Some(delta),
                        _ => None,
                    };
                    // The epoch ships the deltas gathered since the last one, or the whole
                    // state once any change had none.
                    if mark && let Some(delta) = &delta {
                        self.deltas.insert(key.clone(), delta.clone());
                    } else if was_dirty
                        && !self.deltas.is_empty()
                        && let Some(gathered) = self.deltas.get_mut(&key)
                    {
                        match &delta {
                            Some(delta) => {
                                gathered.merge_ref(delta);
                            }
                            None => {
                                self.deltas.remove(&key);
                            }
                        }
                    }
                    self.journal(&key, delta);
                    if mark {
                        self.changeset.push(key);
                    }
                }
                Ok((changed, output))
            }
            None => {
                let mut value = V::bottom();
                let (change, output) = change(&mut value)?;
                let changed = change.changed();
                if changed && !value.is_bottom() {
                    self.tracked.track(&key, expiry::Facts::ABSENT, expiry::Facts::of(&value));
                    let dirty = gossiped || value.tombstone_stamp().is_some();
                    self.store.insert(
                        StoreKey::new(&key),
                        Slot { value, dirty, shipped: 0, stale: false, digest: 0 },
                    );
                    self.journal(&key, None);
                    if dirty {
                        self.changeset.push(key);
                    }
                }
                Ok((changed, output))
            }
        }
    }

    fn peer(&mut self, now: u64, message: PeerMessage<V>, out: &mut Vec<Output<V>>) {
        if self.digests.gating() {
            // Only an answer to this life's own request proves the way back works (a peer's
            // first messages may still go to the previous process, and a peer that only
            // sends may not answer at all).
            let from = match &message {
                PeerMessage::Repair(
                    repair @ (Repair::Buckets { .. }
                    | Repair::Reply { .. }
                    | Repair::Fetched { .. }),
                ) => Some(repair.from()),
                _ => None,
            };
            if let Some(from) = from
                && self.digests.heard_from(from)
            {
                self.release_waiting_reads(now, out);
            }
        }
        match message {
            PeerMessage::Gossip(gossip) => self.receive_gossip(now, gossip, out),
            PeerMessage::Ack { from, seq, sent_to_you } => self.receive_ack(from, seq, sent_to_you),
            PeerMessage::Forward { origin, token, hops, clock, request } => {
                if let Request::Local { .. } = request {
                    // Questions about an actor's keys never travel between nodes.
                    self.stats.refused += 1;
                    return;
                }
                self.observe_clock(now, clock);
                if self.executed_forwards.insert((origin, token), self.epoch).is_some() {
                    return;
                }
                if let Some(response) = self.client(now, token, request, hops, Some(origin), out) {
                    if origin == self.id {
                        self.finish_forward(token, response, out);
                    } else {
                        out.push(Output::Send {
                            to: origin,
                            message: PeerMessage::ForwardReply {
                                clock: self.last_stamp_time,
                                token,
                                response,
                            },
                        });
                    }
                }
            }
            PeerMessage::ForwardReply { clock, token, response } => {
                self.observe_clock(now, clock);
                self.finish_forward(token, response, out)
            }
            PeerMessage::Repair(repair) => self.receive_repair(now, repair, out),
            PeerMessage::Flush { from, flushes } => {
                if self.is_peer(from) {
                    self.learn_flushes(now, &flushes, false);
                } else {
                    self.stats.unknown_senders += 1;
                }
            }
        }
    }

    pub(super) fn finish_forward(
        &mut self,
        token: Token,
        response: Response<V>,
        out: &mut Vec<Output<V>>,
    ) {
        // A reply to a forward we gave up on (or a duplicate) has no client left: drop it.
        if let Some(client) = self.forwarded.remove(&token) {
            out.push(Output::Reply { token: client, response });
        }
    }

    /// The reclamation floor: client writes stamped at or below it are refused.
    pub fn floor(&self) -> Option<Stamp> {
        self.floor
    }
}
