//! Databases: sixteen key spaces in one store, as Redis numbers them (`SELECT 0..15`).
//!
//! Database 0 is the store's keys as they are (what the native protocol reads and writes). A
//! key of database `n` (1–15) is stored as the bytes `FF DB n` followed by the key, so the
//! engine — rings, gossip, logs, repair — needs nothing new, and a native client reaches
//! database `n` by writing that prefix itself. The Redis port refuses, in database 0, the keys
//! that begin with such a prefix (they would alias another database's keys).
//!
//! ```
//! use anna_kvs::db;
//! let key = db::key(3, b"user:1");
//! assert_eq!(db::of(&key), 3);
//! assert_eq!(db::strip(&key), b"user:1");
//! assert_eq!(db::of(b"user:1"), 0);
//! assert!(db::is_reserved(&key));
//! ```

/// How many databases there are (Redis's default `databases`).
pub const DATABASES: u8 = 16;

/// The two bytes that begin every key of a database other than 0.
const PREFIX: [u8; 2] = [0xFF, 0xDB];

/// The stored key of `key` in database `db` (database 0: the key itself).
pub fn key(db: u8, key: &[u8]) -> Vec<u8> {
    if db == 0 {
        return key.to_vec();
    }
    let mut stored = Vec::with_capacity(key.len() + 3);
    stored.extend_from_slice(&PREFIX);
    stored.push(db);
    stored.extend_from_slice(key);
    stored
}

/// The database a stored key belongs to.
#[inline]
pub fn of(stored: &[u8]) -> u8 {
    match stored {
        [0xFF, 0xDB, db, ..] if (1..DATABASES).contains(db) => *db,
        _ => 0,
    }
}

/// A stored key without its database prefix (the key a client of that database sees).
pub fn strip(stored: &[u8]) -> &[u8] {
    if of(stored) == 0 { stored } else { &stored[3..] }
}

/// The log record that keeps database `db`'s latest flush across restarts: a key no client
/// can write (`FF DB FF db`: no database has number `FF`), never in the store.
pub fn flush_record_key(db: u8) -> [u8; 4] {
    [PREFIX[0], PREFIX[1], 0xFF, db]
}

/// The database whose flush record `key` is, if it is one.
pub fn flush_record_of(key: &[u8]) -> Option<u8> {
    match key {
        [0xFF, 0xDB, 0xFF, db] if *db < DATABASES => Some(*db),
        _ => None,
    }
}

/// Whether a key, as a database-0 client gives it, would name another database's key (or a
/// flush record).
pub fn is_reserved(key: &[u8]) -> bool {
    of(key) != 0 || flush_record_of(key).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_database_has_its_own_keys() {
        for db in 0..DATABASES {
            for k in [&b""[..], b"a", b"\xFF\xDB", b"\xFF\xDB\x00x", b"\xFF\xDB\x10x"] {
                let stored = key(db, k);
                assert_eq!(of(&stored), db, "{db} {k:?}");
                assert_eq!(strip(&stored), k);
            }
        }
        // Prefixes that name no database are plain database-0 keys.
        assert_eq!(of(b"\xFF\xDB\x00x"), 0);
        assert_eq!(of(b"\xFF\xDB\x10x"), 0);
        assert_eq!(of(b"\xFF\xDB"), 0);
        assert!(!is_reserved(b"\xFF\xDB"));
    }
}
