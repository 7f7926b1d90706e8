//! Retry budgets for [tower]: the extra load retries may add, capped and shared.
//!
//! Retries turn transient failures into successes; unbounded retries turn a partial outage
//! into a full one. A budget caps the extra load, shared by every caller that holds it:
//!
//! - [`RatioBudget`]: retries limited to a fraction of recent requests plus a minimum per
//!   second (the Finagle / tower `TpsBudget` model, exact and never overdrawn);
//! - [`TokenBucket`]: gRPC's retry throttling (failures take a token, successes add a
//!   fraction; no retries while half or fewer are left).
//!
//! Waits between attempts come from [`Backoffs`]: constant, linear, exponential or Fibonacci
//! [`Backoff`], with [`Jitter`] (none, full, equal, decorrelated), a cap and a seedable
//! generator.
//!
//! With feature `http`, [`pushback`] reads what a server asked for, capped by a maximum:
//! `Retry-After` as delay-seconds or HTTP-date (a malformed one is ignored, an overflowing
//! one is the longest wait), and `grpc-retry-pushback-ms`, where a negative or unparseable
//! value (one too large for any integer included) means "do not retry" (gRFC A6). It is
//! core's reading ([`tower_bulwark_core::pushback`]), the one the hedge layer pauses by.
//!
//! Both budgets implement `tower::retry::budget::Budget`, so they plug into plain `tower::retry`, and
//! are shared by wrapping them in an `Arc`.
//!
//! [`RetryPolicy`] puts it together as a `tower::retry::Policy` (tower's retry engine, no
//! second one): attempts, backoff, the budget, server pushback and the caller's deadline.
//!
//! [tower]: https://docs.rs/tower
#![forbid(unsafe_code)]

mod backoff;
mod budget;
mod decide;
mod events;
#[cfg(feature = "http")]
mod http;
mod policy;
#[cfg(feature = "http")]
mod replay;
mod throttle;

pub use self::backoff::{Backoff, Backoffs, Jitter};
pub use self::budget::RatioBudget;
pub use self::decide::{Decision, RetryClassify, RetryErrors, SkipRejections};
pub use self::events::{NoRetry, RetryEvent};
#[cfg(feature = "http")]
pub use self::http::{GrpcRetry, HttpRetry, ATTEMPT_HEADER, IDEMPOTENCY_KEY};
pub use self::policy::{Builder, RetryPolicy};
#[cfg(feature = "http")]
pub use self::replay::{Replay, ReplayBody, ReplayLayer};
pub use self::throttle::TokenBucket;
/// Server pushback, read as core reads it for every layer
/// ([`tower_bulwark_core::pushback`]: the table of every header value's reading).
#[cfg(feature = "http")]
pub use tower_bulwark_core::pushback::{pushback, Pushback};
