//! Deadline propagation for [tower]: when a caller gives up, every service below it stops
//! too.
//!
//! - Servers: [`AcceptDeadlineLayer`] reads the caller's deadline (`grpc-timeout`,
//!   `x-request-timeout-ms`; opt-in `x-request-deadline` and Envoy's
//!   `x-envoy-expected-rq-timeout-ms`), caps it, stores it as core's
//!   [`Deadline`](tower_bulwark_core::Deadline) in the request and as the handler's current
//!   deadline, refuses requests that arrive too late and drops the handler's future when
//!   time runs out (HTTP 504, gRPC `DEADLINE_EXCEEDED`).
//! - Clients: [`PropagateDeadlineLayer`] takes the time left (the request's own deadline,
//!   else the handler's), keeps a safety margin, fails fast when too little is left, writes
//!   `grpc-timeout` or `x-request-timeout-ms`, and enforces the same time locally.
//! - Timeouts: [`TimeoutLayer`] (`min(timeout, time left)`) and [`AdaptiveTimeoutLayer`]
//!   (a percentile of observed latency times a multiplier, clamped).
//! - Across tasks: the handler's current deadline belongs to its task. tower's `Buffer` runs
//!   `call` on its worker task and `tokio::spawn` starts a task without it, so the layers
//!   behind them see only the `Deadline` the request carries. [`CarryDeadlineLayer`], placed
//!   just outside the `Buffer` (or before the spawn), copies the current deadline into the
//!   request; the propagate layer and the retry classifiers read it from there.
//!
//! Headers are parsed strictly ([`parse_grpc_timeout`] follows the gRPC spec: 1-8 digits
//! and a unit); a malformed value is never a panic: it is ignored, or refused with
//! [`OnInvalid::Reject`] (HTTP 400, gRPC `INVALID_ARGUMENT`).
//!
//! ```
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower_bulwark_deadline::{AcceptDeadlineLayer, PropagateDeadlineLayer};
//!
//! // A server: callers get at most 10 s, 5 s when they say nothing.
//! let accept = AcceptDeadlineLayer::builder()
//!     .max(Duration::from_secs(10))
//!     .default_timeout(Duration::from_secs(5))
//!     .build()
//!     .unwrap();
//! // Its client to the next service: pass on 90% of the time left, less 5 ms.
//! let propagate = PropagateDeadlineLayer::builder()
//!     .keep(0.9)
//!     .margin(Duration::from_millis(5))
//!     .build()
//!     .unwrap();
//! # let _ = (ServiceBuilder::new().layer(accept), ServiceBuilder::new().layer(propagate));
//! ```
//!
//! [tower]: https://docs.rs/tower
#![forbid(unsafe_code)]

mod accept;
mod adaptive;
mod carry;
mod events;
mod future;
mod grpc_timeout;
mod latency;
mod propagate;
mod timeout;
mod wire;

pub use self::accept::{AcceptBuilder, AcceptDeadline, AcceptDeadlineLayer, OnInvalid};
pub use self::adaptive::{AdaptiveBuilder, AdaptiveTimeout, AdaptiveTimeoutLayer};
pub use self::carry::{CarryDeadline, CarryDeadlineLayer};
pub use self::events::DeadlineEvent;
pub use self::future::ResponseFuture;
pub use self::grpc_timeout::{encode_grpc_timeout, parse_grpc_timeout};
pub use self::propagate::{
    PropagateBuilder, PropagateDeadline, PropagateDeadlineLayer, WriteHeaders,
};
pub use self::timeout::{Timeout, TimeoutLayer};
pub use self::wire::{
    DeadlineHeader, InvalidHeader, DEADLINE_HEADER, ENVOY_TIMEOUT_HEADER, GRPC_TIMEOUT,
    TIMEOUT_MS_HEADER,
};
