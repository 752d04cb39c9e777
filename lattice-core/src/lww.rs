//! [`Lww`]: a last-writer-wins register with a deterministic tie-break.

use crate::Lattice;

/// When and by whom a write was made: ordered by `time`, then by `writer`.
///
/// Two writers that pick the same `time` are still ordered (by writer id), so every replica
/// picks the same winner whatever order the writes arrive in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Stamp {
    /// The write's timestamp (for example microseconds since the Unix epoch).
    pub time: u64,
    /// The id of the writer (client or actor) that made the write; unique per writer.
    pub writer: u64,
}

impl Stamp {
    /// A stamp for a write made at `time` by `writer`.
    pub const fn new(time: u64, writer: u64) -> Self {
        Self { time, writer }
    }
}

/// A last-writer-wins register: merge keeps the write with the greatest [`Stamp`].
///
/// ⊥ is the register that was never written. Ties are broken deterministically: first by
/// timestamp, then by writer id, and for two *different* values under the very same stamp (which
/// well-behaved writers never produce) by the value itself, so merge is commutative for every
/// input. (Anna's C++ register keeps the incoming value on equal timestamps, which depends on
/// arrival order and can leave replicas diverged forever.)
///
/// ```
/// use lattice_core::{Lattice, Lww, Stamp};
///
/// let mut reg = Lww::new(Stamp::new(10, 1), "first");
/// reg.merge(Lww::new(Stamp::new(12, 2), "second"));
/// reg.merge(Lww::new(Stamp::new(11, 3), "late and lost"));
/// assert_eq!(reg.value(), Some(&"second"));
///
/// // Same timestamp: the higher writer id wins on every replica.
/// let a = Lww::new(Stamp::new(5, 1), "from 1");
/// let b = Lww::new(Stamp::new(5, 2), "from 2");
/// assert_eq!(a.clone().join(b.clone()), b.clone().join(a));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct Lww<T> {
    write: Option<(Stamp, T)>,
}

impl<T> Lww<T> {
    /// A register holding `value`, written at `stamp`.
    pub const fn new(stamp: Stamp, value: T) -> Self {
        Self { write: Some((stamp, value)) }
    }
    /// The register that was never written (⊥).
    pub const fn unwritten() -> Self {
        Self { write: None }
    }
    /// The current value, if the register was ever written.
    pub fn value(&self) -> Option<&T> {
        self.write.as_ref().map(|(_, value)| value)
    }
    /// The stamp of the current value, if the register was ever written.
    pub fn stamp(&self) -> Option<Stamp> {
        self.write.as_ref().map(|(stamp, _)| *stamp)
    }
    /// The stamp and value, if the register was ever written.
    pub fn as_parts(&self) -> Option<(Stamp, &T)> {
        self.write.as_ref().map(|(stamp, value)| (*stamp, value))
    }
    /// Unwraps the stamp and value.
    pub fn into_parts(self) -> Option<(Stamp, T)> {
        self.write
    }
}

impl<T: Ord> Lww<T> {
    fn beats(&self, other: &Self) -> bool {
        match (&self.write, &other.write) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some((s1, v1)), Some((s2, v2))) => (s1, v1) > (s2, v2),
        }
    }
}

impl<T: Ord + Clone> Lattice for Lww<T> {
    fn merge(&mut self, other: Self) -> bool {
        if other.beats(self) {
            *self = other;
            true
        } else {
            false
        }
    }
    fn merge_ref(&mut self, other: &Self) -> bool {
        if other.beats(self) {
            self.clone_from(other);
            true
        } else {
            false
        }
    }
    fn bottom() -> Self {
        Self::unwritten()
    }
    fn is_bottom(&self) -> bool {
        self.write.is_none()
    }
    fn leq(&self, other: &Self) -> bool {
        !self.beats(other)
    }
}

impl<T> Default for Lww<T> {
    fn default() -> Self {
        Self::unwritten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laws::check_all;

    #[test]
    fn edge_values_obey_the_laws() {
        check_all(&[
            Lww::unwritten(),
            Lww::new(Stamp::new(0, 0), String::new()),
            Lww::new(Stamp::new(0, 0), "x".to_owned()),
            Lww::new(Stamp::new(5, 1), "a".to_owned()),
            Lww::new(Stamp::new(5, 2), "a".to_owned()),
            Lww::new(Stamp::new(5, 2), "b".to_owned()),
            Lww::new(Stamp::new(u64::MAX, u64::MAX), String::new()),
        ]);
    }

    #[test]
    fn equal_timestamps_resolve_by_writer_in_any_order() {
        let a = Lww::new(Stamp::new(7, 9), 1);
        let b = Lww::new(Stamp::new(7, 3), 2);
        assert_eq!(a.clone().join(b.clone()).value(), Some(&1));
        assert_eq!(b.join(a).value(), Some(&1));
    }
}
