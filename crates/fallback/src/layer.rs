//! [`FallbackLayer`]: degraded answers instead of failures.

use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::HeaderName;
use http::{HeaderMap, Method, Request, Response};
use tower_bulwark_core::{BoxError, Classify};
use tower_layer::Layer;
use tower_service::Service;

use crate::cache::LastGood;
use crate::config::Answer;
use crate::degraded::mark;
use crate::events::{Reason, Reporter, Source, Unstorable};
use crate::store::{storable, CacheUse};
use crate::vary::Variant;
use crate::{Degraded, Failure, FallbackFailed, FallbackOn, HttpOrGrpc, KeyOf, ResponseFuture};

/// Answers a failed or refused call of an HTTP service with something useful, marked as
/// degraded, instead of the failure.
///
/// The sources, tried in order:
/// 1. the **last good response** for the same key ([`FallbackBuilder::last_good`]): a
///    bounded, expiring cache of recent successes. By default a request's key is its
///    method, authority, path and query ([`RequestKey`](crate::RequestKey)), only `GET`
///    and `HEAD` requests use the cache ([`FallbackBuilder::cache_methods`]), only
///    successes are kept, never what RFC 9111 keeps out of a shared cache or forbids
///    serving stale, and never with `Set-Cookie` ([`FallbackBuilder::strip_headers`]); an
///    answer that varies (`Vary`) answers only requests with the same values of those
///    headers;
/// 2. a **function** of the key and the failure ([`FallbackBuilder::respond_with`]), or a
///    **static response** ([`FallbackBuilder::static_response`]), for any method.
///
/// Which calls fall back ([`FallbackOn`]): rejections by bulwark layers, and results the
/// classifier's `classify_load` calls failures ([`HttpOrGrpc`] by default: transport
/// errors, 5xx, 429, sheds, gRPC error statuses). A degraded response carries `x-bulwark-degraded: last-good` (or
/// `fallback`) and a [`Degraded`] extension, and is reported as a
/// [`FallbackEvent::Served`](crate::FallbackEvent::Served). When no source has an answer
/// the original failure goes through; when the function itself fails, the call fails with
/// [`FallbackFailed`], which keeps both errors (logged at warn).
///
/// All services built from one layer value share its cache.
///
/// # The body must be `Clone`
///
/// The cache keeps a copy of each good response and answers with copies of it, so the
/// response body `B` must be `Clone`: a buffered body (`Full<Bytes>`, `String`, `Bytes`),
/// not a stream such as axum's or hyper's `Body`. With those, buffer the body under the
/// layer, with a bound: a body over it fails the call, which then falls back. Trailers
/// are not kept, so this is for HTTP answers, not gRPC streams. Above the layer,
/// `.map_response(|r| r.map(axum::body::Body::new))` turns it back into axum's type.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full, Limited};
/// use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
/// use tower_bulwark_fallback::FallbackLayer;
///
/// /// Reads a streaming body into memory, at most 1 MiB of it.
/// async fn buffered<B>(
///     response: http::Response<B>,
/// ) -> Result<http::Response<Full<Bytes>>, BoxError>
/// where
///     B: http_body::Body<Data = Bytes>,
///     B::Error: Into<BoxError>,
/// {
///     let (parts, body) = response.into_parts();
///     let bytes = Limited::new(body, 1 << 20).collect().await?.to_bytes();
///     Ok(http::Response::from_parts(parts, Full::new(bytes)))
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// // A client whose answers stream (not `Clone`).
/// let streaming = service_fn(|_: http::Request<()>| async {
///     let body = Full::new(Bytes::from("fresh")).map_err(BoxError::from).boxed();
///     Ok::<_, BoxError>(http::Response::new(body))
/// });
/// let fallback = FallbackLayer::builder()
///     .last_good(Duration::from_secs(60), 1_000)
///     .build()
///     .unwrap();
/// let client = ServiceBuilder::new()
///     .layer(fallback)
///     .and_then(buffered)
///     .service(streaming);
/// let response = client.oneshot(http::Request::get("/").body(()).unwrap()).await.unwrap();
/// assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "fresh");
/// # }
/// ```
///
/// [`FallbackBuilder::last_good`]: crate::FallbackBuilder::last_good
/// [`FallbackBuilder::cache_methods`]: crate::FallbackBuilder::cache_methods
/// [`FallbackBuilder::strip_headers`]: crate::FallbackBuilder::strip_headers
/// [`FallbackBuilder::respond_with`]: crate::FallbackBuilder::respond_with
/// [`FallbackBuilder::static_response`]: crate::FallbackBuilder::static_response
///
/// ```
/// use std::time::Duration;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_bulwark_fallback::FallbackLayer;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let fallback = FallbackLayer::builder()
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
pub struct FallbackLayer<F, K, B, C = HttpOrGrpc> {
    key: F,
    classify: C,
    shared: Arc<Shared<K, B>>,
}

/// What every service of one layer shares.
pub(crate) struct Shared<K, B> {
    pub(crate) on: FallbackOn,
    pub(crate) last_good: Option<LastGood<K, B>>,
    pub(crate) cache_methods: Box<[Method]>,
    pub(crate) stripped: Box<[HeaderName]>,
    pub(crate) answer: Option<Answer<K, B>>,
    pub(crate) reporter: Reporter,
    /// An answer has varied on request headers (`Vary`): from then on each call that uses
    /// the cache keeps its request's headers, to store a varying answer with the values
    /// it was chosen by and to match them. Until then no call pays for a copy.
    pub(crate) varies: AtomicBool,
}

impl<F, K, B, C> FallbackLayer<F, K, B, C> {
    pub(crate) fn new(key: F, classify: C, shared: Arc<Shared<K, B>>) -> Self {
        FallbackLayer {
            key,
            classify,
            shared,
        }
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

impl<S, F, K, B, C, ReqB> Service<Request<ReqB>> for Fallback<S, F, K, B, C>
where
    S: Service<Request<ReqB>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    F: KeyOf<Request<ReqB>, Key = K>,
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

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let shared = &*self.shared;
        let cache = match shared.last_good {
            Some(_) => CacheUse::of(&request, &shared.cache_methods),
            None => CacheUse::Off,
        };
        // The key is made only for what uses it.
        let keyed = cache != CacheUse::Off || matches!(shared.answer, Some(Answer::Function(_)));
        let key = keyed.then(|| self.key.key(&request));
        let headers = (cache != CacheUse::Off && shared.varies.load(Ordering::Relaxed))
            .then(|| request.headers().clone());
        ResponseFuture::new(
            self.inner.call(request),
            key,
            cache,
            headers,
            self.classify.clone(),
            self.shared.clone(),
        )
    }
}

impl<K: Hash + Eq + Clone, B: Clone> Shared<K, B> {
    /// Keeps a copy of a successful `response` to a request with `headers` (`None`: not
    /// kept), if it may be kept and its key was not stored within the refresh period
    /// (an answer that varies is always stored). Only here does a call take the cache's
    /// lock without falling back.
    pub(crate) fn keep(
        &self,
        key: K,
        response: &Response<B>,
        cache: CacheUse,
        headers: Option<&HeaderMap>,
    ) {
        let Some(last_good) = &self.last_good else {
            return;
        };
        let variant = match (storable(response, cache), headers) {
            (Err(why), _) => return self.reporter.not_stored(why),
            // Stored lately: this success is not copied (nor the lock taken) again.
            (Ok(names), _) if names.is_empty() && !last_good.claim(&key) => return,
            (Ok(names), _) if names.is_empty() => Variant::default(),
            (Ok(names), Some(headers)) => {
                // It replaces the key's answer for every other header value: the next
                // answer that varies on nothing must not be skipped as stored lately.
                last_good.forget(&key);
                Variant::of(names, headers)
            }
            (Ok(_), None) => {
                // The request's headers were not kept: this answer cannot be, the next
                // ones can.
                self.varies.store(true, Ordering::Relaxed);
                return self.reporter.not_stored(Unstorable::Vary);
            }
        };
        let mut copy = response.clone();
        for name in &*self.stripped {
            copy.headers_mut().remove(name);
        }
        last_good.store(key, copy, variant);
        self.reporter.stored();
    }

    /// The answer to a call that fell back for `reason`: the last good response (if it may
    /// answer a request with `headers`), else the function's or static answer, else
    /// `result` as it was.
    pub(crate) fn fall_back(
        &self,
        key: Option<&K>,
        cache: CacheUse,
        headers: Option<&HeaderMap>,
        reason: Reason,
        result: Result<Response<B>, BoxError>,
    ) -> Result<Response<B>, BoxError> {
        if let (Some(last_good), Some(key), true) = (&self.last_good, key, cache != CacheUse::Off) {
            if let Some(response) = last_good.get(key, headers) {
                self.reporter.served(Source::LastGood, reason);
                return Ok(mark(response, Degraded::LastGood));
            }
        }
        let answered = match (&self.answer, key) {
            (Some(Answer::Static(response)), _) => Ok((response.clone(), Source::Static)),
            (Some(Answer::Function(function)), Some(key)) => {
                let failure = match &result {
                    Err(error) => Failure::Error(error),
                    Ok(response) => Failure::Response(response),
                };
                function(key, failure).map(|response| (response, Source::Function))
            }
            _ => {
                self.reporter.unanswered(reason);
                return result;
            }
        };
        match answered {
            Ok((response, source)) => {
                self.reporter.served(source, reason);
                Ok(mark(response, Degraded::Fallback))
            }
            Err(fallback) => {
                tracing::warn!(error = %fallback, "the fallback failed too");
                self.reporter.unanswered(reason);
                let primary = match result {
                    Err(error) => error,
                    Ok(response) => format!("answered {}", response.status()).into(),
                };
                Err(Box::new(FallbackFailed { primary, fallback }))
            }
        }
    }
}

impl<F, K, B, C> fmt::Debug for FallbackLayer<F, K, B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &*self.shared;
        f.debug_struct("FallbackLayer")
            .field("name", &shared.reporter.name)
            .field("on", &shared.on)
            .field("last_good", &shared.last_good.is_some())
            .field("cache_methods", &shared.cache_methods)
            .field("stripped", &shared.stripped)
            .field("answer", &shared.answer.is_some())
            .finish()
    }
}

impl<S: fmt::Debug, F, K, B, C> fmt::Debug for Fallback<S, F, K, B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}
