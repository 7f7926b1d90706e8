//! [`CoalesceBuilder`]: the validated settings of a [`CoalesceLayer`].

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::request::Parts;
use http::HeaderName;
use tower_bulwark_core::config::non_zero;
use tower_bulwark_core::sync::AtomicUsize;
use tower_bulwark_core::{ConfigError, Listener, Name};

use crate::events::{CoalesceEvent, Reporter};
use crate::key::{KeySpec, Prehashed};
use crate::slot::Entry;
use crate::CoalesceLayer;

/// The default of [`CoalesceBuilder::max_keys`].
pub const DEFAULT_MAX_KEYS: usize = 10_000;
/// The default of [`CoalesceBuilder::max_waiters`].
pub const DEFAULT_MAX_WAITERS: usize = 10_000;
/// The default of [`CoalesceBuilder::max_body_bytes`]: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// The calls in flight, by key hash.
pub(crate) type Map = HashMap<u64, Arc<dyn Entry>, BuildHasherDefault<Prehashed>>;

/// What every service of one layer shares: settings, reporter, and the calls in flight.
pub(crate) struct Shared {
    pub(crate) key: KeySpec,
    pub(crate) max_keys: usize,
    pub(crate) max_waiters: usize,
    pub(crate) max_body: usize,
    pub(crate) reporter: Reporter,
    pub(crate) map: Mutex<Map>,
    /// Callers waiting for a shared call (leaders included), over all keys.
    pub(crate) waiters: AtomicUsize,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalesce")
            .field("name", &self.reporter.name)
            .field("key", &self.key)
            .field("max_keys", &self.max_keys)
            .field("max_waiters", &self.max_waiters)
            .field("max_body_bytes", &self.max_body)
            .finish()
    }
}

/// Builds a [`CoalesceLayer`]; start with [`CoalesceLayer::builder`].
pub struct CoalesceBuilder {
    key: KeySpec,
    max_keys: usize,
    max_waiters: usize,
    max_body: usize,
    reporter: Reporter,
}

impl fmt::Debug for CoalesceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoalesceBuilder")
            .field("name", &self.reporter.name)
            .field("key", &self.key)
            .field("max_keys", &self.max_keys)
            .field("max_waiters", &self.max_waiters)
            .field("max_body_bytes", &self.max_body)
            .finish()
    }
}

impl CoalesceLayer {
    /// Starts configuring, with the defaults: `GET` and `HEAD` requests (not conditional or
    /// range ones) keyed by method, full URI (with `Host` when the URI has no authority)
    /// and the values of `Authorization`, `Cookie`, `Accept`, `Accept-Encoding` and
    /// `Accept-Language`; at most 10,000 calls in
    /// flight and 10,000 waiters per call; answers shared up to 1 MiB of body.
    pub fn builder() -> CoalesceBuilder {
        CoalesceBuilder {
            key: KeySpec::new(),
            max_keys: DEFAULT_MAX_KEYS,
            max_waiters: DEFAULT_MAX_WAITERS,
            max_body: DEFAULT_MAX_BODY_BYTES,
            reporter: Reporter::new("coalesce"),
        }
    }

    /// A layer with the defaults (see [`builder`](Self::builder)).
    pub fn new() -> Self {
        CoalesceLayer::builder()
            .build()
            .expect("the defaults are valid settings")
    }
}

impl Default for CoalesceLayer {
    fn default() -> Self {
        CoalesceLayer::new()
    }
}

impl CoalesceBuilder {
    /// The name in events and metric labels (default `coalesce`).
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.reporter.name = name.into();
        self
    }

    /// Which requests are identical: `key` returns the key bytes of a request, or `None`
    /// to let it pass by uncoalesced. It replaces the default (method, full URI and `Host`,
    /// for `GET` and `HEAD` requests that are not conditional or range requests), so it
    /// decides which methods, and whether conditional (`If-None-Match`, ...) and `Range`
    /// requests, are coalesced: only coalesce requests that are safe to answer with
    /// another's answer.
    ///
    /// The method is always part of the key (a `HEAD` never gets a `GET`'s body), and so
    /// are the [per-user headers](Self::user_headers) unless
    /// [ignored](Self::ignore_user_headers), and the [varying
    /// headers](Self::vary_headers). Keys are compared exactly, never by hash alone.
    pub fn key(mut self, key: impl Fn(&Parts) -> Option<Bytes> + Send + Sync + 'static) -> Self {
        self.key.custom = Some(Arc::new(key));
        self
    }

    /// The headers whose values are part of every key, so that one user's answer never
    /// reaches another (default `Authorization` and `Cookie`). Requests that differ in any
    /// of their values (all of them, in order) do not share a call.
    pub fn user_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.key.user_headers = names.into_iter().collect();
        self
    }

    /// The headers the answer varies by, whose values are part of every key besides the
    /// [per-user ones](Self::user_headers) (default [`DEFAULT_VARY_HEADERS`](crate::DEFAULT_VARY_HEADERS):
    /// `Accept`, `Accept-Encoding`, `Accept-Language`). Add the ones your backend's
    /// answers depend on (`Origin` for CORS, a tenant header). Whatever the key, an answer
    /// whose `Vary` names a header in which a waiter's request differs from the leader's
    /// (or `Vary: *`) is not shared with that waiter: it sends its own call
    /// ([`Varied`](crate::CoalesceEventKind::Varied)). A name listed twice is an error at
    /// [`build`](Self::build).
    pub fn vary_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.key.vary_headers = names.into_iter().collect();
        self
    }

    /// No header is part of the key: callers with different credentials share answers.
    /// Only for answers that do not depend on who asks (public data behind a login).
    pub fn ignore_user_headers(self) -> Self {
        self.user_headers([])
    }

    /// The most calls in flight at once, one per key (default 10,000). A request with a
    /// new key beyond it goes upstream on its own, uncoalesced
    /// ([`OverKeys`](crate::CoalesceEventKind::OverKeys)).
    pub fn max_keys(mut self, max: usize) -> Self {
        self.max_keys = max;
        self
    }

    /// The most callers that may wait for one call, besides the one that started it
    /// (default 10,000). Beyond it a request goes upstream on its own, it is not refused
    /// ([`OverWaiters`](crate::CoalesceEventKind::OverWaiters)).
    pub fn max_waiters(mut self, max: usize) -> Self {
        self.max_waiters = max;
        self
    }

    /// The largest body shared (default 1 MiB). An answer whose body is known to be larger
    /// (its size hint: a `content-length`) or turns out larger while read goes whole to
    /// the leader (or, if it left, the waiter whose poll found it); every other waiter
    /// sends its own call ([`OverBody`](crate::CoalesceEventKind::OverBody)). This bounds
    /// the memory a call in flight holds.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body = max;
        self
    }

    /// Adds a listener for the layer's events. Listeners run inline: keep them quick.
    pub fn on_event(mut self, listener: impl Listener<CoalesceEvent> + 'static) -> Self {
        self.reporter.listeners.push(listener);
        self
    }

    /// Records events through the `metrics` facade (`bulwark_coalesce_events_total`).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(self) -> Self {
        self.on_event(crate::events::CoalesceMetricsListener::new())
    }

    /// Checks the settings: `max_keys`, `max_waiters` and `max_body_bytes` above zero; no
    /// header listed twice in `user_headers` or in `vary_headers`.
    pub fn build(self) -> Result<CoalesceLayer, ConfigError> {
        non_zero("max_keys", self.max_keys)?;
        non_zero("max_waiters", self.max_waiters)?;
        non_zero("max_body_bytes", self.max_body)?;
        distinct("user_headers", &self.key.user_headers)?;
        distinct("vary_headers", &self.key.vary_headers)?;
        Ok(CoalesceLayer {
            shared: Arc::new(Shared {
                key: self.key,
                max_keys: self.max_keys,
                max_waiters: self.max_waiters,
                max_body: self.max_body,
                reporter: self.reporter,
                map: Mutex::new(Map::default()),
                waiters: AtomicUsize::new(0),
            }),
        })
    }
}

/// A list of header names with none twice.
fn distinct(field: &'static str, names: &[HeaderName]) -> Result<(), ConfigError> {
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(ConfigError::new(field, format!("`{name}` is listed twice")));
        }
    }
    Ok(())
}

/// The map of calls in flight, locked (a poisoned lock is still a consistent map: every
/// change to it is one insert or remove).
pub(crate) fn lock_map(shared: &Shared) -> std::sync::MutexGuard<'_, Map> {
    shared
        .map
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
