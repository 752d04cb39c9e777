//! Each file in `tests/ui/` makes one mistake; its `.stderr` holds the one error the derive must
//! give. Regenerate after an intended change with `TRYBUILD=overwrite cargo test -p
//! lattice-derive-tests --test ui` and review the diff.

#[test]
fn derive_errors_teach() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
