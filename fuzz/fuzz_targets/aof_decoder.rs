//! The append-only-file decoder on arbitrary bytes: errors or a prefix of records, never a
//! panic, never an allocation past the data; every record it returns re-encodes to bytes
//! that decode to the same record.
#![no_main]

use anna_kvs::node::aof::{decode_log, encode_record};
use anna_kvs::redis::RedisValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.aof");
    for corrupt_ok in [false, true] {
        if let Ok(loaded) = decode_log::<RedisValue>(data, path, corrupt_ok) {
            assert!(loaded.intact as usize <= data.len());
            assert_eq!(loaded.intact + loaded.dropped, data.len() as u64);
            let mut again = Vec::new();
            for (key, value) in &loaded.records {
                encode_record(key, value, &mut again).unwrap();
            }
            let reloaded = decode_log::<RedisValue>(&again, path, false).unwrap();
            assert_eq!(reloaded.records, loaded.records);
        }
    }
});
