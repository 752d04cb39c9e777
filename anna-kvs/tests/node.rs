//! Real nodes on real ZeroMQ sockets: one node with several actors converges through inproc
//! gossip; two nodes in two OS processes converge over TCP on 127.0.0.1; garbage on the gossip
//! port is counted and dropped while the node keeps serving.

mod common;

use common::eventually;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use lattice_core::{Lww, Stamp};

use anna_kvs::{Eventual, Factor, Node, NodeConfig, PeerSpec, Replication, Request, Response};

fn value(v: &str) -> Eventual {
    Lww::new(Stamp::default(), Some(Bytes::copy_from_slice(v.as_bytes())))
}

fn read(v: &Option<Eventual>) -> Option<String> {
    v.as_ref()
        .and_then(|l| l.value().cloned().flatten())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn config(threads: usize, replication: Replication) -> NodeConfig {
    NodeConfig {
        threads,
        pin_threads: false,
        epoch: Duration::from_millis(20),
        replication,
        ..NodeConfig::default()
    }
}

#[test]
fn one_node_with_several_actors_converges() {
    let node: Node<Eventual> = Node::start(config(3, Replication::FULL)).unwrap();
    let mut handle = node.handle();
    handle.put("greeting", value("hello"), true).unwrap();
    handle.put("greeting", value("hello again"), true).unwrap();
    // Every actor is a replica under full replication; each must see the last write.
    for thread in 0..3 {
        let converged = eventually(Duration::from_secs(5), || {
            let response =
                handle.request_at(thread, Request::Get { key: Bytes::from_static(b"greeting") });
            matches!(&response, Ok(Response::Value(v)) if read(v).as_deref() == Some("hello again"))
        });
        assert!(converged, "actor {thread} never saw the write");
    }
    handle.delete("greeting").unwrap();
    for thread in 0..3 {
        let gone = eventually(Duration::from_secs(5), || {
            matches!(
                handle.request_at(thread, Request::Get { key: Bytes::from_static(b"greeting") }),
                Ok(Response::Value(None))
            )
        });
        assert!(gone, "actor {thread} still shows a deleted key");
    }
    let reports = node.reports();
    assert_eq!(reports.len(), 3);
    assert!(reports.iter().map(|r| r.stats.gossip_out).sum::<u64>() > 0);
    node.shutdown();
}

#[test]
fn requests_to_non_owners_are_forwarded_not_answered_wrongly() {
    let node: Node<Eventual> = Node::start(config(4, Replication::ONE)).unwrap();
    let mut handle = node.handle();
    for i in 0..50 {
        handle.put(format!("k{i}"), value(&format!("v{i}")), true).unwrap();
    }
    // Ask every actor for every key: non-owners forward, so every answer is right at once.
    for thread in 0..4 {
        for i in 0..50 {
            let response = handle
                .request_at(thread, Request::Get { key: Bytes::from(format!("k{i}")) })
                .unwrap();
            match response {
                Response::Value(v) => assert_eq!(read(&v), Some(format!("v{i}"))),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let forwarded = eventually(Duration::from_secs(2), || {
        node.reports().iter().map(|r| r.stats.forwarded).sum::<u64>() > 0
    });
    assert!(forwarded, "no request was forwarded: {:?}", node.reports());
    node.shutdown();
}

#[test]
fn oversized_keys_and_values_are_refused() {
    let mut cfg = config(1, Replication::ONE);
    cfg.max_key_bytes = 8;
    cfg.max_value_bytes = 64;
    let node: Node<Eventual> = Node::start(cfg).unwrap();
    let mut handle = node.handle();
    assert!(matches!(
        handle.get("a-key-longer-than-8"),
        Err(anna_kvs::RequestError::TooLarge { .. })
    ));
    assert!(matches!(
        handle.put("k", value(&"x".repeat(100)), true),
        Err(anna_kvs::RequestError::TooLarge { .. })
    ));
    handle.put("k", value("small"), true).unwrap();
    assert_eq!(read(&handle.get("k").unwrap()), Some("small".into()));
}

/// Two consecutive free TCP ports (actor `t` of a node listens on `port + t`).
fn free_port_pair() -> u16 {
    loop {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < 65_000 && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

fn cluster_config(me: u16, peer: u16) -> NodeConfig {
    NodeConfig {
        gossip_addr: Some(format!("127.0.0.1:{me}")),
        peers: vec![PeerSpec { gossip_addr: format!("127.0.0.1:{peer}"), threads: 2 }],
        ..config(2, Replication::new(Factor::Full, Factor::Count(1)))
    }
}

/// The second process of `two_processes_converge_over_tcp` (runs only when that test starts
/// this binary with `ANNA_TEST_PEER` set).
#[test]
fn peer_process_entry() {
    let Ok(ports) = std::env::var("ANNA_TEST_PEER") else { return };
    let (me, peer) = ports.split_once(',').unwrap();
    let node: Node<Eventual> =
        Node::start(cluster_config(me.parse().unwrap(), peer.parse().unwrap())).unwrap();
    let mut handle = node.handle();
    handle.put("written-in-b", value("from b"), true).unwrap();
    println!("READY");
    let seen = eventually(Duration::from_secs(20), || {
        read(&handle.get("written-in-a").unwrap()).is_some()
    });
    println!(
        "SAW {}",
        if seen { read(&handle.get("written-in-a").unwrap()).unwrap() } else { "nothing".into() }
    );
    // Stay up until the parent closes stdin, so it can read from us too.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    node.shutdown();
}

#[test]
fn two_processes_converge_over_tcp() {
    let port_a = free_port_pair();
    let port_b = loop {
        let p = free_port_pair();
        if p.abs_diff(port_a) > 1 {
            break p;
        }
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "peer_process_entry", "--nocapture", "--test-threads=1"])
        .env("ANNA_TEST_PEER", format!("{port_b},{port_a}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let node: Node<Eventual> = Node::start(cluster_config(port_a, port_b)).unwrap();
    let mut handle = node.handle();
    handle.put("written-in-a", value("from a"), true).unwrap();

    let saw_b = eventually(Duration::from_secs(20), || {
        read(&handle.get("written-in-b").unwrap()).as_deref() == Some("from b")
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut transcript = String::new();
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap_or(0) > 0 {
        transcript.push_str(&line);
        if line.starts_with("SAW") {
            break;
        }
        line.clear();
    }
    drop(child.stdin.take().map(|mut stdin| stdin.write_all(b"bye\n")));
    let status = child.wait().unwrap();
    assert!(saw_b, "node A never saw B's write; B said: {transcript}");
    assert!(transcript.contains("SAW from a"), "node B never saw A's write: {transcript}");
    assert!(status.success());
    // Reports are published once per epoch.
    let counted = eventually(Duration::from_secs(2), || {
        node.reports().iter().map(|r| r.bytes_in).sum::<u64>() > 0
    });
    assert!(counted, "no bytes counted from TCP: {:?}", node.reports());
    node.shutdown();
}

#[test]
fn garbage_on_the_gossip_port_is_counted_and_dropped() {
    let port = free_port_pair();
    let cfg = NodeConfig {
        gossip_addr: Some(format!("127.0.0.1:{port}")),
        ..config(1, Replication::ONE)
    };
    let node: Node<Eventual> = Node::start(cfg).unwrap();
    let context = zmq::Context::new();
    let push = context.socket(zmq::PUSH).unwrap();
    push.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();

    // No secret: the open key authenticates the envelope, and the other checks still apply.
    let key = anna_kvs::wire::ClusterKey::open();
    let origin = |node, thread| anna_kvs::wire::Origin {
        actor: anna_kvs::ActorId::new(node, thread),
        incarnation: 1,
        to: anna_kvs::ActorId::new(0, 0),
    };
    let valid_envelope_bad_sender = anna_kvs::wire::encode::<Eventual>(
        &anna_kvs::PeerMessage::Ack { from: anna_kvs::ActorId::new(9, 9), seq: 1, sent_to_you: 0 },
        origin(9, 9),
        &key,
    )
    .unwrap();
    let mut wrong_version = valid_envelope_bad_sender.clone();
    wrong_version[4] = 42;
    let wrong_type = anna_kvs::wire::encode::<anna_kvs::Counter>(
        &anna_kvs::PeerMessage::Ack { from: anna_kvs::ActorId::new(0, 0), seq: 1, sent_to_you: 0 },
        origin(0, 0),
        &key,
    )
    .unwrap();
    let other_cluster = anna_kvs::wire::encode::<Eventual>(
        &anna_kvs::PeerMessage::Ack { from: anna_kvs::ActorId::new(0, 0), seq: 1, sent_to_you: 0 },
        origin(0, 0),
        &anna_kvs::wire::ClusterKey::derive(b"another cluster"),
    )
    .unwrap();
    let bad: Vec<Vec<u8>> = vec![
        vec![],
        b"hello".to_vec(),
        valid_envelope_bad_sender[..valid_envelope_bad_sender.len() - 1].to_vec(),
        wrong_version,
        wrong_type,
        valid_envelope_bad_sender.clone(),
        other_cluster,
        (0..=255).collect(),
    ];
    for message in &bad {
        push.send(&message[..], 0).unwrap();
    }
    let counted = eventually(Duration::from_secs(5), || {
        node.reports().iter().map(|r| r.bad_messages).sum::<u64>() >= bad.len() as u64
    });
    assert!(counted, "bad messages not counted: {:?}", node.reports());
    let sum = |f: fn(&anna_kvs::ActorReport) -> u64| node.reports().iter().map(f).sum::<u64>();
    // The truncated one and the other cluster's fail authentication; one names a sender that
    // is not in the cluster; the rest are unreadable.
    assert_eq!(sum(|r| r.refused_unauthenticated), 2, "{:?}", node.reports());
    assert_eq!(sum(|r| r.refused_unknown_sender), 1, "{:?}", node.reports());
    assert_eq!(sum(|r| r.refused_malformed), bad.len() as u64 - 3, "{:?}", node.reports());
    // An oversized frame is refused by libzmq itself (ZMQ_MAXMSGSIZE): nothing is buffered.
    let huge = vec![0_u8; anna_kvs::wire::MAX_MESSAGE_BYTES + 1];
    let _ = push.send(&huge[..], zmq::DONTWAIT);
    let mut handle = node.handle();
    handle.put("still", value("serving"), true).unwrap();
    assert_eq!(read(&handle.get("still").unwrap()), Some("serving".into()));
    node.shutdown();
}

#[test]
fn level_sessions_run_against_a_real_node() {
    use anna_kvs::levels::{Causal, CausalSession, ItemCutSession, PramSession, Transactional};
    // Causal: concurrent writes from two sessions become siblings; a write after reading both
    // supersedes them.
    let node: Node<Causal> = Node::start(config(2, Replication::FULL)).unwrap();
    let (mut h1, mut h2) = (node.handle(), node.handle());
    let (mut alice, mut bob) = (CausalSession::new(1), CausalSession::new(2));
    let k = Bytes::from_static(b"doc");
    alice.put(&mut h1, &k, Some(Bytes::from_static(b"alice"))).unwrap();
    bob.put(&mut h2, &k, Some(Bytes::from_static(b"bob"))).unwrap();
    let both = eventually(Duration::from_secs(5), || {
        alice.get(&mut h1, &k).unwrap().is_some_and(|v| v.len() == 2)
    });
    assert!(both, "concurrent writes did not both survive as siblings");
    alice.put(&mut h1, &k, Some(Bytes::from_static(b"merged"))).unwrap();
    let resolved = eventually(Duration::from_secs(5), || {
        bob.get(&mut h2, &k).unwrap().is_some_and(|v| {
            v.values().collect::<Vec<_>>() == [&Some(Bytes::from_static(b"merged"))]
        })
    });
    assert!(resolved, "a write after reading both siblings must supersede them");
    node.shutdown();

    // Item-cut isolation: buffered writes are invisible until commit; repeated reads agree.
    let node: Node<Transactional> = Node::start(config(2, Replication::FULL)).unwrap();
    let (mut h1, mut h2) = (node.handle(), node.handle());
    let (mut writer, mut reader) = (ItemCutSession::new(1), ItemCutSession::new(2));
    let k = Bytes::from_static(b"balance");
    writer.begin(anna_kvs::levels::Store::now(&h1));
    writer.write(&k, Bytes::from_static(b"100"));
    reader.begin(anna_kvs::levels::Store::now(&h2));
    assert_eq!(reader.read(&mut h2, &k).unwrap(), None, "no dirty read before commit");
    writer.commit(&mut h1).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        reader.read(&mut h2, &k).unwrap(),
        None,
        "a transaction's repeated read agrees with its first"
    );
    reader.commit(&mut h2).unwrap();
    reader.begin(anna_kvs::levels::Store::now(&h2));
    let committed = eventually(Duration::from_secs(5), || {
        reader.begin(anna_kvs::levels::Store::now(&h2));
        reader.read(&mut h2, &k).unwrap().as_deref() == Some(&b"100"[..])
    });
    assert!(committed, "the committed write never became visible");
    node.shutdown();

    // PRAM over the eventual store: a session reads its own write at once, from any actor.
    let node: Node<Eventual> = Node::start(config(3, Replication::FULL)).unwrap();
    let mut handle = node.handle();
    let mut session = PramSession::new(7);
    session.put(&mut handle, &Bytes::from_static(b"x"), Bytes::from_static(b"mine")).unwrap();
    let seen = session.get(&mut handle, &Bytes::from_static(b"x")).unwrap();
    assert_eq!(anna_kvs::levels::lww_bytes(seen.as_ref()).as_deref(), Some(&b"mine"[..]));
    node.shutdown();
}
