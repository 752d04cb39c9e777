//! The history of a run: every operation's invocation, completion and outcome, as JSON lines.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What became of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Acknowledged (a write) or answered (a read).
    Ok,
    /// Definitely had no effect (only reads are ever classed so).
    Fail,
    /// No answer, or an error after which the write may still have happened.
    Unknown,
}

/// The operations the workloads make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `SADD key element`.
    Sadd,
    /// `INCRBY key n`.
    Incrby,
    /// `SET key value`.
    Set,
    /// `GET key`.
    Get,
    /// `DEL key`.
    Del,
    /// A session write through `anna_kvs::Client` (read-your-writes and monotonic reads).
    SessionPut,
    /// A session read.
    SessionGet,
    /// A failed attempt to connect (recorded for the timeline; no key).
    Connect,
}

impl Kind {
    /// Whether it changes the store.
    pub fn is_write(self) -> bool {
        !matches!(self, Self::Get | Self::SessionGet | Self::Connect)
    }
}

/// One operation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Op {
    /// The worker (client) that made it.
    pub worker: usize,
    /// The node it was sent to (`None`: the native client chose).
    pub node: Option<usize>,
    /// What it was.
    pub kind: Kind,
    /// The key.
    pub key: String,
    /// The element added, the increment, or the value written.
    pub arg: Option<String>,
    /// Milliseconds since the run began, at invocation.
    pub start_ms: u64,
    /// Milliseconds since the run began, at completion (or when the client gave up).
    pub end_ms: u64,
    /// What became of it.
    pub outcome: Outcome,
    /// The value a read returned (`None`: nil).
    pub read: Option<String>,
    /// A session write's stamp, or the stamp a session read saw: (time, writer).
    pub stamp: Option<(u64, u64)>,
    /// The error, if any.
    pub error: Option<String>,
}

impl Op {
    /// An operation invoked at `start_ms`, so far answered `Ok` with nothing read; the
    /// caller fills in what happened.
    pub fn started(
        worker: usize,
        node: Option<usize>,
        kind: Kind,
        key: &str,
        arg: Option<String>,
        start_ms: u64,
    ) -> Self {
        Self {
            worker,
            node,
            kind,
            key: key.to_owned(),
            arg,
            start_ms,
            end_ms: start_ms,
            outcome: Outcome::Ok,
            read: None,
            stamp: None,
            error: None,
        }
    }
}

/// Writes `ops` to `path`, one JSON object per line.
///
/// # Errors
/// The file cannot be written.
pub fn save(path: &Path, ops: &[Op]) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    for op in ops {
        serde_json::to_writer(&mut file, op)?;
        file.write_all(b"\n")?;
    }
    file.flush()
}

/// Reads a history written by [`save`].
///
/// # Errors
/// The file cannot be read or a line is not an operation.
pub fn load(path: &Path) -> std::io::Result<Vec<Op>> {
    let text = std::fs::read_to_string(path)?;
    text.lines().map(|line| serde_json::from_str(line).map_err(std::io::Error::other)).collect()
}
