//! `merge_ref` on the collection lattices clones only what actually changes `self`, and
//! `MapLattice::merge` moves entries instead of cloning them. Gossip merges one state into
//! many replicas, so a clone per unchanged entry would be a clone per key per epoch.

use std::cell::Cell;

use lattice_core::{Lattice, MapLattice, Max, SetUnion};

thread_local! {
    static CLONES: Cell<usize> = const { Cell::new(0) };
}

fn clones() -> usize {
    CLONES.with(Cell::get)
}

/// A `Max<u32>` that counts its clones.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Counted(Max<u32>);

impl Clone for Counted {
    fn clone(&self) -> Self {
        CLONES.with(|c| c.set(c.get() + 1));
        Counted(self.0)
    }
}

impl Lattice for Counted {
    fn merge(&mut self, other: Self) -> bool {
        self.0.merge(other.0)
    }
    fn merge_ref(&mut self, other: &Self) -> bool {
        self.0.merge_ref(&other.0)
    }
    fn bottom() -> Self {
        Counted(Max::bottom())
    }
    fn is_bottom(&self) -> bool {
        self.0.is_bottom()
    }
}

#[test]
fn map_merge_ref_clones_only_new_entries() {
    let mut replica: MapLattice<u32, Counted> =
        (0..100).map(|k| (k, Counted(Max::new(k)))).collect();
    // The update touches 100 existing keys (half of them move up) and adds 3 new ones.
    let update: MapLattice<u32, Counted> =
        (0..103).map(|k| (k, Counted(Max::new(if k % 2 == 0 { k + 1 } else { k })))).collect();
    let before = clones();
    assert!(replica.merge_ref(&update));
    assert_eq!(clones() - before, 3, "only the 3 new entries may be cloned");
    assert_eq!(replica.get(&2), Some(&Counted(Max::new(3))));
}

#[test]
fn map_merge_by_value_clones_nothing() {
    let mut replica: MapLattice<u32, Counted> =
        (0..50).map(|k| (k, Counted(Max::new(k)))).collect();
    let update: MapLattice<u32, Counted> =
        (25..75).map(|k| (k, Counted(Max::new(k + 1)))).collect();
    let before = clones();
    assert!(replica.merge(update));
    assert_eq!(clones() - before, 0);
    assert_eq!(replica.len(), 75);
}

#[test]
fn set_merge_ref_clones_only_new_elements() {
    let mut replica: SetUnion<Counted> = (0..100).map(|k| Counted(Max::new(k))).collect();
    let update: SetUnion<Counted> = (95..105).map(|k| Counted(Max::new(k))).collect();
    let before = clones();
    assert!(replica.merge_ref(&update));
    assert_eq!(clones() - before, 5);
    let before = clones();
    assert!(!replica.merge_ref(&update));
    assert_eq!(clones() - before, 0);
}
