use lattice_core::{Lattice, Max};

#[derive(Lattice, Clone)]
enum Status {
    Up(Max<u64>),
    Down,
}

fn main() {}
