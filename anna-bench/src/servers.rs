//! The servers under test, as child processes: Debian's `redis-server` (no persistence) and
//! anna-server (the same `anna_kvs::server::Server` the `anna-server` binary runs, started by
//! re-executing this runner with `serve-anna`, so the benchmark needs no second binary).

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// anna-server, default configuration (all cores, eventual consistency).
    Anna,
    /// redis-server with this many I/O threads.
    Redis {
        /// `--io-threads`.
        io_threads: usize,
    },
}

impl Kind {
    /// Its name in reports.
    pub fn name(self) -> String {
        match self {
            Self::Anna => "anna".into(),
            Self::Redis { io_threads: 1 } => "redis".into(),
            Self::Redis { io_threads } => format!("redis --io-threads {io_threads}"),
        }
    }
}

/// A running server; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    /// Which server.
    pub kind: Kind,
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_or(0, |a| a.port())
}

impl ServerProcess {
    /// Starts `kind` on a free port and waits until it answers `PING`.
    ///
    /// # Errors
    /// The binary is missing or the server never answered.
    pub fn start(kind: Kind) -> std::io::Result<Self> {
        let port = free_port();
        let mut command = match kind {
            Kind::Anna => {
                let mut c = Command::new(std::env::current_exe()?);
                c.args(["serve-anna", "--port", &port.to_string()]);
                c
            }
            Kind::Redis { io_threads } => {
                let mut c = Command::new("redis-server");
                c.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""]);
                c.args(["--appendonly", "no", "--protected-mode", "yes"]);
                c.args(["--io-threads", &io_threads.to_string()]);
                c
            }
        };
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot start {}: {e}", kind.name()))
        })?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let server = Self { kind, addr, child };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if ping(addr) {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{} did not answer PING", kind.name()),
        ))
    }

    /// Resident memory in bytes (`VmRSS`).
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0_u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && std::io::Read::read_exact(&mut stream, &mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// One `redis-benchmark` result row.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchmarkRow {
    /// `SET` or `GET`.
    pub test: String,
    /// Requests per second.
    pub rps: f64,
    /// Median latency (ms).
    pub p50_ms: f64,
    /// 99th percentile latency (ms).
    pub p99_ms: f64,
}

/// Runs `redis-benchmark -t set,get -c clients -r keyspace -d bytes -P pipeline -n requests
/// --csv` against `addr`.
///
/// # Errors
/// `redis-benchmark` is missing or failed.
pub fn redis_benchmark(
    addr: SocketAddr,
    clients: usize,
    requests: usize,
    value_bytes: usize,
    pipeline: usize,
) -> std::io::Result<Vec<BenchmarkRow>> {
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string(), "-t", "set,get"])
        .args(["-c", &clients.to_string(), "-n", &requests.to_string(), "-r", "100000"])
        .args(["-d", &value_bytes.to_string(), "-P", &pipeline.to_string(), "--csv"])
        .stderr(Stdio::null())
        .output()?;
    if !output.status.success() {
        return Err(std::io::Error::other("redis-benchmark failed"));
    }
    Ok(parse_csv(&String::from_utf8_lossy(&output.stdout)))
}

/// Parses `redis-benchmark --csv` output.
pub fn parse_csv(text: &str) -> Vec<BenchmarkRow> {
    let mut header: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for line in text.lines() {
        let cells: Vec<String> = line.split(',').map(|c| c.trim_matches('"').to_owned()).collect();
        if cells.first().is_some_and(|c| c == "test") {
            header = cells;
            continue;
        }
        let column = |name: &str, fallback: usize| {
            let index = header.iter().position(|h| h == name).unwrap_or(fallback);
            cells.get(index).and_then(|c| c.parse::<f64>().ok()).unwrap_or(f64::NAN)
        };
        if cells.len() >= 2 {
            rows.push(BenchmarkRow {
                test: cells[0].clone(),
                rps: column("rps", 1),
                p50_ms: column("p50_latency_ms", 4),
                p99_ms: column("p99_latency_ms", 6),
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_benchmark_csv_parses() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"SET\",\"86956.52\",\"0.310\",\"0.080\",\"0.287\",\"0.495\",\"0.671\",\"2.031\"\n\"GET\",\"90909.09\",\"0.290\",\"0.080\",\"0.279\",\"0.447\",\"0.615\",\"1.071\"\n";
        let rows = parse_csv(text);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].test, "SET");
        assert!((rows[0].rps - 86956.52).abs() < 1e-6);
        assert!((rows[1].p99_ms - 0.615).abs() < 1e-9);
    }
}
