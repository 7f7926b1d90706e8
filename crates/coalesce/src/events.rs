//! What the coalescing layer reports: who led, who joined, which bound was reached, which
//! calls were abandoned.

use std::fmt;
#[cfg(feature = "metrics")]
use std::sync::OnceLock;

#[cfg(feature = "metrics")]
use tower_bulwark_core::metrics::{CachedMetrics, MetricHandles};
use tower_bulwark_core::{Event, Listeners, Name};
use tracing::Level;

/// What happened: one per request the layer keyed, plus one per upstream call that ended
/// without a shared answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CoalesceEventKind {
    /// Nothing identical was in flight: the request went upstream and others may join it.
    Led,
    /// An identical request was in flight: this one waits for its answer.
    Joined,
    /// `max_keys` calls were in flight: the request went upstream on its own.
    OverKeys,
    /// The identical call in flight had `max_waiters` waiters: the request went upstream
    /// on its own.
    OverWaiters,
    /// The answer's body was over `max_body_bytes`: the leader (or, if it left, the waiter
    /// that polled it) got it whole; the others send their own calls
    /// ([`Resent`](Self::Resent)). One per upstream call.
    OverBody,
    /// A waiter sent its own call because the shared answer was over the body limit.
    Resent,
    /// Every caller waiting for the call left: the upstream call was dropped. One per
    /// upstream call.
    Abandoned,
    /// A waiter sent its own call because the shared answer's `Vary` names a header its
    /// request differs in from the leader's (or is `Vary: *`).
    Varied,
    /// Another key with the same hash (or a call made by a service of another type) was in
    /// flight: the request went upstream on its own.
    Collided,
}

impl CoalesceEventKind {
    /// How many kinds there are.
    #[cfg(feature = "metrics")]
    const COUNT: usize = CoalesceEventKind::Collided as usize + 1;

    /// The `event` label of the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CoalesceEventKind::Led => "led",
            CoalesceEventKind::Joined => "joined",
            CoalesceEventKind::OverKeys => "over_keys",
            CoalesceEventKind::OverWaiters => "over_waiters",
            CoalesceEventKind::OverBody => "over_body",
            CoalesceEventKind::Resent => "resent",
            CoalesceEventKind::Abandoned => "abandoned",
            CoalesceEventKind::Varied => "varied",
            CoalesceEventKind::Collided => "collided",
        }
    }
}

/// What a [`CoalesceLayer`](crate::CoalesceLayer) reports to its listeners.
#[derive(Debug, Clone, PartialEq)]
pub struct CoalesceEvent {
    /// The layer's name.
    pub coalesce: Name,
    /// What happened.
    pub kind: CoalesceEventKind,
}

impl fmt::Display for CoalesceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "coalesce `{}`: {}", self.coalesce, self.kind.as_str())
    }
}

impl Event for CoalesceEvent {
    fn layer_kind(&self) -> &'static str {
        "coalesce"
    }

    fn level(&self) -> Level {
        match self.kind {
            CoalesceEventKind::Led | CoalesceEventKind::Joined => Level::TRACE,
            CoalesceEventKind::Resent
            | CoalesceEventKind::Abandoned
            | CoalesceEventKind::Varied
            | CoalesceEventKind::Collided => Level::DEBUG,
            CoalesceEventKind::OverKeys
            | CoalesceEventKind::OverWaiters
            | CoalesceEventKind::OverBody => Level::INFO,
        }
    }

    /// Records `bulwark_coalesce_events_total` (labels `coalesce`, `event`).
    #[cfg(feature = "metrics")]
    fn record_metrics(&self) {
        CoalesceMetrics::record_once(self);
    }
}

/// A layer's name and listeners: builds an event only when someone listens.
#[derive(Clone)]
pub(crate) struct Reporter {
    pub(crate) name: Name,
    pub(crate) listeners: Listeners<CoalesceEvent>,
}

impl Reporter {
    pub(crate) fn new(name: &'static str) -> Self {
        Reporter {
            name: Name::new_static(name),
            listeners: Listeners::new(),
        }
    }

    pub(crate) fn report(&self, kind: CoalesceEventKind) {
        self.listeners.emit(|| CoalesceEvent {
            coalesce: self.name.clone(),
            kind,
        });
    }
}

impl fmt::Debug for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reporter")
            .field("name", &self.name)
            .field("listeners", &self.listeners)
            .finish()
    }
}

/// What `with_metrics` installs.
#[cfg(feature = "metrics")]
pub(crate) type CoalesceMetricsListener = CachedMetrics<CoalesceMetrics>;

/// A layer's counters, one per kind, each registered on first use.
#[cfg(feature = "metrics")]
pub(crate) struct CoalesceMetrics {
    coalesce: Name,
    events: [OnceLock<metrics::Counter>; CoalesceEventKind::COUNT],
}

#[cfg(feature = "metrics")]
impl MetricHandles<CoalesceEvent> for CoalesceMetrics {
    fn instance(event: &CoalesceEvent) -> &Name {
        &event.coalesce
    }

    fn new(coalesce: &Name) -> Self {
        CoalesceMetrics {
            coalesce: coalesce.clone(),
            events: Default::default(),
        }
    }

    fn record(&self, event: &CoalesceEvent) {
        use tower_bulwark_core::metric_name;
        self.events[event.kind as usize]
            .get_or_init(|| {
                metrics::counter!(
                    metric_name!("coalesce_events_total"),
                    "coalesce" => self.coalesce.to_string(),
                    "event" => event.kind.as_str()
                )
            })
            .increment(1);
    }
}
