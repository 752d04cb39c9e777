//! `anna-server`'s Redis front end: a TCP listener, and a command table that turns RESP
//! commands into engine requests, served by the actors themselves.
//!
//! The listener hands each new connection to an actor in turn; the actor polls its
//! connections together with its mailbox (a [`Service`] of the node). Each round it reads
//! whatever its ready clients have sent, parses every complete command (pipelining), plans each
//! one (connection commands such as AUTH or HELLO are answered at once; data commands become
//! engine requests), answers the requests for keys it owns on the spot, sends the others to
//! their owner actors in one message per actor, and writes all replies in order once the
//! answers are in. Every key has one owner actor per node (the default replication), so every
//! connection reads every other connection's writes at once. There is no hand-off thread
//! between a socket and the store: a command for an owned key costs no cross-thread message.
//!
//! Sockets are non-blocking, so a slow or hostile client never blocks an actor: a client that
//! does not read its replies is dropped after `write_timeout` or `MAX_PENDING_OUTPUT`, the query
//! buffer and the argument sizes are bounded (tighter before AUTH), and the number of
//! connections is capped.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::inline_bytes::INLINE_CAPACITY;
use super::resp::{Limits, ParseError, Reply, parse_command};
use super::value::{RedisOp, RedisOpOutput, RedisValue};
use crate::message::{Request, RequestError, Response};
use crate::native::{FrontEnd, FrontEndConfig};
use crate::node::{Node, NodeConfig, NodeError, NodeHandle, Readiness, Registry, Service};
use crate::ring::Factor;

/// How to run the Redis front end.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on (default `127.0.0.1`).
    pub bind: String,
    /// Redis-protocol port (default 6379; 0 picks a free one).
    pub port: u16,
    /// Password clients must give with AUTH; required for non-loopback addresses.
    pub requirepass: Option<String>,
    /// Most simultaneous clients.
    pub maxclients: usize,
    /// Close a client idle this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// A client that does not read its replies for this long is disconnected.
    pub write_timeout: Duration,
    /// Most commands handled per pipelined batch (bounds the reply buffer).
    pub max_batch: usize,
    /// The engine node.
    pub node: NodeConfig,
    /// The native-protocol client port on the same node (`anna-server` turns it on at port
    /// 6450; off by default when embedding). Its password is `requirepass`.
    pub native: Option<FrontEndConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".into(),
            port: 6379,
            requirepass: None,
            maxclients: 10_000,
            idle_timeout: None,
            write_timeout: Duration::from_secs(10),
            max_batch: 1024,
            // Every node holds every key, on one actor: within a node all connections then read
            // and write the same replica of a key (no cross-connection staleness), and a cluster
            // keeps a copy per node. Hot keys can be spread further with replication overrides.
            node: NodeConfig {
                replication: crate::ring::Replication::new(Factor::Full, Factor::Count(1)),
                ..NodeConfig::default()
            },
            native: None,
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

/// Counters shown by INFO.
#[derive(Debug, Default)]
struct Counters {
    connections_received: AtomicU64,
    connected: AtomicUsize,
    rejected: AtomicU64,
    commands: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    protocol_errors: AtomicU64,
}

impl Counters {
    /// Adds this thread-local tally of the hot counters to `shared` and resets it: the
    /// per-command counters are kept per actor and published once per round, so threads
    /// do not bounce a shared cache line on every command.
    fn flush_into(&self, shared: &Counters) {
        for (local, global) in [
            (&self.commands, &shared.commands),
            (&self.hits, &shared.hits),
            (&self.misses, &shared.misses),
        ] {
            let n = local.swap(0, Ordering::Relaxed);
            if n > 0 {
                global.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

struct Shared {
    config: ServerConfig,
    /// For INFO and DBSIZE (the node's reports and topology).
    node: NodeHandle<RedisValue>,
    counters: Counters,
    started: Instant,
    port: u16,
    stop: Arc<AtomicBool>,
    next_client_id: AtomicU64,
}

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    node: Node<RedisValue>,
    /// New connections for each actor's service.
    inboxes: Vec<crossbeam_channel::Sender<TcpStream>>,
    native: Option<FrontEnd<RedisValue>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("port", &self.port).finish()
    }
}

/// Whether `bind` only accepts connections from this machine.
pub(crate) fn is_loopback(bind: &str) -> bool {
    bind == "localhost" || bind.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Compares two secrets in time that depends only on their lengths, not on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

impl Server {
    /// Checks the configuration, starts the engine and binds the listener.
    ///
    /// # Errors
    /// A public address without a password, a port in use, an engine that cannot start.
    pub fn bind(config: ServerConfig, stop: Arc<AtomicBool>) -> Result<Self, ServerError> {
        if !is_loopback(&config.bind) && config.requirepass.as_deref().is_none_or(str::is_empty) {
            return Err(ServerError::PublicWithoutPassword(config.bind.clone()));
        }
        let addr = format!("{}:{}", config.bind, config.port);
        let listener = TcpListener::bind(&addr)
            .map_err(|source| ServerError::Bind { addr: addr.clone(), source })?;
        listener.set_nonblocking(true).map_err(|source| ServerError::Bind { addr, source })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(config.port);
        let mut inboxes = Vec::new();
        let mut server_shared = None;
        let node = Node::start_with(config.node.clone(), |actors, handle| {
            let shared = Arc::new(Shared {
                config: config.clone(),
                node: handle,
                counters: Counters::default(),
                started: Instant::now(),
                port,
                stop: Arc::clone(&stop),
                next_client_id: AtomicU64::new(1),
            });
            server_shared = Some(Arc::clone(&shared));
            (0..actors)
                .map(|_| {
                    let (tx, rx) = crossbeam_channel::unbounded();
                    inboxes.push(tx);
                    Box::new(Connections::new(Arc::clone(&shared), rx))
                        as Box<dyn Service<RedisValue>>
                })
                .collect()
        })?;
        let shared = server_shared.expect("the node asked for its services");
        let native = match &config.native {
            Some(native) => {
                let native = FrontEndConfig {
                    bind: config.bind.clone(),
                    password: config.requirepass.clone(),
                    ..native.clone()
                };
                Some(FrontEnd::bind(&native, node.handle(), Arc::clone(&stop))?)
            }
            None => None,
        };
        Ok(Self { native, listener, shared, node, inboxes })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// Where native-protocol clients connect, `host:port`, if that port is on.
    pub fn native_addr(&self) -> Option<&str> {
        self.native.as_ref().map(FrontEnd::local_addr)
    }

    /// Serves clients until the stop flag is set, then closes every connection, joins every
    /// thread and shuts the engine down.
    pub fn run(self) {
        let Self { listener, shared, node, inboxes, native } = self;
        let native = native.and_then(|front_end| match front_end.spawn() {
            Ok(thread) => Some(thread),
            Err(error) => {
                tracing::warn!(%error, "cannot spawn the native-protocol thread");
                None
            }
        });
        tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), actors = inboxes.len(), "anna-server ready to accept connections");
        let mut next = 0_usize;
        while !shared.stop.load(Ordering::Relaxed) && !inboxes.is_empty() {
            // Wait for a connection (or a stop within 100 ms), without spinning.
            let mut items = [zmq::PollItem::from_fd(listener.as_raw_fd(), zmq::POLLIN)];
            if zmq::poll(&mut items, 100).is_err() || !items[0].is_readable() {
                continue;
            }
            loop {
                match listener.accept() {
                    Ok((mut stream, _peer)) => {
                        let counters = &shared.counters;
                        counters.connections_received.fetch_add(1, Ordering::Relaxed);
                        if counters.connected.load(Ordering::Relaxed) >= shared.config.maxclients {
                            counters.rejected.fetch_add(1, Ordering::Relaxed);
                            let _ = stream.write_all(b"-ERR max number of clients reached\r\n");
                            continue;
                        }
                        counters.connected.fetch_add(1, Ordering::Relaxed);
                        next = (next + 1) % inboxes.len();
                        if inboxes[next].send(stream).is_ok() {
                            shared.node.wake(next);
                        } else {
                            counters.connected.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == ErrorKind::Interrupted => {}
                    Err(error) => {
                        // Out of descriptors, say: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        std::thread::sleep(Duration::from_millis(20));
                        break;
                    }
                }
            }
        }
        tracing::info!("shutting down: closing connections");
        drop(listener);
        drop(inboxes);
        if let Some(handle) = native {
            let _ = handle.join();
        }
        // Stopping the actors drops their services, which closes every connection.
        node.shutdown();
        tracing::info!("anna-server stopped");
    }
}

/// Most reply bytes buffered for a client that does not read them; beyond it, it is dropped.
const MAX_PENDING_OUTPUT: usize = 64 << 20;

/// One actor's client connections: the [`Service`] that actor runs between its own messages.
///
/// A connection takes part in at most one round at a time: while its round waits for another
/// actor's answers, it is neither read nor parsed, so its replies keep the order of its
/// commands; other connections go on meanwhile.
struct Connections {
    shared: Arc<Shared>,
    incoming: crossbeam_channel::Receiver<TcpStream>,
    /// Connections by slot, which is also their token in the actor's `epoll` set (a closed
    /// connection frees its slot).
    slots: Vec<Option<Connection>>,
    free: Vec<usize>,
    /// This actor's tally of the per-command counters (see [`Counters::flush_into`]).
    local: Counters,
    /// Read buffer.
    chunk: Vec<u8>,
    /// Some connection not in a round has complete commands left unparsed.
    more_buffered: bool,
}

impl Connections {
    fn new(shared: Arc<Shared>, incoming: crossbeam_channel::Receiver<TcpStream>) -> Self {
        Self {
            shared,
            incoming,
            slots: Vec::new(),
            free: Vec::new(),
            local: Counters::default(),
            chunk: vec![0_u8; 64 * 1024],
            more_buffered: false,
        }
    }

    fn adopt(&mut self, stream: TcpStream, registry: &Registry<'_>) {
        let slot = self.free.pop().unwrap_or(self.slots.len());
        if let Err(error) =
            stream.set_nonblocking(true).and_then(|()| registry.register(&stream, slot as u64))
        {
            tracing::warn!(%error, "cannot serve a new connection");
            self.shared.counters.connected.fetch_sub(1, Ordering::Relaxed);
            if slot < self.slots.len() {
                self.free.push(slot);
            }
            return;
        }
        let _ = stream.set_nodelay(true);
        // Registered before the first read: input arriving after it raises an event. A client
        // usually sends its first command right after connecting, so read now.
        let mut conn = Connection::new(Arc::clone(&self.shared), stream);
        conn.fill(&mut self.chunk);
        if slot == self.slots.len() {
            self.slots.push(Some(conn));
        } else {
            self.slots[slot] = Some(conn);
        }
    }

    /// Closes the connection in `slot` if it is done (never one with a round in flight).
    fn sweep(&mut self, slot: usize) {
        if let Some(conn) = &self.slots[slot]
            && conn.round.is_none()
            && conn.finished()
        {
            self.slots[slot] = None;
            self.free.push(slot);
            self.shared.counters.connected.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Service<RedisValue> for Connections {
    fn has_work(&self) -> bool {
        self.more_buffered || !self.incoming.is_empty()
    }

    fn step(
        &mut self,
        round: u64,
        registry: &Registry<'_>,
        ready: &[Readiness],
        requests: &mut Vec<Request<RedisValue>>,
    ) {
        for event in ready {
            let Some(Some(conn)) = self.slots.get_mut(event.token as usize) else { continue };
            if event.writable {
                conn.flush();
            }
            conn.readable |= event.readable;
        }
        while let Ok(stream) = self.incoming.try_recv() {
            self.adopt(stream, registry);
        }
        // Read and plan every idle connection's complete commands; their engine requests make
        // one batch, queued in slot order (the order `complete` finds them in). Input of a
        // connection in a round, or with replies piling up, waits in the socket.
        self.more_buffered = false;
        for conn in self.slots.iter_mut().flatten() {
            if conn.round.is_some() || conn.dead || conn.out.len() > MAX_PENDING_OUTPUT / 2 {
                continue;
            }
            if conn.readable {
                conn.fill(&mut self.chunk);
            }
            self.more_buffered |= conn.plan_buffered(&self.local) || conn.unread();
            if conn.plans.is_empty() && conn.fatal.is_none() {
                continue;
            }
            for plan in &mut conn.plans {
                match plan {
                    Plan::Engine(reqs, count, _) => {
                        *count = reqs.len();
                        requests.append(reqs);
                    }
                    Plan::Single(request, _) => requests.extend(request.take()),
                    Plan::Now(_) => {}
                }
            }
            conn.round = Some(round);
        }
        // Idle, timed-out and stalled connections are closed here.
        for slot in 0..self.slots.len() {
            self.sweep(slot);
        }
    }

    fn complete(&mut self, round: u64, answers: Vec<Result<Response<RedisValue>, RequestError>>) {
        // The round's connections, in slot order: the order `step` queued their requests in (a
        // slot is not reused while its connection is in a round).
        let mut answers = answers.into_iter();
        for slot in 0..self.slots.len() {
            let Some(conn) = &mut self.slots[slot] else { continue };
            if conn.round != Some(round) {
                continue;
            }
            conn.finish_plans(&mut answers, &self.local);
            conn.round = None;
            conn.flush();
            self.more_buffered |= !conn.buf.is_empty() || conn.unread();
            self.sweep(slot);
        }
        self.local.flush_into(&self.shared.counters);
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        let open = self.slots.iter().flatten().count() + self.incoming.try_iter().count();
        self.shared.counters.connected.fetch_sub(open, Ordering::Relaxed);
    }
}

/// A running server on a background thread (for tests and embedding).
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where native-protocol clients connect, if that port is on.
    pub native_addr: Option<String>,
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
        let thread = std::thread::Builder::new()
            .name("anna-server".into())
            .spawn(move || server.run())
            .map_err(|source| ServerError::Bind { addr: addr.to_string(), source })?;
        Ok(Self { addr, native_addr, stop, thread: Some(thread) })
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

/// A command's plan: an answer now, or engine requests and how to turn their answers into one.
enum Plan {
    Now(Reply),
    /// Requests (moved into the round's batch, leaving their count), and how to answer.
    Engine(Vec<Request<RedisValue>>, usize, Finish),
    /// One request (moved into the round's batch) and a plain function to answer it: the
    /// plan of the hot commands (GET, SET) allocates nothing.
    Single(Option<Request<RedisValue>>, FinishOne),
}

type FinishOne = fn(Result<Response<RedisValue>, RequestError>, &Counters) -> Reply;

type Answers = Vec<Result<Response<RedisValue>, RequestError>>;
type Finish = Box<dyn FnOnce(Answers, &Counters) -> Reply + Send>;

struct Connection {
    shared: Arc<Shared>,
    stream: TcpStream,
    id: u64,
    authenticated: bool,
    resp3: bool,
    name: Option<Bytes>,
    quit: bool,
    /// Bytes read and not yet parsed.
    buf: BytesMut,
    /// Encoded replies not yet written.
    out: Vec<u8>,
    /// This round's commands, in order.
    plans: Vec<Plan>,
    /// A protocol error to send after this round's replies; the connection then closes.
    fatal: Option<String>,
    /// The peer closed, or the socket failed: drop without writing.
    dead: bool,
    /// The actor round this connection's planned commands wait on.
    round: Option<u64>,
    /// The socket may hold input not read yet (its events are edge-triggered).
    readable: bool,
    last_read: Instant,
    /// When output first got stuck (the client stopped reading).
    stalled_since: Option<Instant>,
}

impl Connection {
    fn new(shared: Arc<Shared>, stream: TcpStream) -> Self {
        let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
        let authenticated = shared.config.requirepass.is_none();
        Self {
            shared,
            stream,
            id,
            authenticated,
            resp3: false,
            name: None,
            quit: false,
            buf: BytesMut::with_capacity(16 * 1024),
            out: Vec::new(),
            plans: Vec::new(),
            fatal: None,
            dead: false,
            round: None,
            readable: false,
            last_read: Instant::now(),
            stalled_since: None,
        }
    }

    fn limits(&self) -> Limits {
        if self.authenticated {
            let node = &self.shared.config.node;
            Limits {
                max_args: 1024 * 1024,
                max_bulk: node.max_value_bytes.max(node.max_key_bytes),
                max_inline: 64 * 1024,
            }
        } else {
            Limits::UNAUTHENTICATED
        }
    }

    fn query_buffer_limit(&self) -> usize {
        let limits = self.limits();
        limits.max_bulk.saturating_mul(2).saturating_add(1 << 20)
    }

    /// Reads what the socket has (without blocking), up to the query buffer limit.
    fn fill(&mut self, chunk: &mut [u8]) {
        self.readable = true;
        loop {
            match self.stream.read(chunk) {
                Ok(0) => {
                    self.dead = true;
                    self.readable = false;
                    return;
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.last_read = Instant::now();
                    if n < chunk.len() {
                        // Drained: more input raises a new event.
                        self.readable = false;
                        return;
                    }
                    if self.buf.len() > self.query_buffer_limit() {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.readable = false;
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    self.readable = false;
                    return;
                }
            }
        }
    }

    /// Input left in the socket that this connection will still read.
    fn unread(&self) -> bool {
        self.readable && !self.quit && self.fatal.is_none() && !self.dead
    }

    /// Plans up to one batch of buffered commands; `true` if more complete commands may remain.
    fn plan_buffered(&mut self, counters: &Counters) -> bool {
        if self.quit || self.fatal.is_some() {
            return false;
        }
        while self.plans.len() < self.shared.config.max_batch && !self.quit {
            let limits = self.limits();
            match parse_command(&mut self.buf, &limits) {
                Ok(args) if args.is_empty() => {}
                Ok(args) => {
                    let plan = self.plan(args, counters);
                    self.plans.push(plan);
                }
                Err(ParseError::Incomplete) => {
                    if self.buf.len() > self.query_buffer_limit() {
                        self.fatal =
                            Some("ERR Protocol error: query buffer limit exceeded".to_owned());
                    }
                    return false;
                }
                Err(ParseError::Protocol(message)) => {
                    self.fatal = Some(format!("ERR Protocol error: {message}"));
                    return false;
                }
            }
        }
        !self.quit
    }

    /// Turns this round's plans and their engine answers into encoded replies.
    fn finish_plans(
        &mut self,
        answers: &mut impl Iterator<Item = Result<Response<RedisValue>, RequestError>>,
        counters: &Counters,
    ) {
        for plan in std::mem::take(&mut self.plans) {
            let reply = match plan {
                Plan::Now(reply) => reply,
                Plan::Engine(_, count, finish) => {
                    let mine: Answers = answers.by_ref().take(count).collect();
                    finish(mine, counters)
                }
                Plan::Single(_, finish) => {
                    finish(answers.next().unwrap_or(Err(RequestError::Timeout)), counters)
                }
            };
            reply.encode(&mut self.out, self.resp3);
        }
        if let Some(message) = &self.fatal {
            if !self.quit {
                self.shared.counters.protocol_errors.fetch_add(1, Ordering::Relaxed);
                Reply::Error(message.clone()).encode(&mut self.out, self.resp3);
            }
            self.quit = true;
        }
    }

    /// Writes as much pending output as the socket takes now.
    fn flush(&mut self) {
        while !self.out.is_empty() && !self.dead {
            match self.stream.write(&self.out) {
                Ok(0) => self.dead = true,
                Ok(n) => {
                    self.out.drain(..n);
                    self.stalled_since = None;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.stalled_since.get_or_insert_with(Instant::now);
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.dead = true,
            }
        }
    }

    /// `true` once the connection should be closed.
    fn finished(&self) -> bool {
        let config = &self.shared.config;
        self.dead
            || (self.quit && self.out.is_empty())
            || self.out.len() > MAX_PENDING_OUTPUT
            || self.stalled_since.is_some_and(|t| t.elapsed() > config.write_timeout)
            || config
                .idle_timeout
                .is_some_and(|limit| self.last_read.elapsed() > limit && self.out.is_empty())
    }

    fn plan(&mut self, args: Vec<Bytes>, counters: &Counters) -> Plan {
        counters.commands.fetch_add(1, Ordering::Relaxed);
        // The command name, lower-cased on the stack (every command name is short; a longer
        // or non-UTF-8 one is simply unknown).
        let mut lower = [0_u8; 32];
        let raw = &args[0];
        let name = if raw.len() <= lower.len() {
            let lower = &mut lower[..raw.len()];
            lower.copy_from_slice(raw);
            lower.make_ascii_lowercase();
            std::str::from_utf8(lower).unwrap_or("")
        } else {
            ""
        };
        let rest = &args[1..];
        if !self.authenticated && !matches!(name, "auth" | "hello" | "quit") {
            return Plan::Now(Reply::Error("NOAUTH Authentication required.".into()));
        }
        match plan_command(self, name, rest) {
            Some(plan) => plan,
            None => Plan::Now(Reply::Error(unknown_command(&args))),
        }
    }
}

fn unknown_command(args: &[Bytes]) -> String {
    let name = String::from_utf8_lossy(&args[0]);
    let shown: Vec<String> =
        args[1..].iter().take(8).map(|a| format!("'{}'", String::from_utf8_lossy(a))).collect();
    format!("ERR unknown command '{name}', with args beginning with: {}", shown.join(" "))
}

fn arity(name: &str) -> Reply {
    Reply::Error(format!("ERR wrong number of arguments for '{name}' command"))
}

fn engine_error(error: &RequestError) -> Reply {
    match error {
        RequestError::Op(message)
            if message.starts_with("WRONGTYPE") || message.starts_with("ERR") =>
        {
            Reply::Error(message.clone())
        }
        other => Reply::Error(format!("ERR {other}")),
    }
}

fn parse_i64(arg: &[u8]) -> Option<i64> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

fn get(key: &Bytes) -> Request<RedisValue> {
    Request::Get { key: key.clone() }
}

fn apply(key: &Bytes, op: RedisOp) -> Request<RedisValue> {
    Request::Apply { key: key.clone(), op }
}

/// A value the store will keep. Arguments are slices of the connection's read buffer; storing
/// a slice would keep that whole buffer alive for as long as the value lives (a few stored
/// bytes pinning kilobytes), so a long value gets an exact-size copy. A short one is passed as
/// the slice: the store copies it into its table entry
/// ([`InlineBytes`](super::inline_bytes::InlineBytes)).
fn owned(bytes: &Bytes) -> Bytes {
    if bytes.len() <= INLINE_CAPACITY { bytes.clone() } else { Bytes::copy_from_slice(bytes) }
}

/// Reads a GET-style answer.
fn read_value(
    answer: Result<Response<RedisValue>, RequestError>,
) -> Result<Option<RedisValue>, Reply> {
    match answer {
        Ok(Response::Value(value)) => Ok(value),
        Ok(_) => Err(Reply::Error("ERR unexpected engine answer".into())),
        Err(error) => Err(engine_error(&error)),
    }
}

fn applied(answer: Result<Response<RedisValue>, RequestError>) -> Reply {
    match answer {
        Ok(Response::Applied(RedisOpOutput::Ok)) => Reply::ok(),
        Ok(Response::Applied(RedisOpOutput::Int(n))) => Reply::Int(n),
        Ok(_) => Reply::Error("ERR unexpected engine answer".into()),
        Err(error) => engine_error(&error),
    }
}

fn engine(
    requests: Vec<Request<RedisValue>>,
    finish: impl FnOnce(Answers, &Counters) -> Reply + Send + 'static,
) -> Plan {
    let count = requests.len();
    Plan::Engine(requests, count, Box::new(finish))
}

fn check_sizes(conn: &Connection, key: &Bytes, value: Option<&Bytes>) -> Option<Reply> {
    let node = &conn.shared.config.node;
    if key.len() > node.max_key_bytes {
        return Some(Reply::Error(format!(
            "ERR key of {} bytes exceeds max-key-bytes {}",
            key.len(),
            node.max_key_bytes
        )));
    }
    if let Some(value) = value
        && value.len() > node.max_value_bytes
    {
        return Some(Reply::Error(format!(
            "ERR value of {} bytes exceeds max-value-bytes {}",
            value.len(),
            node.max_value_bytes
        )));
    }
    None
}

fn incr(conn: &Connection, name: &str, rest: &[Bytes], sign: i64, explicit: bool) -> Plan {
    let expected = if explicit { 2 } else { 1 };
    if rest.len() != expected {
        return Plan::Now(arity(name));
    }
    if let Some(error) = check_sizes(conn, &rest[0], None) {
        return Plan::Now(error);
    }
    let delta = if explicit {
        match parse_i64(&rest[1]).and_then(|d| d.checked_mul(sign)) {
            Some(d) => d,
            None => {
                return Plan::Now(Reply::Error(
                    "ERR value is not an integer or out of range".into(),
                ));
            }
        }
    } else {
        sign
    };
    engine(vec![apply(&rest[0], RedisOp::IncrBy(delta))], |mut a, _| applied(a.remove(0)))
}

#[allow(clippy::too_many_lines)]
fn plan_command(conn: &mut Connection, name: &str, rest: &[Bytes]) -> Option<Plan> {
    let plan = match name {
        "ping" => match rest.len() {
            0 => Plan::Now(Reply::Simple("PONG".into())),
            1 => Plan::Now(Reply::Bulk(rest[0].clone())),
            _ => Plan::Now(arity(name)),
        },
        "echo" if rest.len() == 1 => Plan::Now(Reply::Bulk(rest[0].clone())),
        "echo" => Plan::Now(arity(name)),
        "quit" => {
            conn.quit = true;
            Plan::Now(Reply::ok())
        }
        "auth" => Plan::Now(auth(conn, rest)),
        "hello" => Plan::Now(hello(conn, rest)),
        "select" => match rest {
            [db] if parse_i64(db) == Some(0) => Plan::Now(Reply::ok()),
            [_] => Plan::Now(Reply::Error("ERR DB index is out of range".into())),
            _ => Plan::Now(arity(name)),
        },
        "client" => Plan::Now(client(conn, rest)),
        "get" => {
            let [key] = rest else { return Some(Plan::Now(arity(name))) };
            if let Some(error) = check_sizes(conn, key, None) {
                return Some(Plan::Now(error));
            }
            Plan::Single(Some(get(key)), |answer, counters| match read_value(answer) {
                Ok(value) => match value.map(|v| v.get_string()).transpose() {
                    Ok(Some(Some(bytes))) => {
                        counters.hits.fetch_add(1, Ordering::Relaxed);
                        Reply::Bulk(bytes)
                    }
                    Ok(_) => {
                        counters.misses.fetch_add(1, Ordering::Relaxed);
                        Reply::Nil
                    }
                    Err(wrong) => Reply::Error(wrong.into()),
                },
                Err(reply) => reply,
            })
        }
        "set" => match rest {
            [key, value] => {
                if let Some(error) = check_sizes(conn, key, Some(value)) {
                    return Some(Plan::Now(error));
                }
                Plan::Single(Some(apply(key, RedisOp::Set(owned(value)))), |answer, _| {
                    applied(answer)
                })
            }
            [_, _, option, ..] => Plan::Now(Reply::Error(format!(
                "ERR SET option '{}' is not supported by anna-server (EX, PX, NX, XX, GET, KEEPTTL: no expiry or conditional writes in a coordination-free store); use plain SET key value",
                String::from_utf8_lossy(option)
            ))),
            _ => Plan::Now(arity(name)),
        },
        "mget" => {
            if rest.is_empty() {
                return Some(Plan::Now(arity(name)));
            }
            if let Some(error) = rest.iter().find_map(|k| check_sizes(conn, k, None)) {
                return Some(Plan::Now(error));
            }
            engine(rest.iter().map(get).collect(), |answers, _| {
                Reply::Array(
                    answers
                        .into_iter()
                        .map(|a| match read_value(a) {
                            Ok(Some(v)) => {
                                v.get_string().ok().flatten().map_or(Reply::Nil, Reply::Bulk)
                            }
                            _ => Reply::Nil,
                        })
                        .collect(),
                )
            })
        }
        "mset" => {
            if rest.is_empty() || !rest.len().is_multiple_of(2) {
                return Some(Plan::Now(arity(name)));
            }
            if let Some(error) =
                rest.chunks(2).find_map(|kv| check_sizes(conn, &kv[0], Some(&kv[1])))
            {
                return Some(Plan::Now(error));
            }
            engine(
                rest.chunks(2).map(|kv| apply(&kv[0], RedisOp::Set(owned(&kv[1])))).collect(),
                |answers, _| {
                    answers
                        .into_iter()
                        .map(applied)
                        .find(|r| matches!(r, Reply::Error(_)))
                        .unwrap_or_else(Reply::ok)
                },
            )
        }
        "del" | "unlink" => {
            if rest.is_empty() {
                return Some(Plan::Now(arity(name)));
            }
            let mut requests = Vec::new();
            for key in rest {
                requests.push(get(key));
                requests.push(Request::Delete { key: key.clone() });
            }
            engine(requests, |answers, _| {
                let mut existed = 0;
                for pair in answers.chunks(2) {
                    if let [Ok(Response::Value(Some(v))), _] = pair
                        && !crate::KvsValue::is_deleted(v)
                    {
                        existed += 1;
                    }
                }
                Reply::Int(existed)
            })
        }
        "exists" => {
            if rest.is_empty() {
                return Some(Plan::Now(arity(name)));
            }
            engine(rest.iter().map(get).collect(), |answers, _| {
                Reply::Int(
                    answers
                        .into_iter()
                        .filter(|a| matches!(a, Ok(Response::Value(Some(_)))))
                        .count() as i64,
                )
            })
        }
        "incr" => incr(conn, name, rest, 1, false),
        "decr" => incr(conn, name, rest, -1, false),
        "incrby" => incr(conn, name, rest, 1, true),
        "decrby" => incr(conn, name, rest, -1, true),
        "sadd" | "srem" => {
            if rest.len() < 2 {
                return Some(Plan::Now(arity(name)));
            }
            if let Some(error) = rest[1..].iter().find_map(|m| check_sizes(conn, &rest[0], Some(m)))
            {
                return Some(Plan::Now(error));
            }
            let op = if name == "sadd" {
                RedisOp::SAdd(rest[1..].iter().map(owned).collect())
            } else {
                RedisOp::SRem(rest[1..].to_vec())
            };
            engine(vec![apply(&rest[0], op)], |mut a, _| applied(a.remove(0)))
        }
        "smembers" | "scard" => {
            let [key] = rest else { return Some(Plan::Now(arity(name))) };
            let count_only = name == "scard";
            engine(vec![get(key)], move |mut a, _| match read_value(a.remove(0)) {
                Ok(value) => match value.map_or(Ok(Vec::new()), |v| v.members()) {
                    Ok(members) if count_only => Reply::Int(members.len() as i64),
                    Ok(members) => Reply::Set(members.into_iter().map(Reply::Bulk).collect()),
                    Err(wrong) => Reply::Error(wrong.into()),
                },
                Err(reply) => reply,
            })
        }
        "sismember" => {
            let [key, member] = rest else { return Some(Plan::Now(arity(name))) };
            let member = member.clone();
            engine(vec![get(key)], move |mut a, _| match read_value(a.remove(0)) {
                Ok(value) => match value.map_or(Ok(Vec::new()), |v| v.members()) {
                    Ok(members) => Reply::Int(i64::from(members.contains(&member))),
                    Err(wrong) => Reply::Error(wrong.into()),
                },
                Err(reply) => reply,
            })
        }
        "type" => {
            let [key] = rest else { return Some(Plan::Now(arity(name))) };
            engine(vec![get(key)], |mut a, _| match read_value(a.remove(0)) {
                Ok(Some(v)) => Reply::Simple(
                    match v.kind() {
                        Some(super::value::Kind::Set) => "set",
                        Some(_) => "string",
                        None => "none",
                    }
                    .into(),
                ),
                Ok(None) => Reply::Simple("none".into()),
                Err(reply) => reply,
            })
        }
        "dbsize" if rest.is_empty() => Plan::Now(Reply::Int(dbsize(&conn.shared) as i64)),
        "dbsize" => Plan::Now(arity(name)),
        "info" => Plan::Now(Reply::text(info(&conn.shared, rest.first()))),
        "config" => Plan::Now(config(conn, rest)),
        "command" => Plan::Now(command(rest)),
        _ => return None,
    };
    Some(plan)
}

fn auth(conn: &mut Connection, rest: &[Bytes]) -> Reply {
    let (user, password) = match rest {
        [password] => (None, password),
        [user, password] => (Some(user), password),
        _ => return arity("auth"),
    };
    let Some(expected) = &conn.shared.config.requirepass else {
        return Reply::Error(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?".into(),
        );
    };
    let user_ok = user.is_none_or(|u| constant_time_eq(u, b"default"));
    if user_ok && constant_time_eq(password, expected.as_bytes()) {
        conn.authenticated = true;
        Reply::ok()
    } else {
        Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
    }
}

fn hello(conn: &mut Connection, rest: &[Bytes]) -> Reply {
    let mut args = rest.iter();
    if let Some(version) = args.next() {
        match parse_i64(version) {
            Some(2) => conn.resp3 = false,
            Some(3) => conn.resp3 = true,
            _ => return Reply::Error("NOPROTO unsupported protocol version".into()),
        }
    }
    while let Some(option) = args.next() {
        match option.to_ascii_lowercase().as_slice() {
            b"auth" => {
                let (Some(user), Some(password)) = (args.next(), args.next()) else {
                    return Reply::Error("ERR Syntax error in HELLO option 'auth'".into());
                };
                if let Reply::Error(e) = auth(conn, &[user.clone(), password.clone()]) {
                    return Reply::Error(e);
                }
            }
            b"setname" => {
                let Some(name) = args.next() else {
                    return Reply::Error("ERR Syntax error in HELLO option 'setname'".into());
                };
                conn.name = Some(name.clone());
            }
            other => {
                return Reply::Error(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(other)
                ));
            }
        }
    }
    if !conn.authenticated {
        return Reply::Error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into());
    }
    Reply::Map(vec![
        (Reply::text("server"), Reply::text("anna")),
        (Reply::text("version"), Reply::text(env!("CARGO_PKG_VERSION"))),
        (Reply::text("proto"), Reply::Int(if conn.resp3 { 3 } else { 2 })),
        (Reply::text("id"), Reply::Int(conn.id as i64)),
        (Reply::text("mode"), Reply::text("standalone")),
        (Reply::text("role"), Reply::text("master")),
        (Reply::text("modules"), Reply::Array(Vec::new())),
    ])
}

fn client(conn: &mut Connection, rest: &[Bytes]) -> Reply {
    let Some(sub) = rest.first() else { return arity("client") };
    match sub.to_ascii_lowercase().as_slice() {
        b"setname" if rest.len() == 2 => {
            if rest[1].iter().any(|b| b.is_ascii_whitespace()) {
                return Reply::Error(
                    "ERR Client names cannot contain spaces, newlines or special characters."
                        .into(),
                );
            }
            conn.name = if rest[1].is_empty() { None } else { Some(rest[1].clone()) };
            Reply::ok()
        }
        b"getname" if rest.len() == 1 => conn.name.clone().map_or(Reply::Nil, Reply::Bulk),
        b"id" if rest.len() == 1 => Reply::Int(conn.id as i64),
        b"setinfo" if rest.len() == 3 => Reply::ok(),
        _ => Reply::Error(format!(
            "ERR unknown subcommand '{}'. Try CLIENT SETNAME, GETNAME, ID or SETINFO.",
            String::from_utf8_lossy(sub)
        )),
    }
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p.eq_ignore_ascii_case(t) => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

fn config(conn: &Connection, rest: &[Bytes]) -> Reply {
    let Some(sub) = rest.first() else { return arity("config") };
    if !sub.eq_ignore_ascii_case(b"get") || rest.len() < 2 {
        return Reply::Error(
            "ERR only CONFIG GET <pattern> is supported; anna-server is configured at start-up"
                .into(),
        );
    }
    let settings: Vec<(&str, String)> = vec![
        ("bind", conn.shared.config.bind.clone()),
        ("port", conn.shared.port.to_string()),
        ("maxclients", conn.shared.config.maxclients.to_string()),
        ("timeout", conn.shared.config.idle_timeout.map_or(0, |d| d.as_secs()).to_string()),
        ("databases", "1".into()),
        ("save", String::new()),
        ("appendonly", "no".into()),
        ("proto-max-bulk-len", conn.shared.config.node.max_value_bytes.to_string()),
        (
            "requirepass",
            if conn.shared.config.requirepass.is_some() { "(set)".into() } else { String::new() },
        ),
    ];
    let mut pairs = Vec::new();
    for pattern in &rest[1..] {
        for (name, value) in &settings {
            if glob(pattern, name.as_bytes())
                && !pairs.iter().any(|(n, _): &(Reply, Reply)| *n == Reply::text(*name))
            {
                pairs.push((Reply::text(*name), Reply::text(value.clone())));
            }
        }
    }
    Reply::Map(pairs)
}

const COMMANDS: &[(&str, i64)] = &[
    ("ping", -1),
    ("echo", 2),
    ("quit", 1),
    ("hello", -1),
    ("auth", -2),
    ("select", 2),
    ("get", 2),
    ("set", -3),
    ("mget", -2),
    ("mset", -3),
    ("del", -2),
    ("unlink", -2),
    ("exists", -2),
    ("incr", 2),
    ("decr", 2),
    ("incrby", 3),
    ("decrby", 3),
    ("sadd", -3),
    ("srem", -3),
    ("smembers", 2),
    ("sismember", 3),
    ("scard", 2),
    ("type", 2),
    ("dbsize", 1),
    ("info", -1),
    ("config", -2),
    ("command", -1),
    ("client", -2),
];

fn command(rest: &[Bytes]) -> Reply {
    let entry = |name: &str, arity: i64| {
        Reply::Array(vec![
            Reply::text(name),
            Reply::Int(arity),
            Reply::Set(Vec::new()),
            Reply::Int(i64::from(!matches!(
                name,
                "ping"
                    | "echo"
                    | "quit"
                    | "hello"
                    | "auth"
                    | "select"
                    | "dbsize"
                    | "info"
                    | "config"
                    | "command"
                    | "client"
                    | "mset"
            ))),
            Reply::Int(if matches!(name, "mget" | "del" | "unlink" | "exists") { -1 } else { 1 }),
            Reply::Int(1),
        ])
    };
    match rest.first().map(|s| s.to_ascii_lowercase()) {
        None => Reply::Array(COMMANDS.iter().map(|&(n, a)| entry(n, a)).collect()),
        Some(sub) if sub == b"count" => Reply::Int(COMMANDS.len() as i64),
        // redis-cli asks for documentation to show hints; it works without any.
        Some(sub) if sub == b"docs" => Reply::Map(Vec::new()),
        Some(sub) if sub == b"info" => Reply::Array(
            rest[1..]
                .iter()
                .map(|name| {
                    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                    COMMANDS
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map_or(Reply::Nil, |&(n, a)| entry(n, a))
                })
                .collect(),
        ),
        Some(sub) => {
            Reply::Error(format!("ERR unknown subcommand '{}'", String::from_utf8_lossy(&sub)))
        }
    }
}

fn dbsize(shared: &Shared) -> u64 {
    let reports = shared.node.reports();
    if shared.node.topology().is_full() {
        reports.iter().map(|r| r.stats.keys).max().unwrap_or(0)
    } else {
        reports.iter().map(|r| r.stats.keys).sum()
    }
}

fn info(shared: &Shared, section: Option<&Bytes>) -> String {
    let wanted = section.map(|s| String::from_utf8_lossy(s).to_ascii_lowercase());
    let show = |name: &str| {
        wanted
            .as_deref()
            .is_none_or(|w| w == name || w == "all" || w == "default" || w == "everything")
    };
    let reports = shared.node.reports();
    let topology = shared.node.topology();
    let counters = &shared.counters;
    let uptime = shared.started.elapsed().as_secs();
    let mut out = String::new();
    if show("server") {
        out.push_str(&format!(
            "# Server\r\nredis_version:7.0.0\r\nanna_version:{}\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nanna_actors:{}\r\nanna_epoch_ms:{}\r\nanna_consistency:eventual\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::process::id(),
            shared.port,
            uptime / 86_400,
            reports.len(),
            shared.config.node.epoch.as_millis(),
        ));
    }
    if show("clients") {
        out.push_str(&format!(
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n\r\n",
            counters.connected.load(Ordering::Relaxed),
            shared.config.maxclients
        ));
    }
    if show("stats") {
        let sum = |f: &dyn Fn(&crate::node::ActorReport) -> u64| reports.iter().map(f).sum::<u64>();
        out.push_str(&format!(
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\nprotocol_errors:{}\r\nanna_gets:{}\r\nanna_writes:{}\r\nanna_deletes:{}\r\nanna_forwarded:{}\r\nanna_gossip_batches_out:{}\r\nanna_gossip_entries_out:{}\r\nanna_gossip_batches_in:{}\r\nanna_merges:{}\r\nanna_reclaimed_keys:{}\r\nanna_request_ms:{}\r\nanna_gossip_ms:{}\r\nanna_idle_ms:{}\r\n\r\n",
            counters.connections_received.load(Ordering::Relaxed),
            counters.commands.load(Ordering::Relaxed),
            counters.rejected.load(Ordering::Relaxed),
            counters.hits.load(Ordering::Relaxed),
            counters.misses.load(Ordering::Relaxed),
            counters.protocol_errors.load(Ordering::Relaxed),
            sum(&|r| r.stats.gets),
            sum(&|r| r.stats.puts),
            sum(&|r| r.stats.deletes),
            sum(&|r| r.stats.forwarded),
            sum(&|r| r.stats.gossip_out),
            sum(&|r| r.stats.gossip_entries_out),
            sum(&|r| r.stats.gossip_in),
            sum(&|r| r.stats.merges),
            sum(&|r| r.stats.reclaimed),
            sum(&|r| r.request_ns) / 1_000_000,
            sum(&|r| r.gossip_ns) / 1_000_000,
            sum(&|r| r.idle_ns) / 1_000_000,
        ));
    }
    if show("replication") {
        let replication = topology.replication();
        out.push_str(&format!(
            "# Replication\r\nrole:master\r\nconnected_slaves:0\r\nanna_nodes:{}\r\nanna_replication_global:{:?}\r\nanna_replication_local:{:?}\r\n\r\n",
            topology.nodes().len(),
            replication.global,
            replication.local
        ));
    }
    if show("keyspace") {
        out.push_str("# Keyspace\r\n");
        let keys = dbsize(shared);
        if keys > 0 {
            out.push_str(&format!("db0:keys={keys},expires=0,avg_ttl=0\r\n"));
        }
    }
    out
}
