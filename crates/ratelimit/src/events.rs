//! What the rate limit layers report: every request they limit.

use std::fmt;
use std::sync::Arc;
#[cfg(feature = "metrics")]
use std::sync::OnceLock;
use std::time::Duration;

#[cfg(feature = "metrics")]
use tower_bulwark_core::metrics::{CachedMetrics, MetricHandles};
use tower_bulwark_core::{Criticality, Event, Listeners, Name};
use tracing::Level;

use crate::LimitError;

/// What a [`RateLimitLayer`](crate::RateLimitLayer) or
/// [`ClientRateLimitLayer`](crate::ClientRateLimitLayer) reports to its listeners, for
/// each request it limits (requests without a key report nothing). Built only when a
/// listener is registered.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RateLimitEvent {
    /// The request was within its limits and went on (a client's after no wait).
    Admitted {
        /// The layer's name.
        ratelimit: Name,
        /// The request's tier (a client's: the task's current criticality, or `critical`).
        criticality: Criticality,
        /// What is left of the binding quota (the least of those asked).
        remaining: u32,
    },
    /// The request was refused: a server answered 429 (or `RESOURCE_EXHAUSTED`), a client
    /// returned a `Throttled` rejection.
    Limited {
        /// The layer's name.
        ratelimit: Name,
        /// The request's tier.
        criticality: Criticality,
        /// The name of the quota that refused it.
        policy: Name,
        /// When a permit is free again.
        retry_after: Duration,
    },
    /// A client's request waited for its permit, then went on (counted as admitted too).
    Waited {
        /// The layer's name.
        ratelimit: Name,
        /// The task's current criticality, or `critical`.
        criticality: Criticality,
        /// How long it waited.
        waited: Duration,
    },
    /// The limiter could not answer (its store is down or slow).
    LimiterFailed {
        /// The layer's name.
        ratelimit: Name,
        /// The request's tier.
        criticality: Criticality,
        /// Whether the request went on unlimited ([`OnLimiterError::FailOpen`]) or was
        /// refused.
        ///
        /// [`OnLimiterError::FailOpen`]: crate::OnLimiterError::FailOpen
        failed_open: bool,
        /// What the limiter said.
        error: Arc<LimitError>,
    },
}

impl RateLimitEvent {
    /// The layer's name.
    pub fn ratelimit(&self) -> &Name {
        match self {
            RateLimitEvent::Admitted { ratelimit, .. }
            | RateLimitEvent::Limited { ratelimit, .. }
            | RateLimitEvent::Waited { ratelimit, .. }
            | RateLimitEvent::LimiterFailed { ratelimit, .. } => ratelimit,
        }
    }
}

impl fmt::Display for RateLimitEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateLimitEvent::Admitted {
                ratelimit,
                criticality,
                remaining,
            } => write!(
                f,
                "rate limit `{ratelimit}` admitted a {criticality} request ({remaining} left)"
            ),
            RateLimitEvent::Limited {
                ratelimit,
                criticality,
                policy,
                retry_after,
            } => write!(
                f,
                "rate limit `{ratelimit}` refused a {criticality} request by quota `{policy}` (retry after {retry_after:?})"
            ),
            RateLimitEvent::Waited {
                ratelimit,
                criticality,
                waited,
            } => write!(
                f,
                "rate limit `{ratelimit}` held a {criticality} request {waited:?}"
            ),
            RateLimitEvent::LimiterFailed {
                ratelimit,
                criticality,
                failed_open,
                error,
            } => write!(
                f,
                "rate limit `{ratelimit}`: {error}; {criticality} request {}",
                if *failed_open { "let through" } else { "refused" }
            ),
        }
    }
}

impl Event for RateLimitEvent {
    fn layer_kind(&self) -> &'static str {
        "ratelimit"
    }

    fn level(&self) -> Level {
        match self {
            RateLimitEvent::Admitted { .. } => Level::TRACE,
            RateLimitEvent::Waited { .. } | RateLimitEvent::Limited { .. } => Level::DEBUG,
            RateLimitEvent::LimiterFailed { .. } => Level::WARN,
        }
    }

    /// Records `bulwark_ratelimit_requests_total` (labels `ratelimit`, `outcome`, `tier`;
    /// a wait counts as `admitted`) and the histogram `bulwark_ratelimit_wait_seconds`
    /// (label `ratelimit`).
    #[cfg(feature = "metrics")]
    fn record_metrics(&self) {
        RateLimitMetrics::record_once(self);
    }
}

/// A layer's name and listeners: builds an event only when someone listens.
#[derive(Clone)]
pub(crate) struct Reporter {
    pub(crate) name: Name,
    pub(crate) listeners: Listeners<RateLimitEvent>,
}

impl Reporter {
    pub(crate) fn new(name: &'static str) -> Self {
        Reporter {
            name: Name::new_static(name),
            listeners: Listeners::new(),
        }
    }

    #[inline]
    pub(crate) fn admitted(&self, criticality: Criticality, remaining: u32) {
        self.listeners.emit(|| RateLimitEvent::Admitted {
            ratelimit: self.name.clone(),
            criticality,
            remaining,
        });
    }

    pub(crate) fn limited(&self, criticality: Criticality, policy: &Name, retry_after: Duration) {
        self.listeners.emit(|| RateLimitEvent::Limited {
            ratelimit: self.name.clone(),
            criticality,
            policy: policy.clone(),
            retry_after,
        });
    }

    pub(crate) fn waited(&self, criticality: Criticality, waited: Duration) {
        self.listeners.emit(|| RateLimitEvent::Waited {
            ratelimit: self.name.clone(),
            criticality,
            waited,
        });
    }

    pub(crate) fn failed(&self, criticality: Criticality, error: LimitError, failed_open: bool) {
        self.listeners.emit(|| RateLimitEvent::LimiterFailed {
            ratelimit: self.name.clone(),
            criticality,
            failed_open,
            error: Arc::new(error),
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
pub(crate) type RateLimitMetricsListener = CachedMetrics<RateLimitMetrics>;

/// The `outcome` labels, in the order of [`RateLimitMetrics::requests`].
#[cfg(feature = "metrics")]
const OUTCOMES: [&str; 4] = ["admitted", "limited", "failed_open", "failed_closed"];

/// A layer's `metrics` handles, each registered on first use: recording allocates nothing.
#[cfg(feature = "metrics")]
pub(crate) struct RateLimitMetrics {
    ratelimit: Name,
    /// By outcome, then tier (least important first).
    requests: [[OnceLock<metrics::Counter>; 4]; 4],
    wait: OnceLock<metrics::Histogram>,
}

#[cfg(feature = "metrics")]
impl MetricHandles<RateLimitEvent> for RateLimitMetrics {
    fn instance(event: &RateLimitEvent) -> &Name {
        event.ratelimit()
    }

    fn new(ratelimit: &Name) -> Self {
        RateLimitMetrics {
            ratelimit: ratelimit.clone(),
            requests: Default::default(),
            wait: OnceLock::new(),
        }
    }

    fn record(&self, event: &RateLimitEvent) {
        use tower_bulwark_core::metric_name;
        let (outcome, criticality) = match event {
            RateLimitEvent::Admitted { criticality, .. } => (0, *criticality),
            RateLimitEvent::Limited { criticality, .. } => (1, *criticality),
            RateLimitEvent::LimiterFailed {
                failed_open,
                criticality,
                ..
            } => (if *failed_open { 2 } else { 3 }, *criticality),
            RateLimitEvent::Waited {
                waited,
                criticality,
                ..
            } => {
                let wait = self.wait.get_or_init(|| {
                    metrics::histogram!(
                        metric_name!("ratelimit_wait_seconds"),
                        "ratelimit" => self.ratelimit.to_string()
                    )
                });
                wait.record(waited.as_secs_f64());
                (0, *criticality)
            }
        };
        self.requests[outcome][criticality as usize]
            .get_or_init(|| {
                metrics::counter!(
                    metric_name!("ratelimit_requests_total"),
                    "ratelimit" => self.ratelimit.to_string(),
                    "outcome" => OUTCOMES[outcome],
                    "tier" => criticality.as_str()
                )
            })
            .increment(1);
    }
}
