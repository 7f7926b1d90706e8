//! [`RecordLayer`]: feeds a [`Recorder`] with the calls of a service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project::{pin_project, pinned_drop};
use tokio::time::Instant;
use tower_bulwark_core::{Classify, ErrorsAreFailures, Outcome};
use tower_layer::Layer;
use tower_service::Service;

use crate::Recorder;

/// Records the latency and outcome of every call of the service it wraps into a
/// [`Recorder`]. A pass-through: responses and errors are untouched.
///
/// Outcomes come from a [`Classify`] ([`ErrorsAreFailures`] by default; core's
/// `HttpClassifier` for HTTP services): a success or a failure is recorded with its
/// latency; an ignored outcome (a refusal by another bulwark layer, a client error) is
/// not recorded at all, since its latency says nothing about the dependency. A call
/// dropped before it finished (its caller gave up) counts its latency so far toward the
/// latency percentile, not toward the error rate: a hung dependency whose callers time
/// out still reads as slow.
///
/// Recording allocates nothing: two clock reads and a few atomic additions per call.
///
/// ```
/// use std::time::Duration;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_bulwark_degrade::Recorder;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let recorder = Recorder::builder().min_calls(1).build().unwrap();
/// let service = recorder.layer().layer(service_fn(|x: u32| async move {
///     if x == 0 { Err("zero") } else { Ok(x) }
/// }));
/// assert_eq!(service.clone().oneshot(1).await, Ok(1));
/// assert!(service.oneshot(0).await.is_err());
/// assert_eq!(recorder.error_ratio(), Some(0.5));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RecordLayer<C = ErrorsAreFailures> {
    recorder: Recorder,
    classify: C,
}

impl Recorder {
    /// A layer recording every call into this recorder, every `Err` a failure.
    pub fn layer(&self) -> RecordLayer {
        self.layer_with(ErrorsAreFailures)
    }

    /// A layer recording every call into this recorder, outcomes from `classify`.
    pub fn layer_with<C>(&self, classify: C) -> RecordLayer<C> {
        RecordLayer {
            recorder: self.clone(),
            classify,
        }
    }
}

impl<S, C: Clone> Layer<S> for RecordLayer<C> {
    type Service = Record<S, C>;

    fn layer(&self, inner: S) -> Record<S, C> {
        Record {
            inner,
            recorder: self.recorder.clone(),
            classify: self.classify.clone(),
        }
    }
}

/// The service of a [`RecordLayer`].
#[derive(Clone, Debug)]
pub struct Record<S, C = ErrorsAreFailures> {
    inner: S,
    recorder: Recorder,
    classify: C,
}

impl<S, C, Req> Service<Req> for Record<S, C>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RecordFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        RecordFuture {
            inner: self.inner.call(request),
            started: Some(Instant::now()),
            recorder: self.recorder.clone(),
            classify: self.classify.clone(),
        }
    }
}

/// The response future of [`Record`]: the inner future, timed.
#[pin_project(PinnedDrop)]
pub struct RecordFuture<F, C> {
    #[pin]
    inner: F,
    /// Taken when the call is recorded.
    started: Option<Instant>,
    recorder: Recorder,
    classify: C,
}

impl<F, C, T, E> Future for RecordFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some(started) = this.started.take() {
            let ok = match this.classify.classify(&result) {
                Outcome::Success => Some(true),
                Outcome::Failure => Some(false),
                Outcome::Ignored => None,
            };
            if let Some(ok) = ok {
                this.recorder.record(started.elapsed(), ok);
            }
        }
        Poll::Ready(result)
    }
}

#[pinned_drop]
impl<F, C> PinnedDrop for RecordFuture<F, C> {
    fn drop(self: Pin<&mut Self>) {
        let this = self.project();
        if let Some(started) = this.started.take() {
            this.recorder.record_unfinished(started.elapsed());
        }
    }
}

impl<F, C> fmt::Debug for RecordFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordFuture")
            .field("started", &self.started)
            .finish()
    }
}
