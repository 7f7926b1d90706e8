//! Load shedding for [tower]: under overload, refuse the excess early and cheaply, least
//! important work first, so the calls admitted stay fast.
//!
//! - [`ShedLayer`]: an adaptive concurrency limit ([`MinRtt`] by default, which keeps
//!   latency within a buffer over the service's own; [`Vegas`], [`Aimd`], [`Gradient2`]
//!   with Netflix `concurrency-limits` semantics and defaults; or [`Fixed`]); calls beyond
//!   it are refused at once with an `Overloaded` rejection and pushback. Criticality tiers
//!   shed `sheddable` before `sheddable-plus` before `critical` before `critical-plus`
//!   under contention, and borrow what the others leave unused. Shadow mode counts what would be shed. [`ShedHandle`] reads the
//!   limit, calls in flight, latency estimates and sheds by tier. The admitted call runs
//!   with its criticality as the current one, and [`PropagateCriticalityLayer`] (feature
//!   `http`) writes it on the calls it makes, so the next service sheds the same work first.
//! - [`AdaptiveThrottleLayer`]: client-side adaptive throttling (Google SRE's
//!   `(requests - K * accepts) / (requests + 1)`, with Envoy admission control's knobs):
//!   a client that sees its backend refusing calls rejects some locally, before they add
//!   load.
//!
//! [tower]: https://docs.rs/tower
#![forbid(unsafe_code)]

mod algorithm;
mod builders;
mod error;
mod events;
mod future;
mod handle;
mod layer;
mod limiter;
mod min_rtt;
#[cfg(feature = "http")]
mod propagate;
mod service;
#[cfg(feature = "serde")]
mod settings;
mod source;
mod throttle;
mod tiers;
mod window;

pub use self::algorithm::{Aimd, Fixed, Gradient2, LimitAlgorithm, RttEstimates, Sample, Vegas};
pub use self::builders::{AimdBuilder, Gradient2Builder, MinRttBuilder};
pub use self::error::{Overloaded, Throttled};
pub use self::events::ShedEvent;
pub use self::future::ResponseFuture;
pub use self::handle::{ShedHandle, Snapshot};
pub use self::layer::{Builder, ShedLayer};
pub use self::min_rtt::MinRtt;
#[cfg(feature = "http")]
pub use self::propagate::{PropagateCriticality, PropagateCriticalityLayer};
pub use self::service::Shed;
#[cfg(feature = "serde")]
pub use self::settings::{AlgorithmSetting, ShedConfig};
#[cfg(feature = "http")]
pub use self::source::FromRequest;
pub use self::source::{AllCritical, CriticalityOf};
pub use self::throttle::{
    AdaptiveThrottle, AdaptiveThrottleLayer, ThrottleBuilder, ThrottleFuture,
};
pub use self::tiers::TierShares;
pub use self::window::WindowSize;
// What a `FromRequest::trust` rule sees of a request: core's, where the rule is.
#[cfg(feature = "http")]
pub use tower_bulwark_core::RequestHead;
