//! [`Priority`]: the entry with the lowest priority wins; and [`TotalF64`] for float priorities.

use crate::Lattice;

/// A `(priority, value)` register where the **lowest** priority wins.
///
/// Ties on priority are broken by the value (the smaller value wins), so the outcome never
/// depends on merge order. ⊥ is the empty register. For floating-point priorities use
/// [`TotalF64`], which orders NaN and signed zeros totally.
///
/// ```
/// use lattice_core::{Lattice, Priority, TotalF64};
///
/// let mut route = Priority::new(30_u32, "via paris");
/// route.merge(Priority::new(12, "via frankfurt"));
/// route.merge(Priority::new(40, "via sydney"));
/// assert_eq!(route.value(), Some(&"via frankfurt"));
///
/// let cheapest = Priority::new(TotalF64::new(2.5), 'a').join(Priority::new(TotalF64::new(f64::NAN), 'b'));
/// assert_eq!(cheapest.value(), Some(&'a'));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct Priority<P, T> {
    entry: Option<(P, T)>,
}

impl<P, T> Priority<P, T> {
    /// A register holding `value` at `priority`.
    pub const fn new(priority: P, value: T) -> Self {
        Self { entry: Some((priority, value)) }
    }
    /// The empty register (⊥).
    pub const fn empty() -> Self {
        Self { entry: None }
    }
    /// The winning priority.
    pub fn priority(&self) -> Option<&P> {
        self.entry.as_ref().map(|(priority, _)| priority)
    }
    /// The winning value.
    pub fn value(&self) -> Option<&T> {
        self.entry.as_ref().map(|(_, value)| value)
    }
    /// Unwraps the winning entry.
    pub fn into_parts(self) -> Option<(P, T)> {
        self.entry
    }
}

impl<P: Ord, T: Ord> Priority<P, T> {
    fn beats(&self, other: &Self) -> bool {
        match (&self.entry, &other.entry) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(mine), Some(theirs)) => mine < theirs,
        }
    }
}

impl<P: Ord + Clone, T: Ord + Clone> Lattice for Priority<P, T> {
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
        Self::empty()
    }
    fn is_bottom(&self) -> bool {
        self.entry.is_none()
    }
    fn leq(&self, other: &Self) -> bool {
        !self.beats(other)
    }
}

impl<P, T> Default for Priority<P, T> {
    fn default() -> Self {
        Self::empty()
    }
}

/// An `f64` with a total order ([`f64::total_cmp`]): `-NaN < -∞ < … < -0.0 < +0.0 < … < +∞ < NaN`.
///
/// Equality agrees with the order (`NaN == NaN` with the same bits, `-0.0 != +0.0`), so it can
/// be a lattice priority or a `Max`/`Min` value without breaking the laws.
///
/// ```
/// use lattice_core::TotalF64;
/// assert!(TotalF64::new(f64::NAN) > TotalF64::new(f64::INFINITY));
/// assert!(TotalF64::new(-0.0) < TotalF64::new(0.0));
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct TotalF64(f64);

impl TotalF64 {
    /// Wraps a float.
    pub const fn new(value: f64) -> Self {
        Self(value)
    }
    /// The float.
    pub const fn get(self) -> f64 {
        self.0
    }
}

impl PartialEq for TotalF64 {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}
impl Eq for TotalF64 {}
impl PartialOrd for TotalF64 {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TotalF64 {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
impl core::hash::Hash for TotalF64 {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}
impl num_traits::Bounded for TotalF64 {
    /// The least value in the total order: a negative NaN with every payload bit set.
    fn min_value() -> Self {
        Self(f64::from_bits(u64::MAX))
    }
    /// The greatest value in the total order: a positive NaN with every payload bit set.
    fn max_value() -> Self {
        Self(f64::from_bits(u64::MAX >> 1))
    }
}
impl From<f64> for TotalF64 {
    fn from(value: f64) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laws::check_all;
    use crate::{Max, Min};
    use num_traits::Bounded;

    #[test]
    fn edge_values_obey_the_laws() {
        check_all(&[
            Priority::empty(),
            Priority::new(0_i32, 'a'),
            Priority::new(0, 'b'),
            Priority::new(i32::MIN, 'z'),
            Priority::new(i32::MAX, 'a'),
        ]);
        let f = |p: f64, v: u8| Priority::new(TotalF64::new(p), v);
        check_all(&[
            Priority::empty(),
            f(f64::NAN, 0),
            f(-f64::NAN, 0),
            f(0.0, 1),
            f(-0.0, 1),
            f(f64::INFINITY, 2),
            f(f64::NEG_INFINITY, 2),
            f(1.5, 3),
            f(1.5, 4),
        ]);
    }

    #[test]
    fn total_f64_bounds_are_the_extremes() {
        let samples = [f64::NAN, -f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, 1e300];
        for s in samples {
            assert!(TotalF64::min_value() <= TotalF64::new(s));
            assert!(TotalF64::max_value() >= TotalF64::new(s));
        }
        check_all(&samples.map(|s| Max::new(TotalF64::new(s))));
        check_all(&samples.map(|s| Min::new(TotalF64::new(s))));
    }
}
