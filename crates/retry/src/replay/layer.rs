//! [`ReplayLayer`]: request bodies wrapped in a [`ReplayBody`].

use std::task::{Context, Poll};

use http_body::Body;
use tower_bulwark_core::BoxError;

use super::ReplayBody;

/// Wraps request bodies in a [`ReplayBody`] recording up to `limit` bytes, so a retry layer
/// inside it can send streaming bodies again.
///
/// Place it outside the retry layer. A request whose body turns out larger than `limit`
/// is sent once and not retried; a smaller one is replayed from memory (the recording is
/// freed with the last copy, when the call ends). Each request also carries the body's
/// [`Replayable`](tower_bulwark_core::Replayable) in its extensions, so that other layers
/// that resend it (the fallback crate's `BackupLayer`) can check it first.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_bulwark_retry::{HttpRetry, ReplayLayer, RetryPolicy};
///
/// let policy = RetryPolicy::builder().classify(HttpRetry::default()).build().unwrap();
/// let client = ServiceBuilder::new()
///     .layer(ReplayLayer::new(64 * 1024))
///     .layer(policy.layer())
///     .service_fn(|request: http::Request<tower_bulwark_retry::ReplayBody>| async move {
///         Ok::<_, std::convert::Infallible>(http::Response::new(()))
///     });
/// # let _ = client;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ReplayLayer {
    limit: usize,
}

impl ReplayLayer {
    /// Records up to `limit` bytes of each request body.
    pub fn new(limit: usize) -> Self {
        ReplayLayer { limit }
    }
}

impl<S> tower::Layer<S> for ReplayLayer {
    type Service = Replay<S>;

    fn layer(&self, inner: S) -> Replay<S> {
        Replay {
            inner,
            limit: self.limit,
        }
    }
}

/// The service of a [`ReplayLayer`]: passes requests on with a [`ReplayBody`].
#[derive(Debug, Clone)]
pub struct Replay<S> {
    inner: S,
    limit: usize,
}

impl<S, B> tower::Service<http::Request<B>> for Replay<S>
where
    S: tower::Service<http::Request<ReplayBody>>,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> S::Future {
        let (mut parts, body) = request.into_parts();
        let body = ReplayBody::new(body, self.limit);
        parts.extensions.insert(body.replayable());
        self.inner.call(http::Request::from_parts(parts, body))
    }
}
