//! A circuit breaker for [tower] services.
//!
//! A breaker stops a service from hammering a dependency that is failing: it fails fast
//! instead of waiting on timeouts, probes the dependency after a while, and lets traffic
//! back, gradually if asked. Knobs follow resilience4j and Polly.
//!
//! # States
//!
//! - **Closed**: calls flow; outcomes (from a core [`Classify`]: every `Err` by default,
//!   errors from the inner service's `poll_ready` included) are recorded. The breaker trips
//!   to **Open** on any enabled condition: `consecutive_failures` in a row (default 5); a
//!   `failure_rate` or a slow-call rate over a sliding [window](WindowKind) (the last N
//!   calls, or a bucketed time window), once it holds `minimum_calls`. `Ignored` outcomes
//!   count toward neither side.
//! - **Open**: calls are refused with [`CircuitOpen`] (a core `Rejection` whose
//!   `retry_after` is the time until the next probe). After the [open duration](OpenDuration),
//!   fixed or growing across consecutive trips, the next call moves it to half-open.
//! - **HalfOpen**: at most `half_open_probes` calls in flight, across every clone. After
//!   `success_threshold` successes it closes (optionally through a recovery ramp that admits
//!   a linearly growing share of calls); any probe failure reopens it with the next, longer
//!   wait, and so do slow successes reaching the slow-call rate. A probe dropped before it
//!   completes frees its slot and counts as ignored. If the probes have not concluded after
//!   `half_open_max_wait` (default 1 minute), it reopens.
//! - Operator states, set through the [`BreakerHandle`]: **ForcedOpen**, **Disabled**,
//!   **MetricsOnly** (shadow mode).
//!
//! # Admission
//!
//! [`Admission::FailFast`] (default): `poll_ready` is ready and `call` returns the rejection
//! without touching the inner service. [`Admission::Readiness`]: `poll_ready` is `Pending`
//! while the breaker refuses and wakes the task when a probe may go, for load balancers such
//! as `tower::balance::p2c`.
//!
//! # Configuration
//!
//! [`CircuitBreakerLayer::builder`] checks every setting and names the bad field in a
//! [`ConfigError`](tower_bulwark_core::ConfigError). Presets: [`Builder::standard`],
//! [`Builder::rate_based`], [`Builder::latency_sensitive`]. With feature `serde`,
//! `BreakerConfig` reads the same settings from TOML or JSON.
//!
//! # Sharing and keys
//!
//! One layer value is one breaker, shared by every service it builds and their clones.
//! [`KeyedCircuitBreakerLayer`] keeps one breaker per key (host, route) with a bound on the
//! number of keys and idle eviction. [`BreakerHandle`] reads a breaker's [`Snapshot`] and
//! its last [`Transition`]s (for dashboards that look less often than it changes), and sets
//! the operator states.
//!
//! # Cost
//!
//! The closed path takes no lock and allocates nothing: admission reads two atomics,
//! recording adjusts a few counters. Windows are fixed-size rings: O(1) per call, memory
//! independent of traffic. The clock is read only when a time window, slow-call detection or
//! the recovery ramp needs it.
//!
//! # Events and metrics
//!
//! Transitions are logged through `tracing` (closing and half-open at `info`, opening at
//! `warn`). [`BreakerEvent`]s go to listeners added with [`Builder::on_event`]; with none, no
//! event is built. With feature `metrics`, [`Builder::with_metrics`] records
//! `bulwark_breaker_state`, `bulwark_breaker_transitions_total`,
//! `bulwark_breaker_rejections_total`, `bulwark_breaker_would_reject_total` and
//! `bulwark_breaker_calls_total`, labelled by breaker name.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_bulwark_breaker::{CircuitBreakerLayer, OpenDuration, WindowKind};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let breaker = CircuitBreakerLayer::builder()
//!     .name("inventory")
//!     .failure_rate(0.5)
//!     .window(WindowKind::Count(50))
//!     .minimum_calls(10)
//!     .open_duration(OpenDuration::STANDARD_EXPONENTIAL)
//!     .build()
//!     .expect("valid configuration");
//!
//! let client = ServiceBuilder::new()
//!     .layer(breaker)
//!     .service(service_fn(|id: u32| async move { Ok::<_, std::io::Error>(id) }));
//! assert_eq!(client.oneshot(7).await.unwrap(), 7);
//! # }
//! ```
//!
//! [tower]: https://docs.rs/tower
//! [`Classify`]: tower_bulwark_core::Classify
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
mod breaker;
mod config;
mod error;
mod events;
mod future;
mod handle;
mod history;
mod keyed;
mod layer;
mod probes;
mod service;
#[cfg(feature = "serde")]
mod settings;
mod state;
mod window;

pub use self::backoff::OpenDuration;
pub use self::config::{Admission, Builder, WindowKind};
pub use self::error::CircuitOpen;
pub use self::events::{BreakerEvent, Reason};
pub use self::future::ResponseFuture;
pub use self::handle::{BreakerHandle, Snapshot};
pub use self::history::Transition;
pub use self::keyed::{KeyedCircuitBreaker, KeyedCircuitBreakerLayer, KeyedHandle};
pub use self::layer::CircuitBreakerLayer;
pub use self::service::CircuitBreaker;
#[cfg(feature = "serde")]
pub use self::settings::{
    AdmissionSetting, BreakerConfig, OpenSettings, SlowCallSettings, WindowSettings,
};
pub use self::state::State;
