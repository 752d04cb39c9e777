//! A user crate that renamed lattice-core to `renamed_lattices`.

use renamed_lattices::{Lattice, Max, SetUnion};

/// Derived through the renamed crate.
#[derive(Lattice, Clone, Debug, PartialEq)]
#[lattice(crate = "renamed_lattices")]
pub struct Inventory {
    /// Highest stock level seen.
    pub peak: Max<u32>,
    /// Every SKU ever stocked.
    pub skus: SetUnion<String>,
}

/// A generic tuple struct with a dominating field, derived through the renamed crate.
#[derive(Lattice, Clone, Debug, PartialEq)]
#[lattice(crate = "renamed_lattices")]
pub struct Tagged<T: Ord + Clone>(#[lattice(dominating)] pub u8, pub SetUnion<T>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_through_a_renamed_dependency_obeys_the_laws() {
        let inv = |peak, skus: &[&str]| Inventory {
            peak: Max::new(peak),
            skus: skus.iter().map(|s| s.to_string()).collect(),
        };
        let samples = [inv(0, &[]), inv(3, &["a"]), inv(1, &["a", "b"]), inv(3, &["c"])];
        renamed_lattices::laws::check_all(&samples);
        let merged = samples[1].clone().join(samples[2].clone());
        assert_eq!(merged, inv(3, &["a", "b"]));
    }

    #[test]
    fn generic_dominating_tuple_struct_obeys_the_laws() {
        let t = |k, v: &[char]| Tagged(k, v.iter().copied().collect());
        renamed_lattices::laws::check_all(&[
            t(0, &[]),
            t(0, &['a']),
            t(1, &['b']),
            t(1, &['c']),
            t(255, &[]),
        ]);
        assert_eq!(t(1, &['b']).join(t(1, &['c'])), t(1, &['b', 'c']));
        assert_eq!(t(2, &['b']).join(t(1, &['c'])), t(2, &['b']));
    }
}
