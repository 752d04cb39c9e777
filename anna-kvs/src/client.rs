//! The Rust client: talks the [native protocol](crate::native) to one or more nodes.
//!
//! A [`Client`] learns the cluster's ring from any node it is given, then sends each request
//! straight to a node that replicates the key — a random one among the owners, for load
//! balance (the paper's client proxy, §VII.B). When a node does not answer in time the request
//! is sent to the next owner; a node that timed out is avoided for a while. Answers carry the
//! ring version the node routes with, and a client holding another version refreshes its copy.
//!
//! Retries are safe because writes are lattice merges: sending the same PUT twice merges the
//! same state twice, which changes nothing. Only [`Request::Apply`] (an increment, a set
//! insertion — operations that read the replica) is not idempotent, so it is never re-sent
//! after a timeout; its caller gets [`ClientError::Timeout`] and decides.
//!
//! The client implements [`Store`], so every consistency level's session
//! runs over it unchanged:
//!
//! ```no_run
//! use anna_kvs::client::Client;
//! use anna_kvs::levels::{Causal, CausalSession};
//!
//! // A node started with `anna-server --consistency causal`.
//! let mut client = Client::<Causal>::connect(&["127.0.0.1:6450"])?;
//! let mut session = CausalSession::new(client.client_id());
//! session.put(&mut client, &"greeting".into(), Some("hello".into()))?;
//! let value = session.get(&mut client, &"greeting".into())?.expect("just written");
//! // Concurrent writes would show up as several siblings, each with its vector clock.
//! for (clock, sibling) in value.entries() {
//!     println!("{sibling:?} written at {clock:?}");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lattice_core::{Lww, Stamp};

use crate::levels::Store;
use crate::message::{Request, RequestError, Response};
use crate::native::{self, Answer, ClientFrame, ClientMessage, NodeStats, RingInfo, ServerMessage};
use crate::redis::RedisValue;
use crate::ring::{ActorId, Key, Topology};
use crate::tls::tunnel::Tunnel;
use crate::value::{Eventual, KvsValue};
use crate::wire::{MAX_MESSAGE_BYTES, WireError};

/// How a client behaves.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// How long to wait for a node before trying another owner.
    pub timeout: Duration,
    /// Tries per request (each on another owner when there is one).
    pub attempts: usize,
    /// How long a node that timed out is tried only after the others.
    pub suspect_for: Duration,
    /// This client's id: its writer id in stamps and vector clocks. Random by default.
    pub client_id: Option<u64>,
    /// The cluster's password (`anna-server --requirepass`).
    pub password: Option<String>,
    /// Dial every node over TLS with this configuration (for nodes started with
    /// `--native-tls`); see [`crate::tls::client_config`].
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(1500),
            attempts: 3,
            suspect_for: Duration::from_secs(5),
            client_id: None,
            password: None,
            tls: None,
        }
    }
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No node given to [`Client::connect`] answered.
    #[error("no node answered at {0}")]
    Unreachable(String),
    /// The node refused the message (it explains why; e.g. another lattice type).
    #[error("node refused the request: {0}")]
    Refused(String),
    /// The cluster stores another value lattice than this client speaks.
    #[error("the cluster stores another value lattice ({server}); this client speaks {client}")]
    WrongLattice {
        /// The cluster's type.
        server: String,
        /// The client's type.
        client: &'static str,
    },
    /// No owner answered after every attempt.
    #[error("no replica answered after {0} attempt(s)")]
    Timeout(usize),
    /// The node answered with an error for this request.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// A malformed answer.
    #[error("bad answer: {0}")]
    Wire(#[from] WireError),
    /// A socket failed.
    #[error("ZeroMQ: {0}")]
    Zmq(#[from] zmq::Error),
    /// The answer did not fit the request.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// A TLS connection could not be set up.
    #[error("TLS: {0}")]
    Tls(String),
}

impl From<ClientError> for RequestError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Request(error) => error,
            ClientError::Timeout(_) | ClientError::Unreachable(_) => RequestError::Timeout,
            ClientError::Unexpected(what) => RequestError::UnexpectedAnswer(what),
            error @ ClientError::Wire(_) => RequestError::UnexpectedAnswer(error.to_string()),
            other => RequestError::Refused(other.to_string()),
        }
    }
}

/// One node's connection.
struct Conn {
    addr: String,
    socket: zmq::Socket,
    /// The TLS tunnel the socket goes through, when the client uses TLS.
    tunnel: Option<Tunnel>,
    suspect_until: Option<Instant>,
}

/// A blocking client of an Anna cluster, for values of lattice `V` (see the
/// [module docs](self)).
pub struct Client<V: KvsValue> {
    context: zmq::Context,
    conns: Vec<Conn>,
    ring: RingInfo,
    topology: Topology,
    config: ClientConfig,
    client_id: u64,
    next_id: u64,
    rng: u64,
    owners: Vec<ActorId>,
    _value: PhantomData<fn() -> V>,
}

impl<V: KvsValue> std::fmt::Debug for Client<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("nodes", &self.conns.iter().map(|c| &c.addr).collect::<Vec<_>>())
            .field("ring_version", &self.ring.version)
            .finish()
    }
}

fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)) | 1
}

/// Microseconds since the Unix epoch.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl<V: KvsValue> Client<V> {
    /// Connects to a cluster through any of `nodes` (`host:port` client addresses) with the
    /// default [`ClientConfig`].
    ///
    /// # Errors
    /// No node answered, or the cluster stores another lattice.
    pub fn connect(nodes: &[impl AsRef<str>]) -> Result<Self, ClientError> {
        Self::with_config(nodes, ClientConfig::default())
    }

    /// Connects with `config`.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub fn with_config(
        nodes: &[impl AsRef<str>],
        config: ClientConfig,
    ) -> Result<Self, ClientError> {
        let context = zmq::Context::new();
        let mut rng = random_seed();
        let client_id = config.client_id.unwrap_or_else(|| {
            rng = xorshift(rng);
            rng >> 1
        });
        let mut client = Self {
            context,
            conns: Vec::new(),
            ring: RingInfo {
                version: 0,
                value_type: String::new(),
                me: 0,
                members: Vec::new(),
                replication: crate::Replication::ONE,
            },
            topology: Topology::single(1, crate::Replication::ONE),
            config,
            client_id,
            next_id: 1,
            rng,
            owners: Vec::new(),
            _value: PhantomData,
        };
        let mut last_error = None;
        for addr in nodes {
            let index = client.conn_for(addr.as_ref())?;
            match client.fetch_ring(index) {
                Ok(()) => return Ok(client),
                Err(ClientError::Refused(message)) if message.contains("value type") => {
                    return Err(ClientError::WrongLattice {
                        server: message,
                        client: V::TYPE_NAME,
                    });
                }
                Err(error @ (ClientError::WrongLattice { .. } | ClientError::Refused(_))) => {
                    return Err(error);
                }
                Err(error) => last_error = Some(error),
            }
        }
        let tried: Vec<&str> = nodes.iter().map(AsRef::as_ref).collect();
        Err(match last_error {
            Some(ClientError::Timeout(_)) | None => ClientError::Unreachable(tried.join(", ")),
            Some(other) => other,
        })
    }

    /// This client's id (use it for sessions: `CausalSession::new(client.client_id())`).
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The ring the client routes with.
    pub fn ring(&self) -> &RingInfo {
        &self.ring
    }

    /// Asks the nodes for the ring again.
    ///
    /// # Errors
    /// No node answered.
    pub fn refresh_ring(&mut self) -> Result<(), ClientError> {
        let mut last = ClientError::Timeout(0);
        for index in self.preferred_order((0..self.conns.len()).collect()) {
            match self.fetch_ring(index) {
                Ok(()) => return Ok(()),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// Every reachable node's counters.
    ///
    /// # Errors
    /// A node that does not answer is skipped; an error only if none answers.
    pub fn stats(&mut self) -> Result<Vec<NodeStats>, ClientError> {
        let mut all = Vec::new();
        let mut last = None;
        for member in self.ring.members.clone() {
            let Some(addr) = member.client_addr else { continue };
            let index = self.conn_for(&addr)?;
            match self.call(index, ClientMessage::Stats) {
                Ok(ServerMessage::Stats(stats)) => all.push(stats),
                Ok(other) => last = Some(ClientError::Unexpected(format!("{other:?}"))),
                Err(error) => last = Some(error),
            }
        }
        match (all.is_empty(), last) {
            (true, Some(error)) => Err(error),
            _ => Ok(all),
        }
    }

    /// The cluster as the first member that answers sees it: its ring version, and every
    /// member's state and incarnation by its failure detector.
    ///
    /// # Errors
    /// An error only if no member answers.
    pub fn cluster(&mut self) -> Result<native::ClusterInfo, ClientError> {
        let mut last = ClientError::Unexpected("no member has a client address".into());
        for member in self.ring.members.clone() {
            let Some(addr) = member.client_addr else { continue };
            let index = self.conn_for(&addr)?;
            match self.call(index, ClientMessage::Cluster) {
                Ok(ServerMessage::Cluster(info)) => return Ok(info),
                Ok(other) => last = ClientError::Unexpected(format!("{other:?}")),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// Makes the node at `addr` (a client address) leave the cluster for good: it hands its
    /// last changes to its peers, every member takes it out of the ring, and it stops. Returns
    /// the cluster as that node saw it before leaving.
    ///
    /// # Errors
    /// The node refused (see [`crate::node::NodeHandle::prepare_leave`]) or did not answer.
    pub fn leave(&mut self, addr: &str) -> Result<native::ClusterInfo, ClientError> {
        let index = self.conn_for(addr)?;
        match self.call(index, ClientMessage::Leave)? {
            ServerMessage::Cluster(info) => Ok(info),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Reads `key` from one replica.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn get(&mut self, key: impl Into<Key>) -> Result<Option<V>, ClientError> {
        match self.request(Request::Get { key: key.into() })? {
            Response::Value(value) => Ok(value),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Merges `value` into `key` at one replica (gossip carries it to the others).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn put(&mut self, key: impl Into<Key>, value: V) -> Result<(), ClientError> {
        self.request(Request::Put { key: key.into(), value, stamp_here: false }).map(drop)
    }

    /// Deletes `key` (a tombstone stamped by the serving replica).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn delete(&mut self, key: impl Into<Key>) -> Result<(), ClientError> {
        self.request(Request::Delete { key: key.into() }).map(drop)
    }

    /// Applies a value-specific operation (never retried after a timeout: it is not
    /// idempotent).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn apply(&mut self, key: impl Into<Key>, op: V::Op) -> Result<V::OpOutput, ClientError> {
        match self.request(Request::Apply { key: key.into(), op })? {
            Response::Applied(output) => Ok(output),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Redis's `WAIT` for one write: merges `value` into `key` at one of its owners, then
    /// polls that owner until `replicas` other nodes have acknowledged the key's state (a
    /// node acknowledges gossip only once its own log holds it) or `timeout` passes; returns
    /// how many did. The write is applied either way: a count below `replicas` means it may
    /// not yet survive the loss of the node that took it.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use anna_kvs::client::Client;
    /// use anna_kvs::value::Eventual;
    /// use lattice_core::{Lww, Stamp};
    ///
    /// let mut client = Client::<Eventual>::connect(&["127.0.0.1:6450"])?;
    /// let value = Lww::new(Stamp::new(1, client.client_id()), Some("v".into()));
    /// // Block until two other nodes hold it (or a second passes).
    /// let acked = client.put_replicated("k", value, 2, Duration::from_secs(1))?;
    /// if acked < 2 {
    ///     eprintln!("only {acked} other nodes have the write so far");
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// The owner did not answer (the write may or may not have been applied), or refused.
    pub fn put_replicated(
        &mut self,
        key: impl Into<Key>,
        value: V,
        replicas: u32,
        timeout: Duration,
    ) -> Result<u32, ClientError> {
        let key = key.into();
        // One owner takes the write and is the one asked: only it can vouch for it.
        let Some(&conn) = self.owner_conns(&key).first() else {
            return Err(ClientError::Timeout(0));
        };
        let put = Request::Put { key: key.clone(), value, stamp_here: false };
        match self.request_on(conn, put)? {
            Response::Done(_) => {}
            Response::Error(error) => return Err(ClientError::Request(error)),
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        }
        let deadline = Instant::now() + timeout;
        loop {
            let acked = match self.request_on(conn, Request::Replicated { key: key.clone() })? {
                Response::Replicated(n) => n,
                Response::Error(error) => return Err(ClientError::Request(error)),
                other => return Err(ClientError::Unexpected(format!("{other:?}"))),
            };
            if acked >= replicas || Instant::now() >= deadline {
                return Ok(acked);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends one request to one connection (no retry elsewhere).
    fn request_on(&mut self, conn: usize, request: Request<V>) -> Result<Response<V>, ClientError> {
        let mut results = vec![None];
        let mut stale_ring = false;
        self.exchange(&[(conn, vec![0])], &[request], &mut results, &mut stale_ring);
        results.pop().flatten().unwrap_or(Err(ClientError::Timeout(1)))
    }

    /// Sends one request; an error response becomes [`ClientError::Request`].
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn request(&mut self, request: Request<V>) -> Result<Response<V>, ClientError> {
        match self.request_batch(vec![request]).pop() {
            Some(Ok(Response::Error(error))) => Err(ClientError::Request(error)),
            Some(result) => result,
            None => Err(ClientError::Timeout(0)),
        }
    }

    /// Sends many requests at once: one message per node, all in flight together; each
    /// request that times out is retried on another owner. Answers come back in order.
    pub fn request_batch(
        &mut self,
        requests: Vec<Request<V>>,
    ) -> Vec<Result<Response<V>, ClientError>> {
        let mut results: Vec<Option<Result<Response<V>, ClientError>>> =
            (0..requests.len()).map(|_| None).collect();
        let candidates: Vec<Vec<usize>> =
            requests.iter().map(|r| self.candidates(r.key())).collect();
        let mut stale_ring = false;
        let attempts = self.config.attempts.max(1);
        for attempt in 0..attempts {
            // Group what is unanswered by the node this attempt tries.
            let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
            for (i, result) in results.iter().enumerate() {
                if result.is_some() {
                    continue;
                }
                let options = &candidates[i];
                if options.is_empty() {
                    continue;
                }
                let conn = options[attempt % options.len()];
                match groups.iter_mut().find(|(c, _)| *c == conn) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((conn, vec![i])),
                }
            }
            if groups.is_empty() {
                break;
            }
            let answered = self.exchange(&groups, &requests, &mut results, &mut stale_ring);
            for (conn, members) in &groups {
                if answered.contains(conn) {
                    continue;
                }
                self.suspect(*conn);
                for &i in members {
                    let last_try = attempt + 1 == attempts;
                    if matches!(requests[i], Request::Apply { .. }) || last_try {
                        results[i] = Some(Err(ClientError::Timeout(attempt + 1)));
                    }
                }
            }
        }
        if stale_ring {
            let _ = self.refresh_ring();
        }
        results.into_iter().map(|r| r.unwrap_or(Err(ClientError::Timeout(attempts)))).collect()
    }

    /// Sends each group to its node and collects answers until the timeout. Returns the nodes
    /// that answered.
    fn exchange(
        &mut self,
        groups: &[(usize, Vec<usize>)],
        requests: &[Request<V>],
        results: &mut [Option<Result<Response<V>, ClientError>>],
        stale_ring: &mut bool,
    ) -> Vec<usize> {
        let deadline = Instant::now() + self.config.timeout;
        // (conn, batch id, members) for every group actually sent.
        let mut in_flight: Vec<(usize, u64, &[usize])> = Vec::new();
        let mut failed_locally = Vec::new();
        for (conn, members) in groups {
            let id = self.next_id;
            self.next_id += 1;
            let batch: Vec<Request<V>> = members.iter().map(|&i| requests[i].clone()).collect();
            let message = ClientMessage::Batch { id, requests: batch };
            match self.encode(message) {
                Ok(bytes) => {
                    if self.conns[*conn].socket.send(bytes, 0).is_ok() {
                        in_flight.push((*conn, id, members));
                    }
                }
                Err(error) => {
                    // Refused before sending (too large): a local failure, not a slow node.
                    for &i in members {
                        results[i] = Some(Err(ClientError::Wire(error.clone())));
                    }
                    failed_locally.push(*conn);
                }
            }
        }
        let mut answered = Vec::new();
        while answered.len() < in_flight.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let waiting: Vec<usize> = in_flight
                .iter()
                .filter(|(c, _, _)| !answered.contains(c))
                .map(|(c, _, _)| *c)
                .collect();
            let ready: Vec<bool> = {
                let mut items: Vec<zmq::PollItem<'_>> = waiting
                    .iter()
                    .map(|&c| self.conns[c].socket.as_poll_item(zmq::POLLIN))
                    .collect();
                if zmq::poll(&mut items, left.as_millis().max(1) as i64).is_err() {
                    break;
                }
                items.iter().map(zmq::PollItem::is_readable).collect()
            };
            for (&conn, ready) in waiting.iter().zip(ready) {
                if !ready {
                    continue;
                }
                while let Ok(bytes) = self.conns[conn].socket.recv_bytes(zmq::DONTWAIT) {
                    let Some(&(_, id, members)) = in_flight.iter().find(|(c, _, _)| *c == conn)
                    else {
                        continue;
                    };
                    match native::decode_server::<V>(&bytes) {
                        Ok(Answer::Message(ServerMessage::Batch {
                            id: got,
                            ring_version,
                            responses,
                        })) if got == id => {
                            *stale_ring |= ring_version != self.ring.version;
                            if responses.len() != members.len() {
                                for &i in members {
                                    results[i] = Some(Err(ClientError::Unexpected(
                                        "answer count differs from request count".into(),
                                    )));
                                }
                            } else {
                                for (&i, response) in members.iter().zip(responses) {
                                    results[i] = Some(match response {
                                        // A node that could not reach an owner in time, or
                                        // is stopping: try another owner.
                                        Response::Error(
                                            RequestError::Timeout | RequestError::ShuttingDown,
                                        ) if !matches!(requests[i], Request::Apply { .. }) => {
                                            continue;
                                        }
                                        other => Ok(other),
                                    });
                                }
                            }
                            answered.push(conn);
                        }
                        // A late answer to an earlier, retried batch.
                        Ok(Answer::Message(_)) => {}
                        Ok(Answer::Refused(message)) => {
                            for &i in members {
                                results[i] = Some(Err(ClientError::Refused(message.clone())));
                            }
                            answered.push(conn);
                        }
                        Err(error) => {
                            for &i in members {
                                results[i] = Some(Err(ClientError::Wire(error.clone())));
                            }
                            answered.push(conn);
                        }
                    }
                }
            }
        }
        answered.extend(failed_locally);
        answered
    }

    /// One control exchange with one node (ring, stats).
    fn call(
        &mut self,
        conn: usize,
        message: ClientMessage<V>,
    ) -> Result<ServerMessage<V>, ClientError> {
        let bytes = self.encode(message)?;
        let socket = &self.conns[conn].socket;
        if socket.send(bytes, 0).is_err() {
            self.suspect(conn);
            return Err(ClientError::Timeout(1));
        }
        let deadline = Instant::now() + self.config.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let socket = &self.conns[conn].socket;
            if left.is_zero() || socket.poll(zmq::POLLIN, left.as_millis().max(1) as i64)? == 0 {
                self.suspect(conn);
                return Err(ClientError::Timeout(1));
            }
            let bytes = socket.recv_bytes(0)?;
            match native::decode_server::<V>(&bytes) {
                Ok(Answer::Message(ServerMessage::Batch { .. })) => {} // late batch answer
                Ok(Answer::Message(answer)) => return Ok(answer),
                Ok(Answer::Refused(message)) => return Err(ClientError::Refused(message)),
                Err(error) => return Err(error.into()),
            }
        }
    }

    fn encode(&self, message: ClientMessage<V>) -> Result<Vec<u8>, WireError> {
        native::encode_client(&ClientFrame { password: self.config.password.clone(), message })
    }

    fn fetch_ring(&mut self, conn: usize) -> Result<(), ClientError> {
        match self.call(conn, ClientMessage::Ring)? {
            ServerMessage::Ring(ring) => {
                if ring.value_type != V::TYPE_NAME {
                    return Err(ClientError::WrongLattice {
                        server: ring.value_type,
                        client: V::TYPE_NAME,
                    });
                }
                self.topology = ring.topology();
                for member in &ring.members {
                    if let Some(addr) = &member.client_addr {
                        self.conn_for(addr)?;
                    }
                }
                self.ring = ring;
                Ok(())
            }
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// A socket connected to the node at `addr`: directly, or through a TLS tunnel.
    fn new_socket(&self, addr: &str) -> Result<(zmq::Socket, Option<Tunnel>), ClientError> {
        let socket = self.context.socket(zmq::DEALER)?;
        socket.set_linger(0)?;
        socket.set_maxmsgsize(MAX_MESSAGE_BYTES as i64)?;
        // Queue only to live connections, and give up a send after the timeout: a dead node
        // fails the send instead of swallowing the request.
        socket.set_immediate(true)?;
        socket.set_sndtimeo(self.config.timeout.as_millis().min(i32::MAX as u128) as i32)?;
        match &self.config.tls {
            None => {
                socket.connect(&format!("tcp://{addr}"))?;
                Ok((socket, None))
            }
            Some(tls) => {
                let tunnel = Tunnel::open(
                    &self.context,
                    addr,
                    Arc::clone(tls),
                    self.config.timeout,
                    MAX_MESSAGE_BYTES,
                )
                .map_err(|e| ClientError::Tls(format!("{addr}: {e}")))?;
                socket.connect(tunnel.endpoint())?;
                Ok((socket, Some(tunnel)))
            }
        }
    }

    /// The connection to `addr`, created on first use.
    fn conn_for(&mut self, addr: &str) -> Result<usize, ClientError> {
        if let Some(i) = self.conns.iter().position(|c| c.addr == addr) {
            return Ok(i);
        }
        let (socket, tunnel) = self.new_socket(addr)?;
        self.conns.push(Conn { addr: addr.to_owned(), socket, tunnel, suspect_until: None });
        Ok(self.conns.len() - 1)
    }

    /// Marks a node as slow, and replaces its socket so requests queued for it are dropped
    /// instead of delivered late.
    fn suspect(&mut self, conn: usize) {
        self.conns[conn].suspect_until = Some(Instant::now() + self.config.suspect_for);
        if let Ok((socket, tunnel)) = self.new_socket(&self.conns[conn].addr.clone()) {
            self.conns[conn].socket = socket;
            self.conns[conn].tunnel = tunnel;
        }
    }

    /// Healthy connections first, in the given order.
    fn preferred_order(&self, mut conns: Vec<usize>) -> Vec<usize> {
        let now = Instant::now();
        conns.sort_by_key(|&c| self.conns[c].suspect_until.is_some_and(|t| t > now));
        conns
    }

    /// The nodes to try for `key`: its owners in random order (healthy first), then every
    /// other known node (a non-owner forwards to an owner).
    fn candidates(&mut self, key: &[u8]) -> Vec<usize> {
        let mut conns = self.owner_conns(key);
        let others: Vec<usize> = (0..self.conns.len()).filter(|c| !conns.contains(c)).collect();
        conns.extend(self.preferred_order(others));
        conns
    }

    /// The connections to `key`'s owners, in random order, healthy first.
    fn owner_conns(&mut self, key: &[u8]) -> Vec<usize> {
        let mut owners = std::mem::take(&mut self.owners);
        self.topology.owners_into(key, None, &mut owners);
        let mut nodes: Vec<usize> = Vec::new();
        for owner in &owners {
            let node = usize::from(owner.node);
            if !nodes.contains(&node) {
                nodes.push(node);
            }
        }
        self.owners = owners;
        // Fisher–Yates with the client's generator.
        for i in (1..nodes.len()).rev() {
            self.rng = xorshift(self.rng);
            nodes.swap(i, (self.rng % (i as u64 + 1)) as usize);
        }
        let mut conns: Vec<usize> = Vec::new();
        for node in nodes {
            let addr = self.ring.members.get(node).and_then(|m| m.client_addr.clone());
            if let Some(addr) = addr
                && let Ok(conn) = self.conn_for(&addr)
            {
                conns.push(conn);
            }
        }
        self.preferred_order(conns)
    }
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

impl<V: KvsValue> Store<V> for Client<V> {
    fn get(&mut self, key: &Key) -> Result<Option<V>, RequestError> {
        Ok(Client::get(self, key.clone())?)
    }

    fn put(&mut self, key: &Key, value: V) -> Result<(), RequestError> {
        Ok(Client::put(self, key.clone(), value)?)
    }

    fn put_here(&mut self, key: &Key, value: V) -> Result<Option<Stamp>, RequestError> {
        match self.request(Request::Put { key: key.clone(), value, stamp_here: true })? {
            Response::Done(stamp) => Ok(stamp),
            other => Err(RequestError::UnexpectedAnswer(format!("{other:?}"))),
        }
    }

    fn now(&self) -> u64 {
        now_us()
    }
}

/// The register sessions (eventual, monotonic reads and writes, read-your-writes, PRAM,
/// writes-follow-reads) against an `anna-server` in its default mode, whose keys are Redis
/// values: a string key *is* a last-writer-wins register, so those sessions and `redis-cli`
/// share the same data.
impl Store<Eventual> for Client<RedisValue> {
    fn get(&mut self, key: &Key) -> Result<Option<Eventual>, RequestError> {
        match Client::get(self, key.clone())? {
            None => Ok(None),
            Some(value) => value.string_register().map(Some).map_err(RequestError::Op),
        }
    }

    fn put(&mut self, key: &Key, value: Eventual) -> Result<(), RequestError> {
        Ok(Client::put(self, key.clone(), RedisValue::from_register(value, self.client_id))?)
    }

    fn put_here(&mut self, key: &Key, value: Eventual) -> Result<Option<Stamp>, RequestError> {
        // Redis values carry no server-assigned stamps; stamp at the client instead.
        let stamp = Stamp::new(now_us(), self.client_id);
        let register = Lww::new(stamp, value.into_parts().and_then(|(_, v)| v));
        Store::<Eventual>::put(self, key, register)?;
        Ok(Some(stamp))
    }

    fn now(&self) -> u64 {
        now_us()
    }
}

/// A `Bytes` key from anything byte-like (for examples and the CLI).
pub fn key(k: impl AsRef<[u8]>) -> Key {
    Bytes::copy_from_slice(k.as_ref())
}
