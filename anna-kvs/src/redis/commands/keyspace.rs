//! Commands on keys of any type: DEL, UNLINK, EXISTS, TYPE, and on this node's keys as a
//! whole: DBSIZE, SCAN, KEYS, RANDOMKEY.
//!
//! A `DEL` is a write like any other: a tombstone stamped by the actor, observed-remove for
//! counters and sets, so writes concurrent with it on other replicas survive it.

use bytes::Bytes;

use crate::message::{LocalQuery, Request, Response};
use crate::node::NodeHandle;
use crate::redis::plan::{
    Context, Plan, applied, apply, engine, error_reply, get, not_an_integer, parse_i64,
};
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
            // A delete that was not applied (an owner out of reach, a refusal) is an error,
            // never a success; so is a count that could not be read.
            if let [Err(error) | Ok(Response::Error(error)), _]
            | [_, Err(error) | Ok(Response::Error(error))] = pair
            {
                return error_reply(error);
            }
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

fn local(actor: ThreadIndex, query: LocalQuery) -> Request<RedisValue> {
    Request::Local { actor, query }
}

/// `DBSIZE`: the keys this node holds now (asked of its actors, not their last report); an
/// expired key counts until its actor deletes it, as in Redis.
pub fn plan_dbsize(session: &mut Session, cx: &Context<'_>, _: &[Bytes]) -> Plan {
    let db = session.db;
    let requests =
        cx.node_actors().into_iter().map(|a| local(a, LocalQuery::Count { db })).collect();
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
pub fn plan_scan(session: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
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
    let actors = cx.node_actors();
    let index = usize::try_from(cursor >> POSITION_BITS).unwrap_or(usize::MAX);
    let Some(&actor) = actors.get(index) else {
        return Plan::Now(scan_reply(0, Vec::new()));
    };
    let from = cursor & ((1 << POSITION_BITS) - 1);
    let query = LocalQuery::Scan { db: session.db, from, count, pattern, type_name };
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
pub fn plan_keys(session: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    let pattern = Some(args[0].clone()).filter(|p| &p[..] != b"*");
    let query =
        LocalQuery::Scan { db: session.db, from: 0, count: usize::MAX, pattern, type_name: None };
    let requests = cx.node_actors().into_iter().map(|a| local(a, query.clone())).collect();
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
pub fn plan_randomkey(session: &mut Session, cx: &Context<'_>, _: &[Bytes]) -> Plan {
    let actors = cx.node_actors();
    let db = session.db;
    // Every actor is asked (one may hold no keys while another does); the answer is taken
    // from a random one of those that found a key.
    let requests = actors.iter().map(|&a| local(a, LocalQuery::Random { db })).collect();
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

/// `FLUSHDB [ASYNC | SYNC]`: empties the selected database on every node (see `flush`).
pub fn plan_flushdb(session: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    flush(session, cx, args, vec![session.db])
}

/// `FLUSHALL [ASYNC | SYNC]`: empties every database on every node (see `flush`).
pub fn plan_flushall(session: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    flush(session, cx, args, (0..crate::db::DATABASES).collect())
}

/// How far above the node's clock a flush inside `EXEC` takes its stamp: the commands queued
/// before it run in the same round, after the stamp is chosen, and take their stamps in the
/// meantime (a few microseconds; a round that takes longer leaves their writes in place).
const EXEC_FLUSH_MARGIN_US: u64 = 1_000;

/// A flush is a lattice fact, not a walk that must reach every replica: a stamp above every
/// write this node acknowledged, handed to each of its actors, which delete every key of the
/// databases written only before it, drop older states arriving later, and pass the stamp to
/// the other nodes (see the actor's `flush` module). A write made after the flush — on any
/// node — is newer and survives it. The commands pipelined before it run first (it waits for
/// their round, then takes the node's clock); both modes answer once this node's actors have
/// flushed (`ASYNC` is accepted for compatibility).
fn flush(session: &Session, cx: &Context<'_>, args: &[Bytes], dbs: Vec<u8>) -> Plan {
    match args {
        [] => {}
        [mode] if mode.eq_ignore_ascii_case(b"ASYNC") || mode.eq_ignore_ascii_case(b"SYNC") => {}
        _ => return Plan::Now(Reply::Error("ERR syntax error".into())),
    }
    // (Planned without a node, in unit tests: one actor, the wall clock.)
    let flushing = Flushing {
        clocks: cx.node.map(NodeHandle::clocks),
        actors: cx.node.map_or(1, NodeHandle::local_actors),
        dbs,
        stage: Stage::First,
    };
    if session.in_exec && !session.exec_in_rounds {
        // One round for the whole transaction: the stamp is taken now, with a margin.
        let requests = flushing.requests(EXEC_FLUSH_MARGIN_US);
        return engine(requests, |answers, _| flushed(answers));
    }
    Plan::Wait(Box::new(flushing), 0)
}

/// A flush waiting for the commands before it: its first poll sends nothing (their round
/// runs), its second takes the node's clock, which now covers their writes, and flushes.
struct Flushing {
    clocks: Option<crate::node::NodeClocks>,
    actors: usize,
    dbs: Vec<u8>,
    stage: Stage,
}

/// Where a [`Flushing`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Not polled yet: the round of the commands before it has not run.
    First,
    /// That round ran: the next poll flushes.
    Ready,
    /// The flush requests went out.
    Sent,
}

impl Flushing {
    /// The flush requests, with a stamp `margin` µs above the node's clock (or the wall
    /// clock, if later).
    fn requests(&self, margin: u64) -> Vec<Request<RedisValue>> {
        let clock = self.clocks.as_ref().map_or(0, crate::node::NodeClocks::newest);
        let time = clock.max(crate::redis::value::now_us()) + 1 + margin;
        let stamp = lattice_core::Stamp::new(time, 0);
        (0..self.actors)
            .filter_map(|a| ThreadIndex::try_from(a).ok())
            .map(|a| local(a, LocalQuery::Flush { dbs: self.dbs.clone(), stamp }))
            .collect()
    }
}

impl crate::redis::plan::Waiting for Flushing {
    fn poll(&mut self) -> Vec<Request<RedisValue>> {
        match self.stage {
            Stage::First => {
                self.stage = Stage::Ready;
                Vec::new()
            }
            Stage::Ready => {
                self.stage = Stage::Sent;
                self.requests(0)
            }
            Stage::Sent => Vec::new(),
        }
    }

    fn check(
        &mut self,
        answers: crate::redis::plan::Answers,
        _: bool,
        _: &crate::redis::plan::Counters,
    ) -> Option<Reply> {
        (self.stage == Stage::Sent).then(|| flushed(answers))
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::ZERO)
    }

    fn rounds_in_exec(&self) -> bool {
        true
    }
}

fn flushed(answers: crate::redis::plan::Answers) -> Reply {
    answers.into_iter().find_map(|a| a.err()).map_or_else(Reply::ok, |e| error_reply(&e))
}

/// `SWAPDB`: refused. Swapping two databases renames every key of both on every replica at
/// once, which no coordination-free store can do atomically.
pub fn plan_swapdb(_: &mut Session, _: &Context<'_>, _: &[Bytes]) -> Plan {
    Plan::Now(Reply::Error(
        "ERR SWAPDB is not supported: swapping databases would rename every key of both on every replica at once, which anna-server cannot do without coordination".into(),
    ))
}
