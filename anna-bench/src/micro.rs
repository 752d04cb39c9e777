//! The paper's single-node microbenchmark (ICDE'18 §VIII-A, Figs. 4–5), in process.
//!
//! One global stream of update requests (8-byte keys drawn from a Zipf distribution over
//! `keys`, 1 KB values, last-writer-wins merges) is generated *before* timing and split among
//! the worker threads:
//!
//! - **Anna** and the **thread-local bound** split it by ownership: a request goes to an owner
//!   of its key on the ring (`Topology::single(threads, replication)`), one of the owners in
//!   turn when there are several — as Anna's client proxy spreads requests over replicas.
//!   Anna runs the real [`Actor`] request path on each pinned thread, with epoch gossip between
//!   the threads' actors; the bound is a private `HashMap` per thread with no gossip at all.
//! - **dashmap**, **scc** and a **64-way sharded `Mutex<HashMap>`** are shared by all threads;
//!   any thread may serve any request, so the stream is dealt round-robin.
//!
//! Every engine first loads each key of its share once (untimed; Anna also ships that load to
//! the other replicas and merges theirs), then each thread loops over its share until the time
//! is up. For Anna and the bound, throughput is *paced*: a request can only be served by an
//! owner of its key, so the stream as a whole advances only as fast as its slowest owner
//! relative to that owner's share — `min over threads (requests done / share) / seconds`.
//! Under Zipf 4 with replication 1 the owner of the hottest key paces everyone, which is the
//! point of the paper's replication experiments. A shared map lets any thread take any
//! request, so its throughput is the plain sum over threads (reported for every engine too).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anna_kvs::{
    Actor, ActorConfig, ActorId, Eventual, Factor, Input, Output, PeerMessage, Replication,
    Request, Topology,
};
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use lattice_core::{Lattice, Lww, Stamp};

use crate::workload::{SimRng, Zipf};

/// What serves the requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Engine {
    /// Anna's actors (the real request path, with gossip).
    Anna,
    /// `dashmap::DashMap`.
    DashMap,
    /// `scc::HashMap`.
    Scc,
    /// 64 `Mutex<HashMap>` shards.
    MutexMap,
    /// A private `HashMap` per thread, no gossip: the physical bound.
    ThreadLocal,
}

impl Engine {
    /// Every engine.
    pub const ALL: [Self; 5] =
        [Self::Anna, Self::DashMap, Self::Scc, Self::MutexMap, Self::ThreadLocal];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Anna => "anna",
            Self::DashMap => "dashmap",
            Self::Scc => "scc",
            Self::MutexMap => "mutex-64",
            Self::ThreadLocal => "bound (thread-local)",
        }
    }

    /// Whether the replication setting changes what it does.
    pub fn uses_replication(self) -> bool {
        matches!(self, Self::Anna | Self::ThreadLocal)
    }
}

/// The replication settings of the paper's figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rep {
    /// One owner per key.
    One,
    /// Three owners per key (capped at the thread count).
    Three,
    /// Every thread owns every key.
    Full,
}

impl Rep {
    /// Every setting.
    pub const ALL: [Self; 3] = [Self::One, Self::Three, Self::Full];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::One => "1",
            Self::Three => "3",
            Self::Full => "full",
        }
    }

    fn replication(self) -> Replication {
        match self {
            Self::One => Replication::ONE,
            Self::Three => Replication::new(Factor::Count(1), Factor::Count(3)),
            Self::Full => Replication::FULL,
        }
    }
}

/// One run.
#[derive(Clone, Debug)]
pub struct MicroConfig {
    /// What serves the requests.
    pub engine: Engine,
    /// Worker threads.
    pub threads: usize,
    /// Zipf exponent.
    pub zipf: f64,
    /// Replication (Anna and the bound).
    pub rep: Rep,
    /// Distinct keys.
    pub keys: usize,
    /// Value size in bytes.
    pub value_bytes: usize,
    /// Requests pre-generated per thread (on average).
    pub requests_per_thread: usize,
    /// Timed duration.
    pub duration: Duration,
    /// Anna's gossip epoch.
    pub epoch: Duration,
    /// Pin threads to cores.
    pub pin: bool,
    /// Anna keeps its anti-entropy digests (on by default, as in a cluster; off measures
    /// what maintaining them costs the request path).
    pub repair: bool,
}

impl Default for MicroConfig {
    fn default() -> Self {
        Self {
            engine: Engine::Anna,
            threads: 1,
            zipf: 4.0,
            rep: Rep::Full,
            keys: 1_000_000,
            value_bytes: 1024,
            requests_per_thread: 1 << 20,
            duration: Duration::from_secs(2),
            epoch: Duration::from_millis(100),
            pin: true,
            repair: true,
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct MicroResult {
    /// Paced throughput (ops/s).
    pub ops_per_s: f64,
    /// Sum of every thread's own rate (ops/s).
    pub raw_ops_per_s: f64,
    /// Share of worker CPU spent serving requests (Anna only; 1 for the others).
    pub request_share: f64,
    /// Share spent merging peers' gossip (Anna only).
    pub merge_share: f64,
    /// Share spent building and sending gossip (Anna only).
    pub gossip_share: f64,
}

/// Pre-generated requests of one thread: (key index, value index).
type Share = Vec<(u32, u8)>;

/// The global request stream: `(key rank, value index)` pairs drawn from Zipf(`zipf`) over
/// `keys` keys. Deterministic; generate it once and reuse it for every engine.
pub fn stream(keys: usize, zipf: f64, len: usize) -> Vec<(u32, u8)> {
    let distribution = Zipf::new(keys, zipf);
    let mut rng = SimRng::new(0x5EED);
    (0..len)
        .map(|_| {
            let key = distribution.sample(rng.next_f64()) as u32;
            (key, (rng.next_u64() % 64) as u8)
        })
        .collect()
}

/// Splits the first `requests_per_thread × threads` requests of `stream` among the threads;
/// returns each share and its fraction of the whole.
fn split(config: &MicroConfig, stream: &[(u32, u8)], topology: &Topology) -> Vec<(Share, f64)> {
    let threads = config.threads.max(1);
    let total = (config.requests_per_thread * threads).min(stream.len());
    let mut shares: Vec<Share> =
        (0..threads).map(|_| Vec::with_capacity(total / threads + 1)).collect();
    let mut owners = Vec::new();
    for (i, &(key, value)) in stream[..total].iter().enumerate() {
        let thread = if config.engine.uses_replication() && threads > 1 {
            topology.owners_into(&u64::from(key).to_be_bytes(), None, &mut owners);
            usize::from(owners[i % owners.len()].thread)
        } else {
            i % threads
        };
        shares[thread].push((key, value));
    }
    shares
        .into_iter()
        .map(|s| {
            let fraction = s.len() as f64 / total.max(1) as f64;
            (s, fraction)
        })
        .collect()
}

/// The distinct keys of a share, each with one of its values (what is loaded before timing).
fn distinct(share: &Share) -> Share {
    let mut seen = std::collections::HashSet::with_capacity(share.len() / 2);
    share.iter().copied().filter(|&(k, _)| seen.insert(k)).collect()
}

/// What a worker reports.
#[derive(Default)]
struct Worked {
    ops: u64,
    elapsed: Duration,
    merge: Duration,
    gossip: Duration,
}

/// Runs one configuration (generating its request stream; see [`run_on`] to reuse one).
pub fn run(config: &MicroConfig) -> MicroResult {
    let len = config.requests_per_thread * config.threads.max(1);
    run_on(config, &stream(config.keys, config.zipf, len))
}

/// Runs one configuration on a pre-generated [`stream`] of at least
/// `requests_per_thread × threads` requests.
pub fn run_on(config: &MicroConfig, stream: &[(u32, u8)]) -> MicroResult {
    let threads = config.threads.max(1);
    let topology = Arc::new(Topology::single(threads as u16, config.rep.replication()));
    let shares = split(config, stream, &topology);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(threads + 1));
    let shared = Arc::new(SharedMaps::new(config.engine));
    type Inbox = (Sender<PeerMessage<Eventual>>, Receiver<PeerMessage<Eventual>>);
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..threads).map(|_| -> Inbox { crossbeam_channel::unbounded() }).unzip();
    let senders = Arc::new(senders);

    let mut handles = Vec::new();
    let mut fractions = Vec::new();
    for (thread, ((share, fraction), inbox)) in shares.into_iter().zip(receivers).enumerate() {
        fractions.push(fraction);
        let core = (config.pin && !cores.is_empty()).then(|| cores[thread % cores.len()]);
        let (stop, barrier, shared, senders, topology) = (
            Arc::clone(&stop),
            Arc::clone(&barrier),
            Arc::clone(&shared),
            Arc::clone(&senders),
            Arc::clone(&topology),
        );
        let config = config.clone();
        handles.push(std::thread::spawn(move || {
            if let Some(core) = core {
                core_affinity::set_for_current(core);
            }
            // Each thread has its own key and value buffers, as requests arriving on its own
            // socket would.
            let values: Vec<Bytes> =
                (0..64_u8).map(|i| Bytes::from(vec![i; config.value_bytes])).collect();
            match config.engine {
                Engine::Anna => {
                    let id = ActorId::new(0, thread as u16);
                    anna_worker(
                        id, &config, &share, &values, topology, &inbox, &senders, &stop, &barrier,
                    )
                }
                Engine::ThreadLocal => local_worker(thread, &share, &values, &stop, &barrier),
                _ => shared_worker(thread, &shared, &share, &values, &stop, &barrier),
            }
        }));
    }
    barrier.wait(); // loaded
    barrier.wait(); // replicas merged: timing starts
    std::thread::sleep(config.duration);
    stop.store(true, Ordering::Relaxed);
    let worked: Vec<Worked> = handles.into_iter().map(|h| h.join().expect("worker")).collect();
    let mut result = MicroResult { ops_per_s: f64::INFINITY, ..MicroResult::default() };
    let mut busy = 0.0;
    for (w, fraction) in worked.iter().zip(&fractions) {
        let secs = w.elapsed.as_secs_f64().max(1e-9);
        result.raw_ops_per_s += w.ops as f64 / secs;
        if *fraction > 0.0 {
            result.ops_per_s = result.ops_per_s.min(w.ops as f64 / fraction / secs);
        }
        busy += secs;
        result.merge_share += w.merge.as_secs_f64();
        result.gossip_share += w.gossip.as_secs_f64();
    }
    // Shared maps let any thread serve any request, so a slow thread's work would be taken by
    // the others: their throughput is the plain sum.
    if !config.engine.uses_replication() || !result.ops_per_s.is_finite() {
        result.ops_per_s = if result.ops_per_s.is_finite() { result.raw_ops_per_s } else { 0.0 };
    }
    result.merge_share /= busy;
    result.gossip_share /= busy;
    result.request_share = 1.0 - result.merge_share - result.gossip_share;
    result
}

fn key_bytes(key: u32) -> Bytes {
    Bytes::copy_from_slice(&u64::from(key).to_be_bytes())
}

#[allow(clippy::too_many_arguments)]
fn anna_worker(
    id: ActorId,
    config: &MicroConfig,
    share: &Share,
    values: &[Bytes],
    topology: Arc<Topology>,
    inbox: &Receiver<PeerMessage<Eventual>>,
    senders: &[Sender<PeerMessage<Eventual>>],
    stop: &AtomicBool,
    barrier: &Barrier,
) -> Worked {
    let clock = Instant::now();
    let now = || clock.elapsed().as_micros() as u64;
    let defaults = ActorConfig::default();
    let actor_config = ActorConfig {
        epoch_us: config.epoch.as_micros() as u64,
        repair_interval_us: if config.repair { defaults.repair_interval_us } else { 0 },
        ..defaults
    };
    let mut actor: Actor<Eventual> = Actor::new(id, topology, actor_config, now());
    let mut out = Vec::with_capacity(16);
    let mut worked = Worked::default();
    // Load every key once, ship the load to the other replicas and merge theirs, untimed: the
    // paper measures a store that already holds its keys.
    let mut t = now();
    for (k, v) in distinct(share) {
        let value = Lww::new(Stamp::default(), Some(values[usize::from(v)].clone()));
        actor.serve(t, 0, Request::Put { key: key_bytes(k), value, stamp_here: true }, &mut out);
    }
    actor.handle(now(), Input::Tick, &mut out);
    for output in out.drain(..) {
        if let Output::Send { to, message } = output {
            let _ = senders[usize::from(to.thread)].send(message);
        }
    }
    barrier.wait();
    while let Ok(message) = inbox.try_recv() {
        actor.handle(now(), Input::Peer(message), &mut out);
    }
    out.clear();
    barrier.wait();
    let started = Instant::now();
    t = now();
    'run: loop {
        for chunk in share.chunks(1024) {
            // The chunk's keys arrive in one buffer, as a batch read off a socket would; each
            // request's key is a slice of it (what the Redis front end hands the actors).
            let mut buffer = bytes::BytesMut::with_capacity(chunk.len() * 8);
            for &(k, _) in chunk {
                buffer.extend_from_slice(&u64::from(k).to_be_bytes());
            }
            let buffer = buffer.freeze();
            for (i, &(_, v)) in chunk.iter().enumerate() {
                let request = Request::Put {
                    key: buffer.slice(i * 8..i * 8 + 8),
                    value: Lww::new(Stamp::default(), Some(values[usize::from(v)].clone())),
                    stamp_here: true,
                };
                std::hint::black_box(actor.serve(t, 0, request, &mut out));
            }
            worked.ops += chunk.len() as u64;
            t = now();
            let merge_start = Instant::now();
            let mut merged = false;
            while let Ok(message) = inbox.try_recv() {
                actor.handle(t, Input::Peer(message), &mut out);
                merged = true;
            }
            if merged {
                worked.merge += merge_start.elapsed();
            }
            let gossip_start = Instant::now();
            let mut gossiped = false;
            if t >= actor.next_epoch_at() {
                actor.handle(t, Input::Tick, &mut out);
                gossiped = true;
            }
            for output in out.drain(..) {
                if let Output::Send { to, message } = output {
                    let _ = senders[usize::from(to.thread)].send(message);
                    gossiped = true;
                }
            }
            if gossiped {
                worked.gossip += gossip_start.elapsed();
            }
            if stop.load(Ordering::Relaxed) {
                break 'run;
            }
        }
        if share.is_empty() && stop.load(Ordering::Relaxed) {
            break;
        }
        if share.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    worked.elapsed = started.elapsed();
    worked
}

/// Runs `serve` over the share in chunks until stopped.
fn drive(
    share: &Share,
    stop: &AtomicBool,
    barrier: &Barrier,
    mut serve: impl FnMut(u64, u32, u8),
) -> Worked {
    let mut worked = Worked::default();
    let mut time = 0_u64;
    // Load every key once, untimed (see the Anna worker).
    for (k, v) in distinct(share) {
        time += 1;
        serve(time, k, v);
    }
    barrier.wait();
    barrier.wait();
    let started = Instant::now();
    'run: loop {
        for chunk in share.chunks(1024) {
            for &(k, v) in chunk {
                time += 1;
                serve(time, k, v);
            }
            worked.ops += chunk.len() as u64;
            if stop.load(Ordering::Relaxed) {
                break 'run;
            }
        }
        if share.is_empty() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    worked.elapsed = started.elapsed();
    worked
}

type Hasher = foldhash::fast::RandomState;

fn local_worker(
    thread: usize,
    share: &Share,
    values: &[Bytes],
    stop: &AtomicBool,
    barrier: &Barrier,
) -> Worked {
    let mut map: HashMap<u64, Lww<Bytes>, Hasher> = HashMap::default();
    let writer = thread as u64;
    drive(share, stop, barrier, |time, k, v| {
        let update = Lww::new(Stamp::new(time, writer), values[usize::from(v)].clone());
        match map.entry(u64::from(k)) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                e.get_mut().merge(update);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(update);
            }
        }
    })
}

/// The shared maps (only the one in use is populated).
struct SharedMaps {
    dash: dashmap::DashMap<u64, Lww<Bytes>, Hasher>,
    scc: scc::HashMap<u64, Lww<Bytes>, Hasher>,
    shards: Vec<Mutex<HashMap<u64, Lww<Bytes>, Hasher>>>,
    engine: Engine,
}

impl SharedMaps {
    fn new(engine: Engine) -> Self {
        Self {
            dash: dashmap::DashMap::with_hasher(Hasher::default()),
            scc: scc::HashMap::with_hasher(Hasher::default()),
            shards: (0..64).map(|_| Mutex::new(HashMap::default())).collect(),
            engine,
        }
    }
}

fn shared_worker(
    thread: usize,
    maps: &SharedMaps,
    share: &Share,
    values: &[Bytes],
    stop: &AtomicBool,
    barrier: &Barrier,
) -> Worked {
    let writer = thread as u64;
    drive(share, stop, barrier, |time, k, v| {
        let key = u64::from(k);
        let update = Lww::new(Stamp::new(time, writer), values[usize::from(v)].clone());
        match maps.engine {
            Engine::DashMap => {
                maps.dash
                    .entry(key)
                    .and_modify(|old| {
                        old.merge_ref(&update);
                    })
                    .or_insert_with(|| update.clone());
            }
            Engine::Scc => {
                maps.scc
                    .entry_sync(key)
                    .and_modify(|old| {
                        old.merge_ref(&update);
                    })
                    .or_insert(update);
            }
            _ => {
                let shard = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize;
                let mut map =
                    maps.shards[shard].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match map.entry(key) {
                    std::collections::hash_map::Entry::Occupied(mut e) => {
                        e.get_mut().merge(update);
                    }
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(update);
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_runs_and_counts() {
        for engine in Engine::ALL {
            let config = MicroConfig {
                engine,
                threads: 2,
                keys: 1000,
                requests_per_thread: 4096,
                duration: Duration::from_millis(50),
                epoch: Duration::from_millis(10),
                pin: false,
                ..MicroConfig::default()
            };
            let result = run(&config);
            assert!(result.ops_per_s > 0.0, "{engine:?}: {result:?}");
            assert!(result.raw_ops_per_s >= result.ops_per_s * 0.99, "{engine:?}: {result:?}");
            let shares = result.request_share + result.merge_share + result.gossip_share;
            assert!((shares - 1.0).abs() < 1e-6, "{engine:?}: {result:?}");
        }
    }

    #[test]
    fn replication_one_gives_each_key_one_thread() {
        let config = MicroConfig {
            threads: 2,
            rep: Rep::One,
            keys: 100,
            requests_per_thread: 1000,
            ..MicroConfig::default()
        };
        let topology = Topology::single(2, Rep::One.replication());
        let shares = split(&config, &stream(100, 0.5, 2000), &topology);
        let total: f64 = shares.iter().map(|(_, f)| f).sum();
        assert!((total - 1.0).abs() < 1e-9);
        for (thread, (share, _)) in shares.iter().enumerate() {
            for &(k, _) in share {
                let owners = topology.owners(&u64::from(k).to_be_bytes(), None);
                assert_eq!(owners, vec![ActorId::new(0, thread as u16)]);
            }
        }
    }
}
