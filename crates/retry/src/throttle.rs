//! [`TokenBucket`]: gRPC's retry throttling.

use std::fmt;

use tower_bulwark_core::config::non_negative;
use tower_bulwark_core::ConfigError;

use tower_bulwark_core::sync::{AtomicI64, AtomicU64, Ordering::*};

/// Thousandths of a token: `token_ratio` is exact to three decimals, as gRPC specifies.
const UNIT: i64 = 1000;

/// Retry throttling in the gRPC model: the bucket starts full with `max_tokens`; every
/// failed attempt takes one token, every success adds `token_ratio`; retries are allowed
/// only while more than half the tokens are left. When a dependency fails for everyone,
/// the bucket drains and retries stop, for every caller sharing it.
///
/// ```
/// use tower_bulwark_retry::TokenBucket;
///
/// let bucket = TokenBucket::new(10, 0.1).unwrap();
/// for _ in 0..4 {
///     assert!(bucket.withdraw(), "tokens left: above half");
/// }
/// assert!(!bucket.withdraw(), "5 of 10 left: no more retries");
/// for _ in 0..20 {
///     bucket.deposit(); // successes refill 0.1 each: back to 7
/// }
/// assert!(bucket.withdraw());
/// ```
pub struct TokenBucket {
    max: i64,
    ratio: i64,
    tokens: AtomicI64,
    allowed: AtomicU64,
    refused: AtomicU64,
}

impl TokenBucket {
    /// A full bucket of `max_tokens` (1 to 1000, as gRPC allows) refilled by `token_ratio`
    /// (0 to 1000) per success.
    pub fn new(max_tokens: u32, token_ratio: f64) -> Result<Self, ConfigError> {
        if !(1..=1000).contains(&max_tokens) {
            return Err(ConfigError::new(
                "max_tokens",
                format!("must be within 1..=1000, got {max_tokens}"),
            ));
        }
        let ratio = non_negative("token_ratio", token_ratio)?;
        if ratio > 1000.0 {
            return Err(ConfigError::new(
                "token_ratio",
                format!("must be at most 1000, got {ratio}"),
            ));
        }
        let max = i64::from(max_tokens) * UNIT;
        Ok(TokenBucket {
            max,
            ratio: (ratio * UNIT as f64).round() as i64,
            tokens: AtomicI64::new(max),
            allowed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Records a success: adds `token_ratio`, up to the maximum.
    pub fn deposit(&self) {
        let _ = self
            .tokens
            .fetch_update(AcqRel, Acquire, |t| Some((t + self.ratio).min(self.max)));
    }

    /// Records a failed attempt (takes a token) and says whether it may be retried: only
    /// while more than half the tokens are left after taking it.
    pub fn withdraw(&self) -> bool {
        let before = self
            .tokens
            .fetch_update(AcqRel, Acquire, |t| Some((t - UNIT).max(0)))
            .unwrap_or(0);
        let allowed = (before - UNIT).max(0) * 2 > self.max;
        let counter = if allowed {
            &self.allowed
        } else {
            &self.refused
        };
        counter.fetch_add(1, Relaxed);
        allowed
    }

    /// Tokens left (fractional).
    pub fn tokens(&self) -> f64 {
        self.tokens.load(Acquire) as f64 / UNIT as f64
    }

    /// Retries allowed and refused since the bucket was made.
    pub fn counts(&self) -> (u64, u64) {
        (self.allowed.load(Relaxed), self.refused.load(Relaxed))
    }
}

impl fmt::Debug for TokenBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBucket")
            .field("tokens", &self.tokens())
            .field("max", &(self.max as f64 / UNIT as f64))
            .finish()
    }
}

impl tower::retry::budget::Budget for TokenBucket {
    fn deposit(&self) {
        TokenBucket::deposit(self)
    }

    fn withdraw(&self) -> bool {
        TokenBucket::withdraw(self)
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    #[test]
    fn drains_to_half_and_refills_by_the_ratio() {
        let bucket = TokenBucket::new(4, 0.5).unwrap();
        assert!(bucket.withdraw()); // 3 left > 2
        assert!(!bucket.withdraw()); // 2 left: not above half
        assert!(!bucket.withdraw()); // 1
        assert_eq!(bucket.tokens(), 1.0);
        for _ in 0..4 {
            bucket.deposit();
        }
        assert_eq!(bucket.tokens(), 3.0);
        assert!(!bucket.withdraw(), "2 left after taking one");
        for _ in 0..100 {
            bucket.deposit();
        }
        assert_eq!(bucket.tokens(), 4.0, "capped at the maximum");
        assert_eq!(bucket.counts(), (1, 3));
    }

    #[test]
    fn tower_retries_spend_it_through_the_trait() {
        use tower::retry::budget::Budget;
        let bucket = TokenBucket::new(4, 0.5).unwrap();
        assert!(Budget::withdraw(&bucket), "3 left > 2");
        assert!(!Budget::withdraw(&bucket), "2 left: not above half");
        Budget::deposit(&bucket);
        Budget::deposit(&bucket);
        assert_eq!(bucket.tokens(), 3.0);
        assert_eq!(bucket.counts(), (1, 1));
    }

    #[test]
    fn never_goes_below_zero() {
        let bucket = TokenBucket::new(2, 0.1).unwrap();
        for _ in 0..10 {
            bucket.withdraw();
        }
        assert_eq!(bucket.tokens(), 0.0);
        bucket.deposit();
        assert!((bucket.tokens() - 0.1).abs() < 1e-9);
    }

    #[test]
    fn bad_arguments_name_their_field() {
        assert_eq!(TokenBucket::new(0, 0.1).unwrap_err().field(), "max_tokens");
        assert_eq!(
            TokenBucket::new(1001, 0.1).unwrap_err().field(),
            "max_tokens"
        );
        assert_eq!(
            TokenBucket::new(10, -1.0).unwrap_err().field(),
            "token_ratio"
        );
        assert_eq!(
            TokenBucket::new(10, f64::NAN).unwrap_err().field(),
            "token_ratio"
        );
        assert_eq!(
            TokenBucket::new(10, 1e6).unwrap_err().field(),
            "token_ratio"
        );
    }
}
