use lattice_core::{Lattice, SetUnion};

#[derive(Lattice, Clone)]
#[lattice(dominating)]
struct Versioned {
    version: u64,
    tags: SetUnion<String>,
}

fn main() {}
