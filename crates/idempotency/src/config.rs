//! [`IdempotencyBuilder`]: the validated settings of an [`IdempotencyLayer`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{HeaderMap, Method, StatusCode};
use tower_bulwark_core::config::{non_zero, non_zero_duration};
use tower_bulwark_core::{ConfigError, Listener, Name};

use crate::events::{IdempotencyEvent, Reporter};
use crate::{IdempotencyLayer, KeyFormat, MemoryStore, OnStoreError, Store};

/// The methods keys are honoured on by default: the ones that are not idempotent by
/// themselves (RFC 9110 §9.2.2).
pub const DEFAULT_METHODS: [Method; 2] = [Method::POST, Method::PATCH];

type ScopeFn = dyn Fn(&Parts) -> Vec<u8> + Send + Sync;
type RequiredFn = dyn Fn(&Parts) -> bool + Send + Sync;
type KeepFn = dyn Fn(StatusCode, &HeaderMap) -> bool + Send + Sync;

/// The settings every service of a layer shares.
pub(crate) struct Settings {
    pub(crate) methods: Vec<Method>,
    pub(crate) required: Option<Arc<RequiredFn>>,
    pub(crate) format: KeyFormat,
    pub(crate) max_key_len: usize,
    pub(crate) max_request_body: usize,
    pub(crate) max_response_body: usize,
    pub(crate) lease: Duration,
    pub(crate) ttl: Duration,
    pub(crate) store_timeout: Duration,
    pub(crate) on_store_error: OnStoreError,
    scope: Option<Arc<ScopeFn>>,
    keep: Option<Arc<KeepFn>>,
}

impl Settings {
    /// The request's scope: the user's function, else the `Authorization` header.
    pub(crate) fn scope(&self, parts: &Parts) -> Vec<u8> {
        match &self.scope {
            Some(scope) => scope(parts),
            None => parts
                .headers
                .get(AUTHORIZATION)
                .map(|v| v.as_bytes().to_vec())
                .unwrap_or_default(),
        }
    }

    pub(crate) fn requires_key(&self, parts: &Parts) -> bool {
        self.required
            .as_ref()
            .is_some_and(|required| required(parts))
    }

    /// Whether an answer is kept: asked of the status and headers, and again of the
    /// trailers when the body ends with some. By default [`keeps_by_default`].
    pub(crate) fn keeps(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        match &self.keep {
            Some(keep) => keep(status, headers),
            None => keeps_by_default(status, headers),
        }
    }
}

/// The default rule of which answers are kept: all but those that say the request was not
/// (or not surely) carried out, so a retry must run it: a 5xx, a 429 or a 408, and a gRPC
/// status (in the headers, or the trailers given to the same rule) of `CANCELLED`,
/// `UNKNOWN`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `ABORTED`, `UNIMPLEMENTED`,
/// `INTERNAL`, `UNAVAILABLE` or `DATA_LOSS` (the codes gRPC maps to those HTTP statuses).
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use tower_bulwark_idempotency::keeps_by_default;
///
/// let none = HeaderMap::new();
/// assert!(keeps_by_default(StatusCode::CREATED, &none));
/// assert!(keeps_by_default(StatusCode::UNPROCESSABLE_ENTITY, &none)); // a definitive "no"
/// assert!(!keeps_by_default(StatusCode::SERVICE_UNAVAILABLE, &none));
/// assert!(!keeps_by_default(StatusCode::TOO_MANY_REQUESTS, &none));
/// let mut grpc = HeaderMap::new();
/// grpc.insert("grpc-status", "14".parse().unwrap()); // UNAVAILABLE
/// assert!(!keeps_by_default(StatusCode::OK, &grpc));
/// grpc.insert("grpc-status", "5".parse().unwrap()); // NOT_FOUND: an answer
/// assert!(keeps_by_default(StatusCode::OK, &grpc));
/// ```
pub fn keeps_by_default(status: StatusCode, headers: &HeaderMap) -> bool {
    let grpc_unserved = headers.get("grpc-status").is_some_and(|code| {
        matches!(
            code.as_bytes(),
            b"1" | b"2" | b"4" | b"8" | b"10" | b"12" | b"13" | b"14" | b"15"
        )
    });
    !status.is_server_error()
        && status != StatusCode::TOO_MANY_REQUESTS
        && status != StatusCode::REQUEST_TIMEOUT
        && !grpc_unserved
}

/// The layer's store, settings and reporter.
pub(crate) struct Shared<St> {
    pub(crate) store: St,
    pub(crate) settings: Settings,
    pub(crate) reporter: Reporter,
}

/// Builds an [`IdempotencyLayer`]; start with [`IdempotencyLayer::builder`].
pub struct IdempotencyBuilder<St = MemoryStore> {
    store: St,
    settings: Settings,
    reporter: Reporter,
}

impl IdempotencyLayer {
    /// Starts configuring, with the defaults: a [`MemoryStore`], keys honoured on `POST`
    /// and `PATCH` and optional, structured-field strings of at most 255 bytes, request
    /// bodies fingerprinted up to 1 MiB, answers kept up to 1 MiB for 24 hours, a lease of
    /// 60 s, the `Authorization` header as the scope, 5xx, 429 and 408 answers not kept,
    /// a store answering within 1 s or the request refused with 503.
    pub fn builder() -> IdempotencyBuilder {
        IdempotencyBuilder {
            store: MemoryStore::default(),
            settings: Settings {
                methods: DEFAULT_METHODS.to_vec(),
                required: None,
                format: KeyFormat::default(),
                max_key_len: 255,
                max_request_body: 1 << 20,
                max_response_body: 1 << 20,
                lease: Duration::from_secs(60),
                ttl: Duration::from_secs(24 * 60 * 60),
                store_timeout: Duration::from_secs(1),
                on_store_error: OnStoreError::default(),
                scope: None,
                keep: None,
            },
            reporter: Reporter::new("idempotency"),
        }
    }
}

impl<St: Store> IdempotencyBuilder<St> {
    /// Where keys are claimed and answers kept: [`MemoryStore`] by default (one replica);
    /// `RedisStore` (feature `redis`) for replicas sharing keys.
    pub fn store<St2: Store>(self, store: St2) -> IdempotencyBuilder<St2> {
        IdempotencyBuilder {
            store,
            settings: self.settings,
            reporter: self.reporter,
        }
    }

    /// The methods whose keys are honoured (default `POST` and `PATCH`); requests with
    /// other methods pass by untouched.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.settings.methods = methods.into_iter().collect();
        self
    }

    /// Refuses requests of the honoured methods that carry no key, with 400 (default: a
    /// request without a key passes by, unprotected).
    pub fn require_key(self) -> Self {
        self.require_key_when(|_| true)
    }

    /// Refuses requests of the honoured methods that carry no key with 400 where
    /// `required` says so (a route, a content type).
    pub fn require_key_when(
        mut self,
        required: impl Fn(&Parts) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.settings.required = Some(Arc::new(required));
        self
    }

    /// Which spellings of a key are accepted (default [`KeyFormat::StructuredString`], as
    /// the draft says; [`KeyFormat::StringOrBare`] for clients that send bare UUIDs).
    pub fn key_format(mut self, format: KeyFormat) -> Self {
        self.settings.format = format;
        self
    }

    /// The longest key accepted, in bytes after unquoting (default 255).
    pub fn max_key_len(mut self, max: usize) -> Self {
        self.settings.max_key_len = max;
        self
    }

    /// The largest request body read to fingerprint a keyed request (default 1 MiB);
    /// larger ones are refused with 413. The layer reads the body whole before the service
    /// sees it, so this also bounds the memory a keyed request holds.
    pub fn max_request_body(mut self, max: usize) -> Self {
        self.settings.max_request_body = max;
        self
    }

    /// The largest response body kept for replay (default 1 MiB). A larger answer is sent
    /// but not kept: the key stays spent and a repeat gets 409 (never a second run).
    pub fn max_response_body(mut self, max: usize) -> Self {
        self.settings.max_response_body = max;
        self
    }

    /// How long a running request holds its key (default 60 s): from its claim until its
    /// answer has been sent and kept. A repeat sent after the lease ended runs, even if the
    /// first is still running or sending: keep the lease above the longest run plus the
    /// time to send its answer (bound the run with a timeout). A crashed replica's keys are
    /// free again after it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.settings.lease = lease;
        self
    }

    /// How long an answer is kept for replay (default 24 hours, as Stripe does). Must be
    /// longer than the lease.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.settings.ttl = ttl;
        self
    }

    /// How long a store operation may take before it counts as a failure (default 1 s).
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.settings.store_timeout = timeout;
        self
    }

    /// What a failing store means: refuse with 503 ([`OnStoreError::FailClosed`], the
    /// default) or run unprotected ([`OnStoreError::FailOpen`]).
    pub fn on_store_error(mut self, on: OnStoreError) -> Self {
        self.settings.on_store_error = on;
        self
    }

    /// Whose keys these are: two scopes never share a key. Default: the `Authorization`
    /// header's value (requests without it share one anonymous scope). Give your tenant
    /// or account id instead where you have one: a refreshed token would otherwise start
    /// a new scope, and a retry after it would run again.
    pub fn scope(mut self, scope: impl Fn(&Parts) -> Vec<u8> + Send + Sync + 'static) -> Self {
        self.settings.scope = Some(Arc::new(scope));
        self
    }

    /// Which answers are kept (replayed to repeats); the others release the key so a
    /// retry runs again. Asked of the status and headers, and of the trailers if the body
    /// ends with some. Default: [`keeps_by_default`] (all but 5xx, 429, 408 and the gRPC
    /// statuses that mean the same).
    pub fn keep_when(
        mut self,
        keep: impl Fn(StatusCode, &HeaderMap) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.settings.keep = Some(Arc::new(keep));
        self
    }

    /// The name in events and metric labels (default `idempotency`).
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.reporter.name = name.into();
        self
    }

    /// Adds a listener for the layer's events. Listeners run inline: keep them quick.
    pub fn on_event(mut self, listener: impl Listener<IdempotencyEvent> + 'static) -> Self {
        self.reporter.listeners.push(listener);
        self
    }

    /// Records events through the `metrics` facade
    /// (`bulwark_idempotency_requests_total`).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(self) -> Self {
        self.on_event(crate::events::IdempotencyMetricsListener::new())
    }

    /// Checks the settings: at least one method; limits, lease and store timeout above
    /// zero; a TTL longer than the lease.
    pub fn build(self) -> Result<IdempotencyLayer<St>, ConfigError> {
        let s = &self.settings;
        if s.methods.is_empty() {
            return Err(ConfigError::new(
                "methods",
                "empty: no request would be protected (leave the layer out instead)",
            ));
        }
        non_zero("max_key_len", s.max_key_len)?;
        non_zero("max_request_body", s.max_request_body)?;
        non_zero("max_response_body", s.max_response_body)?;
        non_zero_duration("lease", s.lease)?;
        non_zero_duration("store_timeout", s.store_timeout)?;
        if s.ttl <= s.lease {
            return Err(ConfigError::new(
                "ttl",
                format!(
                    "must be longer than the lease ({:?}), got {:?}: an answer would expire before a crashed run's claim",
                    s.lease, s.ttl
                ),
            ));
        }
        Ok(IdempotencyLayer {
            shared: Arc::new(Shared {
                store: self.store,
                settings: self.settings,
                reporter: self.reporter,
            }),
        })
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("methods", &self.methods)
            .field("required", &self.required.is_some())
            .field("format", &self.format)
            .field("max_key_len", &self.max_key_len)
            .field("max_request_body", &self.max_request_body)
            .field("max_response_body", &self.max_response_body)
            .field("lease", &self.lease)
            .field("ttl", &self.ttl)
            .field("store_timeout", &self.store_timeout)
            .field("on_store_error", &self.on_store_error)
            .field(
                "scope",
                &if self.scope.is_some() {
                    "custom"
                } else {
                    "authorization"
                },
            )
            .field(
                "keep",
                &if self.keep.is_some() {
                    "custom"
                } else {
                    "default"
                },
            )
            .finish()
    }
}

impl<St: fmt::Debug> fmt::Debug for Shared<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("store", &self.store)
            .field("settings", &self.settings)
            .field("name", &self.reporter.name)
            .finish()
    }
}

impl<St: fmt::Debug> fmt::Debug for IdempotencyBuilder<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyBuilder")
            .field("store", &self.store)
            .field("settings", &self.settings)
            .field("name", &self.reporter.name)
            .finish()
    }
}
