//! The hedge budget: hedges limited to a share of recent calls.
//!
//! The retry crate's `RatioBudget` design (CONTRIBUTING.md, rule 13 keeps the crates apart,
//! so it is repeated here, smaller): every call deposits `ratio` of a hedge, every hedge
//! withdraws one, in fixed-point units exact to a thousandth; deposits and withdrawals
//! older than the window expire, slice by slice; `min_per_sec` hedges a second are always
//! there. A withdrawal is one compare-and-swap, so racing hedges never overdraw it.

use std::time::Duration;

use tokio::time::Instant;
use tower_bulwark_core::sync::{AtomicI64, AtomicU64, Ordering::*};

/// One hedge, in the budget's units.
const UNIT: i64 = 1000;
/// Slices of the window.
const SLICES: u64 = 10;

pub(crate) struct Budget {
    deposit: i64,
    start: Instant,
    slice_nanos: u64,
    /// The newest slice whose expiry has been claimed.
    epoch: AtomicU64,
    /// Reserve + live deposits - live withdrawals, in units.
    balance: AtomicI64,
    deposits: Box<[AtomicI64]>,
    withdrawals: Box<[AtomicI64]>,
}

impl Budget {
    /// `ratio` hedges per call (validated by the builder), `min_per_sec` always, over
    /// `window` (1 s to 60 s, validated by the builder).
    pub(crate) fn new(window: Duration, min_per_sec: u32, ratio: f64) -> Self {
        let reserve = (f64::from(min_per_sec) * window.as_secs_f64() * UNIT as f64).round();
        let slice_nanos = (u64::try_from(window.as_nanos()).unwrap_or(u64::MAX) / SLICES).max(1);
        Budget {
            deposit: (ratio * UNIT as f64).round() as i64,
            start: Instant::now(),
            slice_nanos,
            epoch: AtomicU64::new(0),
            balance: AtomicI64::new(reserve as i64),
            deposits: (0..SLICES).map(|_| AtomicI64::new(0)).collect(),
            withdrawals: (0..SLICES).map(|_| AtomicI64::new(0)).collect(),
        }
    }

    /// Records a call that may be hedged.
    #[inline]
    pub(crate) fn deposit(&self, now: Instant) {
        if self.deposit == 0 {
            return;
        }
        let slot = self.advance(now);
        self.balance.fetch_add(self.deposit, AcqRel);
        self.deposits[slot].fetch_add(self.deposit, Relaxed);
    }

    /// Takes one hedge; `false` when there is none.
    pub(crate) fn withdraw(&self, now: Instant) -> bool {
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

    /// Hedges available now (fractional).
    pub(crate) fn balance(&self, now: Instant) -> f64 {
        self.advance(now);
        self.balance.load(Acquire) as f64 / UNIT as f64
    }

    #[inline]
    fn advance(&self, now: Instant) -> usize {
        let nanos =
            u64::try_from(now.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        let epoch = self.epoch.load(Acquire);
        if nanos < (epoch + 1).saturating_mul(self.slice_nanos) {
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
                self.balance.fetch_add(withdrawn - deposited, AcqRel);
            }
        }
        (current % SLICES) as usize
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;
    use tokio::time::advance;

    fn hedges(budget: &Budget) -> usize {
        std::iter::from_fn(|| budget.withdraw(Instant::now()).then_some(())).count()
    }

    #[tokio::test(start_paused = true)]
    async fn a_share_of_calls_plus_the_minimum_expiring_with_the_window() {
        let budget = Budget::new(Duration::from_secs(10), 0, 0.05);
        for _ in 0..100 {
            budget.deposit(Instant::now());
        }
        assert_eq!(hedges(&budget), 5);
        for _ in 0..19 {
            budget.deposit(Instant::now());
        }
        assert_eq!(hedges(&budget), 0, "0.95 of a hedge");
        budget.deposit(Instant::now());
        assert_eq!(hedges(&budget), 1);

        let reserved = Budget::new(Duration::from_secs(2), 3, 0.0);
        assert_eq!(hedges(&reserved), 6, "3 a second over 2 s");
        advance(Duration::from_secs(3)).await;
        assert_eq!(hedges(&reserved), 6, "the withdrawals expired");
        assert_eq!(reserved.balance(Instant::now()), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_expire() {
        let budget = Budget::new(Duration::from_secs(10), 0, 1.0);
        budget.deposit(Instant::now());
        advance(Duration::from_secs(5)).await;
        budget.deposit(Instant::now());
        assert_eq!(budget.balance(Instant::now()), 2.0);
        advance(Duration::from_secs(6)).await;
        assert_eq!(budget.balance(Instant::now()), 1.0);
        advance(Duration::from_secs(60)).await;
        assert_eq!(budget.balance(Instant::now()), 0.0);
    }
}

#[cfg(all(test, bulwark_loom))]
mod loom_model {
    use super::*;
    use loom::sync::Arc;

    /// Two hedges race for the last one in the budget: exactly one is sent.
    #[test]
    fn racing_withdrawals_never_overdraw() {
        loom::model(|| {
            let budget = Arc::new(Budget::new(Duration::from_secs(10), 0, 1.0));
            let now = Instant::now();
            budget.deposit(now);
            let other = {
                let budget = budget.clone();
                loom::thread::spawn(move || budget.withdraw(now))
            };
            let mine = budget.withdraw(now);
            let theirs = other.join().unwrap();
            assert!(mine ^ theirs, "exactly one withdrawal succeeds");
            assert_eq!(budget.balance.load(Acquire), 0);
        });
    }
}
