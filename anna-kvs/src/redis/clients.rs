//! The node's clients as a whole: the registry `CLIENT LIST`, `CLIENT INFO` and `CLIENT KILL`
//! read, the `MONITOR` feed, the slow log, and the settings `CONFIG SET` changes at run time.
//!
//! Each connection is served by one actor; what others may ask about it lives in its
//! [`ClientEntry`], which only that actor writes: atomics it stores once per round (never
//! per command), and its name, behind a lock taken only when the name changes. The registry's
//! own lock is taken when a client comes or goes and by the commands that list clients.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::config::Settings;
use super::resp::Reply;

/// Redis's `slowlog-log-slower-than` default (µs).
pub const SLOWLOG_SLOWER_THAN: i64 = 10_000;
/// Redis's `slowlog-max-len` default.
pub const SLOWLOG_MAX_LEN: u64 = 128;
/// Lines a monitoring client may have waiting before it is disconnected (as Redis closes a
/// monitor that passes its output limit)…
pub const MONITOR_BACKLOG: usize = 100_000;
/// …and bytes of them.
pub const MONITOR_BACKLOG_BYTES: usize = 64 << 20;

/// Settings `CONFIG SET` may change while the server runs.
#[derive(Debug)]
pub struct Tunables {
    /// `slowlog-log-slower-than` (µs; negative: off, 0: every command).
    pub slowlog_slower_than: AtomicI64,
    /// `slowlog-max-len`.
    pub slowlog_max_len: AtomicU64,
    /// `maxclients`.
    pub maxclients: AtomicUsize,
    /// `timeout`: milliseconds idle before a client is closed (0: never; `CONFIG SET` takes
    /// seconds, the start-up configuration may say less).
    pub idle_timeout_ms: AtomicU64,
    /// `maxmemory-clients` in bytes (0: no limit).
    pub maxmemory_clients: AtomicU64,
}

impl Tunables {
    /// The values the server started with.
    pub fn new(settings: &Settings) -> Self {
        Self {
            slowlog_slower_than: AtomicI64::new(SLOWLOG_SLOWER_THAN),
            slowlog_max_len: AtomicU64::new(SLOWLOG_MAX_LEN),
            maxclients: AtomicUsize::new(settings.redis.maxclients),
            idle_timeout_ms: AtomicU64::new(
                settings.redis.idle_timeout.map_or(0, |d| (d.as_millis() as u64).max(1)),
            ),
            maxmemory_clients: AtomicU64::new(settings.redis.maxmemory_clients),
        }
    }

    /// The idle timeout in force, if any.
    pub fn idle_timeout(&self) -> Option<Duration> {
        match self.idle_timeout_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

/// What the node knows of one client, for the other clients' questions.
#[derive(Debug)]
pub struct ClientEntry {
    /// `CLIENT ID`.
    pub id: u64,
    /// The client's address (`ip:port`).
    pub addr: String,
    /// The server's address of the connection.
    pub laddr: String,
    /// The socket's descriptor.
    pub fd: i32,
    /// When it connected.
    pub created: Instant,
    /// Its name, if it gave one.
    name: Mutex<Option<Bytes>>,
    /// Milliseconds after `created` of its last input.
    last_active_ms: AtomicU64,
    /// The database it has selected.
    db: AtomicU8,
    /// Its last command's name.
    last_command: Mutex<&'static str>,
    /// Commands queued in `MULTI` (-1: not in one).
    multi: AtomicI64,
    /// Bytes of `MULTI`'s queue.
    multi_mem: AtomicU64,
    /// Query buffer: bytes held, capacity.
    qbuf: AtomicU64,
    qbuf_cap: AtomicU64,
    /// Output: bytes in the buffer, queued buffers, bytes in all.
    obl: AtomicU64,
    oll: AtomicU64,
    omem: AtomicU64,
    /// RESP version.
    resp: AtomicU8,
    /// It is a `MONITOR`.
    monitor: AtomicBool,
    /// `CLIENT KILL` (or a monitor falling too far behind): close it.
    killed: AtomicBool,
    /// The actor serving it (woken to close it).
    pub actor: usize,
}

/// A snapshot of what a connection publishes after each round.
#[derive(Debug, Default)]
pub struct Published<'a> {
    /// Its database.
    pub db: u8,
    /// Its last command.
    pub last_command: &'static str,
    /// Queued commands in `MULTI`, if in one.
    pub multi: Option<usize>,
    /// Bytes queued in `MULTI`.
    pub multi_mem: usize,
    /// Query buffer bytes and capacity.
    pub qbuf: (usize, usize),
    /// Output buffer bytes, queued buffers, all output bytes.
    pub output: (usize, usize, usize),
    /// RESP3.
    pub resp3: bool,
    /// The name, when it changed.
    pub name: Option<Option<&'a Bytes>>,
}

impl ClientEntry {
    /// A new client's entry.
    pub fn new(id: u64, addr: String, laddr: String, fd: i32, actor: usize) -> Self {
        Self {
            id,
            addr,
            laddr,
            fd,
            created: Instant::now(),
            name: Mutex::new(None),
            last_active_ms: AtomicU64::new(0),
            db: AtomicU8::new(0),
            last_command: Mutex::new("NULL"),
            multi: AtomicI64::new(-1),
            multi_mem: AtomicU64::new(0),
            qbuf: AtomicU64::new(0),
            qbuf_cap: AtomicU64::new(0),
            obl: AtomicU64::new(0),
            oll: AtomicU64::new(0),
            omem: AtomicU64::new(0),
            resp: AtomicU8::new(2),
            monitor: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            actor,
        }
    }

    /// Notes input just read.
    pub fn touch(&self, at: Instant) {
        let ms = at.saturating_duration_since(self.created).as_millis();
        self.last_active_ms.store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Stores what the connection looks like after a round.
    pub fn publish(&self, now: &Published<'_>) {
        self.db.store(now.db, Ordering::Relaxed);
        if let Ok(mut last) = self.last_command.try_lock() {
            *last = now.last_command;
        }
        self.multi.store(now.multi.map_or(-1, |n| n as i64), Ordering::Relaxed);
        self.multi_mem.store(now.multi_mem as u64, Ordering::Relaxed);
        self.qbuf.store(now.qbuf.0 as u64, Ordering::Relaxed);
        self.qbuf_cap.store(now.qbuf.1 as u64, Ordering::Relaxed);
        self.obl.store(now.output.0 as u64, Ordering::Relaxed);
        self.oll.store(now.output.1 as u64, Ordering::Relaxed);
        self.omem.store(now.output.2 as u64, Ordering::Relaxed);
        self.resp.store(if now.resp3 { 3 } else { 2 }, Ordering::Relaxed);
        if let Some(name) = now.name
            && let Ok(mut held) = self.name.lock()
        {
            *held = name.cloned();
        }
    }

    /// Whether it was told to close.
    pub fn killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    /// Its line of `CLIENT LIST` (Redis's fields, in Redis's order; `sub`, `psub`, `ssub`,
    /// `argv-mem` and `rbp` are 0 here: there is no pub/sub, and arguments are not copied).
    pub fn line(&self, now: Instant) -> String {
        let name = self.name.lock().map(|n| n.clone()).unwrap_or_default();
        let name = name.map(|n| String::from_utf8_lossy(&n).into_owned()).unwrap_or_default();
        let age = now.saturating_duration_since(self.created);
        let active = Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed));
        let idle = age.saturating_sub(active);
        let monitor = self.monitor.load(Ordering::Relaxed);
        let (qbuf, qbuf_cap) =
            (self.qbuf.load(Ordering::Relaxed), self.qbuf_cap.load(Ordering::Relaxed));
        let (obl, oll, omem) = (
            self.obl.load(Ordering::Relaxed),
            self.oll.load(Ordering::Relaxed),
            self.omem.load(Ordering::Relaxed),
        );
        let multi_mem = self.multi_mem.load(Ordering::Relaxed);
        let command = self.last_command.lock().map(|c| *c).unwrap_or("NULL");
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub=0 psub=0 ssub=0 multi={} qbuf={} qbuf-free={} argv-mem=0 multi-mem={} rbs={} rbp=0 obl={} oll={} omem={} tot-mem={} events={} cmd={} user=default redir=-1 resp={}",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            name,
            age.as_secs(),
            idle.as_secs(),
            if monitor { "O" } else { "N" },
            self.db.load(Ordering::Relaxed),
            self.multi.load(Ordering::Relaxed),
            qbuf,
            qbuf_cap.saturating_sub(qbuf),
            multi_mem,
            qbuf_cap,
            obl,
            oll,
            omem,
            qbuf_cap + omem + multi_mem,
            if omem > 0 { "rw" } else { "r" },
            command,
            self.resp.load(Ordering::Relaxed),
        )
    }
}

/// One slow log entry.
#[derive(Clone, Debug)]
struct SlowEntry {
    id: u64,
    /// Unix seconds when it was logged.
    at: i64,
    /// Microseconds it took.
    micros: i64,
    args: Vec<Bytes>,
    addr: String,
    name: Bytes,
}

/// Most arguments a slow log entry keeps (Redis's `SLOWLOG_ENTRY_MAX_ARGC`)…
const SLOWLOG_MAX_ARGS: usize = 32;
/// …and most bytes of each (`SLOWLOG_ENTRY_MAX_STRING`).
const SLOWLOG_MAX_STRING: usize = 128;

/// A monitoring client: where its lines go, and its entry.
#[derive(Debug)]
struct Monitor {
    lines: crossbeam_channel::Sender<Bytes>,
    queued: Arc<AtomicUsize>,
    entry: Arc<ClientEntry>,
}

/// What a monitoring connection reads its lines from.
#[derive(Debug)]
pub struct MonitorFeed {
    /// The lines, in order.
    pub lines: crossbeam_channel::Receiver<Bytes>,
    /// Bytes sent and not yet taken (the taker subtracts what it takes).
    pub queued: Arc<AtomicUsize>,
}

/// The node's clients (see the module documentation).
#[derive(Debug)]
pub struct Clients {
    entries: Mutex<BTreeMap<u64, Arc<ClientEntry>>>,
    monitors: Mutex<Vec<Monitor>>,
    /// How many monitors there are (read on every command: 0 costs one load).
    monitoring: AtomicUsize,
    slowlog: Mutex<VecDeque<SlowEntry>>,
    next_slow_id: AtomicU64,
    /// The settings `CONFIG SET` changes.
    pub tunables: Tunables,
}

impl Clients {
    /// An empty registry with the settings the server started with.
    pub fn new(settings: &Settings) -> Self {
        Self {
            entries: Mutex::new(BTreeMap::new()),
            monitors: Mutex::new(Vec::new()),
            monitoring: AtomicUsize::new(0),
            slowlog: Mutex::new(VecDeque::new()),
            next_slow_id: AtomicU64::new(0),
            tunables: Tunables::new(settings),
        }
    }

    /// Registers a client.
    pub fn add(&self, entry: Arc<ClientEntry>) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(entry.id, entry);
        }
    }

    /// Forgets a client (and its monitor feed).
    pub fn remove(&self, id: u64) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&id);
        }
        if let Ok(mut monitors) = self.monitors.lock() {
            monitors.retain(|m| m.entry.id != id);
            self.monitoring.store(monitors.len(), Ordering::Relaxed);
        }
    }

    /// Every client, by id.
    pub fn all(&self) -> Vec<Arc<ClientEntry>> {
        self.entries.lock().map(|e| e.values().cloned().collect()).unwrap_or_default()
    }

    /// The client with this id.
    pub fn get(&self, id: u64) -> Option<Arc<ClientEntry>> {
        self.entries.lock().ok()?.get(&id).cloned()
    }

    /// Marks clients to close; how many. (Their actors close them on their next pass; the
    /// caller wakes them.)
    pub fn kill(&self, victims: &[Arc<ClientEntry>]) -> usize {
        for victim in victims {
            victim.killed.store(true, Ordering::Relaxed);
        }
        victims.len()
    }

    /// Makes `entry`'s client a monitor: the lines it will be sent.
    pub fn start_monitor(&self, entry: &Arc<ClientEntry>) -> MonitorFeed {
        let (lines, receiver) = crossbeam_channel::bounded(MONITOR_BACKLOG);
        let queued = Arc::new(AtomicUsize::new(0));
        entry.monitor.store(true, Ordering::Relaxed);
        if let Ok(mut monitors) = self.monitors.lock() {
            monitors.push(Monitor { lines, queued: Arc::clone(&queued), entry: Arc::clone(entry) });
            self.monitoring.store(monitors.len(), Ordering::Relaxed);
        }
        MonitorFeed { lines: receiver, queued }
    }

    /// Whether anyone is monitoring (one relaxed load: checked on every command).
    #[inline]
    pub fn monitoring(&self) -> bool {
        self.monitoring.load(Ordering::Relaxed) > 0
    }

    /// Sends a command to every monitor as Redis writes it (`+<unix seconds>.<micros> [<db>
    /// <addr>] "arg" …`); the actors whose monitors got it, to wake. A monitor whose backlog
    /// is full is killed.
    pub fn feed(&self, db: u8, addr: &str, args: &[Bytes]) -> Vec<usize> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut line =
            format!("+{}.{:06} [{db} {addr}]", now.as_secs(), now.subsec_micros()).into_bytes();
        let secret = carries_password(args);
        for (i, arg) in args.iter().enumerate() {
            line.push(b' ');
            if secret && i > 0 {
                line.extend_from_slice(b"\"(redacted)\"");
            } else {
                quote(arg, &mut line);
            }
        }
        line.extend_from_slice(b"\r\n");
        let line = Bytes::from(line);
        let mut woken = Vec::new();
        if let Ok(monitors) = self.monitors.lock() {
            for monitor in monitors.iter() {
                let backlog = monitor.queued.fetch_add(line.len(), Ordering::Relaxed);
                // (A single line longer than the bound passes when nothing waits.)
                if (backlog > 0 && backlog + line.len() > MONITOR_BACKLOG_BYTES)
                    || monitor.lines.try_send(line.clone()).is_err()
                {
                    monitor.queued.fetch_sub(line.len(), Ordering::Relaxed);
                    monitor.entry.killed.store(true, Ordering::Relaxed);
                }
                woken.push(monitor.entry.actor);
            }
        }
        woken
    }

    /// Logs a command that took `micros` µs, if that is over `slowlog-log-slower-than`.
    pub fn log_if_slow(&self, micros: u64, args: &[Bytes], entry: &ClientEntry) {
        let threshold = self.tunables.slowlog_slower_than.load(Ordering::Relaxed);
        if threshold < 0 || (micros as i64) < threshold {
            return;
        }
        let max_len = self.tunables.slowlog_max_len.load(Ordering::Relaxed) as usize;
        let secret = carries_password(args);
        let mut kept: Vec<Bytes> = Vec::with_capacity(args.len().min(SLOWLOG_MAX_ARGS));
        for (i, arg) in args.iter().enumerate() {
            if i == SLOWLOG_MAX_ARGS - 1 && args.len() > SLOWLOG_MAX_ARGS {
                let more = args.len() - i;
                kept.push(Bytes::from(format!("... ({more} more arguments)")));
                break;
            }
            kept.push(if secret && i > 0 {
                Bytes::from_static(b"(redacted)")
            } else if arg.len() > SLOWLOG_MAX_STRING {
                let mut cut = arg[..SLOWLOG_MAX_STRING].to_vec();
                cut.extend_from_slice(
                    format!("... ({} more bytes)", arg.len() - SLOWLOG_MAX_STRING).as_bytes(),
                );
                Bytes::from(cut)
            } else {
                arg.clone()
            });
        }
        let at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let name = entry.name.lock().ok().and_then(|n| n.clone()).unwrap_or_default();
        let logged = SlowEntry {
            id: self.next_slow_id.fetch_add(1, Ordering::Relaxed),
            at,
            micros: i64::try_from(micros).unwrap_or(i64::MAX),
            args: kept,
            addr: entry.addr.clone(),
            name,
        };
        if let Ok(mut log) = self.slowlog.lock() {
            log.push_front(logged);
            log.truncate(max_len);
        }
    }

    /// `SLOWLOG GET [count]`: the newest `count` entries (`None`: all) as Redis answers them.
    pub fn slowlog_reply(&self, count: Option<usize>) -> Reply {
        let log = self.slowlog.lock().map(|l| l.clone()).unwrap_or_default();
        Reply::Array(
            log.iter()
                .take(count.unwrap_or(usize::MAX))
                .map(|e| {
                    Reply::Array(vec![
                        Reply::Int(e.id as i64),
                        Reply::Int(e.at),
                        Reply::Int(e.micros),
                        Reply::Array(e.args.iter().cloned().map(Reply::Bulk).collect()),
                        Reply::text(&e.addr),
                        Reply::Bulk(e.name.clone()),
                    ])
                })
                .collect(),
        )
    }

    /// `SLOWLOG LEN`.
    pub fn slowlog_len(&self) -> usize {
        self.slowlog.lock().map_or(0, |l| l.len())
    }

    /// `SLOWLOG RESET`.
    pub fn slowlog_reset(&self) {
        if let Ok(mut log) = self.slowlog.lock() {
            log.clear();
        }
    }

    /// Applies `slowlog-max-len` at once (a shorter length drops the oldest entries).
    pub fn trim_slowlog(&self) {
        let max_len = self.tunables.slowlog_max_len.load(Ordering::Relaxed) as usize;
        if let Ok(mut log) = self.slowlog.lock() {
            log.truncate(max_len);
        }
    }
}

/// Whether a command's arguments may hold a password (`AUTH`, `HELLO … AUTH`): `MONITOR`
/// and the slow log show them redacted.
fn carries_password(args: &[Bytes]) -> bool {
    args.first().is_some_and(|name| {
        name.eq_ignore_ascii_case(b"auth") || name.eq_ignore_ascii_case(b"hello")
    })
}

/// Appends `bytes` quoted as Redis's `sdscatrepr` quotes them: `"…"` with `\\`, `\"`, `\n`,
/// `\r`, `\t`, `\a`, `\b` escaped and other unprintable bytes as `\xHH`.
pub fn quote(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in bytes {
        match b {
            b'\\' | b'"' => out.extend_from_slice(&[b'\\', b]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x07 => out.extend_from_slice(b"\\a"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x20..=0x7E => out.push(b),
            _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_as_redis_quotes_them() {
        let mut out = Vec::new();
        quote(b"a \"b\"\\\n\r\t\x07\x08\x01\xff", &mut out);
        assert_eq!(out, b"\"a \\\"b\\\"\\\\\\n\\r\\t\\a\\b\\x01\\xff\"");
    }

    #[test]
    fn the_slow_log_keeps_the_newest_and_cuts_long_commands() {
        let clients = Clients::new(&Settings::default());
        let entry = ClientEntry::new(7, "127.0.0.1:5000".into(), "127.0.0.1:6379".into(), 9, 0);
        clients.tunables.slowlog_slower_than.store(100, Ordering::Relaxed);
        clients.log_if_slow(99, &[Bytes::from_static(b"GET")], &entry);
        assert_eq!(clients.slowlog_len(), 0, "under the threshold");
        let long: Vec<Bytes> = (0..40).map(|i| Bytes::from(format!("a{i}"))).collect();
        clients.log_if_slow(150, &long, &entry);
        clients.log_if_slow(
            200,
            &[Bytes::from_static(b"SET"), Bytes::from(vec![b'x'; 200])],
            &entry,
        );
        clients.log_if_slow(300, &[Bytes::from_static(b"AUTH"), Bytes::from_static(b"pw")], &entry);
        assert_eq!(clients.slowlog_len(), 3);
        let Reply::Array(entries) = clients.slowlog_reply(None) else { panic!() };
        let args = |i: usize| match &entries[i] {
            Reply::Array(fields) => match &fields[3] {
                Reply::Array(args) => args.clone(),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        assert_eq!(args(0)[1], Reply::Bulk(Bytes::from_static(b"(redacted)")));
        let Reply::Bulk(cut) = &args(1)[1] else { panic!() };
        assert_eq!(&cut[..], [&[b'x'; 128][..], b"... (72 more bytes)"].concat());
        assert_eq!(args(2).len(), 32);
        assert_eq!(args(2)[31], Reply::Bulk(Bytes::from_static(b"... (9 more arguments)")));
        clients.tunables.slowlog_max_len.store(1, Ordering::Relaxed);
        clients.trim_slowlog();
        assert_eq!(clients.slowlog_len(), 1);
    }
}
