use lattice_core::{Lattice, SetUnion};

#[derive(Lattice, Clone)]
struct Versioned {
    #[lattice(dominating)]
    epoch: u64,
    #[lattice(dominating)]
    counter: u64,
    tags: SetUnion<String>,
}

fn main() {}
