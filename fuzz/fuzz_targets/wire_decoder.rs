//! The gossip envelope decoder on arbitrary bytes: errors, never panics, never allocates past
//! the message; a decoded message re-encodes to bytes that decode to the same message.
#![no_main]

use anna_kvs::redis::RedisValue;
use anna_kvs::wire::{decode, encode, type_id};
use anna_kvs::{Eventual, PeerMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Raw bytes, and the same bytes behind a valid header so the payload decoder is reached.
    let mut framed = b"ANNA\x01".to_vec();
    framed.extend_from_slice(&type_id::<Eventual>().to_le_bytes());
    framed.extend_from_slice(data);
    for bytes in [data, &framed[..]] {
        if let Ok(message) = decode::<Eventual>(bytes) {
            let again: PeerMessage<Eventual> = decode(&encode(&message).unwrap()).unwrap();
            assert_eq!(again, message);
        }
        let _ = decode::<RedisValue>(bytes);
    }
});
