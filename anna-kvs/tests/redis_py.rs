//! redis-py, the most used Redis client, runs its everyday API against anna-server: strings
//! with expiry options, sets, `scan_iter`, pipelines with and without a transaction,
//! `Redis(db=3)`, `flushdb`, `flushall` (the script, `tests/python/everyday.py`, asserts each
//! answer). The library comes from PyPI into a virtual environment under `target/` the first
//! time (or set `ANNA_TEST_PYTHON` to a Python that has it).

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

/// A Python with redis-py: `ANNA_TEST_PYTHON`, or a virtual environment made under the
/// target directory.
fn python_with_redis_py() -> PathBuf {
    if let Some(python) = std::env::var_os("ANNA_TEST_PYTHON") {
        return PathBuf::from(python);
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let venv = target.join("redis-py");
    let python = venv.join("bin/python");
    let has_redis = |python: &Path| {
        Command::new(python).args(["-c", "import redis"]).output().is_ok_and(|o| o.status.success())
    };
    if has_redis(&python) {
        return python;
    }
    let made = Command::new("python3").arg("-m").arg("venv").arg(&venv).output();
    assert!(
        made.as_ref().is_ok_and(|o| o.status.success()),
        "cannot make a virtual environment for redis-py (apt-get install python3-venv): {made:?}"
    );
    let pip = venv.join("bin/pip");
    let installed = Command::new(&pip).args(["install", "--quiet", "redis>=5"]).output();
    assert!(
        installed.as_ref().is_ok_and(|o| o.status.success()),
        "pip install redis failed (PyPI must be reachable): {installed:?}"
    );
    assert!(has_redis(&python), "redis-py did not install into {}", venv.display());
    python
}

#[test]
fn redis_py_everyday_api_works_against_anna_server() {
    let python = python_with_redis_py();
    let server = common::redis_port_server(2);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/everyday.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(server.addr.port().to_string())
        .output()
        .expect("run the redis-py script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "redis-py script failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.trim_end().lines().last(), Some("everyday api ok"), "{stdout}\n{stderr}");
}
