//! [`LatencyRecord`]: recent latencies of a dependency, and one percentile of them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

/// How many slices the window is kept in.
const SLICES: usize = 6;
/// The estimate is recomputed after this many samples (and whenever a slice expires).
const REFRESH_EVERY: u32 = 32;
/// Latencies are kept in microseconds, from 1 µs to 1 hour (longer ones count as 1 hour),
/// to two significant digits.
const MAX_MICROS: u64 = 3_600_000_000;

/// Recent latencies, kept in a ring of histograms over a sliding window, and the chosen
/// percentile of them, read without a lock.
///
/// Recording is O(1): one lock (shared by every clone of the layer, held for a histogram
/// increment) and, every 32 samples or when a slice expires, a percentile scan of the
/// histogram's few thousand buckets. Reading the percentile is two atomic loads. Memory is
/// fixed (about 90 KB) whatever the traffic.
pub(crate) struct LatencyRecord {
    quantile: f64,
    min_samples: u64,
    window: Duration,
    started: Instant,
    ring: Mutex<Ring>,
    /// The percentile in nanoseconds; 0 while there are too few samples.
    estimate: AtomicU64,
    /// When the estimate was computed, in nanoseconds since `started`.
    refreshed: AtomicU64,
}

struct Ring {
    slices: Vec<Histogram<u32>>,
    /// The sum of the live slices.
    total: Histogram<u32>,
    slice: Duration,
    /// When slice 0 of epoch 0 began.
    started: Instant,
    /// The newest slice's number since `started`.
    epoch: u64,
    since_refresh: u32,
}

impl LatencyRecord {
    /// Keeps the latencies of the last `window`, and tracks their `quantile` (0 to 1) once
    /// there are at least `min_samples` of them.
    pub(crate) fn new(window: Duration, quantile: f64, min_samples: u64) -> Self {
        let histogram = || {
            Histogram::<u32>::new_with_bounds(1, MAX_MICROS, 2).expect("constant bounds are valid")
        };
        let started = Instant::now();
        LatencyRecord {
            quantile,
            min_samples: min_samples.max(1),
            window,
            started,
            refreshed: AtomicU64::new(0),
            ring: Mutex::new(Ring {
                slices: (0..SLICES).map(|_| histogram()).collect(),
                total: histogram(),
                slice: (window / SLICES as u32).max(Duration::from_millis(1)),
                started,
                epoch: 0,
                since_refresh: 0,
            }),
            estimate: AtomicU64::new(0),
        }
    }

    /// Records one latency.
    pub(crate) fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let expired = ring.advance();
        let slot = (ring.epoch % SLICES as u64) as usize;
        ring.slices[slot].saturating_record(micros);
        ring.total.saturating_record(micros);
        ring.since_refresh += 1;
        if expired || ring.since_refresh >= REFRESH_EVERY || ring.total.len() == self.min_samples {
            ring.since_refresh = 0;
            let estimate = if ring.total.len() >= self.min_samples {
                ring.total
                    .value_at_quantile(self.quantile)
                    .saturating_mul(1_000)
                    .max(1)
            } else {
                0
            };
            self.estimate.store(estimate, Relaxed);
            self.refreshed.store(nanos_since(self.started), Relaxed);
        }
    }

    /// The tracked percentile of recent latencies at `now`; `None` until there are enough
    /// samples, and again once no sample has come for a whole window.
    pub(crate) fn estimate(&self, now: Instant) -> Option<Duration> {
        let nanos = self.estimate.load(Relaxed);
        let age = now
            .saturating_duration_since(self.started)
            .saturating_sub(Duration::from_nanos(self.refreshed.load(Relaxed)));
        (nanos != 0 && age <= self.window).then(|| Duration::from_nanos(nanos))
    }
}

fn nanos_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl Ring {
    /// Moves to the slice that holds now, emptying the slices that left the window.
    /// Returns whether any did.
    fn advance(&mut self) -> bool {
        let elapsed = self.started.elapsed().as_nanos();
        let now = u64::try_from(elapsed / self.slice.as_nanos().max(1)).unwrap_or(u64::MAX);
        if now <= self.epoch {
            return false;
        }
        let steps = (now - self.epoch).min(SLICES as u64);
        for step in 1..=steps {
            let slot = ((self.epoch + step) % SLICES as u64) as usize;
            let _ = self.total.subtract(&self.slices[slot]);
            self.slices[slot].reset();
        }
        self.epoch = now;
        true
    }
}

impl fmt::Debug for LatencyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyRecord")
            .field("quantile", &self.quantile)
            .field("estimate", &self.estimate.load(Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    #[tokio::test(start_paused = true)]
    async fn no_estimate_until_enough_samples() {
        let record = LatencyRecord::new(Duration::from_secs(60), 0.5, 10);
        for _ in 0..9 {
            record.record(Duration::from_millis(20));
        }
        assert_eq!(record.estimate(Instant::now()), None);
        record.record(Duration::from_millis(20));
        let estimate = record.estimate(Instant::now()).unwrap();
        assert!(estimate.abs_diff(Duration::from_millis(20)) < Duration::from_micros(200));
    }

    #[tokio::test(start_paused = true)]
    async fn percentiles_of_a_known_spread() {
        let record = LatencyRecord::new(Duration::from_secs(60), 0.99, 1);
        for ms in 1..=100 {
            record.record(Duration::from_millis(ms));
        }
        // Recomputed every 32 samples: the 97th sample was the last refresh.
        let p99 = record.estimate(Instant::now()).unwrap();
        assert!(
            (Duration::from_millis(94)..=Duration::from_millis(98)).contains(&p99),
            "{p99:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn old_latencies_leave_the_window() {
        let record = LatencyRecord::new(Duration::from_secs(60), 0.5, 1);
        for _ in 0..100 {
            record.record(Duration::from_millis(500));
        }
        advance(Duration::from_secs(61)).await;
        record.record(Duration::from_millis(10));
        let median = record.estimate(Instant::now()).unwrap();
        assert!(median < Duration::from_millis(11), "{median:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn huge_and_zero_latencies_are_clamped() {
        let record = LatencyRecord::new(Duration::from_secs(60), 0.5, 1);
        record.record(Duration::MAX);
        assert!(record.estimate(Instant::now()).unwrap() >= Duration::from_secs(3500));
        let record = LatencyRecord::new(Duration::from_secs(60), 0.5, 1);
        record.record(Duration::ZERO);
        assert!(record.estimate(Instant::now()).unwrap() > Duration::ZERO);
    }
}
