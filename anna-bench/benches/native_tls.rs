//! What TLS costs the native protocol: the Rust client against one in-process node, once over
//! plain ZeroMQ and once with `--native-tls` (rustls, TLS 1.3, the tunnel of
//! `anna_kvs::tls::tunnel`), side by side. Each iteration is one round trip: a single `GET`,
//! or a batch of 64 `SET`s of 8-byte values (as `redis-benchmark -d 8` writes them).
//!
//!     cargo bench -p anna-bench --bench native_tls -- --quick

use std::time::Duration;

use anna_kvs::client::{Client, ClientConfig};
use anna_kvs::native::FrontEndConfig;
use anna_kvs::redis::{RedisConfig, RedisValue};
use anna_kvs::server::{RunningServer, ServerConfig};
use anna_kvs::tls::{ClientAuth, TlsConfig};
use anna_kvs::{Request, ring::Key};
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lattice_core::{Lww, Stamp};
use rcgen::{CertificateParams, KeyPair};

/// A self-signed certificate for 127.0.0.1 in a fresh directory: (cert, key) paths.
fn certificate() -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("anna-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert =
        CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().self_signed(&key).unwrap();
    let paths = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&paths.0, cert.pem()).unwrap();
    std::fs::write(&paths.1, key.serialize_pem()).unwrap();
    paths
}

fn server(tls: Option<&(std::path::PathBuf, std::path::PathBuf)>) -> RunningServer {
    let tls = tls.map(|(cert_file, key_file)| {
        TlsConfig {
            port: 0,
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
            ca_cert_file: None,
            auth_clients: ClientAuth::No,
        }
        .server_config()
        .unwrap()
    });
    let mut config = ServerConfig {
        redis: RedisConfig { port: 0, ..RedisConfig::default() },
        native: Some(FrontEndConfig { port: 0, tls, ..FrontEndConfig::default() }),
        ..ServerConfig::default()
    };
    config.node.threads = 1;
    RunningServer::start(config).unwrap()
}

fn value(i: u64) -> RedisValue {
    let register = Lww::new(
        Stamp::new(1_700_000_000_000_000 + i, 9 << 16),
        Some(Bytes::from_static(b"xxxxxxxx")),
    );
    RedisValue::from_register(register, 9 << 16)
}

fn native(c: &mut Criterion) {
    let files = certificate();
    let mut group = c.benchmark_group("native_round_trip");
    group.measurement_time(Duration::from_secs(4));
    for (name, tls) in [("plain", None), ("tls", Some(&files))] {
        let running = server(tls);
        let addr = running.native_addr.clone().unwrap();
        let config = ClientConfig {
            tls: tls.map(|(cert, _)| anna_kvs::tls::client_config(cert, None).unwrap()),
            ..ClientConfig::default()
        };
        let mut client = Client::<RedisValue>::with_config(&[&addr], config).unwrap();
        client.put("probe", value(0)).unwrap();
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("get", name), |b| {
            b.iter(|| client.get("probe").unwrap());
        });
        group.throughput(Throughput::Elements(64));
        let mut n = 0u64;
        group.bench_function(BenchmarkId::new("set_x64", name), |b| {
            b.iter(|| {
                let requests = (0..64)
                    .map(|i| {
                        n += 1;
                        let key: Key = format!("key:{i:02}").into_bytes().into();
                        Request::Put { key, value: value(n), stamp_here: true }
                    })
                    .collect();
                let answers = client.request_batch(requests);
                assert!(answers.iter().all(Result::is_ok));
                answers
            });
        });
        drop(client);
        drop(running);
    }
    group.finish();
}

criterion_group!(benches, native);
criterion_main!(benches);
