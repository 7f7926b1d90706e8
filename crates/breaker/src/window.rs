//! Sliding windows of recent outcomes: O(1) to record, memory fixed by configuration.
//!
//! Both windows are lock-free. Counts are eventually consistent: a reader racing a writer
//! may see one record half applied, never lose one. Resets race records safely: the count
//! window's totals always come back to what its slots hold, and a time window's counters
//! are each cleared or counted whole, never carried into another epoch.

use tower_bulwark_core::sync::{
    AtomicU32, AtomicU64, AtomicU8,
    Ordering::{Acquire, Relaxed, Release},
};

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
    pub(crate) fn record(&self, now_nanos: u64, sample: Sample) {
        match self {
            Window::Count(w) => w.record(sample),
            Window::Time(w) => w.record(now_nanos, sample),
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

/// The calls of the last `buckets * bucket_nanos` nanoseconds, in a ring of buckets.
///
/// Each counter is one `u64`: the bucket's epoch (which `bucket_nanos`-long slice of time it
/// counts) in the high 32 bits and the count in the low 32. A writer that finds an old epoch
/// swaps in a fresh count, in the same compare-and-swap that checks the epoch, so expiry
/// needs no lock and no sweep; a reader skips counters whose epoch has left the window. A
/// bucket counts at most 2^32 - 1 calls.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    buckets: Box<[Bucket]>,
    bucket_nanos: u64,
    /// The full 64-bit epoch of the latest record. After an idle gap as long as the window,
    /// every bucket has expired; checking this catches the 32-bit epoch tags of the buckets
    /// wrapping around (a bucket idle for exactly 2^32 epochs would otherwise look live).
    latest: AtomicU64,
}

#[derive(Debug)]
struct Bucket {
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

impl Bucket {
    fn counters(&self) -> [&AtomicU64; 3] {
        [&self.calls, &self.failures, &self.slow]
    }
}

impl TimeWindow {
    pub(crate) fn new(buckets: u32, bucket_nanos: u64) -> Self {
        TimeWindow {
            buckets: (0..buckets)
                .map(|_| Bucket {
                    calls: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                    slow: AtomicU64::new(0),
                })
                .collect(),
            bucket_nanos: bucket_nanos.max(1),
            latest: AtomicU64::new(0),
        }
    }

    fn full_epoch(&self, now_nanos: u64) -> u64 {
        now_nanos / self.bucket_nanos
    }

    /// Whether nothing was recorded for a whole window before the epoch `full`.
    fn idle_before(&self, full: u64, latest: u64) -> bool {
        full.saturating_sub(latest) >= self.buckets.len() as u64
    }

    fn record(&self, now_nanos: u64, sample: Sample) {
        let full = self.full_epoch(now_nanos);
        let latest = self.latest.load(Acquire);
        if latest != full {
            if self.idle_before(full, latest) {
                self.clear_up_to(latest);
            }
            // Published after the clearing, so a reader that sees the window live again
            // sees it cleared.
            self.latest.fetch_max(full, Release);
        }
        // Truncation is intended: epochs are compared with wrapping arithmetic.
        let epoch = full as u32;
        let bucket = &self.buckets[epoch as usize % self.buckets.len()];
        bump(&bucket.calls, epoch);
        if sample.failure {
            bump(&bucket.failures, epoch);
        }
        if sample.slow {
            bump(&bucket.slow, epoch);
        }
    }

    /// Zeroes the counts of the window that ended at epoch `latest`: after an idle gap
    /// they are stale, and a tag that wrapped around could make one look current. Only
    /// counters still tagged with an epoch of that window are touched, so a record racing
    /// this one (tagged after the gap) is never cleared, and whoever else clears finds
    /// nothing left to do.
    fn clear_up_to(&self, latest: u64) {
        let latest = latest as u32;
        let len = self.buckets.len() as u32;
        for counter in self.buckets.iter().flat_map(Bucket::counters) {
            let _ = counter.fetch_update(Relaxed, Relaxed, |word| {
                let stale = latest.wrapping_sub((word >> 32) as u32) < len;
                (stale && word as u32 != 0).then_some(word & !u64::from(u32::MAX))
            });
        }
    }

    fn counts(&self, now_nanos: u64) -> Counts {
        let full = self.full_epoch(now_nanos);
        if self.idle_before(full, self.latest.load(Acquire)) {
            return Counts::default();
        }
        let now = full as u32;
        let len = self.buckets.len() as u32;
        let live = |counter: &AtomicU64| {
            let word = counter.load(Relaxed);
            let epoch = (word >> 32) as u32;
            if now.wrapping_sub(epoch) < len {
                word & u64::from(u32::MAX)
            } else {
                0
            }
        };
        let mut counts = Counts::default();
        for bucket in self.buckets.iter() {
            counts.calls += live(&bucket.calls);
            counts.failures += live(&bucket.failures);
            counts.slow += live(&bucket.slow);
        }
        counts.failures = counts.failures.min(counts.calls);
        counts.slow = counts.slow.min(counts.calls);
        counts
    }

    fn reset(&self) {
        // A zero count adds nothing whichever epoch it is read as. Each counter is swapped
        // whole, so a racing record is counted or not, never tagged with the wrong epoch.
        self.latest.store(0, Release);
        for counter in self.buckets.iter().flat_map(Bucket::counters) {
            counter.swap(0, Relaxed);
        }
    }
}

/// Adds one to a counter for `epoch`, restarting it at 1 if it still counts an older epoch.
/// One read-modify-write: the epoch checked is the epoch counted.
fn bump(counter: &AtomicU64, epoch: u32) {
    let fresh = (u64::from(epoch) << 32) | 1;
    let _ = counter.fetch_update(Relaxed, Relaxed, |word| {
        Some(if (word >> 32) as u32 == epoch {
            // Saturates rather than carrying into the epoch.
            word + u64::from(word as u32 != u32::MAX)
        } else {
            fresh
        })
    });
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
#[cfg(test)]
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
    fn time_buckets_expire_as_time_moves_on() {
        // 4 buckets of 10 ns: a 40 ns window.
        let window = TimeWindow::new(4, 10);
        window.record(0, FAIL);
        window.record(5, OK);
        window.record(15, SLOW_OK);
        window.record(35, FAIL);
        assert_eq!(
            window.counts(35),
            Counts {
                calls: 4,
                failures: 2,
                slow: 1
            }
        );
        // At 40 the bucket of 0..10 has left the window.
        assert_eq!(
            window.counts(40),
            Counts {
                calls: 2,
                failures: 1,
                slow: 1
            }
        );
        // At 50 so has 10..20.
        assert_eq!(
            window.counts(50),
            Counts {
                calls: 1,
                failures: 1,
                slow: 0
            }
        );
        // A write into a reused bucket starts it afresh.
        window.record(41, OK);
        assert_eq!(
            window.counts(41),
            Counts {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        // Long idle: everything expired, even though no one wrote.
        assert_eq!(window.counts(10_000), Counts::default());
    }

    #[test]
    fn bucket_tags_wrapping_around_do_not_revive_old_counts() {
        // One-nanosecond buckets: the 32-bit tags wrap every 2^32 ns.
        let window = TimeWindow::new(4, 1);
        window.record(1, FAIL);
        window.record(2, FAIL);
        let wrapped = 1u64 << 32;
        assert_eq!(window.counts(wrapped + 2), Counts::default());
        window.record(wrapped + 2, OK);
        assert_eq!(
            window.counts(wrapped + 2),
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
        let window = TimeWindow::new(10, 1_000);
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

    #[test]
    fn many_threads_lose_no_record() {
        let count = std::sync::Arc::new(CountWindow::new(1_000_000));
        let time = std::sync::Arc::new(TimeWindow::new(10, 1_000_000_000));
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

    /// Two calls finishing at once after the window sat idle for longer than its length:
    /// both are counted.
    #[test]
    fn records_racing_the_first_record_after_an_idle_window_are_kept() {
        loom::model(|| {
            let window = Arc::new(TimeWindow::new(2, 10));
            window.record(0, FAIL);
            let recorder = {
                let window = window.clone();
                loom::thread::spawn(move || window.record(100, FAIL))
            };
            window.record(100, SLOW_OK);
            recorder.join().unwrap();
            assert_eq!(
                window.counts(100),
                Counts {
                    calls: 2,
                    failures: 1,
                    slow: 1
                }
            );
        });
    }
}
