use lattice_core::{Lattice, Max};

#[derive(Lattice, Clone)]
#[lattice(crate = "not a path")]
struct Score {
    best: Max<u32>,
}

fn main() {}
