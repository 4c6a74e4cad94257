//! A log-linear latency histogram in the manner of HdrHistogram: values
//! (microseconds) are counted in buckets whose width is 1/64 of their
//! magnitude, so every percentile is exact to within 1.6 % over the whole
//! u64 range, with a fixed 3,776-bucket array (no allocation per value).
//! Histograms of several threads merge by addition.

/// Linear sub-buckets per power of two.
const SUB_BUCKETS: u64 = 64;
const SUB_BITS: u32 = 6;
/// Values below this are counted exactly.
const EXACT: u64 = 2 * SUB_BUCKETS;
const BUCKETS: usize = ((64 - SUB_BITS) as usize + 1) * SUB_BUCKETS as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    max: u64,
    min: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            max: 0,
            min: u64::MAX,
            sum: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.total)
            .field("p50", &self.percentile(50.0))
            .field("p99", &self.percentile(99.0))
            .field("max", &self.max)
            .finish()
    }
}

fn index(value: u64) -> usize {
    if value < EXACT {
        return value as usize;
    }
    // value >> shift lands in [64, 128).
    let shift = 63 - value.leading_zeros() - SUB_BITS;
    ((shift as u64 + 1) * SUB_BUCKETS + ((value >> shift) - SUB_BUCKETS)) as usize
}

/// The largest value counted in bucket `i` (what a percentile reports:
/// never an underestimate).
fn highest(i: usize) -> u64 {
    let i = i as u64;
    if i < EXACT {
        return i;
    }
    let shift = i / SUB_BUCKETS - 1;
    let sub = i % SUB_BUCKETS + SUB_BUCKETS;
    ((sub + 1) << shift) - 1
}

impl Histogram {
    pub fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.total += 1;
        self.max = self.max.max(value);
        self.min = self.min.min(value);
        self.sum += u128::from(value);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.min = self.min.min(other.min);
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at or below which `p` percent of the values are (the
    /// bucket's upper edge, capped at the maximum seen); 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return highest(i).min(self.max).max(self.min);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::default();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), 50);
        assert_eq!(h.percentile(99.0), 99);
        assert_eq!(h.percentile(100.0), 100);
        assert_eq!(h.count(), 100);
        assert!((h.mean() - 50.5).abs() < 1e-9);
    }

    #[test]
    fn percentiles_of_a_skewed_distribution() {
        let mut h = Histogram::default();
        for _ in 0..990 {
            h.record(1_000);
        }
        for _ in 0..10 {
            h.record(250_000);
        }
        let p50 = h.percentile(50.0);
        assert!((1_000..=1_016).contains(&p50), "{p50}");
        assert_eq!(h.percentile(99.0), p50, "the 990th of 1000");
        let p999 = h.percentile(99.9);
        assert!((250_000..=254_000).contains(&p999), "{p999}");
        assert_eq!(h.max(), 250_000);
    }

    #[test]
    fn merging_adds_counts() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        a.record(10);
        b.record(20_000);
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert_eq!(a.max(), 20_000);
        assert_eq!(a.percentile(50.0), 10);
    }

    proptest! {
        /// Every value lands in a bucket whose upper edge is within 1/64
        /// above it.
        #[test]
        fn bucket_error_is_bounded(v in 0u64..u64::MAX / 2) {
            let hi = highest(index(v));
            prop_assert!(hi >= v);
            prop_assert!(hi - v <= v / 64 + 1, "{v} -> {hi}");
        }

        #[test]
        fn indexes_are_monotonic(a in 0u64..1 << 40, b in 0u64..1 << 40) {
            if a <= b {
                prop_assert!(index(a) <= index(b));
            }
        }
    }
}
