//! [`ResponseFuture`]: records the call's outcome when it finishes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project::pin_project;
use tower_bulwark_core::Classify;

use crate::detector::Endpoint;

/// The response future of [`Outlier`](crate::Outlier): the inner future, and the call's
/// place in its endpoint's in-flight count. The outcome is recorded when the inner future
/// finishes; a future dropped before then records nothing and leaves the count.
#[pin_project]
pub struct ResponseFuture<F, C, G> {
    #[pin]
    inner: F,
    call: Option<Call<C, G>>,
}

/// A call in flight: ends its place in the count when dropped.
struct Call<C, G> {
    endpoint: Arc<Endpoint>,
    classify: C,
    gateway: G,
    /// When the call started, if its latency is measured (the slow-endpoint rule is on).
    started: Option<u64>,
}

impl<C, G> Drop for Call<C, G> {
    fn drop(&mut self) {
        self.endpoint.end_call();
    }
}

impl<F, C, G> ResponseFuture<F, C, G> {
    pub(crate) fn new(inner: F, endpoint: Arc<Endpoint>, classify: C, gateway: G) -> Self {
        let started = endpoint.start_call();
        ResponseFuture {
            inner,
            call: Some(Call {
                endpoint,
                classify,
                gateway,
                started,
            }),
        }
    }
}

impl<F, C, G, T, E> Future for ResponseFuture<F, C, G>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
    G: Classify<T, E>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // Polled again after it answered: the inner future's own answer, recorded once.
        let result = ready!(this.inner.poll(cx));
        if let Some(call) = this.call.take() {
            call.endpoint.record(
                call.classify.classify(&result),
                call.gateway.classify(&result),
                call.started,
            );
        }
        Poll::Ready(result)
    }
}

impl<F, C, G> fmt::Debug for ResponseFuture<F, C, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field(
                "endpoint",
                &self.call.as_ref().map(|call| call.endpoint.key()),
            )
            .finish_non_exhaustive()
    }
}
