//! The fallback layers' events: every degraded answer is reported, so an operator sees how
//! much of what callers got was not fresh.

use std::fmt;
#[cfg(feature = "metrics")]
use std::sync::OnceLock;

use http::StatusCode;
#[cfg(feature = "metrics")]
use tower_bulwark_core::metrics::{CachedMetrics, MetricHandles};
use tower_bulwark_core::{Event, Listeners, Name, RejectionKind};
use tracing::Level;

/// Where a degraded answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// The last good response for the request's key.
    LastGood,
    /// The fallback function ([`respond_with`](crate::FallbackBuilder::respond_with)).
    Function,
    /// The static response ([`static_response`](crate::FallbackBuilder::static_response)).
    Static,
    /// The backup service ([`BackupLayer`](crate::BackupLayer)).
    Backup,
}

impl Source {
    /// The `source` label of the metrics: `last_good`, `function`, `static`, `backup`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::LastGood => "last_good",
            Source::Function => "function",
            Source::Static => "static",
            Source::Backup => "backup",
        }
    }
}

/// Why a call fell back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// A bulwark layer refused it (an open breaker, a full bulkhead, a shed).
    Rejected(RejectionKind),
    /// It failed with an error the classifier calls a failure.
    Error,
    /// It was answered with a status the classifier calls a failure (a 503, say).
    Status(StatusCode),
}

impl Reason {
    /// The `reason` label of the metrics: `rejected`, `error`, `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected(_) => "rejected",
            Reason::Error => "error",
            Reason::Status(_) => "status",
        }
    }

    #[cfg(feature = "metrics")]
    fn index(self) -> usize {
        match self {
            Reason::Rejected(_) => 0,
            Reason::Error => 1,
            Reason::Status(_) => 2,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Rejected(kind) => write!(f, "refused ({kind:?})"),
            Reason::Error => f.write_str("failed"),
            Reason::Status(status) => write!(f, "answered {status}"),
        }
    }
}

/// Why a successful response was not kept as the last good one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unstorable {
    /// `Cache-Control: no-store`.
    NoStore,
    /// `Cache-Control: private`.
    Private,
    /// Its `Vary` cannot be honoured: `*`, a name that is not a header name, more than
    /// four names, or `Cookie` or `Authorization` (it differs per user); or the request's
    /// headers were not kept (the layer's first answers that vary, before it keeps them).
    Vary,
    /// The request carried `Authorization` and the response did not say `public`.
    Authorization,
    /// The request carried a `Cookie` (a session, most likely) and the response did not
    /// say `public`: it may be that user's own page.
    Cookie,
    /// It was already a degraded answer (`x-bulwark-degraded`), not a fresh one.
    Degraded,
    /// It must not be served stale (RFC 9111 §4.2.4: `no-cache`, `must-revalidate`,
    /// `proxy-revalidate`, or `s-maxage` in a shared cache), and the cache serves only
    /// stale copies: it answers when the origin did not.
    MustRevalidate,
}

impl Unstorable {
    /// The `why` label of the metrics: `no_store`, `private`, `vary`, `authorization`,
    /// `cookie`, `degraded`, `must_revalidate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Unstorable::NoStore => "no_store",
            Unstorable::Private => "private",
            Unstorable::Vary => "vary",
            Unstorable::Authorization => "authorization",
            Unstorable::Cookie => "cookie",
            Unstorable::Degraded => "degraded",
            Unstorable::MustRevalidate => "must_revalidate",
        }
    }
}

/// What a [`FallbackLayer`](crate::FallbackLayer) or [`BackupLayer`](crate::BackupLayer)
/// reports to its listeners. Calls that succeed and are not cached report nothing.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FallbackEvent {
    /// A failed or refused call was answered with something else, marked degraded.
    Served {
        /// The layer's name.
        fallback: Name,
        /// Where the answer came from.
        source: Source,
        /// Why the call fell back.
        reason: Reason,
    },
    /// A call fell back but nothing could answer it (no last good response for its key
    /// and no function, the function failed, or the backup could not be asked or failed):
    /// the failure went through.
    Unanswered {
        /// The layer's name.
        fallback: Name,
        /// Why the call fell back.
        reason: Reason,
    },
    /// A successful response was kept as the last good one for its key.
    Stored {
        /// The layer's name.
        fallback: Name,
    },
    /// A successful response to a cacheable request was not kept.
    NotStored {
        /// The layer's name.
        fallback: Name,
        /// Why.
        why: Unstorable,
    },
}

impl FallbackEvent {
    /// The name of the layer that reported it.
    pub fn fallback(&self) -> &Name {
        match self {
            FallbackEvent::Served { fallback, .. }
            | FallbackEvent::Unanswered { fallback, .. }
            | FallbackEvent::Stored { fallback }
            | FallbackEvent::NotStored { fallback, .. } => fallback,
        }
    }
}

impl fmt::Display for FallbackEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FallbackEvent::Served {
                fallback,
                source,
                reason,
            } => write!(
                f,
                "fallback `{fallback}` answered a call that {reason} from {}",
                source.as_str()
            ),
            FallbackEvent::Unanswered { fallback, reason } => write!(
                f,
                "fallback `{fallback}` had no answer for a call that {reason}"
            ),
            FallbackEvent::Stored { fallback } => {
                write!(f, "fallback `{fallback}` kept a last good response")
            }
            FallbackEvent::NotStored { fallback, why } => write!(
                f,
                "fallback `{fallback}` did not keep a response ({})",
                why.as_str()
            ),
        }
    }
}

impl Event for FallbackEvent {
    fn layer_kind(&self) -> &'static str {
        "fallback"
    }

    fn level(&self) -> Level {
        match self {
            FallbackEvent::Served { .. } | FallbackEvent::Unanswered { .. } => Level::DEBUG,
            FallbackEvent::Stored { .. } | FallbackEvent::NotStored { .. } => Level::TRACE,
        }
    }

    /// Records `bulwark_fallback_served_total` (labels `fallback`, `source`, `reason`),
    /// `bulwark_fallback_unanswered_total` (`fallback`, `reason`),
    /// `bulwark_fallback_stored_total` (`fallback`) and
    /// `bulwark_fallback_not_stored_total` (`fallback`, `why`).
    #[cfg(feature = "metrics")]
    fn record_metrics(&self) {
        FallbackMetrics::record_once(self);
    }
}

/// A layer's name and listeners: builds an event only when someone listens.
#[derive(Clone)]
pub(crate) struct Reporter {
    pub(crate) name: Name,
    pub(crate) listeners: Listeners<FallbackEvent>,
}

impl Reporter {
    pub(crate) fn new(name: &'static str) -> Self {
        Reporter {
            name: Name::new_static(name),
            listeners: Listeners::new(),
        }
    }

    pub(crate) fn served(&self, source: Source, reason: Reason) {
        self.listeners.emit(|| FallbackEvent::Served {
            fallback: self.name.clone(),
            source,
            reason,
        });
    }

    pub(crate) fn unanswered(&self, reason: Reason) {
        self.listeners.emit(|| FallbackEvent::Unanswered {
            fallback: self.name.clone(),
            reason,
        });
    }

    pub(crate) fn stored(&self) {
        self.listeners.emit(|| FallbackEvent::Stored {
            fallback: self.name.clone(),
        });
    }

    pub(crate) fn not_stored(&self, why: Unstorable) {
        self.listeners.emit(|| FallbackEvent::NotStored {
            fallback: self.name.clone(),
            why,
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
pub(crate) type FallbackMetricsListener = CachedMetrics<FallbackMetrics>;

/// A fallback's `metrics` handles, each registered on first use and kept by
/// [`CachedMetrics`]: recording allocates nothing.
#[cfg(feature = "metrics")]
pub(crate) struct FallbackMetrics {
    fallback: Name,
    /// By source (last good, function, static, backup), then reason.
    served: [[OnceLock<metrics::Counter>; 3]; 4],
    /// By reason.
    unanswered: [OnceLock<metrics::Counter>; 3],
    stored: OnceLock<metrics::Counter>,
    /// By why, in the order of [`Unstorable`].
    not_stored: [OnceLock<metrics::Counter>; 7],
}

#[cfg(feature = "metrics")]
impl MetricHandles<FallbackEvent> for FallbackMetrics {
    fn instance(event: &FallbackEvent) -> &Name {
        event.fallback()
    }

    fn new(fallback: &Name) -> Self {
        FallbackMetrics {
            fallback: fallback.clone(),
            served: Default::default(),
            unanswered: Default::default(),
            stored: OnceLock::new(),
            not_stored: Default::default(),
        }
    }

    fn record(&self, event: &FallbackEvent) {
        use tower_bulwark_core::metric_name;
        let fallback = || self.fallback.to_string();
        let handle = match event {
            FallbackEvent::Served { source, reason, .. } => {
                let row = match source {
                    Source::LastGood => 0,
                    Source::Function => 1,
                    Source::Static => 2,
                    Source::Backup => 3,
                };
                self.served[row][reason.index()].get_or_init(|| {
                    metrics::counter!(
                        metric_name!("fallback_served_total"),
                        "fallback" => fallback(),
                        "source" => source.as_str(),
                        "reason" => reason.as_str()
                    )
                })
            }
            FallbackEvent::Unanswered { reason, .. } => self.unanswered[reason.index()]
                .get_or_init(|| {
                    metrics::counter!(
                        metric_name!("fallback_unanswered_total"),
                        "fallback" => fallback(),
                        "reason" => reason.as_str()
                    )
                }),
            FallbackEvent::Stored { .. } => self.stored.get_or_init(|| {
                metrics::counter!(
                    metric_name!("fallback_stored_total"),
                    "fallback" => fallback()
                )
            }),
            FallbackEvent::NotStored { why, .. } => {
                let slot = match why {
                    Unstorable::NoStore => 0,
                    Unstorable::Private => 1,
                    Unstorable::Vary => 2,
                    Unstorable::Authorization => 3,
                    Unstorable::Cookie => 4,
                    Unstorable::Degraded => 5,
                    Unstorable::MustRevalidate => 6,
                };
                self.not_stored[slot].get_or_init(|| {
                    metrics::counter!(
                        metric_name!("fallback_not_stored_total"),
                        "fallback" => fallback(),
                        "why" => why.as_str()
                    )
                })
            }
        };
        handle.increment(1);
    }
}
