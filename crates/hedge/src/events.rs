//! What the hedge layer reports.

use std::fmt;
#[cfg(feature = "metrics")]
use std::sync::OnceLock;
use std::time::Duration;

#[cfg(feature = "metrics")]
use tower_bulwark_core::metrics::{CachedMetrics, MetricHandles};
use tower_bulwark_core::{Event, Listeners, Name};
use tracing::Level;

/// Why a hedge was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotSent {
    /// The request may not be sent twice ([`MayHedge`](crate::MayHedge) said no, when the
    /// call was made, or its body can no longer be replayed when the hedge was due).
    NotIdempotent,
    /// Hedging is paused: the dependency answered overloaded recently. Counted when the
    /// call is made (such a call gets no timer) and when a pause began while it ran.
    Paused,
    /// The budget had no hedge left.
    Budget,
    /// The caller's deadline has passed or is nearer than the margin.
    Deadline,
    /// The inner service's clone was not ready when the hedge was due (a full bulkhead
    /// below, say): the hedge is skipped rather than waited for.
    NotReady,
}

impl NotSent {
    /// Every reason, in the order of [`as_str`](Self::as_str)'s labels.
    pub const ALL: [NotSent; 5] = [
        NotSent::NotIdempotent,
        NotSent::Paused,
        NotSent::Budget,
        NotSent::Deadline,
        NotSent::NotReady,
    ];

    /// The reason's metric label: `not_idempotent`, `paused`, `budget`, `deadline`,
    /// `not_ready`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotSent::NotIdempotent => "not_idempotent",
            NotSent::Paused => "paused",
            NotSent::Budget => "budget",
            NotSent::Deadline => "deadline",
            NotSent::NotReady => "not_ready",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for NotSent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which attempt answered a call that was hedged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Winner {
    /// The first attempt.
    Primary,
    /// The hedge of this number (1 for the first hedge).
    Hedge(u32),
}

/// What a [`HedgeLayer`](crate::HedgeLayer) reports to its listeners. Calls that were not
/// hedged and not refused a hedge report nothing. Built only when a listener is
/// registered.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum HedgeEvent {
    /// A hedge was sent.
    Sent {
        /// The layer's name.
        hedge: Name,
        /// Its number (1 for the first hedge of a call).
        number: u32,
        /// How long after the first attempt.
        after: Duration,
    },
    /// A hedge was due (or the call could not have one) and was not sent.
    NotSent {
        /// The layer's name.
        hedge: Name,
        /// Why.
        reason: NotSent,
    },
    /// A hedged call answered: which attempt won, and how many still running were
    /// cancelled (their futures dropped).
    Answered {
        /// The layer's name.
        hedge: Name,
        /// The attempt whose answer the caller got.
        winner: Winner,
        /// Attempts cancelled.
        cancelled: u32,
        /// The call's latency.
        latency: Duration,
    },
    /// A pause began: an answer said the dependency is overloaded, and no hedge is sent
    /// until the pause ends. An answer that only extends a pause in force reports nothing.
    Paused {
        /// The layer's name.
        hedge: Name,
        /// For how long from now.
        pause: Duration,
    },
}

impl HedgeEvent {
    /// The layer's name.
    pub fn hedge(&self) -> &Name {
        match self {
            HedgeEvent::Sent { hedge, .. }
            | HedgeEvent::NotSent { hedge, .. }
            | HedgeEvent::Answered { hedge, .. }
            | HedgeEvent::Paused { hedge, .. } => hedge,
        }
    }
}

impl fmt::Display for HedgeEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HedgeEvent::Sent {
                hedge,
                number,
                after,
            } => {
                write!(f, "hedge `{hedge}` sent hedge {number} after {after:?}")
            }
            HedgeEvent::NotSent { hedge, reason } => {
                write!(f, "hedge `{hedge}` sent no hedge: {reason}")
            }
            HedgeEvent::Answered {
                hedge,
                winner,
                cancelled,
                latency,
            } => {
                let winner = match winner {
                    Winner::Primary => "the first attempt".to_owned(),
                    Winner::Hedge(n) => format!("hedge {n}"),
                };
                write!(
                    f,
                    "hedge `{hedge}`: {winner} answered in {latency:?}, {cancelled} cancelled"
                )
            }
            HedgeEvent::Paused { hedge, pause } => {
                write!(
                    f,
                    "hedge `{hedge}` paused for {pause:?}: the dependency is overloaded"
                )
            }
        }
    }
}

impl Event for HedgeEvent {
    fn layer_kind(&self) -> &'static str {
        "hedge"
    }

    fn level(&self) -> Level {
        match self {
            HedgeEvent::Paused { .. } => Level::INFO,
            HedgeEvent::Sent { .. } | HedgeEvent::Answered { .. } => Level::DEBUG,
            HedgeEvent::NotSent { .. } => Level::TRACE,
        }
    }

    /// Records `bulwark_hedge_sent_total`, `bulwark_hedge_wins_total` (label `winner`:
    /// `primary` or `hedge`), `bulwark_hedge_cancelled_total`,
    /// `bulwark_hedge_not_sent_total` (label `reason`), `bulwark_hedge_pauses_total` and the
    /// histogram `bulwark_hedge_delay_seconds` (when each hedge was sent); all labelled
    /// `hedge`.
    #[cfg(feature = "metrics")]
    fn record_metrics(&self) {
        HedgeMetrics::record_once(self);
    }
}

/// What `with_metrics` installs.
#[cfg(feature = "metrics")]
pub(crate) type HedgeMetricsListener = CachedMetrics<HedgeMetrics>;

/// A layer's `metrics` handles, each registered on first use.
#[cfg(feature = "metrics")]
pub(crate) struct HedgeMetrics {
    hedge: Name,
    sent: OnceLock<metrics::Counter>,
    delay: OnceLock<metrics::Histogram>,
    wins: [OnceLock<metrics::Counter>; 2],
    cancelled: OnceLock<metrics::Counter>,
    not_sent: [OnceLock<metrics::Counter>; 5],
    pauses: OnceLock<metrics::Counter>,
}

#[cfg(feature = "metrics")]
impl MetricHandles<HedgeEvent> for HedgeMetrics {
    fn instance(event: &HedgeEvent) -> &Name {
        event.hedge()
    }

    fn new(hedge: &Name) -> Self {
        HedgeMetrics {
            hedge: hedge.clone(),
            sent: OnceLock::new(),
            delay: OnceLock::new(),
            wins: Default::default(),
            cancelled: OnceLock::new(),
            not_sent: Default::default(),
            pauses: OnceLock::new(),
        }
    }

    fn record(&self, event: &HedgeEvent) {
        use tower_bulwark_core::metric_name;
        let hedge = || self.hedge.to_string();
        match event {
            HedgeEvent::Sent { after, .. } => {
                self.sent
                    .get_or_init(
                        || metrics::counter!(metric_name!("hedge_sent_total"), "hedge" => hedge()),
                    )
                    .increment(1);
                self.delay
                    .get_or_init(|| {
                        metrics::histogram!(metric_name!("hedge_delay_seconds"), "hedge" => hedge())
                    })
                    .record(after.as_secs_f64());
            }
            HedgeEvent::NotSent { reason, .. } => {
                self.not_sent[reason.index()]
                    .get_or_init(|| {
                        metrics::counter!(
                            metric_name!("hedge_not_sent_total"),
                            "hedge" => hedge(),
                            "reason" => reason.as_str()
                        )
                    })
                    .increment(1);
            }
            HedgeEvent::Answered {
                winner, cancelled, ..
            } => {
                let (index, label) = match winner {
                    Winner::Primary => (0, "primary"),
                    Winner::Hedge(_) => (1, "hedge"),
                };
                self.wins[index]
                    .get_or_init(|| {
                        metrics::counter!(
                            metric_name!("hedge_wins_total"),
                            "hedge" => hedge(),
                            "winner" => label
                        )
                    })
                    .increment(1);
                self.cancelled
                    .get_or_init(|| {
                        metrics::counter!(metric_name!("hedge_cancelled_total"), "hedge" => hedge())
                    })
                    .increment(u64::from(*cancelled));
            }
            HedgeEvent::Paused { .. } => {
                self.pauses
                    .get_or_init(|| {
                        metrics::counter!(metric_name!("hedge_pauses_total"), "hedge" => hedge())
                    })
                    .increment(1);
            }
        }
    }
}

/// A layer's name and listeners.
#[derive(Clone)]
pub(crate) struct Reporter {
    pub(crate) name: Name,
    pub(crate) listeners: Listeners<HedgeEvent>,
}

impl fmt::Debug for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reporter")
            .field("name", &self.name)
            .field("listeners", &self.listeners)
            .finish()
    }
}
