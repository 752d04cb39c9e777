//! A quick in-process throughput check of the actor's real request path (the paper's
//! single-node microbenchmark, ICDE'18 §VIII-A): 8-byte keys, 1 KB values, update-only, Zipf
//! keys pre-generated per thread before timing, pinned threads, 100 ms epochs with gossip
//! between the threads' actors. The full comparison with other maps lives in `anna-bench`.
//!
//! ```sh
//! cargo run --release -p anna-kvs --example throughput -- [threads] [zipf] [replication: 1|3|full] [seconds] [keys]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use lattice_core::{Lww, Stamp};

use anna_kvs::{
    Actor, ActorConfig, ActorId, Eventual, Factor, Input, Output, PeerMessage, Replication,
    Request, Topology,
};

/// Zipf ranks by inverse CDF over `n` keys (pre-computed, then binary search per sample).
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for rank in 1..=n {
            total += 1.0 / (rank as f64).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Self { cdf }
    }
    fn sample(&self, u: f64) -> usize {
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let zipf: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4.0);
    let replication = match args.get(3).map(String::as_str) {
        Some("1") => Replication::ONE,
        Some("3") => Replication::new(Factor::Count(1), Factor::Count(3)),
        _ => Replication::FULL,
    };
    let seconds: f64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let key_count: usize = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    const PREGENERATED: usize = 1 << 21;

    let distribution = Arc::new(Zipf::new(key_count, zipf));
    let topology = Arc::new(Topology::single(threads as u16, replication));
    type Inbox = (Sender<PeerMessage<Eventual>>, Receiver<PeerMessage<Eventual>>);
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..threads).map(|_| -> Inbox { crossbeam_channel::unbounded() }).unzip();
    let senders = Arc::new(senders);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let stop = Arc::new(AtomicBool::new(false));
    let start_barrier = Arc::new(std::sync::Barrier::new(threads + 1));

    let mut handles = Vec::new();
    for (thread, inbox) in receivers.into_iter().enumerate() {
        let (distribution, topology, senders, stop, barrier) = (
            Arc::clone(&distribution),
            Arc::clone(&topology),
            Arc::clone(&senders),
            Arc::clone(&stop),
            Arc::clone(&start_barrier),
        );
        let core = cores.get(thread % cores.len().max(1)).copied();
        handles.push(std::thread::spawn(move || {
            if let Some(core) = core {
                core_affinity::set_for_current(core);
            }
            // Each thread has its own key and value buffers, as requests arriving on its own
            // socket would: sharing one `Bytes` between threads would make its reference count
            // a contended cache line.
            let keys: Vec<Bytes> =
                (0..key_count as u64).map(|k| Bytes::copy_from_slice(&k.to_be_bytes())).collect();
            let values: Vec<Bytes> = (0..64_u8).map(|i| Bytes::from(vec![i; 1024])).collect();
            // Requests are pre-generated before timing: (key, value) indices, for keys this actor
            // owns (a client routes each request to an owner, as Anna's client proxy does).
            let id = ActorId::new(0, thread as u16);
            let mut rng = 0x5EED_u64 + thread as u64;
            let mut owned = std::collections::HashMap::new();
            let mut requests: Vec<(u32, u8)> = Vec::with_capacity(PREGENERATED);
            while requests.len() < PREGENERATED {
                let u = (splitmix(&mut rng) >> 11) as f64 / (1_u64 << 53) as f64;
                let key = distribution.sample(u);
                let mine =
                    *owned.entry(key).or_insert_with(|| topology.is_owner(id, &keys[key], None));
                if mine {
                    requests.push((key as u32, (splitmix(&mut rng) % 64) as u8));
                }
            }
            let clock = Instant::now();
            let now = || clock.elapsed().as_micros() as u64;
            let mut actor: Actor<Eventual> =
                Actor::new(id, topology, ActorConfig::default(), now());
            let mut out = Vec::with_capacity(16);
            let mut ops: u64 = 0;
            let mut gossip_time = Duration::ZERO;
            barrier.wait();
            let started = Instant::now();
            let mut t = now();
            'run: loop {
                for chunk in requests.chunks(1024) {
                    for &(k, v) in chunk {
                        let request = Request::Put {
                            key: keys[k as usize].clone(),
                            value: Lww::new(Stamp::default(), Some(values[v as usize].clone())),
                            stamp_here: true,
                        };
                        std::hint::black_box(actor.serve(t, 0, request, &mut out));
                    }
                    ops += chunk.len() as u64;
                    t = now();
                    let gossip_start = Instant::now();
                    let mut worked = false;
                    while let Ok(message) = inbox.try_recv() {
                        actor.handle(t, Input::Peer(message), &mut out);
                        worked = true;
                    }
                    if t >= actor.next_epoch_at() {
                        actor.handle(t, Input::Tick, &mut out);
                        worked = true;
                    }
                    for output in out.drain(..) {
                        if let Output::Send { to, message } = output {
                            let _ = senders[usize::from(to.thread)].send(message);
                        }
                    }
                    if worked {
                        gossip_time += gossip_start.elapsed();
                    }
                    if stop.load(Ordering::Relaxed) {
                        break 'run;
                    }
                }
            }
            (ops, started.elapsed(), gossip_time, actor.stats())
        }));
    }
    start_barrier.wait();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut total = 0.0;
    let mut gossip_share = 0.0;
    for handle in handles {
        let (ops, elapsed, gossip, stats) = handle.join().expect("worker");
        total += ops as f64 / elapsed.as_secs_f64();
        gossip_share += gossip.as_secs_f64() / elapsed.as_secs_f64();
        eprintln!(
            "  actor: {ops} ops, gossip out {} batches / {} entries, merges {}",
            stats.gossip_out, stats.gossip_entries_out, stats.merges
        );
    }
    println!(
        "threads={threads} zipf={zipf} replication={replication:?} keys={key_count}: {:.1} Mops/s total, {:.1} Mops/s per thread, gossip {:.1}% of CPU",
        total / 1e6,
        total / 1e6 / threads as f64,
        100.0 * gossip_share / threads as f64
    );
}
