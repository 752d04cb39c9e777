//! `FLUSHDB` and `FLUSHALL` as a lattice fact: per database, the stamp of its latest flush.
//!
//! A flush at stamp `F` means "every write to this database stamped before `F` is gone". Each
//! actor keeps the greatest flush stamp it knows per database (a pointwise max, so flushes
//! merge like any lattice) and
//! - removes every key of the database whose every write is older than `F` (a key written
//!   after `F` — anywhere — keeps its later writes), leaving no tombstone: every replica
//!   removes the same keys once it learns `F`, and the next point keeps them out;
//! - drops any state older than `F` that arrives later for that database (gossip, repair), so
//!   a write from before the flush cannot come back once its key is freed;
//! - moves its clock past `F`, so its own writes after the flush are newer, and refuses a
//!   client's write to the database stamped at or before `F` by the client itself.
//!
//! The node's front end picks `F` above the clock of every one of its actors (a write
//! acknowledged before the flush is older), hands it to each of them, and each passes it to
//! every actor of the other nodes at once; repair rounds carry the stamps too, so a node that
//! missed the message learns them at its next round. Each actor logs its flush stamps (a
//! record under a key no client can write, kept in snapshots) and announces them again when it
//! restarts.

use lattice_core::Stamp;

use super::{Actor, expiry};
use crate::db::{self, DATABASES};
use crate::message::{Output, PeerMessage};
use crate::ring::{ActorId, Key};
use crate::small_bytes::StoreKey;
use crate::value::KvsValue;

/// The flush stamps an actor knows, and those it must still announce.
#[derive(Debug, Default)]
pub(super) struct Flushes {
    /// Per database, its latest flush.
    stamps: [Option<Stamp>; DATABASES as usize],
    /// Flushes this actor was handed by its node and has not passed on yet.
    to_announce: Vec<(u8, Stamp)>,
}

impl Flushes {
    /// The flush stamps known, as `(database, stamp)`.
    pub(super) fn known(&self) -> Vec<(u8, Stamp)> {
        (0..DATABASES).filter_map(|db| Some((db, self.stamps[usize::from(db)]?))).collect()
    }

    /// Whether `value` (under stored key `key`) is entirely older than its database's flush.
    /// A value without stamps is never hidden (a flush cannot date it).
    #[inline]
    pub(super) fn hides<V: KvsValue>(&self, key: &[u8], value: &V) -> bool {
        match self.stamps[usize::from(db::of(key))] {
            None => false,
            Some(flush) => value.newest_stamp().is_some_and(|newest| newest < flush),
        }
    }

    /// The flush of `key`'s database, if any.
    pub(super) fn of(&self, key: &[u8]) -> Option<Stamp> {
        self.stamps[usize::from(db::of(key))]
    }
}

impl<V: KvsValue> Actor<V> {
    /// Learns flushes (`announce`: handed by this node, to pass on to the other nodes);
    /// each newer than the one known is applied at once.
    pub(super) fn learn_flushes(&mut self, now: u64, flushes: &[(u8, Stamp)], announce: bool) {
        for &(db, stamp) in flushes {
            // A stamp far ahead of this actor's clock (a bad clock, a forged message) would
            // drag every clock with it: refused, as such gossip is. (`now` is `u64::MAX` for
            // the actor's own log.)
            if stamp.time > now.saturating_add(self.config.max_clock_ahead_us) {
                self.stats.future_stamps_refused += 1;
                continue;
            }
            let Some(known) = self.flushes.stamps.get_mut(usize::from(db)) else { continue };
            if known.is_some_and(|known| known >= stamp) {
                continue;
            }
            *known = Some(stamp);
            if announce {
                self.flushes.to_announce.push((db, stamp));
            }
            self.observe(Some(stamp));
            self.apply_flush(db, stamp);
            // Logged (a tombstone stamped with the flush, under the database's flush record),
            // so a restart keeps it.
            let mut record = V::bottom();
            record.delete(stamp, 0);
            self.journal(&Key::copy_from_slice(&db::flush_record_key(db)), Some(record));
        }
    }

    /// The flush records to write into a snapshot (each a tombstone stamped with the flush).
    pub(crate) fn flush_records(&self) -> Vec<(Key, V)> {
        self.flushes
            .known()
            .into_iter()
            .map(|(db, stamp)| {
                let mut record = V::bottom();
                record.delete(stamp, 0);
                (Key::copy_from_slice(&db::flush_record_key(db)), record)
            })
            .collect()
    }

    /// A record of the log read back at start: `true` if it was a flush record (learned, and
    /// announced again in case the crash came before the other nodes heard of it).
    pub(super) fn restore_flush(&mut self, key: &[u8], value: &V) -> bool {
        let Some(db) = db::flush_record_of(key) else { return false };
        if let Some(stamp) = value.newest_stamp() {
            self.learn_flushes(u64::MAX, &[(db, stamp)], true);
        }
        true
    }

    /// Removes every key of database `db` written only before `stamp`. No tombstone is left:
    /// the flush stamp itself keeps every older state of the database out (gossip, repair,
    /// the log at start), so the memory of a flushed counter or set comes back too.
    fn apply_flush(&mut self, db: u8, stamp: Stamp) {
        let older: Vec<StoreKey> = self
            .store
            .iter()
            .filter(|(key, slot)| {
                db::of(key.as_slice()) == db
                    && slot.value.newest_stamp().is_some_and(|newest| newest < stamp)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in older {
            let Some(slot) = self.store.remove(key.as_slice()) else { continue };
            let key = Key::copy_from_slice(key.as_slice());
            self.tracked.track(&key, expiry::Facts::of(&slot.value), expiry::Facts::ABSENT);
            self.deltas.remove(&key);
            self.forget_digest(&key, slot.digest);
        }
        self.stats.flushes += 1;
    }

    /// Sends the flushes this node was handed (at once, and again after a restart, at the next
    /// epoch) to every actor of the other nodes.
    pub(super) fn announce_flushes(&mut self, out: &mut Vec<Output<V>>) {
        if self.flushes.to_announce.is_empty() {
            return;
        }
        let flushes = std::mem::take(&mut self.flushes.to_announce);
        let topology = &self.topology;
        for node in 0..topology.nodes().len() as u16 {
            if node == self.id.node {
                continue;
            }
            for thread in 0..topology.threads(node) {
                out.push(Output::Send {
                    to: ActorId::new(node, thread),
                    message: PeerMessage::Flush { from: self.id, flushes: flushes.clone() },
                });
            }
        }
    }
}
