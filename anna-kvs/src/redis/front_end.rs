//! The Redis port as a whole: the listener, and the services it gives the node's actors.
//! [`crate::server`] composes it with the node and the native port.
//!
//! The listener hands each new connection to an actor in turn; the actor serves it from then
//! on, between its own messages (see [`super::connection`]).

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::clients::Clients;
use super::config::{RedisConfig, Settings};
use super::connection::{ClientMemory, Connections, Incoming, Shared};
use super::plan::Counters;
use super::value::RedisValue;
use crate::node::{NodeHandle, Service};

/// A bound Redis port: give its [`services`](Self::services) to the node's actors, then
/// [`run`](Self::run) its accept loop.
#[derive(Debug)]
pub struct RedisFrontEnd {
    listener: TcpListener,
    /// The TLS listener and its rustls configuration, if TLS is on.
    tls: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    /// What the services will share (the node's configuration is added when they are made).
    settings: Settings,
    /// New connections for each actor's service.
    inboxes: Vec<crossbeam_channel::Sender<Incoming>>,
    /// Set once the services exist.
    shared: Option<Arc<Shared>>,
}

impl RedisFrontEnd {
    /// Binds the port on `bind`, applying the public-address policy ([`crate::auth`]).
    ///
    /// # Errors
    /// A public address without a password (as [`ErrorKind::PermissionDenied`]), a port in
    /// use.
    pub fn bind(
        bind: &str,
        requirepass: Option<&str>,
        mut config: RedisConfig,
    ) -> std::io::Result<Self> {
        crate::auth::check_public_bind("Redis", bind, requirepass)
            .map_err(|message| std::io::Error::new(ErrorKind::PermissionDenied, message))?;
        let listener = TcpListener::bind((bind, config.port))?;
        listener.set_nonblocking(true)?;
        config.port = listener.local_addr()?.port();
        let tls = match &mut config.tls {
            Some(tls) => {
                let server_config = tls
                    .server_config()
                    .map_err(|message| std::io::Error::new(ErrorKind::InvalidInput, message))?;
                let listener = TcpListener::bind((bind, tls.port))?;
                listener.set_nonblocking(true)?;
                tls.port = listener.local_addr()?.port();
                Some((listener, server_config))
            }
            None => None,
        };
        let settings = Settings {
            bind: bind.to_owned(),
            requirepass: requirepass.filter(|p| !p.is_empty()).map(str::to_owned),
            redis: config,
            ..Settings::default()
        };
        Ok(Self { listener, tls, settings, inboxes: Vec::new(), shared: None })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// The address the TLS listener is bound to, if TLS is on.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(listener, _)| listener.local_addr().ok())
    }

    /// One service per actor (what [`Node::start_with`](crate::Node::start_with) asks for):
    /// each serves the connections handed to its actor.
    pub fn services(
        &mut self,
        actors: usize,
        node: NodeHandle<RedisValue>,
    ) -> Vec<Box<dyn Service<RedisValue>>> {
        // The node resolves `threads = 0` and the epoch: planners read what it runs with.
        let settings = Settings {
            node: node.config().clone(),
            started: Instant::now(),
            ..self.settings.clone()
        };
        let shared = Arc::new(Shared {
            tls: self.tls.as_ref().map(|(_, config)| Arc::clone(config)),
            clients: Clients::new(&settings),
            settings,
            node,
            counters: Counters::default(),
            next_client_id: AtomicU64::new(1),
            client_memory: (0..actors).map(|_| ClientMemory::default()).collect(),
        });
        self.shared = Some(Arc::clone(&shared));
        self.inboxes.clear();
        (0..actors)
            .map(|actor| {
                let (tx, rx) = crossbeam_channel::unbounded();
                self.inboxes.push(tx);
                Box::new(Connections::new(Arc::clone(&shared), rx, actor))
                    as Box<dyn Service<RedisValue>>
            })
            .collect()
    }

    /// Accepts connections and hands them to the actors in turn until `stop` is set. The
    /// connections themselves close when the node stops (its actors drop their services).
    pub fn run(self, stop: &AtomicBool) {
        let Self { listener, tls, inboxes, shared, .. } = self;
        let Some(shared) = shared else {
            tracing::warn!("the Redis port has no services: nothing to hand connections to");
            return;
        };
        let tls_listener = tls.map(|(listener, _)| listener);
        tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), tls = ?tls_listener.as_ref().and_then(|l| l.local_addr().ok()), actors = inboxes.len(), "anna-server ready to accept connections");
        let mut next = 0_usize;
        while !stop.load(Ordering::Relaxed) && !inboxes.is_empty() {
            // Wait for a connection on either port (or a stop within 100 ms), without spinning.
            let mut items = vec![zmq::PollItem::from_fd(listener.as_raw_fd(), zmq::POLLIN)];
            if let Some(tls) = &tls_listener {
                items.push(zmq::PollItem::from_fd(tls.as_raw_fd(), zmq::POLLIN));
            }
            if zmq::poll(&mut items, 100).is_err() {
                continue;
            }
            let ready: Vec<bool> = items.iter().map(zmq::PollItem::is_readable).collect();
            for (which, port) in std::iter::once(&listener).chain(tls_listener.as_ref()).enumerate()
            {
                if ready[which] {
                    accept_all(port, which == 1, &shared, &inboxes, &mut next);
                }
            }
        }
        tracing::info!("shutting down: closing connections");
    }
}

/// Accepts every connection waiting on `listener` and hands each to the next actor.
fn accept_all(
    listener: &TcpListener,
    tls: bool,
    shared: &Shared,
    inboxes: &[crossbeam_channel::Sender<Incoming>],
    next: &mut usize,
) {
    loop {
        match listener.accept() {
            Ok((mut stream, _peer)) => {
                let counters = &shared.counters;
                counters.connections_received.fetch_add(1, Ordering::Relaxed);
                let maxclients = shared.clients.tunables.maxclients.load(Ordering::Relaxed);
                if counters.connected.load(Ordering::Relaxed) >= maxclients {
                    counters.rejected.fetch_add(1, Ordering::Relaxed);
                    if !tls {
                        let _ = stream.write_all(b"-ERR max number of clients reached\r\n");
                    }
                    continue;
                }
                counters.connected.fetch_add(1, Ordering::Relaxed);
                *next = (*next + 1) % inboxes.len();
                if inboxes[*next].send(Incoming { stream, tls }).is_ok() {
                    shared.node.wake(*next);
                } else {
                    counters.connected.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => return,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => {
                // Out of descriptors, say: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                std::thread::sleep(Duration::from_millis(20));
                return;
            }
        }
    }
}
