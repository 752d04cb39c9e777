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
