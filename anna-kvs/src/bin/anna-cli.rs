//! `anna-cli`: a shell and a one-shot command line for Anna's native protocol.
//!
//! ```text
//! anna-cli                                  # interactive, eventual consistency, 127.0.0.1:6450
//! anna-cli put greeting hello               # one command, then exit
//! anna-cli --consistency causal get doc     # siblings with their vector clocks
//! anna-cli --host 127.0.0.1:7001 stats      # every node's actor counters
//! ```

use std::io::IsTerminal;
use std::time::Duration;

use anna_kvs::client::{Client, ClientConfig, ClientError};
use anna_kvs::levels::{
    Causal, CausalSession, EventualSession, ItemCutSession, MonotonicReadsSession,
    MonotonicWritesSession, PramSession, ReadCommittedSession, ReadUncommittedSession,
    ReadYourWritesSession, Store, Transactional, TxnEnd, WritesFollowReadsSession,
};
use anna_kvs::native::NodeStats;
use anna_kvs::redis::{Kind, RedisOp, RedisOpOutput, RedisValue};
use anna_kvs::{Key, RequestError};
use bytes::Bytes;
use clap::Parser;
use lattice_core::{Lww, VectorClock};

/// Talk to Anna over its native protocol: a shell, or one command and exit.
#[derive(Parser, Debug)]
#[command(name = "anna-cli", version, about)]
struct Args {
    /// A node's native-protocol address (repeat or comma-separate for several).
    #[arg(long, short = 'H', value_delimiter = ',', default_value = "127.0.0.1:6450")]
    host: Vec<String>,
    /// Consistency level: eventual, monotonic-reads, monotonic-writes, read-your-writes, pram,
    /// writes-follow-reads (an eventual server), causal (a causal server), read-uncommitted,
    /// read-committed, item-cut (a transactional server).
    #[arg(long, short = 'c', default_value = "eventual")]
    consistency: String,
    /// The server's password (`anna-server --requirepass`); also read from ANNA_PASSWORD.
    #[arg(long, short = 'a', env = "ANNA_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Milliseconds to wait for a node before trying another.
    #[arg(long = "timeout-ms", default_value_t = 1500)]
    timeout_ms: u64,
    /// Dial the nodes over TLS (servers started with `--native-tls`); needs --cacert.
    #[arg(long, requires = "cacert")]
    tls: bool,
    /// The CA that signs the servers' certificates (PEM).
    #[arg(long)]
    cacert: Option<std::path::PathBuf>,
    /// This client's certificate (PEM), for servers that require one; needs --key.
    #[arg(long, requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// This client's private key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<std::path::PathBuf>,
    /// A command to run instead of the shell (see `help`).
    command: Vec<String>,
}

/// The session state of the chosen level.
enum Level {
    Register(Client<RedisValue>, RegisterSession),
    Causal(Client<Causal>, CausalSession),
    Txn(Client<Transactional>, TxnSession),
}

enum RegisterSession {
    Eventual(EventualSession),
    MonotonicReads(MonotonicReadsSession),
    MonotonicWrites(MonotonicWritesSession),
    ReadYourWrites(ReadYourWritesSession),
    Pram(PramSession),
    WritesFollowReads(WritesFollowReadsSession),
}

enum TxnSession {
    ReadUncommitted(ReadUncommittedSession),
    ReadCommitted(ReadCommittedSession),
    ItemCut(ItemCutSession),
}

/// Runs `$body` with `$s` bound to whichever register session is active.
macro_rules! with_register {
    ($session:expr, $s:ident => $body:expr) => {
        match $session {
            RegisterSession::Eventual($s) => $body,
            RegisterSession::MonotonicReads($s) => $body,
            RegisterSession::MonotonicWrites($s) => $body,
            RegisterSession::ReadYourWrites($s) => $body,
            RegisterSession::Pram($s) => $body,
            RegisterSession::WritesFollowReads($s) => $body,
        }
    };
}

const HELP: &str = "\
commands (keys and values are words; quote with \"...\" for spaces):
  get KEY                 read a key, with its lattice metadata
  put KEY VALUE           write a key through the level's session
  del KEY                 delete a key
  incr KEY [BY]           add to a counter (eventual server)
  sadd KEY MEMBER...      add to a set (eventual server)
  srem KEY MEMBER...      remove from a set (eventual server)
  smembers KEY            list a set (eventual server)
  begin | commit | abort  transaction control (read-uncommitted, read-committed, item-cut)
  ring                    the cluster's members and replication
  cluster                 members as the failure detector sees them: state, node id, life
  cluster leave           the node this shell talks to (-H) leaves the cluster for good
  stats                   every node's actor counters and time breakdown
  help | quit";

/// An op's answer as redis-cli prints it.
fn shown(output: RedisOpOutput) -> String {
    match output {
        RedisOpOutput::Int(n) => format!("(integer) {n}"),
        RedisOpOutput::Ok => "OK".into(),
        RedisOpOutput::Bulk(Some(bytes)) => format!("{:?}", String::from_utf8_lossy(&bytes)),
        RedisOpOutput::Bulk(None) | RedisOpOutput::Nil => "(nil)".into(),
        RedisOpOutput::Elements { count, body } => {
            format!("({count} elements, {} bytes)", body.len())
        }
    }
}

fn connect<V: anna_kvs::KvsValue>(args: &Args) -> Result<Client<V>, ClientError> {
    let tls = match (&args.tls, &args.cacert) {
        (true, Some(ca)) => {
            let identity = args.cert.as_deref().zip(args.key.as_deref());
            Some(anna_kvs::tls::client_config(ca, identity).map_err(ClientError::Tls)?)
        }
        _ => None,
    };
    let config = ClientConfig {
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
        password: args.password.clone(),
        tls,
        ..ClientConfig::default()
    };
    Client::with_config(&args.host, config)
}

fn open(args: &Args) -> Result<Level, String> {
    let level = args.consistency.to_ascii_lowercase().replace('_', "-");
    let err = |e: ClientError| format!("cannot connect to {}: {e}", args.host.join(", "));
    Ok(match level.as_str() {
        "causal" => {
            let client = connect::<Causal>(args).map_err(err)?;
            let session = CausalSession::new(client.client_id());
            Level::Causal(client, session)
        }
        "read-uncommitted" | "read-committed" | "item-cut" | "item-cut-isolation" => {
            let client = connect::<Transactional>(args).map_err(err)?;
            let id = client.client_id();
            let session = match level.as_str() {
                "read-uncommitted" => TxnSession::ReadUncommitted(ReadUncommittedSession::new(id)),
                "read-committed" => TxnSession::ReadCommitted(ReadCommittedSession::new(id)),
                _ => TxnSession::ItemCut(ItemCutSession::new(id)),
            };
            Level::Txn(client, session)
        }
        other => {
            let client = connect::<RedisValue>(args).map_err(err)?;
            let id = client.client_id();
            let session = match other {
                "eventual" => RegisterSession::Eventual(EventualSession::new(id)),
                "monotonic-reads" => {
                    RegisterSession::MonotonicReads(MonotonicReadsSession::new(id))
                }
                "monotonic-writes" => {
                    RegisterSession::MonotonicWrites(MonotonicWritesSession::new(id))
                }
                "read-your-writes" => {
                    RegisterSession::ReadYourWrites(ReadYourWritesSession::new(id))
                }
                "pram" => RegisterSession::Pram(PramSession::new(id)),
                "writes-follow-reads" => {
                    RegisterSession::WritesFollowReads(WritesFollowReadsSession::new(id))
                }
                _ => return Err(format!("unknown consistency level {other:?} (see --help)")),
            };
            Level::Register(client, session)
        }
    })
}

/// Splits a line into words; double quotes group, backslash escapes inside quotes.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unbalanced quotes".into()),
                    Some('"') => break,
                    Some('\\') => word.extend(chars.next()),
                    Some(c) => word.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    Ok(words)
}

fn show_bytes(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}

fn show_clock(clock: &VectorClock) -> String {
    let parts: Vec<String> = clock.iter().map(|(a, n)| format!("{a:x}:{n}")).collect();
    format!("{{{}}}", parts.join(", "))
}

fn show_register(register: Option<&Lww<Option<Bytes>>>) -> String {
    match register.and_then(Lww::as_parts) {
        Some((stamp, Some(value))) => {
            format!("{}    (lww stamp {}@{:x})", show_bytes(value), stamp.time, stamp.writer)
        }
        Some((stamp, None)) => format!("(nil)    (deleted at {}@{:x})", stamp.time, stamp.writer),
        None => "(nil)".into(),
    }
}

fn show_stats(stats: &[NodeStats]) -> String {
    let mut out = String::new();
    for node in stats {
        let fe = &node.front_end;
        out.push_str(&format!(
            "node {}: client port {} messages, {} requests, {} malformed, {} unauthenticated\n",
            node.node, fe.messages, fe.requests, fe.malformed, fe.unauthenticated
        ));
        out.push_str("  actor   gets     puts     dels     keys     gossip out/in    bad  request% gossip% idle%\n");
        for actor in &node.actors {
            let s = &actor.stats;
            let total = (actor.request_ns + actor.gossip_ns + actor.idle_ns).max(1) as f64;
            let pct = |ns: u64| 100.0 * ns as f64 / total;
            out.push_str(&format!(
                "  {:<7} {:<8} {:<8} {:<8} {:<8} {:>7}/{:<8} {:<4} {:>7.1} {:>7.1} {:>5.1}\n",
                actor.id.map_or("-".into(), |id| format!("{}.{}", id.node, id.thread)),
                s.gets,
                s.puts,
                s.deletes,
                s.keys,
                s.gossip_out,
                s.gossip_in,
                actor.bad_messages,
                pct(actor.request_ns),
                pct(actor.gossip_ns),
                pct(actor.idle_ns),
            ));
            if actor.bad_messages + s.future_stamps_refused + s.gossip_refused_ahead > 0 {
                out.push_str(&format!(
                    "          refused: {} unauthenticated, {} malformed, {} unknown sender, {} replayed, {} future stamps, {} too far ahead\n",
                    actor.refused_unauthenticated,
                    actor.refused_malformed,
                    actor.refused_unknown_sender,
                    actor.refused_replayed,
                    s.future_stamps_refused,
                    s.gossip_refused_ahead,
                ));
            }
        }
    }
    out.trim_end().to_owned()
}

fn show_ring(ring: &anna_kvs::native::RingInfo) -> String {
    let mut out = format!(
        "ring version {:x}, storing {}, replication {:?}\n",
        ring.version, ring.value_type, ring.replication
    );
    for (i, member) in ring.members.iter().enumerate() {
        out.push_str(&format!(
            "  node {i}{}: {} threads, ring name {}, client address {}\n",
            if i == usize::from(ring.me) { " (answered)" } else { "" },
            member.threads,
            member.name,
            member.client_addr.as_deref().unwrap_or("(unknown: reached through forwarding)")
        ));
    }
    out.trim_end().to_owned()
}

fn show_cluster(info: &anna_kvs::native::ClusterInfo) -> String {
    let mut out = format!("ring version {:x}\n", info.ring_version);
    let Some(report) = &info.membership else {
        out.push_str("a single node: no failure detector (it has no gossip address)");
        return out;
    };
    for member in &report.members {
        let id = &member.id;
        if id.is_seed() {
            out.push_str(&format!(
                "  {:<21} {:<7} (a listed peer never reached)\n",
                id.gossip, member.state
            ));
            continue;
        }
        let state = if id.leaving && member.state == anna_kvs::MemberState::Down {
            "left".to_owned()
        } else {
            member.state.to_string()
        };
        out.push_str(&format!(
            "  {:<21} {:<7} for {:.1} s, slot {}, node {:016x}, incarnation {}, {} threads{}{}{}\n",
            id.gossip,
            state,
            member.for_ms as f64 / 1000.0,
            id.slot,
            id.node_id,
            id.incarnation,
            id.threads,
            id.native.as_deref().map(|a| format!(", native {a}")).unwrap_or_default(),
            id.redis.as_deref().map(|a| format!(", redis {a}")).unwrap_or_default(),
            if member.me { " (answered)" } else { "" },
        ));
    }
    out.push_str(&format!(
        "detector: {} datagrams in, {} out; refused {} unauthenticated, {} malformed; {} send errors; {} members declared down since the start",
        report.datagrams_in,
        report.datagrams_out,
        report.refused_unauthenticated,
        report.refused_malformed,
        report.send_errors,
        report.downs
    ));
    out
}

fn arity(words: &[String], min: usize, usage: &str) -> Result<(), String> {
    if words.len() < min { Err(format!("usage: {usage}")) } else { Ok(()) }
}

fn key(word: &str) -> Key {
    Bytes::copy_from_slice(word.as_bytes())
}

fn req(e: RequestError) -> String {
    format!("(error) {e}")
}

fn cli(e: ClientError) -> String {
    format!("(error) {e}")
}

impl Level {
    fn run(&mut self, words: &[String], host: &str) -> Result<String, String> {
        let command = words[0].to_ascii_lowercase();
        match command.as_str() {
            "help" => return Ok(HELP.into()),
            "ring" => {
                return Ok(match self {
                    Self::Register(c, _) => show_ring(c.ring()),
                    Self::Causal(c, _) => show_ring(c.ring()),
                    Self::Txn(c, _) => show_ring(c.ring()),
                });
            }
            "cluster" if words.get(1).is_some_and(|w| w.eq_ignore_ascii_case("leave")) => {
                let host = host.to_owned();
                let info = match self {
                    Self::Register(c, _) => c.leave(&host),
                    Self::Causal(c, _) => c.leave(&host),
                    Self::Txn(c, _) => c.leave(&host),
                };
                return info
                    .map(|i| {
                        format!("{host} is leaving the cluster; it was:\n{}", show_cluster(&i))
                    })
                    .map_err(cli);
            }
            "cluster" => {
                let info = match self {
                    Self::Register(c, _) => c.cluster(),
                    Self::Causal(c, _) => c.cluster(),
                    Self::Txn(c, _) => c.cluster(),
                };
                return info.map(|i| show_cluster(&i)).map_err(cli);
            }
            "stats" => {
                let stats = match self {
                    Self::Register(c, _) => c.stats(),
                    Self::Causal(c, _) => c.stats(),
                    Self::Txn(c, _) => c.stats(),
                };
                return stats.map(|s| show_stats(&s)).map_err(cli);
            }
            _ => {}
        }
        match self {
            Self::Register(client, session) => register_command(client, session, &command, words),
            Self::Causal(client, session) => causal_command(client, session, &command, words),
            Self::Txn(client, session) => txn_command(client, session, &command, words),
        }
    }
}

fn register_command(
    client: &mut Client<RedisValue>,
    session: &mut RegisterSession,
    command: &str,
    words: &[String],
) -> Result<String, String> {
    match command {
        "get" => {
            arity(words, 2, "get KEY")?;
            let value = client.get(key(&words[1])).map_err(cli)?;
            match value.as_ref().and_then(RedisValue::kind) {
                Some(Kind::Counter) => {
                    let text =
                        value.map(|v| v.get_string()).transpose().map_err(|e| e.to_string())?;
                    Ok(format!(
                        "(integer) {}    (pn-counter)",
                        String::from_utf8_lossy(&text.flatten().unwrap_or_default())
                    ))
                }
                Some(Kind::Set) => Err("(error) WRONGTYPE: a set; use smembers".into()),
                _ => {
                    let register = with_register!(session, s => s.get(client, &key(&words[1])))
                        .map_err(req)?;
                    Ok(show_register(register.as_ref()))
                }
            }
        }
        "put" | "set" => {
            arity(words, 3, "put KEY VALUE")?;
            let value = Bytes::copy_from_slice(words[2].as_bytes());
            let stamp =
                with_register!(session, s => s.put(client, &key(&words[1]), value)).map_err(req)?;
            Ok(format!("OK    (lww stamp {}@{:x})", stamp.time, stamp.writer))
        }
        "del" | "delete" => {
            arity(words, 2, "del KEY")?;
            client.delete(key(&words[1])).map_err(cli)?;
            Ok("OK".into())
        }
        "incr" | "incrby" => {
            arity(words, 2, "incr KEY [BY]")?;
            let by = match words.get(2) {
                Some(n) => n.parse::<i64>().map_err(|_| format!("(error) not an integer: {n}"))?,
                None => 1,
            };
            Ok(shown(client.apply(key(&words[1]), RedisOp::IncrBy(by)).map_err(cli)?))
        }
        "sadd" | "srem" => {
            arity(words, 3, "sadd|srem KEY MEMBER...")?;
            let members = words[2..].iter().map(|m| Bytes::copy_from_slice(m.as_bytes())).collect();
            let op =
                if command == "sadd" { RedisOp::SAdd(members) } else { RedisOp::SRem(members) };
            Ok(shown(client.apply(key(&words[1]), op).map_err(cli)?))
        }
        "smembers" => {
            arity(words, 2, "smembers KEY")?;
            let members = match client.get(key(&words[1])).map_err(cli)? {
                Some(value) => value.members().map_err(|e| format!("(error) {e}"))?,
                None => Vec::new(),
            };
            if members.is_empty() {
                return Ok("(empty set)    (or-set)".into());
            }
            let lines: Vec<String> = members
                .iter()
                .enumerate()
                .map(|(i, m)| format!("{}) {}", i + 1, show_bytes(m)))
                .collect();
            Ok(format!("{}\n(or-set, {} members)", lines.join("\n"), members.len()))
        }
        "begin" | "commit" | "abort" => Err(
            "(error) transactions need --consistency read-uncommitted, read-committed or item-cut"
                .into(),
        ),
        other => Err(format!("(error) unknown command {other:?}; try help")),
    }
}

fn causal_command(
    client: &mut Client<Causal>,
    session: &mut CausalSession,
    command: &str,
    words: &[String],
) -> Result<String, String> {
    match command {
        "get" => {
            arity(words, 2, "get KEY")?;
            let Some(value) = session.get(client, &key(&words[1])).map_err(req)? else {
                return Ok("(nil)".into());
            };
            let live: Vec<String> = value
                .entries()
                .iter()
                .map(|(clock, v)| match v {
                    Some(bytes) => format!("{}    clock {}", show_bytes(bytes), show_clock(clock)),
                    None => format!("(deleted)    clock {}", show_clock(clock)),
                })
                .collect();
            let header = match live.len() {
                0 => "(nil)".to_owned(),
                1 => "1 version:".to_owned(),
                n => format!("{n} concurrent versions (siblings):"),
            };
            Ok(format!("{header}\n{}", live.join("\n")).trim_end().to_owned())
        }
        "put" | "set" | "del" | "delete" => {
            let value = if command.starts_with('d') {
                arity(words, 2, "del KEY")?;
                None
            } else {
                arity(words, 3, "put KEY VALUE")?;
                Some(Bytes::copy_from_slice(words[2].as_bytes()))
            };
            let clock = session.put(client, &key(&words[1]), value).map_err(req)?;
            Ok(format!("OK    (clock {})", show_clock(&clock)))
        }
        other => Err(format!("(error) {other:?} is not available at causal consistency; try help")),
    }
}

fn txn_command(
    client: &mut Client<Transactional>,
    session: &mut TxnSession,
    command: &str,
    words: &[String],
) -> Result<String, String> {
    let now = client.now();
    let ended = |end: TxnEnd| format!("{end:?}");
    match (command, session) {
        ("begin", TxnSession::ReadUncommitted(s)) => Ok(format!("BEGIN {:?}", s.begin(now))),
        ("begin", TxnSession::ReadCommitted(s)) => Ok(format!("BEGIN {:?}", s.begin(now))),
        ("begin", TxnSession::ItemCut(s)) => Ok(format!("BEGIN {:?}", s.begin(now))),
        ("commit", TxnSession::ReadUncommitted(s)) => Ok(ended(s.commit())),
        ("commit", TxnSession::ReadCommitted(s)) => s.commit(client).map(ended).map_err(req),
        ("commit", TxnSession::ItemCut(s)) => s.commit(client).map(ended).map_err(req),
        ("abort", TxnSession::ReadUncommitted(_)) => {
            Err("(error) read uncommitted writes are already visible; nothing to abort".into())
        }
        ("abort", TxnSession::ReadCommitted(s)) => Ok(ended(s.abort())),
        ("abort", TxnSession::ItemCut(s)) => Ok(ended(s.abort())),
        ("get" | "read", session) => {
            arity(words, 2, "get KEY")?;
            let k = key(&words[1]);
            let value = match session {
                TxnSession::ReadUncommitted(s) => s.read(client, &k),
                TxnSession::ReadCommitted(s) => s.read(client, &k),
                TxnSession::ItemCut(s) => s.read(client, &k),
            }
            .map_err(req)?;
            Ok(value.map_or("(nil)".into(), |v| show_bytes(&v)))
        }
        ("put" | "set" | "write", session) => {
            arity(words, 3, "put KEY VALUE")?;
            let (k, v) = (key(&words[1]), Bytes::copy_from_slice(words[2].as_bytes()));
            match session {
                TxnSession::ReadUncommitted(s) => {
                    s.write(client, &k, v).map_err(req)?;
                    Ok("OK    (visible now)".into())
                }
                TxnSession::ReadCommitted(s) => {
                    s.write(&k, v);
                    Ok("QUEUED    (visible at commit)".into())
                }
                TxnSession::ItemCut(s) => {
                    s.write(&k, v);
                    Ok("QUEUED    (visible at commit)".into())
                }
            }
        }
        (other, _) => Err(format!("(error) {other:?} is not a transactional command; try help")),
    }
}

fn history_path() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".anna_cli_history"))
}

fn shell(level: &mut Level, prompt: &str, host: &str) -> Result<(), String> {
    let mut editor = rustyline::DefaultEditor::new().map_err(|e| e.to_string())?;
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        println!("anna-cli: {prompt}; `help` lists commands, `quit` leaves");
    }
    loop {
        let line = match editor.readline(&format!("anna({prompt})> ")) {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(_) => break,
        };
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(trimmed);
        let words = match split_words(trimmed) {
            Ok(words) => words,
            Err(error) => {
                println!("(error) {error}");
                continue;
            }
        };
        if matches!(words[0].to_ascii_lowercase().as_str(), "quit" | "exit") {
            break;
        }
        match level.run(&words, host) {
            Ok(text) | Err(text) => println!("{text}"),
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    let mut level = match open(&args) {
        Ok(level) => level,
        Err(message) => {
            eprintln!("anna-cli: {message}");
            std::process::exit(1);
        }
    };
    if args.command.is_empty() {
        if let Err(error) = shell(&mut level, &args.consistency, &args.host[0]) {
            eprintln!("anna-cli: {error}");
            std::process::exit(1);
        }
        return;
    }
    match level.run(&args.command, &args.host[0]) {
        Ok(text) => println!("{text}"),
        Err(text) => {
            println!("{text}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_words;

    #[test]
    fn words_split_on_spaces_and_group_in_quotes() {
        assert_eq!(split_words(r#"put k "a b \" c""#).unwrap(), vec!["put", "k", "a b \" c"]);
        assert_eq!(split_words("  get   k ").unwrap(), vec!["get", "k"]);
        assert!(split_words("put k \"open").is_err());
    }
}
