//! The `metrics` facade plumbing (feature `metrics`).
//!
//! Every metric of tower-bulwark is named `bulwark_<layer>_<what>` and recorded through the
//! [`metrics`](https://docs.rs/metrics) facade, so any exporter (Prometheus, StatsD, ...)
//! picks them up. Each crate lists its metrics in its docs.
//!
//! A layer's `with_metrics` installs a [`CachedMetrics`] listener: it registers each series
//! once, on first use, and records every later event through the handle it kept, so that
//! metrics cost no allocation per call. [`MetricsListener`] registers on every event: fine
//! for rare events of your own, not for per-call ones.

use std::collections::HashMap;
use std::fmt;
use std::sync::{OnceLock, PoisonError, RwLock};

use crate::events::{Event, Listener};
use crate::Name;

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

/// Records every event it hears through [`Event::record_metrics`], which registers its
/// series with the recorder each time (building a key, often allocating): for rare events.
/// Layers' `with_metrics` use [`CachedMetrics`] instead.
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

/// The `metrics` handles of one layer instance for its events `E`, kept by
/// [`CachedMetrics`]: each series is registered once, then recorded through its handle
/// (an atomic for most recorders) without building a key.
pub trait MetricHandles<E>: Send + Sync + 'static {
    /// The layer instance that emitted `event` (its name): each instance has its own
    /// handles, since its name is a label.
    fn instance(event: &E) -> &Name;

    /// The handles of `instance`; each is registered when first needed.
    fn new(instance: &Name) -> Self;

    /// Records `event`.
    fn record(&self, event: &E);

    /// Records `event` through handles made for it alone (registering each time): what
    /// [`Event::record_metrics`] does for [`MetricsListener`].
    fn record_once(event: &E)
    where
        Self: Sized,
    {
        Self::new(Self::instance(event)).record(event);
    }
}

/// Records a layer's events through the `metrics` facade with handles registered once per
/// layer instance: no allocation per event once each series has been seen.
///
/// A series is registered with the recorder installed when it is first recorded, and kept:
/// install the recorder before traffic starts. The first instance heard is found without a
/// lock; when several instances share the listener (a keyed breaker's keys, partitions
/// built from one builder) the others are kept by name, one entry per name heard, the same
/// series a recorder keeps.
pub struct CachedMetrics<H> {
    first: OnceLock<(Name, H)>,
    others: RwLock<HashMap<Name, H>>,
}

impl<H> CachedMetrics<H> {
    /// A listener with no handle registered yet.
    pub fn new() -> Self {
        CachedMetrics {
            first: OnceLock::new(),
            others: RwLock::new(HashMap::new()),
        }
    }
}

impl<H> Default for CachedMetrics<H> {
    fn default() -> Self {
        CachedMetrics::new()
    }
}

impl<H> fmt::Debug for CachedMetrics<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let others = self.others.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("CachedMetrics")
            .field("first", &self.first.get().map(|(name, _)| name))
            .field("others", &others.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<E, H: MetricHandles<E>> Listener<E> for CachedMetrics<H> {
    fn on_event(&self, event: &E) {
        let name = H::instance(event);
        let (first, handles) = self.first.get_or_init(|| (name.clone(), H::new(name)));
        if first == name {
            return handles.record(event);
        }
        let others = self.others.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(handles) = others.get(name) {
            return handles.record(event);
        }
        drop(others);
        let mut others = self.others.write().unwrap_or_else(PoisonError::into_inner);
        others
            .entry(name.clone())
            .or_insert_with(|| H::new(name))
            .record(event);
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

    /// A call of the named layer instance.
    #[derive(Debug)]
    struct Called(Name);

    impl fmt::Display for Called {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{} called", self.0)
        }
    }

    impl Event for Called {
        fn layer_kind(&self) -> &'static str {
            "test"
        }
        fn level(&self) -> Level {
            Level::TRACE
        }
    }

    static HANDLES_MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    struct CallHandles {
        name: Name,
        calls: OnceLock<metrics::Counter>,
    }

    impl MetricHandles<Called> for CallHandles {
        fn instance(event: &Called) -> &Name {
            &event.0
        }
        fn new(instance: &Name) -> Self {
            HANDLES_MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            CallHandles {
                name: instance.clone(),
                calls: OnceLock::new(),
            }
        }
        fn record(&self, _: &Called) {
            self.calls
                .get_or_init(|| {
                    metrics::counter!(
                        metric_name!("test_calls_total"),
                        "layer" => self.name.to_string()
                    )
                })
                .increment(1);
        }
    }

    #[test]
    fn cached_metrics_keep_one_set_of_handles_per_instance() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let mut listeners = Listeners::new();
        listeners.push(CachedMetrics::<CallHandles>::new());
        let names = ["a", "b", "a", "c", "b", "a"].map(Name::from);
        metrics::with_local_recorder(&recorder, || {
            for name in &names {
                listeners.emit(|| Called(name.clone()));
            }
        });
        assert_eq!(HANDLES_MADE.load(std::sync::atomic::Ordering::Relaxed), 3);
        let mut counts: Vec<(String, DebugValue)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let label = key.key().labels().next().unwrap().value().to_string();
                (label, value)
            })
            .collect();
        counts.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            counts,
            [
                ("a".to_string(), DebugValue::Counter(3)),
                ("b".to_string(), DebugValue::Counter(2)),
                ("c".to_string(), DebugValue::Counter(1)),
            ]
        );
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
