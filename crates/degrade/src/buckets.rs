//! Log-linear latency buckets: 16 per doubling, so a percentile read from them is at most
//! 1/16 (6.25%) above the true value, with a fixed number of counters.

/// Sub-buckets per doubling (a power of two).
const SUB: u64 = 16;
const SUB_BITS: u32 = SUB.trailing_zeros();

/// The largest latency told apart, in microseconds (about 25 days); longer ones count here.
pub(crate) const MAX_MICROS: u64 = (1 << 41) - 1;

/// How many buckets cover `0..=MAX_MICROS`.
pub(crate) const BUCKETS: usize = index(MAX_MICROS) + 1;

/// The bucket of a latency of `micros`: exact below 32 µs, then 16 buckets per doubling.
pub(crate) const fn index(micros: u64) -> usize {
    let v = if micros > MAX_MICROS {
        MAX_MICROS
    } else {
        micros
    };
    let log2 = 63 - (v | 1).leading_zeros();
    let shift = log2.saturating_sub(SUB_BITS);
    // Below 2 * SUB the value itself; above, its top five bits (16..32) after `shift`.
    (SUB * shift as u64 + (v >> shift)) as usize
}

/// The largest latency, in microseconds, that falls in bucket `index`.
pub(crate) const fn upper_bound(index: usize) -> u64 {
    let i = index as u64;
    let (shift, sub) = if i < 2 * SUB {
        (0, i)
    } else {
        (i / SUB - 1, i % SUB + SUB)
    };
    ((sub + 1) << shift) - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_values_are_exact_and_buckets_are_contiguous() {
        for v in 0..32 {
            assert_eq!(index(v), v as usize);
            assert_eq!(upper_bound(v as usize), v);
        }
        assert_eq!(index(32), 32);
        assert_eq!(index(33), 32, "two values per bucket from 32");
        assert_eq!(upper_bound(32), 33);
        for i in 1..BUCKETS {
            assert_eq!(
                index(upper_bound(i - 1) + 1),
                i,
                "bucket {i} starts where {} ends",
                i - 1
            );
        }
        assert_eq!(upper_bound(BUCKETS - 1), MAX_MICROS);
        assert_eq!(index(u64::MAX), BUCKETS - 1, "longer latencies are clamped");
    }

    proptest! {
        #[test]
        fn a_value_lies_in_its_bucket_within_a_sixteenth(v in 0..=MAX_MICROS) {
            let i = index(v);
            prop_assert!(upper_bound(i) >= v);
            prop_assert!(i == 0 || upper_bound(i - 1) < v);
            prop_assert!((upper_bound(i) - v) as f64 <= v as f64 / 16.0);
        }
    }
}
