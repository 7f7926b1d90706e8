//! What a detector reports: ejections, returns, and ejections its cap prevented.

use std::fmt;
use std::time::Duration;

use tower_bulwark_core::{Event, Name};
use tracing::Level;

/// Why an endpoint was (or would have been) ejected.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Reason {
    /// This many failures in a row.
    ConsecutiveFailures {
        /// The failures in a row.
        count: u32,
    },
    /// This many gateway failures (502, 503, 504, transport errors) in a row.
    ConsecutiveGatewayFailures {
        /// The gateway failures in a row.
        count: u32,
    },
    /// Its success rate over the last interval was below `mean - stdev x factor` of the
    /// endpoints with enough calls.
    SuccessRate {
        /// The endpoint's success rate in the interval (`0..=1`).
        rate: f64,
        /// The threshold it fell under (`0..=1`, may be negative).
        threshold: f64,
    },
    /// Its share of failures over the last interval was at or above the threshold.
    FailurePercentage {
        /// The endpoint's share of failures in the interval (`0..=1`).
        failures: f64,
        /// The configured threshold (`0..=1`).
        threshold: f64,
    },
}

impl Reason {
    /// A short label: `consecutive`, `gateway`, `success_rate`, `failure_percentage` (the
    /// `reason` label of the metrics).
    pub fn label(&self) -> &'static str {
        match self {
            Reason::ConsecutiveFailures { .. } => "consecutive",
            Reason::ConsecutiveGatewayFailures { .. } => "gateway",
            Reason::SuccessRate { .. } => "success_rate",
            Reason::FailurePercentage { .. } => "failure_percentage",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::ConsecutiveFailures { count } => write!(f, "{count} failures in a row"),
            Reason::ConsecutiveGatewayFailures { count } => {
                write!(f, "{count} gateway failures in a row")
            }
            Reason::SuccessRate { rate, threshold } => write!(
                f,
                "success rate {:.1}% below {:.1}%",
                rate * 100.0,
                threshold * 100.0
            ),
            Reason::FailurePercentage {
                failures,
                threshold,
            } => write!(
                f,
                "{:.1}% failures, threshold {:.1}%",
                failures * 100.0,
                threshold * 100.0
            ),
        }
    }
}

/// What an [`OutlierDetector`](crate::OutlierDetector) reports to its listeners. Built only
/// when a listener is registered; none is on the path of a call to a healthy endpoint.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum OutlierEvent {
    /// An endpoint was ejected: it reports not-ready for `duration`.
    Ejected {
        /// The detector's name.
        outlier: Name,
        /// The endpoint's key.
        endpoint: Name,
        /// Why.
        reason: Reason,
        /// How many times it has been ejected, this one included (after decay).
        times: u32,
        /// How long this ejection lasts.
        duration: Duration,
    },
    /// An ejected endpoint's time is up: it reports ready again.
    Returned {
        /// The detector's name.
        outlier: Name,
        /// The endpoint's key.
        endpoint: Name,
    },
    /// An endpoint met a rule but was not ejected: `ejected` endpoints already are, the
    /// most the cap allows.
    NotEjected {
        /// The detector's name.
        outlier: Name,
        /// The endpoint's key.
        endpoint: Name,
        /// The rule it met.
        reason: Reason,
        /// Endpoints ejected at the time.
        ejected: usize,
        /// The cap at the time.
        max_ejected: usize,
    },
}

impl OutlierEvent {
    /// The detector's name.
    pub fn outlier(&self) -> &Name {
        match self {
            OutlierEvent::Ejected { outlier, .. }
            | OutlierEvent::Returned { outlier, .. }
            | OutlierEvent::NotEjected { outlier, .. } => outlier,
        }
    }

    /// The endpoint's key.
    pub fn endpoint(&self) -> &Name {
        match self {
            OutlierEvent::Ejected { endpoint, .. }
            | OutlierEvent::Returned { endpoint, .. }
            | OutlierEvent::NotEjected { endpoint, .. } => endpoint,
        }
    }
}

impl fmt::Display for OutlierEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutlierEvent::Ejected {
                outlier,
                endpoint,
                reason,
                times,
                duration,
            } => write!(
                f,
                "outlier detector `{outlier}` ejected `{endpoint}` for {duration:?} ({reason}; ejection {times})"
            ),
            OutlierEvent::Returned { outlier, endpoint } => {
                write!(f, "outlier detector `{outlier}` returned `{endpoint}`")
            }
            OutlierEvent::NotEjected {
                outlier,
                endpoint,
                reason,
                ejected,
                max_ejected,
            } => write!(
                f,
                "outlier detector `{outlier}` kept `{endpoint}` ({reason}): {ejected} of at most {max_ejected} already ejected"
            ),
        }
    }
}

impl Event for OutlierEvent {
    fn layer_kind(&self) -> &'static str {
        "outlier"
    }

    fn level(&self) -> Level {
        match self {
            OutlierEvent::Ejected { .. } | OutlierEvent::NotEjected { .. } => Level::WARN,
            OutlierEvent::Returned { .. } => Level::INFO,
        }
    }

    /// Records `bulwark_outlier_ejections_total` (labels `outlier`, `endpoint`, `reason`),
    /// `bulwark_outlier_returns_total` (`outlier`, `endpoint`),
    /// `bulwark_outlier_capped_total` (`outlier`, `endpoint`, `reason`: a rule met while
    /// the cap was full) and the gauge `bulwark_outlier_ejected` (`outlier`, `endpoint`:
    /// 1 while ejected, 0 after). Every event is rare (an ejection, a return), so the
    /// series are registered on each one.
    #[cfg(feature = "metrics")]
    fn record_metrics(&self) {
        use tower_bulwark_core::metric_name;
        let outlier = self.outlier().to_string();
        let endpoint = self.endpoint().to_string();
        match self {
            OutlierEvent::Ejected { reason, .. } => {
                metrics::counter!(
                    metric_name!("outlier_ejections_total"),
                    "outlier" => outlier.clone(),
                    "endpoint" => endpoint.clone(),
                    "reason" => reason.label()
                )
                .increment(1);
                metrics::gauge!(
                    metric_name!("outlier_ejected"),
                    "outlier" => outlier,
                    "endpoint" => endpoint
                )
                .set(1.0);
            }
            OutlierEvent::Returned { .. } => {
                metrics::counter!(
                    metric_name!("outlier_returns_total"),
                    "outlier" => outlier.clone(),
                    "endpoint" => endpoint.clone()
                )
                .increment(1);
                metrics::gauge!(
                    metric_name!("outlier_ejected"),
                    "outlier" => outlier,
                    "endpoint" => endpoint
                )
                .set(0.0);
            }
            OutlierEvent::NotEjected { reason, .. } => {
                metrics::counter!(
                    metric_name!("outlier_capped_total"),
                    "outlier" => outlier,
                    "endpoint" => endpoint,
                    "reason" => reason.label()
                )
                .increment(1);
            }
        }
    }
}
