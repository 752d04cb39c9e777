//! The `anna-server` binary's configuration: a `--config` TOML file, flags that win over it,
//! a file with a mistake in it, and plain (uncoloured) log lines when stderr is not a terminal.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Process as Server, free_port, redis_cli as redis};

fn wait_up(port: u16) {
    let start = Instant::now();
    while redis(port, &["PING"]).as_deref() != Some("PONG") {
        assert!(start.elapsed() < Duration::from_secs(15), "no server on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn config_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("anna-server-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn(args: &[&str]) -> Server {
    Server(
        common::anna_server()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start anna-server"),
    )
}

/// Every setting comes from the file; the flags given on the command line replace just theirs.
#[test]
fn a_config_file_configures_the_server_and_flags_win() {
    let (file_port, flag_port) = (free_port(), free_port());
    let path = config_file(
        "flags-win.toml",
        &format!(
            "port = {file_port}\nnative-port = 0\nthreads = 1\nepoch-ms = 20\nmaxclients = 7\ntimeout = 5\npin = false\nlog-level = \"warn\"\n"
        ),
    );
    let path = path.to_str().unwrap();
    {
        let _server = spawn(&["--config", path]);
        wait_up(file_port);
        assert_eq!(redis(file_port, &["CONFIG", "GET", "maxclients"]).unwrap(), "maxclients\n7");
        assert_eq!(redis(file_port, &["CONFIG", "GET", "timeout"]).unwrap(), "timeout\n5");
        assert!(redis(file_port, &["INFO", "server"]).unwrap().contains("anna_epoch_ms:20"));
    }
    let _server = spawn(&["--config", path, "--port", &flag_port.to_string(), "--maxclients", "9"]);
    wait_up(flag_port);
    assert_eq!(redis(flag_port, &["CONFIG", "GET", "maxclients"]).unwrap(), "maxclients\n9");
    assert_eq!(redis(flag_port, &["CONFIG", "GET", "timeout"]).unwrap(), "timeout\n5");
    assert!(redis(file_port, &["PING"]).is_none(), "the flag's port replaced the file's");
}

/// A file with an unknown setting or a value of the wrong type is refused at start, naming it.
#[test]
fn a_bad_config_file_is_refused_with_its_mistake_named() {
    for (name, text, named) in [
        ("unknown.toml", "port = 7000\nmax-memory = 5\n", "max-memory"),
        ("wrong-type.toml", "port = \"high\"\n", "port"),
        ("missing.toml", "", "cannot read"),
    ] {
        let path = config_file(name, text);
        if name == "missing.toml" {
            std::fs::remove_file(&path).unwrap();
        }
        let output =
            common::anna_server().args(["--config", path.to_str().unwrap()]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(named), "{name}: {stderr}");
    }
}

/// Logs written to a pipe (or a file) carry no terminal colour codes.
#[test]
fn logs_to_a_pipe_are_plain_text() {
    let port = free_port();
    let mut child = common::anna_server()
        .args(["--port", &port.to_string(), "--native-port", "0", "--threads", "1"])
        .args(["--log-level", "info"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        let ready = line.contains("ready to accept connections");
        lines.push(line);
        if ready {
            break;
        }
    }
    drop(server);
    assert!(lines.iter().any(|l| l.contains("ready to accept connections")), "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "colour codes in {lines:?}");
}

fn info_memory(con: &mut redis::Connection, field: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {info}"))
}

#[test]
fn maxmemory_refuses_growing_writes_with_redis_oom_error_and_keeps_reads_and_deletes() {
    let port = free_port();
    let _server = spawn(&[
        "--port",
        &port.to_string(),
        "--native-port",
        "0",
        "--maxmemory",
        "48mb",
        "--threads",
        "2",
    ]);
    wait_up(port);
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut con = client.get_connection().unwrap();
    // The allocator's own count, as Redis reports its allocator's.
    let info: String = redis::cmd("INFO").arg("memory").query(&mut con).unwrap();
    assert!(info.contains("anna_memory_measure:allocator"), "{info}");
    assert_eq!(info_memory(&mut con, "maxmemory"), 48 << 20);
    let value = "x".repeat(4096);
    let mut acknowledged = Vec::new();
    let mut refusal = None;
    for i in 0..40_000 {
        let key = format!("fill:{i}");
        match redis::cmd("SET").arg(&key).arg(&value).query::<String>(&mut con) {
            Ok(_) => acknowledged.push(key),
            Err(error) => {
                refusal = Some(error.to_string());
                break;
            }
        }
    }
    let refusal = refusal.expect("40,000 4 KiB values never hit a 48 MiB limit");
    // Redis's reply, `-OOM command not allowed when used memory > 'maxmemory'.` (the redis
    // crate shows the code apart from the message).
    assert!(
        refusal.contains("OOM")
            && refusal.contains("command not allowed when used memory > 'maxmemory'"),
        "{refusal}"
    );
    // Held within a small margin of the limit (one write past the check, and the counters
    // each thread has not flushed yet).
    let used = info_memory(&mut con, "used_memory");
    assert!(used < (48 << 20) + (4 << 20), "used_memory {used}");
    // Other growing writes are refused too; reads, removals and deletes go on.
    let sadd: redis::RedisResult<i64> = redis::cmd("SADD").arg("s").arg("m").query(&mut con);
    assert!(sadd.unwrap_err().to_string().contains("OOM"));
    for key in [&acknowledged[0], &acknowledged[acknowledged.len() - 1]] {
        let got: String = redis::cmd("GET").arg(key).query(&mut con).unwrap();
        assert_eq!(got, value, "{key}: an acknowledged write is gone");
    }
    let deleted: i64 = redis::cmd("DEL").arg(&acknowledged[..100]).query(&mut con).unwrap();
    assert_eq!(deleted, 100);
    let config: Vec<String> =
        redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query(&mut con).unwrap();
    assert_eq!(config, ["maxmemory-policy", "noeviction"]);
}

#[test]
fn an_eviction_policy_is_refused_with_the_reason() {
    let output = common::anna_server()
        .args(["--port", "0", "--maxmemory", "1gb", "--maxmemory-policy", "allkeys-lru"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("only noeviction"), "{text}");
}
