//! The breaker's events.

use std::fmt;
#[cfg(feature = "metrics")]
use std::sync::OnceLock;
use std::time::Duration;

#[cfg(feature = "metrics")]
use tower_bulwark_core::metrics::{CachedMetrics, MetricHandles};
use tower_bulwark_core::{Event, Name, Outcome};
use tracing::Level;

use crate::State;

/// Why the breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Reason {
    /// This many failures in a row.
    ConsecutiveFailures(u32),
    /// The failure rate of the window reached the threshold.
    FailureRate {
        /// Failed calls / calls in the window.
        rate: f64,
        /// Calls in the window.
        calls: u64,
    },
    /// The slow-call rate of the window reached the threshold.
    SlowCallRate {
        /// Slow calls / calls in the window.
        rate: f64,
        /// Calls in the window.
        calls: u64,
    },
    /// The open duration passed; probing may start.
    OpenElapsed,
    /// A probe failed.
    ProbeFailed,
    /// Enough probes succeeded.
    ProbesSucceeded(u32),
    /// Half-open lasted its maximum wait without the probes concluding.
    HalfOpenTimedOut,
    /// An operator changed the state through the handle.
    Operator,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::ConsecutiveFailures(n) => write!(f, "{n} consecutive failures"),
            Reason::FailureRate { rate, calls } => {
                write!(f, "failure rate {:.1}% over {calls} calls", rate * 100.0)
            }
            Reason::SlowCallRate { rate, calls } => {
                write!(f, "slow-call rate {:.1}% over {calls} calls", rate * 100.0)
            }
            Reason::OpenElapsed => f.write_str("open duration elapsed"),
            Reason::ProbeFailed => f.write_str("a probe failed"),
            Reason::ProbesSucceeded(n) => {
                write!(f, "{n} successful probe{}", if *n == 1 { "" } else { "s" })
            }
            Reason::HalfOpenTimedOut => f.write_str("half-open timed out"),
            Reason::Operator => f.write_str("operator"),
        }
    }
}

/// What a circuit breaker reports to its listeners.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BreakerEvent {
    /// The breaker moved from one state to another.
    StateChanged {
        /// The breaker's name.
        breaker: Name,
        /// The state it left.
        from: State,
        /// The state it entered.
        to: State,
        /// Why.
        reason: Reason,
    },
    /// A call was refused.
    Rejected {
        /// The breaker's name.
        breaker: Name,
        /// The state that refused it.
        state: State,
        /// When a probe may go, if known.
        retry_after: Option<Duration>,
    },
    /// In metrics-only mode, a call that would have been refused was let through.
    WouldReject {
        /// The breaker's name.
        breaker: Name,
        /// The state that would have refused it.
        state: State,
    },
    /// An admitted call finished and its outcome was recorded.
    Recorded {
        /// The breaker's name.
        breaker: Name,
        /// How it was classified.
        outcome: Outcome,
        /// Whether it reached the slow-call threshold.
        slow: bool,
        /// Whether it was a half-open probe.
        probe: bool,
    },
}

impl fmt::Display for BreakerEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakerEvent::StateChanged {
                breaker,
                from,
                to,
                reason,
            } => {
                write!(f, "circuit breaker `{breaker}` {from} -> {to}: {reason}")
            }
            BreakerEvent::Rejected { breaker, state, .. } => {
                write!(f, "circuit breaker `{breaker}` ({state}) refused a call")
            }
            BreakerEvent::WouldReject { breaker, state } => {
                write!(
                    f,
                    "circuit breaker `{breaker}` ({state}) would have refused a call"
                )
            }
            BreakerEvent::Recorded {
                breaker,
                outcome,
                slow,
                probe,
            } => write!(
                f,
                "circuit breaker `{breaker}` recorded {outcome:?}{}{}",
                if *slow { " (slow)" } else { "" },
                if *probe { " from a probe" } else { "" }
            ),
        }
    }
}

impl Event for BreakerEvent {
    fn layer_kind(&self) -> &'static str {
        "breaker"
    }

    fn level(&self) -> Level {
        match self {
            BreakerEvent::StateChanged {
                to: State::Closed | State::HalfOpen,
                ..
            } => Level::INFO,
            BreakerEvent::StateChanged { .. } => Level::WARN,
            BreakerEvent::Rejected { .. } | BreakerEvent::WouldReject { .. } => Level::DEBUG,
            BreakerEvent::Recorded { .. } => Level::TRACE,
        }
    }

    /// Records `bulwark_breaker_state` (gauge, see [`State::as_gauge`]),
    /// `bulwark_breaker_transitions_total` (`from`, `to`), `bulwark_breaker_rejections_total`,
    /// `bulwark_breaker_would_reject_total` and `bulwark_breaker_calls_total` (`outcome`:
    /// `success`, `failure`, `ignored`; `slow`: `true`/`false`), all labelled `breaker`.
    #[cfg(feature = "metrics")]
    fn record_metrics(&self) {
        BreakerMetrics::record_once(self);
    }
}

/// What [`Builder::with_metrics`](crate::Builder::with_metrics) installs.
#[cfg(feature = "metrics")]
pub(crate) type BreakerMetricsListener = CachedMetrics<BreakerMetrics>;

/// A breaker's `metrics` handles, each registered on first use and kept by
/// [`CachedMetrics`]: recording allocates nothing.
#[cfg(feature = "metrics")]
pub(crate) struct BreakerMetrics {
    breaker: Name,
    state: OnceLock<metrics::Gauge>,
    rejections: OnceLock<metrics::Counter>,
    would_reject: OnceLock<metrics::Counter>,
    /// By outcome (success, failure, ignored), then slow (false, true).
    calls: [[OnceLock<metrics::Counter>; 2]; 3],
}

#[cfg(feature = "metrics")]
impl MetricHandles<BreakerEvent> for BreakerMetrics {
    fn instance(event: &BreakerEvent) -> &Name {
        match event {
            BreakerEvent::StateChanged { breaker, .. }
            | BreakerEvent::Rejected { breaker, .. }
            | BreakerEvent::WouldReject { breaker, .. }
            | BreakerEvent::Recorded { breaker, .. } => breaker,
        }
    }

    fn new(breaker: &Name) -> Self {
        BreakerMetrics {
            breaker: breaker.clone(),
            state: OnceLock::new(),
            rejections: OnceLock::new(),
            would_reject: OnceLock::new(),
            calls: Default::default(),
        }
    }

    fn record(&self, event: &BreakerEvent) {
        use tower_bulwark_core::metric_name;
        let breaker = || self.breaker.to_string();
        match event {
            BreakerEvent::StateChanged { from, to, .. } => {
                self.state
                    .get_or_init(|| {
                        metrics::gauge!(
                            metric_name!("breaker_state"),
                            "breaker" => breaker()
                        )
                    })
                    .set(to.as_gauge());
                // Rare (a few per open duration) and of many label pairs: registered as
                // they happen.
                metrics::counter!(
                    metric_name!("breaker_transitions_total"),
                    "breaker" => breaker(),
                    "from" => from.as_str(),
                    "to" => to.as_str()
                )
                .increment(1);
            }
            BreakerEvent::Rejected { .. } => self
                .rejections
                .get_or_init(|| {
                    metrics::counter!(
                        metric_name!("breaker_rejections_total"),
                        "breaker" => breaker()
                    )
                })
                .increment(1),
            BreakerEvent::WouldReject { .. } => self
                .would_reject
                .get_or_init(|| {
                    metrics::counter!(
                        metric_name!("breaker_would_reject_total"),
                        "breaker" => breaker()
                    )
                })
                .increment(1),
            BreakerEvent::Recorded { outcome, slow, .. } => {
                let (row, outcome) = match outcome {
                    Outcome::Success => (0, "success"),
                    Outcome::Failure => (1, "failure"),
                    Outcome::Ignored => (2, "ignored"),
                };
                self.calls[row][usize::from(*slow)]
                    .get_or_init(|| {
                        metrics::counter!(
                            metric_name!("breaker_calls_total"),
                            "breaker" => breaker(),
                            "outcome" => outcome,
                            "slow" => if *slow { "true" } else { "false" }
                        )
                    })
                    .increment(1);
            }
        }
    }
}
