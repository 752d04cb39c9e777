use lattice_core::proptest::prelude::*;
use lattice_core::{Max, SetUnion, lattice_law_tests};
use lattice_user_example::{Session, Unlocked};

fn unlocked() -> impl Strategy<Value = Unlocked> {
    (any::<Max<u8>>(), any::<SetUnion<String>>())
        .prop_map(|(plan, features)| Unlocked { plan, features })
}

// The one line, for a hand-written lattice with a hand-written strategy:
lattice_law_tests!(unlocked_obeys_the_lattice_laws, Unlocked, unlocked());

// The one line, for a derived lattice whose generator is derived too:
lattice_law_tests!(session_obeys_the_lattice_laws, Session);

#[derive(Clone, Debug)]
struct Qc(Unlocked);
impl lattice_core::quickcheck::Arbitrary for Qc {
    fn arbitrary(g: &mut lattice_core::quickcheck::Gen) -> Self {
        use lattice_core::quickcheck::Arbitrary as Qa;
        Qc(Unlocked { plan: Qa::arbitrary(g), features: Qa::arbitrary(g) })
    }
}

#[test]
fn unlocked_obeys_the_lattice_laws_under_quickcheck() {
    fn prop(a: Qc, b: Qc, c: Qc) -> lattice_core::quickcheck::TestResult {
        lattice_core::quickcheck_property(a.0, b.0, c.0)
    }
    lattice_core::quickcheck::QuickCheck::new()
        .quickcheck(prop as fn(Qc, Qc, Qc) -> lattice_core::quickcheck::TestResult);
}
