//! What one Redis connection remembers between commands, apart from its socket: whether it has
//! authenticated, which RESP version it speaks, its name, and whether it asked to quit.

use bytes::Bytes;

/// A connection's protocol state. Commands read and change it while they are planned; the
/// socket side ([`super::connection`]) only reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The id `CLIENT ID` and `HELLO` report (unique per server run).
    pub id: u64,
    /// `AUTH` succeeded, or the server has no password.
    pub authenticated: bool,
    /// `HELLO 3` switched replies to RESP3.
    pub resp3: bool,
    /// `CLIENT SETNAME` / `HELLO … SETNAME`.
    pub name: Option<Bytes>,
    /// `QUIT` was received: reply, then close.
    pub quit: bool,
    /// `CLIENT SETNAME` changed the name since the connection last published it.
    pub name_changed: bool,
    /// The last command's name (`CLIENT LIST`'s `cmd`).
    pub last_command: &'static str,
    /// `MONITOR` was received: the connection becomes a monitor.
    pub monitor: bool,
    /// The database `SELECT` chose (see [`crate::db`]).
    pub db: u8,
    /// Inside `MULTI`: the commands queued for `EXEC`, each with its arguments.
    pub multi: Option<Vec<Vec<Bytes>>>,
    /// Bytes of arguments queued in `multi` (bounded, with their count).
    pub multi_bytes: usize,
    /// A command was refused while queueing (unknown, wrong arity): `EXEC` will discard the
    /// transaction, as Redis does.
    pub multi_failed: bool,
    /// `EXEC` is planning its queued commands (all of them run in one round).
    pub in_exec: bool,
    /// …and one of them runs rounds of its own (`RENAME`), which splits the transaction.
    pub exec_in_rounds: bool,
    /// Keys written since the last `WAIT` (what the next one vouches for), in order, with
    /// repeats until they are squeezed out at the cap.
    pub written: Vec<Bytes>,
    /// Bytes of keys in `written`.
    pub written_bytes: usize,
    /// More distinct keys were written since the last `WAIT` than it can track.
    pub written_overflow: bool,
}

/// Most distinct keys `WAIT` tracks per connection between two calls…
pub const WAIT_MAX_KEYS: usize = 4096;
/// …and most bytes of them.
pub const WAIT_MAX_KEY_BYTES: usize = 1 << 20;

impl Session {
    /// A new connection's state: authenticated from the start only when no password is set.
    pub fn new(id: u64, password_required: bool) -> Self {
        Self {
            id,
            authenticated: !password_required,
            resp3: false,
            name: None,
            quit: false,
            name_changed: false,
            last_command: "NULL",
            monitor: false,
            db: 0,
            multi: None,
            multi_bytes: 0,
            multi_failed: false,
            in_exec: false,
            exec_in_rounds: false,
            written: Vec::new(),
            written_bytes: 0,
            written_overflow: false,
        }
    }

    /// Notes a key this connection wrote, for its next `WAIT`.
    pub fn note_written(&mut self, key: &Bytes) {
        if self.written_overflow {
            return;
        }
        if self.written.len() >= WAIT_MAX_KEYS
            || self.written_bytes + key.len() > WAIT_MAX_KEY_BYTES
        {
            // Squeeze out repeats; past the cap with distinct keys, give up tracking.
            self.written.sort_unstable();
            self.written.dedup();
            self.written_bytes = self.written.iter().map(Bytes::len).sum();
            if self.written.len() >= WAIT_MAX_KEYS
                || self.written_bytes + key.len() > WAIT_MAX_KEY_BYTES
            {
                self.written_overflow = true;
                self.written = Vec::new();
                self.written_bytes = 0;
                return;
            }
        }
        self.written_bytes += key.len();
        self.written.push(key.clone());
    }

    /// The keys written since the last `WAIT`, each once (`None` if there were more than it
    /// tracks), and a fresh start for the next.
    pub fn take_written(&mut self) -> Option<Vec<Bytes>> {
        let mut keys = std::mem::take(&mut self.written);
        self.written_bytes = 0;
        if std::mem::take(&mut self.written_overflow) {
            return None;
        }
        keys.sort_unstable();
        keys.dedup();
        Some(keys)
    }
}
