//! String and counter commands: GET, SET (with NX, XX, GET and the expiry options), SETNX,
//! GETSET, GETDEL, APPEND, STRLEN, GETRANGE, SETRANGE, MGET, MSET, INCR, DECR, INCRBY, DECRBY.
//!
//! A string is a last-writer-wins register; concurrent `SET`s on two replicas converge to the
//! later stamp. The `INCR` family counts from the key's last reset, so concurrent increments
//! on different replicas all count. Conditions (`NX`, `XX`, `SETNX`) and read-modify-writes
//! (`GETSET`, `GETDEL`, `APPEND`) are evaluated by the actor that owns the key: exact on a
//! single node and with one replica per key; with several replicas, two of them can both see a
//! key absent and both write (the later write wins), as in Redis Enterprise's active-active
//! databases.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::redis::commands::expiry::Unit;
use crate::redis::plan::op_error_reply;
use crate::redis::plan::{
    Context, Plan, applied, apply, apply_one, engine, get, not_an_integer, owned, parse_i64,
    read_value,
};
use crate::redis::resp::Reply;
use crate::redis::session::Session;
use crate::redis::value::{Condition, RedisOp, Ttl};

/// `GET key`.
pub fn plan_get(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    let key = &args[0];
    if let Err(reply) = cx.check_sizes(key, None) {
        return Plan::Now(reply);
    }
    Plan::Single(Some(get(key)), |answer, counters| match read_value(answer) {
        Ok(value) => match value.map(|v| v.get_string()).transpose() {
            Ok(Some(Some(bytes))) => {
                counters.hits.fetch_add(1, Ordering::Relaxed);
                Reply::Bulk(bytes)
            }
            Ok(_) => {
                counters.misses.fetch_add(1, Ordering::Relaxed);
                Reply::Nil
            }
            Err(wrong) => op_error_reply(&wrong),
        },
        Err(reply) => reply,
    })
}

/// `SET key value [NX | XX] [GET] [EX s | PX ms | EXAT unix-s | PXAT unix-ms | KEEPTTL]`,
/// options checked as Redis 7 checks them: any repeated or conflicting option is a syntax
/// error, then the deadline's number.
pub fn plan_set(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    let (key, value) = (&args[0], &args[1]);
    if let Err(reply) = cx.check_sizes(key, Some(value)) {
        return Plan::Now(reply);
    }
    let mut when = Condition::Always;
    let mut get = false;
    let mut keep_ttl = false;
    let mut expiry: Option<(Unit, &Bytes)> = None;
    let mut words = args[2..].iter();
    while let Some(option) = words.next() {
        let upper = option.to_ascii_uppercase();
        match (&upper[..], when) {
            (b"NX", Condition::Always | Condition::IfAbsent) => when = Condition::IfAbsent,
            (b"XX", Condition::Always | Condition::IfPresent) => when = Condition::IfPresent,
            (b"GET", _) => get = true,
            (b"KEEPTTL", _) if expiry.is_none() => keep_ttl = true,
            // A unit again replaces the number (Redis: the last one wins); another unit, or
            // one after KEEPTTL, is a syntax error.
            (word, _)
                if !keep_ttl
                    && Unit::of(word).is_some()
                    && expiry.is_none_or(|(unit, _)| Some(unit) == Unit::of(word)) =>
            {
                let (Some(unit), Some(number)) = (Unit::of(word), words.next()) else {
                    return Plan::Now(Reply::Error("ERR syntax error".into()));
                };
                expiry = Some((unit, number));
            }
            _ => return Plan::Now(Reply::Error("ERR syntax error".into())),
        }
    }
    let ttl = match expiry {
        Some((unit, number)) => match unit.deadline(number, "set") {
            Ok(at) => Ttl::At(at),
            Err(reply) => return Plan::Now(reply),
        },
        None if keep_ttl => Ttl::Keep,
        None => Ttl::Clear,
    };
    if when == Condition::Always && !get && ttl == Ttl::Clear {
        return apply_one(key, RedisOp::Set(owned(value)));
    }
    apply_one(key, RedisOp::SetIf { value: owned(value), when, get, ttl })
}

/// `SETNX key value`: 1 if it wrote, 0 if the key held something.
pub fn plan_setnx(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    let (key, value) = (&args[0], &args[1]);
    if let Err(reply) = cx.check_sizes(key, Some(value)) {
        return Plan::Now(reply);
    }
    let op = RedisOp::SetIf {
        value: owned(value),
        when: Condition::IfAbsent,
        get: false,
        ttl: Ttl::Clear,
    };
    Plan::Single(Some(apply(key, op)), |answer, _| match applied(answer) {
        Reply::Nil => Reply::Int(0),
        Reply::Simple(_) => Reply::Int(1),
        other => other,
    })
}

/// `GETSET key value`: sets, answering the string it replaced.
pub fn plan_getset(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    let (key, value) = (&args[0], &args[1]);
    if let Err(reply) = cx.check_sizes(key, Some(value)) {
        return Plan::Now(reply);
    }
    apply_one(
        key,
        RedisOp::SetIf { value: owned(value), when: Condition::Always, get: true, ttl: Ttl::Clear },
    )
}

/// `GETDEL key`: the string, and the key deleted.
pub fn plan_getdel(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    if let Err(reply) = cx.check_sizes(&args[0], None) {
        return Plan::Now(reply);
    }
    apply_one(&args[0], RedisOp::GetDel)
}

/// `APPEND key value`: the new length.
pub fn plan_append(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    let (key, value) = (&args[0], &args[1]);
    if let Err(reply) = cx.check_sizes(key, Some(value)) {
        return Plan::Now(reply);
    }
    apply_one(key, RedisOp::Append(owned(value)))
}

/// `INCRBYFLOAT key increment`: the sum as text (Redis's `long double` arithmetic and
/// printing).
pub fn plan_incrbyfloat(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    if let Err(reply) = cx.check_sizes(&args[0], None) {
        return Plan::Now(reply);
    }
    apply_one(&args[0], RedisOp::IncrByFloat(owned(&args[1])))
}

/// `STRLEN key`: the string's length (0 for a missing key).
pub fn plan_strlen(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    if let Err(reply) = cx.check_sizes(&args[0], None) {
        return Plan::Now(reply);
    }
    Plan::Single(Some(get(&args[0])), |answer, _| match read_value(answer) {
        Ok(value) => match value.map(|v| v.get_string()).transpose() {
            Ok(bytes) => Reply::Int(bytes.flatten().map_or(0, |b| b.len() as i64)),
            Err(wrong) => op_error_reply(&wrong),
        },
        Err(reply) => reply,
    })
}

/// `GETRANGE key start end`: the bytes between two offsets (negative: from the end), both
/// included, clamped to the string as Redis clamps them; an empty string for a missing key.
pub fn plan_getrange(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    let key = &args[0];
    if let Err(reply) = cx.check_sizes(key, None) {
        return Plan::Now(reply);
    }
    let (Some(start), Some(end)) = (parse_i64(&args[1]), parse_i64(&args[2])) else {
        return Plan::Now(not_an_integer());
    };
    engine(vec![get(key)], move |mut answers, _| match read_value(answers.remove(0)) {
        Ok(value) => match value.map(|v| v.get_string()).transpose() {
            Ok(bytes) => {
                let bytes = bytes.flatten().unwrap_or_default();
                Reply::Bulk(string_range(&bytes, start, end))
            }
            Err(wrong) => op_error_reply(&wrong),
        },
        Err(reply) => reply,
    })
}

/// Redis's `GETRANGE` arithmetic.
fn string_range(bytes: &Bytes, start: i64, end: i64) -> Bytes {
    let len = bytes.len() as i64;
    if (start < 0 && end < 0 && start > end) || len == 0 {
        return Bytes::new();
    }
    let from_end = |i: i64| if i < 0 { (len + i).max(0) } else { i };
    let (start, end) = (from_end(start), from_end(end).min(len - 1));
    if start > end { Bytes::new() } else { bytes.slice(start as usize..=end as usize) }
}

/// `SETRANGE key offset value`: the new length. The result must fit `max-value-bytes`.
pub fn plan_setrange(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    let (key, value) = (&args[0], &args[2]);
    if let Err(reply) = cx.check_sizes(key, Some(value)) {
        return Plan::Now(reply);
    }
    let Some(offset) = parse_i64(&args[1]) else {
        return Plan::Now(not_an_integer());
    };
    if offset < 0 {
        return Plan::Now(Reply::Error("ERR offset is out of range".into()));
    }
    let max = cx.settings.node.max_value_bytes as u64;
    if !value.is_empty() && (offset as u64).saturating_add(value.len() as u64) > max {
        return Plan::Now(Reply::Error(format!(
            "ERR string exceeds maximum allowed size (max-value-bytes {max})"
        )));
    }
    apply_one(key, RedisOp::SetRange(offset as u64, owned(value)))
}

/// `MGET key [key ...]`: a nil for every key that holds no string.
pub fn plan_mget(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    if let Err(reply) = cx.check_keys(args) {
        return Plan::Now(reply);
    }
    engine(args.iter().map(get).collect(), |answers, _| {
        // A key the engine could not read (no replica answered, a node catching up) fails
        // the whole MGET: a nil would say the key does not exist. A set reads as nil, as in
        // Redis.
        let values: Result<Vec<Reply>, Reply> = answers
            .into_iter()
            .map(|a| {
                read_value(a).map(|v| {
                    v.and_then(|v| v.get_string().ok().flatten()).map_or(Reply::Nil, Reply::Bulk)
                })
            })
            .collect();
        values.map_or_else(|error| error, Reply::Array)
    })
}

/// `MSET key value [key value ...]`: each key is written independently (not atomically).
pub fn plan_mset(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    if !args.len().is_multiple_of(2) {
        return Plan::Now(crate::redis::plan::arity_error("mset"));
    }
    if let Some(reply) = args.chunks(2).find_map(|kv| cx.check_sizes(&kv[0], Some(&kv[1])).err()) {
        return Plan::Now(reply);
    }
    engine(
        args.chunks(2).map(|kv| apply(&kv[0], RedisOp::Set(owned(&kv[1])))).collect(),
        |answers, _| {
            answers
                .into_iter()
                .map(applied)
                .find(|r| matches!(r, Reply::Error(_)))
                .unwrap_or_else(Reply::ok)
        },
    )
}

/// `INCR key`.
pub fn plan_incr(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    incr_by(cx, &args[0], Some(1))
}

/// `DECR key`.
pub fn plan_decr(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    incr_by(cx, &args[0], Some(-1))
}

/// `INCRBY key delta`.
pub fn plan_incrby(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    incr_by(cx, &args[0], parse_i64(&args[1]))
}

/// `DECRBY key delta`.
pub fn plan_decrby(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    match parse_i64(&args[1]) {
        // As Redis: its negation does not fit.
        Some(i64::MIN) => Plan::Now(Reply::Error("ERR decrement would overflow".into())),
        delta => incr_by(cx, &args[0], delta.map(|d| -d)),
    }
}

/// Adds `delta` (`None`: the argument was not an integer in range) to the counter at `key`.
fn incr_by(cx: &Context<'_>, key: &Bytes, delta: Option<i64>) -> Plan {
    if let Err(reply) = cx.check_sizes(key, None) {
        return Plan::Now(reply);
    }
    match delta {
        Some(delta) => apply_one(key, RedisOp::IncrBy(delta)),
        None => Plan::Now(not_an_integer()),
    }
}
