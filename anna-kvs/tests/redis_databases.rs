//! Databases and flushes through the Redis port: sixteen key spaces that answer as a real
//! redis-server's do, `FLUSHDB`/`FLUSHALL` that empty them, and a flush that reaches every
//! node of a cluster while writes made after it survive.

use anna_kvs::server::RunningServer;

mod common;
use common::{RealRedis, assert_same_replies, raw, resp};

fn server() -> RunningServer {
    common::redis_port_server(2)
}

/// The same script of SELECTs, writes, reads, scans, counts and flushes answers byte for byte
/// as Redis 7 answers it (KEYS and SMEMBERS arrays compared as sets).
#[test]
fn databases_and_flushes_answer_as_real_redis_does() {
    let redis = RealRedis::start();
    let anna = server();
    let script: &[&[&str]] = &[
        &["SET", "k", "zero"],
        &["SELECT", "1"],
        &["GET", "k"],
        &["SET", "k", "one"],
        &["INCR", "n"],
        &["SADD", "s", "a", "b"],
        &["DBSIZE"],
        &["SELECT", "2"],
        &["SET", "k", "two", "EX", "100"],
        &["TTL", "k"],
        &["DBSIZE"],
        &["SELECT", "0"],
        &["GET", "k"],
        &["DBSIZE"],
        &["EXISTS", "n", "s"],
        &["SELECT", "1"],
        &["GET", "k"],
        &["MGET", "k", "n", "missing"],
        &["KEYS", "*"],
        &["SMEMBERS", "s"],
        &["FLUSHDB"],
        &["DBSIZE"],
        &["GET", "k"],
        &["SELECT", "2"],
        &["GET", "k"],
        &["SELECT", "0"],
        &["GET", "k"],
        &["MSET", "a", "1", "b", "2"],
        &["SELECT", "15"],
        &["MSET", "a", "x", "b", "y"],
        &["MGET", "a", "b"],
        &["FLUSHALL", "SYNC"],
        &["DBSIZE"],
        &["SELECT", "2"],
        &["DBSIZE"],
        &["SELECT", "0"],
        &["DBSIZE"],
        &["GET", "a"],
        // Writes after a flush stay.
        &["SET", "after", "yes"],
        &["GET", "after"],
        &["FLUSHDB", "ASYNC"],
        &["SET", "after", "again"],
        &["GET", "after"],
        &["DBSIZE"],
        // Errors.
        &["SELECT", "16"],
        &["SELECT", "-1"],
        &["SELECT", "x"],
        &["FLUSHDB", "BOGUS"],
        &["FLUSHALL", "ASYNC", "SYNC"],
        // A transaction runs in the database selected inside it, in order.
        &["MULTI"],
        &["SELECT", "4"],
        &["SET", "t", "in-4"],
        &["SELECT", "0"],
        &["SET", "t", "in-0"],
        &["EXEC"],
        &["GET", "t"],
        &["SELECT", "4"],
        &["GET", "t"],
        &["DBSIZE"],
        // A flush inside a transaction flushes what was queued before it.
        &["MULTI"],
        &["SET", "x", "1"],
        &["FLUSHDB"],
        &["GET", "x"],
        &["SET", "y", "2"],
        &["EXEC"],
        &["DBSIZE"],
        &["GET", "y"],
    ];
    let script: String = script.iter().map(|c| resp(c)).collect();
    let theirs = raw(([127, 0, 0, 1], redis.1).into(), script.as_bytes());
    let ours = raw(anna.addr, script.as_bytes());
    assert_same_replies(&sorted(&ours), &sorted(&theirs));
}

/// KEYS and SMEMBERS list in no set order: sort the elements of each array of bulk strings
/// (an array holding a nil, as MGET's, keeps its order).
fn sorted(replies: &str) -> String {
    let lines: Vec<&str> = replies.split("\r\n").collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let count = lines[i].strip_prefix('*').and_then(|n| n.parse::<usize>().ok());
        let elements = count.filter(|&n| {
            (0..n).all(|k| {
                lines.get(i + 1 + 2 * k).is_some_and(|l| l.starts_with('$') && *l != "$-1")
            })
        });
        match elements {
            Some(n) => {
                let mut items: Vec<String> = (0..n)
                    .map(|k| format!("{} {}", lines[i + 1 + 2 * k], lines[i + 2 + 2 * k]))
                    .collect();
                items.sort();
                out.push(lines[i].to_owned());
                out.extend(items);
                i += 1 + 2 * n;
            }
            None => {
                out.push(lines[i].to_owned());
                i += 1;
            }
        }
    }
    out.join("\n")
}

/// A key written in database 0 that looks like another database's key is refused, not
/// aliased; the native protocol reaches a database's keys through the same prefix.
#[test]
fn database_zero_refuses_keys_that_would_alias_another_database() {
    let anna = server();
    let reply = raw(anna.addr, b"*3\r\n$3\r\nSET\r\n$4\r\n\xff\xdb\x01k\r\n$1\r\nv\r\n");
    assert!(reply.starts_with("-ERR keys beginning with the bytes FF DB"), "{reply}");
    let script = [resp(&["SELECT", "1"]), resp(&["GET", "k"])].concat();
    assert!(raw(anna.addr, script.as_bytes()).ends_with("$-1\r\n"), "nothing was written");
}
