//! Durability of one real `anna-server` process: what it acknowledged is back after `kill -9`
//! and a restart on the same data directory (strings, deletes, sets, counters); writes after
//! the restart continue from there; a second process on the same directory is refused; a
//! corrupt log stops the start with the file and offset named, and `--aof-load-corrupt yes`
//! starts from the intact records.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Process, eventually, free_port, redis_cli as redis};

fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("anna-durability-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `anna-server` on `port` with data directory `dir` and `extra` flags.
fn server(port: u16, dir: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_anna-server"));
    command
        .args(["--port", &port.to_string(), "--native-port", "0", "--log-level", "warn"])
        .arg("--dir")
        .arg(dir)
        .args(extra);
    command
}

fn start(port: u16, dir: &Path, extra: &[&str]) -> Process {
    let child = server(port, dir, extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start anna-server");
    let process = Process(child);
    assert!(
        eventually(Duration::from_secs(15), || redis(port, &["PING"]).as_deref() == Some("PONG")),
        "anna-server on {port} did not come up"
    );
    process
}

fn start_failure(port: u16, dir: &Path, extra: &[&str]) -> String {
    let output = server(port, dir, extra).output().unwrap();
    assert!(!output.status.success(), "started on {}", dir.display());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn everything_acknowledged_survives_kill_9_and_the_restart_continues_from_it() {
    let dir = data_dir("kill");
    let port = free_port();
    let server = start(port, &dir, &["--appendfsync", "always", "--threads", "2"]);
    for i in 0..200 {
        assert_eq!(
            redis(port, &["SET", &format!("k{i}"), &format!("v{i}")]).as_deref(),
            Some("OK")
        );
    }
    assert_eq!(redis(port, &["DEL", "k7"]).as_deref(), Some("1"));
    assert_eq!(redis(port, &["SADD", "s", "a", "b", "c"]).as_deref(), Some("3"));
    assert_eq!(redis(port, &["SREM", "s", "b"]).as_deref(), Some("1"));
    assert_eq!(redis(port, &["INCRBY", "n", "40"]).as_deref(), Some("40"));
    assert_eq!(redis(port, &["DECR", "n"]).as_deref(), Some("39"));
    let incarnation = std::fs::read_to_string(dir.join("incarnation")).unwrap();
    let before: u64 = incarnation.trim().parse().unwrap();
    // A second process on the same directory is refused while the first runs.
    let error = start_failure(free_port(), &dir, &["--threads", "2"]);
    assert!(error.contains("in use"), "{error}");
    drop(server); // kill -9, right after the last acknowledgement
    let _server = start(port, &dir, &["--threads", "2"]);
    for i in (0..200).filter(|&i| i != 7) {
        assert_eq!(redis(port, &["GET", &format!("k{i}")]), Some(format!("v{i}")), "k{i}");
    }
    assert_eq!(redis(port, &["EXISTS", "k7"]).as_deref(), Some("0"));
    assert_eq!(redis(port, &["SMEMBERS", "s"]).as_deref(), Some("a\nc"));
    assert_eq!(redis(port, &["GET", "n"]).as_deref(), Some("39"));
    // The restarted node counts on from what it had, under a writer id of its new life.
    assert_eq!(redis(port, &["INCRBY", "n", "3"]).as_deref(), Some("42"));
    assert_eq!(redis(port, &["SADD", "s", "b"]).as_deref(), Some("1"));
    assert_eq!(redis(port, &["SMEMBERS", "s"]).as_deref(), Some("a\nb\nc"));
    let after: u64 =
        std::fs::read_to_string(dir.join("incarnation")).unwrap().trim().parse().unwrap();
    assert!(after > before, "the restart did not raise the incarnation: {before} then {after}");
}

#[test]
fn a_corrupt_log_stops_the_start_naming_file_and_offset_unless_told_otherwise() {
    let dir = data_dir("corrupt");
    let port = free_port();
    let server = start(port, &dir, &["--appendfsync", "always", "--threads", "1"]);
    for i in 0..20 {
        assert_eq!(redis(port, &["SET", &format!("k{i}"), "value"]).as_deref(), Some("OK"));
    }
    drop(server);
    let log = dir.join("actor-0.0.aof");
    let mut bytes = std::fs::read(&log).unwrap();
    let middle = records_end(&bytes) / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&log, &bytes).unwrap();
    let error = start_failure(port, &dir, &["--threads", "1"]);
    assert!(error.contains("actor-0.0.aof") && error.contains("corrupt record at byte"), "{error}");
    let _server = start(port, &dir, &["--threads", "1", "--aof-load-corrupt", "yes"]);
    // The records before the damage are back; the server takes writes again.
    assert_eq!(redis(port, &["GET", "k0"]).as_deref(), Some("value"));
    assert_eq!(redis(port, &["SET", "after", "repair"]).as_deref(), Some("OK"));
}

#[test]
fn a_torn_tail_is_dropped_with_everything_before_it_kept() {
    let dir = data_dir("torn");
    let port = free_port();
    let server = start(port, &dir, &["--appendfsync", "always", "--threads", "1"]);
    for i in 0..10 {
        assert_eq!(redis(port, &["SET", &format!("k{i}"), "value"]).as_deref(), Some("OK"));
    }
    drop(server);
    let log = dir.join("actor-0.0.aof");
    let mut bytes = std::fs::read(&log).unwrap();
    // As if the machine died halfway through the last record's write: its last bytes never
    // landed in the space the log had allocated ahead (zeros), or past the file's end.
    let end = records_end(&bytes);
    bytes[end - 5..end].fill(0);
    std::fs::write(&log, &bytes).unwrap();
    let _server = start(port, &dir, &["--threads", "1"]);
    for i in 0..9 {
        assert_eq!(redis(port, &["GET", &format!("k{i}")]).as_deref(), Some("value"), "k{i}");
    }
    assert_eq!(redis(port, &["EXISTS", "k9"]).as_deref(), Some("0"));
}

#[test]
fn the_actor_count_cannot_change_under_a_data_directory() {
    let dir = data_dir("threads");
    let port = free_port();
    drop(start(port, &dir, &["--threads", "2"]));
    let error = start_failure(port, &dir, &["--threads", "1"]);
    assert!(error.contains("--threads 2"), "{error}");
}

fn info_field(port: u16, field: &str) -> Option<String> {
    let info = redis(port, &["INFO", "persistence"])?;
    info.lines().find_map(|line| line.strip_prefix(&format!("{field}:")).map(str::to_owned))
}

/// Where a log's records end: a running (or killed) server's log is allocated ahead, and the
/// space no record reached reads as zeros. (A last record whose payload ends in zero bytes
/// would be counted a few bytes short; the tests' values end in letters.)
fn records_end(log: &[u8]) -> usize {
    log.len() - log.iter().rev().take_while(|&&b| b == 0).count()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("actor-"))
        .collect();
    names.sort();
    names
}

#[test]
fn save_and_bgsave_replace_the_logs_by_snapshots_that_a_restart_reads_back() {
    let dir = data_dir("save");
    let port = free_port();
    let server = start(port, &dir, &["--appendfsync", "always", "--threads", "2"]);
    for i in 0..300 {
        assert_eq!(redis(port, &["SET", &format!("k{i}"), "before"]).as_deref(), Some("OK"));
    }
    assert_eq!(redis(port, &["SADD", "s", "a", "b"]).as_deref(), Some("2"));
    assert_eq!(redis(port, &["INCRBY", "n", "5"]).as_deref(), Some("5"));
    let started: u64 = redis(port, &["LASTSAVE"]).unwrap().parse().unwrap();
    assert_eq!(info_field(port, "rdb_saves").as_deref(), Some("0"));
    assert_eq!(redis(port, &["SAVE"]).as_deref(), Some("OK"));
    // Each actor's first log is replaced by its snapshot and the log begun with it.
    assert_eq!(files(&dir), ["actor-0.1.aof", "actor-0.1.snap", "actor-1.1.aof", "actor-1.1.snap"]);
    let saved: u64 = redis(port, &["LASTSAVE"]).unwrap().parse().unwrap();
    assert!(saved >= started, "LASTSAVE went from {started} to {saved}");
    assert!(eventually(Duration::from_secs(5), || info_field(port, "rdb_saves").as_deref()
        == Some("1")));
    assert_eq!(info_field(port, "rdb_last_bgsave_status").as_deref(), Some("ok"));
    // Writes after the snapshot go to the new logs; a background save replaces both again.
    assert_eq!(redis(port, &["SET", "k0", "after"]).as_deref(), Some("OK"));
    assert_eq!(redis(port, &["SADD", "s", "c"]).as_deref(), Some("1"));
    assert_eq!(redis(port, &["BGSAVE"]).as_deref(), Some("Background saving started"));
    assert!(eventually(Duration::from_secs(10), || info_field(port, "rdb_saves").as_deref()
        == Some("2")));
    assert!(files(&dir).contains(&"actor-0.2.snap".to_owned()), "{:?}", files(&dir));
    assert_eq!(redis(port, &["INCRBY", "n", "2"]).as_deref(), Some("7"));
    drop(server); // kill -9
    let _server = start(port, &dir, &["--threads", "2"]);
    assert_eq!(redis(port, &["GET", "k0"]).as_deref(), Some("after"));
    for i in 1..300 {
        assert_eq!(redis(port, &["GET", &format!("k{i}")]).as_deref(), Some("before"), "k{i}");
    }
    assert_eq!(redis(port, &["SMEMBERS", "s"]).as_deref(), Some("a\nb\nc"));
    assert_eq!(redis(port, &["GET", "n"]).as_deref(), Some("7"));
}

#[test]
fn save_is_refused_with_a_reason_by_a_memory_only_server() {
    let port = free_port();
    let child = common::anna_server()
        .args(["--port", &port.to_string(), "--native-port", "0", "--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Process(child);
    assert!(
        eventually(Duration::from_secs(15), || redis(port, &["PING"]).as_deref() == Some("PONG"))
    );
    for command in ["SAVE", "BGSAVE"] {
        let reply = redis(port, &[command]).unwrap();
        assert!(reply.contains("--dir"), "{command}: {reply}");
    }
}

/// A big set changed member by member is logged as the members each change added or removed
/// (not the whole set after every change), and comes back whole after `kill -9`; a snapshot
/// replacing those deltas by the whole set reads back the same.
#[test]
fn a_big_set_is_logged_by_deltas_and_comes_back_whole() {
    const MEMBERS: usize = 200_000;
    const PER_SADD: usize = 500;
    let dir = data_dir("bigset");
    let port = free_port();
    let server = start(port, &dir, &["--appendfsync", "everysec", "--threads", "1"]);
    let client = ::redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut con = client.get_connection().unwrap();
    for start in (0..MEMBERS).step_by(PER_SADD) {
        let members: Vec<String> = (start..start + PER_SADD).map(|n| format!("m:{n:07}")).collect();
        let added: i64 = ::redis::cmd("SADD").arg("big").arg(members).query(&mut con).unwrap();
        assert_eq!(added, PER_SADD as i64);
    }
    let removed: i64 = ::redis::cmd("SREM").arg("big").arg("m:0000007").query(&mut con).unwrap();
    assert_eq!(removed, 1);
    // Whole states after each SADD would sum to ~MEMBERS²/PER_SADD/2 members' worth (gigabytes);
    // deltas are each member once, a few dozen bytes with its dot and the record framing.
    let logged: u64 = files(&dir)
        .iter()
        .filter(|name| name.ends_with(".aof"))
        .map(|name| records_end(&std::fs::read(dir.join(name)).unwrap()) as u64)
        .sum();
    eprintln!("{logged} bytes logged for {MEMBERS} members");
    assert!(logged < (MEMBERS * 40) as u64, "{logged} bytes logged for {MEMBERS} members");
    std::thread::sleep(Duration::from_millis(1500)); // everysec: let the last second sync
    drop(server);
    let server = start(port, &dir, &["--threads", "1"]);
    let expected = (MEMBERS - 1).to_string();
    assert_eq!(redis(port, &["SCARD", "big"]), Some(expected.clone()));
    assert_eq!(redis(port, &["SISMEMBER", "big", "m:0000007"]).as_deref(), Some("0"));
    assert_eq!(redis(port, &["SISMEMBER", "big", "m:0199999"]).as_deref(), Some("1"));
    // A snapshot replaces the deltas by the whole set; it reads back the same.
    assert_eq!(redis(port, &["SAVE"]).as_deref(), Some("OK"));
    drop(server);
    let _server = start(port, &dir, &["--threads", "1"]);
    assert_eq!(redis(port, &["SCARD", "big"]), Some(expected));
}

/// A flush survives restarts: what it deleted stays deleted, what was written after it stays,
/// and the node learns its flush stamps back from its log and, after a snapshot, from the
/// snapshot (the flushes it applies at start are counted).
#[test]
fn a_flush_survives_kill_9_and_snapshots() {
    let dir = data_dir("flush");
    let port = free_port();
    let server = start(port, &dir, &["--appendfsync", "always", "--threads", "2"]);
    for i in 0..50 {
        assert_eq!(redis(port, &["SET", &format!("k{i}"), "v"]).as_deref(), Some("OK"));
        assert_eq!(redis(port, &["-n", "1", "SET", &format!("k{i}"), "v"]).as_deref(), Some("OK"));
    }
    assert_eq!(redis(port, &["-n", "1", "FLUSHDB"]).as_deref(), Some("OK"));
    assert_eq!(redis(port, &["-n", "1", "SET", "after", "yes"]).as_deref(), Some("OK"));
    drop(server); // kill -9
    let server = start(port, &dir, &["--threads", "2"]);
    assert_eq!(redis(port, &["DBSIZE"]).as_deref(), Some("50"));
    assert_eq!(redis(port, &["-n", "1", "DBSIZE"]).as_deref(), Some("1"));
    assert_eq!(redis(port, &["-n", "1", "GET", "after"]).as_deref(), Some("yes"));
    let learned = |port| {
        let info = redis(port, &["INFO", "stats"])?;
        info.lines().find_map(|line| line.strip_prefix("anna_flushes:")?.parse::<u64>().ok())
    };
    // (Counters are published at each actor's epoch.)
    let learned_back = || eventually(Duration::from_secs(5), || learned(port) >= Some(2));
    assert!(learned_back(), "each actor learned the flush from its log: {:?}", learned(port));
    assert_eq!(redis(port, &["SAVE"]).as_deref(), Some("OK"));
    drop(server);
    let _server = start(port, &dir, &["--threads", "2"]);
    assert_eq!(redis(port, &["-n", "1", "DBSIZE"]).as_deref(), Some("1"));
    assert!(learned_back(), "each actor learned the flush from its snapshot: {:?}", learned(port));
}
