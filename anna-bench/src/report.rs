//! Results: CSV files, a Markdown report with ratio tables, and SVG plots.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::loadgen::LoadResult;
use crate::micro::{Engine, MicroResult, Rep};
use crate::plots;
use crate::servers::BenchmarkRow;

/// The machine the results come from.
#[derive(Clone, Debug)]
pub struct MachineInfo {
    /// A name given on the command line, if any.
    pub name: Option<String>,
    /// Cores available to this process.
    pub cores: usize,
    /// CPU model.
    pub cpu: String,
    /// Memory in GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// `redis-server --version`.
    pub redis: String,
}

impl MachineInfo {
    /// Reads what Linux reports.
    pub fn detect(name: Option<String>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or("unknown".into(), |s| s.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kb: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or("unknown".into(), |s| s.trim().to_owned());
        let redis = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .ok()
            .map_or("not installed".into(), |o| {
                String::from_utf8_lossy(&o.stdout).trim().to_owned()
            });
        Self { name, cores, cpu, memory_gib: memory_kb / 1024.0 / 1024.0, kernel, redis }
    }
}

/// A progress bar on a terminal, plain lines otherwise (CI logs).
#[derive(Debug)]
pub struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    /// A bar of `total` steps.
    pub fn new(total: u64) -> Self {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Self { bar }
    }

    /// One step done.
    pub fn step(&self, message: &str) {
        self.bar.inc(1);
        if self.bar.is_hidden() {
            eprintln!("[{}/{}] {message}", self.bar.position(), self.bar.length().unwrap_or(0));
        } else {
            self.bar.set_message(message.to_owned());
        }
    }

    /// A line that is not a step.
    pub fn note(&self, message: &str) {
        self.bar.suspend(|| eprintln!("{message}"));
    }

    /// Done.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// One in-process run.
#[derive(Clone, Debug)]
pub struct MicroRow {
    /// The engine.
    pub engine: Engine,
    /// Threads.
    pub threads: usize,
    /// Zipf exponent.
    pub zipf: f64,
    /// Replication (engines that use it).
    pub rep: Option<Rep>,
    /// The measurement.
    pub result: MicroResult,
}

/// One `redis-benchmark` row.
#[derive(Clone, Debug)]
pub struct BenchRow {
    /// Which server.
    pub server: String,
    /// `-d`.
    pub value_bytes: usize,
    /// `-P`.
    pub pipeline: usize,
    /// The row.
    pub row: BenchmarkRow,
}

/// One run of our load generator.
#[derive(Clone, Debug)]
pub struct LoadRow {
    /// Which server.
    pub server: String,
    /// YCSB mix letter.
    pub mix: &'static str,
    /// Zipf exponent.
    pub zipf: f64,
    /// Pipeline depth.
    pub pipeline: usize,
    /// Connections.
    pub connections: usize,
    /// The measurement.
    pub result: LoadResult,
}

/// Memory after loading keys.
#[derive(Clone, Debug)]
pub struct MemoryRow {
    /// Which server.
    pub server: String,
    /// Keys loaded.
    pub keys: usize,
    /// RSS before (bytes).
    pub before: u64,
    /// RSS after (bytes).
    pub after: u64,
}

impl MemoryRow {
    /// Resident bytes added per key.
    pub fn bytes_per_key(&self) -> f64 {
        self.after.saturating_sub(self.before) as f64 / self.keys.max(1) as f64
    }
}

/// One criterion comparison: ours against a peer on the same operation.
#[derive(Clone, Debug)]
pub struct LatticeRow {
    /// The criterion group.
    pub group: String,
    /// Our function and its median (ns).
    pub ours: (String, f64),
    /// The peer's function and its median (ns).
    pub peer: (String, f64),
}

/// Everything one suite measured.
#[derive(Debug)]
pub struct Report {
    /// `quick`, `full`, ...
    pub suite: String,
    /// Where.
    pub machine: MachineInfo,
    /// Thread counts swept.
    pub threads: Vec<usize>,
    /// In-process runs.
    pub micro: Vec<MicroRow>,
    /// `redis-benchmark` rows.
    pub bench: Vec<BenchRow>,
    /// Load-generator rows.
    pub load: Vec<LoadRow>,
    /// Memory rows.
    pub memory: Vec<MemoryRow>,
    /// Criterion comparisons.
    pub lattice: Vec<LatticeRow>,
    /// Things that went wrong or were skipped.
    pub notes: Vec<String>,
}

/// Where criterion leaves its results (beside this executable's profile directory).
pub fn criterion_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(|t| t.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

fn json_string(text: &str, field: &str) -> Option<String> {
    let start = text.find(&format!("\"{field}\":\""))? + field.len() + 4;
    let end = text[start..].find('"')? + start;
    Some(text[start..end].to_owned())
}

fn median_ns(text: &str) -> Option<f64> {
    let at = text.find("\"median\"")?;
    let rest = &text[at..];
    let start = rest.find("\"point_estimate\":")? + "\"point_estimate\":".len();
    let end = rest[start..].find([',', '}'])? + start;
    rest[start..end].trim().parse().ok()
}

/// Pairs each peer benchmark with our fastest function for the same kind of operation.
pub fn criterion_rows(dir: &Path) -> Vec<LatticeRow> {
    let mut rows = Vec::new();
    let Ok(groups) = std::fs::read_dir(dir) else { return rows };
    let mut groups: Vec<PathBuf> = groups.flatten().map(|e| e.path()).collect();
    groups.sort();
    for group in groups {
        let Ok(functions) = std::fs::read_dir(&group) else { continue };
        let mut measured: Vec<(String, f64)> = Vec::new();
        for function in functions.flatten() {
            let new = function.path().join("new");
            let (Ok(meta), Ok(estimates)) = (
                std::fs::read_to_string(new.join("benchmark.json")),
                std::fs::read_to_string(new.join("estimates.json")),
            ) else {
                continue;
            };
            if let (Some(name), Some(ns)) =
                (json_string(&meta, "function_id"), median_ns(&estimates))
            {
                measured.push((name, ns));
            }
        }
        let group_name =
            group.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
        let is_compare = |name: &str| name.contains("cmp") || name.contains("compare");
        let (ours, peers): (Vec<_>, Vec<_>) =
            measured.into_iter().partition(|(name, _)| name.starts_with("lattice-core"));
        for peer in peers {
            let best = ours
                .iter()
                .filter(|(name, _)| is_compare(name) == is_compare(&peer.0))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some(best) = best {
                rows.push(LatticeRow { group: group_name.clone(), ours: best.clone(), peer });
            }
        }
    }
    rows
}

fn mops(x: f64) -> String {
    format!("{:.2}", x / 1e6)
}

impl Report {
    /// An empty report.
    pub fn new(suite: &str, machine: MachineInfo, threads: Vec<usize>) -> Self {
        Self {
            suite: suite.to_owned(),
            machine,
            threads,
            micro: Vec::new(),
            bench: Vec::new(),
            load: Vec::new(),
            memory: Vec::new(),
            lattice: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The Zipf exponents the in-process runs used, ascending.
    fn micro_zipfs(&self) -> Vec<f64> {
        let mut zipfs: Vec<f64> = self.micro.iter().map(|r| r.zipf).collect();
        zipfs.sort_by(f64::total_cmp);
        zipfs.dedup();
        zipfs
    }

    fn micro_ops(&self, engine: Engine, threads: usize, zipf: f64, rep: Rep) -> Option<f64> {
        self.micro
            .iter()
            .find(|r| {
                r.engine == engine
                    && r.threads == threads
                    && r.zipf == zipf
                    && r.rep.is_none_or(|x| x == rep)
            })
            .map(|r| r.result.ops_per_s)
    }

    /// Writes every file into `dir`.
    ///
    /// # Errors
    /// The directory or a file cannot be written.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        self.write_csv(dir)?;
        let images = self.write_plots(dir)?;
        std::fs::write(dir.join("report.md"), self.markdown(&images))
    }

    fn write_csv(&self, dir: &Path) -> std::io::Result<()> {
        let mut micro = String::from(
            "engine,threads,zipf,replication,ops_per_s,raw_ops_per_s,ops_per_s_per_thread,request_share,merge_share,gossip_share\n",
        );
        for r in &self.micro {
            let _ = writeln!(
                micro,
                "{},{},{},{},{:.0},{:.0},{:.0},{:.4},{:.4},{:.4}",
                r.engine.name(),
                r.threads,
                r.zipf,
                r.rep.map_or("-", Rep::name),
                r.result.ops_per_s,
                r.result.raw_ops_per_s,
                r.result.ops_per_s / r.threads as f64,
                r.result.request_share,
                r.result.merge_share,
                r.result.gossip_share
            );
        }
        std::fs::write(dir.join("micro.csv"), micro)?;
        let mut bench = String::from("server,test,value_bytes,pipeline,rps,p50_ms,p99_ms\n");
        for b in &self.bench {
            let _ = writeln!(
                bench,
                "{},{},{},{},{:.0},{},{}",
                b.server,
                b.row.test,
                b.value_bytes,
                b.pipeline,
                b.row.rps,
                b.row.p50_ms,
                b.row.p99_ms
            );
        }
        std::fs::write(dir.join("redis-benchmark.csv"), bench)?;
        let mut load = String::from(
            "server,ycsb,zipf,pipeline,connections,ops_per_s,p50_us,p99_us,p999_us,max_us,errors\n",
        );
        for l in &self.load {
            let _ = writeln!(
                load,
                "{},{},{},{},{},{:.0},{},{},{},{},{}",
                l.server,
                l.mix,
                l.zipf,
                l.pipeline,
                l.connections,
                l.result.ops_per_s,
                l.result.percentile_us(0.5),
                l.result.percentile_us(0.99),
                l.result.percentile_us(0.999),
                l.result.latency_us.max(),
                l.result.errors
            );
        }
        std::fs::write(dir.join("loadgen.csv"), load)?;
        let mut memory = String::from("server,keys,rss_before,rss_after,bytes_per_key\n");
        for m in &self.memory {
            let _ = writeln!(
                memory,
                "{},{},{},{},{:.1}",
                m.server,
                m.keys,
                m.before,
                m.after,
                m.bytes_per_key()
            );
        }
        std::fs::write(dir.join("memory.csv"), memory)?;
        let mut lattice = String::from("group,ours,ours_ns,peer,peer_ns,speedup\n");
        for l in &self.lattice {
            let _ = writeln!(
                lattice,
                "\"{}\",\"{}\",{:.1},\"{}\",{:.1},{:.2}",
                l.group,
                l.ours.0,
                l.ours.1,
                l.peer.0,
                l.peer.1,
                l.peer.1 / l.ours.1
            );
        }
        std::fs::write(dir.join("lattice.csv"), lattice)
    }

    fn anna_vs_redis(&self) -> Vec<(String, f64)> {
        let mut ratios = Vec::new();
        for a in self.bench.iter().filter(|b| b.server == "anna") {
            if let Some(r) = self.bench.iter().find(|b| {
                b.server == "redis"
                    && b.row.test == a.row.test
                    && b.value_bytes == a.value_bytes
                    && b.pipeline == a.pipeline
            }) {
                ratios.push((
                    format!("{} -d {} -P {}", a.row.test, a.value_bytes, a.pipeline),
                    a.row.rps / r.row.rps,
                ));
            }
        }
        for a in self.load.iter().filter(|l| l.server == "anna") {
            if let Some(r) =
                self.load.iter().find(|l| l.server == "redis" && l.mix == a.mix && l.zipf == a.zipf)
            {
                ratios.push((
                    format!("YCSB-{} zipf {} -P {}", a.mix, a.zipf, a.pipeline),
                    a.result.ops_per_s / r.result.ops_per_s,
                ));
            }
        }
        ratios
    }

    fn write_plots(&self, dir: &Path) -> std::io::Result<Vec<(String, String)>> {
        let mut images = Vec::new();
        let zipfs = self.micro_zipfs();
        if !self.micro.is_empty() {
            for &zipf in &zipfs {
                for rep in Rep::ALL {
                    let series: Vec<(String, Vec<(f64, f64)>)> = Engine::ALL
                        .iter()
                        .map(|&e| {
                            let points = self
                                .threads
                                .iter()
                                .filter_map(|&t| {
                                    self.micro_ops(e, t, zipf, rep).map(|o| (t as f64, o / 1e6))
                                })
                                .collect();
                            (e.name().to_owned(), points)
                        })
                        .collect();
                    let file = format!("micro-zipf{zipf}-rep{}.svg", rep.name());
                    plots::lines(
                        &dir.join(&file),
                        &format!(
                            "update-only, Zipf {zipf}, replication {} (Anna and bound)",
                            rep.name()
                        ),
                        "threads",
                        "Mops/s",
                        &series,
                    )?;
                    images.push((format!("Zipf {zipf}, replication {}", rep.name()), file));
                }
            }
        }
        let ratios = self.anna_vs_redis();
        if !ratios.is_empty() {
            plots::bars(
                &dir.join("anna-vs-redis.svg"),
                "anna-server / redis-server throughput",
                "ratio",
                &ratios,
                Some(1.0),
            )?;
            images.push(("anna / redis".into(), "anna-vs-redis.svg".into()));
        }
        let mut workloads: Vec<(&str, f64)> = self.load.iter().map(|l| (l.mix, l.zipf)).collect();
        workloads.sort_by(|a, b| a.0.cmp(b.0).then(a.1.total_cmp(&b.1)));
        workloads.dedup();
        for (mix, zipf) in workloads {
            let series: Vec<(String, Vec<(f64, f64)>)> = self
                .load
                .iter()
                .filter(|l| l.mix == mix && l.zipf == zipf)
                .map(|l| {
                    let quantiles =
                        (0..=20).map(|i| f64::from(i) / 20.0).chain([0.99, 0.995, 0.999]);
                    let mut points: Vec<(f64, f64)> =
                        quantiles.map(|q| (l.result.percentile_us(q) as f64, q * 100.0)).collect();
                    points.sort_by(|a, b| a.1.total_cmp(&b.1));
                    (l.server.clone(), points)
                })
                .collect();
            let file = format!("latency-cdf-ycsb{mix}-zipf{zipf}.svg");
            plots::lines(
                &dir.join(&file),
                &format!("latency CDF, YCSB-{mix}, Zipf {zipf}, 50 connections, -P 16"),
                "latency (µs)",
                "percentile",
                &series,
            )?;
            images.push((format!("latency CDF YCSB-{mix} Zipf {zipf}"), file));
        }
        if !self.lattice.is_empty() {
            let speedups: Vec<(String, f64)> = self
                .lattice
                .iter()
                .map(|l| (format!("{}: vs {}", l.group, l.peer.0), l.peer.1 / l.ours.1))
                .collect();
            plots::bars(
                &dir.join("lattice-speedup.svg"),
                "lattice-core speedup over peers",
                "peer time / our time",
                &speedups,
                Some(1.0),
            )?;
            images.push(("lattice merges".into(), "lattice-speedup.svg".into()));
        }
        if !self.memory.is_empty() {
            let bytes: Vec<(String, f64)> =
                self.memory.iter().map(|m| (m.server.clone(), m.bytes_per_key())).collect();
            plots::bars(
                &dir.join("memory.svg"),
                "resident bytes per key (1M keys, 8 B keys, 100 B values)",
                "bytes/key",
                &bytes,
                None,
            )?;
            images.push(("memory".into(), "memory.svg".into()));
        }
        Ok(images)
    }

    fn markdown(&self, images: &[(String, String)]) -> String {
        let m = &self.machine;
        let mut md = String::new();
        let _ = writeln!(md, "# anna-bench `{}` suite\n", self.suite);
        let _ = writeln!(md, "<!-- ANCHOR: machine -->");
        let _ = writeln!(
            md,
            "Machine: {}{} cores, {}, {:.0} GiB, Linux {}; {}.\n",
            m.name.as_deref().map(|n| format!("{n}, ")).unwrap_or_default(),
            m.cores,
            m.cpu,
            m.memory_gib,
            m.kernel,
            m.redis
        );
        let _ = writeln!(md, "<!-- ANCHOR_END: machine -->");
        let _ = writeln!(
            md,
            "Regenerate: `bash anna-bench/run.sh {}`. Raw numbers: the CSV files beside this report.\n",
            self.suite
        );
        if !self.micro.is_empty() {
            let _ = writeln!(md, "## In process: the paper's microbenchmark (ICDE'18 Figs. 4–5)\n");
            let _ = writeln!(md, "<!-- ANCHOR: micro -->");
            let _ = writeln!(
                md,
                "1M keys, 8-byte keys, 1 KB values, update-only (LWW merges), requests pre-generated, keys loaded before timing, epoch 100 ms. Mops/s; Anna and the thread-local bound are paced by their slowest owner (see `anna-bench/src/micro.rs`).\n"
            );
            let _ = writeln!(
                md,
                "| Zipf | replication | threads | anna | dashmap | scc | mutex-64 | bound | anna / bound | anna / best shared map | anna CPU: requests / merges / gossip |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
            for &zipf in self.micro_zipfs().iter().rev() {
                for rep in Rep::ALL {
                    for &t in &self.threads {
                        let get = |e| self.micro_ops(e, t, zipf, rep);
                        let Some(anna) = get(Engine::Anna) else { continue };
                        let cell = |e| get(e).map_or("-".into(), mops);
                        let best = [Engine::DashMap, Engine::Scc, Engine::MutexMap]
                            .into_iter()
                            .filter_map(get)
                            .fold(0.0, f64::max);
                        let bound = get(Engine::ThreadLocal).unwrap_or(0.0);
                        let cpu = self
                            .micro
                            .iter()
                            .find(|r| {
                                r.engine == Engine::Anna
                                    && r.threads == t
                                    && r.zipf == zipf
                                    && r.rep == Some(rep)
                            })
                            .map(|r| {
                                format!(
                                    "{:.0}% / {:.0}% / {:.0}%",
                                    100.0 * r.result.request_share,
                                    100.0 * r.result.merge_share,
                                    100.0 * r.result.gossip_share
                                )
                            })
                            .unwrap_or_default();
                        let _ = writeln!(
                            md,
                            "| {zipf} | {} | {t} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {cpu} |",
                            rep.name(),
                            mops(anna),
                            cell(Engine::DashMap),
                            cell(Engine::Scc),
                            cell(Engine::MutexMap),
                            cell(Engine::ThreadLocal),
                            anna / bound.max(1e-9),
                            anna / best.max(1e-9),
                        );
                    }
                }
            }
            let _ = writeln!(md, "<!-- ANCHOR_END: micro -->");
            let _ = writeln!(md);
        }
        if !self.bench.is_empty() {
            let _ = writeln!(md, "## Over the wire: redis-benchmark\n");
            let _ = writeln!(md, "<!-- ANCHOR: redis-benchmark -->");
            let _ = writeln!(
                md,
                "`redis-benchmark -t set,get -c 50 -r 100000 -d D -P P`, client and server on the same machine. ops/s.\n"
            );
            let _ = writeln!(md, "| test | -d | -P | server | ops/s | p50 ms | p99 ms |");
            let _ = writeln!(md, "|---|---|---|---|---|---|---|");
            for b in &self.bench {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {:.0} | {} | {} |",
                    b.row.test,
                    b.value_bytes,
                    b.pipeline,
                    b.server,
                    b.row.rps,
                    b.row.p50_ms,
                    b.row.p99_ms
                );
            }
            let _ = writeln!(md, "<!-- ANCHOR_END: redis-benchmark -->");
            let _ = writeln!(md);
        }
        if !self.load.is_empty() {
            let _ = writeln!(md, "## Over the wire: our load generator\n");
            let _ = writeln!(md, "<!-- ANCHOR: loadgen -->");
            let _ = writeln!(
                md,
                "100k keys (preloaded), 100-byte values, 50 connections on 2 threads, pipeline 16, Zipf-distributed keys; YCSB A = 50% reads, B = 95%, C = 100%. Latency from HDR histograms (µs).\n"
            );
            let _ = writeln!(md, "| YCSB | Zipf | server | ops/s | p50 | p99 | p99.9 | errors |");
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
            for l in &self.load {
                let r = &l.result;
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.0} | {} | {} | {} | {} |",
                    l.mix,
                    l.zipf,
                    l.server,
                    r.ops_per_s,
                    r.percentile_us(0.5),
                    r.percentile_us(0.99),
                    r.percentile_us(0.999),
                    r.errors
                );
            }
            let _ = writeln!(md, "<!-- ANCHOR_END: loadgen -->");
            let _ = writeln!(md);
        }
        let ratios = self.anna_vs_redis();
        if !ratios.is_empty() {
            let _ = writeln!(md, "### anna / redis, every row\n");
            let _ = writeln!(md, "<!-- ANCHOR: ratios -->");
            let _ = writeln!(md, "| row | anna / redis |");
            let _ = writeln!(md, "|---|---|");
            for (row, ratio) in &ratios {
                let _ = writeln!(md, "| {row} | {ratio:.2} |");
            }
            let _ = writeln!(md, "<!-- ANCHOR_END: ratios -->");
            let _ = writeln!(md);
        }
        if !self.memory.is_empty() {
            let _ = writeln!(md, "## Memory\n");
            let _ = writeln!(md, "<!-- ANCHOR: memory -->");
            let _ = writeln!(
                md,
                "1M keys (8 bytes) with 100-byte values loaded with pipelined SETs into a fresh server; growth of resident memory.\n"
            );
            let _ = writeln!(md, "| server | RSS before | RSS after | bytes per key |");
            let _ = writeln!(md, "|---|---|---|---|");
            for m in &self.memory {
                let _ = writeln!(
                    md,
                    "| {} | {:.1} MiB | {:.1} MiB | {:.0} |",
                    m.server,
                    m.before as f64 / 1048576.0,
                    m.after as f64 / 1048576.0,
                    m.bytes_per_key()
                );
            }
            let _ = writeln!(md, "<!-- ANCHOR_END: memory -->");
            let _ = writeln!(md);
        }
        if !self.lattice.is_empty() {
            let _ = writeln!(md, "## Lattice merges (criterion medians)\n");
            let _ = writeln!(md, "<!-- ANCHOR: lattice -->");
            let _ = writeln!(md, "| benchmark | lattice-core | time | peer | time | speedup |");
            let _ = writeln!(md, "|---|---|---|---|---|---|");
            for l in &self.lattice {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {:.2}× |",
                    l.group,
                    l.ours.0,
                    human_ns(l.ours.1),
                    l.peer.0,
                    human_ns(l.peer.1),
                    l.peer.1 / l.ours.1
                );
            }
            let _ = writeln!(md, "<!-- ANCHOR_END: lattice -->");
            let _ = writeln!(md);
        }
        if !images.is_empty() {
            let _ = writeln!(md, "## Plots\n");
            for (title, file) in images {
                let _ = writeln!(md, "![{title}]({file})\n");
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(md, "## Notes\n");
            for note in &self.notes {
                let _ = writeln!(md, "- {note}");
            }
        }
        md
    }
}

fn human_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criterion_json_fields_are_read() {
        let meta = r#"{"group_id":"g","function_id":"crdts VClock::merge","value_str":null}"#;
        assert_eq!(json_string(meta, "function_id").as_deref(), Some("crdts VClock::merge"));
        let estimates = r#"{"mean":{"point_estimate":5.0},"median":{"confidence_interval":{"lower_bound":1.0},"point_estimate":4135.5,"standard_error":2.0}}"#;
        assert_eq!(median_ns(estimates), Some(4135.5));
    }
}
