//! [`RatioBudget`]: retries limited to a fraction of recent requests, Finagle-style.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;
use tower_bulwark_core::config::non_negative;
use tower_bulwark_core::ConfigError;

use tower_bulwark_core::sync::{AtomicI64, AtomicU64, Ordering::*};

/// One retry, in the budget's fixed-point units: ratios are exact to a thousandth.
const UNIT: i64 = 1000;
/// How many slices the time window is kept in.
const BUCKETS: u64 = 10;

/// A retry budget: every request deposits `retry_ratio` of a retry, every retry withdraws
/// one, and deposits and withdrawals older than `ttl` expire. On top of that,
/// `min_per_sec` retries per second are always allowed, so a quiet service can still
/// retry.
///
/// This is the model of Finagle's and tower's `TpsBudget`, with their known problems fixed:
/// - the constructor returns a [`ConfigError`] instead of panicking on bad input;
/// - ratios are exact (to a thousandth): a 0.6 ratio allows 3 retries per 5 requests, not 1
///   per request;
/// - a withdrawal is one compare-and-swap on the balance, so concurrent withdrawals can
///   never overdraw it.
///
/// Deposits and withdrawals are lock-free. Each reads the clock once. At the instant a time
/// slice expires, a deposit or withdrawal racing the expiry may be counted in the next
/// slice instead; the balance is never overdrawn.
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_retry::RatioBudget;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// // 20% of requests may be retried, plus nothing for free.
/// let budget = RatioBudget::new(Duration::from_secs(10), 0, 0.2).unwrap();
/// for _ in 0..10 {
///     budget.deposit();
/// }
/// assert!(budget.withdraw());
/// assert!(budget.withdraw());
/// assert!(!budget.withdraw(), "10 requests at 20% buy 2 retries");
/// # }
/// ```
pub struct RatioBudget {
    deposit: i64,
    reserve: i64,
    start: Instant,
    bucket_nanos: u64,
    /// The newest time slice whose expiry has been claimed.
    epoch: AtomicU64,
    /// Reserve + deposits − withdrawals of the live slices, in units.
    balance: AtomicI64,
    deposits: Box<[AtomicI64]>,
    withdrawals: Box<[AtomicI64]>,
    allowed: AtomicU64,
    refused: AtomicU64,
}

impl RatioBudget {
    /// A budget over a window of `ttl` (1 s to 60 s), always allowing `min_per_sec`
    /// retries per second, plus `retry_ratio` retries per request (0 or more; above 1 means
    /// more than one retry per request).
    pub fn new(ttl: Duration, min_per_sec: u32, retry_ratio: f64) -> Result<Self, ConfigError> {
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&ttl) {
            return Err(ConfigError::new(
                "ttl",
                format!("must be within 1s..=60s, got {ttl:?}"),
            ));
        }
        let ratio = non_negative("retry_ratio", retry_ratio)?;
        if ratio > 1000.0 {
            return Err(ConfigError::new(
                "retry_ratio",
                format!("must be at most 1000, got {ratio}"),
            ));
        }
        let reserve = (f64::from(min_per_sec) * ttl.as_secs_f64() * UNIT as f64).round() as i64;
        let bucket_nanos = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX) / BUCKETS;
        Ok(RatioBudget {
            deposit: (ratio * UNIT as f64).round() as i64,
            reserve,
            start: Instant::now(),
            bucket_nanos,
            epoch: AtomicU64::new(0),
            balance: AtomicI64::new(reserve),
            deposits: (0..BUCKETS).map(|_| AtomicI64::new(0)).collect(),
            withdrawals: (0..BUCKETS).map(|_| AtomicI64::new(0)).collect(),
            allowed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Records a request (call it for every first attempt).
    #[inline]
    pub fn deposit(&self) {
        let slot = self.advance();
        self.balance.fetch_add(self.deposit, AcqRel);
        self.deposits[slot].fetch_add(self.deposit, Relaxed);
    }

    /// Takes one retry from the budget; `false` when there is none to take.
    pub fn withdraw(&self) -> bool {
        let slot = self.advance();
        let taken = self
            .balance
            .fetch_update(AcqRel, Acquire, |balance| {
                (balance >= UNIT).then_some(balance - UNIT)
            })
            .is_ok();
        if taken {
            self.withdrawals[slot].fetch_add(UNIT, Relaxed);
            self.allowed.fetch_add(1, Relaxed);
        } else {
            self.refused.fetch_add(1, Relaxed);
        }
        taken
    }

    /// Retries available now (fractional).
    pub fn balance(&self) -> f64 {
        self.advance();
        self.balance.load(Acquire) as f64 / UNIT as f64
    }

    /// Retries allowed and refused since the budget was made.
    pub fn counts(&self) -> (u64, u64) {
        (self.allowed.load(Relaxed), self.refused.load(Relaxed))
    }

    /// Expires the slices that left the window; returns the slot of the current one.
    #[inline]
    fn advance(&self) -> usize {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let epoch = self.epoch.load(Acquire);
        // Still within the newest slice: no division, nothing to expire.
        if nanos < (epoch + 1).saturating_mul(self.bucket_nanos) {
            return (epoch % BUCKETS) as usize;
        }
        self.expire_until(nanos / self.bucket_nanos.max(1))
    }

    /// Expires every slice up to `current`, each exactly once however many threads race.
    #[cold]
    fn expire_until(&self, current: u64) -> usize {
        loop {
            let seen = self.epoch.load(Acquire);
            if seen >= current {
                break;
            }
            // Claim one step (or, after a long idle, everything) so each slice expires once.
            let next = if current - seen >= BUCKETS {
                current
            } else {
                seen + 1
            };
            if self
                .epoch
                .compare_exchange(seen, next, AcqRel, Acquire)
                .is_err()
            {
                continue;
            }
            let expired = if current - seen >= BUCKETS {
                0..BUCKETS
            } else {
                next % BUCKETS..next % BUCKETS + 1
            };
            for slot in expired.map(|slot| slot as usize) {
                let deposited = self.deposits[slot].swap(0, AcqRel);
                let withdrawn = self.withdrawals[slot].swap(0, AcqRel);
                self.balance.fetch_add(withdrawn - deposited, AcqRel);
            }
        }
        (current % BUCKETS) as usize
    }
}

impl fmt::Debug for RatioBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RatioBudget")
            .field("deposit", &(self.deposit as f64 / UNIT as f64))
            .field("reserve", &(self.reserve as f64 / UNIT as f64))
            .field(
                "balance",
                &(self.balance.load(Relaxed) as f64 / UNIT as f64),
            )
            .finish()
    }
}

impl tower::retry::budget::Budget for RatioBudget {
    fn deposit(&self) {
        RatioBudget::deposit(self)
    }

    fn withdraw(&self) -> bool {
        RatioBudget::withdraw(self)
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::time::advance;

    fn budget(ratio: f64) -> RatioBudget {
        RatioBudget::new(Duration::from_secs(10), 0, ratio).unwrap()
    }

    fn retries_after(budget: &RatioBudget, requests: usize) -> usize {
        for _ in 0..requests {
            budget.deposit();
        }
        std::iter::from_fn(|| budget.withdraw().then_some(())).count()
    }

    #[tokio::test(start_paused = true)]
    async fn ratios_are_exact() {
        assert_eq!(retries_after(&budget(0.6), 5), 3, "0.6 per request, not 1");
        assert_eq!(retries_after(&budget(0.6), 1), 0);
        assert_eq!(retries_after(&budget(0.1), 100), 10);
        assert_eq!(retries_after(&budget(0.1), 9), 0);
        assert_eq!(retries_after(&budget(0.0), 1_000), 0);
        assert_eq!(retries_after(&budget(2.5), 4), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn fractions_accumulate_across_requests() {
        let budget = budget(0.6);
        budget.deposit();
        assert!(!budget.withdraw());
        budget.deposit();
        assert!(budget.withdraw(), "1.2 retries banked");
        assert!((budget.balance() - 0.2).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_and_withdrawals_expire_after_the_ttl() {
        let budget = budget(1.0);
        for _ in 0..5 {
            budget.deposit();
        }
        assert!(budget.withdraw());
        assert_eq!(budget.balance(), 4.0);
        advance(Duration::from_secs(5)).await;
        budget.deposit();
        assert_eq!(budget.balance(), 5.0);
        // The first five deposits (and the withdrawal) leave the window; the sixth stays.
        advance(Duration::from_secs(6)).await;
        assert_eq!(budget.balance(), 1.0);
        advance(Duration::from_secs(60)).await;
        assert_eq!(budget.balance(), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn slices_expire_exactly_at_their_boundaries() {
        // A 10 s window kept in 1 s slices.
        let budget = budget(1.0);
        budget.deposit();
        advance(Duration::from_millis(999)).await;
        budget.deposit(); // still the first slice
        advance(Duration::from_millis(1)).await;
        budget.deposit(); // the second slice
        assert_eq!(budget.balance(), 3.0);
        advance(Duration::from_millis(8_999)).await; // 9.999 s
        assert_eq!(budget.balance(), 3.0);
        advance(Duration::from_millis(1)).await; // 10 s: the first slice leaves
        assert_eq!(budget.balance(), 1.0);
        advance(Duration::from_millis(999)).await;
        assert_eq!(budget.balance(), 1.0);
        advance(Duration::from_millis(1)).await; // 11 s: the second slice leaves
        assert_eq!(budget.balance(), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_minimum_per_second_is_always_there_and_refills() {
        let budget = RatioBudget::new(Duration::from_secs(2), 3, 0.0).unwrap();
        let first: usize = std::iter::from_fn(|| budget.withdraw().then_some(())).count();
        assert_eq!(first, 6, "3 per second over a 2 s window");
        advance(Duration::from_secs(3)).await;
        let again: usize = std::iter::from_fn(|| budget.withdraw().then_some(())).count();
        assert_eq!(again, 6, "the withdrawals expired with their window");
        assert_eq!(budget.counts(), (12, 2));
    }

    #[test]
    fn bad_arguments_are_errors_naming_the_argument() {
        let err = |ttl: u64, ratio: f64| {
            RatioBudget::new(Duration::from_millis(ttl), 1, ratio)
                .unwrap_err()
                .field()
        };
        assert_eq!(err(999, 0.1), "ttl");
        assert_eq!(err(60_001, 0.1), "ttl");
        assert_eq!(err(1_000, -0.1), "retry_ratio");
        assert_eq!(err(1_000, f64::NAN), "retry_ratio");
        assert_eq!(err(1_000, f64::INFINITY), "retry_ratio");
        assert_eq!(err(1_000, 1e9), "retry_ratio");
        assert!(RatioBudget::new(Duration::from_secs(60), u32::MAX, 1000.0).is_ok());
    }

    #[test]
    fn many_threads_never_overdraw() {
        let budget = Arc::new(RatioBudget::new(Duration::from_secs(60), 0, 0.5).unwrap());
        for _ in 0..1_000 {
            budget.deposit();
        }
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let budget = budget.clone();
                std::thread::spawn(move || (0..1_000).filter(|_| budget.withdraw()).count())
            })
            .collect();
        let taken: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(taken, 500);
        assert_eq!(budget.balance(), 0.0);
    }
}

#[cfg(all(test, bulwark_loom))]
mod loom_model {
    use super::*;
    use loom::sync::Arc;

    /// Two threads race for the last retry in the budget: exactly one gets it.
    #[test]
    fn racing_withdrawals_never_overdraw() {
        loom::model(|| {
            let budget = Arc::new(RatioBudget::new(Duration::from_secs(10), 0, 1.0).unwrap());
            budget.deposit();
            let other = {
                let budget = budget.clone();
                loom::thread::spawn(move || budget.withdraw())
            };
            let mine = budget.withdraw();
            let theirs = other.join().unwrap();
            assert!(mine ^ theirs, "exactly one withdrawal succeeds");
            assert_eq!(budget.balance.load(Acquire), 0);
        });
    }
}
