//! A cluster of real `anna-server` processes grows from one node to three and shrinks back to
//! two while a client keeps writing through every node: no acknowledged write is lost, every
//! remaining node ends with every key, and the node that left cannot start from its old
//! directory.

mod common;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, redis_cli as redis};

/// A port `p` with `p` and `p + 1` free, away from the ones `taken`.
fn free_ports(taken: &[u16]) -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let clear = |p: u16| {
            !taken.iter().any(|&t| t.abs_diff(p) <= 1)
                && TcpListener::bind(("127.0.0.1", p)).is_ok()
        };
        if port < 65_000 && clear(port) && clear(port + 1) {
            return port;
        }
    }
}

/// Ports for `n` more members, away from those `taken` (to which they are added). Take them
/// just before starting the member: a port picked long before may be some socket's by then.
fn member_ports_beside(n: usize, taken: &mut Vec<u16>) -> Vec<(u16, u16, u16)> {
    let mut port = || {
        let p = free_ports(taken);
        taken.push(p);
        p
    };
    (0..n).map(|_| (port(), port(), port())).collect()
}

struct Member {
    process: common::Process,
    redis: u16,
    gossip: u16,
    native: u16,
}

fn start(ports: (u16, u16, u16), join: Option<u16>, dir: &str) -> Member {
    start_with(ports, join, dir, &[])
}

fn start_with(ports: (u16, u16, u16), join: Option<u16>, dir: &str, extra: &[&str]) -> Member {
    let (redis_port, gossip, native) = ports;
    let mut command = Command::new(env!("CARGO_BIN_EXE_anna-server"));
    command
        .args(["--dir", dir, "--port", &redis_port.to_string()])
        .args(["--gossip-port", &gossip.to_string(), "--native-port", &native.to_string()])
        .args(["--threads", "2", "--no-pin", "--epoch-ms", "20", "--log-level", "warn"])
        .args(["--probe-period-ms", "100", "--repair-interval-secs", "1"])
        .args(extra);
    if let Some(seed) = join {
        command.args(["--join", &format!("127.0.0.1:{seed}")]);
    }
    // Its log beside its directory (appended across its lives), shown if it does not come up.
    let log_path = format!("{dir}.log");
    if let Some(parent) = std::path::Path::new(dir).parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
    let child = command.stdout(Stdio::null()).stderr(log).spawn().unwrap();
    let member = Member { process: common::Process(child), redis: redis_port, gossip, native };
    assert!(
        eventually(Duration::from_secs(15), || redis(redis_port, &["PING"]).as_deref()
            == Some("PONG")),
        "the node on {redis_port} did not come up; its log:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    member
}

/// How many members the node's ring holds (`anna_nodes`).
fn ring_members(port: u16) -> Option<u64> {
    let info = redis(port, &["INFO", "replication"])?;
    info.lines().find_map(|l| l.strip_prefix("anna_nodes:")?.trim().parse().ok())
}

fn members_alive(port: u16) -> Option<u64> {
    let info = redis(port, &["INFO", "cluster"])?;
    info.lines().find_map(|l| l.strip_prefix("anna_members_alive:")?.trim().parse().ok())
}

#[test]
fn grow_one_to_three_and_shrink_to_two_under_writes_losing_nothing() {
    // Each member's ports are taken just before it starts (see `member_ports_beside`).
    let mut taken = Vec::new();
    let scratch = std::env::temp_dir().join(format!("anna-elastic-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let dirs: Vec<String> =
        (0..3).map(|i| scratch.join(format!("n{i}")).to_string_lossy().into_owned()).collect();

    let a = start(member_ports_beside(1, &mut taken)[0], None, &dirs[0]);
    // The writer: SETs through every node that is up, round robin; only OK answers count.
    let targets = Arc::new(Mutex::new(vec![a.redis]));
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (targets, acked, stop) = (Arc::clone(&targets), Arc::clone(&acked), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let ports = targets.lock().unwrap().clone();
                let port = ports[(i as usize) % ports.len()];
                let Ok(client) = ::redis::Client::open(format!("redis://127.0.0.1:{port}/")) else {
                    continue;
                };
                let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                // A connection carries 50 writes, then the next node gets the next 50.
                for _ in 0..50 {
                    let (key, value) = (format!("key-{i}"), format!("value-{i}"));
                    let answer: ::redis::RedisResult<String> =
                        ::redis::cmd("SET").arg(&key).arg(&value).query(&mut con);
                    if answer.is_ok_and(|a| a == "OK") {
                        acked.lock().unwrap().push((key, value));
                    }
                    i += 1;
                }
            }
        })
    };
    let writes_now = || acked.lock().unwrap().len();
    let wait_for_writes = |more: usize| {
        let target = writes_now() + more;
        assert!(eventually(Duration::from_secs(20), || writes_now() >= target), "writes stalled");
    };
    wait_for_writes(500);

    // 1 → 2 → 3, each joining through the newest member.
    let b = start(member_ports_beside(1, &mut taken)[0], Some(a.gossip), &dirs[1]);
    targets.lock().unwrap().push(b.redis);
    wait_for_writes(500);
    let c = start(member_ports_beside(1, &mut taken)[0], Some(b.gossip), &dirs[2]);
    targets.lock().unwrap().push(c.redis);
    let three = eventually(Duration::from_secs(10), || {
        [&a, &b, &c].iter().all(|m| members_alive(m.redis) == Some(3))
    });
    assert!(three, "{:?}", redis(a.redis, &["INFO", "cluster"]));
    wait_for_writes(1000);

    // 3 → 2: B leaves for good while the writes go on (through A and C from now on).
    targets.lock().unwrap().retain(|&p| p != b.redis);
    let output = Command::new(env!("CARGO_BIN_EXE_anna-cli"))
        .args(["-H", &format!("127.0.0.1:{}", b.native), "cluster", "leave"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && shown.contains("is leaving the cluster"), "{shown}");
    let mut b = b;
    let left = eventually(
        Duration::from_secs(10),
        || matches!(b.process.0.try_wait(), Ok(Some(status)) if status.success()),
    );
    assert!(left, "B did not exit after leaving");
    let two = eventually(Duration::from_secs(10), || {
        [&a, &c].iter().all(|m| members_alive(m.redis) == Some(2))
    });
    assert!(two, "{:?}", redis(a.redis, &["INFO", "cluster"]));
    wait_for_writes(500);
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();

    // Every acknowledged write is on both remaining nodes.
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 3000, "{} writes", acked.len());
    for member in [&a, &c] {
        let missing = |port: u16| {
            let client = ::redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
            let mut con = client.get_connection().unwrap();
            acked
                .iter()
                .filter(|(key, value)| {
                    let got: Option<String> = ::redis::cmd("GET").arg(key).query(&mut con).unwrap();
                    got.as_deref() != Some(value.as_str())
                })
                .count()
        };
        let none = eventually(Duration::from_secs(20), || missing(member.redis) == 0);
        assert!(
            none,
            "{} of {} acknowledged writes missing on {}",
            missing(member.redis),
            acked.len(),
            member.redis
        );
    }
    eprintln!("{} acknowledged writes, all on both remaining nodes", acked.len());

    // The directory B left cannot start a member again.
    assert!(std::path::Path::new(&dirs[1]).join("LEFT").exists());
    let again = Command::new(env!("CARGO_BIN_EXE_anna-server"))
        .args(["--dir", &dirs[1], "--port", "0", "--native-port", "0"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && said.contains("left its cluster for good"), "{said}");
    drop((a, c));
    let _ = std::fs::remove_dir_all(&scratch);
}

/// `SIGTERM` stops a node as a member that is down (it stays in the ring, its directory can
/// start it again); with `--leave-on-terminate` it leaves for good: its writes are all on the
/// other members, it is out of their rings, and its directory is marked left; and a second
/// `SIGTERM` right after the first stops it as a member instead.
#[test]
fn sigterm_leaves_for_good_only_with_leave_on_terminate() {
    let mut taken = Vec::new();
    let ports = member_ports_beside(2, &mut taken);
    let scratch = std::env::temp_dir().join(format!("anna-sigterm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let dir = |name: &str| scratch.join(name).to_string_lossy().into_owned();
    let terminate = |member: &mut Member| {
        let pid = member.process.0.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let exited = eventually(
            Duration::from_secs(30),
            || matches!(member.process.0.try_wait(), Ok(Some(status)) if status.success()),
        );
        assert!(exited, "the node did not exit cleanly on SIGTERM");
    };
    let write_through = |member: &Member, tag: &str| {
        for i in 0..300 {
            let (key, value) = (format!("{tag}-{i}"), format!("v{i}"));
            assert_eq!(redis(member.redis, &["SET", &key, &value]).as_deref(), Some("OK"));
        }
    };
    let all_on = |port: u16, tag: &str| {
        (0..300).all(|i| {
            redis(port, &["GET", &format!("{tag}-{i}")]).as_deref() == Some(&*format!("v{i}"))
        })
    };

    let a = start(ports[0], None, &dir("a"));
    // Without the flag: B stops, stays in A's ring (down), and can start again from its dir.
    let mut b = start(ports[1], Some(a.gossip), &dir("b"));
    assert!(eventually(Duration::from_secs(10), || ring_members(a.redis) == Some(2)));
    write_through(&b, "plain");
    terminate(&mut b);
    assert!(!std::path::Path::new(&dir("b")).join("LEFT").exists());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ring_members(a.redis), Some(2), "a stopped member stays in the ring");
    assert!(eventually(Duration::from_secs(10), || all_on(a.redis, "plain")));
    // B starts again from its directory, in its old slot (a leave waits for every owner of
    // a key, B included, to take it).
    let b = start(ports[1], Some(a.gossip), &dir("b"));
    assert!(eventually(Duration::from_secs(10), || members_alive(a.redis) == Some(2)));
    assert_eq!(ring_members(a.redis), Some(2));

    // With it: C joins, takes writes, and leaves for good on SIGTERM.
    let late = member_ports_beside(1, &mut taken)[0];
    let mut c = start_with(late, Some(a.gossip), &dir("c"), &["--leave-on-terminate", "true"]);
    assert!(eventually(Duration::from_secs(10), || ring_members(a.redis) == Some(3)));
    write_through(&c, "leaving");
    terminate(&mut c);
    assert!(std::path::Path::new(&dir("c")).join("LEFT").exists());
    assert!(
        eventually(Duration::from_secs(10), || ring_members(a.redis) == Some(2)),
        "{:?}",
        redis(a.redis, &["INFO", "replication"])
    );
    for member in [&a, &b] {
        let there = eventually(Duration::from_secs(10), || all_on(member.redis, "leaving"));
        assert!(there, "a write made through the node that left is missing");
    }

    // Two SIGTERMs 50 ms apart: the second stops D before its hand-over (which takes 200 ms
    // at least), as a member: no LEFT mark, still in the ring.
    let late = member_ports_beside(1, &mut taken)[0];
    let mut d = start_with(late, Some(a.gossip), &dir("d"), &["--leave-on-terminate", "true"]);
    assert!(eventually(Duration::from_secs(10), || ring_members(a.redis) == Some(3)));
    let pid = d.process.0.id().to_string();
    let twice = Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}; sleep 0.05; kill -TERM {pid}")])
        .status()
        .unwrap();
    assert!(twice.success());
    let exited = eventually(
        Duration::from_secs(30),
        || matches!(d.process.0.try_wait(), Ok(Some(status)) if status.success()),
    );
    assert!(exited, "D did not stop on its second SIGTERM");
    assert!(!std::path::Path::new(&dir("d")).join("LEFT").exists(), "D left for good");
    assert!(
        eventually(Duration::from_secs(10), || members_alive(a.redis) == Some(2)),
        "A does not see D down"
    );
    assert_eq!(ring_members(a.redis), Some(3), "D stopped as a member stays in the ring");
    drop((a, b));
    let _ = std::fs::remove_dir_all(&scratch);
}
