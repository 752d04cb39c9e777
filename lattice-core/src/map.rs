//! [`MapLattice`]: a map whose values are lattices, merged key by key.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::collections::hash_map::{self, RandomState};
use std::hash::{BuildHasher, Hash};

use crate::Lattice;

/// A map from keys to lattice values. Merge takes the union of the keys and merges the values
/// of keys present on both sides. ⊥ is the empty map.
///
/// A key present with a ⊥ value is *above* an absent key (the key is known), so `{}` and
/// `{k: ⊥}` are different states; both orders and merges agree on that.
///
/// Backed by a [`HashMap`] with a pluggable hasher `S`, because this is the map Anna's actors
/// keep their whole key space in. [`merge`](Lattice::merge) allocates nothing beyond the entries
/// it inserts, and [`merge_ref`](Lattice::merge_ref) clones only the keys and values that are new.
///
/// ```
/// use lattice_core::{Lattice, MapLattice, Max};
///
/// let mut a: MapLattice<&str, Max<u32>> = MapLattice::from_iter([("x", Max::new(1)), ("y", Max::new(5))]);
/// let b = MapLattice::from_iter([("x", Max::new(3)), ("z", Max::new(2))]);
/// assert!(a.merge(b));
/// assert_eq!(a.get("x"), Some(&Max::new(3)));
/// assert_eq!(a.get("y"), Some(&Max::new(5)));
/// assert_eq!(a.len(), 3);
/// ```
#[derive(Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(
        transparent,
        bound(
            serialize = "K: serde::Serialize, V: serde::Serialize",
            deserialize = "K: serde::Deserialize<'de> + Eq + Hash, V: serde::Deserialize<'de>, S: BuildHasher + Default"
        )
    )
)]
pub struct MapLattice<K, V, S = RandomState>(HashMap<K, V, S>);

impl<K, V> MapLattice<K, V, RandomState> {
    /// The empty map (⊥).
    pub fn new() -> Self {
        Self(HashMap::new())
    }
    /// An empty map with room for `capacity` keys.
    pub fn with_capacity(capacity: usize) -> Self {
        Self(HashMap::with_capacity(capacity))
    }
}

impl<K, V, S> MapLattice<K, V, S> {
    /// An empty map using `hasher`.
    pub fn with_hasher(hasher: S) -> Self {
        Self(HashMap::with_hasher(hasher))
    }
    /// An empty map with room for `capacity` keys, using `hasher`.
    pub fn with_capacity_and_hasher(capacity: usize, hasher: S) -> Self {
        Self(HashMap::with_capacity_and_hasher(capacity, hasher))
    }
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// `true` if there are no keys (⊥).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The entries, in no particular order.
    pub fn iter(&self) -> hash_map::Iter<'_, K, V> {
        self.0.iter()
    }
    /// The keys, in no particular order.
    pub fn keys(&self) -> hash_map::Keys<'_, K, V> {
        self.0.keys()
    }
    /// Removes every key, keeping the allocation. This is *not* a lattice operation (states only
    /// grow); it is for owners that hand their state off, such as a changeset flushed by gossip.
    pub fn clear(&mut self) {
        self.0.clear();
    }
    /// Takes the entries out, leaving ⊥ behind.
    pub fn drain(&mut self) -> hash_map::Drain<'_, K, V> {
        self.0.drain()
    }
    /// The underlying map.
    pub fn as_map(&self) -> &HashMap<K, V, S> {
        &self.0
    }
    /// Unwraps the underlying map.
    pub fn into_map(self) -> HashMap<K, V, S> {
        self.0
    }
}

impl<K: Eq + Hash, V, S: BuildHasher> MapLattice<K, V, S> {
    /// The value stored under `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.get(key)
    }
    /// `true` if `key` is present.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.contains_key(key)
    }
    /// Removes `key` and returns its value. Like [`clear`](Self::clear) this steps outside the
    /// lattice: use it for garbage collection that every replica has agreed is safe (for example
    /// a tombstone every replica has seen).
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.remove(key)
    }
}

impl<K: Eq + Hash, V: Lattice, S: BuildHasher> MapLattice<K, V, S> {
    /// Merges `value` into the entry for `key` (inserting it if absent). Returns `true` if the
    /// map changed.
    pub fn merge_value(&mut self, key: K, value: V) -> bool {
        match self.0.entry(key) {
            hash_map::Entry::Occupied(mut entry) => entry.get_mut().merge(value),
            hash_map::Entry::Vacant(entry) => {
                entry.insert(value);
                true
            }
        }
    }

    /// Merges `value` into the entry for the borrowed `key`, cloning the key and the value only
    /// if the key is new. Returns `true` if the map changed.
    pub fn merge_value_ref<Q>(&mut self, key: &Q, value: &V) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(existing) = self.0.get_mut(key) {
            existing.merge_ref(value)
        } else {
            self.0.insert(key.to_owned(), value.clone());
            true
        }
    }
}

impl<K, V, S> Lattice for MapLattice<K, V, S>
where
    K: Eq + Hash + Clone,
    V: Lattice,
    S: BuildHasher + Default + Clone,
{
    fn merge(&mut self, mut other: Self) -> bool {
        if self.0.is_empty() {
            let changed = !other.0.is_empty();
            std::mem::swap(&mut self.0, &mut other.0);
            return changed;
        }
        let mut changed = false;
        for (key, value) in other.0 {
            changed |= self.merge_value(key, value);
        }
        changed
    }
    fn merge_ref(&mut self, other: &Self) -> bool {
        let mut changed = false;
        for (key, value) in &other.0 {
            if let Some(existing) = self.0.get_mut(key) {
                changed |= existing.merge_ref(value);
            } else {
                self.0.insert(key.clone(), value.clone());
                changed = true;
            }
        }
        changed
    }
    fn bottom() -> Self {
        Self(HashMap::default())
    }
    fn is_bottom(&self) -> bool {
        self.0.is_empty()
    }
    fn leq(&self, other: &Self) -> bool {
        self.0.len() <= other.0.len()
            && self
                .0
                .iter()
                .all(|(key, value)| other.0.get(key).is_some_and(|theirs| value.leq(theirs)))
    }
}

impl<K, V, S: Default> Default for MapLattice<K, V, S> {
    fn default() -> Self {
        Self(HashMap::default())
    }
}

impl<K: Eq + Hash, V: PartialEq, S: BuildHasher> PartialEq for MapLattice<K, V, S> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<K: Eq + Hash, V: Eq, S: BuildHasher> Eq for MapLattice<K, V, S> {}

impl<K: std::fmt::Debug, V: std::fmt::Debug, S> std::fmt::Debug for MapLattice<K, V, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl<K: Eq + Hash, V, S: BuildHasher + Default> FromIterator<(K, V)> for MapLattice<K, V, S> {
    /// Collects entries; a key that appears twice keeps its last value (use
    /// [`MapLattice::merge_value`] to merge duplicates instead).
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl<K, V, S> From<HashMap<K, V, S>> for MapLattice<K, V, S> {
    fn from(map: HashMap<K, V, S>) -> Self {
        Self(map)
    }
}

impl<K, V, S> IntoIterator for MapLattice<K, V, S> {
    type Item = (K, V);
    type IntoIter = hash_map::IntoIter<K, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, K, V, S> IntoIterator for &'a MapLattice<K, V, S> {
    type Item = (&'a K, &'a V);
    type IntoIter = hash_map::Iter<'a, K, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laws::check_all;
    use crate::{Max, SetUnion};

    #[test]
    fn edge_values_obey_the_laws() {
        let m = |entries: &[(u8, u64)]| -> MapLattice<u8, Max<u64>> {
            entries.iter().map(|&(k, v)| (k, Max::new(v))).collect()
        };
        check_all(&[
            m(&[]),
            m(&[(0, 0)]),
            m(&[(0, u64::MAX)]),
            m(&[(1, 5), (2, 7)]),
            m(&[(1, 9), (3, 0)]),
        ]);
    }

    #[test]
    fn nested_sets_merge_key_wise() {
        let mut a: MapLattice<&str, SetUnion<u8>> =
            MapLattice::from_iter([("k", SetUnion::from_iter([1]))]);
        let b = MapLattice::from_iter([("k", SetUnion::from_iter([2]))]);
        assert!(a.merge_ref(&b));
        assert_eq!(a.get("k").unwrap().len(), 2);
        assert!(!a.merge_ref(&b));
    }

    #[test]
    fn merge_value_ref_clones_only_new_keys() {
        let mut a: MapLattice<String, Max<u8>> = MapLattice::new();
        assert!(a.merge_value_ref("k", &Max::new(1)));
        assert!(!a.merge_value_ref("k", &Max::new(0)));
        assert!(a.merge_value_ref("k", &Max::new(2)));
        assert_eq!(a.get("k"), Some(&Max::new(2)));
    }
}
