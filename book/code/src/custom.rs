//! Chapter 3: a lattice of our own, and one that only looks like a lattice.

use lattice_core::Lattice;

// ANCHOR: bounding_box
/// The smallest axis-aligned box containing every point any replica has seen. Merging two
/// boxes takes the box around both; the empty box (⊥) contains nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoundingBox {
    /// No point yet.
    Empty,
    /// The box `[min_x, max_x] × [min_y, max_y]`.
    Box {
        /// Left edge.
        min_x: i32,
        /// Bottom edge.
        min_y: i32,
        /// Right edge.
        max_x: i32,
        /// Top edge.
        max_y: i32,
    },
}

impl BoundingBox {
    /// The box around a single point.
    pub fn point(x: i32, y: i32) -> Self {
        Self::Box { min_x: x, min_y: y, max_x: x, max_y: y }
    }
}

impl Lattice for BoundingBox {
    fn merge(&mut self, other: Self) -> bool {
        let merged = match (*self, other) {
            (a, Self::Empty) => a,
            (Self::Empty, b) => b,
            (
                Self::Box { min_x, min_y, max_x, max_y },
                Self::Box { min_x: x0, min_y: y0, max_x: x1, max_y: y1 },
            ) => Self::Box {
                min_x: min_x.min(x0),
                min_y: min_y.min(y0),
                max_x: max_x.max(x1),
                max_y: max_y.max(y1),
            },
        };
        let changed = merged != *self;
        *self = merged;
        changed
    }

    fn bottom() -> Self {
        Self::Empty
    }

    fn is_bottom(&self) -> bool {
        *self == Self::Empty
    }
}
// ANCHOR_END: bounding_box

// ANCHOR: average
/// A running average that "merges" by averaging: tempting, and not a lattice.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Average(pub f64);

impl Lattice for Average {
    fn merge(&mut self, other: Self) -> bool {
        let merged = Average((self.0 + other.0) / 2.0);
        let changed = merged != *self;
        *self = merged;
        changed
    }

    fn bottom() -> Self {
        Average(0.0)
    }

    fn is_bottom(&self) -> bool {
        self.0 == 0.0
    }
}
// ANCHOR_END: average

#[cfg(test)]
mod tests {
    use super::*;
    use lattice_core::proptest::prelude::*;

    fn boxes() -> impl Strategy<Value = BoundingBox> {
        prop_oneof![
            Just(BoundingBox::Empty),
            (-100..100_i32, -100..100_i32, 0..50_i32, 0..50_i32).prop_map(|(x, y, w, h)| {
                BoundingBox::Box { min_x: x, min_y: y, max_x: x + w, max_y: y + h }
            }),
        ]
    }

    // ANCHOR: law_tests
    lattice_core::lattice_law_tests!(bounding_box_obeys_the_laws, BoundingBox, boxes());
    // ANCHOR_END: law_tests
}
