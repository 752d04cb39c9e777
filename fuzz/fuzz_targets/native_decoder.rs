//! The native client-protocol decoders (a node reading client messages, a client reading a
//! node's answers) on arbitrary bytes: errors, never panics, never allocates past the message;
//! a decoded client message re-encodes to bytes that decode to the same message.
#![no_main]

use anna_kvs::levels::{Causal, Transactional};
use anna_kvs::native::{decode_client, decode_server, encode_client};
use anna_kvs::redis::RedisValue;
use anna_kvs::wire::type_id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Raw bytes, and the same bytes behind valid headers so the payload decoders are reached.
    let header = |id: u32| {
        let mut framed = b"ANNC\x01".to_vec();
        framed.extend_from_slice(&id.to_le_bytes());
        framed.extend_from_slice(data);
        framed
    };
    let inputs =
        [data.to_vec(), header(type_id::<RedisValue>()), header(type_id::<Causal>()), header(0)];
    for bytes in &inputs {
        if let Ok(frame) = decode_client::<RedisValue>(bytes) {
            let again = decode_client::<RedisValue>(&encode_client(&frame).unwrap()).unwrap();
            assert_eq!(again, frame);
        }
        let _ = decode_client::<Causal>(bytes);
        let _ = decode_client::<Transactional>(bytes);
        let _ = decode_server::<RedisValue>(bytes);
        let _ = decode_server::<Causal>(bytes);
    }
});
