//! Membership and failure detection: which nodes are in the cluster and which of them are
//! alive, by SWIM (Das, Gupta and Motivala, DSN 2002) as the [`foca`] crate runs it.
//!
//! **Why SWIM, and why foca.** A heartbeat to every peer costs `n²` messages per period and
//! declares a node dead on one slow link. SWIM probes one random member per period (`ping`,
//! then `ping-req` through `k` others when the direct probe is not answered in time), so the
//! load per node stays constant whatever the cluster's size, a node is only *suspected* at
//! first, and it is declared down only if it does not refute the suspicion (by raising its own
//! SWIM incarnation) within the suspicion timeout. Membership changes ride on the probes
//! themselves (infection-style dissemination), so they reach every member in `O(log n)`
//! periods without a broadcast. foca implements exactly this, with suspicion and
//! dissemination, and is *sans-IO*: it never touches a socket or a clock. This module moves its
//! bytes over UDP, keeps its timers and publishes what it learns, which fits a node whose
//! actors must never block on the network.
//!
//! **Settings** ([`MembershipConfig`]). The defaults are foca's LAN profile, which follows
//! HashiCorp memberlist's `DefaultLANConfig` (the detector Consul and Nomad run): a probe
//! every second, 500 ms for a direct answer, 3 indirect probes, a suspicion timeout of
//! `4 × probe period × max(1, log10 n)` (4 s up to 10 nodes), and each update retransmitted
//! `4 × log10(n + 1)` times. A member killed outright is therefore declared down after the
//! time to be probed (a period or two on a small cluster) plus the probe's round trip and the
//! suspicion timeout: about 5–7 s on the defaults; tests run with shorter periods.
//!
//! **Identity.** A member is its [`MemberId`]: the node's id and incarnation (from its data
//! directory: a new life of a node is a new identity), the gossip address it announces (the
//! address its peers and this module dial; SWIM's "address", so two identities at one address
//! are resolved to the newer life), its actor count and client addresses. A member wrongly
//! declared down (a long pause, a partition) rejoins at once under a renewed identity
//! ([`MemberId::rejoin`] + 1).
//!
//! **Seeds.** The `--peers` of a static cluster are seeds: listed at start as down members
//! under placeholder identities, so this node announces itself to them at start and again
//! every [`MembershipConfig::announce_period`] while they are not alive (which also heals a
//! partition: both sides announce to the members they lost). A seed's real identity replaces
//! its placeholder the first time it answers.
//!
//! **Wire.** One UDP datagram per SWIM message, sent to the member's gossip address (UDP: the
//! TCP ports there are the actors'):
//!
//! ```text
//! "ANNM" | version: u8 | foca message (bincode 2) | tag: 32 bytes
//! ```
//!
//! The tag is the cluster key's BLAKE3 MAC over everything before it, as in the gossip
//! envelope ([`crate::wire`]), so only holders of the cluster secret can join, refute or accuse;
//! the magic differs from gossip's, so neither kind of message can pass for the other. Decoding
//! is bounded by the datagram (1400 bytes of payload at most). A replayed datagram carries
//! stale SWIM state, which foca orders below what it knows (incarnations), so a replay cannot
//! revive a member that has since been declared down or has left under a newer life.
//!
//! **Graceful leave.** A node that shuts down (`SIGTERM`, [`super::Node::shutdown`]) tells the
//! cluster it leaves, so its peers mark it down at once instead of after a suspicion timeout.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut};
use foca::{AccumulatingRuntime, Codec, Foca, Header, Member, OwnedNotification, State, Timer};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};

use super::NodeError;
pub use super::config::MembershipConfig;
use crate::ring::{NodeIndex, Replication, RingCell, ThreadIndex, Topology};
use crate::wire::{ClusterKey, TAG_BYTES};

/// The first bytes of a membership datagram.
pub const MAGIC: &[u8; 4] = b"ANNM";
/// The membership wire version this build speaks.
pub const VERSION: u8 = 1;
/// Most bytes of one SWIM message (the datagram adds its header and tag): below a common
/// path MTU, so a datagram is never fragmented.
pub const MAX_PACKET: usize = 1400;
const HEADER: usize = MAGIC.len() + 1;
/// Most bytes of one datagram.
pub const MAX_DATAGRAM: usize = HEADER + MAX_PACKET + TAG_BYTES;

/// One life of one node, as the membership protocol names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberId {
    /// The node's id (random, created once in its data directory; 0 for a seed not yet
    /// reached).
    pub node_id: u64,
    /// The node's incarnation: raised at every start.
    pub incarnation: u64,
    /// Raised when this life was declared down while it was in fact running (a pause, a
    /// partition) and rejoined.
    pub rejoin: u32,
    /// The gossip address it announces, `host:port` (its actors' TCP ports start there; its
    /// membership datagrams arrive there over UDP).
    pub gossip: String,
    /// Its actor threads.
    pub threads: u16,
    /// Where native clients reach it, if it serves them.
    pub native: Option<String>,
    /// Where Redis clients reach it, if it serves them.
    pub redis: Option<String>,
    /// Its slot in the ring ([`NO_SLOT`] while it is joining and has not taken one).
    pub slot: u16,
    /// The slots of its static cluster (`--peers` and itself): a joining node takes a slot
    /// above every one of these, so a static peer never reached is not given away.
    pub reserved: u16,
    /// It is leaving the cluster for good (`anna-cli cluster leave`): every member takes it
    /// out of the ring as soon as it learns this.
    pub leaving: bool,
}

/// The slot of a member that is still joining.
pub const NO_SLOT: u16 = u16::MAX;
/// Slots a ring may hold: joins beyond are refused (a ring's tables grow with its highest
/// slot, and slots are not reused).
pub const MAX_SLOT: u16 = 4096;
/// Most actors a member may announce.
pub const MAX_THREADS: u16 = 1024;

impl MemberId {
    /// The placeholder a seed is known by until it answers.
    fn seed(gossip: &str) -> Self {
        Self {
            node_id: 0,
            incarnation: 0,
            rejoin: 0,
            gossip: gossip.to_owned(),
            threads: 0,
            native: None,
            redis: None,
            slot: NO_SLOT,
            reserved: 0,
            leaving: false,
        }
    }

    /// Whether this is a seed's placeholder (a listed peer never reached).
    pub fn is_seed(&self) -> bool {
        self.node_id == 0 && self.incarnation == 0
    }

    /// Within the bounds a ring is built for: a slot below [`MAX_SLOT`], at most
    /// [`MAX_THREADS`] actors, and a gossip address of the form `host:port`.
    pub fn is_sane(&self) -> bool {
        (self.slot < MAX_SLOT || self.slot == NO_SLOT)
            && self.threads <= MAX_THREADS
            && self
                .gossip
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
    }

    /// Which of two identities at one address is newer.
    fn rank(&self) -> (u64, u32, u64) {
        (self.incarnation, self.rejoin, self.node_id)
    }
}

impl foca::Identity for MemberId {
    type Addr = String;

    fn renew(&self) -> Option<Self> {
        Some(Self { rejoin: self.rejoin.checked_add(1)?, ..self.clone() })
    }

    fn addr(&self) -> String {
        self.gossip.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.rank() > adversary.rank()
    }
}

/// What the failure detector says of a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Missed a probe; declared down unless it refutes within the suspicion timeout.
    Suspect,
    /// Declared down (failed, or left), or a seed not reached yet.
    Down,
}

impl std::fmt::Display for MemberState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Down => "down",
        })
    }
}

/// One member as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Who.
    pub id: MemberId,
    /// Alive, suspect or down.
    pub state: MemberState,
    /// SWIM's own incarnation of the member (raised by the member to refute a suspicion).
    pub swim_incarnation: u16,
    /// How long it has been in this state, in ms, when the report was read.
    pub for_ms: u64,
    /// This is the node that reports.
    pub me: bool,
}

/// The membership as one node sees it, with its protocol counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipReport {
    /// Every member known, this node first, then by gossip address.
    pub members: Vec<MemberStatus>,
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Datagrams refused as not authenticated by the cluster's secret.
    pub refused_unauthenticated: u64,
    /// Authenticated datagrams that foca could not use (another version, malformed).
    pub refused_malformed: u64,
    /// Sends that failed (an address that does not resolve, a network error).
    pub send_errors: u64,
    /// Members declared down since the start (by this node or by gossip).
    pub downs: u64,
}

impl MembershipReport {
    /// How many members are in `state`.
    pub fn count(&self, state: MemberState) -> usize {
        self.members.iter().filter(|m| m.state == state && !m.id.is_seed()).count()
    }
}

/// foca's settings, from `config`, for a cluster of about `size` nodes.
fn foca_config(this: &MembershipConfig, size: usize) -> foca::Config {
    let size = NonZeroU32::new(u32::try_from(size.max(1)).unwrap_or(u32::MAX)).expect("≥ 1");
    let mut config = foca::Config::new_lan(size);
    let lan_period = config.probe_period.as_secs_f64();
    config.probe_period = this.probe_period.max(Duration::from_millis(1));
    config.probe_rtt = this.probe_rtt.min(config.probe_period);
    config.suspect_to_down_after = this.suspect_timeout.unwrap_or_else(|| {
        // The LAN rule scaled to this period (foca computed it for 1 s).
        config.suspect_to_down_after.mul_f64(config.probe_period.as_secs_f64() / lan_period)
    });
    config.max_packet_size = NonZeroUsize::new(MAX_PACKET).expect("nonzero");
    // Down members are kept (a static peer down for a day is still announced to); memory is
    // bounded by the addresses ever seen, not the lives.
    config.remove_down_after = None;
    config.periodic_announce = Some(foca::PeriodicParams {
        frequency: this.announce_period * 5,
        num_members: NonZeroUsize::new(1).expect("nonzero"),
    });
    config.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: this.announce_period,
        num_members: NonZeroUsize::new(2).expect("nonzero"),
    });
    config.periodic_gossip = Some(foca::PeriodicParams {
        frequency: (config.probe_period / 5).max(Duration::from_millis(1)),
        num_members: NonZeroUsize::new(3).expect("nonzero"),
    });
    config.max_transmissions = config.max_transmissions.max(NonZeroU8::new(3).expect("3"));
    config
}

/// The membership thread's shared state: the last report, and the flags that stop it.
#[derive(Debug, Default)]
pub(super) struct Membership {
    /// The last report, with since when each member has been in its state.
    report: Mutex<(MembershipReport, Vec<Instant>)>,
    /// Tell the cluster this node leaves (a graceful stop).
    leave: AtomicBool,
    /// ... for good: it is taken out of the ring (`anna-cli cluster leave`).
    for_good: AtomicBool,
    /// Compute the ring again now.
    recompute: AtomicBool,
    /// The ring the members imply, as of the last change (`None` until this node has a slot).
    ring: Mutex<Option<Topology>>,
    /// Where a new ring is published for the node's actors and handles, once attached.
    cell: Mutex<Option<Arc<RingCell>>>,
    /// The leave has been sent.
    left: AtomicBool,
    /// Stop the thread.
    stop: AtomicBool,
}

impl Membership {
    /// The membership as of the thread's last change.
    pub(super) fn report(&self) -> MembershipReport {
        let Ok(guard) = self.report.lock() else { return MembershipReport::default() };
        let (mut report, since) = (guard.0.clone(), guard.1.clone());
        drop(guard);
        let now = Instant::now();
        for (member, since) in report.members.iter_mut().zip(since) {
            member.for_ms = now.saturating_duration_since(since).as_millis() as u64;
        }
        report
    }

    /// The ring the members imply now (`None` while this node has no slot).
    pub(super) fn ring(&self) -> Option<Topology> {
        self.ring.lock().ok()?.clone()
    }

    /// Publishes every later ring change to `cell` (and the current ring at once).
    pub(super) fn attach(&self, cell: Arc<RingCell>) {
        // Under the cell's lock, which the detector takes to publish: no ring computed in
        // between is missed.
        let Ok(mut attached) = self.cell.lock() else { return };
        if let Some(ring) = self.ring() {
            cell.set(ring);
        }
        *attached = Some(cell);
    }

    /// Starts leaving for good: this node's own ring leaves it out from now on, so its actors
    /// hand every key over to the other members (see [`super::NodeHandle::prepare_leave`]),
    /// and its next stop tells the cluster it leaves.
    pub(super) fn leave_for_good(&self) {
        self.for_good.store(true, Ordering::SeqCst);
        self.recompute.store(true, Ordering::SeqCst);
    }

    /// Gives up leaving for good (the hand-over did not finish): the node stops as a member.
    pub(super) fn cancel_leave_for_good(&self) {
        self.for_good.store(false, Ordering::SeqCst);
    }

    /// Whether the leave is for good.
    pub(super) fn leaving_for_good(&self) -> bool {
        self.for_good.load(Ordering::SeqCst)
    }

    /// Tells the cluster this node leaves, and waits (up to `limit`) for the message to go.
    pub(super) fn leave(&self, limit: Duration) {
        self.leave.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + limit;
        while !self.left.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stops the thread (it notices within [`POLL`]).
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// How often counters alone (refused datagrams, say) are reported.
const COUNTERS_EVERY: Duration = Duration::from_millis(100);

/// Longest the thread sleeps between looks at its flags.
const POLL: Duration = Duration::from_millis(50);

/// Binds the membership socket of the node `me` at `bind` (UDP), with `seeds` (the gossip
/// addresses of the static peers, or of a node to join through); [`Pending::spawn`] starts
/// its thread. Binding comes first so a busy port fails the node's start before anything runs.
///
/// # Errors
/// The UDP socket cannot be bound.
pub(super) fn bind(
    me: MemberId,
    bind: &str,
    seeds: &[String],
    config: &MembershipConfig,
    key: ClusterKey,
    rule: RingRule,
) -> Result<(Arc<Membership>, Pending), NodeError> {
    let socket = UdpSocket::bind(bind)
        .map_err(NodeError::io(format!("bind the membership (UDP) socket {bind}")))?;
    socket
        .set_read_timeout(Some(POLL))
        .map_err(NodeError::io("set the membership socket's timeout"))?;
    let shared = Arc::new(Membership::default());
    let rng = SmallRng::seed_from_u64(me.node_id ^ me.incarnation.rotate_left(17));
    let foca = Foca::new(me.clone(), foca_config(config, seeds.len() + 1), rng, WireCodec);
    let mut detector = Detector {
        foca,
        runtime: AccumulatingRuntime::new(),
        timers: Vec::new(),
        socket,
        key,
        addrs: HashMap::new(),
        since: HashMap::new(),
        counters: MembershipReport::default(),
        shared: Arc::clone(&shared),
        changed: true,
        rule,
        ring_checked: Instant::now(),
        config: config.clone(),
        sized_for: seeds.len() + 1,
        reported: MembershipReport::default(),
        published: Instant::now(),
    };
    let placeholders: Vec<MemberId> =
        seeds.iter().filter(|seed| **seed != me.gossip).map(|seed| MemberId::seed(seed)).collect();
    if let Err(error) = detector.foca.apply_many(
        placeholders.iter().cloned().map(Member::down),
        false,
        &mut detector.runtime,
    ) {
        tracing::warn!(%error, "membership: the seeds could not be listed");
    }
    for seed in placeholders {
        if let Err(error) = detector.foca.announce(seed, &mut detector.runtime) {
            tracing::warn!(%error, "membership: could not announce to a seed");
        }
    }
    Ok((shared, Pending(detector)))
}

/// A bound membership socket whose thread has not started.
pub(super) struct Pending(Detector);

/// The membership thread: bound but not started, or running until handed over to the node.
/// One still running when this is dropped (the node failed to start) is stopped and joined.
pub(super) struct Thread(Option<Stage>);

enum Stage {
    Pending(Box<Pending>),
    Running(Arc<Membership>, JoinHandle<()>),
}

impl Thread {
    /// A bound socket whose thread has not started.
    pub(super) fn pending(pending: Pending) -> Self {
        Self(Some(Stage::Pending(Box::new(pending))))
    }

    /// Starts the thread if it has not started: it announces this node to its seeds and runs
    /// the detector.
    ///
    /// # Errors
    /// The thread cannot be spawned.
    pub(super) fn start(&mut self) -> Result<(), NodeError> {
        match self.0.take() {
            Some(Stage::Pending(pending)) => {
                let Pending(detector) = *pending;
                let shared = Arc::clone(&detector.shared);
                let handle = std::thread::Builder::new()
                    .name("anna-membership".into())
                    .spawn(move || detector.run())
                    .map_err(NodeError::io("spawn the membership thread"))?;
                self.0 = Some(Stage::Running(shared, handle));
            }
            other => self.0 = other,
        }
        Ok(())
    }

    /// The running thread's handle, handed over to the node.
    pub(super) fn take(&mut self) -> Option<JoinHandle<()>> {
        match self.0.take() {
            Some(Stage::Running(_, handle)) => Some(handle),
            other => {
                self.0 = other;
                None
            }
        }
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        if let Some(Stage::Running(shared, handle)) = self.0.take() {
            shared.stop();
            let _ = handle.join();
        }
    }
}

/// foca with its socket, its timers and what it has reported.
struct Detector {
    foca: Foca<MemberId, WireCodec, SmallRng, foca::NoCustomBroadcast>,
    runtime: AccumulatingRuntime<MemberId>,
    /// Timers foca asked for, with when they fire.
    timers: Vec<(Instant, Timer<MemberId>)>,
    socket: UdpSocket,
    key: ClusterKey,
    /// Resolved gossip addresses.
    addrs: HashMap<String, SocketAddr>,
    /// Each address's state and since when.
    since: HashMap<String, (MemberState, Instant)>,
    /// The counters of the report.
    counters: MembershipReport,
    shared: Arc<Membership>,
    /// Something changed since the last report.
    changed: bool,
    /// How the ring follows the members.
    rule: RingRule,
    /// The detector's settings (its timeouts follow the cluster's size).
    config: MembershipConfig,
    /// The cluster size foca's settings were last made for.
    sized_for: usize,
    /// The counters as last reported, and when.
    reported: MembershipReport,
    published: Instant,
    /// When the ring was last computed.
    ring_checked: Instant,
}

impl Detector {
    fn run(mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                break;
            }
            if self.shared.leave.load(Ordering::SeqCst) && !self.shared.left.load(Ordering::SeqCst)
            {
                if self.shared.for_good.load(Ordering::SeqCst) {
                    // Every member takes a leaving identity out of the ring at once.
                    let me = self.foca.identity().clone();
                    let leaving =
                        MemberId { leaving: true, rejoin: me.rejoin.saturating_add(1), ..me };
                    if let Err(error) = self.foca.change_identity(leaving, &mut self.runtime) {
                        tracing::warn!(%error, "membership: could not announce leaving for good");
                    }
                    self.flush();
                }
                if let Err(error) = self.foca.leave_cluster(&mut self.runtime) {
                    tracing::warn!(%error, "membership: could not announce the leave");
                }
                self.flush();
                self.shared.left.store(true, Ordering::SeqCst);
            }
            let now = Instant::now();
            let mut due = Vec::new();
            self.timers.retain(|(at, timer)| {
                if *at <= now {
                    due.push((*at, timer.clone()));
                    false
                } else {
                    true
                }
            });
            due.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            for (_, timer) in due {
                if let Err(error) = self.foca.handle_timer(timer, &mut self.runtime) {
                    tracing::debug!(%error, "membership: timer");
                }
            }
            self.flush();
            self.publish();
            let next = self.timers.iter().map(|(at, _)| *at).min();
            let wait = next.map_or(POLL, |at| at.saturating_duration_since(Instant::now()));
            let wait = wait.clamp(Duration::from_millis(1), POLL);
            if self.socket.set_read_timeout(Some(wait)).is_err() {
                std::thread::sleep(wait);
            }
            match self.socket.recv_from(&mut buf) {
                Ok((len, _from)) => self.received(&buf[..len]),
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(error) => {
                    tracing::debug!(%error, "membership: receive");
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// One datagram from the network.
    fn received(&mut self, datagram: &[u8]) {
        self.counters.datagrams_in += 1;
        match open(&self.key, datagram) {
            Ok(payload) => {
                if let Err(error) = self.foca.handle_data(payload, &mut self.runtime) {
                    // Our own datagram echoed back, or a member's that foca cannot use.
                    if !matches!(error, foca::Error::DataFromOurselves) {
                        self.counters.refused_malformed += 1;
                        tracing::debug!(%error, "membership: refused a datagram");
                    }
                }
                self.flush();
            }
            // Counted, and reported with the next change: a flood of forgeries must not make
            // the detector recompute anything.
            Err(Refused::Unauthenticated) => self.counters.refused_unauthenticated += 1,
            Err(Refused::Malformed) => self.counters.refused_malformed += 1,
        }
    }

    /// Sends what foca wrote, keeps the timers it set, and logs what it noticed.
    fn flush(&mut self) {
        while let Some((to, data)) = self.runtime.to_send() {
            self.send(&to.gossip, &data);
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.timers.push((Instant::now() + after, timer));
        }
        while let Some(notification) = self.runtime.to_notify() {
            self.changed = true;
            match notification {
                OwnedNotification::MemberUp(id) => {
                    tracing::info!(member = %id.gossip, node_id = %format!("{:016x}", id.node_id), incarnation = id.incarnation, "member up");
                }
                OwnedNotification::MemberDown(id) => {
                    self.counters.downs += 1;
                    tracing::warn!(member = %id.gossip, node_id = %format!("{:016x}", id.node_id), incarnation = id.incarnation, "member down");
                }
                OwnedNotification::Rename(old, new) if !old.is_seed() => {
                    tracing::info!(member = %new.gossip, old_incarnation = old.incarnation, incarnation = new.incarnation, "member restarted");
                }
                OwnedNotification::Rejoin(id) => {
                    tracing::warn!(
                        rejoin = id.rejoin,
                        "this node was declared down while running: rejoined"
                    );
                }
                OwnedNotification::Defunct if self.shared.leave.load(Ordering::SeqCst) => {
                    tracing::debug!("membership: left the cluster");
                }
                OwnedNotification::Defunct => {
                    tracing::error!("this node was declared down and cannot rejoin");
                }
                OwnedNotification::Idle => {
                    tracing::debug!("membership: no other member alive");
                }
                _ => {}
            }
        }
    }

    fn send(&mut self, to: &str, data: &[u8]) {
        let addr = match self.addrs.get(to) {
            Some(addr) => *addr,
            None => match to.to_socket_addrs().ok().and_then(|mut a| a.next()) {
                Some(addr) => {
                    self.addrs.insert(to.to_owned(), addr);
                    addr
                }
                None => {
                    self.counters.send_errors += 1;
                    tracing::debug!(to, "membership: the address does not resolve");
                    return;
                }
            },
        };
        match self.socket.send_to(&seal(&self.key, data), addr) {
            Ok(_) => self.counters.datagrams_out += 1,
            Err(error) => {
                self.counters.send_errors += 1;
                tracing::debug!(%error, to, "membership: send");
            }
        }
    }

    /// A joining node takes a slot once it knows another member: above every slot in use
    /// and every member's static slots.
    fn take_slot(&mut self) {
        let me = self.foca.identity().clone();
        if me.slot != NO_SLOT {
            return;
        }
        let known: Vec<&MemberId> = self
            .foca
            .iter_membership_state()
            .map(Member::id)
            .filter(|id| !id.is_seed() && id.gossip != me.gossip && id.is_sane())
            .collect();
        if !self.foca.iter_members().any(|m| !m.id().is_seed()) {
            return;
        }
        let slot = known
            .iter()
            .map(|id| {
                if id.slot == NO_SLOT {
                    id.reserved
                } else {
                    id.slot.saturating_add(1).max(id.reserved)
                }
            })
            .max()
            .unwrap_or(0);
        if slot >= MAX_SLOT {
            tracing::error!(slot, "membership: no slot left for this node (slots are not reused)");
            return;
        }
        let taken = MemberId {
            slot,
            reserved: me.reserved.max(slot + 1),
            rejoin: me.rejoin.saturating_add(1),
            ..me
        };
        tracing::info!(slot, "joined the cluster: took a slot");
        if let Err(error) = self.foca.change_identity(taken, &mut self.runtime) {
            tracing::warn!(%error, "membership: could not announce this node's slot");
        }
        self.flush();
        self.changed = true;
    }

    /// The ring the members imply, published if it changed.
    fn follow_ring(&mut self) {
        let now = Instant::now();
        self.ring_checked = now;
        let since = &self.since;
        let members: Vec<(MemberId, MemberState, Duration)> = self
            .foca
            .iter_membership_state()
            .map(|m| {
                let state = state_of(m.state());
                let held = since
                    .get(&m.id().gossip)
                    .filter(|(s, _)| *s == state)
                    .map_or(Duration::ZERO, |(_, at)| now.saturating_duration_since(*at));
                (m.id().clone(), state, held)
            })
            .collect();
        let Some(mut ring) = ring_of(self.foca.identity(), &self.rule, &members) else { return };
        // Suspicion and dissemination scale with the cluster's size (log n).
        if ring.members() != self.sized_for {
            self.sized_for = ring.members();
            if let Err(error) = self.foca.set_config(foca_config(&self.config, self.sized_for)) {
                tracing::debug!(%error, "membership: could not resize the detector's settings");
            }
        }
        // Every slot this node has seen in use is announced with it, so a node joining later
        // never takes one, even one whose member is down (a joiner hears only of the members
        // alive when it arrives).
        let me = self.foca.identity().clone();
        let seen = u16::try_from(ring.nodes().len()).unwrap_or(MAX_SLOT);
        // Only while another member is alive to hear it: a change made alone (a node back on
        // its directory that has not heard an answer yet) would be known to nobody, and
        // every answer addressed to the identity it had would be refused.
        if seen > me.reserved && !me.leaving && self.foca.num_members() > 0 {
            let wider = MemberId { reserved: seen, rejoin: me.rejoin.saturating_add(1), ..me };
            if let Err(error) = self.foca.change_identity(wider, &mut self.runtime) {
                tracing::debug!(%error, "membership: could not announce the slots seen");
            }
            self.flush();
        }
        if self.shared.for_good.load(Ordering::SeqCst) {
            // Leaving: this node's actors route, and hand over, as if it were gone already.
            let me = usize::from(self.foca.identity().slot);
            let mut nodes = ring.nodes().to_vec();
            let mut threads: Vec<ThreadIndex> =
                (0..nodes.len()).map(|slot| ring.threads(slot as NodeIndex)).collect();
            if me < nodes.len() && threads.iter().enumerate().any(|(i, &t)| i != me && t > 0) {
                nodes[me].clear();
                threads[me] = 0;
                ring = Topology::new(nodes, threads, ring.replication());
            }
        }
        let Ok(cell) = self.shared.cell.lock() else { return };
        let Ok(mut current) = self.shared.ring.lock() else { return };
        if current.as_ref().is_some_and(|c| c.version() == ring.version()) {
            return;
        }
        *current = Some(ring.clone());
        drop(current);
        if let Some(cell) = cell.as_ref()
            && cell.set(ring.clone())
        {
            tracing::info!(version = %format!("{:x}", ring.version()), members = ring.members(), "the ring changed");
        }
    }

    /// Publishes the members and counters if anything changed.
    fn publish(&mut self) {
        if self.changed {
            self.take_slot();
        }
        // A member down past the grace period leaves the ring with no message: look again
        // every second.
        let recompute = self.shared.recompute.swap(false, Ordering::SeqCst);
        if self.changed || recompute || self.ring_checked.elapsed() >= Duration::from_secs(1) {
            self.follow_ring();
        }
        let now = Instant::now();
        let me = self.foca.identity().clone();
        let mut members = vec![(me.clone(), MemberState::Alive, 0u16, true)];
        for member in self.foca.iter_membership_state() {
            let state = state_of(member.state());
            members.push((member.id().clone(), state, member.incarnation(), false));
        }
        for (id, state, _, _) in &members {
            let entry = self.since.entry(id.gossip.clone()).or_insert((*state, now));
            if entry.0 != *state {
                *entry = (*state, now);
                self.changed = true;
            }
        }
        if !self.changed {
            // Only counters moved (refused datagrams, sends): reported at most every 100 ms.
            if self.counters != self.reported && self.published.elapsed() >= COUNTERS_EVERY {
                if let Ok(mut shared) = self.shared.report.lock() {
                    let members = std::mem::take(&mut shared.0.members);
                    shared.0 = MembershipReport { members, ..self.counters.clone() };
                }
                self.reported = self.counters.clone();
                self.published = Instant::now();
            }
            return;
        }
        self.changed = false;
        self.reported = self.counters.clone();
        self.published = Instant::now();
        members[1..].sort_by(|a, b| a.0.gossip.cmp(&b.0.gossip));
        let since: Vec<Instant> =
            members.iter().map(|m| self.since.get(&m.0.gossip).map_or(now, |s| s.1)).collect();
        let members = members
            .into_iter()
            .map(|(id, state, swim_incarnation, me)| MemberStatus {
                id,
                state,
                swim_incarnation,
                for_ms: 0,
                me,
            })
            .collect();
        let report = MembershipReport { members, ..self.counters.clone() };
        if let Ok(mut shared) = self.shared.report.lock() {
            *shared = (report, since);
        }
    }
}

fn state_of(state: State) -> MemberState {
    match state {
        State::Alive => MemberState::Alive,
        State::Suspect => MemberState::Suspect,
        State::Down => MemberState::Down,
    }
}

/// How a node's ring follows its members.
#[derive(Clone, Debug)]
pub(super) struct RingRule {
    /// The static cluster (`--peers` and this node): slot, gossip address, actors.
    pub(super) statics: Vec<(NodeIndex, String, ThreadIndex)>,
    /// The cluster's replication.
    pub(super) replication: Replication,
    /// Members may join and leave: every key has copies on two nodes or more (see
    /// [`Replication::allows_membership_changes`]).
    pub(super) dynamic: bool,
    /// A member declared down this long ago is taken out of the ring (`None`: never).
    pub(super) remove_down_after: Option<Duration>,
}

/// The ring `me` routes with, given what its detector knows of the `members` (each with its
/// state and how long it has been in it): the static members, this node, and (when the
/// cluster is dynamic) every member that took a slot, less those leaving for good and, if
/// the rule says so, those down longer than its grace period. A member that fails stays in
/// the ring otherwise, as a static peer does: it may come back. Two members claiming one
/// slot: a static member wins, else the lower address. `None` while this node has no slot.
pub(super) fn ring_of(
    me: &MemberId,
    rule: &RingRule,
    members: &[(MemberId, MemberState, Duration)],
) -> Option<Topology> {
    if me.slot == NO_SLOT {
        return None;
    }
    let mut slots: std::collections::BTreeMap<u16, (String, ThreadIndex, bool)> =
        std::collections::BTreeMap::new();
    let gone = |id: &MemberId, state: MemberState, held: Duration| {
        (id.leaving && rule.dynamic)
            || (state == MemberState::Down
                && rule.remove_down_after.is_some_and(|grace| held >= grace))
    };
    // The life known at an address (foca keeps one per address), if it is not a seed's
    // placeholder.
    let known = |label: &str| members.iter().find(|(id, _, _)| id.gossip == label && !id.is_seed());
    for (slot, label, threads) in &rule.statics {
        if *label == me.gossip {
            if me.slot == *slot {
                slots.insert(*slot, (label.clone(), *threads, true));
            }
            continue;
        }
        match known(label) {
            Some((id, state, held)) if gone(id, *state, *held) => {}
            // It came back under another slot (it left, and joined again), or is joining again
            // and has none yet: not the static member any more.
            Some((id, _, _)) if id.slot != *slot => {}
            _ => {
                slots.insert(*slot, (label.clone(), *threads, true));
            }
        }
    }
    let mut claim = |slot: u16, label: &str, threads: ThreadIndex| match slots.get(&slot) {
        Some((held, _, statik)) if *statik || held.as_str() <= label => {}
        _ => {
            slots.insert(slot, (label.to_owned(), threads, false));
        }
    };
    if rule.dynamic {
        for (id, state, held) in members {
            if id.is_seed() || id.slot == NO_SLOT || id.threads == 0 || gone(id, *state, *held) {
                continue;
            }
            if !id.is_sane() {
                // Only a holder of the cluster secret can announce one: a misconfigured node.
                continue;
            }
            if rule.statics.iter().any(|(slot, label, _)| *label == id.gossip && *slot == id.slot) {
                continue;
            }
            claim(id.slot, &id.gossip, id.threads);
        }
    }
    if slots.get(&me.slot).is_none_or(|(label, _, _)| *label != me.gossip) {
        slots.insert(me.slot, (me.gossip.clone(), me.threads, false));
    }
    let size = usize::from(*slots.keys().next_back()?) + 1;
    let (mut nodes, mut threads) = (vec![String::new(); size], vec![0; size]);
    for (slot, (label, count, _)) in slots {
        nodes[usize::from(slot)] = label;
        threads[usize::from(slot)] = count;
    }
    Some(Topology::new(nodes, threads, rule.replication))
}

/// Why a datagram was refused before foca saw it.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    /// Not tagged with this cluster's key.
    Unauthenticated,
    /// Authentic, but of another version or shape.
    Malformed,
}

/// `payload` in a datagram, tagged with `key`.
fn seal(key: &ClusterKey, payload: &[u8]) -> Vec<u8> {
    let mut datagram = Vec::with_capacity(HEADER + payload.len() + TAG_BYTES);
    datagram.extend_from_slice(MAGIC);
    datagram.push(VERSION);
    datagram.extend_from_slice(payload);
    let tag = key.tag(&datagram);
    datagram.extend_from_slice(&tag);
    datagram
}

/// The payload of an authentic datagram.
fn open<'a>(key: &ClusterKey, datagram: &'a [u8]) -> Result<&'a [u8], Refused> {
    if datagram.len() < HEADER + TAG_BYTES
        || datagram.len() > MAX_DATAGRAM
        || &datagram[..MAGIC.len()] != MAGIC
    {
        return Err(Refused::Malformed);
    }
    let (signed, tag) = datagram.split_at(datagram.len() - TAG_BYTES);
    // `Hash`'s equality is constant-time.
    let expected = blake3::Hash::from_bytes(key.tag(signed));
    if expected != blake3::Hash::from_bytes(tag.try_into().map_err(|_| Refused::Malformed)?) {
        return Err(Refused::Unauthenticated);
    }
    if signed[MAGIC.len()] != VERSION {
        return Err(Refused::Malformed);
    }
    Ok(&signed[HEADER..])
}

/// foca's messages in bincode 2, each bounded by the packet size.
struct WireCodec;

/// A SWIM message that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("membership codec: {0}")]
pub struct CodecError(String);

type Limited = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_PACKET>,
>;

fn codec_config() -> Limited {
    bincode::config::standard().with_limit::<MAX_PACKET>()
}

fn put<T: Serialize>(value: &T, buf: &mut impl BufMut) -> Result<(), CodecError> {
    let bytes = bincode::serde::encode_to_vec(value, codec_config())
        .map_err(|e| CodecError(e.to_string()))?;
    if buf.remaining_mut() < bytes.len() {
        return Err(CodecError(format!("{} bytes do not fit the packet", bytes.len())));
    }
    buf.put_slice(&bytes);
    Ok(())
}

fn take<T: serde::de::DeserializeOwned>(buf: &mut impl Buf) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(buf.chunk(), codec_config())
        .map_err(|e| CodecError(e.to_string()))?;
    buf.advance(used);
    Ok(value)
}

impl Codec<MemberId> for WireCodec {
    type Error = CodecError;

    fn encode_header(
        &mut self,
        header: &Header<MemberId>,
        mut buf: impl BufMut,
    ) -> Result<(), CodecError> {
        put(header, &mut buf)
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<MemberId>, CodecError> {
        take(&mut buf)
    }

    fn encode_member(
        &mut self,
        member: &Member<MemberId>,
        mut buf: impl BufMut,
    ) -> Result<(), CodecError> {
        put(member, &mut buf)
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<Member<MemberId>, CodecError> {
        take(&mut buf)
    }
}

#[cfg(test)]
mod tests {
    use foca::Identity;

    use super::*;

    fn id(node_id: u64, incarnation: u64, gossip: &str) -> MemberId {
        MemberId {
            node_id,
            incarnation,
            rejoin: 0,
            gossip: gossip.into(),
            threads: 2,
            native: Some("127.0.0.1:6450".into()),
            redis: None,
            slot: 0,
            reserved: 1,
            leaving: false,
        }
    }

    #[test]
    fn a_newer_life_wins_its_address_and_a_seed_loses_to_anyone() {
        let old = id(7, 100, "a:1");
        let new = id(7, 200, "a:1");
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
        let renewed = old.renew().unwrap();
        assert_eq!(renewed.rejoin, 1);
        assert!(renewed.win_addr_conflict(&old));
        assert!(!renewed.win_addr_conflict(&new), "a rejoin does not beat a restart");
        let seed = MemberId::seed("a:1");
        assert!(seed.is_seed() && !old.is_seed());
        assert!(old.win_addr_conflict(&seed));
    }

    #[test]
    fn only_datagrams_tagged_with_the_cluster_key_open() {
        let key = ClusterKey::derive(b"secret");
        let sealed = seal(&key, b"swim");
        assert_eq!(open(&key, &sealed), Ok(&b"swim"[..]));
        assert_eq!(open(&ClusterKey::derive(b"other"), &sealed), Err(Refused::Unauthenticated));
        assert_eq!(open(&ClusterKey::open(), &sealed), Err(Refused::Unauthenticated));
        for at in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert!(open(&key, &bad).is_err(), "a flipped bit at {at} passed");
        }
        assert_eq!(open(&key, &sealed[..10]), Err(Refused::Malformed));
        assert_eq!(open(&key, &vec![0; MAX_DATAGRAM + 1]), Err(Refused::Malformed));
        // A gossip envelope's magic cannot pass for a membership datagram.
        let mut gossip = sealed.clone();
        gossip[..4].copy_from_slice(crate::wire::MAGIC);
        assert!(open(&key, &gossip).is_err());
    }

    #[test]
    fn the_codec_round_trips_headers_and_members_and_refuses_garbage() {
        let header = Header {
            src: id(1, 2, "a:1"),
            src_incarnation: 3,
            dst: id(4, 5, "b:2"),
            message: foca::Message::Ping(9),
        };
        let mut buf = Vec::new();
        WireCodec.encode_header(&header, &mut buf).unwrap();
        let member = Member::new(id(6, 7, "c:3"), 8, State::Suspect);
        WireCodec.encode_member(&member, &mut buf).unwrap();
        let mut slice = &buf[..];
        assert_eq!(WireCodec.decode_header(&mut slice).unwrap(), header);
        assert_eq!(WireCodec.decode_member(&mut slice).unwrap(), member);
        assert!(slice.is_empty());
        // A length prefix far beyond the packet is refused, not allocated.
        let mut garbage: &[u8] = &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(WireCodec.decode_member(&mut garbage).is_err());
    }

    fn at(slot: u16, gossip: &str, incarnation: u64) -> MemberId {
        MemberId { slot, reserved: 3, ..id(u64::from(slot) + 1, incarnation, gossip) }
    }

    fn ring(me: &MemberId, dynamic: bool, members: &[(MemberId, MemberState, u64)]) -> Vec<String> {
        let rule = RingRule {
            statics: vec![(0, "a:1".into(), 2), (1, "b:1".into(), 2), (2, "c:1".into(), 2)],
            replication: Replication::FULL,
            dynamic,
            remove_down_after: Some(Duration::from_secs(30)),
        };
        let members: Vec<(MemberId, MemberState, Duration)> = members
            .iter()
            .map(|(id, state, secs)| (id.clone(), *state, Duration::from_secs(*secs)))
            .collect();
        let topology = ring_of(me, &rule, &members).unwrap();
        topology.nodes().to_vec()
    }

    #[test]
    fn the_ring_follows_joins_leaves_rejoins_and_long_failures() {
        let a = at(0, "a:1", 1);
        let alive = |id: MemberId| (id, MemberState::Alive, 0);
        // The static cluster, with a peer never reached (still a member) and one down briefly.
        let statics = ring(
            &a,
            true,
            &[
                (MemberId::seed("b:1"), MemberState::Down, 100),
                (at(2, "c:1", 1), MemberState::Down, 5),
            ],
        );
        assert_eq!(statics, ["a:1", "b:1", "c:1"]);
        // Down past the grace period: out, leaving a hole.
        let failed =
            ring(&a, true, &[alive(at(1, "b:1", 1)), (at(2, "c:1", 1), MemberState::Down, 31)]);
        assert_eq!(failed, ["a:1", "b:1"]);
        let middle =
            ring(&a, true, &[(at(1, "b:1", 1), MemberState::Down, 31), alive(at(2, "c:1", 1))]);
        assert_eq!(middle, ["a:1", "", "c:1"]);
        // A joiner takes slot 3; a member leaving for good is out at once.
        let leaving = MemberId { leaving: true, ..at(1, "b:1", 1) };
        let joined = ring(
            &a,
            true,
            &[(leaving, MemberState::Alive, 0), alive(at(2, "c:1", 1)), alive(at(3, "d:1", 1))],
        );
        assert_eq!(joined, ["a:1", "", "c:1", "d:1"]);
        // C left and joined again (an empty directory, a new life) under slot 4: only that counts.
        let rejoined = ring(&a, true, &[alive(at(1, "b:1", 1)), alive(at(4, "c:1", 2))]);
        assert_eq!(rejoined, ["a:1", "b:1", "", "", "c:1"]);
        // The rejoined node sees the same ring.
        assert_eq!(
            ring(&at(4, "c:1", 2), true, &[alive(a.clone()), alive(at(1, "b:1", 1))]),
            rejoined
        );
        // A cluster whose membership cannot change ignores joiners.
        assert_eq!(ring(&a, false, &[alive(at(3, "d:1", 1))]), ["a:1", "b:1", "c:1"]);
    }

    #[test]
    fn the_suspicion_timeout_follows_the_probe_period() {
        let fast =
            MembershipConfig { probe_period: Duration::from_millis(100), ..Default::default() };
        let config = foca_config(&fast, 3);
        assert_eq!(config.probe_period, Duration::from_millis(100));
        assert_eq!(config.suspect_to_down_after, Duration::from_millis(400));
        let lan = foca_config(&MembershipConfig::default(), 3);
        assert_eq!(lan.suspect_to_down_after, Duration::from_secs(4));
        let set = MembershipConfig { suspect_timeout: Some(Duration::from_secs(9)), ..fast };
        assert_eq!(foca_config(&set, 3).suspect_to_down_after, Duration::from_secs(9));
    }
}
