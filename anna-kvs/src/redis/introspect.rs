//! The commands about the server's clients and settings: `CLIENT`, `CONFIG`, `SLOWLOG` and
//! `MONITOR`, answered from the session and the node's [`Clients`] registry.
//!
//! Their replies and errors follow Redis 7. What differs, and why:
//! - `CLIENT KILL` marks clients; each is closed by the actor serving it, which is woken at
//!   once (so the close follows the reply within moments, not within the command).
//! - The slow log times a command from the start of the round that ran it to its answer:
//!   the engine round trip included, which is what the client waited for (Redis times the
//!   execution alone). A pipelined batch shares one round, so each command of a slow batch
//!   is logged with the batch's time.
//! - `MONITOR` shows a command when it is planned (a queued command when it is queued, not
//!   at `EXEC`); like Redis it leaves out administrative commands and redacts `AUTH` and
//!   `HELLO` arguments.
//! - `CONFIG SET` changes `slowlog-log-slower-than`, `slowlog-max-len`, `maxclients`,
//!   `timeout` and `maxmemory-clients`; the other settings are fixed at start and refused as
//!   Redis refuses an immutable one. `CONFIG RESETSTAT` resets the Redis port's statistics
//!   (the engine's `anna_*` counters and `expired_keys` count from the start).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::clients::{ClientEntry, Clients};
use super::plan::{Context, Plan, arity_error, parse_i64};
use super::resp::Reply;
use super::session::Session;

/// `CLIENT LIST|INFO|KILL|SETNAME|GETNAME|ID|SETINFO|HELP`.
pub fn plan_client(session: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    Plan::Now(client(session, cx, args))
}

/// `CONFIG GET|SET|RESETSTAT|REWRITE|HELP`.
pub fn plan_config(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    Plan::Now(config(cx, args))
}

/// `SLOWLOG GET [count]|LEN|RESET|HELP`.
pub fn plan_slowlog(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    Plan::Now(slowlog(cx, args))
}

/// `MONITOR`: the connection is sent every command the node runs from now on.
pub fn plan_monitor(session: &mut Session, _: &Context<'_>, _: &[Bytes]) -> Plan {
    if session.in_exec {
        return Plan::Now(Reply::Error(
            "ERR MONITOR isn't allowed for DENY BLOCKING client".into(),
        ));
    }
    session.monitor = true;
    Plan::Now(Reply::ok())
}

fn subcommand_arity(container: &str, sub: &str) -> Reply {
    arity_error(&format!("{container}|{sub}"))
}

fn unknown_subcommand(container: &str, sub: &Bytes) -> Reply {
    Reply::Error(format!(
        "ERR unknown subcommand '{}'. Try {container} HELP.",
        String::from_utf8_lossy(sub)
    ))
}

fn help(lines: &[&str]) -> Reply {
    Reply::Array(lines.iter().map(|l| Reply::Simple((*l).into())).collect())
}

fn client(session: &mut Session, cx: &Context<'_>, rest: &[Bytes]) -> Reply {
    let sub = &rest[0];
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let args = &rest[1..];
    match (lower.as_str(), args.len()) {
        ("setname", 1) => {
            if args[0].iter().any(|b| !(0x21..=0x7E).contains(b)) {
                return Reply::Error(
                    "ERR Client names cannot contain spaces, newlines or special characters."
                        .into(),
                );
            }
            session.name = if args[0].is_empty() { None } else { Some(args[0].clone()) };
            session.name_changed = true;
            Reply::ok()
        }
        ("getname", 0) => session.name.clone().map_or(Reply::Nil, Reply::Bulk),
        ("id", 0) => Reply::Int(session.id as i64),
        ("setinfo", 2) => Reply::ok(),
        ("info", 0) => {
            let line = cx.clients.and_then(|c| c.get(session.id)).map(|e| own_line(&e, session));
            Reply::Bulk(Bytes::from(line.unwrap_or_default() + "\n"))
        }
        ("list", _) => list(session, cx, args),
        ("kill", 1..) => kill(session, cx, args),
        ("help", 0) => help(&[
            "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ID",
            "    Return the ID of the current connection.",
            "INFO",
            "    Return information about the current client connection.",
            "KILL <ip:port>",
            "    Kill connection made from <ip:port>.",
            "KILL <option> <value> [<option> <value> [...]]",
            "    Kill connections. Options are: ID <client-id>, TYPE normal|master|replica|pubsub,",
            "    ADDR <ip:port>, LADDR <ip:port>, USER <username>, SKIPME yes|no (default yes).",
            "    Closed by the actor serving each, woken at once.",
            "LIST [TYPE normal|master|replica|pubsub] [ID <client-id> [...]]",
            "    Return information about client connections.",
            "GETNAME",
            "    Return the name of the current connection.",
            "SETNAME <name>",
            "    Assign the name <name> to the current connection.",
            "SETINFO <option> <value>",
            "    Accepted and ignored (library name and version).",
            "HELP",
            "    Print this help.",
        ]),
        ("setname" | "getname" | "id" | "setinfo" | "info" | "kill" | "help", _) => {
            subcommand_arity("client", &lower)
        }
        _ => unknown_subcommand("CLIENT", sub),
    }
}

/// The caller's own line, with the command it is running now.
fn own_line(entry: &ClientEntry, session: &Session) -> String {
    let line = entry.line(std::time::Instant::now());
    // The published line shows the last round's state; this command is CLIENT's.
    match line.find(" cmd=") {
        Some(at) => {
            let end = line[at + 1..].find(' ').map_or(line.len(), |e| at + 1 + e);
            format!("{} cmd={}{}", &line[..at], session.last_command, &line[end..])
        }
        None => line,
    }
}

/// Redis's client types: every client here is a normal one.
const CLIENT_TYPES: [&str; 5] = ["normal", "master", "replica", "slave", "pubsub"];

fn list(session: &Session, cx: &Context<'_>, args: &[Bytes]) -> Reply {
    let Some(clients) = cx.clients else { return Reply::Bulk(Bytes::new()) };
    let mut only_type: Option<String> = None;
    let mut ids: Option<Vec<u64>> = None;
    let mut i = 0;
    while i < args.len() {
        let option = args[i].to_ascii_lowercase();
        if option == b"type" && i + 1 < args.len() {
            let kind = String::from_utf8_lossy(&args[i + 1]).to_ascii_lowercase();
            if !CLIENT_TYPES.contains(&kind.as_str()) {
                return Reply::Error(format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(&args[i + 1])
                ));
            }
            only_type = Some(kind);
            i += 2;
        } else if option == b"id" && i + 1 < args.len() {
            let mut wanted = Vec::new();
            for id in &args[i + 1..] {
                match parse_i64(id).and_then(|n| u64::try_from(n).ok()).filter(|&n| n > 0) {
                    Some(n) => wanted.push(n),
                    None => return Reply::Error("ERR Invalid client ID".into()),
                }
            }
            ids = Some(wanted);
            i = args.len();
        } else {
            return Reply::Error("ERR syntax error".into());
        }
    }
    let now = std::time::Instant::now();
    let mut out = String::new();
    for entry in clients.all() {
        if only_type.as_deref().is_some_and(|t| t != "normal")
            || ids.as_ref().is_some_and(|ids| !ids.contains(&entry.id))
        {
            continue;
        }
        let line = if entry.id == session.id { own_line(&entry, session) } else { entry.line(now) };
        out.push_str(&line);
        out.push('\n');
    }
    Reply::Bulk(Bytes::from(out))
}

/// What `CLIENT KILL` matches.
#[derive(Default)]
struct KillFilter {
    id: Option<u64>,
    addr: Option<String>,
    laddr: Option<String>,
    /// A type other than `normal` matches no client here.
    no_client: bool,
    skip_me: bool,
}

fn kill(session: &Session, cx: &Context<'_>, args: &[Bytes]) -> Reply {
    let Some(clients) = cx.clients else { return Reply::Int(0) };
    if let [addr] = args {
        // The old form: one address, OK or an error.
        let addr = String::from_utf8_lossy(addr);
        let victims: Vec<_> = clients.all().into_iter().filter(|e| e.addr == addr).collect();
        if victims.is_empty() {
            return Reply::Error("ERR No such client".into());
        }
        kill_and_wake(clients, cx, &victims);
        return Reply::ok();
    }
    if !args.len().is_multiple_of(2) {
        return Reply::Error("ERR syntax error".into());
    }
    let mut filter = KillFilter { skip_me: true, ..KillFilter::default() };
    for pair in args.chunks(2) {
        let value = String::from_utf8_lossy(&pair[1]).into_owned();
        match pair[0].to_ascii_lowercase().as_slice() {
            b"id" => match parse_i64(&pair[1]).filter(|&n| n > 0) {
                Some(n) => filter.id = Some(n as u64),
                None => {
                    return Reply::Error("ERR client-id should be greater than 0".into());
                }
            },
            b"type" => {
                let kind = value.to_ascii_lowercase();
                if !CLIENT_TYPES.contains(&kind.as_str()) {
                    return Reply::Error(format!("ERR Unknown client type '{value}'"));
                }
                filter.no_client |= kind != "normal";
            }
            b"addr" => filter.addr = Some(value),
            b"laddr" => filter.laddr = Some(value),
            b"user" if value == "default" => {}
            b"user" => return Reply::Error(format!("ERR No such user '{value}'")),
            b"skipme" => match value.to_ascii_lowercase().as_str() {
                "yes" => filter.skip_me = true,
                "no" => filter.skip_me = false,
                _ => return Reply::Error("ERR syntax error".into()),
            },
            _ => return Reply::Error("ERR syntax error".into()),
        }
    }
    if filter.no_client {
        return Reply::Int(0);
    }
    let victims: Vec<_> = clients
        .all()
        .into_iter()
        .filter(|e| {
            filter.id.is_none_or(|id| e.id == id)
                && filter.addr.as_ref().is_none_or(|a| &e.addr == a)
                && filter.laddr.as_ref().is_none_or(|a| &e.laddr == a)
                && !(filter.skip_me && e.id == session.id)
        })
        .collect();
    Reply::Int(kill_and_wake(clients, cx, &victims) as i64)
}

fn kill_and_wake(clients: &Clients, cx: &Context<'_>, victims: &[Arc<ClientEntry>]) -> usize {
    let killed = clients.kill(victims);
    if let Some(node) = cx.node {
        for victim in victims {
            node.wake(victim.actor);
        }
    }
    killed
}

/// The settings `CONFIG SET` accepts, each checked before any is applied.
enum Change {
    SlowerThan(i64),
    MaxLen(u64),
    MaxClients(usize),
    Timeout(u64),
    MaxMemoryClients(u64),
}

/// The settings fixed at start: `CONFIG SET` refuses them as Redis refuses an immutable one.
const FIXED: [&str; 13] = [
    "bind",
    "port",
    "tls-port",
    "save",
    "appendonly",
    "appendfsync",
    "maxmemory",
    "databases",
    "maxmemory-policy",
    "client-output-buffer-limit",
    "dir",
    "proto-max-bulk-len",
    "requirepass",
];

fn config(cx: &Context<'_>, rest: &[Bytes]) -> Reply {
    let sub = &rest[0];
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let args = &rest[1..];
    match (lower.as_str(), args.len()) {
        ("get", 1..) => config_get(cx, args),
        ("set", n) if n >= 2 && n.is_multiple_of(2) => config_set(cx, args),
        ("resetstat", 0) => {
            let c = cx.totals;
            for counter in [
                &c.connections_received,
                &c.commands,
                &c.hits,
                &c.misses,
                &c.rejected,
                &c.protocol_errors,
                &c.output_limit_closed,
                &c.evicted_clients,
            ] {
                counter.store(0, Ordering::Relaxed);
            }
            Reply::ok()
        }
        ("rewrite", 0) => Reply::Error(
            "ERR CONFIG REWRITE is not supported: anna-server never writes its configuration file"
                .into(),
        ),
        ("help", 0) => help(&[
            "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET <pattern>",
            "    Return parameters matching the glob-like <pattern> and their values.",
            "SET <directive> <value> [<directive> <value> ...]",
            "    Set the configuration <directive> to <value>: slowlog-log-slower-than,",
            "    slowlog-max-len, maxclients, timeout, maxmemory-clients (the others are fixed at",
            "    start).",
            "RESETSTAT",
            "    Reset the Redis port's statistics reported by INFO.",
            "REWRITE",
            "    Refused: the configuration file is never written.",
            "HELP",
            "    Print this help.",
        ]),
        ("get" | "set" | "resetstat" | "rewrite" | "help", _) => subcommand_arity("config", &lower),
        _ => unknown_subcommand("CONFIG", sub),
    }
}

fn config_set(cx: &Context<'_>, args: &[Bytes]) -> Reply {
    let failed = |name: &str, why: &str| {
        Reply::Error(format!(
            "ERR CONFIG SET failed (possibly related to argument '{name}') - {why}"
        ))
    };
    let mut changes = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for pair in args.chunks(2) {
        let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
        let value = String::from_utf8_lossy(&pair[1]).into_owned();
        if seen.contains(&name) {
            return failed(&name, "duplicate parameter");
        }
        seen.push(name.clone());
        let integer = |min: i64, max: i64| match parse_i64(&pair[1]) {
            None => Err(failed(&name, "argument couldn't be parsed into an integer")),
            Some(n) if n < min || n > max => {
                Err(failed(&name, &format!("argument must be between {min} and {max} inclusive")))
            }
            Some(n) => Ok(n),
        };
        let change = match name.as_str() {
            "slowlog-log-slower-than" => integer(-1, i64::MAX).map(Change::SlowerThan),
            "slowlog-max-len" => integer(0, i64::MAX).map(|n| Change::MaxLen(n as u64)),
            "maxclients" => integer(1, 4_294_967_295).map(|n| Change::MaxClients(n as usize)),
            "timeout" => integer(0, 2_147_483_647).map(|n| Change::Timeout(n as u64)),
            "maxmemory-clients" => match value.strip_suffix('%') {
                // A share of maxmemory, as Redis takes it.
                Some(percent) => match percent.parse::<u64>() {
                    Ok(p) if p <= 100 => Ok(Change::MaxMemoryClients(
                        cx.settings.node.maxmemory.saturating_mul(p) / 100,
                    )),
                    Ok(_) => Err(failed(&name, "percentage argument must be less or equal to 100")),
                    Err(_) => Err(failed(&name, "argument must be a memory or percent value")),
                },
                None => crate::memory::parse_size(&value)
                    .map(Change::MaxMemoryClients)
                    .ok_or_else(|| failed(&name, "argument must be a memory or percent value")),
            },
            fixed if FIXED.contains(&fixed) => Err(failed(&name, "can't set immutable config")),
            _ => {
                return Reply::Error(format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                    String::from_utf8_lossy(&pair[0])
                ));
            }
        };
        match change {
            Ok(change) => changes.push(change),
            Err(reply) => return reply,
        }
    }
    let Some(clients) = cx.clients else { return Reply::ok() };
    let t = &clients.tunables;
    for change in changes {
        match change {
            Change::SlowerThan(n) => t.slowlog_slower_than.store(n, Ordering::Relaxed),
            Change::MaxLen(n) => {
                t.slowlog_max_len.store(n, Ordering::Relaxed);
                clients.trim_slowlog();
            }
            Change::MaxClients(n) => t.maxclients.store(n, Ordering::Relaxed),
            Change::Timeout(n) => t.idle_timeout_ms.store(n * 1000, Ordering::Relaxed),
            Change::MaxMemoryClients(n) => t.maxmemory_clients.store(n, Ordering::Relaxed),
        }
    }
    Reply::ok()
}

fn config_get(cx: &Context<'_>, patterns: &[Bytes]) -> Reply {
    let settings = cx.settings;
    let persistence = &settings.node.persistence;
    let tunable = |name: &str| -> Option<String> {
        let t = &cx.clients?.tunables;
        Some(match name {
            "slowlog-log-slower-than" => t.slowlog_slower_than.load(Ordering::Relaxed).to_string(),
            "slowlog-max-len" => t.slowlog_max_len.load(Ordering::Relaxed).to_string(),
            "maxclients" => t.maxclients.load(Ordering::Relaxed).to_string(),
            "timeout" => t.idle_timeout_ms.load(Ordering::Relaxed).div_ceil(1000).to_string(),
            "maxmemory-clients" => t.maxmemory_clients.load(Ordering::Relaxed).to_string(),
            _ => return None,
        })
    };
    let values: Vec<(&str, String)> = vec![
        ("bind", settings.bind.clone()),
        ("port", settings.redis.port.to_string()),
        ("tls-port", settings.redis.tls.as_ref().map_or(0, |tls| tls.port).to_string()),
        ("maxclients", settings.redis.maxclients.to_string()),
        ("timeout", settings.redis.idle_timeout.map_or(0, |d| d.as_secs()).to_string()),
        ("save", String::new()),
        (
            "appendonly",
            if persistence.dir.is_some() && persistence.appendonly { "yes" } else { "no" }.into(),
        ),
        ("appendfsync", persistence.fsync.to_string()),
        ("maxmemory", settings.node.maxmemory.to_string()),
        ("databases", crate::db::DATABASES.to_string()),
        ("maxmemory-policy", "noeviction".into()),
        ("maxmemory-clients", settings.redis.maxmemory_clients.to_string()),
        ("client-output-buffer-limit", {
            let limit = settings.redis.output_limit;
            // Only the normal class exists here: no replicas, no pub/sub clients.
            format!(
                "normal {} {} {} replica 0 0 0 pubsub 0 0 0",
                limit.hard,
                limit.soft,
                limit.soft_for.as_secs()
            )
        }),
        ("dir", persistence.dir.as_ref().map_or(String::new(), |d| d.display().to_string())),
        ("proto-max-bulk-len", settings.node.max_value_bytes.to_string()),
        (
            "requirepass",
            if settings.requirepass.is_some() { "(set)".into() } else { String::new() },
        ),
        ("slowlog-log-slower-than", super::clients::SLOWLOG_SLOWER_THAN.to_string()),
        ("slowlog-max-len", super::clients::SLOWLOG_MAX_LEN.to_string()),
    ];
    let mut pairs: Vec<(Reply, Reply)> = Vec::new();
    for pattern in patterns {
        let pattern = pattern.to_ascii_lowercase();
        for (name, value) in &values {
            if crate::glob::matches(&pattern, name.as_bytes())
                && !pairs.iter().any(|(n, _)| *n == Reply::text(*name))
            {
                let value = tunable(name).unwrap_or_else(|| value.clone());
                pairs.push((Reply::text(*name), Reply::text(value)));
            }
        }
    }
    Reply::Map(pairs)
}

fn slowlog(cx: &Context<'_>, rest: &[Bytes]) -> Reply {
    let sub = &rest[0];
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let args = &rest[1..];
    let Some(clients) = cx.clients else { return Reply::Array(Vec::new()) };
    match (lower.as_str(), args.len()) {
        ("get", 0..=1) => {
            let count = match args.first().map(|a| parse_i64(a)) {
                None => Some(10),
                Some(Some(-1)) => None,
                Some(Some(n)) if n >= 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
                Some(_) => {
                    return Reply::Error("ERR count should be greater than or equal to -1".into());
                }
            };
            clients.slowlog_reply(count)
        }
        ("len", 0) => Reply::Int(clients.slowlog_len() as i64),
        ("reset", 0) => {
            clients.slowlog_reset();
            Reply::ok()
        }
        ("help", 0) => help(&[
            "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET [<count>]",
            "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
            "    Entries are made of:",
            "    id, timestamp, time in microseconds, arguments array, client IP and port,",
            "    client name",
            "    (the time runs from the start of the round that ran the command to its answer)",
            "LEN",
            "    Return the length of the slowlog.",
            "RESET",
            "    Reset the slowlog.",
            "HELP",
            "    Print this help.",
        ]),
        ("get" | "len" | "reset" | "help", _) => subcommand_arity("slowlog", &lower),
        _ => unknown_subcommand("SLOWLOG", sub),
    }
}
