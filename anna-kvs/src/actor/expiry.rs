//! Active expiry: the keys whose values have a deadline ([`KvsValue::expires_at`]), in
//! deadline order, so the actor deletes each one soon after its deadline passes even if no
//! command touches it again (reads already treat it as absent; this gives the memory back).
//!
//! Redis samples its keys with a deadline ten times a second. Here every change to a key
//! moves its entry in an ordered index (found from the deadline the value had before the
//! change, so nothing is looked up for keys without one), and the actor wakes when the first
//! deadline passes — at most once per [`RUN_EVERY_US`] — and expires up to [`BUDGET`] keys.
//! The expiry is a write like any other (logged, gossiped, rehashed for repair), computed
//! from the key's state, so every replica that expires the key on its own writes the same
//! delete.
//!
//! The same hook at every store change (`Tracked::track`) also counts, per database, the
//! keys held and those that are tombstones, so `DBSIZE` is known at once.

use std::collections::BTreeSet;

use super::{Actor, Change};
use crate::db::{self, DATABASES};
use crate::ring::Key;
use crate::value::KvsValue;

/// The shortest time between two expiry runs (µs): keys due within it expire together.
pub const RUN_EVERY_US: u64 = 10_000;

/// The most keys one run expires, so a wave of deadlines never stalls requests; the rest
/// wait for the next run, [`RUN_EVERY_US`] later.
pub const BUDGET: usize = 2_000;

/// The upper bounds (µs) of the buckets [`ActorStats::expire_lateness`] counts expiries in:
/// how long after its deadline a key was deleted (the last bucket is everything later).
///
/// [`ActorStats::expire_lateness`]: super::ActorStats::expire_lateness
pub const LATENESS_BOUNDS_US: [u64; 4] = [1_000, 10_000, 100_000, 1_000_000];

/// What the store tracks of a key's state beyond the state itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Facts {
    /// The store holds the key.
    held: bool,
    /// It reads as deleted (a tombstone still held).
    deleted: bool,
    /// When it expires ([`KvsValue::expires_at`]).
    expires_at: Option<u64>,
}

impl Facts {
    /// A key the store does not hold.
    pub(super) const ABSENT: Self = Self { held: false, deleted: false, expires_at: None };

    /// The facts of `value`.
    #[inline]
    pub(super) fn of<V: KvsValue>(value: &V) -> Self {
        Self { held: true, deleted: value.is_deleted(), expires_at: value.expires_at() }
    }
}

/// The keys with a deadline, in deadline order, and per database how many keys are held,
/// tombstones, and with a deadline (so the live keys are counted exactly, at once).
#[derive(Debug, Default)]
pub(super) struct Tracked {
    /// `(when it expires in µs, key)`: one entry per key with a deadline.
    due: BTreeSet<(u64, Key)>,
    /// The earliest time of the next run.
    next_run_at: u64,
    /// Per database ([`crate::db`]): keys held, those that read as deleted, those with a
    /// deadline.
    pub(super) held: [u64; DATABASES as usize],
    pub(super) deleted: [u64; DATABASES as usize],
    pub(super) with_deadline: [u64; DATABASES as usize],
}

impl Tracked {
    /// Follows a change of `key` from `before` to `after` (either [`Facts::ABSENT`] for a key
    /// stored or freed): moves its deadline entry and counts tombstones.
    #[inline]
    pub(super) fn track(&mut self, key: &Key, before: Facts, after: Facts) {
        if before == after {
            return;
        }
        let db = usize::from(db::of(key));
        let step = |count: &mut u64, was: bool, is: bool| {
            if is && !was {
                *count += 1;
            } else if was && !is {
                *count = count.saturating_sub(1);
            }
        };
        step(&mut self.held[db], before.held, after.held);
        step(&mut self.deleted[db], before.deleted, after.deleted);
        step(&mut self.with_deadline[db], before.expires_at.is_some(), after.expires_at.is_some());
        if before.expires_at == after.expires_at {
            return;
        }
        if let Some(before) = before.expires_at {
            self.due.remove(&(before, key.clone()));
        }
        if let Some(after) = after.expires_at {
            self.due.insert((after, key.clone()));
        }
    }

    /// Keys held in database `db` that are not deleted.
    pub(super) fn live(&self, db: u8) -> u64 {
        let db = usize::from(db);
        self.held[db] - self.deleted[db].min(self.held[db])
    }

    /// When the next run is due, if any key has a deadline.
    pub(super) fn next_run(&self) -> Option<u64> {
        self.due.first().map(|&(due, _)| due.max(self.next_run_at))
    }
}

impl<V: KvsValue> Actor<V> {
    /// Expires the keys whose deadline has passed at `now` (at most [`BUDGET`]), if a run is
    /// due.
    pub(super) fn expire_due(&mut self, now: u64) {
        if self.tracked.next_run().is_none_or(|at| at > now) {
            return;
        }
        self.tracked.next_run_at = now + RUN_EVERY_US;
        for _ in 0..BUDGET {
            let Some(&(due, _)) = self.tracked.due.first() else { break };
            if due > now {
                break;
            }
            let Some((_, key)) = self.tracked.due.pop_first() else { break };
            // The entry stands for the key's deadline when it was made; the key may have been
            // freed since.
            match self.store.get(&key[..]).and_then(|slot| slot.value.expires_at()) {
                Some(at) if at <= now => {
                    let expired = self.update(key, |value| {
                        let change =
                            if value.expire(now) { Change::Whole } else { Change::Unchanged };
                        Ok::<_, std::convert::Infallible>((change, ()))
                    });
                    if matches!(expired, Ok((true, ()))) {
                        self.stats.expired_keys += 1;
                        let late = now - at;
                        let bucket = LATENESS_BOUNDS_US.iter().take_while(|&&b| late > b).count();
                        self.stats.expire_lateness[bucket] += 1;
                    }
                }
                Some(at) => {
                    self.tracked.due.insert((at, key));
                }
                None => {}
            }
        }
    }
}
