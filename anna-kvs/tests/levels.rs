//! Every consistency level, proven in the deterministic simulation by a checker of its own
//! guarantee over recorded per-session histories; every checker shown able to fail by a
//! deliberately broken session; the weaker levels measured against the stronger guarantees;
//! convergence for all; and the line-count table in `levels/mod.rs` recomputed.
//!
//! `ANNA_LEVEL_SEEDS=<n>` changes the number of seeds per level (default 100).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use lattice_core::{Lww, MultiValue, Stamp, VectorClock};

use anna_kvs::levels::{
    Causal, CausalSession, EventualSession, ItemCutSession, MonotonicReadsSession,
    MonotonicWritesSession, PramSession, ReadCommittedSession, ReadUncommittedSession,
    ReadYourWritesSession, Store, Transactional, WritesFollowReadsSession,
};
use anna_kvs::sim::{Faults, Sim, SimRng, SimStore};
use anna_kvs::{ActorConfig, Factor, KvsValue, Replication, RequestError, Topology};

type Reg = Lww<Option<Bytes>>;
/// One recorded run: the history and the converged state of each key.
type Run = (Vec<RegEvent>, BTreeMap<u64, Option<Reg>>);
/// Makes the session of client `n`.
type MakeReg<'a> = &'a dyn Fn(usize) -> Box<dyn RegSession>;

fn seeds() -> u64 {
    std::env::var("ANNA_LEVEL_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(100)
}

/// One node of 3 actors, every key on 2 or 3 of them, a lossy, reordering network, skewed
/// clocks: stale replicas and disagreeing stamps are the norm.
fn sim<V: KvsValue>(seed: u64) -> Sim<V> {
    let mut rng = SimRng::new(seed);
    let local = if rng.below(2) == 0 { Factor::Count(2) } else { Factor::Full };
    let topology = Topology::single(3, Replication::new(Factor::Full, local));
    let config = ActorConfig { epoch_us: 100_000, ..ActorConfig::default() };
    let faults = Faults { drop: 0.02, duplicate: 0.05, max_delay_us: 150_000 };
    let mut sim = Sim::new(topology, config, faults, seed);
    sim.skew_clocks(300_000);
    sim
}

fn key(i: u64) -> Bytes {
    Bytes::from(format!("k{i}"))
}

/// Lets the cluster go quiet and checks every replica of every key agrees.
fn converge<V: KvsValue>(sim: &mut Sim<V>, keys: u64) -> Result<(), String> {
    sim.set_faults(Faults::NONE);
    for _ in 0..100 {
        if sim.is_quiet() {
            break;
        }
        sim.run_for(100_000);
    }
    for k in 0..keys {
        let states: Vec<Option<&V>> = sim.actors().values().map(|a| a.peek(&key(k))).collect();
        let owners: Vec<&V> = states.iter().flatten().copied().collect();
        if owners.windows(2).any(|w| w[0] != w[1]) {
            return Err(format!("replicas of k{k} did not converge"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Session guarantees over last-writer-wins registers.

/// What a session-guarantee client does: read or write one key.
trait RegSession {
    fn get(
        &mut self,
        store: &mut SimStore<'_, Reg>,
        key: &Bytes,
    ) -> Result<Option<Reg>, RequestError>;
    fn put(
        &mut self,
        store: &mut SimStore<'_, Reg>,
        key: &Bytes,
        value: Bytes,
    ) -> Result<Stamp, RequestError>;
}

macro_rules! reg_session {
    ($($ty:ty),+) => {$(
        impl RegSession for $ty {
            fn get(&mut self, store: &mut SimStore<'_, Reg>, key: &Bytes) -> Result<Option<Reg>, RequestError> {
                <$ty>::get(self, store, key)
            }
            fn put(&mut self, store: &mut SimStore<'_, Reg>, key: &Bytes, value: Bytes) -> Result<Stamp, RequestError> {
                <$ty>::put(self, store, key, value)
            }
        }
    )+};
}
reg_session!(
    EventualSession,
    MonotonicReadsSession,
    MonotonicWritesSession,
    ReadYourWritesSession,
    PramSession,
    WritesFollowReadsSession
);

/// A read-your-writes session that forgets its writes (broken on purpose).
struct ForgetfulRyw(EventualSession);
/// A monotonic-reads session with no memory of what it read (broken on purpose).
struct AmnesicReads(EventualSession);
/// A monotonic-writes session whose stamps go backwards (broken on purpose), starting a
/// second ahead of the store's clock (the store refuses stamps far in the future).
struct BackwardsWrites(u64, u64);
/// A writes-follow-reads session that ignores what it read, with a clock `lag` µs behind
/// (broken on purpose: clients' clocks disagree, as real ones do).
struct IgnoresReads(u64, u64);

impl RegSession for ForgetfulRyw {
    fn get(&mut self, s: &mut SimStore<'_, Reg>, k: &Bytes) -> Result<Option<Reg>, RequestError> {
        self.0.get(s, k)
    }
    fn put(
        &mut self,
        s: &mut SimStore<'_, Reg>,
        k: &Bytes,
        v: Bytes,
    ) -> Result<Stamp, RequestError> {
        self.0.put(s, k, v)
    }
}
impl RegSession for AmnesicReads {
    fn get(&mut self, s: &mut SimStore<'_, Reg>, k: &Bytes) -> Result<Option<Reg>, RequestError> {
        self.0.get(s, k)
    }
    fn put(
        &mut self,
        s: &mut SimStore<'_, Reg>,
        k: &Bytes,
        v: Bytes,
    ) -> Result<Stamp, RequestError> {
        self.0.put(s, k, v)
    }
}
impl RegSession for BackwardsWrites {
    fn get(&mut self, s: &mut SimStore<'_, Reg>, k: &Bytes) -> Result<Option<Reg>, RequestError> {
        s.get(k)
    }
    fn put(
        &mut self,
        s: &mut SimStore<'_, Reg>,
        k: &Bytes,
        v: Bytes,
    ) -> Result<Stamp, RequestError> {
        if self.1 == 0 {
            self.1 = anna_kvs::levels::Store::now(s) + 1_000_000;
        }
        self.1 = self.1.saturating_sub(1_000);
        let stamp = Stamp::new(self.1, self.0);
        s.put(k, Lww::new(stamp, Some(v)))?;
        Ok(stamp)
    }
}
impl RegSession for IgnoresReads {
    fn get(&mut self, s: &mut SimStore<'_, Reg>, k: &Bytes) -> Result<Option<Reg>, RequestError> {
        s.get(k)
    }
    fn put(
        &mut self,
        s: &mut SimStore<'_, Reg>,
        k: &Bytes,
        v: Bytes,
    ) -> Result<Stamp, RequestError> {
        let stamp = Stamp::new(s.now().saturating_sub(self.1), self.0);
        s.put(k, Lww::new(stamp, Some(v)))?;
        Ok(stamp)
    }
}

#[derive(Clone, Debug)]
enum RegEvent {
    Write { session: usize, key: u64, tag: Bytes, stamp: Stamp },
    Read { session: usize, key: u64, seen: Option<(Stamp, Option<Bytes>)> },
}

/// Runs `sessions` clients (made by `make`) over a few keys, recording the history.
fn reg_history(
    seed: u64,
    make: &dyn Fn(usize) -> Box<dyn RegSession>,
) -> Result<(Vec<RegEvent>, Sim<Reg>), String> {
    let mut sim = sim::<Reg>(seed);
    let mut rng = SimRng::new(seed ^ 0xC0FFEE);
    let mut sessions: Vec<Box<dyn RegSession>> = (0..3).map(make).collect();
    let mut history = Vec::new();
    for n in 0..60_u64 {
        let session = rng.below(3) as usize;
        let k = rng.below(2);
        let mut store = SimStore { sim: &mut sim, timeout_us: 2_000_000 };
        if rng.below(2) == 0 {
            let tag = Bytes::from(format!("s{session}-w{n}"));
            if let Ok(stamp) = sessions[session].put(&mut store, &key(k), tag.clone()) {
                history.push(RegEvent::Write { session, key: k, tag, stamp });
            }
        } else if let Ok(value) = sessions[session].get(&mut store, &key(k)) {
            let seen = value.and_then(|v| v.into_parts());
            history.push(RegEvent::Read { session, key: k, seen });
        }
        sim.run_for(rng.below(30_000));
    }
    converge(&mut sim, 2)?;
    Ok((history, sim))
}

fn stamp_of(seen: &Option<(Stamp, Option<Bytes>)>) -> Option<Stamp> {
    seen.as_ref().map(|(s, _)| *s)
}

/// Read-your-writes: a session's read reflects its earlier writes to the key.
fn check_ryw(history: &[RegEvent]) -> Result<(), String> {
    let mut last_write: HashMap<(usize, u64), Stamp> = HashMap::new();
    for event in history {
        match event {
            RegEvent::Write { session, key, stamp, .. } => {
                last_write.insert((*session, *key), *stamp);
            }
            RegEvent::Read { session, key, seen } => {
                if let Some(&written) = last_write.get(&(*session, *key))
                    && stamp_of(seen).is_none_or(|s| s < written)
                {
                    return Err(format!(
                        "session {session} wrote k{key} at {written:?} then read {seen:?}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Monotonic reads: a session never reads a version older than one it read before.
fn check_mr(history: &[RegEvent]) -> Result<(), String> {
    let mut newest: HashMap<(usize, u64), Stamp> = HashMap::new();
    for event in history {
        if let RegEvent::Read { session, key, seen } = event {
            let stamp = stamp_of(seen);
            if let Some(&before) = newest.get(&(*session, *key))
                && stamp.is_none_or(|s| s < before)
            {
                return Err(format!(
                    "session {session} read k{key} at {before:?}, later {stamp:?}"
                ));
            }
            if let Some(s) = stamp {
                let slot = newest.entry((*session, *key)).or_insert(s);
                *slot = (*slot).max(s);
            }
        }
    }
    Ok(())
}

/// Monotonic writes: a session's later write to a key is ordered after its earlier ones, so
/// no one (the converged state included) sees an earlier write win over a later one.
fn check_mw(history: &[RegEvent], final_state: &BTreeMap<u64, Option<Reg>>) -> Result<(), String> {
    let mut writes: HashMap<(usize, u64), Vec<(Bytes, Stamp)>> = HashMap::new();
    for event in history {
        if let RegEvent::Write { session, key, tag, stamp } = event {
            writes.entry((*session, *key)).or_default().push((tag.clone(), *stamp));
        }
    }
    for ((session, key), list) in &writes {
        for pair in list.windows(2) {
            if pair[1].1 <= pair[0].1 {
                return Err(format!(
                    "session {session}'s write {:?} to k{key} orders before its earlier {:?}",
                    pair[1].0, pair[0].0
                ));
            }
        }
        if let Some(Some(state)) = final_state.get(key)
            && let Some(Some(value)) = state.value()
        {
            let position = list.iter().position(|(t, _)| t == value);
            if position.is_some_and(|p| p + 1 < list.len()) {
                return Err(format!(
                    "k{key} converged to session {session}'s earlier write {value:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Writes-follow-reads: a write is ordered after every version its session read before it.
fn check_wfr(history: &[RegEvent]) -> Result<(), String> {
    let mut read: HashMap<(usize, u64), Stamp> = HashMap::new();
    for event in history {
        match event {
            RegEvent::Read { session, key, seen } => {
                if let Some(s) = stamp_of(seen) {
                    let slot = read.entry((*session, *key)).or_insert(s);
                    *slot = (*slot).max(s);
                }
            }
            RegEvent::Write { session, key, stamp, tag } => {
                if let Some(&before) = read.get(&(*session, *key))
                    && *stamp <= before
                {
                    return Err(format!(
                        "session {session}'s write {tag:?} ({stamp:?}) orders before the {before:?} it read"
                    ));
                }
            }
        }
    }
    Ok(())
}

fn final_states(sim: &Sim<Reg>) -> BTreeMap<u64, Option<Reg>> {
    (0..2).map(|k| (k, sim.actors().values().find_map(|a| a.peek(&key(k)).cloned()))).collect()
}

type RegChecker = fn(&[RegEvent], &BTreeMap<u64, Option<Reg>>) -> Result<(), String>;

const CHECKERS: &[(&str, RegChecker)] = &[
    ("read-your-writes", |h, _| check_ryw(h)),
    ("monotonic reads", |h, _| check_mr(h)),
    ("monotonic writes", check_mw),
    ("writes-follow-reads", |h, _| check_wfr(h)),
    ("PRAM", |h, f| check_ryw(h).and(check_mr(h)).and(check_mw(h, f))),
];

/// The histories of `seeds()` runs of a level (each run: history and converged states).
fn reg_histories(make: &dyn Fn(usize) -> Box<dyn RegSession>) -> Vec<Run> {
    (0..seeds())
        .map(|seed| {
            let (history, sim) =
                reg_history(seed, make).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            (history, final_states(&sim))
        })
        .collect()
}

/// How many of `runs` violate `checker`.
fn violations(runs: &[Run], checker: RegChecker) -> u64 {
    runs.iter().filter(|(h, f)| checker(h, f).is_err()).count() as u64
}

/// The share of seeds whose history violates `checker`.
fn violation_rate(make: &dyn Fn(usize) -> Box<dyn RegSession>, checker: RegChecker) -> (u64, u64) {
    (violations(&reg_histories(make), checker), seeds())
}

fn assert_level_holds(
    level: &str,
    make: &dyn Fn(usize) -> Box<dyn RegSession>,
    checker: RegChecker,
) {
    for seed in 0..seeds() {
        let (history, sim) =
            reg_history(seed, make).unwrap_or_else(|e| panic!("{level}, seed {seed}: {e}"));
        if let Err(violation) = checker(&history, &final_states(&sim)) {
            panic!(
                "{level} violated at seed {seed}: {violation}\nreplay: ANNA_LEVEL_SEEDS={} cargo test -p anna-kvs --test levels",
                seed + 1
            );
        }
    }
}

#[test]
fn session_guarantees_hold_and_their_checkers_can_fail() {
    assert_level_holds(
        "read-your-writes",
        &|s| Box::new(ReadYourWritesSession::new(s as u64 + 1)),
        CHECKERS[0].1,
    );
    assert_level_holds(
        "monotonic reads",
        &|s| Box::new(MonotonicReadsSession::new(s as u64 + 1)),
        CHECKERS[1].1,
    );
    assert_level_holds(
        "monotonic writes",
        &|s| Box::new(MonotonicWritesSession::new(s as u64 + 1)),
        CHECKERS[2].1,
    );
    assert_level_holds(
        "writes-follow-reads",
        &|s| Box::new(WritesFollowReadsSession::new(s as u64 + 1)),
        CHECKERS[3].1,
    );
    assert_level_holds("PRAM", &|s| Box::new(PramSession::new(s as u64 + 1)), CHECKERS[4].1);

    let broken: [(&str, MakeReg<'_>, RegChecker); 4] = [
        ("read-your-writes", &|_| Box::new(ForgetfulRyw(EventualSession::new(0))), CHECKERS[0].1),
        ("monotonic reads", &|_| Box::new(AmnesicReads(EventualSession::new(0))), CHECKERS[1].1),
        ("monotonic writes", &|s| Box::new(BackwardsWrites(s as u64 + 1, 0)), CHECKERS[2].1),
        (
            "writes-follow-reads",
            &|s| Box::new(IgnoresReads(s as u64 + 1, s as u64 * 200_000)),
            CHECKERS[3].1,
        ),
    ];
    for (name, make, checker) in broken {
        let (violations, total) = violation_rate(make, checker);
        assert!(
            violations > 0,
            "the {name} checker never caught its broken session in {total} seeds"
        );
    }
}

#[test]
fn weaker_levels_violate_stronger_guarantees() {
    let levels: [(&str, MakeReg<'_>); 5] = [
        ("eventual", &|s| Box::new(EventualSession::new(s as u64 + 1))),
        ("monotonic reads", &|s| Box::new(MonotonicReadsSession::new(s as u64 + 1))),
        ("monotonic writes", &|s| Box::new(MonotonicWritesSession::new(s as u64 + 1))),
        ("read-your-writes", &|s| Box::new(ReadYourWritesSession::new(s as u64 + 1))),
        ("PRAM", &|s| Box::new(PramSession::new(s as u64 + 1))),
    ];
    let mut table = String::from("| level \\ guarantee |");
    for (name, _) in CHECKERS {
        table.push_str(&format!(" {name} |"));
    }
    table.push('\n');
    let mut eventual_ryw = 0;
    for (level, make) in levels {
        table.push_str(&format!("| {level} |"));
        let runs = reg_histories(make);
        for (name, checker) in CHECKERS {
            let (v, n) = (violations(&runs, *checker), seeds());
            if level == "eventual" && *name == "read-your-writes" {
                eventual_ryw = v;
            }
            table.push_str(&format!(" {:.0}% |", 100.0 * v as f64 / n as f64));
        }
        table.push('\n');
    }
    eprintln!("share of seeds whose history violates each guarantee ({} seeds):\n{table}", seeds());
    assert!(
        eventual_ryw > 0,
        "eventual consistency never violated read-your-writes: the simulation is too kind\n{table}"
    );
}

// ---------------------------------------------------------------------------------------
// Causal consistency (per key) over multi-value registers.

#[derive(Clone, Debug)]
enum CausalEvent {
    /// A write and the siblings its session had seen of the key before it.
    Write { key: u64, tag: Bytes, superseded: Vec<Bytes> },
    /// A read: the sibling tags and their clocks.
    Read { session: usize, key: u64, siblings: Vec<(VectorClock, Bytes)> },
}

trait CausalClient {
    fn get(
        &mut self,
        s: &mut SimStore<'_, Causal>,
        k: &Bytes,
    ) -> Result<Option<Causal>, RequestError>;
    fn put(
        &mut self,
        s: &mut SimStore<'_, Causal>,
        k: &Bytes,
        v: Bytes,
    ) -> Result<(), RequestError>;
}
impl CausalClient for CausalSession {
    fn get(
        &mut self,
        s: &mut SimStore<'_, Causal>,
        k: &Bytes,
    ) -> Result<Option<Causal>, RequestError> {
        CausalSession::get(self, s, k)
    }
    fn put(
        &mut self,
        s: &mut SimStore<'_, Causal>,
        k: &Bytes,
        v: Bytes,
    ) -> Result<(), RequestError> {
        CausalSession::put(self, s, k, Some(v)).map(|_| ())
    }
}
/// A causal session that writes without the context it read (broken on purpose).
struct ContextFree(u64, u64);
impl CausalClient for ContextFree {
    fn get(
        &mut self,
        s: &mut SimStore<'_, Causal>,
        k: &Bytes,
    ) -> Result<Option<Causal>, RequestError> {
        s.get(k)
    }
    fn put(
        &mut self,
        s: &mut SimStore<'_, Causal>,
        k: &Bytes,
        v: Bytes,
    ) -> Result<(), RequestError> {
        self.1 += 1;
        s.put(k, MultiValue::from_write(VectorClock::from_iter([(self.0, self.1)]), Some(v)))
    }
}

fn tags(value: &Option<Causal>) -> Vec<(VectorClock, Bytes)> {
    value
        .iter()
        .flat_map(|v| v.entries().iter().filter_map(|(c, t)| t.clone().map(|t| (c.clone(), t))))
        .collect()
}

fn causal_history(
    seed: u64,
    make: &dyn Fn(usize) -> Box<dyn CausalClient>,
) -> Result<Vec<CausalEvent>, String> {
    let mut sim = sim::<Causal>(seed);
    let mut rng = SimRng::new(seed ^ 0xCA05A1);
    let mut sessions: Vec<Box<dyn CausalClient>> = (0..3).map(make).collect();
    let mut seen: HashMap<(usize, u64), Vec<Bytes>> = HashMap::new();
    let mut history = Vec::new();
    for n in 0..50_u64 {
        let session = rng.below(3) as usize;
        let k = rng.below(2);
        let mut store = SimStore { sim: &mut sim, timeout_us: 2_000_000 };
        if rng.below(2) == 0 {
            let tag = Bytes::from(format!("s{session}-w{n}"));
            let superseded = seen.remove(&(session, k)).unwrap_or_default();
            if sessions[session].put(&mut store, &key(k), tag.clone()).is_ok() {
                history.push(CausalEvent::Write { key: k, tag: tag.clone(), superseded });
                seen.insert((session, k), vec![tag]);
            }
        } else if let Ok(value) = sessions[session].get(&mut store, &key(k)) {
            let siblings = tags(&value);
            seen.insert((session, k), siblings.iter().map(|(_, t)| t.clone()).collect());
            history.push(CausalEvent::Read { session, key: k, siblings });
        }
        sim.run_for(rng.below(30_000));
    }
    converge(&mut sim, 2)?;
    Ok(history)
}

/// Causal (per key): a write supersedes what its session read, so no read returns it next to
/// a sibling it superseded; and a session never reads a version causally before one it saw.
fn check_causal(history: &[CausalEvent]) -> Result<(), String> {
    let mut superseded_by: HashMap<(u64, Bytes), Vec<Bytes>> = HashMap::new();
    let mut seen_clock: HashMap<(usize, u64), VectorClock> = HashMap::new();
    for event in history {
        match event {
            CausalEvent::Write { key, tag, superseded } => {
                superseded_by.insert((*key, tag.clone()), superseded.clone());
            }
            CausalEvent::Read { session, key, siblings } => {
                let present: Vec<&Bytes> = siblings.iter().map(|(_, t)| t).collect();
                for tag in &present {
                    for old in superseded_by.get(&(*key, (*tag).clone())).into_iter().flatten() {
                        if present.contains(&old) {
                            return Err(format!(
                                "read of k{key} shows {tag:?} next to {old:?}, which it superseded"
                            ));
                        }
                    }
                }
                let mut now = VectorClock::new();
                for (clock, _) in siblings {
                    lattice_core::Lattice::merge_ref(&mut now, clock);
                }
                let before = seen_clock.entry((*session, *key)).or_default();
                if !now.dominates(before) {
                    return Err(format!(
                        "session {session} went back in time on k{key}: {before:?} then {now:?}"
                    ));
                }
                *before = now;
            }
        }
    }
    Ok(())
}

#[test]
fn causal_sessions_hold_and_the_checker_can_fail() {
    for seed in 0..seeds() {
        let history =
            causal_history(seed, &|s| Box::new(CausalSession::new(s as u64 + 1))).unwrap();
        if let Err(violation) = check_causal(&history) {
            panic!("causal violated at seed {seed}: {violation}");
        }
    }
    let caught = (0..seeds())
        .filter(|&seed| {
            check_causal(
                &causal_history(seed, &|s| Box::new(ContextFree(s as u64 + 1, 0))).unwrap(),
            )
            .is_err()
        })
        .count();
    assert!(caught > 0, "the causal checker never caught a session that forgets its context");
    eprintln!("causal: a context-free session violates causality in {caught}/{} seeds", seeds());
}

// ---------------------------------------------------------------------------------------
// Transactions: read uncommitted, read committed, item-cut isolation.

#[derive(Clone, Debug)]
enum TxnEvent {
    /// A transaction of `session` starts committing (RC/ICI send their writes now).
    Committing {
        txn: (usize, u64),
        at: u64,
    },
    /// A transaction wrote `tag` (visible from `Committing`, or at once under RU).
    Wrote {
        txn: (usize, u64),
        key: u64,
        tag: Bytes,
    },
    Aborted {
        txn: (usize, u64),
    },
    /// A read inside transaction `txn`, finished at `at`.
    Read {
        txn: (usize, u64),
        key: u64,
        value: Option<Bytes>,
        at: u64,
    },
}

/// A transactional client: begin, reads, writes, then commit or abort.
trait TxnClient {
    fn begin(&mut self, now: u64);
    fn read(
        &mut self,
        s: &mut SimStore<'_, Transactional>,
        k: &Bytes,
    ) -> Result<Option<Bytes>, RequestError>;
    fn write(
        &mut self,
        s: &mut SimStore<'_, Transactional>,
        k: &Bytes,
        v: Bytes,
    ) -> Result<(), RequestError>;
    fn commit(&mut self, s: &mut SimStore<'_, Transactional>) -> Result<(), RequestError>;
    fn abort(&mut self);
}
impl TxnClient for ReadUncommittedSession {
    fn begin(&mut self, now: u64) {
        ReadUncommittedSession::begin(self, now);
    }
    fn read(
        &mut self,
        s: &mut SimStore<'_, Transactional>,
        k: &Bytes,
    ) -> Result<Option<Bytes>, RequestError> {
        ReadUncommittedSession::read(self, s, k)
    }
    fn write(
        &mut self,
        s: &mut SimStore<'_, Transactional>,
        k: &Bytes,
        v: Bytes,
    ) -> Result<(), RequestError> {
        ReadUncommittedSession::write(self, s, k, v)
    }
    fn commit(&mut self, _: &mut SimStore<'_, Transactional>) -> Result<(), RequestError> {
        ReadUncommittedSession::commit(self);
        Ok(())
    }
    fn abort(&mut self) {
        ReadUncommittedSession::commit(self);
    }
}
impl TxnClient for ReadCommittedSession {
    fn begin(&mut self, now: u64) {
        ReadCommittedSession::begin(self, now);
    }
    fn read(
        &mut self,
        s: &mut SimStore<'_, Transactional>,
        k: &Bytes,
    ) -> Result<Option<Bytes>, RequestError> {
        ReadCommittedSession::read(self, s, k)
    }
    fn write(
        &mut self,
        _: &mut SimStore<'_, Transactional>,
        k: &Bytes,
        v: Bytes,
    ) -> Result<(), RequestError> {
        ReadCommittedSession::write(self, k, v);
        Ok(())
    }
    fn commit(&mut self, s: &mut SimStore<'_, Transactional>) -> Result<(), RequestError> {
        ReadCommittedSession::commit(self, s).map(|_| ())
    }
    fn abort(&mut self) {
        ReadCommittedSession::abort(self);
    }
}
impl TxnClient for ItemCutSession {
    fn begin(&mut self, now: u64) {
        ItemCutSession::begin(self, now);
    }
    fn read(
        &mut self,
        s: &mut SimStore<'_, Transactional>,
        k: &Bytes,
    ) -> Result<Option<Bytes>, RequestError> {
        ItemCutSession::read(self, s, k)
    }
    fn write(
        &mut self,
        _: &mut SimStore<'_, Transactional>,
        k: &Bytes,
        v: Bytes,
    ) -> Result<(), RequestError> {
        ItemCutSession::write(self, k, v);
        Ok(())
    }
    fn commit(&mut self, s: &mut SimStore<'_, Transactional>) -> Result<(), RequestError> {
        ItemCutSession::commit(self, s).map(|_| ())
    }
    fn abort(&mut self) {
        ItemCutSession::abort(self);
    }
}

fn txn_history(
    seed: u64,
    make: &dyn Fn(usize) -> Box<dyn TxnClient>,
) -> Result<Vec<TxnEvent>, String> {
    let mut sim = sim::<Transactional>(seed);
    let mut rng = SimRng::new(seed ^ 0x7A7A);
    let mut sessions: Vec<Box<dyn TxnClient>> = (0..3).map(make).collect();
    let mut history = Vec::new();
    // Interleave transactions: each step advances one session's transaction by one operation.
    let mut scripts: Vec<(u64, Vec<u8>)> = vec![(0, Vec::new()); 3];
    for step in 0..150_u64 {
        let session = rng.below(3) as usize;
        let (number, script) = &mut scripts[session];
        if script.is_empty() {
            *number += 1;
            sessions[session].begin(sim.now());
            // r, w, r, r(same key), then commit (c) or abort (a)
            *script = vec![b'c', b'r', b'r', b'w', b'w', b'r'];
            if rng.below(4) == 0 {
                script[0] = b'a';
            }
        }
        let txn = (session, *number);
        let op = script.pop().expect("script has steps");
        let mut store = SimStore { sim: &mut sim, timeout_us: 2_000_000 };
        match op {
            b'r' => {
                if let Ok(value) = sessions[session].read(&mut store, &key(0)) {
                    history.push(TxnEvent::Read { txn, key: 0, value, at: sim.now() });
                }
            }
            b'w' => {
                let tag = Bytes::from(format!("s{session}-t{number}-{step}"));
                let k = rng.below(2);
                history.push(TxnEvent::Wrote { txn, key: k, tag: tag.clone() });
                let _ = sessions[session].write(&mut store, &key(k), tag);
            }
            b'c' => {
                history.push(TxnEvent::Committing { txn, at: store.sim.now() });
                let _ = sessions[session].commit(&mut store);
            }
            _ => {
                history.push(TxnEvent::Aborted { txn });
                sessions[session].abort();
            }
        }
        sim.run_for(rng.below(20_000));
    }
    converge(&mut sim, 2)?;
    Ok(history)
}

/// Read committed: a read never returns a write of a transaction that had not started to
/// commit when the read finished, or that aborted (no dirty reads).
fn check_rc(history: &[TxnEvent]) -> Result<(), String> {
    let mut writer_of: HashMap<Bytes, (usize, u64)> = HashMap::new();
    let mut committing: HashMap<(usize, u64), u64> = HashMap::new();
    let mut aborted = Vec::new();
    for event in history {
        match event {
            TxnEvent::Wrote { txn, tag, .. } => {
                writer_of.insert(tag.clone(), *txn);
            }
            TxnEvent::Committing { txn, at } => {
                committing.insert(*txn, *at);
            }
            TxnEvent::Aborted { txn } => aborted.push(*txn),
            TxnEvent::Read { .. } => {}
        }
    }
    for event in history {
        if let TxnEvent::Read { txn, value: Some(tag), at, .. } = event
            && let Some(writer) = writer_of.get(tag)
            && writer != txn
        {
            let committed_in_time = committing.get(writer).is_some_and(|c| c <= at);
            if aborted.contains(writer) || !committed_in_time {
                return Err(format!(
                    "transaction {txn:?} read {tag:?}, a dirty write of {writer:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Item-cut isolation: reads of one key inside one transaction agree (unless it wrote the key
/// in between).
fn check_ici(history: &[TxnEvent]) -> Result<(), String> {
    let mut first: HashMap<((usize, u64), u64), Option<Bytes>> = HashMap::new();
    let mut wrote: Vec<((usize, u64), u64)> = Vec::new();
    for event in history {
        match event {
            TxnEvent::Wrote { txn, key, .. } => wrote.push((*txn, *key)),
            TxnEvent::Read { txn, key, value, .. } => {
                if wrote.contains(&(*txn, *key)) {
                    continue;
                }
                let before = first.entry((*txn, *key)).or_insert_with(|| value.clone());
                if before != value {
                    return Err(format!(
                        "transaction {txn:?} read k{key} as {before:?} then {value:?}"
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[test]
fn transactional_levels_hold_and_their_checkers_can_fail() {
    for seed in 0..seeds() {
        let rc = txn_history(seed, &|s| Box::new(ReadCommittedSession::new(s as u64 + 1))).unwrap();
        check_rc(&rc).unwrap_or_else(|e| panic!("read committed violated at seed {seed}: {e}"));
        let ici = txn_history(seed, &|s| Box::new(ItemCutSession::new(s as u64 + 1))).unwrap();
        check_rc(&ici)
            .unwrap_or_else(|e| panic!("item-cut isolation (dirty read) at seed {seed}: {e}"));
        check_ici(&ici)
            .unwrap_or_else(|e| panic!("item-cut isolation violated at seed {seed}: {e}"));
    }
    // Read uncommitted is read committed without the buffer: its dirty reads must be caught;
    // read committed without the cache must break item-cut isolation.
    let mut ru_dirty = 0;
    let mut rc_cut = 0;
    for seed in 0..seeds() {
        let ru =
            txn_history(seed, &|s| Box::new(ReadUncommittedSession::new(s as u64 + 1))).unwrap();
        ru_dirty += u64::from(check_rc(&ru).is_err());
        let rc = txn_history(seed, &|s| Box::new(ReadCommittedSession::new(s as u64 + 1))).unwrap();
        rc_cut += u64::from(check_ici(&rc).is_err());
    }
    eprintln!(
        "read uncommitted has dirty reads in {ru_dirty}/{n} seeds; read committed breaks item-cut isolation in {rc_cut}/{n}",
        n = seeds()
    );
    assert!(ru_dirty > 0, "the read-committed checker never caught read uncommitted's dirty reads");
    assert!(rc_cut > 0, "the item-cut checker never caught a cache-less read-committed session");
}

// ---------------------------------------------------------------------------------------
// The line-count table in the docs.

fn count_level_lines(source: &str, level: &str, side: &str) -> usize {
    let begin = format!("// level:{level}:{side}:begin");
    let end = format!("// level:{level}:{side}:end");
    let Some(start) = source.find(&begin) else { return 0 };
    let stop = source[start..].find(&end).map_or(source.len(), |i| start + i);
    source[start..stop]
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .count()
}

#[test]
fn the_line_count_table_is_current() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/levels");
    let values = std::fs::read_to_string(root.join("values.rs")).unwrap();
    let sessions = std::fs::read_to_string(root.join("sessions.rs")).unwrap();
    let docs = std::fs::read_to_string(root.join("mod.rs")).unwrap();
    let rows = [
        ("eventual (baseline)", "eventual", "eventual"),
        ("causal", "causal", "causal"),
        ("read uncommitted", "transactional", "read-uncommitted"),
        ("read committed", "transactional", "read-committed"),
        ("item-cut isolation", "transactional", "item-cut-isolation"),
        ("monotonic reads", "none", "monotonic-reads"),
        ("monotonic writes", "none", "monotonic-writes"),
        ("read-your-writes", "none", "read-your-writes"),
        ("PRAM", "none", "pram"),
        ("writes-follow-reads", "none", "writes-follow-reads"),
    ];
    let mut table = String::from(
        "//! | level | server side (lattice + KvsValue impl) | client side (session) |\n//! |---|---|---|\n",
    );
    for (name, server, client) in rows {
        let server = count_level_lines(&values, server, "server");
        let client = count_level_lines(&sessions, client, "client");
        assert!(client > 0, "no client code found for {name}");
        table.push_str(&format!("//! | {name} | {server} | {client} |\n"));
    }
    let start = docs.find("<!-- level-table:begin -->\n").expect("table start marker")
        + "<!-- level-table:begin -->\n".len();
    let end = docs.find("//! <!-- level-table:end -->").expect("table end marker");
    assert_eq!(
        &docs[start..end],
        table,
        "levels/mod.rs's line-count table is stale; replace it with the above"
    );
    eprintln!("{table}");
}
