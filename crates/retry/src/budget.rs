//! [`RatioBudget`]: retries limited to a fraction of recent requests, Finagle-style.

use std::fmt;
// Counts, not decisions: std's atomics, relaxed (the decisions are the ledger's).
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;
use tower_bulwark_core::budget::RatioLedger;
use tower_bulwark_core::config::non_negative;
use tower_bulwark_core::ConfigError;

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
/// The balance is core's [`RatioLedger`] (shared with the hedge budget; its docs give the
/// design). Deposits and withdrawals are lock-free. Each reads the clock once. Each
/// leaves the balance with its own time slice, a window later, even when it races the
/// expiry of the slice its ring slot last held; the balance is never overdrawn.
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
    ledger: RatioLedger,
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
        Ok(RatioBudget {
            ledger: RatioLedger::new(ttl, min_per_sec, ratio),
            allowed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Records a request (call it for every first attempt).
    #[inline]
    pub fn deposit(&self) {
        self.ledger.deposit(Instant::now());
    }

    /// Takes one retry from the budget; `false` when there is none to take.
    pub fn withdraw(&self) -> bool {
        let taken = self.ledger.withdraw(Instant::now());
        let count = if taken { &self.allowed } else { &self.refused };
        count.fetch_add(1, Relaxed);
        taken
    }

    /// Retries available now (fractional).
    pub fn balance(&self) -> f64 {
        self.ledger.balance(Instant::now())
    }

    /// Retries allowed and refused since the budget was made.
    pub fn counts(&self) -> (u64, u64) {
        (self.allowed.load(Relaxed), self.refused.load(Relaxed))
    }
}

impl fmt::Debug for RatioBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RatioBudget")
            .field("deposit", &self.ledger.ratio())
            .field("reserve", &self.ledger.reserve())
            .field("balance", &self.ledger.balance(Instant::now()))
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
    use tokio::time::advance;

    // The ledger's arithmetic (exact ratios, expiry at slice boundaries, the reserve,
    // racing threads, loom models) is tested in core's `budget`; these are the budget's
    // own: its validation, its counts, tower's trait.

    #[tokio::test(start_paused = true)]
    async fn a_ratio_of_requests_plus_the_minimum_expiring_with_the_ttl() {
        let budget = RatioBudget::new(Duration::from_secs(10), 0, 0.6).unwrap();
        for _ in 0..5 {
            budget.deposit();
        }
        assert!(
            (budget.balance() - 3.0).abs() < 1e-9,
            "{}",
            budget.balance()
        );
        let retries = std::iter::from_fn(|| budget.withdraw().then_some(())).count();
        assert_eq!(retries, 3, "0.6 per request, not 1");
        assert!((budget.balance() - 0.0).abs() < 1e-9);

        let budget = RatioBudget::new(Duration::from_secs(2), 3, 0.0).unwrap();
        let first = std::iter::from_fn(|| budget.withdraw().then_some(())).count();
        assert_eq!(first, 6, "3 per second over a 2 s window");
        advance(Duration::from_secs(3)).await;
        let again = std::iter::from_fn(|| budget.withdraw().then_some(())).count();
        assert_eq!(again, 6, "the withdrawals expired with their window");
        assert_eq!(budget.counts(), (12, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn tower_retries_spend_it_through_the_trait() {
        use tower::retry::budget::Budget;
        let budget = RatioBudget::new(Duration::from_secs(10), 0, 0.5).unwrap();
        Budget::deposit(&budget);
        Budget::deposit(&budget);
        assert!(Budget::withdraw(&budget));
        assert!(!Budget::withdraw(&budget));
        assert_eq!(budget.counts(), (1, 1));
        let debug = format!("{budget:?}");
        assert!(debug.contains("deposit: 0.5"), "{debug}");
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
}
