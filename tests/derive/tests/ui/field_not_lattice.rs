use lattice_core::{Lattice, Max};

#[derive(Lattice, Clone)]
struct Profile {
    visits: Max<u64>,
    name: String,
}

fn main() {}
