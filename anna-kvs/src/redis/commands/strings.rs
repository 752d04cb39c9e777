//! String and counter commands: GET, SET, MGET, MSET, INCR, DECR, INCRBY, DECRBY.
//!
//! A string is a last-writer-wins register; concurrent `SET`s on two replicas converge to the
//! later stamp. The `INCR` family moves a PN-counter, so concurrent increments on different
//! replicas all count.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::redis::plan::op_error_reply;
use crate::redis::plan::{
    Context, Plan, applied, apply_one, engine, get, not_an_integer, owned, parse_i64, read_value,
};
use crate::redis::resp::Reply;
use crate::redis::session::Session;
use crate::redis::value::RedisOp;

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

/// `SET key value` (no options: expiry and conditional writes are not supported yet).
pub fn plan_set(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    match args {
        [key, value] => {
            if let Err(reply) = cx.check_sizes(key, Some(value)) {
                return Plan::Now(reply);
            }
            apply_one(key, RedisOp::Set(owned(value)))
        }
        [_, _, option, ..] => Plan::Now(Reply::Error(format!(
            "ERR SET option '{}' is not supported by anna-server (EX, PX, NX, XX, GET, KEEPTTL: no expiry or conditional writes in a coordination-free store); use plain SET key value",
            String::from_utf8_lossy(option)
        ))),
        _ => unreachable!("the table's arity admits at least two arguments"),
    }
}

/// `MGET key [key ...]`: a nil for every key that holds no string.
pub fn plan_mget(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    if let Err(reply) = cx.check_keys(args) {
        return Plan::Now(reply);
    }
    engine(args.iter().map(get).collect(), |answers, _| {
        Reply::Array(
            answers
                .into_iter()
                .map(|a| match read_value(a) {
                    Ok(Some(v)) => v.get_string().ok().flatten().map_or(Reply::Nil, Reply::Bulk),
                    _ => Reply::Nil,
                })
                .collect(),
        )
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
        args.chunks(2)
            .map(|kv| crate::redis::plan::apply(&kv[0], RedisOp::Set(owned(&kv[1]))))
            .collect(),
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
