//! Native-protocol messages over TLS.
//!
//! ZeroMQ as bundled here has no transport encryption (its CURVE needs libsodium), so a node
//! whose native port runs TLS listens on plain TCP with rustls instead and hands each decrypted
//! message to the same `ROUTER` socket the ZeroMQ port uses, over `inproc`; the Rust client
//! does the mirror image. Everything above the tunnel — envelopes, passwords, batching,
//! routing — is unchanged. On the wire, inside TLS, each message is a frame:
//!
//! ```text
//! length: u32 big-endian | that many bytes (one native envelope)
//! ```
//!
//! A length above the message limit closes the connection before anything is allocated for it;
//! a handshake that does not finish within [`HANDSHAKE_TIMEOUT`] closes it too. A [`Pipe`]
//! never blocks: the socket not taking a message stops reading from TLS, and TLS output not
//! draining stops reading from the socket, so a slow peer holds at most one message.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

/// How long a TLS handshake may take before the connection is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a poll waits before looking at the stop flag again.
const POLL_MS: i64 = 100;

/// Why a tunnel connection ended.
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    /// The peer closed the connection.
    #[error("closed by the peer")]
    Closed,
    /// The socket failed.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    /// TLS failed (bad certificate, bad record, ...).
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// A frame announced more bytes than a message may have.
    #[error("a frame of {0} bytes is over the message limit")]
    Oversized(usize),
    /// The handshake took too long.
    #[error("the TLS handshake did not finish within {HANDSHAKE_TIMEOUT:?}")]
    HandshakeTimeout,
    /// The ZeroMQ side failed.
    #[error("ZeroMQ: {0}")]
    Zmq(#[from] zmq::Error),
}

/// One TLS connection joined to one ZeroMQ socket.
pub struct Pipe {
    stream: TcpStream,
    tls: rustls::Connection,
    socket: zmq::Socket,
    /// Plaintext read from TLS from `start` on, not yet a whole frame.
    inbound: Vec<u8>,
    start: usize,
    /// A message the socket would not take yet.
    held: Option<Vec<u8>>,
    max_frame: usize,
    opened: Instant,
}

impl std::fmt::Debug for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipe").field("peer", &self.stream.peer_addr().ok()).finish()
    }
}

impl Pipe {
    /// Joins `stream` (made non-blocking here) under `tls` to `socket`.
    ///
    /// # Errors
    /// The stream cannot be made non-blocking.
    pub fn new(
        stream: TcpStream,
        mut tls: rustls::Connection,
        socket: zmq::Socket,
        max_frame: usize,
    ) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        // The pipe bounds what it buffers itself (one message each way).
        tls.set_buffer_limit(None);
        Ok(Self {
            stream,
            tls,
            socket,
            inbound: Vec::new(),
            start: 0,
            held: None,
            max_frame,
            opened: Instant::now(),
        })
    }

    /// What to wait for: on the TCP stream, and on the socket.
    fn events(&self) -> (zmq::PollEvents, zmq::PollEvents) {
        let mut stream = zmq::PollEvents::empty();
        let mut socket = zmq::PollEvents::empty();
        if self.held.is_none() {
            stream |= zmq::POLLIN;
        } else {
            socket |= zmq::POLLOUT;
        }
        if self.tls.wants_write() {
            stream |= zmq::POLLOUT;
        } else if !self.tls.is_handshaking() {
            socket |= zmq::POLLIN;
        }
        (stream, socket)
    }

    fn poll_items(&self) -> [zmq::PollItem<'_>; 2] {
        let (stream, socket) = self.events();
        [zmq::PollItem::from_fd(self.stream.as_raw_fd(), stream), self.socket.as_poll_item(socket)]
    }

    /// Moves whatever can move without blocking, both ways.
    ///
    /// # Errors
    /// The connection is over (closed, failed, misbehaved); drop the pipe.
    pub fn pump(&mut self) -> Result<(), PipeError> {
        if let Some(frame) = self.held.take() {
            send_or_hold(&self.socket, &frame, &mut self.held)?;
        }
        self.read_tls()?;
        self.write_tls()?;
        if self.tls.is_handshaking() && self.opened.elapsed() > HANDSHAKE_TIMEOUT {
            return Err(PipeError::HandshakeTimeout);
        }
        Ok(())
    }

    fn read_tls(&mut self) -> Result<(), PipeError> {
        let mut plain = [0u8; 16 * 1024];
        while self.held.is_none() {
            match self.tls.read_tls(&mut self.stream) {
                Ok(0) => return Err(PipeError::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            if let Err(error) = self.tls.process_new_packets() {
                // Tell the peer why (best effort), then give up.
                let _ = self.tls.write_tls(&mut self.stream);
                return Err(error.into());
            }
            loop {
                match self.tls.reader().read(&mut plain) {
                    Ok(0) => return Err(PipeError::Closed),
                    Ok(n) => self.inbound.extend_from_slice(&plain[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.into()),
                }
                self.deliver_frames()?;
            }
            self.deliver_frames()?;
        }
        Ok(())
    }

    /// Hands every whole frame read so far to the socket, until it stops taking them.
    fn deliver_frames(&mut self) -> Result<(), PipeError> {
        while self.held.is_none() {
            let buffered = &self.inbound[self.start..];
            let Some(header) = buffered.first_chunk::<4>() else { break };
            let len = u32::from_be_bytes(*header) as usize;
            if len > self.max_frame {
                return Err(PipeError::Oversized(len));
            }
            if buffered.len() < 4 + len {
                break;
            }
            let (from, to) = (self.start + 4, self.start + 4 + len);
            self.start = to;
            send_or_hold(&self.socket, &self.inbound[from..to], &mut self.held)?;
        }
        if self.start == self.inbound.len() {
            self.inbound.clear();
            self.start = 0;
        } else if self.start > self.inbound.len() / 2 {
            self.inbound.drain(..self.start);
            self.start = 0;
        }
        Ok(())
    }

    fn write_tls(&mut self) -> Result<(), PipeError> {
        loop {
            while self.tls.wants_write() {
                match self.tls.write_tls(&mut self.stream) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if self.tls.is_handshaking() {
                return Ok(());
            }
            let message = match self.socket.recv_bytes(zmq::DONTWAIT) {
                Ok(message) => message,
                Err(zmq::Error::EAGAIN) => return Ok(()),
                Err(error) => return Err(error.into()),
            };
            let len =
                u32::try_from(message.len()).map_err(|_| PipeError::Oversized(message.len()))?;
            let mut writer = self.tls.writer();
            writer.write_all(&len.to_be_bytes())?;
            writer.write_all(&message)?;
        }
    }
}

/// Hands `frame` to `socket`, or keeps a copy in `held` if the socket would block.
fn send_or_hold(
    socket: &zmq::Socket,
    frame: &[u8],
    held: &mut Option<Vec<u8>>,
) -> Result<(), PipeError> {
    match socket.send(frame, zmq::DONTWAIT) {
        Ok(()) => Ok(()),
        Err(zmq::Error::EAGAIN) => {
            *held = Some(frame.to_vec());
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

/// A ZeroMQ `DEALER` socket in `context`, with the limits every tunnel socket has.
fn dealer(context: &zmq::Context, max_frame: usize) -> Result<zmq::Socket, zmq::Error> {
    let socket = context.socket(zmq::DEALER)?;
    socket.set_linger(0)?;
    socket.set_maxmsgsize(i64::try_from(max_frame).unwrap_or(i64::MAX))?;
    socket.set_sndhwm(1000)?;
    socket.set_rcvhwm(1000)?;
    Ok(socket)
}

/// A fresh `inproc` endpoint name.
pub(crate) fn inproc_endpoint(what: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("inproc://anna-tls-{what}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The node side's counters.
#[derive(Debug, Default)]
pub struct GatewayCounters {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections refused because the gateway was full.
    pub refused: AtomicU64,
    /// Connections that ended in an error (TLS, oversized frame, handshake timeout).
    pub failed: AtomicU64,
}

/// The node side: accepts TLS connections and joins each to the native `ROUTER` socket bound
/// at an `inproc` endpoint of the same ZeroMQ context.
pub struct Gateway {
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    context: zmq::Context,
    router: String,
    pipes: Vec<Pipe>,
    max_connections: usize,
    max_frame: usize,
    counters: Arc<GatewayCounters>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("addr", &self.listener.local_addr().ok())
            .field("connections", &self.pipes.len())
            .finish()
    }
}

impl Gateway {
    /// Listens on `host:port`, joining connections to the `ROUTER` bound at `router` in `context`.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn bind(
        (host, port): (&str, u16),
        config: Arc<rustls::ServerConfig>,
        context: zmq::Context,
        router: String,
        max_connections: usize,
        max_frame: usize,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind((host, port))?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            config,
            context,
            router,
            pipes: Vec::new(),
            max_connections,
            max_frame,
            counters: Arc::default(),
        })
    }

    /// The bound address.
    ///
    /// # Errors
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The counters, shared with whoever reports them.
    pub fn counters(&self) -> Arc<GatewayCounters> {
        Arc::clone(&self.counters)
    }

    /// Serves until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            {
                let mut items =
                    vec![zmq::PollItem::from_fd(self.listener.as_raw_fd(), zmq::POLLIN)];
                for pipe in &self.pipes {
                    items.extend(pipe.poll_items());
                }
                if zmq::poll(&mut items, POLL_MS).is_err() {
                    continue;
                }
            }
            self.accept();
            let counters = &self.counters;
            self.pipes.retain_mut(|pipe| match pipe.pump() {
                Ok(()) => true,
                Err(PipeError::Closed) => false,
                Err(error) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%error, "native TLS connection dropped");
                    false
                }
            });
        }
    }

    fn accept(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) => {
                    tracing::warn!(%error, "native TLS accept failed");
                    return;
                }
            };
            if self.pipes.len() >= self.max_connections {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match self.join(stream) {
                Ok(pipe) => {
                    self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                    self.pipes.push(pipe);
                }
                Err(error) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "cannot set up a native TLS connection");
                }
            }
        }
    }

    fn join(&self, stream: TcpStream) -> Result<Pipe, PipeError> {
        let tls = rustls::ServerConnection::new(Arc::clone(&self.config))?;
        let socket = dealer(&self.context, self.max_frame)?;
        socket.connect(&self.router)?;
        Ok(Pipe::new(stream, tls.into(), socket, self.max_frame)?)
    }
}

/// The client side of one node's connection: a thread that dials the node over TLS and joins
/// the connection to an `inproc` endpoint the client's own socket connects to. Dropping it
/// ends the thread.
#[derive(Debug)]
pub struct Tunnel {
    endpoint: String,
    stop: Arc<AtomicBool>,
}

impl Tunnel {
    /// Binds an `inproc` endpoint in `context` and starts dialling `addr` (`host:port`; the
    /// host is the name the certificate must carry). Failures to connect show up as a node
    /// that does not answer.
    ///
    /// # Errors
    /// The socket or the thread cannot be created, or the host is not a valid server name.
    pub fn open(
        context: &zmq::Context,
        addr: &str,
        config: Arc<rustls::ClientConfig>,
        connect_timeout: Duration,
        max_frame: usize,
    ) -> Result<Self, PipeError> {
        let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?} is not a server name"))
        })?;
        let socket = dealer(context, max_frame)?;
        let endpoint = inproc_endpoint("client");
        socket.bind(&endpoint)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let addr = addr.to_owned();
        std::thread::Builder::new().name("anna-tls-client".into()).spawn(move || {
            let run = || -> Result<(), PipeError> {
                let target = addr.to_socket_addrs()?.next().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("{addr} has no address"))
                })?;
                let stream = TcpStream::connect_timeout(&target, connect_timeout)?;
                let tls = rustls::ClientConnection::new(config, name)?;
                let mut pipe = Pipe::new(stream, tls.into(), socket, max_frame)?;
                while !thread_stop.load(Ordering::Relaxed) {
                    {
                        let mut items = pipe.poll_items();
                        zmq::poll(&mut items, POLL_MS)?;
                    }
                    pipe.pump()?;
                }
                Ok(())
            };
            if let Err(error) = run() {
                tracing::debug!(%error, %addr, "native TLS connection ended");
            }
        })?;
        Ok(Self { endpoint, stop })
    }

    /// Where the client's socket connects.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
