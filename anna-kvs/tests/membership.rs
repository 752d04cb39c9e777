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
