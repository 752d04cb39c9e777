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
    /// Redis's `client-output-buffer-limit` for normal clients.
    pub output_limit: OutputLimit,
}

/// A client whose replies would pass this many bytes is dropped (the default hard output
/// limit; Redis's `client-output-buffer-limit`).
pub const MAX_PENDING_OUTPUT: usize = 64 << 20;

/// Redis's `client-output-buffer-limit normal <hard> <soft> <seconds>`: a client whose
/// unwritten replies would pass `hard` bytes is closed before the reply that would pass it is
/// built; one whose replies stay above `soft` bytes for `soft_for` is closed too. 0 turns a
/// limit off. Redis leaves normal clients unlimited; here the hard limit defaults to 64 MiB,
/// so a client that pipelines big reads and never reads the replies cannot hold gigabytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputLimit {
    /// Hard limit in bytes (0: none).
    pub hard: usize,
    /// Soft limit in bytes (0: none).
    pub soft: usize,
    /// How long a client may stay above the soft limit.
    pub soft_for: std::time::Duration,
}

impl Default for OutputLimit {
    fn default() -> Self {
        Self { hard: MAX_PENDING_OUTPUT, soft: 0, soft_for: Duration::ZERO }
    }
}

impl OutputLimit {
    /// Parses Redis's syntax, `[normal] <hard> <soft> <seconds>`, sizes as `64mb`, `1gb` or
    /// bytes.
    ///
    /// ```
    /// use anna_kvs::redis::config::OutputLimit;
    /// let limit = OutputLimit::parse("normal 64mb 16mb 10").unwrap();
    /// assert_eq!((limit.hard, limit.soft, limit.soft_for.as_secs()), (64 << 20, 16 << 20, 10));
    /// assert!(OutputLimit::parse("pubsub 32mb 8mb 60").is_err());
    /// ```
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut words: Vec<&str> = text.split_whitespace().collect();
        if words.first().is_some_and(|w| w.eq_ignore_ascii_case("normal")) {
            words.remove(0);
        } else if words.len() == 4 {
            return Err(format!(
                "client-output-buffer-limit {text:?}: only the normal class applies (anna has no replicas or pub/sub clients)"
            ));
        }
        let [hard, soft, seconds] = words[..] else {
            return Err(format!(
                "client-output-buffer-limit {text:?}: expected [normal] <hard> <soft> <seconds>"
            ));
        };
        let size = |word: &str| {
            crate::memory::parse_size(word)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| format!("client-output-buffer-limit: {word:?} is not a size"))
        };
        let seconds: u64 = seconds.parse().map_err(|_| {
            format!("client-output-buffer-limit: {seconds:?} is not a number of seconds")
        })?;
        Ok(Self { hard: size(hard)?, soft: size(soft)?, soft_for: Duration::from_secs(seconds) })
    }
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
            output_limit: OutputLimit::default(),
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
