//! The shedding layer's events.

use std::fmt;
#[cfg(feature = "metrics")]
use std::sync::OnceLock;

#[cfg(feature = "metrics")]
use tower_bulwark_core::metrics::{CachedMetrics, MetricHandles};
use tower_bulwark_core::{Criticality, Event, Name};
use tracing::Level;

/// What a shedding layer reports to its listeners. Admitted calls report nothing.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ShedEvent {
    /// A call was shed (in shadow mode: would have been, and was admitted).
    Shed {
        /// The layer's name.
        layer: Name,
        /// The call's tier.
        criticality: Criticality,
        /// Shadow mode: counted, not shed.
        shadow: bool,
    },
    /// The concurrency limit moved.
    LimitChanged {
        /// The layer's name.
        layer: Name,
        /// The limit before.
        from: usize,
        /// The limit now.
        to: usize,
    },
}

impl fmt::Display for ShedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShedEvent::Shed {
                layer,
                criticality,
                shadow: false,
            } => write!(f, "`{layer}` shed a {criticality} call"),
            ShedEvent::Shed {
                layer, criticality, ..
            } => write!(
                f,
                "`{layer}` would have shed a {criticality} call (shadow mode)"
            ),
            ShedEvent::LimitChanged { layer, from, to } => {
                write!(f, "`{layer}` concurrency limit {from} -> {to}")
            }
        }
    }
}

impl Event for ShedEvent {
    fn layer_kind(&self) -> &'static str {
        "shed"
    }

    fn level(&self) -> Level {
        match self {
            ShedEvent::Shed { .. } => Level::DEBUG,
            ShedEvent::LimitChanged { .. } => Level::TRACE,
        }
    }

    /// Records `bulwark_shed_rejections_total` (labels `shed`, `tier`, `mode`: `shed` or
    /// `shadow`) and the gauge `bulwark_shed_limit` (label `shed`).
    #[cfg(feature = "metrics")]
    fn record_metrics(&self) {
        ShedMetrics::record_once(self);
    }
}

/// What [`Builder::with_metrics`](crate::Builder::with_metrics) installs.
#[cfg(feature = "metrics")]
pub(crate) type ShedMetricsListener = CachedMetrics<ShedMetrics>;

/// A shedding layer's `metrics` handles, each registered on first use and kept by
/// [`CachedMetrics`]: recording allocates nothing.
#[cfg(feature = "metrics")]
pub(crate) struct ShedMetrics {
    layer: Name,
    /// By tier (most critical first), then mode (shed, shadow).
    shed: [[OnceLock<metrics::Counter>; 2]; 4],
    limit: OnceLock<metrics::Gauge>,
}

#[cfg(feature = "metrics")]
impl MetricHandles<ShedEvent> for ShedMetrics {
    fn instance(event: &ShedEvent) -> &Name {
        match event {
            ShedEvent::Shed { layer, .. } | ShedEvent::LimitChanged { layer, .. } => layer,
        }
    }

    fn new(layer: &Name) -> Self {
        ShedMetrics {
            layer: layer.clone(),
            shed: Default::default(),
            limit: OnceLock::new(),
        }
    }

    fn record(&self, event: &ShedEvent) {
        use tower_bulwark_core::metric_name;
        let layer = || self.layer.to_string();
        match event {
            ShedEvent::Shed {
                criticality,
                shadow,
                ..
            } => {
                let tier = match criticality {
                    Criticality::CriticalPlus => 0,
                    Criticality::Critical => 1,
                    Criticality::SheddablePlus => 2,
                    Criticality::Sheddable => 3,
                };
                self.shed[tier][usize::from(*shadow)]
                    .get_or_init(|| {
                        metrics::counter!(
                            metric_name!("shed_rejections_total"),
                            "shed" => layer(),
                            "tier" => criticality.as_str(),
                            "mode" => if *shadow { "shadow" } else { "shed" }
                        )
                    })
                    .increment(1);
            }
            ShedEvent::LimitChanged { to, .. } => self
                .limit
                .get_or_init(|| metrics::gauge!(metric_name!("shed_limit"), "shed" => layer()))
                .set(*to as f64),
        }
    }
}
