//! [`RateLimitLayer`] and the [`RateLimit`] service it builds: a server's rate limit.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{Request, Response};
use tower_bulwark_core::ConfigError;
use tower_layer::Layer;
use tower_service::Service;

use crate::check::Check;
use crate::config::{Judged, Shared};
use crate::future::ResponseFuture;
use crate::{Limiter, LocalLimiter, Quota, RateLimitBuilder};

/// A server's rate limit: each request's key (see [`key`](crate::key)) must have a
/// permit, or the request is refused at once with `429 Too Many Requests`. See the
/// [crate docs](crate). Clones, and every service the layer builds, share its limiters.
pub struct RateLimitLayer<L, K> {
    pub(crate) shared: Arc<Shared<L, K>>,
}

impl<L: Limiter<K>, K> RateLimitLayer<L, K> {
    /// A layer over `limiter` (a [`LocalLimiter`], a `RedisLimiter`, your own), keyed by
    /// `key_of` (`None`: the request is not limited). No tier has a quota of its own
    /// until [`tier`](RateLimitBuilder::tier) gives it one.
    pub fn builder(
        limiter: L,
        key_of: impl Fn(&Parts) -> Option<K> + Send + Sync + 'static,
    ) -> RateLimitBuilder<L, K> {
        RateLimitBuilder::new(limiter, key_of)
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> RateLimitLayer<LocalLimiter<K>, K> {
    /// A layer over [`LocalLimiter`]s of `quota`, keyed by `key_of`, with the default
    /// tiers: `sheddable-plus` requests must also pass half of `quota`, `sheddable` ones a
    /// quarter (see [`tiers`](crate::tiers)).
    ///
    /// ```
    /// use tower_bulwark_ratelimit::{key, Quota, RateLimitLayer};
    ///
    /// # fn main() -> Result<(), tower_bulwark_core::ConfigError> {
    /// let layer = RateLimitLayer::local(Quota::per_minute(600)?.burst(50)?, key::peer_ip)?
    ///     .name("per-client")
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok(())
    /// # }
    /// ```
    pub fn local(
        quota: Quota,
        key_of: impl Fn(&Parts) -> Option<K> + Send + Sync + 'static,
    ) -> Result<RateLimitBuilder<LocalLimiter<K>, K>, ConfigError> {
        RateLimitBuilder::local(quota, key_of)
    }
}

impl<L, K> Clone for RateLimitLayer<L, K> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            shared: self.shared.clone(),
        }
    }
}

impl<L: fmt::Debug, K> fmt::Debug for RateLimitLayer<L, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RateLimitLayer").field(&self.shared).finish()
    }
}

impl<S, L, K> Layer<S> for RateLimitLayer<L, K> {
    type Service = RateLimit<S, L, K>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of a [`RateLimitLayer`]. Its refusals are responses, never errors (its
/// error type is the inner service's), so it fits axum as it is. `poll_ready` is the
/// inner service's; the request's key is known only in `call`, where a limiter that
/// answers at once ([`LocalLimiter`]) decides without holding anything. A limiter that
/// answers through a future (Redis) holds the request and the readied inner service
/// until it answers; dropping the response future drops both.
pub struct RateLimit<S, L, K> {
    inner: S,
    shared: Arc<Shared<L, K>>,
}

impl<S, L, K> RateLimit<S, L, K> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone, L, K> Clone for RateLimit<S, L, K> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, L: fmt::Debug, K> fmt::Debug for RateLimit<S, L, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S, L, K, ReqB, ResB> Service<Request<ReqB>> for RateLimit<S, L, K>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    L: Limiter<K>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, L, K, ReqB>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let shared = &*self.shared;
        let (parts, body) = request.into_parts();
        let Some(key) = (shared.key_of)(&parts) else {
            return ResponseFuture::called(self.inner.call(Request::from_parts(parts, body)), None);
        };
        let criticality = (shared.criticality_of)(&parts);
        let mut check = Check::new(key, criticality, &shared.quotas);
        let Some(verdict) = check.run_now(&shared.quotas) else {
            // The limiter answers through a future: the readied service waits with the
            // request, a clone takes its place.
            let acquire = check.limiter(&shared.quotas).acquire(&check.key);
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            let request = Request::from_parts(parts, body);
            return ResponseFuture::checking(acquire, check, inner, request, self.shared.clone());
        };
        match shared.judge(verdict, criticality, &parts.headers) {
            Judged::Pass(headers) => {
                ResponseFuture::called(self.inner.call(Request::from_parts(parts, body)), headers)
            }
            Judged::Answer(response) => ResponseFuture::answered(response),
        }
    }
}
