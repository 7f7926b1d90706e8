//! [`ResponseFuture`]: the call, then what it falls back on.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{HeaderMap, Response};
use pin_project::pin_project;
use tower_bulwark_core::{BoxError, Classify, Outcome};

use crate::layer::Shared;
use crate::store::CacheUse;

/// Response future of [`Fallback`](crate::Fallback).
#[pin_project]
pub struct ResponseFuture<Fut, K, B, C> {
    #[pin]
    future: Fut,
    /// The request's key, if the cache or the function needs it.
    key: Option<K>,
    cache: CacheUse,
    /// The request's headers, kept only once an answer has varied.
    headers: Option<HeaderMap>,
    classify: C,
    shared: Arc<Shared<K, B>>,
}

impl<Fut, K, B, C> ResponseFuture<Fut, K, B, C> {
    pub(crate) fn new(
        future: Fut,
        key: Option<K>,
        cache: CacheUse,
        headers: Option<HeaderMap>,
        classify: C,
        shared: Arc<Shared<K, B>>,
    ) -> Self {
        ResponseFuture {
            future,
            key,
            cache,
            headers,
            classify,
            shared,
        }
    }
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
        // The load view: a dependency shedding for overload did not serve the call.
        let outcome = this.classify.classify_load(&result);
        let result = result.map_err(Into::into);
        let shared = &**this.shared;
        let headers = this.headers.as_ref();
        if let Some(reason) = shared.on.reason(&result, outcome) {
            let (key, cache) = (this.key.as_ref(), *this.cache);
            return Poll::Ready(shared.fall_back(key, cache, headers, reason, result));
        }
        if let (Ok(response), Outcome::Success, Some(key)) = (&result, outcome, this.key.take()) {
            if *this.cache != CacheUse::Off {
                shared.keep(key, response, *this.cache, headers);
            }
        }
        Poll::Ready(result)
    }
}

impl<Fut, K, B, C> fmt::Debug for ResponseFuture<Fut, K, B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}
