//! TLS on the Redis port against Debian's real `redis-cli --tls`, with certificates made at
//! test time (rcgen; no private key is committed): commands and data shared with the plain
//! port, client certificates required or not, big values through the TLS buffers, pipelining,
//! bad input on the TLS port, and a bad certificate refused at start.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anna_kvs::redis::RedisConfig;
use anna_kvs::redis::tls::{ClientAuth, TlsConfig};
use anna_kvs::server::{RunningServer, ServerConfig, ServerError};
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
    let output = Command::new("redis-cli")
        .args(["--tls", "-h", "127.0.0.1", "-p", &tls.to_string()])
        .arg("--cacert")
        .arg(pki.path("ca.pem"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(script.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let lines: Vec<String> =
        String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect();
    let expected: Vec<String> = (0..500).flat_map(|i| ["OK".to_owned(), i.to_string()]).collect();
    assert_eq!(lines, expected);
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
