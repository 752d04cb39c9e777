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
    /// Inside `MULTI`: the commands queued for `EXEC`, each with its arguments.
    pub multi: Option<Vec<Vec<Bytes>>>,
    /// Bytes of arguments queued in `multi` (bounded, with their count).
    pub multi_bytes: usize,
    /// A command was refused while queueing (unknown, wrong arity): `EXEC` will discard the
    /// transaction, as Redis does.
    pub multi_failed: bool,
}

impl Session {
    /// A new connection's state: authenticated from the start only when no password is set.
    pub fn new(id: u64, password_required: bool) -> Self {
        Self {
            id,
            authenticated: !password_required,
            resp3: false,
            name: None,
            quit: false,
            multi: None,
            multi_bytes: 0,
            multi_failed: false,
        }
    }
}
