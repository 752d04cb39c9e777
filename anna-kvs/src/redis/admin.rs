//! Connection and server commands: PING, ECHO, QUIT, AUTH, HELLO, SELECT, INFO, DEBUG,
//! TIME (CLIENT, CONFIG, SLOWLOG and MONITOR are in [`super::introspect`]). They answer at once (no engine request) from the session and the
//! [`Context`]. (COMMAND, which describes the command table, lives with the table.)

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::plan::{Context, Plan, arity_error, engine, not_an_integer, parse_i64};
use super::resp::Reply;
use super::session::Session;
use crate::auth::constant_time_eq;
use crate::node::{ActorReport, NodeHandle};

/// `PING [message]`.
pub fn plan_ping(_: &mut Session, _: &Context<'_>, args: &[Bytes]) -> Plan {
    Plan::Now(match args {
        [] => Reply::Simple("PONG".into()),
        [message] => Reply::Bulk(message.clone()),
        _ => arity_error("ping"),
    })
}

/// `ECHO message`.
pub fn plan_echo(_: &mut Session, _: &Context<'_>, args: &[Bytes]) -> Plan {
    Plan::Now(Reply::Bulk(args[0].clone()))
}

/// `TIME`: the server's clock, as Unix seconds and microseconds.
pub fn plan_time(_: &mut Session, _: &Context<'_>, _: &[Bytes]) -> Plan {
    let now = super::value::now_us();
    Plan::Now(Reply::Array(vec![
        Reply::Bulk((now / 1_000_000).to_string().into()),
        Reply::Bulk((now % 1_000_000).to_string().into()),
    ]))
}

/// `QUIT`: replies, then the connection closes.
pub fn plan_quit(session: &mut Session, _: &Context<'_>, _: &[Bytes]) -> Plan {
    session.quit = true;
    Plan::Now(Reply::ok())
}

/// `AUTH [username] password`.
pub fn plan_auth(session: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    Plan::Now(auth(session, cx, args))
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
pub fn plan_hello(session: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    Plan::Now(hello(session, cx, args))
}

/// `SELECT index`: only database 0 exists.
pub fn plan_select(session: &mut Session, _: &Context<'_>, args: &[Bytes]) -> Plan {
    Plan::Now(match parse_i64(&args[0]) {
        Some(n) if (0..i64::from(crate::db::DATABASES)).contains(&n) => {
            session.db = n as u8;
            Reply::ok()
        }
        // Redis reads the index as a C int, with this (sic) text.
        Some(n) if i32::try_from(n).is_err() => Reply::Error(
            "ERR value is out of range, value must between -2147483648 and 2147483647".into(),
        ),
        Some(_) => Reply::Error("ERR DB index is out of range".into()),
        None => not_an_integer(),
    })
}

/// `DEBUG DIGEST | DIGEST-RANGES`: the anti-entropy digests of this node's ranges.
pub fn plan_debug(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    let sub = args[0].to_ascii_uppercase();
    Plan::Now(match (sub.as_slice(), &args[1..]) {
        (b"DIGEST", []) => {
            let ranges = node_ranges(cx);
            let digest = if ranges.iter().all(|&(_, root)| root == 0) {
                0
            } else {
                let bytes: Vec<u8> = ranges
                    .iter()
                    .flat_map(|(end, root)| end.to_le_bytes().into_iter().chain(root.to_le_bytes()))
                    .collect();
                xxhash_rust::xxh3::xxh3_128(&bytes)
            };
            Reply::Bulk(format!("{digest:040x}").into())
        }
        (b"DIGEST-RANGES", []) => Reply::Array(
            node_ranges(cx)
                .into_iter()
                .map(|(end, root)| Reply::Bulk(format!("{end:08x} {root:016x}").into()))
                .collect(),
        ),
        _ => Reply::Error(format!(
            "ERR unknown subcommand '{}'. Try DEBUG HELP.",
            String::from_utf8_lossy(&args[0])
        )),
    })
}

/// Each ring range this node owns with its root hash, by range end (one actor's per range).
fn node_ranges(cx: &Context<'_>) -> Vec<(u32, u64)> {
    let reports = cx.node.map(NodeHandle::reports).unwrap_or_default();
    let mut ranges: Vec<(u32, u64)> =
        reports.iter().flat_map(|r| r.range_roots.iter().copied()).collect();
    ranges.sort_unstable_by_key(|&(end, _)| end);
    ranges.dedup_by_key(|&mut (end, _)| end);
    ranges
}

/// `INFO [section]`.
pub fn plan_info(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    let text = info(cx, args.first());
    if !shows(args.first(), "keyspace") {
        return Plan::Now(Reply::text(text));
    }
    // The keyspace section counts keys now, as DBSIZE does (deadlines as of the last epoch).
    let actors = cx.node_actors();
    let deadlines: Vec<u64> = (0..usize::from(crate::db::DATABASES))
        .map(|db| node_count(cx, |stats| stats.deadlines_by_db[db]))
        .collect();
    let requests = (0..crate::db::DATABASES)
        .flat_map(|db| {
            actors.iter().map(move |&actor| crate::message::Request::Local {
                actor,
                query: crate::message::LocalQuery::Count { db },
            })
        })
        .collect();
    let per_db = actors.len().max(1);
    engine(requests, move |answers, _| {
        let mut out = text;
        out.push_str("# Keyspace\r\n");
        for (db, answers) in answers.chunks(per_db).enumerate() {
            let keys: u64 = answers
                .iter()
                .map(|a| match a {
                    Ok(crate::message::Response::Count(n)) => *n,
                    _ => 0,
                })
                .sum();
            if keys > 0 {
                let expires = deadlines[db];
                out.push_str(&format!("db{db}:keys={keys},expires={expires},avg_ttl=0\r\n"));
            }
        }
        Reply::text(out)
    })
}

/// When the node last had a whole snapshot (`LASTSAVE`, `rdb_last_save_time`): every
/// actor's last one finished by then, in Unix seconds; the start time before the first.
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

fn auth(session: &mut Session, cx: &Context<'_>, rest: &[Bytes]) -> Reply {
    let (user, password) = match rest {
        [password] => (None, password),
        [user, password] => (Some(user), password),
        // As Redis: the arity admits more words, the syntax does not.
        _ => return Reply::Error("ERR syntax error".into()),
    };
    let Some(expected) = &cx.settings.requirepass else {
        return Reply::Error(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?".into(),
        );
    };
    let user_ok = user.is_none_or(|u| constant_time_eq(u, b"default"));
    if user_ok && constant_time_eq(password, expected.as_bytes()) {
        session.authenticated = true;
        Reply::ok()
    } else {
        Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
    }
}

fn hello(session: &mut Session, cx: &Context<'_>, rest: &[Bytes]) -> Reply {
    let mut args = rest.iter();
    if let Some(version) = args.next() {
        match parse_i64(version) {
            Some(2) => session.resp3 = false,
            Some(3) => session.resp3 = true,
            _ => return Reply::Error("NOPROTO unsupported protocol version".into()),
        }
    }
    while let Some(option) = args.next() {
        match option.to_ascii_lowercase().as_slice() {
            b"auth" => {
                let (Some(user), Some(password)) = (args.next(), args.next()) else {
                    return Reply::Error("ERR Syntax error in HELLO option 'auth'".into());
                };
                if let Reply::Error(e) = auth(session, cx, &[user.clone(), password.clone()]) {
                    return Reply::Error(e);
                }
            }
            b"setname" => {
                let Some(name) = args.next() else {
                    return Reply::Error("ERR Syntax error in HELLO option 'setname'".into());
                };
                session.name = Some(name.clone());
                session.name_changed = true;
            }
            other => {
                return Reply::Error(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(other)
                ));
            }
        }
    }
    if !session.authenticated {
        return Reply::Error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into());
    }
    Reply::Map(vec![
        (Reply::text("server"), Reply::text("anna")),
        (Reply::text("version"), Reply::text(env!("CARGO_PKG_VERSION"))),
        (Reply::text("proto"), Reply::Int(if session.resp3 { 3 } else { 2 })),
        (Reply::text("id"), Reply::Int(session.id as i64)),
        (Reply::text("mode"), Reply::text("standalone")),
        (Reply::text("role"), Reply::text("master")),
        (Reply::text("modules"), Reply::Array(Vec::new())),
    ])
}

/// A per-key count over the node's actors: their sum, or with full replication (every actor
/// holds every key) the largest.
fn node_count(cx: &Context<'_>, count: impl Fn(&crate::actor::ActorStats) -> u64) -> u64 {
    let Some(node) = cx.node else { return 0 };
    let reports = node.reports();
    let counts = reports.iter().map(|r| count(&r.stats));
    if node.topology().is_full() { counts.max().unwrap_or(0) } else { counts.sum() }
}

/// System and user CPU seconds used by the process.
fn cpu_seconds() -> (f64, f64) {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            (seconds(usage.system_time()), seconds(usage.user_time()))
        }
        Err(_) => (0.0, 0.0),
    }
}

/// Bytes as Redis prints them (`1.50M`).
fn human_bytes(bytes: u64) -> String {
    let units = [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)];
    for (unit, size) in units {
        if bytes >= size {
            return format!("{:.2}{unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes}B")
}

/// Whether `INFO [section]` shows section `name`.
fn shows(section: Option<&Bytes>, name: &str) -> bool {
    section.is_none_or(|s| {
        let wanted = String::from_utf8_lossy(s).to_ascii_lowercase();
        wanted == name || matches!(wanted.as_str(), "all" | "default" | "everything")
    })
}

fn info(cx: &Context<'_>, section: Option<&Bytes>) -> String {
    let show = |name: &str| shows(section, name);
    let settings = cx.settings;
    let reports = cx.node.map(NodeHandle::reports).unwrap_or_default();
    let topology = cx.node.map(NodeHandle::topology);
    let counters = cx.totals;
    let uptime = settings.started.elapsed().as_secs();
    let mut out = String::new();
    if show("server") {
        out.push_str(&format!(
            "# Server\r\nredis_version:7.0.0\r\nanna_version:{}\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nanna_actors:{}\r\nanna_epoch_ms:{}\r\nanna_consistency:eventual\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::process::id(),
            settings.redis.port,
            uptime / 86_400,
            reports.len(),
            settings.node.epoch.as_millis(),
        ));
    }
    if show("clients") {
        out.push_str(&format!(
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:0\r\n\r\n",
            counters.connected.load(Ordering::Relaxed),
            cx.clients.map_or(settings.redis.maxclients, |c| c
                .tunables
                .maxclients
                .load(Ordering::Relaxed))
        ));
    }
    if show("memory") {
        let used = crate::memory::used();
        let peak = crate::memory::peak();
        let (rss, _) = crate::memory::resident();
        let max = settings.node.maxmemory;
        let ratio = if used == 0 { 1.0 } else { rss as f64 / used as f64 };
        out.push_str(&format!(
            "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nused_memory_peak:{peak}\r\nused_memory_peak_human:{}\r\nmaxmemory:{max}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:noeviction\r\nmem_fragmentation_ratio:{ratio:.2}\r\nanna_memory_measure:{}\r\n\r\n",
            human_bytes(used),
            human_bytes(rss),
            human_bytes(peak),
            human_bytes(max),
            if crate::memory::counted() { "allocator" } else { "rss" },
        ));
    }

    if show("cpu") {
        let (sys, user) = cpu_seconds();
        out.push_str(&format!("# CPU\r\nused_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\n\r\n"));
    }
    if show("stats") {
        let sum = |f: &dyn Fn(&ActorReport) -> u64| reports.iter().map(f).sum::<u64>();
        out.push_str(&format!(
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\nexpired_keys:{}\r\nprotocol_errors:{}\r\nclient_output_buffer_limit_disconnections:{}\r\nevicted_clients:{}\r\nanna_gets:{}\r\nanna_writes:{}\r\nanna_deletes:{}\r\nanna_forwarded:{}\r\nanna_gossip_batches_out:{}\r\nanna_gossip_entries_out:{}\r\nanna_gossip_batches_in:{}\r\nanna_merges:{}\r\nanna_reclaimed_keys:{}\r\nanna_request_ms:{}\r\nanna_gossip_ms:{}\r\nanna_idle_ms:{}\r\nanna_refused_unauthenticated:{}\r\nanna_refused_malformed:{}\r\nanna_refused_unknown_sender:{}\r\nanna_refused_replayed:{}\r\nanna_future_stamps_refused:{}\r\nanna_gossip_refused_ahead:{}\r\nanna_peer_bytes_out:{}\r\nanna_peer_bytes_in:{}\r\nanna_gossip_deltas_out:{}\r\nanna_gossip_parts_out:{}\r\nanna_gossip_whole_repairs:{}\r\nanna_gossip_resent:{}\r\nanna_gossip_given_up:{}\r\nanna_gossip_undeliverable:{}\r\nanna_send_drops:{}\r\nanna_repair_rounds:{}\r\nanna_repair_ranges_compared:{}\r\nanna_repair_ranges_differing:{}\r\nanna_repair_keys_out:{}\r\nanna_repair_keys_in:{}\r\nanna_repair_keys_changed:{}\r\nanna_repair_bytes_out:{}\r\nanna_repair_timeouts:{}\r\nanna_catch_up_forwards:{}\r\nanna_ranges_unrepaired:{}\r\nanna_catch_up_expired:{}\r\nanna_repair_hot_skipped:{}\r\nanna_repair_big_to_gossip:{}\r\nanna_expire_lateness_le_1ms:{}\r\nanna_expire_lateness_le_10ms:{}\r\nanna_expire_lateness_le_100ms:{}\r\nanna_expire_lateness_le_1s:{}\r\nanna_expire_lateness_over_1s:{}\r\nanna_flushes:{}\r\nanna_handed_off_keys:{}\r\n\r\n",
            counters.connections_received.load(Ordering::Relaxed),
            counters.commands.load(Ordering::Relaxed),
            counters.rejected.load(Ordering::Relaxed),
            counters.hits.load(Ordering::Relaxed),
            counters.misses.load(Ordering::Relaxed),
            sum(&|r| r.stats.expired_keys),
            counters.protocol_errors.load(Ordering::Relaxed),
            counters.output_limit_closed.load(Ordering::Relaxed),
            counters.evicted_clients.load(Ordering::Relaxed),
            sum(&|r| r.stats.gets),
            sum(&|r| r.stats.puts),
            sum(&|r| r.stats.deletes),
            sum(&|r| r.stats.forwarded),
            sum(&|r| r.stats.gossip_out),
            sum(&|r| r.stats.gossip_entries_out),
            sum(&|r| r.stats.gossip_in),
            sum(&|r| r.stats.merges),
            sum(&|r| r.stats.reclaimed),
            sum(&|r| r.request_ns) / 1_000_000,
            sum(&|r| r.gossip_ns) / 1_000_000,
            sum(&|r| r.idle_ns) / 1_000_000,
            sum(&|r| r.refused_unauthenticated),
            sum(&|r| r.refused_malformed),
            sum(&|r| r.refused_unknown_sender),
            sum(&|r| r.refused_replayed),
            sum(&|r| r.stats.future_stamps_refused),
            sum(&|r| r.stats.gossip_refused_ahead),
            sum(&|r| r.bytes_out),
            sum(&|r| r.bytes_in),
            sum(&|r| r.stats.gossip_deltas_out),
            sum(&|r| r.stats.gossip_parts_out),
            sum(&|r| r.stats.gossip_whole_repairs),
            sum(&|r| r.stats.gossip_resent),
            sum(&|r| r.stats.gossip_given_up),
            sum(&|r| r.stats.gossip_undeliverable),
            sum(&|r| r.send_drops),
            sum(&|r| r.stats.repair_rounds),
            sum(&|r| r.stats.repair_ranges_compared),
            sum(&|r| r.stats.repair_ranges_differing),
            sum(&|r| r.stats.repair_keys_out),
            sum(&|r| r.stats.repair_keys_in),
            sum(&|r| r.stats.repair_keys_changed),
            sum(&|r| r.stats.repair_bytes_out),
            sum(&|r| r.stats.repair_timeouts),
            sum(&|r| r.stats.catch_up_forwards),
            sum(&|r| r.stats.ranges_unrepaired),
            sum(&|r| r.stats.catch_up_expired),
            sum(&|r| r.stats.repair_hot_skipped),
            sum(&|r| r.stats.repair_big_to_gossip),
            sum(&|r| r.stats.expire_lateness[0]),
            sum(&|r| r.stats.expire_lateness[1]),
            sum(&|r| r.stats.expire_lateness[2]),
            sum(&|r| r.stats.expire_lateness[3]),
            sum(&|r| r.stats.expire_lateness[4]),
            sum(&|r| r.stats.flushes),
            sum(&|r| r.stats.handed_off),
        ));
    }
    if show("replication") {
        let replication = topology.as_ref().map_or(settings.node.replication, |t| t.replication());
        out.push_str(&format!(
            "# Replication\r\nrole:master\r\nconnected_slaves:0\r\nanna_nodes:{}\r\nanna_replication_global:{:?}\r\nanna_replication_local:{:?}\r\n\r\n",
            topology.as_ref().map_or(1, |t| t.members()),
            replication.global,
            replication.local
        ));
    }
    if show("cluster") {
        // Redis's one field (this is not Redis Cluster), then the failure detector's view.
        out.push_str("# Cluster\r\ncluster_enabled:0\r\n");
        if let Some(report) = cx.node.and_then(NodeHandle::membership) {
            use crate::node::MemberState;
            let unreached = report.members.iter().filter(|m| m.id.is_seed()).count();
            out.push_str(&format!(
                "anna_members_alive:{}\r\nanna_members_suspect:{}\r\nanna_members_down:{}\r\nanna_members_unreached:{unreached}\r\nanna_membership_downs:{}\r\nanna_membership_refused_unauthenticated:{}\r\nanna_membership_refused_malformed:{}\r\n",
                report.count(MemberState::Alive),
                report.count(MemberState::Suspect),
                report.count(MemberState::Down),
                report.downs,
                report.refused_unauthenticated,
                report.refused_malformed,
            ));
        }
        out.push_str("\r\n");
    }
    if show("persistence") {
        let persistence = &settings.node.persistence;
        let logging = persistence.dir.is_some() && persistence.appendonly;
        let errors: u64 = reports.iter().map(|r| r.aof_write_errors).sum();
        let (node_id, incarnation) = cx.node.map_or((0, 0), NodeHandle::identity);
        let saving = reports.iter().any(|r| r.saving);
        let failed = reports.iter().any(|r| r.last_save_error.is_some());
        let saves = reports.iter().map(|r| r.saves).min().unwrap_or(0);
        let took = reports.iter().map(|r| r.last_save_ms).max().unwrap_or(0);
        let logs: u64 = reports.iter().map(|r| r.aof_bytes).sum();
        let base: u64 = reports.iter().map(|r| r.snapshot_bytes).sum();
        let changes: u64 = reports.iter().map(|r| r.changes_since_save).sum();
        let last_save = last_save(cx);
        let status = |bad: bool| if bad { "err" } else { "ok" };
        out.push_str(&format!(
            "# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:{changes}\r\nrdb_bgsave_in_progress:{}\r\nrdb_last_save_time:{last_save}\r\nrdb_last_bgsave_status:{}\r\nrdb_last_bgsave_time_sec:{}\r\nrdb_saves:{saves}\r\naof_enabled:{}\r\naof_rewrite_in_progress:{}\r\naof_rewrites:{saves}\r\naof_last_bgrewrite_status:{}\r\naof_last_write_status:{}\r\naof_current_size:{}\r\naof_base_size:{base}\r\nanna_appendfsync:{}\r\nanna_dir:{}\r\nanna_last_bgsave_ms:{took}\r\nanna_aof_write_errors:{errors}\r\nanna_node_id:{node_id:016x}\r\nanna_incarnation:{incarnation}\r\n\r\n",
            u8::from(saving),
            status(failed),
            took.div_ceil(1000),
            u8::from(logging),
            u8::from(saving),
            status(failed),
            status(errors > 0),
            logs + base,
            persistence.fsync,
            persistence.dir.as_ref().map_or(String::new(), |d| d.display().to_string()),
        ));
    }
    // (The keyspace section, last, is added by `plan_info` from the actors' counts.)
    out
}
