//! What the store keeps under a key: any lattice that also knows how to be deleted.
//!
//! The engine is generic over the value lattice `V`; a consistency level is a choice of `V`
//! (plus a client-side session). [`KvsValue`] is the small seam between the two: how a DELETE
//! turns into a lattice state, how a state reads as "absent", and, for timestamped values,
//! when a deleted key's memory may be reclaimed.

use std::fmt::Debug;

use bytes::Bytes;
use lattice_core::delta::Decompose;
use lattice_core::{Lattice, Lww, OrSet, PNCounter, Stamp};
use serde::{Serialize, de::DeserializeOwned};

/// A value lattice the store can hold.
pub trait KvsValue:
    Lattice + PartialEq + Debug + Send + Sync + Serialize + DeserializeOwned + 'static
{
    /// A short, stable name of the lattice type. It is checked on every message between nodes,
    /// so a node configured with another value type is refused instead of misread.
    const TYPE_NAME: &'static str;

    /// Value-specific operations that read the replica's state (see [`apply`](Self::apply));
    /// [`NoOp`] for values that have none.
    type Op: Clone + Debug + PartialEq + Send + Sync + Serialize + DeserializeOwned + 'static;

    /// What an operation answers.
    type OpOutput: Clone + Debug + PartialEq + Send + Sync + Serialize + DeserializeOwned + 'static;

    /// Applies `op` to this replica's state, as a write stamped `stamp` by `writer`. The state
    /// must only move up (the result is merged into other replicas like any write). Returns
    /// whether it changed and the answer, or a refusal that leaves the state untouched.
    ///
    /// # Errors
    /// An [`OpError`] when the operation does not apply to this state.
    fn apply(
        &mut self,
        op: Self::Op,
        stamp: Stamp,
        writer: u64,
    ) -> Result<(bool, Self::OpOutput), OpError>;

    /// Like [`apply`](Self::apply), and also says how the state changed: by a small delta
    /// (`δ ≤ new`, `old ⊔ δ == new`; see [`lattice_core::delta`]) where the value can tell,
    /// so a change to a big state is gossiped and logged as what changed instead of the whole
    /// state. The store calls it only for states whose [`weight`](Self::weight) makes that
    /// worthwhile. The default reports every change as [`Change::Whole`].
    ///
    /// # Errors
    /// As [`apply`](Self::apply).
    fn apply_delta(
        &mut self,
        op: Self::Op,
        stamp: Stamp,
        writer: u64,
    ) -> Result<(Change<Self>, Self::OpOutput), OpError> {
        let (changed, output) = self.apply(op, stamp, writer)?;
        Ok((if changed { Change::Whole } else { Change::Unchanged }, output))
    }

    /// The state's size in elements (a set's members and tombstones; 1 for a scalar): the
    /// store tracks deltas of states of some weight, and ships and logs whole states heavier
    /// than a bound in parts (see [`split`](Self::split)). Must be cheap. Defaults to 1.
    fn weight(&self) -> usize {
        1
    }

    /// A cheap upper bound on the state's encoded size in bytes, where the value knows one
    /// without encoding itself (gossip packs its batches by size); `None` has it measured by
    /// encoding. Defaults to `None`.
    fn encoded_size_bound(&self) -> Option<usize> {
        None
    }

    /// Cuts the state into parts of at most `max_weight` each whose join is the state, each
    /// below it (the laws of [`lattice_core::delta::Decompose`]), so a big state travels in
    /// bounded messages. The default does not cut.
    #[must_use]
    fn split(self, max_weight: usize) -> Vec<Self> {
        let _ = max_weight;
        vec![self]
    }

    /// Applies a DELETE, made at `stamp` by `writer`, to this replica's state. Returns `true`
    /// if the state changed. The result must be above `self` (deletes are lattice writes too).
    fn delete(&mut self, stamp: Stamp, writer: u64) -> bool;

    /// `true` if a read should report the key as absent.
    fn is_deleted(&self) -> bool;

    /// For a timestamped tombstone, its stamp: once every replica has it and no older update
    /// can still arrive, the key's memory can be freed (paper §VII.A). `None` for values that
    /// are not tombstones or whose deletes are not timestamped.
    fn tombstone_stamp(&self) -> Option<Stamp> {
        None
    }

    /// Replaces the stamp of a freshly built write with one the actor assigns (for requests
    /// with `stamp_here`). Values without stamps ignore it.
    fn restamp(&mut self, stamp: Stamp) {
        let _ = stamp;
    }

    /// The newest write stamp the state carries, if the lattice is timestamped. A client write
    /// whose stamp is at or below the store's reclamation floor is refused: it could otherwise
    /// resurrect a key whose tombstone was already freed.
    fn write_stamp(&self) -> Option<Stamp> {
        None
    }

    /// Whether `op` only reads (it takes no stamp, so reads never move the actor's clock).
    /// Defaults to `false`.
    fn op_reads_only(op: &Self::Op) -> bool {
        let _ = op;
        false
    }

    /// Whether `op` may make the state bigger (a write past `maxmemory` is refused only then;
    /// a removal or a read goes through). Defaults to `true`.
    fn op_may_grow(op: &Self::Op) -> bool {
        let _ = op;
        true
    }

    /// The newest wall-clock stamp anywhere in the state (a write, a delete, a type change),
    /// if the lattice carries any: a state stamped far ahead of the receiving actor's clock is
    /// refused, so one bad clock or forged message cannot pin a key. Defaults to
    /// [`write_stamp`](Self::write_stamp).
    fn newest_stamp(&self) -> Option<Stamp> {
        self.write_stamp()
    }

    /// The name of the state's type as a client sees it (Redis's `TYPE`: `string`, `set`),
    /// for `SCAN … TYPE`; `None` for a deleted state or a value without such names. Defaults
    /// to `None`.
    fn type_name(&self) -> Option<&'static str> {
        None
    }

    /// When the state's time to live runs out (µs since the Unix epoch, the actors' clock),
    /// for values whose keys can expire: from then on the key reads as absent, and the actor
    /// holding it calls [`expire`](Self::expire) to turn the expiry into a real delete. Must
    /// be cheap (it is asked after every change). Defaults to `None` (keys never expire).
    fn expires_at(&self) -> Option<u64> {
        None
    }

    /// Turns an expiry due at `now` into a delete, the same on every replica that holds the
    /// same state (its stamp comes from the state, not from the replica), so replicas that
    /// expire a key on their own agree. Returns whether the state changed. The default does
    /// nothing.
    fn expire(&mut self, now: u64) -> bool {
        let _ = now;
        false
    }
}

/// How a write changed a stored state (see [`KvsValue::apply_delta`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Change<V> {
    /// Not at all.
    Unchanged,
    /// In a way only the whole new state describes.
    Whole,
    /// By this delta: below the new state, and the old state merged with it is the new one.
    Delta(V),
}

impl<V> Change<V> {
    /// Whether the state changed.
    pub fn changed(&self) -> bool {
        !matches!(self, Self::Unchanged)
    }
}

/// The `KvsValue` items of a value with no operations of its own: `Op` and `OpOutput` are
/// [`NoOp`], and `apply` cannot be called.
macro_rules! no_ops {
    () => {
        type Op = $crate::value::NoOp;
        type OpOutput = $crate::value::NoOp;
        fn apply(
            &mut self,
            op: $crate::value::NoOp,
            _: lattice_core::Stamp,
            _: u64,
        ) -> Result<(bool, $crate::value::NoOp), $crate::value::OpError> {
            match op {}
        }
    };
}
pub(crate) use no_ops;

/// Why [`KvsValue::apply`] refused an operation (the state is left untouched). Front ends map
/// each variant to their protocol's text in one place (Redis: `WRONGTYPE …`, `ERR …`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// The key holds another kind of value than the operation works on (a set increment).
    #[error("operation against a key holding the wrong kind of value")]
    WrongType,
    /// The operation needs an integer and the value is not one (or is out of range).
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    /// The result would not fit the value's integer range.
    #[error("increment or decrement would overflow")]
    Overflow,
    /// Any other refusal by a value type of the user's own, with a message for the client.
    #[error("{0}")]
    Other(String),
}

/// The operation type of values without operations: it has no values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum NoOp {}

/// Eventual consistency: a last-writer-wins register whose value is `None` once deleted.
///
/// The design notes name `Lww<Bytes>`; a DELETE needs a state that wins or loses by stamp
/// like any write, and an empty value cannot be it (empty strings are legitimate values), so
/// the register holds `Option<Bytes>`: the paper's "DELETE is a PUT with an empty value",
/// without stealing the empty value.
pub type Eventual = Lww<Option<Bytes>>;

impl KvsValue for Lww<Option<Bytes>> {
    const TYPE_NAME: &'static str = "lww-bytes";
    no_ops!();

    fn encoded_size_bound(&self) -> Option<usize> {
        // Presence tags, the stamp's two varints and the length's: under 32 bytes.
        Some(self.value().and_then(Option::as_ref).map_or(0, Bytes::len) + 32)
    }

    fn delete(&mut self, stamp: Stamp, _writer: u64) -> bool {
        self.merge(Lww::new(stamp, None))
    }
    fn is_deleted(&self) -> bool {
        !matches!(self.value(), Some(Some(_)))
    }
    fn tombstone_stamp(&self) -> Option<Stamp> {
        match self.as_parts() {
            Some((stamp, None)) => Some(stamp),
            _ => None,
        }
    }
    fn write_stamp(&self) -> Option<Stamp> {
        self.stamp()
    }
    fn restamp(&mut self, stamp: Stamp) {
        if let Some((_, value)) = std::mem::take(self).into_parts() {
            *self = Lww::new(stamp, value);
        }
    }
}

/// Sets (Redis `SADD` and friends): an add-wins observed-remove set of byte strings. A DELETE
/// removes every element this replica has observed; a concurrent add survives it.
pub type Set = OrSet<Bytes>;

impl KvsValue for OrSet<Bytes> {
    const TYPE_NAME: &'static str = "or-set-bytes";
    no_ops!();

    fn weight(&self) -> usize {
        Decompose::weight(self)
    }
    fn split(self, max_weight: usize) -> Vec<Self> {
        Decompose::split(self, max_weight)
    }

    fn delete(&mut self, _stamp: Stamp, _writer: u64) -> bool {
        let present: Vec<Bytes> = self.iter().cloned().collect();
        let mut changed = false;
        for value in &present {
            changed |= self.remove(value);
        }
        changed
    }
    fn is_deleted(&self) -> bool {
        self.is_empty()
    }
}

/// Counters (Redis `INCR` and friends). A DELETE subtracts the value this replica observed
/// (on behalf of the deleting writer), so increments it did not see survive it.
pub type Counter = PNCounter;

impl KvsValue for PNCounter {
    const TYPE_NAME: &'static str = "pn-counter";
    no_ops!();

    fn delete(&mut self, _stamp: Stamp, writer: u64) -> bool {
        let value = self.value();
        if value == 0 {
            return false;
        }
        let magnitude = u64::try_from(value.unsigned_abs()).unwrap_or(u64::MAX);
        if value > 0 {
            self.decrement(writer, magnitude);
        } else {
            self.increment(writer, magnitude);
        }
        true
    }
    fn is_deleted(&self) -> bool {
        self.value() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lww_delete_is_a_write_that_wins_or_loses_by_stamp() {
        let mut v = Lww::new(Stamp::new(5, 1), Some(Bytes::from_static(b"x")));
        assert!(!v.is_deleted());
        assert!(!v.clone().delete(Stamp::new(4, 1), 1), "an older delete loses");
        assert!(v.delete(Stamp::new(6, 1), 1));
        assert!(v.is_deleted());
        assert_eq!(v.tombstone_stamp(), Some(Stamp::new(6, 1)));
        assert!(v.merge(Lww::new(Stamp::new(7, 2), Some(Bytes::new()))));
        assert!(!v.is_deleted(), "the empty string is a value, not a tombstone");
    }

    #[test]
    fn set_and_counter_deletes_are_observed_removes() {
        let mut s = Set::new();
        s.add(1, Bytes::from_static(b"a"));
        let mut other = s.clone();
        other.add(2, Bytes::from_static(b"b"));
        assert!(s.delete(Stamp::new(1, 1), 1));
        assert!(s.is_deleted());
        assert!(s.clone().join(other).contains(&Bytes::from_static(b"b")));

        let mut c = Counter::new();
        c.increment(1, 5);
        let mut concurrent = c.clone();
        concurrent.increment(2, 2);
        assert!(c.delete(Stamp::new(1, 1), 9));
        assert!(c.is_deleted());
        assert_eq!(c.join(concurrent).value(), 2);
    }
}
