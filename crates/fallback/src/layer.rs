//! [`FallbackLayer`]: degraded answers instead of failures.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Response};
use pin_project::pin_project;
use tower_bulwark_core::config::non_zero;
use tower_bulwark_core::{
    find_rejection, BoxError, Classify, ConfigError, ErrorsAreFailures, Outcome,
};
use tower_layer::Layer;
use tower_service::Service;

use crate::cache::LastGood;

/// The response header that marks a degraded answer: `last-good` or `fallback`.
pub const DEGRADED_HEADER: &str = "x-bulwark-degraded";

/// In the extensions of a degraded response: where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Degraded {
    /// The last good response for the same key.
    LastGood,
    /// The fallback function (or static response).
    Fallback,
    /// The backup service ([`BackupLayer`](crate::BackupLayer)).
    Backup,
}

impl Degraded {
    fn as_str(self) -> &'static str {
        match self {
            Degraded::LastGood => "last-good",
            Degraded::Fallback => "fallback",
            Degraded::Backup => "backup",
        }
    }
}

/// Which failed calls fall back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FallbackOn {
    /// Rejections by bulwark layers and failures per the classifier (the default). Ignored
    /// outcomes never fall back.
    #[default]
    RejectionsAndFailures,
    /// Only rejections (an open breaker, a full bulkhead, a shed): the dependency was not
    /// even asked.
    Rejections,
}

/// The key of a request for the last-good cache. Closures `Fn(&Req) -> K` are keys;
/// [`SameKey`] gives every request the same one.
pub trait KeyOf<Req> {
    /// The key's type.
    type Key;
    /// The request's key.
    fn key(&self, request: &Req) -> Self::Key;
}

impl<Req, K, F: Fn(&Req) -> K> KeyOf<Req> for F {
    type Key = K;
    fn key(&self, request: &Req) -> K {
        self(request)
    }
}

/// Every request has the same key (`()`): one last good response for all.
#[derive(Debug, Clone, Copy, Default)]
pub struct SameKey;

impl<Req> KeyOf<Req> for SameKey {
    type Key = ();
    fn key(&self, _request: &Req) {}
}

/// What went wrong, as the fallback function sees it.
#[derive(Debug)]
pub enum Failure<'a, B> {
    /// The call failed, or a layer refused it.
    Error(&'a BoxError),
    /// The call answered with a response the classifier calls a failure (a 503, say).
    Response(&'a Response<B>),
}

type Function<K, B> = dyn Fn(&K, Failure<'_, B>) -> Result<Response<B>, BoxError> + Send + Sync;

struct Shared<K, B> {
    on: FallbackOn,
    last_good: Option<LastGood<K, B>>,
    function: Option<Box<Function<K, B>>>,
}

/// Answers a failed or refused call of an HTTP service with something useful, marked as
/// degraded, instead of the failure.
///
/// The sources, tried in order:
/// 1. the **last good response** for the same key ([`FallbackBuilder::last_good`]): a
///    bounded, expiring cache of recent successes, keyed by [`FallbackBuilder::key`];
/// 2. a **function** of the key and the failure ([`FallbackBuilder::respond_with`]), or a
///    **static response** ([`FallbackBuilder::static_response`]).
///
/// A degraded response carries `x-bulwark-degraded: last-good` (or `fallback`) and a
/// [`Degraded`] extension the handler can read. Which calls fall back: [`FallbackOn`]. When
/// no source has an answer the original failure goes through; when the function itself
/// fails, the call fails with [`FallbackFailed`], which keeps both errors (logged at warn).
///
/// ```
/// use std::time::Duration;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_bulwark_fallback::FallbackLayer;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let fallback = FallbackLayer::builder()
///     .key(|request: &http::Request<()>| request.uri().path().to_string())
///     .last_good(Duration::from_secs(60), 1_000)
///     .static_response(http::Response::new("catalogue unavailable"))
///     .build()
///     .unwrap();
/// let down = service_fn(|_: http::Request<()>| async {
///     Err::<http::Response<&str>, _>(std::io::Error::other("connection refused"))
/// });
/// let response = fallback.layer(down).oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(*response.body(), "catalogue unavailable");
/// assert_eq!(response.headers()["x-bulwark-degraded"], "fallback");
/// # }
/// ```
pub struct FallbackLayer<F, K, B, C = ErrorsAreFailures> {
    key: F,
    classify: C,
    shared: Arc<Shared<K, B>>,
}

/// Builds a [`FallbackLayer`].
pub struct FallbackBuilder<F, K, B, C = ErrorsAreFailures> {
    key: F,
    classify: C,
    on: FallbackOn,
    last_good: Option<(Duration, usize)>,
    function: Option<Box<Function<K, B>>>,
}

impl FallbackLayer<(), (), ()> {
    /// Starts configuring: one key for every request until [`FallbackBuilder::key`].
    pub fn builder<B>() -> FallbackBuilder<SameKey, (), B> {
        FallbackBuilder {
            key: SameKey,
            classify: ErrorsAreFailures,
            on: FallbackOn::default(),
            last_good: None,
            function: None,
        }
    }
}

impl<B, C> FallbackBuilder<SameKey, (), B, C> {
    /// The key of a request for the last-good cache (a path, a user, a query); set once.
    ///
    /// A function or static response given before keeps answering: it was written for
    /// the key `()`, and still gets it.
    pub fn key<Req, F2, K2>(self, key: F2) -> FallbackBuilder<F2, K2, B, C>
    where
        F2: Fn(&Req) -> K2,
        B: 'static,
    {
        let function = self.function.map(|unkeyed| -> Box<Function<K2, B>> {
            Box::new(move |_: &K2, failure| unkeyed(&(), failure))
        });
        FallbackBuilder {
            key,
            classify: self.classify,
            on: self.on,
            last_good: self.last_good,
            function,
        }
    }
}

impl<F, K, B, C> FallbackBuilder<F, K, B, C> {
    /// Keeps the last good response of each key for `ttl`, at most `capacity` keys.
    pub fn last_good(mut self, ttl: Duration, capacity: usize) -> Self {
        self.last_good = Some((ttl, capacity));
        self
    }

    /// Answers with `function(key, failure)`; its own error is reported as
    /// [`FallbackFailed`].
    pub fn respond_with(
        mut self,
        function: impl Fn(&K, Failure<'_, B>) -> Result<Response<B>, BoxError> + Send + Sync + 'static,
    ) -> Self {
        self.function = Some(Box::new(function));
        self
    }

    /// Answers with a copy of `response`.
    pub fn static_response(self, response: Response<B>) -> Self
    where
        B: Clone + Send + Sync + 'static,
    {
        self.respond_with(move |_, _| Ok(response.clone()))
    }

    /// Which failed calls fall back.
    pub fn on(mut self, on: FallbackOn) -> Self {
        self.on = on;
        self
    }

    /// Which results are failures (every `Err` by default; `HttpClassifier` adds 5xx).
    pub fn classify<C2>(self, classify: C2) -> FallbackBuilder<F, K, B, C2> {
        FallbackBuilder {
            key: self.key,
            classify,
            on: self.on,
            last_good: self.last_good,
            function: self.function,
        }
    }

    /// Checks the settings: at least one source, a TTL and a capacity above zero.
    pub fn build(self) -> Result<FallbackLayer<F, K, B, C>, ConfigError>
    where
        K: Hash + Eq + Clone,
        B: Clone,
    {
        if self.last_good.is_none() && self.function.is_none() {
            return Err(ConfigError::new(
                "sources",
                "give at least one: last_good, respond_with or static_response",
            ));
        }
        let last_good = match self.last_good {
            Some((ttl, capacity)) => {
                tower_bulwark_core::config::non_zero_duration("last_good.ttl", ttl)?;
                non_zero("last_good.capacity", capacity)?;
                Some(LastGood::new(ttl, capacity))
            }
            None => None,
        };
        Ok(FallbackLayer {
            key: self.key,
            classify: self.classify,
            shared: Arc::new(Shared {
                on: self.on,
                last_good,
                function: self.function,
            }),
        })
    }
}

impl<F: Clone, K, B, C: Clone> Clone for FallbackLayer<F, K, B, C> {
    fn clone(&self) -> Self {
        FallbackLayer {
            key: self.key.clone(),
            classify: self.classify.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, F: Clone, K, B, C: Clone> Layer<S> for FallbackLayer<F, K, B, C> {
    type Service = Fallback<S, F, K, B, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback {
            inner,
            key: self.key.clone(),
            classify: self.classify.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// The service of a [`FallbackLayer`].
pub struct Fallback<S, F, K, B, C> {
    inner: S,
    key: F,
    classify: C,
    shared: Arc<Shared<K, B>>,
}

impl<S: Clone, F: Clone, K, B, C: Clone> Clone for Fallback<S, F, K, B, C> {
    fn clone(&self) -> Self {
        Fallback {
            inner: self.inner.clone(),
            key: self.key.clone(),
            classify: self.classify.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, F, K, B, C, Req> Service<Req> for Fallback<S, F, K, B, C>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    F: KeyOf<Req, Key = K>,
    K: Hash + Eq + Clone,
    B: Clone,
    C: Classify<Response<B>, S::Error> + Clone,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, K, B, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let key = self.key.key(&request);
        ResponseFuture {
            future: self.inner.call(request),
            key: Some(key),
            classify: self.classify.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// Response future of [`Fallback`].
#[pin_project]
pub struct ResponseFuture<Fut, K, B, C> {
    #[pin]
    future: Fut,
    key: Option<K>,
    classify: C,
    shared: Arc<Shared<K, B>>,
}

impl<Fut, K, B, C, E> Future for ResponseFuture<Fut, K, B, C>
where
    Fut: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    K: Hash + Eq + Clone,
    B: Clone,
    C: Classify<Response<B>, E>,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.future.poll(cx));
        let outcome = this.classify.classify(&result);
        let result = result.map_err(Into::into);
        let shared = &**this.shared;
        let Some(key) = this.key.take() else {
            return Poll::Ready(result);
        };
        let rejected = matches!(&result, Err(error) if find_rejection(error).is_some());
        let falls_back = match shared.on {
            FallbackOn::RejectionsAndFailures => rejected || outcome == Outcome::Failure,
            FallbackOn::Rejections => rejected,
        };
        if !falls_back {
            if let (Ok(response), Outcome::Success, Some(cache)) =
                (&result, outcome, &shared.last_good)
            {
                cache.store(key, response);
            }
            return Poll::Ready(result);
        }
        if let Some(response) = shared.last_good.as_ref().and_then(|cache| cache.get(&key)) {
            return Poll::Ready(Ok(mark(response, Degraded::LastGood)));
        }
        let Some(function) = &shared.function else {
            return Poll::Ready(result);
        };
        let failure = match &result {
            Err(error) => Failure::Error(error),
            Ok(response) => Failure::Response(response),
        };
        Poll::Ready(match function(&key, failure) {
            Ok(response) => Ok(mark(response, Degraded::Fallback)),
            Err(fallback) => {
                tracing::warn!(error = %fallback, "the fallback failed too");
                let primary = match result {
                    Err(error) => error,
                    Ok(response) => format!("answered {}", response.status()).into(),
                };
                Err(Box::new(FallbackFailed { primary, fallback }))
            }
        })
    }
}

fn mark<B>(mut response: Response<B>, degraded: Degraded) -> Response<B> {
    response
        .headers_mut()
        .insert(DEGRADED_HEADER, HeaderValue::from_static(degraded.as_str()));
    response.extensions_mut().insert(degraded);
    response
}

/// The call failed and so did its fallback: both errors, the call's as the `source`.
#[derive(Debug)]
pub struct FallbackFailed {
    /// Why the call failed.
    pub primary: BoxError,
    /// Why the fallback failed.
    pub fallback: BoxError,
}

impl fmt::Display for FallbackFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the call failed ({}) and so did its fallback ({})",
            self.primary, self.fallback
        )
    }
}

impl std::error::Error for FallbackFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.primary)
    }
}

impl<F, K, B, C> fmt::Debug for FallbackLayer<F, K, B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("on", &self.shared.on)
            .field("last_good", &self.shared.last_good.is_some())
            .field("function", &self.shared.function.is_some())
            .finish()
    }
}

impl<F, K, B, C> fmt::Debug for FallbackBuilder<F, K, B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackBuilder")
            .field("on", &self.on)
            .field("last_good", &self.last_good)
            .finish_non_exhaustive()
    }
}

impl<S: fmt::Debug, F, K, B, C> fmt::Debug for Fallback<S, F, K, B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<Fut, K, B, C> fmt::Debug for ResponseFuture<Fut, K, B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
