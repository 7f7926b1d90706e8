//! Sliding windows of recent outcomes: O(1) to record, memory fixed by configuration.
//!
//! Both windows are lock-free. Counts are eventually consistent: a reader racing a writer
//! may see one record half applied, never lose one.

use crate::sync::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

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
        // Add before subtracting, so a concurrent reader never sees a total wrap below zero.
        for (flag, total) in [
            (PRESENT, &self.calls),
            (FAILURE, &self.failures),
            (SLOW, &self.slow),
        ] {
            match (bits & flag != 0, old & flag != 0) {
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

    fn reset(&self) {
        for slot in self.slots.iter() {
            slot.store(0, Relaxed);
        }
        self.cursor.store(0, Relaxed);
        self.calls.store(0, Relaxed);
        self.failures.store(0, Relaxed);
        self.slow.store(0, Relaxed);
    }
}

// === impl TimeWindow ===

/// The calls of the last `buckets * bucket_nanos` nanoseconds, in a ring of buckets.
///
/// Each counter is one `u64`: the bucket's epoch (which `bucket_nanos`-long slice of time it
/// counts) in the high 32 bits and the count in the low 32. A writer that finds an old epoch
/// swaps in a fresh count with one compare-and-swap, so expiry needs no lock and no sweep;
/// a reader skips counters whose epoch has left the window. A bucket counts at most
/// 2^32 - 1 calls.
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

    fn epoch(&self, now_nanos: u64) -> u32 {
        // Truncation is intended: epochs are compared with wrapping arithmetic.
        self.full_epoch(now_nanos) as u32
    }

    /// Whether nothing was recorded for a whole window before `now`.
    fn idle_for_a_window(&self, now_nanos: u64) -> bool {
        let latest = self.latest.load(Relaxed);
        self.full_epoch(now_nanos).saturating_sub(latest) >= self.buckets.len() as u64
    }

    fn record(&self, now_nanos: u64, sample: Sample) {
        let full = self.full_epoch(now_nanos);
        if self.latest.load(Relaxed) != full {
            if self.idle_for_a_window(now_nanos) {
                self.reset();
            }
            self.latest.fetch_max(full, Relaxed);
        }
        let epoch = self.epoch(now_nanos);
        let bucket = &self.buckets[epoch as usize % self.buckets.len()];
        bump(&bucket.calls, epoch);
        if sample.failure {
            bump(&bucket.failures, epoch);
        }
        if sample.slow {
            bump(&bucket.slow, epoch);
        }
    }

    fn counts(&self, now_nanos: u64) -> Counts {
        if self.idle_for_a_window(now_nanos) {
            return Counts::default();
        }
        let now = self.epoch(now_nanos);
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
        // A zero count adds nothing whichever epoch it is read as.
        self.latest.store(0, Relaxed);
        for bucket in self.buckets.iter() {
            for counter in [&bucket.calls, &bucket.failures, &bucket.slow] {
                counter.store(0, Relaxed);
            }
        }
    }
}

/// Adds one to a counter for `epoch`, restarting it at 1 if it still counts an older epoch.
fn bump(counter: &AtomicU64, epoch: u32) {
    let fresh = (u64::from(epoch) << 32) | 1;
    let mut word = counter.load(Relaxed);
    loop {
        if (word >> 32) as u32 == epoch {
            counter.fetch_add(1, Relaxed);
            return;
        }
        match counter.compare_exchange_weak(word, fresh, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(actual) => word = actual,
        }
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    const OK: Sample = Sample {
        failure: false,
        slow: false,
    };
    const FAIL: Sample = Sample {
        failure: true,
        slow: false,
    };
    const SLOW_OK: Sample = Sample {
        failure: false,
        slow: true,
    };

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
