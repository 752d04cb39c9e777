//! The command table: every command the Redis port knows, in one place.
//!
//! Each row gives a command's name, arity (Redis's convention: `N` is exactly `N` words
//! counting the name, `-N` at least `N`), flags, key positions, a one-line summary and its
//! planner. Dispatch, the arity errors, the auth gate, `COMMAND`, `COMMAND COUNT`,
//! `COMMAND INFO` and `COMMAND DOCS` all read this table and nothing else.
//!
//! # Adding a command
//!
//! One row here and one planner in [`super::commands`] (a data command) or [`super::admin`]:
//!
//! ```text
//! Command { name: "strlen", arity: 2, flags: READONLY | FAST, keys: (1, 1, 1),
//!           summary: "The length of a string value.", plan: strings::plan_strlen },
//! ```
//!
//! The planner gets the arguments after the name, already checked against the arity. The
//! tests at the bottom of this file check every row against what its planner does.

use bytes::Bytes;

use super::admin;
use super::commands::{expiry, keyspace, lcs, moves, object, sets, strings};
use super::durability;
use super::introspect;
use super::plan::{Answers, Context, Counters, Plan, Waiting, arity_error};
use super::resp::Reply;
use super::session::Session;
use super::value::RedisValue;
use crate::message::Request;

/// A command's planner: session, context, the arguments after the name.
pub type Planner = fn(&mut Session, &Context<'_>, &[Bytes]) -> Plan;

/// The command changes data (its plan sends writes).
pub const WRITE: u8 = 1;
/// The command only reads data.
pub const READONLY: u8 = 1 << 1;
/// The command reports on or configures the server, not data.
pub const ADMIN: u8 = 1 << 2;
/// The command is answered before `AUTH` (it is how a client authenticates or leaves).
pub const NO_AUTH: u8 = 1 << 3;
/// The command runs in constant time (Redis's `fast`).
pub const FAST: u8 = 1 << 4;
/// Inside `MULTI`, the command runs at once instead of being queued (`EXEC`, `DISCARD`, …).
pub const NO_QUEUE: u8 = 1 << 5;
/// The command reads before it writes, in rounds of its own, even inside `EXEC` (`RENAME`,
/// `COPY`, `MSETNX`).
pub const ROUNDS: u8 = 1 << 6;

/// The names Redis gives the flags, in `COMMAND` replies.
const FLAG_NAMES: [(u8, &str); 5] = [
    (WRITE, "write"),
    (READONLY, "readonly"),
    (ADMIN, "admin"),
    (NO_AUTH, "no-auth"),
    (FAST, "fast"),
];

/// One row of the table.
#[derive(Clone, Copy)]
pub struct Command {
    /// The lower-case name.
    pub name: &'static str,
    /// Redis's arity: `N` words exactly (the name included), or at least `-N`.
    pub arity: i8,
    /// [`WRITE`], [`READONLY`], [`ADMIN`], [`NO_AUTH`], [`FAST`], [`NO_QUEUE`], or'ed
    /// together.
    pub flags: u8,
    /// First key, last key (`-1`: the last argument) and step, as word positions; `(0, 0, 0)`
    /// for a command without keys.
    pub keys: (i8, i8, i8),
    /// What it does (`COMMAND DOCS`).
    pub summary: &'static str,
    /// Turns the arguments into a plan.
    pub plan: Planner,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command").field("name", &self.name).field("arity", &self.arity).finish()
    }
}

impl Command {
    /// Whether `words` words (the name included) fit the arity.
    pub fn accepts(&self, words: usize) -> bool {
        let arity = usize::from(self.arity.unsigned_abs());
        if self.arity < 0 { words >= arity } else { words == arity }
    }

    /// Whether the command has flag `flag`.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

const NO_KEYS: (i8, i8, i8) = (0, 0, 0);
const ONE_KEY: (i8, i8, i8) = (1, 1, 1);
const ALL_KEYS: (i8, i8, i8) = (1, -1, 1);

/// Every command. The hottest come first: lookup is a scan, and GET/SET find their row at
/// once.
#[rustfmt::skip]
pub static TABLE: &[Command] = &[
    Command { name: "get", arity: 2, flags: READONLY | FAST, keys: ONE_KEY, summary: "The string value of a key (a counter reads as its decimal value).", plan: strings::plan_get },
    Command { name: "set", arity: -3, flags: WRITE, keys: ONE_KEY, summary: "Sets a string value (NX, XX: only if absent or present, judged by the owning actor; GET: answer the old string; EX, PX, EXAT, PXAT: with a deadline; KEEPTTL: keeping the key's); concurrent SETs on two replicas converge to the later one.", plan: strings::plan_set },
    Command { name: "setnx", arity: 3, flags: WRITE | FAST, keys: ONE_KEY, summary: "Sets a string only if the key holds nothing, as the owning actor sees it (with several replicas, two can both succeed; the later write wins).", plan: strings::plan_setnx },
    Command { name: "getset", arity: 3, flags: WRITE | FAST, keys: ONE_KEY, summary: "Sets a string and answers the one it replaced on the owning actor.", plan: strings::plan_getset },
    Command { name: "getdel", arity: 2, flags: WRITE | FAST, keys: ONE_KEY, summary: "Answers a string and deletes the key; writes concurrent with it on other replicas survive.", plan: strings::plan_getdel },
    Command { name: "append", arity: 3, flags: WRITE | FAST, keys: ONE_KEY, summary: "Appends to a string on the owning actor (concurrent APPENDs on two replicas: the later result wins, one suffix is lost).", plan: strings::plan_append },
    Command { name: "strlen", arity: 2, flags: READONLY | FAST, keys: ONE_KEY, summary: "The length of a string (a counter: of its decimal value).", plan: strings::plan_strlen },
    Command { name: "getrange", arity: 4, flags: READONLY, keys: ONE_KEY, summary: "A substring of a string (negative offsets count from the end).", plan: strings::plan_getrange },
    Command { name: "setrange", arity: 4, flags: WRITE, keys: ONE_KEY, summary: "Overwrites part of a string on the owning actor, zero-padding it (concurrent changes on two replicas: the later result wins).", plan: strings::plan_setrange },
    Command { name: "lcs", arity: -3, flags: READONLY, keys: (1, 2, 1), summary: "The longest common subsequence of two strings (LEN, IDX, MINMATCHLEN, WITHMATCHLEN), as Redis answers it; refused when its table would pass 64 MiB of working memory.", plan: lcs::plan_lcs },
    Command { name: "mget", arity: -2, flags: READONLY | FAST, keys: ALL_KEYS, summary: "The string values of several keys.", plan: strings::plan_mget },
    Command { name: "mset", arity: -3, flags: WRITE, keys: (1, -1, 2), summary: "Sets several keys, each independently (not atomically).", plan: strings::plan_mset },
    Command { name: "msetnx", arity: -3, flags: WRITE | ROUNDS, keys: (1, -1, 2), summary: "Sets several keys if none exists: checks them all, then writes each only if still absent; if another client created one in between, the keys it wrote are deleted again (each only if unchanged) and it answers 0. Other clients can see the keys written before that undo.", plan: moves::plan_msetnx },
    Command { name: "incr", arity: 2, flags: WRITE | FAST, keys: ONE_KEY, summary: "Adds 1 to a counter; concurrent increments on replicas all count.", plan: strings::plan_incr },
    Command { name: "decr", arity: 2, flags: WRITE | FAST, keys: ONE_KEY, summary: "Subtracts 1 from a counter.", plan: strings::plan_decr },
    Command { name: "incrby", arity: 3, flags: WRITE | FAST, keys: ONE_KEY, summary: "Adds an integer to a counter.", plan: strings::plan_incrby },
    Command { name: "decrby", arity: 3, flags: WRITE | FAST, keys: ONE_KEY, summary: "Subtracts an integer from a counter.", plan: strings::plan_decrby },
    Command { name: "incrbyfloat", arity: 3, flags: WRITE | FAST, keys: ONE_KEY, summary: "Adds a float to a string (or counter) on the owning actor, in Redis's long double arithmetic; the sum is stored as a string, so concurrent INCRBYFLOATs on two replicas keep the later result (one increment is lost; INCRBY's counters keep both).", plan: strings::plan_incrbyfloat },
    Command { name: "del", arity: -2, flags: WRITE, keys: ALL_KEYS, summary: "Deletes keys; writes concurrent with the delete on other replicas survive it.", plan: keyspace::plan_del },
    Command { name: "unlink", arity: -2, flags: WRITE | FAST, keys: ALL_KEYS, summary: "As DEL.", plan: keyspace::plan_del },
    Command { name: "exists", arity: -2, flags: READONLY | FAST, keys: ALL_KEYS, summary: "How many of the keys exist.", plan: keyspace::plan_exists },
    Command { name: "type", arity: 2, flags: READONLY | FAST, keys: ONE_KEY, summary: "The type of a key: string, set or none.", plan: keyspace::plan_type },
    Command { name: "expire", arity: -3, flags: WRITE | FAST, keys: ONE_KEY, summary: "Sets a key's time to live in seconds (NX, XX, GT, LT judged by the owning actor; a time already passed deletes the key). The deadline is part of the key's state, so replicas agree on it; a write on another replica concurrent with it and stamped later drops it.", plan: expiry::plan_expire },
    Command { name: "pexpire", arity: -3, flags: WRITE | FAST, keys: ONE_KEY, summary: "As EXPIRE, in milliseconds.", plan: expiry::plan_pexpire },
    Command { name: "expireat", arity: -3, flags: WRITE | FAST, keys: ONE_KEY, summary: "As EXPIRE, with a Unix time in seconds.", plan: expiry::plan_expireat },
    Command { name: "pexpireat", arity: -3, flags: WRITE | FAST, keys: ONE_KEY, summary: "As EXPIRE, with a Unix time in milliseconds.", plan: expiry::plan_pexpireat },
    Command { name: "ttl", arity: 2, flags: READONLY | FAST, keys: ONE_KEY, summary: "Seconds a key has left (-1: no deadline, -2: no key), by the serving replica's clock.", plan: expiry::plan_ttl },
    Command { name: "pttl", arity: 2, flags: READONLY | FAST, keys: ONE_KEY, summary: "As TTL, in milliseconds.", plan: expiry::plan_pttl },
    Command { name: "expiretime", arity: 2, flags: READONLY | FAST, keys: ONE_KEY, summary: "A key's deadline as a Unix time in seconds (-1: none, -2: no key).", plan: expiry::plan_expiretime },
    Command { name: "pexpiretime", arity: 2, flags: READONLY | FAST, keys: ONE_KEY, summary: "As EXPIRETIME, in milliseconds.", plan: expiry::plan_pexpiretime },
    Command { name: "persist", arity: 2, flags: WRITE | FAST, keys: ONE_KEY, summary: "Drops a key's deadline (an expiry another replica already applied wins over a PERSIST made shortly before the deadline).", plan: expiry::plan_persist },
    Command { name: "setex", arity: 4, flags: WRITE, keys: ONE_KEY, summary: "Sets a string with a time to live in seconds.", plan: expiry::plan_setex },
    Command { name: "psetex", arity: 4, flags: WRITE, keys: ONE_KEY, summary: "Sets a string with a time to live in milliseconds.", plan: expiry::plan_psetex },
    Command { name: "getex", arity: -2, flags: WRITE | FAST, keys: ONE_KEY, summary: "Answers a string and sets (EX, PX, EXAT, PXAT) or drops (PERSIST) its time to live.", plan: expiry::plan_getex },
    Command { name: "sadd", arity: -3, flags: WRITE | FAST, keys: ONE_KEY, summary: "Adds members to a set (add-wins over a concurrent SREM).", plan: sets::plan_sadd },
    Command { name: "srem", arity: -3, flags: WRITE | FAST, keys: ONE_KEY, summary: "Removes the members this replica has seen from a set.", plan: sets::plan_srem },
    Command { name: "smembers", arity: 2, flags: READONLY, keys: ONE_KEY, summary: "The members of a set.", plan: sets::plan_smembers },
    Command { name: "sismember", arity: 3, flags: READONLY | FAST, keys: ONE_KEY, summary: "Whether a value is a member of a set.", plan: sets::plan_sismember },
    Command { name: "scard", arity: 2, flags: READONLY | FAST, keys: ONE_KEY, summary: "The number of members of a set.", plan: sets::plan_scard },
    Command { name: "ping", arity: -1, flags: FAST, keys: NO_KEYS, summary: "PONG, or the message given.", plan: admin::plan_ping },
    Command { name: "echo", arity: 2, flags: FAST, keys: NO_KEYS, summary: "The message given.", plan: admin::plan_echo },
    Command { name: "time", arity: 1, flags: FAST, keys: NO_KEYS, summary: "The serving node's clock: Unix seconds and microseconds.", plan: admin::plan_time },
    Command { name: "quit", arity: -1, flags: NO_AUTH | FAST | NO_QUEUE, keys: NO_KEYS, summary: "Closes the connection after replying.", plan: admin::plan_quit },
    Command { name: "hello", arity: -1, flags: NO_AUTH | FAST, keys: NO_KEYS, summary: "Chooses RESP2 or RESP3, optionally authenticates, and describes the server.", plan: admin::plan_hello },
    Command { name: "auth", arity: -2, flags: NO_AUTH | FAST, keys: NO_KEYS, summary: "Authenticates the connection.", plan: admin::plan_auth },
    Command { name: "select", arity: 2, flags: FAST, keys: NO_KEYS, summary: "Selects one of the 16 databases (0-15) for this connection.", plan: admin::plan_select },
    Command { name: "flushdb", arity: -1, flags: WRITE, keys: NO_KEYS, summary: "Empties the selected database on every node: a stamp above every write this node acknowledged, passed to every replica; keys written only before it are deleted there, later writes (on any node) survive. ASYNC and SYNC both answer once this node has flushed.", plan: keyspace::plan_flushdb },
    Command { name: "flushall", arity: -1, flags: WRITE, keys: NO_KEYS, summary: "As FLUSHDB, for every database.", plan: keyspace::plan_flushall },
    Command { name: "swapdb", arity: 3, flags: WRITE | FAST, keys: NO_KEYS, summary: "Refused: it would rename every key of two databases on every replica at once.", plan: keyspace::plan_swapdb },
    Command { name: "client", arity: -2, flags: FAST, keys: NO_KEYS, summary: "CLIENT LIST, INFO, KILL (each client closed by the actor serving it, woken at once), SETNAME, GETNAME, ID, SETINFO, HELP: the clients of this node.", plan: introspect::plan_client },
    Command { name: "touch", arity: -2, flags: READONLY | FAST, keys: ALL_KEYS, summary: "How many of the keys exist (this store keeps no access times for it to update).", plan: keyspace::plan_exists },
    Command { name: "rename", arity: 3, flags: WRITE | ROUNDS, keys: (1, 2, 1), summary: "Moves a key's value and deadline to another key, in rounds: reads the source, writes the destination, and once that write is acknowledged deletes the source only if it still holds what was copied (else starts over, writing the destination again only over its own copy), so no write is lost with one replica per key; between the rounds other clients can see both keys.", plan: moves::plan_rename },
    Command { name: "renamenx", arity: 3, flags: WRITE | FAST | ROUNDS, keys: (1, 2, 1), summary: "As RENAME, only if the destination is absent (as its owning actor sees it).", plan: moves::plan_renamenx },
    Command { name: "copy", arity: -3, flags: WRITE | ROUNDS, keys: (1, 2, 1), summary: "Copies a key's value and deadline to another key (DB: in another database; REPLACE: over an existing one), read then written in two rounds.", plan: moves::plan_copy },
    Command { name: "object", arity: -2, flags: 0, keys: NO_KEYS, summary: "OBJECT ENCODING (Redis's name for how it would hold the value now: int, embstr, raw, intset, hashtable), REFCOUNT (as Redis: shared small integers answer 2147483647), IDLETIME (seconds since the write that gave the key its value, on the serving replica: reads are not tracked), FREQ (refused, as in Redis without an LFU policy), HELP.", plan: object::plan_object },
    Command { name: "dbsize", arity: 1, flags: READONLY | FAST, keys: NO_KEYS, summary: "Keys this node holds now (asked of its actors); an expired key counts until its actor deletes it, as in Redis.", plan: keyspace::plan_dbsize },
    Command { name: "scan", arity: -2, flags: READONLY, keys: NO_KEYS, summary: "Iterates this node's keys (MATCH, COUNT, TYPE); the cursor is an actor and a position in a fixed hash order, valid across calls and connections: a key held for the whole scan is answered at least once.", plan: keyspace::plan_scan },
    Command { name: "keys", arity: 2, flags: READONLY, keys: NO_KEYS, summary: "Every key of this node matching a glob (walks every key: prefer SCAN).", plan: keyspace::plan_keys },
    Command { name: "randomkey", arity: 1, flags: READONLY, keys: NO_KEYS, summary: "A key of this node at random.", plan: keyspace::plan_randomkey },
    Command { name: "info", arity: -1, flags: ADMIN, keys: NO_KEYS, summary: "Server, client, statistics, replication and keyspace sections.", plan: admin::plan_info },
    Command { name: "config", arity: -2, flags: ADMIN, keys: NO_KEYS, summary: "CONFIG GET; SET of slowlog-log-slower-than, slowlog-max-len, maxclients, timeout and maxmemory-clients (the other settings are fixed at start); RESETSTAT of the Redis port's statistics; HELP.", plan: introspect::plan_config },
    Command { name: "slowlog", arity: -2, flags: ADMIN, keys: NO_KEYS, summary: "SLOWLOG GET [count], LEN, RESET, HELP: commands slower than slowlog-log-slower-than µs, timed from the start of the round that ran them to their answer (the engine round trip included; a pipelined batch shares its round's time).", plan: introspect::plan_slowlog },
    Command { name: "monitor", arity: 1, flags: ADMIN, keys: NO_KEYS, summary: "Streams every command this node's clients send from now on, as Redis writes them (administrative commands left out, AUTH and HELLO arguments redacted); a monitor that falls 100,000 lines behind is disconnected.", plan: introspect::plan_monitor },
    Command { name: "save", arity: 1, flags: ADMIN, keys: NO_KEYS, summary: "Writes a snapshot of every actor and answers once all are on disk (only this connection waits; the node keeps serving).", plan: durability::plan_save },
    Command { name: "bgsave", arity: -1, flags: ADMIN, keys: NO_KEYS, summary: "Starts a snapshot of every actor in the background (SCHEDULE accepted).", plan: durability::plan_bgsave },
    Command { name: "bgrewriteaof", arity: 1, flags: ADMIN, keys: NO_KEYS, summary: "As BGSAVE: a snapshot is what compacts the append-only logs.", plan: durability::plan_bgrewriteaof },
    Command { name: "lastsave", arity: 1, flags: ADMIN | FAST, keys: NO_KEYS, summary: "When every actor last finished a snapshot (Unix seconds; the start time before that).", plan: durability::plan_lastsave },
    Command { name: "wait", arity: 3, flags: 0, keys: NO_KEYS, summary: "WAIT numreplicas timeout: blocks until this connection's writes since its last WAIT are acknowledged by that many other nodes (or timeout ms pass; 0: no limit), and answers how many did.", plan: durability::plan_wait },
    Command { name: "multi", arity: 1, flags: FAST | NO_QUEUE, keys: NO_KEYS, summary: "Starts a transaction: commands are queued until EXEC.", plan: plan_multi },
    Command { name: "exec", arity: 1, flags: NO_QUEUE, keys: NO_KEYS, summary: "Runs the queued commands in one round, answering them as one array. Commands on keys of one actor run back to back with no other client in between; keys on different actors or nodes are not isolated from each other (no coordination), and there is no rollback. A command of several rounds (RENAME, RENAMENX, COPY, MSETNX) splits the transaction there: the commands after it run in later rounds.", plan: plan_exec },
    Command { name: "watch", arity: -2, flags: FAST | NO_QUEUE, keys: ALL_KEYS, summary: "Refused: a watched key can change on another replica without the owning actor seeing it in time, so EXEC could not honestly promise it did not.", plan: plan_watch },
    Command { name: "unwatch", arity: 1, flags: FAST, keys: NO_KEYS, summary: "Nothing is ever watched (WATCH is refused): OK.", plan: plan_unwatch },
    Command { name: "discard", arity: 1, flags: FAST | NO_QUEUE, keys: NO_KEYS, summary: "Drops the queued commands.", plan: plan_discard },
    Command { name: "debug", arity: -2, flags: ADMIN, keys: NO_KEYS, summary: "DEBUG DIGEST: one hash of the visible keys of every ring range this node owns (40 zeros when it holds none; equal on two nodes owning the same ranges, as with the default full replication, once they converged). DEBUG DIGEST-RANGES: each range's end and root hash, to compare replicas range by range.", plan: admin::plan_debug },
    Command { name: "command", arity: -1, flags: ADMIN, keys: NO_KEYS, summary: "Describes the commands of this table.", plan: plan_command },
];

/// Whether `MONITOR` shows this command: a known command with the right arity, not an
/// administrative one (as Redis, which does not show those either).
pub fn monitored(args: &[Bytes]) -> bool {
    find(&args[0]).is_some_and(|c| c.accepts(args.len()) && !c.has(ADMIN))
}

/// The row of a command name as a client sent it (any case), if any. Lower-cased on the
/// stack: every command name is short; a longer or non-UTF-8 one is simply unknown.
pub fn find(raw: &[u8]) -> Option<&'static Command> {
    let mut lower = [0_u8; 32];
    let lower = lower.get_mut(..raw.len())?;
    lower.copy_from_slice(raw);
    lower.make_ascii_lowercase();
    lookup(std::str::from_utf8(lower).ok()?)
}

/// The row of `name` (lower-case), if any.
pub fn lookup(name: &str) -> Option<&'static Command> {
    TABLE.iter().find(|c| c.name == name)
}

/// Plans one command (`args[0]` is its name): the table finds the row, checks the auth gate
/// and the arity, and calls the row's planner.
pub fn dispatch(session: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    let command = find(&args[0]);
    if !session.authenticated && !command.is_some_and(|c| c.has(NO_AUTH)) {
        return Plan::Now(Reply::Error("NOAUTH Authentication required.".into()));
    }
    let refused = |session: &mut Session, reply: Reply| {
        // A command refused while queueing dooms the transaction (Redis's EXECABORT).
        session.multi_failed |= session.multi.is_some();
        Plan::Now(reply)
    };
    let Some(command) = command else {
        return refused(session, Reply::Error(unknown_command(args)));
    };
    session.last_command = command.name;
    if !command.accepts(args.len()) {
        return refused(session, arity_error(command.name));
    }
    if let Some(queue) = &mut session.multi
        && !command.has(NO_QUEUE)
    {
        // What the queue holds: each argument's bytes and its handle.
        let bytes: usize =
            args.iter().map(|a| a.len() + std::mem::size_of::<Bytes>()).sum::<usize>()
                + std::mem::size_of::<Vec<Bytes>>();
        if queue.len() >= MAX_QUEUED || session.multi_bytes + bytes > MAX_QUEUED_BYTES {
            session.multi_failed = true;
            return Plan::Now(Reply::Error(format!(
                "ERR MULTI holds at most {MAX_QUEUED} commands and {MAX_QUEUED_BYTES} bytes of arguments; this transaction will be discarded"
            )));
        }
        session.multi_bytes += bytes;
        queue.push(args.to_vec());
        return Plan::Now(Reply::Simple("QUEUED".into()));
    }
    let in_db;
    let args = match keys_in_db(session.db, command, args) {
        Ok(None) => args,
        Ok(Some(rewritten)) => {
            in_db = rewritten;
            &in_db[..]
        }
        Err(reply) => return Plan::Now(reply),
    };
    let plan = (command.plan)(session, cx, &args[1..]);
    if command.has(WRITE) {
        plan.note_writes(session);
    }
    plan
}

/// The arguments with each key named as the store holds it in database `db` (see
/// [`crate::db`]): `None` when nothing changes (database 0). In database 0 a key that would
/// name another database's key is refused.
fn keys_in_db(db: u8, command: &Command, args: &[Bytes]) -> Result<Option<Vec<Bytes>>, Reply> {
    let (first, last, step) = command.keys;
    if step <= 0 || first <= 0 {
        return Ok(None);
    }
    let last = if last < 0 { args.len() as isize + last as isize } else { last as isize };
    let positions = (first as usize..=last.max(0) as usize).step_by(step as usize);
    if db == 0 {
        return match positions.filter_map(|i| args.get(i)).find(|k| crate::db::is_reserved(k)) {
            Some(_) => Err(super::plan::reserved_key()),
            None => Ok(None),
        };
    }
    let mut rewritten = args.to_vec();
    for i in positions {
        if let Some(key) = rewritten.get_mut(i) {
            *key = Bytes::from(crate::db::key(db, key));
        }
    }
    Ok(Some(rewritten))
}

/// Most commands one `MULTI` queues (each is answered, and planned at `EXEC`, in one round).
pub const MAX_QUEUED: usize = 64 * 1024;
/// Most bytes one `MULTI` queues (arguments, with the memory that holds each).
pub const MAX_QUEUED_BYTES: usize = 64 << 20;

/// `MULTI`.
fn plan_multi(session: &mut Session, _: &Context<'_>, _: &[Bytes]) -> Plan {
    if session.multi.is_some() {
        return Plan::Now(Reply::Error("ERR MULTI calls can not be nested".into()));
    }
    session.multi = Some(Vec::new());
    session.multi_bytes = 0;
    session.multi_failed = false;
    Plan::Now(Reply::ok())
}

/// `EXEC`: every queued command planned now, in order, and answered as one array (the
/// planners live in this table, so EXEC does too).
fn plan_exec(session: &mut Session, cx: &Context<'_>, _: &[Bytes]) -> Plan {
    let Some(queued) = session.multi.take() else {
        return Plan::Now(Reply::Error("ERR EXEC without MULTI".into()));
    };
    session.multi_bytes = 0;
    if std::mem::take(&mut session.multi_failed) {
        return Plan::Now(Reply::Error(
            "EXECABORT Transaction discarded because of previous errors.".into(),
        ));
    }
    session.in_exec = true;
    // A command of several rounds splits the transaction; a flush after it then takes its
    // stamp when its own round comes, not now.
    session.exec_in_rounds =
        queued.iter().any(|args| find(&args[0]).is_some_and(|c| c.has(ROUNDS)));
    let plans: Vec<Plan> = queued.iter().map(|args| dispatch(session, cx, args)).collect();
    session.in_exec = false;
    session.exec_in_rounds = false;
    if plans.iter().any(needs_rounds) {
        return Plan::Wait(Box::new(Exec { pending: plans.into(), ..Exec::default() }), 0);
    }
    Plan::Batch(plans)
}

/// Whether a plan inside `EXEC` runs rounds of its own (see [`Waiting::rounds_in_exec`]).
fn needs_rounds(plan: &Plan) -> bool {
    matches!(plan, Plan::Wait(waiting, _) if waiting.rounds_in_exec())
}

/// An `EXEC` whose queue holds a command of several rounds (`RENAME`, `COPY`, `MSETNX`):
/// the commands up to and including it run in one round, it runs its rounds, then the
/// commands after it go on the same way; the replies come back as one array at the end.
#[derive(Default)]
struct Exec {
    /// Commands not sent yet.
    pending: std::collections::VecDeque<Plan>,
    /// The commands of the round out now.
    in_flight: Vec<Plan>,
    /// The answers so far, in order.
    replies: Vec<Reply>,
}

impl Waiting for Exec {
    fn poll(&mut self) -> Vec<Request<RedisValue>> {
        let mut requests = Vec::new();
        while let Some(mut plan) = self.pending.pop_front() {
            let several_rounds = needs_rounds(&plan);
            plan.take_requests(&mut requests);
            self.in_flight.push(plan);
            if several_rounds {
                break;
            }
        }
        requests
    }

    fn check(&mut self, answers: Answers, last: bool, counters: &Counters) -> Option<Reply> {
        let mut answers = answers.into_iter();
        let in_flight = std::mem::take(&mut self.in_flight);
        let count = in_flight.len();
        for (i, plan) in in_flight.into_iter().enumerate() {
            if i + 1 == count && !last && needs_rounds(&plan) {
                match plan.finish_or_wait(&mut answers, counters) {
                    Ok(reply) => self.replies.push(reply),
                    Err(waiting) => {
                        self.pending.push_front(Plan::Wait(waiting, 0));
                        return None;
                    }
                }
            } else {
                self.replies.push(plan.finish(&mut answers, counters));
            }
        }
        if last {
            // (Never: an EXEC of this kind ends its connection's batch.)
            let unfinished = Reply::Error("ERR the command could not finish".into());
            self.replies.extend(self.pending.drain(..).map(|_| unfinished.clone()));
        }
        self.pending.is_empty().then(|| Reply::Array(std::mem::take(&mut self.replies)))
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        // The next round at once, whatever comes next (a WAIT or SAVE queued here answers
        // with what it has; it never waits inside EXEC).
        Some(std::time::Duration::ZERO)
    }
}

/// `WATCH`: refused with the reason, never ignored (a transaction that believes it is guarded
/// would be wrong silently).
fn plan_watch(_: &mut Session, _: &Context<'_>, _: &[Bytes]) -> Plan {
    Plan::Now(Reply::Error(
        "ERR WATCH is not supported: another replica can change a watched key without this node seeing it before EXEC (use conditional commands such as SET NX, judged by the owning actor)".into(),
    ))
}

/// `UNWATCH`: nothing is watched.
fn plan_unwatch(_: &mut Session, _: &Context<'_>, _: &[Bytes]) -> Plan {
    Plan::Now(Reply::ok())
}

/// `DISCARD`.
fn plan_discard(session: &mut Session, _: &Context<'_>, _: &[Bytes]) -> Plan {
    if session.multi.take().is_none() {
        return Plan::Now(Reply::Error("ERR DISCARD without MULTI".into()));
    }
    session.multi_bytes = 0;
    session.multi_failed = false;
    Plan::Now(Reply::ok())
}

/// Redis's text: the name (at most 128 bytes), then each argument quoted and followed by a
/// space while the list is under 128 bytes, the last one cut to fit.
fn unknown_command(args: &[Bytes]) -> String {
    let name = &args[0][..args[0].len().min(128)];
    let mut shown: Vec<u8> = Vec::new();
    for arg in &args[1..] {
        if shown.len() >= 128 {
            break;
        }
        let room = 128 - shown.len();
        shown.push(b'\'');
        shown.extend_from_slice(&arg[..arg.len().min(room)]);
        shown.extend_from_slice(b"' ");
    }
    format!(
        "ERR unknown command '{}', with args beginning with: {}",
        String::from_utf8_lossy(name),
        String::from_utf8_lossy(&shown)
    )
}

/// `COMMAND`'s description of one row: name, arity, flags, first key, last key, step.
fn describe(command: &Command) -> Reply {
    let flags = FLAG_NAMES
        .iter()
        .filter(|(flag, _)| command.has(*flag))
        .map(|(_, name)| Reply::Simple((*name).into()))
        .collect();
    let (first, last, step) = command.keys;
    Reply::Array(vec![
        Reply::text(command.name),
        Reply::Int(command.arity.into()),
        Reply::Set(flags),
        Reply::Int(first.into()),
        Reply::Int(last.into()),
        Reply::Int(step.into()),
    ])
}

/// `COMMAND`, `COMMAND COUNT`, `COMMAND INFO name…`, `COMMAND DOCS [name…]`.
pub fn plan_command(_: &mut Session, _: &Context<'_>, args: &[Bytes]) -> Plan {
    let named = |names: &[Bytes]| -> Vec<Option<&'static Command>> {
        names.iter().map(|n| lookup(&String::from_utf8_lossy(n).to_ascii_lowercase())).collect()
    };
    Plan::Now(match args.first().map(|s| s.to_ascii_lowercase()) {
        None => Reply::Array(TABLE.iter().map(describe).collect()),
        Some(sub) if sub == b"count" => Reply::Int(TABLE.len() as i64),
        Some(sub) if sub == b"info" => Reply::Array(
            named(&args[1..]).into_iter().map(|c| c.map_or(Reply::Nil, describe)).collect(),
        ),
        Some(sub) if sub == b"docs" => {
            let rows: Vec<&Command> = if args.len() > 1 {
                named(&args[1..]).into_iter().flatten().collect()
            } else {
                TABLE.iter().collect()
            };
            Reply::Map(
                rows.into_iter()
                    .map(|c| {
                        let docs = vec![(Reply::text("summary"), Reply::text(c.summary))];
                        (Reply::text(c.name), Reply::Map(docs))
                    })
                    .collect(),
            )
        }
        Some(sub) => {
            Reply::Error(format!("ERR unknown subcommand '{}'", String::from_utf8_lossy(&sub)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::config::Settings;
    use crate::redis::plan::Counters;

    fn context<'a>(settings: &'a Settings, totals: &'a Counters) -> Context<'a> {
        Context { settings, totals, node: None, clients: None }
    }

    fn words(name: &str, n: usize) -> Vec<Bytes> {
        // Integers, so that numeric arguments parse; keys and members are numbers too.
        std::iter::once(Bytes::copy_from_slice(name.as_bytes()))
            .chain((1..n).map(|i| Bytes::from(i.to_string())))
            .collect()
    }

    fn is_arity_error(plan: &Plan) -> bool {
        matches!(plan, Plan::Now(Reply::Error(e)) if e.starts_with("ERR wrong number of arguments"))
    }

    /// Commands whose planner adds a rule of its own beyond the arity, as Redis's do: MSET
    /// needs pairs, PING takes at most one message.
    fn extra_rule_refuses(name: &str, words: usize) -> bool {
        (matches!(name, "mset" | "msetnx") && words.is_multiple_of(2))
            || (name == "ping" && words > 2)
    }

    /// A plausible answer to `request`: a string value for a read, absent for `EXISTS`'s
    /// question, OK for a write.
    fn pretend_answer(
        request: &crate::message::Request<crate::redis::value::RedisValue>,
    ) -> Result<
        crate::message::Response<crate::redis::value::RedisValue>,
        crate::message::RequestError,
    > {
        use crate::message::{Request, RequestError, Response};
        use crate::redis::value::{RedisOp, RedisOpOutput, RedisValue};
        match request {
            Request::Get { .. } => {
                let register = lattice_core::Lww::new(
                    lattice_core::Stamp::new(1, 1),
                    Some(Bytes::from_static(b"v")),
                );
                Ok(Response::Value(Some(RedisValue::from_register(register, 1))))
            }
            Request::Apply { op: RedisOp::Kind, .. } => {
                Ok(Response::Applied(RedisOpOutput::Bulk(None)))
            }
            Request::Apply { .. } => Ok(Response::Applied(RedisOpOutput::Ok)),
            _ => Err(RequestError::Timeout),
        }
    }

    /// Rows kept only to refuse their command with the reason (with Redis's flags, for
    /// `COMMAND`): they plan no requests at all.
    const REFUSED: [&str; 2] = ["swapdb", "watch"];

    #[test]
    fn names_are_unique_lower_case_and_found() {
        for (i, command) in TABLE.iter().enumerate() {
            assert_eq!(command.name, command.name.to_ascii_lowercase());
            assert!(TABLE[..i].iter().all(|c| c.name != command.name), "{} twice", command.name);
            assert_eq!(lookup(command.name).map(|c| c.name), Some(command.name));
        }
    }

    /// Every row's arity is exactly what its planner accepts: for 1..=6 words, the table
    /// refuses a count outside the arity and the planner answers every count inside it with
    /// something other than an arity error.
    #[test]
    fn arity_agrees_with_the_planners() {
        let (settings, totals) = (Settings::default(), Counters::default());
        let cx = context(&settings, &totals);
        for command in TABLE {
            for n in 1..=6 {
                let mut session = Session::new(1, false);
                let plan = dispatch(&mut session, &cx, &words(command.name, n));
                let refused = is_arity_error(&plan);
                let expected = !command.accepts(n) || extra_rule_refuses(command.name, n);
                assert_eq!(refused, expected, "{} with {n} words: {plan:?}", command.name);
            }
        }
    }

    /// The flags say what the plans do: a write command sends writes, a read-only one only
    /// reads, a command without keys sends nothing, and the engine requests touch exactly the
    /// keys at the table's key positions.
    #[test]
    fn flags_and_key_positions_agree_with_the_plans() {
        let (settings, totals) = (Settings::default(), Counters::default());
        let cx = context(&settings, &totals);
        for command in TABLE {
            let n = (1..=5).find(|&n| command.accepts(n) && !extra_rule_refuses(command.name, n));
            let args = words(command.name, n.expect("some count is accepted"));
            let mut session = Session::new(1, false);
            let mut plan = dispatch(&mut session, &cx, &args);
            // A waiting plan's requests are those of its polls (a flush sends at its second,
            // a RENAME after reading its source), each answered as a key holding a string
            // would be, or as absent where it asks whether a key exists.
            let mut polled: Vec<crate::message::Request<crate::redis::value::RedisValue>> =
                Vec::new();
            if let Plan::Wait(waiting, _) = &mut plan {
                for _ in 0..3 {
                    let requests = waiting.poll();
                    let answers = requests.iter().map(pretend_answer).collect();
                    polled.extend(requests);
                    if waiting.check(answers, false, &totals).is_some() {
                        break;
                    }
                }
            }
            let mut requests = plan.requests();
            requests.extend(polled.iter());
            let writes = requests.iter().any(|r| crate::redis::plan::writes(r));
            if REFUSED.contains(&command.name) {
                assert!(matches!(plan, Plan::Now(Reply::Error(_))), "{}", command.name);
                continue;
            }
            assert_eq!(writes, command.has(WRITE), "{}: write flag vs {plan:?}", command.name);
            if command.has(READONLY) && command.keys != NO_KEYS {
                assert!(!requests.is_empty() && !writes, "{}: read-only", command.name);
            }
            assert!(!(command.has(READONLY) && command.has(WRITE)), "{}", command.name);
            let (first, last, step) = command.keys;
            let mut expected: Vec<&Bytes> = Vec::new();
            if first > 0 {
                let last = if last < 0 { args.len() as i8 + last } else { last };
                let mut i = first;
                while i <= last {
                    expected.push(&args[i as usize]);
                    i += step;
                }
            }
            // (Questions to a whole actor name no key.)
            let mut touched: Vec<&Bytes> = requests
                .iter()
                .filter(|r| !matches!(r, crate::message::Request::Local { .. }))
                .map(|r| r.key())
                .collect();
            // (Each key once, in the order first touched: a RENAME reads its source, writes
            // its destination, then deletes the source.)
            let mut seen = Vec::new();
            touched.retain(|key| {
                !seen.contains(key) && {
                    seen.push(*key);
                    true
                }
            });
            assert_eq!(touched, expected, "{}: key positions vs {plan:?}", command.name);
        }
    }

    /// Before AUTH, exactly the NO_AUTH rows are planned; every other command (and an unknown
    /// one) answers NOAUTH.
    #[test]
    fn the_auth_gate_is_the_no_auth_flag() {
        let settings = Settings { requirepass: Some("pw".into()), ..Settings::default() };
        let totals = Counters::default();
        let cx = context(&settings, &totals);
        for command in TABLE.iter().chain([&Command { name: "nosuch", ..TABLE[0] }]) {
            let n = (1..=5).find(|&n| command.accepts(n)).unwrap_or(1);
            let mut session = Session::new(1, true);
            let plan = dispatch(&mut session, &cx, &words(command.name, n));
            let noauth = matches!(&plan, Plan::Now(Reply::Error(e)) if e == "NOAUTH Authentication required.");
            assert_eq!(noauth, !command.has(NO_AUTH), "{}: {plan:?}", command.name);
        }
    }

    #[test]
    fn a_transaction_queues_a_bounded_number_of_commands() {
        let (settings, totals) = (Settings::default(), Counters::default());
        let cx = context(&settings, &totals);
        let mut session = Session::new(1, false);
        dispatch(&mut session, &cx, &[Bytes::from("MULTI")]);
        let set = [Bytes::from("SET"), Bytes::from("k"), Bytes::from("v")];
        for _ in 0..MAX_QUEUED {
            let plan = dispatch(&mut session, &cx, &set);
            assert!(matches!(plan, Plan::Now(Reply::Simple(ref q)) if q == "QUEUED"), "{plan:?}");
        }
        let over = dispatch(&mut session, &cx, &set);
        assert!(
            matches!(over, Plan::Now(Reply::Error(ref e)) if e.contains("at most")),
            "{over:?}"
        );
        assert_eq!(session.multi.as_ref().map(Vec::len), Some(MAX_QUEUED));
        let exec = dispatch(&mut session, &cx, &[Bytes::from("EXEC")]);
        assert!(matches!(exec, Plan::Now(Reply::Error(ref e)) if e.starts_with("EXECABORT")));
        let big = [Bytes::from("SET"), Bytes::from("k"), Bytes::from(vec![b'x'; MAX_QUEUED_BYTES])];
        dispatch(&mut session, &cx, &[Bytes::from("MULTI")]);
        let refused = dispatch(&mut session, &cx, &big);
        assert!(matches!(refused, Plan::Now(Reply::Error(_))), "{refused:?}");
    }

    #[test]
    fn command_count_and_info_read_the_table() {
        let (settings, totals) = (Settings::default(), Counters::default());
        let cx = context(&settings, &totals);
        let mut session = Session::new(1, false);
        let count = dispatch(&mut session, &cx, &[Bytes::from("COMMAND"), Bytes::from("count")]);
        assert!(matches!(count, Plan::Now(Reply::Int(n)) if n == TABLE.len() as i64));
        let info = dispatch(
            &mut session,
            &cx,
            &[Bytes::from("command"), Bytes::from("info"), Bytes::from("MSET"), Bytes::from("x")],
        );
        let Plan::Now(Reply::Array(rows)) = info else { panic!("{info:?}") };
        assert_eq!(rows[1], Reply::Nil);
        let Reply::Array(mset) = &rows[0] else { panic!("{rows:?}") };
        assert_eq!(mset[..2], [Reply::text("mset"), Reply::Int(-3)]);
        assert_eq!(mset[3..], [Reply::Int(1), Reply::Int(-1), Reply::Int(2)]);
    }

    /// `WAIT`'s bookkeeping: what dispatch notes as written, and what the wait asks.
    mod wait {
        use super::super::*;
        use crate::message::Response;
        use crate::redis::config::Settings;
        use crate::redis::plan::Counters;
        use crate::redis::session::WAIT_MAX_KEYS;

        fn run(session: &mut Session, line: &str) -> Plan {
            let (settings, totals) = (Settings::default(), Counters::default());
            let cx = Context { settings: &settings, totals: &totals, node: None, clients: None };
            let args: Vec<Bytes> =
                line.split(' ').map(|w| Bytes::copy_from_slice(w.as_bytes())).collect();
            dispatch(session, &cx, &args)
        }

        #[test]
        fn wait_vouches_for_each_key_written_since_the_last_wait_once() {
            let mut session = Session::new(1, false);
            for line in
                ["SET a 1", "GET b", "SET a 2", "SADD s x", "MSET c 1 d 2", "INCR n", "RENAME m r"]
            {
                run(&mut session, line);
            }
            let Plan::Wait(mut waiting, _) = run(&mut session, "WAIT 1 0") else {
                panic!("WAIT after writes must block")
            };
            let keys: Vec<Bytes> = waiting.poll().iter().map(|r| r.key().clone()).collect();
            assert_eq!(keys, ["a", "c", "d", "m", "n", "r", "s"].map(Bytes::from));
            // Answers below the target keep it waiting; the last key reaching it ends the wait.
            let answer = |n| Ok(Response::Replicated(n));
            assert!(
                waiting
                    .check(
                        vec![
                            answer(1),
                            answer(1),
                            answer(0),
                            answer(1),
                            answer(1),
                            answer(1),
                            answer(1)
                        ],
                        false,
                        &Counters::default()
                    )
                    .is_none()
            );
            let again: Vec<Bytes> = waiting.poll().iter().map(|r| r.key().clone()).collect();
            assert_eq!(
                again,
                [Bytes::from_static(b"d")],
                "keys already acknowledged are not asked again"
            );
            assert_eq!(
                waiting.check(vec![answer(2)], false, &Counters::default()),
                Some(Reply::Int(1))
            );
            // The next WAIT starts afresh: nothing written since.
            assert!(matches!(run(&mut session, "WAIT 1 0"), Plan::Now(Reply::Int(0))));
            // WAIT 0 still asks once, and answers the count it got.
            run(&mut session, "SET a 3");
            let Plan::Wait(mut waiting, _) = run(&mut session, "WAIT 0 0") else {
                panic!("WAIT 0 after a write must ask")
            };
            assert_eq!(waiting.poll().len(), 1);
            assert_eq!(
                waiting.check(vec![answer(2)], false, &Counters::default()),
                Some(Reply::Int(2))
            );
            let Plan::Now(Reply::Error(message)) = run(&mut session, "BGSAVE now please") else {
                panic!("BGSAVE with stray arguments must be refused")
            };
            assert_eq!(message, "ERR syntax error");
        }

        #[test]
        fn wait_refuses_to_vouch_for_more_keys_than_it_tracked() {
            let mut session = Session::new(1, false);
            for i in 0..=WAIT_MAX_KEYS {
                run(&mut session, &format!("SET k{i} v"));
            }
            let Plan::Now(Reply::Error(message)) = run(&mut session, "WAIT 1 0") else {
                panic!("WAIT over the cap must say so")
            };
            assert!(message.contains("call WAIT more often"), "{message}");
            // Repeats of one key never overflow.
            for _ in 0..3 * WAIT_MAX_KEYS {
                run(&mut session, "SET same v");
            }
            assert!(matches!(run(&mut session, "WAIT 1 0"), Plan::Wait(..)));
            assert!(matches!(run(&mut session, "WAIT x 0"), Plan::Now(Reply::Error(_))));
            assert!(matches!(run(&mut session, "WAIT 1 -1"), Plan::Now(Reply::Error(_))));
        }
    }
}
