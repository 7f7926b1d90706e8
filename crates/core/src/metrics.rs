//! The `metrics` facade plumbing (feature `metrics`).
//!
//! Every metric of tower-bulwark is named `bulwark_<layer>_<what>` and recorded through the
//! [`metrics`](https://docs.rs/metrics) facade, so any exporter (Prometheus, StatsD, ...)
//! picks them up. Each crate lists its metrics in its docs.

use crate::events::{Event, Listener};

/// The prefix of every metric name.
pub const PREFIX: &str = "bulwark_";

/// A metric name with the `bulwark_` prefix, built at compile time.
///
/// ```
/// assert_eq!(
///     tower_bulwark_core::metric_name!("breaker_transitions_total"),
///     "bulwark_breaker_transitions_total"
/// );
/// ```
#[macro_export]
macro_rules! metric_name {
    ($name:literal) => {
        concat!("bulwark_", $name)
    };
}

/// Records every event it hears through [`Event::record_metrics`].
///
/// ```
/// use tower_bulwark_core::events::Listeners;
/// use tower_bulwark_core::metrics::MetricsListener;
/// # #[derive(Debug)] struct Rejected;
/// # impl std::fmt::Display for Rejected {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("rejected") }
/// # }
/// # impl tower_bulwark_core::Event for Rejected {
/// #     fn layer_kind(&self) -> &'static str { "bulkhead" }
/// #     fn level(&self) -> tracing::Level { tracing::Level::DEBUG }
/// #     fn record_metrics(&self) {
/// #         metrics::counter!(tower_bulwark_core::metric_name!("bulkhead_rejected_total")).increment(1);
/// #     }
/// # }
///
/// let mut listeners = Listeners::<Rejected>::new();
/// listeners.push(MetricsListener);
/// listeners.emit(|| Rejected);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsListener;

impl<E: Event> Listener<E> for MetricsListener {
    fn on_event(&self, event: &E) {
        event.record_metrics();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_and_prefix_agree() {
        assert!(metric_name!("x_total").starts_with(PREFIX));
    }
}
