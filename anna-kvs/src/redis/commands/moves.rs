//! `RENAME`, `RENAMENX`, `COPY` and `MSETNX`: commands over several keys that read before
//! they write, in rounds (a [`Waiting`] plan), since their keys may live on different actors
//! and nodes, which no coordination-free store changes at once.
//!
//! What a client can count on:
//! - **Nothing acknowledged is lost** (with one replica per key; see below). `RENAME` writes
//!   the destination, and only once that write is acknowledged deletes the source, and only if
//!   it still holds what was copied (`DeleteIf`, judged by the source's owning actor). If the
//!   source changed in between, the move starts over with the new value, writing the
//!   destination again only over its own copy (a few times, then an error saying the
//!   destination holds a copy).
//! - **Between the rounds** another client can see both keys (`RENAME`), and a key can be
//!   created by someone else between `MSETNX`'s check and its writes: then the keys `MSETNX`
//!   wrote are deleted again (each only if still unchanged) and it answers 0.
//! - With several replicas per key, "absent" (`RENAMENX`, `COPY` without `REPLACE`,
//!   `MSETNX`) is as the owning actor of the replica asked sees it, as for `SET NX`; and the
//!   source's delete is a delete like `DEL`'s: a write to the source that another replica took
//!   concurrently, stamped before the delete and not yet seen here, is neither copied nor
//!   kept.

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
        written: None,
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

/// A key's value and deadline, as a move reads and writes it.
type Held = (Content, Option<i64>);

/// Where a move is.
#[derive(Debug)]
enum Stage {
    /// The source's read goes out next.
    Read,
    /// The source's read is out.
    Reading,
    /// The destination's write goes out next.
    Write(Held),
    /// That write is out.
    Writing(Held),
    /// The destination holds the copy: the source's delete (if unchanged) goes out next.
    Delete(Held),
    /// That delete is out.
    Deleting,
    /// Finished (answered).
    Done,
}

/// A `RENAME`, `RENAMENX` or `COPY` in progress.
///
/// A move writes the destination first and deletes the source only once that write is
/// acknowledged, and only if the source still holds what was copied: a refused write (over
/// `maxmemory`, an owner that did not answer) leaves the source as it was. When the source
/// changed in between, the move reads it again and writes the destination again, but only
/// over its own earlier copy: a value someone else wrote there meanwhile is never replaced.
#[derive(Debug)]
struct Move {
    src: Bytes,
    dst: Bytes,
    goal: Goal,
    stage: Stage,
    tries: u32,
    /// What this move last wrote to the destination.
    written: Option<Held>,
}

impl Move {
    /// `RENAMENX` answers 1 and 0; `RENAME` OK.
    fn answers_int(&self) -> bool {
        matches!(self.goal, Goal::RenameNx)
    }

    fn moved(&self) -> Reply {
        if self.answers_int() { Reply::Int(1) } else { Reply::ok() }
    }

    /// The source changed between its read and its delete: read it again, or give up.
    fn start_over(&mut self) -> Option<Reply> {
        self.tries += 1;
        if self.tries >= MAX_TRIES {
            self.stage = Stage::Done;
            return Some(Reply::Error(format!(
                "ERR the source key changed {MAX_TRIES} times during the move; the destination holds a copy of it and the source was kept"
            )));
        }
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
            Stage::Write((content, at)) => {
                let when = match self.goal {
                    _ if self.written.is_some() => Condition::Always,
                    Goal::Rename | Goal::Copy { replace: true } => Condition::Always,
                    Goal::RenameNx | Goal::Copy { replace: false } => Condition::IfAbsent,
                };
                let replace = RedisOp::Replace {
                    content: content.clone(),
                    at,
                    when,
                    only_over: self.written.clone(),
                };
                self.stage = Stage::Writing((content, at));
                vec![apply(&self.dst, replace)]
            }
            Stage::Delete((content, at)) => {
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
                    // Someone else deleted the source after this move copied it: the copy
                    // stands.
                    None if self.written.is_some() => Some(self.moved()),
                    None if matches!(self.goal, Goal::Copy { .. }) => Some(Reply::Int(0)),
                    None => Some(Reply::Error("ERR no such key".into())),
                    Some(_) if self.src == self.dst => {
                        Some(if self.answers_int() { Reply::Int(0) } else { Reply::ok() })
                    }
                    Some(held) => {
                        self.stage = Stage::Write(held);
                        None
                    }
                },
            },
            Stage::Writing(held) => match next() {
                Ok(Response::Applied(RedisOpOutput::Nil)) if self.written.is_some() => {
                    Some(Reply::Error(
                        "ERR both keys changed during the move: the destination no longer holds this move's copy (written by another client, deleted or expired) and the source was kept".into(),
                    ))
                }
                Ok(Response::Applied(RedisOpOutput::Nil)) => Some(Reply::Int(0)),
                Ok(Response::Applied(RedisOpOutput::Ok)) => match self.goal {
                    Goal::Copy { .. } => Some(Reply::Int(1)),
                    Goal::Rename | Goal::RenameNx => {
                        self.written = Some(held.clone());
                        self.stage = Stage::Delete(held);
                        None
                    }
                },
                other => Some(crate::redis::plan::applied(other)),
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

    fn rounds_in_exec(&self) -> bool {
        true
    }

    fn written_keys(&self) -> Vec<&Bytes> {
        match self.goal {
            Goal::Copy { .. } => vec![&self.dst],
            Goal::Rename | Goal::RenameNx => vec![&self.dst, &self.src],
        }
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
    Plan::Wait(
        Box::new(SetAllIfAbsent { pairs, stage: NxStage::Check, wrote: Vec::new(), failure: None }),
        0,
    )
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
    /// The error to answer once the undo is done.
    failure: Option<Reply>,
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
        let error = answers.iter().find_map(|a| a.as_ref().err().map(error_reply));
        let outputs: Vec<Option<RedisOpOutput>> = answers
            .into_iter()
            .map(|a| match a {
                Ok(Response::Applied(output)) => Some(output),
                _ => None,
            })
            .collect();
        let reply = match self.stage {
            NxStage::Checking => match error {
                Some(error) => Some(error),
                None if outputs.iter().any(|o| matches!(o, Some(RedisOpOutput::Bulk(Some(_))))) => {
                    Some(Reply::Int(0))
                }
                None => {
                    self.stage = NxStage::Write;
                    None
                }
            },
            NxStage::Writing => {
                // (A write that failed may still have been applied, a timed-out one say: it
                // is undone too, which is safe, as the undo deletes only an unchanged key.)
                self.wrote = (0..outputs.len())
                    .filter(|&i| !matches!(outputs[i], Some(RedisOpOutput::Nil)))
                    .collect();
                if self.wrote.len() == self.pairs.len() && error.is_none() {
                    Some(Reply::Int(1))
                } else if self.wrote.is_empty() {
                    Some(error.unwrap_or(Reply::Int(0)))
                } else {
                    // Some keys were written and others not (created meanwhile by another
                    // client, or refused): the written ones are deleted again, then the
                    // answer is 0 (or the error).
                    self.failure = error;
                    self.stage = NxStage::Undo;
                    None
                }
            }
            NxStage::Undoing => Some(self.failure.take().unwrap_or(Reply::Int(0))),
            _ => None,
        };
        match reply {
            None if last => Some(Reply::Error("ERR the command could not finish".into())),
            reply => reply,
        }
    }

    fn rounds_in_exec(&self) -> bool {
        true
    }

    fn written_keys(&self) -> Vec<&Bytes> {
        self.pairs.iter().map(|(key, _)| key).collect()
    }

    fn retry_after(&self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Request, RequestError};

    fn string_value(text: &'static str) -> Result<Response<RedisValue>, RequestError> {
        let register = lattice_core::Lww::new(
            lattice_core::Stamp::new(1, 1),
            Some(Bytes::from_static(text.as_bytes())),
        );
        Ok(Response::Value(Some(RedisValue::from_register(register, 1))))
    }

    fn applied(output: RedisOpOutput) -> Result<Response<RedisValue>, RequestError> {
        Ok(Response::Applied(output))
    }

    fn rename(nx: bool) -> Move {
        Move {
            src: Bytes::from_static(b"src"),
            dst: Bytes::from_static(b"dst"),
            goal: if nx { Goal::RenameNx } else { Goal::Rename },
            stage: Stage::Read,
            tries: 0,
            written: None,
        }
    }

    fn op(request: &Request<RedisValue>) -> &RedisOp {
        match request {
            Request::Apply { op, .. } => op,
            other => panic!("{other:?}"),
        }
    }

    /// The source's delete goes out only once the destination's write was acknowledged: a
    /// refused write (over maxmemory, an owner that did not answer) leaves the source alone.
    #[test]
    fn a_refused_destination_write_never_deletes_the_source() {
        let totals = Counters::default();
        let mut step = rename(false);
        assert!(matches!(step.poll()[..], [Request::Get { .. }]));
        assert_eq!(step.check(vec![string_value("v")], false, &totals), None);
        let write = step.poll();
        assert_eq!(write.len(), 1, "the destination alone: {write:?}");
        assert!(matches!(op(&write[0]), RedisOp::Replace { .. }));
        let refused = Err(RequestError::OutOfMemory { used: 2, limit: 1 });
        let reply = step.check(vec![refused], false, &totals);
        assert!(matches!(reply, Some(Reply::Error(_))), "{reply:?}");
        assert!(step.poll().is_empty(), "nothing more is sent");
    }

    /// When the source changed before its delete, the move reads it again and writes the
    /// destination again only over its own copy; if someone else wrote the destination
    /// meanwhile, it stops with an error and keeps both.
    #[test]
    fn a_retry_replaces_only_its_own_copy() {
        let totals = Counters::default();
        let mut step = rename(true);
        step.poll();
        step.check(vec![string_value("old")], false, &totals);
        let write = step.poll();
        let RedisOp::Replace { when, only_over, .. } = op(&write[0]) else { panic!() };
        assert_eq!((*when, only_over.is_none()), (Condition::IfAbsent, true));
        step.check(vec![applied(RedisOpOutput::Ok)], false, &totals);
        assert!(matches!(op(&step.poll()[0]), RedisOp::DeleteIf { .. }));
        // The source changed: read again.
        assert_eq!(step.check(vec![applied(RedisOpOutput::Int(0))], false, &totals), None);
        step.poll();
        step.check(vec![string_value("new")], false, &totals);
        let write = step.poll();
        let RedisOp::Replace { content, only_over, .. } = op(&write[0]) else { panic!() };
        assert_eq!(content, &Content::String(Bytes::from_static(b"new")));
        assert_eq!(only_over, &Some((Content::String(Bytes::from_static(b"old")), None)));
        // Someone else wrote the destination meanwhile: stop, keep both.
        let reply = step.check(vec![applied(RedisOpOutput::Nil)], false, &totals);
        assert!(matches!(reply, Some(Reply::Error(ref e)) if e.contains("source was kept")));
        // And a retry that finds the source deleted by someone else answers moved.
        let mut step = rename(true);
        step.poll();
        step.check(vec![string_value("old")], false, &totals);
        step.poll();
        step.check(vec![applied(RedisOpOutput::Ok)], false, &totals);
        step.poll();
        step.check(vec![applied(RedisOpOutput::Int(0))], false, &totals);
        step.poll();
        assert_eq!(
            step.check(vec![Ok(Response::Value(None))], false, &totals),
            Some(Reply::Int(1))
        );
    }

    /// MSETNX undoes the keys it wrote when another was not written (created meanwhile, or
    /// refused), and answers the refusal once the undo is done.
    #[test]
    fn msetnx_undoes_a_partial_write() {
        let totals = Counters::default();
        let pairs = vec![
            (Bytes::from_static(b"a"), Bytes::from_static(b"1")),
            (Bytes::from_static(b"b"), Bytes::from_static(b"2")),
        ];
        let mut step =
            SetAllIfAbsent { pairs, stage: NxStage::Check, wrote: Vec::new(), failure: None };
        step.poll();
        let absent = || applied(RedisOpOutput::Bulk(None));
        assert_eq!(step.check(vec![absent(), absent()], false, &totals), None);
        step.poll();
        let refused = Err(RequestError::OutOfMemory { used: 2, limit: 1 });
        assert_eq!(step.check(vec![applied(RedisOpOutput::Ok), refused], false, &totals), None);
        // Both are undone: the refused one may have been applied for all the answer says (a
        // timeout), and the undo deletes only a key still holding this value.
        let undo = step.poll();
        assert_eq!(undo.len(), 2);
        assert_eq!(undo[0].key(), &Bytes::from_static(b"a"));
        assert!(undo.iter().all(|r| matches!(op(r), RedisOp::DeleteIf { .. })));
        let answers = vec![applied(RedisOpOutput::Int(1)), applied(RedisOpOutput::Int(0))];
        let reply = step.check(answers, false, &totals);
        assert!(matches!(reply, Some(Reply::Error(ref e)) if e.starts_with("OOM")), "{reply:?}");
    }
}
