//! Three `anna-server` processes on 127.0.0.1 form one cluster (static peers, gossip over TCP):
//! a write through one node is read through the others after a few epochs; after `kill -9` of
//! one node the others keep serving every key, old and new.

mod common;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, redis_cli as redis};

/// A port `p` with `p` and `p + 1` free (a node's two actors gossip on `p` and `p + 1`).
fn free_ports(taken: &[u16]) -> u16 {
    loop {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let clear = |p: u16| {
            !taken.iter().any(|&t| t.abs_diff(p) <= 1)
                && TcpListener::bind(("127.0.0.1", p)).is_ok()
        };
        if port < 65_000 && clear(port) && clear(port + 1) {
            return port;
        }
    }
}

struct Node {
    /// Killed when the node is dropped.
    process: common::Process,
    redis_port: u16,
}

/// Starts an `anna-server` with `args` (the first two must be `--port N`), two unpinned actors,
/// 20 ms epochs (unless `args` say otherwise), and `peers`.
fn start_node(args: &[&str], peers: &[String]) -> Node {
    let redis_port = args[1].parse().expect("--port N first");
    let epoch: &[&str] = if args.contains(&"--epoch-ms") { &[] } else { &["--epoch-ms", "20"] };
    let child = common::anna_server()
        .args(args)
        .args(epoch)
        .args(["--threads", "2", "--no-pin", "--log-level", "warn"])
        .args(["--peers", &peers.join(",")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start anna-server");
    Node { process: common::Process(child), redis_port }
}

fn wait_up(nodes: &[Node]) {
    for node in nodes {
        assert!(
            eventually(Duration::from_secs(10), || redis(node.redis_port, &["PING"]).as_deref()
                == Some("PONG")),
            "node on {} did not come up",
            node.redis_port
        );
    }
}

/// Three nodes peering with each other (Redis port, gossip port, no native port), `extra`
/// flags on each, all answering.
fn three_nodes(extra: &[&str]) -> Vec<Node> {
    let mut taken = Vec::new();
    let (mut gossip, mut redis_ports) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let g = free_ports(&taken);
        taken.push(g);
        gossip.push(g);
        let r = free_ports(&taken);
        taken.push(r);
        redis_ports.push(r);
    }
    let nodes: Vec<Node> = (0..3)
        .map(|i| {
            let peers: Vec<String> =
                (0..3).filter(|&j| j != i).map(|j| format!("127.0.0.1:{}", gossip[j])).collect();
            let (gossip, redis) = (gossip[i].to_string(), redis_ports[i].to_string());
            let args = ["--port", &redis, "--gossip-port", &gossip, "--native-port", "0"];
            start_node(&[&args[..], extra].concat(), &peers)
        })
        .collect();
    wait_up(&nodes);
    nodes
}

#[test]
fn three_anna_server_processes_replicate_and_survive_a_kill() {
    let mut nodes = three_nodes(&[]);

    // Writes through node 0 are read through nodes 1 and 2.
    assert_eq!(redis(nodes[0].redis_port, &["SET", "city", "Berkeley"]).as_deref(), Some("OK"));
    assert_eq!(redis(nodes[0].redis_port, &["INCRBY", "hits", "5"]).as_deref(), Some("5"));
    // Node 1 answers with its own replica's count: 3, or 8 if node 0's increment already
    // arrived by gossip (links are up from the start, so it often has). Both count, below.
    let hits = redis(nodes[1].redis_port, &["INCRBY", "hits", "3"]);
    assert!(matches!(hits.as_deref(), Some("3" | "8")), "INCRBY on node 1 answered {hits:?}");
    for node in &nodes[1..] {
        let port = node.redis_port;
        assert!(
            eventually(Duration::from_secs(10), || redis(port, &["GET", "city"]).as_deref()
                == Some("Berkeley")),
            "node on {port} never saw the write"
        );
    }
    // Concurrent increments on two nodes both count everywhere.
    for node in &nodes {
        let port = node.redis_port;
        assert!(
            eventually(Duration::from_secs(10), || redis(port, &["GET", "hits"]).as_deref()
                == Some("8")),
            "node on {port}: {:?}",
            redis(port, &["GET", "hits"])
        );
    }

    // kill -9 node 2: the others keep serving old keys and take new writes.
    let killed = nodes.remove(2);
    drop(killed);
    assert_eq!(redis(nodes[0].redis_port, &["GET", "city"]).as_deref(), Some("Berkeley"));
    assert_eq!(redis(nodes[1].redis_port, &["SET", "after", "kill"]).as_deref(), Some("OK"));
    let port = nodes[0].redis_port;
    assert!(
        eventually(Duration::from_secs(10), || redis(port, &["GET", "after"]).as_deref()
            == Some("kill")),
        "the survivors stopped gossiping after a peer died"
    );
}

fn anna_cli(native: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_anna-cli"))
        .args(["--host", native, "--timeout-ms", "500"])
        .args(args)
        .output()
        .expect("run anna-cli");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).trim_end().to_owned())
}

#[test]
fn the_client_routes_to_owners_and_retries_past_a_killed_node() {
    use anna_kvs::client::{Client, ClientConfig};
    use anna_kvs::redis::{RedisOp, RedisValue};

    let mut taken = Vec::new();
    let mut port = || {
        let p = free_ports(&taken);
        taken.push(p);
        p
    };
    let ports: Vec<(u16, u16, u16)> = (0..3).map(|_| (port(), port(), port())).collect();
    let native: Vec<String> = ports.iter().map(|(_, _, n)| format!("127.0.0.1:{n}")).collect();
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            let peers: Vec<String> = (0..3)
                .filter(|&j| j != i)
                .map(|j| format!("127.0.0.1:{}/2/{}", ports[j].1, ports[j].2))
                .collect();
            let (redis, gossip, native) =
                (ports[i].0.to_string(), ports[i].1.to_string(), ports[i].2.to_string());
            let args = ["--port", &redis, "--gossip-port", &gossip, "--native-port", &native];
            start_node(&[&args[..], &["--replication", "2:1"]].concat(), &peers)
        })
        .collect();
    wait_up(&nodes);

    // One seed is enough: the client learns all three members and their client addresses.
    let config = ClientConfig { timeout: Duration::from_millis(500), ..ClientConfig::default() };
    let mut client = Client::<RedisValue>::with_config(&[&native[0]], config).unwrap();
    assert_eq!(client.ring().members.len(), 3);
    assert!(client.ring().members.iter().all(|m| m.client_addr.is_some()));
    let keys: Vec<String> = (0..60).map(|i| format!("key-{i}")).collect();
    for key in &keys {
        client.apply(anna_kvs::client::key(key), RedisOp::Set(key.clone().into())).unwrap();
    }
    // Each key lives on exactly two nodes (one actor each) once gossip has run.
    assert!(
        eventually(Duration::from_secs(10), || {
            let stats = client.stats().unwrap();
            let total: u64 = stats.iter().flat_map(|n| &n.actors).map(|a| a.stats.keys).sum();
            stats.len() == 3 && total == 2 * keys.len() as u64
        }),
        "keys per node: {:?}",
        client
            .stats()
            .unwrap()
            .iter()
            .map(|n| n.actors.iter().map(|a| a.stats.keys).sum::<u64>())
            .collect::<Vec<_>>()
    );
    // WAIT over the native protocol: with replication 2 each key has one other replica, which
    // acknowledges; no third node holds the key, so asking for two runs into the timeout.
    let register = |text: &str| {
        RedisValue::from_register(
            lattice_core::Lww::new(lattice_core::Stamp::new(1, 1), Some(text.to_owned().into())),
            1,
        )
    };
    let written = client.put_replicated("fresh", register("v"), 1, Duration::from_secs(5));
    assert_eq!(written.unwrap(), 1);
    let start = Instant::now();
    let written = client.put_replicated("fresh-2", register("w"), 2, Duration::from_millis(300));
    assert_eq!(written.unwrap(), 1);
    assert!(start.elapsed() >= Duration::from_millis(300));
    // The CLI, pointed at another node, reads them (every replica has them by now).
    let (ok, text) = anna_cli(&native[1], &["get", "key-7"]);
    assert!(ok && text.starts_with("\"key-7\""), "{text}");

    // kill -9 one node: every key still has a live replica, and the client retries on it.
    let killed = nodes.remove(2);
    drop(killed);
    for key in &keys {
        let value = client.get(anna_kvs::client::key(key)).unwrap_or_else(|e| panic!("{key}: {e}"));
        let value = value.unwrap_or_else(|| panic!("{key} lost"));
        assert_eq!(value.get_string().unwrap().as_deref(), Some(key.as_bytes()));
    }
    for key in &keys[..20] {
        client
            .apply(anna_kvs::client::key(format!("{key}-after")), RedisOp::Set("new".into()))
            .unwrap();
    }
    // Another client may read the other replica: it has the write within a few epochs.
    assert!(
        eventually(Duration::from_secs(10), || {
            let (ok, text) = anna_cli(&native[0], &["get", "key-3-after"]);
            ok && text.starts_with("\"new\"")
        }),
        "anna-cli never read the write made after the kill"
    );
    let (ok, text) = anna_cli(&native[0], &["stats"]);
    let live = text.lines().filter(|l| l.starts_with("node ")).count();
    assert!(ok && live == 2, "stats of the two live nodes expected:\n{text}");
}

/// Two nodes, each key on one of them (`--replication 1:1`): through the Redis port of either,
/// every key is read and written (the actor forwards to the owner node). After `kill -9` of one,
/// a command for one of its keys gets an error once the request times out (no hang), and the
/// survivor keeps serving its own keys and other clients.
#[test]
fn a_key_owned_by_a_dead_node_gets_an_error_not_a_hang() {
    let g0 = free_ports(&[]);
    let r0 = free_ports(&[g0]);
    let g1 = free_ports(&[g0, r0]);
    let r1 = free_ports(&[g0, r0, g1]);
    let start = |redis: u16, gossip: u16, peer: u16| {
        let (redis, gossip) = (redis.to_string(), gossip.to_string());
        let args = ["--port", &redis, "--gossip-port", &gossip, "--native-port", "0"];
        let mut args: Vec<&str> = args.to_vec();
        args.extend(["--replication", "1:1"]);
        start_node(&args, &[format!("127.0.0.1:{peer}")])
    };
    let nodes = vec![start(r0, g0, g1), start(r1, g1, g0)];
    wait_up(&nodes);
    let keys: Vec<String> = (0..40).map(|i| format!("owned-{i}")).collect();
    // Actors connect their links to the other node's actors at start (ZeroMQ retries every
    // 100 ms until the peer listens), so once both nodes answer and a moment has passed, the
    // very first forwarded write must go through: no warm-up, no retry.
    std::thread::sleep(Duration::from_millis(500));
    for key in &keys {
        assert_eq!(redis(r0, &["SET", key, key]).as_deref(), Some("OK"), "SET {key} via node 0");
    }
    for key in &keys {
        assert_eq!(redis(r1, &["GET", key]).as_deref(), Some(key.as_str()), "{key} via node 1");
    }
    let mut nodes = nodes;
    drop(nodes.pop()); // kill -9 node 1
    let mut errors = 0;
    let mut served = Vec::new();
    for key in &keys {
        let begun = Instant::now();
        let answer = redis(r0, &["GET", key]).unwrap_or_default();
        assert!(begun.elapsed() < Duration::from_secs(6), "GET {key} took {:?}", begun.elapsed());
        if answer == *key {
            served.push(key);
        } else {
            assert!(answer.contains("no replica answered in time"), "GET {key}: {answer:?}");
            errors += 1;
            assert_eq!(redis(r0, &["PING"]).as_deref(), Some("PONG"));
        }
        if errors > 0 && !served.is_empty() {
            break;
        }
    }
    assert!(errors > 0, "no key of the dead node among 40");
    // The survivor's own keys still take writes.
    let mine = served.first().expect("no key of the live node among 40");
    assert_eq!(redis(r0, &["SET", mine, "still alive"]).as_deref(), Some("OK"));
    assert_eq!(redis(r0, &["GET", mine]).as_deref(), Some("still alive"));
}

/// Sends each command (inline form) on one connection, one at a time, and returns each
/// single-line reply and how long it took.
fn one_connection(port: u16, commands: &[&str]) -> Vec<(String, Duration)> {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    commands
        .iter()
        .map(|command| {
            let start = Instant::now();
            writer.write_all(format!("{command}\r\n").as_bytes()).unwrap();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            (line.trim_end().to_owned(), start.elapsed())
        })
        .collect()
}

#[test]
fn wait_counts_the_nodes_that_acknowledged_a_connections_writes() {
    let mut nodes = three_nodes(&[]);
    let port = nodes[0].redis_port;
    // All up: both other nodes acknowledge, well before the timeout.
    let replies = one_connection(
        port,
        &["WAIT 2 100", "SET a 1", "SADD s x", "INCR n", "WAIT 2 10000", "WAIT 0 0"],
    );
    assert_eq!(replies[0].0, ":2", "nothing written: every other replica counts");
    assert_eq!(replies[4].0, ":2", "{replies:?}");
    assert!(replies[4].1 < Duration::from_secs(5), "WAIT took {:?}", replies[4].1);
    assert_eq!(replies[5].0, ":2");
    // The writes did reach the other nodes.
    for node in &nodes[1..] {
        assert_eq!(redis(node.redis_port, &["GET", "a"]).as_deref(), Some("1"));
    }
    // One node dead: only one can acknowledge; asking for two runs into the timeout.
    drop(nodes.remove(2));
    let replies = one_connection(port, &["SET b 2", "WAIT 2 1500", "SET c 3", "WAIT 1 10000"]);
    assert_eq!(replies[1].0, ":1", "{replies:?}");
    assert!(replies[1].1 >= Duration::from_millis(1400), "WAIT answered early: {replies:?}");
    assert_eq!(replies[3].0, ":1", "{replies:?}");
    assert!(replies[3].1 < Duration::from_secs(5), "{replies:?}");
    assert_eq!(redis(nodes[1].redis_port, &["GET", "c"]).as_deref(), Some("3"));
}

#[test]
fn sigterm_gossips_the_last_changes_before_the_node_exits() {
    // Long epochs: without a graceful stop, the writes of the epoch in progress would be lost.
    let mut nodes = three_nodes(&["--epoch-ms", "2000"]);
    let port = nodes[0].redis_port;
    let commands: Vec<String> = (0..200).map(|i| format!("SET term-{i} v{i}")).collect();
    let commands: Vec<&str> = commands.iter().map(String::as_str).collect();
    let replies = one_connection(port, &commands);
    assert!(replies.iter().all(|(reply, _)| reply == "+OK"), "{replies:?}");
    // SIGTERM right after the last acknowledgement; the node must exit by itself.
    let mut stopped = nodes.remove(0);
    let pid = stopped.process.0.id().to_string();
    let start = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = loop {
        if let Some(status) = stopped.process.0.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no exit 10 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
    // The survivors have every acknowledged write at once: nothing was left to a later epoch.
    for node in &nodes {
        for i in 0..200 {
            let key = format!("term-{i}");
            assert_eq!(redis(node.redis_port, &["GET", &key]), Some(format!("v{i}")), "{key}");
        }
    }
}

fn info_field(port: u16, field: &str) -> u64 {
    let info = redis(port, &["INFO", "stats"]).unwrap_or_default();
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO stats: {info}"))
}

/// A set grown through one node past the size whose whole state once broke gossip (≈337k
/// members, 8.4 MB: every batch carrying it was refused, forever) and past the 16 MiB message
/// limit itself: every node ends with every member, no peer message is refused or given up,
/// and the bytes on the wire follow the members added, not the set's size at each change.
#[test]
fn a_set_bigger_than_a_message_replicates_by_deltas() {
    const MEMBERS: usize = 600_000;
    const PER_SADD: usize = 1_000;
    // Gossip's bytes alone: a repair round that meets the set while its deltas are still in
    // flight would (rightly) send it whole, and how often that happens depends on timing
    // (measured 27 to 79 bytes per member and peer with repair on, before and after this
    // session's changes alike).
    let nodes = three_nodes(&["--repair-interval-secs", "0"]);
    let port = nodes[0].redis_port;
    let client = ::redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut con = client.get_connection().unwrap();
    let member_bytes: usize = 10; // "m:" and seven digits, and its length byte
    for batch in 0..MEMBERS / PER_SADD / 20 {
        let mut pipe = ::redis::pipe();
        for sadd in 0..20 {
            let start = (batch * 20 + sadd) * PER_SADD;
            let members: Vec<String> =
                (start..start + PER_SADD).map(|n| format!("m:{n:07}")).collect();
            pipe.cmd("SADD").arg("big").arg(members);
        }
        let added: Vec<i64> = pipe.query(&mut con).unwrap();
        assert!(added.iter().all(|&n| n == PER_SADD as i64), "{added:?}");
    }
    for node in &nodes {
        let port = node.redis_port;
        assert!(
            eventually(Duration::from_secs(60), || redis(port, &["SCARD", "big"]).as_deref()
                == Some(&MEMBERS.to_string()[..])),
            "node on {port} holds {:?} members",
            redis(port, &["SCARD", "big"])
        );
    }
    for node in &nodes {
        let port = node.redis_port;
        for field in ["anna_refused_malformed", "anna_gossip_undeliverable", "anna_gossip_given_up"]
        {
            assert_eq!(info_field(port, field), 0, "{field} on {port}");
        }
    }
    // Node 0's actors sent each member to two peers once, as deltas: a few dozen bytes per
    // member and peer (member, dot, framing), where whole states would have sent the set
    // again at every epoch (gigabytes).
    let sent = info_field(port, "anna_peer_bytes_out");
    let per_member = sent as f64 / (2 * MEMBERS) as f64;
    eprintln!(
        "{sent} bytes out of node 0 for {MEMBERS} members: {per_member:.1} per member and peer"
    );
    assert!(info_field(port, "anna_gossip_deltas_out") > 0);
    assert!(per_member < (member_bytes + 40) as f64, "{per_member:.1} bytes per member and peer");
}

/// Deadlines are part of a key's replicated state: keys given a time to live on one node
/// and changed on another (PERSIST, a later EXPIRE, a write that keeps it) show the very same
/// deadline on every node, and once it passes every node deletes them on its own.
#[test]
fn replicas_agree_on_every_deadline_and_expire_the_keys_alike() {
    let nodes = three_nodes(&[]);
    let (a, b) = (nodes[0].redis_port, nodes[1].redis_port);
    const KEYS: usize = 60;
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as u64;
    for n in 0..KEYS {
        let key = format!("t{n}");
        let deadline = (now_ms + 2_000 + 37 * n as u64).to_string();
        assert_eq!(redis(a, &["SET", &key, "v", "PXAT", &deadline]).as_deref(), Some("OK"));
    }
    // Wait for node 1 to hold every key, then change a third of them there.
    assert!(eventually(Duration::from_secs(10), || {
        (0..KEYS).all(|n| redis(b, &["EXISTS", &format!("t{n}")]).as_deref() == Some("1"))
    }));
    let later = (now_ms + 60_000).to_string();
    for n in (0..KEYS).step_by(3) {
        let key = format!("t{n}");
        let answer = match n % 9 {
            0 => redis(b, &["PERSIST", &key]),
            3 => redis(b, &["PEXPIREAT", &key, &later]),
            _ => redis(b, &["APPEND", &key, "x"]),
        };
        assert!(matches!(answer.as_deref(), Some("1" | "2")), "{key}: {answer:?}");
    }
    let deadlines = |port: u16| -> Vec<String> {
        (0..KEYS).map(|n| redis(port, &["PEXPIRETIME", &format!("t{n}")]).unwrap()).collect()
    };
    assert!(
        eventually(Duration::from_secs(10), || {
            let first = deadlines(a);
            nodes.iter().all(|node| deadlines(node.redis_port) == first)
        }),
        "deadlines differ: {:?}",
        nodes.iter().map(|n| deadlines(n.redis_port)).collect::<Vec<_>>()
    );
    let first = deadlines(a);
    assert_eq!(first.iter().filter(|d| *d == "-1").count(), 7, "{first:?}");
    assert_eq!(first.iter().filter(|d| **d == later).count(), 7, "{first:?}");
    // Once the short deadlines pass, every node deletes those keys itself: 14 keys remain.
    assert!(
        eventually(Duration::from_secs(15), || {
            nodes.iter().all(|node| redis(node.redis_port, &["DBSIZE"]).as_deref() == Some("14"))
        }),
        "{:?}",
        nodes.iter().map(|n| redis(n.redis_port, &["DBSIZE"])).collect::<Vec<_>>()
    );
    for node in &nodes {
        assert!(info_field(node.redis_port, "expired_keys") > 0);
    }
}

/// A flush on one node empties its database on every node, whichever node took the writes;
/// other databases are untouched, a write made after the flush (on another node) survives it
/// everywhere, and nothing flushed comes back once repair has compared the replicas.
#[test]
fn a_flush_on_one_node_empties_the_database_everywhere_and_later_writes_survive() {
    let nodes = three_nodes(&["--repair-interval-secs", "1"]);
    let port = |i: usize| nodes[i].redis_port;
    let in_db =
        |i: usize, db: &str, args: &[&str]| redis(port(i), &[&["-n", db][..], args].concat());
    for n in 0..40 {
        assert_eq!(in_db(0, "0", &["SET", &format!("k{n}"), "v"]).as_deref(), Some("OK"));
        assert_eq!(in_db(2, "2", &["SET", &format!("k{n}"), "v"]).as_deref(), Some("OK"));
    }
    let sizes = |db: &str| -> Vec<String> {
        (0..3).map(|i| in_db(i, db, &["DBSIZE"]).unwrap_or_default()).collect()
    };
    assert!(
        eventually(Duration::from_secs(10), || sizes("0") == ["40"; 3] && sizes("2") == ["40"; 3])
    );

    // Node 1 flushes database 2, which node 2 wrote.
    assert_eq!(in_db(1, "2", &["FLUSHDB"]).as_deref(), Some("OK"));
    assert_eq!(in_db(1, "2", &["DBSIZE"]).as_deref(), Some("0"), "at once on the flushing node");
    assert!(
        eventually(Duration::from_secs(10), || sizes("2") == ["0"; 3]),
        "database 2 on every node: {:?}",
        sizes("2")
    );
    assert_eq!(sizes("0"), ["40"; 3], "database 0 untouched");

    // Written after the flush, on another node: kept everywhere. A big set's changes travel
    // as deltas; an SREM's delta carries the set's stamp, so no replica takes it for a state
    // from before the flush.
    assert_eq!(in_db(2, "2", &["SET", "after", "yes"]).as_deref(), Some("OK"));
    let members: Vec<String> = (0..100).map(|m| format!("m{m}")).collect();
    let sadd: Vec<&str> =
        ["SADD", "big"].into_iter().chain(members.iter().map(String::as_str)).collect();
    assert_eq!(in_db(2, "2", &sadd).as_deref(), Some("100"));
    assert!(eventually(Duration::from_secs(10), || {
        (0..3).all(|i| in_db(i, "2", &["SCARD", "big"]).as_deref() == Some("100"))
    }));
    assert_eq!(in_db(2, "2", &["SREM", "big", "m5"]).as_deref(), Some("1"));
    assert!(eventually(Duration::from_secs(10), || {
        (0..3).all(|i| {
            in_db(i, "2", &["GET", "after"]).as_deref() == Some("yes")
                && in_db(i, "2", &["SCARD", "big"]).as_deref() == Some("99")
        })
    }));

    // FLUSHALL from node 0; then a few repair rounds: nothing comes back.
    assert_eq!(in_db(0, "0", &["FLUSHALL"]).as_deref(), Some("OK"));
    assert!(
        eventually(Duration::from_secs(10), || sizes("0") == ["0"; 3] && sizes("2") == ["0"; 3]),
        "{:?} {:?}",
        sizes("0"),
        sizes("2")
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!((sizes("0"), sizes("2")), (vec!["0".to_owned(); 3], vec!["0".to_owned(); 3]));
    for i in 0..3 {
        assert_eq!(in_db(i, "2", &["GET", "after"]).as_deref(), Some(""), "node {i}");
        assert_eq!(in_db(i, "2", &["SCARD", "big"]).as_deref(), Some("0"), "node {i}");
    }
}

/// RENAME, COPY, MSETNX and INCRBYFLOAT over keys spread across three nodes (each key on one
/// node, `--replication 1:1`), sent through any node: the moves read and write through the
/// owners, whichever nodes they are, and every node then reads the result.
#[test]
fn moves_and_multi_key_writes_work_across_nodes() {
    let nodes = three_nodes(&["--replication", "1:1"]);
    let port = |i: usize| nodes[i % 3].redis_port;
    // (Links to the other nodes' actors connect within moments of the start.)
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..20 {
        let (src, dst, value) = (format!("src{i}"), format!("dst{i}"), format!("v{i}"));
        assert_eq!(redis(port(i), &["SET", &src, &value]).as_deref(), Some("OK"));
        assert_eq!(redis(port(i + 1), &["RENAME", &src, &dst]).as_deref(), Some("OK"), "{src}");
        assert_eq!(redis(port(i + 2), &["GET", &dst]).as_deref(), Some(value.as_str()));
        assert_eq!(redis(port(i), &["EXISTS", &src]).as_deref(), Some("0"));
        assert_eq!(redis(port(i + 1), &["COPY", &dst, &src]).as_deref(), Some("1"));
        assert_eq!(redis(port(i + 2), &["GET", &src]).as_deref(), Some(value.as_str()));
    }
    assert_eq!(redis(port(0), &["SADD", "set", "a", "b", "c"]).as_deref(), Some("3"));
    assert_eq!(redis(port(1), &["EXPIRE", "set", "1000"]).as_deref(), Some("1"));
    assert_eq!(redis(port(2), &["RENAMENX", "set", "moved"]).as_deref(), Some("1"));
    assert_eq!(redis(port(0), &["SCARD", "moved"]).as_deref(), Some("3"));
    let ttl: i64 = redis(port(1), &["TTL", "moved"]).unwrap().parse().unwrap();
    assert!((990..=1000).contains(&ttl), "the deadline moved with the key: {ttl}");
    let pairs: Vec<String> = (0..10).flat_map(|i| [format!("m{i}"), format!("x{i}")]).collect();
    let mut msetnx = vec!["MSETNX"];
    msetnx.extend(pairs.iter().map(String::as_str));
    assert_eq!(redis(port(1), &msetnx).as_deref(), Some("1"));
    assert_eq!(redis(port(2), &["MSETNX", "m9", "y", "fresh", "z"]).as_deref(), Some("0"));
    assert_eq!(redis(port(0), &["EXISTS", "fresh"]).as_deref(), Some("0"));
    assert_eq!(redis(port(0), &["MGET", "m0", "m5", "m9"]).as_deref(), Some("x0\nx5\nx9"));
    assert_eq!(redis(port(0), &["INCRBYFLOAT", "f", "1.5"]).as_deref(), Some("1.5"));
    assert_eq!(redis(port(1), &["INCRBYFLOAT", "f", "1.5"]).as_deref(), Some("3"));
    assert_eq!(redis(port(2), &["GET", "f"]).as_deref(), Some("3"));
}

/// A field of `INFO cluster` (the failure detector's view) on the node at `port`.
fn cluster_field(port: u16, field: &str) -> Option<u64> {
    let info = redis(port, &["INFO", "cluster"])?;
    info.lines().find_map(|line| line.strip_prefix(field)?.strip_prefix(':')?.trim().parse().ok())
}

#[test]
fn a_node_killed_outright_is_declared_down_and_comes_back_alive_as_a_newer_life() {
    let mut taken = Vec::new();
    let mut port = || {
        let p = free_ports(&taken);
        taken.push(p);
        p
    };
    let ports: Vec<(u16, u16, u16)> = (0..3).map(|_| (port(), port(), port())).collect();
    // 100 ms probes, 500 ms of suspicion: a failure is declared within about a second.
    let flags = ["--probe-period-ms", "100", "--suspect-timeout-ms", "500"];
    let start = |i: usize| {
        let peers: Vec<String> = (0..3)
            .filter(|&j| j != i)
            .map(|j| format!("127.0.0.1:{}/2/{}", ports[j].1, ports[j].2))
            .collect();
        let (redis, gossip, native) =
            (ports[i].0.to_string(), ports[i].1.to_string(), ports[i].2.to_string());
        let args = ["--port", &redis, "--gossip-port", &gossip, "--native-port", &native];
        start_node(&[&args[..], &flags].concat(), &peers)
    };
    let mut nodes: Vec<Node> = (0..3).map(start).collect();
    wait_up(&nodes);
    let alive = |node: &Node| cluster_field(node.redis_port, "anna_members_alive");
    assert!(
        eventually(Duration::from_secs(10), || nodes.iter().all(|n| alive(n) == Some(3))),
        "the members did not find each other: {:?}",
        redis(nodes[0].redis_port, &["INFO", "cluster"])
    );
    // `anna-cli cluster` names every member with its state, node id, life and addresses.
    let native = format!("127.0.0.1:{}", ports[0].2);
    let (ok, shown) = anna_cli(&native, &["cluster"]);
    assert!(ok, "{shown}");
    assert_eq!(shown.matches(" alive   for ").count(), 3, "{shown}");
    for (redis_port, gossip, native_port) in &ports {
        assert!(shown.contains(&format!("127.0.0.1:{gossip}")), "{shown}");
        assert!(shown.contains(&format!("native 127.0.0.1:{native_port}")), "{shown}");
        assert!(shown.contains(&format!("redis 127.0.0.1:{redis_port}")), "{shown}");
    }
    assert!(shown.contains("(answered)") && shown.contains("ring version"), "{shown}");

    // kill -9: no leave is sent; the survivors must find out by probing.
    let killed = Instant::now();
    nodes[2].process.0.kill().unwrap();
    let _ = nodes[2].process.0.wait();
    let down = |node: &Node| cluster_field(node.redis_port, "anna_members_down");
    let detected = eventually(Duration::from_secs(15), || {
        nodes[..2].iter().all(|n| down(n) == Some(1) && alive(n) == Some(2))
    });
    let took = killed.elapsed();
    assert!(detected, "not declared down: {:?}", redis(nodes[0].redis_port, &["INFO", "cluster"]));
    eprintln!("kill -9 declared down by both survivors after {took:?}");
    let (_, shown) = anna_cli(&native, &["cluster"]);
    assert_eq!(shown.matches(" down    for ").count(), 1, "{shown}");
    assert_eq!(shown.matches(" alive   for ").count(), 2, "{shown}");

    // Restarted on the same address it is a newer life, alive again everywhere.
    nodes[2] = start(2);
    wait_up(&nodes[2..]);
    assert!(
        eventually(Duration::from_secs(10), || nodes.iter().all(|n| alive(n) == Some(3))),
        "the restarted node was not admitted: {:?}",
        redis(nodes[0].redis_port, &["INFO", "cluster"])
    );
    assert_eq!(down(&nodes[0]), Some(0));
}
