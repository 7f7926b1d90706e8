//! The deadline layers' events: the calls they refuse and the calls they cut off.

use std::fmt;
#[cfg(feature = "metrics")]
use std::sync::OnceLock;

use tower_bulwark_core::events::{Listener, Listeners};
#[cfg(feature = "metrics")]
use tower_bulwark_core::metrics::{CachedMetrics, MetricHandles};
use tower_bulwark_core::{Event, Name, Rejection, RejectionKind};
use tracing::Level;

/// What a deadline layer (accept, propagate, timeout, adaptive timeout) reports to its
/// listeners. Calls that finish in time report nothing.
///
/// Each layer reports what it saw. A layer inside another deadline layer takes the outer
/// one's bound for its caller's deadline, so a call cut off there is reported by both: as
/// `DeadlineExceeded` by the inner layer (its caller's deadline passed) and, when the outer
/// one is a timeout, as `TimedOut` by the timeout (the kind the caller gets). Count
/// cut-offs at one layer rather than adding them up across layers. The client preset's
/// order (propagation outside the attempt timeout) reports an attempt timeout once.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DeadlineEvent {
    /// A call refused before it started: its deadline had passed
    /// (`DeadlineExceeded`), too little of it was left to send it on (`DeadlineExceeded`,
    /// from the propagate layer), or its deadline header was malformed and the layer
    /// rejects those (`InvalidRequest`).
    Refused {
        /// The layer's name.
        deadline: Name,
        /// The refusal's kind.
        kind: RejectionKind,
        /// The refusal's reason, as in its [`Rejection`](tower_bulwark_core::Rejection).
        reason: &'static str,
    },
    /// A call cut off while it ran: the caller's deadline (`DeadlineExceeded`) or the
    /// layer's own timeout (`TimedOut`) passed, and the inner future was dropped.
    CutOff {
        /// The layer's name.
        deadline: Name,
        /// `DeadlineExceeded` or `TimedOut`.
        kind: RejectionKind,
        /// The reason, as in the call's [`Rejection`](tower_bulwark_core::Rejection).
        reason: &'static str,
    },
}

impl DeadlineEvent {
    /// The name of the layer that reports it.
    pub fn deadline(&self) -> &Name {
        match self {
            DeadlineEvent::Refused { deadline, .. } | DeadlineEvent::CutOff { deadline, .. } => {
                deadline
            }
        }
    }
}

impl fmt::Display for DeadlineEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadlineEvent::Refused {
                deadline, reason, ..
            } => write!(f, "deadline layer `{deadline}` refused a call ({reason})"),
            DeadlineEvent::CutOff {
                deadline, reason, ..
            } => write!(f, "deadline layer `{deadline}` cut a call off ({reason})"),
        }
    }
}

impl Event for DeadlineEvent {
    fn layer_kind(&self) -> &'static str {
        "deadline"
    }

    fn level(&self) -> Level {
        Level::DEBUG
    }

    /// Records `bulwark_deadline_refusals_total` (labels `deadline`; `stage`: `before`,
    /// refused before the call, or `during`, cut off; `kind`: `deadline_exceeded`,
    /// `timed_out`, `invalid_request`).
    #[cfg(feature = "metrics")]
    fn record_metrics(&self) {
        DeadlineMetrics::record_once(self);
    }
}

/// What the builders' `with_metrics` install.
#[cfg(feature = "metrics")]
pub(crate) type DeadlineMetricsListener = CachedMetrics<DeadlineMetrics>;

/// A deadline layer's `metrics` handles, each registered on first use and kept by
/// [`CachedMetrics`]: recording allocates nothing.
#[cfg(feature = "metrics")]
pub(crate) struct DeadlineMetrics {
    deadline: Name,
    /// By stage (before, during) and kind (deadline exceeded, timed out, invalid request).
    refusals: [[OnceLock<metrics::Counter>; 3]; 2],
}

#[cfg(feature = "metrics")]
impl MetricHandles<DeadlineEvent> for DeadlineMetrics {
    fn instance(event: &DeadlineEvent) -> &Name {
        event.deadline()
    }

    fn new(deadline: &Name) -> Self {
        DeadlineMetrics {
            deadline: deadline.clone(),
            refusals: Default::default(),
        }
    }

    fn record(&self, event: &DeadlineEvent) {
        use tower_bulwark_core::metric_name;
        let (stage, kind) = match event {
            DeadlineEvent::Refused { kind, .. } => ((0, "before"), kind),
            DeadlineEvent::CutOff { kind, .. } => ((1, "during"), kind),
        };
        let kind = match kind {
            RejectionKind::TimedOut => (1, "timed_out"),
            RejectionKind::InvalidRequest => (2, "invalid_request"),
            _ => (0, "deadline_exceeded"),
        };
        self.refusals[stage.0][kind.0]
            .get_or_init(|| {
                metrics::counter!(
                    metric_name!("deadline_refusals_total"),
                    "deadline" => self.deadline.to_string(),
                    "stage" => stage.1,
                    "kind" => kind.1
                )
            })
            .increment(1);
    }
}

/// A deadline layer's name and listeners, carried into each call's future so that a call
/// cut off while it runs is reported. Cloning it clones the name and, only when the layer
/// has listeners, one `Arc`.
#[derive(Debug, Clone)]
pub(crate) struct Reporter {
    pub(crate) name: Name,
    listeners: Listeners<DeadlineEvent>,
}

impl Reporter {
    pub(crate) fn new(name: &'static str) -> Self {
        Reporter {
            name: Name::from(name),
            listeners: Listeners::new(),
        }
    }

    pub(crate) fn push(&mut self, listener: impl Listener<DeadlineEvent> + 'static) {
        self.listeners.push(listener);
    }

    /// Reports a call refused before it started, and returns its rejection.
    pub(crate) fn refuse(&self, kind: RejectionKind, reason: &'static str) -> Rejection {
        self.listeners.emit(|| DeadlineEvent::Refused {
            deadline: self.name.clone(),
            kind,
            reason,
        });
        Rejection::new(kind, self.name.clone()).with_reason(reason)
    }

    /// Reports a call cut off while it ran, and returns its rejection.
    pub(crate) fn cut_off(&self, kind: RejectionKind, reason: &'static str) -> Rejection {
        self.listeners.emit(|| DeadlineEvent::CutOff {
            deadline: self.name.clone(),
            kind,
            reason,
        });
        Rejection::new(kind, self.name.clone()).with_reason(reason)
    }
}
