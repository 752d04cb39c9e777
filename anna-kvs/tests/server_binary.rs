//! The `anna-server` binary's configuration: a `--config` TOML file, flags that win over it,
//! a file with a mistake in it, and plain (uncoloured) log lines when stderr is not a terminal.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Process as Server, free_port, redis_cli as redis};

fn wait_up(port: u16) {
    let start = Instant::now();
    while redis(port, &["PING"]).as_deref() != Some("PONG") {
        assert!(start.elapsed() < Duration::from_secs(15), "no server on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn config_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("anna-server-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn(args: &[&str]) -> Server {
    Server(
        common::anna_server()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start anna-server"),
    )
}

/// Every setting comes from the file; the flags given on the command line replace just theirs.
#[test]
fn a_config_file_configures_the_server_and_flags_win() {
    let (file_port, flag_port) = (free_port(), free_port());
    let path = config_file(
        "flags-win.toml",
        &format!(
            "port = {file_port}\nnative-port = 0\nthreads = 1\nepoch-ms = 20\nmaxclients = 7\ntimeout = 5\npin = false\nlog-level = \"warn\"\n"
        ),
    );
    let path = path.to_str().unwrap();
    {
        let _server = spawn(&["--config", path]);
        wait_up(file_port);
        assert_eq!(redis(file_port, &["CONFIG", "GET", "maxclients"]).unwrap(), "maxclients\n7");
        assert_eq!(redis(file_port, &["CONFIG", "GET", "timeout"]).unwrap(), "timeout\n5");
        assert!(redis(file_port, &["INFO", "server"]).unwrap().contains("anna_epoch_ms:20"));
    }
    let _server = spawn(&["--config", path, "--port", &flag_port.to_string(), "--maxclients", "9"]);
    wait_up(flag_port);
    assert_eq!(redis(flag_port, &["CONFIG", "GET", "maxclients"]).unwrap(), "maxclients\n9");
    assert_eq!(redis(flag_port, &["CONFIG", "GET", "timeout"]).unwrap(), "timeout\n5");
    assert!(redis(file_port, &["PING"]).is_none(), "the flag's port replaced the file's");
}

/// A file with an unknown setting or a value of the wrong type is refused at start, naming it.
#[test]
fn a_bad_config_file_is_refused_with_its_mistake_named() {
    for (name, text, named) in [
        ("unknown.toml", "port = 7000\nmax-memory = 5\n", "max-memory"),
        ("wrong-type.toml", "port = \"high\"\n", "port"),
        ("missing.toml", "", "cannot read"),
    ] {
        let path = config_file(name, text);
        if name == "missing.toml" {
            std::fs::remove_file(&path).unwrap();
        }
        let output =
            common::anna_server().args(["--config", path.to_str().unwrap()]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(named), "{name}: {stderr}");
    }
}

/// Logs written to a pipe (or a file) carry no terminal colour codes.
#[test]
fn logs_to_a_pipe_are_plain_text() {
    let port = free_port();
    let mut child = common::anna_server()
        .args(["--port", &port.to_string(), "--native-port", "0", "--threads", "1"])
        .args(["--log-level", "info"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        let ready = line.contains("ready to accept connections");
        lines.push(line);
        if ready {
            break;
        }
    }
    drop(server);
    assert!(lines.iter().any(|l| l.contains("ready to accept connections")), "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "colour codes in {lines:?}");
}
