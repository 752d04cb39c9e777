//! The failure detector (SWIM, by foca) on real UDP sockets between real nodes: members find
//! each other through their seeds, a graceful stop is seen as a leave at once, a restarted
//! node comes back as a newer life, and a node without the cluster's secret is never admitted.

mod common;

use std::time::{Duration, Instant};

use anna_kvs::auth::Secret;
use anna_kvs::{
    Eventual, MemberState, MembershipConfig, MembershipReport, Node, NodeConfig, PeerSpec,
};
use common::{eventually, free_port};

/// Fast probes so the test runs in seconds: 100 ms periods, 400 ms of suspicion.
fn fast() -> MembershipConfig {
    MembershipConfig {
        probe_period: Duration::from_millis(100),
        probe_rtt: Duration::from_millis(50),
        announce_period: Duration::from_millis(200),
        ..MembershipConfig::default()
    }
}

fn config(me: u16, peers: &[u16], secret: Option<&str>) -> NodeConfig {
    NodeConfig {
        threads: 1,
        epoch: Duration::from_millis(20),
        gossip_addr: Some(format!("127.0.0.1:{me}")),
        peers: peers
            .iter()
            .map(|p| PeerSpec { gossip_addr: format!("127.0.0.1:{p}"), threads: 1 })
            .collect(),
        cluster_secret: secret.map(Secret::new),
        membership: fast(),
        ..NodeConfig::default()
    }
}

fn start(me: u16, peers: &[u16], secret: Option<&str>) -> Node<Eventual> {
    Node::start(config(me, peers, secret)).unwrap()
}

fn report(node: &Node<Eventual>) -> MembershipReport {
    node.membership().expect("a node with a gossip address runs the detector")
}

/// The state node `node` gives the member gossiping at `port` (None: not known).
fn state_of(node: &Node<Eventual>, port: u16) -> Option<MemberState> {
    let addr = format!("127.0.0.1:{port}");
    report(node).members.into_iter().find(|m| m.id.gossip == addr).map(|m| m.state)
}

fn free_ports(n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < n {
        let port = free_port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

#[test]
fn members_find_each_other_see_a_leave_at_once_and_a_restart_as_a_newer_life() {
    let ports = free_ports(3);
    let others = |i: usize| -> Vec<u16> {
        ports.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, &p)| p).collect()
    };
    // Suspicion takes 60 s here: only a leave can make a member down within the test.
    let patient = |me: usize| {
        let mut config = config(ports[me], &others(me), None);
        config.membership.suspect_timeout = Some(Duration::from_secs(60));
        Node::<Eventual>::start(config).unwrap()
    };
    let a = patient(0);
    let b = patient(1);
    let c = patient(2);
    let nodes = [&a, &b, &c];
    let all_alive = eventually(Duration::from_secs(10), || {
        nodes.iter().all(|n| report(n).count(MemberState::Alive) == 3)
    });
    assert!(all_alive, "{:#?}", nodes.map(report));
    // Each member is known by its real identity: node id, life, actor count.
    let (c_id, c_life) = c.identity();
    let seen = report(&a).members.into_iter().find(|m| m.id.node_id == c_id).unwrap();
    assert_eq!((seen.id.incarnation, seen.id.threads), (c_life, 1));
    assert!(report(&a).members.iter().all(|m| !m.id.is_seed()), "a seed placeholder is left");
    assert!(report(&a).members[0].me && report(&a).members[0].id.node_id == a.identity().0);

    // A graceful stop is a leave: seen long before the suspicion timeout could run out.
    let stopped = Instant::now();
    c.shutdown();
    let left = eventually(Duration::from_secs(5), || {
        state_of(&a, ports[2]) == Some(MemberState::Down)
            && state_of(&b, ports[2]) == Some(MemberState::Down)
    });
    let took = stopped.elapsed();
    assert!(left, "the leave was not seen: {:#?}", report(&a));
    assert!(report(&a).downs >= 1);
    eprintln!("leave seen by both peers {took:?} after the stop began");

    // The same address comes back (here a new node: no data directory) and wins its address.
    let c = patient(2);
    let back = eventually(Duration::from_secs(10), || {
        [&a, &b].iter().all(|n| {
            report(n).members.iter().any(|m| {
                m.id.gossip == format!("127.0.0.1:{}", ports[2])
                    && m.id.node_id == c.identity().0
                    && m.state == MemberState::Alive
            })
        })
    });
    assert!(back, "the restarted node was not admitted: {:#?}", report(&a));
    assert_eq!(report(&a).count(MemberState::Alive), 3);
    assert_eq!(report(&a).members.len(), 3, "one entry per address, whatever the lives");
}

#[test]
fn a_node_without_the_cluster_secret_is_never_admitted() {
    let ports = free_ports(3);
    let a = start(ports[0], &[ports[1], ports[2]], Some("right secret"));
    let b = start(ports[1], &[ports[0], ports[2]], Some("right secret"));
    // The intruder lists both as seeds and announces itself to them all the time.
    let intruder = start(ports[2], &[ports[0], ports[1]], Some("wrong secret"));
    let admitted = eventually(Duration::from_secs(10), || {
        report(&a).count(MemberState::Alive) == 2 && report(&b).count(MemberState::Alive) == 2
    });
    assert!(admitted, "the two members did not find each other: {:#?}", report(&a));
    let refused = eventually(Duration::from_secs(10), || {
        report(&a).refused_unauthenticated > 0 && report(&b).refused_unauthenticated > 0
    });
    assert!(refused, "the intruder's datagrams were not refused: {:#?}", report(&a));
    std::thread::sleep(Duration::from_millis(500));
    for node in [&a, &b] {
        assert_ne!(state_of(node, ports[2]), Some(MemberState::Alive), "{:#?}", report(node));
        assert!(report(node).members.iter().all(|m| m.id.node_id != intruder.identity().0));
    }
    assert_eq!(report(&intruder).count(MemberState::Alive), 1, "only itself");
}

fn lww(text: &str) -> Eventual {
    lattice_core::Lww::new(
        lattice_core::Stamp::default(),
        Some(bytes::Bytes::copy_from_slice(text.as_bytes())),
    )
}

fn value_of(node: &Node<Eventual>, key: &str) -> Option<String> {
    match node.handle().get(key.to_owned()) {
        Ok(Some(v)) => {
            v.value().cloned().flatten().map(|b| String::from_utf8_lossy(&b).into_owned())
        }
        _ => None,
    }
}

/// Every node holds every key (one actor each): what a cluster that grows and shrinks needs.
fn dynamic(me: u16, join: Option<u16>) -> NodeConfig {
    use anna_kvs::{Factor, Replication};
    NodeConfig {
        threads: 2,
        replication: Replication::new(Factor::Full, Factor::Count(1)),
        join: join.map(|p| format!("127.0.0.1:{p}")),
        ..config(me, &[], None)
    }
}

#[test]
fn nodes_join_a_running_cluster_catch_up_and_one_leaves_for_good() {
    let ports = free_ports(3);
    let a: Node<Eventual> = Node::start(dynamic(ports[0], None)).unwrap();
    for i in 0..300 {
        a.handle().put(format!("before-{i}"), lww(&format!("a{i}")), true).unwrap();
    }
    // B joins through A: it takes the next slot, and both route with the same ring.
    let b: Node<Eventual> = Node::start(dynamic(ports[1], Some(ports[0]))).unwrap();
    assert_eq!((a.index(), b.index()), (0, 1));
    let same_ring = |nodes: &[&Node<Eventual>], members: usize| {
        eventually(Duration::from_secs(10), || {
            nodes.iter().all(|n| {
                n.topology().members() == members
                    && n.topology().version() == nodes[0].topology().version()
            })
        })
    };
    assert!(same_ring(&[&a, &b], 2), "A: {:?}, B: {:?}", a.topology(), b.topology());
    // B serves every key written before it joined (read through A until it has caught up).
    for i in 0..300 {
        assert_eq!(value_of(&b, &format!("before-{i}")), Some(format!("a{i}")), "key {i}");
    }
    for i in 0..100 {
        b.handle().put(format!("on-b-{i}"), lww(&format!("b{i}")), true).unwrap();
    }
    // C joins through B (any member will do).
    let c: Node<Eventual> = Node::start(dynamic(ports[2], Some(ports[1]))).unwrap();
    assert_eq!(c.index(), 2);
    assert!(same_ring(&[&a, &b, &c], 3), "A: {:?}, C: {:?}", a.topology(), c.topology());
    for node in [&a, &c] {
        let all = eventually(Duration::from_secs(10), || {
            (0..100).all(|i| value_of(node, &format!("on-b-{i}")) == Some(format!("b{i}")))
        });
        assert!(all, "B's writes did not reach node {}", node.index());
    }
    // Repair fills the joiners in without reads: their counts match A's.
    let keys = |n: &Node<Eventual>| n.reports().iter().map(|r| r.stats.keys).sum::<u64>();
    assert!(
        eventually(Duration::from_secs(20), || keys(&b) == 400 && keys(&c) == 400),
        "keys: A {}, B {}, C {}",
        keys(&a),
        keys(&b),
        keys(&c)
    );
    // B leaves for good: its last writes reach the others first, then both drop it.
    for i in 0..50 {
        b.handle().put(format!("last-on-b-{i}"), lww("last"), true).unwrap();
    }
    b.handle().prepare_leave().unwrap();
    let b_slot = b.index();
    b.shutdown();
    assert!(same_ring(&[&a, &c], 2), "A: {:?}", a.topology());
    assert_eq!(a.topology().threads(b_slot), 0, "B's slot is a hole");
    for node in [&a, &c] {
        for i in 0..50 {
            assert_eq!(value_of(node, &format!("last-on-b-{i}")).as_deref(), Some("last"));
        }
        assert_eq!(keys(node), 450);
    }
}

#[test]
fn a_cluster_with_one_copy_of_each_key_refuses_joins_and_leaves() {
    let ports = free_ports(2);
    let counted = |me: u16, join: Option<u16>| NodeConfig {
        replication: anna_kvs::Replication::ONE,
        ..dynamic(me, join)
    };
    let a: Node<Eventual> = Node::start(counted(ports[0], None)).unwrap();
    let error = Node::<Eventual>::start(counted(ports[1], Some(ports[0]))).unwrap_err();
    assert!(error.to_string().contains("at least two nodes"), "{error}");
    assert!(a.handle().prepare_leave().unwrap_err().contains("at least two nodes"));
    // Alone in a cluster that may change, the last member may not leave either.
    drop(a);
    let alone: Node<Eventual> = Node::start(dynamic(ports[0], None)).unwrap();
    assert!(alone.handle().prepare_leave().unwrap_err().contains("last member"));
}

/// Two copies of each key on three nodes: a join moves ranges between existing nodes.
fn two_copies(me: u16, join: Option<u16>) -> NodeConfig {
    use anna_kvs::{Factor, Replication};
    NodeConfig {
        replication: Replication::new(Factor::Count(2), Factor::Count(1)),
        ..dynamic(me, join)
    }
}

fn held(node: &Node<Eventual>) -> u64 {
    node.reports().iter().map(|r| r.stats.keys).sum()
}

#[test]
fn with_two_copies_of_each_key_ranges_move_on_join_and_leave_and_nothing_is_lost() {
    let ports = free_ports(3);
    let a: Node<Eventual> = Node::start(two_copies(ports[0], None)).unwrap();
    let b: Node<Eventual> = Node::start(two_copies(ports[1], Some(ports[0]))).unwrap();
    let keys: Vec<String> = (0..600).map(|i| format!("key-{i}")).collect();
    for key in &keys {
        a.handle().put(key.clone(), lww(key), true).unwrap();
    }
    // Two nodes, two copies: both hold everything.
    assert!(eventually(Duration::from_secs(20), || held(&a) == 600 && held(&b) == 600));
    // A third node joins: each key now lives on two of the three, so A and B hand over what
    // they no longer own, and the newcomer catches up on its ranges.
    let c: Node<Eventual> = Node::start(two_copies(ports[2], Some(ports[1]))).unwrap();
    let spread = eventually(Duration::from_secs(30), || {
        held(&a) + held(&b) + held(&c) == 1200 && [&a, &b, &c].iter().all(|n| held(n) < 600)
    });
    assert!(spread, "keys held: {} {} {}", held(&a), held(&b), held(&c));
    let handed: u64 = [&a, &b].iter().flat_map(|n| n.reports()).map(|r| r.stats.handed_off).sum();
    assert!(handed > 0, "nobody handed a key over");
    for node in [&a, &b, &c] {
        for key in &keys {
            assert_eq!(value_of(node, key).as_deref(), Some(key.as_str()), "{key}");
        }
    }
    // B leaves for good: A and C own everything again, and have it.
    b.handle().prepare_leave().unwrap();
    b.shutdown();
    let back = eventually(Duration::from_secs(30), || held(&a) == 600 && held(&c) == 600);
    assert!(back, "keys held after the leave: A {}, C {}", held(&a), held(&c));
    for node in [&a, &c] {
        for key in &keys {
            assert_eq!(value_of(node, key).as_deref(), Some(key.as_str()), "{key}");
        }
    }
}

#[test]
fn a_member_down_past_the_grace_period_leaves_the_ring_and_its_keys_get_their_copies_back() {
    let ports = free_ports(3);
    let with_grace = |me: usize, join: Option<u16>| {
        let mut config = two_copies(ports[me], join);
        config.membership.remove_down_after = Some(Duration::from_secs(1));
        config.membership.suspect_timeout = Some(Duration::from_millis(300));
        Node::<Eventual>::start(config).unwrap()
    };
    let a = with_grace(0, None);
    let b = with_grace(1, Some(ports[0]));
    let c = with_grace(2, Some(ports[1]));
    assert!(eventually(Duration::from_secs(10), || a.topology().members() == 3));
    let keys: Vec<String> = (0..600).map(|i| format!("key-{i}")).collect();
    for key in &keys {
        b.handle().put(key.clone(), lww(key), true).unwrap();
    }
    assert!(eventually(Duration::from_secs(20), || held(&a) + held(&b) + held(&c) == 1200));
    // C stops without leaving (a crash, for the ring): after the grace period A and B take
    // its ranges and copy them from each other.
    let gone = c.index();
    let stopped = std::time::Instant::now();
    drop(c);
    let two = eventually(Duration::from_secs(15), || {
        [&a, &b].iter().all(|n| n.topology().members() == 2 && n.topology().threads(gone) == 0)
    });
    assert!(two, "C stayed in the ring: {:?}", a.topology());
    let replicated = eventually(Duration::from_secs(30), || held(&a) == 600 && held(&b) == 600);
    assert!(replicated, "keys held: A {}, B {}", held(&a), held(&b));
    eprintln!("a failed member's keys back at two copies {:?} after it stopped", stopped.elapsed());
    for node in [&a, &b] {
        for key in &keys {
            assert_eq!(value_of(node, key).as_deref(), Some(key.as_str()), "{key}");
        }
    }
}

#[test]
fn a_joined_node_restarted_on_its_directory_keeps_its_slot() {
    let ports = free_ports(3);
    let dir = std::env::temp_dir().join(format!("anna-slot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let with_dir = |me: u16, join: u16| {
        let mut config = dynamic(me, Some(join));
        config.persistence =
            anna_kvs::Persistence { dir: Some(dir.clone()), ..anna_kvs::Persistence::default() };
        Node::<Eventual>::start(config).unwrap()
    };
    let a: Node<Eventual> = Node::start(dynamic(ports[0], None)).unwrap();
    let b = with_dir(ports[1], ports[0]);
    let c: Node<Eventual> = Node::start(dynamic(ports[2], Some(ports[1]))).unwrap();
    assert_eq!((b.index(), c.index()), (1, 2));
    assert!(eventually(Duration::from_secs(10), || a.topology().members() == 3));
    let version = a.topology().version();
    b.handle().put("kept".to_owned(), lww("yes"), true).unwrap();
    b.shutdown();
    let free = std::net::UdpSocket::bind(("127.0.0.1", ports[1]));
    assert!(free.is_ok(), "the membership port is still bound: {free:?}");
    drop(free);
    // Back on its directory (through another member): the same slot, so the same ring.
    let b = with_dir(ports[1], ports[2]);
    assert_eq!(b.index(), 1);
    assert!(eventually(Duration::from_secs(10), || {
        [&a, &b, &c].iter().all(|n| n.topology().version() == version)
    }));
    assert_eq!(value_of(&b, "kept").as_deref(), Some("yes"));
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}
