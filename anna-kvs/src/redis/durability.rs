//! Persistence commands: `SAVE`, `BGSAVE`, `BGREWRITEAOF`, `LASTSAVE`.
//!
//! Each actor writes its own snapshot (see [`crate::node::aof`]); a node-wide save is asked
//! of every actor through [`NodeHandle::request_save`] and is done once all have written one
//! that answers it. `SAVE` blocks only its own connection while that happens (Redis's blocks
//! the whole server): the actors go on serving.

use bytes::Bytes;

use super::plan::{Answers, Context, Plan, Waiting};
use super::resp::Reply;
use super::session::Session;
use crate::message::Request;
use crate::node::NodeHandle;

use super::value::RedisValue;

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
    if let [option] = args
        && !option.eq_ignore_ascii_case(b"schedule")
    {
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

    fn check(&mut self, _: Answers, last: bool) -> Option<Reply> {
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
    Plan::Now(Reply::Int(last_save(cx) as i64))
}

/// See [`plan_lastsave`].
pub fn last_save(cx: &Context<'_>) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let started = now.saturating_sub(cx.settings.started.elapsed().as_secs());
    let reports = cx.node.map(NodeHandle::reports).unwrap_or_default();
    match reports.iter().map(|r| r.last_save_unix).min() {
        Some(0) | None => started,
        Some(oldest) => oldest,
    }
}
