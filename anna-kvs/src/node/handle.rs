//! [`NodeHandle`]: how a thread outside the actors (or an actor's [`Service`](super::Service))
//! issues requests to a node: routing each key to a local owner, enforcing the node's size
//! limits, and waiting with a deadline.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::mailbox::{Mail, ReplyTo};
use super::{ActorReport, NodeConfig, Shared};
use crate::message::{Request, RequestError, Response};
use crate::ring::{ActorId, Key, NodeIndex, ThreadIndex, Topology};
use crate::value::KvsValue;

/// The clocks of a node's actors, readable from anywhere (a flush takes its stamp above them).
#[derive(Clone, Debug)]
pub struct NodeClocks(Arc<[std::sync::atomic::AtomicU64]>);

impl NodeClocks {
    /// The newest stamp time any actor handed out or saw, as of its last answers: a write the
    /// node acknowledged before this call is stamped at or below it.
    pub fn newest(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Acquire)).max().unwrap_or(0)
    }
}

/// Issues requests to a node from one thread. Cloning makes a new handle with its own sockets.
pub struct NodeHandle<V: KvsValue> {
    shared: Arc<Shared<V>>,
    next: usize,
    /// Set by [`NodeHandle::request_at`] for one request.
    pinned: Option<usize>,
    /// The local actor this handle prefers when it owns the key (see
    /// [`NodeHandle::with_affinity`]).
    affinity: Option<usize>,
    /// Reused buffer for a key's owners.
    owners: Vec<ActorId>,
    /// The ring version this handle routes with (refreshed when the node's changes).
    ring: Arc<Topology>,
}

impl<V: KvsValue> std::fmt::Debug for NodeHandle<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle").field("node", &self.shared.me).finish()
    }
}

impl<V: KvsValue> Clone for NodeHandle<V> {
    fn clone(&self) -> Self {
        Self::new(Arc::clone(&self.shared))
    }
}

impl<V: KvsValue> NodeHandle<V> {
    pub(super) fn new(shared: Arc<Shared<V>>) -> Self {
        let ring = shared.topology.get();
        Self { shared, next: 0, pinned: None, affinity: None, owners: Vec::new(), ring }
    }

    /// Per-actor counters of the node, as of each actor's last epoch.
    pub fn reports(&self) -> Vec<ActorReport> {
        self.shared.reports()
    }

    /// The clocks of the node's actors: each the newest stamp time it handed out or saw, as
    /// of its last answers (see [`NodeClocks::newest`]).
    pub fn clocks(&self) -> NodeClocks {
        NodeClocks(Arc::clone(&self.shared.clocks))
    }

    /// How many actors the node runs (the `actor` of a [`Request::Local`] is below this).
    pub fn local_actors(&self) -> usize {
        self.shared.mailboxes.len()
    }

    /// The cluster's members as the node's failure detector sees them (`None` for a node
    /// without a gossip address).
    pub fn membership(&self) -> Option<super::MembershipReport> {
        self.shared.membership.as_ref().map(|m| m.report())
    }

    /// Starts leaving the cluster for good: from now on the node routes as if it were gone, so
    /// its actors hand every key over to the members that own it now and drop it once they
    /// acknowledge ([`NodeHandle::handed_over`] says when that is done); its next stop then
    /// drains its last changes, tells the members it leaves (each takes it out of its ring),
    /// and marks its data directory as left, so the directory cannot start a member again.
    ///
    /// # Errors
    /// Why it may not leave: it has no failure detector (no gossip address); keys have fewer
    /// than two copies on distinct nodes (see [`crate::Replication::allows_membership_changes`]);
    /// or no other member is alive to keep its keys.
    pub fn prepare_leave(&self) -> Result<(), String> {
        let Some(membership) = &self.shared.membership else {
            return Err("this node is not part of a cluster (it has no gossip address)".into());
        };
        if let Some(why) = self.shared.config.replication.membership_changes_refused() {
            return Err(why);
        }
        let others = membership
            .report()
            .members
            .iter()
            .filter(|m| !m.me && !m.id.is_seed() && m.state == super::MemberState::Alive)
            .count();
        if others == 0 {
            return Err("no other member is alive: the last member cannot leave (its keys would leave with it)".into());
        }
        membership.leave_for_good();
        Ok(())
    }

    /// Gives up leaving for good, for a node about to stop before its hand-over finished: it
    /// stops as a member (down, still in every ring, its directory able to start it again).
    /// What it handed over so far is with the other members; what it still holds is in its
    /// directory.
    pub fn cancel_leave(&self) {
        if let Some(membership) = &self.shared.membership {
            membership.cancel_leave_for_good();
        }
    }

    /// Whether a node leaving for good has handed every key over: its actors hold nothing
    /// (no key, no tombstone waiting for acknowledgements), as of their last epoch, under a
    /// ring that leaves this node out.
    pub fn handed_over(&self) -> bool {
        let topology = self.shared.topology.get();
        !topology.has_actor(ActorId::new(self.shared.me, 0))
            && self.shared.reports().iter().all(|r| r.stats.keys == 0 && r.stats.tombstones == 0)
    }

    /// The version of the ring the node routes with now.
    pub fn ring_version(&self) -> u64 {
        self.shared.topology.version()
    }

    /// The cluster topology the node routes with.
    pub fn topology(&self) -> Arc<Topology> {
        self.shared.topology.get()
    }

    /// The node's index in the cluster.
    pub fn index(&self) -> NodeIndex {
        self.shared.me
    }

    /// The configuration the node runs with (its thread count resolved).
    pub fn config(&self) -> &NodeConfig {
        &self.shared.config
    }

    /// The node's id (random, kept in its data directory) and this start's incarnation.
    pub fn identity(&self) -> (u64, u64) {
        (self.shared.identity.node_id, self.shared.incarnation)
    }

    /// Whether the node keeps logs and snapshots (a data directory with `appendonly`).
    pub fn persistent(&self) -> bool {
        let persistence = &self.shared.config.persistence;
        persistence.dir.is_some() && persistence.appendonly
    }

    /// Asks every actor for a snapshot (`BGSAVE`), started at its next epoch; returns the
    /// request's number. The save is done once every actor's
    /// [`ActorReport::saved_request`] has reached it; it failed if an actor's
    /// [`ActorReport::failed_request`] did first. See [`save_outcome`](Self::save_outcome).
    pub fn request_save(&self) -> u64 {
        let number = self.shared.save_requests.fetch_add(1, Ordering::AcqRel) + 1;
        for thread in 0..self.shared.doorbells.len() {
            self.wake(thread);
        }
        number
    }

    /// Where save request `number` stands: `None` while an actor still works on it,
    /// `Some(Err(why))` once one failed, `Some(Ok(()))` once all have written a snapshot
    /// that answers it.
    pub fn save_outcome(&self, number: u64) -> Option<Result<(), String>> {
        let reports = self.reports();
        if let Some(failed) =
            reports.iter().find(|r| r.failed_request >= number && r.saved_request < number)
        {
            return Some(Err(failed
                .last_save_error
                .clone()
                .unwrap_or_else(|| "snapshot failed".into())));
        }
        reports.iter().all(|r| r.saved_request >= number).then_some(Ok(()))
    }

    /// Reads `key`.
    ///
    /// # Errors
    /// Oversized keys, timeouts, shutdown.
    pub fn get(&mut self, key: impl Into<Key>) -> Result<Option<V>, RequestError> {
        match self.request(Request::Get { key: key.into() })? {
            Response::Value(value) => Ok(value),
            other => Err(unexpected(other)),
        }
    }

    /// Merges `value` into `key`; with `stamp_here` the serving actor stamps it.
    ///
    /// # Errors
    /// Oversized keys or values, stale stamps, timeouts, shutdown.
    pub fn put(
        &mut self,
        key: impl Into<Key>,
        value: V,
        stamp_here: bool,
    ) -> Result<(), RequestError> {
        match self.request(Request::Put { key: key.into(), value, stamp_here })? {
            Response::Done(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes `key`.
    ///
    /// # Errors
    /// Oversized keys, timeouts, shutdown.
    pub fn delete(&mut self, key: impl Into<Key>) -> Result<(), RequestError> {
        match self.request(Request::Delete { key: key.into() })? {
            Response::Done(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Sends any request to a replica owner of its key on this node (or, if the key lives only
    /// on other nodes, to a local actor that forwards it) and waits for the answer.
    ///
    /// # Errors
    /// See [`RequestError`].
    pub fn request(&mut self, request: Request<V>) -> Result<Response<V>, RequestError> {
        self.request_batch(vec![request]).pop().unwrap_or(Err(RequestError::Timeout))
    }

    /// Sends `request` to local actor `thread` whether or not it owns the key (a non-owner
    /// forwards it), e.g. to read one particular replica.
    ///
    /// # Errors
    /// See [`RequestError`].
    pub fn request_at(
        &mut self,
        thread: ThreadIndex,
        request: Request<V>,
    ) -> Result<Response<V>, RequestError> {
        self.pinned = Some(usize::from(thread) % self.shared.mailboxes.len());
        let result = self.request(request);
        self.pinned = None;
        result
    }

    /// Prefer local actor `thread` whenever it replicates the key. Every request of this
    /// handle for a key then goes to the same replica, so the handle reads its own writes (a
    /// Redis connection uses one handle with an affinity spread over the actors).
    #[must_use]
    pub fn with_affinity(mut self, thread: usize) -> Self {
        self.affinity = Some(thread % self.shared.mailboxes.len());
        self
    }

    /// Sends every request, then waits for every answer: one doorbell per actor for the whole
    /// batch (pipelined commands). Answers come back in request order.
    pub fn request_batch(
        &mut self,
        requests: Vec<Request<V>>,
    ) -> Vec<Result<Response<V>, RequestError>> {
        let shared = Arc::clone(&self.shared);
        let config = &shared.config;
        let deadline = Instant::now() + config.request_timeout;
        let mut results: Vec<Result<Response<V>, RequestError>> =
            (0..requests.len()).map(|_| Err(RequestError::Timeout)).collect();
        let per_actor = self.group_by_actor(requests, |index, error| results[index] = Err(error));
        let (reply_tx, reply_rx) = crossbeam_channel::unbounded();
        let mut expected = 0;
        for (thread, batch) in per_actor.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let mail = Mail::Batch { requests: batch, reply: ReplyTo::Channel(reply_tx.clone()) };
            if shared.mailboxes[thread].send_deadline(mail, deadline).is_ok() {
                expected += 1;
                self.ring(thread);
            }
        }
        drop(reply_tx);
        for _ in 0..expected {
            let Ok(answers) = reply_rx.recv_deadline(deadline) else {
                if shared.stop.load(Ordering::Relaxed) {
                    for result in &mut results {
                        if matches!(result, Err(RequestError::Timeout)) {
                            *result = Err(RequestError::ShuttingDown);
                        }
                    }
                }
                break;
            };
            for (index, response) in answers {
                results[index] = match response {
                    Response::Error(error) => Err(error),
                    other => Ok(other),
                };
            }
        }
        results
    }

    /// Groups `requests` (numbered in order) by the local actor each goes to; one over the
    /// node's limits, or any while the node stops, is refused through `refuse` instead.
    pub(super) fn group_by_actor(
        &mut self,
        requests: impl IntoIterator<Item = Request<V>>,
        mut refuse: impl FnMut(usize, RequestError),
    ) -> Vec<Vec<(usize, Request<V>)>> {
        let mut per_actor: Vec<Vec<(usize, Request<V>)>> =
            (0..self.shared.mailboxes.len()).map(|_| Vec::new()).collect();
        for (index, request) in requests.into_iter().enumerate() {
            match self.shared.config.check_request(&request) {
                Err(error) => refuse(index, error),
                Ok(()) if self.shared.stop.load(Ordering::Relaxed) => {
                    refuse(index, RequestError::ShuttingDown);
                }
                Ok(()) => match &request {
                    Request::Local { actor, .. } => match per_actor.get_mut(usize::from(*actor)) {
                        Some(queue) => queue.push((index, request)),
                        None => refuse(index, RequestError::Refused(format!("no actor {actor}"))),
                    },
                    _ => {
                        let thread = self.pick_actor(request.key());
                        per_actor[thread].push((index, request));
                    }
                },
            }
        }
        per_actor
    }

    /// The handle's affinity actor if it owns `key`, else a local owner chosen by the key (so
    /// one key always goes to the same replica), else any local actor (which forwards).
    fn pick_actor(&mut self, key: &[u8]) -> usize {
        if let Some(thread) = self.pinned {
            return thread;
        }
        self.shared.topology.refresh(&mut self.ring);
        let topology = &self.ring;
        if topology.is_full() {
            return self.affinity.unwrap_or(0);
        }
        topology.owners_into(key, None, &mut self.owners);
        let me = self.shared.me;
        if let Some(thread) = self.affinity
            && self.owners.iter().any(|a| a.node == me && usize::from(a.thread) == thread)
        {
            return thread;
        }
        match self.owners.iter().find(|a| a.node == me) {
            Some(owner) => usize::from(owner.thread),
            None => {
                self.next = self.next.wrapping_add(1);
                self.next % self.shared.mailboxes.len()
            }
        }
    }

    fn ring(&mut self, thread: usize) {
        self.shared.doorbells[thread].ring();
    }

    /// Wakes local actor `thread` if it is waiting, so its [`Service`](super::Service) sees work queued for it
    /// (call after queueing).
    pub fn wake(&self, thread: usize) {
        if let Some(doorbell) = self.shared.doorbells.get(thread) {
            doorbell.ring();
        }
    }
}

/// A response of the wrong kind for its request (never a timeout: the node did answer).
fn unexpected<V: KvsValue>(response: Response<V>) -> RequestError {
    match response {
        Response::Error(e) => e,
        other => RequestError::UnexpectedAnswer(format!("{other:?}")),
    }
}

impl<V: KvsValue> crate::levels::Store<V> for NodeHandle<V> {
    fn get(&mut self, key: &Key) -> Result<Option<V>, RequestError> {
        NodeHandle::get(self, key.clone())
    }
    fn put(&mut self, key: &Key, value: V) -> Result<(), RequestError> {
        NodeHandle::put(self, key.clone(), value, false)
    }
    fn put_here(
        &mut self,
        key: &Key,
        value: V,
    ) -> Result<Option<lattice_core::Stamp>, RequestError> {
        match self.request(Request::Put { key: key.clone(), value, stamp_here: true })? {
            Response::Done(stamp) => Ok(stamp),
            other => Err(unexpected(other)),
        }
    }
    fn now(&self) -> u64 {
        self.shared.clock.now_us()
    }
}
