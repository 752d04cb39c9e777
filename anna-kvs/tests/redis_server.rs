//! anna-server's Redis front end against real clients: the `redis` crate and the real
//! `redis-cli` (from Debian's redis-tools, installed by `.ci/run`), on a server started on a
//! free port. Every command, pipelining, AUTH, RESP3, error replies; then bad input, each time
//! checking that other clients are still served.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use anna_kvs::node::NodeConfig;
use anna_kvs::redis::RedisConfig;
use anna_kvs::server::{RunningServer, ServerConfig, ServerError};
use redis::{RedisResult, Value};

mod common;
use common::{RealRedis, assert_same_replies, raw, resp};

fn server_with(configure: impl FnOnce(&mut ServerConfig)) -> RunningServer {
    let mut config = ServerConfig {
        redis: RedisConfig { port: 0, ..RedisConfig::default() },
        node: NodeConfig {
            threads: 2,
            pin_threads: false,
            epoch: Duration::from_millis(20),
            ..ServerConfig::default().node
        },
        ..ServerConfig::default()
    };
    configure(&mut config);
    RunningServer::start(config).expect("server starts")
}

fn server() -> RunningServer {
    server_with(|_| {})
}

fn connect(addr: SocketAddr) -> redis::Connection {
    redis::Client::open(format!("redis://{addr}/")).unwrap().get_connection().unwrap()
}

fn cmd<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[&str]) -> RedisResult<T> {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query(con)
}

fn error_text(result: RedisResult<Value>) -> String {
    let error = result.expect_err("expected an error reply");
    format!("{} {}", error.code().unwrap_or_default(), error.detail().unwrap_or_default())
}

#[test]
fn strings_counters_sets_and_keys() {
    let server = server();
    let mut con = connect(server.addr);
    assert_eq!(cmd::<String>(&mut con, &["PING"]).unwrap(), "PONG");
    assert_eq!(cmd::<String>(&mut con, &["PING", "hi"]).unwrap(), "hi");
    assert_eq!(cmd::<String>(&mut con, &["ECHO", "echo me"]).unwrap(), "echo me");
    assert_eq!(cmd::<String>(&mut con, &["SELECT", "0"]).unwrap(), "OK");
    assert!(error_text(cmd(&mut con, &["SELECT", "16"])).contains("out of range"));

    assert_eq!(cmd::<String>(&mut con, &["SET", "k", "v"]).unwrap(), "OK");
    assert_eq!(cmd::<Option<String>>(&mut con, &["GET", "k"]).unwrap().as_deref(), Some("v"));
    assert_eq!(cmd::<Option<String>>(&mut con, &["GET", "missing"]).unwrap(), None);
    assert_eq!(cmd::<String>(&mut con, &["SET", "empty", ""]).unwrap(), "OK");
    assert_eq!(cmd::<Option<String>>(&mut con, &["GET", "empty"]).unwrap().as_deref(), Some(""));
    assert_eq!(cmd::<String>(&mut con, &["SET", "ttl", "v", "EX", "10"]).unwrap(), "OK");
    assert_eq!(cmd::<i64>(&mut con, &["TTL", "ttl"]).unwrap(), 10);
    assert_eq!(cmd::<String>(&mut con, &["MSET", "a", "1", "b", "2"]).unwrap(), "OK");
    assert_eq!(
        cmd::<Vec<Option<String>>>(&mut con, &["MGET", "a", "b", "nope"]).unwrap(),
        vec![Some("1".into()), Some("2".into()), None]
    );
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "a", "b", "nope"]).unwrap(), 2);

    assert_eq!(cmd::<i64>(&mut con, &["INCR", "n"]).unwrap(), 1);
    assert_eq!(cmd::<i64>(&mut con, &["INCRBY", "n", "41"]).unwrap(), 42);
    assert_eq!(cmd::<i64>(&mut con, &["DECR", "n"]).unwrap(), 41);
    assert_eq!(cmd::<i64>(&mut con, &["DECRBY", "n", "50"]).unwrap(), -9);
    assert_eq!(cmd::<Option<String>>(&mut con, &["GET", "n"]).unwrap().as_deref(), Some("-9"));
    assert_eq!(
        cmd::<i64>(&mut con, &["INCRBY", "a", "10"]).unwrap(),
        11,
        "INCR continues a string integer"
    );
    assert!(error_text(cmd(&mut con, &["INCR", "k"])).contains("not an integer"));
    assert!(error_text(cmd(&mut con, &["INCRBY", "n", "x"])).contains("not an integer"));

    assert_eq!(cmd::<i64>(&mut con, &["SADD", "s", "x", "y", "z"]).unwrap(), 3);
    assert_eq!(cmd::<i64>(&mut con, &["SADD", "s", "x"]).unwrap(), 0);
    assert_eq!(cmd::<i64>(&mut con, &["SREM", "s", "z", "nope"]).unwrap(), 1);
    assert_eq!(cmd::<i64>(&mut con, &["SCARD", "s"]).unwrap(), 2);
    assert_eq!(cmd::<i64>(&mut con, &["SISMEMBER", "s", "x"]).unwrap(), 1);
    assert_eq!(cmd::<i64>(&mut con, &["SISMEMBER", "s", "z"]).unwrap(), 0);
    let mut members: Vec<String> = cmd(&mut con, &["SMEMBERS", "s"]).unwrap();
    members.sort();
    assert_eq!(members, ["x", "y"]);
    assert!(error_text(cmd(&mut con, &["GET", "s"])).starts_with("WRONGTYPE"));
    assert!(error_text(cmd(&mut con, &["SADD", "k", "m"])).starts_with("WRONGTYPE"));
    assert!(error_text(cmd(&mut con, &["SMEMBERS", "k"])).starts_with("WRONGTYPE"));
    assert!(error_text(cmd(&mut con, &["INCR", "s"])).starts_with("WRONGTYPE"));

    assert_eq!(cmd::<i64>(&mut con, &["DEL", "k", "s", "nope"]).unwrap(), 2);
    assert_eq!(cmd::<Option<String>>(&mut con, &["GET", "k"]).unwrap(), None);
    assert_eq!(cmd::<i64>(&mut con, &["SCARD", "s"]).unwrap(), 0);
    assert_eq!(
        cmd::<i64>(&mut con, &["SADD", "k", "now-a-set"]).unwrap(),
        1,
        "a deleted key takes any type"
    );

    std::thread::sleep(Duration::from_millis(100)); // DBSIZE and INFO read per-epoch reports
    let keys: i64 = cmd(&mut con, &["DBSIZE"]).unwrap();
    assert!(keys >= 5, "dbsize {keys}");
    let info: String = cmd(&mut con, &["INFO"]).unwrap();
    for section in [
        "# Server",
        "# Clients",
        "# Stats",
        "# Replication",
        "# Keyspace",
        "# Memory",
        "# CPU",
        "# Persistence",
        "connected_clients:1",
        "db0:keys=",
    ] {
        assert!(info.contains(section), "INFO lacks {section}: {info}");
    }
    let field = |name: &str| -> f64 {
        let line = info.lines().find(|l| l.starts_with(&format!("{name}:"))).unwrap_or("");
        line.split(':').nth(1).and_then(|v| v.trim().parse().ok()).unwrap_or(-1.0)
    };
    assert!(field("used_memory") > 1_000_000.0, "{info}");
    assert!(field("used_memory_peak") >= field("used_memory"), "{info}");
    assert!(field("used_cpu_user") >= 0.0 && field("used_cpu_sys") >= 0.0, "{info}");
    let stats: String = cmd(&mut con, &["INFO", "stats"]).unwrap();
    assert!(stats.contains("total_commands_processed") && !stats.contains("# Server"));
    assert!(
        error_text(cmd(&mut con, &["NOSUCHCOMMAND", "arg"]))
            .contains("unknown command 'NOSUCHCOMMAND'")
    );
    assert!(error_text(cmd(&mut con, &["GET"])).contains("wrong number of arguments for 'get'"));
}

#[test]
fn client_config_and_command_introspection() {
    let server = server();
    let mut con = connect(server.addr);
    assert_eq!(cmd::<Option<String>>(&mut con, &["CLIENT", "GETNAME"]).unwrap(), None);
    assert_eq!(cmd::<String>(&mut con, &["CLIENT", "SETNAME", "tester"]).unwrap(), "OK");
    assert_eq!(
        cmd::<Option<String>>(&mut con, &["CLIENT", "GETNAME"]).unwrap().as_deref(),
        Some("tester")
    );
    let save: Vec<String> = cmd(&mut con, &["CONFIG", "GET", "save"]).unwrap();
    assert_eq!(save, ["save", ""]);
    let many: Vec<String> = cmd(&mut con, &["CONFIG", "GET", "max*"]).unwrap();
    let expected = [
        "maxclients",
        "10000",
        "maxmemory",
        "0",
        "maxmemory-policy",
        "noeviction",
        "maxmemory-clients",
        "0",
    ];
    assert_eq!(many, expected);
    let count: i64 = cmd(&mut con, &["COMMAND", "COUNT"]).unwrap();
    let all: Vec<Value> = cmd(&mut con, &["COMMAND"]).unwrap();
    assert_eq!(all.len() as i64, count);
    assert!(cmd::<Value>(&mut con, &["COMMAND", "DOCS"]).is_ok());
}

#[test]
fn pipelining_answers_in_order() {
    let server = server();
    let mut con = connect(server.addr);
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("SET").arg(format!("p{i}")).arg(i).ignore();
        pipe.cmd("INCR").arg("pipelined-counter").ignore();
    }
    for i in 0..500 {
        pipe.cmd("GET").arg(format!("p{i}"));
    }
    let values: Vec<i64> = pipe.query(&mut con).unwrap();
    assert_eq!(values, (0..500).collect::<Vec<_>>());
    assert_eq!(cmd::<i64>(&mut con, &["GET", "pipelined-counter"]).unwrap(), 500);
}

#[test]
fn auth_is_required_when_a_password_is_set() {
    let server = server_with(|c| c.requirepass = Some("s3cret".into()));
    let mut con = connect(server.addr);
    assert!(error_text(cmd(&mut con, &["GET", "k"])).starts_with("NOAUTH"));
    assert!(error_text(cmd(&mut con, &["AUTH", "wrong"])).starts_with("WRONGPASS"));
    assert!(error_text(cmd(&mut con, &["AUTH", "someone", "s3cret"])).starts_with("WRONGPASS"));
    assert_eq!(cmd::<String>(&mut con, &["AUTH", "s3cret"]).unwrap(), "OK");
    assert_eq!(cmd::<String>(&mut con, &["SET", "k", "v"]).unwrap(), "OK");
    // The URL form authenticates through the client library.
    let mut other = redis::Client::open(format!("redis://:s3cret@{}/", server.addr))
        .unwrap()
        .get_connection()
        .unwrap();
    assert_eq!(cmd::<Option<String>>(&mut other, &["GET", "k"]).unwrap().as_deref(), Some("v"));
    // Without a password configured, AUTH says so.
    let open = self::server();
    let mut con = connect(open.addr);
    assert!(error_text(cmd(&mut con, &["AUTH", "x"])).contains("without any password configured"));
}

#[test]
fn resp3_through_hello() {
    let server = server();
    let client = redis::Client::open(format!("redis://{}/?protocol=resp3", server.addr)).unwrap();
    let mut con = client.get_connection().unwrap();
    assert_eq!(cmd::<String>(&mut con, &["SET", "k", "v"]).unwrap(), "OK");
    assert_eq!(cmd::<Option<String>>(&mut con, &["GET", "missing"]).unwrap(), None);
    let hello: Value = cmd(&mut con, &["HELLO", "3"]).unwrap();
    assert!(matches!(hello, Value::Map(_)), "HELLO 3 answers a RESP3 map: {hello:?}");
    let members: Value = cmd(&mut con, &["SMEMBERS", "missing-set"]).unwrap();
    assert!(matches!(members, Value::Set(_)), "{members:?}");
    let mut raw = connect(server.addr);
    assert!(error_text(cmd(&mut raw, &["HELLO", "4"])).starts_with("NOPROTO"));
}

fn redis_cli(addr: SocketAddr, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .output()
        .expect("redis-cli must be installed (Debian: redis-tools; .ci/run installs it)");
    assert!(
        output.status.success(),
        "redis-cli {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim_end().to_owned()
}

#[test]
fn the_real_redis_cli_works() {
    let server = server();
    let addr = server.addr;
    assert_eq!(redis_cli(addr, &["PING"]), "PONG");
    assert_eq!(redis_cli(addr, &["SET", "greeting", "hello anna"]), "OK");
    assert_eq!(redis_cli(addr, &["GET", "greeting"]), "hello anna");
    assert_eq!(redis_cli(addr, &["INCRBY", "visits", "5"]), "5");
    assert_eq!(redis_cli(addr, &["SADD", "team", "ann", "bob"]), "2");
    assert_eq!(redis_cli(addr, &["SCARD", "team"]), "2");
    assert_eq!(
        redis_cli(addr, &["GET", "team"]),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    assert_eq!(redis_cli(addr, &["DEL", "greeting"]), "1");
    assert_eq!(redis_cli(addr, &["EXISTS", "greeting"]), "0");
    assert!(redis_cli(addr, &["INFO", "server"]).contains("redis_version"));
    assert!(redis_cli(addr, &["-3", "HELLO", "3"]).starts_with("server"));
    // Interactive mode reads commands from stdin, as a person typing would.
    let mut child = Command::new("redis-cli")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"SET typed yes\nGET typed\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), "OK\nyes");
}

/// The actors' event loop: a pipeline larger than one round (`max_batch`), values larger than
/// one read, a client that reads its replies only after sending everything (its replies fill
/// the socket, so the actor waits for room to write), and many clients at once whose keys
/// live on both actors, each reading the others' writes as soon as they are acknowledged.
#[test]
fn big_pipelines_big_values_slow_readers_and_many_clients() {
    let server = server();
    let mut con = connect(server.addr);

    // 5000 commands in one pipeline: five rounds of at most 1024 commands.
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.cmd("SET").arg(format!("bulk{i}")).arg(i).ignore();
    }
    for i in 0..5000 {
        pipe.cmd("GET").arg(format!("bulk{i}"));
    }
    let values: Vec<i64> = pipe.query(&mut con).unwrap();
    assert_eq!(values, (0..5000).collect::<Vec<_>>());

    // A 3 MB value: many reads to take in, many writes to send back.
    let big: String = (0..3_000_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    assert_eq!(cmd::<String>(&mut con, &["SET", "big", &big]).unwrap(), "OK");
    assert_eq!(cmd::<String>(&mut con, &["GET", "big"]).unwrap(), big);

    // A slow reader: 15 GETs of the big value (45 MB of replies, under the 64 MB output limit)
    // sent before reading any.
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let request = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(15);
    slow.write_all(&request).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Meanwhile other clients are served.
    assert_eq!(cmd::<String>(&mut con, &["PING"]).unwrap(), "PONG");
    let header = format!("${}\r\n", big.len());
    let expected_len = 15 * (header.len() + big.len() + 2);
    let mut replies = vec![0_u8; expected_len];
    slow.read_exact(&mut replies).unwrap();
    let one = [header.as_bytes(), big.as_bytes(), b"\r\n"].concat();
    assert!(replies.chunks(one.len()).all(|chunk| chunk == one.as_slice()));

    // Eight clients at once, keys spread over both actors: every write a client has had
    // acknowledged is read back at once by the next client, on another connection.
    let addr = server.addr;
    let writers: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut mine = connect(addr);
                let mut other = connect(addr);
                for i in 0..200 {
                    let key = format!("c{t}-{i}");
                    let value = format!("{t}:{i}");
                    assert_eq!(cmd::<String>(&mut mine, &["SET", &key, &value]).unwrap(), "OK");
                    assert_eq!(
                        cmd::<Option<String>>(&mut other, &["GET", &key]).unwrap(),
                        Some(value),
                        "a write acknowledged on one connection is read on another"
                    );
                    assert!(cmd::<i64>(&mut other, &["INCR", "shared-counter"]).unwrap() > 0);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(cmd::<i64>(&mut con, &["GET", "shared-counter"]).unwrap(), 1600);
    // DBSIZE adds up the actors' counts as of their last epoch (20 ms here).
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(cmd::<i64>(&mut con, &["DBSIZE"]).unwrap(), 5000 + 1 + 1600 + 1);
}

#[test]
fn bad_input_gets_an_error_or_a_closed_connection_and_others_are_unaffected() {
    let server = server_with(|c| c.node.max_value_bytes = 1024);
    let mut bystander = connect(server.addr);
    assert_eq!(cmd::<String>(&mut bystander, &["SET", "safe", "yes"]).unwrap(), "OK");
    let cases: &[(&[u8], &str)] = &[
        (b"*-5\r\n*1\r\n$4\r\nPING\r\n", "+PONG"),
        (b"*1\r\n$99999999999\r\n", "-ERR Protocol error"),
        (b"*99999999999\r\n", "-ERR Protocol error"),
        (b"*2\r\n$3\r\nGET\r\n$-7\r\n", "-ERR Protocol error"),
        (b"*abc\r\n", "-ERR Protocol error"),
        (b"*2\r\n$3\r\nGET\r\n:12\r\n", "-ERR Protocol error"),
        (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n", "-ERR Protocol error"),
        (b"*2\r\n$3\r\nGET\r\n$10\r\nshort", ""),
        (b"\xff\xfe garbage \x01\x02\r\n", "-ERR unknown command"),
        // A NUL ends an inline line, as in Redis (which answers this with nothing either).
        (b"\x00\xff\xfe garbage \x01\x02\r\n", ""),
    ];
    for (input, expected) in cases {
        let answer = raw(server.addr, input);
        assert!(
            answer.starts_with(expected),
            "{:?} answered {answer:?}, expected {expected:?}",
            input.escape_ascii().to_string()
        );
        assert_eq!(
            cmd::<Option<String>>(&mut bystander, &["GET", "safe"]).unwrap().as_deref(),
            Some("yes")
        );
    }
    let big = "x".repeat(2000);
    assert!(
        error_text(cmd(&mut bystander, &["SET", "big", &big]))
            .contains("exceeds max-value-bytes 1024")
    );
    assert_eq!(cmd::<Option<String>>(&mut bystander, &["GET", "big"]).unwrap(), None);
    let garbage: Vec<u8> =
        (0..200_000_u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let _ = raw(server.addr, &garbage);
    assert_eq!(
        cmd::<Option<String>>(&mut bystander, &["GET", "safe"]).unwrap().as_deref(),
        Some("yes")
    );
}

#[test]
fn unauthenticated_clients_get_tight_limits() {
    let server = server_with(|c| c.requirepass = Some("pw".into()));
    let answer = raw(server.addr, b"*20\r\n");
    assert!(answer.starts_with("-ERR Protocol error"), "{answer}");
    let answer = raw(server.addr, b"*2\r\n$4\r\nAUTH\r\n$100000\r\n");
    assert!(answer.starts_with("-ERR Protocol error"), "{answer}");
}

#[test]
fn connection_cap_and_idle_timeout() {
    let server = server_with(|c| {
        c.redis.maxclients = 1;
        c.redis.idle_timeout = Some(Duration::from_millis(300));
    });
    let mut first = connect(server.addr);
    assert_eq!(cmd::<String>(&mut first, &["PING"]).unwrap(), "PONG");
    let refused = raw(server.addr, b"PING\r\n");
    assert!(refused.starts_with("-ERR max number of clients reached"), "{refused}");
    std::thread::sleep(Duration::from_millis(800));
    assert!(cmd::<String>(&mut first, &["PING"]).is_err(), "an idle client is disconnected");
}

#[test]
fn public_addresses_need_a_password() {
    let config = ServerConfig {
        bind: "0.0.0.0".into(),
        redis: RedisConfig { port: 0, ..RedisConfig::default() },
        ..ServerConfig::default()
    };
    match RunningServer::start(config) {
        Err(ServerError::PublicWithoutPassword(addr)) => assert_eq!(addr, "0.0.0.0"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// What `COMMAND INFO` says of one command: arity, whether it writes, whether it only reads,
/// and its key positions.
fn command_info(con: &mut redis::Connection, name: &str) -> (i64, bool, bool, [i64; 3]) {
    let rows: Vec<Value> = cmd(con, &["COMMAND", "INFO", name]).unwrap();
    let Some(Value::Array(row)) = rows.first() else { panic!("{name}: {rows:?}") };
    let int = |v: &Value| match v {
        Value::Int(n) => *n,
        other => panic!("{name}: {other:?}"),
    };
    let flags: Vec<String> = match &row[2] {
        Value::Array(f) | Value::Set(f) => {
            f.iter().map(|v| redis::from_redis_value(v.clone()).unwrap()).collect()
        }
        other => panic!("{name}: {other:?}"),
    };
    let has = |flag: &str| flags.iter().any(|f| f == flag);
    (int(&row[1]), has("write"), has("readonly"), [int(&row[3]), int(&row[4]), int(&row[5])])
}

/// The command table against Redis 7's own: every command anna-server knows has the arity,
/// write/read-only flags and key positions real Redis reports for it, so a client library (or
/// a cluster proxy) that reads `COMMAND` treats both servers alike.
#[test]
fn the_command_table_agrees_with_real_redis() {
    let redis = RealRedis::start();
    let anna = server();
    let mut theirs = connect(([127, 0, 0, 1], redis.1).into());
    let mut ours = connect(anna.addr);
    let all: Vec<Value> = cmd(&mut ours, &["COMMAND"]).unwrap();
    let names: Vec<String> = all
        .iter()
        .map(|row| match row {
            Value::Array(row) => redis::from_redis_value(row[0].clone()).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(names.len() >= 28, "{names:?}");
    for name in &names {
        assert_eq!(
            command_info(&mut ours, name),
            command_info(&mut theirs, name),
            "{name}: anna-server's row (left) vs redis-server's (right)"
        );
    }
}

/// MULTI/EXEC/DISCARD as Redis clients use them: a transaction's writes happen at EXEC and not
/// before (redis-py's default `pipeline()` sends MULTI … EXEC), DISCARD drops them, a command
/// refused while queueing aborts the whole transaction, and a runtime error inside EXEC is one
/// element of the answer.
#[test]
fn transactions_queue_until_exec_and_never_half_run() {
    let server = server();
    let mut con = connect(server.addr);
    let mut other = connect(server.addr);
    // The client library's atomic pipeline.
    let (set, n, got): (String, i64, String) =
        redis::pipe().atomic().set("a", "1").incr("n", 5).get("a").query(&mut con).unwrap();
    assert_eq!((set.as_str(), n, got.as_str()), ("OK", 5, "1"));

    assert_eq!(cmd::<String>(&mut con, &["MULTI"]).unwrap(), "OK");
    assert_eq!(cmd::<String>(&mut con, &["SET", "tx", "v"]).unwrap(), "QUEUED");
    assert_eq!(cmd::<Option<String>>(&mut other, &["GET", "tx"]).unwrap(), None, "not before EXEC");
    assert!(error_text(cmd(&mut con, &["MULTI"])).contains("can not be nested"));
    assert_eq!(cmd::<Vec<String>>(&mut con, &["EXEC"]).unwrap(), ["OK"]);
    assert_eq!(cmd::<Option<String>>(&mut other, &["GET", "tx"]).unwrap().as_deref(), Some("v"));

    // WATCH is refused with the reason, never silently ignored.
    assert!(error_text(cmd(&mut con, &["WATCH", "tx"])).contains("WATCH is not supported"));
    assert_eq!(cmd::<String>(&mut con, &["UNWATCH"]).unwrap(), "OK");

    assert_eq!(cmd::<String>(&mut con, &["MULTI"]).unwrap(), "OK");
    assert_eq!(cmd::<String>(&mut con, &["SET", "dropped", "x"]).unwrap(), "QUEUED");
    assert_eq!(cmd::<String>(&mut con, &["DISCARD"]).unwrap(), "OK");
    assert_eq!(cmd::<Option<String>>(&mut con, &["GET", "dropped"]).unwrap(), None);

    assert_eq!(cmd::<String>(&mut con, &["MULTI"]).unwrap(), "OK");
    assert_eq!(cmd::<String>(&mut con, &["SET", "never", "x"]).unwrap(), "QUEUED");
    assert!(error_text(cmd(&mut con, &["NOSUCHCOMMAND"])).contains("unknown command"));
    assert!(error_text(cmd(&mut con, &["GET"])).contains("wrong number of arguments"));
    assert!(error_text(cmd(&mut con, &["EXEC"])).starts_with("EXECABORT"));
    assert_eq!(cmd::<Option<String>>(&mut con, &["GET", "never"]).unwrap(), None);

    assert_eq!(cmd::<String>(&mut con, &["SADD", "set", "m"]).unwrap(), "1");
    // The runtime error is one element of EXEC's array (read raw: the client library turns a
    // nested error into an error of the whole call).
    let answer = raw(server.addr, b"MULTI\r\nINCR set\r\nSET after-error yes\r\nEXEC\r\n");
    assert_eq!(
        answer,
        "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n+OK\r\n"
    );
    assert_eq!(cmd::<String>(&mut con, &["GET", "after-error"]).unwrap(), "yes");

    assert!(error_text(cmd(&mut con, &["EXEC"])).contains("EXEC without MULTI"));
    assert!(error_text(cmd(&mut con, &["DISCARD"])).contains("DISCARD without MULTI"));
}

/// Integers are read exactly as Redis reads them (no `+`, no leading zeros, no `-0`, no
/// spaces, within i64), as arguments and as strings incremented: every reply, error text
/// included, is byte for byte what a real redis-server sends.
#[test]
fn integers_parse_exactly_as_real_redis_parses_them() {
    let redis = RealRedis::start();
    let anna = server();
    let inputs = [
        "+3",
        "01",
        "-0",
        " 1",
        "1 ",
        "",
        "-",
        "12a",
        "0",
        "-1",
        "007",
        "1e3",
        "0x10",
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775808",
    ];
    let mut script = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let (k, s) = (format!("int{i}"), format!("str{i}"));
        script.push(resp(&["INCRBY", &k, input]));
        script.push(resp(&["DECRBY", &k, input]));
        script.push(resp(&["SET", &s, input]));
        script.push(resp(&["INCR", &s]));
        script.push(resp(&["SELECT", input]));
    }
    let script = script.concat();
    let theirs = raw(([127, 0, 0, 1], redis.1).into(), script.as_bytes());
    let ours = raw(anna.addr, script.as_bytes());
    assert!(theirs.lines().count() >= inputs.len() * 5, "{theirs}");
    assert_same_replies(&ours, &theirs);
}

/// `redis-cli --stat` prints every column from anna-server's INFO (it printed
/// -9223372036854775808 for the memory before INFO had a memory section).
#[test]
fn redis_cli_stat_reads_every_column() {
    let anna = server();
    let port = anna.addr.port().to_string();
    // Line-buffered: redis-cli buffers a pipe, and timeout ends it before it flushes.
    let output = std::process::Command::new("timeout")
        .args(["-s", "INT", "2", "stdbuf", "-oL", "redis-cli", "-p", &port, "--stat", "-i", "0.5"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let rows: Vec<&str> =
        text.lines().filter(|l| l.trim_start().starts_with(char::is_numeric)).collect();
    assert!(!rows.is_empty(), "no rows: {text}");
    assert!(!text.contains("-9223372036854775808") && !text.contains("nan"), "{text}");
    assert!(rows[0].contains('M') || rows[0].contains('K'), "no memory column: {text}");
}

/// Counters reset by `SET` and `DEL` and swung to the ends of the 64-bit range answer as a
/// real redis-server does, reply for reply, over a long seeded random sequence (the old
/// counter saturated and answered 99 where Redis answers 100).
#[test]
fn counter_resets_and_extremes_answer_as_real_redis_does() {
    let redis = RealRedis::start();
    let anna = server();
    let max = i64::MAX.to_string();
    let min = i64::MIN.to_string();
    let mut script = vec![
        resp(&["DECR", "K"]),
        resp(&["DECR", "K"]),
        resp(&["SET", "K", &max]),
        resp(&["INCRBY", "K", "-100"]),
        resp(&["DEL", "K"]),
        resp(&["DECR", "K"]),
        resp(&["SET", "K", &max]),
        resp(&["DECR", "K"]),
        resp(&["DEL", "K"]),
        resp(&["INCRBY", "K", "100"]),
        resp(&["GET", "K"]),
    ];
    let extremes = [min.as_str(), "-1", "0", "1", max.as_str(), "-9223372036854775807", "5"];
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..3000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let key = format!("c{}", rng % 3);
        let arg = extremes[((rng >> 8) % extremes.len() as u64) as usize];
        script.push(match (rng >> 16) % 8 {
            0 => resp(&["DEL", &key]),
            1 => resp(&["SET", &key, arg]),
            2 => resp(&["INCR", &key]),
            3 => resp(&["DECR", &key]),
            4 | 5 => resp(&["INCRBY", &key, arg]),
            6 => resp(&["DECRBY", &key, arg]),
            _ => resp(&["GET", &key]),
        });
    }
    let script = script.concat();
    let theirs = raw(([127, 0, 0, 1], redis.1).into(), script.as_bytes());
    let ours = raw(anna.addr, script.as_bytes());
    assert!(theirs.lines().count() >= 3000, "{theirs}");
    assert_same_replies(&ours, &theirs);
}

/// The conditional and read-modify-write string commands answer as a real redis-server does,
/// on strings, counters, sets and missing keys, options and their errors included.
#[test]
fn conditional_string_commands_answer_as_real_redis_does() {
    let redis = RealRedis::start();
    let anna = server();
    let commands: &[&[&str]] = &[
        &["SET", "a", "1", "NX"],
        &["SET", "a", "2", "NX"],
        &["GET", "a"],
        &["SET", "a", "3", "XX"],
        &["SET", "missing", "3", "XX"],
        &["GET", "missing"],
        &["SET", "a", "4", "GET"],
        &["SET", "a", "5", "nx", "get"],
        &["SET", "fresh", "6", "NX", "GET"],
        &["SET", "a", "7", "NX", "XX"],
        &["SET", "a", "7", "BOGUS"],
        &["SETNX", "a", "8"],
        &["SETNX", "b", "8"],
        &["GETSET", "b", "9"],
        &["GETSET", "nothing", "9"],
        &["INCR", "n"],
        &["APPEND", "n", "0"],
        &["GET", "n"],
        &["INCR", "n"],
        &["STRLEN", "n"],
        &["GETSET", "n", "x"],
        &["APPEND", "c", "hello"],
        &["APPEND", "c", " world"],
        &["STRLEN", "c"],
        &["STRLEN", "none"],
        &["SADD", "s", "m"],
        &["SET", "s", "v", "GET"],
        &["GETSET", "s", "v"],
        &["GETDEL", "s"],
        &["APPEND", "s", "v"],
        &["STRLEN", "s"],
        &["SET", "s", "over"],
        &["GET", "s"],
        &["GETDEL", "c"],
        &["GETDEL", "c"],
        &["EXISTS", "c"],
        &["INCR", "d"],
        &["GETDEL", "d"],
        &["GET", "d"],
        &["SET", "r", "Hello World"],
        &["GETRANGE", "r", "0", "4"],
        &["GETRANGE", "r", "-5", "-1"],
        &["GETRANGE", "r", "-1", "-5"],
        &["GETRANGE", "r", "-100", "100"],
        &["GETRANGE", "r", "5", "3"],
        &["GETRANGE", "r", "20", "30"],
        &["GETRANGE", "missing", "0", "-1"],
        &["GETRANGE", "r", "x", "1"],
        &["GETRANGE", "r", "0", "01"],
        &["SETRANGE", "r", "6", "Redis"],
        &["GET", "r"],
        &["SETRANGE", "r", "15", "!"],
        &["GET", "r"],
        &["SETRANGE", "r", "0", ""],
        &["SETRANGE", "pad", "3", "x"],
        &["GET", "pad"],
        &["SETRANGE", "nothing", "5", ""],
        &["EXISTS", "nothing"],
        &["SETRANGE", "r", "-1", "x"],
        &["SETRANGE", "r", "x", "x"],
        &["INCR", "num"],
        &["SETRANGE", "num", "1", "5"],
        &["GET", "num"],
        &["GETRANGE", "num", "0", "0"],
        &["SADD", "set", "m"],
        &["GETRANGE", "set", "0", "1"],
        &["SETRANGE", "set", "0", "x"],
    ];
    let script: String = commands.iter().map(|c| resp(c)).collect();
    let theirs = raw(([127, 0, 0, 1], redis.1).into(), script.as_bytes());
    let ours = raw(anna.addr, script.as_bytes());
    assert_same_replies(&ours, &theirs);
}

/// Inline (telnet-style) commands are split as Redis splits them: quotes, escapes, and an
/// unbalanced quote answered with Redis's protocol error before the connection closes. Every
/// reply byte for byte as a real redis-server's.
#[test]
fn inline_commands_split_exactly_as_real_redis_splits_them() {
    let redis = RealRedis::start();
    let anna = server();
    let script = concat!(
        "set \"a b\" c\r\n",
        "get \"a b\"\r\n",
        "set 'it\\'s' \"tab\\there\"\r\n",
        "get 'it\\'s'\r\n",
        "set \"\\x41\\x42\" \"nl\\n\"\r\n",
        "get AB\r\n",
        "  ping   \r\n",
        "echo \"\\xZZ\"\r\n",
        "\r\n",
        "set x\"y z\" 1\r\n",
        "get \"xy z\"\r\n",
        "get \"unbalanced\r\n",
        "ping\r\n",
    );
    let theirs = raw(([127, 0, 0, 1], redis.1).into(), script.as_bytes());
    let ours = raw(anna.addr, script.as_bytes());
    assert!(theirs.contains("unbalanced quotes"), "{theirs:?}");
    assert_eq!(ours, theirs, "anna (left) and redis (right) differ");
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap()
        * 1024
}

#[test]
fn a_pipeline_of_big_reads_that_is_never_read_is_cut_off_at_the_output_limit() {
    let server = server();
    let mut con = connect(server.addr);
    let value = "v".repeat(512 * 1024);
    assert_eq!(cmd::<String>(&mut con, &["SET", "half-mega", &value]).unwrap(), "OK");
    let before = resident_bytes();
    // 1024 GETs of 512 KiB (about 30 KB sent): 512 MiB of replies if they were all built.
    let mut greedy = TcpStream::connect(server.addr).unwrap();
    greedy.write_all(&b"*2\r\n$3\r\nGET\r\n$9\r\nhalf-mega\r\n".repeat(1024)).unwrap();
    let start = std::time::Instant::now();
    let mut disconnections = 0;
    while start.elapsed() < Duration::from_secs(10) {
        let info: String = cmd(&mut con, &["INFO", "stats"]).unwrap();
        disconnections = info
            .lines()
            .find_map(|l| l.strip_prefix("client_output_buffer_limit_disconnections:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap();
        if disconnections > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(disconnections, 1, "the greedy client was not cut off");
    // The server held at most the limit (64 MiB) for it, not the 512 MiB it asked for.
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 200 << 20, "resident memory grew by {} MiB", grown >> 20);
    // Everyone else is served as before.
    assert_eq!(cmd::<String>(&mut con, &["GET", "half-mega"]).unwrap(), value);
    drop(greedy);
}

#[test]
fn clients_over_maxmemory_clients_are_closed_biggest_first() {
    let server = server_with(|config| config.redis.maxmemory_clients = 48 << 20);
    let mut con = connect(server.addr);
    // Six clients each send most of a 16 MB SET and stop: about 72 MB of query buffers.
    let mut partial = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$16000000\r\n".to_vec();
    partial.extend(std::iter::repeat_n(b'x', 12 << 20));
    let mut hogs: Vec<TcpStream> = (0..6)
        .map(|_| {
            let mut hog = TcpStream::connect(server.addr).unwrap();
            // The server may evict a hog before it has sent all of it (the others' buffers
            // are already over the limit): its socket is then closed, and counted below.
            if let Err(error) = hog.write_all(&partial) {
                use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
                assert!(matches!(error.kind(), BrokenPipe | ConnectionReset), "{error}");
            }
            hog
        })
        .collect();
    let evicted = || -> u64 {
        let info: String = cmd(&mut connect(server.addr), &["INFO", "stats"]).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("evicted_clients:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    let start = std::time::Instant::now();
    while evicted() < 2 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Evictions go on until the rest fit: wait until the count has settled.
    let mut gone = evicted();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = evicted();
        if now == gone {
            break;
        }
        gone = now;
    }
    // At least two had to go to get under 48 MB; the server closed their sockets.
    assert!((2..6).contains(&gone), "{gone} clients evicted");
    let closed = hogs
        .iter_mut()
        .filter_map(|hog| {
            hog.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            let closed = match hog.read(&mut [0_u8; 16]) {
                Ok(0) => true,
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                Ok(_) => false,
            };
            closed.then_some(())
        })
        .count();
    assert_eq!(closed as u64, gone, "the evicted clients' sockets are closed, the others open");
    // Small clients are unaffected.
    assert_eq!(cmd::<String>(&mut con, &["PING"]).unwrap(), "PONG");
    let config: Vec<String> = cmd(&mut con, &["CONFIG", "GET", "maxmemory-clients"]).unwrap();
    assert_eq!(config, ["maxmemory-clients", &(48_u64 << 20).to_string()]);
}

/// An SMEMBERS reply of megabytes goes out from the buffer its actor encoded the members into
/// (not copied into the connection's output), larger than the output limit if nothing queues
/// behind it; replies pipelined after it come after it, in order, in RESP2 and RESP3; and a
/// client that pipelines several such replies without reading is still cut off at the limit.
#[test]
fn big_smembers_replies_go_out_from_their_buffer_in_order() {
    let server = server();
    let mut con = connect(server.addr);
    let members: Vec<String> = (0..120_000).map(|n| format!("member:{n:06}")).collect();
    for chunk in members.chunks(5_000) {
        let added: i64 = redis::cmd("SADD").arg("big").arg(chunk).query(&mut con).unwrap();
        assert_eq!(added, 5_000);
    }
    assert_eq!(cmd::<String>(&mut con, &["SET", "after", "yes"]).unwrap(), "OK");
    let mut expected = members.clone();
    expected.sort();
    for protocol in ["resp2", "resp3"] {
        let client =
            redis::Client::open(format!("redis://{}/?protocol={protocol}", server.addr)).unwrap();
        let mut con = client.get_connection().unwrap();
        let (first, after, count, second): (Vec<String>, String, i64, Vec<String>) = redis::pipe()
            .cmd("SMEMBERS")
            .arg("big")
            .cmd("GET")
            .arg("after")
            .cmd("SCARD")
            .arg("big")
            .cmd("SMEMBERS")
            .arg("big")
            .query(&mut con)
            .unwrap();
        let mut first = first;
        first.sort();
        assert_eq!(first, expected, "{protocol}");
        assert_eq!((after.as_str(), count), ("yes", 120_000), "{protocol}");
        assert_eq!(second.len(), 120_000, "{protocol}");
    }
    // 2.4 MB per reply: a client pipelining 60 of them without reading passes the 64 MiB
    // output limit and is closed; others are unaffected.
    let mut greedy = TcpStream::connect(server.addr).unwrap();
    let request = "*2\r\n$8\r\nSMEMBERS\r\n$3\r\nbig\r\n".repeat(60);
    greedy.write_all(request.as_bytes()).unwrap();
    let closed = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        let info: String = cmd(&mut con, &["INFO", "stats"]).unwrap();
        info.contains("client_output_buffer_limit_disconnections:1")
    });
    assert!(closed, "the client pipelining 60 big replies was not cut off");
    assert_eq!(cmd::<i64>(&mut con, &["SCARD", "big"]).unwrap(), 120_000);
}

/// `client-output-buffer-limit normal 64mb 1mb 1`: a client whose unread replies stay over the
/// soft limit for a second is closed (counted with the hard limit's closings), while a client
/// that reads the same replies is served; `CONFIG GET` shows the setting.
#[test]
fn a_client_over_the_soft_output_limit_for_its_seconds_is_closed() {
    use anna_kvs::redis::config::OutputLimit;
    let server = server_with(|config| {
        config.redis.output_limit = OutputLimit::parse("normal 64mb 1mb 1").unwrap();
    });
    let mut con = connect(server.addr);
    let config: Vec<String> =
        cmd(&mut con, &["CONFIG", "GET", "client-output-buffer-limit"]).unwrap();
    assert_eq!(
        config,
        ["client-output-buffer-limit", "normal 67108864 1048576 1 replica 0 0 0 pubsub 0 0 0"]
    );
    let big = "v".repeat(512 << 10);
    assert_eq!(cmd::<String>(&mut con, &["SET", "big", &big]).unwrap(), "OK");
    // 32 MiB of replies asked for and never read: under the hard limit, over the soft one.
    let mut idle = TcpStream::connect(server.addr).unwrap();
    idle.write_all("*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(64).as_bytes()).unwrap();
    let closed = |con: &mut redis::Connection, count: u32| {
        let info: String = cmd(con, &["INFO", "stats"]).unwrap();
        info.contains(&format!("client_output_buffer_limit_disconnections:{count}\r"))
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(closed(&mut con, 0), "closed before its second over the soft limit was up");
    assert!(
        (0..60).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            closed(&mut con, 1)
        }),
        "the idle client was not closed"
    );
    // A client reading the same amount is served in full, and not closed.
    let mut pipe = redis::pipe();
    for _ in 0..64 {
        pipe.cmd("GET").arg("big");
    }
    let replies: Vec<String> = pipe.query(&mut con).unwrap();
    assert!(replies.iter().all(|r| r.len() == big.len()));
    assert!(closed(&mut con, 1));
    // Its socket was closed: reading gets the replies that made it out, then end of stream.
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sink = Vec::new();
    let _ = idle.read_to_end(&mut sink);
    assert!(sink.len() < 64 * big.len(), "it got every reply: {} bytes", sink.len());
}

/// A client that sends its commands and closes its sending side at once (`nc -q`, a script)
/// gets every answer and then the server's close, even when its EOF arrives with its last
/// bytes: with edge-triggered events no second event comes for that EOF, and the server
/// once kept such connections open (here: until the client's 5 s read timeout).
#[test]
fn a_client_that_half_closes_with_its_last_command_is_answered_and_closed() {
    let anna = server();
    let script = [resp(&["SET", "k", "v"]), resp(&["GET", "k"])].concat();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (addr, script) = (anna.addr, script.clone());
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let mut stream = TcpStream::connect(addr).unwrap();
                    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    stream.write_all(script.as_bytes()).unwrap();
                    stream.shutdown(std::net::Shutdown::Write).unwrap();
                    let mut answer = Vec::new();
                    let closed = stream.read_to_end(&mut answer);
                    assert_eq!(answer, b"+OK\r\n$1\r\nv\r\n");
                    assert!(closed.is_ok(), "the server did not close: {closed:?}");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}
