//! The value stored under a key by the Redis front end: strings, counters and sets, as one
//! product lattice with Redis' "a key has one type" semantics layered on top.
//!
//! Each component remembers the stamp of its last write, and a DEL records its stamp. The
//! key's visible type is the component written most recently after the last DEL. So `SET`
//! over a set key replaces it (as in Redis), `SADD` on a string key is `WRONGTYPE`, `INCR` on
//! a string holding an integer continues from that integer, and replicas that see the same
//! writes in any order agree on the type and the value.

use std::collections::BTreeMap;

use bytes::Bytes;
use lattice_core::delta::Decompose;
use lattice_core::{Lattice, Lww, Max, OrSet, Stamp};
use serde::{Deserialize, Serialize};

mod expiry;

pub use expiry::{ExpireWhen, Ttl, now_us, ttl_reply};

use self::expiry::Expiry;
use super::inline_bytes::InlineBytes;
use super::long_double::{FloatError, incr_by_float};
use super::resp::encode_bulk;
use crate::value::{Change, KvsValue, OpError};

/// A Redis key's state.
#[derive(Lattice, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RedisValue {
    /// `SET`: last writer wins. A `DEL` writes `None` here too, so for a key that was only
    /// ever a string this register alone records the delete. Short strings are kept inline.
    string: Lww<Option<InlineBytes>>,
    /// Counter and set state, boxed: most keys are plain strings, and a small table entry
    /// keeps the store's hash table dense (a plain string key is 64 bytes).
    /// (A key with a deadline but no counter or set state pays for the deadline only.)
    extra: Option<Box<Extra>>,
}

/// What a key may hold beside its string: counter and set state, and its time to live.
#[derive(Lattice, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Extra {
    /// Counter and set state.
    typed: Option<Box<Typed>>,
    /// The key's time to live (see [`expiry`]).
    expiry: Expiry,
}

/// The parts of a key's state only counters and sets use.
#[derive(Lattice, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Typed {
    /// `INCR` family.
    counter: Tally,
    /// Stamp of the last counter write, as `(time, writer)`.
    counter_at: Max<(u64, u64)>,
    /// `SADD`/`SREM`: add-wins observed-remove set.
    set: OrSet<Bytes>,
    /// Stamp of the last set write.
    set_at: Max<(u64, u64)>,
    /// Stamp of the last `DEL` seen while the key had counter or set state (a `DEL` of a plain
    /// string is the string register's tombstone).
    deleted_at: Max<(u64, u64)>,
}

/// The `INCR` family's state: a count that starts over at every reset of the key and, since
/// that reset, each writer's net contribution.
///
/// A reset is the write an `INCR` found instead of a counter: the string it parses (its
/// value is the base), or the `DEL` (base 0), named by that write's stamp. Every replica that
/// converts the same string or counts after the same `DEL` derives the same reset, so
/// concurrent `INCR`s there add up; a later reset replaces the whole tally (greater reset
/// wins, as in a dominating pair). Each writer's slot holds its net sum since the reset in
/// an `i128`, newest by its own stamp, so no sequence of `INCRBY`s of any size can saturate
/// it: a read is always the base plus every acknowledged step since the reset. (The previous
/// design kept cumulative increments and decrements per writer in `u64`s, which saturated
/// after a few swings near ±2^63 and dropped steps.)
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Tally {
    /// The reset this tally counts from, as `(time, writer)` of its write.
    reset: (u64, u64),
    /// The value at the reset (the same on every replica that derives this reset).
    base: i64,
    /// Writer → (its stamp time at its last step, its net sum since the reset).
    nets: BTreeMap<u64, (u64, i128)>,
}

impl Tally {
    fn value(&self) -> i128 {
        i128::from(self.base) + self.nets.values().map(|&(_, net)| net).sum::<i128>()
    }

    /// Adds `delta` for `writer` at time `time`, starting over from `reset` at `base` if that
    /// reset is newer than the one counted from.
    fn step(&mut self, reset: (u64, u64), base: i64, writer: u64, time: u64, delta: i64) {
        if reset > self.reset {
            *self = Self { reset, base, nets: BTreeMap::new() };
        }
        let slot = self.nets.entry(writer).or_insert((0, 0));
        slot.0 = slot.0.max(time);
        slot.1 += i128::from(delta);
    }
}

impl Lattice for Tally {
    fn merge(&mut self, other: Self) -> bool {
        match other.reset.cmp(&self.reset) {
            std::cmp::Ordering::Greater => {
                *self = other;
                true
            }
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => {
                let mut changed = false;
                if other.base > self.base {
                    self.base = other.base;
                    changed = true;
                }
                for (writer, theirs) in other.nets {
                    let slot = self.nets.entry(writer).or_insert((0, 0));
                    // A writer's newer step carries its whole net so far (ties: the larger).
                    if theirs > *slot {
                        *slot = theirs;
                        changed = true;
                    }
                }
                changed
            }
        }
    }

    fn bottom() -> Self {
        Self::default()
    }

    fn is_bottom(&self) -> bool {
        self.reset == (0, 0) && self.base == 0 && self.nets.is_empty()
    }
}

/// The type a key shows to commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A string (`SET`).
    String,
    /// An integer counter (`INCR`), read as a string.
    Counter,
    /// A set (`SADD`).
    Set,
}

/// A Redis write that depends on the key's current state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RedisOp {
    /// `SET key value`.
    Set(Bytes),
    /// `INCRBY key delta` (and `INCR`, `DECR`, `DECRBY`).
    IncrBy(i64),
    /// `SADD key member...`.
    SAdd(Vec<Bytes>),
    /// `SREM key member...`.
    SRem(Vec<Bytes>),
    /// `SET key value [NX|XX] [GET]`, `SETNX`, `GETSET`: a write under a condition evaluated by
    /// the owning actor, optionally answering the string it replaces.
    SetIf {
        /// The new value.
        value: Bytes,
        /// When to write.
        when: Condition,
        /// Answer the previous string (`GET`).
        get: bool,
        /// What the write does to the key's time to live.
        ttl: Ttl,
    },
    /// `EXPIRE` family: sets the deadline (ms since the Unix epoch) if the key exists and the
    /// condition holds (a deadline already passed deletes the key); answers 1 or 0.
    Expire {
        /// The deadline.
        at: i64,
        /// When to set it.
        when: ExpireWhen,
    },
    /// `PERSIST`: drops the deadline; answers 1 if there was one.
    Persist,
    /// `GETEX`: answers the string, and changes its time to live: `None` leaves it,
    /// [`Ttl::Clear`] is `PERSIST`, [`Ttl::At`] sets a deadline. An error (a bad number) is
    /// answered only for a key holding a string, as Redis answers it.
    GetEx(Result<Option<Ttl>, OpError>),
    /// `TTL` family: the deadline in ms since the Unix epoch, `-1` if none, `-2` if the key
    /// is absent (read).
    Deadline,
    /// `GETDEL key`: answers the string, then deletes the key.
    GetDel,
    /// `APPEND key value`: answers the new length.
    Append(Bytes),
    /// `INCRBYFLOAT key increment`: the string (or counter) read as a float plus the
    /// increment (still unparsed: Redis checks the key's type and value first), stored and
    /// answered as text ([`super::long_double::incr_by_float`]).
    IncrByFloat(Bytes),
    /// `SETRANGE key offset value`: overwrites from `offset` (zero-padded), answers the new
    /// length. An empty value only answers the length.
    SetRange(u64, Bytes),
    /// `RENAME`/`COPY`'s write: the key takes `content` and the deadline `at` (`None`: none)
    /// if `when` holds; answers OK, or nil when it does not.
    Replace {
        /// The value to hold.
        content: Content,
        /// Its deadline (ms since the Unix epoch).
        at: Option<i64>,
        /// When to write.
        when: Condition,
        /// Write only if the key holds exactly this value and deadline (a move writing its
        /// destination again replaces only its own earlier copy).
        only_over: Option<(Content, Option<i64>)>,
    },
    /// `RENAME`'s delete of its source (and `MSETNX`'s undo): deletes the key only if it
    /// still holds `content` with deadline `at`; answers 1 if it did, 0 if the key changed.
    DeleteIf {
        /// The value the key must still hold.
        content: Content,
        /// The deadline it must still have.
        at: Option<i64>,
    },
    /// `SCARD key`: read in place (no copy of the set), O(1).
    SCard,
    /// `SISMEMBER key member`: read in place, O(log n).
    SIsMember(Bytes),
    /// `TYPE`/`EXISTS`: the key's type name (`string`, `set`), nil when it holds nothing; O(1).
    Kind,
    /// `SMEMBERS key`: the members, encoded as RESP bulk strings where the set is stored (one
    /// buffer; the set itself is not copied).
    Members,
}

impl RedisOp {
    /// Whether the operation sets, drops or reads a deadline (it needs the wall clock).
    fn involves_deadline(&self) -> bool {
        matches!(
            self,
            Self::Expire { .. }
                | Self::Persist
                | Self::GetEx(_)
                | Self::Deadline
                | Self::SetIf { ttl: Ttl::At(_), .. }
                | Self::Replace { .. }
                | Self::DeleteIf { .. }
        )
    }

    /// Whether the operation only reads (it never changes the state).
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Self::SCard | Self::SIsMember(_) | Self::Kind | Self::Members | Self::Deadline
        )
    }
}

/// A key's value as a client sees it, as `RENAME` and `COPY` move it: a string (a counter
/// moves as its decimal string, which reads and counts on the same), or a set's members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    /// A string.
    String(Bytes),
    /// A set's members, in the set's order.
    Members(Vec<Bytes>),
}

/// When a conditional `SET` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// Always (plain `SET`, `GETSET`).
    Always,
    /// Only if the key holds nothing (`NX`, `SETNX`).
    IfAbsent,
    /// Only if the key holds something (`XX`).
    IfPresent,
}

/// What a [`RedisOp`] answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RedisOpOutput {
    /// `+OK`.
    Ok,
    /// An integer reply.
    Int(i64),
    /// A string reply, or nil.
    Bulk(Option<Bytes>),
    /// Nil (a conditional write that did not happen).
    Nil,
    /// A collection's elements, each already encoded as a RESP bulk string, one after the
    /// other: the reply adds only the `*count` (or RESP3 `~count`) header.
    Elements {
        /// How many elements `body` holds.
        count: u64,
        /// Their encoding.
        body: Bytes,
    },
}

/// Parses a decimal integer exactly as Redis does (its `string2ll`): an optional `-`, then
/// digits with no leading zero, nothing else (no `+`, no spaces, no `-0`), within `i64`. Used
/// for arguments (`INCRBY k 5`) and for strings read as counters (`INCR` of a string).
///
/// ```
/// use anna_kvs::redis::value::parse_integer;
/// assert_eq!(parse_integer(b"-42"), Some(-42));
/// assert_eq!(parse_integer(b"0"), Some(0));
/// for refused in [&b"+3"[..], b"01", b"-0", b" 1", b"1 ", b"", b"-", b"9223372036854775808"] {
///     assert_eq!(parse_integer(refused), None);
/// }
/// assert_eq!(parse_integer(b"-9223372036854775808"), Some(i64::MIN));
/// ```
pub fn parse_integer(bytes: &[u8]) -> Option<i64> {
    if bytes == b"0" {
        return Some(0);
    }
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    match digits.first() {
        Some(b'1'..=b'9') if digits.len() <= 19 && digits.iter().all(u8::is_ascii_digit) => {}
        _ => return None,
    }
    // Accumulate negatively so i64::MIN fits.
    let mut value: i64 = 0;
    for &digit in digits {
        value = value.checked_mul(10)?.checked_sub(i64::from(digit - b'0'))?;
    }
    if negative { Some(value) } else { value.checked_neg() }
}

fn stamp_pair(stamp: Stamp) -> (u64, u64) {
    (stamp.time, stamp.writer)
}

impl RedisValue {
    /// The latest `DEL`: recorded with the counter/set state, or as the string's tombstone
    /// (`(0, 0)`: never deleted).
    fn deleted_at(&self) -> (u64, u64) {
        let string_deleted = match self.string.as_parts() {
            Some((stamp, None)) => stamp_pair(stamp),
            _ => (0, 0),
        };
        self.typed().map_or(string_deleted, |t| string_deleted.max(*t.deleted_at.get()))
    }

    /// The key's visible type now, or `None` if it reads as absent (never written, deleted,
    /// or expired).
    pub fn kind(&self) -> Option<Kind> {
        self.kind_at(self.clock())
    }

    /// The wall clock (µs) if the key has a deadline to check it against; else 0, and no
    /// clock is read (most keys).
    fn clock(&self) -> u64 {
        if self.has_expiry() { now_us() } else { 0 }
    }

    /// The key's type by its writes alone, whatever its deadline.
    fn raw_kind(&self) -> Option<Kind> {
        self.newest_write().map(|(_, kind)| kind)
    }

    /// When the write that gave the key its current value was stamped (µs since the Unix
    /// epoch), if the key holds one: what `OBJECT IDLETIME` counts from (this store keeps no
    /// read times).
    pub fn written_at(&self) -> Option<u64> {
        self.kind()?;
        self.newest_write().map(|((time, _), _)| time)
    }

    /// The newest write of a value (not a delete) newer than the latest delete, and the type
    /// it wrote.
    fn newest_write(&self) -> Option<((u64, u64), Kind)> {
        let deleted = self.deleted_at();
        let mut best: Option<((u64, u64), Kind)> = None;
        let mut consider = |at: (u64, u64), kind: Kind| {
            if at > deleted && best.is_none_or(|(b, _)| at > b) {
                best = Some((at, kind));
            }
        };
        if let Some((stamp, Some(_))) = self.string.as_parts() {
            consider(stamp_pair(stamp), Kind::String);
        }
        if let Some(typed) = self.typed() {
            consider(*typed.counter_at.get(), Kind::Counter);
            if !typed.set.is_empty() {
                consider(*typed.set_at.get(), Kind::Set);
            }
        }
        best
    }

    /// The key as a last-writer-wins string register (stamp included, tombstones too), for
    /// the register sessions of the consistency levels.
    ///
    /// # Errors
    /// [`OpError::WrongType`] for counters and sets.
    pub fn string_register(&self) -> Result<Lww<Option<Bytes>>, OpError> {
        if self.expired_at(self.clock()) {
            // Past its deadline: the register as the key's expiry leaves it (a tombstone).
            let mut expired = self.clone();
            expired.expire_now(now_us());
            return expired.string_register();
        }
        match self.kind() {
            None | Some(Kind::String) => Ok(match self.string.as_parts() {
                Some((stamp, value)) => Lww::new(stamp, value.as_ref().map(InlineBytes::to_bytes)),
                None => Lww::unwritten(),
            }),
            Some(_) => Err(OpError::WrongType),
        }
    }

    /// A key written as a register: a stamped string, or a stamped delete of whatever the key
    /// held (by `writer`).
    pub fn from_register(register: Lww<Option<Bytes>>, writer: u64) -> Self {
        let mut value = Self::default();
        match register.into_parts() {
            Some((stamp, Some(bytes))) => value.string = Lww::new(stamp, Some(bytes.into())),
            Some((stamp, None)) => {
                value.delete(stamp, writer);
            }
            None => {}
        }
        value
    }

    /// A value of these parts.
    fn from_parts(string: Lww<Option<InlineBytes>>, typed: Option<Typed>, expiry: Expiry) -> Self {
        let extra = (typed.is_some() || !expiry.is_bottom())
            .then(|| Box::new(Extra { typed: typed.map(Box::new), expiry }));
        Self { string, extra }
    }

    /// The counter and set state, if any.
    fn typed(&self) -> Option<&Typed> {
        self.extra.as_ref()?.typed.as_deref()
    }

    /// The counter and set state, if any, to change.
    fn typed_if_any(&mut self) -> Option<&mut Typed> {
        self.extra.as_mut()?.typed.as_deref_mut()
    }

    /// The counter and set state, made if there is none.
    fn typed_mut(&mut self) -> &mut Typed {
        self.extra.get_or_insert_with(Box::default).typed.get_or_insert_with(Box::default)
    }

    /// The deadline register, if the key ever had one.
    fn expiry(&self) -> Option<&Expiry> {
        self.extra.as_ref().map(|e| &e.expiry).filter(|e| !e.is_bottom())
    }

    /// Whether the key ever had a deadline (cheap: most keys have no `extra` at all).
    fn has_expiry(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| !e.expiry.is_bottom())
    }

    fn counter_value(&self) -> i128 {
        self.typed().map_or(0, |t| t.counter.value())
    }

    /// The value as `GET` sees it: a string, or a counter rendered in decimal.
    ///
    /// # Errors
    /// [`OpError::WrongType`] for a set.
    pub fn get_string(&self) -> Result<Option<Bytes>, OpError> {
        self.get_string_at(self.clock())
    }

    /// [`get_string`](Self::get_string) at time `now` (µs).
    fn get_string_at(&self, now: u64) -> Result<Option<Bytes>, OpError> {
        match self.kind_at(now) {
            None => Ok(None),
            Some(Kind::String) => {
                Ok(self.string.value().and_then(|v| v.as_ref()).map(InlineBytes::to_bytes))
            }
            Some(Kind::Counter) => Ok(Some(Bytes::from(self.counter_value().to_string()))),
            Some(Kind::Set) => Err(OpError::WrongType),
        }
    }

    /// The key's value and deadline as a client sees them now (`None`: absent or expired).
    pub fn content(&self) -> Option<(Content, Option<i64>)> {
        self.content_at(self.clock())
    }

    /// [`content`](Self::content) at time `now` (µs).
    fn content_at(&self, now: u64) -> Option<(Content, Option<i64>)> {
        let content = match self.kind_at(now)? {
            Kind::String | Kind::Counter => Content::String(self.get_string_at(now).ok()??),
            Kind::Set => {
                Content::Members(self.typed().iter().flat_map(|t| t.set.iter().cloned()).collect())
            }
        };
        Some((content, self.deadline()))
    }

    /// Whether the key holds `content` with deadline `at` at time `now` (a set's members in
    /// any order).
    fn holds(&self, now: u64, content: Content, at: Option<i64>) -> bool {
        match (self.content_at(now), content) {
            (Some((Content::Members(mut held), held_at)), Content::Members(mut want)) => {
                held.sort_unstable();
                want.sort_unstable();
                held == want && held_at == at
            }
            (Some(held), content) => held == (content, at),
            (None, _) => false,
        }
    }

    /// The members, as `SMEMBERS` sees them.
    ///
    /// # Errors
    /// [`OpError::WrongType`] for strings and counters.
    pub fn members(&self) -> Result<Vec<Bytes>, OpError> {
        match self.kind() {
            None => Ok(Vec::new()),
            Some(Kind::Set) => {
                Ok(self.typed().iter().flat_map(|t| t.set.iter().cloned()).collect())
            }
            Some(_) => Err(OpError::WrongType),
        }
    }

    /// Applies `op` (see [`KvsValue::apply`]) at the time of `stamp`; with `track`, also
    /// builds the delta of the operations that can name one (sets, strings, counters, time
    /// to live): `(changed, answer, delta)`.
    fn run(
        &mut self,
        op: RedisOp,
        stamp: Stamp,
        writer: u64,
        track: bool,
    ) -> Result<(bool, RedisOpOutput, Option<Self>), OpError> {
        // Deadlines are judged by the wall clock. A write's stamp can run ahead of it (the
        // actor's clock moves past every stamp it sees, up to its bound on clocks ahead), so
        // it is read when a deadline is involved — and never later than the stamp, which
        // keeps tests with small stamps deterministic.
        let now = if self.has_expiry() || op.involves_deadline() {
            stamp.time.min(now_us())
        } else {
            stamp.time
        };
        if op.is_read() {
            return Ok((false, self.read(op, now)?, None));
        }
        // A deadline already passed is a delete first (the very delete every replica writes):
        // the write then finds the key absent, as in Redis. No write fails on an absent key,
        // so a refusal still leaves the state untouched.
        let expired = self.expire_now(now);
        let result = self.write(op, stamp, now, writer, track);
        debug_assert!(!(expired && result.is_err()), "a write refused after an expiry");
        let (changed, output, delta) = result?;
        // A change that expired the key (before the write, or by a deadline already past)
        // has no delta: the whole state goes. Any other delta carries the deadline register,
        // which writes that keep a key's time to live stamp again.
        let delta = if expired || self.expire_now(now) {
            None
        } else {
            delta.map(|delta| {
                let typed = delta.extra.and_then(|e| e.typed).map(|t| *t);
                let expiry = self.expiry().cloned().unwrap_or_default();
                Self::from_parts(delta.string, typed, expiry)
            })
        };
        Ok((changed || expired, output, delta))
    }

    /// A read-only operation at time `now` (µs): an expired key reads as absent.
    fn read(&self, op: RedisOp, now: u64) -> Result<RedisOpOutput, OpError> {
        let kind = self.kind_at(now);
        let set = || self.typed().map(|t| &t.set).filter(|_| kind.is_some());
        let not_a_set = || match kind {
            Some(Kind::String | Kind::Counter) => Err(OpError::WrongType),
            _ => Ok(()),
        };
        Ok(match op {
            RedisOp::SCard => {
                not_a_set()?;
                RedisOpOutput::Int(set().map_or(0, |s| s.len() as i64))
            }
            RedisOp::SIsMember(member) => {
                not_a_set()?;
                RedisOpOutput::Int(set().map_or(0, |s| i64::from(s.contains(&member))))
            }
            RedisOp::Members => {
                not_a_set()?;
                let set = set();
                // Sized for the usual short members up front: growing a buffer of tens of
                // megabytes by doubling would copy it over and over.
                let mut body = Vec::with_capacity(set.map_or(0, |s| s.len() * 24));
                let mut count = 0;
                for member in set.into_iter().flat_map(OrSet::iter) {
                    encode_bulk(member, &mut body);
                    count += 1;
                }
                RedisOpOutput::Elements { count, body: Bytes::from(body) }
            }
            RedisOp::Kind => {
                let name: Option<&'static [u8]> = match kind {
                    Some(Kind::Set) => Some(b"set"),
                    Some(Kind::String | Kind::Counter) => Some(b"string"),
                    None => None,
                };
                RedisOpOutput::Bulk(name.map(Bytes::from_static))
            }
            RedisOp::Deadline => RedisOpOutput::Int(match (kind, self.deadline()) {
                (None, _) => -2,
                (Some(_), None) => -1,
                (Some(_), Some(at)) => at,
            }),
            other => unreachable!("not a read: {other:?}"),
        })
    }

    /// A write at `stamp` (the wall clock reading `now`) to a key whose deadline, if any, has
    /// not passed.
    fn write(
        &mut self,
        op: RedisOp,
        stamp: Stamp,
        now: u64,
        writer: u64,
        track: bool,
    ) -> Result<(bool, RedisOpOutput, Option<Self>), OpError> {
        // The time to live before the write: writes that keep it in Redis stamp it again.
        let deadline = self.deadline();
        // The delta of a string write is the register itself (a string is small).
        let string_delta =
            |value: &Self| track.then(|| Self { string: value.string.clone(), extra: None });
        match op {
            RedisOp::Set(value) => {
                let changed = self.string.merge(Lww::new(stamp, Some(value.into())));
                Ok((changed, RedisOpOutput::Ok, string_delta(self)))
            }
            RedisOp::IncrBy(delta) => {
                let current = self.integer()?;
                let target = current.checked_add(delta).ok_or(OpError::Overflow)?;
                // Counting on from a counter, or from the reset it replaces: the string
                // holding an integer, or the delete (or nothing) before it.
                let reset = match self.raw_kind() {
                    Some(Kind::Counter) => None,
                    Some(Kind::String) => self.string.stamp().map(stamp_pair),
                    _ => Some(self.deleted_at()),
                };
                let typed = self.typed_mut();
                let (reset, base) = match reset {
                    Some(reset) => (reset, current),
                    None => (typed.counter.reset, typed.counter.base),
                };
                typed.counter.step(reset, base, writer, stamp.time, delta);
                typed.counter_at.merge(Max::new(stamp_pair(stamp)));
                // The whole tally (a few writers' slots), not the set beside it.
                let delta = track.then(|| {
                    let counter = Typed {
                        counter: typed.counter.clone(),
                        counter_at: typed.counter_at,
                        ..Typed::default()
                    };
                    Self::from_parts(Lww::default(), Some(counter), Expiry::default())
                });
                self.keep_deadline(deadline, stamp);
                Ok((true, RedisOpOutput::Int(target), delta))
            }
            RedisOp::SetIf { value, when, get, ttl } => {
                let kind = self.raw_kind();
                // GET answers the string (a counter reads as its decimal); a set is WRONGTYPE.
                let previous = if get { self.get_string_at(now)? } else { None };
                let write = match when {
                    Condition::Always => true,
                    Condition::IfAbsent => kind.is_none(),
                    Condition::IfPresent => kind.is_some(),
                };
                let mut changed = write && self.string.merge(Lww::new(stamp, Some(value.into())));
                if changed {
                    match ttl {
                        Ttl::Clear => {}
                        Ttl::Keep => self.keep_deadline(deadline, stamp),
                        Ttl::At(at) => changed |= self.set_deadline(stamp, Some(at)),
                    }
                }
                let output = match (get, write) {
                    (true, _) => RedisOpOutput::Bulk(previous),
                    (false, true) => RedisOpOutput::Ok,
                    (false, false) => RedisOpOutput::Nil,
                };
                Ok((changed, output, string_delta(self)))
            }
            RedisOp::GetDel => {
                let previous = self.get_string_at(now)?;
                let changed = previous.is_some() && KvsValue::delete(self, stamp, writer);
                Ok((changed, RedisOpOutput::Bulk(previous), None))
            }
            RedisOp::Append(tail) => {
                let mut joined = self.get_string_at(now)?.map(|b| b.to_vec()).unwrap_or_default();
                joined.extend_from_slice(&tail);
                let len = i64::try_from(joined.len()).unwrap_or(i64::MAX);
                self.string.merge(Lww::new(stamp, Some(Bytes::from(joined).into())));
                self.keep_deadline(deadline, stamp);
                Ok((true, RedisOpOutput::Int(len), string_delta(self)))
            }
            RedisOp::IncrByFloat(step) => {
                let current = self.get_string_at(now)?;
                let text = incr_by_float(current.as_deref(), &step).map_err(|e| {
                    OpError::Other(match e {
                        FloatError::NotAFloat => "value is not a valid float".into(),
                        FloatError::NotFinite => "increment would produce NaN or Infinity".into(),
                    })
                })?;
                let text = Bytes::from(text);
                self.string.merge(Lww::new(stamp, Some(text.clone().into())));
                self.keep_deadline(deadline, stamp);
                Ok((true, RedisOpOutput::Bulk(Some(text)), string_delta(self)))
            }
            RedisOp::Replace { content, at, when, only_over } => {
                let present = self.raw_kind().is_some();
                let write = match when {
                    Condition::Always => true,
                    Condition::IfAbsent => !present,
                    Condition::IfPresent => present,
                } && only_over
                    .is_none_or(|(held, held_at)| self.holds(now, held, held_at));
                if !write {
                    return Ok((false, RedisOpOutput::Nil, None));
                }
                match content {
                    Content::String(bytes) => {
                        self.string.merge(Lww::new(stamp, Some(bytes.into())));
                    }
                    Content::Members(members) => {
                        // The members this replica has seen go (observed-remove: adds made
                        // concurrently elsewhere survive), the new ones come, and the set is
                        // the key's newest write, so it shows over a string or counter.
                        let typed = self.typed_mut();
                        let old: Vec<Bytes> = typed.set.iter().cloned().collect();
                        for member in &old {
                            typed.set.remove(member);
                        }
                        for member in members {
                            typed.set.add(writer, member);
                        }
                        typed.set_at.merge(Max::new(stamp_pair(stamp)));
                    }
                }
                if at.is_some() {
                    self.set_deadline(stamp, at);
                }
                // No delta: the whole state travels (a rare command).
                Ok((true, RedisOpOutput::Ok, None))
            }
            RedisOp::DeleteIf { content, at } => {
                let same = self.holds(now, content, at);
                let deleted = same && KvsValue::delete(self, stamp, writer);
                Ok((deleted, RedisOpOutput::Int(i64::from(same)), None))
            }
            RedisOp::SetRange(offset, patch) => {
                let current = self.get_string_at(now)?;
                let mut bytes = current.map(|b| b.to_vec()).unwrap_or_default();
                if patch.is_empty() {
                    return Ok((false, RedisOpOutput::Int(bytes.len() as i64), None));
                }
                let start = usize::try_from(offset).map_err(|_| OpError::Overflow)?;
                let end = start.checked_add(patch.len()).ok_or(OpError::Overflow)?;
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[start..end].copy_from_slice(&patch);
                let len = bytes.len() as i64;
                self.string.merge(Lww::new(stamp, Some(Bytes::from(bytes).into())));
                self.keep_deadline(deadline, stamp);
                Ok((true, RedisOpOutput::Int(len), string_delta(self)))
            }
            RedisOp::SAdd(members) => {
                if matches!(self.raw_kind(), Some(Kind::String | Kind::Counter)) {
                    return Err(OpError::WrongType);
                }
                let mut added = 0;
                let mut delta = OrSet::new();
                let absent = self.raw_kind().is_none();
                let typed = self.typed_mut();
                if absent && !typed.set.is_empty() {
                    // Members a delete hides (added before it, merged after it): a new set
                    // starts without them, so they are removed for good first.
                    let hidden: Vec<Bytes> = typed.set.iter().cloned().collect();
                    for member in &hidden {
                        if let Some(tombstones) = typed.set.remove_delta(member) {
                            delta.merge(tombstones);
                        }
                    }
                }
                for member in members {
                    if !typed.set.contains(&member) {
                        added += 1;
                    }
                    if track {
                        delta.merge(typed.set.add_delta(writer, member));
                    } else {
                        typed.set.add(writer, member);
                    }
                }
                typed.set_at.merge(Max::new(stamp_pair(stamp)));
                let delta = track.then(|| Self::set_delta(delta, typed.set_at));
                self.keep_deadline(deadline, stamp);
                Ok((true, RedisOpOutput::Int(added), delta))
            }
            RedisOp::SRem(members) => {
                if matches!(self.raw_kind(), Some(Kind::String | Kind::Counter)) {
                    return Err(OpError::WrongType);
                }
                let mut removed = 0;
                let mut delta = OrSet::new();
                if let Some(typed) = self.typed_if_any() {
                    for member in &members {
                        if let Some(tombstones) = typed.set.remove_delta(member) {
                            removed += 1;
                            delta.merge(tombstones);
                        }
                    }
                }
                // The set's stamp travels with it (unchanged: an SREM is not a newer write of
                // the type), so the delta is never taken for a state older than a flush.
                let set_at = self.typed().map(|t| t.set_at).unwrap_or_default();
                let delta = track.then(|| Self::set_delta(delta, set_at));
                Ok((removed > 0, RedisOpOutput::Int(removed), delta))
            }
            RedisOp::Expire { at, when } => {
                if self.raw_kind().is_none() {
                    return Ok((false, RedisOpOutput::Int(0), None));
                }
                let allowed = when.allows(deadline, at);
                if !allowed {
                    return Ok((false, RedisOpOutput::Int(0), None));
                }
                // A deadline already passed deletes the key (Redis: the key is gone at once).
                if at <= (now / 1000) as i64 {
                    KvsValue::delete(self, stamp, writer);
                    return Ok((true, RedisOpOutput::Int(1), None));
                }
                let changed = self.set_deadline(stamp, Some(at));
                let delta = track.then(Self::default);
                Ok((changed, RedisOpOutput::Int(1), delta))
            }
            RedisOp::Persist => {
                if deadline.is_none() {
                    return Ok((false, RedisOpOutput::Int(0), None));
                }
                let changed = self.set_deadline(stamp, None);
                Ok((changed, RedisOpOutput::Int(1), track.then(Self::default)))
            }
            RedisOp::GetEx(ttl) => {
                let previous = self.get_string_at(now)?;
                let ttl = match (&previous, ttl) {
                    (None, _) => None,
                    (Some(_), ttl) => ttl?,
                };
                let changed = match (&previous, ttl) {
                    (None, _) | (Some(_), None | Some(Ttl::Keep)) => false,
                    (Some(_), Some(Ttl::Clear)) => {
                        deadline.is_some() && self.set_deadline(stamp, None)
                    }
                    (Some(_), Some(Ttl::At(at))) => self.set_deadline(stamp, Some(at)),
                };
                Ok((changed, RedisOpOutput::Bulk(previous), track.then(Self::default)))
            }
            read => unreachable!("a read among the writes: {read:?}"),
        }
    }

    /// A delta that changes only the set part (and the stamp of the last set write).
    fn set_delta(set: OrSet<Bytes>, set_at: Max<(u64, u64)>) -> Self {
        Self::from_parts(
            Lww::default(),
            Some(Typed { set, set_at, ..Typed::default() }),
            Expiry::default(),
        )
    }

    fn integer(&self) -> Result<i64, OpError> {
        match self.raw_kind() {
            None => Ok(0),
            Some(Kind::Counter) => {
                i64::try_from(self.counter_value()).map_err(|_| OpError::Overflow)
            }
            Some(Kind::String) => {
                let raw = self.string.value().and_then(|v| v.as_deref()).unwrap_or_default();
                parse_integer(raw).ok_or(OpError::NotAnInteger)
            }
            Some(Kind::Set) => Err(OpError::WrongType),
        }
    }
}

impl KvsValue for RedisValue {
    const TYPE_NAME: &'static str = "redis-value-v3";
    type Op = RedisOp;
    type OpOutput = RedisOpOutput;

    fn apply(
        &mut self,
        op: RedisOp,
        stamp: Stamp,
        writer: u64,
    ) -> Result<(bool, RedisOpOutput), OpError> {
        let (changed, output, _) = self.run(op, stamp, writer, false)?;
        Ok((changed, output))
    }

    fn apply_delta(
        &mut self,
        op: RedisOp,
        stamp: Stamp,
        writer: u64,
    ) -> Result<(Change<Self>, RedisOpOutput), OpError> {
        let (changed, output, delta) = self.run(op, stamp, writer, true)?;
        let change = match (changed, delta) {
            (false, _) => Change::Unchanged,
            (true, Some(delta)) => Change::Delta(delta),
            (true, None) => Change::Whole,
        };
        Ok((change, output))
    }

    fn encoded_size_bound(&self) -> Option<usize> {
        // A plain string key: the register (tags, the stamp's varints, the length) and nothing
        // else.
        match &self.extra {
            None => Some(self.string.value().and_then(|v| v.as_ref()).map_or(0, |v| v.len()) + 40),
            // Counter, set or deadline state: measured.
            Some(_) => None,
        }
    }

    fn weight(&self) -> usize {
        self.typed().map_or(1, |t| 1 + Decompose::weight(&t.set) + t.counter.nets.len())
    }

    fn split(self, max_weight: usize) -> Vec<Self> {
        if self.typed().is_none_or(|t| Decompose::weight(&t.set) <= max_weight.max(1)) {
            return vec![self];
        }
        let Some(Extra { typed: Some(typed), expiry }) = self.extra.map(|e| *e) else {
            return Vec::new();
        };
        let mut typed = *typed;
        // The first part keeps everything but the set's other parts; leave room for it.
        let others = 1 + typed.counter.nets.len();
        let bound = max_weight.saturating_sub(others).max(1);
        let mut sets = Decompose::split(std::mem::take(&mut typed.set), bound).into_iter();
        typed.set = sets.next().unwrap_or_default();
        let mut parts = vec![Self::from_parts(self.string, Some(typed), expiry)];
        // Every part carries the key's stamps (a max register joins harmlessly), so none is
        // taken for a state older than a flush of its database.
        let (set_at, counter_at, deleted_at) =
            parts[0].typed().map(|t| (t.set_at, t.counter_at, t.deleted_at)).unwrap_or_default();
        parts.extend(sets.map(|set| {
            let typed = Typed { set, set_at, counter_at, deleted_at, ..Typed::default() };
            Self::from_parts(Lww::default(), Some(typed), Expiry::default())
        }));
        parts
    }
    fn op_reads_only(op: &RedisOp) -> bool {
        op.is_read()
    }

    fn op_may_grow(op: &RedisOp) -> bool {
        !op.is_read()
            && !matches!(op, RedisOp::SRem(_) | RedisOp::GetDel | RedisOp::DeleteIf { .. })
    }

    fn delete(&mut self, stamp: Stamp, writer: u64) -> bool {
        let mut changed = self.string.merge(Lww::new(stamp, None));
        if let Some(typed) = self.typed_if_any() {
            changed |= typed.deleted_at.merge(Max::new(stamp_pair(stamp)));
            changed |= KvsValue::delete(&mut typed.set, stamp, writer);
            // The counter needs nothing: the next INCR counts from this delete.
        }
        changed
    }

    fn is_deleted(&self) -> bool {
        // By the writes alone: a deadline passed changes nothing until the actor expires the
        // key (a real delete), so replicas compare equal states equal whatever their clocks.
        self.raw_kind().is_none()
    }

    fn expires_at(&self) -> Option<u64> {
        self.expires_at_us()
    }

    fn type_name(&self) -> Option<&'static str> {
        match self.kind()? {
            Kind::Set => Some("set"),
            Kind::String | Kind::Counter => Some("string"),
        }
    }

    fn expire(&mut self, now: u64) -> bool {
        self.expire_now(now)
    }

    fn newest_stamp(&self) -> Option<Stamp> {
        let string = self.string.stamp();
        let typed = self.typed().map(|t| {
            let (time, writer) =
                (*t.counter_at.get()).max(*t.set_at.get()).max(*t.deleted_at.get());
            Stamp::new(time, writer)
        });
        let expiry = self.expiry().and_then(Lww::stamp);
        string.max(typed).max(expiry)
    }

    fn tombstone_stamp(&self) -> Option<Stamp> {
        // Only a key that was never a counter or a set is a plain timestamped tombstone.
        if self.typed().is_none() && self.raw_kind().is_none() {
            match self.string.as_parts() {
                Some((stamp, None)) => Some(stamp),
                _ => None,
            }
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: u64) -> Stamp {
        Stamp::new(t, 1)
    }

    #[test]
    fn redis_values_obey_the_lattice_laws() {
        let mut a = RedisValue::default();
        a.apply(RedisOp::Set("x".into()), s(1), 1).unwrap();
        let mut b = RedisValue::default();
        b.apply(RedisOp::IncrBy(5), s(2), 2).unwrap();
        let mut c = RedisValue::default();
        c.apply(RedisOp::SAdd(vec!["m".into()]), s(3), 3).unwrap();
        let mut d = a.clone();
        d.delete(s(4), 1);
        lattice_core::laws::check_all(&[a, b, c, d]);
    }

    #[test]
    fn types_follow_redis() {
        let mut v = RedisValue::default();
        v.apply(RedisOp::Set("10".into()), s(1), 1).unwrap();
        assert_eq!(v.apply(RedisOp::IncrBy(5), s(2), 1).unwrap().1, RedisOpOutput::Int(15));
        assert_eq!(v.get_string().unwrap().as_deref(), Some(&b"15"[..]));
        assert_eq!(v.apply(RedisOp::SAdd(vec!["a".into()]), s(3), 1), Err(OpError::WrongType));
        v.apply(RedisOp::Set("hello".into()), s(4), 1).unwrap();
        assert_eq!(v.apply(RedisOp::IncrBy(1), s(5), 1), Err(OpError::NotAnInteger));
        v.delete(s(6), 1);
        assert_eq!(v.kind(), None);
        assert_eq!(v.apply(RedisOp::IncrBy(1), s(7), 1).unwrap().1, RedisOpOutput::Int(1));
        v.delete(s(8), 1);
        assert_eq!(
            v.apply(RedisOp::SAdd(vec!["a".into(), "b".into()]), s(9), 1).unwrap().1,
            RedisOpOutput::Int(2)
        );
        assert_eq!(v.members().unwrap().len(), 2);
        assert_eq!(v.get_string(), Err(OpError::WrongType));
    }

    /// RENAME's two writes: the destination takes the source's content over whatever it
    /// held (a set over a string, a string over a set), and the source is deleted only while
    /// it holds exactly what was copied, so a write that came in between is never lost.
    #[test]
    fn a_move_replaces_the_destination_and_deletes_only_an_unchanged_source() {
        let members = |v: &RedisValue| {
            let mut m = v.members().unwrap();
            m.sort();
            m
        };
        let mut dst = RedisValue::default();
        dst.apply(RedisOp::Set("old".into()), s(1), 1).unwrap();
        let set = Content::Members(vec!["b".into(), "a".into()]);
        let replace = RedisOp::Replace {
            content: set.clone(),
            at: None,
            when: Condition::Always,
            only_over: None,
        };
        assert_eq!(dst.apply(replace, s(2), 1).unwrap().1, RedisOpOutput::Ok);
        assert_eq!(members(&dst), vec![Bytes::from("a"), Bytes::from("b")]);
        let string = Content::String("s".into());
        let only_absent = RedisOp::Replace {
            content: string.clone(),
            at: None,
            when: Condition::IfAbsent,
            only_over: None,
        };
        assert_eq!(dst.apply(only_absent, s(3), 1).unwrap().1, RedisOpOutput::Nil);
        let over = RedisOp::Replace {
            content: string,
            at: Some(i64::MAX),
            when: Condition::Always,
            only_over: None,
        };
        dst.apply(over, s(4), 1).unwrap();
        assert_eq!(dst.get_string().unwrap().as_deref(), Some(&b"s"[..]));
        // Again, only over its own copy: someone else's write in between is kept.
        let own = Some((Content::String("s".into()), Some(i64::MAX)));
        dst.apply(RedisOp::Set("theirs".into()), s(5), 2).unwrap();
        let again = RedisOp::Replace {
            content: Content::String("newer".into()),
            at: None,
            when: Condition::Always,
            only_over: own,
        };
        assert_eq!(dst.apply(again, s(6), 1).unwrap().1, RedisOpOutput::Nil);
        assert_eq!(dst.get_string().unwrap().as_deref(), Some(&b"theirs"[..]));
        dst.apply(RedisOp::Set("s".into()), s(7), 1).unwrap();
        dst.apply(RedisOp::Expire { at: i64::MAX, when: ExpireWhen::default() }, s(8), 1).unwrap();
        assert_eq!(dst.content().map(|(_, at)| at), Some(Some(i64::MAX)));

        let mut src = RedisValue::default();
        src.apply(RedisOp::SAdd(vec!["a".into(), "b".into()]), s(5), 1).unwrap();
        let (copied, at) = src.content().unwrap();
        src.apply(RedisOp::SAdd(vec!["c".into()]), s(6), 2).unwrap();
        let delete = RedisOp::DeleteIf { content: copied, at };
        assert_eq!(src.apply(delete, s(7), 1).unwrap().1, RedisOpOutput::Int(0));
        assert_eq!(members(&src).len(), 3, "the write made in between stays");
        let (now, at) = src.content().unwrap();
        // Members in another order are the same set.
        let Content::Members(mut reversed) = now else { panic!() };
        reversed.reverse();
        let delete = RedisOp::DeleteIf { content: Content::Members(reversed), at };
        assert_eq!(src.apply(delete, s(8), 1).unwrap().1, RedisOpOutput::Int(1));
        assert_eq!(src.kind(), None);
    }

    #[test]
    fn a_plain_string_key_is_small() {
        assert!(std::mem::size_of::<RedisValue>() <= 64, "{}", std::mem::size_of::<RedisValue>());
    }

    #[test]
    fn a_string_delete_hides_a_concurrent_older_counter_and_not_a_newer_one() {
        let mut deleted = RedisValue::default();
        deleted.apply(RedisOp::Set("x".into()), s(1), 1).unwrap();
        deleted.delete(s(5), 1);
        let mut older = RedisValue::default();
        older.apply(RedisOp::IncrBy(3), s(4), 2).unwrap();
        assert_eq!(deleted.clone().join(older.clone()).kind(), None);
        assert_eq!(older.clone().join(deleted.clone()).kind(), None);
        let mut newer = RedisValue::default();
        newer.apply(RedisOp::IncrBy(3), s(6), 2).unwrap();
        assert_eq!(deleted.clone().join(newer).kind(), Some(Kind::Counter));
        // A SET after the DEL wins over the counter written before the DEL.
        let mut set_again = deleted.join(older);
        set_again.apply(RedisOp::Set("y".into()), s(7), 1).unwrap();
        assert_eq!(set_again.get_string().unwrap().as_deref(), Some(&b"y"[..]));
        lattice_core::laws::check_all(&[set_again]);
    }

    #[test]
    fn the_issue_sequence_reads_what_was_acknowledged() {
        let max = i64::MAX;
        let set_max = || Step::Op(RedisOp::Set(Bytes::from(max.to_string())));
        let incr = |by| Step::Op(RedisOp::IncrBy(by));
        let ops = [
            incr(-1),
            incr(-1),
            set_max(),
            incr(-100),
            Step::Del,
            incr(-1),
            set_max(),
            incr(-1),
            Step::Del,
            incr(100),
        ];
        let mut v = RedisValue::default();
        let mut last = None;
        for (t, op) in ops.into_iter().enumerate() {
            last = Some(apply_any(&mut v, op, s(t as u64 + 1)));
        }
        assert_eq!(last, Some(Ok(RedisOpOutput::Int(100))));
        assert_eq!(v.get_string().unwrap().as_deref(), Some(&b"100"[..]));
    }

    /// A command on one key: an op, or a `DEL`.
    #[derive(Clone, Debug)]
    enum Step {
        Op(RedisOp),
        Del,
    }

    /// Applies a step as the actor does (a `DEL` is a stamped delete).
    fn apply_any(v: &mut RedisValue, step: Step, stamp: Stamp) -> Result<RedisOpOutput, OpError> {
        match step {
            Step::Del => {
                KvsValue::delete(v, stamp, stamp.writer);
                Ok(RedisOpOutput::Ok)
            }
            Step::Op(op) => v.apply(op, stamp, stamp.writer).map(|(_, out)| out),
        }
    }

    /// A model of one Redis key holding a string or integer.
    #[derive(Default)]
    struct Model(Option<String>);

    impl Model {
        fn apply(&mut self, step: &Step) -> Result<RedisOpOutput, OpError> {
            match step {
                Step::Op(RedisOp::Set(bytes)) => {
                    self.0 = Some(String::from_utf8_lossy(bytes).into_owned());
                    Ok(RedisOpOutput::Ok)
                }
                Step::Del => {
                    self.0 = None;
                    Ok(RedisOpOutput::Ok)
                }
                Step::Op(RedisOp::IncrBy(delta)) => {
                    let current = match &self.0 {
                        None => 0,
                        Some(text) => {
                            parse_integer(text.as_bytes()).ok_or(OpError::NotAnInteger)?
                        }
                    };
                    let target = current.checked_add(*delta).ok_or(OpError::Overflow)?;
                    self.0 = Some(target.to_string());
                    Ok(RedisOpOutput::Int(target))
                }
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn counters_agree_with_a_model_over_long_random_sequences_with_the_extremes() {
        let extremes = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for run in 0..200 {
            let mut v = RedisValue::default();
            let mut model = Model::default();
            // Two writers on one replica (two actors of a node, or two lives of one).
            for t in 1..=300u64 {
                let pick = |r: u64| extremes[(r % extremes.len() as u64) as usize];
                let op = match next() % 10 {
                    0 => Step::Del,
                    1 | 2 => Step::Op(RedisOp::Set(Bytes::from(pick(next()).to_string()))),
                    3 => Step::Op(RedisOp::Set(Bytes::from_static(b"not a number"))),
                    4 | 5 => Step::Op(RedisOp::IncrBy(pick(next()))),
                    _ => Step::Op(RedisOp::IncrBy((next() % 2001) as i64 - 1000)),
                };
                let stamp = Stamp::new(t, 1 + next() % 2);
                let expected = model.apply(&op);
                let got = apply_any(&mut v, op.clone(), stamp);
                assert_eq!(got, expected, "run {run} step {t}: {op:?}");
                let read =
                    v.get_string().unwrap().map(|b| String::from_utf8_lossy(&b).into_owned());
                assert_eq!(read, model.0, "run {run} step {t} after {op:?}");
            }
        }
    }

    #[test]
    fn replicas_counting_on_from_the_same_string_add_up_and_a_later_set_resets() {
        let mut a = RedisValue::default();
        a.apply(RedisOp::Set(Bytes::from_static(b"10")), s(1), 1).unwrap();
        let mut b = a.clone();
        a.apply(RedisOp::IncrBy(5), Stamp::new(2, 1), 1).unwrap();
        b.apply(RedisOp::IncrBy(-3), Stamp::new(2, 2), 2).unwrap();
        b.apply(RedisOp::IncrBy(1), Stamp::new(3, 2), 2).unwrap();
        let merged = a.clone().join(b.clone());
        assert_eq!(merged.get_string().unwrap().as_deref(), Some(&b"13"[..]));
        assert_eq!(b.clone().join(a.clone()), merged);
        // A SET after both replaces the count; an INCR after it counts from the SET.
        let mut c = merged.clone();
        c.apply(RedisOp::Set(Bytes::from_static(b"100")), s(4), 1).unwrap();
        c.apply(RedisOp::IncrBy(1), s(5), 1).unwrap();
        let all = c.join(merged);
        assert_eq!(all.get_string().unwrap().as_deref(), Some(&b"101"[..]));
    }

    #[test]
    fn tallies_obey_the_lattice_laws() {
        let mut samples = vec![Tally::default()];
        for (reset, base) in [((0, 0), 0), ((5, 1), 10), ((5, 1), 10), ((7, 2), -3)] {
            for writers in
                [vec![], vec![(1, 3, 4)], vec![(1, 4, -2), (2, 1, i128::from(i64::MAX) * 3)]]
            {
                let nets = writers.into_iter().map(|(w, t, n)| (w, (t, n))).collect();
                samples.push(Tally { reset, base, nets });
            }
        }
        lattice_core::laws::check_all(&samples);
    }

    #[test]
    fn concurrent_increments_on_two_replicas_add_up() {
        let mut a = RedisValue::default();
        a.apply(RedisOp::IncrBy(1), s(1), 1).unwrap();
        let mut b = a.clone();
        a.apply(RedisOp::IncrBy(1), s(2), 1).unwrap();
        b.apply(RedisOp::IncrBy(1), s(2), 2).unwrap();
        let merged = a.join(b);
        assert_eq!(merged.get_string().unwrap().as_deref(), Some(&b"3"[..]));
    }
}

#[cfg(test)]
mod delta_tests {
    use lattice_core::laws::{try_check_delta, try_check_split};
    use proptest::prelude::*;

    use super::*;

    fn op_strategy() -> impl Strategy<Value = RedisOp> {
        let member = (0..40_u8).prop_map(|n| Bytes::from(format!("m{n}")));
        prop_oneof![
            4 => proptest::collection::vec(member.clone(), 1..6).prop_map(RedisOp::SAdd),
            2 => proptest::collection::vec(member.clone(), 1..4).prop_map(RedisOp::SRem),
            1 => (0..3_u8).prop_map(|n| RedisOp::Set(Bytes::from(n.to_string()))),
            1 => (-5..5_i64).prop_map(RedisOp::IncrBy),
            1 => Just(RedisOp::Append(Bytes::from_static(b"x"))),
            1 => Just(RedisOp::IncrByFloat(Bytes::from_static(b"0.5"))),
            1 => Just(RedisOp::Replace {
                content: Content::Members(vec![Bytes::from_static(b"m1"), Bytes::from_static(b"m7")]),
                at: None,
                when: Condition::Always,
                only_over: None,
            }),
            1 => (0..2_u8).prop_map(|n| RedisOp::Replace {
                content: Content::String(Bytes::from_static(b"r")),
                at: (n == 0).then_some(20),
                when: Condition::Always,
                only_over: (n == 1).then(|| (Content::String(Bytes::from_static(b"r")), None)),
            }),
            1 => Just(RedisOp::Replace {
                content: Content::String(Bytes::from_static(b"n")),
                at: None,
                when: Condition::IfAbsent,
                only_over: None,
            }),
            1 => Just(RedisOp::DeleteIf { content: Content::String(Bytes::from_static(b"1")), at: None }),
            1 => Just(RedisOp::GetDel),
            1 => (0..2_u8).prop_map(|n| RedisOp::SetIf {
                value: Bytes::from(n.to_string()),
                when: if n == 0 { Condition::IfAbsent } else { Condition::IfPresent },
                get: false,
                ttl: Ttl::Clear,
            }),
            // Deadlines of a few ms, with stamps 400 µs apart: keys expire mid-sequence.
            1 => (1..30_i64, 0..3_u8).prop_map(|(at, keep)| RedisOp::SetIf {
                value: Bytes::from_static(b"t"),
                when: Condition::Always,
                get: false,
                ttl: match keep { 0 => Ttl::At(at), 1 => Ttl::Keep, _ => Ttl::Clear },
            }),
            2 => (1..30_i64, any::<[bool; 4]>()).prop_map(|(at, [nx, xx, gt, lt])| {
                RedisOp::Expire { at, when: ExpireWhen { nx, xx: xx && !nx, gt: gt && !nx, lt: lt && !gt && !nx } }
            }),
            1 => Just(RedisOp::Persist),
            1 => proptest::option::of((1..30_i64).prop_map(Ttl::At))
                .prop_map(|ttl| RedisOp::GetEx(Ok(ttl))),
        ]
    }

    proptest! {
        /// Every delta an operation reports takes the old state to the new one and is below
        /// it, whatever came before (other writers, deletes, type changes); and a replica fed
        /// only the deltas (whole states where there are none) ends equal to the writer.
        #[test]
        fn deltas_take_the_old_state_to_the_new_one(
            steps in proptest::collection::vec((op_strategy(), 1..4_u64, any::<bool>()), 1..60),
        ) {
            let mut state = RedisValue::default();
            let mut replica = RedisValue::default();
            for (time, (op, writer, delete)) in steps.into_iter().enumerate() {
                let stamp = Stamp::new(time as u64 * 400 + 1, writer);
                let before = state.clone();
                if delete {
                    KvsValue::delete(&mut state, stamp, writer);
                    replica.merge(state.clone());
                    continue;
                }
                let Ok((change, _)) = state.apply_delta(op.clone(), stamp, writer) else {
                    prop_assert_eq!(&state, &before, "a refused operation changed the state");
                    continue;
                };
                // The same operation through `apply` ends in the same state.
                let mut plain = before.clone();
                let (changed, _) = plain.apply(op, stamp, writer).unwrap();
                prop_assert_eq!(&plain, &state);
                prop_assert_eq!(changed, change.changed());
                match change {
                    Change::Delta(delta) => {
                        if let Err(violation) = try_check_delta(&before, &delta, &state) {
                            prop_assert!(false, "{}", violation);
                        }
                        replica.merge(delta);
                    }
                    Change::Whole => {
                        replica.merge(state.clone());
                    }
                    Change::Unchanged => prop_assert_eq!(&before, &state),
                }
                prop_assert_eq!(&replica, &state);
            }
            for bound in [1, 3, 10, 1000] {
                if let Err(violation) = try_check_split(&state, bound) {
                    prop_assert!(false, "{}", violation);
                }
            }
        }
    }

    /// `try_check_split` needs `Decompose`: route it to the value's own split.
    impl lattice_core::delta::Decompose for RedisValue {
        fn weight(&self) -> usize {
            KvsValue::weight(self)
        }
        fn split(self, max_weight: usize) -> Vec<Self> {
            KvsValue::split(self, max_weight)
        }
    }

    #[test]
    fn a_big_set_splits_into_parts_that_read_back_whole() {
        let mut set = RedisValue::default();
        let members: Vec<Bytes> = (0..10_000).map(|n| Bytes::from(format!("member:{n}"))).collect();
        set.apply(RedisOp::SAdd(members), Stamp::new(1, 1), 1).unwrap();
        set.apply(RedisOp::SRem(vec![Bytes::from_static(b"member:7")]), Stamp::new(2, 1), 1)
            .unwrap();
        let parts = KvsValue::split(set.clone(), 1000);
        // Members in parts of 999 (the first part also carries the key's scalar state): 11;
        // then the one tombstone.
        assert_eq!(parts.len(), 12);
        assert!(parts.iter().all(|p| KvsValue::weight(p) <= 1000));
        let mut rebuilt = RedisValue::default();
        for part in parts.into_iter().rev() {
            rebuilt.merge(part);
        }
        assert_eq!(rebuilt, set);
        assert_eq!(rebuilt.members().unwrap().len(), 9_999);
        // A delta of one SADD is one member, however big the set.
        let (change, _) = set
            .apply_delta(RedisOp::SAdd(vec![Bytes::from_static(b"new")]), Stamp::new(3, 2), 2)
            .unwrap();
        let Change::Delta(delta) = change else { panic!("no delta: {change:?}") };
        assert_eq!(KvsValue::weight(&delta), 2);
        // Every part and delta carries the set's stamp: a replica that flushed the database
        // at a stamp between the set's writes and now never takes one for an older state.
        let newest_write = set.newest_stamp();
        for part in KvsValue::split(set.clone(), 1000) {
            assert_eq!(part.newest_stamp(), newest_write);
        }
        let remove = RedisOp::SRem(vec![Bytes::from_static(b"member:9")]);
        let (change, _) = set.apply_delta(remove, Stamp::new(4, 2), 2).unwrap();
        let Change::Delta(delta) = change else { panic!("no delta: {change:?}") };
        assert_eq!(delta.newest_stamp(), newest_write);
    }
}

#[cfg(test)]
mod size_bound_tests {
    use super::*;
    use crate::wire::entry_len;

    /// The bound gossip packs by is never below the real encoded size, at the extremes of
    /// stamps and lengths, for both string lattices.
    #[test]
    fn the_size_bound_of_a_plain_string_is_never_below_its_encoding() {
        let key = Bytes::new();
        for len in [0, 1, 22, 23, 250, 251, 65_535, 65_536, 1 << 20] {
            for (time, writer) in [(1, 1), (u64::MAX, u64::MAX), (1 << 40, 7)] {
                let stamp = Stamp::new(time, writer);
                let mut value = RedisValue::default();
                value.apply(RedisOp::Set(Bytes::from(vec![b'x'; len])), stamp, writer).unwrap();
                let bound = value.encoded_size_bound().unwrap();
                assert!(entry_len(&key, &value) <= bound + 1, "len {len}, stamp {stamp:?}");
                let mut deleted = value.clone();
                KvsValue::delete(&mut deleted, Stamp::new(time, writer.wrapping_add(1)), 1);
                assert!(entry_len(&key, &deleted) <= deleted.encoded_size_bound().unwrap() + 1);
                let eventual = Lww::new(stamp, Some(Bytes::from(vec![b'x'; len])));
                assert!(entry_len(&key, &eventual) <= eventual.encoded_size_bound().unwrap() + 1);
            }
        }
        let mut set = RedisValue::default();
        set.apply(RedisOp::SAdd(vec![Bytes::from_static(b"m")]), Stamp::new(1, 1), 1).unwrap();
        assert_eq!(set.encoded_size_bound(), None, "a typed value is measured");
    }
}
