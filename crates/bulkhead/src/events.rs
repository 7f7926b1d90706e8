//! The bulkhead's events.

use std::fmt;
#[cfg(feature = "metrics")]
use std::sync::OnceLock;
use std::time::Duration;

#[cfg(feature = "metrics")]
use tower_bulwark_core::metrics::{CachedMetrics, MetricHandles};
use tower_bulwark_core::{Event, Name};
use tracing::Level;

use crate::FullReason;

/// What a bulkhead reports to its listeners. Calls that find a free permit report nothing.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BulkheadEvent {
    /// A call was refused.
    Rejected {
        /// The bulkhead's name.
        bulkhead: Name,
        /// Why.
        reason: FullReason,
    },
    /// A queued call got its permit.
    Waited {
        /// The bulkhead's name.
        bulkhead: Name,
        /// How long it waited.
        wait: Duration,
    },
}

impl fmt::Display for BulkheadEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BulkheadEvent::Rejected { bulkhead, reason } => {
                write!(
                    f,
                    "bulkhead `{bulkhead}` refused a call ({})",
                    reason.as_str()
                )
            }
            BulkheadEvent::Waited { bulkhead, wait } => {
                write!(f, "bulkhead `{bulkhead}` admitted a call after {wait:?}")
            }
        }
    }
}

impl Event for BulkheadEvent {
    fn layer_kind(&self) -> &'static str {
        "bulkhead"
    }

    fn level(&self) -> Level {
        match self {
            BulkheadEvent::Rejected { .. } => Level::DEBUG,
            BulkheadEvent::Waited { .. } => Level::TRACE,
        }
    }

    /// Records `bulwark_bulkhead_rejections_total` (labels `bulkhead`, `reason`:
    /// `queue_full`, `wait_timeout`, `deadline`) and `bulwark_bulkhead_wait_seconds`
    /// (histogram, label `bulkhead`).
    #[cfg(feature = "metrics")]
    fn record_metrics(&self) {
        BulkheadMetrics::record_once(self);
    }
}

/// What [`Builder::with_metrics`](crate::Builder::with_metrics) installs.
#[cfg(feature = "metrics")]
pub(crate) type BulkheadMetricsListener = CachedMetrics<BulkheadMetrics>;

/// A bulkhead's `metrics` handles, each registered on first use and kept by
/// [`CachedMetrics`]: recording allocates nothing.
#[cfg(feature = "metrics")]
pub(crate) struct BulkheadMetrics {
    bulkhead: Name,
    /// By reason: queue full, wait timeout, deadline.
    rejections: [OnceLock<metrics::Counter>; 3],
    wait: OnceLock<metrics::Histogram>,
}

#[cfg(feature = "metrics")]
impl MetricHandles<BulkheadEvent> for BulkheadMetrics {
    fn instance(event: &BulkheadEvent) -> &Name {
        match event {
            BulkheadEvent::Rejected { bulkhead, .. } | BulkheadEvent::Waited { bulkhead, .. } => {
                bulkhead
            }
        }
    }

    fn new(bulkhead: &Name) -> Self {
        BulkheadMetrics {
            bulkhead: bulkhead.clone(),
            rejections: Default::default(),
            wait: OnceLock::new(),
        }
    }

    fn record(&self, event: &BulkheadEvent) {
        use tower_bulwark_core::metric_name;
        let bulkhead = || self.bulkhead.to_string();
        match event {
            BulkheadEvent::Rejected { reason, .. } => {
                let (slot, reason) = match reason {
                    FullReason::QueueFull => (0, "queue_full"),
                    FullReason::WaitTimeout => (1, "wait_timeout"),
                    FullReason::Deadline => (2, "deadline"),
                };
                self.rejections[slot]
                    .get_or_init(|| {
                        metrics::counter!(
                            metric_name!("bulkhead_rejections_total"),
                            "bulkhead" => bulkhead(),
                            "reason" => reason
                        )
                    })
                    .increment(1);
            }
            BulkheadEvent::Waited { wait, .. } => self
                .wait
                .get_or_init(|| {
                    metrics::histogram!(
                        metric_name!("bulkhead_wait_seconds"),
                        "bulkhead" => bulkhead()
                    )
                })
                .record(wait.as_secs_f64()),
        }
    }
}
