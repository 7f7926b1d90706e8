//! The retry policy's events.

use std::fmt;
#[cfg(feature = "metrics")]
use std::sync::OnceLock;
use std::time::Duration;

#[cfg(feature = "metrics")]
use tower_bulwark_core::metrics::{CachedMetrics, MetricHandles};
use tower_bulwark_core::Event;
#[cfg(feature = "metrics")]
use tower_bulwark_core::Name;
use tracing::Level;

/// Why a call that asked to be retried was not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoRetry {
    /// It had used all its attempts.
    MaxAttempts,
    /// The budget had no retry left.
    Budget,
    /// The wait would have ended after the caller's deadline.
    Deadline,
    /// The server asked for a longer wait than the policy allows, or for no retry.
    Pushback,
    /// The request's [`ReplayBody`](crate::ReplayBody) was larger than its replay limit, so
    /// it cannot be sent again.
    BodyTooLarge,
}

impl NoRetry {
    fn as_str(self) -> &'static str {
        match self {
            NoRetry::MaxAttempts => "max_attempts",
            NoRetry::Budget => "budget",
            NoRetry::Deadline => "deadline",
            NoRetry::Pushback => "pushback",
            NoRetry::BodyTooLarge => "body_too_large",
        }
    }
}

/// What a retry policy reports to its listeners. Calls whose first attempt succeeds report
/// nothing.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RetryEvent {
    /// A retry was scheduled.
    Retrying {
        /// The attempt about to be made (2 for the first retry).
        attempt: u32,
        /// The wait before it.
        wait: Duration,
    },
    /// A retry was wanted but not made.
    NotRetried {
        /// Why.
        reason: NoRetry,
    },
}

impl fmt::Display for RetryEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryEvent::Retrying { attempt, wait } => {
                write!(f, "retrying (attempt {attempt}) after {wait:?}")
            }
            RetryEvent::NotRetried { reason } => write!(f, "not retried ({})", reason.as_str()),
        }
    }
}

impl Event for RetryEvent {
    fn layer_kind(&self) -> &'static str {
        "retry"
    }

    /// `INFO` when the budget refused a retry (the budget doing its job during an outage,
    /// worth seeing in normal logs), `DEBUG` for the rest (every retry, every call that
    /// used its attempts).
    fn level(&self) -> Level {
        match self {
            RetryEvent::NotRetried {
                reason: NoRetry::Budget,
            } => Level::INFO,
            _ => Level::DEBUG,
        }
    }

    /// Records `bulwark_retries_total`, `bulwark_retry_wait_seconds` (histogram) and
    /// `bulwark_retry_not_retried_total` (label `reason`: `max_attempts`, `budget`,
    /// `deadline`, `pushback`, `body_too_large`).
    #[cfg(feature = "metrics")]
    fn record_metrics(&self) {
        RetryMetrics::record_once(self);
    }
}

/// What [`Builder::with_metrics`](crate::Builder::with_metrics) installs.
#[cfg(feature = "metrics")]
pub(crate) type RetryMetricsListener = CachedMetrics<RetryMetrics>;

/// A retry policy's `metrics` handles, each registered on first use and kept by
/// [`CachedMetrics`]: recording allocates nothing.
#[cfg(feature = "metrics")]
pub(crate) struct RetryMetrics {
    retries: OnceLock<metrics::Counter>,
    wait: OnceLock<metrics::Histogram>,
    /// By reason, in the order of [`NoRetry`]'s variants.
    not_retried: [OnceLock<metrics::Counter>; 5],
}

#[cfg(feature = "metrics")]
impl MetricHandles<RetryEvent> for RetryMetrics {
    /// Retry policies have no name (their metrics have no instance label): one instance.
    fn instance(_: &RetryEvent) -> &Name {
        static POLICY: Name = Name::new_static("retry");
        &POLICY
    }

    fn new(_: &Name) -> Self {
        RetryMetrics {
            retries: OnceLock::new(),
            wait: OnceLock::new(),
            not_retried: Default::default(),
        }
    }

    fn record(&self, event: &RetryEvent) {
        use tower_bulwark_core::metric_name;
        match event {
            RetryEvent::Retrying { wait, .. } => {
                self.retries
                    .get_or_init(|| metrics::counter!(metric_name!("retries_total")))
                    .increment(1);
                self.wait
                    .get_or_init(|| metrics::histogram!(metric_name!("retry_wait_seconds")))
                    .record(wait.as_secs_f64());
            }
            RetryEvent::NotRetried { reason } => {
                let slot = match reason {
                    NoRetry::MaxAttempts => 0,
                    NoRetry::Budget => 1,
                    NoRetry::Deadline => 2,
                    NoRetry::Pushback => 3,
                    NoRetry::BodyTooLarge => 4,
                };
                self.not_retried[slot]
                    .get_or_init(|| {
                        metrics::counter!(
                            metric_name!("retry_not_retried_total"),
                            "reason" => reason.as_str()
                        )
                    })
                    .increment(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_refusal_is_logged_at_info_the_rest_at_debug() {
        let budget = RetryEvent::NotRetried {
            reason: NoRetry::Budget,
        };
        assert_eq!(budget.level(), Level::INFO);
        for quiet in [
            RetryEvent::Retrying {
                attempt: 2,
                wait: Duration::from_millis(50),
            },
            RetryEvent::NotRetried {
                reason: NoRetry::MaxAttempts,
            },
            RetryEvent::NotRetried {
                reason: NoRetry::Deadline,
            },
        ] {
            assert_eq!(quiet.level(), Level::DEBUG, "{quiet}");
        }
    }
}
