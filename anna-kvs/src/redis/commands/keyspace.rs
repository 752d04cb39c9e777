//! Commands on keys of any type: DEL, UNLINK, EXISTS, TYPE, and on this node's keys as a
//! whole: DBSIZE, SCAN, KEYS, RANDOMKEY.
//!
//! A `DEL` is a write like any other: a tombstone stamped by the actor, observed-remove for
//! counters and sets, so writes concurrent with it on other replicas survive it.

use bytes::Bytes;

use crate::message::{LocalQuery, Request, Response};
use crate::redis::plan::{Context, Plan, applied, apply, engine, get, not_an_integer, parse_i64};
use crate::redis::resp::Reply;
use crate::redis::session::Session;
use crate::redis::value::{RedisOp, RedisOpOutput, RedisValue};
use crate::ring::ThreadIndex;

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

/// The actors whose keys make up this node's keys: one when every actor holds every key,
/// else all of them (each holds its own share; a key several local actors replicate is
/// counted, and may be scanned, once per actor).
fn node_actors(cx: &Context<'_>) -> Vec<ThreadIndex> {
    match cx.node {
        None => Vec::new(),
        Some(node) if node.topology().is_full() => vec![0],
        Some(node) => {
            (0..node.local_actors()).filter_map(|a| ThreadIndex::try_from(a).ok()).collect()
        }
    }
}

fn local(actor: ThreadIndex, query: LocalQuery) -> Request<RedisValue> {
    Request::Local { actor, query }
}

/// `DBSIZE`: the keys this node holds now (asked of its actors, not their last report); an
/// expired key counts until its actor deletes it, as in Redis.
pub fn plan_dbsize(_: &mut Session, cx: &Context<'_>, _: &[Bytes]) -> Plan {
    let requests = node_actors(cx).into_iter().map(|a| local(a, LocalQuery::Count)).collect();
    engine(requests, |answers, _| {
        let mut total = 0;
        for answer in answers {
            match answer {
                Ok(Response::Count(n)) => total += n,
                other => return applied(other),
            }
        }
        Reply::Int(i64::try_from(total).unwrap_or(i64::MAX))
    })
}

/// Bits of a `SCAN` cursor below the actor's index: the position within that actor.
const POSITION_BITS: u32 = 56;

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`: this node's keys, one actor after
/// the other, each in the order of a fixed hash of the key. The cursor is the actor's index
/// and a position in that order, so it stays valid between calls, across connections and
/// while keys come and go: a key held for the whole scan is answered at least once.
pub fn plan_scan(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    let Some(cursor) = std::str::from_utf8(&args[0]).ok().and_then(|c| c.parse::<u64>().ok())
    else {
        return Plan::Now(Reply::Error("ERR invalid cursor".into()));
    };
    let (mut pattern, mut count, mut type_name) = (None, 10_usize, None);
    let mut options = args[1..].chunks(2);
    for option in options.by_ref() {
        let [name, value] = option else {
            return Plan::Now(Reply::Error("ERR syntax error".into()));
        };
        match &name.to_ascii_uppercase()[..] {
            b"MATCH" => pattern = Some(value.clone()),
            b"COUNT" => match parse_i64(value) {
                Some(n) if n >= 1 => count = usize::try_from(n).unwrap_or(usize::MAX),
                Some(_) => return Plan::Now(Reply::Error("ERR syntax error".into())),
                None => return Plan::Now(not_an_integer()),
            },
            b"TYPE" => type_name = Some(value.clone()),
            _ => return Plan::Now(Reply::Error("ERR syntax error".into())),
        }
    }
    // The pattern `*` filters nothing (Redis does not even match it: an empty key passes).
    pattern = pattern.filter(|p| &p[..] != b"*");
    let actors = node_actors(cx);
    let index = usize::try_from(cursor >> POSITION_BITS).unwrap_or(usize::MAX);
    let Some(&actor) = actors.get(index) else {
        return Plan::Now(scan_reply(0, Vec::new()));
    };
    let from = cursor & ((1 << POSITION_BITS) - 1);
    let query = LocalQuery::Scan { from, count, pattern, type_name };
    let last = actors.len() - 1;
    engine(vec![local(actor, query)], move |mut answers, _| match answers.remove(0) {
        Ok(Response::Keys { keys, next }) => {
            let cursor = match next {
                Some(position) => ((index as u64) << POSITION_BITS) | position,
                None if index < last => ((index + 1) as u64) << POSITION_BITS,
                None => 0,
            };
            scan_reply(cursor, keys)
        }
        other => applied(other),
    })
}

fn scan_reply(cursor: u64, keys: Vec<Bytes>) -> Reply {
    Reply::Array(vec![
        Reply::Bulk(cursor.to_string().into()),
        Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
    ])
}

/// `KEYS pattern`: every key of this node matching the glob (one pass over each actor's
/// keys, as Redis's `KEYS` blocks its server: prefer `SCAN`).
pub fn plan_keys(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    let pattern = Some(args[0].clone()).filter(|p| &p[..] != b"*");
    let query =
        LocalQuery::Scan { from: 0, count: usize::MAX, pattern: pattern.clone(), type_name: None };
    let requests = node_actors(cx).into_iter().map(|a| local(a, query.clone())).collect();
    engine(requests, |answers, _| {
        let mut all = Vec::new();
        for answer in answers {
            match answer {
                Ok(Response::Keys { keys, .. }) => all.extend(keys.into_iter().map(Reply::Bulk)),
                other => return applied(other),
            }
        }
        Reply::Array(all)
    })
}

/// `RANDOMKEY`: a key of this node at random, nil if it holds none.
pub fn plan_randomkey(_: &mut Session, cx: &Context<'_>, _: &[Bytes]) -> Plan {
    let actors = node_actors(cx);
    // Every actor is asked (one may hold no keys while another does); the answer is taken
    // from a random one of those that found a key.
    let requests = actors.iter().map(|&a| local(a, LocalQuery::Random)).collect();
    engine(requests, |answers, _| {
        let mut found = Vec::new();
        for answer in answers {
            match answer {
                Ok(Response::Keys { keys, .. }) => found.extend(keys),
                other => return applied(other),
            }
        }
        if found.is_empty() {
            return Reply::Nil;
        }
        let pick = (crate::redis::value::now_us() as usize) % found.len();
        Reply::Bulk(found.swap_remove(pick))
    })
}
