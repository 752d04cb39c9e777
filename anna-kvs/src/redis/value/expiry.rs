//! Keys that expire: a key's time to live as part of its lattice state.
//!
//! The deadline (milliseconds since the Unix epoch, as Redis keeps it) lives in a
//! last-writer-wins register stamped by the write that set it (`EXPIRE`, `SET … EX`) or
//! cleared it (`PERSIST`). It applies only while its stamp is at least that of the key's
//! newest write: a write that replaces the value (`SET`, `DEL`) is newer, so it drops the
//! deadline without touching it, and a write that keeps the deadline in Redis (`INCR`,
//! `SADD`, `APPEND`, `SET … KEEPTTL`) stamps it again with its own stamp. Replicas that have
//! seen the same writes therefore agree on every key's deadline, in whatever order the writes
//! arrived. A write made on one replica concurrently with an `EXPIRE` on another (neither
//! having seen the other) is newer or older by stamp, as with any two writes: if it is newer,
//! the deadline does not survive it.
//!
//! Once the deadline has passed the key reads as absent to every command. The actor holding
//! it then deletes it with a stamp derived from the state — the deadline, or just after the
//! expiry's own stamp if that is later — so every replica that expires the key on its own
//! writes the very same delete, and a write made after the deadline (stamped later) survives
//! it. A write that cleared or moved the deadline on another replica shortly before it passed
//! (within the replication delay) can lose to that delete; the book's expiry section says so.

use std::time::{SystemTime, UNIX_EPOCH};

use lattice_core::{Lattice, Lww, Stamp};
use serde::{Deserialize, Serialize};

use super::{Kind, RedisValue, stamp_pair};
use crate::value::KvsValue;

/// The wall clock in microseconds since the Unix epoch (the actors' clock).
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// What a string write does to the key's time to live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ttl {
    /// Drops it (a plain `SET`, `GETSET`).
    Clear,
    /// Keeps it (`SET … KEEPTTL`).
    Keep,
    /// Sets the deadline, in milliseconds since the Unix epoch (`SET … EX`, `SETEX`, …).
    At(i64),
}

/// `EXPIRE`'s conditions (Redis 7), each one that is set must hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpireWhen {
    /// Only if the key has no deadline (`NX`).
    pub nx: bool,
    /// Only if it has one (`XX`).
    pub xx: bool,
    /// Only if the new deadline is later (`GT`; no deadline counts as infinite).
    pub gt: bool,
    /// Only if the new deadline is earlier (`LT`; no deadline counts as infinite).
    pub lt: bool,
}

impl ExpireWhen {
    /// Whether a deadline `at` may replace `current`.
    pub fn allows(self, current: Option<i64>, at: i64) -> bool {
        let refused = (self.nx && current.is_some())
            || (self.xx && current.is_none())
            || (self.gt && current.is_none_or(|c| at <= c))
            || (self.lt && current.is_some_and(|c| at >= c));
        !refused
    }
}

/// The deadline register: `None` inside means "no deadline" (cleared by `PERSIST`).
pub(super) type Expiry = Lww<Option<i64>>;

impl RedisValue {
    /// The stamp of the key's newest write other than its deadline: a deadline older than
    /// this was not seen by (or was dropped by) that write.
    fn value_stamp(&self) -> (u64, u64) {
        let string = self.string.stamp().map_or((0, 0), stamp_pair);
        self.typed().map_or(string, |t| {
            string.max(*t.counter_at.get()).max(*t.set_at.get()).max(*t.deleted_at.get())
        })
    }

    /// The key's deadline (ms since the Unix epoch) if it has one in force, whether or not it
    /// has passed.
    pub fn deadline(&self) -> Option<i64> {
        let (stamp, at) = self.expiry()?.as_parts()?;
        let at = (*at)?;
        (stamp_pair(stamp) >= self.value_stamp() && self.raw_kind().is_some()).then_some(at)
    }

    /// Whether the deadline has passed at `now` (µs): Redis's rule, expired once the clock in
    /// milliseconds is past the deadline.
    pub(super) fn expired_at(&self, now: u64) -> bool {
        self.has_expiry() && self.deadline().is_some_and(|at| (now / 1000) as i64 > at)
    }

    /// The key's type at time `now` (µs): `None` if it holds nothing or has expired.
    pub fn kind_at(&self, now: u64) -> Option<Kind> {
        if self.expired_at(now) { None } else { self.raw_kind() }
    }

    /// Sets the deadline register to `at` with `stamp`; whether it changed.
    pub(super) fn set_deadline(&mut self, stamp: Stamp, at: Option<i64>) -> bool {
        self.extra.get_or_insert_with(Box::default).expiry.merge(Lww::new(stamp, at))
    }

    /// After a write at `stamp` that keeps the key's time to live (`deadline` is what it was
    /// before the write): stamps the deadline again so it stays in force.
    pub(super) fn keep_deadline(&mut self, deadline: Option<i64>, stamp: Stamp) {
        if let Some(at) = deadline {
            self.set_deadline(stamp, Some(at));
        }
    }

    /// When the key expires, in µs (the first microsecond of the millisecond after the
    /// deadline).
    pub(super) fn expires_at_us(&self) -> Option<u64> {
        if !self.has_expiry() {
            return None;
        }
        let at = self.deadline()?;
        Some(u64::try_from(at.saturating_add(1)).unwrap_or(0).saturating_mul(1000))
    }

    /// Turns a deadline passed at `now` into a delete whose stamp comes from the state:
    /// the deadline's microsecond, or just after the expiry's own stamp if that is later
    /// (writer 0, below every real writer at that time), so every replica writes the same
    /// delete and a write after the deadline survives it.
    pub(super) fn expire_now(&mut self, now: u64) -> bool {
        let Some(due) = self.expires_at_us() else { return false };
        if now < due {
            return false;
        }
        let set_at = self.expiry().and_then(Lww::stamp).map_or(0, |s| s.time);
        let stamp = Stamp::new(due.max(set_at.saturating_add(1)), 0);
        KvsValue::delete(self, stamp, 0)
    }
}

/// A TTL reply from a deadline: `-2` for a missing key, `-1` for no deadline, else what is
/// left (or the deadline itself with `absolute`), in ms or rounded to seconds as Redis does.
pub fn ttl_reply(deadline: i64, now_ms: i64, absolute: bool, millis: bool) -> i64 {
    if (-2..0).contains(&deadline) {
        return deadline;
    }
    let ttl = if absolute { deadline } else { deadline.saturating_sub(now_ms).max(0) };
    if millis { ttl } else { ttl.saturating_add(500) / 1000 }
}

#[cfg(test)]
mod tests {
    use lattice_core::Lattice;

    use super::super::{Condition, RedisOp, RedisOpOutput};
    use super::*;

    /// A stamp `ms` milliseconds into the clock, by `writer`.
    fn at(ms: u64, writer: u64) -> Stamp {
        Stamp::new(ms * 1000, writer)
    }

    fn op(value: &mut RedisValue, op: RedisOp, stamp: Stamp) -> RedisOpOutput {
        value.apply(op, stamp, stamp.writer).unwrap().1
    }

    fn set(v: &str) -> RedisOp {
        RedisOp::Set(Bytes::from(v.to_owned()))
    }

    fn expire(at: i64) -> RedisOp {
        RedisOp::Expire { at, when: ExpireWhen::default() }
    }

    use bytes::Bytes;

    #[test]
    fn replicas_agree_on_deadlines_whatever_order_the_writes_arrive_in() {
        let mut base = RedisValue::default();
        op(&mut base, set("v"), at(1, 1));
        let mut a = base.clone();
        op(&mut a, expire(500), at(2, 1));
        // A write that saw the deadline keeps it (INCR, SADD, APPEND, SET KEEPTTL).
        let mut b = a.clone();
        op(&mut b, RedisOp::Append(Bytes::from_static(b"x")), at(3, 2));
        assert_eq!(b.deadline(), Some(500));
        // A SET that saw it drops it; a PERSIST too.
        let mut c = a.clone();
        op(&mut c, set("w"), at(4, 3));
        assert_eq!(c.deadline(), None);
        let mut d = b.clone();
        op(&mut d, RedisOp::Persist, at(5, 1));
        assert_eq!(d.deadline(), None);
        let states = [base, a, b, c, d];
        for x in &states {
            for y in &states {
                assert_eq!(x.clone().join(y.clone()), y.clone().join(x.clone()));
                assert_eq!(
                    x.clone().join(y.clone()).deadline(),
                    y.clone().join(x.clone()).deadline()
                );
            }
        }
        lattice_core::laws::check_all(&states);
    }

    #[test]
    fn a_write_concurrent_with_an_expire_and_stamped_later_drops_it() {
        let mut base = RedisValue::default();
        op(&mut base, set("v"), at(1, 1));
        let mut expired_here = base.clone();
        op(&mut expired_here, expire(500), at(2, 1));
        // Another replica, not having seen the EXPIRE, counts on later.
        let mut counted = base.clone();
        op(&mut counted, RedisOp::Append(Bytes::from_static(b"!")), at(3, 2));
        assert_eq!(expired_here.clone().join(counted.clone()).deadline(), None);
        // Stamped earlier, it does not.
        let mut earlier = base;
        op(&mut earlier, RedisOp::Append(Bytes::from_static(b"!")), Stamp::new(1500, 2));
        assert_eq!(expired_here.join(earlier).deadline(), Some(500));
    }

    #[test]
    fn replicas_that_expire_a_key_on_their_own_write_the_same_delete() {
        let mut key = RedisValue::default();
        op(&mut key, RedisOp::SAdd(vec![Bytes::from_static(b"m")]), at(1, 1));
        op(&mut key, expire(100), at(2, 1));
        let (mut a, mut b) = (key.clone(), key.clone());
        assert!(!a.expire_now(at(100, 0).time + 999), "not before the millisecond is over");
        assert!(a.expire_now(at(101, 0).time));
        assert!(b.expire_now(at(250, 0).time), "later, by another clock");
        assert_eq!(a, b);
        assert!(a.raw_kind().is_none());
        assert!(!a.clone().expire_now(at(300, 0).time), "once");
        // A write after the deadline (stamped after it) survives the expiry wherever it meets it.
        let mut rewritten = key;
        op(&mut rewritten, RedisOp::SAdd(vec![Bytes::from_static(b"new")]), at(150, 2));
        let joined = a.join(rewritten);
        assert_eq!(joined.members().unwrap(), vec![Bytes::from_static(b"new")]);
        assert_eq!(joined.deadline(), None);
    }

    #[test]
    fn an_expired_key_reads_as_absent_and_a_write_starts_it_afresh() {
        let mut key = RedisValue::default();
        op(&mut key, RedisOp::IncrBy(5), at(1, 1));
        op(&mut key, expire(10), at(2, 1));
        assert_eq!(key.kind_at(at(10, 0).time), Some(super::super::Kind::Counter));
        assert_eq!(key.kind_at(at(11, 0).time), None);
        assert_eq!(op(&mut key, RedisOp::Deadline, at(11, 1)), RedisOpOutput::Int(-2));
        // A conditional SET after the deadline finds the key absent; the INCR starts from 0.
        let set_nx = RedisOp::SetIf {
            value: Bytes::from_static(b"7"),
            when: Condition::IfAbsent,
            get: false,
            ttl: Ttl::Clear,
        };
        assert_eq!(op(&mut key, set_nx, at(12, 1)), RedisOpOutput::Ok);
        assert_eq!(op(&mut key, RedisOp::IncrBy(1), at(13, 1)), RedisOpOutput::Int(8));
        assert_eq!(op(&mut key, RedisOp::Deadline, at(14, 1)), RedisOpOutput::Int(-1));
    }

    #[test]
    fn deadlines_are_judged_by_the_wall_clock_even_when_stamps_run_ahead() {
        // The actor's clock moved 5 s ahead of the wall clock (a peer's stamps).
        let wall_ms = (now_us() / 1000) as i64;
        let ahead = |ms: u64| Stamp::new(now_us() + 5_000_000 + ms, 1);
        let mut key = RedisValue::default();
        let set = RedisOp::SetIf {
            value: Bytes::from_static(b"v"),
            when: Condition::Always,
            get: false,
            ttl: Ttl::At(wall_ms + 60_000),
        };
        assert_eq!(op(&mut key, set, ahead(0)), RedisOpOutput::Ok);
        assert!(key.kind().is_some(), "not expired by a stamp 5 s ahead");
        assert_eq!(op(&mut key, expire(wall_ms + 1_000), ahead(1)), RedisOpOutput::Int(1));
        assert_eq!(op(&mut key, RedisOp::Deadline, ahead(2)), RedisOpOutput::Int(wall_ms + 1_000));
        assert!(key.kind().is_some());
    }

    #[test]
    fn a_set_started_after_a_delete_leaves_out_members_merged_behind_it() {
        let mut a = RedisValue::default();
        op(&mut a, RedisOp::SAdd(vec![Bytes::from_static(b"m1")]), at(1, 1));
        let mut b = a.clone();
        // b adds m3 before a's delete, and it reaches a after the delete.
        op(&mut b, RedisOp::SAdd(vec![Bytes::from_static(b"m3")]), at(2, 2));
        KvsValue::delete(&mut a, at(3, 1), 1);
        a.merge(b);
        assert_eq!(a.kind(), None, "hidden by the delete");
        op(&mut a, RedisOp::SAdd(vec![Bytes::from_static(b"m4")]), at(4, 1));
        assert_eq!(a.members().unwrap(), vec![Bytes::from_static(b"m4")]);
    }

    #[test]
    fn ttl_replies_round_as_redis_does() {
        assert_eq!(ttl_reply(-2, 0, false, false), -2);
        assert_eq!(ttl_reply(-1, 0, true, true), -1);
        assert_eq!(ttl_reply(10_499, 0, false, false), 10);
        assert_eq!(ttl_reply(10_500, 0, false, false), 11);
        assert_eq!(ttl_reply(10_500, 11_000, false, true), 0, "passed: 0, never negative");
        assert_eq!(ttl_reply(10_500, 11_000, true, false), 11);
    }
}
