//! Three `anna-server` processes on 127.0.0.1 form one cluster (static peers, gossip over TCP):
//! a write through one node is read through the others after a few epochs; after `kill -9` of
//! one node the others keep serving every key, old and new.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    child: Child,
    redis_port: u16,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis(port: u16, args: &[&str]) -> Option<String> {
    let output =
        Command::new("redis-cli").args(["-p", &port.to_string()]).args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim_end().to_owned())
}

fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn three_anna_server_processes_replicate_and_survive_a_kill() {
    let mut taken = Vec::new();
    let mut gossip = Vec::new();
    let mut redis_ports = Vec::new();
    for _ in 0..3 {
        let g = free_ports(&taken);
        taken.push(g);
        gossip.push(g);
        let r = free_ports(&taken);
        taken.push(r);
        redis_ports.push(r);
    }
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            let peers: Vec<String> =
                (0..3).filter(|&j| j != i).map(|j| format!("127.0.0.1:{}", gossip[j])).collect();
            let child = Command::new(env!("CARGO_BIN_EXE_anna-server"))
                .args([
                    "--port",
                    &redis_ports[i].to_string(),
                    "--gossip-port",
                    &gossip[i].to_string(),
                ])
                .args(["--threads", "2", "--no-pin", "--epoch-ms", "20", "--log-level", "warn"])
                .args(["--peers", &peers.join(",")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start anna-server");
            Node { child, redis_port: redis_ports[i] }
        })
        .collect();
    for node in &nodes {
        assert!(
            eventually(Duration::from_secs(10), || redis(node.redis_port, &["PING"]).as_deref()
                == Some("PONG")),
            "node on {} did not come up",
            node.redis_port
        );
    }

    // Writes through node 0 are read through nodes 1 and 2.
    assert_eq!(redis(nodes[0].redis_port, &["SET", "city", "Berkeley"]).as_deref(), Some("OK"));
    assert_eq!(redis(nodes[0].redis_port, &["INCRBY", "hits", "5"]).as_deref(), Some("5"));
    assert_eq!(redis(nodes[1].redis_port, &["INCRBY", "hits", "3"]).as_deref(), Some("3"));
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
