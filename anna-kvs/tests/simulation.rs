//! Deterministic simulation of whole clusters under faults (drops, duplicates, delays that
//! reorder, partitions), then heal and quiet: every replica of every key must converge, to a
//! state above every acknowledged write, holding nothing never written, with no deleted key
//! coming back. Many seeds per run; a failure prints its seed, and
//! `ANNA_SIM_SEED=<seed> cargo test -p anna-kvs --test simulation` replays exactly that seed.
//!
//! The same checks run with three value lattices (last-writer-wins registers, observed-remove
//! sets, PN-counters), so nothing in the engine silently assumes last-writer-wins.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use lattice_core::{Lww, OrSet, PNCounter, Stamp};

use anna_kvs::sim::{Faults, Sim, SimRng};
use anna_kvs::{ActorConfig, ActorId, Factor, KvsValue, Replication, Request, Response, Topology};

const KEYS: u64 = 6;

fn seeds(default: u64) -> Vec<u64> {
    match std::env::var("ANNA_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("ANNA_SIM_SEED must be a number")],
        Err(_) => {
            let count = std::env::var("ANNA_SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(default);
            (0..count).collect()
        }
    }
}

fn random_factor(rng: &mut SimRng, members: u16) -> Factor {
    if rng.below(4) == 0 {
        Factor::Full
    } else {
        Factor::Count(1 + rng.below(u64::from(members)) as u16)
    }
}

/// 1–3 nodes × 1–4 actors, random replication factors.
fn random_topology(rng: &mut SimRng) -> Topology {
    let nodes = 1 + rng.below(3) as usize;
    let threads: Vec<u16> = (0..nodes).map(|_| 1 + rng.below(4) as u16).collect();
    let min_threads = *threads.iter().min().expect("at least one node");
    let replication =
        Replication::new(random_factor(rng, nodes as u16), random_factor(rng, min_threads));
    Topology::new((0..nodes).map(|n| format!("10.0.0.{n}:7000")).collect(), threads, replication)
}

/// How one value lattice is exercised and judged.
trait Workload: KvsValue {
    /// A client write: `session`'s `n`-th write to `key`. The client keeps its own state in
    /// `mine` (the key's accumulated client-side value) where the lattice needs one.
    fn write(session: u64, n: u64, mine: &mut Self) -> (Self, bool);
    /// `true` if `state` contains only what was written: `written` are all attempted writes.
    fn only_written(state: &Self, written: &[Self]) -> bool;
}

impl Workload for Lww<Option<Bytes>> {
    fn write(session: u64, n: u64, _mine: &mut Self) -> (Self, bool) {
        // The actor stamps it: clients have no clocks here.
        (Lww::new(Stamp::default(), Some(Bytes::from(format!("s{session}-w{n}")))), true)
    }
    fn only_written(state: &Self, written: &[Self]) -> bool {
        match state.value() {
            Some(Some(value)) => written.iter().any(|w| w.value() == Some(&Some(value.clone()))),
            _ => true,
        }
    }
}

impl Workload for OrSet<Bytes> {
    fn write(session: u64, n: u64, mine: &mut Self) -> (Self, bool) {
        mine.add(1_000 + session, Bytes::from(format!("e{}", n % 4)));
        (mine.clone(), false)
    }
    fn only_written(state: &Self, written: &[Self]) -> bool {
        let ever: BTreeSet<&Bytes> = written.iter().flat_map(|w| w.iter()).collect();
        state.iter().all(|e| ever.contains(e))
    }
}

impl Workload for PNCounter {
    fn write(session: u64, n: u64, mine: &mut Self) -> (Self, bool) {
        if n.is_multiple_of(3) {
            mine.decrement(1_000 + session, 1 + n % 5);
        } else {
            mine.increment(1_000 + session, 1 + n % 7);
        }
        (mine.clone(), false)
    }
    fn only_written(_state: &Self, _written: &[Self]) -> bool {
        true
    }
}

#[derive(Default)]
struct Tally {
    acked_writes: u64,
    acked_deletes: u64,
    lost_messages: u64,
    reclaimed: u64,
    forwarded: u64,
}

fn run_seed<V: Workload>(seed: u64, tally: &mut Tally) -> Result<(), String> {
    let mut setup = SimRng::new(seed ^ 0xA11A);
    let topology = random_topology(&mut setup);
    let config =
        ActorConfig { epoch_us: 100_000, retransmit_after_epochs: 3, ..ActorConfig::default() };
    let faults = Faults {
        drop: 0.05 + setup.below(20) as f64 / 100.0,
        duplicate: setup.below(20) as f64 / 100.0,
        max_delay_us: 50_000 + setup.below(400_000),
    };
    let all: Vec<ActorId> = topology.all_actors().collect();
    let describe = format!(
        "nodes {:?} threads {:?} replication {:?} faults {faults:?}",
        topology.nodes().len(),
        (0..topology.nodes().len()).map(|n| topology.threads(n as u16)).collect::<Vec<_>>(),
        topology.replication()
    );
    let mut sim: Sim<V> = Sim::new(topology.clone(), config, faults, seed);

    let sessions = 3;
    let mut client_state: BTreeMap<(u64, u64), V> = BTreeMap::new();
    let mut written: BTreeMap<u64, Vec<V>> = BTreeMap::new();
    let mut pending: Vec<(u64, u64, Option<V>)> = Vec::new(); // (token, key, write or None = delete)
    let ops = 40 + setup.below(40);
    let partition_from = setup.below(ops);
    let partition_len = setup.below(ops / 2);
    for op in 0..ops {
        if op == partition_from && all.len() > 1 {
            let side: BTreeSet<ActorId> =
                all.iter().copied().filter(|_| setup.below(2) == 0).collect();
            sim.partition(side);
        }
        if op == partition_from + partition_len {
            sim.heal();
        }
        let session = setup.below(sessions);
        let key = setup.below(KEYS);
        let key_bytes = Bytes::from(format!("key-{key}"));
        let at = all[setup.below(all.len() as u64) as usize];
        match setup.below(10) {
            0..=5 => {
                let mine = client_state.entry((session, key)).or_insert_with(V::bottom);
                let (value, stamp_here) = V::write(session, op, mine);
                written.entry(key).or_default().push(value.clone());
                let token = sim
                    .submit(at, Request::Put { key: key_bytes, value: value.clone(), stamp_here });
                pending.push((token, key, Some(value)));
            }
            6..=7 => {
                let token = sim.submit(at, Request::Get { key: key_bytes });
                pending.push((token, key, None));
            }
            _ => {
                let token = sim.submit(at, Request::Delete { key: key_bytes });
                pending.push((token, key, None));
            }
        }
        let pause = setup.below(60_000);
        sim.run_for(pause);
    }

    // Heal, stop the faults, and let the cluster go quiet.
    sim.heal();
    sim.set_faults(Faults::NONE);
    let mut quiet_epochs = 0;
    while !sim.is_quiet() && quiet_epochs < 200 {
        sim.run_for(100_000);
        quiet_epochs += 1;
    }
    sim.run_for(1_000_000);
    if !sim.is_quiet() {
        let pending: Vec<_> = sim
            .actors()
            .iter()
            .map(|(id, a)| (*id, a.pending_work()))
            .filter(|(_, p)| !p.is_empty())
            .map(|(id, p)| {
                let states: Vec<_> = p
                    .changeset
                    .iter()
                    .map(|k| format!("{:?}", sim.actors()[&id].peek(k)))
                    .collect();
                (id, p, states)
            })
            .collect();
        return Err(format!("cluster did not go quiet after healing: {pending:?}\n{describe}"));
    }

    // Acknowledged writes and deletes, with the stamps the actors gave them.
    let mut acked: BTreeMap<u64, Vec<V>> = BTreeMap::new();
    for (token, key, write) in pending {
        match (sim.reply(token), write) {
            (Some(Response::Done(stamp)), Some(mut value)) => {
                if let Some(stamp) = stamp {
                    value.restamp(stamp);
                    written.entry(key).or_default().push(value.clone());
                }
                tally.acked_writes += 1;
                acked.entry(key).or_default().push(value);
            }
            (Some(Response::Done(Some(stamp))), None) => {
                // A delete: as a write, it is "the key's tombstone at `stamp`" for stamped
                // lattices; for others its effect depends on what the replica had seen, so only
                // stamped deletes are checked against the final state.
                tally.acked_deletes += 1;
                let mut tomb = V::bottom();
                tomb.delete(stamp, 0);
                if tomb.tombstone_stamp().is_some() {
                    acked.entry(key).or_default().push(tomb);
                }
            }
            (Some(Response::Error(e)), _) => {
                return Err(format!("request refused: {e}\n{describe}"));
            }
            _ => {}
        }
    }

    for key in 0..KEYS {
        let key_bytes = format!("key-{key}");
        let owners = topology
            .owners(key_bytes.as_bytes(), sim.actors()[&all[0]].override_for(key_bytes.as_bytes()));
        let states: Vec<Option<&V>> = owners
            .iter()
            .map(|o| {
                sim.actors()[o].peek(key_bytes.as_bytes()).filter(|v| v.tombstone_stamp().is_none())
            })
            .collect();
        if states.windows(2).any(|w| w[0] != w[1]) {
            return Err(format!("replicas of {key_bytes} diverged: {states:?}\n{describe}"));
        }
        let final_state = states[0];
        for write in acked.get(&key).into_iter().flatten() {
            let covered = match final_state {
                Some(state) => write.leq(state),
                // Freed: only a tombstone at or above every acknowledged write may be freed.
                None => {
                    write.tombstone_stamp().is_some()
                        || owners.iter().all(|o| {
                            let floor = sim.actors()[o].floor();
                            write.write_stamp().is_some_and(|s| floor.is_some_and(|f| s < f))
                        })
                        || write.is_deleted()
                }
            };
            if !covered {
                return Err(format!(
                    "acknowledged write lost on {key_bytes}: {write:?} not below final {final_state:?}\n{describe}"
                ));
            }
        }
        if let Some(state) = final_state
            && !V::only_written(state, written.get(&key).map_or(&[], Vec::as_slice))
        {
            return Err(format!(
                "{key_bytes} holds something never written: {state:?}\n{describe}"
            ));
        }
    }
    tally.lost_messages += sim.lost;
    for actor in sim.actors().values() {
        tally.reclaimed += actor.stats().reclaimed;
        tally.forwarded += actor.stats().forwarded;
    }
    Ok(())
}

fn run_many<V: Workload>(name: &str, default_seeds: u64) {
    let mut tally = Tally::default();
    let seeds = seeds(default_seeds);
    for &seed in &seeds {
        if let Err(message) = run_seed::<V>(seed, &mut tally) {
            panic!(
                "{name}: seed {seed} failed: {message}\nreplay: ANNA_SIM_SEED={seed} cargo test -p anna-kvs --test simulation"
            );
        }
    }
    eprintln!(
        "{name}: {} seeds ok; {} acked writes, {} acked deletes, {} messages lost, {} keys reclaimed, {} forwards",
        seeds.len(),
        tally.acked_writes,
        tally.acked_deletes,
        tally.lost_messages,
        tally.reclaimed,
        tally.forwarded
    );
    if seeds.len() > 50 {
        assert!(
            tally.acked_writes > 0 && tally.lost_messages > 0 && tally.forwarded > 0,
            "the faults never fired"
        );
        if V::bottom()
            .join({
                let mut t = V::bottom();
                t.delete(Stamp::new(1, 1), 1);
                t
            })
            .tombstone_stamp()
            .is_some()
        {
            assert!(tally.reclaimed > 0, "no tombstone was ever reclaimed");
        }
    }
}

#[test]
fn lww_registers_converge_under_faults() {
    run_many::<Lww<Option<Bytes>>>("lww", 1000);
}

#[test]
fn or_sets_converge_under_faults() {
    run_many::<OrSet<Bytes>>("or-set", 1000);
}

#[test]
fn pn_counters_converge_under_faults() {
    run_many::<PNCounter>("pn-counter", 1000);
}

#[test]
fn a_seed_replays_exactly() {
    fn fingerprint(seed: u64) -> String {
        let mut tally = Tally::default();
        run_seed::<Lww<Option<Bytes>>>(seed, &mut tally).unwrap();
        format!(
            "{} {} {} {}",
            tally.acked_writes, tally.acked_deletes, tally.lost_messages, tally.reclaimed
        )
    }
    assert_eq!(fingerprint(42), fingerprint(42));
    assert_eq!(fingerprint(7), fingerprint(7));
}
