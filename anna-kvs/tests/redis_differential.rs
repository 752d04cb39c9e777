//! The Redis port against a real redis-server, reply for reply: scripted edge cases of the
//! commands that compute (INCRBYFLOAT's long double text), and a long seeded random sequence
//! over every data command of the table.

mod common;
use common::same_as_redis;

/// INCRBYFLOAT computes in Redis's long double and prints as Redis prints: binary fractions,
/// exponents, hex, huge and tiny values, counters and integers as the starting value, and
/// every refusal (not a float, NaN or infinity, wrong type) with Redis's text.
#[test]
fn incrbyfloat_answers_digit_for_digit() {
    same_as_redis(&[
        &["SET", "f", "10.50"],
        &["INCRBYFLOAT", "f", "0.1"],
        &["INCRBYFLOAT", "f", "-5.0e3"],
        &["INCRBYFLOAT", "f", "0.3333333333333333333"],
        &["GET", "f"],
        &["INCRBYFLOAT", "new", "3.0e3"],
        &["INCRBYFLOAT", "big", "1.7e308"],
        &["INCRBYFLOAT", "big", "1e4000"],
        &["INCRBYFLOAT", "tiny", "1e-30"],
        &["INCRBYFLOAT", "tiny", "-1e-30"],
        &["INCRBYFLOAT", "hex", "0x1p-3"],
        &["INCRBYFLOAT", "neg", "-0.0"],
        &["INCR", "counter"],
        &["INCRBYFLOAT", "counter", "1.5"],
        &["INCR", "counter"],
        &["SET", "int", "9223372036854775807"],
        &["INCRBYFLOAT", "int", "1"],
        &["INCRBYFLOAT", "f", "abc"],
        &["INCRBYFLOAT", "f", " 1"],
        &["INCRBYFLOAT", "f", "nan"],
        &["INCRBYFLOAT", "f", "inf"],
        &["INCRBYFLOAT", "f", "1e99999"],
        &["SET", "text", "hello"],
        &["INCRBYFLOAT", "text", "1"],
        &["SADD", "set", "m"],
        &["INCRBYFLOAT", "set", "1"],
        &["INCRBYFLOAT", "set", "x"],
        &["SET", "ttl", "1", "EX", "100"],
        &["INCRBYFLOAT", "ttl", "1"],
        &["TTL", "ttl"],
        &["INCRBYFLOAT", "f"],
    ]);
}

/// OBJECT and TOUCH answer as Redis does for values written directly (Redis's encoding of an
/// `APPEND`ed string or a set that once held a word depends on history; this store answers
/// the encoding of the value as it is, see `COMMAND DOCS`), in any database, with Redis's
/// errors for a wrong subcommand, a wrong arity and FREQ without an LFU policy.
#[test]
fn object_and_touch_answer_as_redis_does() {
    let long = "x".repeat(45);
    let embstr = "y".repeat(44);
    same_as_redis(&[
        &["SET", "small", "123"],
        &["SET", "shared-edge", "9999"],
        &["SET", "big", "12345"],
        &["SET", "negative", "-5"],
        &["SET", "leading-zero", "0123"],
        &["SET", "twenty-one", "123456789012345678901"],
        &["SET", "embstr", &embstr],
        &["SET", "raw", &long],
        &["INCR", "counter"],
        &["INCRBY", "counter", "20000"],
        &["SADD", "ints", "1", "2", "-3"],
        &["SADD", "words", "1", "a"],
        &["OBJECT", "ENCODING", "small"],
        &["OBJECT", "encoding", "big"],
        &["OBJECT", "ENCODING", "negative"],
        &["OBJECT", "ENCODING", "leading-zero"],
        &["OBJECT", "ENCODING", "twenty-one"],
        &["OBJECT", "ENCODING", "embstr"],
        &["OBJECT", "ENCODING", "raw"],
        &["OBJECT", "ENCODING", "counter"],
        &["OBJECT", "ENCODING", "ints"],
        &["OBJECT", "ENCODING", "words"],
        &["OBJECT", "ENCODING", "missing"],
        &["OBJECT", "REFCOUNT", "small"],
        &["OBJECT", "REFCOUNT", "shared-edge"],
        &["OBJECT", "REFCOUNT", "big"],
        &["OBJECT", "REFCOUNT", "counter"],
        &["OBJECT", "REFCOUNT", "ints"],
        &["OBJECT", "REFCOUNT", "missing"],
        &["OBJECT", "IDLETIME", "missing"],
        &["OBJECT", "FREQ", "small"],
        &["OBJECT", "ENCODING"],
        &["OBJECT", "ENCODING", "a", "b"],
        &["OBJECT", "HELP", "x"],
        &["OBJECT", "bogus", "small"],
        &["OBJECT"],
        &["TOUCH", "small", "missing", "small", "ints"],
        &["TOUCH"],
        &["SELECT", "3"],
        &["OBJECT", "ENCODING", "small"],
        &["SET", "small", "hello"],
        &["OBJECT", "ENCODING", "small"],
        &["TOUCH", "small", "big"],
        &["SELECT", "0"],
        &["OBJECT", "ENCODING", "small"],
    ]);
}

/// RENAME, RENAMENX, COPY and MSETNX answer as Redis does, for strings, counters and sets,
/// with deadlines carried over, across databases, inside MULTI (where they split the
/// transaction into rounds but answer in order), and with every error Redis gives.
#[test]
fn moves_and_msetnx_answer_as_redis_does() {
    same_as_redis(&[
        &["SET", "a", "1"],
        &["RENAME", "a", "b"],
        &["GET", "a"],
        &["GET", "b"],
        &["RENAME", "missing", "x"],
        &["RENAMENX", "missing", "x"],
        &["RENAME", "b", "b"],
        &["RENAMENX", "b", "b"],
        &["SET", "c", "3"],
        &["RENAMENX", "b", "c"],
        &["RENAMENX", "b", "d"],
        &["MGET", "b", "c", "d"],
        &["INCRBY", "counter", "41"],
        &["RENAME", "counter", "moved"],
        &["INCR", "moved"],
        &["TYPE", "moved"],
        &["SADD", "set", "x", "y", "z"],
        &["SET", "target", "old"],
        &["RENAME", "set", "target"],
        &["SCARD", "target"],
        &["SISMEMBER", "target", "y"],
        &["TYPE", "set"],
        &["SET", "ttl", "v", "EX", "1000"],
        &["RENAME", "ttl", "ttl2"],
        &["TTL", "ttl2"],
        &["COPY", "ttl2", "ttl3"],
        &["TTL", "ttl3"],
        &["COPY", "ttl2", "ttl3"],
        &["COPY", "ttl2", "ttl3", "REPLACE"],
        &["COPY", "target", "c", "REPLACE"],
        &["SCARD", "c"],
        &["COPY", "target", "target"],
        &["COPY", "missing", "x"],
        &["COPY", "target", "other", "DB", "5"],
        &["COPY", "target", "other", "DB", "16"],
        &["COPY", "target", "other", "DB", "x"],
        &["COPY", "target", "other", "DB"],
        &["COPY", "target", "other", "BOGUS"],
        &["COPY", "target", "target", "DB", "5"],
        &["SELECT", "5"],
        &["SCARD", "other"],
        &["SCARD", "target"],
        &["COPY", "other", "back", "DB", "0"],
        &["SELECT", "0"],
        &["SCARD", "back"],
        &["SISMEMBER", "back", "z"],
        &["MSETNX", "n1", "1", "n2", "2"],
        &["MSETNX", "n2", "x", "n3", "3"],
        &["MGET", "n1", "n2", "n3"],
        &["MSETNX", "n4", "a", "n4", "b"],
        &["GET", "n4"],
        &["MSETNX", "n5"],
        &["MSETNX", "n5", "1", "n6"],
        &["MULTI"],
        &["SET", "m", "1"],
        &["RENAME", "m", "m2"],
        &["GET", "m2"],
        &["MSETNX", "m3", "x", "m4", "y"],
        &["COPY", "m2", "m5"],
        &["RENAME", "nothing", "m6"],
        &["GET", "m5"],
        &["EXEC"],
    ]);
}

/// OBJECT IDLETIME counts whole seconds since the write that gave the key its value: 0 just
/// after it, at least 1 a second later, 0 again after a new write (reads do not reset it:
/// this store keeps no read times, as `COMMAND DOCS` says).
#[test]
fn object_idletime_counts_from_the_last_write() {
    let anna = common::redis_port_server(1);
    let mut con =
        redis::Client::open(format!("redis://{}/", anna.addr)).unwrap().get_connection().unwrap();
    let idle = |con: &mut redis::Connection| -> i64 {
        redis::cmd("OBJECT").arg("IDLETIME").arg("k").query(con).unwrap()
    };
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    assert!(idle(&mut con) <= 1);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let _: Option<String> = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert!(idle(&mut con) >= 2, "a read does not reset it");
    let _: () = redis::cmd("SET").arg("k").arg("w").query(&mut con).unwrap();
    assert!(idle(&mut con) <= 1);
}
