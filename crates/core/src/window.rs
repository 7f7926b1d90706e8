//! [`SlidingCounts`]: counts over the last stretch of time, lock-free and exact. The
//! breaker's time window and the adaptive throttle's window are both this one counter.
//!
//! The window is a ring of buckets, each `bucket_nanos` long, each holding `K` counters.
//! A counter is one `u64`: the bucket's epoch (which slice of time it counts) in the high
//! 32 bits and the count in the low 32. A writer that finds an older epoch swaps in a fresh
//! count in the same compare-and-swap that checks the epoch, so expiry needs no lock, no
//! sweep and no claim: a count is always counted whole in the epoch it was made in, never
//! lost to a racing expiry and never carried into a later one. A reader skips counters
//! whose epoch has left the window. A bucket's counter saturates at 2^32 - 1.
//!
//! The 32-bit epoch tags wrap around every 2^32 buckets. So that an old tag can never wrap
//! back into the window, the first add of each new epoch tags the slots of the epochs it
//! skipped with no count: every tag in the ring then stays within one window of the latest
//! epoch, and tags compare unambiguously. An add whose epoch has already left the window
//! (a thread delayed for a whole window between reading the clock and adding) is dropped,
//! never written over a live bucket.
//!
//! Time is whatever the owner measures it in, as nanoseconds since its own start
//! (tokio's clock, so paused-time tests step it exactly).

use std::fmt;
use std::time::Duration;

use crate::sync::{
    AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};

/// The most buckets a window is kept in.
pub const MAX_BUCKETS: u32 = 1 << 16;

/// `K` counters summed over a sliding window of time. See the [module docs](self).
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_core::window::SlidingCounts;
///
/// // Requests and accepts over 10 s, kept in 10 buckets of 1 s.
/// let window = SlidingCounts::<2>::new(Duration::from_secs(10), 10);
/// let second = 1_000_000_000;
/// window.add(0, [1, 1]);
/// window.add(3 * second, [1, 0]);
/// assert_eq!(window.totals(3 * second), [2, 1]);
/// // At 10 s the first bucket has left the window.
/// assert_eq!(window.totals(10 * second), [1, 0]);
/// ```
pub struct SlidingCounts<const K: usize> {
    buckets: Box<[[AtomicU64; K]]>,
    /// Which slot holds an epoch: its full 64-bit value modulo the slots, everywhere (the
    /// 32-bit tag would map the epochs around each 2^32 wrap onto slots still in use).
    slot_of: FastMod,
    bucket_nanos: u64,
    /// The full 64-bit epoch of the latest record. After an idle gap as long as the window,
    /// every bucket has expired; checking this catches the 32-bit epoch tags wrapping around
    /// (a bucket idle for exactly 2^32 epochs would otherwise look live).
    latest: AtomicU64,
}

impl<const K: usize> SlidingCounts<K> {
    /// A window `length` long, kept in `buckets` buckets (1 to [`MAX_BUCKETS`]; each at
    /// least 1 ns). Counts leave the window a bucket at a time: more buckets, a smoother
    /// slide.
    pub fn new(length: Duration, buckets: u32) -> Self {
        let buckets = buckets.clamp(1, MAX_BUCKETS);
        let length = u64::try_from(length.as_nanos()).unwrap_or(u64::MAX);
        SlidingCounts {
            buckets: (0..buckets)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            slot_of: FastMod::new(u64::from(buckets)),
            bucket_nanos: (length / u64::from(buckets)).max(1),
            latest: AtomicU64::new(0),
        }
    }

    /// Adds `amounts[i]` to counter `i` at `now_nanos`. An add at a time already a whole
    /// window behind the latest add counts nothing: it has left the window. Returns the
    /// bucket `now_nanos` falls in, counted from time zero (older buckets expire only when
    /// it changes).
    #[inline]
    pub fn add(&self, now_nanos: u64, amounts: [u32; K]) -> u64 {
        let latest = self.latest.load(Acquire);
        let full = self.epoch_of(now_nanos, latest);
        if full > latest {
            self.move_to(full, latest);
        } else if latest - full >= self.buckets.len() as u64 {
            return full;
        }
        // Truncation is intended: epochs are compared with wrapping arithmetic.
        let epoch = full as u32;
        let bucket = &self.buckets[self.slot_of.of(full)];
        for (counter, amount) in bucket.iter().zip(amounts) {
            if amount != 0 {
                bump(counter, epoch, amount);
            }
        }
        full
    }

    /// The bucket `now_nanos` falls in, counted from time zero.
    #[inline]
    pub fn bucket_of(&self, now_nanos: u64) -> u64 {
        now_nanos / self.bucket_nanos
    }

    /// The latest bucket anything was added in (0 before the first add).
    #[inline]
    pub fn latest_bucket(&self) -> u64 {
        self.latest.load(Acquire)
    }

    /// The sums of each counter over the window that ends at `now_nanos`.
    pub fn totals(&self, now_nanos: u64) -> [u64; K] {
        let full = now_nanos / self.bucket_nanos;
        let mut totals = [0; K];
        if self.idle_before(full, self.latest.load(Acquire)) {
            return totals;
        }
        let now = full as u32;
        let len = self.buckets.len() as u32;
        for bucket in self.buckets.iter() {
            for (total, counter) in totals.iter_mut().zip(bucket) {
                let word = counter.load(Relaxed);
                if now.wrapping_sub((word >> 32) as u32) < len {
                    *total += word & u64::from(u32::MAX);
                }
            }
        }
        totals
    }

    /// Empties the window. Each counter's count is cleared in one read-modify-write, so
    /// each count of an add racing the reset is kept or cleared whole, never tagged with
    /// the wrong epoch. Tags and the latest epoch are kept: zeroing them raced the first
    /// add of a new epoch (its tagging before the clear, its `latest` after it), leaving
    /// the ring tagged 0 under a latest epoch whose tag is 2^31 or more, where every add
    /// was then dropped as older than the 0 it found, for up to 2^31 buckets.
    pub fn reset(&self) {
        for counter in self.buckets.iter().flatten() {
            let _ =
                counter.fetch_update(Relaxed, Relaxed, |word| Some(word & !u64::from(u32::MAX)));
        }
    }

    /// The first add of a new epoch: tags the slots of the epochs since `latest` (the last
    /// window of them, after an idle gap) with their epoch and no count, then publishes the
    /// epoch. Every tag in the ring then stays within one window of the latest epoch, so no
    /// old tag wraps around into the window. A slot already tagged with the epoch (a racing
    /// add got there first) keeps its count. Published after the tagging, so a reader that
    /// sees the window live again sees the stale counts gone.
    #[cold]
    fn move_to(&self, full: u64, latest: u64) {
        let len = self.buckets.len() as u64;
        let idle = self.idle_before(full, latest);
        let first = if idle { full - (len - 1) } else { latest + 1 };
        for epoch in first..=full {
            let tag = epoch as u32;
            for counter in &self.buckets[self.slot_of.of(epoch)] {
                let _ = counter.fetch_update(Relaxed, Relaxed, |word| {
                    let found = (word >> 32) as u32;
                    // After an idle gap every tag in the ring is stale, however far back
                    // (even 2^31 epochs and more), except one a racing add just wrote for
                    // this epoch; a stale tag can equal this epoch's only when the gap is
                    // within a window of a multiple of 2^32 epochs, and then it goes too.
                    // Otherwise only an older tag is stale.
                    let stale = if idle {
                        found != tag || may_alias(epoch - latest, len)
                    } else {
                        is_older(found, tag)
                    };
                    stale.then_some(u64::from(tag) << 32)
                });
            }
        }
        self.latest.fetch_max(full, Release);
    }

    /// The epoch (bucket) of `now_nanos`: the latest one when it falls there, as most adds
    /// do, without a division.
    #[inline]
    fn epoch_of(&self, now_nanos: u64, latest: u64) -> u64 {
        let in_latest = latest
            .checked_mul(self.bucket_nanos)
            .and_then(|start| now_nanos.checked_sub(start))
            .is_some_and(|into| into < self.bucket_nanos);
        if in_latest {
            latest
        } else {
            now_nanos / self.bucket_nanos
        }
    }

    /// Whether nothing was added for a whole window before the epoch `full`.
    fn idle_before(&self, full: u64, latest: u64) -> bool {
        full.saturating_sub(latest) >= self.buckets.len() as u64
    }
}

impl<const K: usize> fmt::Debug for SlidingCounts<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlidingCounts")
            .field("buckets", &self.buckets.len())
            .field("bucket_nanos", &self.bucket_nanos)
            .finish()
    }
}

/// `n % d` for one `d` by multiplications (Lemire, Kaser and Kurz, "Faster remainder by
/// direct computation", 2019: with `M = ceil(2^128 / d)`, `n % d` is the high 64 bits of
/// `(M * n mod 2^128) * d`, exact for every 64-bit `n`), since a 64-bit division costs
/// tens of cycles on every add.
#[derive(Debug, Clone, Copy)]
struct FastMod {
    d: u64,
    m: u128,
}

impl FastMod {
    /// For `d` of at least 1.
    fn new(d: u64) -> Self {
        let d = d.max(1);
        FastMod {
            d,
            m: (u128::MAX / u128::from(d)).wrapping_add(1),
        }
    }

    /// `n % d`, as an index.
    #[inline]
    fn of(&self, n: u64) -> usize {
        if self.d == 1 {
            return 0;
        }
        let low = self.m.wrapping_mul(u128::from(n));
        // The high 64 bits of the 192-bit product `low * d`.
        let d = u128::from(self.d);
        let high = (low >> 64) * d + (((low & u128::from(u64::MAX)) * d) >> 64);
        (high >> 64) as usize
    }
}

/// Adds `amount` to a counter for `epoch`, restarting it at `amount` if it still counts an
/// older epoch, and dropping it if the slot already counts a newer one (the add's epoch has
/// left the window). One read-modify-write: the epoch checked is the epoch counted.
fn bump(counter: &AtomicU64, epoch: u32, amount: u32) {
    let tag = u64::from(epoch) << 32;
    let _ = counter.fetch_update(Relaxed, Relaxed, |word| {
        let found = (word >> 32) as u32;
        if found == epoch {
            // Saturates rather than carrying into the epoch.
            Some(tag | u64::from((word as u32).saturating_add(amount)))
        } else if is_older(found, epoch) {
            Some(tag | u64::from(amount))
        } else {
            None
        }
    });
}

/// Whether an epoch `gap` epochs after the latest one has the same 32-bit tag as one of
/// the epochs of the window that ended at the latest one (`len` epochs long).
fn may_alias(gap: u64, len: u64) -> bool {
    const WRAP: u64 = 1 << 32;
    let next_wrap = gap.div_ceil(WRAP).max(1).saturating_mul(WRAP);
    next_wrap < gap.saturating_add(len)
}

/// Whether the epoch tagged `found` comes before `epoch`. Tags in the ring stay within a
/// window (at most [`MAX_BUCKETS`] epochs) of each other, so the wrapping difference says
/// which is older.
fn is_older(found: u32, epoch: u32) -> bool {
    (epoch.wrapping_sub(found) as i32) > 0
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    /// 4 buckets of 10 ns: a 40 ns window.
    fn window() -> SlidingCounts<3> {
        SlidingCounts::new(Duration::from_nanos(40), 4)
    }

    #[test]
    fn buckets_expire_as_time_moves_on() {
        let window = window();
        window.add(0, [1, 1, 0]);
        window.add(5, [1, 0, 0]);
        window.add(15, [1, 0, 1]);
        window.add(35, [1, 1, 0]);
        assert_eq!(window.totals(35), [4, 2, 1]);
        // At 40 the bucket of 0..10 has left the window; at 50 so has 10..20.
        assert_eq!(window.totals(40), [2, 1, 1]);
        assert_eq!(window.totals(50), [1, 1, 0]);
        // An add into a reused bucket starts it afresh.
        window.add(41, [1, 0, 0]);
        assert_eq!(window.totals(41), [3, 1, 1]);
        // Long idle: everything expired, even though no one added.
        assert_eq!(window.totals(10_000), [0, 0, 0]);
    }

    #[test]
    fn amounts_add_and_saturate_without_touching_the_epoch() {
        let window = window();
        window.add(1, [7, 0, u32::MAX]);
        window.add(2, [3, 0, 5]);
        assert_eq!(window.totals(2), [10, 0, u64::from(u32::MAX)]);
        // Still live in the next bucket: the saturated count kept its epoch.
        assert_eq!(window.totals(12), [10, 0, u64::from(u32::MAX)]);
    }

    #[test]
    fn epoch_tags_wrapping_around_do_not_revive_old_counts() {
        // One-nanosecond buckets: the 32-bit tags wrap every 2^32 ns.
        let window = SlidingCounts::<1>::new(Duration::from_nanos(4), 4);
        window.add(1, [1]);
        window.add(2, [1]);
        let wrapped = 1u64 << 32;
        assert_eq!(window.totals(wrapped + 2), [0]);
        window.add(wrapped + 2, [1]);
        assert_eq!(window.totals(wrapped + 2), [1]);
    }

    /// A slot no add lands on (traffic every other bucket, never idle) is still tagged
    /// as the ring moves, so its tag never falls more than a window behind and cannot wrap
    /// back into the window 2^32 buckets later.
    #[test]
    fn every_tag_stays_within_a_window_of_the_latest_epoch() {
        let window = SlidingCounts::<1>::new(Duration::from_nanos(4), 4);
        window.add(1, [7]);
        for t in (3..400).step_by(2) {
            window.add(t, [1]);
            let latest = window.latest.load(Relaxed);
            for counter in window.buckets.iter().flatten() {
                let tag = u64::from((counter.load(Relaxed) >> 32) as u32);
                assert!(latest - tag < 4, "tag {tag} at latest {latest}");
            }
        }
    }

    /// The state of an add racing the first add after an idle gap (replayed, as the loom
    /// model `adds_racing_the_first_add_after_an_idle_window_are_kept` races it): the
    /// racing add has already tagged the new epoch's slot and counted in it when the
    /// first add tags the skipped epochs. Its count is kept, and only the last window of
    /// epochs is tagged.
    #[test]
    fn after_an_idle_gap_a_slot_already_tagged_with_the_new_epoch_keeps_its_count() {
        let window = window();
        window.add(0, [1, 1, 0]);
        // Epoch 10 (time 100), in slot 10 % 4 = 2: the racing add's count of 5.
        let slot = &window.buckets[2][0];
        slot.store(10 << 32 | 5, Relaxed);
        window.add(100, [1, 0, 0]);
        assert_eq!(window.totals(100), [6, 0, 0]);
        for (epoch, bucket) in [(8, 0), (9, 1), (10, 2), (7, 3)] {
            for counter in &window.buckets[bucket] {
                assert_eq!(counter.load(Relaxed) >> 32, epoch, "slot {bucket}");
            }
        }
    }

    /// A counter still holding an older epoch (its slot not yet tagged for the add's epoch,
    /// as when an add races the tagging) restarts at the amount in the add's epoch; one
    /// already holding a newer epoch drops the add.
    #[test]
    fn bump_restarts_an_older_epoch_and_drops_an_add_into_a_newer_one() {
        let counter = AtomicU64::new(4 << 32 | 9);
        bump(&counter, 5, 3);
        assert_eq!(counter.load(Relaxed), 5 << 32 | 3);
        bump(&counter, 5, 2);
        assert_eq!(counter.load(Relaxed), 5 << 32 | 5);
        bump(&counter, 4, 7);
        assert_eq!(counter.load(Relaxed), 5 << 32 | 5, "epoch 4 has left");
    }

    /// The first add of the next epoch racing another add of it (replayed): the slot the
    /// racing add already tagged with the new epoch keeps its count.
    #[test]
    fn a_slot_already_tagged_with_the_next_epoch_keeps_its_count() {
        let window = window();
        window.add(0, [1, 0, 0]);
        window.buckets[1][0].store(1 << 32 | 5, Relaxed);
        window.add(10, [1, 0, 0]);
        assert_eq!(window.totals(10), [7, 0, 0]);
    }

    #[test]
    fn may_alias_only_where_a_tag_of_the_last_window_comes_round_again() {
        const WRAP: u64 = 1 << 32;
        assert!(!may_alias(5, 4));
        assert!(
            !may_alias(WRAP - 4, 4),
            "2^32 after the epoch just before the window"
        );
        assert!(
            may_alias(WRAP - 3, 4),
            "2^32 after the window's first epoch"
        );
        assert!(may_alias(WRAP, 4));
        assert!(!may_alias(WRAP + 1, 4));
        assert!(may_alias(3 * WRAP - 1, 4));
    }

    #[test]
    fn reset_clears_everything() {
        let window = SlidingCounts::<1>::new(Duration::from_nanos(10_000), 10);
        for t in 0..100 {
            window.add(t * 10, [1]);
        }
        assert_eq!(window.totals(1_000), [100]);
        window.reset();
        assert_eq!(window.totals(1_000), [0]);
        window.add(1_001, [1]);
        assert_eq!(window.totals(1_001), [1]);
    }

    #[test]
    fn degenerate_sizes_are_clamped_not_panics() {
        let zero = SlidingCounts::<1>::new(Duration::ZERO, 0);
        zero.add(u64::MAX, [1]);
        assert_eq!(zero.totals(u64::MAX), [1]);
        let huge = SlidingCounts::<1>::new(Duration::MAX, u32::MAX >> 12);
        huge.add(0, [1]);
        assert_eq!(huge.totals(u64::MAX / 2), [1], "half a window later");
        assert_eq!(huge.totals(u64::MAX), [0], "a whole window later");
    }

    /// Against a plain model (every add kept with its epoch, the window summed from
    /// them), through time jumps of every size: within a bucket, across a few, across
    /// whole windows, and around multiples of 2^32 buckets, where the epoch tags wrap;
    /// some adds come late (a clock read before others' adds), within the window or not.
    /// With 4 buckets (which divide 2^32) and with 10 (which do not: a slot picked by the
    /// 32-bit tag instead of the epoch would differ past 2^32 buckets).
    #[test]
    fn sums_match_a_model_across_every_kind_of_time_jump() {
        use proptest::prelude::*;
        for len in [4u64, 10] {
            let jump = prop_oneof![
                0u64..3,
                0u64..(3 * len),
                Just(len),
                Just(len - 1),
                (1u64..3).prop_flat_map(move |k| (k << 32) - 2 * len..(k << 32) + 2 * len),
                Just(1u64 << 40),
            ];
            let late = prop_oneof![Just(0u64), 0u64..(2 * len)];
            proptest!(|(steps in proptest::collection::vec((jump, late, 0u32..3, any::<bool>()), 1..60))| {
                let window = SlidingCounts::<1>::new(Duration::from_nanos(len), len as u32);
                let mut now = 0u64;
                let mut adds: Vec<(u64, u64)> = Vec::new();
                for (jump, late, amount, add) in steps {
                    now = now.saturating_add(jump);
                    if add {
                        let at = now.saturating_sub(late);
                        window.add(at, [amount]);
                        adds.push((at, u64::from(amount)));
                    }
                    let expected: u64 = adds
                        .iter()
                        .filter(|(at, _)| now - at < len)
                        .map(|(_, amount)| amount)
                        .sum();
                    prop_assert_eq!(window.totals(now), [expected], "at {} ({} buckets)", now, len);
                }
            });
        }
    }

    /// Past 2^32 buckets, with a number of buckets that does not divide 2^32, every add
    /// of the window is still counted (slots were once picked by the 32-bit tag, which
    /// lost most of them there).
    #[test]
    fn adds_past_two_to_the_32_buckets_are_all_counted() {
        let window = SlidingCounts::<1>::new(Duration::from_nanos(10), 10);
        let base = 1u64 << 32;
        for t in 0..30 {
            window.add(base + t, [1]);
            assert_eq!(window.totals(base + t), [(t + 1).min(10)], "at 2^32 + {t}");
        }
    }

    #[test]
    fn fast_modulo_is_the_remainder() {
        use proptest::prelude::*;
        for d in [
            1u64,
            2,
            3,
            7,
            10,
            1000,
            65_536,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let fast = FastMod::new(d);
            for n in [
                0,
                1,
                d - 1,
                d,
                d.wrapping_add(1),
                u64::MAX,
                u64::MAX - 1,
                1 << 32,
            ] {
                assert_eq!(fast.of(n) as u64, n % d, "{n} % {d}");
            }
        }
        proptest!(|(n in any::<u64>(), d in 1u64..)| {
            prop_assert_eq!(FastMod::new(d).of(n) as u64, n % d);
        });
    }

    #[test]
    fn many_threads_lose_no_count() {
        let window = std::sync::Arc::new(SlidingCounts::<2>::new(Duration::from_secs(10), 10));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let window = window.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        // Every thread walks across bucket boundaries.
                        window.add(i * 100_000, [1, u32::from(i % 4 == 0)]);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(window.totals(999_900_000), [40_000, 10_000]);
    }
}

#[cfg(all(test, bulwark_loom))]
mod loom_model {
    use super::*;
    use loom::sync::Arc;

    /// Two adds at once, the first after the window sat idle for longer than its length:
    /// both are counted, and nothing from before the gap is.
    #[test]
    fn adds_racing_the_first_add_after_an_idle_window_are_kept() {
        loom::model(|| {
            let window = Arc::new(SlidingCounts::<2>::new(Duration::from_nanos(20), 2));
            window.add(0, [1, 1]);
            let adder = {
                let window = window.clone();
                loom::thread::spawn(move || window.add(100, [1, 1]))
            };
            window.add(100, [1, 0]);
            adder.join().unwrap();
            assert_eq!(window.totals(100), [2, 1]);
        });
    }

    /// An add racing the move into a new bucket (the ring reusing a slot that holds an
    /// expired epoch) is counted in its own epoch, whichever goes first.
    #[test]
    fn an_add_racing_a_bucket_reuse_is_counted_once_in_its_epoch() {
        loom::model(|| {
            let window = Arc::new(SlidingCounts::<1>::new(Duration::from_nanos(20), 2));
            window.add(0, [5]);
            window.add(10, [1]);
            // Epoch 2 reuses epoch 0's slot.
            let adder = {
                let window = window.clone();
                loom::thread::spawn(move || window.add(20, [1]))
            };
            window.add(21, [1]);
            adder.join().unwrap();
            assert_eq!(window.totals(21), [3]);
        });
    }

    /// A reset racing the first add of a new epoch, late enough that epoch tags are 2^31
    /// or more, leaves a window that still counts the adds after it.
    #[test]
    fn adds_after_a_reset_racing_a_new_epoch_are_counted() {
        loom::model(|| {
            let window = Arc::new(SlidingCounts::<1>::new(Duration::from_nanos(2), 2));
            let late = (1u64 << 31) + 4;
            window.add(late - 1, [1]);
            let adder = {
                let window = window.clone();
                loom::thread::spawn(move || window.add(late, [1]))
            };
            window.reset();
            adder.join().unwrap();
            let [before] = window.totals(late);
            window.add(late, [1]);
            assert_eq!(window.totals(late), [before + 1], "an add after the reset");
            window.add(late + 1, [1]);
            assert_eq!(
                window.totals(late + 1),
                [before + 2],
                "an add of the next epoch"
            );
        });
    }

    /// Each count of an add racing a reset is kept whole or cleared, never doubled.
    #[test]
    fn an_add_racing_a_reset_is_whole_or_gone() {
        loom::model(|| {
            let window = Arc::new(SlidingCounts::<2>::new(Duration::from_nanos(20), 2));
            window.add(0, [1, 1]);
            let adder = {
                let window = window.clone();
                loom::thread::spawn(move || window.add(5, [1, 1]))
            };
            window.reset();
            adder.join().unwrap();
            let [calls, failures] = window.totals(5);
            assert!(calls <= 1 && failures <= 1, "{calls} {failures}");
        });
    }
}
