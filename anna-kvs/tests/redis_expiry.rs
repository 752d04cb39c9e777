//! Keys that expire, through the Redis port: the commands answer as a real redis-server
//! does, an expired key is absent to every command, and the actors delete expired keys on
//! their own soon after the deadline.

use std::time::{Duration, Instant};

use anna_kvs::server::RunningServer;

mod common;
use common::{RealRedis, assert_same_replies, raw, resp};

fn server() -> RunningServer {
    common::redis_port_server(2)
}

/// Every expiry command, option and error, on strings, counters, sets and missing keys,
/// answers byte for byte as Redis 7 does. (Deadlines are far enough away, or absolute, that
/// the replies do not depend on when the script runs; the short ones are waited out.)
#[test]
fn expiry_commands_answer_as_real_redis_does() {
    let redis = RealRedis::start();
    let anna = server();
    let far = "4102444800"; // 2100-01-01, in seconds
    let far_ms = "4102444800123";
    let script: &[&[&str]] = &[
        &["SET", "k", "v", "EX", "100"],
        &["TTL", "k"],
        &["EXPIRE", "k", "50", "GT"],
        &["EXPIRE", "k", "50", "LT"],
        &["TTL", "k"],
        &["EXPIRE", "k", "60", "NX"],
        &["EXPIRE", "k", "60", "XX"],
        &["EXPIRE", "k", "70", "xx", "gt"],
        &["EXPIRE", "k", "10", "XX", "LT"],
        &["TTL", "k"],
        &["PERSIST", "k"],
        &["PERSIST", "k"],
        &["TTL", "k"],
        &["EXPIRE", "k", "10", "GT"],
        &["EXPIRE", "k", "10", "LT"],
        &["TTL", "k"],
        &["TTL", "missing"],
        &["PTTL", "missing"],
        &["EXPIRETIME", "missing"],
        &["EXPIRE", "missing", "10"],
        &["PERSIST", "missing"],
        &["EXPIREAT", "k", far],
        &["EXPIRETIME", "k"],
        &["PEXPIRETIME", "k"],
        &["PEXPIREAT", "k", far_ms],
        &["PEXPIRETIME", "k"],
        &["EXPIRETIME", "k"],
        &["SET", "k", "w", "KEEPTTL"],
        &["PEXPIRETIME", "k"],
        &["APPEND", "k", "x"],
        &["PEXPIRETIME", "k"],
        &["SET", "k", "plain"],
        &["TTL", "k"],
        &["SET", "c", "5", "PXAT", far_ms],
        &["INCR", "c"],
        &["PEXPIRETIME", "c"],
        &["GETEX", "c", "PERSIST"],
        &["TTL", "c"],
        &["GETEX", "c", "EXAT", far],
        &["EXPIRETIME", "c"],
        &["GETEX", "c"],
        &["EXPIRETIME", "c"],
        &["SADD", "s", "a"],
        &["EXPIREAT", "s", far],
        &["SADD", "s", "b"],
        &["SREM", "s", "a"],
        &["EXPIRETIME", "s"],
        &["GETEX", "s", "PERSIST"],
        &["SETEX", "e", "100", "v"],
        &["TTL", "e"],
        &["PSETEX", "p", "100000", "v"],
        &["TTL", "p"],
        &["GETSET", "p", "w"],
        &["TTL", "p"],
        &["SET", "n", "v", "NX", "EX", "100"],
        &["SET", "n", "w", "NX", "EX", "100"],
        &["TTL", "n"],
        &["SET", "n", "w", "XX", "GET", "PX", "100000"],
        &["TTL", "n"],
        // Deadlines already passed: the key is gone at once.
        &["SET", "gone", "v", "EXAT", "1"],
        &["EXISTS", "gone"],
        &["SET", "gone", "v"],
        &["EXPIRE", "gone", "-1"],
        &["GET", "gone"],
        &["SET", "gone", "v"],
        &["PEXPIREAT", "gone", "5"],
        &["TYPE", "gone"],
        &["SET", "gone", "v"],
        &["GETEX", "gone", "PXAT", "1"],
        &["GET", "gone"],
        &["SET", "gone", "v"],
        &["EXPIRE", "gone", "0"],
        &["TTL", "gone"],
        // Errors, in Redis's order and words.
        &["SETEX", "x", "0", "v"],
        &["SETEX", "x", "-5", "v"],
        &["SETEX", "x", "abc", "v"],
        &["PSETEX", "x", "0", "v"],
        &["SET", "x", "v", "EX", "0"],
        &["SET", "x", "v", "EX", "9223372036854775807"],
        &["SET", "x", "v", "PX", "9223372036854775807"],
        &["SET", "x", "v", "EX", "10", "PX", "10"],
        &["SET", "x", "v", "EX", "10", "KEEPTTL"],
        &["SET", "x", "v", "KEEPTTL", "EX", "10"],
        &["SET", "x", "v", "EX"],
        &["SET", "x", "v", "EXAT", "+5"],
        &["EXPIRE", "k", "10", "NX", "XX"],
        &["EXPIRE", "k", "10", "GT", "LT"],
        &["EXPIRE", "k", "10", "NX", "GT"],
        &["EXPIRE", "k", "10", "BOGUS"],
        &["EXPIRE", "k", "ten"],
        &["EXPIRE", "k", "9223372036854775807"],
        &["PEXPIRE", "k", "9223372036854775807"],
        &["EXPIREAT", "k", "9223372036854775807"],
        &["EXPIRE", "k"],
        &["TTL"],
        &["GETEX", "k", "EX"],
        &["GETEX", "k", "EX", "10", "PX", "10"],
        &["GETEX", "k", "PERSIST", "EX", "10"],
        &["GETEX", "k", "EX", "0"],
        &["GETEX", "k", "BOGUS"],
        &["GETEX", "s"],
        &["SETEX", "s", "10", "v"],
        &["TYPE", "s"],
        // GETEX looks the key up before it checks the number; a repeated option wins.
        &["GETEX", "missing", "EX", "-5"],
        &["GETEX", "missing", "EX", "abc"],
        &["SADD", "set2", "m"],
        &["GETEX", "set2", "EX", "abc"],
        &["GETEX", "set2", "EX", "-5"],
        &["SET", "r", "v", "EX", "10", "EX", "20"],
        &["TTL", "r"],
        &["SET", "r", "v", "PX", "10", "EX", "20"],
        &["SET", "r", "v", "EX", "10", "EX", "abc"],
        &["SET", "r", "v", "KEEPTTL", "KEEPTTL"],
        &["TTL", "r"],
        &["GETEX", "r", "PX", "5000", "PX", "90000"],
        &["TTL", "r"],
        &["GETEX", "r", "EX", "abc"],
        &["GETEX", "r", "EX", "0"],
        &["GETEX", "r", "PERSIST", "PERSIST"],
        &["TTL", "r"],
        &["GETEX", "r", "KEEPTTL"],
        &["GETEX", "r", "NX"],
    ];
    let script: String = script.iter().map(|c| resp(c)).collect();
    let theirs = raw(([127, 0, 0, 1], redis.1).into(), script.as_bytes());
    let ours = raw(anna.addr, script.as_bytes());
    assert_same_replies(&ours, &theirs);

    // Short deadlines, waited out: every command then finds the keys absent.
    let short = [
        resp(&["SET", "t1", "v", "PX", "150"]),
        resp(&["INCR", "t2"]),
        resp(&["PEXPIRE", "t2", "150"]),
        resp(&["SADD", "t3", "m"]),
        resp(&["PEXPIRE", "t3", "150"]),
        resp(&["SETEX", "t4", "1", "v"]),
        resp(&["PEXPIRE", "t4", "150"]),
    ]
    .concat();
    let after = [
        resp(&["GET", "t1"]),
        resp(&["EXISTS", "t1", "t2", "t3", "t4"]),
        resp(&["TYPE", "t3"]),
        resp(&["SMEMBERS", "t3"]),
        resp(&["SCARD", "t3"]),
        resp(&["TTL", "t2"]),
        resp(&["INCR", "t2"]),
        resp(&["SET", "t1", "new", "NX"]),
        resp(&["GET", "t1"]),
        resp(&["SADD", "t4", "m"]),
        resp(&["STRLEN", "t4"]),
        resp(&["MGET", "t1", "t4"]),
    ]
    .concat();
    for addr in [([127, 0, 0, 1], redis.1).into(), anna.addr] {
        raw(addr, short.as_bytes());
    }
    std::thread::sleep(Duration::from_millis(300));
    let theirs = raw(([127, 0, 0, 1], redis.1).into(), after.as_bytes());
    let ours = raw(anna.addr, after.as_bytes());
    assert_same_replies(&ours, &theirs);
}

fn info_field(addr: std::net::SocketAddr, field: &str) -> u64 {
    let info = raw(addr, resp(&["INFO", "all"]).as_bytes());
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO:\n{info}"))
        .trim()
        .parse()
        .unwrap()
}

/// Keys nobody touches again are deleted by their actors soon after their deadline: the
/// store shrinks back to the keys without one, INFO counts them, and none waited long.
#[test]
fn actors_delete_expired_keys_on_their_own() {
    let anna = server();
    let mut script = String::new();
    for n in 0..3000 {
        // Deadlines spread over 100–400 ms.
        script.push_str(&resp(&["SET", &format!("k{n}"), "v", "PX", &(100 + n % 300).to_string()]));
    }
    for n in 0..500 {
        script.push_str(&resp(&["SET", &format!("keep{n}"), "v"]));
    }
    let answers = raw(anna.addr, script.as_bytes());
    assert_eq!(answers.lines().filter(|l| *l == "+OK").count(), 3500);
    let keyspace = raw(anna.addr, resp(&["INFO", "keyspace"]).as_bytes());
    assert!(keyspace.contains("expires="), "{keyspace}");

    let start = Instant::now();
    while info_field(anna.addr, "expired_keys") < 3000 {
        assert!(start.elapsed() < Duration::from_secs(10), "expired keys were not deleted");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(info_field(anna.addr, "expired_keys"), 3000);
    // A loose bound (a loaded CI machine, a debug build): the measured lateness is in the
    // book's expiry section.
    let late = info_field(anna.addr, "anna_expire_lateness_over_1s");
    assert_eq!(late, 0, "every key deleted within a second of its deadline");
    let keyspace = raw(anna.addr, resp(&["INFO", "keyspace"]).as_bytes());
    assert!(keyspace.contains("expires=0"), "{keyspace}");
    // The tombstones go once acknowledged (a single node: at its next epoch).
    let start = Instant::now();
    loop {
        let size = raw(anna.addr, resp(&["DBSIZE"]).as_bytes());
        if size.trim() == ":500" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "DBSIZE stayed {size}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
