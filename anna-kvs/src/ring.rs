//! Consistent hashing: which actors own a key.
//!
//! Two levels, as in the paper: a *global* ring of nodes and a *local* ring of the actors
//! (threads) inside a node, each with virtual nodes, both hashed with CRC32 (stable across
//! builds and machines, unlike `std`'s hasher). A key is replicated on `global` distinct nodes
//! and, on each of them, on `local` distinct actors; `Full` means every node or every actor.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A node's slot in the cluster: its position in the sorted peer list of a static cluster, or
/// the slot a joining node took. A slot never changes while its node is a member, so actor ids
/// stay valid across ring versions.
pub type NodeIndex = u16;
/// An actor's (worker thread's) index within its node.
pub type ThreadIndex = u16;

/// One actor in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ActorId {
    /// Which node.
    pub node: NodeIndex,
    /// Which worker thread on that node.
    pub thread: ThreadIndex,
}

impl ActorId {
    /// The actor `thread` of node `node`.
    pub const fn new(node: NodeIndex, thread: ThreadIndex) -> Self {
        Self { node, thread }
    }
    /// A number unique to this actor in the cluster, used as its writer id in stamps and
    /// lattice actor ids.
    pub const fn writer_id(self) -> u64 {
        ((self.node as u64) << 16) | self.thread as u64
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.thread)
    }
}

/// How many copies of a key, at one level of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Factor {
    /// This many distinct members (capped at the number of members).
    Count(u16),
    /// Every member.
    Full,
}

impl Factor {
    fn resolve(self, members: usize) -> usize {
        match self {
            Self::Count(n) => usize::from(n).clamp(1, members.max(1)),
            Self::Full => members,
        }
    }
}

/// Replication of a key: `global` nodes × `local` actors per node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Replication {
    /// Distinct nodes holding the key.
    pub global: Factor,
    /// Distinct actors per holding node.
    pub local: Factor,
}

impl Replication {
    /// One copy in the whole cluster.
    pub const ONE: Self = Self { global: Factor::Count(1), local: Factor::Count(1) };
    /// Every actor of every node (the paper's "full replication").
    pub const FULL: Self = Self { global: Factor::Full, local: Factor::Full };

    /// `global` nodes × `local` actors.
    pub const fn new(global: Factor, local: Factor) -> Self {
        Self { global, local }
    }
}

impl Replication {
    /// Whether members may join and leave a cluster of this replication: every key must keep
    /// at least two copies on distinct nodes (`full`, or a count of 2 or more), so that when one
    /// node's ranges move, another owner of each range stays an owner and the new owners catch
    /// up from it (the node that stops owning a range hands its keys over, too).
    pub fn allows_membership_changes(self) -> bool {
        match self.global {
            Factor::Full => true,
            Factor::Count(n) => n >= 2,
        }
    }

    /// Why [`Replication::allows_membership_changes`] is false, if it is.
    pub fn membership_changes_refused(self) -> Option<String> {
        (!self.allows_membership_changes()).then(|| {
            format!(
                "the membership of a cluster can change only if every key has copies on at least two nodes (global replication full or 2 and more, e.g. --replication 2:1), not {:?}: a range whose one owner changes would have nobody to catch up from",
                self.global
            )
        })
    }
}

impl Default for Replication {
    fn default() -> Self {
        Self::ONE
    }
}

/// Virtual nodes per member: enough to spread keys evenly over a handful of members.
pub const DEFAULT_VIRTUAL_NODES: u32 = 64;

/// A consistent-hash ring over `members` members, each placed at several points.
#[derive(Clone, Debug)]
struct Ring {
    /// `(position, member)`, sorted by position.
    points: Vec<(u32, u16)>,
    members: usize,
}

impl Ring {
    fn new(labels: &[String], virtual_nodes: u32) -> Self {
        Self::of(labels.iter().enumerate().map(|(i, l)| (i as u16, l.as_str())), virtual_nodes)
    }

    /// A ring over `(member number, label)` pairs (numbers may skip: absent members).
    fn of<'a>(members: impl Iterator<Item = (u16, &'a str)>, virtual_nodes: u32) -> Self {
        let mut points = Vec::new();
        let mut count = 0;
        for (member, label) in members {
            count += 1;
            for vnode in 0..virtual_nodes {
                let position = crc32fast::hash(format!("{label}#{vnode}").as_bytes());
                points.push((position, member));
            }
        }
        points.sort_unstable();
        Self { points, members: count }
    }

    /// Visits members clockwise from `position` (with repeats) while `visit` returns `true`.
    fn walk(&self, position: u32, mut visit: impl FnMut(u16) -> bool) {
        if self.points.is_empty() {
            return;
        }
        let start = self.points.partition_point(|&(p, _)| p < position);
        let (after, before) = self.points.split_at(start);
        for &(_, member) in before.iter().chain(after) {
            if !visit(member) {
                return;
            }
        }
    }
}

/// The cluster's placement of keys: a global ring of nodes and, per node, a local ring of its
/// actors.
///
/// Nodes are numbered by slot ([`NodeIndex`]); a slot whose node is not a member (it left, or
/// was removed after failing) is a *hole*: no label, no actors, no place on the ring. A
/// topology is one *version* of the ring: [`Topology::version`] names it, the same on every
/// member that sees the same membership.
#[derive(Clone, Debug)]
pub struct Topology {
    nodes: Vec<String>,
    threads: Vec<ThreadIndex>,
    global: Ring,
    local: Vec<Ring>,
    replication: Replication,
    /// Every actor owns every key (full replication, or factors at least the cluster's size).
    full: bool,
    /// Slots holding a member.
    present: usize,
    /// Names this ring: a hash of its members (slot, label, actors) and its replication.
    version: u64,
}

impl Topology {
    /// A topology over nodes named by `nodes` (their gossip addresses, the same list on every
    /// node), node `i` running `threads[i]` actors; a node of 0 actors is a hole (a slot
    /// without a member).
    ///
    /// # Panics
    /// If `nodes` and `threads` differ in length or no node has an actor.
    pub fn new(nodes: Vec<String>, threads: Vec<ThreadIndex>, replication: Replication) -> Self {
        assert_eq!(nodes.len(), threads.len(), "one thread count per node");
        assert!(threads.iter().any(|&t| t > 0), "a cluster needs at least one actor");
        let present_members =
            || nodes.iter().zip(&threads).enumerate().filter(|(_, (_, t))| **t > 0);
        let global = Ring::of(
            present_members().map(|(i, (label, _))| (i as u16, label.as_str())),
            DEFAULT_VIRTUAL_NODES,
        );
        let present = present_members().count();
        let local: Vec<Ring> = threads
            .iter()
            .map(|&count| {
                let labels: Vec<String> = (0..count).map(|t| format!("thread-{t}")).collect();
                Ring::new(&labels, DEFAULT_VIRTUAL_NODES)
            })
            .collect();
        let full = replication.global.resolve(present) >= present
            && local
                .iter()
                .filter(|ring| ring.members > 0)
                .all(|ring| replication.local.resolve(ring.members) >= ring.members);
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for (slot, (label, threads)) in present_members() {
            hasher.update(&(slot as u16).to_le_bytes());
            hasher.update(&(label.len() as u64).to_le_bytes());
            hasher.update(label.as_bytes());
            hasher.update(&threads.to_le_bytes());
        }
        hasher.update(format!("{replication:?}").as_bytes());
        let version = hasher.digest();
        Self { nodes, threads, global, local, replication, full, present, version }
    }

    /// This ring's version: a 64-bit hash of its members (slots, addresses, actor counts) and
    /// replication, so two members that see the same ring have the same version (and two that
    /// do not, different ones but for a 2^-64 chance).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// How many slots hold a member.
    pub fn members(&self) -> usize {
        self.present
    }

    /// The slots holding a member, in order.
    pub fn member_slots(&self) -> impl Iterator<Item = NodeIndex> + '_ {
        self.threads.iter().enumerate().filter(|(_, t)| **t > 0).map(|(i, _)| i as NodeIndex)
    }

    /// The ring of a static cluster as node `me` sees it: `me` (its gossip address and actor
    /// count; `None` for a single node with no network) and its `peers`, ordered by address
    /// so that every member numbers the nodes alike. A peer listed twice counts once. Returns
    /// this node's index with the topology.
    ///
    /// # Panics
    /// If a member has no thread.
    pub fn of_cluster(
        me: (Option<&str>, ThreadIndex),
        peers: impl IntoIterator<Item = (String, ThreadIndex)>,
        replication: Replication,
    ) -> (NodeIndex, Self) {
        const SINGLE: &str = "local";
        let my_label = me.0.unwrap_or(SINGLE);
        let mut members: Vec<(String, ThreadIndex)> = vec![(my_label.to_owned(), me.1)];
        members.extend(peers);
        members.sort();
        members.dedup_by(|a, b| a.0 == b.0);
        let index = members
            .iter()
            .position(|(label, _)| label == my_label)
            .expect("this node is one of the members") as NodeIndex;
        let (nodes, threads) = members.into_iter().unzip();
        (index, Self::new(nodes, threads, replication))
    }

    /// Whether `actor` is one of the cluster's actors.
    pub fn has_actor(&self, actor: ActorId) -> bool {
        actor.thread < self.threads(actor.node)
    }

    /// A single node with `threads` actors.
    pub fn single(threads: ThreadIndex, replication: Replication) -> Self {
        Self::new(vec!["local".to_owned()], vec![threads], replication)
    }

    /// The node labels, by slot (empty for a hole).
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Actors on node `node` (0: a hole, or a slot beyond the ring).
    pub fn threads(&self, node: NodeIndex) -> ThreadIndex {
        self.threads.get(usize::from(node)).copied().unwrap_or(0)
    }

    /// The default replication.
    pub fn replication(&self) -> Replication {
        self.replication
    }

    /// Every actor in the cluster.
    pub fn all_actors(&self) -> impl Iterator<Item = ActorId> + '_ {
        self.threads.iter().enumerate().flat_map(|(node, &count)| {
            (0..count).map(move |thread| ActorId::new(node as NodeIndex, thread))
        })
    }

    /// The replica owners of `key` under the default replication, or under `local_override`
    /// actors per node when the key has a hot-key override.
    pub fn owners(&self, key: &[u8], local_override: Option<u32>) -> Vec<ActorId> {
        let mut owners = Vec::new();
        self.owners_into(key, local_override, &mut owners);
        owners
    }

    /// [`owners`](Self::owners) into a reused buffer.
    pub fn owners_into(&self, key: &[u8], local_override: Option<u32>, out: &mut Vec<ActorId>) {
        self.owners_at(position(key), local_override, out);
    }

    /// The owners of the keys at ring `position` (see [`position`]), into `out`.
    pub fn owners_at(&self, position: u32, local_override: Option<u32>, out: &mut Vec<ActorId>) {
        // Allocation-free: the chosen nodes are first collected in `out` as placeholders,
        // then each node's actors are appended and the placeholders removed.
        out.clear();
        if self.present == 1 {
            let only = self.member_slots().next().unwrap_or(0);
            out.push(ActorId::new(only, ThreadIndex::MAX));
        } else {
            let wanted = self.replication.global.resolve(self.present);
            self.global.walk(position, |node| {
                if !out.iter().any(|a| a.node == node) {
                    out.push(ActorId::new(node, ThreadIndex::MAX));
                }
                out.len() < wanted
            });
        }
        let chosen = out.len();
        for i in 0..chosen {
            let node = out[i].node;
            let ring = &self.local[usize::from(node)];
            let base = self.replication.local.resolve(ring.members);
            let per_node = local_override.map_or(base, |n| (n as usize).clamp(base, ring.members));
            let first = out.len();
            ring.walk(position, |thread| {
                if !out[first..].iter().any(|a| a.thread == thread) {
                    out.push(ActorId::new(node, thread));
                }
                out.len() - first < per_node
            });
        }
        out.drain(..chosen);
    }

    /// The ring's *ranges*: the sorted, distinct points of the global ring and of every local
    /// ring. Range `i` holds the positions in `(ends[i-1], ends[i]]` (range 0 also wraps round
    /// past the last end), and every key of a range has the same owners (overrides aside),
    /// which [`owners_at`](Self::owners_at) of its end gives. Every member computes the same
    /// ranges from the same cluster, so two replicas can name a range by its end.
    pub fn range_ends(&self) -> Vec<u32> {
        let mut ends: Vec<u32> = self.global.points.iter().map(|&(p, _)| p).collect();
        for ring in &self.local {
            ends.extend(ring.points.iter().map(|&(p, _)| p));
        }
        ends.sort_unstable();
        ends.dedup();
        ends
    }

    /// `true` if `actor` owns `key`.
    pub fn is_owner(&self, actor: ActorId, key: &[u8], local_override: Option<u32>) -> bool {
        if self.full {
            return self.has_actor(actor);
        }
        self.owners(key, local_override).contains(&actor)
    }

    /// The most replicas any key has under the default replication (overrides aside).
    pub fn max_replicas(&self) -> usize {
        let nodes = self.replication.global.resolve(self.present);
        let mut per_node: Vec<usize> = self
            .local
            .iter()
            .filter(|ring| ring.members > 0)
            .map(|ring| self.replication.local.resolve(ring.members))
            .collect();
        per_node.sort_unstable_by(|a, b| b.cmp(a));
        per_node.iter().take(nodes).sum()
    }

    /// `true` if every actor owns every key (no ring walk needed): full replication, or
    /// factors at least as large as the cluster (e.g. one node of one thread).
    pub fn is_full(&self) -> bool {
        self.full
    }
}

/// The ring a node routes with now: replaced whole when membership changes (a node joins or
/// leaves), read by every actor and handle of the node. Readers keep an [`Arc`](std::sync::Arc) of the version
/// they use and compare [`RingCell::version`] (one relaxed atomic load) to notice a new one.
#[derive(Debug)]
pub struct RingCell {
    current: std::sync::RwLock<std::sync::Arc<Topology>>,
    version: std::sync::atomic::AtomicU64,
}

impl RingCell {
    /// A cell holding `topology`.
    pub fn new(topology: Topology) -> Self {
        let version = std::sync::atomic::AtomicU64::new(topology.version());
        Self { current: std::sync::RwLock::new(std::sync::Arc::new(topology)), version }
    }

    /// The current ring.
    pub fn get(&self) -> std::sync::Arc<Topology> {
        match self.current.read() {
            Ok(current) => std::sync::Arc::clone(&current),
            Err(poisoned) => std::sync::Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The current ring's version.
    #[inline]
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Replaces the ring (a no-op if `topology` is the same version); `true` if it changed.
    pub fn set(&self, topology: Topology) -> bool {
        if topology.version() == self.version() {
            return false;
        }
        let version = topology.version();
        let mut current = match self.current.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = std::sync::Arc::new(topology);
        self.version.store(version, std::sync::atomic::Ordering::Release);
        true
    }

    /// `held` if it is still the current ring, else the current one.
    #[inline]
    pub fn refresh(&self, held: &mut std::sync::Arc<Topology>) -> bool {
        if held.version() == self.version() {
            return false;
        }
        *held = self.get();
        true
    }
}

/// Where `key` sits on the rings (CRC32 of its bytes).
#[inline]
pub fn position(key: &[u8]) -> u32 {
    crc32fast::hash(key)
}

/// The index in `ends` (see [`Topology::range_ends`]) of the range holding `position`.
#[inline]
pub fn range_of(ends: &[u32], position: u32) -> usize {
    let i = ends.partition_point(|&end| end < position);
    if i == ends.len() { 0 } else { i }
}

/// A key: an immutable, cheaply cloned byte string.
pub type Key = Bytes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_of_a_cluster_numbers_the_nodes_alike() {
        let r = Replication::ONE;
        let (b, from_b) =
            Topology::of_cluster((Some("b:1"), 2), [("a:1".into(), 3), ("c:1".into(), 1)], r);
        let (a, from_a) =
            Topology::of_cluster((Some("a:1"), 3), [("c:1".into(), 1), ("b:1".into(), 2)], r);
        assert_eq!((a, b), (0, 1));
        assert_eq!(from_a.nodes(), from_b.nodes());
        assert_eq!(from_a.nodes(), ["a:1", "b:1", "c:1"]);
        assert_eq!((from_b.threads(0), from_b.threads(1), from_b.threads(2)), (3, 2, 1));
        let (me, single) = Topology::of_cluster((None, 4), [], r);
        assert_eq!((me, single.nodes().len(), single.threads(0)), (0, 1, 4));
    }

    #[test]
    fn every_key_of_a_range_has_the_owners_of_its_end() {
        let topo = Topology::new(
            vec!["a:1".into(), "b:1".into(), "c:1".into()],
            vec![2, 3, 2],
            Replication::new(Factor::Count(2), Factor::Count(1)),
        );
        let ends = topo.range_ends();
        assert!(ends.windows(2).all(|w| w[0] < w[1]));
        // 192 global points, and the local rings of 2 and 3 threads share their first two
        // threads' points: at most 192 more.
        assert!(ends.len() > 192 && ends.len() <= 384, "{} ranges", ends.len());
        for i in 0..5000_u32 {
            let key = format!("key-{i}");
            let range = range_of(&ends, position(key.as_bytes()));
            let at_end = {
                let mut owners = Vec::new();
                topo.owners_at(ends[range], None, &mut owners);
                owners
            };
            assert_eq!(topo.owners(key.as_bytes(), None), at_end, "{key} in range {range}");
        }
        // The wrap-around range: positions past the last end and up to the first.
        let last = ends[ends.len() - 1];
        assert_eq!(range_of(&ends, last), ends.len() - 1);
        assert_eq!(range_of(&ends, last.wrapping_add(1)), 0);
        assert_eq!(range_of(&ends, 0), 0);
    }

    #[test]
    fn a_hole_owns_nothing_and_the_others_keep_their_keys_and_slots() {
        let r = Replication::new(Factor::Count(2), Factor::Count(1));
        let names = || vec!["a:1".to_owned(), "b:1".to_owned(), "c:1".to_owned()];
        let whole = Topology::new(names(), vec![2, 2, 2], r);
        let holed = Topology::new(names(), vec![2, 0, 2], r);
        assert_eq!((whole.members(), holed.members()), (3, 2));
        assert_ne!(whole.version(), holed.version());
        assert_eq!(holed.version(), Topology::new(names(), vec![2, 0, 2], r).version());
        assert_eq!(holed.member_slots().collect::<Vec<_>>(), [0, 2]);
        assert!(!holed.has_actor(ActorId::new(1, 0)) && holed.has_actor(ActorId::new(2, 1)));
        assert!(!holed.has_actor(ActorId::new(9, 0)));
        assert_eq!(holed.all_actors().count(), 4);
        assert!(!holed.is_full(), "one actor of two per node");
        assert!(Topology::new(names(), vec![1, 0, 1], r).is_full(), "two members, two copies");
        for i in 0..2000_u32 {
            let key = i.to_le_bytes();
            let owners = holed.owners(&key, None);
            assert_eq!(owners.len(), 2);
            assert!(owners.iter().all(|a| a.node != 1));
        }
        // One member left: it owns everything, under its own slot.
        let alone = Topology::new(names(), vec![0, 0, 3], r);
        assert_eq!(alone.owners(b"k", None), [ActorId::new(2, 0)]);
        assert_eq!(alone.max_replicas(), 1);
        // A member joining does not move another node's keys between its actors.
        let full = Replication::new(Factor::Full, Factor::Count(1));
        let before = Topology::new(names()[..2].to_vec(), vec![2, 2], full);
        let after = Topology::new(names(), vec![2, 2, 2], full);
        for i in 0..2000_u32 {
            let key = i.to_le_bytes();
            let mine = |t: &Topology| {
                t.owners(&key, None).into_iter().filter(|a| a.node < 2).collect::<Vec<_>>()
            };
            assert_eq!(mine(&before), mine(&after));
        }
    }

    #[test]
    fn crc32_is_the_standard_one() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn replication_counts_are_exact_and_distinct() {
        let topo = Topology::new(
            vec!["a:1".into(), "b:1".into(), "c:1".into()],
            vec![4, 4, 2],
            Replication::new(Factor::Count(2), Factor::Count(3)),
        );
        for i in 0..500_u32 {
            let owners = topo.owners(&i.to_le_bytes(), None);
            let mut dedup = owners.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), owners.len());
            let nodes: std::collections::BTreeSet<_> = owners.iter().map(|a| a.node).collect();
            assert_eq!(nodes.len(), 2);
            for node in nodes {
                let here = owners.iter().filter(|a| a.node == node).count();
                assert_eq!(here, if node == 2 { 2 } else { 3 });
            }
        }
    }

    #[test]
    fn full_replication_is_every_actor() {
        let topo = Topology::new(vec!["a".into(), "b".into()], vec![3, 2], Replication::FULL);
        assert_eq!(topo.owners(b"k", None).len(), 5);
    }

    #[test]
    fn placement_is_stable_and_spreads_keys() {
        let topo = Topology::single(4, Replication::ONE);
        let again = Topology::single(4, Replication::ONE);
        let mut counts = [0_usize; 4];
        for i in 0..4000_u32 {
            let key = i.to_be_bytes();
            let owner = topo.owners(&key, None)[0];
            assert_eq!(owner, again.owners(&key, None)[0]);
            counts[usize::from(owner.thread)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 500), "uneven spread: {counts:?}");
    }

    #[test]
    fn hot_key_override_widens_local_replication() {
        let topo = Topology::single(4, Replication::ONE);
        assert_eq!(topo.owners(b"hot", None).len(), 1);
        assert_eq!(topo.owners(b"hot", Some(3)).len(), 3);
        assert_eq!(topo.owners(b"hot", Some(99)).len(), 4);
        assert!(topo.owners(b"hot", Some(3)).contains(&topo.owners(b"hot", None)[0]));
    }
}
