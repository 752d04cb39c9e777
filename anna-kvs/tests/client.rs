//! The Rust client (native protocol over ZeroMQ) against real `anna-server` processes on free
//! ports: every consistency level's session, transactions, passwords, lattice-type mismatches,
//! and malformed messages on the client and gossip ports.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anna_kvs::client::{Client, ClientConfig, ClientError};
use anna_kvs::levels::{
    Causal, CausalSession, EventualSession, ItemCutSession, MonotonicReadsSession,
    MonotonicWritesSession, PramSession, ReadCommittedSession, ReadUncommittedSession,
    ReadYourWritesSession, Store, Transactional, TxnEnd, WritesFollowReadsSession, lww_bytes,
};
use anna_kvs::native::{self, ClientFrame, ClientMessage};
use anna_kvs::redis::{RedisOp, RedisOpOutput, RedisValue};
use anna_kvs::{Eventual, Key, Request};
use bytes::Bytes;

fn free_port() -> u16 {
    loop {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        if port < 65_000 && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

struct Server {
    child: Child,
    redis_port: u16,
    native: String,
    gossip_port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(consistency: &str, extra: &[&str]) -> Server {
    let redis_port = free_port();
    let native_port = free_port();
    let gossip_port = free_port();
    let child = common::anna_server()
        .args(["--consistency", consistency, "--threads", "2", "--no-pin", "--epoch-ms", "20"])
        .args(["--port", &redis_port.to_string(), "--native-port", &native_port.to_string()])
        .args(["--gossip-port", &gossip_port.to_string(), "--log-level", "warn"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start anna-server");
    let native = format!("127.0.0.1:{native_port}");
    Server { child, redis_port, native, gossip_port }
}

/// Connects, waiting for the server to come up.
fn connect<V: anna_kvs::KvsValue>(server: &Server, config: ClientConfig) -> Client<V> {
    let start = Instant::now();
    loop {
        let config = ClientConfig { timeout: Duration::from_millis(300), ..config.clone() };
        match Client::<V>::with_config(&[&server.native], config) {
            Ok(client) => return client,
            Err(error) if start.elapsed() > Duration::from_secs(15) => {
                panic!("server on {} never answered: {error}", server.native)
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn k(s: &str) -> Key {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn eventual_server_serves_redis_values_and_every_register_session() {
    let server = start("eventual", &[]);
    let mut client = connect::<RedisValue>(&server, ClientConfig::default());
    assert_eq!(client.ring().value_type, "redis-value-v3");
    assert_eq!(client.ring().members.len(), 1);
    assert_eq!(client.ring().members[0].client_addr.as_deref(), Some(server.native.as_str()));

    // Redis operations over the native protocol, read back by redis-cli.
    assert_eq!(client.apply("n", RedisOp::IncrBy(41)).unwrap(), RedisOpOutput::Int(41));
    assert_eq!(client.apply("n", RedisOp::IncrBy(1)).unwrap(), RedisOpOutput::Int(42));
    assert_eq!(
        client.get("n").unwrap().unwrap().get_string().unwrap().as_deref(),
        Some(&b"42"[..])
    );
    client.apply("s", RedisOp::SAdd(vec!["a".into(), "b".into()])).unwrap();
    let wrong = client.apply("s", RedisOp::IncrBy(1));
    assert!(
        matches!(
            &wrong,
            Err(ClientError::Request(anna_kvs::RequestError::Op(anna_kvs::OpError::WrongType)))
        ),
        "{wrong:?}"
    );
    let redis = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &server.redis_port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    };
    assert_eq!(redis(&["GET", "n"]), "42");
    assert_eq!(redis(&["SCARD", "s"]), "2");
    assert_eq!(redis(&["SET", "from-redis", "hi"]), "OK");
    let value = client.get("from-redis").unwrap().unwrap();
    assert_eq!(value.get_string().unwrap().as_deref(), Some(&b"hi"[..]));
    client.delete("from-redis").unwrap();
    assert_eq!(client.get("from-redis").unwrap(), None, "a deleted key reads as absent");
    assert_eq!(redis(&["EXISTS", "from-redis"]), "0");

    // Every register session runs over the client (string keys are LWW registers).
    let id = client.client_id();
    let key = k("reg");
    let mut eventual = EventualSession::new(id);
    eventual.put(&mut client, &key, "e".into()).unwrap();
    assert_eq!(
        lww_bytes(eventual.get(&mut client, &key).unwrap().as_ref()).as_deref(),
        Some(&b"e"[..])
    );
    let mut reads = MonotonicReadsSession::new(id);
    reads.put(&mut client, &key, "mr".into()).unwrap();
    assert_eq!(
        lww_bytes(reads.get(&mut client, &key).unwrap().as_ref()).as_deref(),
        Some(&b"mr"[..])
    );
    let mut writes = MonotonicWritesSession::new(id);
    writes.put(&mut client, &key, "mw1".into()).unwrap();
    writes.put(&mut client, &key, "mw2".into()).unwrap();
    assert_eq!(
        lww_bytes(writes.get(&mut client, &key).unwrap().as_ref()).as_deref(),
        Some(&b"mw2"[..])
    );
    let mut ryw = ReadYourWritesSession::new(id);
    ryw.put(&mut client, &key, "ryw".into()).unwrap();
    assert_eq!(
        lww_bytes(ryw.get(&mut client, &key).unwrap().as_ref()).as_deref(),
        Some(&b"ryw"[..])
    );
    let mut pram = PramSession::new(id);
    pram.put(&mut client, &key, "pram".into()).unwrap();
    assert_eq!(
        lww_bytes(pram.get(&mut client, &key).unwrap().as_ref()).as_deref(),
        Some(&b"pram"[..])
    );
    let mut wfr = WritesFollowReadsSession::new(id);
    assert_eq!(
        lww_bytes(wfr.get(&mut client, &key).unwrap().as_ref()).as_deref(),
        Some(&b"pram"[..])
    );
    wfr.put(&mut client, &key, "wfr".into()).unwrap();
    assert_eq!(redis(&["GET", "reg"]), "wfr", "sessions and redis-cli share the data");
    // A register session on a set key is a clear error.
    assert!(Store::<Eventual>::get(&mut client, &k("s")).is_err());

    // A value too large for one message is refused at once, without waiting for a timeout.
    let huge = RedisValue::from_register(
        lattice_core::Lww::new(lattice_core::Stamp::new(1, 1), Some(vec![7_u8; 17 << 20].into())),
        1,
    );
    let started = Instant::now();
    let refused = client.put("huge", huge);
    assert!(matches!(refused, Err(ClientError::Wire(_))), "{refused:?}");
    assert!(started.elapsed() < Duration::from_millis(1000), "{:?}", started.elapsed());
    assert!(client.get("n").unwrap().is_some(), "the node is not suspected for it");

    // Stats show the traffic.
    let stats = client.stats().unwrap();
    assert_eq!(stats.len(), 1);
    assert!(stats[0].front_end.requests >= 10);
    assert_eq!(stats[0].actors.len(), 2);
}

#[test]
fn causal_server_keeps_concurrent_writes_as_siblings() {
    let server = start("causal", &[]);
    let mut alice = connect::<Causal>(&server, ClientConfig::default());
    let mut bob = connect::<Causal>(&server, ClientConfig::default());
    assert_ne!(alice.client_id(), bob.client_id());
    let key = k("doc");
    let mut a = CausalSession::new(alice.client_id());
    let mut b = CausalSession::new(bob.client_id());
    // Neither has read the other's write: concurrent.
    a.put(&mut alice, &key, Some("alice".into())).unwrap();
    b.put(&mut bob, &key, Some("bob".into())).unwrap();
    let both = a.get(&mut alice, &key).unwrap().unwrap();
    let mut values: Vec<_> = both.values().cloned().collect();
    values.sort();
    assert_eq!(values, vec![Some(Bytes::from("alice")), Some(Bytes::from("bob"))]);
    for (clock, _) in both.entries() {
        assert_eq!(clock.len(), 1, "each sibling's clock names its one writer: {clock:?}");
    }
    // Alice has now seen both: her next write supersedes them.
    a.put(&mut alice, &key, Some("merged".into())).unwrap();
    let after = b.get(&mut bob, &key).unwrap().unwrap();
    assert_eq!(after.values().cloned().collect::<Vec<_>>(), vec![Some(Bytes::from("merged"))]);
    assert_eq!(after.entries()[0].0.len(), 2, "the resolving write saw both writers");

    // A client speaking another lattice is refused with a clear error.
    let wrong = Client::<RedisValue>::with_config(&[&server.native], ClientConfig::default());
    let message = wrong.unwrap_err().to_string();
    assert!(message.contains("value type") || message.contains("stores"), "{message}");
}

#[test]
fn transactional_server_runs_every_transaction_level() {
    let server = start("read-committed", &[]);
    let mut client = connect::<Transactional>(&server, ClientConfig::default());
    let id = client.client_id();
    let (x, y) = (k("x"), k("y"));

    // Read committed: writes are buffered until commit.
    let mut rc = ReadCommittedSession::new(id);
    rc.begin(client.now());
    rc.write(&x, "x1".into());
    rc.write(&y, "y1".into());
    assert_eq!(rc.read(&mut client, &x).unwrap().as_deref(), Some(&b"x1"[..]), "own writes");
    let mut other = ReadCommittedSession::new(id + 1);
    other.begin(client.now());
    assert_eq!(other.read(&mut client, &x).unwrap(), None, "uncommitted writes are invisible");
    assert_eq!(rc.commit(&mut client).unwrap(), TxnEnd::Committed);
    assert_eq!(other.read(&mut client, &y).unwrap().as_deref(), Some(&b"y1"[..]));
    // An aborted transaction leaves nothing.
    rc.begin(client.now());
    rc.write(&x, "never".into());
    assert_eq!(rc.abort(), TxnEnd::Aborted);
    assert_eq!(other.read(&mut client, &x).unwrap().as_deref(), Some(&b"x1"[..]));

    // Read uncommitted: writes go out at once.
    let mut ru = ReadUncommittedSession::new(id + 2);
    ru.begin(client.now());
    ru.write(&mut client, &x, "x2".into()).unwrap();
    assert_eq!(other.read(&mut client, &x).unwrap().as_deref(), Some(&b"x2"[..]));
    ru.commit();

    // Item-cut isolation: a transaction reads each key once, even if it changes meanwhile.
    let mut ici = ItemCutSession::new(id + 3);
    ici.begin(client.now());
    assert_eq!(ici.read(&mut client, &x).unwrap().as_deref(), Some(&b"x2"[..]));
    ru.begin(client.now());
    ru.write(&mut client, &x, "x3".into()).unwrap();
    assert_eq!(ici.read(&mut client, &x).unwrap().as_deref(), Some(&b"x2"[..]), "cached");
    ici.write(&y, "y2".into());
    assert_eq!(ici.commit(&mut client).unwrap(), TxnEnd::Committed);
    assert_eq!(other.read(&mut client, &y).unwrap().as_deref(), Some(&b"y2"[..]));
}

#[test]
fn a_password_protects_the_native_port() {
    let server = start("eventual", &["--requirepass", "s3cret"]);
    // Without the password: refused, with the reason.
    let start = Instant::now();
    let error = loop {
        match Client::<RedisValue>::with_config(&[&server.native], ClientConfig::default()) {
            Err(ClientError::Unreachable(_)) if start.elapsed() < Duration::from_secs(15) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => break other.unwrap_err(),
        }
    };
    assert!(error.to_string().contains("NOAUTH"), "{error}");
    let config = ClientConfig { password: Some("s3cret".into()), ..ClientConfig::default() };
    let mut client = connect::<RedisValue>(&server, config);
    client.apply("k", RedisOp::Set("v".into())).unwrap();
    assert!(client.get("k").unwrap().is_some());
}

/// Sends raw bytes on a DEALER socket and returns the answer, if any.
fn raw_exchange(socket: &zmq::Socket, bytes: &[u8]) -> Option<Vec<u8>> {
    socket.send(bytes, 0).unwrap();
    (socket.poll(zmq::POLLIN, 3000).unwrap() > 0).then(|| socket.recv_bytes(0).unwrap())
}

#[test]
fn malformed_messages_are_answered_counted_and_harmless() {
    let server = start("eventual", &[]);
    let mut client = connect::<RedisValue>(&server, ClientConfig::default());
    client.apply("before", RedisOp::Set("1".into())).unwrap();

    let context = zmq::Context::new();
    let socket = context.socket(zmq::DEALER).unwrap();
    socket.set_linger(0).unwrap();
    socket.connect(&format!("tcp://{}", server.native)).unwrap();
    let good = native::encode_client::<RedisValue>(&ClientFrame {
        password: None,
        message: ClientMessage::Batch { id: 1, requests: vec![Request::Get { key: k("before") }] },
    })
    .unwrap();
    let mut huge_length = good[..9].to_vec();
    huge_length.extend_from_slice(&[0, 1, 1, 0xFD]);
    huge_length.extend_from_slice(&(1_u64 << 62).to_le_bytes());
    let mut bad_version = good.clone();
    bad_version[4] = 200;
    // Requests carrying another lattice's values (a ring request carries none: it is answered).
    let causal = native::encode_client::<Causal>(&ClientFrame {
        password: None,
        message: ClientMessage::Batch { id: 2, requests: vec![Request::Get { key: k("before") }] },
    })
    .unwrap();
    let mut gossip_magic = good.clone();
    gossip_magic[..4].copy_from_slice(b"ANNA");
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("garbage", b"\x00\xffhello garbage\x13\x37".to_vec()),
        ("truncated", good[..good.len() - 3].to_vec()),
        ("trailing bytes", [good.clone(), vec![0]].concat()),
        ("huge length prefix", huge_length),
        ("bad version", bad_version),
        ("other lattice", causal),
        ("gossip magic", gossip_magic),
    ];
    for (what, bytes) in &bad {
        let answer = raw_exchange(&socket, bytes).unwrap_or_else(|| panic!("{what}: no answer"));
        match native::decode_server::<RedisValue>(&answer).unwrap() {
            native::Answer::Refused(message) => {
                assert!(message.starts_with("ERR"), "{what}: {message}")
            }
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
    }
    // A multi-frame message is not a client message either.
    socket.send_multipart([&b"one"[..], &b"two"[..]], 0).unwrap();
    assert!(socket.poll(zmq::POLLIN, 3000).unwrap() > 0, "multi-frame: no answer");
    let answer = socket.recv_multipart(0).unwrap();
    assert_eq!(answer.len(), 1, "one error frame, nothing echoed");
    assert!(matches!(
        native::decode_server::<RedisValue>(&answer[0]).unwrap(),
        native::Answer::Refused(_)
    ));
    // Garbage on a gossip port is dropped and counted.
    let push = context.socket(zmq::PUSH).unwrap();
    push.set_linger(1000).unwrap();
    push.connect(&format!("tcp://127.0.0.1:{}", server.gossip_port)).unwrap();
    for _ in 0..5 {
        push.send(&b"definitely not gossip"[..], 0).unwrap();
    }
    drop(push);
    // The server keeps serving, and counted every bad message.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = client.stats().unwrap();
        let malformed = stats[0].front_end.malformed;
        let gossip_bad: u64 = stats[0].actors.iter().map(|a| a.bad_messages).sum();
        if malformed > bad.len() as u64 && gossip_bad >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "counts: client port {malformed}, gossip {gossip_bad}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(client.get("before").unwrap().is_some());
    let answer = raw_exchange(&socket, &good).expect("a good message after bad ones");
    assert!(matches!(
        native::decode_server::<RedisValue>(&answer).unwrap(),
        native::Answer::Message(native::ServerMessage::Batch { id: 1, .. })
    ));
}

#[test]
fn a_dead_node_is_a_timeout_not_a_hang() {
    let port = free_port();
    let config = ClientConfig { timeout: Duration::from_millis(200), ..ClientConfig::default() };
    let started = Instant::now();
    let error =
        Client::<RedisValue>::with_config(&[format!("127.0.0.1:{port}")], config).unwrap_err();
    assert!(matches!(error, ClientError::Unreachable(_)), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
