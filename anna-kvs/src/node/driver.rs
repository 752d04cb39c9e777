//! The loop around one actor, on its own thread: wait in `epoll` (mailbox doorbell, service
//! descriptors) and on the gossip socket, feed the [`Actor`] what arrived, run the actor's
//! [`Service`] round, and carry out what the actor asks (replies, sends).

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TrySendError};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use super::aof::Aof;
use super::mailbox::{Mail, ReplyTo};
use super::service::{Readiness, Registry, Service};
use super::transport::{Inbound, Refusal, SendError, Transport};
use super::{ActorReport, NodeHandle, Shared};
use crate::actor::Actor;
use crate::message::{Input, Output, PeerMessage, Request, RequestError, Response, Token};
use crate::ring::{ActorId, ThreadIndex};
use crate::small_bytes::StoreKey;
use crate::value::KvsValue;

/// Answers being gathered from several places before a deadline: a client batch some of whose
/// requests were forwarded to other nodes (one piece per forward), or a service round whose
/// requests went to several local actors (one piece per actor's batch).
struct Gather<V: KvsValue> {
    /// The answers in so far, by the requester's request index.
    answers: Vec<(usize, Response<V>)>,
    /// Pieces not in yet.
    outstanding: usize,
    /// Past this, what is still out is answered with a timeout (an owner on a dead node never
    /// answers) and forgotten.
    deadline: Instant,
}

impl<V: KvsValue> Gather<V> {
    fn new(answers: Vec<(usize, Response<V>)>, outstanding: usize, deadline: Instant) -> Self {
        Self { answers, outstanding, deadline }
    }

    /// Takes a piece's answers (without copying them when they are the first).
    fn add(&mut self, answers: Vec<(usize, Response<V>)>) {
        if self.answers.is_empty() {
            self.answers = answers;
        } else {
            self.answers.extend(answers);
        }
    }

    /// One piece came in; `true` once every piece has.
    fn piece_done(&mut self) -> bool {
        self.outstanding = self.outstanding.saturating_sub(1);
        self.outstanding == 0
    }

    /// The answers by index `0..len`, a timeout wherever none came.
    fn into_results(self, len: usize) -> Vec<Result<Response<V>, RequestError>> {
        let mut results: Vec<Result<Response<V>, RequestError>> =
            (0..len).map(|_| Err(RequestError::Timeout)).collect();
        for (index, response) in self.answers {
            if let Some(slot) = results.get_mut(index) {
                *slot = match response {
                    Response::Error(error) => Err(error),
                    other => Ok(other),
                };
            }
        }
        results
    }
}

/// A client batch waiting on forwarded requests, and where its answers go.
struct PendingBatch<V: KvsValue> {
    reply: ReplyTo<V>,
    gather: Gather<V>,
}

/// A service round in flight.
struct ServiceRound<V: KvsValue> {
    id: u64,
    /// How many requests the round made.
    len: usize,
    gather: Gather<V>,
}

/// At most one warning about refused network messages per actor this often.
const REFUSAL_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The token of an actor's own doorbell in its `epoll` set.
const DOORBELL_TOKEN: u64 = u64::MAX;

/// The loop around one actor: sockets in, actor, sockets out.
/// How long a forward refused by a link not up yet is tried again.
const UNSENT_RETRY: Duration = Duration::from_secs(1);
/// Most such messages kept (beyond, they are dropped and counted).
const MAX_UNSENT: usize = 4096;

pub(super) struct Driver<V: KvsValue> {
    id: ActorId,
    shared: Arc<Shared<V>>,
    actor: Actor<V>,
    /// Links to the other nodes' actors.
    transport: Transport,
    mailbox: Receiver<Mail<V>>,
    /// (batch number, slot) of each forwarded client request, by the token given to the actor.
    waiting: HashMap<Token, (u64, usize)>,
    /// Batches not fully answered yet (some requests were forwarded), by batch number.
    batches: HashMap<u64, PendingBatch<V>>,
    /// Forwarded requests and their answers that a link not connected yet refused
    /// (`ZMQ_IMMEDIATE`: a member that just joined), tried again each round until the time
    /// given: a client would otherwise wait out its whole timeout for nothing.
    unsent: Vec<(Instant, ActorId, PeerMessage<V>)>,
    next_batch: u64,
    next_token: Token,
    outputs: Vec<Output<V>>,
    report: ActorReport,
    /// Client-facing work on this thread, and its rounds in flight.
    service: Option<Box<dyn Service<V>>>,
    rounds: Vec<ServiceRound<V>>,
    next_round: u64,
    /// Routes the service's requests (affinity: this actor).
    router: NodeHandle<V>,
    /// Reused buffers of the service loop.
    service_requests: Vec<Request<V>>,
    /// What the actor waits on: its doorbell and its service's descriptors (the gossip
    /// socket, a ZeroMQ socket, is polled beside it).
    epoll: Epoll,
    events: Vec<EpollEvent>,
    /// When a refused network message was last logged, and how many were refused since
    /// without a log line.
    last_refusal_log: Option<Instant>,
    refusals_unlogged: u64,
    /// The actor's append-only log, when the node keeps one.
    aof: Option<Aof>,
    /// Answers held until the end of the loop iteration, when everything the iteration changed
    /// is logged in one write (group commit), then sent.
    held: Vec<(ReplyTo<V>, Answers<V>)>,
    /// When a failed log write was last reported.
    last_aof_error: Option<Instant>,
    /// The snapshot being written: the keys still to give it.
    snapshot: Option<SnapshotCursor>,
    /// The node is stopping (see `Shared::draining`), and whether this actor is done.
    draining: bool,
    drained: bool,
    last_drain_resend: Option<Instant>,
    /// No snapshot is started before this (one failed).
    snapshot_retry_at: Option<Instant>,
}

/// A snapshot's walk over the store: the keys held when it began (keys added later are in
/// the log begun with it), and how far it got.
struct SnapshotCursor {
    keys: Vec<StoreKey>,
    next: usize,
    /// The `SAVE`/`BGSAVE` request count it answers.
    asked: u64,
}

/// How often a stopping actor resends what its peers have not acknowledged.
const DRAIN_RESEND: Duration = Duration::from_millis(100);

/// How long after a failed snapshot the next may start.
const SNAPSHOT_RETRY: Duration = Duration::from_secs(5);

/// Keys encoded per snapshot chunk.
const SNAPSHOT_CHUNK_KEYS: usize = 512;
/// Longest a loop iteration spends encoding a snapshot.
const SNAPSHOT_SLICE: Duration = Duration::from_millis(1);

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A batch's answers: (slot in the batch, response).
type Answers<V> = Vec<(usize, Response<V>)>;

impl<V: KvsValue> Driver<V> {
    pub(super) fn new(
        id: ActorId,
        shared: Arc<Shared<V>>,
        inbound: Option<zmq::Socket>,
        mailbox: Receiver<Mail<V>>,
        service: Option<Box<dyn Service<V>>>,
        actor: Actor<V>,
        aof: Option<Aof>,
    ) -> Result<Self, nix::Error> {
        let router = NodeHandle::new(Arc::clone(&shared)).with_affinity(usize::from(id.thread));
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let doorbell = &shared.doorbells[usize::from(id.thread)].bell;
        let edge = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
        epoll.add(doorbell, EpollEvent::new(edge, DOORBELL_TOKEN))?;
        let transport = Transport::new(id, &shared, inbound);
        Ok(Self {
            id,
            shared,
            actor,
            transport,
            mailbox,
            waiting: HashMap::new(),
            batches: HashMap::new(),
            next_batch: 0,
            next_token: 1,
            outputs: Vec::new(),
            report: ActorReport { id: Some(id), ..ActorReport::default() },
            service,
            rounds: Vec::new(),
            next_round: 0,
            router,
            service_requests: Vec::new(),
            epoll,
            events: vec![EpollEvent::empty(); 256],
            last_refusal_log: None,
            refusals_unlogged: 0,
            aof,
            last_aof_error: None,
            held: Vec::new(),
            snapshot: None,
            draining: false,
            drained: false,
            last_drain_resend: None,
            unsent: Vec::new(),
            snapshot_retry_at: None,
        })
    }

    pub(super) fn run(&mut self) {
        self.transport.connect_all();
        let mut ready: Vec<Readiness> = Vec::new();
        while !self.shared.stop.load(Ordering::Relaxed) {
            let now = self.shared.clock.now_us();
            let mut timeout_ms = self.actor.next_epoch_at().saturating_sub(now).div_ceil(1000);
            if self.snapshot.is_some() {
                // Come back soon to feed the snapshot writer.
                timeout_ms = timeout_ms.min(1);
            }
            if self.draining && !self.drained {
                timeout_ms = timeout_ms.min(DRAIN_RESEND.as_millis() as u64);
            }
            if !self.unsent.is_empty() {
                timeout_ms = timeout_ms.min(2);
            }
            if let Some(deadline) = self.rounds.iter().map(|r| r.gather.deadline).min() {
                let left = deadline.saturating_duration_since(Instant::now());
                timeout_ms = timeout_ms.min(left.as_millis() as u64 + 1);
            }
            let idle_start = Instant::now();
            let doorbell = &self.shared.doorbells[usize::from(self.id.thread)];
            doorbell.going_to_sleep();
            // Work queued before the flag went up was not rung for: don't wait then.
            let pending_work = !self.mailbox.is_empty()
                || self.service.as_ref().is_some_and(|s| s.has_work())
                || self.transport.has_input();
            let timeout = if pending_work { 0 } else { timeout_ms.min(u64::from(u16::MAX)) as u16 };
            let waited = match self.transport.inbound() {
                // The gossip socket is a ZeroMQ socket: wait on it and the epoll set together.
                Some(tcp) => {
                    let mut items = [
                        zmq::PollItem::from_fd(self.epoll.0.as_raw_fd(), zmq::POLLIN),
                        tcp.as_poll_item(zmq::POLLIN),
                    ];
                    match zmq::poll(&mut items, i64::from(timeout)) {
                        Ok(_) if items[0].is_readable() => self.epoll.wait(&mut self.events, 0u16),
                        Ok(_) => Ok(0),
                        Err(_) => Err(nix::Error::EINTR),
                    }
                }
                None => self.epoll.wait(&mut self.events, timeout),
            };
            ready.clear();
            for event in &self.events[..waited.unwrap_or(0)] {
                let flags = event.events();
                if event.data() == DOORBELL_TOKEN {
                    continue;
                }
                let failed = EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP;
                ready.push(Readiness {
                    token: event.data(),
                    readable: flags
                        .intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | failed),
                    writable: flags.intersects(EpollFlags::EPOLLOUT | failed),
                    closed: flags.intersects(EpollFlags::EPOLLRDHUP | failed),
                });
            }
            doorbell.woke();
            self.report.idle_ns += idle_start.elapsed().as_nanos() as u64;
            if self.shared.stop.load(Ordering::Relaxed) {
                continue;
            }
            if self.shared.topology.version() != self.actor.topology().version() {
                // A node joined or left: route, gossip and repair by the new ring from now on.
                let topology = self.shared.topology.get();
                self.actor.set_topology(self.shared.clock.now_us(), Arc::clone(&topology));
                self.transport.set_topology(topology);
            }
            self.drain_mailbox();
            self.drain_tcp();
            self.snapshot_work();
            if self.service.is_some() {
                self.start_round(&ready);
            }
            // Everything this iteration changed is logged in one write; then its answers,
            // acknowledgements and messages go out.
            self.commit();
            let now = Instant::now();
            while let Some(round) =
                self.rounds.iter().find(|r| now >= r.gather.deadline).map(|r| r.id)
            {
                self.finish_round(round);
            }
            let start_draining = !self.draining && self.shared.draining.load(Ordering::Relaxed);
            if start_draining {
                self.draining = true;
                if let Some(service) = &mut self.service {
                    service.drain();
                }
            }
            let now = self.shared.clock.now_us();
            if start_draining {
                self.actor.bring_epoch_forward(now);
            }
            if now >= self.actor.next_epoch_at() {
                let start = Instant::now();
                self.actor.handle(now, Input::Tick, &mut self.outputs);
                self.commit();
                self.maybe_snapshot();
                self.expire_batches();
                self.report.gossip_ns += start.elapsed().as_nanos() as u64;
                self.publish();
            }
            if self.draining && !self.drained {
                if self.is_drained() {
                    self.drained = true;
                    self.shared.drained.fetch_add(1, Ordering::SeqCst);
                } else if self.last_drain_resend.is_none_or(|at| at.elapsed() >= DRAIN_RESEND) {
                    // A batch or its acknowledgement may have been dropped (a connection not
                    // up yet): resend without waiting out the backoff.
                    self.last_drain_resend = Some(Instant::now());
                    self.actor.resend_unacked_now(&mut self.outputs);
                    self.commit();
                }
            }
        }
        self.publish();
    }

    /// Stopping, nothing left in flight: no client round, no mail, every change gossiped and
    /// acknowledged (and so logged, here and at the peers).
    fn is_drained(&self) -> bool {
        self.rounds.is_empty()
            && self.held.is_empty()
            && self.mailbox.is_empty()
            && self.actor.is_quiet()
            && self.service.as_ref().is_none_or(|s| s.drained())
    }

    /// Answers, with timeouts, the batches whose forwarded requests are overdue, and forgets
    /// them (so requests to a dead node do not pile up here).
    fn expire_batches(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .batches
            .iter()
            .filter(|(_, b)| now >= b.gather.deadline)
            .map(|(&id, _)| id)
            .collect();
        if expired.is_empty() {
            return;
        }
        // A forward still waiting is one no reply has come for (`deliver` removes answered ones).
        let batches = &mut self.batches;
        self.waiting.retain(|_, &mut (batch, index)| match batches.get_mut(&batch) {
            Some(pending) if expired.contains(&batch) => {
                pending.gather.answers.push((index, Response::Error(RequestError::Timeout)));
                false
            }
            _ => true,
        });
        for id in expired {
            if let Some(batch) = self.batches.remove(&id) {
                self.send_answers(batch.reply, batch.gather.answers);
            }
        }
    }

    /// Runs one round of the service: its I/O, then its requests (owned keys on the spot, the
    /// rest in one message per owning actor).
    fn start_round(&mut self, ready: &[Readiness]) {
        let Some(service) = &mut self.service else { return };
        let mut requests = std::mem::take(&mut self.service_requests);
        let round = self.next_round;
        self.next_round += 1;
        service.step(round, &Registry { epoll: &self.epoll }, ready, &mut requests);
        if requests.is_empty() {
            service.complete(round, Vec::new());
            self.service_requests = requests;
            return;
        }
        let start = Instant::now();
        let me = self.id.thread;
        let len = requests.len();
        let mut answers = Vec::new();
        let per_actor = self.router.group_by_actor(requests.drain(..), |index, error| {
            answers.push((index, Response::Error(error)));
        });
        self.service_requests = requests;
        let shared = &self.shared;
        let mut mine = Vec::new();
        let mut outstanding = 0;
        for (thread, batch) in per_actor.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            if thread == usize::from(me) {
                mine = batch;
                outstanding += 1;
                continue;
            }
            let reply = ReplyTo::Actor { thread: me, round };
            match shared.mailboxes[thread].try_send(Mail::Batch { requests: batch, reply }) {
                Ok(()) => {
                    outstanding += 1;
                    shared.doorbells[thread].ring();
                }
                Err(TrySendError::Full(mail) | TrySendError::Disconnected(mail)) => {
                    // An overloaded (or stopping) actor: these requests fail now rather than
                    // block this actor.
                    if let Mail::Batch { requests, .. } = mail {
                        for (index, _) in requests {
                            answers.push((index, Response::Error(RequestError::Timeout)));
                        }
                    }
                }
            }
        }
        let deadline = Instant::now() + shared.config.request_timeout;
        let gather = Gather::new(answers, outstanding, deadline);
        self.rounds.push(ServiceRound { id: round, len, gather });
        if mine.is_empty() {
            if outstanding == 0 {
                self.finish_round(round);
            }
        } else {
            let now = self.shared.clock.now_us();
            self.serve_batch(now, mine, ReplyTo::Actor { thread: me, round });
        }
        self.report.request_ns += start.elapsed().as_nanos() as u64;
    }

    /// Records the answers to one batch of the service's round; completes the round once
    /// every batch is answered. Answers to an abandoned round are dropped.
    fn on_answers(&mut self, round: u64, answers: Vec<(usize, Response<V>)>) {
        let Some(current) = self.rounds.iter_mut().find(|r| r.id == round) else { return };
        current.gather.add(answers);
        if current.gather.piece_done() {
            self.finish_round(round);
        }
    }

    /// Gives the service its round's answers (a request still unanswered timed out).
    fn finish_round(&mut self, id: u64) {
        let Some(position) = self.rounds.iter().position(|r| r.id == id) else { return };
        let round = self.rounds.swap_remove(position);
        let answers = round.gather.into_results(round.len);
        if let Some(service) = &mut self.service {
            service.complete(id, answers);
        }
    }

    /// Serves a batch of client requests: owned keys on the spot; forwarded ones complete the
    /// batch later, when their replies come back.
    fn serve_batch(&mut self, now: u64, requests: Vec<(usize, Request<V>)>, reply: ReplyTo<V>) {
        let mut answers = Vec::with_capacity(requests.len());
        let batch = self.next_batch;
        let mut outstanding = 0;
        for (index, request) in requests {
            let token = self.next_token;
            self.next_token += 1;
            match self.actor.serve(now, token, request, &mut self.outputs) {
                Some(response) => answers.push((index, response)),
                None => {
                    self.waiting.insert(token, (batch, index));
                    outstanding += 1;
                }
            }
        }
        if outstanding == 0 {
            self.held.push((reply, answers));
        } else {
            self.next_batch += 1;
            let deadline = Instant::now() + self.shared.config.request_timeout;
            let gather = Gather::new(answers, outstanding, deadline);
            self.batches.insert(batch, PendingBatch { reply, gather });
        }
        self.commit_unless_logging();
    }

    /// Without a log there is nothing to group: answer and send at once (lowest latency).
    fn commit_unless_logging(&mut self) {
        if self.aof.is_none() {
            self.commit();
        }
    }

    fn send_answers(&mut self, reply: ReplyTo<V>, answers: Vec<(usize, Response<V>)>) {
        // Before any answer goes out: a flush planned after it is stamped above its writes.
        if let Some(clock) = self.shared.clocks.get(usize::from(self.id.thread)) {
            clock.store(self.actor.clock(), Ordering::Release);
        }
        match reply {
            ReplyTo::Channel(sender) => {
                let _ = sender.send(answers);
            }
            ReplyTo::Actor { thread, round } if thread == self.id.thread => {
                self.on_answers(round, answers);
            }
            ReplyTo::Actor { thread, round } => {
                let Some(mailbox) = self.shared.mailboxes.get(usize::from(thread)) else { return };
                // A full mailbox drops the answers; the waiting round then times out.
                match mailbox.try_send(Mail::Answers { round, answers }) {
                    Ok(()) => self.ring_local(thread),
                    Err(_) => self.report.send_drops += 1,
                }
            }
        }
    }

    fn drain_mailbox(&mut self) {
        // Bounded per round so a flood of requests cannot starve gossip and epochs.
        for _ in 0..4096 {
            let Ok(mail) = self.mailbox.try_recv() else { break };
            let start = Instant::now();
            let now = self.shared.clock.now_us();
            match mail {
                Mail::Batch { requests, reply } => {
                    self.serve_batch(now, requests, reply);
                    self.report.request_ns += start.elapsed().as_nanos() as u64;
                }
                Mail::Answers { round, answers } => {
                    self.on_answers(round, answers);
                    self.report.request_ns += start.elapsed().as_nanos() as u64;
                }
                Mail::Peer(message) => {
                    self.actor.handle(now, Input::Peer(message), &mut self.outputs);
                    self.commit_unless_logging();
                    self.report.gossip_ns += start.elapsed().as_nanos() as u64;
                }
            }
        }
    }

    fn drain_tcp(&mut self) {
        for _ in 0..4096 {
            let Some(bytes) = self.transport.try_recv() else { return };
            let start = Instant::now();
            self.report.bytes_in += bytes.len() as u64;
            match self.transport.decode::<V>(&bytes) {
                Ok(Inbound { message, restarted }) => {
                    if let Some(node) = restarted {
                        tracing::info!(actor = %self.id, node, "a peer node restarted: its batches are numbered anew");
                        self.actor.forget_receipts_from(node);
                    }
                    let now = self.shared.clock.now_us();
                    self.actor.handle(now, Input::Peer(message), &mut self.outputs);
                    self.commit_unless_logging();
                }
                Err(refusal) => self.refused(&refusal, bytes.len()),
            }
            self.report.gossip_ns += start.elapsed().as_nanos() as u64;
        }
    }

    /// Counts a refused message by reason, and says so in the log at most every few seconds
    /// (a flood of forgeries must not flood the log too).
    fn refused(&mut self, refusal: &Refusal, bytes: usize) {
        let report = &mut self.report;
        report.bad_messages += 1;
        *match refusal {
            Refusal::Unauthenticated => &mut report.refused_unauthenticated,
            Refusal::Malformed(_) => &mut report.refused_malformed,
            Refusal::UnknownSender(_) => &mut report.refused_unknown_sender,
            Refusal::OldIncarnation { .. } | Refusal::Misdirected(_) => {
                &mut report.refused_replayed
            }
        } += 1;
        let now = Instant::now();
        if self.last_refusal_log.is_some_and(|at| now.duration_since(at) < REFUSAL_LOG_EVERY) {
            self.refusals_unlogged += 1;
            return;
        }
        self.last_refusal_log = Some(now);
        let unlogged = std::mem::take(&mut self.refusals_unlogged);
        tracing::warn!(actor = %self.id, reason = %refusal, bytes, refused_since_last_warning = unlogged, "refused a message from the network");
    }

    /// Logs the states the actor changed since the last call, in one write (synced with
    /// `appendfsync always`). `false` if that failed: nothing of it may be acknowledged.
    fn persist(&mut self) -> bool {
        let Some(aof) = &mut self.aof else { return true };
        let entries = self.actor.take_journal();
        if entries.is_empty() {
            return true;
        }
        let actor = &self.actor;
        // A delta is logged as it is (replay merges it into what came before); a key without
        // one is logged whole.
        let records = entries.iter().filter_map(|(k, delta)| match delta {
            Some(delta) => Some((&k[..], delta)),
            None => actor.peek(k).map(|v| (&k[..], v)),
        });
        match aof.append(records) {
            Ok(()) => {
                self.report.changes_since_save += entries.len() as u64;
                true
            }
            Err(error) => {
                // Logged next time: the entries stay in the journal.
                self.actor.return_journal(entries);
                self.report.aof_write_errors += 1;
                let now = Instant::now();
                if self.last_aof_error.is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_EVERY)
                {
                    self.last_aof_error = Some(now);
                    tracing::error!(actor = %self.id, %error, "cannot write the append-only file: writes are refused");
                }
                false
            }
        }
    }

    /// Starts a snapshot when one is asked for (`SAVE`, `BGSAVE`) or the logs have outgrown
    /// the last one; called once per epoch.
    fn maybe_snapshot(&mut self) {
        let Some(aof) = &mut self.aof else { return };
        if aof.saving() {
            return;
        }
        let asked = self.shared.save_requests.load(Ordering::Acquire);
        if asked <= self.report.saved_request && !aof.wants_snapshot() {
            return;
        }
        // After a failure, wait before trying again (as Redis does), instead of starting a
        // new log and a new attempt every epoch while the disk is full.
        if self.snapshot_retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let start = Instant::now();
        match aof.begin_snapshot() {
            Ok(()) => {
                let rotated_us = start.elapsed().as_micros() as u64;
                let keys = self.actor.key_list();
                // The flush stamps first: the snapshot replaces the logs that held them.
                let flushes = self.actor.flush_records();
                if !flushes.is_empty()
                    && aof.snapshot_chunk(flushes.iter().map(|(k, v)| (&k[..], v))).is_err()
                {
                    tracing::warn!(actor = %self.id, "the snapshot writer stopped before the flush records");
                }
                let listed_us = start.elapsed().as_micros() as u64 - rotated_us;
                tracing::info!(actor = %self.id, keys = keys.len(), rotated_us, listed_us, "snapshot started");
                self.snapshot = Some(SnapshotCursor { keys, next: 0, asked });
                self.report.saving = true;
                self.report.changes_since_save = 0;
            }
            Err(error) => self.snapshot_failed(asked, error),
        }
    }

    /// Feeds the snapshot being written, a few chunks per loop iteration (at most about a
    /// millisecond of encoding, and only as fast as its writer keeps up), so requests are
    /// never held up behind it; then collects its outcome.
    fn snapshot_work(&mut self) {
        let (Some(aof), Some(cursor)) = (&mut self.aof, &mut self.snapshot) else { return };
        let until = Instant::now() + SNAPSHOT_SLICE;
        while cursor.next < cursor.keys.len() && aof.snapshot_room() && Instant::now() < until {
            let end = (cursor.next + SNAPSHOT_CHUNK_KEYS).min(cursor.keys.len());
            let actor = &self.actor;
            let records = cursor.keys[cursor.next..end]
                .iter()
                .filter_map(|k| actor.peek(k).map(|v| (&k[..], v)));
            if aof.snapshot_chunk(records).is_err() {
                // The writer stopped: its outcome says why.
                cursor.next = cursor.keys.len();
                break;
            }
            cursor.next = end;
        }
        if cursor.next == cursor.keys.len() && aof.finish_snapshot() {
            cursor.keys = Vec::new();
        }
        let Some(outcome) = aof.poll_snapshot() else { return };
        let asked = cursor.asked;
        self.snapshot = None;
        self.report.saving = false;
        match outcome {
            Ok(saved) => {
                tracing::info!(actor = %self.id, bytes = saved.bytes, took_ms = saved.took.as_millis() as u64, "snapshot written");
                self.report.saved_request = self.report.saved_request.max(asked);
                self.report.saves += 1;
                self.report.last_save_unix = unix_now();
                self.report.last_save_ms = saved.took.as_millis() as u64;
                self.report.last_save_error = None;
            }
            Err(error) => self.snapshot_failed(asked, error),
        }
        self.publish();
    }

    fn snapshot_failed(&mut self, asked: u64, error: String) {
        self.snapshot_retry_at = Some(Instant::now() + SNAPSHOT_RETRY);
        tracing::error!(actor = %self.id, %error, "snapshot failed (the logs it was to replace stay, and hold everything)");
        self.report.failed_request = self.report.failed_request.max(asked);
        self.report.last_save_error = Some(error);
        self.report.saving = false;
        self.snapshot = None;
        self.publish();
    }

    /// The group commit: logs what changed (one write, synced with `appendfsync always`),
    /// then sends the held answers (writes refused if the log failed: applied here, their
    /// outcome is unknown to the client, as after a timeout) and every queued message, so no
    /// acknowledgement or forwarded answer leaves before what it confirms is logged.
    fn commit(&mut self) {
        let logged = self.persist();
        for (reply, mut answers) in std::mem::take(&mut self.held) {
            if !logged {
                for (_, answer) in &mut answers {
                    if matches!(answer, Response::Done(_) | Response::Applied(_)) {
                        *answer = Response::Error(RequestError::Refused(
                            "the append-only file could not be written (see the server log)".into(),
                        ));
                    }
                }
            }
            self.send_answers(reply, answers);
        }
        if !logged {
            // Nothing may confirm what is not on disk: acknowledgements are withheld (the
            // sender resends), and answers to forwarded writes too (the origin times out).
            self.outputs.retain(|output| {
                !matches!(
                    output,
                    Output::Send {
                        message: PeerMessage::Ack { .. } | PeerMessage::ForwardReply { .. },
                        ..
                    }
                )
            });
        }
        self.deliver();
    }

    fn deliver(&mut self) {
        if !self.unsent.is_empty() {
            let now = Instant::now();
            for (until, to, message) in std::mem::take(&mut self.unsent) {
                if now < until {
                    self.send_or_keep(to, message, until);
                } else {
                    self.report.send_drops += 1;
                }
            }
        }
        let mut outputs = std::mem::take(&mut self.outputs);
        for output in outputs.drain(..) {
            match output {
                Output::Reply { token, response } => {
                    // A forwarded request came back: fill its slot, and answer the batch once
                    // every slot is filled. (Replies for abandoned tokens are dropped.)
                    let Some((batch, index)) = self.waiting.remove(&token) else { continue };
                    if let Some(pending) = self.batches.get_mut(&batch) {
                        pending.gather.answers.push((index, response));
                        if pending.gather.piece_done()
                            && let Some(done) = self.batches.remove(&batch)
                        {
                            self.send_answers(done.reply, done.gather.answers);
                        }
                    }
                }
                Output::Send { to, message } => self.send(to, message),
            }
        }
        self.outputs = outputs;
    }

    fn send(&mut self, to: ActorId, message: PeerMessage<V>) {
        if to.node == self.id.node {
            let Some(mailbox) = self.shared.mailboxes.get(usize::from(to.thread)) else { return };
            match mailbox.try_send(Mail::Peer(message)) {
                Ok(()) => self.ring_local(to.thread),
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.report.send_drops += 1
                }
            }
            return;
        }
        let until = Instant::now() + UNSENT_RETRY;
        self.send_or_keep(to, message, until);
    }

    /// Sends `message` to a remote actor; a forward or its answer refused by a link that is
    /// not up yet is kept to try again until `until`.
    fn send_or_keep(&mut self, to: ActorId, message: PeerMessage<V>, until: Instant) {
        match self.transport.send(to, &message) {
            Ok(bytes) => self.report.bytes_out += bytes as u64,
            Err(SendError::Dropped)
                if matches!(
                    message,
                    PeerMessage::Forward { .. } | PeerMessage::ForwardReply { .. }
                ) && self.unsent.len() < MAX_UNSENT =>
            {
                self.unsent.push((until, to, message));
            }
            Err(SendError::Dropped | SendError::Gone) => self.report.send_drops += 1,
            Err(SendError::Encode(error)) => {
                self.report.send_drops += 1;
                // Resending the same batch would fail the same way: the actor gives it up.
                if let PeerMessage::Gossip(gossip) = &message {
                    self.actor.undeliverable(to, gossip.seq);
                    tracing::error!(actor = %self.id, to = %to, seq = gossip.seq, %error, "gossip batch cannot be sent: given up");
                } else {
                    tracing::warn!(actor = %self.id, %error, "message not sent");
                }
            }
            Err(SendError::Connect(error)) => {
                tracing::warn!(actor = %self.id, to = %to, %error, "cannot reach peer");
                self.report.send_drops += 1;
            }
        }
    }

    fn ring_local(&mut self, thread: ThreadIndex) {
        if let Some(doorbell) = self.shared.doorbells.get(usize::from(thread)) {
            doorbell.ring();
        }
    }

    fn publish(&mut self) {
        self.report.stats = self.actor.stats();
        self.report.range_roots = self.actor.published_roots();
        self.report.aof_bytes = self.aof.as_ref().map_or(0, Aof::len);
        self.report.snapshot_bytes = self.aof.as_ref().map_or(0, Aof::snapshot_len);
        if let Some(slot) = self.shared.reports.get(usize::from(self.id.thread))
            && let Ok(mut shared) = slot.lock()
        {
            *shared = self.report.clone();
        }
    }
}
