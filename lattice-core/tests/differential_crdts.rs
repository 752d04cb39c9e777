//! Differential tests against the widely used `crdts` crate: the same random operations and
//! merges on three replicas must read the same, wherever the two crates' semantics coincide
//! (grow-only and PN counters, vector clocks, add-wins observed-remove sets).

use std::collections::{BTreeSet, HashSet};

use crdts::{CmRDT, CvRDT};
use lattice_core::{CausalOrder, GCounter, Lattice, OrSet, PNCounter, VectorClock};
use proptest::prelude::*;

const REPLICAS: usize = 3;

#[derive(Clone, Debug)]
enum Step {
    /// Replica `at` performs a local operation with argument `arg`.
    Local { at: usize, arg: u8, flag: bool },
    /// Replica `to` merges replica `from`'s state.
    Merge { from: usize, to: usize },
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        3 => (0..REPLICAS, 0_u8..6, any::<bool>()).prop_map(|(at, arg, flag)| Step::Local { at, arg, flag }),
        2 => (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Step::Merge { from, to }),
    ];
    proptest::collection::vec(step, 0..40)
}

/// Merges everything into everyone at the end, so the final comparison covers convergence too.
fn full_sync<T: Clone>(replicas: &mut [T], mut merge: impl FnMut(&mut T, T)) {
    for from in 0..replicas.len() {
        for to in 0..replicas.len() {
            let state = replicas[from].clone();
            merge(&mut replicas[to], state);
        }
    }
}

proptest! {
    #[test]
    fn gcounter_matches_crdts(steps in steps()) {
        let mut ours = vec![GCounter::<u8>::new(); REPLICAS];
        let mut theirs = vec![crdts::GCounter::<u8>::new(); REPLICAS];
        for step in &steps {
            match *step {
                Step::Local { at, arg, .. } => {
                    ours[at].increment(at as u8, u64::from(arg));
                    let op = theirs[at].inc_many(at as u8, u64::from(arg));
                    theirs[at].apply(op);
                }
                Step::Merge { from, to } => {
                    let (o, t) = (ours[from].clone(), theirs[from].clone());
                    ours[to].merge(o);
                    theirs[to].merge(t);
                }
            }
            for i in 0..REPLICAS {
                prop_assert_eq!(ours[i].value().to_string(), theirs[i].read().to_string());
            }
        }
        full_sync(&mut ours, |a, b| { a.merge(b); });
        full_sync(&mut theirs, |a, b| a.merge(b));
        prop_assert_eq!(ours[0].value().to_string(), theirs[0].read().to_string());
    }

    #[test]
    fn pncounter_matches_crdts(steps in steps()) {
        let mut ours = vec![PNCounter::<u8>::new(); REPLICAS];
        let mut theirs = vec![crdts::PNCounter::<u8>::new(); REPLICAS];
        for step in &steps {
            match *step {
                Step::Local { at, arg, flag } => {
                    let op = if flag {
                        ours[at].increment(at as u8, u64::from(arg));
                        theirs[at].inc_many(at as u8, u64::from(arg))
                    } else {
                        ours[at].decrement(at as u8, u64::from(arg));
                        theirs[at].dec_many(at as u8, u64::from(arg))
                    };
                    theirs[at].apply(op);
                }
                Step::Merge { from, to } => {
                    let (o, t) = (ours[from].clone(), theirs[from].clone());
                    ours[to].merge(o);
                    theirs[to].merge(t);
                }
            }
            for i in 0..REPLICAS {
                prop_assert_eq!(ours[i].value().to_string(), theirs[i].read().to_string());
            }
        }
    }

    #[test]
    fn vector_clock_matches_crdts(steps in steps()) {
        let mut ours = vec![VectorClock::<u8>::new(); REPLICAS];
        let mut theirs = vec![crdts::VClock::<u8>::new(); REPLICAS];
        for step in &steps {
            match *step {
                Step::Local { at, .. } => {
                    ours[at].increment(at as u8);
                    let dot = theirs[at].inc(at as u8);
                    theirs[at].apply(dot);
                }
                Step::Merge { from, to } => {
                    let (o, t) = (ours[from].clone(), theirs[from].clone());
                    ours[to].merge(o);
                    theirs[to].merge(t);
                }
            }
            for i in 0..REPLICAS {
                for actor in 0..REPLICAS as u8 {
                    prop_assert_eq!(ours[i].get(&actor), theirs[i].get(&actor));
                }
                for j in 0..REPLICAS {
                    let expected = match theirs[i].partial_cmp(&theirs[j]) {
                        Some(std::cmp::Ordering::Less) => CausalOrder::Before,
                        Some(std::cmp::Ordering::Greater) => CausalOrder::After,
                        Some(std::cmp::Ordering::Equal) => CausalOrder::Equal,
                        None => CausalOrder::Concurrent,
                    };
                    prop_assert_eq!(ours[i].compare(&ours[j]), expected);
                    prop_assert_eq!(ours[i].concurrent_with(&ours[j]), theirs[i].concurrent(&theirs[j]));
                }
            }
        }
    }

    #[test]
    fn or_set_matches_crdts_orswot(steps in steps()) {
        let mut ours = vec![OrSet::<u8, u8>::new(); REPLICAS];
        let mut theirs = vec![crdts::Orswot::<u8, u8>::new(); REPLICAS];
        for step in &steps {
            match *step {
                Step::Local { at, arg, flag: true } => {
                    ours[at].add(at as u8, arg);
                    let ctx = theirs[at].read_ctx().derive_add_ctx(at as u8);
                    let op = theirs[at].add(arg, ctx);
                    theirs[at].apply(op);
                }
                Step::Local { at, arg, flag: false } => {
                    ours[at].remove(&arg);
                    let ctx = theirs[at].contains(&arg).derive_rm_ctx();
                    let op = theirs[at].rm(arg, ctx);
                    theirs[at].apply(op);
                }
                Step::Merge { from, to } => {
                    let (o, t) = (ours[from].clone(), theirs[from].clone());
                    ours[to].merge(o);
                    theirs[to].merge(t);
                }
            }
            for i in 0..REPLICAS {
                let mine: BTreeSet<u8> = ours[i].iter().copied().collect();
                let other: HashSet<u8> = theirs[i].read().val;
                prop_assert_eq!(mine, other.into_iter().collect::<BTreeSet<u8>>());
            }
        }
        full_sync(&mut ours, |a, b| { a.merge(b); });
        full_sync(&mut theirs, |a, b| a.merge(b));
        for i in 1..REPLICAS {
            prop_assert_eq!(&ours[i], &ours[0]);
        }
        let mine: BTreeSet<u8> = ours[0].iter().copied().collect();
        prop_assert_eq!(mine, theirs[0].read().val.into_iter().collect::<BTreeSet<u8>>());
    }
}
