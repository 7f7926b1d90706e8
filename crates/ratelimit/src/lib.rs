//! Rate limits for [tower]: each client, API key or route gets a quota, and what goes
//! over it is refused at once on a server, or waits for its turn on a client.
//!
//! tower's own `RateLimit` is one limit per service value, not keyed and not shared by
//! clones. This crate keys limits by any part of a request, shares them between every
//! service a layer builds, and keeps them in [governor]'s GCRA (a well-kept,
//! allocation-free implementation) or, for limits shared by replicas, in Redis.
//!
//! | part | what it does |
//! |---|---|
//! | [`Quota`] | `limit` requests per `window`, at most `burst` at once (GCRA: one permit back every `window / limit`) |
//! | [`LocalLimiter`] | the quota per key in this process: governor on tokio's clock, bounded keys, idle keys forgotten |
//! | `RedisLimiter` | the same GCRA in Redis (feature `redis`): one limit across replicas |
//! | [`key`] | what a request is limited by: [`key::peer_ip`], [`key::header`], `key::route` (feature `axum`), [`key::global`], or any `Fn(&Parts) -> Option<K>` |
//! | [`RateLimitLayer`] | servers: refuses over-limit requests with `429` and the IETF `RateLimit` headers; criticality tiers |
//! | [`ClientRateLimitLayer`] | clients, any service: waits for a permit up to the deadline, or refuses with a `Throttled` rejection |
//!
//! # On a server
//!
//! A request whose key has no permit left is answered at once, never queued:
//!
//! - `429 Too Many Requests` with `Retry-After` (whole seconds, rounded up), or for a gRPC
//!   request (`content-type: application/grpc...`) a trailers-only `RESOURCE_EXHAUSTED`
//!   with `grpc-retry-pushback-ms`. Both come from the suite's `Rejection` of kind
//!   `Throttled`, which is also left in the response's extensions, as
//!   `HandleRejectionsLayer` leaves it.
//! - The IETF draft's headers (draft-ietf-httpapi-ratelimit-headers-09):
//!   `RateLimit-Policy: "default";q=100;w=60` (each quota the request is under: limit and
//!   window in seconds, rounded up) and `RateLimit: "default";r=0;t=12` (what is left of
//!   the quota, and the seconds until it is whole again, rounded up). Admitted responses
//!   carry them too, unless [`admitted_headers(false)`](RateLimitBuilder::admitted_headers).
//! - Requests for which the key function returns `None` pass untouched.
//! - [Criticality tiers](tiers): sheddable traffic is limited before critical traffic of
//!   the same key, and a key's total stays within its quota whatever tiers it claims.
//! - A limiter that fails (Redis down) lets requests through by default
//!   ([`OnLimiterError`]).
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower_bulwark_ratelimit::{key, Quota, RateLimitLayer};
//!
//! # fn main() -> Result<(), tower_bulwark_core::ConfigError> {
//! // 100 requests a minute per API key, 20 at once.
//! let per_api_key = RateLimitLayer::local(
//!     Quota::per_minute(100)?.burst(20)?.name("api"),
//!     key::header(http::HeaderName::from_static("x-api-key")),
//! )?
//! .build()?;
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(per_api_key);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! Where it goes: in the server stack after deadline acceptance and before load shedding
//! (`ServerPreset::layer_with` of [tower-bulwark] puts it there), so an over-limit client
//! is refused before it takes a shed slot.
//!
//! # On a client
//!
//! [`ClientRateLimitLayer`] keeps a caller within a quota it was given (a partner API's
//! limit): a request without a permit waits for one, as long as the wait ends before its
//! deadline and within a maximum wait, or fails at once with a `Throttled` rejection.
//!
//! # Events and metrics
//!
//! Each limited request is a [`RateLimitEvent`] (admitted, limited, waited, limiter
//! failed), built only when a listener is registered. With the `metrics` feature,
//! `with_metrics()` records `bulwark_ratelimit_requests_total` (labels `ratelimit`,
//! `outcome`: `admitted`, `limited`, `failed_open`, `failed_closed`, and `tier`) and
//! `bulwark_ratelimit_wait_seconds` (label `ratelimit`).
//!
//! # Features
//!
//! - `axum` (on by default): keys from axum's extensions (`ConnectInfo` for
//!   [`key::peer_ip`], `MatchedPath` for `key::route`).
//! - `metrics`: events recorded through the `metrics` facade.
//! - `redis`: `RedisLimiter`.
//!
//! [tower]: https://docs.rs/tower
//! [governor]: https://docs.rs/governor
//! [tower-bulwark]: https://docs.rs/tower-bulwark
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod check;
mod client;
mod client_future;
mod clock;
mod config;
mod events;
mod future;
mod headers;
pub mod key;
mod layer;
mod limiter;
mod local;
mod quota;
#[cfg(feature = "redis")]
mod redis_limiter;
pub mod tiers;

pub use self::client::{
    ClientRateLimit, ClientRateLimitBuilder, ClientRateLimitLayer, DEFAULT_MAX_WAIT,
};
pub use self::client_future::ClientFuture;
pub use self::config::{OnLimiterError, RateLimitBuilder};
pub use self::events::RateLimitEvent;
pub use self::future::ResponseFuture;
pub use self::headers::{RATELIMIT, RATELIMIT_POLICY};
pub use self::layer::{RateLimit, RateLimitLayer};
pub use self::limiter::{Decision, LimitError, Limiter};
pub use self::local::{
    LocalLimiter, LocalLimiterBuilder, DEFAULT_MAX_KEYS, DEFAULT_SWEEP_INTERVAL,
};
pub use self::quota::Quota;
#[cfg(feature = "redis")]
pub use self::redis_limiter::{RedisAcquire, RedisKey, RedisLimiter};
pub use self::tiers::{criticality_of, DEFAULT_TIER_SHARES};
// Where a waiting request's deadline comes from: core's, shared with the bulkhead.
pub use tower_bulwark_core::{DeadlineSource, HttpDeadline, TaskDeadline};
