//! The Redis port against a real redis-server, reply for reply: scripted edge cases of the
//! commands that compute (INCRBYFLOAT's long double text), and a long seeded random sequence
//! over every data command of the table.

mod common;
use common::{RealRedis, same_as_redis};

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
        // WAIT answers at once inside EXEC; a flush after a move takes its stamp after it.
        &["MULTI"],
        &["SET", "w", "1"],
        &["WAIT", "1", "0"],
        &["RENAME", "w", "w2"],
        &["FLUSHDB"],
        &["GET", "w2"],
        &["EXEC"],
        &["DBSIZE"],
        // A WAIT after a move inside EXEC answers at once, and what follows it still runs
        // (this script's connection has half-closed by then).
        &["MULTI"],
        &["SET", "x", "1"],
        &["RENAME", "x", "y"],
        &["WAIT", "1", "0"],
        &["SET", "c", "1"],
        &["EXEC"],
        &["MGET", "x", "y", "c"],
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

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const KEYS: &[&str] = &["k0", "k1", "k2", "k3", "k4", "k5"];
const VALUES: &[&str] =
    &["0", "1", "-1", "10", "abc", "", "3.5", "9223372036854775807", "hello world", "007"];
const MEMBERS: &[&str] = &["a", "b", "c", "1", "2", "10"];
const FLOATS: &[&str] = &["1.5", "-0.25", "3e2", "0.1", "-7", "abc", "1e400"];
const INTEGERS: &[&str] = &["1", "-1", "5", "0", "100", "-9223372036854775808", "x", "01"];
/// Relative times to live: long enough that nothing expires during a run (a run takes well
/// under a second), or not positive (the key is deleted at once).
const SECONDS: &[&str] = &["100", "5000", "0", "-5", "x"];
const MILLIS: &[&str] = &["100000", "5000000", "0", "-1"];
/// Absolute deadlines: the year 2100, or long past.
const UNIX_SECONDS: &[&str] = &["4102444800", "4102444900", "1000"];
const UNIX_MILLIS: &[&str] = &["4102444800000", "4102444900123", "1000"];

/// One random command of the Redis port's data, keyspace, transaction and connection
/// commands (every row of the table but those listed in
/// [`every_command_answers_as_redis_over_random_sequences`]).
fn random_command(rng: &mut Rng) -> Vec<String> {
    let k = |rng: &mut Rng| rng.pick(KEYS).to_owned();
    let v = |rng: &mut Rng| rng.pick(VALUES).to_owned();
    let m = |rng: &mut Rng| rng.pick(MEMBERS).to_owned();
    let w = |words: &[&str]| words.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
    match rng.below(56) {
        0 | 1 => w(&["GET", &k(rng)]),
        2..=4 => {
            let mut c = w(&["SET", &k(rng), &v(rng)]);
            for _ in 0..rng.below(3) {
                match rng.below(9) {
                    0 => c.push("NX".into()),
                    1 => c.push("XX".into()),
                    2 => c.push("GET".into()),
                    3 => c.extend(w(&["EX", rng.pick(SECONDS)])),
                    4 => c.extend(w(&["PX", rng.pick(MILLIS)])),
                    // (Future deadlines only: Redis 7.0 stores a SET with a past one and
                    // counts it in DBSIZE until its expiry cycle finds it; this server
                    // deletes it at once. GET and every other read agree.)
                    5 => c.extend(w(&["EXAT", UNIX_SECONDS[..2][rng.below(2)]])),
                    6 => c.extend(w(&["PXAT", UNIX_MILLIS[..2][rng.below(2)]])),
                    7 => c.push("KEEPTTL".into()),
                    _ => c.push("BOGUS".into()),
                }
            }
            c
        }
        5 => w(&["SETNX", &k(rng), &v(rng)]),
        6 => w(&["GETSET", &k(rng), &v(rng)]),
        7 => w(&["GETDEL", &k(rng)]),
        8 => w(&["APPEND", &k(rng), &v(rng)]),
        9 => w(&["STRLEN", &k(rng)]),
        10 => w(&[
            "GETRANGE",
            &k(rng),
            rng.pick(&["0", "1", "-1", "-3"]),
            rng.pick(&["0", "2", "-1", "100"]),
        ]),
        11 => w(&["SETRANGE", &k(rng), rng.pick(&["0", "1", "3", "-1"]), &v(rng)]),
        12 => w(&["MGET", &k(rng), &k(rng), &k(rng)]),
        13 => w(&["MSET", &k(rng), &v(rng), &k(rng), &v(rng)]),
        14 => w(&["MSETNX", &k(rng), &v(rng), &k(rng), &v(rng)]),
        15 => w(&["INCR", &k(rng)]),
        16 => w(&["DECR", &k(rng)]),
        17 => w(&["INCRBY", &k(rng), rng.pick(INTEGERS)]),
        18 => w(&["DECRBY", &k(rng), rng.pick(INTEGERS)]),
        19 => w(&["INCRBYFLOAT", &k(rng), rng.pick(FLOATS)]),
        20 => w(&[rng.pick(&["DEL", "UNLINK"]), &k(rng), &k(rng)]),
        21 => w(&[rng.pick(&["EXISTS", "TOUCH"]), &k(rng), &k(rng)]),
        22 => w(&["TYPE", &k(rng)]),
        23 | 24 => {
            let (name, time) = match rng.below(4) {
                0 => ("EXPIRE", rng.pick(SECONDS)),
                1 => ("PEXPIRE", rng.pick(MILLIS)),
                2 => ("EXPIREAT", rng.pick(UNIX_SECONDS)),
                _ => ("PEXPIREAT", rng.pick(UNIX_MILLIS)),
            };
            let mut c = w(&[name, &k(rng), time]);
            if rng.chance(40) {
                match rng.below(5) {
                    4 => c.extend(w(&["NX", "XX"])),
                    n => c.push(["NX", "XX", "GT", "LT"][n].to_owned()),
                }
            }
            c
        }
        25 => w(&[rng.pick(&["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"]), &k(rng)]),
        26 => w(&["PERSIST", &k(rng)]),
        27 => w(&["SETEX", &k(rng), rng.pick(SECONDS), &v(rng)]),
        28 => w(&["PSETEX", &k(rng), rng.pick(MILLIS), &v(rng)]),
        29 => {
            let mut c = w(&["GETEX", &k(rng)]);
            match rng.below(6) {
                0 => c.extend(w(&["EX", rng.pick(SECONDS)])),
                1 => c.extend(w(&["PX", rng.pick(MILLIS)])),
                2 => c.extend(w(&["EXAT", rng.pick(UNIX_SECONDS)])),
                3 => c.extend(w(&["PXAT", rng.pick(UNIX_MILLIS)])),
                4 => c.push("PERSIST".into()),
                _ => {}
            }
            c
        }
        30..=32 => w(&["SADD", &k(rng), &m(rng), &m(rng)]),
        33 => w(&["SREM", &k(rng), &m(rng), &m(rng)]),
        34 => w(&["SMEMBERS", &k(rng)]),
        35 => w(&["SISMEMBER", &k(rng), &m(rng)]),
        36 => w(&["SCARD", &k(rng)]),
        37 => w(&[rng.pick(&["RENAME", "RENAMENX"]), &k(rng), &k(rng)]),
        38 => {
            let mut c = w(&["COPY", &k(rng), &k(rng)]);
            if rng.chance(30) {
                c.extend(w(&["DB", rng.pick(&["0", "1", "16"])]));
            }
            if rng.chance(50) {
                c.push("REPLACE".into());
            }
            c
        }
        39 => w(&["DBSIZE"]),
        40 => {
            let mut c = w(&["SCAN", "0"]);
            if rng.chance(50) {
                c.extend(w(&["MATCH", rng.pick(&["k*", "k[0-2]", "*3", "x*"])]));
            }
            if rng.chance(30) {
                c.extend(w(&["TYPE", rng.pick(&["string", "set", "none"])]));
            }
            c.extend(w(&["COUNT", rng.pick(&["1", "3", "100"])]));
            c
        }
        41 => w(&["KEYS", rng.pick(&["*", "k?", "k[13]", "*[!0]"])]),
        42 => w(&["RANDOMKEY"]),
        43 => w(&["SELECT", rng.pick(&["0", "0", "1", "16", "x"])]),
        44 if rng.chance(10) => w(&[rng.pick(&["FLUSHDB", "FLUSHALL"])]),
        45 => w(&["PING"]),
        46 => w(&["ECHO", &v(rng)]),
        47 => w(&["WAIT", "0", "0"]),
        48 => w(&["UNWATCH"]),
        49 => w(&["OBJECT", "FREQ", &k(rng)]),
        50 => w(&["NOSUCHCOMMAND", &k(rng)]),
        51 => {
            let mut c = w(&["LCS", &k(rng), &k(rng)]);
            match rng.below(4) {
                0 => c.push("LEN".into()),
                1 => c.extend(w(&["IDX", "MINMATCHLEN", "2", "WITHMATCHLEN"])),
                2 => c.push("IDX".into()),
                _ => {}
            }
            c
        }
        52 => match rng.below(3) {
            0 => w(&["CLIENT", "SETNAME", rng.pick(&["app", "a b", ""])]),
            _ => w(&["CLIENT", "GETNAME"]),
        },
        53 => w(&["CONFIG", "GET", rng.pick(&["maxmemory-policy", "databases", "nosuch"])]),
        54 => w(&["AUTH", rng.pick(&["secret", "user secret"])]),
        _ => w(&["GET", &k(rng), "extra"]),
    }
}

/// A reply in a form both servers must agree on: sets and key lists sorted, times to live
/// reduced to their sign (the two servers run a second apart), a random key to whether
/// there was one.
fn normalize(command: &[String], reply: redis::RedisResult<redis::Value>) -> String {
    use redis::Value;
    let name = command[0].to_ascii_uppercase();
    let value = match reply {
        Err(error) => return format!("error: {error}"),
        Ok(value) => value,
    };
    let sorted = |items: Vec<Value>| {
        let mut items: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
        items.sort();
        items.join(",")
    };
    match (name.as_str(), value) {
        ("SMEMBERS" | "KEYS", Value::Array(items)) => sorted(items),
        // (Inside EXEC, where the cursor cannot be followed, one call's batch is whatever
        // each server's order puts first: only the reply's shape is compared.)
        ("SCAN", Value::Array(parts))
            if matches!(parts.as_slice(), [Value::BulkString(_), Value::Array(_)]) =>
        {
            "a cursor and a batch of keys".into()
        }
        ("TTL" | "PTTL" | "EXPIRETIME" | "PEXPIRETIME", Value::Int(n)) => {
            format!("{}", n.signum())
        }
        ("RANDOMKEY", Value::BulkString(_)) => "some key".into(),
        (_, value) => format!("{value:?}"),
    }
}

/// Every key `SCAN` answers, following the cursor to its end (Redis's guarantee: each key
/// held for the whole scan, at least once), sorted and without repeats.
fn full_scan(con: &mut redis::Connection, command: &[String]) -> String {
    let mut cursor = "0".to_owned();
    let mut keys = std::collections::BTreeSet::new();
    for _ in 0..10_000 {
        let mut scan = redis::cmd("SCAN");
        scan.arg(&cursor).arg(&command[2..]);
        let reply: redis::RedisResult<(String, Vec<String>)> = scan.query(con);
        match reply {
            Err(error) => return format!("error: {error}"),
            Ok((next, batch)) => {
                keys.extend(batch);
                if next == "0" {
                    return format!("{keys:?}");
                }
                cursor = next;
            }
        }
    }
    panic!("SCAN did not end: {command:?}");
}

/// Sends `command` to a connection and normalizes the reply; inside `MULTI`, `EXEC`'s array
/// is normalized element by element against the queued commands.
fn run(con: &mut redis::Connection, command: &[String], queued: Option<&[Vec<String>]>) -> String {
    let Some(queued) = queued else {
        return if command[0] == "SCAN" {
            full_scan(con, command)
        } else {
            run_once(con, command, &[])
        };
    };
    run_once(con, command, queued)
}

fn run_once(con: &mut redis::Connection, command: &[String], queued: &[Vec<String>]) -> String {
    let mut cmd = redis::cmd(&command[0]);
    cmd.arg(&command[1..]);
    let reply = cmd.query::<redis::Value>(con);
    match (command[0].as_str(), reply) {
        ("EXEC", Ok(redis::Value::Array(items))) if items.len() == queued.len() => items
            .into_iter()
            .zip(queued)
            .map(|(item, queued)| match item {
                redis::Value::ServerError(error) => format!("error: {error:?}"),
                item => normalize(queued, Ok(item)),
            })
            .collect::<Vec<_>>()
            .join(" | "),
        (_, reply) => normalize(command, reply),
    }
}

/// Every data, keyspace, transaction and connection command of the Redis port against a real
/// redis-server over long random sequences on a shared key space (strings, counters, sets,
/// deadlines, two databases, transactions with and without errors), many seeds, reply for
/// reply after normalizing only what is allowed to differ (set order, SCAN's cursor, the
/// seconds left of a time to live, which random key).
///
/// Not generated, each for its reason:
/// - `OBJECT ENCODING`/`REFCOUNT`/`IDLETIME`: Redis's answers depend on how a value was made
///   (an `APPEND`ed string is `raw`); this store answers for the value as it is
///   (`object_and_touch_answer_as_redis_does` covers values written directly).
/// - `SWAPDB`, `WATCH`: refused with the reason (see `COMMAND DOCS`).
/// - `TIME`, `LASTSAVE`, `INFO`, `SLOWLOG`, `MONITOR`, `COMMAND`, `DEBUG`, `HELLO`, `QUIT`,
///   `SAVE`, `BGSAVE`, `BGREWRITEAOF`: about the server rather than the data, with answers
///   that differ by server (versions, times, counts) or that end the connection; each has its
///   own tests (`redis_introspection.rs` compares their errors with Redis's). `CLIENT` and
///   `CONFIG` are generated in their deterministic forms (names, `CONFIG GET` of settings
///   both servers share).
#[test]
fn every_command_answers_as_redis_over_random_sequences() {
    let redis_server = RealRedis::start();
    let anna = common::redis_port_server(2);
    let open = |addr: std::net::SocketAddr| {
        redis::Client::open(format!("redis://{addr}/")).unwrap().get_connection().unwrap()
    };
    let mut names = std::collections::BTreeSet::new();
    let mut total = 0;
    for seed in 1..=40_u64 {
        // Fresh connections (database 0, no transaction) and an empty store for each seed.
        let mut theirs = open(([127, 0, 0, 1], redis_server.1).into());
        let mut ours = open(anna.addr);
        for con in [&mut theirs, &mut ours] {
            let _: () = redis::cmd("FLUSHALL").query(con).unwrap();
        }
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut history: Vec<String> = Vec::new();
        let mut queued: Option<Vec<Vec<String>>> = None;
        for _ in 0..300 {
            let command = match &queued {
                // A transaction: a few commands, then EXEC (or DISCARD).
                Some(q) if q.len() > rng.below(5) => {
                    vec![if rng.chance(15) { "DISCARD" } else { "EXEC" }.to_owned()]
                }
                None if rng.chance(4) => vec!["MULTI".to_owned()],
                _ => random_command(&mut rng),
            };
            let name = command[0].to_ascii_uppercase();
            let in_transaction = queued.as_deref();
            let a = run(&mut ours, &command, in_transaction);
            let b = run(&mut theirs, &command, in_transaction);
            history.push(format!("{command:?} -> {b}"));
            assert_eq!(
                a,
                b,
                "seed {seed}, command {} {command:?}: anna (left) and redis (right) differ; the sequence so far:\n{}",
                history.len(),
                history.join("\n")
            );
            names.insert(name.clone());
            total += 1;
            match name.as_str() {
                "MULTI" => queued = Some(Vec::new()),
                "EXEC" | "DISCARD" => queued = None,
                _ => {
                    if let Some(q) = &mut queued
                        && b.contains("QUEUED")
                    {
                        q.push(command);
                    }
                }
            }
        }
    }
    eprintln!("{total} commands over {} command names: {names:?}", names.len());
    // Every row of the table was generated, or is one of those left out above.
    let not_generated = [
        "OBJECT",
        "SWAPDB",
        "WATCH",
        "TIME",
        "LASTSAVE",
        "INFO",
        "COMMAND",
        "DEBUG",
        "HELLO",
        "QUIT",
        "SAVE",
        "BGSAVE",
        "BGREWRITEAOF",
        "SLOWLOG",
        "MONITOR",
    ];
    let mut con = open(anna.addr);
    let table: Vec<redis::Value> = redis::cmd("COMMAND").query(&mut con).unwrap();
    for row in table {
        let redis::Value::Array(row) = row else { panic!("{row:?}") };
        let name: String = redis::from_redis_value(row[0].clone()).unwrap();
        let name = name.to_ascii_uppercase();
        assert!(
            names.contains(&name) || not_generated.contains(&name.as_str()),
            "{name} is neither generated nor listed as left out"
        );
    }
}

/// LCS answers as Redis does: the subsequence, its length, and IDX's runs (with MINMATCHLEN
/// and WITHMATCHLEN) over many random pairs of short strings, plus its errors.
#[test]
fn lcs_answers_as_redis_does() {
    let mut rng = Rng(0x05EE_D1C5);
    let mut strings = Vec::new();
    for _ in 0..150 {
        let mut pair = Vec::new();
        for _ in 0..2 {
            let len = rng.below(14);
            pair.push((0..len).map(|_| ["a", "b", "c"][rng.below(3)]).collect::<String>());
        }
        strings.push(pair);
    }
    let mut commands: Vec<Vec<String>> = Vec::new();
    let owned = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect::<Vec<String>>();
    for pair in &strings {
        commands.push(owned(&["MSET", "a", &pair[0], "b", &pair[1]]));
        commands.push(owned(&["LCS", "a", "b"]));
        commands.push(owned(&["LCS", "a", "b", "LEN"]));
        commands.push(owned(&["LCS", "a", "b", "IDX"]));
        commands.push(owned(&["LCS", "a", "b", "IDX", "MINMATCHLEN", "2", "WITHMATCHLEN"]));
    }
    for extra in [
        &["MSET", "key1", "ohmytext", "key2", "mynewtext"][..],
        &["LCS", "key1", "key2", "IDX", "MINMATCHLEN", "-3"],
        &["LCS", "key1", "key2", "LEN", "IDX"],
        &["LCS", "key1", "key2", "BOGUS"],
        &["LCS", "key1", "key2", "MINMATCHLEN", "x"],
        &["LCS", "key1", "key2", "MINMATCHLEN"],
        &["LCS", "nokey", "key1"],
        &["SADD", "set", "m"],
        &["LCS", "key1", "set"],
        &["LCS", "set", "key1", "BOGUS"],
        &["LCS", "nokey", "key1", "BOGUS"],
        &["INCR", "n"],
        &["LCS", "n", "key1", "IDX"],
        &["LCS", "key1"],
    ] {
        commands.push(owned(extra));
    }
    let refs: Vec<Vec<&str>> =
        commands.iter().map(|c| c.iter().map(String::as_str).collect()).collect();
    let refs: Vec<&[&str]> = refs.iter().map(Vec::as_slice).collect();
    same_as_redis(&refs);
}
