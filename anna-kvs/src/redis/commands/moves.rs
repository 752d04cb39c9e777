//! `RENAME`, `RENAMENX`, `COPY` and `MSETNX`: commands over several keys that read before
//! they write, in rounds (a [`Waiting`] plan), since their keys may live on different actors
//! and nodes, which no coordination-free store changes at once.
//!
//! What a client can count on:
//! - **Nothing acknowledged is lost.** `RENAME` writes the destination before it deletes the
//!   source, and deletes it only if it still holds what was copied (`DeleteIf`, judged by the
//!   source's owning actor). If the source changed in between, the move starts over with the
//!   new value (a few times, then an error saying the destination holds a copy).
//! - **Between the rounds** another client can see both keys (`RENAME`), and a key can be
//!   created by someone else between `MSETNX`'s check and its writes: then the keys `MSETNX`
//!   wrote are deleted again (each only if still unchanged) and it answers 0.
//! - With several replicas per key, "absent" (`RENAMENX`, `COPY` without `REPLACE`,
//!   `MSETNX`) is as the owning actor of the replica asked sees it, as for `SET NX`.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;

use crate::message::Response;
use crate::redis::plan::{
    Answers, Context, Counters, Plan, Waiting, apply, error_reply, get, key_in_db, not_an_integer,
    owned, parse_i64, read_value,
};
use crate::redis::resp::Reply;
use crate::redis::session::Session;
use crate::redis::value::{Condition, Content, RedisOp, RedisOpOutput, RedisValue, Ttl};

/// How many times a `RENAME` starts over when its source keeps changing under it.
const MAX_TRIES: u32 = 8;

/// `RENAME key newkey`.
pub fn plan_rename(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    start_move(cx, args, Goal::Rename)
}

/// `RENAMENX key newkey`.
pub fn plan_renamenx(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    start_move(cx, args, Goal::RenameNx)
}

/// `COPY source destination [DB destination-db] [REPLACE]`.
pub fn plan_copy(session: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    let mut replace = false;
    let mut db = session.db;
    let mut i = 2;
    while i < args.len() {
        let option = args[i].to_ascii_lowercase();
        if option == b"replace" {
            replace = true;
        } else if option == b"db" && i + 1 < args.len() {
            let Some(n) = parse_i64(&args[i + 1]) else { return Plan::Now(not_an_integer()) };
            match u8::try_from(n) {
                Ok(n) if n < crate::db::DATABASES => db = n,
                _ => return Plan::Now(Reply::Error("ERR DB index is out of range".into())),
            }
            i += 1;
        } else {
            return Plan::Now(Reply::Error("ERR syntax error".into()));
        }
        i += 1;
    }
    // The destination was named for the selected database; DB names another.
    let raw = if session.db == 0 { &args[1][..] } else { crate::db::strip(&args[1]) };
    let dst = match key_in_db(db, &Bytes::copy_from_slice(raw)) {
        Ok(dst) => dst,
        Err(reply) => return Plan::Now(reply),
    };
    if dst == args[0] {
        return Plan::Now(Reply::Error("ERR source and destination objects are the same".into()));
    }
    start_move(cx, &[args[0].clone(), dst], Goal::Copy { replace })
}

fn start_move(cx: &Context<'_>, args: &[Bytes], goal: Goal) -> Plan {
    if let Err(reply) = cx.check_keys(&args[..2]) {
        return Plan::Now(reply);
    }
    let step = Move {
        src: args[0].clone(),
        dst: args[1].clone(),
        goal,
        stage: Stage::Read,
        tries: 0,
        answer_int: matches!(goal, Goal::RenameNx),
    };
    Plan::Wait(Box::new(step), 0)
}

/// What a move is for.
#[derive(Clone, Copy, Debug)]
enum Goal {
    /// Move, replacing the destination.
    Rename,
    /// Move only if the destination is absent.
    RenameNx,
    /// Copy, replacing the destination only with `replace`.
    Copy { replace: bool },
}

/// Where a move is.
#[derive(Debug)]
enum Stage {
    /// The source's read goes out next.
    Read,
    /// The source's read is out.
    Reading,
    /// The destination's write goes out next (with `RENAME`, the source's delete too).
    Write(Content, Option<i64>),
    /// That write is out.
    Writing(Content, Option<i64>),
    /// `RENAMENX` wrote the destination: the source's delete goes out next.
    Delete(Content, Option<i64>),
    /// That delete is out.
    Deleting,
    /// Finished (answered).
    Done,
}

/// A `RENAME`, `RENAMENX` or `COPY` in progress.
#[derive(Debug)]
struct Move {
    src: Bytes,
    dst: Bytes,
    goal: Goal,
    stage: Stage,
    tries: u32,
    /// Answer 1 (`RENAMENX`) rather than OK once moved.
    answer_int: bool,
}

impl Move {
    fn moved(&self) -> Reply {
        if self.answer_int { Reply::Int(1) } else { Reply::ok() }
    }

    /// The source changed between its read and its delete: read it again (the destination
    /// is this move's own now, so the next write replaces it), or give up.
    fn start_over(&mut self) -> Option<Reply> {
        self.tries += 1;
        if self.tries >= MAX_TRIES {
            self.stage = Stage::Done;
            return Some(Reply::Error(format!(
                "ERR the source key changed {MAX_TRIES} times during the move; the destination holds a copy of it and the source was kept"
            )));
        }
        self.goal = Goal::Rename;
        self.stage = Stage::Read;
        None
    }
}

impl Waiting for Move {
    fn poll(&mut self) -> Vec<crate::message::Request<RedisValue>> {
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Read => {
                self.stage = Stage::Reading;
                vec![get(&self.src)]
            }
            Stage::Write(content, at) => {
                let when = match self.goal {
                    Goal::Rename | Goal::Copy { replace: true } => Condition::Always,
                    Goal::RenameNx | Goal::Copy { replace: false } => Condition::IfAbsent,
                };
                let replace = RedisOp::Replace { content: content.clone(), at, when };
                let mut requests = vec![apply(&self.dst, replace)];
                if matches!(self.goal, Goal::Rename) {
                    let delete = RedisOp::DeleteIf { content: content.clone(), at };
                    requests.push(apply(&self.src, delete));
                }
                self.stage = Stage::Writing(content, at);
                requests
            }
            Stage::Delete(content, at) => {
                self.stage = Stage::Deleting;
                vec![apply(&self.src, RedisOp::DeleteIf { content, at })]
            }
            other => {
                self.stage = other;
                Vec::new()
            }
        }
    }

    fn check(&mut self, answers: Answers, last: bool, _: &Counters) -> Option<Reply> {
        let mut answers = answers.into_iter();
        let mut next = || answers.next().unwrap_or(Err(crate::message::RequestError::Timeout));
        let reply = match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Reading => match read_value(next()) {
                Err(reply) => Some(reply),
                Ok(value) => match value.as_ref().and_then(RedisValue::content) {
                    None if matches!(self.goal, Goal::Copy { .. }) => Some(Reply::Int(0)),
                    None => Some(Reply::Error("ERR no such key".into())),
                    Some(_) if self.src == self.dst => {
                        Some(if self.answer_int { Reply::Int(0) } else { Reply::ok() })
                    }
                    Some((content, at)) => {
                        self.stage = Stage::Write(content, at);
                        None
                    }
                },
            },
            Stage::Writing(content, at) => match (self.goal, next()) {
                (_, Ok(Response::Applied(RedisOpOutput::Nil))) => Some(Reply::Int(0)),
                (Goal::Copy { .. }, Ok(Response::Applied(RedisOpOutput::Ok))) => {
                    Some(Reply::Int(1))
                }
                (Goal::RenameNx, Ok(Response::Applied(RedisOpOutput::Ok))) => {
                    self.stage = Stage::Delete(content, at);
                    None
                }
                (Goal::Rename, Ok(Response::Applied(RedisOpOutput::Ok))) => match next() {
                    Ok(Response::Applied(RedisOpOutput::Int(1))) => Some(self.moved()),
                    Ok(Response::Applied(RedisOpOutput::Int(_))) => self.start_over(),
                    other => Some(crate::redis::plan::applied(other)),
                },
                (_, other) => Some(crate::redis::plan::applied(other)),
            },
            Stage::Deleting => match next() {
                Ok(Response::Applied(RedisOpOutput::Int(1))) => Some(self.moved()),
                Ok(Response::Applied(RedisOpOutput::Int(_))) => self.start_over(),
                other => Some(crate::redis::plan::applied(other)),
            },
            other => {
                self.stage = other;
                None
            }
        };
        match reply {
            None if last => Some(Reply::Error("ERR the command could not finish".into())),
            reply => reply,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

/// `MSETNX key value [key value ...]`: 1 if every key was absent and is now set, else 0.
pub fn plan_msetnx(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    if !args.len().is_multiple_of(2) {
        return Plan::Now(crate::redis::plan::arity_error("msetnx"));
    }
    // A key named twice takes its last value (Redis sets them in order).
    let mut last: HashMap<&Bytes, usize> = HashMap::new();
    for (i, pair) in args.chunks(2).enumerate() {
        if let Err(reply) = cx.check_sizes(&pair[0], Some(&pair[1])) {
            return Plan::Now(reply);
        }
        last.insert(&pair[0], i);
    }
    let pairs: Vec<(Bytes, Bytes)> = args
        .chunks(2)
        .enumerate()
        .filter(|(i, pair)| last[&pair[0]] == *i)
        .map(|(_, pair)| (pair[0].clone(), owned(&pair[1])))
        .collect();
    Plan::Wait(Box::new(SetAllIfAbsent { pairs, stage: NxStage::Check, wrote: Vec::new() }), 0)
}

/// Where an `MSETNX` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NxStage {
    Check,
    Checking,
    Write,
    Writing,
    Undo,
    Undoing,
}

/// An `MSETNX` in progress: check every key, write each only if still absent, and delete
/// the ones written if another was not.
#[derive(Debug)]
struct SetAllIfAbsent {
    pairs: Vec<(Bytes, Bytes)>,
    stage: NxStage,
    /// The pairs written (indices), to undo.
    wrote: Vec<usize>,
}

impl Waiting for SetAllIfAbsent {
    fn poll(&mut self) -> Vec<crate::message::Request<RedisValue>> {
        let (next, requests) = match self.stage {
            NxStage::Check => (
                NxStage::Checking,
                self.pairs.iter().map(|(key, _)| apply(key, RedisOp::Kind)).collect(),
            ),
            NxStage::Write => (
                NxStage::Writing,
                self.pairs
                    .iter()
                    .map(|(key, value)| {
                        let op = RedisOp::SetIf {
                            value: value.clone(),
                            when: Condition::IfAbsent,
                            get: false,
                            ttl: Ttl::Clear,
                        };
                        apply(key, op)
                    })
                    .collect(),
            ),
            NxStage::Undo => (
                NxStage::Undoing,
                self.wrote
                    .iter()
                    .map(|&i| {
                        let (key, value) = &self.pairs[i];
                        apply(
                            key,
                            RedisOp::DeleteIf { content: Content::String(value.clone()), at: None },
                        )
                    })
                    .collect(),
            ),
            other => (other, Vec::new()),
        };
        self.stage = next;
        requests
    }

    fn check(&mut self, answers: Answers, last: bool, _: &Counters) -> Option<Reply> {
        if let Some(error) = answers.iter().find_map(|a| a.as_ref().err()) {
            return Some(error_reply(error));
        }
        let outputs: Vec<RedisOpOutput> = answers
            .into_iter()
            .filter_map(|a| match a {
                Ok(Response::Applied(output)) => Some(output),
                _ => None,
            })
            .collect();
        let reply = match self.stage {
            NxStage::Checking => {
                if outputs.iter().any(|o| matches!(o, RedisOpOutput::Bulk(Some(_)))) {
                    Some(Reply::Int(0))
                } else {
                    self.stage = NxStage::Write;
                    None
                }
            }
            NxStage::Writing => {
                self.wrote = (0..outputs.len())
                    .filter(|&i| matches!(outputs[i], RedisOpOutput::Ok))
                    .collect();
                if self.wrote.len() == self.pairs.len() {
                    Some(Reply::Int(1))
                } else {
                    self.stage = NxStage::Undo;
                    None
                }
            }
            NxStage::Undoing => Some(Reply::Int(0)),
            _ => None,
        };
        match reply {
            None if last => Some(Reply::Error("ERR the command could not finish".into())),
            reply => reply,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}
