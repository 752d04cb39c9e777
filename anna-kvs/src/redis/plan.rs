//! What a command turns into: a [`Plan`] (an answer now, or engine requests and how to turn
//! their answers into one reply), the [`Context`] a planner reads, and the helpers every
//! planner shares (building requests, reading answers, the one mapping of engine errors to
//! Redis error text).
//!
//! Planning is pure: it takes a [`Session`](super::session::Session), a [`Context`] and the
//! arguments, and touches no socket, so a planner is unit-tested by calling it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;

use super::config::Settings;
use super::inline_bytes::INLINE_CAPACITY;
use super::resp::Reply;
use super::value::{RedisOp, RedisOpOutput, RedisValue};
use crate::message::{LocalQuery, Request, RequestError, Response};
use crate::node::NodeHandle;
use crate::value::OpError;

/// A command's plan: an answer now, or engine requests and how to answer from their results.
pub enum Plan {
    /// The reply, known without the store (connection and admin commands, errors).
    Now(Reply),
    /// Requests (moved into the round's batch, leaving their count), and how to answer.
    Engine(Vec<Request<RedisValue>>, usize, Finish),
    /// One request (moved into the round's batch) and a plain function to answer it: the
    /// plan of the hot commands (GET, SET) allocates nothing.
    Single(Option<Request<RedisValue>>, FinishOne),
    /// Several commands answered as one array, their requests in one round (`EXEC`).
    Batch(Vec<Plan>),
    /// A command that holds its connection until something happens (`SAVE`, `WAIT`): polled,
    /// with fresh requests each time, until it answers. It ends its batch, so the commands
    /// after it run only once it has answered (as in Redis). The count is that of the
    /// requests in flight.
    Wait(Box<dyn Waiting>, usize),
}

/// What a blocking command waits for (see [`Plan::Wait`]).
pub trait Waiting: Send {
    /// The requests of the next poll (none if it watches something else).
    fn poll(&mut self) -> Vec<Request<RedisValue>>;
    /// The poll's answers: the reply once there is one, `None` to poll again. With `last`
    /// (inside `EXEC`, where nothing may block) it answers with what it has.
    fn check(&mut self, answers: Answers, last: bool, counters: &Counters) -> Option<Reply>;
    /// How long to wait before polling again; `None`: half an epoch (something that changes
    /// with gossip).
    fn retry_after(&self) -> Option<std::time::Duration> {
        None
    }
    /// Whether it needs rounds of its own inside `EXEC` (`RENAME`, `MSETNX`, a flush behind
    /// them), which then splits the transaction; otherwise (`WAIT`, `SAVE`) it answers inside
    /// `EXEC` with what it has at once, as Redis does.
    fn rounds_in_exec(&self) -> bool {
        false
    }
    /// The keys it may write (for `WAIT`).
    fn written_keys(&self) -> Vec<&Bytes> {
        Vec::new()
    }
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Now(reply) => f.debug_tuple("Now").field(reply).finish(),
            Self::Engine(requests, count, _) => {
                f.debug_tuple("Engine").field(requests).field(count).finish()
            }
            Self::Single(request, _) => f.debug_tuple("Single").field(request).finish(),
            Self::Batch(plans) => f.debug_tuple("Batch").field(plans).finish(),
            Self::Wait(_, count) => f.debug_tuple("Wait").field(count).finish(),
        }
    }
}

impl Plan {
    /// The engine requests the plan still holds (before the round takes them), in order.
    pub fn requests(&self) -> Vec<&Request<RedisValue>> {
        match self {
            Self::Now(_) | Self::Wait(..) => Vec::new(),
            Self::Engine(requests, _, _) => requests.iter().collect(),
            Self::Single(request, _) => request.iter().collect(),
            Self::Batch(plans) => plans.iter().flat_map(Plan::requests).collect(),
        }
    }

    /// Tells `session` the keys the plan writes (for `WAIT`); without allocating, as `SET`
    /// goes through here. (A `Batch`'s commands told it when `EXEC` planned them.)
    pub fn note_writes(&self, session: &mut super::session::Session) {
        let mut note = |request: &Request<RedisValue>| {
            // (A flush is about no key: WAIT does not track it.)
            if writes(request) && !matches!(request, Request::Local { .. }) {
                session.note_written(request.key());
            }
        };
        match self {
            Self::Single(Some(request), _) => note(request),
            Self::Engine(requests, _, _) => requests.iter().for_each(note),
            Self::Wait(waiting, _) => {
                for key in waiting.written_keys() {
                    session.note_written(key);
                }
            }
            _ => {}
        }
    }

    /// Moves the plan's requests to the end of the round's batch (keeping their count).
    pub fn take_requests(&mut self, into: &mut Vec<Request<RedisValue>>) {
        match self {
            Self::Now(_) => {}
            Self::Engine(requests, count, _) => {
                *count = requests.len();
                into.append(requests);
            }
            Self::Single(request, _) => into.extend(request.take()),
            Self::Batch(plans) => plans.iter_mut().for_each(|plan| plan.take_requests(into)),
            Self::Wait(waiting, count) => {
                let requests = waiting.poll();
                *count = requests.len();
                into.extend(requests);
            }
        }
    }

    /// The reply, from the answers to the requests [`Plan::take_requests`] moved out (taken
    /// from `answers` in the same order).
    pub fn finish(
        self,
        answers: &mut impl Iterator<Item = Result<Response<RedisValue>, RequestError>>,
        counters: &Counters,
    ) -> Reply {
        match self {
            Self::Now(reply) => reply,
            Self::Engine(_, count, finish) => {
                finish(answers.by_ref().take(count).collect(), counters)
            }
            Self::Single(_, finish) => {
                finish(answers.next().unwrap_or(Err(RequestError::Timeout)), counters)
            }
            Self::Batch(plans) => {
                Reply::Array(plans.into_iter().map(|plan| plan.finish(answers, counters)).collect())
            }
            Self::Wait(mut waiting, count) => waiting
                .check(answers.by_ref().take(count).collect(), true, counters)
                .unwrap_or_else(|| Reply::Error("ERR the command could not finish".into())),
        }
    }

    /// [`Plan::finish`] for the last plan of a connection's batch: a [`Plan::Wait`] not done
    /// yet comes back to be polled again.
    pub fn finish_or_wait(
        self,
        answers: &mut impl Iterator<Item = Result<Response<RedisValue>, RequestError>>,
        counters: &Counters,
    ) -> Result<Reply, Box<dyn Waiting>> {
        match self {
            Self::Wait(mut waiting, count) => {
                match waiting.check(answers.by_ref().take(count).collect(), false, counters) {
                    Some(reply) => Ok(reply),
                    None => Err(waiting),
                }
            }
            other => Ok(other.finish(answers, counters)),
        }
    }
}

/// Whether an engine request may change the store (a read-only operation does not).
pub fn writes(request: &Request<RedisValue>) -> bool {
    match request {
        Request::Get { .. } | Request::Replicated { .. } => false,
        Request::Local { query, .. } => matches!(query, LocalQuery::Flush { .. }),
        Request::Apply { op, .. } => !op.is_read(),
        Request::Put { .. } | Request::Delete { .. } => true,
    }
}

/// The engine's answers to a plan's requests, in order.
pub type Answers = Vec<Result<Response<RedisValue>, RequestError>>;
/// Turns a plan's answers into its reply.
pub type Finish = Box<dyn FnOnce(Answers, &Counters) -> Reply + Send>;
/// Turns a single request's answer into its reply.
pub type FinishOne = fn(Result<Response<RedisValue>, RequestError>, &Counters) -> Reply;

/// Counters shown by INFO: kept server-wide, and tallied per actor for the per-command ones
/// (see [`Counters::flush_into`]).
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted.
    pub connections_received: AtomicU64,
    /// Connections open now.
    pub connected: AtomicUsize,
    /// Connections refused at `maxclients`.
    pub rejected: AtomicU64,
    /// Commands planned.
    pub commands: AtomicU64,
    /// GETs that found a string.
    pub hits: AtomicU64,
    /// GETs that found nothing.
    pub misses: AtomicU64,
    /// Connections closed for breaking the protocol.
    pub protocol_errors: AtomicU64,
    /// Connections closed because their replies would pass the output buffer limit.
    pub output_limit_closed: AtomicU64,
    /// Connections closed because all clients' buffers passed `maxmemory-clients`.
    pub evicted_clients: AtomicU64,
}

impl Counters {
    /// Adds this thread-local tally of the hot counters to `shared` and resets it: the
    /// per-command counters are kept per actor and published once per round, so threads
    /// do not bounce a shared cache line on every command.
    pub fn flush_into(&self, shared: &Counters) {
        for (local, global) in [
            (&self.commands, &shared.commands),
            (&self.hits, &shared.hits),
            (&self.misses, &shared.misses),
        ] {
            let n = local.swap(0, Ordering::Relaxed);
            if n > 0 {
                global.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

/// What a planner may read besides its session and arguments.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The server's settings.
    pub settings: &'a Settings,
    /// The server-wide counters (INFO).
    pub totals: &'a Counters,
    /// The node, for the commands that report on it (INFO, DBSIZE); `None` where planning runs
    /// without one (unit tests), which reports an empty node.
    pub node: Option<&'a NodeHandle<RedisValue>>,
    /// The node's clients (CLIENT, CONFIG SET, SLOWLOG); `None` in unit tests.
    pub clients: Option<&'a super::clients::Clients>,
}

/// The reply to an engine error: the one place engine errors become Redis error text.
pub fn error_reply(error: &RequestError) -> Reply {
    match error {
        RequestError::Op(op) => op_error_reply(op),
        // Redis's exact text: clients match on the OOM prefix.
        RequestError::OutOfMemory { .. } => {
            Reply::Error("OOM command not allowed when used memory > 'maxmemory'.".into())
        }
        // Redis Cluster's retryable error (clients retry it).
        RequestError::CatchingUp => Reply::Error(format!("TRYAGAIN {error}")),
        other => Reply::Error(format!("ERR {other}")),
    }
}

/// Redis's text for an operation a value refused.
pub fn op_error_reply(error: &OpError) -> Reply {
    Reply::Error(match error {
        OpError::WrongType => {
            "WRONGTYPE Operation against a key holding the wrong kind of value".to_owned()
        }
        other => format!("ERR {other}"),
    })
}

/// `ERR wrong number of arguments for '<name>' command`.
pub fn arity_error(name: &str) -> Reply {
    Reply::Error(format!("ERR wrong number of arguments for '{name}' command"))
}

/// `ERR value is not an integer or out of range`.
pub fn not_an_integer() -> Reply {
    op_error_reply(&OpError::NotAnInteger)
}

/// Parses an integer argument as Redis does ([`parse_integer`](super::value::parse_integer)).
pub fn parse_i64(arg: &[u8]) -> Option<i64> {
    super::value::parse_integer(arg)
}

/// `key` as the store holds it in database `db`, for a key the table's positions do not name
/// (`OBJECT ENCODING key`, `COPY … DB n`).
///
/// # Errors
/// In database 0, a key that would name another database's key.
pub fn key_in_db(db: u8, key: &Bytes) -> Result<Bytes, Reply> {
    if db == 0 && crate::db::is_reserved(key) {
        return Err(reserved_key());
    }
    Ok(if db == 0 { key.clone() } else { Bytes::from(crate::db::key(db, key)) })
}

/// The refusal of a database-0 key that would name a key of another database.
pub fn reserved_key() -> Reply {
    Reply::Error(
        "ERR keys beginning with the bytes FF DB 01..0F name keys of databases 1-15 (use SELECT)"
            .into(),
    )
}

/// A GET request.
pub fn get(key: &Bytes) -> Request<RedisValue> {
    Request::Get { key: key.clone() }
}

/// An APPLY request.
pub fn apply(key: &Bytes, op: RedisOp) -> Request<RedisValue> {
    Request::Apply { key: key.clone(), op }
}

/// A value the store will keep. Arguments are slices of the connection's read buffer; storing
/// a slice would keep that whole buffer alive for as long as the value lives (a few stored
/// bytes pinning kilobytes), so a long value gets an exact-size copy. A short one is passed as
/// the slice: the store copies it into its table entry
/// ([`InlineBytes`](super::inline_bytes::InlineBytes)).
pub fn owned(bytes: &Bytes) -> Bytes {
    if bytes.len() <= INLINE_CAPACITY { bytes.clone() } else { Bytes::copy_from_slice(bytes) }
}

/// Reads a GET-style answer.
///
/// # Errors
/// The reply to send instead: the engine's error, or a wrong kind of answer.
pub fn read_value(
    answer: Result<Response<RedisValue>, RequestError>,
) -> Result<Option<RedisValue>, Reply> {
    match answer {
        Ok(Response::Value(value)) => Ok(value),
        Ok(other) => Err(error_reply(&RequestError::UnexpectedAnswer(format!("{other:?}")))),
        Err(error) => Err(error_reply(&error)),
    }
}

/// Reads an APPLY answer as its reply.
pub fn applied(answer: Result<Response<RedisValue>, RequestError>) -> Reply {
    match answer {
        Ok(Response::Applied(RedisOpOutput::Ok)) => Reply::ok(),
        Ok(Response::Applied(RedisOpOutput::Int(n))) => Reply::Int(n),
        Ok(Response::Applied(RedisOpOutput::Bulk(Some(bytes)))) => Reply::Bulk(bytes),
        Ok(Response::Applied(RedisOpOutput::Bulk(None) | RedisOpOutput::Nil)) => Reply::Nil,
        Ok(other) => error_reply(&RequestError::UnexpectedAnswer(format!("{other:?}"))),
        Err(error) => error_reply(&error),
    }
}

/// A plan of several engine requests answered by `finish`.
pub fn engine(
    requests: Vec<Request<RedisValue>>,
    finish: impl FnOnce(Answers, &Counters) -> Reply + Send + 'static,
) -> Plan {
    let count = requests.len();
    Plan::Engine(requests, count, Box::new(finish))
}

/// A plan of one APPLY answered by its output (`+OK` or an integer).
pub fn apply_one(key: &Bytes, op: RedisOp) -> Plan {
    Plan::Single(Some(apply(key, op)), |answer, _| applied(answer))
}

impl Context<'_> {
    /// The actors whose keys make up this node's keys: one when every actor holds every key,
    /// else all of them (each holds its own share; a key several local actors replicate is
    /// counted, and may be scanned, once per actor).
    pub fn node_actors(&self) -> Vec<crate::ring::ThreadIndex> {
        match self.node {
            None => Vec::new(),
            Some(node) if node.topology().is_full() => vec![0],
            Some(node) => (0..node.local_actors())
                .filter_map(|a| crate::ring::ThreadIndex::try_from(a).ok())
                .collect(),
        }
    }

    /// The node's size rule for a key (and a value), as a Redis error reply.
    ///
    /// # Errors
    /// `ERR key of N bytes exceeds max-key-bytes M` (or the value's).
    pub fn check_sizes(&self, key: &Bytes, value: Option<&Bytes>) -> Result<(), Reply> {
        let node = &self.settings.node;
        node.check_key(key.len()).map_err(|e| error_reply(&e))?;
        if let Some(value) = value {
            node.check_value(value.len()).map_err(|e| error_reply(&e))?;
        }
        Ok(())
    }

    /// [`Context::check_sizes`] over every key.
    ///
    /// # Errors
    /// The first key over the limit.
    pub fn check_keys<'k>(&self, keys: impl IntoIterator<Item = &'k Bytes>) -> Result<(), Reply> {
        keys.into_iter().try_for_each(|key| self.check_sizes(key, None))
    }
}
