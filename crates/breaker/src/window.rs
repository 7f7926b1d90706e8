//! Sliding windows of recent outcomes: O(1) to record, memory fixed by configuration.
//!
//! Both windows are lock-free. Counts are eventually consistent: a reader racing a writer
//! may see one record half applied, never lose one. Resets race records safely: the count
//! window's totals always come back to what its slots hold. The time window is core's
//! `SlidingCounts` (its own tests and loom models are in core).

use std::time::Duration;

use tower_bulwark_core::sync::{
    AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed, Ordering::SeqCst,
};
use tower_bulwark_core::window::SlidingCounts;

/// One recorded call: a failure or not, slow or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) failure: bool,
    pub(crate) slow: bool,
}

/// Calls, failures and slow calls currently in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

/// The window the rate conditions read.
#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    /// Records a call. Returns whether it may have raised a rate, so that the thresholds
    /// must be checked: a failure or a slow call; in a time window also the first call of
    /// a new bucket, since the buckets that expired then may have held successes. A
    /// success otherwise only lowers the rates: in a full count window it pushes out a
    /// call no better than itself.
    ///
    /// Also returns the call's bucket (0 in a count window), to compare with
    /// [`latest_bucket`](Self::latest_bucket).
    pub(crate) fn record(&self, now_nanos: u64, sample: Sample) -> (bool, u64) {
        let (new_bucket, bucket) = match self {
            Window::Count(w) => {
                w.record(sample);
                (false, 0)
            }
            Window::Time(w) => w.record(now_nanos, sample),
        };
        (new_bucket || sample.failure || sample.slow, bucket)
    }

    /// The bucket of the latest call of a time window (0 for a count window): it moves
    /// when buckets expire.
    pub(crate) fn latest_bucket(&self) -> u64 {
        match self {
            Window::Count(_) => 0,
            Window::Time(w) => w.1.load(SeqCst),
        }
    }

    pub(crate) fn counts(&self, now_nanos: u64) -> Counts {
        match self {
            Window::Count(w) => w.counts(),
            Window::Time(w) => w.counts(now_nanos),
        }
    }

    pub(crate) fn reset(&self) {
        match self {
            Window::Count(w) => w.reset(),
            Window::Time(w) => w.reset(),
        }
    }

    pub(crate) fn needs_time(&self) -> bool {
        matches!(self, Window::Time(_))
    }
}

// === impl CountWindow ===

const PRESENT: u8 = 1;
const FAILURE: u8 = 2;
const SLOW: u8 = 4;

/// The last `size` calls: a ring of one byte per call, plus running totals that each record
/// adjusts by what it adds and what it pushes out.
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    cursor: AtomicU64,
    calls: AtomicU32,
    failures: AtomicU32,
    slow: AtomicU32,
}

impl CountWindow {
    pub(crate) fn new(size: u32) -> Self {
        CountWindow {
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            cursor: AtomicU64::new(0),
            calls: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            slow: AtomicU32::new(0),
        }
    }

    fn record(&self, sample: Sample) {
        let bits =
            PRESENT | if sample.failure { FAILURE } else { 0 } | if sample.slow { SLOW } else { 0 };
        let index = self.cursor.fetch_add(1, Relaxed) % self.slots.len() as u64;
        let old = self.slots[index as usize].swap(bits, Relaxed);
        self.adjust(bits, old);
    }

    /// Moves the totals by a slot going from `old` to `new`. Whoever swaps a slot adjusts
    /// for exactly what it swapped, so the totals always come back to what the slots hold.
    fn adjust(&self, new: u8, old: u8) {
        for (flag, total) in [
            (PRESENT, &self.calls),
            (FAILURE, &self.failures),
            (SLOW, &self.slow),
        ] {
            match (new & flag != 0, old & flag != 0) {
                (true, false) => {
                    total.fetch_add(1, Relaxed);
                }
                (false, true) => {
                    total.fetch_sub(1, Relaxed);
                }
                _ => {}
            }
        }
    }

    fn counts(&self) -> Counts {
        // A reader can catch a total mid-update (a concurrent writer that has subtracted
        // what it pushed out before another added it), so the totals are read as signed
        // and clamped: a passing -1 reads as 0, never as 4 billion.
        let read = |total: &AtomicU32| u64::try_from(total.load(Relaxed) as i32).unwrap_or(0);
        let calls = read(&self.calls);
        Counts {
            calls,
            failures: read(&self.failures).min(calls),
            slow: read(&self.slow).min(calls),
        }
    }

    /// Empties every slot the way a record pushes one out, rather than zeroing the totals:
    /// a record racing the reset then adjusts the totals for what it actually swapped.
    fn reset(&self) {
        for slot in self.slots.iter() {
            let old = slot.swap(0, Relaxed);
            self.adjust(0, old);
        }
    }
}

// === impl TimeWindow ===

/// The calls of the last `length`, in `buckets` buckets: core's [`SlidingCounts`] with three
/// counters (calls, failures, slow calls), and the bucket of the latest call.
#[derive(Debug)]
pub(crate) struct TimeWindow(SlidingCounts<3>, AtomicU64);

impl TimeWindow {
    pub(crate) fn new(length: Duration, buckets: u32) -> Self {
        TimeWindow(SlidingCounts::new(length, buckets), AtomicU64::new(0))
    }

    /// Records a call; returns whether it is the first seen in a later bucket than the
    /// latest (one of the calls racing into a new bucket).
    fn record(&self, now_nanos: u64, sample: Sample) -> (bool, u64) {
        let bucket = self.0.add(
            now_nanos,
            [1, u32::from(sample.failure), u32::from(sample.slow)],
        );
        let new = self.1.load(Relaxed) < bucket && self.1.fetch_max(bucket, SeqCst) < bucket;
        (new, bucket)
    }

    fn counts(&self, now_nanos: u64) -> Counts {
        let [calls, failures, slow] = self.0.totals(now_nanos);
        Counts {
            calls,
            failures: failures.min(calls),
            slow: slow.min(calls),
        }
    }

    fn reset(&self) {
        self.0.reset();
    }
}

/// Samples for the tests and the loom model.
#[cfg(test)]
const OK: Sample = Sample {
    failure: false,
    slow: false,
};
#[cfg(test)]
const FAIL: Sample = Sample {
    failure: true,
    slow: false,
};
#[cfg(all(test, not(bulwark_loom)))]
const SLOW_OK: Sample = Sample {
    failure: false,
    slow: true,
};

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    #[test]
    fn count_window_slides_old_outcomes_out() {
        let window = CountWindow::new(4);
        for sample in [FAIL, FAIL, OK, SLOW_OK] {
            window.record(sample);
        }
        assert_eq!(
            window.counts(),
            Counts {
                calls: 4,
                failures: 2,
                slow: 1
            }
        );
        // Two successes push the two failures out.
        window.record(OK);
        window.record(OK);
        assert_eq!(
            window.counts(),
            Counts {
                calls: 4,
                failures: 0,
                slow: 1
            }
        );
        // And four more push everything else out.
        for _ in 0..4 {
            window.record(FAIL);
        }
        assert_eq!(
            window.counts(),
            Counts {
                calls: 4,
                failures: 4,
                slow: 0
            }
        );
        window.reset();
        assert_eq!(window.counts(), Counts::default());
    }

    #[test]
    fn count_window_of_one_holds_only_the_last_call() {
        let window = CountWindow::new(1);
        window.record(FAIL);
        assert_eq!(
            window.counts(),
            Counts {
                calls: 1,
                failures: 1,
                slow: 0
            }
        );
        window.record(OK);
        assert_eq!(
            window.counts(),
            Counts {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
    }

    #[test]
    fn a_total_caught_below_zero_reads_as_zero() {
        let window = CountWindow::new(4);
        window.failures.store(u32::MAX, Relaxed);
        window.calls.store(3, Relaxed);
        assert_eq!(
            window.counts(),
            Counts {
                calls: 3,
                failures: 0,
                slow: 0
            }
        );
    }

    #[test]
    fn time_window_reset_clears_everything() {
        let window = TimeWindow::new(Duration::from_nanos(10_000), 10);
        for t in 0..100 {
            window.record(t * 10, FAIL);
        }
        assert_eq!(window.counts(1_000).calls, 100);
        window.reset();
        assert_eq!(window.counts(1_000), Counts::default());
        window.record(1_001, OK);
        assert_eq!(
            window.counts(1_001),
            Counts {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
    }

    /// A time window's record says whether it is the first call of a later bucket than
    /// any seen: those calls check the rates, since the buckets that expired may have held
    /// successes. Later calls of the same bucket, and late calls of an earlier one, do not.
    #[test]
    fn only_the_first_call_of_a_later_bucket_may_have_raised_a_rate() {
        let window = Window::Time(TimeWindow::new(Duration::from_nanos(10_000), 10));
        assert!(window.needs_time());
        assert!(!Window::Count(CountWindow::new(4)).needs_time());
        assert!(window.record(1_500, OK).0, "bucket 1 is new");
        assert!(!window.record(1_600, OK).0);
        assert!(!window.record(1_999, OK).0);
        assert!(window.record(2_000, OK).0, "bucket 2 is new");
        assert!(!window.record(1_900, OK).0, "a late call of bucket 1");
        assert!(window.record(7_000, OK).0);
        // Failures and slow calls may raise a rate whatever their bucket.
        assert!(window.record(7_001, FAIL).0);
        assert!(window.record(7_002, SLOW_OK).0);
        let count = Window::Count(CountWindow::new(4));
        assert!(!count.record(0, OK).0);
        assert!(count.record(0, FAIL).0);
        assert!(count.record(0, SLOW_OK).0);
    }

    #[test]
    fn many_threads_lose_no_record() {
        let count = std::sync::Arc::new(CountWindow::new(1_000_000));
        let time = std::sync::Arc::new(TimeWindow::new(Duration::from_secs(10), 10));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (count, time) = (count.clone(), time.clone());
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        let sample = if i % 4 == 0 { FAIL } else { OK };
                        count.record(sample);
                        time.record(5, sample);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let expected = Counts {
            calls: 40_000,
            failures: 10_000,
            slow: 0,
        };
        assert_eq!(count.counts(), expected);
        assert_eq!(time.counts(5), expected);
    }
}

#[cfg(all(test, bulwark_loom))]
mod loom_model {
    use super::*;
    use loom::sync::Arc;

    /// What the slots of a count window hold, counted one by one.
    fn in_slots(window: &CountWindow) -> Counts {
        let mut counts = Counts::default();
        for slot in window.slots.iter() {
            let bits = slot.load(Relaxed);
            counts.calls += u64::from(bits & PRESENT != 0);
            counts.failures += u64::from(bits & FAILURE != 0);
            counts.slow += u64::from(bits & SLOW != 0);
        }
        counts
    }

    /// A record racing a reset (the breaker closing) leaves totals that match the slots.
    #[test]
    fn count_window_totals_match_the_slots_after_a_racing_reset() {
        loom::model(|| {
            let window = Arc::new(CountWindow::new(2));
            window.record(FAIL);
            window.record(FAIL);
            let recorder = {
                let window = window.clone();
                loom::thread::spawn(move || window.record(OK))
            };
            window.reset();
            recorder.join().unwrap();
            assert_eq!(window.counts(), in_slots(&window));
        });
    }
}
