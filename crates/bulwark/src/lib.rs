#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder_ext;
pub mod prelude;
#[cfg(all(
    feature = "http",
    feature = "breaker",
    feature = "bulkhead",
    feature = "retry",
    feature = "deadline",
    feature = "shed",
    feature = "health"
))]
pub mod presets;

#[cfg(all(
    feature = "serde",
    feature = "http",
    feature = "breaker",
    feature = "bulkhead",
    feature = "retry",
    feature = "deadline",
    feature = "shed",
    feature = "health"
))]
mod stack_config;

#[cfg(feature = "reqwest")]
mod reqwest_service;

// A page of docs: the errors users meet most and their fixes, each error compiled as a
// test. It needs the presets and `reqwest` for its examples.
#[cfg(all(
    feature = "reqwest",
    feature = "breaker",
    feature = "bulkhead",
    feature = "retry",
    feature = "deadline",
    feature = "shed",
    feature = "health"
))]
pub mod compile_errors;

pub use self::builder_ext::BulwarkExt;

/// States that `service` serves `Req`; does nothing at run time.
///
/// When a call on a stack fails with *"the method `oneshot` exists …, but its trait bounds
/// were not satisfied"*, put this on the line before: the compiler then names the
/// requirement that fails (a request that is not `Clone` under a retry, a classifier that
/// cannot read the responses) instead of the whole stack. The `compile_errors` page (with
/// features `reqwest` and the presets' on) shows the common ones and their fixes.
///
/// ```
/// use tower::service_fn;
///
/// let echo = service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n) });
/// tower_bulwark::expect_service::<u32, _>(&echo);
/// ```
pub fn expect_service<Req, S: tower::Service<Req>>(service: &S) {
    let _ = service;
}
#[cfg(feature = "reqwest")]
pub use self::reqwest_service::{ReqwestFuture, ReqwestService, Unsendable};
#[cfg(all(
    feature = "serde",
    feature = "http",
    feature = "breaker",
    feature = "bulkhead",
    feature = "retry",
    feature = "deadline",
    feature = "shed",
    feature = "health"
))]
pub use self::stack_config::{
    AcceptSettings, ClientSettings, PropagateSettings, RetrySettings, ServerSettings, StackConfig,
};

/// The circuit breaker: [`tower-bulwark-breaker`](https://docs.rs/tower-bulwark-breaker).
#[cfg(feature = "breaker")]
#[doc(inline)]
pub use tower_bulwark_breaker as breaker;

/// The bulkhead: [`tower-bulwark-bulkhead`](https://docs.rs/tower-bulwark-bulkhead).
#[cfg(feature = "bulkhead")]
#[doc(inline)]
pub use tower_bulwark_bulkhead as bulkhead;

/// Retry policy and budgets: [`tower-bulwark-retry`](https://docs.rs/tower-bulwark-retry).
#[cfg(feature = "retry")]
#[doc(inline)]
pub use tower_bulwark_retry as retry;

/// Deadline propagation and timeouts:
/// [`tower-bulwark-deadline`](https://docs.rs/tower-bulwark-deadline).
#[cfg(feature = "deadline")]
#[doc(inline)]
pub use tower_bulwark_deadline as deadline;

/// Load shedding and client-side throttling:
/// [`tower-bulwark-shed`](https://docs.rs/tower-bulwark-shed).
#[cfg(feature = "shed")]
#[doc(inline)]
pub use tower_bulwark_shed as shed;

/// Fault injection: [`tower-bulwark-chaos`](https://docs.rs/tower-bulwark-chaos).
#[cfg(feature = "chaos")]
#[doc(inline)]
pub use tower_bulwark_chaos as chaos;

/// Health endpoints and graceful drain, and with feature `dashboard` the operator
/// dashboard (`health::Dashboard`, served by `HealthService::dashboard`; the presets'
/// `register` puts their parts on it):
/// [`tower-bulwark-health`](https://docs.rs/tower-bulwark-health).
#[cfg(feature = "health")]
#[doc(inline)]
pub use tower_bulwark_health as health;

/// Degraded answers instead of failures:
/// [`tower-bulwark-fallback`](https://docs.rs/tower-bulwark-fallback).
#[cfg(feature = "fallback")]
#[doc(inline)]
pub use tower_bulwark_fallback as fallback;

/// Idempotency keys on the server: a request retried with the same `Idempotency-Key` runs
/// once ([`tower-bulwark-idempotency`](https://docs.rs/tower-bulwark-idempotency)).
#[cfg(feature = "idempotency")]
#[doc(inline)]
pub use tower_bulwark_idempotency as idempotency;

/// Keyed rate limits: 429 with the IETF `RateLimit` headers on servers, waiting up to the
/// deadline on clients ([`tower-bulwark-ratelimit`](https://docs.rs/tower-bulwark-ratelimit)).
#[cfg(feature = "ratelimit")]
#[doc(inline)]
pub use tower_bulwark_ratelimit as ratelimit;

/// Request coalescing: identical requests in flight share one upstream call, every waiter
/// gets the answer ([`tower-bulwark-coalesce`](https://docs.rs/tower-bulwark-coalesce)).
#[cfg(feature = "coalesce")]
#[doc(inline)]
pub use tower_bulwark_coalesce as coalesce;

/// Hedged requests: a second attempt when the first is slow, the first good answer wins,
/// within a budget and paused while the dependency sheds
/// ([`tower-bulwark-hedge`](https://docs.rs/tower-bulwark-hedge)).
#[cfg(feature = "hedge")]
#[doc(inline)]
pub use tower_bulwark_hedge as hedge;

/// Outlier ejection for load-balanced clients: an endpoint failing while its peers succeed
/// reports not-ready for a growing time, never more than a share of them at once
/// ([`tower-bulwark-outlier`](https://docs.rs/tower-bulwark-outlier)).
#[cfg(feature = "outlier")]
#[doc(inline)]
pub use tower_bulwark_outlier as outlier;

/// Degradation switches flipped in tiers by triggers, with hysteresis and overrides:
/// [`tower-bulwark-degrade`](https://docs.rs/tower-bulwark-degrade).
#[cfg(feature = "degrade")]
#[doc(inline)]
pub use tower_bulwark_degrade as degrade;

// The shared contracts of `tower-bulwark-core`, by module and flat.
#[cfg(feature = "testing")]
#[doc(inline)]
pub use tower_bulwark_core::testing;
pub use tower_bulwark_core::{classify, config, events, grpc};
#[cfg(feature = "metrics")]
#[doc(inline)]
pub use tower_bulwark_core::{metric_name, metrics};

pub use tower_bulwark_core::{
    find_rejection, BoxError, Classify, ConfigError, Criticality, CriticalityScope, Deadline,
    DeadlineScope, ErrorsAreFailures, Event, GrpcCode, Listener, Listeners, Name, Outcome,
    ParseCriticalityError, Rejection, RejectionKind, SeededRng, CRITICALITY_HEADER,
};
#[cfg(feature = "http")]
#[doc(inline)]
pub use tower_bulwark_core::{
    handle, is_grpc_request, is_shed_for_overload, repeat, GrpcClassifier, HandleRejections,
    HandleRejectionsLayer, HttpClassifier, ProblemDetailsLayer, ENVOY_OVERLOADED_HEADER,
    OVERLOADED_HEADER,
};
#[cfg(feature = "tonic")]
#[doc(inline)]
pub use tower_bulwark_core::{
    rejection_to_status, status, RejectionsAsStatus, RejectionsAsStatusLayer,
};
