//! The actor's side of epoch gossip: batches out at each epoch (one per destination, the
//! changed keys' current states), retransmission until acknowledged, receipt of peers' batches
//! (bounded per peer, low-water marks, restarts, stamps from the future refused), and the
//! reclamation of deleted keys once every replica is known to have the tombstone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::{Actor, ActorStats, DELTA_MIN_WEIGHT, Slot, expiry};
use crate::message::{Gossip, Output, PeerMessage};
use crate::ring::{ActorId, Key, NodeIndex};
use crate::small_bytes::StoreKey;
use crate::value::KvsValue;
use lattice_core::Stamp;

/// A batch sent and not yet acknowledged.
#[derive(Debug)]
pub(super) struct Unacked<V> {
    /// Its keys, each with what a resend sends again: `None` for the key's then-current
    /// state, `Some` for a delta or a part of a big state (kept as sent).
    entries: Vec<(Key, Option<Box<V>>)>,
    /// Encoded bytes of the kept deltas and parts.
    kept_bytes: usize,
    /// Epoch of the next resend.
    due: u64,
    /// Resends so far.
    resends: u32,
    /// Epoch (plus one) it was first sent at.
    pub(super) sent: u64,
}

/// What this actor knows about its traffic with one other actor.
#[derive(Debug)]
pub(super) struct PeerLink<V> {
    /// Sequence number of the next batch to it.
    next_seq: u64,
    /// Batches sent and not yet acknowledged, by seq.
    pub(super) unacked: BTreeMap<u64, Unacked<V>>,
    /// The latest epoch whose batch to it was given up on (0: none): what was in it may never
    /// have arrived.
    lost_through: u64,
    /// Keys held in `unacked`.
    unacked_keys: usize,
    /// Bytes of deltas and parts held in `unacked`.
    unacked_bytes: usize,
    /// Big keys some of whose deltas to it were given up, or whose state outgrew a resend: it
    /// may lack part of their state, so it gets their whole state again once it keeps up.
    pub(super) needs_whole: BTreeSet<Key>,
    /// Highest seq such that every batch from it up to there has arrived.
    received_contiguous: u64,
    /// Batches from it that arrived above `received_contiguous`.
    received_ahead: BTreeSet<u64>,
    /// Whether it acknowledged anything since the last resend: a live peer gets a burst of
    /// overdue batches, a silent one (partitioned, paused, dead) one probe per round.
    acked_since_resend: bool,
}

impl<V> Default for PeerLink<V> {
    fn default() -> Self {
        Self {
            next_seq: 0,
            unacked: BTreeMap::new(),
            lost_through: 0,
            unacked_keys: 0,
            unacked_bytes: 0,
            needs_whole: BTreeSet::new(),
            received_contiguous: 0,
            received_ahead: BTreeSet::new(),
            acked_since_resend: false,
        }
    }
}

/// Most bytes of one gossip batch: a batch is packed below this, far under the message limit
/// ([`crate::wire::MAX_MESSAGE_BYTES`]); one entry bigger than it travels alone.
pub const GOSSIP_BATCH_BYTES: usize = 4 << 20;
/// A state or delta bigger than this is cut into parts ([`KvsValue::split`]) of about this size.
pub const PART_BYTES: usize = 1 << 20;
/// Whole states sent per epoch to a peer that lost deltas of big keys.
const WHOLE_REPAIRS_PER_EPOCH: usize = 16;

/// One entry of a batch being packed: a key, what is sent for it, its encoded size, and
/// whether the batch keeps it for resending (deltas and parts) or resends the key's state.
struct Entry<V> {
    key: Key,
    value: V,
    len: usize,
    keep: bool,
}

/// Most overdue batches resent to one live peer per round.
const RESEND_BURST: usize = 16;
/// A batch's resend interval doubles after each resend, at most this many times (3 epochs
/// becomes 96: 4.8 s at the default 50 ms).
const MAX_BACKOFF_DOUBLINGS: u32 = 5;

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

impl<V: KvsValue> PeerLink<V> {
    /// What batch `seq` is, with a window of `window` batches above the contiguous ones.
    fn receipt(&self, seq: u64, window: u64) -> Receipt {
        if seq <= self.received_contiguous || self.received_ahead.contains(&seq) {
            Receipt::Duplicate
        } else if seq - self.received_contiguous > window {
            Receipt::TooFarAhead
        } else {
            Receipt::New
        }
    }

    /// Records batch `seq` (a [`Receipt::New`] one) as received.
    fn record_received(&mut self, seq: u64) {
        self.received_ahead.insert(seq);
        while self.received_ahead.remove(&(self.received_contiguous + 1)) {
            self.received_contiguous += 1;
        }
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

    /// Its peer left the ring: nothing more is sent to it (what it had not acknowledged never
    /// will be), but the numbering is kept both ways, so if it comes back (a member taken out
    /// while it was in fact alive) neither side mistakes new batches for ones seen before.
    pub(super) fn park(&mut self) {
        self.unacked.clear();
        self.unacked_keys = 0;
        self.unacked_bytes = 0;
        self.needs_whole.clear();
    }

    /// The lowest batch this side may still send again: the oldest unacknowledged one, or
    /// the next one.
    fn low_water(&self) -> u64 {
        self.unacked.first_key_value().map_or(self.next_seq + 1, |(&seq, _)| seq)
    }
}

/// A tombstone waiting until it is safe to free.
#[derive(Debug)]
pub(super) struct PendingTombstone {
    key: Key,
    stamp: Stamp,
    /// Per other owner: the batch that carried the tombstone, and once acknowledged, the seq of
    /// that owner's own batches this actor must have received.
    peers: Vec<(ActorId, u64, Option<u64>)>,
}

/// A key this actor holds but no longer owns (the ring changed), sent to its owners: it is
/// dropped here once every one of them has acknowledged the batch that carried it.
#[derive(Debug)]
pub(super) struct PendingHandoff {
    key: Key,
    /// Per owner: the batch that carried the key, and whether it was acknowledged.
    peers: Vec<(ActorId, u64, bool)>,
}

/// For this many epochs after a ring change, keys arriving by gossip are checked for
/// ownership (a peer still routing by the old ring may send this actor keys it no longer
/// owns): those are passed on to their owners.
const RING_CHANGE_EPOCHS: u64 = 100;

impl<V: KvsValue> Actor<V> {
    /// Whether `actor` is another actor of the cluster (only those get per-peer state).
    pub(super) fn is_peer(&self, actor: ActorId) -> bool {
        actor != self.id && self.topology.has_actor(actor)
    }

    /// After a ring change: deletes waiting for acknowledgements stop waiting for owners that
    /// left, and go out again (at the next epoch) to every owner under the new ring.
    pub(super) fn resend_pending_tombstones(&mut self) {
        let keys: Vec<Key> = self.tombstones.iter().map(|t| t.key.clone()).collect();
        let topology = Arc::clone(&self.topology);
        for pending in &mut self.tombstones {
            pending.peers.retain(|(peer, _, _)| topology.has_actor(*peer));
        }
        // Hand-offs in flight are redone against the new owners.
        self.handoffs.clear();
        for key in keys {
            self.mark_whole(key);
        }
    }

    /// Forgets which batches arrived from the actors of `node`, which restarted: its new life
    /// numbers its batches from 1 again (each batch's low-water mark then moves the receipt
    /// window to where its numbering is).
    pub fn forget_receipts_from(&mut self, node: NodeIndex) {
        // Its new life numbers its forwards from 0 again: they are not duplicates of the old.
        self.executed_forwards.retain(|(origin, _), _| origin.node != node);
        for (peer, link) in &mut self.links {
            if peer.node == node {
                link.received_contiguous = 0;
                link.received_ahead.clear();
            }
        }
        // Tombstones waiting on that node's old numbering would wait forever: gossip them
        // again, so they wait on its new one.
        let waiting: Vec<Key> = self
            .tombstones
            .iter()
            .filter(|pending| pending.peers.iter().any(|(peer, _, _)| peer.node == node))
            .map(|pending| pending.key.clone())
            .collect();
        for key in waiting {
            self.mark_whole(key);
        }
        // Its new life may have come back without part of what it had (a log that was not
        // synced, an empty directory): big keys travel as deltas, which would never fill that
        // in, so it is owed their whole states. Small keys are whole in every batch anyway.
        let mut owners = std::mem::take(&mut self.owners_buf);
        for (key, slot) in &self.store {
            if slot.value.weight() < DELTA_MIN_WEIGHT {
                continue;
            }
            let over = self.overrides.get(&key[..]).copied();
            self.topology.owners_into(key, over, &mut owners);
            for owner in owners.iter().filter(|o| o.node == node) {
                let key = Key::copy_from_slice(key);
                self.links.entry(*owner).or_default().needs_whole.insert(key);
            }
        }
        self.owners_buf = owners;
    }

    /// How many other nodes are known to hold `key`'s state as of its last change here: the
    /// owners on other nodes whose acknowledgement of the gossip batch that last carried it
    /// came back (acknowledgements leave a node only once its log has what they confirm).
    /// A key changed since its last batch counts none, and so does one this actor never
    /// gossiped itself (not held, or only received from a peer): it cannot vouch for it. A
    /// key freed after every replica acknowledged its delete counts every other owner. Only
    /// the key's base owners are counted: replicas a hot-key override added later may never
    /// have been sent the batch. `WAIT` polls this.
    pub fn replicated(&mut self, key: &[u8]) -> u32 {
        let mut owners = std::mem::take(&mut self.owners_buf);
        self.topology.owners_into(key, None, &mut owners);
        let me = self.id.node;
        let mut nodes: Vec<NodeIndex> =
            owners.iter().map(|o| o.node).filter(|&n| n != me).collect();
        nodes.sort_unstable();
        nodes.dedup();
        let count = match self.store.get(key) {
            None if self.recently_freed.contains_key(key) => nodes.len(),
            None => 0,
            Some(slot) if slot.dirty || slot.shipped == 0 => 0,
            Some(slot) => {
                // `shipped` keeps the low 32 bits of epoch + 1: rebuild the full number (a
                // batch is acknowledged or given up long before 2^32 epochs pass).
                let now = self.epoch + 1;
                let age = u64::from((now as u32).wrapping_sub(slot.shipped));
                let epoch = now.saturating_sub(age);
                // A delta vouches only with every batch before it: nothing still awaited up
                // to that epoch, and nothing owed whole.
                let acked = |owner: &ActorId| {
                    self.links.get(owner).is_some_and(|link| {
                        link.lost_through < epoch
                            && !link.unacked.values().any(|batch| batch.sent <= epoch)
                            && !link.needs_whole.contains(key)
                    })
                };
                nodes
                    .iter()
                    .filter(|&&node| owners.iter().any(|o| o.node == node && acked(o)))
                    .count()
            }
        };
        self.owners_buf = owners;
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    pub(super) fn receive_gossip(&mut self, now: u64, gossip: Gossip<V>, out: &mut Vec<Output<V>>) {
        let Gossip { from, seq, low_water, updates, overrides } = gossip;
        if !self.is_peer(from) {
            self.stats.unknown_senders += 1;
            return;
        }
        let window = self.config.max_receipts_ahead.max(1);
        let horizon = now.saturating_add(self.config.max_clock_ahead_us);
        let link = self.links.entry(from).or_default();
        link.advance_to(low_water.min(seq));
        let receipt = link.receipt(seq, window);
        if receipt == Receipt::TooFarAhead {
            self.stats.gossip_refused_ahead += 1;
            return;
        }
        self.stats.gossip_in += 1;
        self.stats.gossip_entries_in += updates.len() as u64;
        let is_future = |value: &V| value.newest_stamp().is_some_and(|stamp| stamp.time > horizon);
        // A batch with a write stamped too far ahead is neither recorded nor acknowledged, so
        // its sender resends it until the stamp is within reach (a clock a little ahead
        // catches up; one far off stalls only that sender's batches, counted). Its other
        // entries are applied now: merging twice is harmless, and nothing is freed on the
        // strength of an unrecorded batch.
        let postponed = receipt == Receipt::New && updates.iter().any(|(_, v)| is_future(v));
        if receipt == Receipt::New && !postponed {
            link.record_received(seq);
        }
        if !postponed {
            // Always acknowledge (the first ack may have been lost)...
            let sent_to_you = link.next_seq;
            out.push(Output::Send {
                to: from,
                message: PeerMessage::Ack { from: self.id, seq, sent_to_you },
            });
        }
        // ...but apply a batch once: a late duplicate may predate a tombstone freed since.
        // (A resend reuses its seq; whatever changed after the first send went out in a newer
        // batch, because every change marks its key for the next epoch.)
        if receipt == Receipt::Duplicate {
            return;
        }
        // After a ring change (or while leaving the cluster) a peer routing by its older ring
        // may send keys this actor no longer owns.
        let checking = !self.owns_everything()
            && (self.ring_changed_at.is_some_and(|at| self.epoch < at + RING_CHANGE_EPOCHS)
                || !self.topology.has_actor(self.id));
        for (key, value) in updates {
            let Some(newest) = self.admit_from_peer(&key, &value, horizon) else { continue };
            if checking
                && !self.owns_slow(&key)
                && self.topology.is_owner(from, &key, self.overrides.get(&key).copied())
            {
                // Not ours, and its sender owns it: it is there already, and the other owners
                // get it from it. (A key whose sender does not own it either is kept and handed
                // on, below.) A copy still held here, waiting to be handed off, takes it in:
                // it must never be older than what an owner has (a read forwarded from here
                // sends it ahead, and an owner may have freed a delete it carried).
                let changed = self.store.get_mut(&key[..]).is_some_and(|slot| {
                    let before = expiry::Facts::of(&slot.value);
                    let changed = slot.value.merge_ref(&value);
                    if changed {
                        self.tracked.track(&key, before, expiry::Facts::of(&slot.value));
                    }
                    changed
                });
                if changed {
                    self.mark_stale(&key);
                    self.journal(&key, None);
                }
                continue;
            }
            self.observe(newest);
            self.stats.merges += 1;
            // Into a big state, what arrived (a delta, a part) is what the log records.
            let mut logged = None;
            let (changed, changed_to_tombstone) = match self.store.get_mut(&key[..]) {
                Some(slot) => {
                    let before = expiry::Facts::of(&slot.value);
                    let changed = if slot.value.weight() >= DELTA_MIN_WEIGHT {
                        let changed = slot.value.merge_ref(&value);
                        logged = Some(value);
                        if changed {
                            self.digests.touch(&key, self.epoch);
                        }
                        changed
                    } else {
                        slot.value.merge(value)
                    };
                    self.stats.merges_changed += u64::from(changed);
                    if changed {
                        self.tracked.track(&key, before, expiry::Facts::of(&slot.value));
                    }
                    // Its digest is rehashed later (no second lookup here).
                    if changed && self.digests.enabled && !std::mem::replace(&mut slot.stale, true)
                    {
                        self.digests.stale.push_back(key.clone());
                    }
                    // Tombstones are passed on by every replica that learns of them, so each
                    // replica can track the acknowledgements it needs before freeing the key.
                    let to_tombstone = changed
                        && slot.value.tombstone_stamp().is_some()
                        && !std::mem::replace(&mut slot.dirty, true);
                    (changed, to_tombstone)
                }
                None => {
                    // A key freed here lately: a state no newer than its tombstone (the
                    // tombstone itself from another replica, or a copy from before the delete
                    // that took another way here: a hand-off, a forward, a resend after a ring
                    // change) is not brought back, as in repair.
                    if value.is_bottom() || self.freed_after(&key, &value) {
                        (false, false)
                    } else {
                        self.stats.merges_changed += 1;
                        let tombstone = value.tombstone_stamp().is_some();
                        let stale = self.digests.enabled;
                        if stale {
                            self.digests.stale.push_back(key.clone());
                        }
                        self.tracked.track(&key, expiry::Facts::ABSENT, expiry::Facts::of(&value));
                        self.store.insert(
                            StoreKey::new(&key),
                            Slot { value, dirty: tombstone, shipped: 0, stale, digest: 0 },
                        );
                        (true, tombstone)
                    }
                }
            };
            if changed && checking && !self.owns_slow(&key) {
                // Sent by a peer routing by the old ring: hand it on to its owners.
                self.disowned = true;
                self.mark_whole(key.clone());
            }
            if changed {
                self.journal(&key, logged);
            }
            if changed_to_tombstone {
                self.changeset.push(key);
            }
        }
        for (key, level) in overrides {
            self.merge_override(key, level);
        }
    }

    pub(super) fn receive_ack(&mut self, from: ActorId, seq: u64, sent_to_you: u64) {
        let Some(link) = self.links.get_mut(&from) else {
            self.stats.unknown_senders += u64::from(!self.is_peer(from));
            return;
        };
        link.acked_since_resend = true;
        // Only an acknowledgement of a batch still awaited counts for tombstones: one of a
        // batch given up on may come from a receiver that never applied it (it was below the
        // low-water mark when it arrived).
        let Some(batch) = link.unacked.remove(&seq) else { return };
        link.unacked_keys -= batch.entries.len();
        link.unacked_bytes -= batch.kept_bytes;
        for pending in &mut self.handoffs {
            for (peer, batch, acked) in &mut pending.peers {
                if *peer == from && *batch == seq {
                    *acked = true;
                }
            }
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
    ///
    /// Each changed key goes to its other owners as the deltas gathered since the last epoch
    /// (big states) or its whole state (small ones, and any change without a delta); what is
    /// bigger than [`PART_BYTES`] goes in parts, and each destination's entries are packed into
    /// batches below [`GOSSIP_BATCH_BYTES`], so no message outgrows what a peer accepts.
    pub(super) fn epoch_work(&mut self, out: &mut Vec<Output<V>>) {
        let mut outgoing: BTreeMap<ActorId, Vec<Entry<V>>> = BTreeMap::new();
        let mut new_tombstones = Vec::new();
        let mut new_handoffs: Vec<(Key, Vec<ActorId>)> = Vec::new();
        let changeset = std::mem::take(&mut self.changeset);
        let mut owners = std::mem::take(&mut self.owners_buf);
        for key in &changeset {
            let delta = if self.deltas.is_empty() { None } else { self.deltas.remove(key) };
            let Some(slot) = self.store.get_mut(&key[..]) else { continue };
            slot.dirty = false;
            // Its digest is rehashed later, a bounded number of keys per epoch.
            if self.digests.enabled && !std::mem::replace(&mut slot.stale, true) {
                self.digests.stale.push_back(key.clone());
            }
            // The low 32 bits (see `replicated`); never 0, which means "never shipped".
            slot.shipped = ((self.epoch + 1) as u32).max(1);
            let over = self.overrides.get(key).copied();
            self.topology.owners_into(key, over, &mut owners);
            if owners.iter().any(|&o| o != self.id) {
                let is_delta = delta.is_some();
                self.stats.gossip_deltas_out += u64::from(is_delta);
                if is_delta {
                    // Its deltas are in flight: repair leaves it alone for a while.
                    self.digests.touch(key, self.epoch);
                }
                let payload = delta.unwrap_or_else(|| slot.value.clone());
                // A resend sends what is kept, else the key's state then. A collection is
                // kept as sent: it may be big by the time a slow peer needs a resend, and
                // its later changes travel in later batches anyway.
                let keep = is_delta || payload.weight() > 1;
                let pieces = pieces(key, payload, keep, &mut self.stats);
                for &owner in owners.iter().filter(|&&o| o != self.id) {
                    let entries = outgoing.entry(owner).or_default();
                    for (value, len, keep) in &pieces {
                        let (value, len, keep) = (value.clone(), *len, *keep);
                        entries.push(Entry { key: key.clone(), value, len, keep });
                    }
                }
            }
            if let Some(stamp) = slot.value.tombstone_stamp() {
                let peers: Vec<ActorId> =
                    owners.iter().copied().filter(|&o| o != self.id).collect();
                new_tombstones.push((key.clone(), stamp, peers));
            } else if !owners.contains(&self.id) {
                // No longer ours (the ring changed): dropped once its owners have it.
                new_handoffs.push((key.clone(), owners.clone()));
            }
        }
        self.owners_buf = owners;
        self.refresh_digests();
        self.changeset = changeset;
        self.changeset.clear();
        self.repair_whole_states(&mut outgoing);

        // Overrides go to every actor: any of them may route a request for the key.
        let override_changes = std::mem::take(&mut self.override_changes);
        if !override_changes.is_empty() {
            let everyone: Vec<ActorId> =
                self.topology.all_actors().filter(|&a| a != self.id).collect();
            for actor in everyone {
                outgoing.entry(actor).or_default();
            }
        }

        let tombstone_keys: BTreeSet<&Key> = new_tombstones.iter().map(|(k, _, _)| k).collect();
        let handoff_keys: BTreeSet<&Key> = new_handoffs.iter().map(|(k, _)| k).collect();
        let mut sent_seq: HashMap<(ActorId, Key), u64> = HashMap::new();
        // Every batch that carried a handed-off key (a big state goes in parts, maybe in
        // several batches): all must be acknowledged before the key is dropped here.
        let mut handoff_seqs: HashMap<(ActorId, Key), Vec<u64>> = HashMap::new();
        let wait = self.config.retransmit_after_epochs.max(1);
        let now = self.epoch + 1;
        for (to, entries) in outgoing {
            let link = self.links.entry(to).or_default();
            for (index, batch) in pack(entries).into_iter().enumerate() {
                link.next_seq += 1;
                let seq = link.next_seq;
                let mut kept_bytes = 0;
                let mut kept = Vec::with_capacity(batch.len());
                let mut updates = Vec::with_capacity(batch.len());
                for Entry { key, value, len, keep } in batch {
                    if tombstone_keys.contains(&key) {
                        sent_seq.insert((to, key.clone()), seq);
                    }
                    if handoff_keys.contains(&key) {
                        let seqs = handoff_seqs.entry((to, key.clone())).or_default();
                        if seqs.last() != Some(&seq) {
                            seqs.push(seq);
                        }
                    }
                    if keep {
                        kept_bytes += len;
                        kept.push((key.clone(), Some(Box::new(value.clone()))));
                    } else {
                        kept.push((key.clone(), None));
                    }
                    updates.push((key, value));
                }
                link.unacked_keys += kept.len();
                link.unacked_bytes += kept_bytes;
                let batch = Unacked {
                    entries: kept,
                    kept_bytes,
                    due: self.epoch + wait,
                    resends: 0,
                    sent: now,
                };
                link.unacked.insert(seq, batch);
                // Never a batch of this epoch: its receiver must be able to apply it (and a
                // big state's parts all travel together).
                // Only batches that had their time to be acknowledged: never those of this
                // epoch (a receiver must be able to apply what it gets, and a big state's
                // parts go out together), nor any a peer acknowledging normally would still
                // have in flight (giving those up would send big states again and again).
                while (link.unacked_keys > self.config.max_unacked_keys_per_peer
                    || link.unacked_bytes > self.config.max_unacked_bytes_per_peer)
                    && link.unacked.first_key_value().is_some_and(|(_, b)| b.sent + wait <= now)
                {
                    let Some((_, dropped)) = link.unacked.pop_first() else { break };
                    link.unacked_keys -= dropped.entries.len();
                    link.unacked_bytes -= dropped.kept_bytes;
                    link.lost_through = link.lost_through.max(dropped.sent);
                    self.stats.gossip_given_up += 1;
                    owe_whole(&self.store, link, dropped.entries);
                }
                let overrides = if index == 0 { override_changes.clone() } else { Vec::new() };
                let gossip = Gossip {
                    from: self.id,
                    seq,
                    low_water: link.low_water().min(seq),
                    updates,
                    overrides,
                };
                send_gossip(&mut self.stats, out, to, gossip);
            }
        }

        if self.config.reclaim_tombstones {
            for (key, stamp, peers) in new_tombstones {
                let peers = peers
                    .into_iter()
                    .map(|p| (p, sent_seq.get(&(p, key.clone())).copied().unwrap_or(0), None))
                    .collect();
                self.tombstones.retain(|t| t.key != key);
                self.tombstones.push(PendingTombstone { key, stamp, peers });
            }
        }

        for (key, owners) in new_handoffs {
            let peers = owners
                .into_iter()
                .flat_map(|p| {
                    let seqs = handoff_seqs.remove(&(p, key.clone())).unwrap_or_else(|| vec![0]);
                    seqs.into_iter().map(move |seq| (p, seq, false))
                })
                .collect();
            self.handoffs.retain(|h| h.key != key);
            self.handoffs.push(PendingHandoff { key, peers });
        }

        self.resend_overdue(out);
        if self.config.reclaim_tombstones {
            self.reclaim();
        }
        self.finish_handoffs();
    }

    /// Drops the keys handed off whose every owner acknowledged them (unless written again
    /// since, which sends them again); once none is left some time after the ring changed,
    /// held keys are known to be owned again (the fast path of [`Actor::owns`]).
    fn finish_handoffs(&mut self) {
        let store = &mut self.store;
        let tracked = &mut self.tracked;
        let mut handed = 0;
        self.handoffs.retain(|pending| {
            if !pending.peers.iter().all(|&(_, _, acked)| acked) {
                return true;
            }
            if let Some(slot) = store.get(&pending.key[..])
                && !slot.dirty
                && let Some(slot) = store.remove(&pending.key[..])
            {
                tracked.track(&pending.key, expiry::Facts::of(&slot.value), expiry::Facts::ABSENT);
                handed += 1;
            }
            false
        });
        self.stats.handed_off += handed;
        if self.disowned
            && self.handoffs.is_empty()
            && self.ring_changed_at.is_none_or(|at| self.epoch >= at + RING_CHANGE_EPOCHS)
            && self.epoch >= self.ownership_checked_at + RING_CHANGE_EPOCHS
        {
            self.ownership_checked_at = self.epoch;
            // Held keys count as owned again only if every one is: one still here (a delete
            // waiting for acknowledgements, a key that came in late) goes out again first.
            let held: Vec<Key> =
                self.store.keys().map(|k| Key::copy_from_slice(k.as_slice())).collect();
            let mut unowned = 0;
            for key in held {
                if !self.owns_slow(&key) {
                    unowned += 1;
                    self.mark_whole(key);
                }
            }
            self.disowned = unowned > 0;
        }
    }

    /// Adds to `outgoing` the whole states owed to peers that may lack part of them (see
    /// [`PeerLink::needs_whole`]): a few keys per epoch, to peers with nothing overdue.
    fn repair_whole_states(&mut self, outgoing: &mut BTreeMap<ActorId, Vec<Entry<V>>>) {
        let epoch = self.epoch;
        for (&to, link) in &mut self.links {
            if link.needs_whole.is_empty() || link.unacked.values().any(|b| b.sent < epoch) {
                continue;
            }
            for _ in 0..WHOLE_REPAIRS_PER_EPOCH {
                let Some(key) = link.needs_whole.pop_first() else { break };
                let Some(slot) = self.store.get(&key[..]) else { continue };
                self.stats.gossip_whole_repairs += 1;
                let pieces = pieces(&key, slot.value.clone(), false, &mut self.stats);
                let entries = outgoing.entry(to).or_default();
                for (value, len, keep) in pieces {
                    entries.push(Entry { key: key.clone(), value, len, keep });
                }
            }
        }
    }

    /// Makes every unacknowledged batch due and resends (a stopping node does not wait out the
    /// backoff: it wants its last changes acknowledged before it exits).
    pub fn resend_unacked_now(&mut self, out: &mut Vec<Output<V>>) {
        let epoch = self.epoch;
        for link in self.links.values_mut() {
            link.acked_since_resend = true;
            for batch in link.unacked.values_mut() {
                batch.due = epoch;
            }
        }
        self.resend_overdue(out);
    }

    /// Resends overdue batches, oldest first: up to [`RESEND_BURST`] to a peer that
    /// acknowledged something since the last round, one (a probe) to a silent one. Resending
    /// every overdue batch each round would pile up, behind a partition or a paused peer,
    /// more than the peer can decode once it is back (found by the fault bed: a node paused
    /// for 5 s never caught up).
    fn resend_overdue(&mut self, out: &mut Vec<Output<V>>) {
        let epoch = self.epoch;
        let wait = self.config.retransmit_after_epochs.max(1);
        for (&to, link) in &mut self.links {
            let low_water = link.low_water();
            let mut budget = if link.acked_since_resend { RESEND_BURST } else { 1 };
            for (&seq, batch) in link.unacked.iter_mut() {
                if epoch < batch.due {
                    continue;
                }
                if budget == 0 {
                    break;
                }
                budget -= 1;
                link.acked_since_resend = false;
                // Exponential backoff: a batch still unacknowledged is probably queued behind
                // others at a slow peer, not lost.
                batch.resends = (batch.resends + 1).min(MAX_BACKOFF_DOUBLINGS);
                batch.due = epoch + (wait << batch.resends);
                // Deltas and parts as sent; other keys' current states (at least what was
                // first sent, often more) unless a state grew big since: that one is owed
                // whole instead, so a resend never outgrows the first send.
                let mut updates = Vec::with_capacity(batch.entries.len());
                for (key, kept) in &batch.entries {
                    match kept {
                        Some(value) => updates.push((key.clone(), V::clone(value))),
                        None => match self.store.get(&key[..]) {
                            Some(slot) if slot.value.weight() >= DELTA_MIN_WEIGHT => {
                                link.needs_whole.insert(key.clone());
                            }
                            Some(slot) => updates.push((key.clone(), slot.value.clone())),
                            None => {}
                        },
                    }
                }
                self.stats.gossip_resent += 1;
                let gossip =
                    Gossip { from: self.id, seq, low_water, updates, overrides: Vec::new() };
                send_gossip(&mut self.stats, out, to, gossip);
            }
        }
    }

    /// The driver could not send batch `seq` to `to` at all (it encodes past the message
    /// limit, which packing below [`GOSSIP_BATCH_BYTES`] leaves only to a single indivisible
    /// state that big): it is counted, logged by the driver and given up, never retried.
    pub fn undeliverable(&mut self, to: ActorId, seq: u64) {
        let Some(link) = self.links.get_mut(&to) else { return };
        let Some(batch) = link.unacked.remove(&seq) else { return };
        link.unacked_keys -= batch.entries.len();
        link.unacked_bytes -= batch.kept_bytes;
        link.lost_through = link.lost_through.max(batch.sent);
        self.stats.gossip_undeliverable += 1;
        // A batch of several entries failed because one of them grew (a resend takes small
        // keys' current states): the big keys among them are owed whole, in pieces. A lone
        // entry that cannot be encoded would only fail again.
        if batch.entries.len() > 1 {
            owe_whole(&self.store, link, batch.entries);
        }
    }

    fn reclaim(&mut self) {
        if self.ring_changed_at.is_some_and(|at| self.epoch < at + RING_CHANGE_EPOCHS) {
            // Members adopt a new ring seconds apart: one still on the old ring may hand an
            // older state of a deleted key to its new owners. Kept, the tombstone wins that
            // merge; freed, the key would come back.
            return;
        }
        let horizon = self.config.retransmit_after_epochs.max(1) * 10;
        let epoch = self.epoch;
        self.recently_freed.retain(|_, &mut (_, at)| epoch < at + horizon);
        self.executed_forwards.retain(|_, &mut at| epoch < at + horizon);
        let links = &self.links;
        let store = &mut self.store;
        let mut freed_digests = Vec::new();
        let recently_freed = &mut self.recently_freed;
        let tracked = &mut self.tracked;
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
                if let Some(slot) = store.remove(&pending.key[..]) {
                    tracked.track(
                        &pending.key,
                        expiry::Facts::of(&slot.value),
                        expiry::Facts::ABSENT,
                    );
                    freed_digests.push((pending.key.clone(), slot.digest));
                }
                recently_freed.insert(pending.key.clone(), (pending.stamp, epoch));
                floor = floor.max(Some(pending.stamp));
                reclaimed += 1;
            }
            false
        });
        self.floor = floor;
        self.stats.reclaimed += reclaimed;
        // Give back table memory once most of it is empty (a wave of deletes or expiries): a
        // hash table keeps its size otherwise. At most a rehash of what is left, rarely.
        shrink_if_mostly_empty(&mut self.store);
        shrink_if_mostly_empty(&mut self.recently_freed);
        for (key, digest) in freed_digests {
            self.forget_digest(&key, digest);
        }
    }
}

/// Shrinks a table holding less than a quarter of its capacity (and more than a few pages)
/// to twice what it holds.
fn shrink_if_mostly_empty<K: Eq + std::hash::Hash, T, S: std::hash::BuildHasher>(
    table: &mut HashMap<K, T, S>,
) {
    if table.capacity() > 4096 && table.len() * 4 < table.capacity() {
        table.shrink_to(table.len() * 2);
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

/// Records that `link`'s peer may lack what `entries` carried: each big key among them (a
/// delta or part was kept, or the state is big now) is owed whole.
fn owe_whole<V: KvsValue>(
    store: &HashMap<StoreKey, Slot<V>, super::StoreHasher>,
    link: &mut PeerLink<V>,
    entries: Vec<(Key, Option<Box<V>>)>,
) {
    for (key, kept) in entries {
        let big = |slot: &Slot<V>| slot.value.weight() >= DELTA_MIN_WEIGHT;
        if store.get(&key[..]).is_some_and(|slot| kept.is_some() || big(slot)) {
            link.needs_whole.insert(key);
        }
    }
}

/// What is sent for one key: `payload` whole if it is small enough, else in parts of about
/// [`PART_BYTES`] (each kept for resending), with each piece's encoded size.
fn pieces<V: KvsValue>(
    key: &Key,
    payload: V,
    keep: bool,
    stats: &mut ActorStats,
) -> Vec<(V, usize, bool)> {
    let len = size_within(key, &payload, usize::MAX).unwrap_or(usize::MAX);
    if len <= PART_BYTES {
        return vec![(payload, len, keep)];
    }
    let weight = payload.weight().max(1);
    let max_weight = weight.div_ceil(len.div_ceil(PART_BYTES)).max(1);
    let mut parts = payload.split(max_weight);
    if parts.len() <= 1 {
        // Indivisible: it travels alone in its batch.
        return parts.pop().map(|p| vec![(p, len, keep)]).unwrap_or_default();
    }
    stats.gossip_parts_out += parts.len() as u64;
    // Members differ in size: a part may still be too big, and is cut again.
    parts.into_iter().flat_map(|part| pieces(key, part, true, stats)).collect()
}

/// The encoded size of `(key, payload)` if it is at most `limit`: from the bound the value
/// knows (a plain string), which saves measuring it by encoding, else measured.
pub(super) fn size_within<V: KvsValue>(key: &Key, payload: &V, limit: usize) -> Option<usize> {
    let len = match payload.encoded_size_bound() {
        Some(bound) if bound.saturating_add(key.len() + 10) <= limit => bound + key.len() + 10,
        _ => crate::wire::entry_len(key, payload),
    };
    (len <= limit).then_some(len)
}

/// Packs one destination's entries, in order, into batches below [`GOSSIP_BATCH_BYTES`]
/// (at least one batch, possibly empty: it may carry overrides).
fn pack<V>(entries: Vec<Entry<V>>) -> Vec<Vec<Entry<V>>> {
    // The usual epoch fits one batch: no copying into new vectors.
    if entries
        .iter()
        .try_fold(0_usize, |sum, e| sum.checked_add(e.len))
        .is_some_and(|total| total <= GOSSIP_BATCH_BYTES)
    {
        return vec![entries];
    }
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0_usize;
    for entry in entries {
        if !current.is_empty() && bytes.saturating_add(entry.len) > GOSSIP_BATCH_BYTES {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes = bytes.saturating_add(entry.len);
        current.push(entry);
    }
    batches.push(current);
    batches
}
