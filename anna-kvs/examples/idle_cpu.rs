//! Measures the CPU an idle node uses: starts a node on every core with the default 100 ms
//! epoch, leaves it alone, and reports process CPU time over wall time (from /proc).
//!
//! ```sh
//! cargo run --release -p anna-kvs --example idle_cpu -- [seconds]
//! ```

use std::time::{Duration, Instant};

use anna_kvs::{Eventual, Node, NodeConfig};

/// User + system CPU time of this process, in clock ticks (Linux /proc/self/stat fields 14, 15).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // The command name (field 2) may hold spaces; fields are counted after its closing ')'.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn main() {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let node: Node<Eventual> = Node::start(NodeConfig::default()).expect("start node");
    let actors = node.reports().len();
    std::thread::sleep(Duration::from_millis(500));
    let (ticks_before, wall) = (cpu_ticks(), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let ticks = cpu_ticks() - ticks_before;
    let elapsed = wall.elapsed().as_secs_f64();
    // Linux reports these in USER_HZ, 100 per second on every mainstream configuration.
    let cpu_seconds = ticks as f64 / 100.0;
    println!(
        "idle node with {actors} actors: {:.3}% of one core over {elapsed:.1} s ({cpu_seconds:.2} s CPU)",
        100.0 * cpu_seconds / elapsed
    );
    node.shutdown();
}
