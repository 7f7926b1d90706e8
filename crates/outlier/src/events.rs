//! What a detector reports: ejections, returns, and ejections its cap prevented.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

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
    /// Its mean latency over the last interval was more than `factor x` the median of the
    /// endpoints with enough calls, and more than `minimum_excess` above it
    /// ([`SlowEndpoint`](crate::SlowEndpoint)).
    SlowEndpoint {
        /// The endpoint's mean latency in the interval (of its timed calls: successes and
        /// timeouts).
        mean: Duration,
        /// The median of the compared endpoints' means.
        median: Duration,
        /// The threshold it was above: `max(factor x median, median + minimum_excess)`.
        threshold: Duration,
    },
}

impl Reason {
    /// A short label: `consecutive`, `gateway`, `success_rate`, `failure_percentage`,
    /// `slow_endpoint` (the `reason` label of the metrics).
    pub fn label(&self) -> &'static str {
        match self {
            Reason::ConsecutiveFailures { .. } => "consecutive",
            Reason::ConsecutiveGatewayFailures { .. } => "gateway",
            Reason::SuccessRate { .. } => "success_rate",
            Reason::FailurePercentage { .. } => "failure_percentage",
            Reason::SlowEndpoint { .. } => "slow_endpoint",
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
            Reason::SlowEndpoint {
                mean,
                median,
                threshold,
            } => write!(
                f,
                "mean latency {mean:?} above {threshold:?} (median {median:?})"
            ),
        }
    }
}

/// What an [`OutlierDetector`](crate::OutlierDetector) reports to its listeners. Built only
/// when a listener is registered; none is on the path of a call to a healthy endpoint.
///
/// Events are emitted by whichever call, poll or evaluation made the change, with no lock
/// held (a listener may call the detector). So when one endpoint's ejection ends and it is
/// ejected again on two threads at once, its `Returned` may reach a listener after the
/// next `Ejected`. Both carry `ejected_until`, the end the ejection was given: the two
/// events of one ejection have the same value and a later ejection of the endpoint a later
/// one, so a listener that needs the order sorts by it (the metrics need not: see
/// [`record_metrics`](Event::record_metrics)).
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
        /// When it ends: the identity of this ejection, shared by its `Returned`.
        ejected_until: Instant,
    },
    /// An ejection ended: its time is up and the endpoint reports ready again; or it ended
    /// early because the endpoints left are fewer and the cap lower (the soonest-ending
    /// ejections beyond the cap end); or the ejected endpoint was removed (its last service
    /// dropped), which ends its ejection too.
    Returned {
        /// The detector's name.
        outlier: Name,
        /// The endpoint's key.
        endpoint: Name,
        /// The end the ejection was given (its `Ejected` has the same), even if it ended
        /// earlier.
        ejected_until: Instant,
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
                ..
            } => write!(
                f,
                "outlier detector `{outlier}` ejected `{endpoint}` for {duration:?} ({reason}; ejection {times})"
            ),
            OutlierEvent::Returned {
                outlier, endpoint, ..
            } => {
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
    /// 1 while ejected, 0 after, a removed endpoint included). The gauge is raised by one
    /// on each `Ejected` and lowered by one on each `Returned` rather than set, so events
    /// of racing threads that arrive out of order still leave it right once both are in.
    /// Every event is rare (an ejection, a return), so the series are registered on each
    /// one.
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
                .increment(1.0);
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
                .decrement(1.0);
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
