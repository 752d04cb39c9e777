//! Law checks for any [`Lattice`]: call them from your own tests.
//!
//! [`check_all`] takes a handful of sample states (⊥ is added for you) and checks every law
//! of the [`Lattice`] trait over every single sample, every pair and every triple. It panics
//! with a message that names the law and shows the values; [`try_check_all`] returns the same
//! finding as a [`LawViolation`] instead.
//!
//! ```
//! use lattice_core::{laws, Max, SetUnion, Pair};
//!
//! laws::check_all(&[
//!     Pair::new(Max::new(1_u8), SetUnion::from_iter(['a'])),
//!     Pair::new(Max::new(3), SetUnion::from_iter(['b', 'c'])),
//! ]);
//! ```
//!
//! A broken merge is caught and explained:
//!
//! ```
//! use lattice_core::{laws, Lattice};
//!
//! /// "Keep the newer value" with no tie-break: not commutative.
//! #[derive(Clone, Debug, PartialEq)]
//! struct Naive { time: u8, value: char }
//! impl Lattice for Naive {
//!     fn merge(&mut self, other: Self) -> bool {
//!         let changed = other.time >= self.time && other != *self;
//!         if changed { *self = other; }
//!         changed
//!     }
//!     fn bottom() -> Self { Naive { time: 0, value: '\0' } }
//!     fn is_bottom(&self) -> bool { *self == Self::bottom() }
//! }
//! let err = laws::try_check_all(&[Naive { time: 1, value: 'a' }, Naive { time: 1, value: 'b' }])
//!     .unwrap_err();
//! assert_eq!(err.law, laws::Law::Commutativity);
//! ```
//!
//! For randomized checks see the `lattice_law_tests!` macro (feature `proptest`) and
//! `quickcheck_laws` (feature `quickcheck`).

use core::cmp::Ordering;
use core::fmt::{self, Debug};

use crate::Lattice;

/// The law a value broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Law {
    /// `(a ⊔ b) ⊔ c == a ⊔ (b ⊔ c)`.
    Associativity,
    /// `a ⊔ b == b ⊔ a`.
    Commutativity,
    /// `a ⊔ a == a`, reported unchanged.
    Idempotence,
    /// `⊥ ⊔ a == a ⊔ ⊥ == a`.
    BottomIdentity,
    /// `is_bottom(a)` exactly when `a == ⊥`.
    BottomDetection,
    /// `merge` returns `true` exactly when the state changed.
    ChangedFlag,
    /// `merge_ref(&b)` does what `merge(b)` does.
    MergeRefAgrees,
    /// `a.leq(b)` exactly when `a ⊔ b == b`, and `lattice_cmp` agrees with `leq`.
    OrderAgrees,
    /// `Default::default()` is ⊥.
    DefaultIsBottom,
    /// Encoding and decoding gives back the same state.
    RoundTrip,
    /// A delta is below the new state and takes the old state to it (`δ ≤ new`,
    /// `old ⊔ δ == new`).
    DeltaAgrees,
    /// A split's parts are below the state, within the bound, and join back to it.
    SplitJoins,
}

impl Law {
    /// A short human name for the law.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Associativity => "associativity",
            Self::Commutativity => "commutativity",
            Self::Idempotence => "idempotence",
            Self::BottomIdentity => "bottom is the identity",
            Self::BottomDetection => "is_bottom detects bottom",
            Self::ChangedFlag => "truthful changed flag",
            Self::MergeRefAgrees => "merge_ref agrees with merge",
            Self::OrderAgrees => "order agrees with merge",
            Self::DefaultIsBottom => "Default is bottom",
            Self::RoundTrip => "serialization round trip",
            Self::DeltaAgrees => "delta takes old to new",
            Self::SplitJoins => "split parts join back",
        }
    }
}

impl fmt::Display for Law {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A broken law, with the values that break it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LawViolation {
    /// Which law.
    pub law: Law,
    /// What went wrong, with the values involved (their `Debug` forms).
    pub details: String,
}

impl fmt::Display for LawViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lattice law violated: {}\n{}", self.law, self.details)
    }
}

impl std::error::Error for LawViolation {}

fn fail<T>(law: Law, what: &str, values: &[(&str, &dyn Debug)]) -> Result<T, LawViolation> {
    let mut details = format!("  {what}");
    for (name, value) in values {
        details.push_str(&format!("\n  {name} = {value:?}"));
    }
    Err(LawViolation { law, details })
}

fn joined<T: Lattice>(a: &T, b: &T) -> (T, bool) {
    let mut out = a.clone();
    let changed = out.merge(b.clone());
    (out, changed)
}

/// Checks the laws that involve one state: idempotence, ⊥ identity and detection.
pub fn try_check_one<T: Lattice + PartialEq + Debug>(a: &T) -> Result<(), LawViolation> {
    let bottom = T::bottom();
    if !bottom.is_bottom() {
        return fail(Law::BottomDetection, "bottom().is_bottom() is false", &[("⊥", &bottom)]);
    }
    if a.is_bottom() != (*a == bottom) {
        return fail(
            Law::BottomDetection,
            "is_bottom(a) disagrees with a == ⊥",
            &[("a", a), ("is_bottom(a)", &a.is_bottom()), ("⊥", &bottom)],
        );
    }
    let (aa, changed) = joined(a, a);
    if aa != *a || changed {
        return fail(
            Law::Idempotence,
            "a ⊔ a must be a, reported unchanged",
            &[("a", a), ("a ⊔ a", &aa), ("changed", &changed)],
        );
    }
    let mut aa_ref = a.clone();
    let changed_ref = aa_ref.merge_ref(a);
    if aa_ref != *a || changed_ref {
        return fail(
            Law::Idempotence,
            "a.merge_ref(&a) must leave a unchanged and return false",
            &[("a", a), ("result", &aa_ref), ("changed", &changed_ref)],
        );
    }
    let (a_bot, changed) = joined(a, &bottom);
    if a_bot != *a || changed {
        return fail(
            Law::BottomIdentity,
            "a ⊔ ⊥ must be a, reported unchanged",
            &[("a", a), ("a ⊔ ⊥", &a_bot), ("changed", &changed), ("⊥", &bottom)],
        );
    }
    let (bot_a, changed) = joined(&bottom, a);
    if bot_a != *a || changed != (*a != bottom) {
        return fail(
            Law::BottomIdentity,
            "⊥ ⊔ a must be a, reported changed iff a != ⊥",
            &[("a", a), ("⊥ ⊔ a", &bot_a), ("changed", &changed), ("⊥", &bottom)],
        );
    }
    if !bottom.leq(a) || !a.leq(a) {
        return fail(
            Law::OrderAgrees,
            "⊥ ≤ a and a ≤ a must hold",
            &[("a", a), ("⊥ ≤ a", &bottom.leq(a)), ("a ≤ a", &a.leq(a))],
        );
    }
    Ok(())
}

/// Checks the laws that involve two states: commutativity, the changed flag, `merge_ref`, and
/// the order.
pub fn try_check_pair<T: Lattice + PartialEq + Debug>(a: &T, b: &T) -> Result<(), LawViolation> {
    let (ab, changed) = joined(a, b);
    let (ba, _) = joined(b, a);
    if ab != ba {
        return fail(
            Law::Commutativity,
            "a ⊔ b != b ⊔ a",
            &[("a", a), ("b", b), ("a ⊔ b", &ab), ("b ⊔ a", &ba)],
        );
    }
    if changed != (ab != *a) {
        return fail(
            Law::ChangedFlag,
            "a.merge(b) must return true exactly when a changed",
            &[("a", a), ("b", b), ("a ⊔ b", &ab), ("returned", &changed)],
        );
    }
    let mut ab_ref = a.clone();
    let changed_ref = ab_ref.merge_ref(b);
    if ab_ref != ab || changed_ref != changed {
        return fail(
            Law::MergeRefAgrees,
            "a.merge_ref(&b) must give the state and flag that a.merge(b) gives",
            &[
                ("a", a),
                ("b", b),
                ("merge", &ab),
                ("merge returned", &changed),
                ("merge_ref", &ab_ref),
                ("merge_ref returned", &changed_ref),
            ],
        );
    }
    let leq = a.leq(b);
    if leq != (ab == *b) {
        return fail(
            Law::OrderAgrees,
            "a.leq(&b) must hold exactly when a ⊔ b == b",
            &[("a", a), ("b", b), ("a ⊔ b", &ab), ("a.leq(&b)", &leq)],
        );
    }
    let expected = match (leq, b.leq(a)) {
        (true, true) => Some(Ordering::Equal),
        (true, false) => Some(Ordering::Less),
        (false, true) => Some(Ordering::Greater),
        (false, false) => None,
    };
    let cmp = a.lattice_cmp(b);
    if cmp != expected {
        return fail(
            Law::OrderAgrees,
            "a.lattice_cmp(&b) disagrees with leq",
            &[("a", a), ("b", b), ("lattice_cmp", &cmp), ("from leq", &expected)],
        );
    }
    if leq && b.leq(a) && a != b {
        return fail(
            Law::OrderAgrees,
            "a ≤ b and b ≤ a but a != b (two representations of one state)",
            &[("a", a), ("b", b)],
        );
    }
    if !a.leq(&ab) || !b.leq(&ab) {
        return fail(
            Law::OrderAgrees,
            "a ⊔ b must be above both a and b",
            &[("a", a), ("b", b), ("a ⊔ b", &ab)],
        );
    }
    Ok(())
}

/// Checks associativity over three states.
pub fn try_check_triple<T: Lattice + PartialEq + Debug>(
    a: &T,
    b: &T,
    c: &T,
) -> Result<(), LawViolation> {
    let left = joined(&joined(a, b).0, c).0;
    let right = joined(a, &joined(b, c).0).0;
    if left != right {
        return fail(
            Law::Associativity,
            "(a ⊔ b) ⊔ c != a ⊔ (b ⊔ c)",
            &[("a", a), ("b", b), ("c", c), ("(a ⊔ b) ⊔ c", &left), ("a ⊔ (b ⊔ c)", &right)],
        );
    }
    Ok(())
}

/// Checks every law over ⊥ and `samples`: each sample alone, every ordered pair and every
/// ordered triple. Returns the first violation found.
pub fn try_check_all<T: Lattice + PartialEq + Debug>(samples: &[T]) -> Result<(), LawViolation> {
    let mut all = Vec::with_capacity(samples.len() + 1);
    all.push(T::bottom());
    all.extend(samples.iter().cloned());
    for a in &all {
        try_check_one(a)?;
    }
    for a in &all {
        for b in &all {
            try_check_pair(a, b)?;
        }
    }
    for a in &all {
        for b in &all {
            for c in &all {
                try_check_triple(a, b, c)?;
            }
        }
    }
    Ok(())
}

/// Like [`try_check_all`], but panics with the violation (for use in `#[test]`s).
///
/// # Panics
/// If any law fails; the message names the law and shows the values.
#[track_caller]
pub fn check_all<T: Lattice + PartialEq + Debug>(samples: &[T]) {
    if let Err(violation) = try_check_all(samples) {
        panic!("{violation}");
    }
}

/// Checks that `T::default()` is ⊥.
pub fn try_check_default<T: Lattice + Default + PartialEq + Debug>() -> Result<(), LawViolation> {
    let default = T::default();
    let bottom = T::bottom();
    if default != bottom {
        return fail(
            Law::DefaultIsBottom,
            "Default::default() != bottom()",
            &[("default", &default), ("bottom", &bottom)],
        );
    }
    Ok(())
}

/// Checks that every sample survives `encode` then `decode` unchanged, for whatever format
/// your replicas use (for example `serde_json` or `bincode`).
///
/// ```
/// use lattice_core::{laws, VectorClock};
///
/// let clocks = [VectorClock::new(), VectorClock::from_iter([(1_u64, 4), (2, 9)])];
/// laws::try_check_round_trip(
///     &clocks,
///     |c| serde_json::to_string(c).unwrap(),
///     |s| serde_json::from_str(&s).unwrap(),
/// ).unwrap();
/// ```
pub fn try_check_round_trip<T, E>(
    samples: &[T],
    encode: impl Fn(&T) -> E,
    decode: impl Fn(E) -> T,
) -> Result<(), LawViolation>
where
    T: PartialEq + Debug,
{
    for sample in samples {
        let back = decode(encode(sample));
        if back != *sample {
            return fail(
                Law::RoundTrip,
                "decode(encode(a)) != a",
                &[("a", sample), ("decoded", &back)],
            );
        }
    }
    Ok(())
}

/// Checks that `delta`, reported by a mutation of `before` into `after`, is a delta of it:
/// `delta ≤ after` and `before ⊔ delta == after` (see [`crate::delta`]).
///
/// ```
/// use lattice_core::{laws, OrSet};
/// let mut set = OrSet::<char, u8>::new();
/// let before = set.clone();
/// let delta = set.add_delta(1, 'x');
/// laws::try_check_delta(&before, &delta, &set).unwrap();
/// // The whole new state is a delta too, just not a small one; the old state is not.
/// laws::try_check_delta(&before, &set, &set).unwrap();
/// assert!(laws::try_check_delta(&before, &before, &set).is_err());
/// ```
pub fn try_check_delta<T: Lattice + PartialEq + Debug>(
    before: &T,
    delta: &T,
    after: &T,
) -> Result<(), LawViolation> {
    let values: [(&str, &dyn Debug); 3] = [("old", before), ("delta", delta), ("new", after)];
    if !delta.leq(after) {
        return fail(Law::DeltaAgrees, "delta is not below the new state", &values);
    }
    let (reached, _) = joined(before, delta);
    if reached != *after {
        return fail(Law::DeltaAgrees, "old ⊔ delta != new", &values);
    }
    Ok(())
}

/// Checks [`Decompose::split`](crate::delta::Decompose::split) of `state` at `max_weight`:
/// at least one part, each below the state and within the bound (unless it cannot be cut any
/// further: a part of one element may outweigh it), and their join is the state.
pub fn try_check_split<T>(state: &T, max_weight: usize) -> Result<(), LawViolation>
where
    T: crate::delta::Decompose + PartialEq + Debug,
{
    let parts = state.clone().split(max_weight);
    if parts.is_empty() {
        return fail(Law::SplitJoins, "split returned no parts", &[("state", state)]);
    }
    for part in &parts {
        if !part.leq(state) {
            return fail(
                Law::SplitJoins,
                "a part is not below the state",
                &[("state", state), ("part", part)],
            );
        }
        let indivisible = || part.clone().split(1).len() == 1;
        if part.weight() > max_weight.max(1) && parts.len() > 1 && !indivisible() {
            return fail(
                Law::SplitJoins,
                "a part outweighs the bound",
                &[("state", state), ("part", part)],
            );
        }
    }
    let rejoined = crate::lattice::join_all(parts.iter().cloned());
    if rejoined != *state {
        return fail(
            Law::SplitJoins,
            "the parts do not join back to the state",
            &[("state", state), ("rejoined", &rejoined), ("parts", &parts)],
        );
    }
    Ok(())
}
