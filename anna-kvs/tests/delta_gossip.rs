//! Delta-state gossip of big values, driven directly (two actors, an in-memory exchange that
//! can lose everything): a change to a big set travels as what it changed, a big whole state
//! travels in parts below the batch limit, and a peer that lost deltas is repaired with the
//! whole state once it is back.

use std::sync::Arc;

use bytes::Bytes;

use anna_kvs::actor::{GOSSIP_BATCH_BYTES, PART_BYTES};
use anna_kvs::redis::value::{RedisOp, RedisValue};
use anna_kvs::wire::{self, ClusterKey, MAX_MESSAGE_BYTES, Origin, entry_len};
use anna_kvs::{
    Actor, ActorConfig, ActorId, Input, Output, PeerMessage, Replication, Request, Topology,
};

const START: u64 = 1_000_000_000_000; // µs
const A: ActorId = ActorId::new(0, 0);
const B: ActorId = ActorId::new(1, 0);
const KEY: &str = "big";

type Value = RedisValue;

/// Two nodes of one actor each, every key on both.
struct Pair {
    a: Actor<Value>,
    b: Actor<Value>,
    now: u64,
    epoch_us: u64,
    /// Gossip batches delivered, with the encoded size of their entries.
    batches: Vec<usize>,
}

impl Pair {
    fn new(config: ActorConfig) -> Self {
        let topology = Arc::new(Topology::new(
            vec!["10.0.0.1:7000".into(), "10.0.0.2:7000".into()],
            vec![1, 1],
            Replication::FULL,
        ));
        let epoch_us = config.epoch_us;
        Self {
            a: Actor::new(A, Arc::clone(&topology), config.clone(), START),
            b: Actor::new(B, topology, config, START),
            now: START,
            epoch_us,
            batches: Vec::new(),
        }
    }

    /// `SADD KEY members…` on A.
    fn sadd(&mut self, members: impl IntoIterator<Item = String>) {
        let op = RedisOp::SAdd(members.into_iter().map(Bytes::from).collect());
        let request = Request::Apply { key: Bytes::from_static(KEY.as_bytes()), op };
        let mut out = Vec::new();
        self.a.handle(self.now, Input::Client { token: 0, request }, &mut out);
        assert!(
            out.iter().all(|o| matches!(o, Output::Reply { .. })),
            "a local write sends nothing before the epoch"
        );
    }

    /// Runs one epoch on both actors and delivers what they send, unless `connected` is false
    /// (then everything in both directions is lost). Returns the batches A sent to B.
    fn epoch(&mut self, connected: bool) -> Vec<usize> {
        self.now += self.epoch_us;
        let mut from_a = Vec::new();
        self.a.handle(self.now, Input::Tick, &mut from_a);
        let mut from_b = Vec::new();
        self.b.handle(self.now, Input::Tick, &mut from_b);
        let mut sent = Vec::new();
        // Deliver until quiet: B acknowledges A's batches, A takes B's acknowledgements.
        while connected && !(from_a.is_empty() && from_b.is_empty()) {
            let mut next_b = Vec::new();
            for output in from_a.drain(..) {
                if let Output::Send { to, message } = output {
                    assert_eq!(to, B);
                    if let PeerMessage::Gossip(gossip) = &message {
                        let bytes: usize =
                            gossip.updates.iter().map(|(k, v)| entry_len(k, v)).sum();
                        assert!(
                            bytes <= GOSSIP_BATCH_BYTES.max(PART_BYTES) + PART_BYTES,
                            "a batch of {bytes} bytes"
                        );
                        sent.push(bytes);
                    }
                    self.b.handle(
                        self.now,
                        Input::Peer(through_the_wire(A, B, &message)),
                        &mut next_b,
                    );
                }
            }
            let mut next_a = Vec::new();
            for output in from_b.drain(..).chain(next_b) {
                if let Output::Send { to, message } = output {
                    assert_eq!(to, A);
                    self.a.handle(
                        self.now,
                        Input::Peer(through_the_wire(B, A, &message)),
                        &mut next_a,
                    );
                }
            }
            from_a = next_a;
        }
        self.batches.extend(&sent);
        sent
    }

    fn members(actor: &Actor<Value>) -> usize {
        actor.peek(KEY.as_bytes()).map_or(0, |v| v.members().unwrap().len())
    }

    fn in_sync(&self) -> bool {
        self.a.peek(KEY.as_bytes()) == self.b.peek(KEY.as_bytes())
    }
}

/// The message as the receiver gets it from the network: encoded by the real codec (which
/// refuses a message past the limit) and decoded (which refuses one whose decoding would claim
/// too much memory; a set decodes into a few times its encoded size).
fn through_the_wire(
    from: ActorId,
    to: ActorId,
    message: &PeerMessage<Value>,
) -> PeerMessage<Value> {
    let key = ClusterKey::open();
    let origin = Origin { actor: from, incarnation: 1, to };
    let bytes = wire::encode(message, origin, &key).expect("encodes within the limit");
    wire::decode::<Value>(&bytes, &key).expect("decodes within the limit").1
}

fn members(range: std::ops::Range<usize>) -> impl Iterator<Item = String> {
    range.map(|n| format!("member:{n:08}"))
}

#[test]
fn a_growing_set_gossips_only_what_each_sadd_added() {
    let mut pair = Pair::new(ActorConfig::default());
    const PER_EPOCH: usize = 500;
    let mut per_epoch_bytes = Vec::new();
    for round in 0..400 {
        pair.sadd(members(round * PER_EPOCH..(round + 1) * PER_EPOCH));
        let sent = pair.epoch(true);
        per_epoch_bytes.push(sent.iter().sum::<usize>());
    }
    assert_eq!(Pair::members(&pair.b), 200_000);
    assert!(pair.in_sync(), "the replica fed deltas equals the writer");
    // Once the set is big (64 elements and up), each epoch's gossip is the 500 members it
    // added, not the whole set: the last epoch (199,500 members before it) costs what an
    // early one did.
    let early = per_epoch_bytes[2];
    let last = *per_epoch_bytes.last().unwrap();
    assert!(
        last <= early + early / 10,
        "gossip grew with the set: {early} bytes at 1,500 members, {last} at 200,000"
    );
    // 500 members of 15 bytes, with their dots: well under 64 bytes each.
    assert!(last < PER_EPOCH * 64, "{last} bytes for {PER_EPOCH} members");
    let stats = pair.a.stats();
    assert!(stats.gossip_deltas_out >= 398, "{stats:?}");
    assert_eq!(stats.gossip_parts_out, 0);
}

#[test]
fn a_big_whole_state_travels_in_parts_below_the_batch_limit() {
    let mut pair = Pair::new(ActorConfig::default());
    // A restored key is gossiped whole (its peers may have missed anything before the crash).
    let mut set = RedisValue::default();
    use anna_kvs::KvsValue;
    let all: Vec<Bytes> = members(0..400_000).map(Bytes::from).collect();
    set.apply(RedisOp::SAdd(all), lattice_core::Stamp::new(START - 1, 9), 9).unwrap();
    let whole = entry_len(&Bytes::from_static(KEY.as_bytes()), &set);
    assert!(whole > MAX_MESSAGE_BYTES / 2, "the state is big: {whole} bytes");
    pair.a.restore(Bytes::from_static(KEY.as_bytes()), set);
    let sent = pair.epoch(true);
    assert!(sent.len() >= whole / GOSSIP_BATCH_BYTES, "{} batches for {whole} bytes", sent.len());
    assert!(sent.iter().all(|&b| b <= GOSSIP_BATCH_BYTES), "batches: {sent:?}");
    assert!(pair.a.stats().gossip_parts_out as usize >= whole / PART_BYTES);
    assert_eq!(Pair::members(&pair.b), 400_000);
    assert!(pair.in_sync());
}

#[test]
fn a_peer_that_lost_deltas_gets_the_whole_state_once_it_is_back() {
    // A tiny retransmission budget, so a short outage makes A give deltas up.
    let config = ActorConfig { max_unacked_bytes_per_peer: 16 << 10, ..ActorConfig::default() };
    let mut pair = Pair::new(config);
    for round in 0..4 {
        pair.sadd(members(round * 100..(round + 1) * 100));
        pair.epoch(true);
    }
    assert!(pair.in_sync());
    // Cut off: forty epochs of deltas, each 100 members, lost on the way.
    for round in 4..44 {
        pair.sadd(members(round * 100..(round + 1) * 100));
        pair.epoch(false);
    }
    let given_up = pair.a.stats().gossip_given_up;
    assert!(given_up > 0, "the budget made A give batches up");
    assert_eq!(Pair::members(&pair.b), 400);
    // Back, with no further write: resends bring what was kept, the repair brings the rest.
    for _ in 0..200 {
        pair.epoch(true);
        if pair.in_sync() {
            break;
        }
    }
    assert_eq!(Pair::members(&pair.b), 4_400, "after {given_up} batches given up");
    assert!(pair.in_sync());
    assert!(pair.a.stats().gossip_whole_repairs >= 1);
    // And then it goes quiet: nothing left to resend or repair.
    for _ in 0..5 {
        pair.epoch(true);
    }
    assert!(pair.a.is_quiet(), "{:?}", pair.a.pending_work());
}

/// The worst case for what decoding claims: members of a few bytes and dots of small writer
/// ids (1-byte varints) decode into many times their encoded size; batches packed below the
/// limit still decode.
#[test]
fn a_whole_set_of_tiny_members_decodes_at_the_receiver() {
    use anna_kvs::KvsValue;
    let mut pair = Pair::new(ActorConfig::default());
    let mut set = RedisValue::default();
    let all: Vec<Bytes> = (0..600_000_u32).map(|n| Bytes::from(n.to_string())).collect();
    set.apply(RedisOp::SAdd(all), lattice_core::Stamp::new(START - 1, 3), 3).unwrap();
    pair.a.restore(Bytes::from_static(KEY.as_bytes()), set);
    let sent = pair.epoch(true);
    assert!(sent.len() > 1, "{sent:?}");
    assert_eq!(Pair::members(&pair.b), 600_000);
    assert!(pair.in_sync());
}

/// A peer that comes back from a restart without the big set (an empty directory, a log that
/// was not synced) gets its whole state again, with no further write: deltas alone would
/// never fill it in. `WAIT` counts it only once it has.
#[test]
fn a_peer_back_from_a_restart_without_the_set_gets_it_whole() {
    let mut pair = Pair::new(ActorConfig::default());
    for round in 0..5 {
        pair.sadd(members(round * 100..(round + 1) * 100));
        pair.epoch(true);
    }
    assert!(pair.in_sync());
    let key = KEY.as_bytes();
    assert_eq!(pair.a.replicated(key), 1);
    // B restarts empty; A's driver notices its new incarnation.
    let topology = Arc::clone(pair.a.topology());
    pair.b = Actor::new(B, topology, ActorConfig::default(), pair.now);
    pair.a.forget_receipts_from(1);
    assert_eq!(pair.a.replicated(key), 0, "owed whole: WAIT must not count B");
    for _ in 0..10 {
        pair.epoch(true);
    }
    assert_eq!(Pair::members(&pair.b), 500);
    assert!(pair.in_sync());
    assert_eq!(pair.a.replicated(key), 1);
}
