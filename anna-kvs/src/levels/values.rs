//! Server side of the consistency levels: the value lattices the engine stores for the levels
//! that need more than a last-writer-wins register. Each level's server-side code sits between
//! `level:` markers so `tests/levels.rs` can count it for the table in the module docs.

use bytes::Bytes;
use lattice_core::{DomPair, Lattice, Lww, MultiValue, Stamp, VectorClock};

use crate::value::{KvsValue, no_ops};

// level:causal:server:begin
// ANCHOR: causal-server
/// Causal consistency: a multi-value register of optional bytes (`None` = deleted).
pub type Causal = MultiValue<Option<Bytes>>;

impl KvsValue for MultiValue<Option<Bytes>> {
    const TYPE_NAME: &'static str = "causal-v1";
    no_ops!();
    fn delete(&mut self, _stamp: Stamp, writer: u64) -> bool {
        let before = self.clone();
        self.write(writer, None);
        *self != before
    }
    fn is_deleted(&self) -> bool {
        self.values().all(Option::is_none)
    }
}
// ANCHOR_END: causal-server
// level:causal:server:end

/// A transaction id: `(timestamp, client id, per-client sequence number)`, unique across
/// clients (the paper: a client sequence number concatenated with a timestamp) and totally
/// ordered, so a later transaction's writes win on every key they share.
pub type TxnId = (u64, u64, u64);

// level:transactional:server:begin
// ANCHOR: transactional-server
/// Read uncommitted, read committed and item-cut isolation: the committing transaction's id
/// dominates; writes of one transaction to one key merge last-writer-wins.
pub type Transactional = DomPair<TxnId, Lww<Option<Bytes>>>;

impl KvsValue for DomPair<TxnId, Lww<Option<Bytes>>> {
    const TYPE_NAME: &'static str = "txn-lww-v1";
    no_ops!();
    fn delete(&mut self, stamp: Stamp, writer: u64) -> bool {
        self.merge(DomPair::new((stamp.time, writer, u64::MAX), Lww::new(stamp, None)))
    }
    fn is_deleted(&self) -> bool {
        !matches!(self.value().value(), Some(Some(_)))
    }
}
// ANCHOR_END: transactional-server
// level:transactional:server:end

/// The causal context a reader of `value` has seen (the join of its siblings' clocks).
pub fn causal_context(value: Option<&Causal>) -> VectorClock {
    value.map(MultiValue::clock).unwrap_or_default()
}
