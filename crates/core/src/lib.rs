//! The shared contracts of [tower-bulwark](https://docs.rs/tower-bulwark).
//!
//! Every pattern crate (breaker, bulkhead, retry, deadline, shed) depends on this one and on
//! none of its siblings, so that one decision means the same in each of them:
//!
//! | contract | what it is |
//! |---|---|
//! | [`Outcome`], [`Classify`] | did a call fail? [`ErrorsAreFailures`] by default; [`HttpClassifier`] and [`GrpcClassifier`] with feature `http`; closures |
//! | [`Rejection`], [`find_rejection`] | the common view of "a layer refused this call", and its HTTP / gRPC responses |
//! | [`HandleRejectionsLayer`] | errors become responses, so a stack fits axum and tonic (feature `http`) |
//! | [`ProblemDetailsLayer`] | those responses get an `application/problem+json` body for HTTP clients (feature `http`) |
//! | `RejectionsAsStatusLayer` | refusals become `tonic::Status`es, so a tonic client sees the right code (feature `tonic`) |
//! | `repeat` | which requests are safe to send again, and which failed calls never left (feature `http`) |
//! | [`Deadline`], [`DeadlineSource`] | a request's absolute deadline, in extensions and as the task's current one; where a waiting layer finds it |
//! | [`Criticality`] | how important a request is, for load shedding; `Criticality::of_request`: what a server believes of the header (feature `http`) |
//! | [`Replayable`] | whether a request's body can be sent again (recorded by retry, read by backup) |
//! | [`events`] | listeners, `tracing`, and [`metrics`] (feature `metrics`) |
//! | `pushback` | what `Retry-After` and `grpc-retry-pushback-ms` ask for, read one way by retry and hedge (feature `http`) |
//! | [`budget::RatioLedger`] | a ratio budget's balance: deposits per call, withdrawals per extra attempt, over a sliding window, never overdrawn (the retry and hedge budgets) |
//! | [`window::SlidingCounts`] | counts over a sliding window of time, lock-free and exact (the breaker's time window, the adaptive throttle's) |
//! | [`places::Places`] | calls in flight against a limit: exact near it, spread over the cores far below it (the shed layer's count) |
//! | [`stripes::Striped`] | a layer's shared state behind a handle per core, so calls on different cores write different reference counts |
//! | [`ConfigError`], [`config`] | validated configuration |
//! | `redis` | the connection setup of the Redis-backed stores and limiters (feature `redis`) |
//! | `testing` | readiness probe and controllable inner service (feature `testing`) |
//!
//! # Features
//!
//! - `http`: HTTP and gRPC classifiers, rejection responses, [`HandleRejectionsLayer`],
//!   header parsing (`pushback`).
//! - `metrics`: events recorded through the `metrics` facade.
//! - `redis`: `redis::RedisConnection`, the Redis setup of the idempotency store and the
//!   fleet-wide rate limiter.
//! - `testing`: the test kit.
//! - `tonic`: rejections as `tonic::Status` for tonic clients (`RejectionsAsStatusLayer`,
//!   `rejection_to_status`); tonic's connect errors and HTTP/2 `REFUSED_STREAM` counted as
//!   calls that never reached the server (`repeat::never_sent`).
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod budget;
pub mod classify;
pub mod config;
mod criticality;
mod current;
mod deadline;
pub mod events;
pub mod grpc;
#[cfg(feature = "http")]
pub mod handle;
#[doc(hidden)]
pub mod json;
#[cfg(feature = "metrics")]
pub mod metrics;
mod name;
pub mod places;
#[cfg(feature = "http")]
pub mod pushback;
mod random;
#[cfg(feature = "redis")]
pub mod redis;
mod rejection;
#[cfg(feature = "http")]
pub mod repeat;
mod replay;
#[cfg(feature = "tonic")]
pub mod status;
pub mod stripes;
#[doc(hidden)]
pub mod sync;
#[cfg(feature = "testing")]
pub mod testing;
pub mod window;

pub use self::classify::{Classify, ErrorsAreFailures, Outcome};
#[cfg(feature = "http")]
pub use self::classify::{GrpcClassifier, HttpClassifier};
pub use self::config::ConfigError;
#[cfg(feature = "http")]
pub use self::criticality::RequestHead;
pub use self::criticality::{
    Criticality, CriticalityScope, ParseCriticalityError, CRITICALITY_HEADER,
};
#[cfg(feature = "http")]
pub use self::deadline::HttpDeadline;
pub use self::deadline::{Deadline, DeadlineScope, DeadlineSource, TaskDeadline};
pub use self::events::{Event, Listener, Listeners};
pub use self::grpc::GrpcCode;
#[cfg(feature = "http")]
pub use self::handle::{HandleRejections, HandleRejectionsLayer, ProblemDetailsLayer};
pub use self::name::Name;
pub use self::random::{SeededRng, SharedRng};
pub use self::rejection::{find_rejection, Rejection, RejectionKind};
#[cfg(feature = "http")]
pub use self::rejection::{
    is_grpc_request, is_shed_for_overload, ENVOY_OVERLOADED_HEADER, OVERLOADED_HEADER,
};
pub use self::replay::{CanReplay, Replayable};
#[cfg(feature = "tonic")]
pub use self::status::{rejection_to_status, RejectionsAsStatus, RejectionsAsStatusLayer};

/// The boxed error of tower services that add failure modes (the same type as
/// `tower::BoxError`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the futures of this workspace answer when polled again after they answered:
/// an error, never a panic. tower's contract forbids the second poll, but a caller's bug
/// should fail its call, not take its task down.
///
/// ```
/// let error = tower_bulwark_core::polled_after_completion();
/// assert_eq!(error.to_string(), "future polled after completion");
/// ```
pub fn polled_after_completion() -> BoxError {
    "future polled after completion".into()
}
