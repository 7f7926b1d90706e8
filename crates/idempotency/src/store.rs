//! The [`Store`] trait: where keys are claimed and answers kept.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::{Fingerprint, Record, StoreKey, Token};

/// The future a [`Store`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What [`Store::claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The key was free and is now the caller's, until the lease ends.
    New,
    /// The key is taken: this is what is recorded under it.
    Existing(Record),
}

/// Where keys are claimed and answers kept: [`MemoryStore`](crate::MemoryStore) in the
/// process, `RedisStore` (feature `redis`) shared by replicas.
///
/// Each method is one atomic step; a store shared by several processes must make them
/// atomic across processes too (Redis does it with `SET NX` and scripts).
pub trait Store: Send + Sync + 'static {
    /// Claims `key` for a first execution: if nothing is recorded under it (or what was
    /// recorded expired), records `fingerprint` as running under `token` for `lease` and
    /// answers [`Claimed::New`]; otherwise answers what is recorded.
    fn claim(
        &self,
        key: StoreKey,
        fingerprint: Fingerprint,
        token: Token,
        lease: Duration,
    ) -> StoreFuture<'_, Claimed>;

    /// Replaces the claim of `token` on `key` by `record`, kept for `ttl`; also if the
    /// claim's lease ended and the key holds nothing (the answer of a run that outlived its
    /// lease is still worth keeping). Answers `false` (and changes nothing) if another
    /// execution's claim or answer is there: it took the key after the lease ended.
    fn complete(
        &self,
        key: StoreKey,
        token: Token,
        record: Record,
        ttl: Duration,
    ) -> StoreFuture<'_, bool>;

    /// Removes the claim of `token` on `key`, so the next request with the key runs.
    /// Answers `false` (and changes nothing) if the claim is not `token`'s.
    fn release(&self, key: StoreKey, token: Token) -> StoreFuture<'_, bool>;
}

/// A store could not be reached or answered something unreadable.
#[derive(Debug)]
pub struct StoreError(Box<dyn std::error::Error + Send + Sync>);

impl StoreError {
    /// Wraps the store's own error.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError(error.into())
    }

    /// A store that did not answer in time.
    pub(crate) fn timed_out(after: Duration) -> Self {
        StoreError::new(format!("the store did not answer within {after:?}"))
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "idempotency store failed: {}", self.0)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// What the layer does when its store fails (down, slow, unreadable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnStoreError {
    /// Refuse the request with 503 and `Retry-After`: nothing runs that the store cannot
    /// vouch for. The default. What the store had survives an outage only if the store
    /// keeps it (Redis with persistence or replication), and an answer being kept when
    /// the store went down is written once it is back, if that is within the claim's
    /// lease; past the lease, a repeat runs again.
    #[default]
    FailClosed,
    /// Run the request without protection: availability over exactly-once. A request
    /// repeated while the store is down runs again.
    FailOpen,
}
