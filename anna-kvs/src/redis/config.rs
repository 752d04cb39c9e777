//! How the Redis port is configured ([`RedisConfig`]) and the settings its planners read
//! ([`Settings`]).

use std::time::{Duration, Instant};

use crate::node::NodeConfig;
use crate::tls::TlsConfig;

/// How to run the Redis port.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// Redis-protocol port (default 6379; 0 picks a free one).
    pub port: u16,
    /// Most simultaneous clients.
    pub maxclients: usize,
    /// Close a client idle this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// A client that does not read its replies for this long is disconnected.
    pub write_timeout: Duration,
    /// Most commands handled per pipelined batch (bounds the reply buffer).
    pub max_batch: usize,
    /// A TLS listener beside the plain one, serving the same commands and data.
    pub tls: Option<TlsConfig>,
    /// Redis's `maxmemory-clients`: once all clients' query and reply buffers together pass
    /// this many bytes, the client holding the most is closed (0: no limit, Redis's default).
    pub maxmemory_clients: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            port: 6379,
            maxclients: 10_000,
            idle_timeout: None,
            write_timeout: Duration::from_secs(10),
            max_batch: 1024,
            tls: None,
            maxmemory_clients: 0,
        }
    }
}

/// The server-wide settings planners read (fixed at start).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The address the Redis port listens on.
    pub bind: String,
    /// The password `AUTH` checks, if any.
    pub requirepass: Option<String>,
    /// The port's configuration (client limits and timeouts), with the ports as bound
    /// (never 0).
    pub redis: RedisConfig,
    /// The engine's configuration: size limits, epoch, replication.
    pub node: NodeConfig,
    /// When the server started (INFO's uptime).
    pub started: Instant,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".into(),
            requirepass: None,
            redis: RedisConfig::default(),
            node: NodeConfig::default(),
            started: Instant::now(),
        }
    }
}
