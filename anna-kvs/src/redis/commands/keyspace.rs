//! Commands on keys of any type: DEL, UNLINK, EXISTS, TYPE.
//!
//! A `DEL` is a write like any other: a tombstone stamped by the actor, observed-remove for
//! counters and sets, so writes concurrent with it on other replicas survive it.

use bytes::Bytes;

use crate::message::{Request, Response};
use crate::redis::plan::{Context, Plan, applied, apply, engine, get};
use crate::redis::resp::Reply;
use crate::redis::session::Session;
use crate::redis::value::{RedisOp, RedisOpOutput};

/// `DEL key [key ...]` (and `UNLINK`, the same here: memory is reclaimed after gossip anyway):
/// how many of the keys existed.
pub fn plan_del(_: &mut Session, _: &Context<'_>, args: &[Bytes]) -> Plan {
    let mut requests = Vec::with_capacity(args.len() * 2);
    for key in args {
        requests.push(get(key));
        requests.push(Request::Delete { key: key.clone() });
    }
    engine(requests, |answers, _| {
        let mut existed = 0;
        for pair in answers.chunks(2) {
            if let [Ok(Response::Value(Some(v))), _] = pair
                && v.kind().is_some()
            {
                existed += 1;
            }
        }
        Reply::Int(existed)
    })
}

/// `EXISTS key [key ...]`: how many of the keys exist (a key named twice counts twice).
/// Each is asked where it is stored, without copying its value.
pub fn plan_exists(_: &mut Session, _: &Context<'_>, args: &[Bytes]) -> Plan {
    engine(args.iter().map(|key| apply(key, RedisOp::Kind)).collect(), |answers, _| {
        let mut existing = 0;
        for answer in answers {
            match answer {
                Ok(Response::Applied(RedisOpOutput::Bulk(Some(_)))) => existing += 1,
                Ok(Response::Applied(_)) => {}
                other => return applied(other),
            }
        }
        Reply::Int(existing)
    })
}

/// `TYPE key`: `string` (strings and counters), `set` or `none`, without copying the value.
pub fn plan_type(_: &mut Session, _: &Context<'_>, args: &[Bytes]) -> Plan {
    engine(vec![apply(&args[0], RedisOp::Kind)], |mut answers, _| match answers.remove(0) {
        Ok(Response::Applied(RedisOpOutput::Bulk(name))) => {
            Reply::Simple(name.map_or("none".into(), |n| String::from_utf8_lossy(&n).into_owned()))
        }
        other => applied(other),
    })
}
