//! TLS on both client ports, with certificates made at test time (rcgen; no private key is
//! committed).
//!
//! The Redis port against Debian's real `redis-cli --tls`: commands and data shared with the
//! plain port, client certificates required or not, big values through the TLS buffers,
//! pipelining, bad input on the TLS port, and a bad certificate refused at start.
//!
//! The native port with `--native-tls` against the Rust client and `anna-cli --tls`: data
//! shared with the Redis port, a two-node cluster routed over TLS, untrusted and
//! certificate-less clients, plain ZeroMQ and oversized frames refused, each counted.

mod common;

use common::{eventually, free_port};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use lattice_core::{Lww, Stamp};

use anna_kvs::client::{Client, ClientConfig, ClientError};
use anna_kvs::native::FrontEndConfig;
use anna_kvs::redis::{RedisConfig, RedisValue};
use anna_kvs::server::{RunningServer, ServerConfig, ServerError};
use anna_kvs::tls::{ClientAuth, TlsConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files
/// in a fresh directory.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("anna-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "anna test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca = Issuer::new(ca_params, ca_key);
        let write = |file: &str, text: String| std::fs::write(dir.join(file), text).unwrap();
        write("ca.pem", ca_cert.pem());
        for (who, names) in [
            ("server", vec!["localhost".to_owned(), "127.0.0.1".to_owned()]),
            ("client", vec!["client".to_owned()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names).unwrap().signed_by(&key, &ca).unwrap();
            write(&format!("{who}.pem"), cert.pem());
            write(&format!("{who}.key"), key.serialize_pem());
        }
        Self { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn tls(&self, auth_clients: ClientAuth) -> TlsConfig {
        TlsConfig {
            port: 0,
            cert_file: self.path("server.pem"),
            key_file: self.path("server.key"),
            ca_cert_file: Some(self.path("ca.pem")),
            auth_clients,
        }
    }
}

fn start(tls: TlsConfig) -> Result<RunningServer, ServerError> {
    let mut config = ServerConfig {
        redis: RedisConfig { port: 0, tls: Some(tls), ..RedisConfig::default() },
        ..ServerConfig::default()
    };
    config.node.threads = 2;
    config.node.epoch = Duration::from_millis(20);
    RunningServer::start(config)
}

/// `redis-cli --tls` with the CA (and, if given, a client certificate).
fn tls_cli(port: u16, pki: &Pki, client_cert: bool, args: &[&str]) -> (bool, String) {
    let mut command = Command::new("redis-cli");
    command.args(["--tls", "-h", "127.0.0.1", "-p", &port.to_string()]);
    command.arg("--cacert").arg(pki.path("ca.pem"));
    if client_cert {
        command.arg("--cert").arg(pki.path("client.pem")).arg("--key").arg(pki.path("client.key"));
    }
    let output = command.args(args).output().expect("redis-cli is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (
        output.status.success() && !text.contains("Could not") && !text.contains("Error"),
        text.trim_end().to_owned(),
    )
}

/// `redis-cli --tls` fed `script` (one command a line) on stdin; its output lines.
fn tls_cli_script(port: u16, pki: &Pki, script: &[u8]) -> Vec<String> {
    let output = Command::new("redis-cli")
        .args(["--tls", "-h", "127.0.0.1", "-p", &port.to_string()])
        .arg("--cacert")
        .arg(pki.path("ca.pem"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(script)?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn redis_cli_over_tls_shares_data_with_the_plain_port() {
    let pki = Pki::new("shared");
    let server = start(pki.tls(ClientAuth::No)).unwrap();
    let tls = server.tls_addr.expect("TLS port on").port();
    let plain = server.addr.port();
    assert_eq!(tls_cli(tls, &pki, false, &["PING"]), (true, "PONG".to_owned()));
    assert_eq!(tls_cli(tls, &pki, false, &["SET", "sealed", "secret value"]).1, "OK");
    assert_eq!(common::redis_cli(plain, &["GET", "sealed"]).as_deref(), Some("secret value"));
    assert_eq!(common::redis_cli(plain, &["SADD", "s", "a", "b"]).as_deref(), Some("2"));
    assert_eq!(tls_cli(tls, &pki, false, &["SCARD", "s"]).1, "2");
    assert_eq!(
        common::redis_cli(plain, &["CONFIG", "GET", "tls-port"]),
        Some(format!("tls-port\n{tls}"))
    );
    // A 3 MB value both ways: more than the TLS session buffers at once.
    let big = "x".repeat(3 << 20);
    let value = pki.path("big.txt");
    std::fs::write(&value, &big).unwrap();
    let output = Command::new("redis-cli")
        .args(["--tls", "-h", "127.0.0.1", "-p", &tls.to_string(), "--cacert"])
        .arg(pki.path("ca.pem"))
        .args(["-x", "SET", "big"])
        .stdin(std::fs::File::open(&value).unwrap())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "OK");
    let (ok, got) = tls_cli(tls, &pki, false, &["GET", "big"]);
    assert!(ok && got.len() == big.len(), "{} bytes back", got.len());
    // Pipelined commands over TLS come back in order.
    let script: String = (0..500).map(|i| format!("SET p{i} {i}\nGET p{i}\n")).collect();
    let lines = tls_cli_script(tls, &pki, script.as_bytes());
    let expected: Vec<String> = (0..500).flat_map(|i| ["OK".to_owned(), i.to_string()]).collect();
    assert_eq!(lines, expected);
    // A set's members (a 1.3 MB reply, sent from the buffer its actor encoded) over TLS,
    // then a reply pipelined behind it.
    let members: Vec<String> = (0..60_000).map(|n| format!("member:{n:06}")).collect();
    for chunk in members.chunks(2_000) {
        let mut args = vec!["SADD", "bigset"];
        args.extend(chunk.iter().map(String::as_str));
        assert_eq!(common::redis_cli(plain, &args).as_deref(), Some("2000"));
    }
    let lines = tls_cli_script(tls, &pki, b"SMEMBERS bigset\nGET p7\n");
    let (last, got) = lines.split_last().expect("replies");
    assert_eq!(last, "7", "the reply after the big one");
    let mut got = got.to_vec();
    got.sort();
    assert_eq!(got, members);
}

#[test]
fn client_certificates_are_required_unless_told_otherwise() {
    let pki = Pki::new("auth");
    let server = start(pki.tls(ClientAuth::Required)).unwrap();
    let tls = server.tls_addr.unwrap().port();
    let (ok, text) = tls_cli(tls, &pki, false, &["PING"]);
    assert!(!ok, "a client without a certificate was served: {text}");
    assert_eq!(tls_cli(tls, &pki, true, &["PING"]), (true, "PONG".to_owned()));
    drop(server);
    let server = start(pki.tls(ClientAuth::Optional)).unwrap();
    let tls = server.tls_addr.unwrap().port();
    assert_eq!(tls_cli(tls, &pki, false, &["PING"]), (true, "PONG".to_owned()));
    assert_eq!(tls_cli(tls, &pki, true, &["PING"]), (true, "PONG".to_owned()));
}

#[test]
fn plain_text_on_the_tls_port_is_dropped_and_others_are_served() {
    let pki = Pki::new("garbage");
    let server = start(pki.tls(ClientAuth::No)).unwrap();
    let tls = server.tls_addr.unwrap();
    let mut stream = TcpStream::connect(tls).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(!answer.windows(4).any(|w| w == b"PONG"), "plain RESP answered on the TLS port");
    assert_eq!(tls_cli(tls.port(), &pki, false, &["PING"]), (true, "PONG".to_owned()));
    assert_eq!(common::redis_cli(server.addr.port(), &["PING"]).as_deref(), Some("PONG"));
}

#[test]
fn a_bad_certificate_or_key_fails_the_start_naming_the_file() {
    let pki = Pki::new("bad");
    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let check = |tls: TlsConfig, named: &Path| match start(tls) {
        Err(error) => assert!(error.to_string().contains(&*named.to_string_lossy()), "{error}"),
        Ok(_) => panic!("started with {}", named.display()),
    };
    check(TlsConfig { cert_file: garbage.clone(), ..pki.tls(ClientAuth::No) }, &garbage);
    check(TlsConfig { key_file: garbage.clone(), ..pki.tls(ClientAuth::No) }, &garbage);
    // A key that is not the certificate's.
    let other = pki.path("client.key");
    check(TlsConfig { key_file: other.clone(), ..pki.tls(ClientAuth::No) }, &other);
    match start(TlsConfig { ca_cert_file: None, ..pki.tls(ClientAuth::Required) }) {
        Err(error) => assert!(error.to_string().contains("tls-ca-cert-file"), "{error}"),
        Ok(_) => panic!("required client certificates without a CA"),
    }
}

/// A node whose native port speaks TLS (and whose Redis port is plain, to check the data).
fn start_native(pki: &Pki, auth_clients: ClientAuth) -> RunningServer {
    let native = FrontEndConfig {
        port: 0,
        tls: Some(pki.tls(auth_clients).server_config().unwrap()),
        ..FrontEndConfig::default()
    };
    let mut config = ServerConfig {
        redis: RedisConfig { port: 0, ..RedisConfig::default() },
        native: Some(native),
        ..ServerConfig::default()
    };
    config.node.threads = 2;
    config.node.epoch = Duration::from_millis(20);
    RunningServer::start(config).unwrap()
}

/// A native client trusting `ca` (and presenting the client certificate, if asked).
fn native_client(
    addr: &str,
    pki: &Pki,
    ca: &Path,
    client_cert: bool,
) -> Result<Client<RedisValue>, ClientError> {
    let cert = (pki.path("client.pem"), pki.path("client.key"));
    let identity = client_cert.then_some((cert.0.as_path(), cert.1.as_path()));
    let config = ClientConfig {
        tls: Some(anna_kvs::tls::client_config(ca, identity).unwrap()),
        timeout: Duration::from_millis(700),
        attempts: 1,
        ..ClientConfig::default()
    };
    Client::with_config(&[addr], config)
}

/// A string value as a writer stamps it now.
fn text(value: &str) -> RedisValue {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let stamp = Stamp::new(now.as_micros() as u64, 7 << 16);
    RedisValue::from_register(
        Lww::new(stamp, Some(Bytes::copy_from_slice(value.as_bytes()))),
        7 << 16,
    )
}

/// The string a native read returned.
fn string_of(value: Option<RedisValue>) -> Option<String> {
    let bytes = value?.get_string().unwrap()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[test]
fn native_clients_speak_tls_and_share_data_with_the_redis_port() {
    let pki = Pki::new("native");
    let server = start_native(&pki, ClientAuth::Required);
    let addr = server.native_addr.clone().unwrap();
    let mut client = native_client(&addr, &pki, &pki.path("ca.pem"), true).unwrap();
    client.put("over-tls", text("sealed")).unwrap();
    assert_eq!(
        common::redis_cli(server.addr.port(), &["GET", "over-tls"]).as_deref(),
        Some("sealed")
    );
    assert_eq!(
        common::redis_cli(server.addr.port(), &["SET", "back", "plain"]).as_deref(),
        Some("OK")
    );
    assert_eq!(string_of(client.get("back").unwrap()).as_deref(), Some("plain"));
    // Values bigger than a TLS record (16 KiB) and many requests in one batch.
    let big = "v".repeat(3 << 20);
    client.put("big", text(&big)).unwrap();
    assert_eq!(string_of(client.get("big").unwrap()).map(|v| v.len()), Some(big.len()));
    for i in 0..300 {
        client.put(format!("k{i}"), text(&i.to_string())).unwrap();
    }
    assert_eq!(common::redis_cli(server.addr.port(), &["GET", "k299"]).as_deref(), Some("299"));
    let stats = client.stats().unwrap();
    assert_eq!(stats.len(), 1);
    assert!(stats[0].front_end.tls_accepted >= 1, "{:?}", stats[0].front_end);
    assert_eq!(stats[0].front_end.tls_failed, 0, "{:?}", stats[0].front_end);
}

#[test]
fn native_tls_refuses_untrusted_uncertified_and_plain_clients_and_oversized_frames() {
    let pki = Pki::new("native-refusals");
    let stranger = Pki::new("native-stranger");
    let server = start_native(&pki, ClientAuth::Required);
    let addr = server.native_addr.clone().unwrap();
    // No client certificate: the handshake fails and nothing is served.
    assert!(native_client(&addr, &pki, &pki.path("ca.pem"), false).is_err());
    // A client that trusts another CA refuses the server (and is never served).
    assert!(native_client(&addr, &pki, &stranger.path("ca.pem"), true).is_err());
    // Plain ZeroMQ on the TLS port gets no answer.
    let plain = ClientConfig {
        timeout: Duration::from_millis(500),
        attempts: 1,
        ..ClientConfig::default()
    };
    assert!(Client::<RedisValue>::with_config(&[&addr], plain).is_err());
    // A TLS frame announcing 4 GiB closes that connection before anything is allocated.
    let tls = anna_kvs::tls::client_config(
        &pki.path("ca.pem"),
        Some((&pki.path("client.pem"), &pki.path("client.key"))),
    )
    .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(tls, name).unwrap();
    let tcp = TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    stream.write_all(&u32::MAX.to_be_bytes()).unwrap();
    stream.flush().unwrap();
    let mut rest = Vec::new();
    let closed = matches!(stream.read_to_end(&mut rest), Ok(0)) || rest.is_empty();
    assert!(closed, "an oversized frame was answered with {} bytes", rest.len());
    // The port still serves a proper client, and counted each refusal.
    let mut client = native_client(&addr, &pki, &pki.path("ca.pem"), true).unwrap();
    client.put("after", text("fine")).unwrap();
    assert_eq!(string_of(client.get("after").unwrap()).as_deref(), Some("fine"));
    let front_end = client.stats().unwrap().remove(0).front_end;
    // The certificate-less client, the untrusting client (its alert), plain ZeroMQ (a bad
    // record) and the oversized frame.
    assert!(front_end.tls_failed >= 4, "{front_end:?}");
    assert_eq!(front_end.malformed, 0, "{front_end:?}");
}

#[test]
fn anna_cli_and_a_two_node_cluster_route_over_native_tls() {
    let pki = Pki::new("native-cluster");
    let gossip: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let native: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let redis: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let _nodes: Vec<common::Process> = (0..2)
        .map(|i| {
            let peer = format!("127.0.0.1:{}/1/{}", gossip[1 - i], native[1 - i]);
            let mut command = common::anna_server();
            command
                .args(["--port", &redis[i].to_string(), "--native-port", &native[i].to_string()])
                .args(["--gossip-port", &gossip[i].to_string(), "--threads", "1"])
                .args(["--epoch-ms", "20", "--log-level", "error", "--peers", &peer])
                .arg("--native-tls")
                .arg("--tls-cert-file")
                .arg(pki.path("server.pem"))
                .arg("--tls-key-file")
                .arg(pki.path("server.key"))
                .args(["--tls-auth-clients", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            common::Process(command.spawn().expect("start anna-server"))
        })
        .collect();
    for &port in &redis {
        assert!(eventually(Duration::from_secs(10), || common::redis_cli(port, &["PING"])
            .as_deref()
            == Some("PONG")));
    }
    let cli = |node: usize, args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_anna-cli"))
            .args(["--tls", "--cacert"])
            .arg(pki.path("ca.pem"))
            .args(["-H", &format!("127.0.0.1:{}", native[node])])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status.success(), text + &String::from_utf8_lossy(&output.stderr))
    };
    let (ok, said) = cli(0, &["put", "via-cli", "tunnelled"]);
    assert!(ok, "{said}");
    // Read through the other node: replication, and the ring's TLS addresses, work.
    assert!(eventually(Duration::from_secs(10), || cli(1, &["get", "via-cli"])
        .1
        .contains("tunnelled")));
    // The Rust client, dialled at one node, reaches both over TLS.
    let config = ClientConfig {
        tls: Some(anna_kvs::tls::client_config(&pki.path("ca.pem"), None).unwrap()),
        ..ClientConfig::default()
    };
    let addr = format!("127.0.0.1:{}", native[0]);
    let mut client = Client::<RedisValue>::with_config(&[&addr], config).unwrap();
    for i in 0..100 {
        client.put(format!("c{i}"), text(&i.to_string())).unwrap();
    }
    let stats = client.stats().unwrap();
    assert_eq!(stats.len(), 2, "both members answered over TLS");
    assert!(stats.iter().all(|s| s.front_end.tls_accepted >= 1 && s.front_end.requests > 0));
    for port in redis {
        assert!(eventually(Duration::from_secs(10), || common::redis_cli(port, &["GET", "c99"])
            .as_deref()
            == Some("99")));
    }
    // Without --tls, anna-cli cannot talk to a TLS port.
    let output = Command::new(env!("CARGO_BIN_EXE_anna-cli"))
        .args(["--timeout-ms", "300", "-H", &addr, "get", "via-cli"])
        .output()
        .unwrap();
    assert!(!output.status.success());
}
