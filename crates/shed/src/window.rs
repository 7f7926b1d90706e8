//! [`Window`]: finished calls summed without a lock, handed to the algorithm a window at a
//! time.
//!
//! Teaching the algorithm every call would take its lock on every completion, and every
//! core would queue on it. Instead each completion adds its latency, its calls in flight
//! and whether it dropped to a few atomics; the completion that finds the window due takes
//! the algorithm's lock if it is free (never waiting for it) and hands the window over as
//! one [`Sample`]: the mean latency, the most calls in flight, whether any call dropped
//! (Netflix's `WindowedLimit` semantics). A completion that finds the lock taken leaves its
//! call in the next window, so no call goes unseen.

use std::time::Duration;

use tower_bulwark_core::config::non_zero;
use tower_bulwark_core::ConfigError;

use crate::Sample;
use tower_bulwark_core::stripes::PerCore;
use tower_bulwark_core::sync::{AtomicU64, AtomicUsize, Ordering::*};

/// Bits of a tally that count calls; the rest sum their latency in microseconds.
const COUNT_BITS: u32 = 20;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// A window closes when a core's tally holds this many calls, whatever its length, so the
/// count never spills into the latency sum.
const MAX_CALLS: u64 = 1 << (COUNT_BITS - 1);
/// The longest latency one call adds to the sum (about 17 s), so `MAX_CALLS` of them fit.
const MAX_RTT_MICROS: u64 = (1 << (64 - COUNT_BITS - 1)) / MAX_CALLS;

/// How many finished calls the algorithm learns from at a time.
///
/// A window closes once it has at least `min_calls` calls and has lasted at least
/// `min_time` and twice the previous window's mean latency (a window not much longer than
/// a round trip would judge calls admitted under an older limit, and the limit would
/// swing). The
/// default, 10 calls and 50 ms, updates the limit up to 20 times a second with a mean over
/// enough calls to mean something. `WindowSize::per_call()` hands every
/// call over on its own (Netflix's algorithms without `WindowedLimit`), which takes the
/// algorithm's lock on every completion that finds it free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    min_calls: usize,
    min_time: Duration,
}

impl Default for WindowSize {
    fn default() -> Self {
        WindowSize {
            min_calls: 10,
            min_time: Duration::from_millis(50),
        }
    }
}

impl WindowSize {
    /// A window of at least `min_calls` calls (at least 1) and `min_time` (at most a
    /// minute: a longer window would leave the limit unlearned for that long).
    pub fn new(min_calls: usize, min_time: Duration) -> Result<Self, ConfigError> {
        if min_time > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "window.min_time",
                format!("must be at most 60 s, got {min_time:?}"),
            ));
        }
        Ok(WindowSize {
            min_calls: non_zero("window.min_calls", min_calls)?,
            min_time,
        })
    }

    /// Every call on its own.
    pub fn per_call() -> Self {
        WindowSize {
            min_calls: 1,
            min_time: Duration::ZERO,
        }
    }

    /// The least number of calls in a window.
    pub fn min_calls(&self) -> usize {
        self.min_calls
    }

    /// The shortest window.
    pub fn min_time(&self) -> Duration {
        self.min_time
    }
}

/// The calls finished since the window opened.
#[derive(Debug)]
pub(crate) struct Window {
    /// Per core: calls in the low `COUNT_BITS`, their latency in microseconds above. One
    /// atomic add counts a call and its latency together, so a closing window never splits
    /// them; each core adds to its own, so completions on different cores write different
    /// lines.
    tally: PerCore<AtomicU64>,
    /// The fastest call's latency in microseconds (`u64::MAX` while empty). This and the
    /// most calls in flight are written only when a call beats them.
    fastest: AtomicU64,
    max_in_flight: AtomicUsize,
    drops: AtomicU64,
    /// When the window opened, in microseconds since the limiter started.
    opened: AtomicU64,
    /// Twice the last window's mean latency in microseconds: a window lasts at least that
    /// long, so most calls it judges were admitted under the limit it judges.
    round_trip: AtomicU64,
    min_calls: u64,
    min_time: u64,
}

impl Window {
    pub(crate) fn new(size: WindowSize) -> Self {
        Window {
            tally: PerCore::new(|| AtomicU64::new(0)),
            fastest: AtomicU64::new(u64::MAX),
            max_in_flight: AtomicUsize::new(0),
            drops: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            round_trip: AtomicU64::new(0),
            min_calls: (size.min_calls as u64).min(MAX_CALLS),
            min_time: micros(size.min_time),
        }
    }

    /// Adds a finished call; returns whether the window is due to close at `now`
    /// (microseconds since the limiter started).
    #[inline]
    pub(crate) fn add(&self, rtt: Duration, in_flight: usize, dropped: bool, now: u64) -> bool {
        let rtt = micros(rtt).min(MAX_RTT_MICROS);
        let added = (rtt << COUNT_BITS) + 1;
        let tally = self
            .tally
            .local()
            .fetch_add(added, AcqRel)
            .wrapping_add(added);
        // A call cut short (or failing fast) says nothing of how fast the service is.
        if !dropped && rtt < self.fastest.load(Acquire) {
            self.fastest.fetch_min(rtt, AcqRel);
        }
        if in_flight > self.max_in_flight.load(Acquire) {
            self.max_in_flight.fetch_max(in_flight, AcqRel);
        }
        if dropped {
            self.drops.fetch_add(1, AcqRel);
        }
        tally & COUNT_MASK >= MAX_CALLS || self.is_due(now)
    }

    /// The calls in the window: every core's count.
    fn calls(&self) -> u64 {
        self.tally
            .iter()
            .map(|tally| tally.load(Acquire) & COUNT_MASK)
            .sum()
    }

    /// Whether the window is due to close at `now`: it has lasted long enough (read first:
    /// the cores' counts are read only then) and holds enough calls.
    fn is_due(&self, now: u64) -> bool {
        now.saturating_sub(self.opened.load(Acquire))
            >= self.min_time.max(self.round_trip.load(Relaxed))
            && self.calls() >= self.min_calls
    }

    /// Empties the window into one sample (`None` if it is not due: another closer just
    /// emptied it) and opens the next at `now`. Called by one closer at a time (under the algorithm's lock).
    pub(crate) fn close(&self, now: u64) -> Option<Sample> {
        // A closer that found the window due may get the lock after another closed it:
        // the new window is not due yet, and a window of a call or two teaches nothing.
        let full = self
            .tally
            .iter()
            .any(|tally| tally.load(Acquire) & COUNT_MASK >= MAX_CALLS);
        if !full && !self.is_due(now) {
            return None;
        }
        // Each core's tally as one word: a call is in this window or the next, whole.
        let (calls, sum) = self.tally.iter().fold((0u64, 0u64), |(calls, sum), tally| {
            let tally = tally.swap(0, AcqRel);
            (calls + (tally & COUNT_MASK), sum + (tally >> COUNT_BITS))
        });
        let fastest = self.fastest.swap(u64::MAX, AcqRel);
        let in_flight = self.max_in_flight.swap(0, AcqRel);
        let drops = self.drops.swap(0, AcqRel);
        self.opened.store(now, Release);
        if calls == 0 {
            return None;
        }
        let mean = sum / calls;
        if self.min_time > 0 {
            self.round_trip.store(mean.saturating_mul(2), Relaxed);
        }
        Some(Sample {
            rtt: Duration::from_micros(mean),
            // No fastest: every call dropped, or the only one raced the close and put its
            // count here and its fastest in the next window (one call at the boundary, its
            // latency real and recent either way).
            fastest: Duration::from_micros(if fastest == u64::MAX { mean } else { fastest }),
            in_flight,
            dropped: drops > 0,
        })
    }
}

/// `duration` in whole microseconds, saturating.
pub(crate) fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_window_is_the_mean_latency_the_most_in_flight_and_any_drop() {
        let window = Window::new(WindowSize::new(3, ms(10)).unwrap());
        assert!(!window.add(ms(10), 4, false, 20_000));
        assert!(!window.add(ms(20), 9, false, 20_000), "two calls: not due");
        assert!(
            window.add(ms(30), 2, true, 20_000),
            "three calls after 10 ms"
        );
        assert_eq!(
            window.close(20_000),
            Some(Sample {
                rtt: ms(20),
                fastest: ms(10),
                in_flight: 9,
                dropped: true,
            })
        );
        assert_eq!(window.close(20_000), None, "already emptied");
        window.add(ms(1), 1, false, 20_000);
        assert_eq!(window.close(20_000), None, "one call: not due");
    }

    #[test]
    fn a_window_lasts_its_minimum_time() {
        let window = Window::new(WindowSize::new(1, ms(50)).unwrap());
        assert!(!window.add(ms(1), 1, false, 49_999));
        assert!(window.add(ms(1), 1, false, 50_000));
        window.close(50_000);
        assert!(
            !window.add(ms(1), 1, false, 99_999),
            "the next opened at close"
        );
        assert!(window.add(ms(1), 1, false, 100_000));
    }

    #[test]
    fn a_window_lasts_at_least_twice_the_last_ones_mean_latency() {
        let window = Window::new(WindowSize::new(1, ms(50)).unwrap());
        assert!(window.add(ms(200), 1, false, 50_000));
        window.close(50_000);
        assert!(!window.add(ms(200), 1, false, 449_999), "400 ms, not 50");
        assert!(window.add(ms(200), 1, false, 450_000));
    }

    #[test]
    fn huge_latencies_and_counts_do_not_spill() {
        let window = Window::new(WindowSize::new(usize::MAX, Duration::from_secs(60)).unwrap());
        for _ in 0..MAX_CALLS - 1 {
            assert!(!window.add(Duration::MAX, usize::MAX, false, u64::MAX));
        }
        assert!(
            window.add(Duration::MAX, 1, false, 0),
            "closes at MAX_CALLS"
        );
        let sample = window.close(0).unwrap();
        assert_eq!(sample.rtt, Duration::from_micros(MAX_RTT_MICROS));
        assert_eq!(sample.in_flight, usize::MAX);
    }

    #[test]
    fn a_window_size_reads_back_its_settings() {
        let size = WindowSize::new(3, ms(10)).unwrap();
        assert_eq!((size.min_calls(), size.min_time()), (3, ms(10)));
        let default = WindowSize::default();
        assert_eq!((default.min_calls(), default.min_time()), (10, ms(50)));
        let per_call = WindowSize::per_call();
        assert_eq!(
            (per_call.min_calls(), per_call.min_time()),
            (1, Duration::ZERO)
        );
    }

    #[test]
    fn bad_sizes_are_config_errors() {
        assert_eq!(
            WindowSize::new(0, ms(1)).unwrap_err().field(),
            "window.min_calls"
        );
        assert_eq!(
            WindowSize::new(1, Duration::MAX).unwrap_err().field(),
            "window.min_time"
        );
    }

    #[test]
    fn a_dropped_call_is_not_the_fastest() {
        let window = Window::new(WindowSize::per_call());
        window.add(ms(1), 1, true, 0);
        window.add(ms(30), 1, false, 0);
        let sample = window.close(0).unwrap();
        assert_eq!((sample.fastest, sample.dropped), (ms(30), true));
    }
}
