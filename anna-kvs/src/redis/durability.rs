//! Persistence commands: `SAVE`, `BGSAVE`, `BGREWRITEAOF`, `LASTSAVE`, and `WAIT`, which
//! waits for a connection's writes to reach other nodes.
//!
//! Each actor writes its own snapshot (see [`crate::node::aof`]); a node-wide save is asked
//! of every actor through [`NodeHandle::request_save`] and is done once all have written one
//! that answers it. `SAVE` blocks only its own connection while that happens (Redis's blocks
//! the whole server): the actors go on serving.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::plan::{Answers, Context, Counters, Plan, Waiting, not_an_integer, parse_i64};
use super::resp::Reply;
use super::session::{Session, WAIT_MAX_KEY_BYTES, WAIT_MAX_KEYS};
use super::value::RedisValue;
use crate::message::{Request, Response};
use crate::node::NodeHandle;

/// The node, if it keeps a data directory; the error otherwise.
fn persistent<'a>(cx: &Context<'a>) -> Result<&'a NodeHandle<RedisValue>, Reply> {
    match cx.node {
        Some(node) if node.persistent() => Ok(node),
        _ => Err(Reply::Error(
            "ERR this server keeps no data directory: start it with --dir DIR (and --appendonly yes) to save".into(),
        )),
    }
}

/// `BGSAVE [SCHEDULE]`: every actor starts a snapshot at its next epoch (one in progress
/// finishes first).
pub fn plan_bgsave(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    let schedule = matches!(args, [option] if option.eq_ignore_ascii_case(b"schedule"));
    if !args.is_empty() && !schedule {
        return Plan::Now(Reply::Error("ERR syntax error".into()));
    }
    match persistent(cx) {
        Ok(node) => {
            node.request_save();
            Plan::Now(Reply::Simple("Background saving started".into()))
        }
        Err(reply) => Plan::Now(reply),
    }
}

/// `BGREWRITEAOF`: the same snapshot (it is what compacts the logs).
pub fn plan_bgrewriteaof(_: &mut Session, cx: &Context<'_>, _: &[Bytes]) -> Plan {
    match persistent(cx) {
        Ok(node) => {
            node.request_save();
            Plan::Now(Reply::Simple("Background append only file rewriting started".into()))
        }
        Err(reply) => Plan::Now(reply),
    }
}

/// `SAVE`: a snapshot of every actor; answers `OK` once all are on disk.
pub fn plan_save(_: &mut Session, cx: &Context<'_>, _: &[Bytes]) -> Plan {
    match persistent(cx) {
        Ok(node) => {
            let number = node.request_save();
            Plan::Wait(Box::new(Save { node: node.clone(), number }), 0)
        }
        Err(reply) => Plan::Now(reply),
    }
}

struct Save {
    node: NodeHandle<RedisValue>,
    number: u64,
}

impl Waiting for Save {
    fn poll(&mut self) -> Vec<Request<RedisValue>> {
        Vec::new()
    }

    fn check(&mut self, _: Answers, last: bool, _: &Counters) -> Option<Reply> {
        match self.node.save_outcome(self.number) {
            Some(Ok(())) => Some(Reply::ok()),
            Some(Err(why)) => Some(Reply::Error(format!("ERR snapshot failed: {why}"))),
            None if last => Some(Reply::Simple("Background saving started".into())),
            None => None,
        }
    }
}

/// `LASTSAVE`: when the node last had a whole snapshot (every actor's last one finished by
/// then), in Unix seconds; the start time before the first.
pub fn plan_lastsave(_: &mut Session, cx: &Context<'_>, _: &[Bytes]) -> Plan {
    Plan::Now(Reply::Int(super::admin::last_save(cx) as i64))
}

/// `WAIT numreplicas timeout`: blocks the connection until every key it wrote since its last
/// `WAIT` is acknowledged by `numreplicas` other nodes (each node acknowledges gossip only
/// once its own log holds it), or `timeout` ms pass (0: no limit); answers how many nodes
/// acknowledged all of them, as Redis does. With nothing written, the number of other
/// nodes that replicate a key. Inside `MULTI` it answers at once.
pub fn plan_wait(session: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    let (Some(want), Some(timeout)) = (parse_i64(&args[0]), parse_i64(&args[1])) else {
        return Plan::Now(not_an_integer());
    };
    if timeout < 0 {
        return Plan::Now(Reply::Error("ERR timeout is negative".into()));
    }
    let Some(keys) = session.take_written() else {
        return Plan::Now(Reply::Error(format!(
            "ERR more than {WAIT_MAX_KEYS} keys (or {WAIT_MAX_KEY_BYTES} bytes of keys) were written since this connection's last WAIT: call WAIT more often"
        )));
    };
    if keys.is_empty() {
        let replicas = cx.node.map_or(0, |node| {
            let topology = node.topology();
            let me = node.index();
            let mut nodes: Vec<_> = topology
                .owners(b"", None)
                .into_iter()
                .map(|o| o.node)
                .filter(|&n| n != me)
                .collect();
            nodes.sort_unstable();
            nodes.dedup();
            nodes.len()
        });
        return Plan::Now(Reply::Int(replicas as i64));
    }
    let deadline =
        (timeout > 0).then(|| Instant::now() + Duration::from_millis(timeout.unsigned_abs()));
    let counts = vec![0; keys.len()];
    let want = want.max(0).unsigned_abs();
    Plan::Wait(Box::new(Wait { keys, counts, want, deadline, asked: false }), 0)
}

/// A `WAIT` in progress: each key's best count so far (a key that reached the target is not
/// asked again, so a later write to it by someone else does not hold this one up).
struct Wait {
    keys: Vec<Bytes>,
    counts: Vec<u64>,
    want: u64,
    deadline: Option<Instant>,
    /// Every key was asked once (so `WAIT 0` answers the real count, not 0).
    asked: bool,
}

impl Wait {
    fn pending(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.keys.len()).filter(|&i| !self.asked || self.counts[i] < self.want)
    }
}

impl Waiting for Wait {
    fn poll(&mut self) -> Vec<Request<RedisValue>> {
        self.pending().map(|i| Request::Replicated { key: self.keys[i].clone() }).collect()
    }

    fn check(&mut self, answers: Answers, last: bool, _: &Counters) -> Option<Reply> {
        let pending: Vec<usize> = self.pending().collect();
        self.asked = true;
        for (i, answer) in pending.into_iter().zip(answers) {
            if let Ok(Response::Replicated(n)) = answer {
                self.counts[i] = self.counts[i].max(u64::from(n));
            }
        }
        let reached = self.counts.iter().copied().min().unwrap_or(0);
        let expired = self.deadline.is_some_and(|at| Instant::now() >= at);
        (reached >= self.want || last || expired).then(|| Reply::Int(reached as i64))
    }
}
