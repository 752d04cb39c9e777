//! `anna-faults`: runs fault scenarios against a three-node cluster in network namespaces.
//!
//!     anna-faults short                      # the suite CI runs
//!     anna-faults long --seeds 6             # every scenario, several seeds
//!     anna-faults run isolate --seed 7 --keep

use std::path::PathBuf;
use std::time::Duration;

use anna_faults::scenario::{self, Report, SCENARIOS, SHORT, Settings};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "anna-faults", about = "Anna's fault test bed (needs root)")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
    /// Seconds the workloads run in each scenario.
    #[arg(long, global = true, default_value_t = 14)]
    seconds: u64,
    /// Where runs write their histories, logs and pictures.
    #[arg(long, global = true, default_value = "target/faults")]
    out: PathBuf,
    /// Keep every run's files, passing or not.
    #[arg(long, global = true)]
    keep: bool,
    /// Also write the results table (markdown) here.
    #[arg(long, global = true)]
    table: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The short suite (CI): one seed of each of its scenarios.
    Short {
        /// The seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Every scenario with seeds 1..=N.
    Long {
        /// How many seeds per scenario.
        #[arg(long, default_value_t = 6)]
        seeds: u64,
    },
    /// One scenario.
    Run {
        /// Its name.
        name: String,
        /// The seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Lists the scenarios.
    List,
}

fn main() {
    let args = Args::parse();
    let settings = Settings {
        duration: Duration::from_secs(args.seconds),
        pace: Duration::from_millis(10),
        converge_limit: Duration::from_secs(30),
        out_dir: args.out.clone(),
        keep: args.keep,
    };
    let runs: Vec<(&'static scenario::Scenario, u64)> = match &args.command {
        Cmd::List => {
            for s in SCENARIOS {
                let known =
                    s.known_failure.map_or(String::new(), |k| format!(" (known failure: {k})"));
                println!("{:14} {:?}{known}", s.name, s.fault);
            }
            return;
        }
        Cmd::Short { seed } => {
            SHORT.iter().filter_map(|n| scenario::find(n)).map(|s| (s, *seed)).collect()
        }
        Cmd::Long { seeds } => {
            (1..=*seeds).flat_map(|seed| SCENARIOS.iter().map(move |s| (s, seed))).collect()
        }
        Cmd::Run { name, seed } => match scenario::find(name) {
            Some(s) => vec![(s, *seed)],
            None => {
                eprintln!("no scenario {name:?}; `anna-faults list` shows them");
                std::process::exit(2);
            }
        },
    };
    let mut reports: Vec<Report> = Vec::new();
    for (s, seed) in runs {
        match scenario::run(s, seed, &settings) {
            Ok(report) => {
                scenario::print(&report);
                reports.push(report);
            }
            Err(error) => {
                eprintln!("the test bed failed in {} seed {seed}: {error}", s.name);
                std::process::exit(2);
            }
        }
    }
    let mut table = format!("{}\n", Report::header());
    for report in &reports {
        table.push_str(&report.row());
        table.push('\n');
    }
    println!("\n{table}");
    if let Some(path) = &args.table
        && let Err(error) = std::fs::write(path, &table)
    {
        eprintln!("{}: {error}", path.display());
    }
    let unexpected = reports.iter().filter(|r| r.failed_unexpectedly()).count();
    if unexpected > 0 {
        eprintln!("{unexpected} run(s) failed that are not known failures");
        std::process::exit(1);
    }
}
