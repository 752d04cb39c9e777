//! Every built-in survives a serde round trip, and decoding a non-canonical encoding yields a
//! canonical (valid) state rather than a second representation of the same state.

use std::collections::{BTreeMap, BTreeSet};

use lattice_core::laws::{check_all, try_check_round_trip};
use lattice_core::proptest::prelude::*;
use lattice_core::{
    BoolOr, DomPair, Dot, GCounter, Lattice, Lww, MapLattice, Max, Min, MultiValue, OrSet,
    PNCounter, Pair, Priority, SetUnion, Stamp, TotalF64, VectorClock,
};

fn json_round_trip<T>(samples: &[T])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    try_check_round_trip(
        samples,
        |v| serde_json::to_string(v).expect("encode"),
        |s| serde_json::from_str(&s).expect("decode"),
    )
    .unwrap();
}

macro_rules! round_trips {
    ($($name:ident: $ty:ty;)+) => {
        proptest! {
            $(
                #[test]
                fn $name(samples in proptest::collection::vec(any::<$ty>(), 0..6)) {
                    json_round_trip(&samples);
                }
            )+
        }
    };
}

round_trips! {
    rt_max: Max<i32>;
    rt_min: Min<u64>;
    rt_bool_or: BoolOr;
    rt_set: SetUnion<u8>;
    rt_map: MapLattice<u8, Max<u8>>;
    rt_pair: Pair<Max<u8>, BoolOr>;
    rt_dom_pair: DomPair<u8, SetUnion<u8>>;
    rt_lww: Lww<String>;
    rt_clock: VectorClock<u8>;
    rt_multi_value: MultiValue<u8, u8>;
    rt_gcounter: GCounter<u8>;
    rt_pncounter: PNCounter<u8>;
    rt_or_set: OrSet<u8, u8>;
    rt_priority: Priority<u8, u8>;
}

#[test]
fn float_priorities_round_trip_bit_exactly_in_a_binary_format() {
    // JSON has no NaN or infinities; bincode (what Anna gossips with) keeps every bit.
    let samples = [0.0, -0.0, 1.5, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, -f64::NAN]
        .map(|p| Priority::new(TotalF64::new(p), 1_u8));
    let config = bincode::config::standard();
    try_check_round_trip(
        &samples,
        |v| bincode::serde::encode_to_vec(v, config).expect("encode"),
        |bytes| bincode::serde::decode_from_slice(&bytes, config).expect("decode").0,
    )
    .unwrap();
}

#[test]
fn decoding_a_clock_with_zero_entries_gives_the_canonical_clock() {
    let clock: VectorClock<u8> = serde_json::from_str(r#"{"1": 0, "2": 3}"#).unwrap();
    assert_eq!(clock, VectorClock::from_iter([(2, 3)]));
    let empty: VectorClock<u8> = serde_json::from_str(r#"{"7": 0}"#).unwrap();
    assert!(empty.is_bottom());
}

#[test]
fn decoding_a_dominated_multi_value_keeps_only_the_maximal_writes() {
    let old = (VectorClock::from_iter([(1_u8, 1)]), 10_u8);
    let new = (VectorClock::from_iter([(1_u8, 2)]), 20_u8);
    let encoded = serde_json::to_string(&vec![old, new.clone()]).unwrap();
    let decoded: MultiValue<u8, u8> = serde_json::from_str(&encoded).unwrap();
    assert_eq!(decoded.entries(), &[new]);
}

#[test]
fn an_or_set_built_from_raw_parts_drops_tombstoned_adds_and_covers_its_dots() {
    let dot = Dot { actor: 1_u8, counter: 5 };
    let set = OrSet::from_parts(
        BTreeMap::from([(7_u8, BTreeSet::from([dot]))]),
        BTreeSet::from([dot]),
        VectorClock::new(),
    );
    assert!(!set.contains(&7));
    let mut next = set.clone();
    let fresh = next.add(1, 8);
    assert_eq!(fresh.counter, 6, "a new dot must not reuse a tombstoned one");
    let back: OrSet<u8, u8> = serde_json::from_str(&serde_json::to_string(&set).unwrap()).unwrap();
    assert_eq!(back, set);
    check_all(&[set, next, back]);
}

#[test]
fn lww_encodes_compactly() {
    let reg = Lww::new(Stamp::new(3, 4), "v".to_owned());
    assert_eq!(serde_json::to_string(&reg).unwrap(), r#"[{"time":3,"writer":4},"v"]"#);
    assert_eq!(serde_json::to_string(&Lww::<String>::unwritten()).unwrap(), "null");
}
