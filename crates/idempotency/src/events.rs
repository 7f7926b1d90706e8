//! What the idempotency layer reports: every keyed request's outcome.

use std::fmt;
#[cfg(feature = "metrics")]
use std::sync::OnceLock;

#[cfg(feature = "metrics")]
use tower_bulwark_core::metrics::{CachedMetrics, MetricHandles};
use tower_bulwark_core::{Event, Listeners, Name};
use tracing::Level;

/// What happened to a request the layer looked at (one with a key, or one that needed a
/// key). Requests the layer passes by (other methods, no key where none is required)
/// report nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The key was free: the request ran and its answer is being kept.
    Executed,
    /// The request was answered with the kept answer of the first one.
    Replayed,
    /// 409: the first request with the key is still running.
    InProgress,
    /// 422: the key was first used for a different request.
    Mismatch,
    /// 400: the route requires a key and the request had none.
    MissingKey,
    /// 400: the key is empty, too long, repeated or not a structured-field string.
    BadKey,
    /// 413: the request's body is over the limit, so it cannot be fingerprinted.
    BodyTooLarge,
    /// The request ran but its answer is not for keeping (a 5xx, a 429, an error, or the
    /// caller left before it answered): the key was released, so a retry runs again.
    Released,
    /// The request ran but its answer could not be kept (over the size limit, or the
    /// client left before reading it all): the key stays spent, a repeat gets 409.
    NotKept,
    /// 409: a repeat of a request whose answer was not kept.
    Spent,
    /// The store failed and the request was refused with 503 ([`OnStoreError::FailClosed`](crate::OnStoreError::FailClosed)).
    StoreFailedClosed,
    /// The store failed and the request ran unprotected ([`OnStoreError::FailOpen`](crate::OnStoreError::FailOpen)).
    StoreFailedOpen,
    /// The answer could not be kept because the claim was gone (its lease ran out while
    /// the request ran, so another may have run too: the lease is too short), or the store
    /// failed at every try until the lease ended.
    KeepFailed,
    /// 400: the request's body failed while the layer read it (the client broke off).
    BodyUnreadable,
}

impl Outcome {
    /// How many outcomes there are.
    #[cfg(feature = "metrics")]
    const COUNT: usize = Outcome::BodyUnreadable as usize + 1;

    /// The `outcome` label of the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Executed => "executed",
            Outcome::Replayed => "replayed",
            Outcome::InProgress => "in_progress",
            Outcome::Mismatch => "mismatch",
            Outcome::MissingKey => "missing_key",
            Outcome::BadKey => "bad_key",
            Outcome::BodyTooLarge => "body_too_large",
            Outcome::Released => "released",
            Outcome::NotKept => "not_kept",
            Outcome::Spent => "spent",
            Outcome::StoreFailedClosed => "store_failed_closed",
            Outcome::StoreFailedOpen => "store_failed_open",
            Outcome::KeepFailed => "keep_failed",
            Outcome::BodyUnreadable => "body_unreadable",
        }
    }

    #[cfg(feature = "metrics")]
    fn index(self) -> usize {
        self as usize
    }
}

/// What an [`IdempotencyLayer`](crate::IdempotencyLayer) reports to its listeners.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyEvent {
    /// The layer's name.
    pub idempotency: Name,
    /// What happened.
    pub outcome: Outcome,
}

impl fmt::Display for IdempotencyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "idempotency `{}`: {}",
            self.idempotency,
            self.outcome.as_str()
        )
    }
}

impl Event for IdempotencyEvent {
    fn layer_kind(&self) -> &'static str {
        "idempotency"
    }

    fn level(&self) -> Level {
        match self.outcome {
            Outcome::StoreFailedClosed | Outcome::StoreFailedOpen | Outcome::KeepFailed => {
                Level::WARN
            }
            Outcome::Executed | Outcome::Replayed => Level::DEBUG,
            _ => Level::INFO,
        }
    }

    /// Records `bulwark_idempotency_requests_total` (labels `idempotency`, `outcome`).
    #[cfg(feature = "metrics")]
    fn record_metrics(&self) {
        IdempotencyMetrics::record_once(self);
    }
}

/// A layer's name and listeners: builds an event only when someone listens.
#[derive(Clone)]
pub(crate) struct Reporter {
    pub(crate) name: Name,
    pub(crate) listeners: Listeners<IdempotencyEvent>,
}

impl Reporter {
    pub(crate) fn new(name: &'static str) -> Self {
        Reporter {
            name: Name::new_static(name),
            listeners: Listeners::new(),
        }
    }

    pub(crate) fn report(&self, outcome: Outcome) {
        self.listeners.emit(|| IdempotencyEvent {
            idempotency: self.name.clone(),
            outcome,
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
pub(crate) type IdempotencyMetricsListener = CachedMetrics<IdempotencyMetrics>;

/// A layer's counters, one per outcome, each registered on first use.
#[cfg(feature = "metrics")]
pub(crate) struct IdempotencyMetrics {
    idempotency: Name,
    requests: [OnceLock<metrics::Counter>; Outcome::COUNT],
}

#[cfg(feature = "metrics")]
impl MetricHandles<IdempotencyEvent> for IdempotencyMetrics {
    fn instance(event: &IdempotencyEvent) -> &Name {
        &event.idempotency
    }

    fn new(idempotency: &Name) -> Self {
        IdempotencyMetrics {
            idempotency: idempotency.clone(),
            requests: Default::default(),
        }
    }

    fn record(&self, event: &IdempotencyEvent) {
        use tower_bulwark_core::metric_name;
        self.requests[event.outcome.index()]
            .get_or_init(|| {
                metrics::counter!(
                    metric_name!("idempotency_requests_total"),
                    "idempotency" => self.idempotency.to_string(),
                    "outcome" => event.outcome.as_str()
                )
            })
            .increment(1);
    }
}
