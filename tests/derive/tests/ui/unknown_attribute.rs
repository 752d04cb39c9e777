use lattice_core::{Lattice, Max};

#[derive(Lattice, Clone)]
#[lattice(frobnicate)]
struct Score {
    best: Max<u32>,
}

fn main() {}
