//! How actors of one node reach each other without serializing: a bounded mailbox of [`Mail`]
//! per actor, a [`Doorbell`] that wakes an actor waiting in `epoll`, and the node's [`Clock`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::message::{PeerMessage, Request, Response};
use crate::ring::ThreadIndex;
use crate::value::KvsValue;

/// What travels in a local actor's mailbox.
pub(super) enum Mail<V: KvsValue> {
    /// Client requests, answered together: one message in, one message out.
    Batch {
        requests: Vec<(usize, Request<V>)>,
        reply: ReplyTo<V>,
    },
    /// The answers to a batch this actor's [`Service`](super::Service) sent to another local actor.
    Answers {
        round: u64,
        answers: Vec<(usize, Response<V>)>,
    },
    Peer(PeerMessage<V>),
}

/// Where a batch's answers go.
pub(super) enum ReplyTo<V: KvsValue> {
    /// A thread blocked in [`NodeHandle::request_batch`](super::NodeHandle::request_batch).
    Channel(Sender<Vec<(usize, Response<V>)>>),
    /// The round of a local actor's [`Service`](super::Service) (never blocks either actor).
    Actor { thread: ThreadIndex, round: u64 },
}

/// Microseconds of wall-clock time, advancing monotonically from the node's start (so epochs
/// keep their pace if the system clock is stepped, and stamps stay comparable across nodes).
#[derive(Clone, Copy, Debug)]
pub(super) struct Clock {
    wall_at_start_us: u64,
    start: Instant,
}

impl Clock {
    pub(super) fn new() -> Self {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Self { wall_at_start_us: wall.as_micros() as u64, start: Instant::now() }
    }
    pub(super) fn now_us(&self) -> u64 {
        self.wall_at_start_us + self.start.elapsed().as_micros() as u64
    }
}

/// Wakes an actor waiting in `epoll`: an eventfd in the actor's set, edge-triggered, so a
/// ring is one `write` and the actor never has to read it back. It is written only when the
/// actor may be asleep (checked with a flag, Dekker-style: the sender queues its mail and then
/// looks at the flag; the actor raises the flag and then looks at its mailbox, so one of the
/// two always sees the other).
pub(super) struct Doorbell {
    /// The eventfd in the actor's `epoll` set.
    pub(super) bell: EventFd,
    /// Raised by the actor before it may sleep; a sender that finds it up rings.
    asleep: AtomicBool,
}

impl Doorbell {
    pub(super) fn new() -> nix::Result<Self> {
        let bell = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        Ok(Self { bell, asleep: AtomicBool::new(false) })
    }

    /// Call after queueing mail for the actor.
    pub(super) fn ring(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.asleep.swap(false, Ordering::SeqCst) {
            self.ring_now();
        }
    }

    /// Wakes the actor whatever it is doing (shutdown). Each write raises an event; the
    /// counter it adds to is never read (it would take 2^64 rings to fill).
    pub(super) fn ring_now(&self) {
        let _ = self.bell.write(1);
    }

    /// The actor is about to check its mailbox and sleep.
    pub(super) fn going_to_sleep(&self) {
        self.asleep.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    /// The actor woke up.
    pub(super) fn woke(&self) {
        self.asleep.store(false, Ordering::SeqCst);
    }
}
