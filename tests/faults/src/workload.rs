//! Workloads through real clients, concurrently against every node: a set workload (`SADD` of
//! unique elements), a counter workload (`INCRBY`), a register workload (`SET`/`GET`/`DEL`)
//! over the Redis port with the `redis` crate, and a session workload through
//! `anna_kvs::Client` (PRAM sessions: read-your-writes and monotonic reads) over the native
//! port. Every operation is recorded ([`Op`]).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anna_kvs::client::{Client, ClientConfig};
use anna_kvs::levels::PramSession;
use anna_kvs::redis::RedisValue;
use bytes::Bytes;

use crate::history::{Kind, Op, Outcome};
use crate::node::{NATIVE_PORT, PASSWORD, REDIS_PORT};

/// The set keys.
pub const SET_KEYS: [&str; 2] = ["set:0", "set:1"];
/// The counter key.
pub const COUNTER_KEY: &str = "counter";
/// The register keys.
pub const REGISTER_KEYS: [&str; 4] = ["reg:0", "reg:1", "reg:2", "reg:3"];
/// The session keys (shared by the session clients, so monotonic reads are tested).
pub const SESSION_KEYS: [&str; 2] = ["sess:0", "sess:1"];
/// How long a client waits for an answer.
pub const OP_TIMEOUT: Duration = Duration::from_millis(1000);

/// A Redis connection to the node at `addr`, with read and write timeouts.
///
/// # Errors
/// It cannot connect or authenticate within `timeout`.
pub fn connect(addr: Ipv4Addr, timeout: Duration) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(format!("redis://:{PASSWORD}@{addr}:{REDIS_PORT}/"))?;
    let con = client.get_connection_with_timeout(timeout)?;
    con.set_read_timeout(Some(OP_TIMEOUT))?;
    con.set_write_timeout(Some(OP_TIMEOUT))?;
    Ok(con)
}

/// A small seeded generator (xorshift64*), so a run's choices follow its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded (never zero).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The running workers.
#[derive(Debug)]
pub struct Workload {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<Vec<Op>>>,
}

#[derive(Clone, Copy, Debug)]
enum Role {
    Set,
    Counter,
    Register,
}

/// What every worker shares: when to stop, the run's time origin, the pause between
/// operations.
#[derive(Clone, Debug)]
struct Pacing {
    stop: Arc<AtomicBool>,
    began: Instant,
    pace: Duration,
}

impl Pacing {
    /// Waits `times` paces; `false` once the run is over.
    fn next(&self, times: u32) -> bool {
        std::thread::sleep(self.pace * times);
        !self.stop.load(Ordering::Relaxed)
    }

    /// Milliseconds since the run began.
    fn now_ms(&self) -> u64 {
        self.began.elapsed().as_millis() as u64
    }
}

impl Workload {
    /// Starts one set, one counter and one register worker per node, and two session
    /// workers; each pauses `pace` between operations.
    pub fn start(addrs: &[Ipv4Addr], seed: u64, began: Instant, pace: Duration) -> Self {
        let pacing = Pacing { stop: Arc::new(AtomicBool::new(false)), began, pace };
        let mut handles = Vec::new();
        let mut worker = 0;
        for role in [Role::Set, Role::Counter, Role::Register] {
            for (node, &addr) in addrs.iter().enumerate() {
                let (pacing, rng) = (pacing.clone(), Rng::new(seed ^ (worker as u64 + 1) << 20));
                let spawned = std::thread::Builder::new()
                    .name(format!("worker-{worker}"))
                    .spawn(move || resp_worker(worker, role, node, addr, rng, &pacing));
                handles.push(spawned.expect("spawn a worker"));
                worker += 1;
            }
        }
        for _ in 0..2 {
            let (pacing, rng) = (pacing.clone(), Rng::new(seed ^ (worker as u64 + 1) << 20));
            let addrs: Vec<String> = addrs.iter().map(|a| format!("{a}:{NATIVE_PORT}")).collect();
            let spawned = std::thread::Builder::new()
                .name(format!("session-{worker}"))
                .spawn(move || session_worker(worker, &addrs, rng, &pacing));
            handles.push(spawned.expect("spawn a session worker"));
            worker += 1;
        }
        Self { stop: pacing.stop, handles }
    }

    /// Stops every worker and returns the history, ordered by invocation.
    pub fn finish(self) -> Vec<Op> {
        self.stop.store(true, Ordering::Relaxed);
        let mut ops: Vec<Op> =
            self.handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect();
        ops.sort_by_key(|op| (op.start_ms, op.worker));
        ops
    }
}

fn resp_worker(
    worker: usize,
    role: Role,
    node: usize,
    addr: Ipv4Addr,
    mut rng: Rng,
    pacing: &Pacing,
) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut con: Option<redis::Connection> = None;
    let mut n = 0u64;
    while pacing.next(1) {
        if con.is_none() {
            let start_ms = pacing.now_ms();
            match connect(addr, Duration::from_millis(500)) {
                Ok(connection) => con = Some(connection),
                Err(error) => {
                    let mut op = Op::started(worker, Some(node), Kind::Connect, "", None, start_ms);
                    (op.end_ms, op.outcome) = (pacing.now_ms(), Outcome::Fail);
                    op.error = Some(error.to_string());
                    ops.push(op);
                    // Do not spin on a node that refuses at once.
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
        }
        let Some(connection) = con.as_mut() else { continue };
        n += 1;
        let (kind, key, arg) = match role {
            Role::Set => {
                let key = SET_KEYS[rng.below(SET_KEYS.len() as u64) as usize];
                (Kind::Sadd, key, Some(format!("w{worker}-{n}")))
            }
            Role::Counter => (Kind::Incrby, COUNTER_KEY, Some((1 + rng.below(5)).to_string())),
            Role::Register => {
                let key = REGISTER_KEYS[rng.below(REGISTER_KEYS.len() as u64) as usize];
                match rng.below(10) {
                    0..=5 => (Kind::Set, key, Some(format!("w{worker}-{n}"))),
                    6..=8 => (Kind::Get, key, None),
                    _ => (Kind::Del, key, None),
                }
            }
        };
        let mut op = Op::started(worker, Some(node), kind, key, arg, pacing.now_ms());
        let mut command = redis::cmd(match kind {
            Kind::Sadd => "SADD",
            Kind::Incrby => "INCRBY",
            Kind::Set => "SET",
            Kind::Get => "GET",
            _ => "DEL",
        });
        command.arg(key);
        if let Some(arg) = &op.arg {
            command.arg(arg);
        }
        let answer = command.query::<redis::Value>(connection);
        op.end_ms = pacing.now_ms();
        match answer {
            Ok(redis::Value::BulkString(bytes)) => {
                op.read = Some(String::from_utf8_lossy(&bytes).into_owned());
            }
            Ok(_) => {}
            Err(error) => {
                if error.is_io_error() || error.is_timeout() || error.is_connection_dropped() {
                    con = None;
                }
                op.outcome = if kind.is_write() { Outcome::Unknown } else { Outcome::Fail };
                op.error = Some(error.to_string());
            }
        }
        ops.push(op);
    }
    ops
}

fn session_worker(worker: usize, addrs: &[String], mut rng: Rng, pacing: &Pacing) -> Vec<Op> {
    let mut ops = Vec::new();
    let config = ClientConfig {
        password: Some(PASSWORD.to_owned()),
        timeout: Duration::from_millis(400),
        attempts: 3,
        ..ClientConfig::default()
    };
    let mut client = loop {
        if pacing.stop.load(Ordering::Relaxed) {
            return ops;
        }
        match Client::<RedisValue>::with_config(addrs, config.clone()) {
            Ok(client) => break client,
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let mut session = PramSession::new(client.client_id());
    let mut n = 0u64;
    while pacing.next(2) {
        n += 1;
        let key = SESSION_KEYS[rng.below(SESSION_KEYS.len() as u64) as usize];
        let key_bytes = Bytes::from_static(key.as_bytes());
        let mut op = Op::started(worker, None, Kind::SessionGet, key, None, pacing.now_ms());
        if rng.below(2) == 0 {
            let value = format!("s{worker}-{n}");
            op.kind = Kind::SessionPut;
            op.arg = Some(value.clone());
            match session.put(&mut client, &key_bytes, Bytes::from(value)) {
                Ok(stamp) => op.stamp = Some((stamp.time, stamp.writer)),
                Err(error) => {
                    op.outcome = Outcome::Unknown;
                    op.error = Some(error.to_string());
                }
            }
        } else {
            match session.get(&mut client, &key_bytes) {
                Ok(value) => {
                    if let Some((stamp, value)) = value.and_then(|v| v.into_parts()) {
                        op.stamp = Some((stamp.time, stamp.writer));
                        op.read = value.map(|b| String::from_utf8_lossy(&b).into_owned());
                    }
                }
                Err(error) => {
                    op.outcome = Outcome::Fail;
                    op.error = Some(error.to_string());
                }
            }
        }
        op.end_ms = pacing.now_ms();
        ops.push(op);
    }
    ops
}

/// What one node holds for every workload key, as text (set members sorted and joined).
pub type Snapshot = BTreeMap<String, Option<String>>;

/// Reads every workload key from the node at `addr` (its own replica: each node holds one).
///
/// # Errors
/// The node did not answer.
pub fn snapshot(addr: Ipv4Addr) -> Result<Snapshot, String> {
    let mut con = connect(addr, Duration::from_millis(500)).map_err(|e| e.to_string())?;
    let mut out = Snapshot::new();
    for key in SET_KEYS {
        let mut members: Vec<String> =
            redis::cmd("SMEMBERS").arg(key).query(&mut con).map_err(|e| e.to_string())?;
        members.sort();
        out.insert(key.to_owned(), Some(members.join(",")));
    }
    for key in [COUNTER_KEY].iter().chain(&REGISTER_KEYS).chain(&SESSION_KEYS) {
        let value: Option<String> =
            redis::cmd("GET").arg(*key).query(&mut con).map_err(|e| e.to_string())?;
        out.insert((*key).to_owned(), value);
    }
    Ok(out)
}
