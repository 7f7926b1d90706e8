//! [`ResponseFuture`]: records the call's outcome when it finishes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project::pin_project;
use tower_bulwark_core::{Classify, ErrorsAreFailures, Outcome};

use crate::classify::{AttemptTimeouts, NoGateway, Timeouts};
use crate::detector::Endpoint;

/// The response future of [`Outlier`](crate::Outlier): the inner future, and the call's
/// place in its endpoint's in-flight count. The outcome is recorded when the inner future
/// finishes; a future dropped before then records nothing and leaves the count.
#[pin_project]
pub struct ResponseFuture<F, C = ErrorsAreFailures, G = NoGateway, T = AttemptTimeouts> {
    #[pin]
    inner: F,
    call: Option<Call<C, G, T>>,
}

/// A call in flight: ends its place in the count when dropped.
struct Call<C, G, T> {
    endpoint: Arc<Endpoint>,
    classify: C,
    gateway: G,
    timeouts: T,
    /// When the call started, if its latency is measured (the slow-endpoint rule is on).
    started: Option<u64>,
}

impl<C, G, T> Drop for Call<C, G, T> {
    fn drop(&mut self) {
        self.endpoint.end_call();
    }
}

impl<F, C, G, T> ResponseFuture<F, C, G, T> {
    /// `started`: when `call` began, from [`Endpoint::started`], read before the inner
    /// service's `call` ran.
    pub(crate) fn new(
        inner: F,
        endpoint: Arc<Endpoint>,
        classify: C,
        gateway: G,
        timeouts: T,
        started: Option<u64>,
    ) -> Self {
        endpoint.start_call();
        ResponseFuture {
            inner,
            call: Some(Call {
                endpoint,
                classify,
                gateway,
                timeouts,
                started,
            }),
        }
    }
}

impl<F, C, G, T, Res, E> Future for ResponseFuture<F, C, G, T>
where
    F: Future<Output = Result<Res, E>>,
    C: Classify<Res, E>,
    G: Classify<Res, E>,
    T: Timeouts<Res, E>,
{
    type Output = Result<Res, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // Polled again after it answered: the inner future's own answer, recorded once.
        let result = ready!(this.inner.poll(cx));
        if let Some(call) = this.call.take() {
            let outcome = call.classify.classify(&result);
            // Timed (when the slow-endpoint rule is on): a success, and a failure only if
            // it is a timeout; a fast failure says nothing about speed.
            let started = call.started.filter(|_| match outcome {
                Outcome::Success => true,
                Outcome::Failure => call.timeouts.is_timeout(&result),
                Outcome::Ignored => false,
            });
            call.endpoint
                .record(outcome, call.gateway.classify(&result), started);
        }
        Poll::Ready(result)
    }
}

impl<F, C, G, T> fmt::Debug for ResponseFuture<F, C, G, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field(
                "endpoint",
                &self.call.as_ref().map(|call| call.endpoint.key()),
            )
            .finish_non_exhaustive()
    }
}
