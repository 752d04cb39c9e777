//! What authenticating gossip costs: encoding and decoding one gossip batch with the cluster
//! key's tag (BLAKE3 keyed) against the same envelope without a tag, for a batch of 1 and of
//! 100 string keys (8-byte keys and values, as `redis-benchmark -d 8` writes them).
//!
//!     cargo bench -p anna-bench --bench gossip_envelope -- --quick

use std::hint::black_box;

use anna_kvs::message::Gossip;
use anna_kvs::redis::RedisValue;
use anna_kvs::wire::{self, ClusterKey, Origin};
use anna_kvs::{ActorId, PeerMessage};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use lattice_core::{Lww, Stamp};

fn batch(entries: usize) -> PeerMessage<RedisValue> {
    let updates = (0..entries)
        .map(|i| {
            let key = Bytes::from(format!("key:{i:04}"));
            let register = Lww::new(
                Stamp::new(1_700_000_000_000_000 + i as u64, 1),
                Some(Bytes::from_static(b"xxxxxxxx")),
            );
            (key, RedisValue::from_register(register, 1))
        })
        .collect();
    PeerMessage::Gossip(Gossip {
        from: ActorId::new(1, 0),
        seq: 42,
        low_water: 40,
        updates,
        overrides: Vec::new(),
    })
}

fn envelope(c: &mut Criterion) {
    let key = ClusterKey::derive(b"a cluster secret");
    let origin = Origin { actor: ActorId::new(1, 0), incarnation: 7, to: ActorId::new(0, 0) };
    for entries in [1, 100] {
        let message = batch(entries);
        let mut group = c.benchmark_group(format!("gossip batch of {entries}, encode + decode"));
        group.bench_function("authenticated (wire::encode/decode)", |b| {
            b.iter(|| {
                let bytes = wire::encode(black_box(&message), origin, &key).unwrap();
                black_box(wire::decode::<RedisValue>(&bytes, &key).unwrap())
            })
        });
        group.bench_function("untagged envelope (same bincode payload)", |b| {
            b.iter(|| {
                let bytes = wire::encode_envelope(
                    wire::MAGIC,
                    wire::type_id::<RedisValue>(),
                    black_box(&message),
                )
                .unwrap();
                let (_, payload) = wire::open_envelope(wire::MAGIC, &bytes).unwrap();
                black_box(wire::decode_payload::<PeerMessage<RedisValue>>(payload).unwrap())
            })
        });
        group.finish();
    }
}

criterion_group!(benches, envelope);
criterion_main!(benches);
