//! Scenarios: a fault, scheduled on a seeded timeline, against a three-node cluster under the
//! workloads; then heal, wait for quiet, read every replica, and check.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::check::{self, Verdict};
use crate::cold::ColdKeys;
use crate::history::{self, Op};
use crate::net::Net;
use crate::node::{self, Node};
use crate::timeline::{self, Window};
use crate::workload::{self, Rng, Snapshot, Workload};

/// The faults the nemesis knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Nothing (the baseline).
    None,
    /// One node cut off from the other two, both ways.
    Isolate,
    /// A bridge: A sees B, B sees C, A and C do not see each other.
    Bridge,
    /// One node hears nothing from one other (one-way loss).
    OneWay,
    /// 30% of packets between nodes dropped, at random.
    Loss,
    /// One node `kill -9`ed, restarted with the same flags later.
    Kill,
    /// A random node `kill -9`ed every ~1.5 s through the window, each restarted 0.3-0.8 s
    /// later (many crash/restart cycles per run).
    Kills,
    /// One node stopped with `SIGTERM` under load and never restarted: what it acknowledged
    /// must be on the other two (a graceful stop gossips its last changes first).
    Term,
    /// One node `SIGSTOP`ped for many epochs, then continued.
    Pause,
    /// One node's clock 10 s ahead (libfaketime), the whole run.
    ClockAhead,
    /// One node's clock 10 s behind, the whole run.
    ClockBehind,
    /// One node stopped (`SIGTERM`), its data directory deleted, and started again empty
    /// while the others keep taking writes: anti-entropy must bring back every key, including
    /// cold keys nobody writes again, and reads during its catch-up must not answer nil.
    RestartEmpty,
    /// Two nodes serve from the start; the third joins the running cluster (`--join`) under
    /// load and catches up on every key, cold ones included.
    Join,
    /// One node leaves the cluster for good (`anna-cli cluster leave`) under load: what it
    /// acknowledged must be on the other two, which take it out of their rings.
    Leave,
    /// Membership churn through the window: random nodes leave for good and join again with
    /// an empty directory, are `kill -9`ed and restarted, or are cut off for a second or two,
    /// one change at a time, two nodes always up.
    Churn,
    /// One node cut off for 60 s while the others take writes, past the (small, for the test)
    /// retransmission budget, so gossip gives up the batches meant for it: anti-entropy must
    /// bring it every key after the heal, with no further writes to them.
    LongPartition,
}

/// A named fault, and why it is expected to fail today, if it is.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Its name (`anna-faults run NAME`).
    pub name: &'static str,
    /// The fault.
    pub fault: Fault,
    /// A known failure: the issue that fixes it. Printed as such in every run, never hidden.
    pub known_failure: Option<&'static str>,
    /// Flags every node gets besides the bed's own (an `appendfsync` policy).
    pub server_args: &'static [&'static str],
}

// The `kill` scenarios restart the node cut off from its peers to read what its own log
// kept: catch-up is off there (it would refuse those reads, rightly, until a replica answers,
// and then fill in from the peers what the log should have had). `restart-empty` and `kills`
// run with it.
const ALWAYS: &[&str] = &["--appendfsync", "always", "--catch-up-timeout-secs", "0"];
const NO_SYNC: &[&str] = &["--appendfsync", "no", "--catch-up-timeout-secs", "0"];
const LOG_ONLY: &[&str] = &["--catch-up-timeout-secs", "0"];

/// Every scenario.
pub const SCENARIOS: &[Scenario] = &[
    Scenario { name: "none", fault: Fault::None, known_failure: None, server_args: &[] },
    Scenario { name: "isolate", fault: Fault::Isolate, known_failure: None, server_args: &[] },
    Scenario { name: "bridge", fault: Fault::Bridge, known_failure: None, server_args: &[] },
    Scenario { name: "one-way", fault: Fault::OneWay, known_failure: None, server_args: &[] },
    Scenario { name: "loss", fault: Fault::Loss, known_failure: None, server_args: &[] },
    Scenario { name: "pause", fault: Fault::Pause, known_failure: None, server_args: &[] },
    Scenario { name: "kill", fault: Fault::Kill, known_failure: None, server_args: LOG_ONLY },
    Scenario { name: "kills", fault: Fault::Kills, known_failure: None, server_args: &[] },
    Scenario { name: "term", fault: Fault::Term, known_failure: None, server_args: &[] },
    Scenario { name: "kill-always", fault: Fault::Kill, known_failure: None, server_args: ALWAYS },
    Scenario { name: "kill-no", fault: Fault::Kill, known_failure: None, server_args: NO_SYNC },
    Scenario {
        name: "kills-always",
        fault: Fault::Kills,
        known_failure: None,
        server_args: &["--appendfsync", "always"],
    },
    Scenario {
        name: "clock-ahead",
        fault: Fault::ClockAhead,
        known_failure: None,
        server_args: &[],
    },
    Scenario {
        name: "clock-behind",
        fault: Fault::ClockBehind,
        known_failure: None,
        server_args: &[],
    },
    Scenario {
        name: "restart-empty",
        fault: Fault::RestartEmpty,
        known_failure: None,
        server_args: &[],
    },
    Scenario { name: "join", fault: Fault::Join, known_failure: None, server_args: &[] },
    Scenario { name: "leave", fault: Fault::Leave, known_failure: None, server_args: &[] },
    Scenario {
        name: "churn",
        fault: Fault::Churn,
        known_failure: None,
        server_args: &["--appendfsync", "always"],
    },
    Scenario {
        name: "long-partition",
        fault: Fault::LongPartition,
        known_failure: None,
        server_args: SMALL_RETRANSMIT,
    },
];

/// A retransmission budget a 60 s partition under the workload overflows.
const SMALL_RETRANSMIT: &[&str] = &["--max-unacked-keys-per-peer", "256"];

/// Cold keys each repair scenario writes (once; never again).
const COLD_KEYS: usize = 2000;
/// How long the long partition lasts.
const LONG_PARTITION_MS: u64 = 60_000;

/// The short suite `.ci/run` runs.
pub const SHORT: &[&str] = &[
    "isolate",
    "bridge",
    "loss",
    "pause",
    "kill",
    "kill-always",
    "kill-no",
    "term",
    "clock-ahead",
    "restart-empty",
    "long-partition",
    "join",
    "leave",
];

/// Finds a scenario by name.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// How a run is sized.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long the workloads run.
    pub duration: Duration,
    /// Pause between one worker's operations.
    pub pace: Duration,
    /// How long to wait for every replica to agree after the workloads stop.
    pub converge_limit: Duration,
    /// Where histories, logs and pictures go.
    pub out_dir: PathBuf,
    /// Keep history, logs and picture even when the run passes.
    pub keep: bool,
}

/// One run's result.
#[derive(Clone, Debug)]
pub struct Report {
    /// The scenario.
    pub scenario: &'static Scenario,
    /// Its seed.
    pub seed: u64,
    /// What the nemesis did, in words.
    pub schedule: String,
    /// Operations made.
    pub ops: usize,
    /// Writes acknowledged.
    pub acknowledged: usize,
    /// Acknowledged writes lost (all checkers; counter units included).
    pub lost: u64,
    /// Values never written.
    pub unexpected: u64,
    /// Register writes that lost to one made within the clock tolerance (skew scenarios).
    pub tolerated: u64,
    /// Whether every replica agreed in the end.
    pub converged: bool,
    /// How long after the heal they agreed.
    pub converged_after_heal_ms: Option<u64>,
    /// Each checker's verdict.
    pub verdicts: Vec<Verdict>,
    /// Other problems (a node that crashed, replicas that never agreed).
    pub problems: Vec<String>,
    /// Where the run's files are (kept when it failed).
    pub files: Option<PathBuf>,
}

impl Report {
    /// Nothing lost, nothing unexpected, converged, no crash.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.unexpected == 0 && self.converged && self.problems.is_empty()
    }

    /// Failed, and not as a listed known failure: what fails a suite.
    pub fn failed_unexpectedly(&self) -> bool {
        !self.passed() && self.scenario.known_failure.is_none()
    }

    /// One line for a table: scenario, seed, ops, acked, lost, unexpected, converged, time.
    pub fn row(&self) -> String {
        let verdict = match (self.passed(), self.scenario.known_failure) {
            (true, _) => "pass",
            (false, Some(_)) => "known failure",
            (false, None) => "FAIL",
        };
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.scenario.name,
            self.seed,
            self.ops,
            self.acknowledged,
            self.lost,
            self.unexpected,
            if self.converged { "yes" } else { "no" },
            self.converged_after_heal_ms
                .map_or("-".to_owned(), |ms| format!("{:.1} s", ms as f64 / 1000.0)),
            verdict
        )
    }

    /// The table's header.
    pub fn header() -> &'static str {
        "| scenario | seed | ops | acked | lost | unexpected | converged | after heal | verdict |\n|---|---|---|---|---|---|---|---|---|"
    }
}

fn sleep_until(began: Instant, ms: u64) {
    let target = began + Duration::from_millis(ms);
    if let Some(left) = target.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

/// The nemesis's plan for one run: the victim, and when the fault starts and heals.
struct Plan {
    victim: usize,
    other: usize,
    from_ms: u64,
    to_ms: u64,
}

fn plan(rng: &mut Rng, hosts: usize, duration_ms: u64) -> Plan {
    let victim = rng.below(hosts as u64) as usize;
    let other = (victim + 1 + rng.below(hosts as u64 - 1) as usize) % hosts;
    let from_ms = 1500 + rng.below(duration_ms / 6);
    let length = duration_ms * 3 / 10 + rng.below(duration_ms / 5);
    let to_ms = (from_ms + length).min(duration_ms.saturating_sub(2000));
    Plan { victim, other, from_ms, to_ms }
}

/// The real-time uncertainty the register checker allows: with a skewed clock, a write may
/// lose to one made shortly before it on another node, until gossip has carried that stamp
/// over (the hybrid logical clocks then order later writes after it). Four epochs bound that
/// (the long suite's losses came 6-30 ms after the write they lost to); a whole skew (10 s)
/// would let the pre-HLC behaviour pass, and 0 would fail last-writer-wins for doing what it
/// promises.
fn tolerance_ms(fault: Fault) -> u64 {
    if clock_offset(fault) == 0 { 0 } else { 4 * crate::node::EPOCH_MS }
}

fn clock_offset(fault: Fault) -> i64 {
    match fault {
        Fault::ClockAhead => 10,
        Fault::ClockBehind => -10,
        _ => 0,
    }
}

/// Runs one scenario with one seed. Errors are failures of the bed itself (no root, no
/// iptables), not of the cluster.
///
/// # Errors
/// The hosts or nodes could not be set up.
pub fn run(scenario: &'static Scenario, seed: u64, settings: &Settings) -> Result<Report, String> {
    let hosts = 3;
    let mut duration_ms = settings.duration.as_millis() as u64;
    if scenario.fault == Fault::LongPartition {
        duration_ms = duration_ms.max(LONG_PARTITION_MS + 8_000);
    }
    let mut rng =
        Rng::new(seed ^ scenario.name.bytes().fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b)));
    let mut plan = plan(&mut rng, hosts, duration_ms);
    if matches!(scenario.fault, Fault::Kills | Fault::Churn) {
        // Crash and restart all through the run.
        (plan.from_ms, plan.to_ms) = (1500, duration_ms.saturating_sub(2000));
    }
    if scenario.fault == Fault::LongPartition {
        (plan.from_ms, plan.to_ms) = (3000, 3000 + LONG_PARTITION_MS);
    }
    let repairs =
        matches!(scenario.fault, Fault::RestartEmpty | Fault::LongPartition | Fault::Join);
    let dir = settings.out_dir.join(format!("{}-{seed}", scenario.name));
    // A fresh start: an earlier failed run of the same scenario and seed left its nodes' data
    // directories here, and nodes would recover them.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let net = Net::create(hosts)?;
    let binary = node::server_binary()?;
    let mut nodes: Vec<Node> = (0..hosts)
        .map(|i| {
            let offset = if i == plan.victim { clock_offset(scenario.fault) } else { 0 };
            let log = dir.join(format!("node-{i}.log"));
            Node::new(&net, i, &binary, log, offset, scenario.server_args)
        })
        .collect();
    // A joining node is not in the others' static cluster, and starts at the fault.
    let joiner = (scenario.fault == Fault::Join).then_some(plan.victim);
    if let Some(v) = joiner {
        let statics: Vec<usize> = (0..hosts).filter(|&i| i != v).collect();
        for &i in &statics {
            nodes[i].peer_only_with(&net, &statics);
        }
        nodes[v].join_through(&net, plan.other);
    }
    for (i, node) in nodes.iter_mut().enumerate() {
        if joiner != Some(i) {
            node.start()?;
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        if joiner != Some(i) {
            node.wait_ready(net.addr(i), Duration::from_secs(15))?;
        }
    }
    let addrs: Vec<_> = (0..hosts).map(|i| net.addr(i)).collect();
    let began = Instant::now();
    let workload = Workload::start(&addrs, seed, began, settings.pace);
    let (v, o) = (plan.victim, plan.other);
    let mut before_kill = None;
    let mut restart_problems = Vec::new();
    let rest: Vec<usize> = (0..hosts).filter(|&i| i != v).collect();
    // Cold keys, written once before the fault through a node other than the victim, and
    // given a moment to reach every replica.
    let mut cold = ColdKeys::default();
    if repairs {
        sleep_until(began, 500);
        cold.write(net.addr(o), &format!("cold-{seed}"), COLD_KEYS)?;
    }
    let (schedule, windows, heal_ms) = match scenario.fault {
        Fault::None => ("no fault".to_owned(), Vec::new(), duration_ms),
        Fault::ClockAhead | Fault::ClockBehind => {
            let text =
                format!("node {v}'s clock {:+} s for the whole run", clock_offset(scenario.fault));
            let window = Window { from_ms: 0, to_ms: duration_ms, label: text.clone() };
            (text, vec![window], duration_ms)
        }
        fault => {
            sleep_until(began, plan.from_ms);
            let what = match fault {
                Fault::Isolate => {
                    net.partition(&[vec![v], rest.clone()])?;
                    format!("node {v} isolated")
                }
                Fault::Bridge => {
                    let far = rest.iter().copied().find(|&i| i != o).unwrap_or(o);
                    net.partition(&[vec![v], vec![far]])?;
                    format!("bridge: node {v} and node {far} cut, node {o} sees both")
                }
                Fault::OneWay => {
                    net.cut(o, v)?;
                    format!("node {v} hears nothing from node {o}")
                }
                Fault::Loss => {
                    net.lose(0.3)?;
                    "30% packet loss between nodes".to_owned()
                }
                Fault::Kill => {
                    before_kill = workload::snapshot(net.addr(v)).ok();
                    nodes[v].kill();
                    format!(
                        "node {v} killed (-9), restarted with the same flags, isolated at first"
                    )
                }
                Fault::Kills => {
                    let mut cycles = 0;
                    let mut at = plan.from_ms;
                    while at + 1000 < plan.to_ms {
                        let victim = rng.below(hosts as u64) as usize;
                        sleep_until(began, at);
                        nodes[victim].kill();
                        sleep_until(began, at + 300 + rng.below(500));
                        nodes[victim].start()?;
                        cycles += 1;
                        at += 1200 + rng.below(600);
                    }
                    format!("{cycles} kill -9/restart cycles of random nodes")
                }
                Fault::Pause => {
                    nodes[v].pause();
                    format!("node {v} paused (SIGSTOP)")
                }
                Fault::RestartEmpty => {
                    if nodes[v].terminate(Duration::from_secs(15)).is_none() {
                        restart_problems
                            .push(format!("node {v} did not exit within 15 s of SIGTERM"));
                    }
                    let data = nodes[v].data_dir();
                    std::fs::remove_dir_all(&data)
                        .map_err(|e| format!("{}: {e}", data.display()))?;
                    // Written while it is down: its peers' batches to it are numbered for its
                    // old life, and only repair brings these to it.
                    cold.write(net.addr(o), &format!("cold-down-{seed}"), COLD_KEYS / 4)?;
                    format!(
                        "node {v} stopped (SIGTERM), its data directory deleted, started again empty"
                    )
                }
                Fault::LongPartition => {
                    net.partition(&[vec![v], rest.clone()])?;
                    // Cold keys the cut-off node misses, past its peers' retransmission budget.
                    sleep_until(began, plan.from_ms + 5_000);
                    cold.write(net.addr(o), &format!("cold-cut-{seed}"), COLD_KEYS)?;
                    format!("node {v} isolated for {} s", LONG_PARTITION_MS / 1000)
                }
                Fault::Churn => {
                    let mut done = Vec::new();
                    let mut at = plan.from_ms;
                    while at + 2500 < plan.to_ms {
                        sleep_until(began, at);
                        let victim = rng.below(hosts as u64) as usize;
                        let peer = (victim + 1 + rng.below(hosts as u64 - 1) as usize) % hosts;
                        match rng.below(3) {
                            0 => {
                                // Leave for good, then join again as a new, empty member.
                                if let Err(error) =
                                    nodes[victim].leave(net.addr(victim), Duration::from_secs(15))
                                {
                                    restart_problems.push(error);
                                    nodes[victim].kill();
                                }
                                sleep_until(began, at + 300 + rng.below(500));
                                let data = nodes[victim].data_dir();
                                std::fs::remove_dir_all(&data)
                                    .map_err(|e| format!("{}: {e}", data.display()))?;
                                nodes[victim].join_through(&net, peer);
                                nodes[victim].start()?;
                                nodes[victim]
                                    .wait_ready(net.addr(victim), Duration::from_secs(15))?;
                                done.push(format!("{victim} left and joined again"));
                            }
                            1 => {
                                nodes[victim].kill();
                                sleep_until(began, at + 300 + rng.below(500));
                                nodes[victim].start()?;
                                nodes[victim]
                                    .wait_ready(net.addr(victim), Duration::from_secs(15))?;
                                done.push(format!("{victim} killed and restarted"));
                            }
                            _ => {
                                let rest: Vec<usize> =
                                    (0..hosts).filter(|&i| i != victim).collect();
                                net.partition(&[vec![victim], rest])?;
                                sleep_until(began, at + 1000 + rng.below(1000));
                                net.heal()?;
                                done.push(format!("{victim} cut off"));
                            }
                        }
                        at = (began.elapsed().as_millis() as u64) + 1000 + rng.below(1000);
                    }
                    format!("{} changes: {}", done.len(), done.join(", "))
                }
                Fault::Join => {
                    nodes[v].start()?;
                    nodes[v].wait_ready(net.addr(v), Duration::from_secs(15))?;
                    format!("node {v} joined the running cluster through node {o}")
                }
                Fault::Leave => match nodes[v].leave(net.addr(v), Duration::from_secs(15)) {
                    Ok(took) => format!(
                        "node {v} left the cluster for good (exited after {} ms)",
                        took.as_millis()
                    ),
                    Err(error) => {
                        restart_problems.push(error);
                        format!("node {v} asked to leave, failed")
                    }
                },
                Fault::Term => {
                    let took = nodes[v].terminate(Duration::from_secs(15));
                    match took {
                        Some(took) => format!(
                            "node {v} stopped by SIGTERM (exited after {} ms), never restarted",
                            took.as_millis()
                        ),
                        None => {
                            restart_problems
                                .push(format!("node {v} did not exit within 15 s of SIGTERM"));
                            format!("node {v} sent SIGTERM, killed after 15 s")
                        }
                    }
                }
                _ => unreachable!(),
            };
            sleep_until(began, plan.to_ms);
            if fault == Fault::Kill {
                // Restarted cut off from its peers: what it serves then is its own log's.
                net.partition(&[vec![v], rest.clone()])?;
                nodes[v].start()?;
                nodes[v].wait_ready(net.addr(v), Duration::from_secs(15))?;
                match (&before_kill, workload::snapshot(net.addr(v))) {
                    (Some(before), Ok(after)) => {
                        restart_problems.extend(check::kept_through_restart(before, &after))
                    }
                    (None, _) => restart_problems
                        .push(format!("node {v} could not be read before it was killed")),
                    (_, Err(error)) => restart_problems
                        .push(format!("node {v} could not be read after its restart: {error}")),
                }
            }
            if fault == Fault::RestartEmpty {
                nodes[v].start()?;
                nodes[v].wait_ready(net.addr(v), Duration::from_secs(15))?;
                // At once, while it catches up: it must forward reads or refuse them with a
                // retryable error (TRYAGAIN, before it has heard from a replica), never answer
                // nil for a key that exists.
                let asked = Instant::now();
                let answer = loop {
                    match cold.missing_at(net.addr(v)) {
                        Err(error)
                            if asked.elapsed() < Duration::from_secs(10)
                                && error.to_ascii_uppercase().contains("TRYAGAIN") =>
                        {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        other => break other,
                    }
                };
                match answer {
                    Ok(0) => {}
                    Ok(n) => restart_problems.push(format!(
                        "node {v}, just restarted empty, answered {n} of {} cold keys wrongly (nil while catching up)",
                        cold.written.len()
                    )),
                    Err(error) => restart_problems
                        .push(format!("node {v} could not be read right after its restart: {error}")),
                }
            }
            net.heal()?;
            if fault == Fault::Pause {
                nodes[v].resume();
            }
            let label = format!(
                "{what}, {:.1}-{:.1} s",
                plan.from_ms as f64 / 1e3,
                plan.to_ms as f64 / 1e3
            );
            let window = Window { from_ms: plan.from_ms, to_ms: plan.to_ms, label: label.clone() };
            (label, vec![window], plan.to_ms)
        }
    };
    sleep_until(began, duration_ms);
    let ops = workload.finish();
    // Quiet: read every replica until they agree (a node stopped for good is not read).
    let mut problems = restart_problems;
    let readable: Vec<_> = (0..hosts)
        .filter(|&i| !(matches!(scenario.fault, Fault::Term | Fault::Leave) && i == v))
        .map(|i| addrs[i])
        .collect();
    let mut converged_at = None;
    let mut last: Vec<Result<Snapshot, String>> = Vec::new();
    let deadline = Instant::now() + settings.converge_limit;
    let verbose = std::env::var_os("ANNA_FAULTS_VERBOSE").is_some();
    let mut said = Instant::now();
    while Instant::now() < deadline {
        last = readable.iter().map(|&a| workload::snapshot(a)).collect();
        if verbose && said.elapsed() > Duration::from_secs(2) {
            said = Instant::now();
            eprintln!("[{} ms] {}", began.elapsed().as_millis(), describe_divergence(&last));
        }
        let first = last[0].as_ref().ok();
        if first.is_some() && last.iter().all(|s| s.as_ref().ok() == first) {
            converged_at = Some(began.elapsed().as_millis() as u64);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for node in &mut nodes {
        if let Some(crash) = node.crashed() {
            problems.push(crash);
        }
    }
    if converged_at.is_none() {
        problems.push(describe_divergence(&last));
    }
    // The cold keys, on every node (no write touches them after the fault).
    let mut cold_lost = 0;
    if repairs {
        match cold.wait_everywhere(&readable, settings.converge_limit) {
            Ok(_) => {
                if converged_at.is_some() {
                    converged_at = Some(began.elapsed().as_millis() as u64);
                }
            }
            Err((missing, keys)) => {
                cold_lost = keys as u64;
                converged_at = None;
                problems.extend(missing);
            }
        }
    }
    // Converged: every replica is the same. Otherwise each replica is checked and the worst
    // reported (a replica that misses acknowledged writes is what a client reading it sees).
    let verdicts = last
        .iter()
        .filter_map(|s| s.as_ref().ok())
        .map(|snapshot| check::all(&ops, snapshot, tolerance_ms(scenario.fault)))
        .max_by_key(|verdicts| verdicts.iter().map(|v| v.lost + v.unexpected).sum::<u64>())
        .unwrap_or_else(|| check::all(&ops, &Snapshot::new(), tolerance_ms(scenario.fault)));
    let report = Report {
        scenario,
        seed,
        schedule,
        ops: ops.len(),
        acknowledged: verdicts.iter().map(|v| v.acknowledged).sum(),
        lost: verdicts.iter().map(|v| v.lost).sum::<u64>() + cold_lost,
        unexpected: verdicts.iter().map(|v| v.unexpected).sum(),
        tolerated: verdicts.iter().map(|v| v.tolerated).sum(),
        converged: converged_at.is_some(),
        converged_after_heal_ms: converged_at.map(|at| at.saturating_sub(heal_ms)),
        verdicts,
        problems,
        files: Some(dir.clone()),
    };
    drop(nodes);
    drop(net);
    save(&report, &ops, &windows, &dir, duration_ms, settings.keep)
}

fn describe_divergence(last: &[Result<Snapshot, String>]) -> String {
    let mut text = String::from("replicas never agreed:");
    let Some(Ok(first)) = last.first() else {
        return format!("{text} node 0 did not answer");
    };
    for (i, other) in last.iter().enumerate().skip(1) {
        match other {
            Err(error) => text.push_str(&format!(" node {i} did not answer ({error});")),
            Ok(other) => {
                for (key, value) in first {
                    if other.get(key) != Some(value) {
                        let shown = |v: Option<&Option<String>>| {
                            let v = format!("{v:?}");
                            if v.len() > 60 { format!("{}…", &v[..60]) } else { v }
                        };
                        text.push_str(&format!(
                            " {key}: node 0 {} vs node {i} {};",
                            shown(Some(value)),
                            shown(other.get(key))
                        ));
                    }
                }
            }
        }
    }
    text
}

fn save(
    report: &Report,
    ops: &[Op],
    windows: &[Window],
    dir: &Path,
    duration_ms: u64,
    keep: bool,
) -> Result<Report, String> {
    let mut report = report.clone();
    if report.passed() && !keep {
        let _ = std::fs::remove_dir_all(dir);
        report.files = None;
        return Ok(report);
    }
    history::save(&dir.join("history.jsonl"), ops).map_err(|e| e.to_string())?;
    let title = format!("{} (seed {}): {}", report.scenario.name, report.seed, report.schedule);
    let picture = timeline::svg(&title, ops, 3, duration_ms, windows);
    std::fs::write(dir.join("timeline.svg"), picture).map_err(|e| e.to_string())?;
    let mut text = format!("{}\n{}\n\n", Report::header(), report.row());
    for verdict in &report.verdicts {
        text.push_str(&format!(
            "{}: {} acknowledged, {} lost, {} unexpected\n",
            verdict.name, verdict.acknowledged, verdict.lost, verdict.unexpected
        ));
        for note in &verdict.notes {
            text.push_str(&format!("  - {note}\n"));
        }
    }
    for problem in &report.problems {
        text.push_str(&format!("problem: {problem}\n"));
    }
    std::fs::write(dir.join("report.md"), text).map_err(|e| e.to_string())?;
    Ok(report)
}

/// Prints a report the way every suite does: verdict first, known failures named as such.
pub fn print(report: &Report) {
    let status = match (report.passed(), report.scenario.known_failure) {
        (true, Some(_)) => "PASS (listed as a known failure: it passes now)",
        (true, None) => "PASS",
        (false, Some(_)) => "KNOWN FAILURE",
        (false, None) => "FAIL",
    };
    println!(
        "{status}: {} seed {} — {}; {} ops, {} acknowledged, {} lost, {} unexpected, converged: {}",
        report.scenario.name,
        report.seed,
        report.schedule,
        report.ops,
        report.acknowledged,
        report.lost,
        report.unexpected,
        report
            .converged_after_heal_ms
            .map_or("no".to_owned(), |ms| format!("{:.1} s after the heal", ms as f64 / 1e3)),
    );
    if let Some(why) = report.scenario.known_failure
        && !report.passed()
    {
        println!("    known failure until {why}");
    }
    if report.tolerated > 0 {
        println!(
            "    {} register write(s) lost to one made less than {} ms earlier under the skewed clock (last-writer-wins; tolerated)",
            report.tolerated,
            tolerance_ms(report.scenario.fault)
        );
    }
    for verdict in report.verdicts.iter().filter(|v| !v.ok()) {
        for note in &verdict.notes {
            println!("    {}: {note}", verdict.name);
        }
    }
    for problem in &report.problems {
        println!("    {problem}");
    }
    if let Some(files) = &report.files {
        println!("    history, logs, timeline: {}", files.display());
    }
}
