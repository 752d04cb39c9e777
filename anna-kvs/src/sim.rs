//! A deterministic simulated network for clusters of [`Actor`]s.
//!
//! The same actor code that runs on ZeroMQ runs here, on virtual time, with every message
//! subject to seeded faults: drops, duplicates, delays (hence reordering) and partitions. Given
//! the same seed, a run is exactly the same, so a failing seed replays.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;

use crate::actor::{Actor, ActorConfig};
use crate::message::{Input, Output, PeerMessage, Request, Response, Token};
use crate::ring::{ActorId, Topology};
use crate::value::KvsValue;

/// A small, fast, seeded random number generator (SplitMix64): the simulation's only source of
/// randomness.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator from `seed`.
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// A uniform float in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }
    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() <= p && p > 0.0
    }
}

/// What the simulated network does to messages.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Probability a message is lost.
    pub drop: f64,
    /// Probability a message is delivered twice.
    pub duplicate: f64,
    /// Largest delivery delay in µs (each message draws uniformly up to it, so messages overtake
    /// each other).
    pub max_delay_us: u64,
}

impl Faults {
    /// A perfect network with a fixed small delay.
    pub const NONE: Self = Self { drop: 0.0, duplicate: 0.0, max_delay_us: 1_000 };
}

/// A cluster of actors on a simulated network.
#[derive(Debug)]
pub struct Sim<V: KvsValue> {
    rng: SimRng,
    now: u64,
    faults: Faults,
    actors: BTreeMap<ActorId, Actor<V>>,
    /// Messages in flight, by delivery time then send order.
    queue: BinaryHeap<Reverse<(u64, u64, ActorId)>>,
    /// Each message in flight with its sender and the sender's life when it was sent.
    bodies: HashMap<u64, (ActorId, u32, PeerMessage<V>)>,
    /// Per actor: how many times it restarted (messages from earlier lives are dropped on
    /// arrival, as the real transport refuses them).
    lives: BTreeMap<ActorId, u32>,
    config: ActorConfig,
    topology: Arc<Topology>,
    sent: u64,
    /// Actors that cannot currently reach each other: each set is one side of a partition.
    partition: Option<BTreeSet<ActorId>>,
    replies: HashMap<Token, Response<V>>,
    /// Per actor, how far its clock runs ahead of virtual time (clock skew), in µs.
    skew: BTreeMap<ActorId, u64>,
    next_token: Token,
    scratch: Vec<Output<V>>,
    /// Messages lost to drops and partitions.
    pub lost: u64,
    /// Messages delivered twice.
    pub duplicated: u64,
}

impl<V: KvsValue> Sim<V> {
    /// Every actor of `topology`, empty, at time 0.
    pub fn new(topology: Topology, config: ActorConfig, faults: Faults, seed: u64) -> Self {
        let topology = Arc::new(topology);
        let mut rng = SimRng::new(seed);
        let actors = topology
            .all_actors()
            .map(|id| {
                // Stagger epochs so actors do not gossip in lockstep.
                let offset = rng.below(config.epoch_us.max(1));
                (id, Actor::new(id, Arc::clone(&topology), config.clone(), offset))
            })
            .collect();
        Self {
            lives: BTreeMap::new(),
            config,
            topology,
            rng,
            now: 0,
            faults,
            actors,
            queue: BinaryHeap::new(),
            bodies: HashMap::new(),
            sent: 0,
            partition: None,
            replies: HashMap::new(),
            skew: BTreeMap::new(),
            next_token: 1,
            scratch: Vec::new(),
            lost: 0,
            duplicated: 0,
        }
    }

    /// Virtual time now (µs).
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The simulation's generator, for drawing workloads from the same seed.
    pub fn rng(&mut self) -> &mut SimRng {
        &mut self.rng
    }

    /// The actors.
    pub fn actors(&self) -> &BTreeMap<ActorId, Actor<V>> {
        &self.actors
    }

    /// Changes the faults from now on.
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// Gives every actor a clock running ahead of virtual time by a random amount up to
    /// `max_us` (fixed per actor), so stamps from different actors disagree as real clocks do.
    pub fn skew_clocks(&mut self, max_us: u64) {
        let ids: Vec<ActorId> = self.actors.keys().copied().collect();
        for id in ids {
            let skew = self.rng.below(max_us.max(1));
            self.skew.insert(id, skew);
        }
    }

    fn skew_of(&self, id: ActorId) -> u64 {
        self.skew.get(&id).copied().unwrap_or(0)
    }

    /// Cuts `side` off from every other actor (messages across are lost) until [`heal`](Self::heal).
    pub fn partition(&mut self, side: BTreeSet<ActorId>) {
        self.partition = Some(side);
    }

    /// Crashes every actor of `node` and starts it again with an empty store (a lost disk, or
    /// a node with no persistence), a new writer id and catch-up on: what it had is only at
    /// the other replicas now. Messages its earlier life sent that are still in flight are
    /// dropped on arrival; the other actors learn of the restart as the real transport tells
    /// them ([`Actor::forget_receipts_from`]).
    pub fn restart_empty(&mut self, node: crate::ring::NodeIndex) {
        let restarted: Vec<ActorId> =
            self.actors.keys().copied().filter(|a| a.node == node).collect();
        for id in restarted {
            let life = self.lives.entry(id).or_insert(0);
            *life += 1;
            let config = ActorConfig {
                writer: Some((u64::from(*life) << 40) | id.writer_id()),
                catch_up: true,
                ..self.config.clone()
            };
            let now = self.now + self.skew_of(id);
            self.actors.insert(id, Actor::new(id, Arc::clone(&self.topology), config, now));
        }
        for actor in self.actors.values_mut().filter(|a| a.id().node != node) {
            actor.forget_receipts_from(node);
        }
    }

    /// Ends the partition.
    pub fn heal(&mut self) {
        self.partition = None;
    }

    /// Hands `request` to actor `at` as a client request now; returns the token its reply will
    /// carry (see [`reply`](Self::reply)). A forwarded request may never be answered.
    pub fn submit(&mut self, at: ActorId, request: Request<V>) -> Token {
        let token = self.next_token;
        self.next_token += 1;
        self.feed(at, Input::Client { token, request });
        token
    }

    /// The reply to `token`, once it has arrived.
    pub fn reply(&mut self, token: Token) -> Option<Response<V>> {
        self.replies.remove(&token)
    }

    /// Advances virtual time by `duration` µs, delivering messages and running epochs as due.
    pub fn run_for(&mut self, duration: u64) {
        let until = self.now + duration;
        loop {
            let next_message = self.queue.peek().map(|Reverse((at, _, _))| *at);
            let next_epoch = self
                .actors
                .iter()
                .map(|(id, a)| a.next_epoch_at().saturating_sub(self.skew_of(*id)))
                .min();
            let next = match (next_message, next_epoch) {
                (Some(m), Some(e)) => m.min(e),
                (Some(m), None) => m,
                (None, Some(e)) => e,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if next_message == Some(next) {
                let Reverse((_, id, to)) = self.queue.pop().expect("peeked");
                let (from, life, message) =
                    self.bodies.remove(&id).expect("queued message has a body");
                if self.lives.get(&from).copied().unwrap_or(0) == life {
                    self.feed(to, Input::Peer(message));
                }
            } else {
                let due: Vec<ActorId> = self
                    .actors
                    .iter()
                    .filter(|(id, a)| a.next_epoch_at() <= self.now + self.skew_of(**id))
                    .map(|(id, _)| *id)
                    .collect();
                for id in due {
                    self.feed(id, Input::Tick);
                }
            }
        }
        self.now = until;
    }

    /// `true` when no message is in flight and no actor has gossip pending or unacknowledged.
    pub fn is_quiet(&self) -> bool {
        self.queue.is_empty() && self.actors.values().all(Actor::is_quiet)
    }

    fn feed(&mut self, at: ActorId, input: Input<V>) {
        let mut out = std::mem::take(&mut self.scratch);
        let now = self.now + self.skew_of(at);
        if let Some(actor) = self.actors.get_mut(&at) {
            actor.handle(now, input, &mut out);
        }
        for output in out.drain(..) {
            match output {
                Output::Reply { token, response } => {
                    self.replies.insert(token, response);
                }
                Output::Send { to, message } => self.send(at, to, message),
            }
        }
        self.scratch = out;
    }

    fn send(&mut self, from: ActorId, to: ActorId, message: PeerMessage<V>) {
        let cut =
            self.partition.as_ref().is_some_and(|side| side.contains(&from) != side.contains(&to));
        if cut || self.rng.chance(self.faults.drop) {
            self.lost += 1;
            return;
        }
        if self.rng.chance(self.faults.duplicate) {
            self.duplicated += 1;
            self.enqueue(from, to, message.clone());
        }
        self.enqueue(from, to, message);
    }

    fn enqueue(&mut self, from: ActorId, to: ActorId, message: PeerMessage<V>) {
        let delay = 1 + self.rng.below(self.faults.max_delay_us.max(1));
        self.sent += 1;
        let id = self.sent;
        let life = self.lives.get(&from).copied().unwrap_or(0);
        self.bodies.insert(id, (from, life, message));
        self.queue.push(Reverse((self.now + delay, id, to)));
    }
}

/// A synchronous [`Store`](crate::levels::Store) over a simulation, for running client
/// sessions in it: each request goes to a random actor (so reads land on different, possibly
/// stale replicas) and the simulation runs until the answer arrives or `timeout_us` passes.
#[derive(Debug)]
pub struct SimStore<'a, V: KvsValue> {
    /// The simulation.
    pub sim: &'a mut Sim<V>,
    /// How long a request may take (virtual µs) before it counts as timed out.
    pub timeout_us: u64,
}

impl<V: KvsValue> SimStore<'_, V> {
    fn call(&mut self, request: Request<V>) -> Result<Response<V>, crate::RequestError> {
        let actors: Vec<ActorId> = self.sim.actors().keys().copied().collect();
        let at = actors[self.sim.rng().below(actors.len() as u64) as usize];
        let token = self.sim.submit(at, request);
        let deadline = self.sim.now() + self.timeout_us;
        loop {
            if let Some(response) = self.sim.reply(token) {
                return match response {
                    Response::Error(error) => Err(error),
                    other => Ok(other),
                };
            }
            if self.sim.now() >= deadline {
                return Err(crate::RequestError::Timeout);
            }
            self.sim.run_for(2_000);
        }
    }
}

impl<V: KvsValue> crate::levels::Store<V> for SimStore<'_, V> {
    fn get(&mut self, key: &crate::Key) -> Result<Option<V>, crate::RequestError> {
        match self.call(Request::Get { key: key.clone() })? {
            Response::Value(value) => Ok(value),
            _ => Err(crate::RequestError::Timeout),
        }
    }
    fn put(&mut self, key: &crate::Key, value: V) -> Result<(), crate::RequestError> {
        self.call(Request::Put { key: key.clone(), value, stamp_here: false }).map(|_| ())
    }
    fn put_here(
        &mut self,
        key: &crate::Key,
        value: V,
    ) -> Result<Option<lattice_core::Stamp>, crate::RequestError> {
        match self.call(Request::Put { key: key.clone(), value, stamp_here: true })? {
            Response::Done(stamp) => Ok(stamp),
            _ => Err(crate::RequestError::Timeout),
        }
    }
    fn now(&self) -> u64 {
        self.sim.now()
    }
}
