//! What an actor accepts from its peers, driven directly (no network): stamps from the far
//! future are refused, senders outside the cluster get no state, receipt bookkeeping per peer
//! stays bounded whatever sequence numbers a peer sends, and the low-water mark and a peer's
//! restart let numbering start over without losing batches.

use std::sync::Arc;

use bytes::Bytes;
use lattice_core::{Lww, Stamp};

use anna_kvs::message::Gossip;
use anna_kvs::{
    Actor, ActorConfig, ActorId, Eventual, Input, Output, PeerMessage, Replication, Request,
    RequestError, Response, Topology,
};

const NOW: u64 = 1_000_000_000_000; // µs
const ME: ActorId = ActorId::new(0, 0);
const PEER: ActorId = ActorId::new(1, 0);

/// Two nodes of one actor each, every key on both.
fn two_nodes() -> Arc<Topology> {
    Arc::new(Topology::new(
        vec!["10.0.0.1:7000".into(), "10.0.0.2:7000".into()],
        vec![1, 1],
        Replication::FULL,
    ))
}

/// This node's actor of [`two_nodes`].
fn actor() -> Actor<Eventual> {
    Actor::new(ME, two_nodes(), ActorConfig::default(), NOW)
}

fn value(time: u64, text: &'static str) -> Eventual {
    Lww::new(Stamp::new(time, 7), Some(Bytes::from_static(text.as_bytes())))
}

fn gossip(
    from: ActorId,
    seq: u64,
    low_water: u64,
    updates: Vec<(&'static str, Eventual)>,
) -> Input<Eventual> {
    Input::Peer(PeerMessage::Gossip(Gossip {
        from,
        seq,
        low_water,
        updates: updates.into_iter().map(|(k, v)| (Bytes::from_static(k.as_bytes()), v)).collect(),
        overrides: Vec::new(),
    }))
}

/// Feeds `input`; returns whether the actor acknowledged batch `seq` of `from`.
fn feed(actor: &mut Actor<Eventual>, input: Input<Eventual>) -> Vec<Output<Eventual>> {
    let mut out = Vec::new();
    actor.handle(NOW, input, &mut out);
    out
}

fn acked(out: &[Output<Eventual>], seq: u64) -> bool {
    out.iter().any(
        |o| matches!(o, Output::Send { message: PeerMessage::Ack { seq: s, .. }, .. } if *s == seq),
    )
}

/// One second later, an epoch's work: what the actor sends.
fn tick<V: anna_kvs::KvsValue>(actor: &mut Actor<V>, clock: &mut u64) -> Vec<Output<V>> {
    *clock += 1_000_000;
    let mut out = Vec::new();
    actor.handle(*clock, Input::Tick, &mut out);
    out
}

/// The sequence number of the gossip batch `out` sends to `to`, if it sends one.
fn gossip_seq_to<V: anna_kvs::KvsValue>(out: &[Output<V>], to: ActorId) -> Option<u64> {
    out.iter().find_map(|o| match o {
        Output::Send { to: t, message: PeerMessage::Gossip(g) } if *t == to => Some(g.seq),
        _ => None,
    })
}

fn held(actor: &Actor<Eventual>, key: &str) -> Option<Eventual> {
    actor.peek(key.as_bytes()).cloned()
}

#[test]
fn a_stamp_from_the_far_future_is_refused_and_counted_and_pins_nothing() {
    let mut a = actor();
    let year = 365 * 24 * 3600 * 1_000_000;
    let batch = || {
        gossip(
            PEER,
            1,
            1,
            vec![("pinned", value(NOW + 100 * year, "forged")), ("fine", value(NOW, "ok"))],
        )
    };
    let out = feed(&mut a, batch());
    // Not acknowledged (nor recorded): its sender resends it until the stamp is within reach,
    // so a clock a little ahead delays the entry instead of losing it.
    assert!(!acked(&out, 1), "{out:?}");
    assert_eq!(held(&a, "pinned"), None, "the future entry was not applied");
    assert_eq!(held(&a, "fine"), Some(value(NOW, "ok")), "the rest of the batch was");
    assert_eq!(a.stats().future_stamps_refused, 1);
    // The resend is refused the same way (the batch was never recorded as received).
    assert!(!acked(&feed(&mut a, batch()), 1));
    assert_eq!(a.stats().future_stamps_refused, 2);
    // A write now wins, as it should: nothing pinned the key.
    let mut out = Vec::new();
    let request = Request::Put {
        key: Bytes::from_static(b"pinned"),
        value: value(0, "legit"),
        stamp_here: true,
    };
    let answer = a.serve(NOW, 1, request, &mut out);
    assert!(matches!(answer, Some(Response::Done(Some(_)))), "{answer:?}");
    assert_eq!(
        held(&a, "pinned").and_then(|v| v.into_parts()).and_then(|(_, v)| v).as_deref(),
        Some(&b"legit"[..])
    );
    // Within the bound (30 s by default), a peer's clock may run ahead.
    let out = feed(&mut a, gossip(PEER, 2, 2, vec![("ahead", value(NOW + 20_000_000, "soon"))]));
    assert!(acked(&out, 2));
    assert!(held(&a, "ahead").is_some());
    assert_eq!(a.stats().future_stamps_refused, 2);
}

#[test]
fn a_client_write_from_the_far_future_is_refused_with_a_clear_error() {
    let mut a = actor();
    let mut out = Vec::new();
    let request = Request::Put {
        key: Bytes::from_static(b"k"),
        value: value(NOW + 3_600_000_000, "later"),
        stamp_here: false,
    };
    match a.serve(NOW, 1, request, &mut out) {
        Some(Response::Error(error @ RequestError::FutureStamp { .. })) => {
            assert!(error.to_string().contains("too far ahead"), "{error}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(held(&a, "k"), None);
}

#[test]
fn a_sender_outside_the_cluster_gets_no_state_and_no_answer() {
    let mut a = actor();
    for stranger in [ActorId::new(9, 0), ActorId::new(1, 5), ME] {
        let out = feed(&mut a, gossip(stranger, 1, 1, vec![("k", value(NOW, "x"))]));
        assert!(out.is_empty(), "{stranger}: {out:?}");
    }
    assert_eq!(held(&a, "k"), None);
    assert_eq!(a.stats().unknown_senders, 3);
    assert!(a.is_quiet(), "{:?}", a.pending_work());
}

#[test]
fn receipts_tracked_per_peer_stay_bounded_whatever_the_peer_sends() {
    let mut a = actor();
    let window = ActorConfig::default().max_receipts_ahead;
    // A flood of fresh, gapped sequence numbers (every other one missing): within the window
    // they are taken; beyond it, refused unacknowledged (a real sender would resend them).
    let mut refused = 0;
    for seq in (2..4 * window).step_by(2) {
        let out = feed(&mut a, gossip(PEER, seq, 1, Vec::new()));
        refused += u64::from(!acked(&out, seq));
    }
    assert_eq!(refused, (4 * window - 2) / 2 - (window / 2), "only the window is taken");
    assert_eq!(a.stats().gossip_refused_ahead, refused);
    // Once the sender's low-water mark moves past the gaps (it gave those batches up, or they
    // were acknowledged), the window moves and its new batches are taken again.
    let out = feed(&mut a, gossip(PEER, 5 * window, 5 * window, vec![("late", value(NOW, "in"))]));
    assert!(acked(&out, 5 * window));
    assert_eq!(held(&a, "late"), Some(value(NOW, "in")));
}

#[test]
fn the_low_water_mark_lets_a_fresh_receiver_join_a_numbering_in_progress() {
    // A receiver that restarted (or never heard from this sender) gets batch 10 000 first:
    // with the low-water mark it is a batch like any other, acknowledged and applied, and the
    // numbers below the mark are not awaited. The sender still holds 9 990..9 999
    // unacknowledged (its low-water mark is 9 990): those are applied when they come.
    let mut a = actor();
    let out = feed(&mut a, gossip(PEER, 10_000, 9_990, vec![("k", value(NOW, "v"))]));
    assert!(acked(&out, 10_000));
    assert_eq!(held(&a, "k"), Some(value(NOW, "v")));
    let out = feed(&mut a, gossip(PEER, 9_995, 9_990, vec![("older", value(NOW, "w"))]));
    assert!(acked(&out, 9_995));
    assert_eq!(held(&a, "older"), Some(value(NOW, "w")));
    // Below the mark, a batch is one the sender was already done with: acknowledged again,
    // not applied.
    let out = feed(&mut a, gossip(PEER, 9_000, 9_990, vec![("stale", value(NOW, "x"))]));
    assert!(acked(&out, 9_000));
    assert_eq!(held(&a, "stale"), None);
}

#[test]
fn a_restarted_peer_numbering_from_one_again_is_heard() {
    let mut a = actor();
    for seq in 1..=50 {
        feed(&mut a, gossip(PEER, seq, seq, Vec::new()));
    }
    // Without being told, batch 1 of the peer's new life looks like a duplicate.
    feed(&mut a, gossip(PEER, 1, 1, vec![("new-life", value(NOW, "a"))]));
    assert_eq!(held(&a, "new-life"), None);
    // The transport tells the actor when a peer's incarnation changes.
    a.forget_receipts_from(PEER.node);
    let out = feed(&mut a, gossip(PEER, 1, 1, vec![("new-life", value(NOW, "a"))]));
    assert!(acked(&out, 1));
    assert_eq!(held(&a, "new-life"), Some(value(NOW, "a")));
}

#[test]
fn a_batch_larger_than_the_retransmission_bound_is_still_applied() {
    // With room for one unacknowledged key per peer, a batch of three must still be sent with
    // a low-water mark at or below its own number, or its receiver would take it for old.
    let topology = Arc::new(Topology::new(
        vec!["10.0.0.1:7000".into(), "10.0.0.2:7000".into()],
        vec![1, 1],
        Replication::FULL,
    ));
    let config = ActorConfig { max_unacked_keys_per_peer: 1, ..ActorConfig::default() };
    let mut sender = Actor::<Eventual>::new(ME, Arc::clone(&topology), config.clone(), NOW);
    let mut receiver = Actor::<Eventual>::new(PEER, topology, config, NOW);
    let mut out = Vec::new();
    for key in ["a", "b", "c"] {
        let put = Request::Put {
            key: Bytes::from_static(key.as_bytes()),
            value: value(0, "v"),
            stamp_here: true,
        };
        assert!(matches!(sender.serve(NOW, 1, put, &mut out), Some(Response::Done(_))));
    }
    sender.handle(NOW + 1_000_000, Input::Tick, &mut out);
    let gossip = out
        .into_iter()
        .find_map(|o| match o {
            Output::Send { message: message @ PeerMessage::Gossip(_), .. } => Some(message),
            _ => None,
        })
        .expect("the epoch gossips the three keys");
    let PeerMessage::Gossip(Gossip { seq, low_water, .. }) = &gossip else { unreachable!() };
    assert!(low_water <= seq, "low-water {low_water} above the batch's own number {seq}");
    let mut out = Vec::new();
    receiver.handle(NOW + 1_000_000, Input::Peer(gossip), &mut out);
    for key in ["a", "b", "c"] {
        assert!(receiver.peek(key.as_bytes()).is_some(), "{key} not applied");
    }
}

#[test]
fn a_copy_from_before_a_freed_delete_does_not_bring_the_key_back() {
    let mut a = actor();
    let tombstone = Lww::new(Stamp::new(NOW - 5, 7), None);
    assert!(acked(&feed(&mut a, gossip(PEER, 1, 1, vec![("k", value(NOW - 10, "old"))])), 1));
    assert!(acked(&feed(&mut a, gossip(PEER, 2, 1, vec![("k", tombstone)])), 2));
    // The epoch passes the tombstone on; the peer acknowledges it, having sent two batches;
    // the next epoch frees the key.
    let mut clock = NOW;
    let out = tick(&mut a, &mut clock);
    let seq = gossip_seq_to(&out, PEER).expect("the tombstone is passed on");
    feed(&mut a, Input::Peer(PeerMessage::Ack { from: PEER, seq, sent_to_you: 2 }));
    tick(&mut a, &mut clock);
    assert_eq!(held(&a, "k"), None, "the tombstone was not freed");
    assert_eq!(a.stats().reclaimed, 1);
    // The value from before the delete arrives again, in a later batch: still deleted.
    assert!(acked(&feed(&mut a, gossip(PEER, 3, 1, vec![("k", value(NOW - 10, "old"))])), 3));
    assert_eq!(held(&a, "k"), None, "a copy from before the delete brought the key back");
    // A write newer than the delete is a write.
    feed(&mut a, gossip(PEER, 4, 1, vec![("k", value(NOW - 1, "new"))]));
    assert_eq!(held(&a, "k"), Some(value(NOW - 1, "new")));
}

#[test]
fn a_node_routing_without_itself_keeps_no_copy_older_than_an_owner_sent_it() {
    let mut a = actor();
    feed(&mut a, gossip(PEER, 1, 1, vec![("k", value(NOW - 10, "old"))]));
    // This node leaves: its ring leaves it out, and the key waits to be handed off.
    let without_me =
        Topology::new(vec![String::new(), "10.0.0.2:7000".into()], vec![0, 1], Replication::FULL);
    a.set_topology(NOW, Arc::new(without_me));
    // Its owner deletes it meanwhile: the copy held here takes the delete in (a read forwarded
    // from here sends the copy ahead, so an older one would undo the delete at an owner that
    // has freed it).
    let tombstone = Lww::new(Stamp::new(NOW - 5, 7), None);
    assert!(acked(&feed(&mut a, gossip(PEER, 2, 1, vec![("k", tombstone.clone())])), 2));
    assert_eq!(held(&a, "k"), Some(tombstone));
    // What it does not hold it does not take (the owner has it).
    feed(&mut a, gossip(PEER, 3, 1, vec![("other", value(NOW - 3, "x"))]));
    assert_eq!(held(&a, "other"), None);
}

/// Redis values carry no single write stamp, so the reclamation floor cannot refuse an old
/// state handed over ahead of a forwarded request (by a node leaving the cluster): a key freed
/// lately must refuse it itself.
#[test]
fn a_hand_over_from_before_a_freed_delete_does_not_bring_a_redis_key_back() {
    use anna_kvs::redis::value::RedisValue;
    let mut a: Actor<RedisValue> = Actor::new(ME, two_nodes(), ActorConfig::default(), NOW);
    let string = |time: u64, text: Option<&'static str>| {
        RedisValue::from_register(
            Lww::new(Stamp::new(time, 7), text.map(|t| Bytes::from_static(t.as_bytes()))),
            7,
        )
    };
    let mut now = NOW;
    let mut step = |a: &mut Actor<RedisValue>, input: Input<RedisValue>| {
        now += 1_000_000;
        let mut out = Vec::new();
        a.handle(now, input, &mut out);
        out
    };
    let batch = |seq: u64, value: RedisValue| {
        Input::Peer(PeerMessage::Gossip(Gossip {
            from: PEER,
            seq,
            low_water: 1,
            updates: vec![(Bytes::from_static(b"k"), value)],
            overrides: Vec::new(),
        }))
    };
    step(&mut a, batch(1, string(NOW - 10, Some("old"))));
    step(&mut a, batch(2, string(NOW - 5, None)));
    let out = step(&mut a, Input::Tick);
    let seq = gossip_seq_to(&out, PEER).expect("the tombstone is passed on");
    step(&mut a, Input::Peer(PeerMessage::Ack { from: PEER, seq, sent_to_you: 2 }));
    step(&mut a, Input::Tick);
    assert_eq!(a.peek(b"k"), None, "the tombstone was not freed");
    let handover = Request::Put {
        key: Bytes::from_static(b"k"),
        value: string(NOW - 10, Some("old")),
        stamp_here: false,
    };
    let forward =
        PeerMessage::Forward { origin: PEER, token: 1, hops: 1, clock: 0, request: handover };
    let out = step(&mut a, Input::Peer(forward));
    assert_eq!(a.peek(b"k"), None, "a hand-over from before the delete brought the key back");
    // Answered as done (the delete has it), not refused: the sender moves on.
    let answered = out.iter().any(|o| {
        matches!(o, Output::Send { to, message: PeerMessage::ForwardReply { response: Response::Done(None), .. } } if *to == PEER)
    });
    assert!(answered, "{out:?}");
}

/// A node new to a running cluster (catching up: a joiner, a restart) frees no delete for the
/// ring-change guard's 100 epochs: members may still route by rings from before it, and one may
/// hand it an older copy of the key.
#[test]
fn a_node_new_to_the_cluster_waits_before_freeing_deletes() {
    let config = ActorConfig { catch_up: true, ..ActorConfig::default() };
    let mut a = Actor::new(ME, two_nodes(), config, NOW);
    let tombstone = Lww::new(Stamp::new(NOW - 5, 7), None);
    feed(&mut a, gossip(PEER, 1, 1, vec![("k", tombstone.clone())]));
    let mut clock = NOW;
    let out = tick(&mut a, &mut clock);
    let seq = gossip_seq_to(&out, PEER).expect("the tombstone is passed on");
    feed(&mut a, Input::Peer(PeerMessage::Ack { from: PEER, seq, sent_to_you: 1 }));
    for _ in 0..50 {
        tick(&mut a, &mut clock);
    }
    assert_eq!(held(&a, "k"), Some(tombstone), "freed within the guard");
    for _ in 0..60 {
        tick(&mut a, &mut clock);
    }
    assert_eq!(held(&a, "k"), None, "never freed");
    assert_eq!(a.stats().reclaimed, 1);
}
