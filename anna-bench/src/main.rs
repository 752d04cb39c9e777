//! `anna-bench`: runs the paper's experiments side by side with the systems users would pick
//! instead, and writes CSV, a Markdown report and SVG plots.
//!
//! ```sh
//! bash anna-bench/run.sh quick      # ~3 minutes on 2 cores once built (criterion --quick + this runner)
//! bash anna-bench/run.sh full       # every thread count, longer runs, 3 repeats (medians)
//! cargo run --release -p anna-bench -- micro --threads 1,2,4 --seconds 3   # one experiment
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anna_bench::loadgen::{self, LoadConfig};
use anna_bench::micro::{self, Engine, MicroConfig, Rep};
use anna_bench::report::{
    self, BenchRow, LoadRow, MachineInfo, MemoryRow, MicroRow, Progress, Report,
};
use anna_bench::servers::{self, Kind, ServerProcess};
use clap::{Parser, Subcommand};

/// The same allocator as `anna-server`, so the `serve-anna` child it re-executes as is the
/// server that ships (the in-process engines all share it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "anna-bench", version, about = "Anna's benchmarks against dashmap, scc and Redis")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Debug, Clone)]
struct Common {
    /// Where to write CSV, report.md and plots [default: anna-bench/results/<cores>core-<suite>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Thread counts for the in-process sweep [default: 1 and every power of two up to the cores].
    #[arg(long, value_delimiter = ',')]
    threads: Vec<usize>,
    /// Skip the experiments that need redis-server and redis-benchmark.
    #[arg(long)]
    no_redis: bool,
    /// Skip the in-process microbenchmark.
    #[arg(long)]
    no_micro: bool,
    /// A name for this machine in the report.
    #[arg(long)]
    machine: Option<String>,
    /// Zipf exponents of the in-process sweep [default: 0.5,4].
    #[arg(long, value_delimiter = ',')]
    zipf: Vec<f64>,
    /// Only these in-process engines (anna, dashmap, scc, mutex-64, bound) [default: all].
    #[arg(long, value_delimiter = ',')]
    engines: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The quick suite (about 3 minutes on 2 cores once built).
    Quick(Common),
    /// The full suite.
    Full(Common),
    /// Only the in-process microbenchmark.
    Micro {
        #[command(flatten)]
        common: Common,
        /// Seconds per run.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Run Anna's actors without anti-entropy digests (to measure what keeping them
        /// costs: run once with and once without).
        #[arg(long)]
        no_repair: bool,
    },
    /// Elasticity: throughput over time while a cluster of anna-server processes grows from
    /// one node to three and shrinks to two (needs anna-server and anna-cli built beside this
    /// runner, or ANNA_SERVER and ANNA_CLI).
    Elastic {
        /// Seconds between changes.
        #[arg(long, default_value_t = 10)]
        phase_secs: u64,
        /// Client connections.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Actors per node.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Where the CSV, SVG and Markdown go.
        #[arg(long, default_value = "anna-bench/results/elastic")]
        out: PathBuf,
        /// What to call this machine in the report.
        #[arg(long)]
        machine: Option<String>,
    },
    /// Runs anna-server's Redis front end in this process (used by the suites).
    #[command(hide = true)]
    ServeAnna {
        #[arg(long)]
        port: u16,
    },
}

/// What a suite runs.
struct Suite {
    name: &'static str,
    micro_seconds: f64,
    requests_per_thread: usize,
    repeats: usize,
    bench_requests_p16: usize,
    bench_requests_p1: usize,
    load_seconds: f64,
    redis_io_threads: Vec<usize>,
    micro: bool,
    wire: bool,
    /// Anna's actors keep anti-entropy digests.
    repair: bool,
}

fn default_threads(cores: usize) -> Vec<usize> {
    let mut t = vec![1];
    let mut n = 2;
    while n < cores {
        t.push(n);
        n *= 2;
    }
    if cores > 1 {
        t.push(cores);
    }
    t
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn run_micro(
    suite: &Suite,
    zipfs: &[f64],
    threads: &[usize],
    engines: &[Engine],
    report: &mut Report,
    progress: &Progress,
) {
    let most = threads.iter().copied().max().unwrap_or(1);
    for &zipf in zipfs {
        let stream = micro::stream(1_000_000, zipf, suite.requests_per_thread * most);
        for &t in threads {
            for &engine in engines {
                let reps: &[Rep] = if engine.uses_replication() { &Rep::ALL } else { &[Rep::Full] };
                for &rep in reps {
                    // One thread owns every key whatever the replication: measure it once.
                    if t == 1 && rep != reps[0] {
                        if let Some(first) = report.micro.last().cloned() {
                            report.micro.push(MicroRow { rep: Some(rep), ..first });
                            progress.step(&format!(
                                "micro {} zipf {zipf} rep {} threads 1: same as rep 1",
                                engine.name(),
                                rep.name()
                            ));
                        }
                        continue;
                    }
                    let config = MicroConfig {
                        engine,
                        threads: t,
                        zipf,
                        rep,
                        requests_per_thread: suite.requests_per_thread,
                        duration: Duration::from_secs_f64(suite.micro_seconds),
                        repair: suite.repair,
                        ..MicroConfig::default()
                    };
                    let runs: Vec<micro::MicroResult> =
                        (0..suite.repeats).map(|_| micro::run_on(&config, &stream)).collect();
                    let pick = median(runs.iter().map(|r| r.ops_per_s).collect());
                    let result = runs
                        .into_iter()
                        .min_by(|a, b| {
                            (a.ops_per_s - pick).abs().total_cmp(&(b.ops_per_s - pick).abs())
                        })
                        .unwrap_or_default();
                    progress.step(&format!(
                        "micro {} zipf {zipf} rep {} threads {t}: {:.1} Mops/s",
                        engine.name(),
                        if engine.uses_replication() { rep.name() } else { "-" },
                        result.ops_per_s / 1e6
                    ));
                    report.micro.push(MicroRow {
                        engine,
                        threads: t,
                        zipf,
                        rep: engine.uses_replication().then_some(rep),
                        result,
                    });
                }
            }
        }
    }
}

fn run_wire(suite: &Suite, report: &mut Report, progress: &Progress) {
    let mut kinds = vec![Kind::Anna];
    kinds.extend(suite.redis_io_threads.iter().map(|&io_threads| Kind::Redis { io_threads }));
    for kind in kinds {
        let server = match ServerProcess::start(kind) {
            Ok(server) => server,
            Err(error) => {
                progress.note(&format!("skipping {}: {error}", kind.name()));
                report.notes.push(format!("{} not measured: {error}", kind.name()));
                continue;
            }
        };
        for (value_bytes, pipeline) in [(8, 16), (8, 1), (1024, 16), (1024, 1)] {
            let requests =
                if pipeline == 1 { suite.bench_requests_p1 } else { suite.bench_requests_p16 };
            match servers::redis_benchmark(server.addr, 50, requests, value_bytes, pipeline) {
                Ok(rows) => {
                    for row in rows {
                        progress.step(&format!(
                            "redis-benchmark {} {} -d {value_bytes} -P {pipeline}: {:.0} ops/s",
                            kind.name(),
                            row.test,
                            row.rps
                        ));
                        report.bench.push(BenchRow {
                            server: kind.name(),
                            value_bytes,
                            pipeline,
                            row,
                        });
                    }
                }
                Err(error) => report.notes.push(format!("redis-benchmark failed: {error}")),
            }
        }
        if let Err(error) = loadgen::preload(server.addr, 100_000, 100) {
            report.notes.push(format!("preload of {} failed: {error}", kind.name()));
            continue;
        }
        for zipf in [0.5, 0.99, 4.0] {
            for (mix, read_share) in [("A", 0.5), ("B", 0.95), ("C", 1.0)] {
                let config = LoadConfig {
                    addr: server.addr,
                    connections: 50,
                    threads: 2,
                    pipeline: 16,
                    keys: 100_000,
                    zipf,
                    read_share,
                    value_bytes: 100,
                    duration: Duration::from_secs_f64(suite.load_seconds),
                };
                match loadgen::run(&config) {
                    Ok(result) => {
                        progress.step(&format!(
                            "load {} YCSB-{mix} zipf {zipf}: {:.0} ops/s, p99 {} µs",
                            kind.name(),
                            result.ops_per_s,
                            result.percentile_us(0.99)
                        ));
                        report.load.push(LoadRow {
                            server: kind.name(),
                            mix,
                            zipf,
                            pipeline: 16,
                            connections: 50,
                            result,
                        });
                    }
                    Err(error) => report.notes.push(format!("load run failed: {error}")),
                }
            }
        }
        drop(server);
        // Memory: a fresh server, 1M keys of 8 bytes with 100-byte values.
        if let Ok(server) = ServerProcess::start(kind) {
            let before = server.rss_bytes().unwrap_or(0);
            let keys = 1_000_000;
            match load_memory(server.addr, keys) {
                Ok(()) => {
                    let after = server.rss_bytes().unwrap_or(0);
                    progress.step(&format!(
                        "memory {}: {:.0} bytes/key",
                        kind.name(),
                        after.saturating_sub(before) as f64 / keys as f64
                    ));
                    report.memory.push(MemoryRow { server: kind.name(), keys, before, after });
                }
                Err(error) => report.notes.push(format!("memory load failed: {error}")),
            }
        }
    }
}

/// SETs `keys` 8-byte keys (`k0000000`...) with 100-byte values, pipelined.
fn load_memory(addr: std::net::SocketAddr, keys: usize) -> std::io::Result<()> {
    loadgen::set_all(addr, (0..keys).map(|k| format!("k{k:07}")), &[b'm'; 100])
}

fn serve_anna(port: u16) {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(signal, Arc::clone(&stop));
    }
    let mut config = anna_kvs::server::ServerConfig::default();
    config.redis.port = port;
    match anna_kvs::server::Server::bind(config, stop) {
        Ok(server) => server.run(),
        Err(error) => {
            eprintln!("anna-bench serve-anna: {error}");
            std::process::exit(1);
        }
    }
}

/// A binary built beside this runner, or named by `variable`.
fn sibling(name: &str, variable: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn run_elastic(
    phase_secs: u64,
    clients: usize,
    threads: usize,
    out: &std::path::Path,
    machine: Option<String>,
) {
    use anna_bench::elastic::{self, ElasticConfig};
    let config = ElasticConfig {
        server: sibling("anna-server", "ANNA_SERVER"),
        cli: sibling("anna-cli", "ANNA_CLI"),
        phase: Duration::from_secs(phase_secs.max(4)),
        clients: clients.max(1),
        threads: threads.max(1),
        ..ElasticConfig::default()
    };
    let machine = machine.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        format!("{cores} cores")
    });
    match elastic::run(&config) {
        Ok(result) => {
            for dip in result.dips() {
                eprintln!(
                    "{}: {:.0} ops/s before, lowest {:.0}, back to 90% after {}, then {:.0}",
                    dip.event,
                    dip.before,
                    dip.lowest,
                    dip.recovered_after.map_or("-".to_owned(), |s| format!("{s:.2} s")),
                    dip.after
                );
            }
            if let Err(error) = elastic::write(&result, &config, &machine, out) {
                eprintln!("cannot write the report: {error}");
                std::process::exit(1);
            }
            eprintln!("wrote {}", out.join("elastic.md").display());
        }
        Err(error) => {
            eprintln!("elasticity run failed: {error}");
            std::process::exit(1);
        }
    }
}

fn main() {
    let args = Args::parse();
    let (suite, common) = match args.command {
        Cmd::ServeAnna { port } => {
            serve_anna(port);
            return;
        }
        Cmd::Elastic { phase_secs, clients, threads, out, machine } => {
            run_elastic(phase_secs, clients, threads, &out, machine);
            return;
        }
        Cmd::Quick(common) => (
            Suite {
                name: "quick",
                micro_seconds: 1.0,
                requests_per_thread: 1 << 19,
                repeats: 1,
                bench_requests_p16: 400_000,
                bench_requests_p1: 60_000,
                load_seconds: 1.5,
                redis_io_threads: vec![1],
                micro: true,
                wire: true,
                repair: true,
            },
            common,
        ),
        Cmd::Full(common) => (
            Suite {
                name: "full",
                micro_seconds: 3.0,
                requests_per_thread: 1 << 21,
                repeats: 3,
                bench_requests_p16: 2_000_000,
                bench_requests_p1: 200_000,
                load_seconds: 5.0,
                redis_io_threads: Vec::new(),
                micro: true,
                wire: true,
                repair: true,
            },
            common,
        ),
        Cmd::Micro { common, seconds, no_repair } => (
            Suite {
                name: "micro",
                micro_seconds: seconds,
                requests_per_thread: 1 << 20,
                repeats: 1,
                bench_requests_p16: 0,
                bench_requests_p1: 0,
                load_seconds: 0.0,
                redis_io_threads: Vec::new(),
                micro: true,
                wire: false,
                repair: !no_repair,
            },
            common,
        ),
    };
    let machine = MachineInfo::detect(common.machine.clone());
    let mut suite = suite;
    if suite.name == "full" {
        suite.redis_io_threads = if machine.cores >= 8 { vec![1, 4] } else { vec![1] };
    }
    let threads = if common.threads.is_empty() {
        default_threads(machine.cores)
    } else {
        common.threads.clone()
    };
    let out = common.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!("anna-bench/results/{}core-{}", machine.cores, suite.name))
    });
    let engines: Vec<Engine> = if common.engines.is_empty() {
        Engine::ALL.to_vec()
    } else {
        let mut chosen = Vec::new();
        for name in &common.engines {
            match Engine::ALL.iter().find(|e| e.name().starts_with(name.as_str())) {
                Some(&e) => chosen.push(e),
                None => {
                    eprintln!(
                        "anna-bench: unknown engine {name:?} (anna, dashmap, scc, mutex-64, bound)"
                    );
                    std::process::exit(2);
                }
            }
        }
        chosen
    };
    let per_zipf: usize = engines.iter().map(|e| if e.uses_replication() { 3 } else { 1 }).sum();
    let zipf_count = if common.zipf.is_empty() { 2 } else { common.zipf.len() };
    let micro_runs =
        if suite.micro && !common.no_micro { threads.len() * zipf_count * per_zipf } else { 0 };
    let wire_runs = if suite.wire && !common.no_redis {
        (1 + suite.redis_io_threads.len()) * (8 + 9 + 1)
    } else {
        0
    };
    let progress = Progress::new((micro_runs + wire_runs) as u64);
    let mut report = Report::new(suite.name, machine, threads.clone());
    if suite.micro && !common.no_micro {
        let zipfs = if common.zipf.is_empty() { vec![0.5, 4.0] } else { common.zipf.clone() };
        run_micro(&suite, &zipfs, &threads, &engines, &mut report, &progress);
    }
    if suite.wire && !common.no_redis {
        run_wire(&suite, &mut report, &progress);
    }
    report.lattice = report::criterion_rows(&report::criterion_dir());
    progress.finish();
    match report.write(&out) {
        Ok(()) => println!("report written to {}", out.join("report.md").display()),
        Err(error) => {
            eprintln!("anna-bench: cannot write the report: {error}");
            std::process::exit(1);
        }
    }
}
