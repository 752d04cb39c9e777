//! The checkers: each reads the whole history and the converged final state, and counts lost
//! acknowledged writes and values nobody wrote.
//!
//! | workload | lost (acknowledged, then gone) | unexpected |
//! |---|---|---|
//! | set | an element whose `SADD` was acknowledged is missing | a member never added |
//! | counter | the value is below the sum of acknowledged increments (the missing units) | above acknowledged + unacknowledged |
//! | register | the final value is not one of the writes that no acknowledged write followed (a `DEL` acknowledged after the last write counts as a write of nil); a client reads, on the node that took its acknowledged write, a value written before it (read-your-writes, which must hold whatever the clocks do) | a read or final value never written |
//! | session | a read missing the session's own acknowledged write (read-your-writes), or older than an earlier read (monotonic reads) | a value never written |
//!
//! Outcomes are treated as Jepsen treats them: an `Unknown` write may or may not have happened,
//! at any time after its invocation, so it widens what is allowed and never counts as lost.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{Kind, Op, Outcome};
use crate::workload::{COUNTER_KEY, REGISTER_KEYS, SESSION_KEYS, SET_KEYS, Snapshot};

/// One checker's verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The checker.
    pub name: &'static str,
    /// Acknowledged writes it looked at.
    pub acknowledged: usize,
    /// Acknowledged writes lost (for the counter: missing units).
    pub lost: u64,
    /// Values never written (for the counter: excess units).
    pub unexpected: u64,
    /// Register writes that lost to a write made less than the clock tolerance before them
    /// (last-writer-wins under skewed clocks: expected, counted, not a failure).
    pub tolerated: u64,
    /// The first few findings, in words.
    pub notes: Vec<String>,
}

impl Verdict {
    fn new(name: &'static str) -> Self {
        Self { name, ..Self::default() }
    }

    fn note(&mut self, text: String) {
        if self.notes.len() < 5 {
            self.notes.push(text);
        }
    }

    /// Nothing lost, nothing unexpected.
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.unexpected == 0
    }
}

fn acked(op: &Op) -> bool {
    op.outcome == Outcome::Ok
}

fn attempted(op: &Op) -> bool {
    op.outcome != Outcome::Fail
}

/// Sets: every acknowledged element is present, and nothing never added.
pub fn sets(history: &[Op], last: &Snapshot) -> Verdict {
    let mut verdict = Verdict::new("set");
    for key in SET_KEYS {
        let present: BTreeSet<&str> = last
            .get(key)
            .and_then(Option::as_deref)
            .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let adds = history.iter().filter(|op| op.kind == Kind::Sadd && op.key == key);
        let mut tried = BTreeSet::new();
        for op in adds {
            let Some(element) = op.arg.as_deref() else { continue };
            if attempted(op) {
                tried.insert(element);
            }
            if acked(op) {
                verdict.acknowledged += 1;
                if !present.contains(element) {
                    verdict.lost += 1;
                    verdict.note(format!(
                        "{key}: acknowledged {element} (at {} ms) is missing",
                        op.end_ms
                    ));
                }
            }
        }
        for member in present.difference(&tried) {
            verdict.unexpected += 1;
            verdict.note(format!("{key}: member {member} was never added"));
        }
    }
    verdict
}

/// The counter: acknowledged ≤ final ≤ acknowledged + unacknowledged.
pub fn counter(history: &[Op], last: &Snapshot) -> Verdict {
    let mut verdict = Verdict::new("counter");
    let (mut sure, mut maybe) = (0i64, 0i64);
    for op in history.iter().filter(|op| op.kind == Kind::Incrby && op.key == COUNTER_KEY) {
        let by: i64 = op.arg.as_deref().and_then(|a| a.parse().ok()).unwrap_or(0);
        match op.outcome {
            Outcome::Ok => {
                sure += by;
                verdict.acknowledged += 1;
            }
            Outcome::Unknown => maybe += by,
            Outcome::Fail => {}
        }
    }
    let text = last.get(COUNTER_KEY).cloned().flatten();
    let value: i64 = match text.as_deref().map(str::parse) {
        None => 0,
        Some(Ok(v)) => v,
        Some(Err(_)) => {
            verdict.unexpected += 1;
            verdict.note(format!("{COUNTER_KEY} holds {text:?}, not a number"));
            return verdict;
        }
    };
    if value < sure {
        verdict.lost = (sure - value) as u64;
        verdict.note(format!("{COUNTER_KEY} = {value}, but {sure} was acknowledged"));
    }
    if value > sure + maybe {
        verdict.unexpected = (value - sure - maybe) as u64;
        verdict
            .note(format!("{COUNTER_KEY} = {value}, above {sure} acknowledged + {maybe} unknown"));
    }
    verdict
}

/// What a register write leaves: the value, or nil for a delete.
fn effect(op: &Op) -> Option<&str> {
    if op.kind == Kind::Del { None } else { op.arg.as_deref() }
}

/// Registers: every value read was written, and the final value is one of the writes no
/// acknowledged write followed in real time by more than `tolerance_ms` (the clock
/// uncertainty last-writer-wins is allowed: 0 with one clock; with skewed clocks, a write may
/// lose to one made up to that long before it, and such losses are counted as tolerated).
pub fn registers(history: &[Op], last: &Snapshot, tolerance_ms: u64) -> Verdict {
    let mut verdict = Verdict::new("register");
    for key in REGISTER_KEYS {
        let ops: Vec<&Op> = history.iter().filter(|op| op.key == key).collect();
        let writes: Vec<&Op> = ops
            .iter()
            .copied()
            .filter(|op| matches!(op.kind, Kind::Set | Kind::Del) && attempted(op))
            .collect();
        let written: BTreeSet<&str> = writes.iter().filter_map(|op| effect(op)).collect();
        verdict.acknowledged += writes.iter().filter(|op| acked(op)).count();
        for read in ops.iter().filter(|op| op.kind == Kind::Get && acked(op)) {
            if let Some(value) = read.read.as_deref()
                && !written.contains(value)
            {
                verdict.unexpected += 1;
                verdict.note(format!("{key}: read {value:?} at {} ms, never written", read.end_ms));
            }
        }
        // Read-your-writes on the node that took the write: after a client's acknowledged write,
        // its reads there return that write or one not finished before it began.
        let mut own: BTreeMap<usize, &Op> = BTreeMap::new();
        let mut in_order: Vec<&Op> = ops.clone();
        in_order.sort_by_key(|op| (op.worker, op.start_ms));
        for op in in_order {
            match op.kind {
                Kind::Set | Kind::Del if acked(op) => {
                    own.insert(op.worker, op);
                }
                Kind::Get if acked(op) => {
                    let Some(mine) = own.get(&op.worker) else { continue };
                    if op.start_ms <= mine.end_ms || op.node != mine.node {
                        continue;
                    }
                    let read = op.read.as_deref();
                    let fresh_within = |slack: u64| {
                        writes.iter().any(|w| {
                            effect(w) == read
                                && (std::ptr::eq(*w, *mine)
                                    || !acked(w)
                                    || w.end_ms.saturating_add(slack) >= mine.start_ms)
                        })
                    };
                    if fresh_within(0) {
                        continue;
                    }
                    if tolerance_ms > 0 && fresh_within(tolerance_ms) {
                        // A write from a skewed clock, made just before but not yet gossiped
                        // here when this one was stamped: last-writer-wins lets it win.
                        verdict.tolerated += 1;
                        continue;
                    }
                    {
                        verdict.lost += 1;
                        verdict.note(format!(
                            "{key}: worker {} wrote {:?} ({}-{} ms), then read {read:?} at {} ms on the same node, written before it",
                            op.worker,
                            effect(mine),
                            mine.start_ms,
                            mine.end_ms,
                            op.start_ms
                        ));
                    }
                }
                _ => {}
            }
        }
        // Writes no acknowledged write was invoked after, by more than `slack` (an unknown
        // write never "completes").
        let done = |op: &Op| if acked(op) { op.end_ms } else { u64::MAX };
        let candidates_within = |slack: u64| -> Vec<&Op> {
            writes
                .iter()
                .copied()
                .filter(|w| {
                    !writes
                        .iter()
                        .any(|later| acked(later) && later.start_ms > done(w).saturating_add(slack))
                })
                .collect()
        };
        let candidates = candidates_within(0);
        let last_value = last.get(key).cloned().flatten();
        let allowed_in = |candidates: &[&Op]| {
            candidates.iter().any(|w| effect(w) == last_value.as_deref())
                || (writes.is_empty() && last_value.is_none())
        };
        if allowed_in(&candidates) {
            continue;
        }
        if tolerance_ms > 0 && allowed_in(&candidates_within(tolerance_ms)) {
            verdict.tolerated += 1;
            verdict.note(format!(
                "{key} ends as {last_value:?}, a write less than {tolerance_ms} ms older than the last ones (tolerated: skewed clocks)"
            ));
            continue;
        }
        match last_value.as_deref() {
            Some(value) if !written.contains(value) => {
                verdict.unexpected += 1;
                verdict.note(format!("{key} ends as {value:?}, never written"));
            }
            _ => {
                let lost = candidates.iter().filter(|w| acked(w)).count().max(1);
                verdict.lost += lost as u64;
                let newest: Vec<String> = candidates
                    .iter()
                    .map(|w| {
                        format!("{:?} {:?} ({}-{} ms)", w.kind, effect(w), w.start_ms, w.end_ms)
                    })
                    .collect();
                verdict.note(format!(
                    "{key} ends as {last_value:?}; the last writes were {}",
                    newest.join(", ")
                ));
            }
        }
    }
    verdict
}

/// Sessions: read-your-writes and monotonic reads per session, and only written values read.
pub fn sessions(history: &[Op]) -> Verdict {
    let mut verdict = Verdict::new("session");
    let written: BTreeSet<(&str, &str)> = history
        .iter()
        .filter(|op| op.kind == Kind::SessionPut && attempted(op))
        .filter_map(|op| Some((op.key.as_str(), op.arg.as_deref()?)))
        .collect();
    // (worker, key) → newest own write, newest read
    let mut mine: BTreeMap<(usize, &str), (u64, u64)> = BTreeMap::new();
    let mut seen: BTreeMap<(usize, &str), (u64, u64)> = BTreeMap::new();
    let mut ops: Vec<&Op> =
        history.iter().filter(|op| SESSION_KEYS.contains(&op.key.as_str())).collect();
    ops.sort_by_key(|op| (op.worker, op.start_ms));
    for op in ops {
        let slot = (op.worker, op.key.as_str());
        match (op.kind, op.outcome, op.stamp) {
            (Kind::SessionPut, Outcome::Ok, Some(stamp)) => {
                verdict.acknowledged += 1;
                mine.insert(slot, stamp);
            }
            (Kind::SessionGet, Outcome::Ok, read) => {
                if let Some(&own) = mine.get(&slot)
                    && read.is_none_or(|r| r < own)
                {
                    verdict.lost += 1;
                    verdict.note(format!(
                        "session {} wrote {} at {own:?}, then read {read:?} at {} ms",
                        op.worker, op.key, op.start_ms
                    ));
                }
                if let Some(&before) = seen.get(&slot)
                    && read.is_none_or(|r| r < before)
                {
                    verdict.lost += 1;
                    verdict.note(format!(
                        "session {} read {} at {before:?}, later {read:?} at {} ms",
                        op.worker, op.key, op.start_ms
                    ));
                }
                if let Some(r) = read {
                    let newest = seen.entry(slot).or_insert(r);
                    *newest = (*newest).max(r);
                }
                if let Some(value) = op.read.as_deref()
                    && !written.contains(&(op.key.as_str(), value))
                {
                    verdict.unexpected += 1;
                    verdict.note(format!(
                        "session {} read {value:?} from {}, never written",
                        op.worker, op.key
                    ));
                }
            }
            _ => {}
        }
    }
    verdict
}

/// Every checker over one run; `tolerance_ms` is the clock uncertainty the register checker
/// allows (0 unless the scenario skews a clock).
pub fn all(history: &[Op], last: &Snapshot, tolerance_ms: u64) -> Vec<Verdict> {
    vec![
        sets(history, last),
        counter(history, last),
        registers(history, last, tolerance_ms),
        sessions(history),
    ]
}

/// What a node served right after a restart, cut off from its peers (so only its own log
/// could have given it), against what it served just before it was killed: every set member
/// still there, the counter not below (the workload's sets and counter only grow).
pub fn kept_through_restart(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut problems = Vec::new();
    for key in SET_KEYS {
        let members = |s: &Snapshot| -> BTreeSet<String> {
            s.get(key)
                .cloned()
                .flatten()
                .map(|m| m.split(',').filter(|m| !m.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let missing: Vec<String> = members(before).difference(&members(after)).cloned().collect();
        if !missing.is_empty() {
            problems.push(format!(
                "restarted node lost {} members of {key} it held before the kill, e.g. {}",
                missing.len(),
                missing[0]
            ));
        }
    }
    let count =
        |s: &Snapshot| s.get(COUNTER_KEY).cloned().flatten().and_then(|v| v.parse::<i64>().ok());
    if let (Some(before), after) = (count(before), count(after))
        && after.is_none_or(|after| after < before)
    {
        problems.push(format!(
            "restarted node's counter is {after:?}, below the {before} it held before the kill"
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: Kind, key: &str, arg: Option<&str>, span: (u64, u64), outcome: Outcome) -> Op {
        let mut op = Op::started(0, Some(0), kind, key, arg.map(str::to_owned), span.0);
        (op.end_ms, op.outcome) = (span.1, outcome);
        op
    }

    fn registers0(history: &[Op], last: &Snapshot) -> Verdict {
        registers(history, last, 0)
    }

    fn state(pairs: &[(&str, Option<&str>)]) -> Snapshot {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned))).collect()
    }

    #[test]
    fn the_set_checker_finds_lost_and_invented_members() {
        let history = vec![
            op(Kind::Sadd, "set:0", Some("a"), (0, 1), Outcome::Ok),
            op(Kind::Sadd, "set:0", Some("b"), (2, 3), Outcome::Ok),
            op(Kind::Sadd, "set:0", Some("c"), (4, 5), Outcome::Unknown),
        ];
        assert!(sets(&history, &state(&[("set:0", Some("a,b"))])).ok());
        assert!(sets(&history, &state(&[("set:0", Some("a,b,c"))])).ok());
        let lost = sets(&history, &state(&[("set:0", Some("a,c"))]));
        assert_eq!((lost.lost, lost.unexpected), (1, 0), "{lost:?}");
        let invented = sets(&history, &state(&[("set:0", Some("a,b,z"))]));
        assert_eq!((invented.lost, invented.unexpected), (0, 1), "{invented:?}");
    }

    #[test]
    fn the_counter_checker_bounds_the_value_by_acknowledged_and_unknown_increments() {
        let history = vec![
            op(Kind::Incrby, COUNTER_KEY, Some("3"), (0, 1), Outcome::Ok),
            op(Kind::Incrby, COUNTER_KEY, Some("4"), (2, 3), Outcome::Unknown),
            op(Kind::Incrby, COUNTER_KEY, Some("5"), (2, 3), Outcome::Fail),
        ];
        assert!(counter(&history, &state(&[(COUNTER_KEY, Some("3"))])).ok());
        assert!(counter(&history, &state(&[(COUNTER_KEY, Some("7"))])).ok());
        assert_eq!(counter(&history, &state(&[(COUNTER_KEY, Some("2"))])).lost, 1);
        assert_eq!(counter(&history, &state(&[(COUNTER_KEY, None)])).lost, 3);
        assert_eq!(counter(&history, &state(&[(COUNTER_KEY, Some("12"))])).unexpected, 5);
    }

    #[test]
    fn the_register_checker_finds_a_lost_last_write_an_undone_delete_and_invented_reads() {
        let key = REGISTER_KEYS[0];
        let history = vec![
            op(Kind::Set, key, Some("old"), (0, 10), Outcome::Ok),
            op(Kind::Set, key, Some("new"), (20, 30), Outcome::Ok),
        ];
        assert!(registers0(&history, &state(&[(key, Some("new"))])).ok());
        let lost = registers0(&history, &state(&[(key, Some("old"))]));
        assert_eq!((lost.lost, lost.unexpected), (1, 0), "{lost:?}");
        assert_eq!(registers0(&history, &state(&[(key, Some("never"))])).unexpected, 1);
        // Overlapping writes may end either way.
        let concurrent = vec![
            op(Kind::Set, key, Some("x"), (0, 10), Outcome::Ok),
            op(Kind::Set, key, Some("y"), (5, 15), Outcome::Ok),
        ];
        assert!(registers0(&concurrent, &state(&[(key, Some("x"))])).ok());
        assert!(registers0(&concurrent, &state(&[(key, Some("y"))])).ok());
        // A delete acknowledged after the last write must not be undone.
        let mut deleted = history.clone();
        deleted.push(op(Kind::Del, key, None, (40, 50), Outcome::Ok));
        assert!(registers0(&deleted, &state(&[(key, None)])).ok());
        assert_eq!(registers0(&deleted, &state(&[(key, Some("new"))])).lost, 1);
        // An unknown write may land any time after it was sent.
        let mut unknown = deleted.clone();
        unknown.push(op(Kind::Set, key, Some("late"), (35, 36), Outcome::Unknown));
        assert!(registers0(&unknown, &state(&[(key, Some("late"))])).ok());
        // With a clock tolerance, a write made just before the last one may win instead.
        let close = vec![
            op(Kind::Set, key, Some("first"), (0, 10), Outcome::Ok),
            op(Kind::Set, key, Some("second"), (300, 310), Outcome::Ok),
        ];
        assert_eq!(registers0(&close, &state(&[(key, Some("first"))])).lost, 1);
        let tolerant = registers(&close, &state(&[(key, Some("first"))]), 300);
        assert_eq!((tolerant.lost, tolerant.tolerated), (0, 1));
        assert_eq!(registers(&close, &state(&[(key, Some("first"))]), 200).lost, 1);
        // A client that reads, where it wrote, a value older than its own write.
        let mut stale = vec![
            op(Kind::Set, key, Some("theirs"), (0, 10), Outcome::Ok),
            op(Kind::Set, key, Some("mine"), (20, 30), Outcome::Ok),
        ];
        stale[0].worker = 1;
        let mut read_back = op(Kind::Get, key, None, (40, 41), Outcome::Ok);
        read_back.read = Some("theirs".into());
        stale.push(read_back.clone());
        let verdict = registers0(&stale, &state(&[(key, Some("mine"))]));
        assert_eq!(verdict.lost, 1, "{verdict:?}");
        read_back.read = Some("mine".into());
        stale[2] = read_back;
        assert!(registers0(&stale, &state(&[(key, Some("mine"))])).ok());
        // Reads of values nobody wrote.
        let mut read = op(Kind::Get, key, None, (60, 61), Outcome::Ok);
        read.read = Some("ghost".into());
        deleted.push(read);
        assert_eq!(registers0(&deleted, &state(&[(key, None)])).unexpected, 1);
    }

    #[test]
    fn the_session_checker_finds_missed_own_writes_and_reads_going_back() {
        let key = SESSION_KEYS[0];
        let put = |stamp, span| {
            let mut op = op(Kind::SessionPut, key, Some("v"), span, Outcome::Ok);
            op.stamp = Some(stamp);
            op
        };
        let get = |stamp: Option<(u64, u64)>, span| {
            let mut op = op(Kind::SessionGet, key, None, span, Outcome::Ok);
            op.stamp = stamp;
            op.read = stamp.map(|_| "v".to_owned());
            op
        };
        let fine =
            vec![put((10, 1), (0, 1)), get(Some((10, 1)), (2, 3)), get(Some((12, 2)), (4, 5))];
        assert!(sessions(&fine).ok(), "{:?}", sessions(&fine));
        let missed = vec![put((10, 1), (0, 1)), get(Some((9, 2)), (2, 3))];
        assert_eq!(sessions(&missed).lost, 1);
        let back = vec![get(Some((12, 2)), (0, 1)), get(Some((11, 2)), (2, 3))];
        assert_eq!(sessions(&back).lost, 1);
        let mut ghost = get(Some((12, 2)), (0, 1));
        ghost.read = Some("ghost".into());
        assert_eq!(sessions(&[ghost]).unexpected, 1);
    }

    #[test]
    fn a_restart_that_forgot_members_or_counts_is_caught() {
        let snapshot = |members: &str, counter: &str| -> Snapshot {
            let mut s = Snapshot::new();
            s.insert(SET_KEYS[0].to_owned(), Some(members.to_owned()));
            s.insert(COUNTER_KEY.to_owned(), Some(counter.to_owned()));
            s
        };
        let before = snapshot("a,b", "10");
        assert!(kept_through_restart(&before, &snapshot("a,b,c", "12")).is_empty());
        assert_eq!(kept_through_restart(&before, &snapshot("a", "10")).len(), 1);
        assert_eq!(kept_through_restart(&before, &snapshot("a,b", "9")).len(), 1);
        // An empty replica (the old bug) fails both.
        assert_eq!(kept_through_restart(&before, &Snapshot::new()).len(), 2);
    }
}
