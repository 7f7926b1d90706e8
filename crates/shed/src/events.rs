//! The shedding layer's events.

use std::fmt;

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

    /// Records `bulwark_shed_shed_total` (labels `layer`, `tier`, `mode`: `shed` or
    /// `shadow`) and the gauge `bulwark_shed_limit` (label `layer`).
    #[cfg(feature = "metrics")]
    fn record_metrics(&self) {
        use tower_bulwark_core::metric_name;
        match self {
            ShedEvent::Shed {
                layer,
                criticality,
                shadow,
            } => {
                metrics::counter!(
                    metric_name!("shed_shed_total"),
                    "layer" => layer.to_string(),
                    "tier" => criticality.as_str(),
                    "mode" => if *shadow { "shadow" } else { "shed" }
                )
                .increment(1);
            }
            ShedEvent::LimitChanged { layer, to, .. } => {
                metrics::gauge!(metric_name!("shed_limit"), "layer" => layer.to_string())
                    .set(*to as f64);
            }
        }
    }
}
