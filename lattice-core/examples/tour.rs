//! A tour of lattice-core: three replicas of a small document update independently, exchange
//! their states in a random order (with duplicates), and end up identical.
//!
//! Run with `cargo run -p lattice-core --example tour`.

use lattice_core::{Lattice, Lww, MultiValue, OrSet, PNCounter, Stamp, VectorClock, laws};

/// One replica's state: a product of lattices is a lattice.
type Doc = (Lww<String>, OrSet<String>, PNCounter, MultiValue<String>);

fn main() {
    let mut replicas: Vec<Doc> = vec![Lattice::bottom(); 3];

    // Each replica (ids 1, 2, 3) edits on its own.
    replicas[0].0.merge(Lww::new(Stamp::new(100, 1), "Draft by 1".to_owned()));
    replicas[0].1.add(1, "rust".to_owned());
    replicas[0].2.increment(1, 5);
    replicas[0].3.write(1, "blue".to_owned());

    replicas[1].0.merge(Lww::new(Stamp::new(100, 2), "Draft by 2".to_owned()));
    replicas[1].1.add(2, "lattice".to_owned());
    replicas[1].2.decrement(2, 2);
    replicas[1].3.write(2, "green".to_owned());

    replicas[2].1.add(3, "rust".to_owned());
    replicas[2].1.remove(&"rust".to_owned());
    replicas[2].2.increment(3, 1);

    // Gossip in an arbitrary order, with repeats: 2→0, 0→1, 1→2, 2→0 again, 0→2.
    for (from, to) in [(2, 0), (0, 1), (1, 2), (2, 0), (0, 2), (2, 1)] {
        let state = replicas[from].clone();
        let changed = replicas[to].merge(state);
        println!("merge {from} -> {to}: changed = {changed}");
    }

    let first = &replicas[0];
    assert!(replicas.iter().all(|r| r == first), "replicas diverged");
    println!("\nall three replicas agree:");
    println!("  title    (Lww, tie at t=100 broken by writer id): {:?}", first.0.value());
    println!(
        "  tags     (OrSet, add wins over a remove that did not see it): {:?}",
        first.1.iter().collect::<Vec<_>>()
    );
    println!("  votes    (PNCounter): {}", first.2.value());
    println!(
        "  colour   (MultiValue, concurrent writes kept as siblings): {:?}",
        first.3.values().collect::<Vec<_>>()
    );
    let clock: VectorClock = first.3.clock();
    println!("  clock of the colour register: {:?}", clock.iter().collect::<Vec<_>>());

    laws::check_all(&replicas);
    println!("\nlaw check over the replicas' states: ok");
}
