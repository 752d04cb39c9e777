//! The commands about the server itself, through real sockets: CLIENT LIST/INFO/KILL see and
//! close the node's clients, MONITOR streams commands as Redis writes them, SLOWLOG records
//! what `slowlog-log-slower-than` asks for, CONFIG SET changes what it may at run time, and
//! every error text is Redis's.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

mod common;
use common::{eventually, same_as_redis};

fn connect(addr: std::net::SocketAddr) -> redis::Connection {
    redis::Client::open(format!("redis://{addr}/")).unwrap().get_connection().unwrap()
}

fn query<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[&str]) -> T {
    redis::cmd(args[0]).arg(&args[1..]).query(con).unwrap()
}

/// CLIENT LIST shows every client of the node with its name, database and last command;
/// CLIENT INFO the caller; CLIENT KILL (by id, by address, with SKIPME) closes the client it
/// names, which notices at once.
#[test]
fn client_list_info_and_kill_see_and_close_the_nodes_clients() {
    let anna = common::redis_port_server(2);
    let mut admin = connect(anna.addr);
    let mut victim = connect(anna.addr);
    let victim_id: i64 = query(&mut victim, &["CLIENT", "ID"]);
    let _: () = query(&mut victim, &["CLIENT", "SETNAME", "victim"]);
    let _: () = query(&mut victim, &["SELECT", "3"]);
    let list: String = query(&mut admin, &["CLIENT", "LIST"]);
    let line = list.lines().find(|l| l.starts_with(&format!("id={victim_id} "))).unwrap();
    for field in ["name=victim", "db=3", "flags=N", "cmd=select", "resp=2", "laddr=127.0.0.1:"] {
        assert!(line.contains(field), "{field} in {line}");
    }
    assert_eq!(list.lines().count(), 2, "{list}");
    let mine: String = query(&mut admin, &["CLIENT", "INFO"]);
    assert!(mine.starts_with("id=") && mine.ends_with('\n') && mine.contains("cmd=client"));
    let only: String = query(&mut admin, &["CLIENT", "LIST", "ID", &victim_id.to_string()]);
    assert_eq!(only.lines().count(), 1);
    let none: String = query(&mut admin, &["CLIENT", "LIST", "TYPE", "pubsub"]);
    assert!(none.is_empty());

    let killed: i64 = query(&mut admin, &["CLIENT", "KILL", "ID", &victim_id.to_string()]);
    assert_eq!(killed, 1);
    assert!(
        redis::cmd("PING").query::<String>(&mut victim).is_err(),
        "the killed client's next command finds its connection closed"
    );
    assert!(eventually(Duration::from_secs(2), || {
        query::<String>(&mut admin, &["CLIENT", "LIST"]).lines().count() == 1
    }));

    // The old form, by address; and SKIPME.
    let mut other = TcpStream::connect(anna.addr).unwrap();
    other.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // (Served once it answers: a connection reaches its actor moments after the accept.)
    other.write_all(b"PING\r\n").unwrap();
    let mut pong = [0_u8; 7];
    other.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"+PONG\r\n");
    let addr = other.local_addr().unwrap().to_string();
    let ok: String = query(&mut admin, &["CLIENT", "KILL", &addr]);
    assert_eq!(ok, "OK");
    let mut rest = Vec::new();
    assert!(other.read_to_end(&mut rest).is_ok(), "closed by the server");
    let me: i64 = query(&mut admin, &["CLIENT", "ID"]);
    let skipped: i64 = query(&mut admin, &["CLIENT", "KILL", "ID", &me.to_string()]);
    assert_eq!(skipped, 0, "SKIPME yes by default");
}

/// MONITOR streams other clients' commands as Redis writes them: a timestamp, the database
/// and the client's address, each argument quoted with Redis's escapes; AUTH's password is
/// redacted and administrative commands are left out.
#[test]
fn monitor_streams_commands_as_redis_writes_them() {
    let anna = common::redis_port_server(2);
    let mut monitor = TcpStream::connect(anna.addr).unwrap();
    monitor.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    monitor.write_all(b"MONITOR\r\n").unwrap();
    let mut lines = BufReader::new(monitor);
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line, "+OK\r\n");
    let mut con = connect(anna.addr);
    let client_addr = {
        let info: String = query(&mut con, &["CLIENT", "INFO"]);
        info.split(' ').find_map(|f| f.strip_prefix("addr=")).unwrap().to_owned()
    };
    let _: () = query(&mut con, &["SET", "a b", "quote\" and\nnewline\x01"]);
    let _: Vec<String> = query(&mut con, &["CONFIG", "GET", "port"]);
    let _: () = query(&mut con, &["SELECT", "2"]);
    let _: Option<String> = query(&mut con, &["GET", "k"]);
    let _ = redis::cmd("AUTH").arg("secret").query::<String>(&mut con);
    let mut seen = Vec::new();
    while seen.len() < 4 {
        line.clear();
        lines.read_line(&mut line).unwrap();
        // (The client library's own CLIENT SETINFO and the CLIENT INFO above.)
        if !line.contains("\"CLIENT\"") {
            seen.push(line.trim_end().to_owned());
        }
    }
    let rest: Vec<String> = seen
        .iter()
        .map(|l| {
            let (stamp, rest) = l.split_once(' ').unwrap();
            let (secs, micros) = stamp.trim_start_matches('+').split_once('.').unwrap();
            assert!(secs.parse::<u64>().unwrap() > 1_700_000_000 && micros.len() == 6, "{l}");
            rest.replace(&client_addr, "ADDR")
        })
        .collect();
    assert_eq!(
        rest,
        [
            r#"[0 ADDR] "SET" "a b" "quote\" and\nnewline\x01""#,
            r#"[0 ADDR] "SELECT" "2""#,
            r#"[2 ADDR] "GET" "k""#,
            r#"[2 ADDR] "AUTH" "(redacted)""#,
        ],
        "CONFIG is administrative: not shown"
    );
}

/// SLOWLOG records the commands over `slowlog-log-slower-than` (0: every one), newest first,
/// with their arguments and client; `slowlog-max-len` bounds it at once; -1 turns it off.
#[test]
fn slowlog_records_what_the_threshold_asks_for() {
    let anna = common::redis_port_server(2);
    let mut con = connect(anna.addr);
    let _: () = query(&mut con, &["CLIENT", "SETNAME", "timed"]);
    // (Ten seconds: under a loaded debug build a round can take Redis's default 10 ms.)
    let _: () = query(&mut con, &["CONFIG", "SET", "slowlog-log-slower-than", "10000000"]);
    let _: () = query(&mut con, &["SLOWLOG", "RESET"]);
    let none: i64 = query(&mut con, &["SLOWLOG", "LEN"]);
    assert_eq!(none, 0, "nothing under the threshold is logged");
    let _: () = query(&mut con, &["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    let _: () = query(&mut con, &["SET", "slow", "value"]);
    let entries: Vec<(i64, i64, i64, Vec<String>, String, String)> =
        query(&mut con, &["SLOWLOG", "GET", "1"]);
    let (_, at, micros, args, addr, name) = &entries[0];
    assert_eq!(args, &["SET", "slow", "value"]);
    assert!(*at > 1_700_000_000 && *micros >= 0);
    assert!(addr.starts_with("127.0.0.1:"));
    assert_eq!(name, "timed");
    let _: () = query(&mut con, &["CONFIG", "SET", "slowlog-max-len", "2"]);
    for i in 0..5 {
        let _: () = query(&mut con, &["SET", &format!("k{i}"), "v"]);
    }
    let len: i64 = query(&mut con, &["SLOWLOG", "LEN"]);
    assert_eq!(len, 2);
    // A command of several rounds is logged once, when it answers.
    let _: () = query(&mut con, &["CONFIG", "SET", "slowlog-max-len", "128"]);
    let _: () = query(&mut con, &["SLOWLOG", "RESET"]);
    let _: () = query(&mut con, &["RENAME", "slow", "moved"]);
    let _: i64 = query(&mut con, &["RENAMENX", "moved", "again"]);
    let entries: Vec<(i64, i64, i64, Vec<String>, String, String)> =
        query(&mut con, &["SLOWLOG", "GET", "-1"]);
    let names: Vec<&str> = entries.iter().map(|e| e.3[0].as_str()).collect();
    assert_eq!(names, ["RENAMENX", "RENAME", "SLOWLOG"], "newest first, each once");
    let _: () = query(&mut con, &["CONFIG", "SET", "slowlog-log-slower-than", "-1"]);
    let _: () = query(&mut con, &["SLOWLOG", "RESET"]);
    let _: () = query(&mut con, &["SET", "quiet", "v"]);
    let len: i64 = query(&mut con, &["SLOWLOG", "LEN"]);
    assert_eq!(len, 0);
}

/// CONFIG SET changes `maxclients` and `timeout` for the very next connection, CONFIG GET
/// reads the values in force, and RESETSTAT zeroes INFO's counters.
#[test]
fn config_set_changes_limits_at_run_time() {
    let anna = common::redis_port_server(2);
    let mut con = connect(anna.addr);
    let _: () = query(&mut con, &["CONFIG", "SET", "maxclients", "1", "timeout", "1"]);
    let got: Vec<String> = query(&mut con, &["CONFIG", "GET", "maxclients"]);
    assert_eq!(got, ["maxclients", "1"]);
    let mut refused = TcpStream::connect(anna.addr).unwrap();
    refused.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    let _ = refused.read_to_string(&mut answer);
    assert_eq!(answer, "-ERR max number of clients reached\r\n");
    // The idle timeout closes the only client once it is quiet for a second.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(redis::cmd("PING").query::<String>(&mut con).is_err(), "closed for idling");
    let mut con = connect(anna.addr);
    let _: () = query(&mut con, &["CONFIG", "SET", "maxclients", "100", "timeout", "0"]);
    let _: () = query(&mut con, &["CONFIG", "RESETSTAT"]);
    let info: String = query(&mut con, &["INFO", "stats"]);
    assert!(info.contains("rejected_connections:0"), "{info}");
    assert!(info.contains("total_connections_received:0"), "{info}");
}

/// The introspection commands' errors (subcommands, arity, CONFIG SET's checks, SLOWLOG's
/// count, CLIENT KILL's filters) are Redis's, byte for byte.
#[test]
fn introspection_errors_are_redis_errors() {
    same_as_redis(&[
        &["CLIENT", "BOGUS"],
        &["CLIENT", "INFO", "x"],
        &["CLIENT", "KILL"],
        &["CLIENT", "KILL", "1.2.3.4:5"],
        &["CLIENT", "KILL", "ID", "0"],
        &["CLIENT", "KILL", "ID", "999999"],
        &["CLIENT", "KILL", "TYPE", "foo"],
        &["CLIENT", "KILL", "SKIPME", "maybe"],
        &["CLIENT", "KILL", "ID", "5", "SKIPME"],
        &["CLIENT", "KILL", "TYPE", "pubsub"],
        &["CLIENT", "LIST", "TYPE", "foo"],
        &["CLIENT", "LIST", "ID", "1", "x"],
        &["CLIENT", "LIST", "ID"],
        &["CLIENT", "SETNAME", "a b"],
        &["CLIENT", "GETNAME"],
        &["CONFIG", "BOGUS"],
        &["CONFIG", "SET"],
        &["CONFIG", "SET", "a"],
        &["CONFIG", "SET", "nope", "1"],
        &["CONFIG", "SET", "slowlog-max-len", "x"],
        &["CONFIG", "SET", "slowlog-max-len", "5", "slowlog-max-len", "6"],
        &["CONFIG", "SET", "maxclients", "0"],
        &["CONFIG", "SET", "timeout", "-1"],
        &["CONFIG", "SET", "slowlog-log-slower-than", "-5"],
        &["CONFIG", "SET", "slowlog-log-slower-than", "abc"],
        &["CONFIG", "SET", "slowlog-log-slower-than", "20000", "slowlog-max-len", "64"],
        &["CONFIG", "GET", "slowlog-max-len"],
        &["CONFIG", "GET", "slowlog-log-slower-than"],
        &["CONFIG", "GET"],
        &["CONFIG", "RESETSTAT", "x"],
        &["CONFIG", "RESETSTAT"],
        &["SLOWLOG", "GET", "x"],
        &["SLOWLOG", "GET", "-2"],
        &["SLOWLOG", "BOGUS"],
        &["SLOWLOG", "LEN", "x"],
        &["SLOWLOG", "RESET"],
        &["SLOWLOG", "LEN"],
        &["MONITOR", "x"],
        &["MULTI"],
        &["MONITOR"],
        &["EXEC"],
    ]);
}

/// A monitor that asked for a big reply gets it whole: the lines of commands run meanwhile
/// come after it, never inside it (a big reply goes out from its own buffer, and the lines
/// queue behind it).
#[test]
fn monitor_lines_never_break_a_reply_being_sent() {
    let anna = common::redis_port_server(2);
    let mut con = connect(anna.addr);
    let members: Vec<String> = (0..400_000).map(|i| format!("member-{i:06}")).collect();
    for chunk in members.chunks(10_000) {
        let mut sadd = redis::cmd("SADD");
        sadd.arg("big").arg(chunk);
        let _: i64 = sadd.query(&mut con).unwrap();
    }
    let mut monitor = TcpStream::connect(anna.addr).unwrap();
    monitor.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    monitor.write_all(b"MONITOR\r\nSMEMBERS big\r\n").unwrap();
    // Commands while the reply is (probably) still going out: the monitor does not read yet.
    for i in 0..200 {
        let _: () = query(&mut con, &["SET", &format!("k{i}"), "v"]);
    }
    let mut reader = BufReader::new(monitor);
    let mut line = String::new();
    let mut next_line = |line: &mut String| {
        line.clear();
        reader.read_line(line).unwrap();
        line.trim_end().to_owned()
    };
    assert_eq!(next_line(&mut line), "+OK");
    // Lines of the SMEMBERS itself and maybe SETs, until the array's header.
    let mut header = next_line(&mut line);
    let mut lines_before = 0;
    while header.starts_with('+') {
        lines_before += 1;
        header = next_line(&mut line);
    }
    assert_eq!(header, "*400000", "after {lines_before} monitor lines");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..400_000 {
        let len = next_line(&mut line);
        assert_eq!(len, "$13", "a member's header, not a monitor line");
        seen.insert(next_line(&mut line));
    }
    assert_eq!(seen.len(), 400_000);
    // Then the SETs' lines, whole, up to the last (the first few may have run before the
    // monitor was registered at the end of its round).
    loop {
        let l = next_line(&mut line);
        assert!(l.starts_with('+') && l.contains("\"SET\""), "{l}");
        if l.contains("\"k199\"") {
            break;
        }
    }
}
