//! The authenticated gossip envelope on arbitrary bytes: errors, never panics, never allocates
//! past the message; a decoded message re-encodes to bytes that decode to the same message.
//! Raw bytes exercise the header and tag checks; the same bytes behind a valid header and
//! under a valid tag reach the payload decoder.
#![no_main]

use anna_kvs::redis::RedisValue;
use anna_kvs::wire::{ClusterKey, MAGIC, VERSION, decode, encode, type_id};
use anna_kvs::Eventual;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = ClusterKey::derive(b"fuzz");
    let mut sealed = MAGIC.to_vec();
    sealed.push(VERSION);
    sealed.extend_from_slice(&type_id::<Eventual>().to_le_bytes());
    // From node 1 thread 0, life 7, to node 0 thread 0.
    sealed.extend_from_slice(&[1, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    sealed.extend_from_slice(data);
    let tag = key.tag(&sealed);
    sealed.extend_from_slice(&tag);
    for bytes in [data, &sealed[..]] {
        if let Ok((origin, message)) = decode::<Eventual>(bytes, &key) {
            let again = decode::<Eventual>(&encode(&message, origin, &key).unwrap(), &key).unwrap();
            assert_eq!(again, (origin, message));
        }
        let _ = decode::<RedisValue>(bytes, &key);
    }
});
