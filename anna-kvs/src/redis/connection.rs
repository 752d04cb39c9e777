//! The only part of the Redis port that touches sockets: each actor's connections
//! (`Connections`, the node [`Service`] the actor runs) and one client's socket state
//! (`Connection`: fill, parse, flush, limits).
//!
//! A round reads whatever the ready clients have sent, parses every complete command
//! (pipelining), plans each through the [command table](super::table), hands the engine
//! requests to the actor, and writes every reply in order once the answers are in. Sockets
//! are non-blocking, so a slow or hostile client never blocks an actor: a client that does
//! not read its replies is dropped after `write_timeout` or [`MAX_PENDING_OUTPUT`], the query
//! buffer and the argument sizes are bounded (tighter before AUTH).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::clients::{ClientEntry, Clients, MonitorFeed, Published};
use super::config::Settings;
use super::plan::{Context, Counters, Plan, Waiting};
use super::resp::{Elements, Limits, ParseError, Reply, parse_command};
use super::session::Session;
use super::table;
use super::value::RedisValue;
use crate::message::{Request, RequestError, Response};
use crate::node::{NodeHandle, Readiness, Registry, Service};

/// What every actor's connections share.
/// A new connection, handed by the listener to an actor.
pub(super) struct Incoming {
    pub(super) stream: TcpStream,
    /// It came in on the TLS port.
    pub(super) tls: bool,
}

pub(super) struct Shared {
    /// The TLS port's rustls configuration, if TLS is on.
    pub(super) tls: Option<Arc<rustls::ServerConfig>>,
    /// What planners read (the bound port, password, engine limits).
    pub(super) settings: Settings,
    /// For INFO and DBSIZE (the node's reports and topology).
    pub(super) node: NodeHandle<RedisValue>,
    /// INFO's counters, server-wide.
    pub(super) counters: Counters,
    /// The next `CLIENT ID`.
    pub(super) next_client_id: AtomicU64,
    /// Each actor's clients' buffer bytes (`maxmemory-clients`).
    pub(super) client_memory: Vec<ClientMemory>,
    /// Every client of the node (CLIENT LIST, MONITOR, SLOWLOG, CONFIG SET).
    pub(super) clients: Clients,
}

/// What one actor's clients hold in query and reply buffers, as of its last look.
#[derive(Debug, Default)]
pub(super) struct ClientMemory {
    /// All of them together.
    total: AtomicU64,
    /// The biggest one.
    largest: AtomicU64,
}

/// How often an actor adds up its clients' buffers.
const CLIENT_MEMORY_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("port", &self.settings.redis.port).finish()
    }
}

/// The default hard output limit, defined with the rest of the configuration.
pub use super::config::MAX_PENDING_OUTPUT;

/// Output queued behind a connection's `out` buffer (see `Connection::spill`).
#[derive(Debug)]
enum Spilled {
    /// A big reply's body, sent from the buffer it was built in.
    Shared(Bytes),
    /// Replies encoded behind it, back to back.
    Owned(Vec<u8>),
}

impl Spilled {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Shared(bytes) => bytes,
            Self::Owned(bytes) => bytes,
        }
    }
}

/// A collection reply whose elements come encoded in a buffer at least this big goes out from
/// that buffer instead of being copied into the output.
const SPILL_MIN: usize = 64 << 10;

/// One actor's client connections: the [`Service`] that actor runs between its own messages.
///
/// A connection takes part in at most one round at a time: while its round waits for another
/// actor's answers, it is neither read nor parsed, so its replies keep the order of its
/// commands; other connections go on meanwhile.
pub(super) struct Connections {
    shared: Arc<Shared>,
    incoming: crossbeam_channel::Receiver<Incoming>,
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
    /// The node is stopping: no new commands are read; connections close once answered.
    draining: bool,
    /// This actor's index (its slot in `Shared::client_memory`).
    actor: usize,
    /// When the clients' buffers were last added up.
    measured_at: Instant,
    /// How many of its connections are monitors (0: nothing to deliver).
    monitors: usize,
}

impl Connections {
    pub(super) fn new(
        shared: Arc<Shared>,
        incoming: crossbeam_channel::Receiver<Incoming>,
        actor: usize,
    ) -> Self {
        Self {
            shared,
            incoming,
            slots: Vec::new(),
            free: Vec::new(),
            local: Counters::default(),
            chunk: vec![0_u8; 64 * 1024],
            more_buffered: false,
            draining: false,
            actor,
            measured_at: Instant::now(),
            monitors: 0,
        }
    }

    /// `maxmemory-clients`: adds up this actor's clients' buffers (every
    /// [`CLIENT_MEMORY_EVERY`]), publishes the sum and the biggest, and when every actor's
    /// clients together are over the limit, closes its biggest client if that is the biggest
    /// anywhere (as Redis evicts the client using the most memory first).
    fn enforce_soft_output_limit(&mut self) {
        let limit = self.shared.settings.redis.output_limit;
        if limit.soft == 0 {
            return;
        }
        for conn in self.slots.iter_mut().flatten() {
            if !conn.dead && conn.over_soft_since.is_some_and(|at| at.elapsed() > limit.soft_for) {
                tracing::warn!(
                    client = conn.session.id,
                    pending = conn.pending_output(),
                    soft_limit = limit.soft,
                    seconds = limit.soft_for.as_secs_f64(),
                    "closing a client whose replies stayed over the soft output buffer limit"
                );
                self.shared.counters.output_limit_closed.fetch_add(1, Ordering::Relaxed);
                conn.close_now();
            }
        }
    }

    fn limit_client_memory(&mut self) {
        let limit = self.shared.clients.tunables.maxmemory_clients.load(Ordering::Relaxed);
        if limit == 0 || self.measured_at.elapsed() < CLIENT_MEMORY_EVERY {
            return;
        }
        self.measured_at = Instant::now();
        let mut total = 0_u64;
        let mut largest: Option<(usize, u64)> = None;
        for (slot, conn) in self.slots.iter().enumerate() {
            let Some(conn) = conn else { continue };
            let bytes = conn.buffer_bytes();
            total += bytes;
            if largest.is_none_or(|(_, most)| bytes > most) {
                largest = Some((slot, bytes));
            }
        }
        let mine = &self.shared.client_memory[self.actor];
        mine.total.store(total, Ordering::Relaxed);
        mine.largest.store(largest.map_or(0, |(_, b)| b), Ordering::Relaxed);
        let all: u64 =
            self.shared.client_memory.iter().map(|m| m.total.load(Ordering::Relaxed)).sum();
        let biggest =
            self.shared.client_memory.iter().map(|m| m.largest.load(Ordering::Relaxed)).max();
        if all <= limit {
            return;
        }
        if let Some((slot, bytes)) = largest
            && bytes > 0
            && Some(bytes) >= biggest
            && let Some(Some(conn)) = self.slots.get_mut(slot)
            && !conn.dead
        {
            tracing::warn!(
                client = conn.session.id,
                bytes,
                all_clients = all,
                limit,
                "closing the client with the biggest buffers: all clients together are over maxmemory-clients"
            );
            self.shared.counters.evicted_clients.fetch_add(1, Ordering::Relaxed);
            conn.close_now();
            conn.buf = BytesMut::new();
            mine.total.store(total - bytes, Ordering::Relaxed);
            mine.largest.store(0, Ordering::Relaxed);
        }
    }

    fn adopt(&mut self, incoming: Incoming, registry: &Registry<'_>) {
        let Incoming { stream, tls } = incoming;
        let tls = match (tls, &self.shared.tls) {
            (false, _) => None,
            (true, Some(config)) => match rustls::ServerConnection::new(Arc::clone(config)) {
                Ok(connection) => Some(connection),
                Err(error) => {
                    tracing::warn!(%error, "cannot start a TLS session");
                    self.shared.counters.connected.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
            },
            (true, None) => unreachable!("TLS connections come only from the TLS listener"),
        };
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
        let mut conn = Connection::new(Arc::clone(&self.shared), stream, tls, self.actor);
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
            if self.slots[slot].as_ref().is_some_and(|c| c.monitor.is_some()) {
                self.monitors -= 1;
            }
            self.slots[slot] = None;
            self.free.push(slot);
            self.shared.counters.connected.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Service<RedisValue> for Connections {
    fn has_work(&self) -> bool {
        self.more_buffered
            || !self.incoming.is_empty()
            || (self.monitors > 0
                && self.slots.iter().flatten().any(|c| {
                    c.monitor.as_ref().is_some_and(|m| !m.lines.is_empty()) && c.output_has_room()
                }))
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
            conn.peer_closed |= event.closed;
        }
        if self.draining {
            // Answer what is in flight; read nothing new; close what is answered.
            for slot in 0..self.slots.len() {
                if let Some(conn) = &mut self.slots[slot]
                    && conn.round.is_none()
                {
                    conn.flush();
                    conn.dead |= !conn.output_pending();
                }
                self.sweep(slot);
            }
            self.more_buffered = false;
            return;
        }
        while let Ok(incoming) = self.incoming.try_recv() {
            self.adopt(incoming, registry);
        }
        // Read and plan every idle connection's complete commands; their engine requests make
        // one batch, queued in slot order (the order `complete` finds them in). Input of a
        // connection in a round, or with replies piling up, waits in the socket.
        self.more_buffered = false;
        let now = Instant::now();
        if self.monitors > 0 {
            for conn in self.slots.iter_mut().flatten() {
                conn.send_monitor_lines();
            }
        }
        for conn in self.slots.iter_mut().flatten() {
            let paused = !conn.output_has_room();
            // (A client killed is served nothing more: the flag is up before CLIENT KILL
            // answers, so no command it sends after that runs; the sweep below closes it.)
            if conn.round.is_some() || conn.dead || paused || conn.entry.killed() {
                continue;
            }
            if let Some((waiting, at)) = conn.blocked.take() {
                // Still watch the socket: a client that leaves while blocked is let go (its
                // input, if any, waits in the buffer until the command answers).
                if conn.readable {
                    conn.fill(&mut self.chunk);
                }
                // (A command that only waits for one more round, as a flush, still finishes
                // for a client that half-closed after pipelining it.)
                if conn.dead || (conn.eof && waiting.retry_after().is_none()) {
                    conn.dead = true;
                    continue;
                }
                if now < at {
                    conn.blocked = Some((waiting, at));
                    continue;
                }
                let mut plan = Plan::Wait(waiting, 0);
                plan.take_requests(requests);
                conn.plans.push(plan);
                conn.round = Some(round);
                conn.round_started = now;
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
                plan.take_requests(requests);
            }
            conn.round = Some(round);
            conn.round_started = now;
        }
        self.limit_client_memory();
        self.enforce_soft_output_limit();
        // Idle, timed-out and stalled connections are closed here.
        for slot in 0..self.slots.len() {
            self.sweep(slot);
        }
    }

    fn drain(&mut self) {
        self.draining = true;
        // Connections not yet adopted are closed unserved.
        let queued = self.incoming.try_iter().count();
        self.shared.counters.connected.fetch_sub(queued, Ordering::Relaxed);
    }

    fn drained(&self) -> bool {
        self.slots.iter().flatten().all(|conn| conn.round.is_none())
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
            if conn.monitor.is_none() && conn.session.monitor {
                conn.monitor = Some(self.shared.clients.start_monitor(&conn.entry));
                self.monitors += 1;
            }
            conn.flush();
            // A blocked connection reads nothing until it answers (it is polled on a timer);
            // one that only waits for the next round (a flush) is polled at once.
            // (A command that blocked stopped its batch: what was planned after it is looked
            // at again, which also lets a client that half-closed go once all is answered.)
            self.more_buffered |= conn.blocked.is_none()
                && (conn.more_commands || !conn.buf.is_empty() || conn.unread());
            self.more_buffered |=
                conn.blocked.as_ref().is_some_and(|(_, at)| *at <= Instant::now());
            self.sweep(slot);
        }
        self.local.flush_into(&self.shared.counters);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.clients.remove(self.session.id);
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        let open = self.slots.iter().flatten().count() + self.incoming.try_iter().count();
        self.shared.counters.connected.fetch_sub(open, Ordering::Relaxed);
    }
}

/// One client: its socket, buffers and protocol [`Session`].
struct Connection {
    shared: Arc<Shared>,
    stream: TcpStream,
    /// The TLS session of a connection on the TLS port: bytes from the socket go through it
    /// into `buf`, replies from `out` through it into the socket.
    tls: Option<rustls::ServerConnection>,
    /// Authenticated, RESP version, name, quit.
    session: Session,
    /// Bytes read and not yet parsed.
    buf: BytesMut,
    /// Encoded replies not yet written.
    out: Vec<u8>,
    /// Replies after `out`, in order, kept as the buffers they are: a big collection's
    /// elements go out from the buffer its actor encoded them into, never copied into `out`.
    /// Once it holds anything, later replies queue here too.
    spill: std::collections::VecDeque<Spilled>,
    /// Bytes in `spill`.
    spill_len: usize,
    /// Since when the unwritten replies are over the soft output limit.
    over_soft_since: Option<Instant>,
    /// This round's commands, in order.
    plans: Vec<Plan>,
    /// A protocol error to send after this round's replies; the connection then closes.
    fatal: Option<String>,
    /// The peer closed, or the socket failed: drop without writing.
    dead: bool,
    /// The peer closed its sending side (EOF, or TLS close_notify): what it sent is still
    /// answered, then the connection closes (as Redis answers a pipeline sent by `nc -q`).
    eof: bool,
    /// Complete commands may remain in `buf` beyond this round's batch.
    more_commands: bool,
    /// The actor round this connection's planned commands wait on.
    round: Option<u64>,
    /// A blocking command (`SAVE`, `WAIT`) not answered yet, and when to poll it next: the
    /// connection reads nothing more until it answers.
    blocked: Option<(Box<dyn Waiting>, Instant)>,
    /// The socket may hold input not read yet (its events are edge-triggered).
    readable: bool,
    /// The event loop saw the peer close its sending side (the EOF may be behind the input).
    peer_closed: bool,
    /// What the node's other clients may ask about this one (CLIENT LIST, KILL).
    entry: Arc<ClientEntry>,
    /// The lines `MONITOR` sends it, once it is a monitor.
    monitor: Option<MonitorFeed>,
    /// The arguments of this round's commands, kept for the slow log, each with when it was
    /// first sent if that was before this round (a command that blocked).
    round_args: Vec<(Vec<Bytes>, Option<Instant>)>,
    /// When its current round began.
    round_started: Instant,
    last_read: Instant,
    /// When output first got stuck (the client stopped reading).
    stalled_since: Option<Instant>,
}

impl Connection {
    fn new(
        shared: Arc<Shared>,
        stream: TcpStream,
        tls: Option<rustls::ServerConnection>,
        actor: usize,
    ) -> Self {
        let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
        let session = Session::new(id, shared.settings.requirepass.is_some());
        let addr =
            |a: std::io::Result<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        let entry = Arc::new(ClientEntry::new(
            id,
            addr(stream.peer_addr()),
            addr(stream.local_addr()),
            std::os::fd::AsRawFd::as_raw_fd(&stream),
            actor,
        ));
        shared.clients.add(Arc::clone(&entry));
        Self {
            entry,
            monitor: None,
            round_args: Vec::new(),
            round_started: Instant::now(),
            shared,
            stream,
            tls,
            session,
            buf: BytesMut::with_capacity(16 * 1024),
            out: Vec::new(),
            spill: std::collections::VecDeque::new(),
            spill_len: 0,
            over_soft_since: None,
            plans: Vec::new(),
            fatal: None,
            dead: false,
            eof: false,
            more_commands: false,
            round: None,
            blocked: None,
            readable: false,
            peer_closed: false,
            last_read: Instant::now(),
            stalled_since: None,
        }
    }

    fn limits(&self) -> Limits {
        if self.session.authenticated {
            let node = &self.shared.settings.node;
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
        if self.tls.is_some() {
            self.fill_tls(chunk);
            return;
        }
        self.readable = true;
        loop {
            match self.stream.read(chunk) {
                Ok(0) => {
                    self.eof = true;
                    self.readable = false;
                    return;
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.last_read = Instant::now();
                    self.entry.touch(self.last_read);
                    if n < chunk.len() && !self.peer_closed {
                        // Drained: more input raises a new event. (Not after the peer
                        // closed: its EOF came with the event just taken, and reading on
                        // is the only way to see it.)
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

    /// [`Connection::fill`] through TLS: socket bytes into the session, plaintext out of it
    /// into `buf`; then whatever the session has to send (handshake, alerts).
    fn fill_tls(&mut self, chunk: &mut [u8]) {
        self.readable = true;
        let limit = self.query_buffer_limit();
        let Self { tls: Some(tls), stream, buf, dead, eof, readable, last_read, .. } = self else {
            return;
        };
        'socket: loop {
            // Plaintext the session already holds first.
            loop {
                match tls.reader().read(chunk) {
                    Ok(0) => {
                        // The client closed the session (close_notify).
                        *eof = true;
                        *readable = false;
                        return;
                    }
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        *last_read = Instant::now();
                        if buf.len() > limit {
                            return;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        *dead = true;
                        *readable = false;
                        return;
                    }
                }
            }
            match tls.read_tls(stream) {
                Ok(0) => {
                    *eof = true;
                    *readable = false;
                    return;
                }
                Ok(_) => {
                    if let Err(error) = tls.process_new_packets() {
                        // Not TLS, or a failed handshake: send the alert, then close.
                        tracing::debug!(%error, "TLS session failed");
                        let _ = tls.write_tls(stream);
                        *dead = true;
                        *readable = false;
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    *readable = false;
                    break 'socket;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    *dead = true;
                    *readable = false;
                    return;
                }
            }
        }
        self.flush();
    }

    /// Input left in the socket that this connection will still read.
    fn unread(&self) -> bool {
        self.readable && !self.session.quit && self.fatal.is_none() && !self.dead
    }

    /// Plans up to one batch of buffered commands; `true` if more complete commands may remain.
    fn plan_buffered(&mut self, counters: &Counters) -> bool {
        let more = self.plan_batch(counters);
        self.more_commands = more;
        more
    }

    fn plan_batch(&mut self, counters: &Counters) -> bool {
        if self.session.quit || self.fatal.is_some() {
            return false;
        }
        while self.plans.len() < self.shared.settings.redis.max_batch && !self.session.quit {
            let limits = self.limits();
            match parse_command(&mut self.buf, &limits) {
                Ok(args) if args.is_empty() => {}
                Ok(args) => {
                    let plan = self.plan(&args, counters);
                    let blocks = matches!(plan, Plan::Wait(..));
                    self.plans.push(plan);
                    // (Kept whatever the slow log's threshold now: it may change before the
                    // round ends.)
                    self.round_args.push((args, None));
                    if blocks {
                        // What follows waits until it answers.
                        return true;
                    }
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
        !self.session.quit
    }

    /// Turns this round's plans and their engine answers into encoded replies.
    fn finish_plans(
        &mut self,
        answers: &mut impl Iterator<Item = Result<Response<RedisValue>, RequestError>>,
        counters: &Counters,
    ) {
        let mut plans = std::mem::take(&mut self.plans);
        let last = plans.pop();
        for plan in plans {
            let reply = plan.finish(answers, counters);
            self.encode(&reply);
        }
        match last.map(|plan| plan.finish_or_wait(answers, counters)) {
            Some(Ok(reply)) => self.encode(&reply),
            Some(Err(waiting)) => {
                let wait = waiting.retry_after().unwrap_or(self.shared.settings.node.epoch / 2);
                let again = Instant::now() + wait;
                self.blocked = Some((waiting, again));
            }
            None => {}
        }
        // A command that blocks keeps its arguments for its later rounds.
        let blocked_args = if self.blocked.is_some() { self.round_args.pop() } else { None };
        self.log_if_slow();
        self.round_args.clear();
        // (Timed from the round it was sent in, and logged once, when it answers.)
        self.round_args.extend(
            blocked_args.map(|(args, started)| (args, started.or(Some(self.round_started)))),
        );
        self.publish();
        if let Some(message) = &self.fatal {
            if !self.session.quit {
                self.shared.counters.protocol_errors.fetch_add(1, Ordering::Relaxed);
                self.emit(&Reply::Error(message.clone()));
            }
            self.session.quit = true;
        }
    }

    /// Bytes its query and reply buffers hold.
    fn buffer_bytes(&self) -> u64 {
        (self.buf.capacity() + self.out.capacity() + self.spill_len) as u64
    }

    /// Encodes a reply onto the output, unless that would take the output past
    /// [`MAX_PENDING_OUTPUT`]: then the client is dropped before the reply is built (Redis's
    /// hard `client-output-buffer-limit`), so a small pipeline of big reads cannot make the
    /// server hold gigabytes for a client that does not read. A collection's reply whose
    /// elements were encoded where the data lives ([`Reply::Elements`]) is already built: it
    /// goes out from its own buffer whatever its size when nothing is queued before it (Redis
    /// sends any single reply too), but nothing may then queue behind it past the limit.
    fn encode(&mut self, reply: &Reply) {
        if self.dead {
            return;
        }
        let before = self.pending_output();
        let pending = before + reply.encoded_len_hint();
        let built = matches!(reply, Reply::Elements(_)) && before == 0;
        let limit = self.hard_output_limit();
        if pending > limit && !built {
            tracing::warn!(
                client = self.session.id,
                pending,
                limit,
                "closing a client whose replies would pass the output buffer limit"
            );
            self.shared.counters.output_limit_closed.fetch_add(1, Ordering::Relaxed);
            self.close_now();
            return;
        }
        self.emit(reply);
        self.track_soft_limit();
    }

    /// The hard output limit in bytes (`usize::MAX` when turned off).
    fn hard_output_limit(&self) -> usize {
        match self.shared.settings.redis.output_limit.hard {
            0 => usize::MAX,
            hard => hard,
        }
    }

    /// Starts or stops the soft output limit's clock.
    fn track_soft_limit(&mut self) {
        let soft = self.shared.settings.redis.output_limit.soft;
        if soft > 0 && self.pending_output() > soft {
            self.over_soft_since.get_or_insert_with(Instant::now);
        } else {
            self.over_soft_since = None;
        }
    }

    /// Closes the client without writing what it has not read, freeing that output now.
    fn close_now(&mut self) {
        self.dead = true;
        self.out = Vec::new();
        self.spill.clear();
        self.spill_len = 0;
    }

    /// Bytes of replies not yet written (not counting what TLS holds).
    fn pending_output(&self) -> usize {
        self.out.len() + self.spill_len
    }

    /// Appends a reply's encoding to the output, in order.
    fn emit(&mut self, reply: &Reply) {
        let resp3 = self.session.resp3;
        match reply {
            Reply::Elements(elements) if elements.body.len() >= SPILL_MIN => {
                let mut header = Vec::with_capacity(24);
                let empty = Elements { body: Bytes::new(), ..Elements::clone(elements) };
                Reply::Elements(Box::new(empty)).encode(&mut header, resp3);
                self.queue(header);
                self.spill_len += elements.body.len();
                self.spill.push_back(Spilled::Shared(elements.body.clone()));
            }
            _ if self.spill.is_empty() => reply.encode(&mut self.out, resp3),
            _ => {
                let mut encoded = Vec::new();
                reply.encode(&mut encoded, resp3);
                self.queue(encoded);
            }
        }
    }

    /// Appends encoded bytes to the output, behind anything spilled.
    fn queue(&mut self, encoded: Vec<u8>) {
        if self.spill.is_empty() {
            self.out.extend_from_slice(&encoded);
            return;
        }
        self.spill_len += encoded.len();
        // Small replies behind a big one share one buffer (and one write).
        match self.spill.back_mut() {
            Some(Spilled::Owned(tail)) => tail.extend_from_slice(&encoded),
            _ => self.spill.push_back(Spilled::Owned(encoded)),
        }
    }

    /// The next bytes to write: `out`, then the spilled buffers in order.
    fn next_output(out: &[u8], spill: &std::collections::VecDeque<Spilled>) -> Option<usize> {
        if !out.is_empty() { Some(out.len()) } else { spill.front().map(|s| s.bytes().len()) }
    }

    /// Marks `n` bytes of the next output (see [`Self::next_output`]) as written.
    fn advance_output(
        out: &mut Vec<u8>,
        spill: &mut std::collections::VecDeque<Spilled>,
        spill_len: &mut usize,
        n: usize,
    ) {
        if !out.is_empty() {
            out.drain(..n);
        } else if let Some(front) = spill.front_mut() {
            match front {
                Spilled::Shared(bytes) => bytes::Buf::advance(bytes, n),
                Spilled::Owned(bytes) => {
                    bytes.drain(..n);
                }
            }
            *spill_len -= n;
            if front.bytes().is_empty() {
                spill.pop_front();
            }
        }
    }

    /// Writes as much pending output as the socket takes now.
    fn flush(&mut self) {
        if self.tls.is_some() {
            self.flush_tls();
            self.track_soft_limit();
            return;
        }
        while !self.dead && Self::next_output(&self.out, &self.spill).is_some() {
            let chunk: &[u8] = if self.out.is_empty() { self.spill[0].bytes() } else { &self.out };
            match self.stream.write(chunk) {
                Ok(0) => self.dead = true,
                Ok(n) => {
                    Self::advance_output(&mut self.out, &mut self.spill, &mut self.spill_len, n);
                    self.stalled_since = None;
                    self.track_soft_limit();
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

    /// [`Connection::flush`] through TLS: replies into the session (as much as its buffer
    /// takes), its records into the socket.
    fn flush_tls(&mut self) {
        let Self { tls: Some(tls), stream, out, spill, spill_len, dead, stalled_since, .. } = self
        else {
            return;
        };
        while !*dead {
            let taken = match Self::next_output(out, spill) {
                None => 0,
                Some(_) => {
                    let chunk: &[u8] = if out.is_empty() { spill[0].bytes() } else { out };
                    tls.writer().write(chunk).unwrap_or(0)
                }
            };
            Self::advance_output(out, spill, spill_len, taken);
            if !tls.wants_write() {
                if taken == 0 {
                    // All sent, or replies wait for the handshake to finish.
                    if out.is_empty() && spill.is_empty() {
                        *stalled_since = None;
                    }
                    return;
                }
                continue;
            }
            match tls.write_tls(stream) {
                Ok(0) => *dead = true,
                Ok(_) => *stalled_since = None,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    stalled_since.get_or_insert_with(Instant::now);
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => *dead = true,
            }
        }
    }

    /// Replies not yet on the wire: in `out`, or encrypted and waiting in the TLS session.
    fn output_pending(&self) -> bool {
        !self.out.is_empty()
            || !self.spill.is_empty()
            || self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// `true` once the connection should be closed.
    fn finished(&self) -> bool {
        let config = &self.shared.settings.redis;
        self.dead
            || self.entry.killed()
            || (self.session.quit && !self.output_pending())
            || (self.eof
                && self.round.is_none()
                && self.blocked.is_none()
                && self.plans.is_empty()
                && !self.more_commands
                && !self.output_pending())
            || self.out.len() > self.hard_output_limit()
            || self.stalled_since.is_some_and(|t| t.elapsed() > config.write_timeout)
            || (self.blocked.is_none()
                && self.monitor.is_none()
                && self.shared.clients.tunables.idle_timeout().is_some_and(|limit| {
                    self.last_read.elapsed() > limit && !self.output_pending()
                }))
    }

    fn plan(&mut self, args: &[bytes::Bytes], counters: &Counters) -> Plan {
        counters.commands.fetch_add(1, Ordering::Relaxed);
        let shared = &self.shared;
        let cx = Context {
            settings: &shared.settings,
            totals: &shared.counters,
            node: Some(&shared.node),
            clients: Some(&shared.clients),
        };
        let db = self.session.db;
        let plan = table::dispatch(&mut self.session, &cx, args);
        if shared.clients.monitoring() && table::monitored(args) {
            for actor in shared.clients.feed(db, &self.entry.addr, args) {
                shared.node.wake(actor);
            }
        }
        plan
    }

    /// Logs the commands answered this round that took longer than
    /// `slowlog-log-slower-than`, each timed from the round it was first sent in.
    fn log_if_slow(&self) {
        if self.shared.clients.tunables.slowlog_slower_than.load(Ordering::Relaxed) < 0 {
            return;
        }
        // One clock read for the round's commands; a command that blocked has its own start.
        let now = Instant::now();
        for (args, started) in &self.round_args {
            let took = now.saturating_duration_since(started.unwrap_or(self.round_started));
            let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            self.shared.clients.log_if_slow(micros, args, &self.entry);
        }
    }

    /// Whether its unwritten replies leave room for more: below half its output limit. A
    /// connection without room reads no new commands, and a monitor takes no new lines (it is
    /// closed if its backlog passes the limit).
    fn output_has_room(&self) -> bool {
        self.pending_output() < self.hard_output_limit().min(MAX_PENDING_OUTPUT) / 2
    }

    /// Moves the lines waiting for this monitor into its output, behind any reply still
    /// being sent.
    fn send_monitor_lines(&mut self) {
        let mut any = false;
        while self.output_has_room() {
            let Some(feed) = &self.monitor else { return };
            let Ok(line) = feed.lines.try_recv() else { break };
            feed.queued.fetch_sub(line.len(), Ordering::Relaxed);
            self.queue(line.to_vec());
            any = true;
        }
        if any {
            self.flush();
        }
    }

    /// Publishes what the node's other clients may ask about this one (after each round).
    fn publish(&mut self) {
        let name_changed = std::mem::take(&mut self.session.name_changed);
        self.entry.publish(&Published {
            db: self.session.db,
            last_command: self.session.last_command,
            multi: self.session.multi.as_ref().map(Vec::len),
            multi_mem: self.session.multi_bytes,
            qbuf: (self.buf.len(), self.buf.capacity()),
            output: (self.out.len(), self.spill.len(), self.pending_output()),
            resp3: self.session.resp3,
            name: name_changed.then_some(self.session.name.as_ref()),
        });
    }
}
