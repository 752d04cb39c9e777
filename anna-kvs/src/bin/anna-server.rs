//! `anna-server`: one Anna node speaking the Redis protocol and Anna's native protocol.
//!
//! With no arguments it runs the embedded default: listen on 127.0.0.1, Redis protocol on port
//! 6379, native protocol (for `anna-cli` and the Rust client) on port 6450, one actor per core,
//! eventual consistency, each key on one actor of every node (`--replication full:1`), 100 ms
//! epochs, no cluster. Flags override a TOML file given with `--config`, which overrides the defaults.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;

use anna_kvs::auth::Secret;
use anna_kvs::levels::{Causal, Transactional};
use anna_kvs::native::{self, FrontEndConfig};
use anna_kvs::node::{Fsync, PeerSpec, Persistence};
use anna_kvs::server::{Server, ServerConfig};
use anna_kvs::tls::TlsConfig;
use anna_kvs::{Factor, Replication};
use clap::Parser;

/// The server allocates small, short-lived buffers per command (arguments, replies, stored
/// values); mimalloc serves those faster than glibc's allocator (as jemalloc does for Redis).
/// The counting wrapper gives `INFO memory` and `maxmemory` the bytes held, as Redis's
/// `used_memory` is its allocator's count.
#[global_allocator]
static ALLOCATOR: anna_kvs::memory::Counting<mimalloc::MiMalloc> =
    anna_kvs::memory::Counting(mimalloc::MiMalloc);
use serde::{Deserialize, Serialize};

/// Anna: a coordination-free, lattice-based key-value store, speaking the Redis protocol.
///
/// Every option can also be set in the TOML file given with `--config`, under the same name
/// (`native-port = 6451`, `peers = ["10.0.0.2:7000"]`, `pin = true`); a flag on the command
/// line wins over the file. One struct serves both, so the two cannot drift apart.
#[derive(Parser, Serialize, Deserialize, Debug, Default)]
#[command(name = "anna-server", version, about)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
struct Options {
    /// TOML configuration file (flags given on the command line win).
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Consistency level, which fixes the value lattice the node stores: `eventual` (and the
    /// session levels monotonic-reads, monotonic-writes, read-your-writes, pram,
    /// writes-follow-reads) keeps Redis values and serves both protocols; `causal`,
    /// `read-uncommitted`, `read-committed` and `item-cut` serve the native protocol only
    /// [default: eventual].
    #[arg(long)]
    consistency: Option<String>,
    /// Native-protocol port (0 = off) [default: 6450].
    #[arg(long)]
    native_port: Option<u16>,
    /// The data directory: the node's identity and each actor's append-only log. `""` runs
    /// from memory only (a fresh identity at every start, nothing survives a restart). Each
    /// node needs its own [default: ./anna-data].
    #[arg(long)]
    dir: Option<String>,
    /// Keep an append-only log per actor in --dir, replayed at start: `yes` or `no` (Redis's
    /// name) [default: yes].
    #[arg(long)]
    appendonly: Option<String>,
    /// When the log reaches the disk: `always` (before a write is acknowledged), `everysec`
    /// (up to about a second of writes can be lost with the machine) or `no` (the OS decides)
    /// [default: everysec].
    #[arg(long)]
    appendfsync: Option<String>,
    /// Start even when a log has a corrupt record in the middle, from the intact records
    /// before it (the rest is dropped): `yes` or `no` [default: no].
    #[arg(long)]
    aof_load_corrupt: Option<String>,
    /// Redis-protocol port [default: 6379].
    #[arg(long)]
    port: Option<u16>,
    /// Address to listen on [default: 127.0.0.1]. A non-loopback address needs --requirepass.
    #[arg(long)]
    bind: Option<String>,
    /// Actor threads [default: one per core]. The actors also serve the Redis-protocol
    /// connections, handed to them in turn.
    #[arg(long)]
    threads: Option<usize>,
    /// Password clients must give: Redis `AUTH`, and in every native-protocol message.
    #[arg(long)]
    requirepass: Option<String>,
    /// Gossip period in milliseconds [default: 100].
    #[arg(long)]
    epoch_ms: Option<u64>,
    /// Mean seconds between anti-entropy rounds: each actor compares the digests of the ring
    /// ranges it shares with one other replica and exchanges the keys that differ; 0 turns
    /// repair off [default: 10].
    #[arg(long)]
    repair_interval_secs: Option<f64>,
    /// Most keys each actor keeps for retransmission to one peer; past it the oldest
    /// unacknowledged batches are given up (a long-dead or partitioned peer cannot exhaust
    /// memory) and anti-entropy repairs what they carried once the peer is back [default:
    /// 1048576].
    #[arg(long)]
    max_unacked_keys_per_peer: Option<usize>,
    /// Most bytes of keys one repair message carries (`4mb`, `1gb`, bytes); a node catching
    /// up pulls at most this much per round trip per actor [default: 4mb].
    #[arg(long)]
    repair_bytes_per_round: Option<String>,
    /// How long a node of a cluster, after it starts, forwards reads of ranges no replica has
    /// repaired yet before it serves them from what it has (every other replica down), in
    /// seconds; 0 turns catch-up off [default: 30].
    #[arg(long)]
    catch_up_timeout_secs: Option<f64>,
    /// Replication: `N` or `full` (actors per node, on every node), or `G:L` (G nodes × L
    /// actors, each `full` or a number) [default: full:1].
    #[arg(long)]
    replication: Option<String>,
    /// Gossip port for a cluster (actor t listens on port + t); no TCP gossip without it.
    #[arg(long)]
    gossip_port: Option<u16>,
    /// The secret every message between the cluster's nodes is authenticated with (the same
    /// on every node; required to gossip on a non-loopback address). Prefer
    /// --cluster-secret-file or the environment: a command line is visible to other users.
    #[arg(long, env = "ANNA_CLUSTER_SECRET", hide_env_values = true)]
    cluster_secret: Option<Secret>,
    /// A file whose first line is the cluster secret.
    #[arg(long, conflicts_with = "cluster_secret")]
    cluster_secret_file: Option<PathBuf>,
    /// The address peers and clients dial to reach this node, when it is not --bind (e.g.
    /// --bind 0.0.0.0 --announce-ip 10.0.0.2). Peers list this node by it.
    #[arg(long)]
    announce_ip: Option<String>,
    /// The gossip port peers dial, when a port mapping makes it differ from --gossip-port.
    #[arg(long)]
    announce_port: Option<u16>,
    /// Other nodes of a static cluster: `host:gossip-port[/threads[/native-port]]`,
    /// comma-separated (each node lists all the others; needs --gossip-port). With the native
    /// port, clients route requests straight to that node.
    #[arg(long, value_delimiter = ',')]
    peers: Option<Vec<String>>,
    /// Join a running cluster through any of its members (`host:gossip-port`) instead of
    /// listing static --peers: this node takes a free slot, every member adds it to its ring,
    /// and it catches up on its ranges from them. Needs --gossip-port and every key on two
    /// nodes or more (`full`, the default, or `2:…`). `anna-cli cluster leave` takes a node
    /// out again.
    #[arg(long)]
    join: Option<String>,
    /// On `SIGTERM`, leave the cluster for good, as `anna-cli cluster leave` does: hand every
    /// key to the other members, then exit and mark --dir as left. A second `SIGTERM` stops at
    /// once, as a member that is down (in every ring; the directory can start it again). For
    /// nodes whose stop means "this machine goes away" (scaling down); off by default, since a
    /// `SIGTERM` usually means a restart, and a node that left cannot start from its directory
    /// again. The hand-over waits for every member that owns a key, down ones included: give
    /// the service manager's stop timeout room (systemd's `TimeoutStopSec`, a pod's grace
    /// period); a kill in the middle is a crash, nothing acknowledged is lost. If the node may
    /// not leave (it is the last member alive), `SIGTERM` just stops it. `SIGINT` stops as
    /// without this flag. Needs --gossip-port, the native port, and two copies of every key
    /// [default: false].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    leave_on_terminate: Option<bool>,
    /// Take a member the failure detector declared down this many seconds ago out of the
    /// ring, so the others take over its ranges and copy them among themselves (needs keys on
    /// two nodes or more); a member taken out must come back with an empty --dir. 0 (the
    /// default) keeps failed members in the ring until they come back.
    #[arg(long)]
    remove_down_after_secs: Option<f64>,
    /// How often the failure detector (SWIM) probes a random member, in ms [default: 1000].
    #[arg(long)]
    probe_period_ms: Option<u64>,
    /// How long a member that missed its probes has to answer before it is declared down, in
    /// ms [default: 4 probe periods × max(1, log10 of the cluster's size)].
    #[arg(long)]
    suspect_timeout_ms: Option<u64>,
    /// A TLS port for Redis clients beside the plain one (`redis-cli --tls`); needs
    /// --tls-cert-file and --tls-key-file.
    #[arg(long)]
    tls_port: Option<u16>,
    /// Speak TLS on the native port instead of plain ZeroMQ (`anna-cli --tls`, the Rust
    /// client's `ClientConfig::tls`), with the --tls-* files; every member of a cluster should
    /// agree [default: false].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    native_tls: Option<bool>,
    /// The server's certificate chain (PEM).
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    /// The server's private key (PEM).
    #[arg(long)]
    tls_key_file: Option<PathBuf>,
    /// The CA that signs client certificates (PEM).
    #[arg(long)]
    tls_ca_cert_file: Option<PathBuf>,
    /// Whether TLS clients must present a certificate signed by the CA: `yes` (Redis's
    /// default), `optional` or `no`.
    #[arg(long)]
    tls_auth_clients: Option<String>,
    /// Most simultaneous clients [default: 10000].
    #[arg(long)]
    maxclients: Option<usize>,
    /// Close clients idle this many seconds (0 = never) [default: 0].
    #[arg(long)]
    timeout: Option<u64>,
    /// Largest key in bytes [default: 65536].
    #[arg(long)]
    max_key_bytes: Option<usize>,
    /// Largest value in bytes [default: 16777216].
    #[arg(long)]
    max_value_bytes: Option<usize>,
    /// Redis's `maxmemory`: past it, client writes that may grow memory get Redis's `OOM`
    /// error (reads, deletes and replication go on); `100mb`, `2gb`, `1000000`, or 0 for no
    /// limit [default: 0].
    #[arg(long)]
    maxmemory: Option<String>,
    /// What happens at `maxmemory`: only `noeviction` (evicting a key on one replica of a
    /// store without coordination would not delete it, and could lose writes) [default:
    /// noeviction].
    #[arg(long)]
    maxmemory_policy: Option<String>,
    /// Redis's `maxmemory-clients`: once all clients' query and reply buffers together pass
    /// this size, the client holding the most is closed; 0 for no limit [default: 0].
    #[arg(long)]
    maxmemory_clients: Option<String>,
    /// Redis's `client-output-buffer-limit` for normal clients, `[normal] <hard> <soft>
    /// <seconds>`: a client whose unwritten replies would pass the hard size is closed before
    /// the reply is built, one above the soft size for that many seconds is closed too; 0
    /// turns a limit off [default: "64mb 0 0"].
    #[arg(long)]
    client_output_buffer_limit: Option<String>,
    /// Pin each actor thread to its own core (`--pin`, or `--pin false`) [default: false].
    /// Worth it only when the actors have the cores to themselves: on a machine shared with
    /// clients or other services, pinned actors cannot move off a busy core (on 2 cores shared
    /// with redis-benchmark, unpipelined throughput fell by a quarter).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", overrides_with = "no_pin")]
    #[serde(alias = "pin-threads")]
    pin: Option<bool>,
    /// Do not pin actor threads (the same as `--pin false`; the last of the two wins).
    #[arg(long, overrides_with = "pin")]
    #[serde(skip)]
    no_pin: bool,
    /// Log filter, e.g. `info` or `anna_kvs=debug` [default: info, or RUST_LOG].
    #[arg(long)]
    log_level: Option<String>,
}

impl Options {
    /// The command line over the file it names (if any): every option the command line sets
    /// replaces the file's.
    fn resolve(self) -> Result<Self, String> {
        let no_pin = self.no_pin;
        let mut resolved = match self.config.clone() {
            None => self,
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let file: Self =
                    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                // Both as maps of the options they set, the command line's laid over the
                // file's, read back: no option is named twice in this program. (JSON, not
                // TOML, in between: TOML integers stop at i64::MAX, sizes do not.)
                let set_options = |options: &Self| match serde_json::to_value(options) {
                    Ok(serde_json::Value::Object(map)) => {
                        Ok(map.into_iter().filter(|(_, v)| !v.is_null()))
                    }
                    other => Err(format!("configuration: {other:?}")),
                };
                let mut merged: serde_json::Map<String, serde_json::Value> =
                    set_options(&file)?.collect();
                merged.extend(set_options(&self)?);
                serde_json::from_value(serde_json::Value::Object(merged))
                    .map_err(|e| format!("configuration: {e}"))?
            }
        };
        if no_pin {
            resolved.pin = Some(false);
        }
        Ok(resolved)
    }
}

/// A Redis-style `yes`/`no` setting.
fn yes_no(name: &str, text: Option<&str>, default: bool) -> Result<bool, String> {
    match text.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("yes") => Ok(true),
        Some("no") => Ok(false),
        Some(other) => Err(format!("{name} {other:?} is not yes or no")),
    }
}

fn parse_factor(text: &str) -> Result<Factor, String> {
    if text.eq_ignore_ascii_case("full") {
        return Ok(Factor::Full);
    }
    match text.parse::<u16>() {
        Ok(n) if n > 0 => Ok(Factor::Count(n)),
        _ => Err(format!("replication factor {text:?} is not `full` or a positive number")),
    }
}

fn parse_replication(text: &str) -> Result<Replication, String> {
    match text.split_once(':') {
        Some((global, local)) => Ok(Replication::new(parse_factor(global)?, parse_factor(local)?)),
        None => Ok(Replication::new(Factor::Full, parse_factor(text)?)),
    }
}

/// The value lattice a consistency level stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Storage {
    /// Redis values (last-writer-wins strings, counters, sets): both protocols.
    Redis,
    /// Multi-value registers with vector clocks.
    Causal,
    /// Transaction-stamped registers.
    Transactional,
}

fn parse_consistency(text: &str) -> Result<Storage, String> {
    match text.to_ascii_lowercase().replace('_', "-").as_str() {
        "eventual"
        | "monotonic-reads"
        | "monotonic-writes"
        | "read-your-writes"
        | "pram"
        | "writes-follow-reads" => Ok(Storage::Redis),
        "causal" => Ok(Storage::Causal),
        "read-uncommitted" | "read-committed" | "item-cut" | "item-cut-isolation"
        | "transactional" => Ok(Storage::Transactional),
        other => Err(format!(
            "unknown consistency level {other:?} (eventual, monotonic-reads, monotonic-writes, \
             read-your-writes, pram, writes-follow-reads, causal, read-uncommitted, \
             read-committed, item-cut)"
        )),
    }
}

struct Built {
    config: ServerConfig,
    log: String,
    storage: Storage,
}

fn build(options: Options) -> Result<Built, String> {
    let o = options.resolve()?;
    let mut config = ServerConfig::default();
    if let Some(port) = o.port {
        config.redis.port = port;
    }
    if let Some(bind) = o.bind {
        config.bind = bind;
    }
    config.requirepass = o.requirepass.filter(|p| !p.is_empty());
    if let Some(threads) = o.threads {
        config.node.threads = threads;
    }
    if let Some(ms) = o.epoch_ms {
        if ms == 0 {
            return Err("--epoch-ms must be at least 1".into());
        }
        config.node.epoch = Duration::from_millis(ms);
    }
    if let Some(text) = o.replication {
        config.node.replication = parse_replication(&text)?;
    }
    if let Some(port) = o.gossip_port {
        let host = o.announce_ip.clone().unwrap_or_else(|| config.bind.clone());
        let announced = o.announce_port.unwrap_or(port);
        config.node.gossip_addr = Some(format!("{host}:{announced}"));
        config.node.gossip_bind = Some(format!("{}:{port}", config.bind));
    } else if o.announce_port.is_some() {
        return Err("--announce-port needs --gossip-port".into());
    }
    config.node.cluster_secret = match (o.cluster_secret, &o.cluster_secret_file) {
        (Some(secret), _) => Some(secret),
        (None, Some(path)) => Some(Secret::from_file(path)?),
        (None, None) => None,
    }
    .filter(|s| !s.is_empty());
    let peers = o.peers.unwrap_or_default();
    if !peers.is_empty() && config.node.gossip_addr.is_none() {
        return Err("--peers needs --gossip-port (the port this node's peers reach it on)".into());
    }
    if let Some(seed) = o.join {
        if config.node.gossip_addr.is_none() {
            return Err(
                "--join needs --gossip-port (the port the members reach this node on)".into()
            );
        }
        config.node.join = Some(seed);
    }
    let level = o.consistency.unwrap_or_else(|| "eventual".into());
    let storage = parse_consistency(&level)?;
    let native_tls = o.native_tls.unwrap_or(false);
    let tls = match (o.tls_cert_file, o.tls_key_file) {
        (None, None) if o.tls_port.is_none() && !native_tls => None,
        (Some(cert_file), Some(key_file)) if o.tls_port.is_some() || native_tls => {
            Some(TlsConfig {
                port: o.tls_port.unwrap_or(0),
                cert_file,
                key_file,
                ca_cert_file: o.tls_ca_cert_file,
                auth_clients: o.tls_auth_clients.as_deref().unwrap_or("yes").parse()?,
            })
        }
        (Some(_), Some(_)) => {
            return Err("--tls-cert-file is used by --tls-port or --native-tls: give one".into());
        }
        _ => {
            return Err(
                "TLS (--tls-port, --native-tls) needs --tls-cert-file and --tls-key-file".into()
            );
        }
    };
    config.redis.tls = tls.clone().filter(|_| o.tls_port.is_some());
    let native_port = o.native_port.unwrap_or(native::DEFAULT_PORT);
    let mut native = FrontEndConfig {
        bind: config.bind.clone(),
        port: native_port,
        announce: o.announce_ip.as_ref().map(|ip| format!("{ip}:{native_port}")),
        tls: match &tls {
            Some(tls) if native_tls => Some(tls.server_config()?),
            _ => None,
        },
        ..FrontEndConfig::default()
    };
    for peer in peers {
        let bad =
            || format!("bad peer {peer:?} (expected host:gossip-port[/threads[/native-port]])");
        let mut parts = peer.split('/');
        let addr = parts.next().unwrap_or_default().to_owned();
        let threads = match parts.next() {
            Some(t) => t.parse().map_err(|_| bad())?,
            None => 0,
        };
        if let Some(port) = parts.next() {
            let port: u16 = port.parse().map_err(|_| bad())?;
            let host = addr.rsplit_once(':').map(|(h, _)| h).ok_or_else(bad)?;
            native.peer_client_addrs.push((addr.clone(), format!("{host}:{port}")));
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        config.node.peers.push(PeerSpec { gossip_addr: addr, threads });
    }
    // What the failure detector announces of this node besides its gossip address.
    let announced_host = o.announce_ip.clone().unwrap_or_else(|| config.bind.clone());
    let client_addr = |port: u16| {
        (port != 0 && !anna_kvs::auth::is_unspecified(&announced_host))
            .then(|| format!("{announced_host}:{port}"))
    };
    config.node.membership.native_addr = client_addr(native_port);
    config.node.membership.redis_addr = client_addr(config.redis.port);
    if let Some(ms) = o.probe_period_ms {
        if !(10..=60_000).contains(&ms) {
            return Err(format!("--probe-period-ms {ms}: give 10 to 60000"));
        }
        config.node.membership.probe_period = Duration::from_millis(ms);
        config.node.membership.probe_rtt = Duration::from_millis(ms / 2);
        config.node.membership.announce_period = Duration::from_millis(ms * 2);
    }
    if let Some(secs) = o.remove_down_after_secs {
        if !(0.0..=86_400.0 * 365.0).contains(&secs) {
            return Err(format!("--remove-down-after-secs {secs}: give 0 (never) or more"));
        }
        config.node.membership.remove_down_after =
            (secs > 0.0).then(|| Duration::from_secs_f64(secs));
    }
    if let Some(ms) = o.suspect_timeout_ms {
        if !(10..=3_600_000).contains(&ms) {
            return Err(format!("--suspect-timeout-ms {ms}: give 10 to 3600000"));
        }
        config.node.membership.suspect_timeout = Some(Duration::from_millis(ms));
    }
    if o.leave_on_terminate == Some(true) {
        if native_port == 0 {
            return Err("--leave-on-terminate needs the native port (--native-port not 0)".into());
        }
        if config.node.gossip_addr.is_none() {
            return Err("--leave-on-terminate needs a cluster (--gossip-port)".into());
        }
        if let Some(why) = config.node.replication.membership_changes_refused() {
            return Err(format!("--leave-on-terminate: {why}"));
        }
        native.leave_signal = Some(Arc::new(AtomicUsize::new(0)));
    }
    config.native = (native_port != 0).then_some(native);
    if let Some(max) = o.maxclients {
        config.redis.maxclients = max;
    }
    if let Some(secs) = o.timeout {
        config.redis.idle_timeout = (secs > 0).then(|| Duration::from_secs(secs));
    }
    if let Some(max) = o.max_key_bytes {
        config.node.max_key_bytes = max;
    }
    if let Some(max) = o.max_value_bytes {
        config.node.max_value_bytes = max;
    }
    if let Some(max) = &o.maxmemory {
        config.node.maxmemory = parse_memory(max)?;
    }
    if let Some(max) = &o.maxmemory_clients {
        config.redis.maxmemory_clients = parse_memory(max)?;
    }
    if let Some(limit) = &o.client_output_buffer_limit {
        config.redis.output_limit = anna_kvs::redis::config::OutputLimit::parse(limit)?;
    }
    if let Some(policy) = o.maxmemory_policy.as_deref()
        && !policy.eq_ignore_ascii_case("noeviction")
    {
        return Err(format!(
            "maxmemory-policy {policy:?}: only noeviction is offered (a replica evicting a key on its own would bring it back from its peers' gossip, or drop writes they have not seen)"
        ));
    }
    config.node.pin_threads = o.pin.unwrap_or(false);
    let dir = o.dir.unwrap_or_else(|| "anna-data".into());
    config.node.persistence = Persistence {
        dir: (!dir.is_empty()).then(|| PathBuf::from(dir)),
        appendonly: yes_no("appendonly", o.appendonly.as_deref(), true)?,
        fsync: o.appendfsync.as_deref().map_or(Ok(Fsync::EverySec), str::parse)?,
        load_corrupt: yes_no("aof-load-corrupt", o.aof_load_corrupt.as_deref(), false)?,
    };
    if config.node.threads == 0 {
        config.node.threads = core_affinity::get_core_ids().map_or(1, |c| c.len().max(1));
    }
    for peer in &mut config.node.peers {
        if peer.threads == 0 {
            peer.threads = config.node.threads as u16;
        }
    }
    if let Some(secs) = o.repair_interval_secs {
        if !(0.0..=86_400.0).contains(&secs) {
            return Err(format!("--repair-interval-secs {secs}: give 0 (off) to 86400"));
        }
        config.node.actor.repair_interval_us = (secs * 1e6) as u64;
    }
    if let Some(size) = &o.repair_bytes_per_round {
        let bytes = anna_kvs::memory::parse_size(size)
            .ok_or_else(|| format!("--repair-bytes-per-round {size:?} is not a size"))?;
        if bytes < 4096 {
            return Err(format!("--repair-bytes-per-round {size}: give at least 4096 bytes"));
        }
        config.node.actor.repair_bytes_per_round = usize::try_from(bytes).unwrap_or(usize::MAX);
    }
    if let Some(keys) = o.max_unacked_keys_per_peer {
        config.node.actor.max_unacked_keys_per_peer = keys.max(1);
    }
    let catch_up = o.catch_up_timeout_secs.unwrap_or(30.0);
    if !(0.0..=86_400.0).contains(&catch_up) {
        return Err(format!("--catch-up-timeout-secs {catch_up}: give 0 (off) to 86400"));
    }
    // A node of a cluster cannot tell a first start from a restart with a lost directory:
    // it always catches up (on a fresh cluster the first round finds every range equal).
    config.node.actor.catch_up =
        (!config.node.peers.is_empty() || config.node.join.is_some()) && catch_up > 0.0;
    config.node.actor.catch_up_timeout_us = (catch_up * 1e6) as u64;
    let log =
        o.log_level.unwrap_or_else(|| std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()));
    Ok(Built { config, log, storage })
}

fn main() {
    let Built { config, log, storage } = match build(Options::parse()) {
        Ok(built) => built,
        Err(message) => {
            eprintln!("anna-server: {message}");
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&log).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let stop = Arc::new(AtomicBool::new(false));
    // With --leave-on-terminate, SIGTERM counts on the native front end's leave signal
    // instead (signals that arrive together may count once, as POSIX signals do).
    let leave = config.native.as_ref().and_then(|native| native.leave_signal.clone());
    let mut signals = vec![signal_hook::consts::SIGINT];
    match leave {
        Some(count) => {
            let watched = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM])
                .and_then(|mut terms| {
                    std::thread::Builder::new().name("anna-sigterm".into()).spawn(move || {
                        for _ in terms.forever() {
                            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    })
                });
            if let Err(error) = watched {
                eprintln!("anna-server: cannot watch for SIGTERM: {error}");
                std::process::exit(1);
            }
        }
        None => signals.push(signal_hook::consts::SIGTERM),
    }
    for signal in signals {
        if let Err(error) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            tracing::warn!(%error, signal, "cannot install signal handler");
        }
    }
    tracing::info!(
        bind = %config.bind,
        port = config.redis.port,
        native_port = config.native.as_ref().map(|n| n.port),
        storage = ?storage,
        threads = config.node.threads,
        epoch_ms = config.node.epoch.as_millis() as u64,
        replication = ?config.node.replication,
        gossip = ?config.node.gossip_addr,
        "starting anna-server"
    );
    let fail = |error: &dyn std::fmt::Display| -> ! {
        tracing::error!(%error, "anna-server cannot start");
        eprintln!("anna-server: {error}");
        std::process::exit(1);
    };
    if storage == Storage::Redis {
        match Server::bind(config, stop) {
            Ok(server) => server.run(),
            Err(error) => fail(&error),
        }
        return;
    }
    // The other levels store lattices the Redis commands cannot express: native protocol only.
    let Some(mut front_end) = config.native else {
        fail(
            &"this consistency level is served by the native protocol: --native-port must not be 0",
        )
    };
    front_end.bind = config.bind.clone();
    front_end.password = config.requirepass.clone();
    tracing::info!("{storage:?} consistency: the Redis port is not served (native protocol only)");
    let result = match storage {
        Storage::Causal => native::serve::<Causal>(config.node, &front_end, stop),
        _ => native::serve::<Transactional>(config.node, &front_end, stop),
    };
    if let Err(error) = result {
        fail(&error);
    }
    tracing::info!("anna-server stopped");
}

/// A memory size as Redis writes it: `1000`, `1k` (1000), `1kb` (1024), `5m`, `5mb`, `2g`,
/// `2gb`, case-insensitive.
fn parse_memory(text: &str) -> Result<u64, String> {
    anna_kvs::memory::parse_size(text).ok_or_else(|| format!("maxmemory {text:?} is not a size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_read_as_redis_reads_them() {
        assert_eq!(parse_memory("100mb"), Ok(100 << 20));
        assert_eq!(parse_memory("1K"), Ok(1000));
        assert_eq!(parse_memory("2gb"), Ok(2 << 30));
        assert_eq!(parse_memory("12345"), Ok(12345));
        assert!(parse_memory("12tb").is_err());
        assert!(parse_memory("lots").is_err());
    }

    fn resolve(args: &[&str]) -> Result<Options, String> {
        let parsed =
            Options::try_parse_from(std::iter::once("anna-server").chain(args.iter().copied()))
                .map_err(|e| e.to_string())?;
        parsed.resolve()
    }

    fn file(name: &str, text: &str) -> String {
        let path = std::env::temp_dir().join(format!("anna-options-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    #[test]
    fn the_command_line_wins_over_the_file_option_by_option() {
        let path = file("wins.toml", "port = 1\nmaxclients = 2\npin = true\npeers = [\"a:1\"]\n");
        let o = resolve(&["--config", &path, "--port", "3", "--no-pin"]).unwrap();
        assert_eq!((o.port, o.maxclients, o.pin), (Some(3), Some(2), Some(false)));
        assert_eq!(o.peers, Some(vec!["a:1".to_owned()]));
        let o = resolve(&["--config", &path, "--peers", "b:2,c:3"]).unwrap();
        assert_eq!(o.peers, Some(vec!["b:2".to_owned(), "c:3".to_owned()]));
        assert_eq!(o.pin, Some(true));
        let old_name = file("old.toml", "pin-threads = true\n");
        assert_eq!(resolve(&["--config", &old_name]).unwrap().pin, Some(true));
    }

    #[test]
    fn the_last_of_pin_and_no_pin_wins() {
        assert_eq!(resolve(&["--pin", "--no-pin"]).unwrap().pin, Some(false));
        assert_eq!(resolve(&["--no-pin", "--pin"]).unwrap().pin, Some(true));
        assert_eq!(resolve(&["--pin", "false", "--port", "7"]).unwrap().pin, Some(false));
        assert_eq!(resolve(&["--pin", "--port", "7"]).unwrap().port, Some(7));
        assert!(resolve(&["--pin", "yes"]).is_err());
    }

    #[test]
    fn the_data_directory_defaults_to_anna_data_and_an_empty_one_means_memory_only() {
        let built = build(resolve(&[]).unwrap()).unwrap();
        let persistence = built.config.node.persistence;
        assert_eq!(persistence.dir, Some(PathBuf::from("anna-data")));
        assert!(persistence.appendonly);
        assert_eq!(persistence.fsync, Fsync::EverySec);
        let built = build(resolve(&["--dir", "", "--appendfsync", "always"]).unwrap()).unwrap();
        assert_eq!(built.config.node.persistence.dir, None);
        assert_eq!(built.config.node.persistence.fsync, Fsync::Always);
        assert!(build(resolve(&["--appendonly", "maybe"]).unwrap()).is_err());
        assert!(build(resolve(&["--appendfsync", "sometimes"]).unwrap()).is_err());
    }

    #[test]
    fn leave_on_terminate_needs_a_cluster_and_the_native_port() {
        let signal = |args: &[&str]| {
            build(resolve(args).unwrap()).map(|b| b.config.native.and_then(|n| n.leave_signal))
        };
        assert!(signal(&[]).unwrap().is_none());
        assert!(signal(&["--gossip-port", "7000"]).unwrap().is_none());
        let leave = signal(&["--gossip-port", "7000", "--leave-on-terminate"]).unwrap();
        assert!(leave.is_some_and(|count| count.load(std::sync::atomic::Ordering::SeqCst) == 0));
        let error = signal(&["--leave-on-terminate"]).unwrap_err();
        assert!(error.contains("--gossip-port"), "{error}");
        let error =
            signal(&["--gossip-port", "7000", "--native-port", "0", "--leave-on-terminate"])
                .unwrap_err();
        assert!(error.contains("native port"), "{error}");
        let one_copy = ["--gossip-port", "7000", "--replication", "1:1", "--leave-on-terminate"];
        let error = signal(&one_copy).unwrap_err();
        assert!(error.contains("--leave-on-terminate"), "{error}");
        let path = file("leave.toml", "leave-on-terminate = true\ngossip-port = 7000\n");
        assert!(signal(&["--config", &path]).unwrap().is_some());
        assert!(signal(&["--config", &path, "--leave-on-terminate", "false"]).unwrap().is_none());
    }

    #[test]
    fn sizes_beyond_toml_integers_survive_the_merge() {
        let path = file("sizes.toml", "port = 1\n");
        let max = u64::MAX.to_string();
        let o = resolve(&["--config", &path, "--max-value-bytes", &max]).unwrap();
        assert_eq!(o.max_value_bytes, Some(usize::MAX));
    }
}
