use lattice_core::{Lattice, SetUnion, VectorClock};

#[derive(Lattice, Clone)]
struct Versioned {
    #[lattice(dominating)]
    clock: VectorClock,
    tags: SetUnion<String>,
}

fn main() {}
