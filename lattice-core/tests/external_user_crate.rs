//! A crate *outside* the workspace depends on lattice-core by path with the `proptest` and
//! `quickcheck` features, defines its own lattice, and law-tests it in one line. This runs that
//! crate's own test suite with cargo, exactly as its author would.

use std::path::Path;
use std::process::Command;

#[test]
fn a_user_crate_law_tests_its_own_lattice_in_one_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = root.join("examples/user-crate/Cargo.toml");
    let target = root.join("../target/user-crate");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["test", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .env("PROPTEST_CASES", "64")
        .output()
        .expect("run cargo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "user crate tests failed\n{stdout}\n{stderr}");
    assert!(stdout.contains("3 passed"), "expected all three law tests to run:\n{stdout}");
}
