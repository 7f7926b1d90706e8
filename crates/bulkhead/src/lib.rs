//! A bulkhead for [tower] services: each dependency (or partition of traffic) gets its own
//! bounded compartment, so one slow dependency cannot take every connection, task or thread
//! and sink the whole service.
//!
//! - `max_concurrent` calls in flight across every clone; a bounded FIFO wait queue
//!   (`max_queue`, 0 = refuse at once) with a wait timeout (`max_wait`). A call that finds
//!   the queue full, or waits past `max_wait`, gets the [`BulkheadFull`] rejection (a core
//!   `Rejection` of kind `BulkheadFull`) and never reaches the inner service.
//! - Deadline-aware waiting: a call whose deadline ([`DeadlineSource`]; the task's current
//!   deadline by default) is nearer than the recent average wait is refused at once, and no
//!   call waits past its deadline.
//! - [`Admission::Reject`] (default) or [`Admission::Backpressure`] (`poll_ready` waits for
//!   the permit, like tower's `ConcurrencyLimit`, in the same FIFO order, for at most
//!   `max_wait` and never past the task's deadline; then `call` answers [`BulkheadFull`]).
//! - Permits are released when the response future completes or is dropped; a dropped
//!   waiting call leaves the queue. With feature `http`,
//!   [`BulkheadLayer::hold_permit_for_body`] holds the permit until an `http::Response`
//!   body ends or is dropped, so streaming responses count for as long as they stream. Freed permits go to the front of the queue: newcomers do
//!   not overtake it.
//! - [`PartitionedBulkheadLayer`]: one layer routing each request to a named compartment
//!   by a key function, each with its own limits. Sharing one [`BulkheadLayer`] between
//!   services or routes makes them draw from one compartment.
//! - [`BlockingBulkhead`]: blocking closures on a dedicated, bounded pool of threads with
//!   its own bounded queue ([`BlockingService`] as a tower service), so a slow blocking
//!   dependency cannot starve tokio's shared blocking pool.
//! - [`BulkheadHandle`]: in flight, queued, available, peak, refusals by reason, mean wait;
//!   limits can be changed at runtime without dropping calls.
//!
//! Configuration is checked by [`Builder::build`] ([`ConfigError`](tower_bulwark_core::ConfigError)
//! naming the field); presets [`Builder::fail_fast`] and [`Builder::absorb_bursts`]; with
//! feature `serde`, `BulkheadConfig` reads the settings from TOML or JSON.
//!
//! Refusals and waits are reported as [`BulkheadEvent`]s to listeners
//! ([`Builder::on_event`]) and, with feature `metrics`, as `bulwark_bulkhead_rejections_total`
//! and `bulwark_bulkhead_wait_seconds` ([`Builder::with_metrics`]). Gauges of calls in flight
//! and queued come from [`BulkheadHandle::snapshot`], read by an exporter when it scrapes.
//!
//! A call that finds a free permit takes no lock, allocates nothing and emits no event.
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_bulwark_bulkhead::BulkheadLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let inventory = BulkheadLayer::builder()
//!     .name("inventory")
//!     .max_concurrent(30)
//!     .max_queue(10)
//!     .max_wait(Duration::from_millis(100))
//!     .build()
//!     .expect("valid configuration");
//! let client = ServiceBuilder::new()
//!     .layer(inventory)
//!     .service(service_fn(|sku: u32| async move { Ok::<_, std::io::Error>(sku) }));
//! assert_eq!(client.oneshot(42).await.unwrap(), 42);
//! # }
//! ```
//!
//! [tower]: https://docs.rs/tower
#![forbid(unsafe_code)]

mod blocking;
#[cfg(feature = "http")]
mod body;
mod compartment;
mod config;
mod error;
mod events;
mod future;
mod handle;
mod layer;
mod partition;
mod service;
#[cfg(feature = "serde")]
mod settings;
mod wait;

pub use self::blocking::{BlockingBulkhead, BlockingFuture, BlockingService, FlattenBlocking};
#[cfg(feature = "http")]
pub use self::body::{BodyBulkhead, BodyBulkheadLayer, BodyResponseFuture, PermitBody};
pub use self::config::{Admission, Builder};
pub use self::error::{BulkheadFull, FullReason};
pub use self::events::BulkheadEvent;
pub use self::future::ResponseFuture;
pub use self::handle::{BulkheadHandle, Snapshot};
pub use self::layer::BulkheadLayer;
pub use self::partition::{PartitionedBuilder, PartitionedBulkhead, PartitionedBulkheadLayer};
pub use self::service::Bulkhead;
#[cfg(feature = "serde")]
pub use self::settings::{AdmissionSetting, BulkheadConfig};
// Where a queued call's deadline comes from: core's, shared with the client rate limiter.
#[cfg(feature = "http")]
pub use tower_bulwark_core::HttpDeadline;
pub use tower_bulwark_core::{DeadlineSource, TaskDeadline};
