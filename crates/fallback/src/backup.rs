//! [`BackupLayer`]: send a failed or refused call to a backup dependency.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project::pin_project;
use tower_bulwark_core::{BoxError, Classify, ErrorsAreFailures, Listener, Name, Replayable};
use tower_layer::Layer;
use tower_service::Service;

use crate::degraded::mark;
use crate::events::{Reporter, Source};
use crate::{Degraded, FallbackEvent, FallbackOn};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Sends a call that failed (per the classifier) or was refused by a bulwark layer to a
/// backup service: a secondary region, a read replica, a simpler implementation. The
/// backup's answer is marked `x-bulwark-degraded: backup` (and [`Degraded::Backup`]); its
/// failure is returned as is (the backup is the last word).
///
/// The request is cloned before each call (the backup needs one if the primary fails), so
/// it must be `Clone` (`http::Request<Full<Bytes>>` is; wrap streaming bodies with the
/// retry crate's `ReplayLayer`). A copy whose body cannot be sent whole (the primary read
/// it past what was recorded, or reading it failed: its
/// [`Replayable`](tower_bulwark_core::Replayable) says so) is not sent: the primary's
/// failure is returned as it is, unmarked.
///
/// A backup's answer is reported as [`FallbackEvent::Served`] from [`Source::Backup`]; a
/// call that falls back but cannot be sent, or whose backup fails, as
/// [`FallbackEvent::Unanswered`].
///
/// ```
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_bulwark_fallback::BackupLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let replica = service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new("from the replica"))
/// });
/// let primary = service_fn(|_: http::Request<()>| async {
///     Err::<http::Response<&str>, _>(std::io::Error::other("primary down"))
/// });
/// let service = BackupLayer::new(replica).layer(primary);
/// let response = service.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(*response.body(), "from the replica");
/// assert_eq!(response.headers()["x-bulwark-degraded"], "backup");
/// # }
/// ```
#[derive(Clone)]
pub struct BackupLayer<T, C = ErrorsAreFailures> {
    backup: T,
    classify: C,
    on: FallbackOn,
    reporter: Arc<Reporter>,
}

impl<T> BackupLayer<T> {
    /// Falls back to `backup` on rejections and on `Err`s; named `backup` in events.
    pub fn new(backup: T) -> Self {
        BackupLayer {
            backup,
            classify: ErrorsAreFailures,
            on: FallbackOn::default(),
            reporter: Arc::new(Reporter::new("backup")),
        }
    }
}

impl<T, C> BackupLayer<T, C> {
    /// Which results are failures (`HttpClassifier` adds 5xx responses).
    pub fn classify<C2>(self, classify: C2) -> BackupLayer<T, C2> {
        BackupLayer {
            backup: self.backup,
            classify,
            on: self.on,
            reporter: self.reporter,
        }
    }

    /// Which failed calls go to the backup.
    pub fn on(mut self, on: FallbackOn) -> Self {
        self.on = on;
        self
    }

    /// The name in events and metric labels (default `backup`).
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        Arc::make_mut(&mut self.reporter).name = name.into();
        self
    }

    /// Adds a listener for the layer's events. Listeners run inline: keep them quick.
    pub fn on_event(mut self, listener: impl Listener<FallbackEvent> + 'static) -> Self {
        Arc::make_mut(&mut self.reporter).listeners.push(listener);
        self
    }

    /// Records events through the `metrics` facade (`bulwark_fallback_*`).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(self) -> Self {
        self.on_event(crate::events::FallbackMetricsListener::new())
    }
}

impl<S, T: Clone, C: Clone> Layer<S> for BackupLayer<T, C> {
    type Service = Backup<S, T, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Backup {
            inner,
            backup: self.backup.clone(),
            classify: self.classify.clone(),
            on: self.on,
            reporter: self.reporter.clone(),
        }
    }
}

/// The service of a [`BackupLayer`].
#[derive(Clone)]
pub struct Backup<S, T, C> {
    inner: S,
    backup: T,
    classify: C,
    on: FallbackOn,
    reporter: Arc<Reporter>,
}

impl<S, T, C, ReqB, B> Service<Request<ReqB>> for Backup<S, T, C>
where
    S: Service<Request<ReqB>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    T: Service<Request<ReqB>, Response = Response<B>> + Clone + Send + 'static,
    T::Error: Into<BoxError>,
    T::Future: Send,
    ReqB: Clone + Send + 'static,
    B: Send + 'static,
    C: Classify<Response<B>, S::Error> + Clone,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = BackupFuture<S::Future, T, C, Request<ReqB>, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let copy = request.clone();
        BackupFuture {
            state: State::Primary {
                future: self.inner.call(request),
                copy: Some(copy),
                backup: Some(self.backup.clone()),
                classify: self.classify.clone(),
                on: self.on,
                reporter: self.reporter.clone(),
            },
        }
    }
}

/// Response future of [`Backup`].
#[pin_project]
pub struct BackupFuture<F, T, C, Req, B> {
    #[pin]
    state: State<F, T, C, Req, B>,
}

#[pin_project(project = StateProjection)]
enum State<F, T, C, Req, B> {
    Primary {
        #[pin]
        future: F,
        copy: Option<Req>,
        backup: Option<T>,
        classify: C,
        on: FallbackOn,
        reporter: Arc<Reporter>,
    },
    Backup {
        future: BoxFuture<Result<Response<B>, BoxError>>,
    },
}

impl<F, T, C, ReqB, B, E> Future for BackupFuture<F, T, C, Request<ReqB>, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    T: Service<Request<ReqB>, Response = Response<B>> + Send + 'static,
    T::Error: Into<BoxError>,
    T::Future: Send,
    ReqB: Send + 'static,
    B: Send + 'static,
    C: Classify<Response<B>, E>,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().state.project() {
                StateProjection::Primary {
                    future,
                    copy,
                    backup,
                    classify,
                    on,
                    reporter,
                } => {
                    let result = match future.poll(cx) {
                        Poll::Ready(result) => result,
                        Poll::Pending => return Poll::Pending,
                    };
                    let outcome = classify.classify_load(&result);
                    let result = result.map_err(Into::into);
                    let (Some(request), Some(backup), Some(reason)) =
                        (copy.take(), backup.take(), on.reason(&result, outcome))
                    else {
                        return Poll::Ready(result);
                    };
                    // Checked now: the primary may have read the body past its recording.
                    if !Replayable::check(&request) {
                        reporter.unanswered(reason);
                        return Poll::Ready(result);
                    }
                    let reporter = reporter.clone();
                    let call = async move {
                        use tower::ServiceExt as _;
                        match backup.oneshot(request).await {
                            Ok(response) => {
                                reporter.served(Source::Backup, reason);
                                Ok(mark(response, Degraded::Backup))
                            }
                            Err(error) => {
                                reporter.unanswered(reason);
                                Err(error.into())
                            }
                        }
                    };
                    State::Backup {
                        future: Box::pin(call),
                    }
                }
                StateProjection::Backup { future } => return future.as_mut().poll(cx),
            };
            self.as_mut().project().state.set(next);
        }
    }
}

impl<T, C> fmt::Debug for BackupLayer<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupLayer")
            .field("name", &self.reporter.name)
            .field("on", &self.on)
            .finish_non_exhaustive()
    }
}

impl<S: fmt::Debug, T, C> fmt::Debug for Backup<S, T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backup")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<F, T, C, Req, B> fmt::Debug for BackupFuture<F, T, C, Req, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;

    use tower::{service_fn, Layer, ServiceExt};
    use tower_bulwark_core::{CanReplay, HttpClassifier, Replayable};

    use super::*;
    use crate::DEGRADED_HEADER;

    type Request = http::Request<&'static str>;
    type Answer = fn() -> Result<Response<&'static str>, BoxError>;

    /// A recorded body's state: replayable until the primary reads past the recording.
    struct Recording(AtomicBool);

    impl CanReplay for Recording {
        fn can_replay(&self) -> bool {
            self.0.load(SeqCst)
        }
    }

    /// A request, with a recorded body if `recorded`, and the recording's state.
    fn upload(recorded: bool) -> (Request, Arc<Recording>) {
        let recording = Arc::new(Recording(AtomicBool::new(true)));
        let mut request = http::Request::new("upload");
        if recorded {
            let replayable = Replayable::new(recording.clone());
            request.extensions_mut().insert(replayable);
        }
        (request, recording)
    }

    /// A backup that answers, counting its calls.
    fn backup() -> (
        impl Service<
                Request,
                Response = Response<&'static str>,
                Error = BoxError,
                Future = impl Send,
            > + Clone
            + Send
            + 'static,
        Arc<AtomicUsize>,
    ) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let backup = service_fn(move |_: Request| {
            counted.fetch_add(1, SeqCst);
            std::future::ready(Ok::<_, BoxError>(Response::new("from the backup")))
        });
        (backup, calls)
    }

    /// A primary that reads the body, past the recording if `overflow`, then gives `answer`.
    fn primary(
        recording: Arc<Recording>,
        overflow: bool,
        answer: Answer,
    ) -> impl Service<Request, Response = Response<&'static str>, Error = BoxError> {
        service_fn(move |_: Request| {
            if overflow {
                recording.0.store(false, SeqCst);
            }
            std::future::ready(answer())
        })
    }

    fn reset() -> Result<Response<&'static str>, BoxError> {
        Err("upload reset".into())
    }

    fn unavailable() -> Result<Response<&'static str>, BoxError> {
        let mut response = Response::new("primary unavailable");
        *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        Ok(response)
    }

    #[tokio::test]
    async fn a_request_that_cannot_be_sent_again_is_not_sent_to_the_backup() {
        // Replayable when the call began; the primary read past the recording and failed:
        // the original failure comes back and the backup never gets a body it cannot get
        // whole.
        let (replica, backup_calls) = backup();
        let (request, recording) = upload(true);
        let service = BackupLayer::new(replica.clone()).layer(primary(recording, true, reset));
        let error = service.oneshot(request).await.unwrap_err();
        assert_eq!(error.to_string(), "upload reset");
        assert_eq!(backup_calls.load(SeqCst), 0);

        // A failed response the same way: returned as it is, not marked as degraded.
        let (request, recording) = upload(true);
        let service = BackupLayer::new(replica)
            .classify(HttpClassifier)
            .layer(primary(recording, true, unavailable));
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(*response.body(), "primary unavailable");
        assert!(response.headers().get(DEGRADED_HEADER).is_none());
        assert!(response.extensions().get::<Degraded>().is_none());
        assert_eq!(backup_calls.load(SeqCst), 0);
    }

    #[tokio::test]
    async fn a_request_that_can_be_sent_again_goes_to_the_backup() {
        // A recorded body still within its recording, and a plain `Clone` body.
        for recorded in [true, false] {
            let (replica, backup_calls) = backup();
            let (request, recording) = upload(recorded);
            let service = BackupLayer::new(replica).layer(primary(recording, false, reset));
            let response = service.oneshot(request).await.unwrap();
            assert_eq!(*response.body(), "from the backup", "recorded: {recorded}");
            assert_eq!(response.headers()[DEGRADED_HEADER], "backup");
            assert_eq!(backup_calls.load(SeqCst), 1);
        }
    }
}
