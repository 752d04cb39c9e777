use lattice_core::{Lattice, Max};

#[derive(Lattice, Clone)]
struct Score {
    #[lattice(skip)]
    best: Max<u32>,
}

fn main() {}
