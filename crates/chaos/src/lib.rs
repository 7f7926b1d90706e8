//! Fault injection for [tower], for tests and game days: prove that the resilience layers
//! work by breaking things on purpose.
//!
//! - [`ChaosLayer`]: errors, aborts and latency ([`Latency`]: fixed, uniform, exponential)
//!   at chosen rates for any service.
//! - `HttpChaosLayer` (feature `http`): the same for HTTP and gRPC, answering injected
//!   errors with a chosen HTTP status or gRPC code, and per-request targeting by header
//!   (`x-bulwark-fault-*`), **off unless enabled**, so nobody outside can trigger faults in
//!   production.
//! - A seeded generator replays a run exactly; [`ChaosHandle`] is the kill switch. Disabled,
//!   a call costs one relaxed atomic load.
//!
//! [tower]: https://docs.rs/tower
#![forbid(unsafe_code)]

mod events;
mod future;
mod handle;
#[cfg(feature = "http")]
mod http_chaos;
mod injector;
mod layer;

pub use self::events::ChaosEvent;
pub use self::future::ChaosFuture;
pub use self::handle::ChaosHandle;
#[cfg(feature = "http")]
pub use self::http_chaos::{
    HttpChaos, HttpChaosLayer, HttpFault, FAULT_ABORT_HEADER, FAULT_DELAY_HEADER,
    FAULT_GRPC_HEADER, FAULT_STATUS_HEADER,
};
pub use self::injector::Latency;
pub use self::layer::{Chaos, ChaosBuilder, ChaosError, ChaosLayer};
