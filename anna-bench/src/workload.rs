//! Key distributions and deterministic randomness shared by every experiment (SplitMix64, the
//! simulator's [`SimRng`], so every engine sees the same stream).

pub use anna_kvs::sim::SimRng;

/// Deterministic pseudo-random `u64`s (SplitMix64), so every library merges the same data.
pub fn numbers(seed: u64, count: usize) -> Vec<u64> {
    let mut rng = SimRng::new(seed);
    (0..count).map(|_| rng.next_u64()).collect()
}

/// Zipf-distributed ranks over `n` keys with exponent `s` (rank 0 is the hottest), by inverse
/// CDF: the table is built once, then each sample is a binary search.
#[derive(Clone, Debug)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n >= 1` keys.
    pub fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n.max(1));
        let mut total = 0.0;
        for rank in 1..=n.max(1) {
            total += 1.0 / (rank as f64).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Self { cdf }
    }

    /// How many keys it ranges over.
    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    /// Always false: there is at least one key.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The rank for a uniform `u` in `[0, 1)`.
    pub fn sample(&self, u: f64) -> usize {
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }

    /// The probability of the hottest key.
    pub fn top_share(&self) -> f64 {
        self.cdf[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_is_skewed_as_asked() {
        let hot = Zipf::new(1_000_000, 4.0);
        assert!(hot.top_share() > 0.9, "{}", hot.top_share());
        let flat = Zipf::new(1_000, 0.0);
        assert!((flat.top_share() - 0.001).abs() < 1e-9);
        let mut rng = SimRng::new(7);
        let mut counts = [0_u32; 4];
        let small = Zipf::new(4, 1.0);
        for _ in 0..100_000 {
            counts[small.sample(rng.next_f64())] += 1;
        }
        // Shares 12/25, 6/25, 4/25, 3/25.
        for (count, expected) in counts.iter().zip([0.48, 0.24, 0.16, 0.12]) {
            let share = f64::from(*count) / 100_000.0;
            assert!((share - expected).abs() < 0.01, "{counts:?}");
        }
    }
}
