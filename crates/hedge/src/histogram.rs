//! The learned hedge delay: a lock-free latency histogram and the percentile read from it.
//!
//! Latencies are counted in log-spaced buckets of atomics: 8 buckets per power of two of
//! microseconds (each at most 12.5% wide), exact below 8 µs, up to 2^32 µs (71 minutes;
//! longer latencies land in the last bucket). A percentile is the upper bound of the
//! bucket holding it, so it is never below the true value and at most 1/8 above it.
//!
//! Time is cut into windows; the histogram keeps a ring of three, indexed by the window's
//! number: the current one (written), the previous one (read with it) and a spare, cleared
//! while it is neither, so a rotation never clears a window anyone writes to. A recording
//! is one `fetch_add`; a rotation is claimed by one caller (a flag), which clears the
//! window leaving, then publishes the new number. What a percentile reads is the current
//! and the previous window: the calls of the last one to two windows.

use std::time::Duration;

use tokio::time::Instant;
use tower_bulwark_core::sync::{AtomicBool, AtomicU64, Ordering::*};

/// Buckets per power of two.
const SUB: u64 = 8;
const SUB_BITS: u32 = 3;
/// The largest latency told apart, in microseconds.
const MAX_MICROS: u64 = (1 << 32) - 1;
/// Buckets of a full histogram: 8 exact ones, then 8 per power of two from 2^3 to 2^31.
pub(crate) const BUCKETS: usize = (SUB + 29 * SUB) as usize;
/// Windows in the ring.
const RING: u64 = 3;

/// The bucket of a latency of `micros`.
pub(crate) fn bucket_of(micros: u64) -> usize {
    let value = micros.min(MAX_MICROS);
    if value < SUB {
        return value as usize;
    }
    let exponent = u64::from(63 - value.leading_zeros());
    let mantissa = (value >> (exponent - u64::from(SUB_BITS))) & (SUB - 1);
    (SUB + (exponent - u64::from(SUB_BITS)) * SUB + mantissa) as usize
}

/// The largest latency (µs) that falls in `bucket`.
pub(crate) fn upper_bound(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < SUB {
        return bucket;
    }
    let offset = bucket - SUB;
    let shift = offset / SUB;
    let mantissa = offset % SUB;
    ((SUB + mantissa + 1) << shift) - 1
}

/// One window's counts.
struct Window {
    buckets: Box<[AtomicU64]>,
}

impl Window {
    fn new(len: usize) -> Self {
        Window {
            buckets: (0..len).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn clear(&self) {
        for bucket in self.buckets.iter() {
            bucket.store(0, Relaxed);
        }
    }
}

/// Latencies of the last one to two windows, in a ring of three windows of atomics.
pub(crate) struct Histogram {
    windows: [Window; RING as usize],
    /// The number of the current window.
    epoch: AtomicU64,
    /// Set while one caller rotates.
    rotating: AtomicBool,
}

impl Histogram {
    /// A histogram of [`BUCKETS`] buckets.
    pub(crate) fn new() -> Self {
        Histogram::with_buckets(BUCKETS)
    }

    /// A histogram of `len` buckets (`1..=BUCKETS`; latencies past the last land in it):
    /// the loom models use a few.
    pub(crate) fn with_buckets(len: usize) -> Self {
        let len = len.clamp(1, BUCKETS);
        Histogram {
            windows: [Window::new(len), Window::new(len), Window::new(len)],
            epoch: AtomicU64::new(0),
            rotating: AtomicBool::new(false),
        }
    }

    fn window(&self, epoch: u64) -> &Window {
        &self.windows[(epoch % RING) as usize]
    }

    /// Counts a latency of `micros` in window `epoch` (the window the clock is in): the
    /// window is rotated in first if it is new.
    pub(crate) fn record(&self, epoch: u64, micros: u64) {
        let mut current = self.epoch.load(Acquire);
        if epoch > current {
            self.rotate(epoch);
            current = self.epoch.load(Acquire);
        }
        let window = self.window(current);
        let bucket = bucket_of(micros).min(window.buckets.len() - 1);
        window.buckets[bucket].fetch_add(1, Relaxed);
    }

    /// Makes `to` the current window, if it is later than the current one and no other
    /// caller is rotating (that caller then does it). The window leaving is cleared before
    /// the new number is published; after a gap of more than one window, every window is.
    pub(crate) fn rotate(&self, to: u64) {
        if self
            .rotating
            .compare_exchange(false, true, Acquire, Relaxed)
            .is_err()
        {
            return;
        }
        let from = self.epoch.load(Acquire);
        if to > from {
            if to == from + 1 {
                // The spare becomes current (cleared when it left); the window before
                // `from` leaves and becomes the spare.
                self.window(to + 1).clear();
            } else {
                // Nothing recorded in the window before `to`: every window is stale.
                for window in &self.windows {
                    window.clear();
                }
            }
            self.epoch.store(to, Release);
        }
        self.rotating.store(false, Release);
    }

    /// The `percentile` (within `0..=1`) of the current and previous windows' latencies,
    /// in microseconds (the upper bound of its bucket), and how many latencies it was read
    /// from; `None` with fewer than `min_samples`.
    pub(crate) fn percentile(&self, percentile: f64, min_samples: u64) -> Option<(u64, u64)> {
        let epoch = self.epoch.load(Acquire);
        let current = self.window(epoch);
        let previous = self.window(epoch + RING - 1);
        let mut counts = [0u64; BUCKETS];
        let mut total = 0u64;
        for (i, count) in counts.iter_mut().enumerate().take(current.buckets.len()) {
            *count = current.buckets[i]
                .load(Relaxed)
                .saturating_add(previous.buckets[i].load(Relaxed));
            total = total.saturating_add(*count);
        }
        if total == 0 || total < min_samples {
            return None;
        }
        let rank = rank(percentile, total);
        let mut seen = 0u64;
        for (i, count) in counts.iter().enumerate() {
            seen = seen.saturating_add(*count);
            if seen >= rank {
                return Some((upper_bound(i), total));
            }
        }
        // Unreachable: the counts add up to `total`, and `rank <= total`.
        Some((upper_bound(current.buckets.len() - 1), total))
    }

    /// The current window's number.
    #[cfg(any(test, bulwark_loom))]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Acquire)
    }

    /// The counts of window `epoch` (tests and models).
    #[cfg(any(test, bulwark_loom))]
    pub(crate) fn counts(&self, epoch: u64) -> Vec<u64> {
        self.window(epoch)
            .buckets
            .iter()
            .map(|bucket| bucket.load(Acquire))
            .collect()
    }
}

/// The 1-based rank of the `percentile` among `total` sorted values: the smallest value
/// with at least `ceil(percentile * total)` values at or below it (at least the first).
pub(crate) fn rank(percentile: f64, total: u64) -> u64 {
    ((percentile * total as f64).ceil() as u64).clamp(1, total)
}

/// How often the learned delay is recomputed, at most.
pub(crate) const REFRESH: Duration = Duration::from_millis(100);

/// The learned hedge delay: the latencies of first attempts, their percentile cached in an
/// atomic and recomputed at most every [`REFRESH`], by whichever call records first after
/// it (one caller, chosen by a compare-and-swap).
pub(crate) struct Learned {
    histogram: Histogram,
    percentile: f64,
    min_samples: u64,
    floor: Duration,
    ceiling: Duration,
    warm_up: Duration,
    window_nanos: u64,
    start: Instant,
    /// When (nanoseconds after `start`) the delay is next recomputed.
    refresh_at: std::sync::atomic::AtomicU64,
    /// The delay in force, in nanoseconds.
    delay: std::sync::atomic::AtomicU64,
    /// Whether it is learned (enough samples) rather than the warm-up delay.
    trusted: std::sync::atomic::AtomicBool,
}

/// The settings of a [`Learned`] delay.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LearnedSettings {
    pub(crate) percentile: f64,
    pub(crate) min_samples: u64,
    pub(crate) floor: Duration,
    pub(crate) ceiling: Duration,
    pub(crate) warm_up: Duration,
    pub(crate) window: Duration,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Learned {
    pub(crate) fn new(settings: LearnedSettings) -> Self {
        Learned {
            histogram: Histogram::new(),
            percentile: settings.percentile,
            min_samples: settings.min_samples,
            floor: settings.floor,
            ceiling: settings.ceiling,
            warm_up: settings.warm_up,
            window_nanos: nanos(settings.window).max(1),
            start: Instant::now(),
            refresh_at: std::sync::atomic::AtomicU64::new(nanos(REFRESH)),
            delay: std::sync::atomic::AtomicU64::new(nanos(settings.warm_up)),
            trusted: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The delay in force.
    #[inline]
    pub(crate) fn delay(&self) -> Duration {
        Duration::from_nanos(self.delay.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether the delay in force was learned (enough samples), not the warm-up delay.
    pub(crate) fn trusted(&self) -> bool {
        self.trusted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records one first attempt's latency, finished (or cut off) at `now`.
    #[inline]
    pub(crate) fn record(&self, now: Instant, latency: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let elapsed = nanos(now.saturating_duration_since(self.start));
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.record(elapsed / self.window_nanos, micros);
        let due = self.refresh_at.load(Relaxed);
        if elapsed >= due
            && self
                .refresh_at
                .compare_exchange(
                    due,
                    elapsed.saturating_add(nanos(REFRESH)),
                    Relaxed,
                    Relaxed,
                )
                .is_ok()
        {
            self.refresh(elapsed);
        }
    }

    /// Recomputes the delay (the chosen caller only).
    #[cold]
    fn refresh(&self, elapsed: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        // Windows the clock left without a recording rotate here.
        self.histogram.rotate(elapsed / self.window_nanos);
        let (delay, trusted) = match self.histogram.percentile(self.percentile, self.min_samples) {
            Some((micros, _)) => (
                Duration::from_micros(micros).clamp(self.floor, self.ceiling),
                true,
            ),
            None => (self.warm_up, false),
        };
        self.delay.store(nanos(delay), Relaxed);
        self.trusted.store(trusted, Relaxed);
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_are_contiguous_and_at_most_an_eighth_wide() {
        let mut expected = 0;
        let mut value = 0u64;
        while value <= MAX_MICROS {
            let bucket = bucket_of(value);
            assert!(bucket == expected || bucket == expected + 1, "{value}");
            expected = bucket;
            let upper = upper_bound(bucket);
            assert!(
                upper >= value && upper - value <= value / 8,
                "{value} -> {upper}"
            );
            assert_eq!(bucket_of(upper), bucket);
            if bucket + 1 == BUCKETS {
                break;
            }
            assert_eq!(bucket_of(upper + 1), bucket + 1, "{value}");
            // Jump to the next bucket's start.
            value = upper + 1;
        }
        assert_eq!(expected, BUCKETS - 1);
        assert_eq!(upper_bound(BUCKETS - 1), MAX_MICROS);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn ranks() {
        assert_eq!(rank(0.95, 100), 95);
        assert_eq!(rank(0.95, 101), 96);
        assert_eq!(rank(0.0, 10), 1);
        assert_eq!(rank(1.0, 10), 10);
        assert_eq!(rank(0.5, 1), 1);
    }

    #[test]
    fn windows_rotate_and_leave() {
        let histogram = Histogram::new();
        histogram.record(0, 10);
        histogram.record(1, 20);
        assert_eq!(histogram.epoch(), 1);
        // Windows 0 and 1 are read.
        assert_eq!(
            histogram.percentile(1.0, 2),
            Some((upper_bound(bucket_of(20)), 2))
        );
        assert_eq!(histogram.percentile(0.5, 2), Some((10, 2)));
        histogram.record(2, 30);
        // Window 0 left.
        assert_eq!(
            histogram.percentile(0.0, 1),
            Some((upper_bound(bucket_of(20)), 2))
        );
        assert_eq!(
            histogram.counts(0).iter().sum::<u64>(),
            0,
            "the spare is clear"
        );
        // A gap of two windows: everything is stale.
        histogram.record(5, 40);
        assert_eq!(
            histogram.percentile(0.0, 1),
            Some((upper_bound(bucket_of(40)), 1))
        );
        assert_eq!(histogram.percentile(0.0, 2), None, "too few samples");
        // A late recording for an old window goes to the current one.
        histogram.record(3, 50);
        assert_eq!(histogram.epoch(), 5);
        assert_eq!(histogram.percentile(0.0, 2).map(|(_, n)| n), Some(2));
    }

    proptest! {
        /// The estimate is the reference percentile of the sorted values, rounded up to its
        /// bucket's bound: never below it, at most an eighth above.
        #[test]
        fn percentile_matches_a_sorted_vector(
            values in proptest::collection::vec(
                prop_oneof![0u64..64, 0u64..100_000, 0u64..u64::MAX],
                1..400,
            ),
            split in 0usize..400,
            percentile in 0.0f64..=1.0,
        ) {
            let histogram = Histogram::new();
            let split = split.min(values.len());
            for value in &values[..split] {
                histogram.record(7, *value);
            }
            for value in &values[split..] {
                histogram.record(8, *value);
            }
            let mut sorted: Vec<u64> = values.iter().map(|v| (*v).min(MAX_MICROS)).collect();
            sorted.sort_unstable();
            let total = sorted.len() as u64;
            let reference = sorted[(rank(percentile, total) - 1) as usize];
            let (estimate, seen) = histogram.percentile(percentile, 1).unwrap();
            prop_assert_eq!(seen, total);
            prop_assert!(estimate >= reference, "{} < {}", estimate, reference);
            prop_assert!(estimate - reference <= reference / 8, "{} vs {}", estimate, reference);
            prop_assert_eq!(bucket_of(estimate), bucket_of(reference));
            prop_assert_eq!(histogram.percentile(percentile, total + 1), None);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_learned_delay_waits_for_enough_samples_and_is_clamped() {
        let learned = Learned::new(LearnedSettings {
            percentile: 0.9,
            min_samples: 10,
            floor: Duration::from_millis(2),
            ceiling: Duration::from_millis(500),
            warm_up: Duration::from_millis(50),
            window: Duration::from_secs(10),
        });
        assert_eq!(learned.delay(), Duration::from_millis(50));
        for ms in 1..=9u64 {
            learned.record(Instant::now(), Duration::from_millis(ms * 10));
        }
        tokio::time::advance(REFRESH).await;
        learned.record(Instant::now(), Duration::from_millis(100));
        // 10 samples 10..=100 ms: the 90th percentile is 90 ms, rounded up to its bucket.
        let expected = Duration::from_micros(upper_bound(bucket_of(90_000)));
        assert_eq!(learned.delay(), expected);
        assert!(learned.trusted());
        // Not recomputed before REFRESH has passed.
        for _ in 0..100 {
            learned.record(Instant::now(), Duration::from_secs(10));
        }
        assert_eq!(learned.delay(), expected);
        tokio::time::advance(REFRESH).await;
        learned.record(Instant::now(), Duration::from_secs(10));
        assert_eq!(learned.delay(), Duration::from_millis(500), "the ceiling");
        // Both windows leave: back to the warm-up delay.
        tokio::time::advance(Duration::from_secs(30)).await;
        learned.record(Instant::now(), Duration::from_micros(1));
        assert_eq!(learned.delay(), Duration::from_millis(50));
        assert!(!learned.trusted());
    }
}

#[cfg(all(test, bulwark_loom))]
mod loom_model {
    use super::*;
    use loom::sync::Arc;

    /// A recording racing the rotation to the next window is never lost: it lands in the
    /// window it read (the old current one, still read as the previous window) or in the
    /// new one, and the window that left is clear.
    #[test]
    fn a_recording_racing_a_rotation_is_kept() {
        loom::model(|| {
            let histogram = Arc::new(Histogram::with_buckets(2));
            histogram.record(1, 0);
            let recorder = {
                let histogram = histogram.clone();
                loom::thread::spawn(move || histogram.record(1, 1))
            };
            histogram.rotate(2);
            recorder.join().unwrap();
            assert_eq!(histogram.epoch(), 2);
            let live: u64 =
                histogram.counts(1).iter().sum::<u64>() + histogram.counts(2).iter().sum::<u64>();
            assert_eq!(live, 2, "both recordings are read");
            assert_eq!(histogram.counts(0).iter().sum::<u64>(), 0);
            assert_eq!(histogram.percentile(1.0, 2), Some((1, 2)));
        });
    }

    /// Two callers rotating at once: one rotates, the window is cleared once, and the
    /// recordings of both survive.
    #[test]
    fn racing_rotations_rotate_once() {
        loom::model(|| {
            let histogram = Arc::new(Histogram::with_buckets(2));
            histogram.record(0, 1);
            let other = {
                let histogram = histogram.clone();
                loom::thread::spawn(move || histogram.record(1, 0))
            };
            histogram.record(1, 1);
            other.join().unwrap();
            // Either rotated to 1 (both recordings there or one in 0), or the loser recorded
            // into window 0 while the winner rotated: every recording is live.
            assert_eq!(histogram.epoch(), 1);
            let live: u64 =
                histogram.counts(0).iter().sum::<u64>() + histogram.counts(1).iter().sum::<u64>();
            assert_eq!(live, 3);
            assert_eq!(histogram.counts(2).iter().sum::<u64>(), 0);
        });
    }
}
