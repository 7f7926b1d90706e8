//! Outlier ejection for load-balanced [tower] clients: an endpoint that fails while its
//! peers succeed is taken out of rotation for a while, and brought back after an ejection
//! time that grows each time it is ejected again (Envoy's outlier detection, linkerd's
//! failure accrual).
//!
//! An [`OutlierDetector`] is shared by the endpoints of one balancer. Each endpoint's
//! service is wrapped by the layer [`detector.layer(key)`](OutlierDetector::layer) gives,
//! which records every call's outcome with the endpoint and makes `poll_ready` `Pending`
//! while the endpoint is ejected, so `tower::balance::p2c` routes around it without an
//! error (it sends to ready endpoints only). The wrapped service passes its inner
//! service's [`Load`](tower::load::Load) through, which p2c needs.
//!
//! | rule | ejects | default |
//! |---|---|---|
//! | [`consecutive_failures`](Builder::consecutive_failures) | at once, after N failures in a row | 5 |
//! | [`consecutive_gateway_failures`](Builder::consecutive_gateway_failures) | at once, after N 502 / 503 / 504 / transport errors in a row ([`GatewayErrors`]) | off |
//! | [`success_rate`](Builder::success_rate) | each interval: below `mean - stdev x factor` of the endpoints with enough calls | every 10 s; 5 hosts with 100 calls; factor 1.9 |
//! | [`failure_percentage`](Builder::failure_percentage) | each interval: failures at or above a share | off (85%, 5 hosts, 50 calls when on) |
//! | [`slow_endpoint`](Builder::slow_endpoint) | each interval: mean latency above `factor x` the median of the endpoints with enough calls, and `minimum_excess` above it ([`SlowEndpoint`]) | off (5x and 50 ms, 3 hosts, 50 calls when on) |
//!
//! - **Ejection time**: `base_ejection_time x times ejected` (30 s, 60 s, 90 s, ...), at
//!   most `max_ejection_time` (300 s). The count decays by one for each full interval the
//!   endpoint spends in rotation after its return (Envoy decays it each interval in
//!   rotation; counting from the return means an endpoint that fails again within an
//!   interval of coming back is out longer, whatever the phase of the interval). The
//!   decay is applied at each evaluation, by every whole interval since the return or the
//!   last decay, so intervals with no traffic (no evaluation) count too; an overdue
//!   evaluation runs before the call that finds it due is judged.
//! - **The cap**: at most [`max_ejection_percent`](Builder::max_ejection_percent) of the
//!   registered endpoints are ejected at once (10%: `floor(n x 10 / 100)`, but at least one
//!   when there are two or more; none with 0%), so the balancer always keeps somewhere to
//!   send. The ejected count is taken with one compare-and-swap against the cap; a rule met
//!   while the cap is full is reported ([`OutlierEvent::NotEjected`]), not enforced. When
//!   endpoints leave (their last service dropped) the cap of those left is lower: the
//!   ejections beyond it end at once, soonest-ending first (reported as
//!   [`OutlierEvent::Returned`]), and their services' tasks are woken, so a balancer left
//!   with one ejected endpoint sends to it rather than stall (each evaluation checks the
//!   cap too).
//! - **Outcomes** come from a core [`Classify`](tower_bulwark_core::Classify):
//!   [`ErrorsAreFailures`](tower_bulwark_core::ErrorsAreFailures) by default,
//!   `HttpClassifier` / `GrpcClassifier` (feature `http`) with
//!   [`OutlierLayer::classify`] or [`OutlierLayer::http`]. A refusal by a bulwark layer
//!   below (a core `Rejection`: an open breaker, a full bulkhead, the caller's deadline) is
//!   not the endpoint's failure (`docs/composition.md`); an attempt timeout is, when it is
//!   under the layer (see [below](#attempt-timeouts-go-under-the-layer)).
//! - **The interval rules** run inside the call that finishes first after the interval is
//!   due (no background task): it wins one compare-and-swap on the next due time, then
//!   takes a short `std::sync::Mutex` over the registry, and emits its events after
//!   releasing it (a listener may call the detector). Rare, never on a call that is not
//!   due. [`OutlierDetector::evaluate`] runs them on demand.
//!
//! # With `tower::balance::p2c`
//!
//! Wrap each endpoint as discovery yields it: a fixed list with
//! `tower::discover::ServiceList`, or a stream of `tower::discover::Change::Insert(key,
//! detector.layer(key).layer(service))` for a changing set (a `Change::Remove` drops the
//! service; the endpoint leaves the detector when its last service is gone, which ends its
//! ejection, if it was ejected, and rechecks the cap).
//!
//! ```
//! use std::convert::Infallible;
//! use tower::balance::p2c::Balance;
//! use tower::discover::ServiceList;
//! use tower::load::{CompleteOnResponse, PendingRequests};
//! use tower::{service_fn, Layer, Service, ServiceExt};
//! use tower_bulwark_outlier::OutlierDetector;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let detector = OutlierDetector::builder()
//!     .name("inventory")
//!     .max_ejection_percent(34)
//!     .build()?;
//!
//! // Three endpoints; the third fails every call.
//! let endpoint = |healthy: bool| {
//!     service_fn(move |n: u32| async move {
//!         if healthy { Ok::<u32, tower::BoxError>(n) } else { Err("connection refused".into()) }
//!     })
//! };
//! let services = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
//!     .into_iter()
//!     .enumerate()
//!     .map(|(i, key)| {
//!         let inner = PendingRequests::new(endpoint(i < 2), CompleteOnResponse::default());
//!         detector.layer(key).layer(inner)
//!     })
//!     .collect::<Vec<_>>();
//! let mut balance = Balance::new(ServiceList::new(services));
//!
//! let mut failures = 0;
//! for n in 0..200 {
//!     if balance.ready().await?.call(n).await.is_err() {
//!         failures += 1;
//!     }
//! }
//! // The failing endpoint failed 5 times in a row, then was ejected for 30 s.
//! assert_eq!(failures, 5);
//! let snapshot = detector.snapshot();
//! assert_eq!(snapshot.ejected, 1);
//! assert!(snapshot.endpoint("10.0.0.3:80").unwrap().ejected_until.is_some());
//! # Ok(())
//! # }
//! ```
//!
//! A per-endpoint circuit breaker in readiness mode does part of this job: it trips on an
//! endpoint's own record. What the detector adds is the comparison across endpoints: an
//! endpoint failing one call in three never fails five in a row and never reaches a
//! breaker's 50% failure rate, but its success rate is an outlier among peers that
//! succeed, and the success-rate rule ejects it. The cap is the other addition: breakers
//! around every endpoint of a failing fleet all open, the detector keeps most of them in
//! rotation. `crates/outlier/tests/http.rs` shows both over real sockets.
//!
//! # Slow endpoints
//!
//! An endpoint that answers, and answers well, but ten times slower than its peers
//! (a failing disk, a throttled container) fails no rule above. The
//! [slow-endpoint rule](SlowEndpoint), off by default, compares the endpoints' mean
//! latency over each interval with the **median** of their means and ejects an endpoint
//! more than 5 times the median and more than 50 ms above it. It is for large gaps: smaller
//! ones are better left to a latency-aware balancer (tower's `PeakEwma` load under `p2c`,
//! as Finagle and linkerd balance), which sends a slower endpoint less without taking
//! its capacity away. [`SlowEndpoint`] argues each default.
//!
//! The rule times successes, and of failures only timeouts: an attempt timeout under the
//! layer (a core `Rejection` of kind `TimedOut`, [`AttemptTimeouts`], counted at the
//! timeout's full length) and, with [`OutlierLayer::http`] (or
//! [`GatewayTimeouts`] set with [`OutlierLayer::timeouts`]), a 504 or gRPC
//! `DEADLINE_EXCEEDED` answer. Other failures are not timed: a fast failure says nothing
//! about speed, and timed as a fast answer it would pull the median down (three endpoints
//! refusing connections in 0.1 ms among five would make a healthy one at 60 ms look
//! slow). Failing endpoints are the failure rules' to judge.
//!
//! ```
//! use std::time::Duration;
//! use tower::balance::p2c::Balance;
//! use tower::discover::ServiceList;
//! use tower::load::{CompleteOnResponse, PendingRequests};
//! use tower::{service_fn, Layer, Service, ServiceExt};
//! use tower_bulwark_outlier::{OutlierDetector, SlowEndpoint};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let detector = OutlierDetector::builder()
//!     .slow_endpoint(SlowEndpoint::new().request_volume(20))
//!     .max_ejection_percent(20)
//!     .build()?;
//! // Five endpoints: four answer in 2 ms, the fifth in 200 ms.
//! let endpoints = (0..5).map(|i| {
//!     let delay = Duration::from_millis(if i == 4 { 200 } else { 2 });
//!     let transport = service_fn(move |n: u32| async move {
//!         tokio::time::sleep(delay).await;
//!         Ok::<u32, tower::BoxError>(n)
//!     });
//!     detector
//!         .layer(format!("10.0.0.{i}:80"))
//!         .layer(PendingRequests::new(transport, CompleteOnResponse::default()))
//! });
//! let mut balance = Balance::new(ServiceList::new(endpoints.collect::<Vec<_>>()));
//! // The first interval (10 s) ends: the slow endpoint is judged and ejected.
//! for n in 0..1_000 {
//!     if detector.ejected() > 0 {
//!         break;
//!     }
//!     balance.ready().await?.call(n).await?;
//! }
//! let slow = detector.snapshot().endpoint("10.0.0.4:80").cloned().unwrap();
//! assert!(slow.ejected_until.is_some());
//! assert!(slow.mean_latency >= Some(Duration::from_millis(200)));
//! # Ok(())
//! # }
//! ```
//!
//! # Attempt timeouts go under the layer
//!
//! The detector learns of a call when its response future finishes. A call dropped before
//! it finishes (by a timeout above the balancer, or a caller giving up) records nothing:
//! not a failure, since the caller's own impatience says nothing about the endpoint. So an
//! endpoint that hangs (accepts, never answers) is only ever judged if each endpoint has
//! its own attempt timeout *under* the detector's layer, which turns the hang into a
//! finished call that failed (core's `TimedOut`, the dependency being slow):
//!
//! ```
//! use std::time::Duration;
//! use tower::balance::p2c::Balance;
//! use tower::discover::ServiceList;
//! use tower::load::{CompleteOnResponse, PendingRequests};
//! use tower::{service_fn, Layer, Service, ServiceExt};
//! use tower_bulwark_deadline::TimeoutLayer;
//! use tower_bulwark_outlier::OutlierDetector;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let detector = OutlierDetector::builder().max_ejection_percent(34).build()?;
//! // One attempt timeout per endpoint (the client preset's is
//! // `ClientPreset::attempt_timeout`), under the detector's layer.
//! let timeout = TimeoutLayer::new(Duration::from_secs(2))?;
//! let endpoints = (0..3).map(|i| {
//!     // The third endpoint accepts calls and never answers.
//!     let transport = service_fn(move |n: u32| async move {
//!         if i == 2 {
//!             std::future::pending::<()>().await;
//!         }
//!         Ok::<u32, tower::BoxError>(n)
//!     });
//!     detector
//!         .layer(format!("10.0.0.{i}:80"))
//!         .layer(PendingRequests::new(timeout.layer(transport), CompleteOnResponse::default()))
//! });
//! let mut balance = Balance::new(ServiceList::new(endpoints.collect::<Vec<_>>()));
//! let mut timeouts = 0;
//! for n in 0..100 {
//!     timeouts += u32::from(balance.ready().await?.call(n).await.is_err());
//! }
//! // Five timeouts in a row, then the hung endpoint is out of rotation.
//! assert_eq!(timeouts, 5);
//! assert_eq!(detector.snapshot().ejected, 1);
//! # Ok(())
//! # }
//! ```
//!
//! A timeout above the balancer (the client preset's own attempt timeout) still bounds
//! the whole attempt, wait for a ready endpoint included; set the one under the layer
//! at or below it, so it fires first. `crates/outlier/tests/balance.rs` shows a hung
//! endpoint ejected after five timeouts this way.
//!
//! # Waits and deadlines
//!
//! An ejected endpoint's `poll_ready` waits until its ejection ends; the wait does not end
//! at the caller's deadline, because a balancer polls its endpoints' readiness outside
//! any caller's task and routes around a pending one. Used without a balancer, put a
//! timeout above it.
//!
//! # Events and metrics
//!
//! Each ejection, return and capped ejection is an [`OutlierEvent`] (built only when a
//! listener is registered; none happens on a call to a healthy endpoint). The removal of
//! an ejected endpoint is reported as its return. Events are emitted with no lock held, so
//! a listener may call [`snapshot`](OutlierDetector::snapshot) or
//! [`layer`](OutlierDetector::layer); events of one endpoint from racing threads may
//! arrive out of order, and carry `ejected_until` to put them back in it. With the
//! `metrics` feature, [`with_metrics()`](Builder::with_metrics) records
//! `bulwark_outlier_ejections_total` (labels `outlier`, `endpoint`, `reason`:
//! `consecutive`, `gateway`, `success_rate`, `failure_percentage`, `slow_endpoint`),
//! `bulwark_outlier_returns_total` (`outlier`, `endpoint`), `bulwark_outlier_capped_total`
//! (`outlier`, `endpoint`, `reason`) and the gauge `bulwark_outlier_ejected` (`outlier`,
//! `endpoint`; 1 while ejected, raised and lowered by one per event so that order does
//! not matter). [`OutlierDetector::snapshot`] reads every endpoint: its
//! ejection end, times ejected, last success rate, last mean latency (with the
//! slow-endpoint rule on), in-flight calls.
//!
//! # Costs
//!
//! A call to an endpoint in rotation allocates nothing: one atomic load in `poll_ready`,
//! and on completion a few relaxed atomic adds and a read of tokio's clock. With the
//! slow-endpoint rule on, a second read of the clock when `call` starts (before the inner
//! service's `call`) and, when a timed call ends, a load (its last return) and two atomic
//! updates (the interval's count and summed latency); a failure is first read by the
//! timeout reading (a walk of the error's `source()` chain, or the response's status). An ejected endpoint's service boxes one timer while it waits.
//!
//! # Features
//!
//! - `http`: [`GatewayErrors`], [`GatewayTimeouts`] and [`OutlierLayer::http`].
//! - `metrics`: events through the `metrics` facade.
//! - `serde`: `OutlierConfig`, the settings as data.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod classify;
mod config;
mod detector;
mod events;
mod future;
mod latency;
mod layer;
mod service;
#[cfg(feature = "serde")]
mod settings;
mod state;

pub use self::classify::{AttemptTimeouts, NoGateway, Timeouts};
#[cfg(feature = "http")]
pub use self::classify::{GatewayErrors, GatewayTimeouts};
pub use self::config::{Builder, FailurePercentage, SlowEndpoint, SuccessRate};
pub use self::detector::{EndpointSnapshot, OutlierDetector, Snapshot};
pub use self::events::{OutlierEvent, Reason};
pub use self::future::ResponseFuture;
pub use self::layer::OutlierLayer;
pub use self::service::Outlier;
#[cfg(feature = "serde")]
pub use self::settings::{
    FailurePercentageSettings, OutlierConfig, SlowEndpointSettings, SuccessRateSettings,
};
