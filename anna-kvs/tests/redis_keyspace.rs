//! The node's keys as a whole through the Redis port: DBSIZE is exact at once, SCAN visits
//! every key held for the whole scan (across calls and connections, while keys come and go),
//! KEYS and its glob patterns answer as a real redis-server does, RANDOMKEY finds a key.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use anna_kvs::server::RunningServer;

mod common;
use common::{RealRedis, assert_same_replies, raw, resp};

fn server(threads: usize) -> RunningServer {
    common::redis_port_server(threads)
}

fn connect(addr: std::net::SocketAddr) -> redis::Connection {
    redis::Client::open(format!("redis://{addr}/")).unwrap().get_connection().unwrap()
}

fn scan_all(
    connections: &mut [redis::Connection],
    options: &[&str],
    mut between: impl FnMut(usize),
) -> Vec<String> {
    let mut cursor = "0".to_owned();
    let mut keys = Vec::new();
    let mut call = 0;
    loop {
        // Each call on the next connection: a cursor is not tied to one.
        let con = &mut connections[call % connections.len()];
        let mut command = redis::cmd("SCAN");
        command.arg(&cursor);
        for option in options {
            command.arg(*option);
        }
        let (next, batch): (String, Vec<String>) = command.query(con).unwrap();
        keys.extend(batch);
        call += 1;
        between(call);
        if next == "0" {
            return keys;
        }
        cursor = next;
    }
}

/// DBSIZE counts what the node holds now, not as of the actors' last epoch: right after 100
/// SETs it is 100, after DELs it drops at once, and a deleted key never counts.
#[test]
fn dbsize_is_exact_at_once() {
    for threads in [1, 2] {
        let anna = server(threads);
        let mut script = String::new();
        for n in 0..100 {
            script.push_str(&resp(&["SET", &format!("k{n}"), "v"]));
        }
        script.push_str(&resp(&["DBSIZE"]));
        script.push_str(&resp(&["DEL", "k1", "k2", "k3", "nothing"]));
        script.push_str(&resp(&["DBSIZE"]));
        script.push_str(&resp(&["SADD", "s", "m"]));
        script.push_str(&resp(&["INCR", "n"]));
        script.push_str(&resp(&["DEL", "s"]));
        script.push_str(&resp(&["DBSIZE"]));
        let answers = raw(anna.addr, script.as_bytes());
        let ints: Vec<&str> = answers.lines().filter(|l| l.starts_with(':')).collect();
        assert_eq!(ints, [":100", ":3", ":97", ":1", ":1", ":1", ":98"], "{threads} threads");
    }
}

/// A whole scan (COUNT 7, cursors passed between three connections) answers every key held
/// from its start to its end at least once, while other keys are written and deleted between
/// its calls; MATCH and TYPE filter as Redis's do.
#[test]
fn a_scan_answers_every_key_held_throughout_it() {
    let anna = server(2);
    let mut writer = connect(anna.addr);
    let mut pipe = redis::pipe();
    for n in 0..3000 {
        pipe.cmd("SET").arg(format!("stay:{n}")).arg("v").ignore();
    }
    for n in 0..500 {
        pipe.cmd("SET").arg(format!("go:{n}")).arg("v").ignore();
    }
    for n in 0..50 {
        pipe.cmd("SADD").arg(format!("set:{n}")).arg("m").ignore();
    }
    pipe.query::<()>(&mut writer).unwrap();
    let mut readers: Vec<redis::Connection> = (0..3).map(|_| connect(anna.addr)).collect();
    let keys = scan_all(&mut readers, &["COUNT", "7"], |call| {
        // Keys come and go during the scan.
        let _: () = redis::cmd("DEL").arg(format!("go:{call}")).query(&mut writer).unwrap();
        let _: () =
            redis::cmd("SET").arg(format!("new:{call}")).arg("v").query(&mut writer).unwrap();
    });
    let seen: HashSet<&str> = keys.iter().map(String::as_str).collect();
    for n in 0..3000 {
        assert!(seen.contains(format!("stay:{n}").as_str()), "stay:{n} was not scanned");
    }
    for n in 0..50 {
        assert!(seen.contains(format!("set:{n}").as_str()), "set:{n} was not scanned");
    }
    // Nothing that never existed; duplicates are allowed but there are none here.
    assert!(seen.iter().all(|k| k.starts_with("stay:")
        || k.starts_with("go:")
        || k.starts_with("new:")
        || k.starts_with("set:")));
    assert_eq!(seen.len(), keys.len(), "no key twice");

    let matched = scan_all(&mut readers, &["MATCH", "stay:1?", "COUNT", "100"], |_| {});
    let expected: BTreeSet<String> = (10..20).map(|n| format!("stay:{n}")).collect();
    assert_eq!(matched.into_iter().collect::<BTreeSet<_>>(), expected);
    let sets = scan_all(&mut readers, &["TYPE", "SET", "COUNT", "1000"], |_| {});
    assert_eq!(sets.len(), 50, "{sets:?}");
    assert!(sets.iter().all(|k| k.starts_with("set:")));
}

/// Keys past their deadline are neither scanned nor listed, even before their actor deletes
/// them; RANDOMKEY finds a live key, and nil on an empty node.
#[test]
fn expired_keys_are_not_listed_and_randomkey_finds_a_live_key() {
    let anna = server(2);
    let mut con = connect(anna.addr);
    let none: Option<String> = redis::cmd("RANDOMKEY").query(&mut con).unwrap();
    assert_eq!(none, None);
    for n in 0..20 {
        let _: () = redis::cmd("SET").arg(format!("live:{n}")).arg("v").query(&mut con).unwrap();
        let _: () = redis::cmd("SET")
            .arg(format!("brief:{n}"))
            .arg("v")
            .arg("PX")
            .arg(50)
            .query(&mut con)
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(120));
    let listed: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    assert_eq!(listed.len(), 20, "{listed:?}");
    assert!(listed.iter().all(|k| k.starts_with("live:")));
    let scanned = scan_all(std::slice::from_mut(&mut con), &[], |_| {});
    assert_eq!(scanned.len(), 20, "{scanned:?}");
    for _ in 0..20 {
        let key: String = redis::cmd("RANDOMKEY").query(&mut con).unwrap();
        assert!(key.starts_with("live:"), "{key}");
    }
}

/// KEYS with glob patterns (stars, classes, ranges, escapes, unclosed classes) lists what a
/// real redis-server lists on the same keys; SCAN's and KEYS's errors read as Redis's.
#[test]
fn keys_and_its_patterns_answer_as_real_redis_does() {
    let redis = RealRedis::start();
    let anna = server(2);
    let names = [
        "hello",
        "hallo",
        "hxllo",
        "hllo",
        "heeello",
        "a*b",
        "a?b",
        "a[b",
        "a]b",
        "user:1:name",
        "user:22:name",
        "user:3:mail",
        "x\\y",
        "caf\u{e9}",
        "",
        "-",
        "[",
        "]",
        "^",
    ];
    let mut setup = String::new();
    for name in names {
        setup.push_str(&resp(&["SET", name, "v"]));
    }
    let patterns = [
        "*",
        "h?llo",
        "h*llo",
        "h[ae]llo",
        "h[^e]llo",
        "h[a-b]llo",
        "h[b-a]llo",
        "a\\*b",
        "a\\?b",
        "a[[]b",
        "a[]]b",
        "a[\\]]b",
        "user:*:name",
        "user:?:*",
        "*:*:*",
        "x\\\\y",
        "x\\y",
        "[",
        "[a",
        "[^",
        "\\",
        "h[",
        "*llo*",
        "**",
        "?",
        "caf*",
        "[-]",
        "[\\^]",
    ];
    let mut script = String::new();
    for pattern in patterns {
        script.push_str(&resp(&["KEYS", pattern]));
    }
    for bad in [&["SCAN", "x"][..], &["SCAN", "0", "COUNT", "0"], &["SCAN", "0", "COUNT", "x"]] {
        script.push_str(&resp(bad));
    }
    script.push_str(&resp(&["SCAN", "0", "MATCH"]));
    script.push_str(&resp(&["SCAN", "0", "BOGUS", "1"]));
    let run = |addr| {
        raw(addr, setup.as_bytes());
        // KEYS lists in no set order: sort each array's elements.
        sorted_arrays(&raw(addr, script.as_bytes()))
    };
    let theirs = run(([127, 0, 0, 1], redis.1).into());
    let ours = run(anna.addr);
    assert_same_replies(&ours, &theirs);
}

/// A RESP reply stream with each flat array's elements sorted (lines of `$len` + value pairs).
fn sorted_arrays(replies: &str) -> String {
    let lines: Vec<&str> = replies.split("\r\n").collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(count) = line.strip_prefix('*').and_then(|n| n.parse::<usize>().ok()) {
            let mut items: Vec<(&str, &str)> =
                (0..count).map(|k| (lines[i + 1 + 2 * k], lines[i + 2 + 2 * k])).collect();
            items.sort();
            out.push(line.to_owned());
            for (len, value) in items {
                out.push(len.to_owned());
                out.push(value.to_owned());
            }
            i += 1 + 2 * count;
        } else {
            out.push(line.to_owned());
            i += 1;
        }
    }
    out.join("\n")
}
