//! Hedged requests for [tower]: when the first attempt of a call has not answered within
//! a delay, a second one (a *hedge*) is sent; the first good answer wins and the attempts
//! still running are cancelled (their futures dropped).
//!
//! Tail latency is mostly a few slow calls: "The Tail at Scale" (Dean and Barroso, 2013)
//! reports that hedging after the 95th percentile cut a BigTable 99.9th percentile from
//! 1,800 ms to 74 ms for 2% more requests. This layer does it without letting hedges
//! amplify an overload:
//!
//! | part | what it does |
//! |---|---|
//! | delay | fixed ([`delay`](HedgeBuilder::delay)), or a [`percentile`](HedgeBuilder::percentile) of recent first attempts' latencies, learned lock-free, within a floor and a ceiling, trusted after [`min_samples`](HedgeBuilder::min_samples) (the fixed delay, or the ceiling, until then) |
//! | [`MayHedge`] | which requests may be sent twice: [`Idempotent`] (idempotent HTTP methods or an `Idempotency-Key`, the retry layers' rule), gRPC methods marked in a [`GrpcMethods`](tower_bulwark_core::repeat::GrpcMethods), [`Every`], closures; a body recorded for replay must still be whole |
//! | budget | hedges add at most [`budget_ratio`](HedgeBuilder::budget_ratio) of the calls (5%), plus [`min_per_sec`](HedgeBuilder::min_per_sec) |
//! | [`Overload`] | answers that say the dependency sheds pause hedging, for their pushback or [`pause`](HedgeBuilder::pause): no extra load at all on a dependency that sheds |
//! | deadline | no hedge once the caller's deadline is nearer than [`deadline_margin`](HedgeBuilder::deadline_margin) |
//! | [`max_hedges`](HedgeBuilder::max_hedges) | hedge `n` goes `n` delays after the first attempt (default 1 hedge) |
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, Layer, ServiceExt};
//! use tower_bulwark_hedge::HedgeLayer;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // The 95th percentile of recent latencies, 20 ms until 100 are known.
//! let hedge = HedgeLayer::builder()
//!     .name("inventory")
//!     .percentile(0.95)
//!     .delay(Duration::from_millis(20))
//!     .build()?;
//! let handle = hedge.handle();
//!
//! // A backend whose first answer is slow.
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let backend = service_fn(move |_request: http::Request<()>| {
//!     let n = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//!     async move {
//!         let took = if n == 0 { 1_000 } else { 5 };
//!         tokio::time::sleep(Duration::from_millis(took)).await;
//!         Ok::<_, std::io::Error>(http::Response::new(format!("answer {n}")))
//!     }
//! });
//! let started = tokio::time::Instant::now();
//! let response = hedge
//!     .layer(backend)
//!     .oneshot(http::Request::get("/items/7").body(())?)
//!     .await?;
//! assert_eq!(response.body(), "answer 1", "the hedge won");
//! assert_eq!(started.elapsed(), Duration::from_millis(25));
//! let snapshot = handle.snapshot();
//! assert_eq!((snapshot.sent, snapshot.hedge_wins, snapshot.cancelled), (1, 1, 1));
//! # Ok(())
//! # }
//! ```
//!
//! Where it goes: in a client stack, inside retry and the circuit breaker and above the
//! bulkhead, deadline propagation and the attempt timeout, so each hedge is an attempt
//! of its own (its own bulkhead place, its own time left in its headers, its own
//! timeout) and the breaker sees the call's one answer.
//!
//! # Which answer wins
//!
//! The first *good* answer: an `Ok` that [`Overload`] does not call overloaded (the
//! usual rule: Envoy's and gRPC's hedging return the first answer that is not a failure).
//! An error, or an overloaded answer, while another attempt is still running waits for
//! it; the call returns the first such answer only if no attempt answers well, except
//! that a refusal by a layer below (a full bulkhead refusing the hedge) gives way to a
//! later answer from the dependency (its failure, the attempt timeout), which a retry or a
//! breaker above must see. No hedge is
//! sent after an error (sending the call again after it failed is a retry, the retry
//! layer's job) or after an overloaded answer. The latency learned is that of first
//! attempts; one that a hedge beat counts the time it ran, a lower bound already past the
//! delay, so the percentile is not biased by hedging.
//!
//! # Never amplifying an overload
//!
//! - The budget: every call deposits `budget_ratio` of a hedge and every hedge withdraws
//!   one (atomics; one compare-and-swap per hedge; a window of slices); over budget, no
//!   hedge (counted).
//! - The pause: an answer that says the dependency or a guard in front of it sheds (see
//!   [`OverloadSignals`]: a core `Rejection` of kind `Overloaded`, `BulkheadFull`,
//!   `CircuitOpen` or `Throttled`, a 503 or 429 marked `x-bulwark-overloaded` or with
//!   `Retry-After`, a gRPC `RESOURCE_EXHAUSTED` with pushback) pauses hedging for its
//!   pushback (up to 60 s) or [`pause`](HedgeBuilder::pause) (1 s): calls made while
//!   paused are not copied and get no timer. A breaker below that is open refuses with
//!   `CircuitOpen`, so hedging pauses while it is not closed.
//! - A clone of the inner service that is not ready when its hedge is due (a full
//!   bulkhead below) skips the hedge rather than wait.
//!
//! # Cost
//!
//! Per call: a clone of the inner service and a copy of the request (for requests that
//! may be hedged; a copy of an HTTP request with headers allocates, one without does
//! not), a budget deposit, and with a learned delay one atomic increment in the
//! histogram. The first hedge's future lives inline in the response future; hedges 2 and
//! up are boxed when sent. No lock: the learned delay is a histogram of atomics in a
//! rotating ring of windows, its percentile recomputed at most every 100 ms by one caller
//! and cached in an atomic.
//!
//! # Events and metrics
//!
//! [`HedgeEvent`]s: a hedge sent, a hedge not sent (and why: [`NotSent`]), a hedged call
//! answered (which attempt won, how many were cancelled), hedging paused. With the
//! `metrics` feature, [`with_metrics`](HedgeBuilder::with_metrics) records
//! `bulwark_hedge_sent_total`, `bulwark_hedge_wins_total` (label `winner`),
//! `bulwark_hedge_cancelled_total`, `bulwark_hedge_not_sent_total` (label `reason`),
//! `bulwark_hedge_pauses_total` and `bulwark_hedge_delay_seconds`, all labelled `hedge`.
//! [`HedgeLayer::handle`] gives the same counts as a [`Snapshot`].
//!
//! # Features
//!
//! - `metrics`: events recorded through the `metrics` facade.
//! - `serde`: [`HedgeConfig`], the settings as data.
//!
//! [tower]: https://docs.rs/tower
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod events;
mod future;
mod handle;
mod histogram;
mod layer;
mod rules;
mod service;
#[cfg(feature = "serde")]
mod settings;
mod shared;

pub use self::config::{
    HedgeBuilder, DEFAULT_BUDGET_RATIO, DEFAULT_DEADLINE_MARGIN, DEFAULT_MAX_DELAY,
    DEFAULT_MIN_DELAY, DEFAULT_MIN_PER_SEC, DEFAULT_MIN_SAMPLES, DEFAULT_PAUSE, DEFAULT_WINDOW,
    MAX_HEDGES,
};
pub use self::events::{HedgeEvent, NotSent, Winner};
pub use self::future::ResponseFuture;
pub use self::handle::{HedgeHandle, Snapshot};
pub use self::layer::HedgeLayer;
pub use self::rules::{Every, Idempotent, Load, MayHedge, Overload, OverloadSignals, Rejections};
pub use self::service::Hedge;
#[cfg(feature = "serde")]
pub use self::settings::HedgeConfig;
pub use self::shared::MAX_PAUSE;
