//! The slow-endpoint rule's machinery: each endpoint's tally of the latency of its timed
//! calls (successes and timeouts) in the current interval (two atomics, no lock), and the
//! rule's arithmetic (the median of the endpoints' means and the threshold above it). Atomics from core's `sync`
//! shim, so the loom model (`--cfg bulwark_loom`) checks the tally.

use std::time::Duration;

use tower_bulwark_core::sync::{AtomicU64, Ordering};

use crate::config::SlowEndpoint;

/// One endpoint's timed calls in the current interval and the sum of their latencies.
///
/// A call adds its count, then its latency (`Release`); the interval's end takes the sum,
/// then the count (`Acquire`). So a latency taken always comes with its call's count: a
/// call that races with the end may leave its count in this interval and its latency in
/// the next (this mean reads it as instant, the next one a little higher), never the
/// reverse, which could make a mean out of a latency and no call.
#[derive(Debug, Default)]
pub(crate) struct LatencyTally {
    calls: AtomicU64,
    nanos: AtomicU64,
}

impl LatencyTally {
    /// Adds one timed call that took `nanos`.
    #[inline]
    pub(crate) fn add(&self, nanos: u64) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        // Saturates (584 years of summed latency in one interval: calls in flight x
        // (interval + their length), reachable only with an interval of years and
        // evaluations on demand): a sum that wrapped would make a slow endpoint's mean
        // small, one stuck at the top keeps it slow. Uncontended, a load and a CAS.
        let _ = self
            .nanos
            .fetch_update(Ordering::Release, Ordering::Relaxed, |sum| {
                Some(sum.saturating_add(nanos))
            });
    }

    /// Takes the interval's tally and starts the next: `(calls, summed nanoseconds)`.
    pub(crate) fn take(&self) -> Tally {
        let nanos = self.nanos.swap(0, Ordering::AcqRel);
        let calls = self.calls.swap(0, Ordering::AcqRel);
        Tally { calls, nanos }
    }
}

/// One interval's tally of one endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) calls: u64,
    pub(crate) nanos: u64,
}

impl Tally {
    /// The mean latency in nanoseconds, if there were calls.
    pub(crate) fn mean(self) -> Option<u64> {
        self.nanos.checked_div(self.calls)
    }

    /// The mean latency, if there were at least `volume` calls (the rule's
    /// `request_volume`).
    pub(crate) fn mean_with(self, volume: u64) -> Option<u64> {
        if self.calls >= volume.max(1) {
            self.mean()
        } else {
            None
        }
    }
}

/// What the endpoints of one interval are compared against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reference {
    /// The median of the compared endpoints' means, in nanoseconds.
    pub(crate) median: u64,
    /// Means above this are slow: `max(factor x median, median + minimum_excess)`.
    pub(crate) threshold: u64,
}

impl Reference {
    pub(crate) fn median(&self) -> Duration {
        Duration::from_nanos(self.median)
    }

    pub(crate) fn threshold(&self) -> Duration {
        Duration::from_nanos(self.threshold)
    }

    /// Whether a mean of `mean` nanoseconds is slow.
    pub(crate) fn is_slow(&self, mean: u64) -> bool {
        mean > self.threshold
    }
}

impl SlowEndpoint {
    /// The reference of an interval in which the endpoints with enough calls had the mean
    /// latencies `means` (reordered); `None` when they are fewer than `minimum_hosts`.
    pub(crate) fn reference(&self, means: &mut [u64]) -> Option<Reference> {
        if means.len() < self.minimum_hosts.max(1) {
            return None;
        }
        let median = median(means)?;
        // A float-to-integer `as` saturates (and `factor` is finite and above 1).
        let scaled = (median as f64 * self.factor) as u64;
        let excess = u64::try_from(self.minimum_excess.as_nanos()).unwrap_or(u64::MAX);
        Some(Reference {
            median,
            threshold: scaled.max(median.saturating_add(excess)),
        })
    }
}

/// The median of `values` (sorted in place): the middle one, or the mean of the two middle
/// ones (rounded down), `None` for none.
pub(crate) fn median(values: &mut [u64]) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        return Some(values[middle]);
    }
    let (low, high) = (values[middle - 1], values[middle]);
    // (low + high) / 2 without overflow.
    Some(low / 2 + high / 2 + (low % 2 + high % 2) / 2)
}

#[cfg(all(test, bulwark_loom))]
mod loom_model {
    use super::*;
    use loom::sync::Arc;

    /// A call recorded while the interval ends: whichever interval each half lands in,
    /// nothing is lost, and a latency taken comes with its call.
    #[test]
    fn a_racing_call_is_counted_once_and_its_latency_never_without_it() {
        loom::model(|| {
            let tally = Arc::new(LatencyTally::default());
            tally.add(5);
            let recorder = tally.clone();
            let call = loom::thread::spawn(move || recorder.add(7));
            let first = tally.take();
            call.join().unwrap();
            let second = tally.take();
            assert_eq!(first.calls + second.calls, 2);
            assert_eq!(first.nanos + second.nanos, 12);
            // The first call is always in the first interval.
            assert!(first.calls >= 1 && first.nanos >= 5);
            if first.nanos == 12 {
                assert_eq!(first.calls, 2, "the racing call's latency came without it");
            }
        });
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn rule() -> SlowEndpoint {
        SlowEndpoint::new()
    }

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_one_and_of_an_even_count_the_mean_of_two() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [7]), Some(7));
        assert_eq!(median(&mut [9, 1, 5]), Some(5));
        assert_eq!(median(&mut [200, 2, 3, 1, 2]), Some(2));
        assert_eq!(
            median(&mut [4, 1, 3, 2]),
            Some(2),
            "(2 + 3) / 2, rounded down"
        );
        assert_eq!(median(&mut [10, 20]), Some(15));
        assert_eq!(median(&mut [u64::MAX, u64::MAX]), Some(u64::MAX));
        assert_eq!(median(&mut [u64::MAX - 2, u64::MAX]), Some(u64::MAX - 1));
    }

    /// Four endpoints at 2 ms and one at 200 ms: the median is 2 ms (the mean would be
    /// 41.6 ms), the threshold `max(5 x 2, 2 + 50)` = 52 ms, and only the slow one is
    /// above it.
    #[test]
    fn the_threshold_is_the_larger_of_factor_times_median_and_median_plus_excess() {
        let mut means = [2 * MS, 2 * MS, 200 * MS, 2 * MS, 2 * MS];
        let reference = rule().reference(&mut means).unwrap();
        assert_eq!(
            reference,
            Reference {
                median: 2 * MS,
                threshold: 52 * MS
            }
        );
        assert!(reference.is_slow(200 * MS));
        assert!(
            !reference.is_slow(52 * MS),
            "more than the threshold, not equal"
        );
        assert!(reference.is_slow(52 * MS + 1));
        // A slow median: the factor rules. Median 100 ms: 5 x 100 = 500 > 150.
        let mut means = [100 * MS, 90 * MS, 110 * MS, 600 * MS];
        let reference = rule().reference(&mut means).unwrap();
        assert_eq!(
            (reference.median, reference.threshold),
            (105 * MS, 525 * MS)
        );
        assert!(reference.is_slow(600 * MS));
        // Even count: (2 + 3) / 2 = 2.5 ms; factor 4 gives 10 ms, excess 1 ms gives 3.5 ms.
        let mut means = [2 * MS, 3 * MS, 40 * MS, MS];
        let rule = rule().factor(4.0).minimum_excess(Duration::from_millis(1));
        let reference = rule.reference(&mut means).unwrap();
        assert_eq!(
            (reference.median, reference.threshold),
            (2_500_000, 10 * MS)
        );
    }

    /// 0.1 ms against 1 ms is 10x, but 0.9 ms: below the 50 ms excess, nobody is slow.
    #[test]
    fn an_excess_below_the_minimum_ejects_nobody() {
        let mut means = [100_000, 100_000, 100_000, 100_000, MS];
        let reference = rule().reference(&mut means).unwrap();
        assert_eq!(reference.threshold, 100_000 + 50 * MS);
        assert!(!reference.is_slow(MS));
        // With no excess required the factor alone decides: 1 ms > 5 x 0.1 ms.
        let bare = rule().minimum_excess(Duration::ZERO);
        let reference = bare.reference(&mut means).unwrap();
        assert_eq!(reference.threshold, 500_000);
        assert!(reference.is_slow(MS));
        // Instant calls (paused time): median 0, the excess is the whole threshold.
        let reference = rule().reference(&mut [0, 0, 0]).unwrap();
        assert_eq!(reference.threshold, 50 * MS);
    }

    #[test]
    fn fewer_hosts_than_the_minimum_are_not_compared() {
        assert_eq!(rule().reference(&mut [MS, 200 * MS]), None);
        assert_eq!(rule().reference(&mut []), None);
        assert!(rule().reference(&mut [MS, MS, 200 * MS]).is_some());
        let four = rule().minimum_hosts(4);
        assert_eq!(four.reference(&mut [MS, MS, 200 * MS]), None);
        // A zero minimum (refused by the builder) still needs one mean.
        assert_eq!(rule().minimum_hosts(0).reference(&mut []), None);
    }

    #[test]
    fn an_endpoint_with_too_few_calls_has_no_mean_to_compare() {
        let tally = Tally {
            calls: 49,
            nanos: 49 * 200 * MS,
        };
        assert_eq!(tally.mean_with(50), None);
        assert_eq!(tally.mean(), Some(200 * MS));
        let tally = Tally {
            calls: 50,
            nanos: 50 * 3 * MS + 49,
        };
        assert_eq!(tally.mean_with(50), Some(3 * MS), "rounded down");
        assert_eq!(Tally::default().mean_with(0), None, "no calls, no mean");
    }

    #[test]
    fn the_tally_sums_and_starts_again() {
        let tally = LatencyTally::default();
        tally.add(3);
        tally.add(5);
        assert_eq!(tally.take(), Tally { calls: 2, nanos: 8 });
        assert_eq!(tally.take(), Tally::default());
        // A sum past `u64::MAX` nanoseconds stays there rather than wrap to a small mean.
        tally.add(u64::MAX - 1);
        tally.add(5);
        assert_eq!(
            tally.take(),
            Tally {
                calls: 2,
                nanos: u64::MAX
            }
        );
        // A huge factor or median saturates rather than overflowing.
        let huge = SlowEndpoint::new().factor(f64::MAX);
        let reference = huge.reference(&mut [u64::MAX, 1, u64::MAX]).unwrap();
        assert_eq!(reference.threshold, u64::MAX);
        assert!(!reference.is_slow(u64::MAX));
        let excess = SlowEndpoint::new().minimum_excess(Duration::MAX);
        assert_eq!(
            excess.reference(&mut [1, 1, 1]).unwrap().threshold,
            u64::MAX
        );
    }
}
