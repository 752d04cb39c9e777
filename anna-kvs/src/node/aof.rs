//! Durability: each actor's append-only file of the lattice states its merges produced, and
//! the node's identity in its data directory.
//!
//! # The log
//! One file per actor, `actor-<thread>.aof` in the data directory. Every round, the actor
//! appends the current state of each key that changed in it (a client write, a gossip merge),
//! in one `write`: a group commit. A record is
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
//! thread once a second, `no` leaves it to the OS. When the file outgrows the store it holds,
//! it is rewritten from the store (temporary file, sync, rename, sync the directory), so a
//! crash at any step leaves either the old log or the new one, never neither.
//!
//! # Identity
//! `node.id` holds a random 64-bit id made at the first start; `incarnation` a number raised
//! and synced to disk at every start before anything is served. Writer ids derive from (id,
//! incarnation, actor), so no two lives of a node share one (see [`writer_id`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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

/// Largest record accepted when reading a log (a key and a value at their limits fit).
const MAX_RECORD: usize = 64 << 20;
const RECORD_HEADER: usize = 12;
/// The log is rewritten once it is this many times the size it had after the last rewrite…
const REWRITE_FACTOR: u64 = 4;
/// …and at least this big.
const REWRITE_MIN_BYTES: u64 = 64 << 20;

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

/// Decodes a log record by record, handing each to `each` as it goes (so recovery holds one
/// decoded record at a time, not the whole log). A bad record that reaches the end of the
/// data is a torn tail (dropped); one followed by more data is corruption (an error unless
/// `load_corrupt`). Returns (intact bytes, dropped bytes).
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
            // Torn: the record runs to (or past) the end of the file.
            let torn = record_end.is_none_or(|end| end >= data.len());
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
        // A remainder of zeros is space the file system allocated for a write that never
        // landed (a crash with everysec): a torn tail.
        if rest.iter().all(|&b| b == 0) {
            return bad("zeros where a record should start".into(), None);
        }
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

/// How many actors' logs `dir` holds (one more than the highest actor number), if any.
pub fn logged_actors(dir: &Path) -> Option<usize> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let thread = name.strip_prefix("actor-")?.strip_suffix(".aof")?;
            thread.parse::<usize>().ok()
        })
        .max()
        .map(|highest| highest + 1)
}

/// One actor's open log.
#[derive(Debug)]
pub struct Aof {
    path: PathBuf,
    dir: PathBuf,
    file: File,
    fsync: Fsync,
    /// Bytes in the file.
    bytes: u64,
    /// Bytes right after the last rewrite (or the start).
    base: u64,
    buf: Vec<u8>,
    /// A sync failed: the kernel may have dropped the pages, and a later sync would not say
    /// so. Nothing more is written until the node restarts (and reads back what is on disk).
    poisoned: Option<String>,
    /// Set when there is something to sync; the syncing thread clears it.
    unsynced: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Aof {
    /// Opens (creating) actor `thread`'s log in `dir`, handing each record it holds to
    /// `restore` in file order; returns the log and how many records it held.
    ///
    /// # Errors
    /// The file cannot be opened, read or cut, or it is corrupt (see [`decode_log_with`]).
    pub fn open<V: KvsValue>(
        dir: &Path,
        thread: ThreadIndex,
        persistence: &Persistence,
        mut restore: impl FnMut(Key, V),
    ) -> Result<(Self, usize), AofError> {
        let path = dir.join(format!("actor-{thread}.aof"));
        // A rewrite that crashed before its rename left only a temporary file: the log is whole.
        let _ = std::fs::remove_file(path.with_extension("aof.tmp"));
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(io_error(&path))?;
        let mut count = 0;
        let (intact, dropped) =
            decode_log_with::<V>(&data, &path, persistence.load_corrupt, |key, value| {
                count += 1;
                restore(key, value);
            })?;
        drop(data);
        if dropped > 0 {
            tracing::warn!(path = %path.display(), intact, dropped, "dropped a torn or corrupt end of the log");
            file.set_len(intact).map_err(io_error(&path))?;
            file.sync_all().map_err(io_error(&path))?;
        }
        let unsynced = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        if persistence.fsync == Fsync::EverySec {
            let file = file.try_clone().map_err(io_error(&path))?;
            let (unsynced, stop) = (Arc::clone(&unsynced), Arc::clone(&stop));
            let name = path.display().to_string();
            std::thread::Builder::new()
                .name(format!("anna-aof-{thread}"))
                .spawn(move || everysec(&file, &unsynced, &stop, &name))
                .map_err(io_error(&path))?;
        }
        let aof = Self {
            dir: dir.to_path_buf(),
            file,
            fsync: persistence.fsync,
            bytes: intact,
            base: intact,
            buf: Vec::new(),
            poisoned: None,
            unsynced,
            stop,
            path,
        };
        Ok((aof, count))
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
        if let Err(error) = self.file.write_all(&self.buf) {
            // Cut a partial write back off, so later records do not follow half a record.
            if let Err(cut) = self.file.set_len(self.bytes) {
                self.poisoned = Some(format!(
                    "{}: {error}, and cutting it back failed: {cut}",
                    self.path.display()
                ));
            }
            return Err(format!("{}: {error}", self.path.display()));
        }
        self.bytes += self.buf.len() as u64;
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

    /// Whether the log has outgrown what it had after the last rewrite.
    pub fn wants_rewrite(&self) -> bool {
        self.bytes >= REWRITE_MIN_BYTES && self.bytes >= self.base.saturating_mul(REWRITE_FACTOR)
    }

    /// Bytes in the log.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Replaces the log by one record per key of `store`: written to a temporary file,
    /// synced, renamed over the log, the directory synced. A crash before the rename keeps
    /// the old log (the temporary file is removed at the next start); after it, the new one.
    ///
    /// # Errors
    /// Any step failed; the old log is then still in place and in use.
    pub fn rewrite<'a, V: KvsValue + 'a>(
        &mut self,
        store: impl IntoIterator<Item = (&'a [u8], &'a V)>,
    ) -> Result<(), String> {
        let tmp = self.path.with_extension("aof.tmp");
        let fail = |e: &dyn std::fmt::Display| format!("rewriting {}: {e}", self.path.display());
        let mut out = Vec::new();
        for (key, value) in store {
            encode_record(key, value, &mut out)?;
        }
        // The handle written here becomes the log: nothing is opened after the rename, so
        // no failure can leave appends going to the replaced file.
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .map_err(|e| fail(&e))?;
        file.write_all(&out).map_err(|e| fail(&e))?;
        file.sync_all().map_err(|e| fail(&e))?;
        let syncer = match self.fsync {
            Fsync::EverySec => Some(file.try_clone().map_err(|e| fail(&e))?),
            _ => None,
        };
        std::fs::rename(&tmp, &self.path).map_err(|e| fail(&e))?;
        self.file = file;
        self.bytes = out.len() as u64;
        self.base = self.bytes.max(1);
        // The old syncing thread holds the replaced file: start one on the new.
        self.stop.store(true, Ordering::Release);
        self.stop = Arc::new(AtomicBool::new(false));
        self.unsynced = Arc::new(AtomicBool::new(false));
        if let Some(clone) = syncer {
            let (unsynced, stop) = (Arc::clone(&self.unsynced), Arc::clone(&self.stop));
            let name = self.path.display().to_string();
            if let Err(error) = std::thread::Builder::new()
                .name("anna-aof".into())
                .spawn(move || everysec(&clone, &unsynced, &stop, &name))
            {
                self.poisoned = Some(fail(&error));
            }
        }
        // The rename is durable once the directory is; until then a crash keeps the old log,
        // which holds everything too.
        if let Err(error) = sync_dir(&self.dir) {
            tracing::warn!(%error, dir = %self.dir.display(), "cannot sync the data directory after a rewrite");
        }
        Ok(())
    }

    /// After a failed rewrite: try again only once the log has grown as much again.
    pub fn postpone_rewrite(&mut self) {
        self.base = self.bytes.max(1);
    }
}

impl Drop for Aof {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // A clean stop leaves nothing unsynced, whatever the policy.
        let _ = self.file.sync_data();
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
    _lock: Option<File>,
}

impl Identity {
    /// A fresh identity for a node without a directory (memory only: nothing survives it).
    pub fn ephemeral(now_us: u64) -> Self {
        Self { node_id: random_u64(), incarnation: now_us, _lock: None }
    }

    /// Reads (or makes) the identity in `dir`, raises the incarnation and syncs it.
    ///
    /// # Errors
    /// The directory cannot be created, locked, read or written; or another process holds it.
    pub fn load(dir: &Path, now_us: u64) -> Result<Self, AofError> {
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
        Ok(Self { node_id, incarnation, _lock: Some(lock) })
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

    #[test]
    fn a_rewrite_interrupted_at_any_step_loses_nothing() {
        let dir = std::env::temp_dir().join(format!("anna-rewrite-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let policy = Persistence { fsync: Fsync::Always, ..Persistence::default() };
        let (mut aof, _) = Aof::open::<Eventual>(&dir, 0, &policy, |_, _| {}).unwrap();
        let writes: Vec<(Key, Eventual)> = (0..50u64)
            .map(|i| (bytes::Bytes::from(format!("k{}", i % 7)), value(i, &format!("v{i}"))))
            .collect();
        aof.append(writes.iter().map(|(k, v)| (&k[..], v))).unwrap();
        let expected = recovered(writes.clone());
        assert_eq!(reopen(&dir), expected);
        let log = dir.join("actor-0.aof");
        let tmp = log.with_extension("aof.tmp");
        let snapshot = {
            let mut out = Vec::new();
            for (key, value) in &expected {
                encode_record(key, value, &mut out).unwrap();
            }
            out
        };
        // A crash while the temporary file is written, at every length: the old log rules.
        for cut in [0, 1, snapshot.len() / 2, snapshot.len()] {
            std::fs::write(&tmp, &snapshot[..cut]).unwrap();
            assert_eq!(reopen(&dir), expected, "temporary file cut at {cut}");
            assert!(!tmp.exists(), "the leftover temporary file is removed");
        }
        // The rewrite itself, then a crash right after it: the new log holds the same store.
        aof.rewrite(expected.iter().map(|(k, v)| (&k[..], v))).unwrap();
        assert_eq!(std::fs::read(&log).unwrap(), snapshot);
        assert_eq!(reopen(&dir), expected);
        // Appends after the rewrite land in the new log.
        let later = (bytes::Bytes::from_static(b"k0"), value(99, "later"));
        aof.append([(&later.0[..], &later.1)]).unwrap();
        assert_eq!(reopen(&dir)[&later.0], later.1);
        drop(aof);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_identity_persists_and_every_start_raises_the_incarnation() {
        let dir = std::env::temp_dir().join(format!("anna-identity-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = Identity::load(&dir, 10).unwrap();
        // The same directory cannot be opened twice at once.
        assert!(Identity::load(&dir, 10).is_err());
        let (id, inc) = (first.node_id, first.incarnation);
        drop(first);
        // A clock that went backwards still gets a higher incarnation.
        let second = Identity::load(&dir, 5).unwrap();
        assert_eq!(second.node_id, id);
        assert!(second.incarnation > inc);
        assert_ne!(writer_id(id, inc, 0), writer_id(id, second.incarnation, 0));
        assert_ne!(writer_id(id, inc, 0), writer_id(id, inc, 1));
        drop(second);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
