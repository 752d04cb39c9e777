//! Helpers the end-to-end tests share: child processes that die with the test, the real
//! `redis-cli`, free ports, and polling with a deadline.

#![allow(dead_code)] // each test file uses its own share of these

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A child process (an `anna-server`, a `redis-server`) killed and reaped when dropped, so a
/// failing test leaves nothing running.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `anna-server` under test, memory only (`--dir ""`): tests run side by side, and a
/// shared `./anna-data` would be locked by the first. Tests of durability give their own.
pub fn anna_server() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_anna-server"));
    command.args(["--dir", ""]);
    command
}

/// Runs the real `redis-cli -p port args…`; its output without the trailing newline, or
/// `None` if it failed (nothing listening, say).
pub fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let output =
        Command::new("redis-cli").args(["-p", &port.to_string()]).args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim_end().to_owned())
}

/// Polls `check` until it holds (`true`) or `limit` passes (`false`).
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A free port `p` on loopback whose neighbour `p + 1` is free too (a node with two actors
/// gossips on both).
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port < 65_000 && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}
