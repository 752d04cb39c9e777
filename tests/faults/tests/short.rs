//! The short fault suite, as CI runs it: one seed of each scenario in
//! [`SHORT`](anna_faults::scenario::SHORT), three nodes in network namespaces, about 14 s of
//! workload each. Fails on any lost acknowledged write, value never written, crash or
//! non-convergence in a scenario that is not a listed known failure; known failures are
//! printed with their numbers in every run.
//!
//! Needs root (as CI has) for namespaces and iptables; `ANNA_SKIP_NETNS=1` skips it elsewhere.

use std::path::PathBuf;
use std::time::Duration;

use anna_faults::scenario::{self, SHORT, Settings};

#[test]
fn the_short_fault_suite_loses_no_acknowledged_write() {
    if std::env::var_os("ANNA_SKIP_NETNS").is_some() {
        eprintln!("skipped: ANNA_SKIP_NETNS is set");
        return;
    }
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    assert!(
        root,
        "the fault bed makes network namespaces and needs root (as CI has); set ANNA_SKIP_NETNS=1 to skip it"
    );
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("faults-short");
    let settings = Settings {
        duration: Duration::from_secs(14),
        pace: Duration::from_millis(10),
        converge_limit: Duration::from_secs(30),
        out_dir,
        keep: false,
    };
    let mut failed = Vec::new();
    for name in SHORT {
        let s = scenario::find(name).expect("a listed scenario");
        let report = scenario::run(s, 1, &settings).expect("the test bed itself works");
        scenario::print(&report);
        if report.failed_unexpectedly() {
            failed.push(format!("{name}: {}", report.row()));
        }
    }
    assert!(
        failed.is_empty(),
        "scenarios failed that are not known failures:\n{}",
        failed.join("\n")
    );
}
