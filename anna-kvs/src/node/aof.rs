//! Durability: each actor's append-only log of the lattice states its merges produced, its
//! snapshots, and the node's identity in its data directory.
//!
//! # The log
//! Every round, the actor appends the current state of each key that changed in it (a
//! client write, a gossip merge), in one `write`: a group commit. A record is
//!
//! ```text
//! length: u32 LE | CRC32 of the payload: u32 LE | CRC32 of those 8 bytes: u32 LE | payload
//! ```
//!
//! (the payload is bincode 2 of (key, state); the header's own checksum tells a damaged
//! length from a record cut short by a crash).
//!
//! Recovery merges every record into an empty store. Merge is associative, commutative and
//! idempotent, so a record replayed twice, a state older than one already merged, or records
//! in any order all give the same store: recovery needs no ordering, no sequence numbers and
//! no undo. A torn tail (a crash in the middle of a write) is dropped with a warning; a record
//! that fails its checksum with more records after it is corruption: the start stops with the
//! file and offset named, unless told to load the intact prefix (`aof-load-corrupt`).
//!
//! `appendfsync` has Redis's meaning: `always` syncs before the round's answers go out (a
//! write is acknowledged only once on disk), `everysec` (default) syncs from a background
//! thread once a second, `no` leaves it to the OS.
//!
//! The log is allocated ahead in 4 MiB steps, so an append changes no file size, and most
//! syncs have no metadata to commit (only the first write into each block marks it written).
//! Recovery reads the zeros after the last record as the log's end, and a bad record followed
//! by nothing but zeros, or showing a hole of zeros a power cut left (see `hole`), as a torn
//! tail; a clean stop, and a snapshot's switch to a new log, cut the zeros off.
//!
//! # Snapshots
//! Files are numbered by generation: `actor-<t>.<g>.aof` (a log) and `actor-<t>.<g>.snap`
//! (a snapshot, in the log's record format, standing for every file of a lower generation).
//! A snapshot (`BGSAVE`, `SAVE`, or automatic once the logs since the last one outgrow it and
//! 64 MiB) starts a new log, then walks the store a chunk per loop iteration while the actor
//! keeps serving; a thread writes the chunks to a temporary file, syncs it, renames it into
//! place and deletes the older files. The walk is fuzzy: a key changed after the snapshot
//! began is written as it is when the walk reaches it, which contains the state it had (merge
//! only goes up), and the change is in the new log anyway. So the snapshot plus the logs
//! from its generation on hold everything, and a crash at any step leaves either the older
//! files or the snapshot whole (see `write_snapshot`).
//!
//! # Identity
//! `node.id` holds a random 64-bit id made at the first start; `incarnation` a number raised
//! and synced to disk at every start before anything is served. Writer ids derive from (id,
//! incarnation, actor), so no two lives of a node share one (see [`writer_id`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::ring::{Key, ThreadIndex};
use crate::value::KvsValue;

/// When the log reaches the disk (Redis's `appendfsync`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fsync {
    /// Before the round's answers are sent.
    Always,
    /// Once a second, off the actor's thread.
    #[default]
    EverySec,
    /// When the OS decides.
    No,
}

impl std::fmt::Display for Fsync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Always => "always",
            Self::EverySec => "everysec",
            Self::No => "no",
        })
    }
}

impl std::str::FromStr for Fsync {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "always" => Ok(Self::Always),
            "everysec" => Ok(Self::EverySec),
            "no" => Ok(Self::No),
            other => Err(format!("appendfsync {other:?} is not always, everysec or no")),
        }
    }
}

/// Where and how a node keeps its data.
#[derive(Clone, Debug)]
pub struct Persistence {
    /// The data directory (identity and logs); `None`: memory only, a fresh identity per start.
    pub dir: Option<PathBuf>,
    /// Keep an append-only log per actor (Redis's `appendonly`); without it only the identity
    /// is kept.
    pub appendonly: bool,
    /// When the log is synced.
    pub fsync: Fsync,
    /// Start anyway from the intact prefix of a log with a corrupt record in the middle.
    pub load_corrupt: bool,
}

impl Default for Persistence {
    fn default() -> Self {
        Self { dir: None, appendonly: true, fsync: Fsync::EverySec, load_corrupt: false }
    }
}

/// Largest record accepted when reading a log (a key and a value at their limits fit; a
/// bigger state is logged in parts). Small in unit tests, so the parts can be seen.
const MAX_RECORD: usize = if cfg!(test) { 1 << 20 } else { 64 << 20 };
/// Records of divisible states above this many encoded bytes are cut into parts, which leaves
/// room for what decoding them claims (see [`encode_record`]).
const RECORD_SPLIT: usize = MAX_RECORD / 8;
const RECORD_HEADER: usize = 12;
/// The log grows in allocated steps of this much (see [`Aof::reserve`]).
const PREALLOCATE: u64 = 4 << 20;
/// A snapshot is taken once the logs since the last one are at least this big (and as big as
/// the snapshot itself).
pub const SNAPSHOT_MIN_BYTES: u64 = 64 << 20;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_RECORD>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_RECORD>()
}

/// Why a log could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum AofError {
    /// The file could not be read, written or synced.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A record in the middle of the log fails its checksum or does not decode.
    #[error(
        "{path}: corrupt record at byte {offset} ({what}) with {after} more bytes after it; start with aof-load-corrupt to load the {offset} intact bytes before it and drop the rest"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong with it.
        what: String,
        /// Bytes after the bad record's start.
        after: u64,
    },
    /// The directory holds states of another value type (or format) than this node stores.
    #[error(
        "{path}: the data directory holds {found} states and this anna-server stores {expected}; start it on another --dir (or move this one away), or run the build that wrote it"
    )]
    ValueType {
        /// The marker file.
        path: PathBuf,
        /// What the directory says it holds.
        found: String,
        /// What this node stores.
        expected: &'static str,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> AofError + '_ {
    move |source| AofError::Io { path: path.to_path_buf(), source }
}

/// Encodes one record (header and payload) onto `out`.
///
/// # Errors
/// The state does not encode (over the record limit).
pub fn encode_record<V: KvsValue>(key: &[u8], value: &V, out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER]);
    bincode::serde::encode_into_std_write(&(serde_bytes_ref(key), value), out, config())
        .map_err(|e| e.to_string())?;
    let payload_len = out.len() - start - RECORD_HEADER;
    if payload_len > RECORD_SPLIT {
        // A big state is logged in parts (replay merges them back together): reading a
        // record back counts the memory it decodes into against the limit, which for a set
        // (8-byte integers sent as 1-3 byte varints, per-element containers) is a few times
        // its encoded size.
        let wanted = payload_len.div_ceil(RECORD_SPLIT / 2);
        let parts = value.clone().split(value.weight().div_ceil(wanted).max(1));
        if parts.len() > 1 {
            out.truncate(start);
            return parts.iter().try_for_each(|part| encode_record(key, part, out));
        }
    }
    if payload_len > MAX_RECORD {
        out.truncate(start);
        return Err(format!(
            "a state of {payload_len} bytes is over the log's {MAX_RECORD}-byte record limit"
        ));
    }
    let crc = crc32fast::hash(&out[start + RECORD_HEADER..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    let header_crc = crc32fast::hash(&out[start..start + 8]);
    out[start + 8..start + 12].copy_from_slice(&header_crc.to_le_bytes());
    Ok(())
}

/// Keys travel as byte strings (`Bytes` serializes the same way).
fn serde_bytes_ref(key: &[u8]) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(key)
}

/// What reading a log found.
#[derive(Debug)]
pub struct Loaded<V> {
    /// Every intact record, in file order.
    pub records: Vec<(Key, V)>,
    /// Bytes of intact records (the file is cut here before appending).
    pub intact: u64,
    /// Bytes dropped after them (a torn tail, or what followed a corrupt record).
    pub dropped: u64,
}

/// Decodes a whole log into a list (see [`decode_log_with`]).
///
/// # Errors
/// Corruption in the middle without `load_corrupt`.
pub fn decode_log<V: KvsValue>(
    data: &[u8],
    path: &Path,
    load_corrupt: bool,
) -> Result<Loaded<V>, AofError> {
    let mut records = Vec::new();
    let (intact, dropped) = decode_log_with(data, path, load_corrupt, |k, v| records.push((k, v)))?;
    Ok(Loaded { records, intact, dropped })
}

/// Whether the bad record at `at` (ending at `end`, if its header could be read) shows a hole
/// of zeros: its header is all zeros, or a whole 512-byte sector in it (or in the sector after
/// its header or its end) is. Writes into space allocated ahead reach the disk in any order,
/// so a power cut can leave a later block written and an earlier one still zeros. What follows
/// such a hole was never synced: `always` syncs each append before the next begins, and
/// `everysec` may lose its last second to a power cut anyway. The log ends there, as at a torn
/// tail. (A record damaged some other way whose payload happens to hold a zero sector is taken
/// for one too: it and what follows are dropped with a warning instead of stopping the start.)
fn hole(data: &[u8], at: usize, end: Option<usize>) -> bool {
    const SECTOR: usize = 512;
    let header = &data[at..data.len().min(at + RECORD_HEADER)];
    if zeros(header) {
        return true;
    }
    let limit = (end.unwrap_or(at + RECORD_HEADER) + SECTOR).min(data.len());
    (at.div_ceil(SECTOR) * SECTOR..)
        .step_by(SECTOR)
        .take_while(|sector| sector + SECTOR <= limit)
        .any(|sector| zeros(&data[sector..sector + SECTOR]))
}

fn zeros(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// Decodes a log record by record, handing each to `each` as it goes (so recovery holds one
/// decoded record at a time, not the whole log). A bad record that reaches the end of the
/// data, is followed only by zeros or shows a hole of zeros (see `hole`) is a torn tail
/// (dropped); one followed by more data is corruption (an error unless `load_corrupt`).
/// Returns (intact bytes, dropped bytes).
///
/// # Errors
/// Corruption in the middle without `load_corrupt`.
pub fn decode_log_with<V: KvsValue>(
    data: &[u8],
    path: &Path,
    load_corrupt: bool,
    mut each: impl FnMut(Key, V),
) -> Result<(u64, u64), AofError> {
    let mut at = 0usize;
    while at < data.len() {
        let rest = &data[at..];
        let bad = |what: String, record_end: Option<usize>| -> Result<(u64, u64), AofError> {
            // Torn: the record runs to (or past) the end of the file, only zeros follow it
            // (space allocated ahead, see `Aof::reserve`, that no later write reached), or it
            // shows a hole a power cut left (see `hole`).
            let torn = record_end.is_none_or(|end| data.get(end..).is_none_or(zeros))
                || hole(data, at, record_end);
            if torn || load_corrupt {
                if !torn {
                    tracing::warn!(path = %path.display(), offset = at, %what, "corrupt record: loading the intact prefix only (aof-load-corrupt)");
                }
                return Ok((at as u64, (data.len() - at) as u64));
            }
            Err(AofError::Corrupt {
                path: path.to_path_buf(),
                offset: at as u64,
                what,
                after: (data.len() - at) as u64,
            })
        };
        // (A remainder of zeros, space allocated ahead or for a write that never landed, ends
        // the log through `hole`: its header is all zeros.)
        let Some(header) = rest.first_chunk::<RECORD_HEADER>() else {
            return bad("a record header cut short".into(), None);
        };
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let (len, crc) = (word(0) as usize, word(4));
        if crc32fast::hash(&header[..8]) != word(8) {
            // The length itself cannot be trusted: whatever follows is unreadable.
            return bad("a damaged record header".into(), Some(at + RECORD_HEADER));
        }
        if len > MAX_RECORD {
            return bad(
                format!("a record of {len} bytes, over the limit"),
                Some(at + RECORD_HEADER),
            );
        }
        let end = at + RECORD_HEADER + len;
        let Some(payload) = data.get(at + RECORD_HEADER..end) else {
            return bad("a record cut short".into(), None);
        };
        if crc32fast::hash(payload) != crc {
            return bad("checksum mismatch".into(), Some(end));
        }
        match bincode::serde::decode_from_slice::<(Key, V), _>(payload, config()) {
            Ok(((key, value), used)) if used == payload.len() => each(key, value),
            Ok(_) => {
                return bad("trailing bytes in a record".into(), Some(end));
            }
            Err(error) => {
                return bad(format!("undecodable: {error}"), Some(end));
            }
        }
        at = end;
    }
    Ok((data.len() as u64, 0))
}
/// An actor's files in the data directory, by generation.
#[derive(Debug, Default)]
struct Files {
    /// Logs: (generation, path), oldest first. The log of the first version of this format,
    /// `actor-<t>.aof`, is generation 0.
    logs: Vec<(u64, PathBuf)>,
    /// Complete snapshots, oldest first.
    snapshots: Vec<(u64, PathBuf)>,
    /// Snapshots a crash left half written.
    partial: Vec<PathBuf>,
}

/// What the file `name` is to actor `thread`: a log, a snapshot or a partial snapshot, and
/// its generation.
fn classify(name: &str, thread: Option<ThreadIndex>) -> Option<(ThreadIndex, &'static str, u64)> {
    let rest = name.strip_prefix("actor-")?;
    let (owner, kind, generation) = if let Some(owner) = rest.strip_suffix(".aof")
        && let Ok(owner) = owner.parse::<ThreadIndex>()
    {
        (owner, "log", 0)
    } else {
        let (owner, rest) = rest.split_once('.')?;
        let (generation, kind) = rest.split_once('.')?;
        let kind = match kind {
            "aof" => "log",
            "snap" => "snapshot",
            "snap.tmp" => "partial",
            _ => return None,
        };
        (owner.parse().ok()?, kind, generation.parse().ok()?)
    };
    thread.is_none_or(|t| t == owner).then_some((owner, kind, generation))
}

impl Files {
    fn scan(dir: &Path, thread: ThreadIndex) -> Result<Self, AofError> {
        let mut files = Self::default();
        for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
            let entry = entry.map_err(io_error(dir))?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            match classify(&name, Some(thread)) {
                Some((_, "log", generation)) => files.logs.push((generation, entry.path())),
                Some((_, "snapshot", generation)) => {
                    files.snapshots.push((generation, entry.path()))
                }
                Some((_, _, _)) => files.partial.push(entry.path()),
                None => {}
            }
        }
        files.logs.sort();
        files.snapshots.sort();
        Ok(files)
    }
}

fn log_path(dir: &Path, thread: ThreadIndex, generation: u64) -> PathBuf {
    dir.join(format!("actor-{thread}.{generation}.aof"))
}

fn snapshot_path(dir: &Path, thread: ThreadIndex, generation: u64) -> PathBuf {
    dir.join(format!("actor-{thread}.{generation}.snap"))
}

/// How many actors' files `dir` holds (one more than the highest actor number), if any.
pub fn logged_actors(dir: &Path) -> Option<usize> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            classify(&name, None).map(|(thread, _, _)| usize::from(thread))
        })
        .max()
        .map(|highest| highest + 1)
}

/// A step of a snapshot after which a test can stop it, as a crash would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
enum Step {
    /// Part of the temporary file is written.
    PartWritten,
    /// The temporary file is whole and synced.
    Written,
    /// It is renamed to the snapshot.
    Renamed,
    /// One of the files it replaces is deleted.
    FirstDeleted,
}

/// What the snapshot writer is sent.
enum Chunk {
    /// Encoded records.
    Records(Vec<u8>),
    /// Every key is in: sync, rename, delete what the snapshot replaces.
    Finish,
}

/// A snapshot being written by its thread.
#[derive(Debug)]
struct SnapshotJob {
    /// Its generation: it replaces every file of a lower one.
    generation: u64,
    chunks: crossbeam_channel::Sender<Chunk>,
    done: crossbeam_channel::Receiver<Result<u64, String>>,
    started: Instant,
    finishing: bool,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Records(bytes) => write!(f, "Records({} bytes)", bytes.len()),
            Self::Finish => f.write_str("Finish"),
        }
    }
}

/// A finished snapshot.
#[derive(Clone, Copy, Debug)]
pub struct Saved {
    /// Its size in bytes.
    pub bytes: u64,
    /// How long it took, start to finish.
    pub took: Duration,
}

/// One actor's open log, and its snapshot.
#[derive(Debug)]
pub struct Aof {
    dir: PathBuf,
    thread: ThreadIndex,
    /// The log being appended to, and its generation.
    path: PathBuf,
    generation: u64,
    file: File,
    fsync: Fsync,
    /// Bytes in the log being appended to (records; the file may be longer, see `allocated`).
    bytes: u64,
    /// The log file's length: zeros past `bytes` are space allocated ahead of the records, so
    /// that a sync after an append has no file size to commit (see [`Aof::reserve`]).
    allocated: u64,
    /// Whether the file system allocates ahead (`fallocate`); off after it said no.
    preallocate: bool,
    /// Bytes in older logs that no finished snapshot replaces yet.
    older_bytes: u64,
    /// Bytes in the newest snapshot.
    snapshot_bytes: u64,
    buf: Vec<u8>,
    /// A sync failed: the kernel may have dropped the pages, and a later sync would not say
    /// so. Nothing more is written until the node restarts (and reads back what is on disk).
    poisoned: Option<String>,
    /// Set when there is something to sync; the syncing thread clears it.
    unsynced: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// The snapshot being written, if one is.
    job: Option<SnapshotJob>,
    /// Tests stop snapshots here, as a crash would.
    crash_after: Option<Step>,
}

impl Aof {
    /// Opens actor `thread`'s files in `dir`, creating its log if it has none, and hands
    /// `restore` every record of its newest snapshot, then of each log since, in order;
    /// returns the log and how many records it read. Files a newer snapshot replaces, and a
    /// snapshot a crash left half written, are deleted.
    ///
    /// # Errors
    /// A file cannot be listed, opened, read or cut, or it is corrupt (see
    /// [`decode_log_with`]; a snapshot is never written in place, so any damage in one is
    /// corruption).
    pub fn open<V: KvsValue>(
        dir: &Path,
        thread: ThreadIndex,
        persistence: &Persistence,
        mut restore: impl FnMut(Key, V),
    ) -> Result<(Self, usize), AofError> {
        let files = Files::scan(dir, thread)?;
        // A snapshot not renamed into place is not one: the files before it hold everything.
        for partial in &files.partial {
            std::fs::remove_file(partial).map_err(io_error(partial))?;
        }
        let newest = files.snapshots.last().cloned();
        let floor = newest.as_ref().map_or(0, |(generation, _)| *generation);
        let mut count = 0;
        let mut snapshot_bytes = 0;
        if let Some((_, path)) = &newest {
            let data = std::fs::read(path).map_err(io_error(path))?;
            let (intact, dropped) = replay(&data, path, persistence, &mut count, &mut restore)?;
            if dropped > 0 && !persistence.load_corrupt {
                return Err(AofError::Corrupt {
                    path: path.clone(),
                    offset: intact,
                    what: "a snapshot cut short".into(),
                    after: dropped,
                });
            }
            snapshot_bytes = data.len() as u64;
        }
        // What the newest snapshot replaces (a crash came before they were deleted), now
        // that it has been read whole.
        for (generation, path) in files.logs.iter().chain(&files.snapshots) {
            if *generation < floor {
                std::fs::remove_file(path).map_err(io_error(path))?;
            }
        }
        let logs: Vec<&(u64, PathBuf)> = files.logs.iter().filter(|(g, _)| *g >= floor).collect();
        let mut older_bytes = 0;
        let (generation, path) = match logs.last() {
            Some((generation, path)) => (*generation, path.clone()),
            None => (floor, log_path(dir, thread, floor)),
        };
        for (_, older) in &logs[..logs.len().saturating_sub(1)] {
            let data = std::fs::read(older).map_err(io_error(older))?;
            older_bytes += replay(&data, older, persistence, &mut count, &mut restore)?.0;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error(&path))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(io_error(&path))?;
        let (intact, dropped) = replay(&data, &path, persistence, &mut count, &mut restore)?;
        // Zeros after the records are space allocated ahead that no write reached (or pages a
        // crash kept from landing): nothing to warn about.
        let only_zeros = data.get(intact as usize..).is_some_and(zeros);
        drop(data);
        if dropped > 0 {
            if !only_zeros {
                tracing::warn!(path = %path.display(), intact, dropped, "dropped a torn or corrupt end of the log");
            }
            file.set_len(intact).map_err(io_error(&path))?;
            file.sync_all().map_err(io_error(&path))?;
        }
        sync_dir(dir).map_err(io_error(dir))?;
        let mut aof = Self {
            dir: dir.to_path_buf(),
            thread,
            path,
            generation,
            file,
            fsync: persistence.fsync,
            bytes: intact,
            allocated: intact,
            preallocate: true,
            older_bytes,
            snapshot_bytes,
            buf: Vec::new(),
            poisoned: None,
            unsynced: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
            job: None,
            crash_after: None,
        };
        aof.start_syncer().map_err(|e| AofError::Io { path: aof.path.clone(), source: e })?;
        Ok((aof, count))
    }

    /// With `everysec`, starts the thread that syncs the current log once a second (the
    /// previous one, if any, stops).
    fn start_syncer(&mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::Release);
        self.stop = Arc::new(AtomicBool::new(false));
        self.unsynced = Arc::new(AtomicBool::new(false));
        if self.fsync != Fsync::EverySec {
            return Ok(());
        }
        let file = self.file.try_clone()?;
        let (unsynced, stop) = (Arc::clone(&self.unsynced), Arc::clone(&self.stop));
        let name = self.path.display().to_string();
        std::thread::Builder::new()
            .name(format!("anna-aof-{}", self.thread))
            .spawn(move || everysec(&file, &unsynced, &stop, &name))?;
        Ok(())
    }

    /// Appends one round's records in one write; with `always`, syncs before returning.
    ///
    /// # Errors
    /// The write or sync failed (the records may be partly written: the next start drops a
    /// torn tail).
    pub fn append<'a, V: KvsValue + 'a>(
        &mut self,
        records: impl IntoIterator<Item = (&'a [u8], &'a V)>,
    ) -> Result<(), String> {
        if let Some(why) = &self.poisoned {
            return Err(why.clone());
        }
        self.buf.clear();
        for (key, value) in records {
            encode_record(key, value, &mut self.buf)?;
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        self.reserve(self.buf.len() as u64);
        if let Err(error) = self.file.write_all_at(&self.buf, self.bytes) {
            // Cut a partial write back off, so later records do not follow half a record.
            match self.file.set_len(self.bytes) {
                Ok(()) => self.allocated = self.bytes,
                Err(cut) => {
                    self.poisoned = Some(format!(
                        "{}: {error}, and cutting it back failed: {cut}",
                        self.path.display()
                    ))
                }
            }
            return Err(format!("{}: {error}", self.path.display()));
        }
        self.bytes += self.buf.len() as u64;
        self.allocated = self.allocated.max(self.bytes);
        match self.fsync {
            Fsync::Always => {
                if let Err(error) = self.file.sync_data() {
                    let why = format!(
                        "{}: sync failed ({error}); writes are refused until a restart",
                        self.path.display()
                    );
                    self.poisoned = Some(why.clone());
                    return Err(why);
                }
            }
            Fsync::EverySec => self.unsynced.store(true, Ordering::Release),
            Fsync::No => {}
        }
        Ok(())
    }

    /// Makes room for `more` bytes of records past the end of the log by allocating the file
    /// ahead in [`PREALLOCATE`] steps (zeros, which recovery reads as the end of the log).
    /// An append that stays inside the file's length changes no file size and allocates no
    /// block, so most syncs write the data and flush without a journal commit (the first
    /// write into each block still marks it written): measured on this ext4 VM, ~85 µs
    /// against ~130 µs per append-and-sync. A file system that cannot allocate ahead (or is
    /// full) just gets appends that grow it.
    fn reserve(&mut self, more: u64) {
        if !self.preallocate || self.bytes + more <= self.allocated {
            return;
        }
        let to = (self.bytes + more).div_ceil(PREALLOCATE) * PREALLOCATE;
        let (from, len) = (self.allocated as i64, (to - self.allocated) as i64);
        use nix::errno::Errno;
        match nix::fcntl::fallocate(&self.file, nix::fcntl::FallocateFlags::empty(), from, len) {
            Ok(()) => self.allocated = to,
            Err(error) => {
                // Out of space (or quota, or interrupted): the next append tries again. Any
                // other error: this file system does not allocate ahead.
                if !matches!(error, Errno::ENOSPC | Errno::EDQUOT | Errno::EINTR) {
                    tracing::debug!(path = %self.path.display(), %error, "the file system does not allocate ahead: appending");
                    self.preallocate = false;
                }
                // A failed call may still have grown the file part of the way.
                if let Ok(meta) = self.file.metadata() {
                    self.allocated = meta.len().max(self.bytes);
                }
            }
        }
    }

    /// Cuts the space allocated ahead off the log (a clean stop, or a log no longer
    /// appended to), so files at rest end with their last record.
    fn trim(file: &File, bytes: u64, allocated: u64) -> io::Result<()> {
        if allocated > bytes { file.set_len(bytes) } else { Ok(()) }
    }

    /// Whether the logs since the last snapshot have grown past [`SNAPSHOT_MIN_BYTES`] and
    /// the snapshot's own size (Redis's `auto-aof-rewrite-percentage 100`), with no snapshot
    /// being written.
    pub fn wants_snapshot(&self) -> bool {
        let logs = self.len();
        self.job.is_none() && logs >= SNAPSHOT_MIN_BYTES && logs >= self.snapshot_bytes
    }

    /// Bytes in the logs since the last finished snapshot.
    pub fn len(&self) -> u64 {
        self.bytes + self.older_bytes
    }

    /// Whether those logs are empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes in the newest snapshot.
    pub fn snapshot_len(&self) -> u64 {
        self.snapshot_bytes
    }

    /// Whether a snapshot is being written.
    pub fn saving(&self) -> bool {
        self.job.is_some()
    }

    /// Starts a snapshot: appends go to a new log from now on, and a thread writes what
    /// [`Aof::snapshot_chunk`] is given to a temporary file. Every state the actor holds now
    /// must then be given, in any order, each no older than it is now (a state that moved on
    /// since is as good: it contains this one). The snapshot plus the logs from the new one
    /// on then hold everything, and once it is synced and renamed into place, the older files
    /// are deleted.
    ///
    /// # Errors
    /// The new log or the thread could not be made (nothing changed then). A snapshot
    /// already in progress is not an error: it goes on.
    pub fn begin_snapshot(&mut self) -> Result<(), String> {
        if self.job.is_some() {
            return Ok(());
        }
        if let Some(why) = &self.poisoned {
            return Err(why.clone());
        }
        let generation = self.generation + 1;
        let path = log_path(&self.dir, self.thread, generation);
        let name = path.display().to_string();
        let fail = |e: &dyn std::fmt::Display| format!("starting a snapshot: {name}: {e}");
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| fail(&e))?;
        // The new log must survive a crash before anything is appended to it.
        sync_dir(&self.dir).map_err(|e| fail(&e))?;
        // The old log is only read back from now on: its space allocated ahead goes (the
        // snapshot writer syncs it). A failure to cut it is harmless: zeros read as its end.
        let _ = Self::trim(&self.file, self.bytes, self.allocated);
        let old = std::mem::replace(&mut self.file, file);
        self.older_bytes += self.bytes;
        self.bytes = 0;
        self.allocated = 0;
        self.path = path;
        self.generation = generation;
        if let Err(error) = self.start_syncer() {
            self.poisoned = Some(fail(&error));
        }
        // From here on the old log is only read back at a start, like any log no snapshot
        // replaces yet: a failure below leaves it there and loses nothing.
        let (chunks, work) = crossbeam_channel::bounded(SNAPSHOT_QUEUE);
        let (report, done) = crossbeam_channel::bounded(1);
        let (dir, thread, crash_after) = (self.dir.clone(), self.thread, self.crash_after);
        // Should the writer not start, the old log is synced here instead: its `everysec`
        // thread has stopped, and nothing else would.
        let old_again = old.try_clone();
        let writer = std::thread::Builder::new()
            .name(format!("anna-snapshot-{thread}"))
            .spawn(move || {
                let outcome = write_snapshot(&dir, thread, generation, &old, &work, crash_after);
                if outcome.is_err() && crash_after.is_none() {
                    // A real failure (a full disk, say) leaves no partial file behind; an
                    // injected crash leaves what a crash would.
                    let tmp = snapshot_path(&dir, thread, generation).with_extension("snap.tmp");
                    let _ = std::fs::remove_file(tmp);
                }
                let _ = report.send(outcome);
                crate::memory::flush_thread();
            })
            .map_err(|e| {
                if let Err(error) = old_again.and_then(|old| old.sync_data()) {
                    tracing::error!(%error, "cannot sync the log a snapshot was to replace");
                }
                fail(&e)
            })?;
        self.job = Some(SnapshotJob {
            generation,
            chunks,
            done,
            started: Instant::now(),
            finishing: false,
            writer: Some(writer),
        });
        Ok(())
    }

    /// Whether the snapshot being written takes another chunk now (its writer keeps up).
    pub fn snapshot_room(&self) -> bool {
        self.job.as_ref().is_some_and(|job| !job.finishing && !job.chunks.is_full())
    }

    /// Encodes states into the snapshot being written (see [`Aof::begin_snapshot`]).
    ///
    /// # Errors
    /// A state does not encode, or the writer has stopped (its outcome then comes from
    /// [`Aof::poll_snapshot`]).
    pub fn snapshot_chunk<'a, V: KvsValue + 'a>(
        &mut self,
        records: impl IntoIterator<Item = (&'a [u8], &'a V)>,
    ) -> Result<(), String> {
        let Some(job) = &self.job else { return Err("no snapshot is being written".into()) };
        let mut out = Vec::new();
        for (key, value) in records {
            encode_record(key, value, &mut out)?;
        }
        job.chunks.send(Chunk::Records(out)).map_err(|_| "the snapshot writer stopped".into())
    }

    /// Every state is in: the writer syncs the snapshot, renames it into place and deletes
    /// what it replaces. `false` if its queue is full (never blocks): call again later.
    pub fn finish_snapshot(&mut self) -> bool {
        let Some(job) = &mut self.job else { return true };
        if !job.finishing {
            match job.chunks.try_send(Chunk::Finish) {
                Ok(()) | Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                    job.finishing = true
                }
                Err(crossbeam_channel::TrySendError::Full(_)) => return false,
            }
        }
        true
    }

    /// The outcome of the snapshot being written, once it is known.
    pub fn poll_snapshot(&mut self) -> Option<Result<Saved, String>> {
        let job = self.job.as_ref()?;
        let outcome = match job.done.try_recv() {
            Ok(outcome) => outcome,
            Err(crossbeam_channel::TryRecvError::Empty) => return None,
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                Err("the snapshot writer stopped without a word".into())
            }
        };
        let mut job = self.job.take()?;
        if let Some(writer) = job.writer.take() {
            let _ = writer.join();
        }
        Some(outcome.map(|bytes| {
            // The logs before it are gone; the one begun with it stays.
            self.older_bytes = 0;
            self.snapshot_bytes = bytes;
            tracing::debug!(generation = job.generation, bytes, "snapshot written");
            Saved { bytes, took: job.started.elapsed() }
        }))
    }
}

/// Hands every record of one file to `restore`, counting them (see [`decode_log_with`]).
fn replay<V: KvsValue>(
    data: &[u8],
    path: &Path,
    persistence: &Persistence,
    count: &mut usize,
    restore: &mut impl FnMut(Key, V),
) -> Result<(u64, u64), AofError> {
    decode_log_with::<V>(data, path, persistence.load_corrupt, |key, value| {
        *count += 1;
        restore(key, value);
    })
}

/// Most encoded chunks queued for the snapshot writer.
const SNAPSHOT_QUEUE: usize = 8;

/// The snapshot writer: syncs the log it replaces (what was logged before the snapshot began
/// is on disk before the snapshot can stand for it), writes the chunks to
/// `actor-<t>.<g>.snap.tmp`, syncs it, renames it into place, syncs the directory, deletes
/// every older file and syncs the directory again. A crash between any two steps leaves
/// either the old files (the temporary one is deleted at the next start) or the snapshot
/// (the older files still there are deleted then): never neither.
fn write_snapshot(
    dir: &Path,
    thread: ThreadIndex,
    generation: u64,
    old_log: &File,
    chunks: &crossbeam_channel::Receiver<Chunk>,
    crash_after: Option<Step>,
) -> Result<u64, String> {
    let done = snapshot_path(dir, thread, generation);
    let tmp = done.with_extension("snap.tmp");
    let fail = |e: &dyn std::fmt::Display| format!("writing {}: {e}", tmp.display());
    let crash = |step: Step| -> Result<(), String> {
        if crash_after == Some(step) {
            Err(format!("crash injected after {step:?}"))
        } else {
            Ok(())
        }
    };
    old_log.sync_data().map_err(|e| fail(&e))?;
    // A partial snapshot of an earlier failed attempt is no use to anyone.
    if let Ok(files) = Files::scan(dir, thread) {
        for partial in files.partial {
            if partial != tmp {
                let _ = std::fs::remove_file(partial);
            }
        }
    }
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)
        .map_err(|e| fail(&e))?;
    let mut bytes = 0;
    loop {
        match chunks.recv() {
            Ok(Chunk::Records(data)) => {
                file.write_all(&data).map_err(|e| fail(&e))?;
                bytes += data.len() as u64;
                crash(Step::PartWritten)?;
            }
            Ok(Chunk::Finish) => break,
            Err(_) => {
                drop(file);
                let _ = std::fs::remove_file(&tmp);
                return Err("the snapshot was abandoned".into());
            }
        }
    }
    file.sync_all().map_err(|e| fail(&e))?;
    crash(Step::Written)?;
    std::fs::rename(&tmp, &done).map_err(|e| fail(&e))?;
    crash(Step::Renamed)?;
    sync_dir(dir).map_err(|e| fail(&e))?;
    let files = Files::scan(dir, thread).map_err(|e| e.to_string())?;
    for (older, path) in files.logs.iter().chain(&files.snapshots) {
        if *older < generation {
            std::fs::remove_file(path).map_err(|e| fail(&e))?;
            crash(Step::FirstDeleted)?;
        }
    }
    sync_dir(dir).map_err(|e| fail(&e))?;
    Ok(bytes)
}

impl Drop for Aof {
    fn drop(&mut self) {
        // A snapshot not told to finish is abandoned (its writer removes the temporary file);
        // one that was finishes its rename and deletions first: nothing touches the directory
        // after the node has let go of it.
        if let Some(mut job) = self.job.take() {
            let writer = job.writer.take();
            drop(job);
            if let Some(writer) = writer {
                let _ = writer.join();
            }
        }
        self.stop.store(true, Ordering::Release);
        // A clean stop leaves nothing unsynced, whatever the policy, and no space allocated
        // ahead.
        if Self::trim(&self.file, self.bytes, self.allocated).is_ok() && self.allocated > self.bytes
        {
            let _ = self.file.sync_all();
        } else {
            let _ = self.file.sync_data();
        }
    }
}

/// The `everysec` policy: sync once a second when something was written.
fn everysec(file: &File, unsynced: &AtomicBool, stop: &AtomicBool, name: &str) {
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_secs(1));
        if stop.load(Ordering::Acquire) {
            break;
        }
        if unsynced.swap(false, Ordering::AcqRel)
            && let Err(error) = file.sync_data()
        {
            tracing::error!(file = name, %error, "cannot sync the append-only file");
        }
    }
    crate::memory::flush_thread();
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The node's identity in its data directory: its id and this start's incarnation.
#[derive(Debug)]
pub struct Identity {
    /// Random, made once.
    pub node_id: u64,
    /// Raised (and synced) at every start: greater than every earlier one, and at least the
    /// wall clock in µs, so it also orders with nodes that keep no directory.
    pub incarnation: u64,
    /// Held for the node's life: a second process on the same directory is refused.
    lock: std::sync::Mutex<Option<File>>,
}

impl Identity {
    /// A fresh identity for a node without a directory (memory only: nothing survives it).
    pub fn ephemeral(now_us: u64) -> Self {
        Self { node_id: random_u64(), incarnation: now_us, lock: std::sync::Mutex::new(None) }
    }

    /// Reads (or makes) the identity in `dir`, raises the incarnation and syncs it. The
    /// directory also records the value type its files hold (`value-type`): a build that
    /// stores another one (a changed format) refuses to read them instead of taking them
    /// for corruption.
    ///
    /// # Errors
    /// The directory cannot be created, locked, read or written; another process holds it; or
    /// it holds states of another value type.
    pub fn load(dir: &Path, now_us: u64, value_type: &'static str) -> Result<Self, AofError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        lock.try_lock().map_err(|_| AofError::Io {
            path: lock_path.clone(),
            source: io::Error::new(
                io::ErrorKind::WouldBlock,
                "the data directory is in use by another anna-server (give each node its own --dir)",
            ),
        })?;
        check_value_type(dir, value_type)?;
        let id_path = dir.join("node.id");
        let node_id = match std::fs::read_to_string(&id_path) {
            Ok(text) => u64::from_str_radix(text.trim(), 16).map_err(|e| AofError::Io {
                path: id_path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            })?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let id = random_u64();
                write_synced(dir, &id_path, &format!("{id:016x}\n"))?;
                id
            }
            Err(error) => return Err(AofError::Io { path: id_path, source: error }),
        };
        let inc_path = dir.join("incarnation");
        let previous = match std::fs::read_to_string(&inc_path) {
            Ok(text) => text.trim().parse::<u64>().map_err(|e| AofError::Io {
                path: inc_path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            })?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => 0,
            Err(error) => return Err(AofError::Io { path: inc_path, source: error }),
        };
        let incarnation = (previous + 1).max(now_us);
        write_synced(dir, &inc_path, &format!("{incarnation}\n"))?;
        Ok(Self { node_id, incarnation, lock: std::sync::Mutex::new(Some(lock)) })
    }
}

/// Checks (or writes) the directory's `value-type` marker. A directory with logs or snapshots
/// and no marker was written before the marker existed, by a build whose Redis value format
/// (`redis-value-v2`) this one no longer reads.
fn check_value_type(dir: &Path, value_type: &'static str) -> Result<(), AofError> {
    let path = dir.join("value-type");
    let found = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().to_owned(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let has_data = std::fs::read_dir(dir)
                .map_err(io_error(dir))?
                .filter_map(Result::ok)
                .any(|entry| entry.file_name().to_string_lossy().starts_with("actor-"));
            if has_data {
                "unmarked (older)".to_owned()
            } else {
                write_synced(dir, &path, &format!("{value_type}\n"))?;
                return Ok(());
            }
        }
        Err(error) => return Err(AofError::Io { path, source: error }),
    };
    if found == value_type {
        Ok(())
    } else {
        Err(AofError::ValueType { path, found, expected: value_type })
    }
}

/// Writes `text` to `path` through a synced temporary file and a rename.
fn write_synced(dir: &Path, path: &Path, text: &str) -> Result<(), AofError> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
    file.write_all(text.as_bytes()).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))?;
    sync_dir(dir).map_err(io_error(dir))
}

/// 64 random bits (the OS's randomness through std's hasher keys, mixed with time and pid).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish()
}

impl Identity {
    /// Lets go of the data directory (the node has stopped; handles to it may live on).
    pub fn release(&self) {
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
    }
}

/// The writer id of actor `thread` in this life of node `node_id`: a 64-bit hash of (id,
/// incarnation, thread), never reused by another life or another actor (up to a 2^-64
/// chance). Counters, OR-set dots and stamps carry it.
pub fn writer_id(node_id: u64, incarnation: u64, thread: ThreadIndex) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"anna writer id v1");
    hasher.update(&node_id.to_le_bytes());
    hasher.update(&incarnation.to_le_bytes());
    hasher.update(&thread.to_le_bytes());
    let bytes = hasher.finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes.as_bytes()[..8]);
    // Never 0 (some lattices treat 0 as "no writer").
    u64::from_le_bytes(id) | 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Eventual;
    use lattice_core::{Lattice, Lww, Stamp};

    fn value(time: u64, text: &str) -> Eventual {
        Lww::new(Stamp::new(time, 1), Some(bytes::Bytes::copy_from_slice(text.as_bytes())))
    }

    fn log(records: &[(&str, Eventual)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (key, value) in records {
            encode_record(key.as_bytes(), value, &mut out).unwrap();
        }
        out
    }

    fn load(data: &[u8], corrupt_ok: bool) -> Result<Loaded<Eventual>, AofError> {
        decode_log(data, Path::new("test.aof"), corrupt_ok)
    }

    /// The store recovery builds: every record merged.
    fn recovered(records: Vec<(Key, Eventual)>) -> std::collections::BTreeMap<Key, Eventual> {
        let mut store = std::collections::BTreeMap::new();
        for (key, value) in records {
            store.entry(key).or_insert_with(Eventual::bottom).merge(value);
        }
        store
    }

    #[test]
    fn a_torn_tail_at_every_byte_is_dropped_and_keeps_every_whole_record() {
        let whole = log(&[("a", value(1, "x")), ("b", value(2, "y")), ("a", value(3, "z"))]);
        let first_two = log(&[("a", value(1, "x")), ("b", value(2, "y"))]).len();
        for cut in first_two..whole.len() {
            let loaded = load(&whole[..cut], false).unwrap();
            assert_eq!(loaded.records.len(), 2, "cut at {cut}");
            assert_eq!(loaded.intact, first_two as u64);
            assert_eq!(loaded.dropped, (cut - first_two) as u64);
        }
        assert_eq!(load(&whole, false).unwrap().records.len(), 3);
    }

    #[test]
    fn corruption_in_the_middle_stops_the_start_unless_told_to_load_the_prefix() {
        let mut data = log(&[("a", value(1, "x")), ("b", value(2, "y")), ("c", value(3, "z"))]);
        let second = log(&[("a", value(1, "x"))]).len();
        data[second + RECORD_HEADER + 1] ^= 0xff;
        match load(&data, false) {
            Err(AofError::Corrupt { offset, .. }) => assert_eq!(offset, second as u64),
            other => panic!("corruption was not refused: {other:?}"),
        }
        let loaded = load(&data, true).unwrap();
        assert_eq!(loaded.records.len(), 1);
        assert_eq!(loaded.intact, second as u64);
        // A length beyond the limit is corruption too, never an allocation.
        let mut huge = log(&[("a", value(1, "x"))]);
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 64]);
        assert_eq!(load(&huge, true).unwrap().records.len(), 1);
    }

    #[test]
    fn a_zeroed_tail_is_torn_and_a_damaged_length_in_the_middle_is_corruption() {
        let whole = log(&[("a", value(1, "x")), ("b", value(2, "y")), ("c", value(3, "z"))]);
        // The file system allocated space for a write that never landed.
        let mut zeroed = whole.clone();
        zeroed.extend_from_slice(&[0; 100]);
        let loaded = load(&zeroed, false).unwrap();
        assert_eq!((loaded.records.len(), loaded.dropped), (3, 100));
        // A length pointing past the end, in the middle of the file: not a torn tail.
        let second = log(&[("a", value(1, "x"))]).len();
        let mut damaged = whole.clone();
        damaged[second + 3] = 0x7f;
        match load(&damaged, false) {
            Err(AofError::Corrupt { offset, .. }) => assert_eq!(offset, second as u64),
            other => panic!("a damaged length was taken for a torn tail: {other:?}"),
        }
    }

    #[test]
    fn a_torn_record_followed_by_allocated_zeros_is_a_torn_tail_not_corruption() {
        let whole = log(&[("a", value(1, "x")), ("b", value(2, "y"))]);
        let first = log(&[("a", value(1, "x"))]).len();
        // A crash left the second record half on disk, inside space allocated ahead.
        let mut data = whole[..whole.len() - 3].to_vec();
        data.resize(data.len() + 4096, 0);
        let loaded = load(&data, false).unwrap();
        assert_eq!(loaded.records.len(), 1);
        assert_eq!(loaded.intact, first as u64);
        // The same record with a whole record after the zeros is corruption: something
        // written later follows it.
        data.extend_from_slice(&log(&[("c", value(3, "z"))]));
        assert!(
            matches!(load(&data, false), Err(AofError::Corrupt { offset, .. }) if offset == first as u64)
        );
    }

    /// Actor 0's log in `dir` under `appendfsync always`, and how many records it read.
    fn open_always(dir: &Path) -> (Aof, usize) {
        let policy = Persistence { fsync: Fsync::Always, ..Persistence::default() };
        Aof::open::<Eventual>(dir, 0, &policy, |_, _| {}).unwrap()
    }

    #[test]
    fn a_log_allocated_ahead_recovers_after_a_crash_and_is_trimmed_by_a_clean_stop() {
        let dir = scratch("prealloc");
        let path = log_path(&dir, 0, 0);
        let (mut aof, _) = open_always(&dir);
        let first = writes(0, 50);
        append(&mut aof, &first);
        let on_disk = std::fs::metadata(&path).unwrap().len();
        // Whether this file system allocates ahead at all (ext4, XFS and tmpfs do).
        let probe = File::create(dir.join("probe")).unwrap();
        let supported =
            nix::fcntl::fallocate(&probe, nix::fcntl::FallocateFlags::empty(), 0, 4096).is_ok();
        if supported {
            assert!(aof.preallocate);
            assert_eq!(
                on_disk,
                PREALLOCATE,
                "the log is allocated ahead of its {} bytes",
                aof.len()
            );
        } else {
            eprintln!("this file system does not allocate ahead: checking the fallback only");
            assert_eq!(on_disk, aof.len());
        }
        // A crash: no clean stop, the zeros stay.
        std::mem::forget(aof);
        let (mut aof, count) = open_always(&dir);
        assert_eq!(count, first.len());
        // Appends go on right after the last record, not after the zeros.
        let second = writes(50, 80);
        append(&mut aof, &second);
        drop(aof);
        let mut every = first.clone();
        every.extend(second);
        assert_eq!(reopen(&dir), recovered(every.clone()));
        let (aof, count) = open_always(&dir);
        assert_eq!(count, every.len(), "each record read once: none lost behind the zeros");
        let records = aof.len();
        drop(aof);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), records, "a clean stop trims the log");
        // A snapshot's switch to a new log trims the old one (left whole when the snapshot is
        // abandoned, as here).
        let (mut aof, _) = open_always(&dir);
        append(&mut aof, &writes(80, 90));
        let old_records = aof.len();
        aof.begin_snapshot().unwrap();
        append(&mut aof, &writes(90, 95));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), old_records);
        drop(aof);
        assert_eq!(reopen(&dir), recovered(writes(0, 95)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_allocating_ahead_appends_grow_the_log_and_recover_the_same() {
        // What a file system without `fallocate` gets (the switch is what `reserve` flips).
        let dir = scratch("no-prealloc");
        let path = log_path(&dir, 0, 0);
        let (mut aof, _) = open_always(&dir);
        aof.preallocate = false;
        append(&mut aof, &writes(0, 40));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), aof.len(), "no zeros ahead");
        std::mem::forget(aof);
        let (mut aof, count) = open_always(&dir);
        assert_eq!(count, 40);
        aof.preallocate = false;
        append(&mut aof, &writes(40, 60));
        drop(aof);
        assert_eq!(reopen(&dir), recovered(writes(0, 60)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_hole_of_zeros_a_power_cut_left_ends_the_log_but_other_damage_is_corruption() {
        let records = [("a", value(1, "x")), ("b", value(2, "y")), ("c", value(3, "z"))];
        let whole = log(&records);
        let first = log(&records[..1]).len();
        // The second record's block never reached the disk; the third's did.
        let mut header_hole = whole.clone();
        header_hole[first..first + RECORD_HEADER].fill(0);
        let loaded = load(&header_hole, false).unwrap();
        assert_eq!((loaded.records.len(), loaded.intact), (1, first as u64));
        // A big record (several sectors) with one whole sector of it still zeros.
        let big = value(4, &"v".repeat(3000));
        let mut data = log(&[("a", value(1, "x")), ("big", big.clone())]);
        let big_at = first;
        data.extend_from_slice(&log(&[("c", value(3, "z"))]));
        let sector = (big_at + RECORD_HEADER).div_ceil(512) * 512 + 512;
        let mut sector_hole = data.clone();
        sector_hole[sector..sector + 512].fill(0);
        let loaded = load(&sector_hole, false).unwrap();
        assert_eq!((loaded.records.len(), loaded.intact), (1, first as u64));
        // The same record with a byte flipped instead, a valid record after it: corruption.
        let mut flipped = data.clone();
        flipped[sector + 7] ^= 0x5a;
        assert!(
            matches!(load(&flipped, false), Err(AofError::Corrupt { offset, .. }) if offset == big_at as u64)
        );
        assert_eq!(load(&data, false).unwrap().records.len(), 3);
    }

    proptest::proptest! {
        /// Whole records, garbage and runs of zeros in any mix (holes and allocated space
        /// included): the decoder never panics, and what it keeps plus what it drops is the
        /// whole input.
        #[test]
        fn the_decoder_accounts_for_every_byte_of_any_mix(
            parts in proptest::collection::vec((0u8..3, 0usize..1200, proptest::num::u8::ANY), 0..12),
        ) {
            let mut data = Vec::new();
            for (kind, len, byte) in parts {
                match kind {
                    0 => data.extend_from_slice(&log(&[("k", value(len as u64, &"v".repeat(len)))])),
                    1 => data.resize(data.len() + len, 0),
                    _ => data.resize(data.len() + len % 64, byte),
                }
            }
            for corrupt_ok in [false, true] {
                if let Ok(loaded) = load(&data, corrupt_ok) {
                    proptest::prop_assert_eq!(loaded.intact + loaded.dropped, data.len() as u64);
                }
            }
        }
    }

    #[test]
    fn replaying_twice_or_out_of_order_recovers_the_same_store() {
        let records = vec![
            ("a", value(1, "old")),
            ("b", value(5, "b")),
            ("a", value(9, "new")),
            ("c", value(2, "c")),
            ("b", value(4, "older b")),
        ];
        let once = recovered(load(&log(&records), false).unwrap().records);
        let mut twice_records = records.clone();
        twice_records.extend(records.iter().cloned());
        let twice = recovered(load(&log(&twice_records), false).unwrap().records);
        let mut reversed_records = records.clone();
        reversed_records.reverse();
        let reversed = recovered(load(&log(&reversed_records), false).unwrap().records);
        assert_eq!(once, twice);
        assert_eq!(once, reversed);
        assert_eq!(once[&bytes::Bytes::from_static(b"a")], value(9, "new"));
    }

    /// The store a directory's log recovers, as recovery builds it.
    fn reopen(dir: &Path) -> std::collections::BTreeMap<Key, Eventual> {
        let mut records = Vec::new();
        Aof::open::<Eventual>(dir, 0, &Persistence::default(), |k, v| records.push((k, v)))
            .unwrap();
        recovered(records)
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("anna-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn writes(from: u64, to: u64) -> Vec<(Key, Eventual)> {
        (from..to)
            .map(|i| (bytes::Bytes::from(format!("k{}", i % 7)), value(i, &format!("v{i}"))))
            .collect()
    }

    fn append(aof: &mut Aof, records: &[(Key, Eventual)]) {
        aof.append(records.iter().map(|(k, v)| (&k[..], v))).unwrap();
    }

    /// Runs a snapshot of `store` to its end, in two chunks, with `during` appended while it
    /// is written; its outcome.
    fn snapshot(
        aof: &mut Aof,
        store: &std::collections::BTreeMap<Key, Eventual>,
        during: &[(Key, Eventual)],
    ) -> Result<Saved, String> {
        aof.begin_snapshot()?;
        append(aof, during);
        let half = store.len() / 2;
        aof.snapshot_chunk(store.iter().take(half).map(|(k, v)| (&k[..], v)))?;
        let _ = aof.snapshot_chunk(store.iter().skip(half).map(|(k, v)| (&k[..], v)));
        aof.finish_snapshot();
        loop {
            if let Some(outcome) = aof.poll_snapshot() {
                return outcome;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("actor-"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_snapshot_replaces_the_logs_and_keeps_every_write_including_those_made_meanwhile() {
        let dir = scratch("snapshot");
        let policy = Persistence { fsync: Fsync::Always, ..Persistence::default() };
        let (mut aof, _) = Aof::open::<Eventual>(&dir, 0, &policy, |_, _| {}).unwrap();
        let (before, during, after) = (writes(0, 50), writes(50, 60), writes(60, 70));
        append(&mut aof, &before);
        let saved = snapshot(&mut aof, &recovered(before.clone()), &during).unwrap();
        assert!(saved.bytes > 0);
        assert_eq!(aof.snapshot_len(), saved.bytes);
        // The first log is gone; the snapshot and the log begun with it remain.
        assert_eq!(names(&dir), ["actor-0.1.aof", "actor-0.1.snap"]);
        append(&mut aof, &after);
        let all: Vec<_> = before.iter().chain(&during).chain(&after).cloned().collect();
        assert_eq!(reopen(&dir), recovered(all.clone()));
        // A second snapshot replaces the first.
        let store = reopen(&dir);
        snapshot(&mut aof, &store, &[]).unwrap();
        assert_eq!(names(&dir), ["actor-0.2.aof", "actor-0.2.snap"]);
        assert_eq!(reopen(&dir), recovered(all));
        drop(aof);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_snapshot_interrupted_after_any_step_loses_nothing() {
        for step in [Step::PartWritten, Step::Written, Step::Renamed, Step::FirstDeleted] {
            let dir = scratch(&format!("snapshot-crash-{step:?}"));
            let policy = Persistence { fsync: Fsync::Always, ..Persistence::default() };
            let (mut aof, _) = Aof::open::<Eventual>(&dir, 0, &policy, |_, _| {}).unwrap();
            // An older snapshot and log, so the interrupted one has files to replace.
            let first = writes(0, 30);
            append(&mut aof, &first);
            snapshot(&mut aof, &recovered(first.clone()), &[]).unwrap();
            let second = writes(30, 60);
            append(&mut aof, &second);
            let mut so_far = first.clone();
            so_far.extend(second.iter().cloned());
            let during = writes(60, 65);
            aof.crash_after = Some(step);
            let outcome = snapshot(&mut aof, &recovered(so_far.clone()), &during);
            assert!(outcome.is_err(), "{step:?}: the injected crash did not stop the snapshot");
            drop(aof);
            so_far.extend(during.iter().cloned());
            let expected = recovered(so_far.clone());
            assert_eq!(reopen(&dir), expected, "crash after {step:?}");
            // The start tidied up: no partial snapshot, nothing the newest one replaces.
            let left = names(&dir);
            assert!(!left.iter().any(|n| n.ends_with(".tmp")), "{step:?}: {left:?}");
            let snapshots = left.iter().filter(|n| n.ends_with(".snap")).count();
            assert_eq!(snapshots, 1, "{step:?}: {left:?}");
            // And it goes on: appends after the restart, then a snapshot that completes.
            let (mut aof, _) = Aof::open::<Eventual>(&dir, 0, &policy, |_, _| {}).unwrap();
            let later = writes(65, 70);
            append(&mut aof, &later);
            so_far.extend(later.iter().cloned());
            snapshot(&mut aof, &recovered(so_far.clone()), &[]).unwrap();
            drop(aof);
            assert_eq!(reopen(&dir), recovered(so_far), "after {step:?}, then a restart");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn an_abandoned_snapshot_leaves_the_logs_whole() {
        let dir = scratch("snapshot-abandoned");
        let (mut aof, _) =
            Aof::open::<Eventual>(&dir, 0, &Persistence::default(), |_, _| {}).unwrap();
        let before = writes(0, 40);
        append(&mut aof, &before);
        aof.begin_snapshot().unwrap();
        let store = recovered(before.clone());
        aof.snapshot_chunk(store.iter().take(2).map(|(k, v)| (&k[..], v))).unwrap();
        // The node stops mid-snapshot.
        drop(aof);
        assert_eq!(reopen(&dir), store);
        assert!(!names(&dir).iter().any(|n| n.ends_with(".tmp") || n.ends_with(".snap")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_first_formats_single_log_is_read_as_generation_zero() {
        let dir = scratch("legacy-log");
        let old = writes(0, 20);
        let mut data = Vec::new();
        for (key, value) in &old {
            encode_record(key, value, &mut data).unwrap();
        }
        std::fs::write(dir.join("actor-0.aof"), &data).unwrap();
        assert_eq!(logged_actors(&dir), Some(1));
        let (mut aof, count) =
            Aof::open::<Eventual>(&dir, 0, &Persistence::default(), |_, _| {}).unwrap();
        assert_eq!(count, old.len());
        snapshot(&mut aof, &recovered(old.clone()), &[]).unwrap();
        assert_eq!(names(&dir), ["actor-0.1.aof", "actor-0.1.snap"]);
        drop(aof);
        assert_eq!(reopen(&dir), recovered(old));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_identity_persists_and_every_start_raises_the_incarnation() {
        let dir = std::env::temp_dir().join(format!("anna-identity-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = Identity::load(&dir, 10, "test-v1").unwrap();
        // The same directory cannot be opened twice at once.
        assert!(Identity::load(&dir, 10, "test-v1").is_err());
        let (id, inc) = (first.node_id, first.incarnation);
        drop(first);
        // A clock that went backwards still gets a higher incarnation.
        let second = Identity::load(&dir, 5, "test-v1").unwrap();
        assert_eq!(second.node_id, id);
        assert!(second.incarnation > inc);
        assert_ne!(writer_id(id, inc, 0), writer_id(id, second.incarnation, 0));
        assert_ne!(writer_id(id, inc, 0), writer_id(id, inc, 1));
        drop(second);
        // A build storing another value type refuses the directory with both names.
        let refused = Identity::load(&dir, 20, "test-v2").unwrap_err().to_string();
        assert!(refused.contains("test-v1") && refused.contains("test-v2"), "{refused}");
        // Data files from before the marker existed are refused too.
        std::fs::remove_file(dir.join("value-type")).unwrap();
        std::fs::write(dir.join("actor-0.1.aof"), b"").unwrap();
        let refused = Identity::load(&dir, 20, "test-v1").unwrap_err().to_string();
        assert!(refused.contains("unmarked"), "{refused}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_state_over_the_record_limit_is_logged_in_parts_that_replay_to_it() {
        let mut set = crate::Set::new();
        for n in 0..100_000 {
            set.add(1, bytes::Bytes::from(format!("member:{n:07}")));
        }
        let mut out = Vec::new();
        encode_record(b"big", &set, &mut out).unwrap();
        assert!(out.len() > MAX_RECORD, "the state is {} bytes", out.len());
        let loaded: Loaded<crate::Set> = decode_log(&out, Path::new("test.aof"), false).unwrap();
        assert!(loaded.records.len() >= 8, "{} records", loaded.records.len());
        let mut replayed = crate::Set::bottom();
        for (key, part) in loaded.records {
            assert_eq!(&key[..], b"big");
            replayed.merge(part);
        }
        assert_eq!(replayed, set);
    }
}
