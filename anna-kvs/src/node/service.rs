//! The plug-in point for client-facing front ends: a [`Service`] runs on an actor's own
//! thread, between the actor's own messages (the Redis port is one).

use std::os::fd::AsFd;

use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};

use crate::message::{Request, RequestError, Response};
use crate::value::KvsValue;

/// Client-facing work done on an actor's own thread, as in the paper, where each actor talks
/// to its clients directly instead of through a hand-off thread.
///
/// The actor waits (in `epoll`) on the descriptors the service registers, together with its
/// mailbox and gossip socket. Each round the service does its I/O and hands the actor the
/// engine requests it needs; the actor answers those whose keys it owns on the spot, sends the
/// others to their local owners in one mailbox message per actor (their answers come back
/// through its own mailbox, so two actors waiting on each other both keep serving), and gives
/// the service every answer of the round, in order, once all are in. Rounds overlap: while one
/// waits for another actor, the next can start (a service keeps a client's commands in order
/// by not starting a round for a client whose previous round is still out).
///
/// The Redis port (`crate::redis::RedisService`) is such a service.
pub trait Service<V: KvsValue>: Send {
    /// Whether the service has work that needs no waiting (input already buffered, a new
    /// connection queued). Checked after the actor has announced it may sleep, so work queued
    /// before a [`NodeHandle::wake`](super::NodeHandle::wake) is never missed.
    fn has_work(&self) -> bool;
    /// Round `round`: `ready` lists the registered descriptors with new events since the last
    /// round; `registry` registers new ones. Pushes the engine requests the round needs.
    fn step(
        &mut self,
        round: u64,
        registry: &Registry<'_>,
        ready: &[Readiness],
        requests: &mut Vec<Request<V>>,
    );
    /// The answers to round `round`'s requests, in order (called once for every
    /// [`Service::step`], at once with no answers if it pushed no requests; a request nobody
    /// answered within the node's `request_timeout` gets [`RequestError::Timeout`]).
    fn complete(&mut self, round: u64, answers: Vec<Result<Response<V>, RequestError>>);
    /// The node is shutting down: take no new commands, finish what is in flight, then close.
    fn drain(&mut self) {}
    /// Whether nothing is in flight any more (after [`Service::drain`]).
    fn drained(&self) -> bool {
        true
    }
}

/// New events on a descriptor a [`Service`] registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// The token it was registered with.
    pub token: u64,
    /// Input, a hang-up or an error is waiting.
    pub readable: bool,
    /// Output can be written (or the descriptor failed).
    pub writable: bool,
    /// The peer closed its sending side, or the descriptor hung up: with edge-triggered
    /// events no new one comes for it, so a short read does not mean the input is drained.
    pub closed: bool,
}

/// Where a [`Service`] registers the descriptors its actor waits on.
#[derive(Debug)]
pub struct Registry<'a> {
    /// The actor's `epoll` set.
    pub(super) epoll: &'a Epoll,
}

impl Registry<'_> {
    /// Waits on `fd` for input and output from now on, reporting it with `token`.
    ///
    /// Edge-triggered: an event is reported once per change, so the service reads until the
    /// descriptor has nothing more (a short read or `WouldBlock`) and, after a `WouldBlock` on
    /// write, waits for the next writable event. Closing the descriptor unregisters it.
    ///
    /// # Errors
    /// What `epoll_ctl` says.
    pub fn register(&self, fd: impl AsFd, token: u64) -> std::io::Result<()> {
        let flags = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLOUT
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLET;
        self.epoll.add(fd, EpollEvent::new(flags, token)).map_err(std::io::Error::from)
    }
}
