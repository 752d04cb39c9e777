//! A user's own lattice: the set of features a user has ever enabled, plus the highest plan
//! level they reached. Written by hand against the `Lattice` trait.

use lattice_core::{Lattice, Max, SetUnion};

/// What an account has unlocked, merged across devices.
#[derive(Clone, Debug, PartialEq)]
pub struct Unlocked {
    /// Highest plan level reached.
    pub plan: Max<u8>,
    /// Features ever enabled.
    pub features: SetUnion<String>,
}

impl Lattice for Unlocked {
    fn merge(&mut self, other: Self) -> bool {
        let plan = self.plan.merge(other.plan);
        let features = self.features.merge(other.features);
        plan | features
    }
    fn merge_ref(&mut self, other: &Self) -> bool {
        let plan = self.plan.merge_ref(&other.plan);
        let features = self.features.merge_ref(&other.features);
        plan | features
    }
    fn bottom() -> Self {
        Unlocked { plan: Max::bottom(), features: SetUnion::bottom() }
    }
    fn is_bottom(&self) -> bool {
        self.plan.is_bottom() && self.features.is_bottom()
    }
}

/// The same idea, derived: the example session. `#[lattice(arbitrary)]` adds proptest
/// and quickcheck generators in builds where lattice-core has those features (here: tests,
/// through `[dev-dependencies]`), and nothing in normal builds.
#[derive(lattice_core::Lattice, Clone, Debug, PartialEq)]
#[lattice(arbitrary)]
pub struct Session {
    /// What this session has seen.
    pub seen: lattice_core::VectorClock,
    /// The shopping cart.
    pub cart: lattice_core::OrSet<String>,
    /// Running total.
    pub total: lattice_core::PNCounter,
}
