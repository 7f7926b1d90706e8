//! The [`Limiter`] contract: what the layers ask of a rate limiter, local or shared.

use std::fmt;
use std::future::Future;
use std::time::Duration;

/// What a limiter answered for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go now (a permit was taken).
    pub allowed: bool,
    /// Requests the key may still send at once (the burst left), for the `RateLimit`
    /// header's `r`.
    pub remaining: u32,
    /// How long until the key's whole burst is available again, for the `RateLimit`
    /// header's `t`.
    pub reset: Duration,
    /// When refused: how long until one permit is free (`Retry-After`). Zero when allowed.
    pub retry_after: Duration,
}

/// A limiter could not answer (a shared store down or slow).
#[derive(Debug)]
pub struct LimitError(Box<dyn std::error::Error + Send + Sync>);

impl LimitError {
    /// Wraps the store's own error.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        LimitError(error.into())
    }
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limiter failed: {}", self.0)
    }
}

impl std::error::Error for LimitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// A rate limiter the layers ask, one permit per request, by key: [`LocalLimiter`]
/// (governor's GCRA in the process, no allocation per call) or `RedisLimiter` (feature
/// `redis`: the same GCRA in Redis, one limit across replicas).
///
/// [`LocalLimiter`]: crate::LocalLimiter
pub trait Limiter<K>: Send + Sync + 'static {
    /// The answer's future: ready at once for a local limiter.
    type Future: Future<Output = Result<Decision, LimitError>> + Send + 'static;

    /// Takes one permit for `key` if one is free, and says how much is left.
    fn acquire(&self, key: &K) -> Self::Future;

    /// The same as [`acquire`](Limiter::acquire), answered without a future when the
    /// limiter can answer at once (a local limiter always can): the layers then decide
    /// inside `call`, without holding the request or a clone of the inner service. `None`
    /// (the default) means "ask [`acquire`](Limiter::acquire)", which a limiter that asks
    /// a store over the network does.
    fn acquire_now(&self, key: &K) -> Option<Result<Decision, LimitError>> {
        let _ = key;
        None
    }

    /// The limit, for the `RateLimit-Policy` header.
    fn quota(&self) -> &crate::Quota;
}
