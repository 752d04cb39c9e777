//! Client side of the consistency levels: one small session type per level. Each keeps what
//! its level needs (nothing, a cache of reads or writes, a clock, a transaction's buffer) and
//! talks to the store through [`Store`]. Each level's code sits between `level:` markers so
//! `tests/levels.rs` can count the lines it adds over eventual consistency.

use std::collections::HashMap;

use bytes::Bytes;
use lattice_core::{DomPair, Lww, MultiValue, Stamp, VectorClock};

use super::values::{Causal, Transactional, TxnId};
use crate::message::RequestError;
use crate::ring::Key;
use crate::value::KvsValue;

/// What a session needs from the store: read one replica, merge a value, and a clock.
pub trait Store<V: KvsValue> {
    /// Reads `key` from some replica (it may be stale).
    ///
    /// # Errors
    /// The store's errors (timeouts, refusals).
    fn get(&mut self, key: &Key) -> Result<Option<V>, RequestError>;
    /// Merges `value` into `key` at some replica.
    ///
    /// # Errors
    /// The store's errors.
    fn put(&mut self, key: &Key, value: V) -> Result<(), RequestError>;
    /// Merges `value` into `key`, letting the serving replica stamp it with its own clock;
    /// returns that stamp.
    ///
    /// # Errors
    /// The store's errors.
    fn put_here(&mut self, key: &Key, value: V) -> Result<Option<Stamp>, RequestError>;
    /// Microseconds of the client's clock.
    fn now(&self) -> u64;
}

/// The value of a last-writer-wins register, if written and not deleted.
pub fn lww_bytes(value: Option<&Lww<Option<Bytes>>>) -> Option<Bytes> {
    value.and_then(|v| v.value().cloned().flatten())
}

/// A per-client stamp source: strictly increasing, unique through the client id.
#[derive(Clone, Debug)]
pub struct ClientClock {
    /// This client's id (its writer id in stamps).
    pub client: u64,
    last: u64,
}

impl ClientClock {
    /// A clock for `client`.
    pub const fn new(client: u64) -> Self {
        Self { client, last: 0 }
    }
    /// The next stamp, after `now` and after every stamp handed out or observed.
    pub fn next(&mut self, now: u64) -> Stamp {
        self.last = now.max(self.last + 1);
        Stamp::new(self.last, self.client)
    }
    /// Moves the clock past `seen` (so later stamps order after what was read).
    pub fn observe(&mut self, seen: Stamp) {
        self.last = self.last.max(seen.time);
    }
}

// level:eventual:client:begin
// ANCHOR: eventual-client
/// Eventual consistency: reads and writes go straight to a replica, which stamps the write
/// with its own clock; no session state.
#[derive(Clone, Debug)]
pub struct EventualSession;

impl EventualSession {
    /// A session (`client` is unused: the replica stamps writes).
    pub const fn new(client: u64) -> Self {
        let _ = client;
        Self
    }
    /// Reads `key`.
    ///
    /// # Errors
    /// The store's errors.
    pub fn get<S: Store<Lww<Option<Bytes>>>>(
        &mut self,
        store: &mut S,
        key: &Key,
    ) -> Result<Option<Lww<Option<Bytes>>>, RequestError> {
        store.get(key)
    }
    /// Writes `value` to `key`.
    ///
    /// # Errors
    /// The store's errors.
    pub fn put<S: Store<Lww<Option<Bytes>>>>(
        &mut self,
        store: &mut S,
        key: &Key,
        value: Bytes,
    ) -> Result<Stamp, RequestError> {
        let stamp = store.put_here(key, Lww::new(Stamp::default(), Some(value)))?;
        stamp.ok_or(RequestError::Timeout)
    }
}
// ANCHOR_END: eventual-client
// level:eventual:client:end

// level:monotonic-reads:client:begin
// ANCHOR: monotonic-reads-client
/// Monotonic reads: never read a version older than one this session already read.
#[derive(Clone, Debug)]
pub struct MonotonicReadsSession {
    inner: EventualSession,
    seen: HashMap<Key, Lww<Option<Bytes>>>,
}

impl MonotonicReadsSession {
    /// A session for `client`.
    pub fn new(client: u64) -> Self {
        Self { inner: EventualSession::new(client), seen: HashMap::new() }
    }
    /// Reads `key`: the newer of the replica's version and the newest this session read.
    ///
    /// # Errors
    /// The store's errors.
    pub fn get<S: Store<Lww<Option<Bytes>>>>(
        &mut self,
        store: &mut S,
        key: &Key,
    ) -> Result<Option<Lww<Option<Bytes>>>, RequestError> {
        let fresh = store.get(key)?.unwrap_or_default();
        let seen = self.seen.entry(key.clone()).or_default();
        lattice_core::Lattice::merge(seen, fresh);
        Ok(Some(seen.clone()))
    }
    /// Writes (as eventual).
    ///
    /// # Errors
    /// The store's errors.
    pub fn put<S: Store<Lww<Option<Bytes>>>>(
        &mut self,
        store: &mut S,
        key: &Key,
        value: Bytes,
    ) -> Result<Stamp, RequestError> {
        self.inner.put(store, key, value)
    }
}
// ANCHOR_END: monotonic-reads-client
// level:monotonic-reads:client:end

// level:monotonic-writes:client:begin
// ANCHOR: monotonic-writes-client
/// Monotonic writes: this session's writes take effect in the order it made them, everywhere:
/// its stamps strictly increase, so a later write always wins over an earlier one.
#[derive(Clone, Debug)]
pub struct MonotonicWritesSession {
    inner: EventualSession,
    clock: ClientClock,
}

impl MonotonicWritesSession {
    /// A session for `client`.
    pub const fn new(client: u64) -> Self {
        Self { inner: EventualSession::new(client), clock: ClientClock::new(client) }
    }
    /// Reads (as eventual).
    ///
    /// # Errors
    /// The store's errors.
    pub fn get<S: Store<Lww<Option<Bytes>>>>(
        &mut self,
        store: &mut S,
        key: &Key,
    ) -> Result<Option<Lww<Option<Bytes>>>, RequestError> {
        self.inner.get(store, key)
    }
    /// Writes with the session's next (strictly larger) stamp.
    ///
    /// # Errors
    /// The store's errors.
    pub fn put<S: Store<Lww<Option<Bytes>>>>(
        &mut self,
        store: &mut S,
        key: &Key,
        value: Bytes,
    ) -> Result<Stamp, RequestError> {
        let stamp = self.clock.next(store.now());
        store.put(key, Lww::new(stamp, Some(value)))?;
        Ok(stamp)
    }
}
// ANCHOR_END: monotonic-writes-client
// level:monotonic-writes:client:end

// level:read-your-writes:client:begin
// ANCHOR: read-your-writes-client
/// Read-your-writes: a read reflects every earlier write of this session.
#[derive(Clone, Debug)]
pub struct ReadYourWritesSession {
    inner: EventualSession,
    written: HashMap<Key, Lww<Option<Bytes>>>,
}

impl ReadYourWritesSession {
    /// A session for `client`.
    pub fn new(client: u64) -> Self {
        Self { inner: EventualSession::new(client), written: HashMap::new() }
    }
    /// Reads `key`: the replica's version merged with this session's last write.
    ///
    /// # Errors
    /// The store's errors.
    pub fn get<S: Store<Lww<Option<Bytes>>>>(
        &mut self,
        store: &mut S,
        key: &Key,
    ) -> Result<Option<Lww<Option<Bytes>>>, RequestError> {
        let mut value = store.get(key)?.unwrap_or_default();
        if let Some(mine) = self.written.get(key) {
            lattice_core::Lattice::merge_ref(&mut value, mine);
        }
        Ok(Some(value))
    }
    /// Writes and remembers the write.
    ///
    /// # Errors
    /// The store's errors.
    pub fn put<S: Store<Lww<Option<Bytes>>>>(
        &mut self,
        store: &mut S,
        key: &Key,
        value: Bytes,
    ) -> Result<Stamp, RequestError> {
        let stamp = self.inner.put(store, key, value.clone())?;
        self.written.insert(key.clone(), Lww::new(stamp, Some(value)));
        Ok(stamp)
    }
}
// ANCHOR_END: read-your-writes-client
// level:read-your-writes:client:end

// level:pram:client:begin
// ANCHOR: pram-client
/// PRAM (pipelined RAM): monotonic reads + monotonic writes + read-your-writes.
#[derive(Clone, Debug)]
pub struct PramSession {
    reads: MonotonicReadsSession,
    writes: MonotonicWritesSession,
    written: HashMap<Key, Lww<Option<Bytes>>>,
}

impl PramSession {
    /// A session for `client`.
    pub fn new(client: u64) -> Self {
        Self {
            reads: MonotonicReadsSession::new(client),
            writes: MonotonicWritesSession::new(client),
            written: HashMap::new(),
        }
    }
    /// Reads: own writes merged in, never older than earlier reads.
    ///
    /// # Errors
    /// The store's errors.
    pub fn get<S: Store<Lww<Option<Bytes>>>>(
        &mut self,
        store: &mut S,
        key: &Key,
    ) -> Result<Option<Lww<Option<Bytes>>>, RequestError> {
        let mut value = self.reads.get(store, key)?.unwrap_or_default();
        if let Some(mine) = self.written.get(key) {
            lattice_core::Lattice::merge_ref(&mut value, mine);
        }
        Ok(Some(value))
    }
    /// Writes in session order and remembers them.
    ///
    /// # Errors
    /// The store's errors.
    pub fn put<S: Store<Lww<Option<Bytes>>>>(
        &mut self,
        store: &mut S,
        key: &Key,
        value: Bytes,
    ) -> Result<Stamp, RequestError> {
        let stamp = self.writes.put(store, key, value.clone())?;
        self.written.insert(key.clone(), Lww::new(stamp, Some(value)));
        Ok(stamp)
    }
}
// ANCHOR_END: pram-client
// level:pram:client:end

// level:writes-follow-reads:client:begin
// ANCHOR: writes-follow-reads-client
/// Writes-follow-reads: a write is ordered after every version this session read, so it
/// supersedes them wherever it arrives.
#[derive(Clone, Debug)]
pub struct WritesFollowReadsSession {
    writes: MonotonicWritesSession,
}

impl WritesFollowReadsSession {
    /// A session for `client`.
    pub const fn new(client: u64) -> Self {
        Self { writes: MonotonicWritesSession::new(client) }
    }
    /// Reads, and moves the session's clock past what was read.
    ///
    /// # Errors
    /// The store's errors.
    pub fn get<S: Store<Lww<Option<Bytes>>>>(
        &mut self,
        store: &mut S,
        key: &Key,
    ) -> Result<Option<Lww<Option<Bytes>>>, RequestError> {
        let value = store.get(key)?;
        if let Some(stamp) = value.as_ref().and_then(Lww::stamp) {
            self.writes.clock.observe(stamp);
        }
        Ok(value)
    }
    /// Writes with a stamp after everything read.
    ///
    /// # Errors
    /// The store's errors.
    pub fn put<S: Store<Lww<Option<Bytes>>>>(
        &mut self,
        store: &mut S,
        key: &Key,
        value: Bytes,
    ) -> Result<Stamp, RequestError> {
        self.writes.put(store, key, value)
    }
}
// ANCHOR_END: writes-follow-reads-client
// level:writes-follow-reads:client:end

// level:causal:client:begin
// ANCHOR: causal-client
/// Causal consistency (per key): reads return every concurrent sibling and advance the
/// session's vector clock; a write carries the clock of what the session read, advanced at the
/// client, so it supersedes exactly what was read.
#[derive(Clone, Debug)]
pub struct CausalSession {
    client: u64,
    context: HashMap<Key, VectorClock>,
    /// What this session has seen of each key: a stale replica cannot take it back in time.
    seen: HashMap<Key, Causal>,
}

impl CausalSession {
    /// A session for `client`.
    pub fn new(client: u64) -> Self {
        Self { client, context: HashMap::new(), seen: HashMap::new() }
    }
    /// Reads every sibling of `key` (merged with what this session saw before) and remembers
    /// their causal context.
    ///
    /// # Errors
    /// The store's errors.
    pub fn get<S: Store<Causal>>(
        &mut self,
        store: &mut S,
        key: &Key,
    ) -> Result<Option<Causal>, RequestError> {
        let seen = self.seen.entry(key.clone()).or_default();
        lattice_core::Lattice::merge(seen, store.get(key)?.unwrap_or_default());
        let context = super::values::causal_context(Some(seen));
        lattice_core::Lattice::merge(self.context.entry(key.clone()).or_default(), context);
        Ok(Some(seen.clone()))
    }
    /// Writes `value` after what this session read of `key`.
    ///
    /// # Errors
    /// The store's errors.
    pub fn put<S: Store<Causal>>(
        &mut self,
        store: &mut S,
        key: &Key,
        value: Option<Bytes>,
    ) -> Result<VectorClock, RequestError> {
        let clock = self.context.entry(key.clone()).or_default();
        clock.increment(self.client);
        let write = MultiValue::from_write(clock.clone(), value);
        store.put(key, write.clone())?;
        lattice_core::Lattice::merge(self.seen.entry(key.clone()).or_default(), write);
        Ok(clock.clone())
    }
}
// ANCHOR_END: causal-client
// level:causal:client:end

/// How a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnEnd {
    /// Its writes are (now) visible.
    Committed,
    /// Its buffered writes were dropped.
    Aborted,
}

// level:read-uncommitted:client:begin
// ANCHOR: read-uncommitted-client
/// Read uncommitted: writes go out at once, tagged with the transaction id, so a later
/// transaction's writes win on every key together.
#[derive(Clone, Debug)]
pub struct ReadUncommittedSession {
    clock: ClientClock,
    seq: u64,
    txn: Option<TxnId>,
}

impl ReadUncommittedSession {
    /// A session for `client`.
    pub const fn new(client: u64) -> Self {
        Self { clock: ClientClock::new(client), seq: 0, txn: None }
    }
    /// Starts a transaction; returns its id.
    pub fn begin(&mut self, now: u64) -> TxnId {
        self.seq += 1;
        let txn = (self.clock.next(now).time, self.clock.client, self.seq);
        self.txn = Some(txn);
        txn
    }
    /// Reads `key`.
    ///
    /// # Errors
    /// The store's errors.
    pub fn read<S: Store<Transactional>>(
        &mut self,
        store: &mut S,
        key: &Key,
    ) -> Result<Option<Bytes>, RequestError> {
        Ok(store.get(key)?.and_then(|v| v.value().value().cloned().flatten()))
    }
    /// Writes `value` to `key` in the current transaction, visible at once.
    ///
    /// # Errors
    /// The store's errors.
    pub fn write<S: Store<Transactional>>(
        &mut self,
        store: &mut S,
        key: &Key,
        value: Bytes,
    ) -> Result<(), RequestError> {
        let txn = self.txn.unwrap_or_else(|| self.begin(store.now()));
        let stamp = self.clock.next(store.now());
        store.put(key, DomPair::new(txn, Lww::new(stamp, Some(value))))
    }
    /// Ends the transaction (its writes are already out).
    pub fn commit(&mut self) -> TxnEnd {
        self.txn = None;
        TxnEnd::Committed
    }
}
// ANCHOR_END: read-uncommitted-client
// level:read-uncommitted:client:end

// level:read-committed:client:begin
// ANCHOR: read-committed-client
/// Read committed: writes are buffered at the client and sent only at commit, so no one ever
/// reads a write of an uncommitted (or aborted) transaction.
#[derive(Clone, Debug)]
pub struct ReadCommittedSession {
    inner: ReadUncommittedSession,
    buffer: Vec<(Key, Bytes)>,
}

impl ReadCommittedSession {
    /// A session for `client`.
    pub const fn new(client: u64) -> Self {
        Self { inner: ReadUncommittedSession::new(client), buffer: Vec::new() }
    }
    /// Starts a transaction.
    pub fn begin(&mut self, now: u64) -> TxnId {
        self.buffer.clear();
        self.inner.begin(now)
    }
    /// Reads `key`: the transaction's own buffered write, else the store's committed value.
    ///
    /// # Errors
    /// The store's errors.
    pub fn read<S: Store<Transactional>>(
        &mut self,
        store: &mut S,
        key: &Key,
    ) -> Result<Option<Bytes>, RequestError> {
        match self.buffer.iter().rev().find(|(k, _)| k == key) {
            Some((_, value)) => Ok(Some(value.clone())),
            None => self.inner.read(store, key),
        }
    }
    /// Buffers a write until commit.
    pub fn write(&mut self, key: &Key, value: Bytes) {
        self.buffer.push((key.clone(), value));
    }
    /// Sends every buffered write, tagged with the transaction id.
    ///
    /// # Errors
    /// The store's errors (writes sent before the error stay sent).
    pub fn commit<S: Store<Transactional>>(
        &mut self,
        store: &mut S,
    ) -> Result<TxnEnd, RequestError> {
        for (key, value) in std::mem::take(&mut self.buffer) {
            self.inner.write(store, &key, value)?;
        }
        Ok(self.inner.commit())
    }
    /// Drops the buffered writes.
    pub fn abort(&mut self) -> TxnEnd {
        self.buffer.clear();
        self.inner.txn = None;
        TxnEnd::Aborted
    }
}
// ANCHOR_END: read-committed-client
// level:read-committed:client:end

// level:item-cut-isolation:client:begin
// ANCHOR: item-cut-isolation-client
/// Item-cut isolation: read committed, plus a per-transaction read cache, so reading a key
/// twice in one transaction gives the same answer.
#[derive(Clone, Debug)]
pub struct ItemCutSession {
    inner: ReadCommittedSession,
    cache: HashMap<Key, Option<Bytes>>,
}

impl ItemCutSession {
    /// A session for `client`.
    pub fn new(client: u64) -> Self {
        Self { inner: ReadCommittedSession::new(client), cache: HashMap::new() }
    }
    /// Starts a transaction with an empty read cache.
    pub fn begin(&mut self, now: u64) -> TxnId {
        self.cache.clear();
        self.inner.begin(now)
    }
    /// Reads `key` once per transaction; later reads come from the cache.
    ///
    /// # Errors
    /// The store's errors.
    pub fn read<S: Store<Transactional>>(
        &mut self,
        store: &mut S,
        key: &Key,
    ) -> Result<Option<Bytes>, RequestError> {
        if let Some(value) = self.cache.get(key) {
            return Ok(value.clone());
        }
        let value = self.inner.read(store, key)?;
        self.cache.insert(key.clone(), value.clone());
        Ok(value)
    }
    /// Buffers a write (and reads of the key see it).
    pub fn write(&mut self, key: &Key, value: Bytes) {
        self.cache.insert(key.clone(), Some(value.clone()));
        self.inner.write(key, value);
    }
    /// Commits.
    ///
    /// # Errors
    /// The store's errors.
    pub fn commit<S: Store<Transactional>>(
        &mut self,
        store: &mut S,
    ) -> Result<TxnEnd, RequestError> {
        self.inner.commit(store)
    }
    /// Aborts.
    pub fn abort(&mut self) -> TxnEnd {
        self.cache.clear();
        self.inner.abort()
    }
}
// ANCHOR_END: item-cut-isolation-client
// level:item-cut-isolation:client:end
