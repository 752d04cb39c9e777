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
        &["OBJECT", "IDLETIME", "small"],
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
