//! The composition point: one node with its client ports side by side — the Redis port
//! ([`crate::redis`], served by the actors themselves) and the native port
//! ([`crate::native`], its own thread). `anna-server` runs a [`Server`]; tests and embedders
//! run a [`RunningServer`] on a background thread.
//!
//! Start order: check the address policy ([`crate::auth`]), bind the Redis listener, start the
//! node with the Redis services on its actors, bind the native port on the node; then serve
//! until the stop flag is set, and stop in reverse.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::native::{FrontEnd, FrontEndConfig};
use crate::node::{Node, NodeConfig, NodeError};
use crate::redis::{RedisConfig, RedisFrontEnd, RedisValue};
use crate::ring::{Factor, Replication};

/// How to run a server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address every client port listens on (default `127.0.0.1`).
    pub bind: String,
    /// Password clients must give (Redis `AUTH`, and in every native message); required for
    /// a non-loopback address. An empty password counts as none, as Redis's `requirepass ""`.
    pub requirepass: Option<String>,
    /// The Redis port.
    pub redis: RedisConfig,
    /// The native-protocol port (`anna-server` turns it on at port 6450; off by default when
    /// embedding). Its `bind` and `password` are taken from this config.
    pub native: Option<FrontEndConfig>,
    /// The engine node.
    pub node: NodeConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".into(),
            requirepass: None,
            redis: RedisConfig::default(),
            native: None,
            // Every node holds every key, on one actor: within a node all connections then read
            // and write the same replica of a key (no cross-connection staleness), and a cluster
            // keeps a copy per node. Hot keys can be spread further with replication overrides.
            node: NodeConfig {
                replication: Replication::new(Factor::Full, Factor::Count(1)),
                ..NodeConfig::default()
            },
        }
    }
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Refused for safety.
    #[error("refusing to listen on {0} without --requirepass: set a password, or bind 127.0.0.1")]
    PublicWithoutPassword(String),
    /// The listener could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The engine did not start.
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// A bound, not yet serving server.
#[derive(Debug)]
pub struct Server {
    redis: RedisFrontEnd,
    native: Option<FrontEnd<RedisValue>>,
    node: Node<RedisValue>,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Checks the configuration, binds the ports and starts the node. Serving starts with
    /// [`Server::run`]; setting `stop` ends it.
    ///
    /// # Errors
    /// A public address without a password, a port in use, an engine that cannot start.
    pub fn bind(config: ServerConfig, stop: Arc<AtomicBool>) -> Result<Self, ServerError> {
        let password = config.requirepass.as_deref().filter(|p| !p.is_empty());
        if crate::auth::check_public_bind("Redis", &config.bind, password).is_err() {
            return Err(ServerError::PublicWithoutPassword(config.bind));
        }
        let mut redis = RedisFrontEnd::bind(&config.bind, password, config.redis.clone()).map_err(
            |source| ServerError::Bind {
                addr: format!("{}:{}", config.bind, config.redis.port),
                source,
            },
        )?;
        let node = Node::start_with(config.node, |actors, handle| redis.services(actors, handle))?;
        let native = match config.native {
            Some(native) => {
                let native = FrontEndConfig {
                    bind: config.bind.clone(),
                    password: password.map(str::to_owned),
                    ..native
                };
                Some(FrontEnd::bind(&native, node.handle(), Arc::clone(&stop))?)
            }
            None => None,
        };
        Ok(Self { redis, native, node, stop })
    }

    /// Where Redis clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.redis.local_addr()
    }

    /// Where native-protocol clients connect, `host:port`, if that port is on.
    pub fn native_addr(&self) -> Option<&str> {
        self.native.as_ref().map(FrontEnd::local_addr)
    }

    /// Where Redis clients connect with TLS, if that port is on.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.redis.tls_addr()
    }

    /// Serves clients until the stop flag is set, then closes every connection, joins every
    /// thread and shuts the engine down.
    pub fn run(self) {
        let Self { redis, native, node, stop } = self;
        let native = native.and_then(|front_end| {
            let signals = front_end.takes_leave_signals();
            match front_end.spawn() {
                Ok(thread) => Some(thread),
                Err(error) if signals => {
                    // Only that thread acts on SIGTERM here: without it nothing would stop us.
                    tracing::error!(%error, "cannot spawn the native-protocol thread, which takes SIGTERM: stopping");
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                    None
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot spawn the native-protocol thread");
                    None
                }
            }
        });
        redis.run(&stop);
        if let Some(handle) = native {
            let _ = handle.join();
        }
        // Stopping the actors drops their services, which closes every connection.
        node.shutdown();
        tracing::info!("anna-server stopped");
    }
}

/// A running server on a background thread (for tests and embedding).
#[derive(Debug)]
pub struct RunningServer {
    /// Where Redis clients connect.
    pub addr: SocketAddr,
    /// Where native-protocol clients connect, if that port is on.
    pub native_addr: Option<String>,
    /// Where Redis clients connect with TLS, if that port is on.
    pub tls_addr: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// Binds and starts a server on a background thread.
    ///
    /// # Errors
    /// As [`Server::bind`].
    pub fn start(config: ServerConfig) -> Result<Self, ServerError> {
        let stop = Arc::new(AtomicBool::new(false));
        let server = Server::bind(config, Arc::clone(&stop))?;
        let addr = server.local_addr();
        let native_addr = server.native_addr().map(str::to_owned);
        let tls_addr = server.tls_addr();
        let thread = std::thread::Builder::new()
            .name("anna-server".into())
            .spawn(move || server.run())
            .map_err(|source| ServerError::Bind { addr: addr.to_string(), source })?;
        Ok(Self { addr, native_addr, tls_addr, stop, thread: Some(thread) })
    }

    /// Stops it and waits until every thread has finished.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
