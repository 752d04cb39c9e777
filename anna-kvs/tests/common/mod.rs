//! Helpers the end-to-end tests share: child processes that die with the test, the real
//! `redis-cli`, free ports, and polling with a deadline.

#![allow(dead_code)] // each test file uses its own share of these

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
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

/// One command in RESP, as a client sends it.
pub fn resp(args: &[&str]) -> String {
    let mut out = format!("*{}\r\n", args.len());
    for arg in args {
        out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    out
}

/// The two servers' replies to one script agree line for line (anna left, redis right).
pub fn assert_same_replies(ours: &str, theirs: &str) {
    for (n, (a, b)) in ours.lines().zip(theirs.lines()).enumerate() {
        assert_eq!(
            a, b,
            "reply line {n} differs (anna left, redis right)\nanna:\n{ours}\nredis:\n{theirs}"
        );
    }
    assert_eq!(ours.lines().count(), theirs.lines().count(), "anna:\n{ours}\nredis:\n{theirs}");
}

/// Sends raw bytes on a fresh connection and returns what the server answers before closing.
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    stream.write_all(bytes).unwrap();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// A real `redis-server` (Debian's, installed by `.ci/run`) on a free port, without
/// persistence; killed on drop.
pub struct RealRedis(pub std::process::Child, pub u16);

impl RealRedis {
    /// Starts one.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        let server = Self(child, port);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        for _ in 0..100 {
            if TcpStream::connect(addr).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on {port}");
    }
}

impl Drop for RealRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An in-process server (Redis port on a free port, native port off) with `threads` unpinned
/// actors and 20 ms epochs, for the Redis-port tests.
pub fn redis_port_server(threads: usize) -> anna_kvs::server::RunningServer {
    let config = anna_kvs::server::ServerConfig {
        redis: anna_kvs::redis::RedisConfig { port: 0, ..anna_kvs::redis::RedisConfig::default() },
        node: anna_kvs::node::NodeConfig {
            threads,
            pin_threads: false,
            epoch: Duration::from_millis(20),
            ..anna_kvs::server::ServerConfig::default().node
        },
        ..anna_kvs::server::ServerConfig::default()
    };
    anna_kvs::server::RunningServer::start(config).expect("server starts")
}

/// Runs `commands` on a real redis-server and on an in-process anna server (two actors), one
/// connection each, and asserts every reply is the same.
pub fn same_as_redis(commands: &[&[&str]]) {
    let redis = RealRedis::start();
    let anna = redis_port_server(2);
    let script: String = commands.iter().map(|c| resp(c)).collect();
    let theirs = raw(([127, 0, 0, 1], redis.1).into(), script.as_bytes());
    let ours = raw(anna.addr, script.as_bytes());
    assert_same_replies(&ours, &theirs);
}
