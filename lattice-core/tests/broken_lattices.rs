//! The law checks catch broken lattices: each type here breaks exactly one law, and both the
//! exhaustive `check_all` and the randomized suite must report it. A checker that cannot fail
//! proves nothing.

use lattice_core::laws::{Law, try_check_all};
use lattice_core::proptest::prelude::*;
use lattice_core::{Lattice, run_law_suite};

/// LWW that keeps the *incoming* value on equal timestamps: merge order decides the winner.
#[derive(Clone, Debug, PartialEq)]
struct IncomingWinsLww {
    time: u8,
    value: u8,
}

impl Lattice for IncomingWinsLww {
    fn merge(&mut self, other: Self) -> bool {
        if other.time >= self.time && other != *self {
            *self = other;
            true
        } else {
            false
        }
    }
    fn bottom() -> Self {
        Self { time: 0, value: 0 }
    }
    fn is_bottom(&self) -> bool {
        *self == Self::bottom()
    }
}

/// A counter whose merge adds: merging a state into itself doubles it.
#[derive(Clone, Debug, PartialEq)]
struct AddingCounter(u32);

impl Lattice for AddingCounter {
    fn merge(&mut self, other: Self) -> bool {
        self.0 = self.0.saturating_add(other.0);
        other.0 != 0
    }
    fn bottom() -> Self {
        Self(0)
    }
    fn is_bottom(&self) -> bool {
        self.0 == 0
    }
}

/// A max register whose `merge` always claims a change.
#[derive(Clone, Debug, PartialEq)]
struct LyingMax(u8);

impl Lattice for LyingMax {
    fn merge(&mut self, other: Self) -> bool {
        self.0 = self.0.max(other.0);
        true
    }
    fn bottom() -> Self {
        Self(0)
    }
    fn is_bottom(&self) -> bool {
        self.0 == 0
    }
}

/// A correct max register with a hand-written order that compares the wrong way.
#[derive(Clone, Debug, PartialEq)]
struct BackwardsOrder(u8);

impl Lattice for BackwardsOrder {
    fn merge(&mut self, other: Self) -> bool {
        let changed = other.0 > self.0;
        self.0 = self.0.max(other.0);
        changed
    }
    fn bottom() -> Self {
        Self(0)
    }
    fn is_bottom(&self) -> bool {
        self.0 == 0
    }
    fn leq(&self, other: &Self) -> bool {
        self.0 >= other.0
    }
}

/// A correct set union whose `merge_ref` forgets to merge.
#[derive(Clone, Debug, PartialEq)]
struct LazyMergeRef(std::collections::BTreeSet<u8>);

impl Lattice for LazyMergeRef {
    fn merge(&mut self, other: Self) -> bool {
        let before = self.0.len();
        self.0.extend(other.0);
        self.0.len() != before
    }
    fn merge_ref(&mut self, _other: &Self) -> bool {
        false
    }
    fn bottom() -> Self {
        Self(Default::default())
    }
    fn is_bottom(&self) -> bool {
        self.0.is_empty()
    }
}

/// Rock-paper-scissors: the winner of a pair is commutative, idempotent and above both players,
/// but the winner of three depends on who plays first: associativity is the only law broken.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Hand {
    Nothing,
    Rock,
    Paper,
    Scissors,
}

impl Lattice for Hand {
    fn merge(&mut self, other: Self) -> bool {
        use Hand::*;
        let winner = match (*self, other) {
            (Nothing, x) | (x, Nothing) => x,
            (Rock, Scissors) | (Scissors, Rock) => Rock,
            (Paper, Rock) | (Rock, Paper) => Paper,
            (Scissors, Paper) | (Paper, Scissors) => Scissors,
            (x, _) => x,
        };
        let changed = winner != *self;
        *self = winner;
        changed
    }
    fn bottom() -> Self {
        Hand::Nothing
    }
    fn is_bottom(&self) -> bool {
        *self == Hand::Nothing
    }
}

/// `is_bottom` that is wrong for one non-bottom value.
#[derive(Clone, Debug, PartialEq)]
struct ConfusedBottom(u8);

impl Lattice for ConfusedBottom {
    fn merge(&mut self, other: Self) -> bool {
        let changed = other.0 > self.0;
        self.0 = self.0.max(other.0);
        changed
    }
    fn bottom() -> Self {
        Self(0)
    }
    fn is_bottom(&self) -> bool {
        self.0 <= 1
    }
}

fn law_broken_by<T: Lattice + PartialEq + std::fmt::Debug>(samples: &[T]) -> Law {
    match try_check_all(samples) {
        Ok(()) => panic!("the law checks accepted a broken lattice: {samples:?}"),
        Err(violation) => {
            // The message names the law and shows values.
            let message = violation.to_string();
            assert!(message.contains(violation.law.name()), "{message}");
            assert!(message.contains(" = "), "{message}");
            violation.law
        }
    }
}

#[test]
fn incoming_wins_lww_is_not_commutative() {
    let samples = [IncomingWinsLww { time: 3, value: 1 }, IncomingWinsLww { time: 3, value: 2 }];
    assert_eq!(law_broken_by(&samples), Law::Commutativity);
}

#[test]
fn adding_counter_is_not_idempotent() {
    assert_eq!(law_broken_by(&[AddingCounter(2)]), Law::Idempotence);
}

#[test]
fn lying_changed_flag_is_caught() {
    // Idempotence also covers the flag of a ⊔ a; with one sample that is what fires first.
    let law = law_broken_by(&[LyingMax(1), LyingMax(5)]);
    assert!(matches!(law, Law::Idempotence | Law::ChangedFlag), "{law:?}");
    // A pair where the flag lies but idempotence holds is caught as a flag violation.
    let err = lattice_core::laws::try_check_pair(&LyingMax(5), &LyingMax(1)).unwrap_err();
    assert_eq!(err.law, Law::ChangedFlag);
}

#[test]
fn backwards_order_is_caught() {
    assert_eq!(law_broken_by(&[BackwardsOrder(1), BackwardsOrder(5)]), Law::OrderAgrees);
}

#[test]
fn merge_ref_that_disagrees_is_caught() {
    let samples = [LazyMergeRef([1].into()), LazyMergeRef([2].into())];
    let law = law_broken_by(&samples);
    assert!(matches!(law, Law::MergeRefAgrees | Law::BottomIdentity), "{law:?}");
}

#[test]
fn rock_paper_scissors_is_not_associative() {
    assert_eq!(law_broken_by(&[Hand::Rock, Hand::Paper, Hand::Scissors]), Law::Associativity);
}

#[test]
fn wrong_is_bottom_is_caught() {
    assert_eq!(law_broken_by(&[ConfusedBottom(1)]), Law::BottomDetection);
}

#[test]
fn check_all_panics_with_the_law_name() {
    let outcome = std::panic::catch_unwind(|| {
        lattice_core::laws::check_all(&[AddingCounter(3)]);
    });
    let payload = outcome.expect_err("check_all must panic on a broken lattice");
    let message = payload.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("idempotence"), "{message}");
    assert!(message.contains("AddingCounter(3)"), "{message}");
}

fn randomized_suite_rejects<T>(strategy: impl Strategy<Value = T> + 'static, law: &str)
where
    T: Lattice + PartialEq + std::fmt::Debug + 'static,
{
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_law_suite(strategy)));
    let payload = outcome.expect_err("the randomized suite accepted a broken lattice");
    let message = payload.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains(law), "expected {law:?} in: {message}");
}

#[test]
fn randomized_suite_catches_each_broken_lattice() {
    randomized_suite_rejects(
        (1_u8..4, any::<u8>()).prop_map(|(time, value)| IncomingWinsLww { time, value }),
        "commutativity",
    );
    randomized_suite_rejects((1_u32..100).prop_map(AddingCounter), "idempotence");
    randomized_suite_rejects(any::<u8>().prop_map(BackwardsOrder), "order agrees with merge");
    randomized_suite_rejects(
        prop_oneof![Just(Hand::Rock), Just(Hand::Paper), Just(Hand::Scissors)],
        "associativity",
    );
}

#[test]
fn quickcheck_property_fails_on_a_broken_lattice() {
    let result =
        lattice_core::quickcheck_property(AddingCounter(1), AddingCounter(2), AddingCounter(3));
    assert!(result.is_failure() || result.is_error());
}
