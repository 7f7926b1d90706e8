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
//!   flight (a response until its body ends) up to a grace period, reporting its progress
//!   as [`DrainEvent`]s.
//! - [`Dashboard`] (feature `dashboard`): a live page for the person on call, served by the
//!   same service under `…/ui`: every component's own numbers (breaker state and rates,
//!   keyed breakers' worst keys, bulkhead queue, shed limit, retry budget (feature
//!   `retry`), switch levels) with five minutes of history, the drain, the latest
//!   transitions and their reasons, and opt-in operator actions (force a breaker open,
//!   switch a feature off, start the drain) behind a predicate and cross-site checks.
//!   See the [`dashboard`] module.
//!
//! [tower]: https://docs.rs/tower
//! [`Dashboard`]: https://docs.rs/tower-bulwark-health/latest/tower_bulwark_health/struct.Dashboard.html
//! [`dashboard`]: https://docs.rs/tower-bulwark-health/latest/tower_bulwark_health/dashboard/index.html
#![forbid(unsafe_code)]

mod adapters;
#[cfg(feature = "dashboard")]
pub mod dashboard;
mod drain;
mod drain_events;
mod json;
mod kind;
mod registry;
mod service;

#[cfg(feature = "dashboard")]
pub use self::dashboard::{Dashboard, DashboardBuilder};

pub use self::drain::{Drain, DrainBody, DrainFuture, DrainHandle, DrainLayer, DrainReport};
pub use self::drain_events::DrainEvent;
pub use self::registry::{Health, Report, Status};
pub use self::service::HealthService;
