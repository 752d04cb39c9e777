//! The node side of the native protocol: one thread with a ZeroMQ `ROUTER` socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{ClientMessage, RingInfo, ServerMessage};
use crate::auth::constant_time_eq;
use crate::message::{Request, Response};
use crate::node::{NodeError, NodeHandle};
use crate::tls::tunnel::{Gateway, GatewayCounters, inproc_endpoint};
use crate::value::KvsValue;
use crate::wire::MAX_MESSAGE_BYTES;

/// Where and how the client port listens.
#[derive(Clone, Debug)]
pub struct FrontEndConfig {
    /// Address to bind (default `127.0.0.1`).
    pub bind: String,
    /// Port; `0` picks a free one.
    pub port: u16,
    /// The client addresses of the other members, by their ring name (gossip address), so
    /// clients can route to them directly.
    pub peer_client_addrs: Vec<(String, String)>,
    /// Most client messages read before the engine is asked (one engine round trip each).
    pub max_round: usize,
    /// Password every message must carry; required on a non-loopback address.
    pub password: Option<String>,
    /// The address clients dial, `host:port`, when it is not the bound one (a node bound to
    /// `0.0.0.0` announces a reachable address in its ring).
    pub announce: Option<String>,
    /// Speak TLS on the port instead of plain ZeroMQ (see [`crate::tls::tunnel`]); build it
    /// with [`TlsConfig::server_config`](crate::tls::TlsConfig::server_config). Every member of
    /// a cluster should agree, since clients dial all of them the same way.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Most TLS connections at once; more are closed on arrival and counted.
    pub max_tls_connections: usize,
    /// A count of leave signals (`anna-server --leave-on-terminate` adds one per `SIGTERM`).
    /// The first makes the node leave the cluster for good, as if a client had sent
    /// [`ClientMessage::Leave`]; the second while it is leaving (the first if a client started
    /// the leave) stops it at once instead, as a member that is down (still in every ring, its
    /// directory able to start it again). If the node may not leave, it says why and stops as
    /// a member.
    pub leave_signal: Option<Arc<AtomicUsize>>,
}

impl Default for FrontEndConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".into(),
            port: super::DEFAULT_PORT,
            peer_client_addrs: Vec::new(),
            max_round: 256,
            password: None,
            announce: None,
            tls: None,
            max_tls_connections: 10_000,
            leave_signal: None,
        }
    }
}

/// The client port's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontEndStats {
    /// Messages read.
    pub messages: u64,
    /// Requests handed to the engine.
    pub requests: u64,
    /// Messages refused as malformed (bad envelope, wrong lattice type, undecodable).
    pub malformed: u64,
    /// Messages refused for a missing or wrong password.
    pub unauthenticated: u64,
    /// Answers that could not be sent (the client's queue was full or it left).
    pub send_failures: u64,
    /// TLS connections accepted (a TLS port only).
    pub tls_accepted: u64,
    /// TLS connections closed on arrival because the port was full.
    pub tls_refused: u64,
    /// TLS connections ended by an error: a failed handshake or certificate, a bad record,
    /// an oversized frame, a handshake that took too long.
    pub tls_failed: u64,
}

/// The ring as this node's clients see it: each member's client address is this front end's
/// for this node, the configured one for a static peer, else the one the member announced to
/// the failure detector.
fn ring_info<V: KvsValue>(
    handle: &NodeHandle<V>,
    own: &str,
    peers: &[(String, String)],
) -> RingInfo {
    let topology = handle.topology();
    let me = handle.index();
    let membership = handle.membership();
    let announced = |name: &str| {
        membership.as_ref()?.members.iter().find(|m| m.id.gossip == name)?.id.native.clone()
    };
    let client_addrs = topology
        .nodes()
        .iter()
        .enumerate()
        .map(|(i, name)| {
            if i == usize::from(me) {
                Some(own.to_owned())
            } else {
                peers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, a)| a.clone())
                    .or_else(|| announced(name))
            }
        })
        .collect();
    RingInfo::new::<V>(&topology, me, client_addrs)
}

/// The client port of a node: decodes messages, hands their requests to the actors, answers.
pub struct FrontEnd<V: KvsValue> {
    _context: zmq::Context,
    socket: zmq::Socket,
    handle: NodeHandle<V>,
    /// The ring as clients see it, rebuilt when the node's changes version.
    ring: RingInfo,
    /// Client addresses of static peers, by ring name (from the configuration).
    peer_client_addrs: Vec<(String, String)>,
    addr: String,
    max_round: usize,
    password: Option<String>,
    stop: Arc<AtomicBool>,
    stats: FrontEndStats,
    /// The TLS listener, when the port speaks TLS; it runs on a thread of its own.
    gateway: Option<Gateway>,
    tls_counters: Option<Arc<GatewayCounters>>,
    /// A client asked this node to leave the cluster (when): it stops once its keys are with
    /// the other members.
    leaving: Option<Instant>,
    /// When the wait for the hand-over was last reported.
    leave_said_at: Duration,
    /// See [`FrontEndConfig::leave_signal`].
    leave_signal: Option<Arc<AtomicUsize>>,
    /// Leave signals acted on so far.
    leave_signals_seen: usize,
    /// Leave signals received while leaving.
    signals_while_leaving: usize,
}

impl<V: KvsValue> std::fmt::Debug for FrontEnd<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontEnd").field("addr", &self.addr).finish()
    }
}

impl<V: KvsValue> FrontEnd<V> {
    /// Binds the client port of the node behind `handle`. It serves once [`run`](Self::run)
    /// or [`spawn`](Self::spawn) is called, until `stop` is set.
    ///
    /// # Errors
    /// The socket cannot be created or bound (a port in use).
    pub fn bind(
        config: &FrontEndConfig,
        handle: NodeHandle<V>,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, NodeError> {
        crate::auth::check_public_bind("native-protocol", &config.bind, config.password.as_deref())
            .map_err(NodeError::Config)?;
        let context = zmq::Context::new();
        let socket = context.socket(zmq::ROUTER).map_err(NodeError::zmq("create client socket"))?;
        socket
            .set_maxmsgsize(MAX_MESSAGE_BYTES as i64)
            .map_err(NodeError::zmq("set ZMQ_MAXMSGSIZE"))?;
        socket.set_linger(0).map_err(NodeError::zmq("set ZMQ_LINGER"))?;
        socket.set_sndhwm(10_000).map_err(NodeError::zmq("set ZMQ_SNDHWM"))?;
        socket.set_rcvhwm(10_000).map_err(NodeError::zmq("set ZMQ_RCVHWM"))?;
        let (bound, gateway) = match &config.tls {
            None => {
                let port = if config.port == 0 { "*".to_owned() } else { config.port.to_string() };
                let endpoint = format!("tcp://{}:{port}", config.bind);
                socket
                    .bind(&endpoint)
                    .map_err(NodeError::zmq(format!("bind client port {endpoint}")))?;
                let bound = socket.get_last_endpoint().ok().and_then(Result::ok);
                let bound = bound.unwrap_or(endpoint).trim_start_matches("tcp://").to_owned();
                (bound, None)
            }
            Some(tls) => {
                // TLS connections reach the ROUTER through the gateway, over inproc.
                let router = inproc_endpoint("native");
                socket.bind(&router).map_err(NodeError::zmq("bind the TLS gateway's socket"))?;
                let gateway = Gateway::bind(
                    (&config.bind, config.port),
                    Arc::clone(tls),
                    context.clone(),
                    router,
                    config.max_tls_connections,
                    MAX_MESSAGE_BYTES,
                )
                .map_err(NodeError::io(format!(
                    "bind the native TLS port {}:{}",
                    config.bind, config.port
                )))?;
                let bound = gateway
                    .local_addr()
                    .map_err(NodeError::io("read the native TLS port's address"))?;
                (bound.to_string(), Some(gateway))
            }
        };
        let addr = config.announce.clone().unwrap_or(bound);
        let peer_client_addrs = config.peer_client_addrs.clone();
        let ring = ring_info(&handle, &addr, &peer_client_addrs);
        Ok(Self {
            _context: context,
            socket,
            handle,
            ring,
            peer_client_addrs,
            addr,
            max_round: config.max_round.max(1),
            password: config.password.clone().filter(|p| !p.is_empty()),
            stop,
            stats: FrontEndStats::default(),
            tls_counters: gateway.as_ref().map(Gateway::counters),
            leaving: None,
            leave_said_at: Duration::ZERO,
            leave_signal: config.leave_signal.clone(),
            leave_signals_seen: 0,
            signals_while_leaving: 0,
            gateway,
        })
    }

    /// Where clients reach it, `host:port`.
    pub fn local_addr(&self) -> &str {
        &self.addr
    }

    /// The ring it tells clients about.
    pub fn ring(&self) -> &RingInfo {
        &self.ring
    }

    /// Whether leave signals reach this front end (see [`FrontEndConfig::leave_signal`]).
    pub(crate) fn takes_leave_signals(&self) -> bool {
        self.leave_signal.is_some()
    }

    /// Serves on a thread of its own.
    ///
    /// # Errors
    /// The thread cannot be spawned.
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name("anna-native".into()).spawn(move || self.run())
    }

    /// Serves until the stop flag is set. Each round reads every waiting message (up to the
    /// configured bound), sends all their requests to the actors as one batch, and answers.
    pub fn run(mut self) {
        let gateway = self.gateway.take().map(|gateway| {
            let stop = Arc::clone(&self.stop);
            std::thread::Builder::new()
                .name("anna-native-tls".into())
                .spawn(move || gateway.run(&stop))
        });
        let tls = if gateway.is_some() { "TLS" } else { "plain" };
        tracing::info!(addr = %self.addr, tls, "native protocol ready");
        while !self.stop.load(Ordering::Relaxed) {
            if let Some(since) = self.leaving {
                // Stop once every key is with the other members (and the answer to the leave
                // request has had time to go out).
                if since.elapsed() >= Duration::from_millis(200) && self.handle.handed_over() {
                    tracing::info!(took = ?since.elapsed(), "every key handed over: leaving");
                    self.stop.store(true, Ordering::SeqCst);
                    break;
                }
                if since.elapsed() >= self.leave_said_at + Duration::from_secs(10) {
                    self.leave_said_at = since.elapsed();
                    let held: u64 = self
                        .handle
                        .reports()
                        .iter()
                        .map(|r| r.stats.keys + r.stats.tombstones)
                        .sum();
                    tracing::warn!(waited = ?since.elapsed(), held, "leaving: still handing keys over to the other members (each key waits for every member that owns it, down ones included)");
                }
            }
            // After the hand-over check: a signal that comes with a finished hand-over does
            // not cancel the leave.
            let raised = self.leave_signal.as_ref().map_or(0, |count| count.load(Ordering::SeqCst));
            while self.leave_signals_seen < raised && !self.stop.load(Ordering::SeqCst) {
                self.leave_signals_seen += 1;
                self.leave_signalled();
            }
            let readable = {
                let mut items = [self.socket.as_poll_item(zmq::POLLIN)];
                zmq::poll(&mut items, 100).is_ok() && items[0].is_readable()
            };
            if readable {
                self.round();
            }
        }
        match gateway {
            Some(Ok(thread)) => {
                let _ = thread.join();
            }
            Some(Err(error)) => tracing::error!(%error, "cannot spawn the native TLS thread"),
            None => {}
        }
        tracing::info!(addr = %self.addr, "native protocol stopped");
    }

    /// A leave signal came: leave for good; if already leaving, stop at once the second time
    /// (see [`FrontEndConfig::leave_signal`]); if this node may not leave, stop.
    fn leave_signalled(&mut self) {
        if self.leaving.is_some() {
            self.signals_while_leaving += 1;
            if self.signals_while_leaving < 2 {
                tracing::warn!(
                    "already leaving the cluster, as a client asked: signal again to stop at once"
                );
                return;
            }
            tracing::warn!("signalled again while leaving: stopping now, as a member that is down");
            self.handle.cancel_leave();
            self.stop.store(true, Ordering::SeqCst);
            return;
        }
        match self.handle.prepare_leave() {
            Ok(()) => {
                tracing::warn!(
                    "leaving the cluster for good, as signalled: handing every key over first (a second signal stops at once)"
                );
                self.leaving = Some(Instant::now());
                self.signals_while_leaving = 1;
            }
            Err(why) => {
                tracing::error!(%why, "cannot leave the cluster: stopping as a member that is down");
                self.stop.store(true, Ordering::SeqCst);
            }
        }
    }

    fn round(&mut self) {
        // (envelope frames to answer with, batch id, how many requests)
        let mut pending: Vec<(Vec<Vec<u8>>, u64, usize)> = Vec::new();
        let mut requests: Vec<Request<V>> = Vec::new();
        for _ in 0..self.max_round {
            let mut frames = match self.socket.recv_multipart(zmq::DONTWAIT) {
                Ok(frames) => frames,
                Err(zmq::Error::EAGAIN) => break,
                Err(error) => {
                    tracing::warn!(%error, "client socket receive failed");
                    break;
                }
            };
            self.stats.messages += 1;
            // ROUTER prepends the sender's identity; a REQ client adds an empty delimiter. A
            // client message is one frame: anything else is refused (to the sender alone).
            let payload = match frames.len() {
                2 => frames.pop(),
                3 if frames[1].is_empty() => frames.pop(),
                _ => None,
            };
            let Some(payload) = payload else {
                self.stats.malformed += 1;
                frames.truncate(1);
                if !frames.is_empty() {
                    self.send(frames, super::encode_error("ERR a client message is one frame"));
                }
                continue;
            };
            let message = match super::decode_client::<V>(&payload) {
                Ok(frame) => {
                    let given = frame.password.as_deref().unwrap_or("").as_bytes();
                    match &self.password {
                        Some(expected) if !constant_time_eq(given, expected.as_bytes()) => {
                            self.stats.unauthenticated += 1;
                            self.send(
                                frames,
                                super::encode_error("NOAUTH wrong or missing password"),
                            );
                            continue;
                        }
                        _ => Ok(frame.message),
                    }
                }
                Err(error) => Err(error),
            };
            if self.handle.ring_version() != self.ring.version {
                self.ring = ring_info(&self.handle, &self.addr, &self.peer_client_addrs);
            }
            match message {
                Ok(ClientMessage::Batch { id, requests: batch }) => {
                    pending.push((frames, id, batch.len()));
                    requests.extend(batch);
                }
                Ok(ClientMessage::Ring) => {
                    let answer = ServerMessage::<V>::Ring(self.ring.clone());
                    self.answer(frames, &answer);
                }
                Ok(ClientMessage::Leave) => match self.handle.prepare_leave() {
                    Ok(()) => {
                        let answer = ServerMessage::<V>::Cluster(super::ClusterInfo {
                            ring_version: self.ring.version,
                            membership: self.handle.membership(),
                        });
                        self.answer(frames, &answer);
                        tracing::warn!(
                            "leaving the cluster for good, as a client asked: handing every key over first"
                        );
                        self.leaving = Some(Instant::now());
                        self.signals_while_leaving = 0;
                    }
                    Err(why) => {
                        self.send(frames, super::encode_error(&format!("ERR cannot leave: {why}")))
                    }
                },
                Ok(ClientMessage::Cluster) => {
                    let answer = ServerMessage::<V>::Cluster(super::ClusterInfo {
                        ring_version: self.ring.version,
                        membership: self.handle.membership(),
                    });
                    self.answer(frames, &answer);
                }
                Ok(ClientMessage::Stats) => {
                    let answer = ServerMessage::<V>::Stats(super::NodeStats {
                        node: self.ring.me,
                        actors: self.handle.reports(),
                        front_end: self.stats(),
                    });
                    self.answer(frames, &answer);
                }
                Err(error) => {
                    self.stats.malformed += 1;
                    tracing::debug!(%error, "malformed client message");
                    self.send(frames, super::encode_error(&format!("ERR {error}")));
                }
            }
        }
        if requests.is_empty() {
            return;
        }
        self.stats.requests += requests.len() as u64;
        let mut results = self.handle.request_batch(requests).into_iter();
        for (frames, id, count) in pending {
            let responses =
                results.by_ref().take(count).map(|r| r.unwrap_or_else(Response::Error)).collect();
            let answer = ServerMessage::Batch { id, ring_version: self.ring.version, responses };
            self.answer(frames, &answer);
        }
    }

    fn stats(&self) -> FrontEndStats {
        let mut stats = self.stats.clone();
        if let Some(counters) = &self.tls_counters {
            stats.tls_accepted = counters.accepted.load(Ordering::Relaxed);
            stats.tls_refused = counters.refused.load(Ordering::Relaxed);
            stats.tls_failed = counters.failed.load(Ordering::Relaxed);
        }
        stats
    }

    fn answer(&mut self, frames: Vec<Vec<u8>>, message: &ServerMessage<V>) {
        match super::encode_server(message) {
            Ok(bytes) => self.send(frames, bytes),
            Err(error) => self.send(frames, super::encode_error(&format!("ERR {error}"))),
        }
    }

    fn send(&mut self, mut frames: Vec<Vec<u8>>, payload: Vec<u8>) {
        frames.push(payload);
        // ROUTER never blocks: an answer to a gone or saturated client is dropped and counted.
        if self.socket.send_multipart(frames, zmq::DONTWAIT).is_err() {
            self.stats.send_failures += 1;
        }
    }
}
