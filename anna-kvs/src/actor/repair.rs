//! Anti-entropy: replicas that missed updates converge without new writes.
//!
//! Gossip carries only keys that change, so a replica that missed some (restarted from an older
//! log or an empty directory, partitioned past the retransmission budget, a dropped batch) would
//! stay behind on every key nobody writes again. Repair finds and closes those gaps.
//!
//! **Digests per ring range.** The ring's points cut it into ranges whose keys all have the
//! same owners ([`Topology::range_ends`](crate::ring::Topology::range_ends)). For each range it
//! owns, an actor keeps a two-level hash tree: 256 bucket hashes (a key's bucket comes from its
//! ring position), each the wrapping sum of its keys' digests, and a root, the hash of the 256
//! buckets. A key's digest is XXH3-64 of the key and its state's canonical encoding, or 0 for a
//! deleted key (a tombstone and an absent key look alike, so a freed key and one still waiting
//! for acknowledgements compare equal). Sums make the tree incremental and order-free: a change
//! subtracts the key's old digest from its bucket and adds the new one. A changed key is queued
//! once (by the epoch's changeset, or by the gossip or repair that changed it) and rehashed
//! later, a bounded number per epoch (a key written a million times is hashed once, off the
//! request path); big states (see [`DELTA_MIN_WEIGHT`]) only when a round needs them, so a
//! 2M-member set being loaded is not re-encoded every epoch.
//!
//! Why 256 flat buckets and not a deeper tree: a range holds about `keys / ranges` keys (with
//! 64 virtual nodes per member, a few hundred ranges per actor), so 1M keys put ~13 keys in a
//! bucket; a differing range costs one 2 KiB reply of bucket hashes, then only the keys of the
//! differing buckets travel. A deeper tree would save a round trip's worth of bytes only for
//! ranges far bigger than the default ring makes.
//!
//! **Rounds.** Every `repair_interval_us` (jittered ±50%) an actor starts a round with the next
//! replica it shares ranges with: it sends the roots of the shared ranges; the replica answers
//! which are equal and its bucket hashes for (up to 32 of) the rest; the initiator sends its
//! states of the keys in differing buckets, whole buckets in (range, bucket) order until the
//! byte budget (`repair_bytes_per_round`) is spent, and asks for the replica's keys of exactly
//! those buckets; both merge what they receive. Every round thus settles at least one bucket
//! both ways, and a gap of any size closes. The next round comes at once with the same replica
//! when the budget cut this one short (unless that replica is catching up: it pulls for itself)
//! or while this actor catches up, and at once with the next replica when this round changed
//! 64 keys or more (after a heal, it probably missed the same writes); otherwise it waits for
//! the interval. Big states never travel inline: a differing one is owed whole to the replica
//! by the gossip link, which sends it in parts (unless it changed in the last 50 epochs: its
//! deltas are in flight). Messages are best effort: a lost one times the round out and the next
//! round starts over. Merging is idempotent, so an interrupted or repeated round never does
//! harm.
//!
//! **Deletes stay deleted.** Repair only moves states replicas hold, merged like gossip: a
//! tombstone travels with the keys of a differing bucket and wins over every older write; a
//! key is freed only after every owner has acknowledged (and logged) its tombstone, so no owner
//! still holds an older state of it to send back; and a late copy of a state no newer than a
//! tombstone freed here lately is not merged.
//!
//! **Catch-up.** A node of a cluster starts by catching up (`ActorConfig::catch_up`): every
//! range it shares is unrepaired, and rounds run back to back (every 20 ms, whatever the epoch)
//! until each range has been compared (found equal, or all of that replica's differing keys
//! received) with a replica that is not catching up itself, or with every replica on another
//! node (a whole cluster restarted). Meanwhile a read of an unrepaired range first fetches the key's
//! state from a replica on another node that has answered one of this life's own requests,
//! merges it here, and answers from the merge: it sees what the replica has and what this node
//! took since its start (its own clients' writes, so read-your-writes holds). Before any
//! replica has answered, such a read waits up to a second; one that still cannot be answered
//! (no replica, a fetch unanswered for a second, a state too big for one message) is refused
//! with [`RequestError::CatchingUp`] (Redis: `TRYAGAIN`). After `catch_up_timeout_us` with ranges no
//! replica repaired (every other replica down), they are served from what is here, counted in
//! `catch_up_expired`. A node cannot tell a first start from a restart with a lost directory, so
//! every node of a cluster catches up; on a fresh cluster the first round finds every range
//! equal within a round trip.

use std::collections::{HashMap, HashSet};

use xxhash_rust::xxh3::Xxh3;

use super::gossip::size_within;
use super::{Actor, DELTA_MIN_WEIGHT, Slot, StoreHasher, expiry};
use crate::message::{
    BucketMask, Output, PeerMessage, RangeId, Repair, Request, RequestError, Response, Token,
};
use crate::ring::{self, ActorId, Key, Topology};
use crate::small_bytes::StoreKey;
use crate::value::KvsValue;

/// Digest buckets per range.
pub const BUCKETS: usize = 256;
/// A round whose replica has not answered after this many epochs is abandoned.
const ROUND_TIMEOUT_EPOCHS: u64 = 20;
/// While catching up: rounds follow each other at most this far apart (µs), whatever the
/// epoch, and one whose replica has not answered in [`CATCH_UP_ROUND_TIMEOUT_US`] is
/// abandoned for the next replica (a peer's first answers to a restarted node are lost until
/// its connection to the new process is up).
const CATCH_UP_ROUND_US: u64 = 20_000;
/// See [`CATCH_UP_ROUND_US`].
const CATCH_UP_ROUND_TIMEOUT_US: u64 = 200_000;
/// While catching up, a read of an unrepaired range waits this long (µs) for a replica to be
/// heard from before it is refused with [`RequestError::CatchingUp`].
const CATCH_UP_READ_WAIT_US: u64 = 1_000_000;
/// A round that changed at least this many keys here is followed by the next one at once
/// (after a heal, the other replicas probably missed the same writes); fewer are what is in
/// flight under a steady write load, and the next round waits for the interval.
const FOLLOW_UP_CHANGES: u64 = 64;
/// A big key changed within this many epochs is left out of repair exchanges: gossip is
/// carrying its deltas (reliably, with whole-state repairs of its own), and its digests differ
/// only because they are in flight; sending the whole state again would cost far more.
const BIG_QUIET_EPOCHS: u64 = 50;
/// Most differing ranges whose buckets one answer carries (2 KiB each): about what one round
/// can exchange at the default budget when a whole store differs (a restarted-empty node),
/// where sending every range's buckets each round cost more than the keys (measured: 9.5x the
/// data for 1M keys with 512).
const MAX_DIFFERING_PER_ANSWER: usize = 32;
/// Most bytes of states in one repair message, whatever `repair_bytes_per_round` says: the
/// message limit, with room for a bucket that goes over the budget.
const MAX_REPAIR_BYTES: usize = crate::wire::MAX_MESSAGE_BYTES / 4;
/// Marks a range this actor does not own in [`Digests::owned`].
const NOT_OWNED: u32 = u32::MAX;

/// One owned range's hash tree and repair state.
#[derive(Debug)]
struct Range {
    end: RangeId,
    /// Its other owners (overrides aside).
    peers: Vec<ActorId>,
    buckets: Box<[u64; BUCKETS]>,
    /// Its root, while no bucket changed since it was computed.
    root: Option<u64>,
    /// Compared with a replica since the catch-up began (always `true` without catch-up).
    repaired: bool,
    /// While not repaired: which of `peers` it was compared with (bit per index) although
    /// they were catching up themselves; compared with every replica on another node, it is
    /// as repaired as it can be.
    compared: u64,
}

impl Range {
    fn root(&mut self) -> u64 {
        *self.root.get_or_insert_with(|| {
            // An empty range (or one of deleted keys only) has root 0 on every replica.
            if self.buckets.iter().all(|&b| b == 0) {
                return 0;
            }
            let mut hasher = Xxh3::new();
            for bucket in self.buckets.iter() {
                hasher.update(&bucket.to_le_bytes());
            }
            hasher.digest()
        })
    }

    fn add(&mut self, bucket: usize, old: u64, new: u64) {
        if old != new {
            let sum = &mut self.buckets[bucket];
            *sum = sum.wrapping_sub(old).wrapping_add(new);
            self.root = None;
        }
    }
}

/// A round this actor started and is waiting on.
#[derive(Debug)]
struct Round {
    peer: ActorId,
    id: u64,
    started: u64,
    /// When it started (driver time, µs).
    started_us: u64,
    /// Ranges (indices) whose keys the replica is sending back.
    want: Vec<u32>,
    /// The initiator's own states were cut short by the budget.
    cut: bool,
    /// Ranges (indices) the replica said it is still catching up on.
    unsettled: Vec<u32>,
}

/// Who waits for a read: the forwarding actor (if any) and its token, else the client's token.
type Asker = (Option<ActorId>, Token);

/// A read waiting for a replica's state: who asked, the read, the replica asked, when (µs).
type CatchUpRead<V> = (Asker, Request<V>, ActorId, u64);

/// An actor's digests and repair state.
#[derive(Debug)]
pub(super) struct Digests<V: KvsValue> {
    ends: Vec<u32>,
    /// Per range of the ring: its index in `ranges`, or [`NOT_OWNED`].
    owned: Vec<u32>,
    ranges: Vec<Range>,
    /// Every other actor sharing ranges with this one, with those ranges.
    partners: Vec<(ActorId, Vec<u32>)>,
    /// Keys changed outside the changeset (gossip, repair) since the last refresh.
    pub(super) stale: std::collections::VecDeque<Key>,
    /// Big keys whose digests wait for the next round.
    stale_big: HashSet<Key, StoreHasher>,
    /// Big keys changed recently, with the epoch of their last change (see
    /// [`BIG_QUIET_EPOCHS`]).
    hot_big: HashMap<Key, u64, StoreHasher>,
    round: Option<Round>,
    next_round_at: u64,
    rounds: u64,
    cursor: usize,
    /// Repeat the last round's replica next (differences were cut short, or catching up).
    again: Option<ActorId>,
    rng: u64,
    /// While catching up: when it gives up waiting for unrepaired ranges.
    catch_up_until: Option<u64>,
    unrepaired: usize,
    /// Replicas heard from since the start (tracked while catching up): only those are sure to
    /// reach this life of the node with an answer.
    heard: Vec<ActorId>,
    /// Replicas known not to be catching up themselves (preferred for catch-up reads).
    settled: Vec<ActorId>,
    /// Catch-up reads waiting for a replica's state: our token → who asked (the forwarding
    /// actor, if any, and its token, else the client's token), the read, the replica asked
    /// and when (refused after [`CATCH_UP_READ_WAIT_US`] without an answer).
    catch_up_reads: HashMap<Token, CatchUpRead<V>>,
    /// Catch-up reads waiting for any of their range's replicas to be heard from, with when
    /// they arrived (µs).
    waiting_reads: Vec<(Asker, Request<V>, u64)>,
    /// Repair runs at all (an interval is set and some range has another owner).
    pub(super) enabled: bool,
}

impl<V: KvsValue> Digests<V> {
    pub(super) fn new(
        id: ActorId,
        topology: &Topology,
        config: &super::ActorConfig,
        now: u64,
    ) -> Self {
        let ends = if config.repair_interval_us == 0 { Vec::new() } else { topology.range_ends() };
        let mut owned = vec![NOT_OWNED; ends.len()];
        let mut ranges = Vec::new();
        let mut partners: Vec<(ActorId, Vec<u32>)> = Vec::new();
        let mut owners = Vec::new();
        for (i, &end) in ends.iter().enumerate() {
            topology.owners_at(end, None, &mut owners);
            if !owners.contains(&id) {
                continue;
            }
            let index = ranges.len() as u32;
            owned[i] = index;
            let peers: Vec<ActorId> = owners.iter().copied().filter(|&o| o != id).collect();
            for &peer in &peers {
                match partners.iter_mut().find(|(p, _)| *p == peer) {
                    Some((_, shared)) => shared.push(index),
                    None => partners.push((peer, vec![index])),
                }
            }
            let catch_up = config.catch_up && !peers.is_empty();
            ranges.push(Range {
                end,
                peers,
                buckets: Box::new([0; BUCKETS]),
                root: None,
                repaired: !catch_up,
                compared: 0,
            });
        }
        // Replicas on other nodes first: after a node restarts, its own other actors are
        // catching up too.
        partners.sort_by_key(|(peer, _)| (peer.node == id.node, *peer));
        let enabled = !partners.is_empty();
        let unrepaired = ranges.iter().filter(|r| !r.repaired).count();
        // Seeded by the writer id and the start time: this life's round numbers are not its
        // previous life's, so a late answer to the previous life matches nothing.
        let writer = config.writer.unwrap_or_else(|| id.writer_id());
        let seed = (writer ^ now.rotate_left(32)) ^ 0x05EE_D0FA_11CE;
        Self {
            ends,
            owned,
            ranges,
            partners,
            stale: std::collections::VecDeque::new(),
            stale_big: HashSet::with_hasher(StoreHasher::default()),
            hot_big: HashMap::with_hasher(StoreHasher::default()),
            round: None,
            // A node catching up starts at once; otherwise the first round comes after one
            // epoch.
            next_round_at: if unrepaired > 0 { now } else { now + config.epoch_us },
            rounds: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 1,
            cursor: 0,
            again: None,
            rng: seed,
            catch_up_until: (enabled && unrepaired > 0)
                .then(|| now.saturating_add(config.catch_up_timeout_us)),
            unrepaired,
            heard: Vec::new(),
            settled: Vec::new(),
            catch_up_reads: HashMap::new(),
            waiting_reads: Vec::new(),
            enabled,
        }
    }

    /// The digests of a new ring version, replacing `self` (built for `old`): every range of
    /// the new ring this actor owns a position of which it did not own before is *gained*, and
    /// unrepaired until a replica has been compared on it (read through a replica meanwhile,
    /// as after a restart); the rest stay as repaired as they were. Reads waiting on a replica
    /// carry over. The caller recounts every key into the new ranges.
    pub(super) fn rebuild(
        &mut self,
        id: ActorId,
        old: &Topology,
        new: &Topology,
        config: &super::ActorConfig,
        now: u64,
    ) {
        let mut fresh =
            Self::new(id, new, &super::ActorConfig { catch_up: false, ..config.clone() }, now);
        let old_ends = old.range_ends();
        let mut owners = Vec::new();
        let owned_before = |position: u32, owners: &mut Vec<ActorId>| {
            if old_ends.is_empty() {
                return false;
            }
            old.owners_at(old_ends[ring::range_of(&old_ends, position)], None, owners);
            owners.contains(&id)
        };
        let was_catching_up = self.catch_up_until.is_some();
        let mut gained = 0;
        for (i, &end) in fresh.ends.iter().enumerate() {
            let index = fresh.owned[i];
            if index == NOT_OWNED {
                continue;
            }
            // The new range (start, end] meets the old ranges ending inside it and the one
            // holding `end`: owned before only if every one of them was.
            let start = if i == 0 { fresh.ends[fresh.ends.len() - 1] } else { fresh.ends[i - 1] };
            let mut before = owned_before(end, &mut owners);
            for &old_end in &old_ends {
                let inside = if start < end {
                    old_end > start && old_end < end
                } else {
                    old_end > start || old_end < end
                };
                if inside && !owned_before(old_end, &mut owners) {
                    before = false;
                }
            }
            // A range still being caught up on stays so.
            let unrepaired_before =
                was_catching_up && self.range_index(end).is_some_and(|j| !self.ranges[j].repaired);
            let range = &mut fresh.ranges[index as usize];
            if (!before || unrepaired_before) && !range.peers.is_empty() {
                range.repaired = false;
                gained += 1;
            }
        }
        fresh.unrepaired = gained;
        if gained > 0 {
            fresh.catch_up_until = Some(match self.catch_up_until {
                Some(until) => until.max(now.saturating_add(config.catch_up_timeout_us)),
                None => now.saturating_add(config.catch_up_timeout_us),
            });
            fresh.next_round_at = now;
        }
        fresh.heard = std::mem::take(&mut self.heard);
        fresh.settled = std::mem::take(&mut self.settled);
        fresh.catch_up_reads = std::mem::take(&mut self.catch_up_reads);
        fresh.waiting_reads = std::mem::take(&mut self.waiting_reads);
        fresh.hot_big = std::mem::take(&mut self.hot_big);
        *self = fresh;
    }

    /// The index in `ranges` of the owned range holding `position`.
    #[inline]
    fn range_index(&self, position: u32) -> Option<usize> {
        let owned = *self.owned.get(ring::range_of(&self.ends, position))?;
        (owned != NOT_OWNED).then_some(owned as usize)
    }

    /// The owned range named `end` on the wire, if `peer` owns it too.
    fn shared_range(&self, end: RangeId, peer: ActorId) -> Option<usize> {
        let i = self.ends.binary_search(&end).ok()?;
        let index = self.owned[i];
        (index != NOT_OWNED && self.ranges[index as usize].peers.contains(&peer))
            .then_some(index as usize)
    }

    /// The owned range holding `position`, if `peer` owns it too.
    fn shared_range_of(&self, position: u32, peer: ActorId) -> Option<usize> {
        let index = self.range_index(position)?;
        self.ranges[index].peers.contains(&peer).then_some(index)
    }

    /// `true` while reads of unrepaired ranges are forwarded.
    #[inline]
    pub(super) fn gating(&self) -> bool {
        self.catch_up_until.is_some()
    }

    /// Notes a message from `peer` (while catching up); `true` if it is the first.
    #[inline]
    pub(super) fn heard_from(&mut self, peer: ActorId) -> bool {
        if self.gating() && !self.heard.contains(&peer) {
            self.heard.push(peer);
            return true;
        }
        false
    }

    /// Notes that big `key` changed at `epoch` (its deltas are on their way to its replicas).
    #[inline]
    pub(super) fn touch(&mut self, key: &Key, epoch: u64) {
        if self.enabled {
            self.hot_big.insert(key.clone(), epoch);
        }
    }

    /// While catching up: when the actor next needs a tick for its rounds and waiting reads.
    #[inline]
    pub(super) fn catch_up_due(&self) -> Option<u64> {
        self.catch_up_until?;
        let round = match &self.round {
            Some(round) => round.started_us + CATCH_UP_ROUND_TIMEOUT_US,
            None => self.next_round_at,
        };
        let read = self.waiting_reads.iter().map(|(_, _, at)| at + CATCH_UP_READ_WAIT_US).min();
        Some(read.map_or(round, |read| read.min(round)))
    }

    /// Range `index` was compared with `peer` (and, if the round got that far, its differing
    /// buckets exchanged): repaired if `peer` is not catching up itself, or once every replica
    /// on another node has been compared.
    fn mark_compared(&mut self, index: usize, me: ActorId, peer: ActorId, settled: bool) {
        if settled {
            self.mark_repaired(index);
            return;
        }
        let range = &mut self.ranges[index];
        if range.repaired {
            return;
        }
        if let Some(i) = range.peers.iter().position(|&p| p == peer) {
            range.compared |= 1 << (i % 64);
        }
        let others = range.peers.iter().any(|p| p.node != me.node);
        let all = range
            .peers
            .iter()
            .enumerate()
            .filter(|(_, p)| !others || p.node != me.node)
            .all(|(i, _)| range.compared & (1 << (i % 64)) != 0);
        if all {
            self.mark_repaired(index);
        }
    }

    fn mark_repaired(&mut self, index: usize) {
        let range = &mut self.ranges[index];
        if !std::mem::replace(&mut range.repaired, true) {
            self.unrepaired -= 1;
            if self.unrepaired == 0 {
                self.catch_up_until = None;
            }
        }
    }

    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Every owned range's end and root hash, for `DEBUG DIGEST`.
    pub(super) fn roots(&mut self) -> Vec<(RangeId, u64)> {
        self.ranges.iter_mut().map(|r| (r.end, r.root())).collect()
    }
}

/// The bucket of a key at ring `position` within its range.
#[inline]
fn bucket_of(position: u32) -> usize {
    (position.wrapping_mul(0x9E37_79B1) >> 24) as usize
}

/// A key's digest: XXH3-64 of the key and its state's encoding, 0 for a deleted key.
pub fn digest<V: KvsValue>(key: &[u8], value: &V) -> u64 {
    if value.is_deleted() {
        return 0;
    }
    struct Hashing(Xxh3);
    impl bincode::enc::write::Writer for Hashing {
        fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
            self.0.update(bytes);
            Ok(())
        }
    }
    let mut hasher = Hashing(Xxh3::new());
    hasher.0.update(&(key.len() as u64).to_le_bytes());
    hasher.0.update(key);
    // Encoding into a hasher cannot fail for the store's values; one that did would only
    // make its bucket compare unequal, and cost a repair exchange.
    let _ = bincode::serde::encode_into_writer(value, &mut hasher, bincode::config::standard());
    hasher.0.digest()
}

/// Brings `slot`'s digest (and its bucket) up to date with its state; a big state is left for
/// the next round unless `force`.
fn refresh<V: KvsValue>(digests: &mut Digests<V>, key: &[u8], slot: &mut Slot<V>, force: bool) {
    let position = ring::position(key);
    let Some(index) = digests.range_index(position) else { return };
    if !force && slot.value.weight() >= DELTA_MIN_WEIGHT {
        digests.stale_big.insert(Key::copy_from_slice(key));
        return;
    }
    let new = digest(key, &slot.value);
    digests.ranges[index].add(bucket_of(position), slot.digest, new);
    slot.digest = new;
}

impl<V: KvsValue> Actor<V> {
    /// Takes a freed key's digest out of its bucket.
    pub(super) fn forget_digest(&mut self, key: &[u8], digest: u64) {
        if digest == 0 {
            return;
        }
        let position = ring::position(key);
        if let Some(index) = self.digests.range_index(position) {
            self.digests.ranges[index].add(bucket_of(position), digest, 0);
        }
    }

    /// Notes that `key` changed outside the changeset (gossip, repair).
    #[inline]
    pub(super) fn mark_stale(&mut self, key: &Key) {
        if !self.digests.enabled {
            return;
        }
        if let Some(slot) = self.store.get_mut(&key[..])
            && !std::mem::replace(&mut slot.stale, true)
        {
            self.digests.stale.push_back(key.clone());
        }
    }

    /// Rehashes changed keys, oldest change first, at most an eighth as many as the epoch has
    /// microseconds (12,500 at 100 ms, ~1% of an actor's time at ~100 ns a key): a write load
    /// that changes more distinct keys than that leaves the digests behind (rounds then
    /// exchange a few more keys), and they catch up at 125k keys a second once it eases,
    /// instead of costing the requests a hash per change.
    pub(super) fn refresh_digests(&mut self) {
        self.refresh_some(self.epoch_refresh_budget());
    }

    fn epoch_refresh_budget(&self) -> usize {
        usize::try_from(self.config.epoch_us / 8).unwrap_or(usize::MAX).max(1024)
    }

    /// Before a round's comparison: eight epochs' worth of rehashing, or everything while
    /// catching up (what the last round brought must count, or the next round would fetch
    /// the same buckets again).
    fn refresh_for_round(&mut self) {
        let limit = if self.digests.gating() {
            usize::MAX
        } else {
            self.epoch_refresh_budget().saturating_mul(8)
        };
        self.refresh_some(limit);
        self.refresh_big();
    }

    fn refresh_some(&mut self, budget: usize) {
        if !self.digests.enabled {
            return;
        }
        for _ in 0..budget {
            let Some(key) = self.digests.stale.pop_front() else { break };
            if let Some(slot) = self.store.get_mut(&key[..]) {
                slot.stale = false;
                refresh(&mut self.digests, &key, slot, false);
            }
        }
    }

    /// Rehashes the big keys left for a round.
    fn refresh_big(&mut self) {
        let big = std::mem::take(&mut self.digests.stale_big);
        for key in big {
            if let Some(slot) = self.store.get_mut(&key[..]) {
                refresh(&mut self.digests, &key, slot, true);
            }
        }
    }

    /// The root hash of every range this actor owns (range end, root), without rehashing big
    /// keys changed since the last round (cheap enough to publish every epoch).
    pub fn published_roots(&mut self) -> Vec<(RangeId, u64)> {
        self.digests.roots()
    }

    /// Ranges still waiting for their first repair since a restart.
    pub fn unrepaired_ranges(&self) -> usize {
        if self.digests.gating() { self.digests.unrepaired } else { 0 }
    }

    /// The epoch's repair work: give up a round nobody answers, and start the next one when due.
    pub(super) fn repair_tick(&mut self, now: u64, out: &mut Vec<Output<V>>) {
        if !self.digests.enabled {
            return;
        }
        if let Some(until) = self.digests.catch_up_until
            && now >= until
        {
            self.digests.catch_up_until = None;
            self.stats.catch_up_expired += 1;
        }
        // Reads that waited too long for a replica are refused (retry); once catching up is
        // over, those still waiting are served here.
        if !self.digests.waiting_reads.is_empty() {
            let gating = self.digests.gating();
            let waiting = std::mem::take(&mut self.digests.waiting_reads);
            for (asker, request, since) in waiting {
                if !gating {
                    let response = self.execute(now, request);
                    self.answer(asker, response, out);
                } else if now >= since + CATCH_UP_READ_WAIT_US {
                    self.stats.refused += 1;
                    self.answer(asker, Response::Error(RequestError::CatchingUp), out);
                } else {
                    self.digests.waiting_reads.push((asker, request, since));
                }
            }
        }
        // Fetches nobody answered (the replica died after answering a round): refused.
        if !self.digests.catch_up_reads.is_empty() {
            let expired: Vec<Token> = self
                .digests
                .catch_up_reads
                .iter()
                .filter(|(_, (_, _, _, sent))| now >= sent + CATCH_UP_READ_WAIT_US)
                .map(|(&token, _)| token)
                .collect();
            for token in expired {
                if let Some((asker, _, _, _)) = self.digests.catch_up_reads.remove(&token) {
                    self.stats.refused += 1;
                    self.answer(asker, Response::Error(RequestError::CatchingUp), out);
                }
            }
        }
        let epoch = self.epoch;
        if !self.digests.hot_big.is_empty() && epoch.is_multiple_of(BIG_QUIET_EPOCHS) {
            self.digests.hot_big.retain(|_, at| epoch < *at + BIG_QUIET_EPOCHS);
        }
        if let Some(round) = &self.digests.round
            && if self.digests.gating() {
                now >= round.started_us + CATCH_UP_ROUND_TIMEOUT_US
            } else {
                self.epoch >= round.started + ROUND_TIMEOUT_EPOCHS
            }
        {
            self.digests.round = None;
            self.digests.again = None;
            self.stats.repair_timeouts += 1;
        }
        if self.digests.round.is_none() && now >= self.digests.next_round_at {
            self.start_round(now, out);
        }
    }

    fn start_round(&mut self, now: u64, out: &mut Vec<Output<V>>) {
        let digests = &mut self.digests;
        let count = digests.partners.len();
        let partner = match digests.again.take() {
            Some(peer) => digests.partners.iter().position(|(p, _)| *p == peer),
            None if digests.gating() => {
                (0..count).map(|i| (digests.cursor + i) % count).find(|&i| {
                    digests.partners[i].1.iter().any(|&r| !digests.ranges[r as usize].repaired)
                })
            }
            None => None,
        };
        let index = partner.unwrap_or(digests.cursor % count);
        digests.cursor = (index + 1) % count;
        let interval = if digests.gating() {
            self.config.epoch_us.min(CATCH_UP_ROUND_US)
        } else {
            let base = self.config.repair_interval_us.max(1);
            base / 2 + digests.next_random() % base.max(1)
        };
        digests.next_round_at = now + interval;
        self.refresh_for_round();
        let digests = &mut self.digests;
        let (peer, shared) = &digests.partners[index];
        let roots: Vec<(RangeId, u64)> = shared
            .iter()
            .map(|&r| {
                let range = &mut digests.ranges[r as usize];
                (range.end, range.root())
            })
            .collect();
        digests.rounds = digests.rounds.wrapping_add(1);
        let round = Round {
            peer: *peer,
            id: digests.rounds,
            started: self.epoch,
            started_us: now,
            want: Vec::new(),
            cut: false,
            unsettled: Vec::new(),
        };
        self.stats.repair_rounds += 1;
        self.stats.repair_bytes_out += 12 * roots.len() as u64;
        out.push(Output::Send {
            to: round.peer,
            message: PeerMessage::Repair(Repair::Roots {
                from: self.id,
                round: round.id,
                roots,
                flushes: self.flushes.known(),
            }),
        });
        self.digests.round = Some(round);
    }

    pub(super) fn receive_repair(
        &mut self,
        now: u64,
        message: Repair<V>,
        out: &mut Vec<Output<V>>,
    ) {
        if !self.digests.enabled {
            return;
        }
        let from = message.from();
        if !self.is_peer(from) {
            self.stats.unknown_senders += 1;
            return;
        }
        match message {
            Repair::Roots { round, roots, flushes, .. } => {
                // A flush missed (its message lost, this node down) is learned here, before
                // the comparison, so older states are not exchanged back.
                self.learn_flushes(now, &flushes, false);
                self.compare_roots(from, round, roots, out)
            }
            Repair::Buckets { round, equal, differing, unsettled, flushes, .. } => {
                self.learn_flushes(now, &flushes, false);
                self.compare_buckets(from, round, equal, differing, unsettled, out)
            }
            Repair::Exchange { round, want, states, .. } => {
                let (same, _) = self.merge_repaired(now, from, states);
                let masks = self.want_mask(from, &want);
                let picked = self.bucket_states(&masks, &same, from);
                out.push(Output::Send {
                    to: from,
                    message: PeerMessage::Repair(Repair::Reply {
                        from: self.id,
                        round,
                        states: picked.states,
                        complete: picked.complete,
                        deferred: picked.deferred,
                    }),
                });
            }
            Repair::Fetch { token, key, .. } => {
                let Some(index) = self.digests.shared_range_of(ring::position(&key), from) else {
                    return;
                };
                let settled = self.digests.ranges[index].repaired;
                let state = self.store.get(&key[..]).map(|slot| slot.value.clone());
                let limit = MAX_REPAIR_BYTES;
                let fits = state.as_ref().is_none_or(|v| size_within(&key, v, limit).is_some());
                if !fits {
                    // Too big for one message: the gossip link sends it whole, in parts.
                    self.links.entry(from).or_default().needs_whole.insert(key.clone());
                }
                let value = if fits { state } else { None };
                out.push(Output::Send {
                    to: from,
                    message: PeerMessage::Repair(Repair::Fetched {
                        from: self.id,
                        token,
                        key,
                        value,
                        whole: fits,
                        settled,
                    }),
                });
            }
            Repair::Fetched { token, key, value, whole, settled, .. } => {
                if settled && !self.digests.settled.contains(&from) {
                    self.digests.settled.push(from);
                }
                self.finish_catch_up_read(now, from, token, key, whole.then_some(value), out);
            }
            Repair::Reply { round, states, complete, deferred, .. } => {
                let Some(current) = self.digests.round.take_if(|r| r.peer == from && r.id == round)
                else {
                    return;
                };
                let (_, changed) = self.merge_repaired(now, from, states);
                if complete && !deferred {
                    for &index in &current.want {
                        let settled = !current.unsettled.contains(&index);
                        self.digests.mark_compared(index as usize, self.id, from, settled);
                    }
                }
                // The next round comes at once when something was cut short or this actor is
                // catching up (with the same replica), or when this round changed much here
                // (with the next replica, which probably missed the same writes).
                // (A replica that is catching up pulls what it lacks itself: it is not pushed
                // to round after round as well.)
                let cut = !complete || current.cut;
                if self.digests.gating() || (cut && current.unsettled.is_empty()) {
                    self.digests.again = Some(from);
                    self.digests.next_round_at = now;
                } else if changed >= FOLLOW_UP_CHANGES {
                    self.digests.next_round_at = now;
                }
            }
        }
    }

    /// The replica's side of a round's first step.
    fn compare_roots(
        &mut self,
        from: ActorId,
        round: u64,
        roots: Vec<(RangeId, u64)>,
        out: &mut Vec<Output<V>>,
    ) {
        self.refresh_for_round();
        let mut equal = Vec::new();
        let mut differing = Vec::new();
        let mut unsettled = Vec::new();
        for (end, root) in roots {
            let Some(index) = self.digests.shared_range(end, from) else { continue };
            let range = &mut self.digests.ranges[index];
            self.stats.repair_ranges_compared += 1;
            if !range.repaired {
                unsettled.push(end);
            }
            if range.root() == root {
                equal.push(end);
            } else if differing.len() < MAX_DIFFERING_PER_ANSWER {
                differing.push((end, range.buckets.to_vec()));
            }
        }
        self.stats.repair_ranges_differing += differing.len() as u64;
        self.stats.repair_bytes_out += 4 * equal.len() as u64 + 2052 * differing.len() as u64;
        out.push(Output::Send {
            to: from,
            message: PeerMessage::Repair(Repair::Buckets {
                from: self.id,
                round,
                equal,
                differing,
                unsettled,
                flushes: self.flushes.known(),
            }),
        });
    }

    /// The initiator's side of the second step: send its keys of the differing buckets.
    fn compare_buckets(
        &mut self,
        from: ActorId,
        round: u64,
        equal: Vec<RangeId>,
        differing: Vec<(RangeId, Vec<u64>)>,
        unsettled: Vec<RangeId>,
        out: &mut Vec<Output<V>>,
    ) {
        if !self.digests.round.as_ref().is_some_and(|r| r.peer == from && r.id == round) {
            return;
        }
        let unsettled: Vec<u32> = unsettled
            .iter()
            .filter_map(|&end| self.digests.shared_range(end, from))
            .map(|i| i as u32)
            .collect();
        if unsettled.is_empty() && !self.digests.settled.contains(&from) {
            self.digests.settled.push(from);
        }
        for end in equal {
            if let Some(index) = self.digests.shared_range(end, from) {
                let settled = !unsettled.contains(&(index as u32));
                self.digests.mark_compared(index, self.id, from, settled);
            }
        }
        let mut masks = vec![[0_u64; 4]; self.digests.ranges.len()];
        for (end, theirs) in differing {
            let Some(index) = self.digests.shared_range(end, from) else { continue };
            if theirs.len() != BUCKETS {
                continue;
            }
            let ours = &self.digests.ranges[index].buckets;
            for (b, (a, t)) in ours.iter().zip(&theirs).enumerate() {
                if a != t {
                    masks[index][b / 64] |= 1 << (b % 64);
                }
            }
        }
        if masks.iter().all(|m| *m == [0; 4]) {
            self.digests.round = None;
            return;
        }
        let picked = self.bucket_states(&masks, &HashSet::default(), from);
        let want: Vec<(RangeId, BucketMask)> = picked
            .covered
            .iter()
            .map(|&(index, mask)| (self.digests.ranges[index as usize].end, mask))
            .collect();
        let current = self.digests.round.as_mut().expect("checked above");
        current.want = picked.covered.iter().map(|&(index, _)| index).collect();
        current.cut = !picked.complete;
        current.unsettled = unsettled;
        self.stats.repair_bytes_out += 36 * want.len() as u64;
        out.push(Output::Send {
            to: from,
            message: PeerMessage::Repair(Repair::Exchange {
                from: self.id,
                round,
                want,
                states: picked.states,
            }),
        });
    }

    /// The buckets `from` asks for, as a mask per owned range (only ranges it shares).
    fn want_mask(&self, from: ActorId, want: &[(RangeId, BucketMask)]) -> Vec<BucketMask> {
        let mut masks = vec![[0_u64; 4]; self.digests.ranges.len()];
        for &(end, mask) in want {
            if let Some(index) = self.digests.shared_range(end, from) {
                masks[index] = mask;
            }
        }
        masks
    }

    /// The states of the keys in the buckets of `masks` (except `skip`), whole buckets in
    /// (range, bucket) order until the byte budget is spent, so that every round settles at
    /// least one bucket both ways and a gap of any size closes. Big states are not sent here:
    /// the gossip link to `to` sends them whole, in parts (or they are changing right now and
    /// their deltas are in flight); either way their buckets count as deferred.
    fn bucket_states(
        &mut self,
        masks: &[BucketMask],
        skip: &HashSet<Key, StoreHasher>,
        to: ActorId,
    ) -> Picked<V> {
        let budget = self.config.repair_bytes_per_round.clamp(1, MAX_REPAIR_BYTES);
        let mut picked =
            Picked { states: Vec::new(), covered: Vec::new(), complete: true, deferred: false };
        if masks.iter().all(|m| *m == [0; 4]) {
            return picked;
        }
        // The keys of the wanted buckets, grouped by (range, bucket).
        let mut groups: std::collections::BTreeMap<(u32, u16), Vec<&StoreKey>> =
            std::collections::BTreeMap::new();
        for key in self.store.keys() {
            let position = ring::position(key);
            let Some(index) = self.digests.range_index(position) else { continue };
            let bucket = bucket_of(position);
            if masks[index][bucket / 64] & (1 << (bucket % 64)) != 0 && !skip.contains(&key[..]) {
                groups.entry((index as u32, bucket as u16)).or_default().push(key);
            }
        }
        // Buckets with no key here still count as covered (the other side's keys come back).
        let mut wanted: Vec<(u32, u16)> = Vec::new();
        for (index, mask) in masks.iter().enumerate() {
            for bucket in 0..BUCKETS {
                if mask[bucket / 64] & (1 << (bucket % 64)) != 0 {
                    wanted.push((index as u32, bucket as u16));
                }
            }
        }
        let mut bytes = 0_usize;
        let mut owe = Vec::new();
        let mut covered: std::collections::BTreeMap<u32, BucketMask> =
            std::collections::BTreeMap::new();
        for (index, bucket) in wanted {
            let keys = groups.get(&(index, bucket)).map_or(&[][..], Vec::as_slice);
            let mut group = Vec::new();
            let mut group_bytes = 0_usize;
            for key in keys {
                let Some(slot) = self.store.get(&key[..]) else { continue };
                let key = Key::copy_from_slice(key);
                let big = slot.value.weight() >= DELTA_MIN_WEIGHT;
                match size_within(&key, &slot.value, MAX_REPAIR_BYTES) {
                    Some(len) if !big => {
                        group_bytes += len;
                        group.push((key, slot.value.clone()));
                    }
                    _ => {
                        picked.deferred = true;
                        let hot = self
                            .digests
                            .hot_big
                            .get(&key[..])
                            .is_some_and(|&at| self.epoch < at + BIG_QUIET_EPOCHS);
                        if hot {
                            self.stats.repair_hot_skipped += 1;
                        } else {
                            owe.push(key);
                        }
                    }
                }
            }
            if !covered.is_empty() && bytes + group_bytes > budget {
                picked.complete = false;
                break;
            }
            bytes += group_bytes;
            picked.states.extend(group);
            covered.entry(index).or_insert([0; 4])[usize::from(bucket) / 64] |=
                1 << (usize::from(bucket) % 64);
        }
        if !owe.is_empty() {
            let link = self.links.entry(to).or_default();
            self.stats.repair_big_to_gossip += owe.len() as u64;
            link.needs_whole.extend(owe);
        }
        picked.covered = covered.into_iter().collect();
        self.stats.repair_keys_out += picked.states.len() as u64;
        self.stats.repair_bytes_out += bytes as u64;
        picked
    }

    /// Merges states a repair from `from` brought, as gossip entries are merged (only keys of
    /// ranges both own); returns the keys whose state here now equals what was sent (the
    /// sender has them already) and how many keys changed here.
    fn merge_repaired(
        &mut self,
        now: u64,
        from: ActorId,
        states: Vec<(Key, V)>,
    ) -> (HashSet<Key, StoreHasher>, u64) {
        let horizon = now.saturating_add(self.config.max_clock_ahead_us);
        let mut same = HashSet::with_hasher(StoreHasher::default());
        let mut changes = 0;
        self.stats.repair_keys_in += states.len() as u64;
        for (key, value) in states {
            if self.digests.shared_range_of(ring::position(&key), from).is_none() {
                continue;
            }
            let Some(newest) = self.admit_from_peer(&key, &value, horizon) else { continue };
            self.observe(newest);
            let (changed, to_tombstone, logged) = match self.store.get_mut(&key[..]) {
                Some(slot) => {
                    let before = expiry::Facts::of(&slot.value);
                    let changed = slot.value.merge_ref(&value);
                    if changed {
                        self.tracked.track(&key, before, expiry::Facts::of(&slot.value));
                    }
                    if slot.value == value {
                        same.insert(key.clone());
                    }
                    let to_tombstone = changed
                        && slot.value.tombstone_stamp().is_some()
                        && !std::mem::replace(&mut slot.dirty, true);
                    let big = slot.value.weight() >= DELTA_MIN_WEIGHT;
                    (changed, to_tombstone, big.then_some(value))
                }
                None => {
                    // A key freed here lately: a state no newer than its tombstone is a late
                    // copy from before the delete, not something to bring back.
                    if value.is_bottom() || self.freed_after(&key, &value) {
                        same.insert(key.clone());
                        (false, false, None)
                    } else {
                        let tombstone = value.tombstone_stamp().is_some();
                        self.tracked.track(&key, expiry::Facts::ABSENT, expiry::Facts::of(&value));
                        self.store.insert(
                            StoreKey::new(&key),
                            Slot { value, dirty: tombstone, shipped: 0, digest: 0, stale: false },
                        );
                        (true, tombstone, None)
                    }
                }
            };
            if changed {
                changes += 1;
                self.stats.repair_keys_changed += 1;
                self.journal(&key, logged);
                self.mark_stale(&key);
            }
            if to_tombstone {
                self.changeset.push(key);
            }
        }
        (same, changes)
    }

    /// While catching up, a read of a key whose range is not repaired yet first fetches the
    /// key's state from a replica on another node (`Ok(None)`: the answer comes when it
    /// arrives, see [`finish_catch_up_read`](Self::finish_catch_up_read)), or waits a moment
    /// for one to answer this node at all; `Err` gives the request back to serve here at once
    /// (not a read, a repaired range, a key with no other replica).
    pub(super) fn catch_up_read(
        &mut self,
        now: u64,
        token: Token,
        origin: Option<ActorId>,
        request: Request<V>,
        out: &mut Vec<Output<V>>,
    ) -> Result<Option<Response<V>>, Request<V>> {
        let reads = match &request {
            Request::Get { .. } => true,
            Request::Apply { op, .. } => V::op_reads_only(op),
            _ => false,
        };
        if !reads {
            return Err(request);
        }
        let position = ring::position(request.key());
        let Some(index) = self.digests.range_index(position) else { return Err(request) };
        let range = &self.digests.ranges[index];
        if range.repaired || range.peers.is_empty() {
            return Err(request);
        }
        // A replica that answered this life's own requests (a peer's first answers to a
        // restarted node are lost until its connection to the new process is up), on another
        // node if the range has one (this node's other actors restarted too), preferably one
        // not catching up itself.
        let me = self.id.node;
        let others = range.peers.iter().any(|p| p.node != me);
        let candidates: Vec<ActorId> = range
            .peers
            .iter()
            .copied()
            .filter(|p| (!others || p.node != me) && self.digests.heard.contains(p))
            .collect();
        let peer = candidates
            .iter()
            .find(|p| self.digests.settled.contains(p))
            .or(candidates.first())
            .copied();
        let Some(peer) = peer else {
            // Nobody answered yet (the node just started): wait a moment for a replica.
            self.digests.waiting_reads.push(((origin, token), request, now));
            return Ok(None);
        };
        self.stats.catch_up_forwards += 1;
        let ours = self.next_forward_token;
        self.next_forward_token = self.next_forward_token.wrapping_add(1);
        let key = request.key().clone();
        self.digests.catch_up_reads.insert(ours, ((origin, token), request, peer, now));
        out.push(Output::Send {
            to: peer,
            message: PeerMessage::Repair(Repair::Fetch { from: self.id, token: ours, key }),
        });
        Ok(None)
    }

    /// The replica's answer to a catch-up read: its state is merged here (the read repairs
    /// the key), then the read runs here, so it sees both what this node took since its
    /// restart (its clients' own writes) and what the replica has. `value` is `None` when the
    /// state was too big to fetch (it comes by gossip): the read is refused, to be retried.
    fn finish_catch_up_read(
        &mut self,
        now: u64,
        from: ActorId,
        token: Token,
        key: Key,
        value: Option<Option<V>>,
        out: &mut Vec<Output<V>>,
    ) {
        // Only the answer of the replica asked, about the key asked.
        let matches = self
            .digests
            .catch_up_reads
            .get(&token)
            .is_some_and(|(_, request, asked, _)| *asked == from && *request.key() == key);
        if !matches {
            return;
        }
        let Some((asker, request, _, _)) = self.digests.catch_up_reads.remove(&token) else {
            return;
        };
        let response = match value {
            Some(value) => {
                if let Some(value) = value {
                    self.merge_repaired(now, from, vec![(key, value)]);
                }
                self.execute(now, request)
            }
            None => {
                self.stats.refused += 1;
                Response::Error(RequestError::CatchingUp)
            }
        };
        self.answer(asker, response, out);
    }

    /// Sends `response` to whoever asked.
    fn answer(&mut self, (origin, token): Asker, response: Response<V>, out: &mut Vec<Output<V>>) {
        match origin {
            None => out.push(Output::Reply { token, response }),
            Some(origin) if origin == self.id => self.finish_forward(token, response, out),
            Some(origin) => out.push(Output::Send {
                to: origin,
                message: PeerMessage::ForwardReply { clock: self.last_stamp_time, token, response },
            }),
        }
    }

    /// A replica answered for the first time: the reads waiting for one go on.
    pub(super) fn release_waiting_reads(&mut self, now: u64, out: &mut Vec<Output<V>>) {
        let waiting = std::mem::take(&mut self.digests.waiting_reads);
        for ((origin, token), request, since) in waiting {
            let before = self.digests.waiting_reads.len();
            match self.catch_up_read(now, token, origin, request, out) {
                Ok(Some(response)) => self.answer((origin, token), response, out),
                Ok(None) => {
                    // Still waiting (no replica of its range answered yet): keep its arrival.
                    if self.digests.waiting_reads.len() > before
                        && let Some(last) = self.digests.waiting_reads.last_mut()
                    {
                        last.2 = since;
                    }
                }
                Err(request) => {
                    let response = self.execute(now, request);
                    self.answer((origin, token), response, out);
                }
            }
        }
    }
}

/// What [`Actor::bucket_states`] picked.
struct Picked<V> {
    states: Vec<(Key, V)>,
    /// The buckets fully included, per range index.
    covered: Vec<(u32, BucketMask)>,
    /// Every wanted bucket was covered.
    complete: bool,
    /// Big states of covered buckets were left to gossip.
    deferred: bool,
}
