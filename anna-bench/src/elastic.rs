//! Elasticity, as in the paper's Fig. 7: throughput over time while a cluster of real
//! `anna-server` processes grows from one node to three (`--join`) and shrinks back to two
//! (`anna-cli cluster leave`), under a steady closed-loop load, with the moments of change
//! marked. Every client connection goes to one of the live nodes (round robin, moving every
//! second), so the load spreads onto a node as soon as it joins, and a client on the node that
//! leaves moves on when its connection fails.
//!
//! On one machine the nodes share its cores, so more nodes add no throughput here; what the
//! run shows is the dip each change causes and how fast throughput comes back. On a machine
//! with a core per actor, each join would also raise the plateau.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::loadgen::{key_name, push_command, reply_len};
use crate::workload::SimRng;

/// One elasticity run.
#[derive(Clone, Debug)]
pub struct ElasticConfig {
    /// The `anna-server` binary.
    pub server: PathBuf,
    /// The `anna-cli` binary.
    pub cli: PathBuf,
    /// How long each membership holds before the next change.
    pub phase: Duration,
    /// Client connections.
    pub clients: usize,
    /// Commands in flight per connection.
    pub pipeline: usize,
    /// Distinct keys (written once before the run).
    pub keys: usize,
    /// Actors per node.
    pub threads: usize,
    /// Width of a throughput sample.
    pub bucket: Duration,
}

impl Default for ElasticConfig {
    fn default() -> Self {
        Self {
            server: PathBuf::from("anna-server"),
            cli: PathBuf::from("anna-cli"),
            phase: Duration::from_secs(10),
            clients: 8,
            pipeline: 8,
            keys: 100_000,
            threads: 1,
            bucket: Duration::from_millis(250),
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct ElasticResult {
    /// `(seconds since the load began, operations per second)`, one per bucket.
    pub samples: Vec<(f64, f64)>,
    /// `(seconds since the load began, what happened)`.
    pub events: Vec<(f64, String)>,
    /// Error replies and failed connections (a client on the node that left).
    pub errors: u64,
}

/// The throughput around one event.
#[derive(Clone, Debug, PartialEq)]
pub struct Dip {
    /// The event.
    pub event: String,
    /// Median throughput in the 3 s before it (ops/s).
    pub before: f64,
    /// The lowest bucket within 3 s after it (ops/s).
    pub lowest: f64,
    /// How long after the event the throughput was back to 90% of `before` (s); `None` if not
    /// before the next event.
    pub recovered_after: Option<f64>,
    /// Median throughput from 2 s after the event to the next one (ops/s).
    pub after: f64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

impl ElasticResult {
    /// The dip of every event.
    pub fn dips(&self) -> Vec<Dip> {
        let end = self.samples.last().map_or(0.0, |s| s.0);
        self.events
            .iter()
            .enumerate()
            .map(|(i, (at, event))| {
                let next = self.events.get(i + 1).map_or(end, |e| e.0);
                let within = |from: f64, to: f64| -> Vec<f64> {
                    self.samples.iter().filter(|s| s.0 >= from && s.0 < to).map(|s| s.1).collect()
                };
                let before = median(within(at - 3.0, *at));
                let lowest = within(*at, at + 3.0).into_iter().fold(f64::INFINITY, f64::min);
                // Back once a bucket after the lowest one reaches 90% of before.
                let after_event: Vec<&(f64, f64)> =
                    self.samples.iter().filter(|s| s.0 > *at && s.0 < next).collect();
                let low_at = after_event
                    .iter()
                    .take_while(|s| s.0 < at + 3.0)
                    .position(|s| s.1 == lowest)
                    .unwrap_or(0);
                let recovered_after = if lowest >= 0.9 * before {
                    Some(0.0)
                } else {
                    after_event[low_at..].iter().find(|s| s.1 >= 0.9 * before).map(|s| s.0 - at)
                };
                Dip {
                    event: event.clone(),
                    before,
                    lowest: if lowest.is_finite() { lowest } else { 0.0 },
                    recovered_after,
                    after: median(within(at + 2.0, next)),
                }
            })
            .collect()
    }
}

/// A node of the run; killed when dropped.
struct Member {
    child: Child,
    redis: SocketAddr,
    gossip: u16,
    native: u16,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port(taken: &mut Vec<u16>) -> u16 {
    loop {
        let port = crate::servers::free_port();
        let near = |p: u16| taken.iter().any(|&t| t.abs_diff(p) <= 8);
        if port != 0 && port < 65_000 && !near(port) {
            taken.push(port);
            return port;
        }
    }
}

fn start(
    config: &ElasticConfig,
    taken: &mut Vec<u16>,
    join: Option<u16>,
) -> std::io::Result<Member> {
    let (redis, gossip, native) = (free_port(taken), free_port(taken), free_port(taken));
    let mut command = Command::new(&config.server);
    command
        .args(["--dir", "", "--port", &redis.to_string(), "--gossip-port", &gossip.to_string()])
        .args(["--native-port", &native.to_string(), "--threads", &config.threads.to_string()])
        .args(["--no-pin", "--log-level", "warn"]);
    if let Some(seed) = join {
        command.args(["--join", &format!("127.0.0.1:{seed}")]);
    }
    let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot start {}: {e}", config.server.display()))
    })?;
    let member = Member { child, redis: ([127, 0, 0, 1], redis).into(), gossip, native };
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(20) {
        if ping(member.redis) {
            return Ok(member);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(std::io::Error::other(format!("the node on {redis} did not answer PING")))
}

fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0_u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// What the clients share: where they may go, and what they counted.
struct Load {
    live: Mutex<Vec<SocketAddr>>,
    ops: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

/// One client connection's loop: pipelines of GET/SET (half each) on random keys, to one
/// live node at a time, moving to the next every second or when the connection fails.
fn client(load: &Load, id: usize, config: &ElasticConfig) {
    let mut rng = SimRng::new(0xE1A5 ^ id as u64);
    let value = vec![b'v'; 32];
    let mut turn = id;
    let mut buf = vec![0_u8; 64 * 1024];
    while !load.stop.load(Ordering::Relaxed) {
        let addr = {
            let live = load.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            live[turn % live.len()]
        };
        turn += 1;
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            load.errors.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let connected = Instant::now();
        'connection: while connected.elapsed() < Duration::from_secs(1)
            && !load.stop.load(Ordering::Relaxed)
        {
            let mut out = Vec::with_capacity(config.pipeline * 64);
            for _ in 0..config.pipeline {
                let key = key_name(rng.below(config.keys as u64) as usize);
                if rng.below(2) == 0 {
                    push_command(&mut out, &[b"GET", key.as_bytes()]);
                } else {
                    push_command(&mut out, &[b"SET", key.as_bytes(), &value]);
                }
            }
            if stream.write_all(&out).is_err() {
                load.errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
            let (mut have, mut replies) = (0, 0);
            while replies < config.pipeline {
                let mut at = 0;
                while let Some(Ok((len, error))) = reply_len(&buf[at..have]) {
                    at += len;
                    replies += 1;
                    if error {
                        load.errors.fetch_add(1, Ordering::Relaxed);
                    } else {
                        load.ops.fetch_add(1, Ordering::Relaxed);
                    }
                    if at == have {
                        break;
                    }
                }
                buf.copy_within(at..have, 0);
                have -= at;
                if replies == config.pipeline {
                    break;
                }
                if have == buf.len() {
                    buf.resize(buf.len() * 2, 0);
                }
                match stream.read(&mut buf[have..]) {
                    Ok(0) | Err(_) => {
                        load.errors.fetch_add(1, Ordering::Relaxed);
                        break 'connection;
                    }
                    Ok(n) => have += n,
                }
            }
        }
    }
}

/// Runs the experiment: one node, a second joins, a third joins, the second leaves.
///
/// # Errors
/// A node that does not start, or a leave that fails.
pub fn run(config: &ElasticConfig) -> std::io::Result<ElasticResult> {
    let mut taken = Vec::new();
    let a = start(config, &mut taken, None)?;
    crate::loadgen::preload(a.redis, config.keys, 32)?;
    let load = Arc::new(Load {
        live: Mutex::new(vec![a.redis]),
        ops: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let clients: Vec<_> = (0..config.clients)
        .map(|id| {
            let (load, config) = (Arc::clone(&load), config.clone());
            std::thread::spawn(move || client(&load, id, &config))
        })
        .collect();
    let began = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (load, samples, bucket) = (Arc::clone(&load), Arc::clone(&samples), config.bucket);
        std::thread::spawn(move || {
            let mut last = load.ops.load(Ordering::Relaxed);
            let mut next = began + bucket;
            while !load.stop.load(Ordering::Relaxed) {
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let now = load.ops.load(Ordering::Relaxed);
                let t = next.duration_since(began).as_secs_f64();
                if let Ok(mut samples) = samples.lock() {
                    samples.push((t, (now - last) as f64 / bucket.as_secs_f64()));
                }
                last = now;
                next += bucket;
            }
        })
    };
    let mut events = Vec::new();
    let mut note = |what: String| events.push((began.elapsed().as_secs_f64(), what));
    let result = (|| -> std::io::Result<()> {
        std::thread::sleep(config.phase);
        note("node 2 joins".into());
        let b = start(config, &mut taken, Some(a.gossip))?;
        load.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(b.redis);
        std::thread::sleep(config.phase);
        note("node 3 joins".into());
        let c = start(config, &mut taken, Some(b.gossip))?;
        load.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(c.redis);
        std::thread::sleep(config.phase);
        note("node 2 leaves".into());
        load.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|&r| r != b.redis);
        let output = Command::new(&config.cli)
            .args(["-H", &format!("127.0.0.1:{}", b.native), "cluster", "leave"])
            .output()?;
        if !output.status.success() {
            return Err(std::io::Error::other(format!(
                "anna-cli cluster leave: {}",
                String::from_utf8_lossy(&output.stdout)
            )));
        }
        std::thread::sleep(config.phase);
        drop((b, c));
        Ok(())
    })();
    load.stop.store(true, Ordering::SeqCst);
    for client in clients {
        let _ = client.join();
    }
    let _ = sampler.join();
    drop(a);
    result?;
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(ElasticResult { samples, events, errors: load.errors.load(Ordering::Relaxed) })
}

/// Writes `elastic.csv`, `elasticity.svg` and `elastic.md` into `dir`.
///
/// # Errors
/// A file cannot be written.
pub fn write(
    result: &ElasticResult,
    config: &ElasticConfig,
    machine: &str,
    dir: &Path,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut csv = String::from("seconds,ops_per_s\n");
    for (t, ops) in &result.samples {
        csv.push_str(&format!("{t:.3},{ops:.0}\n"));
    }
    std::fs::write(dir.join("elastic.csv"), csv)?;
    crate::plots::lines_marked(
        &dir.join("elasticity.svg"),
        "Throughput while the cluster grows 1 → 2 → 3 nodes and shrinks to 2",
        "seconds",
        "operations per second",
        &[("GET/SET 50/50".to_owned(), result.samples.clone())],
        &result.events,
    )?;
    let mut md = format!(
        "# Elasticity\n\nMachine: {machine}. {} client connections, {} commands in flight each, GET/SET half and half on {} keys; {} actor(s) per node; a change every {} s; samples of {} ms. Every node holds every key (`--replication full:1`, the default). {} error replies or failed connections in all (clients on the node that left move on when their connection fails).\n\n![throughput over time](elasticity.svg)\n\n| event | before (ops/s, median of 3 s) | lowest 250 ms within 3 s | lowest / before | back to 90% after | after (median) |\n|---|---|---|---|---|---|\n",
        config.clients,
        config.pipeline,
        config.keys,
        config.threads,
        config.phase.as_secs(),
        config.bucket.as_millis(),
        result.errors
    );
    for dip in result.dips() {
        md.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.2} | {} | {:.0} |\n",
            dip.event,
            dip.before,
            dip.lowest,
            if dip.before > 0.0 { dip.lowest / dip.before } else { 0.0 },
            dip.recovered_after.map_or("-".to_owned(), |s| format!("{s:.2} s")),
            dip.after
        ));
    }
    md.push_str("\nRegenerate with `bash anna-bench/run.sh elastic`.\n");
    std::fs::write(dir.join("elastic.md"), md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dip_is_measured_against_the_seconds_before_the_event() {
        let mut samples: Vec<(f64, f64)> = (0..40).map(|i| (f64::from(i) * 0.25, 1000.0)).collect();
        samples[21].1 = 200.0; // 5.25 s
        samples[22].1 = 950.0; // 5.5 s: back above 90%
        let result = ElasticResult { samples, events: vec![(5.0, "join".into())], errors: 0 };
        let dips = result.dips();
        assert_eq!(dips.len(), 1);
        assert_eq!(dips[0].before, 1000.0);
        assert_eq!(dips[0].lowest, 200.0);
        assert_eq!(dips[0].recovered_after, Some(0.5));
        assert_eq!(dips[0].after, 1000.0);
    }
}
