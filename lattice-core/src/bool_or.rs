//! [`BoolOr`]: a flag that, once set, stays set.

use crate::Lattice;

/// A boolean that can only go from `false` to `true` (logical OR). ⊥ is `false`.
///
/// ```
/// use lattice_core::{BoolOr, Lattice};
///
/// let mut seen = BoolOr::new(false);
/// assert!(seen.merge(BoolOr::new(true)));
/// assert!(!seen.merge(BoolOr::new(false)));
/// assert!(seen.get());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct BoolOr(bool);

impl BoolOr {
    /// Wraps a flag.
    pub const fn new(value: bool) -> Self {
        Self(value)
    }
    /// The flag.
    pub const fn get(self) -> bool {
        self.0
    }
}

impl Lattice for BoolOr {
    fn merge(&mut self, other: Self) -> bool {
        let changed = other.0 && !self.0;
        self.0 |= other.0;
        changed
    }
    fn bottom() -> Self {
        Self(false)
    }
    fn is_bottom(&self) -> bool {
        !self.0
    }
    fn leq(&self, other: &Self) -> bool {
        !self.0 || other.0
    }
}

impl From<bool> for BoolOr {
    fn from(value: bool) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laws::check_all;

    #[test]
    fn edge_values_obey_the_laws() {
        check_all(&[BoolOr::new(false), BoolOr::new(true)]);
    }
}
