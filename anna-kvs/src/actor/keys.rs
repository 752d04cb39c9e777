//! Questions about all the keys an actor holds ([`LocalQuery`]): how many are live
//! (`DBSIZE`), a scan in a fixed order (`SCAN`, `KEYS`), one at random (`RANDOMKEY`).
//!
//! # Scanning
//! A key's scan position is a fixed 56-bit hash of it, so positions mean the same thing on
//! every call, after restarts, and on every actor. A scan from position 0 sorts the keys held
//! by position once (an index of key copies, O(n log n): the one pause a scan costs, like
//! Redis's `KEYS`); each call then answers from the index in O(log n + count). A key held for
//! the whole scan is in every index built since the scan began, so it is answered at least
//! once; a key added or deleted meanwhile may or may not be — Redis's guarantee. The index is
//! dropped after [`INDEX_IDLE_US`] without a call (a later call rebuilds it).

use super::Actor;
use crate::message::{LocalQuery, Response};
use crate::ring::Key;
use crate::small_bytes::StoreKey;
use crate::value::KvsValue;
use crate::{db, glob};

/// How long an unused scan index is kept (µs).
pub const INDEX_IDLE_US: u64 = 60_000_000;

/// A key's scan position: 56 bits of a fixed hash, never 0 (0 starts a scan).
pub fn scan_position(key: &[u8]) -> u64 {
    (xxhash_rust::xxh3::xxh3_64_with_seed(key, 0x5CA7) >> 8).max(1)
}

/// A stored key as a client of its database names it.
fn answer(key: &StoreKey) -> Key {
    Key::copy_from_slice(db::strip(key.as_slice()))
}

/// The keys held, sorted by scan position.
#[derive(Debug, Default)]
pub(super) struct ScanIndex {
    keys: Vec<(u64, StoreKey)>,
    last_used: u64,
}

/// What a scan looks for besides its position.
struct Filter<'a> {
    db: u8,
    now: u64,
    pattern: Option<&'a [u8]>,
    type_name: Option<&'a [u8]>,
}

impl Filter<'_> {
    /// Whether a held state under `key` is answered: live, not expired, matching.
    fn admits<V: KvsValue>(&self, key: &[u8], value: &V) -> bool {
        db::of(key) == self.db
            && !value.is_deleted()
            && value.expires_at().is_none_or(|at| at > self.now)
            && self.pattern.is_none_or(|pattern| glob::matches(pattern, db::strip(key)))
            && self.type_name.is_none_or(|wanted| {
                value.type_name().is_some_and(|name| name.as_bytes().eq_ignore_ascii_case(wanted))
            })
    }
}

impl<V: KvsValue> Actor<V> {
    /// Answers a question about all its keys at time `now` (µs).
    pub(super) fn local(&mut self, now: u64, query: LocalQuery) -> Response<V> {
        match query {
            LocalQuery::Count { db } => Response::Count(self.tracked.live(db)),
            LocalQuery::Scan { db, from, count, pattern, type_name } => {
                let filter = Filter {
                    db,
                    now,
                    pattern: pattern.as_deref(),
                    type_name: type_name.as_deref(),
                };
                if from == 0 && count == usize::MAX {
                    // Everything at once (KEYS): one walk, no index.
                    let keys = self
                        .store
                        .iter()
                        .filter(|(key, slot)| filter.admits(key.as_slice(), &slot.value))
                        .map(|(key, _)| answer(key))
                        .collect();
                    return Response::Keys { keys, next: None };
                }
                self.scan(now, from, count.max(1), &filter)
            }
            LocalQuery::Random { db } => self.random(now, db),
            LocalQuery::Flush { dbs, stamp } => {
                let flushes: Vec<_> = dbs.into_iter().map(|db| (db, stamp)).collect();
                self.learn_flushes(now, &flushes, true);
                Response::Done(None)
            }
        }
    }

    /// A live key of database `db` at random, if it holds any.
    fn random(&self, now: u64, db: u8) -> Response<V> {
        if self.tracked.live(db) == 0 {
            return Response::Keys { keys: Vec::new(), next: None };
        }
        // A few random picks among the held keys (other databases, tombstones and expired
        // keys are skipped); O(n) each, as the store has no random access.
        let mut seed = (now ^ self.epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
        let filter = Filter { db, now, pattern: None, type_name: None };
        for _ in 0..8 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let pick = (seed % self.store.len() as u64) as usize;
            if let Some((key, slot)) = self.store.iter().nth(pick)
                && filter.admits(key.as_slice(), &slot.value)
            {
                return Response::Keys { keys: vec![answer(key)], next: None };
            }
        }
        // Mostly other keys: the first that fits.
        let keys = self
            .store
            .iter()
            .find(|(key, slot)| filter.admits(key.as_slice(), &slot.value))
            .map(|(key, _)| answer(key))
            .into_iter()
            .collect();
        Response::Keys { keys, next: None }
    }

    /// Keys held that are not deleted, in every database.
    pub(super) fn live_keys(&self) -> u64 {
        (0..crate::db::DATABASES).map(|db| self.tracked.live(db)).sum()
    }

    /// One step of a scan: `count` keys looked at from position `from` (and the rest of the
    /// last position's, so no key is skipped), those `filter` admits answered.
    fn scan(&mut self, now: u64, from: u64, count: usize, filter: &Filter<'_>) -> Response<V> {
        if from == 0 || self.scan_index.is_none() {
            let mut keys: Vec<(u64, StoreKey)> =
                self.store.keys().map(|key| (scan_position(key.as_slice()), key.clone())).collect();
            keys.sort_unstable_by_key(|(position, _)| *position);
            self.scan_index = Some(ScanIndex { keys, last_used: now });
        }
        let Some(index) = &mut self.scan_index else { unreachable!("built above") };
        index.last_used = now;
        let start = index.keys.partition_point(|(position, _)| *position < from);
        let mut answered = Vec::new();
        let mut at = start;
        while let Some((position, key)) = index.keys.get(at) {
            let same_as_last = at > start && index.keys[at - 1].0 == *position;
            if at - start >= count && !same_as_last {
                break;
            }
            if let Some(slot) = self.store.get(key.as_slice())
                && filter.admits(key.as_slice(), &slot.value)
            {
                answered.push(answer(key));
            }
            at += 1;
        }
        let next = index.keys.get(at).map(|(position, _)| *position);
        Response::Keys { keys: answered, next }
    }

    /// Drops a scan index unused for [`INDEX_IDLE_US`].
    pub(super) fn drop_idle_scan_index(&mut self, now: u64) {
        if self.scan_index.as_ref().is_some_and(|i| now > i.last_used + INDEX_IDLE_US) {
            self.scan_index = None;
        }
    }
}
