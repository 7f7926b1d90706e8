//! Health and graceful drain for [tower] services.
//!
//! - [`Health`]: a registry that breakers, bulkheads, shedding layers (features `breaker`,
//!   `bulkhead`, `shed`) and user checks report into, read cheaply: checks that do I/O run
//!   in the background and are cached, never run per request.
//! - [`HealthService`]: `/health/live` (never checks dependencies), `/health/ready` (503
//!   while draining or while a required component is down) and a stable JSON view; one
//!   line in axum: `nest_service("/health", health.service())`.
//! - [`DrainLayer`] + [`DrainHandle`]: graceful shutdown: readiness off, new requests
//!   refused with 503 and `Connection: close` (or still served), then wait for the work in
//!   flight (a response until its body ends) up to a grace period.
//!
//! [tower]: https://docs.rs/tower
#![forbid(unsafe_code)]

mod adapters;
mod drain;
mod registry;
mod service;
mod sync;

pub use self::drain::{Drain, DrainBody, DrainFuture, DrainHandle, DrainLayer, DrainReport};
pub use self::registry::{Health, Report, Status};
pub use self::service::HealthService;
