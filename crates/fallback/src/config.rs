//! [`FallbackBuilder`]: the validated settings of a [`FallbackLayer`].

use std::fmt;
use std::hash::Hash;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::{Method, Response};
use tower_bulwark_core::config::{non_zero, non_zero_duration};
use tower_bulwark_core::{BoxError, ConfigError, Listener};

use crate::cache::LastGood;
use crate::events::{FallbackEvent, Reporter};
use crate::layer::Shared;
use crate::store::{CACHE_METHODS, STRIPPED_HEADERS};
use crate::{DefaultKey, Failure, FallbackLayer, FallbackOn, HttpOrGrpc, RequestKey};

pub(crate) type Function<K, B> =
    dyn Fn(&K, Failure<'_, B>) -> Result<Response<B>, BoxError> + Send + Sync;

/// What answers when the last good response cannot.
pub(crate) enum Answer<K, B> {
    Static(Response<B>),
    Function(Box<Function<K, B>>),
}

/// Builds a [`FallbackLayer`].
pub struct FallbackBuilder<F, K, B, C = HttpOrGrpc> {
    key: F,
    classify: C,
    on: FallbackOn,
    last_good: Option<(Duration, usize)>,
    /// `None`: the default, a tenth of the TTL, at most a second.
    refresh: Option<Duration>,
    cache_methods: Vec<Method>,
    stripped: Vec<HeaderName>,
    answer: Option<Answer<K, B>>,
    /// A function was given before the key, so it was written for the default key.
    function_before_key: bool,
    reporter: Reporter,
}

impl FallbackLayer<(), (), ()> {
    /// Starts configuring, with the defaults: [`DefaultKey`], [`HttpOrGrpc`], only `GET`
    /// and `HEAD` cached, [`STRIPPED_HEADERS`](crate::STRIPPED_HEADERS) stripped, the name
    /// `fallback`.
    pub fn builder<B>() -> FallbackBuilder<DefaultKey, RequestKey, B> {
        FallbackBuilder {
            key: DefaultKey,
            classify: HttpOrGrpc,
            on: FallbackOn::default(),
            last_good: None,
            refresh: None,
            cache_methods: CACHE_METHODS.to_vec(),
            stripped: STRIPPED_HEADERS.map(HeaderName::from_static).to_vec(),
            answer: None,
            function_before_key: false,
            reporter: Reporter::new("fallback"),
        }
    }
}

impl<B, C> FallbackBuilder<DefaultKey, RequestKey, B, C> {
    /// The key of a request for the last-good cache, instead of its [`RequestKey`]; set
    /// once, before [`respond_with`](Self::respond_with) (whose function is given the key:
    /// [`build`](Self::build) refuses a function given before). A static response may
    /// come before.
    ///
    /// Only requests of the [cached methods](Self::cache_methods) use the cache whatever
    /// their key, and a key that drops what the answer depends on (the path, the user)
    /// serves one request's answer to another.
    pub fn key<Req, F2, K2>(self, key: F2) -> FallbackBuilder<F2, K2, B, C>
    where
        F2: Fn(&Req) -> K2,
    {
        let (answer, function_before_key) = match self.answer {
            Some(Answer::Static(response)) => (Some(Answer::Static(response)), false),
            Some(Answer::Function(_)) => (None, true),
            None => (None, false),
        };
        FallbackBuilder {
            key,
            classify: self.classify,
            on: self.on,
            last_good: self.last_good,
            refresh: self.refresh,
            cache_methods: self.cache_methods,
            stripped: self.stripped,
            answer,
            function_before_key,
            reporter: self.reporter,
        }
    }
}

impl<F, K, B, C> FallbackBuilder<F, K, B, C> {
    /// Keeps the last good response of each key for `ttl`, at most `capacity` keys.
    ///
    /// Only a response the classifier calls [`Outcome::Success`] (its `classify_load`) to
    /// a request of a [cached method](Self::cache_methods) is kept, unless it is already
    /// degraded, says `Cache-Control: no-store` or `private`, must not be served stale
    /// (`no-cache`, `must-revalidate`, `proxy-revalidate`, `s-maxage`: every copy the
    /// cache serves is stale), has a `Vary` it cannot honour (`*`, more than four names,
    /// `Cookie` or `Authorization`), or answers a request with `Authorization` or a
    /// `Cookie` without saying `public`: the cache answers every caller, so it keeps what
    /// RFC 9111 lets a shared cache keep and serve stale (and no session's page). An
    /// answer that varies is served only to requests with the same values of the headers
    /// it varies on. The [stripped headers](Self::strip_headers) are removed from the copy
    /// kept.
    ///
    /// A key's kept answer is replaced at most once per [refresh
    /// period](Self::last_good_refresh), so that a hot key's successes take neither the
    /// cache's lock nor a copy of the response.
    ///
    /// [`Outcome::Success`]: tower_bulwark_core::Outcome::Success
    pub fn last_good(mut self, ttl: Duration, capacity: usize) -> Self {
        self.last_good = Some((ttl, capacity));
        self
    }

    /// How often a key's kept answer is replaced by a newer success: at most once per
    /// `period`. The default is a tenth of the TTL, at most a second: the answer served in
    /// a failure is then at most that much older than the latest success, and a key asked
    /// for thousands of times a second is copied once a second, not thousands of times.
    /// An answer that varies (`Vary`) is always stored, since it replaces its key's answer
    /// for other header values. Zero stores every success. It must be shorter than the
    /// TTL, or an answer could expire before it is replaced ([`ConfigError`]
    /// `last_good.refresh`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bulwark_fallback::FallbackLayer;
    ///
    /// let fallback = FallbackLayer::builder::<String>()
    ///     .last_good(Duration::from_secs(60), 1_000)
    ///     .last_good_refresh(Duration::from_millis(100))
    ///     .build();
    /// assert!(fallback.is_ok());
    /// let too_long = FallbackLayer::builder::<String>()
    ///     .last_good(Duration::from_secs(60), 1_000)
    ///     .last_good_refresh(Duration::from_secs(60))
    ///     .build();
    /// assert_eq!(too_long.unwrap_err().field(), "last_good.refresh");
    /// ```
    pub fn last_good_refresh(mut self, period: Duration) -> Self {
        self.refresh = Some(period);
        self
    }

    /// The methods whose requests use the last-good cache (default: `GET` and `HEAD`).
    /// Other requests never get a cached answer and their answers are never kept: a `POST`
    /// must not get another `POST`'s answer. gRPC calls are `POST`s: add `POST` only for
    /// calls whose answer the [key](FallbackBuilder::key) identifies, since the default key
    /// does not hold the request's message. Empty is a [`ConfigError`].
    pub fn cache_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.cache_methods = methods.into_iter().collect();
        self
    }

    /// The response headers removed from the copy the cache keeps, replacing the default
    /// [`STRIPPED_HEADERS`](crate::STRIPPED_HEADERS) (`Set-Cookie`, `Set-Cookie2`,
    /// `Authentication-Info`, `Proxy-Authentication-Info`). Keep those in the list when
    /// adding your own: a replayed cookie logs one caller in as another.
    pub fn strip_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.stripped = names.into_iter().collect();
        self
    }

    /// Answers with `function(key, failure)`; its own error is reported as
    /// [`FallbackFailed`](crate::FallbackFailed).
    pub fn respond_with(
        mut self,
        function: impl Fn(&K, Failure<'_, B>) -> Result<Response<B>, BoxError> + Send + Sync + 'static,
    ) -> Self {
        self.answer = Some(Answer::Function(Box::new(function)));
        self
    }

    /// Answers with a copy of `response`.
    pub fn static_response(mut self, response: Response<B>) -> Self {
        self.answer = Some(Answer::Static(response));
        self
    }

    /// Which failed calls fall back.
    pub fn on(mut self, on: FallbackOn) -> Self {
        self.on = on;
        self
    }

    /// Which results are failures (fall back) and successes (may be kept as last good),
    /// read through its `classify_load`: [`HttpOrGrpc`] by default.
    pub fn classify<C2>(self, classify: C2) -> FallbackBuilder<F, K, B, C2> {
        FallbackBuilder {
            key: self.key,
            classify,
            on: self.on,
            last_good: self.last_good,
            refresh: self.refresh,
            cache_methods: self.cache_methods,
            stripped: self.stripped,
            answer: self.answer,
            function_before_key: self.function_before_key,
            reporter: self.reporter,
        }
    }

    /// The name in events and metric labels (default `fallback`).
    pub fn name(mut self, name: impl Into<tower_bulwark_core::Name>) -> Self {
        self.reporter.name = name.into();
        self
    }

    /// Adds a listener for the layer's events. Listeners run inline: keep them quick.
    pub fn on_event(mut self, listener: impl Listener<FallbackEvent> + 'static) -> Self {
        self.reporter.listeners.push(listener);
        self
    }

    /// Records events through the `metrics` facade (`bulwark_fallback_*`).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(self) -> Self {
        self.on_event(crate::events::FallbackMetricsListener::new())
    }

    /// Checks the settings: at least one source; for a last-good cache a TTL and a capacity
    /// above zero and at least one cached method; no function given before the key.
    pub fn build(self) -> Result<FallbackLayer<F, K, B, C>, ConfigError>
    where
        K: Hash + Eq + Clone,
        B: Clone,
    {
        if self.function_before_key {
            return Err(ConfigError::new(
                "key",
                "set the key before respond_with: the function is given the key",
            ));
        }
        if self.last_good.is_none() && self.answer.is_none() {
            return Err(ConfigError::new(
                "sources",
                "give at least one: last_good, respond_with or static_response",
            ));
        }
        let last_good = match self.last_good {
            Some((ttl, capacity)) => {
                non_zero_duration("last_good.ttl", ttl)?;
                non_zero("last_good.capacity", capacity)?;
                let refresh = self
                    .refresh
                    .unwrap_or((ttl / 10).min(Duration::from_secs(1)));
                if refresh >= ttl {
                    return Err(ConfigError::new(
                        "last_good.refresh",
                        "not shorter than last_good.ttl: an answer could expire before it is replaced",
                    ));
                }
                if self.cache_methods.is_empty() {
                    return Err(ConfigError::new(
                        "cache_methods",
                        "empty: no request could use the cache (leave last_good out instead)",
                    ));
                }
                Some(LastGood::new(ttl, capacity, refresh))
            }
            None if self.refresh.is_some() => {
                return Err(ConfigError::new(
                    "last_good.refresh",
                    "given without last_good: there is no cache to refresh",
                ))
            }
            None => None,
        };
        Ok(FallbackLayer::new(
            self.key,
            self.classify,
            Arc::new(Shared {
                on: self.on,
                last_good,
                cache_methods: self.cache_methods.into(),
                stripped: self.stripped.into(),
                answer: self.answer,
                reporter: self.reporter,
                varies: AtomicBool::new(false),
            }),
        ))
    }
}

impl<F, K, B, C> fmt::Debug for FallbackBuilder<F, K, B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackBuilder")
            .field("on", &self.on)
            .field("last_good", &self.last_good)
            .field("refresh", &self.refresh)
            .field("cache_methods", &self.cache_methods)
            .field("stripped", &self.stripped)
            .field("name", &self.reporter.name)
            .finish_non_exhaustive()
    }
}
