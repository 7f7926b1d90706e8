//! The bulkhead's events.

use std::fmt;
use std::time::Duration;

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
        use tower_bulwark_core::metric_name;
        match self {
            BulkheadEvent::Rejected { bulkhead, reason } => {
                let reason = match reason {
                    FullReason::QueueFull => "queue_full",
                    FullReason::WaitTimeout => "wait_timeout",
                    FullReason::Deadline => "deadline",
                };
                metrics::counter!(
                    metric_name!("bulkhead_rejections_total"),
                    "bulkhead" => bulkhead.to_string(),
                    "reason" => reason
                )
                .increment(1);
            }
            BulkheadEvent::Waited { bulkhead, wait } => {
                metrics::histogram!(metric_name!("bulkhead_wait_seconds"), "bulkhead" => bulkhead.to_string())
                    .record(wait.as_secs_f64());
            }
        }
    }
}
