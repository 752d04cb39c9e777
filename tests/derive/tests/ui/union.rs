use lattice_core::Lattice;

#[derive(Lattice, Clone, Copy)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
