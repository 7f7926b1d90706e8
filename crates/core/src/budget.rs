//! [`RatioLedger`]: the balance of a ratio budget, the one behind the retry budget
//! (`tower_bulwark_retry::RatioBudget`) and the hedge budget (`HedgeBuilder::budget_ratio`).
//!
//! Every call deposits `ratio` of an extra attempt (a retry, a hedge), every extra attempt
//! withdraws one, and both expire after the window; `min_per_sec` extra attempts a second
//! are always there (a reserve, so a quiet service can still retry). It is the model of
//! Finagle's and tower's `TpsBudget`, kept as a *running balance* rather than a sum over a
//! window: a withdrawal must take the last unit in one compare-and-swap, so two racing
//! callers can never both take it, which a sum read and then written cannot give (the
//! reason this is not [`SlidingCounts`](crate::window::SlidingCounts)).
//!
//! - Units are fixed-point, a thousandth of an attempt: a 0.6 ratio allows 3 extra attempts
//!   per 5 calls, not 1 per call.
//! - The window is kept in 10 slices. Each slice's deposits and withdrawals are kept beside
//!   the balance; when a slice leaves the window, the caller that claims its expiry (one
//!   compare-and-swap on the newest slice's number, so each slice expires exactly once
//!   however many callers race) takes them back out of the balance. After an idle gap of a
//!   whole window, one claim expires every slice.
//! - Deposits and withdrawals are lock-free; each does one read of the slice number on the
//!   happy path, and the time is the caller's (`now`, tokio's clock, so paused-time tests
//!   step it exactly).
//! - A deposit or withdrawal made in the instant its slice's ring slot is being reclaimed
//!   (the slot's old contents are expired by another caller that claimed the new slice)
//!   can be expired with them: it leaves the balance at once instead of a window later.
//!   The balance always equals the reserve plus the slices still held (loom-checked), and a
//!   withdrawal never takes a unit the balance did not hold at its compare-and-swap.
//!
//! Bad values never panic: `ratio` is clamped to `0..=1000` (NaN is 0), the window to at
//! least 10 ns and the reserve to what the balance can hold. Callers validate their own
//! settings and name the field (CONTRIBUTING.md, rule 6).
//!
//! ```
//! use std::time::Duration;
//! use tokio::time::Instant;
//! use tower_bulwark_core::budget::RatioLedger;
//!
//! // 20% of calls may be retried, nothing for free, over 10 s.
//! let ledger = RatioLedger::new(Duration::from_secs(10), 0, 0.2);
//! let now = Instant::now();
//! for _ in 0..10 {
//!     ledger.deposit(now);
//! }
//! assert!(ledger.withdraw(now));
//! assert!(ledger.withdraw(now));
//! assert!(!ledger.withdraw(now), "10 calls at 20% buy 2 retries");
//! assert_eq!(ledger.balance(now), 0.0);
//! // Ten seconds on, the deposits and withdrawals have left the window.
//! assert_eq!(ledger.balance(now + Duration::from_secs(10)), 0.0);
//! ```

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::{AtomicI64, AtomicU64, Ordering::*};

/// One extra attempt, in the ledger's fixed-point units: ratios are exact to a thousandth.
const UNIT: i64 = 1000;
/// How many slices the window is kept in.
const SLICES: u64 = 10;
/// The largest ratio kept: a thousand extra attempts per call.
const MAX_RATIO: f64 = 1000.0;
/// The largest reserve kept, in units: far from the balance's overflow.
const MAX_RESERVE: i64 = i64::MAX / 4;

/// A ratio budget's balance over a sliding window. See the [module docs](self).
pub struct RatioLedger {
    deposit: i64,
    reserve: i64,
    start: Instant,
    slice_nanos: u64,
    /// The newest slice whose expiry has been claimed.
    epoch: AtomicU64,
    /// Reserve + deposits − withdrawals of the live slices, in units.
    balance: AtomicI64,
    deposits: Box<[AtomicI64]>,
    withdrawals: Box<[AtomicI64]>,
}

impl RatioLedger {
    /// A ledger over `window` (kept in 10 slices), where each call deposits `ratio` of an
    /// extra attempt and `min_per_sec` extra attempts a second are always available. Out of
    /// range values are clamped (see the [module docs](self)); it starts now.
    pub fn new(window: Duration, min_per_sec: u32, ratio: f64) -> Self {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, MAX_RATIO)
        };
        // Float to integer casts saturate.
        let reserve = ((f64::from(min_per_sec) * window.as_secs_f64() * UNIT as f64).round()
            as i64)
            .min(MAX_RESERVE);
        let slice_nanos = (u64::try_from(window.as_nanos()).unwrap_or(u64::MAX) / SLICES).max(1);
        RatioLedger {
            deposit: (ratio * UNIT as f64).round() as i64,
            reserve,
            start: Instant::now(),
            slice_nanos,
            epoch: AtomicU64::new(0),
            balance: AtomicI64::new(reserve),
            deposits: (0..SLICES).map(|_| AtomicI64::new(0)).collect(),
            withdrawals: (0..SLICES).map(|_| AtomicI64::new(0)).collect(),
        }
    }

    /// Records a call at `now`: deposits `ratio` of an extra attempt (nothing at all, not
    /// even a clock read of the slices, when the ratio is 0).
    #[inline]
    pub fn deposit(&self, now: Instant) {
        if self.deposit == 0 {
            return;
        }
        let slot = self.advance(now);
        self.balance.fetch_add(self.deposit, AcqRel);
        self.deposits[slot].fetch_add(self.deposit, Relaxed);
    }

    /// Takes one extra attempt at `now`; `false` when the balance holds less than one.
    #[inline]
    pub fn withdraw(&self, now: Instant) -> bool {
        let slot = self.advance(now);
        let taken = self
            .balance
            .fetch_update(AcqRel, Acquire, |balance| {
                (balance >= UNIT).then_some(balance - UNIT)
            })
            .is_ok();
        if taken {
            self.withdrawals[slot].fetch_add(UNIT, Relaxed);
        }
        taken
    }

    /// Extra attempts available at `now` (fractional; below zero just after a racing
    /// expiry, see the [module docs](self)).
    pub fn balance(&self, now: Instant) -> f64 {
        self.advance(now);
        self.balance.load(Acquire) as f64 / UNIT as f64
    }

    /// What each call deposits, in extra attempts (the ratio, to a thousandth).
    pub fn ratio(&self) -> f64 {
        self.deposit as f64 / UNIT as f64
    }

    /// The reserve, in extra attempts: `min_per_sec` times the window.
    pub fn reserve(&self) -> f64 {
        self.reserve as f64 / UNIT as f64
    }

    /// Expires the slices that left the window; returns the ring slot of the current one.
    #[inline]
    fn advance(&self, now: Instant) -> usize {
        let nanos =
            u64::try_from(now.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        let epoch = self.epoch.load(Acquire);
        // Still within the newest slice: no division, nothing to expire.
        if nanos < epoch.saturating_add(1).saturating_mul(self.slice_nanos) {
            return (epoch % SLICES) as usize;
        }
        self.expire_until(nanos / self.slice_nanos)
    }

    /// Expires every slice up to `current`, each exactly once however many callers race.
    #[cold]
    fn expire_until(&self, current: u64) -> usize {
        loop {
            let seen = self.epoch.load(Acquire);
            if seen >= current {
                break;
            }
            // Claim one step (or, after a whole window idle, everything) so each slice
            // expires once.
            let whole = current - seen >= SLICES;
            let next = if whole { current } else { seen + 1 };
            if self
                .epoch
                .compare_exchange(seen, next, AcqRel, Acquire)
                .is_err()
            {
                continue;
            }
            let expired = if whole {
                0..SLICES
            } else {
                next % SLICES..next % SLICES + 1
            };
            for slot in expired.map(|slot| slot as usize) {
                let deposited = self.deposits[slot].swap(0, AcqRel);
                let withdrawn = self.withdrawals[slot].swap(0, AcqRel);
                self.balance
                    .fetch_add(withdrawn.saturating_sub(deposited), AcqRel);
            }
        }
        (current % SLICES) as usize
    }
}

impl fmt::Debug for RatioLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RatioLedger")
            .field("ratio", &self.ratio())
            .field("reserve", &self.reserve())
            .field(
                "balance",
                &(self.balance.load(Relaxed) as f64 / UNIT as f64),
            )
            .finish()
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::time::advance;

    fn ledger(ratio: f64) -> RatioLedger {
        RatioLedger::new(Duration::from_secs(10), 0, ratio)
    }

    fn extra_after(ledger: &RatioLedger, calls: usize) -> usize {
        for _ in 0..calls {
            ledger.deposit(Instant::now());
        }
        drain(ledger)
    }

    fn drain(ledger: &RatioLedger) -> usize {
        std::iter::from_fn(|| ledger.withdraw(Instant::now()).then_some(())).count()
    }

    fn balance(ledger: &RatioLedger) -> f64 {
        ledger.balance(Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn ratios_are_exact() {
        assert_eq!(extra_after(&ledger(0.6), 5), 3, "0.6 per call, not 1");
        assert_eq!(extra_after(&ledger(0.6), 1), 0);
        assert_eq!(extra_after(&ledger(0.1), 100), 10);
        assert_eq!(extra_after(&ledger(0.1), 9), 0);
        assert_eq!(extra_after(&ledger(0.05), 100), 5);
        assert_eq!(extra_after(&ledger(0.0), 1_000), 0);
        assert_eq!(extra_after(&ledger(2.5), 4), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn fractions_accumulate_across_calls() {
        let ledger = ledger(0.6);
        ledger.deposit(Instant::now());
        assert!(!ledger.withdraw(Instant::now()));
        ledger.deposit(Instant::now());
        assert!(ledger.withdraw(Instant::now()), "1.2 banked");
        assert!((balance(&ledger) - 0.2).abs() < 1e-9);

        let hedges = self::ledger(0.05);
        assert_eq!(extra_after(&hedges, 100), 5);
        assert_eq!(extra_after(&hedges, 19), 0, "0.95 of one");
        assert_eq!(extra_after(&hedges, 1), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_and_withdrawals_expire_after_the_window() {
        let ledger = ledger(1.0);
        for _ in 0..5 {
            ledger.deposit(Instant::now());
        }
        assert!(ledger.withdraw(Instant::now()));
        assert_eq!(balance(&ledger), 4.0);
        advance(Duration::from_secs(5)).await;
        ledger.deposit(Instant::now());
        assert_eq!(balance(&ledger), 5.0);
        // The first five deposits (and the withdrawal) leave the window; the sixth stays.
        advance(Duration::from_secs(6)).await;
        assert_eq!(balance(&ledger), 1.0);
        advance(Duration::from_secs(60)).await;
        assert_eq!(balance(&ledger), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn slices_expire_exactly_at_their_boundaries() {
        // A 10 s window kept in 1 s slices.
        let ledger = ledger(1.0);
        ledger.deposit(Instant::now());
        advance(Duration::from_millis(999)).await;
        ledger.deposit(Instant::now()); // still the first slice
        advance(Duration::from_millis(1)).await;
        ledger.deposit(Instant::now()); // the second slice
        assert_eq!(balance(&ledger), 3.0);
        advance(Duration::from_millis(8_999)).await; // 9.999 s
        assert_eq!(balance(&ledger), 3.0);
        advance(Duration::from_millis(1)).await; // 10 s: the first slice leaves
        assert_eq!(balance(&ledger), 1.0);
        advance(Duration::from_millis(999)).await;
        assert_eq!(balance(&ledger), 1.0);
        advance(Duration::from_millis(1)).await; // 11 s: the second slice leaves
        assert_eq!(balance(&ledger), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_reserve_is_always_there_and_refills() {
        let ledger = RatioLedger::new(Duration::from_secs(2), 3, 0.0);
        assert_eq!(ledger.reserve(), 6.0);
        assert_eq!(drain(&ledger), 6, "3 per second over a 2 s window");
        advance(Duration::from_secs(3)).await;
        assert_eq!(
            drain(&ledger),
            6,
            "the withdrawals expired with their window"
        );
        assert_eq!(balance(&ledger), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_behind_the_start_is_the_start() {
        let ledger = ledger(1.0);
        let before = Instant::now() - Duration::from_secs(5);
        ledger.deposit(before);
        assert!(ledger.withdraw(before));
        assert_eq!(ledger.balance(before), 0.0);
    }

    #[test]
    fn bad_values_are_clamped_not_panics() {
        let now = Instant::now();
        for ratio in [f64::NAN, -1.0, f64::NEG_INFINITY] {
            let ledger = RatioLedger::new(Duration::from_secs(1), 0, ratio);
            assert_eq!(ledger.ratio(), 0.0, "{ratio}");
            ledger.deposit(now);
            assert!(!ledger.withdraw(now));
        }
        for ratio in [1e9, f64::INFINITY] {
            assert_eq!(
                RatioLedger::new(Duration::from_secs(1), 0, ratio).ratio(),
                1000.0
            );
        }
        for window in [Duration::ZERO, Duration::from_nanos(1), Duration::MAX] {
            let ledger = RatioLedger::new(window, u32::MAX, 1000.0);
            for _ in 0..100 {
                ledger.deposit(now);
                ledger.withdraw(now);
            }
            let later = now + Duration::from_secs(3600);
            ledger.deposit(later);
            assert!(ledger.balance(later).is_finite(), "{window:?}");
        }
        assert!(format!("{:?}", ledger(0.2)).contains("ratio: 0.2"));
    }

    #[test]
    fn many_threads_never_overdraw() {
        let ledger = Arc::new(RatioLedger::new(Duration::from_secs(60), 0, 0.5));
        let now = Instant::now();
        for _ in 0..1_000 {
            ledger.deposit(now);
        }
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let ledger = ledger.clone();
                std::thread::spawn(move || (0..1_000).filter(|_| ledger.withdraw(now)).count())
            })
            .collect();
        let taken: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(taken, 500);
        assert_eq!(ledger.balance(now), 0.0);
    }
}

#[cfg(all(test, bulwark_loom))]
mod loom_model {
    use super::*;
    use loom::sync::Arc;

    /// The balance equals the reserve plus what the slices still hold.
    fn consistent(ledger: &RatioLedger) {
        let held: i64 = ledger
            .deposits
            .iter()
            .zip(ledger.withdrawals.iter())
            .map(|(d, w)| d.load(Acquire) - w.load(Acquire))
            .sum();
        assert_eq!(ledger.balance.load(Acquire), ledger.reserve + held);
    }

    /// Two callers race for the last unit in the ledger: exactly one gets it.
    #[test]
    fn racing_withdrawals_never_overdraw() {
        loom::model(|| {
            let ledger = Arc::new(RatioLedger::new(Duration::from_secs(10), 0, 1.0));
            let now = Instant::now();
            ledger.deposit(now);
            let other = {
                let ledger = ledger.clone();
                loom::thread::spawn(move || ledger.withdraw(now))
            };
            let mine = ledger.withdraw(now);
            let theirs = other.join().unwrap();
            assert!(mine ^ theirs, "exactly one withdrawal succeeds");
            assert_eq!(ledger.balance.load(Acquire), 0);
            consistent(&ledger);
        });
    }

    /// A deposit racing the expiry of its slot's old slice (claimed by another caller) is
    /// kept for the window or expired with the old slice, never counted twice or lost from
    /// the balance's bookkeeping; the slice expires once.
    #[test]
    fn a_deposit_racing_an_expiry_keeps_the_books_whole() {
        loom::model(|| {
            let ledger = Arc::new(RatioLedger::new(Duration::from_secs(10), 0, 1.0));
            let start = ledger.start;
            ledger.deposit(start); // slice 0
            ledger.deposit(start + Duration::from_secs(9)); // slice 9
            let at = start + Duration::from_secs(10); // slice 10 reuses slice 0's slot
            let depositor = {
                let ledger = ledger.clone();
                loom::thread::spawn(move || ledger.deposit(at))
            };
            let _ = ledger.balance(at);
            depositor.join().unwrap();
            let balance = ledger.balance.load(Acquire);
            assert!(balance == UNIT || balance == 2 * UNIT, "{balance}");
            consistent(&ledger);
        });
    }

    /// Two withdrawals racing the expiry of the slice that paid for one of them: at most
    /// the units deposited are taken, and the books stay whole.
    #[test]
    fn withdrawals_racing_an_expiry_keep_the_books_whole() {
        loom::model(|| {
            let ledger = Arc::new(RatioLedger::new(Duration::from_secs(10), 0, 1.0));
            let start = ledger.start;
            ledger.deposit(start);
            ledger.deposit(start + Duration::from_secs(9));
            let at = start + Duration::from_secs(10);
            let other = {
                let ledger = ledger.clone();
                loom::thread::spawn(move || ledger.withdraw(at))
            };
            let mine = ledger.withdraw(at);
            let theirs = other.join().unwrap();
            assert!(
                u8::from(mine) + u8::from(theirs) >= 1,
                "slice 9's unit is live"
            );
            consistent(&ledger);
        });
    }
}
