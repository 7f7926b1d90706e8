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
    use crate::events::Listeners;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use metrics_util::MetricKind;
    use std::fmt;
    use tracing::Level;

    #[derive(Debug)]
    struct Rejected;

    impl fmt::Display for Rejected {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("rejected")
        }
    }

    impl Event for Rejected {
        fn layer_kind(&self) -> &'static str {
            "bulkhead"
        }
        fn level(&self) -> Level {
            Level::DEBUG
        }
        fn record_metrics(&self) {
            metrics::counter!(metric_name!("bulkhead_rejected_total"), "layer" => "db")
                .increment(1);
        }
    }

    #[test]
    fn macro_and_prefix_agree() {
        assert!(metric_name!("x_total").starts_with(PREFIX));
    }

    #[test]
    fn the_metrics_listener_records_through_the_facade() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let mut listeners = Listeners::new();
        listeners.push(MetricsListener);
        metrics::with_local_recorder(&recorder, || {
            listeners.emit(|| Rejected);
            listeners.emit(|| Rejected);
        });
        let metrics = snapshotter.snapshot().into_vec();
        assert_eq!(metrics.len(), 1);
        let (key, _, _, value) = &metrics[0];
        assert_eq!(key.kind(), MetricKind::Counter);
        assert_eq!(key.key().name(), "bulwark_bulkhead_rejected_total");
        assert_eq!(value, &DebugValue::Counter(2));
    }
}
