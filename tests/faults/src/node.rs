//! The `anna-server` processes, one per host: started, killed with `SIGKILL` and restarted
//! with the same flags, paused with `SIGSTOP`, resumed, and optionally run under libfaketime
//! with their wall clock shifted.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::net::Net;

/// The password every node requires (they listen on non-loopback addresses).
pub const PASSWORD: &str = "fault-bed";
/// The cluster secret of the test cluster.
pub const SECRET: &str = "fault-bed cluster secret";
/// Ports, the same inside every host.
pub const REDIS_PORT: u16 = 6379;
/// The native-protocol port.
pub const NATIVE_PORT: u16 = 6450;
/// The gossip port.
pub const GOSSIP_PORT: u16 = 7000;
/// Actor threads per node.
pub const THREADS: usize = 1;
/// The gossip epoch.
pub const EPOCH_MS: u64 = 50;

/// libfaketime's preload library (Debian's `faketime` package installs it under the
/// architecture's library directory).
fn faketime_lib() -> Result<PathBuf, String> {
    let mut candidates = vec![PathBuf::from("/usr/lib/faketime/libfaketime.so.1")];
    if let Ok(dirs) = std::fs::read_dir("/usr/lib") {
        for dir in dirs.flatten() {
            candidates.push(dir.path().join("faketime/libfaketime.so.1"));
        }
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| "libfaketime is not installed (apt-get install -y faketime)".to_owned())
}

/// Where `anna-server` is: `$ANNA_SERVER`, else in the running executable's target directory
/// (`cargo test --workspace` builds it there for anna-kvs's own tests; `run.sh` builds it).
///
/// # Errors
/// It is not there.
pub fn server_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("ANNA_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/<profile>/anna-faults, or target/<profile>/deps/<test>-<hash>
    let mut dir = exe.parent().unwrap_or(Path::new(".")).to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let binary = dir.join("anna-server");
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "{} is not built: run `cargo build -p anna-kvs --bin anna-server` (with --release for a release harness) or set ANNA_SERVER",
            binary.display()
        ))
    }
}

/// One node's process.
#[derive(Debug)]
pub struct Node {
    index: usize,
    namespace: String,
    args: Vec<String>,
    clock_offset_s: i64,
    log: PathBuf,
    binary: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// How many times it was started.
    pub starts: u32,
}

impl Node {
    /// The node on host `index` of `net`, peering with every other host; its stderr appends to
    /// `log`. Not started yet.
    pub fn new(
        net: &Net,
        index: usize,
        binary: &Path,
        log: PathBuf,
        clock_offset_s: i64,
        extra: &[&str],
    ) -> Self {
        let me = net.addr(index);
        let peers: Vec<String> = (0..net.hosts())
            .filter(|&j| j != index)
            .map(|j| format!("{}:{GOSSIP_PORT}/{THREADS}/{NATIVE_PORT}", net.addr(j)))
            .collect();
        let args = [
            "--bind",
            "0.0.0.0",
            "--announce-ip",
            &me.to_string(),
            "--requirepass",
            PASSWORD,
            "--port",
            &REDIS_PORT.to_string(),
            "--native-port",
            &NATIVE_PORT.to_string(),
            "--gossip-port",
            &GOSSIP_PORT.to_string(),
            "--threads",
            &THREADS.to_string(),
            "--epoch-ms",
            &EPOCH_MS.to_string(),
            "--peers",
            &peers.join(","),
            "--log-level",
            "info",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        // Each host keeps its own data directory across restarts, beside its log.
        .chain(["--dir".to_owned(), log.with_extension("data").display().to_string()])
        .chain(extra.iter().map(|s| (*s).to_owned()))
        .collect();
        Self {
            index,
            namespace: net.namespace(index).to_owned(),
            args,
            clock_offset_s,
            log,
            binary: binary.to_path_buf(),
            child: None,
            paused: false,
            starts: 0,
        }
    }

    /// Peers with `hosts` only (the others of `net` are not in its static cluster).
    pub fn peer_only_with(&mut self, net: &Net, hosts: &[usize]) {
        let peers: Vec<String> = hosts
            .iter()
            .filter(|&&j| j != self.index)
            .map(|&j| format!("{}:{GOSSIP_PORT}/{THREADS}/{NATIVE_PORT}", net.addr(j)))
            .collect();
        if let Some(at) = self.args.iter().position(|a| a == "--peers") {
            self.args[at + 1] = peers.join(",");
        }
    }

    /// Joins the running cluster through host `seed` instead of naming static peers.
    pub fn join_through(&mut self, net: &Net, seed: usize) {
        if let Some(at) = self.args.iter().position(|a| a == "--peers") {
            self.args[at] = "--join".to_owned();
            self.args[at + 1] = format!("{}:{GOSSIP_PORT}", net.addr(seed));
        }
    }

    /// Asks the node to leave the cluster for good (`anna-cli cluster leave`, run on its
    /// host), then waits for the process to exit: how long that took, or why it failed.
    ///
    /// # Errors
    /// The command failed, or the node did not exit within `limit`.
    pub fn leave(&mut self, addr: std::net::Ipv4Addr, limit: Duration) -> Result<Duration, String> {
        let cli = self.binary.with_file_name("anna-cli");
        let start = Instant::now();
        let output = std::process::Command::new("ip")
            .args(["netns", "exec", &self.namespace])
            .arg(&cli)
            .args(["-H", &format!("{addr}:{NATIVE_PORT}"), "-a", PASSWORD, "cluster", "leave"])
            .output()
            .map_err(|e| format!("run {}: {e}", cli.display()))?;
        if !output.status.success() {
            return Err(format!(
                "anna-cli cluster leave failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let Some(child) = self.child.as_mut() else { return Err("not running".into()) };
        while start.elapsed() < limit {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return Ok(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        Err(format!("node {} did not exit within {limit:?} of leaving", self.index))
    }

    /// Starts the process (again, after a kill: same flags, same host).
    ///
    /// # Errors
    /// The log or the process cannot be opened.
    pub fn start(&mut self) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let mut command = std::process::Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(&self.binary)
            .args(&self.args)
            .env("ANNA_CLUSTER_SECRET", SECRET)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if self.clock_offset_s != 0 {
            command
                .env("LD_PRELOAD", faketime_lib()?)
                .env("FAKETIME", format!("{:+}s", self.clock_offset_s))
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_NO_CACHE", "1");
        }
        // `ip netns exec` execs the program in place, so the child's pid is the server's.
        let child = command.spawn().map_err(|e| format!("start node {}: {e}", self.index))?;
        self.child = Some(child);
        self.paused = false;
        self.starts += 1;
        Ok(())
    }

    fn pid(&self) -> Option<Pid> {
        self.child.as_ref().map(|c| Pid::from_raw(c.id() as i32))
    }

    /// Its data directory (kept across restarts, beside its log).
    pub fn data_dir(&self) -> PathBuf {
        self.log.with_extension("data")
    }

    /// `kill -9`, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// `SIGTERM`, then waits for the process to exit: how long it took, or `None` if it had to
    /// be killed after `limit`.
    pub fn terminate(&mut self, limit: Duration) -> Option<Duration> {
        let pid = self.pid()?;
        let start = Instant::now();
        let _ = kill(pid, Signal::SIGTERM);
        let mut child = self.child.take()?;
        while start.elapsed() < limit {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// `SIGSTOP`.
    pub fn pause(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = kill(pid, Signal::SIGSTOP);
            self.paused = true;
        }
    }

    /// `SIGCONT`.
    pub fn resume(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = kill(pid, Signal::SIGCONT);
        }
        self.paused = false;
    }

    /// Whether a process is running (or paused).
    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the process exited by itself (a crash).
    pub fn crashed(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(format!("node {} exited: {status}", self.index)),
            _ => None,
        }
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Waits until the node answers `PING` on its Redis port.
    ///
    /// # Errors
    /// It did not within `limit`.
    pub fn wait_ready(&self, addr: std::net::Ipv4Addr, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(mut con) = crate::workload::connect(addr, Duration::from_millis(300))
                && redis::cmd("PING").query::<String>(&mut con).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "node {} did not answer within {limit:?} (log: {})",
            self.index,
            self.log.display()
        ))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.paused {
            self.resume();
        }
        self.kill();
    }
}
