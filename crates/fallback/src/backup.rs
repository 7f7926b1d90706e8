//! [`BackupLayer`]: send a failed or refused call to a backup dependency.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project::pin_project;
use tower_bulwark_core::repeat::{is_idempotent, never_sent, GrpcMethods};
use tower_bulwark_core::{
    is_grpc_request, BoxError, Classify, Deadline, ErrorsAreFailures, Listener, Name, Replayable,
};
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
/// Only requests that are safe to send twice go to the backup after a failure that may
/// have reached the primary (an error that is not provably [never
/// sent](tower_bulwark_core::repeat::never_sent), an attempt timeout, a failed answer): the
/// rules of `HttpRetry` ([`is_idempotent`]: an idempotent method, or an `Idempotency-Key`
/// header), and the gRPC methods marked with [`idempotent_grpc`](BackupLayer::idempotent_grpc).
/// A call that never left (refused by a bulwark layer below, a connection refused) goes to
/// the backup whatever its method. [`any_method`](BackupLayer::any_method) lifts the rule.
/// Nothing goes to the backup once the caller's deadline (the task's, or a [`Deadline`]
/// the request carries) has passed: its answer would come too late.
///
/// A backup's answer is reported as [`FallbackEvent::Served`] from [`Source::Backup`]; a
/// call that falls back but cannot be sent (its body, or its method, forbids it), or whose
/// backup fails, as [`FallbackEvent::Unanswered`].
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
    repeat: Repeat,
    reporter: Arc<Reporter>,
}

/// Which requests may go to the backup after a failure that may have reached the primary.
#[derive(Clone, Default)]
struct Repeat {
    any_method: bool,
    grpc: GrpcMethods,
}

impl Repeat {
    fn allows<B>(&self, request: &Request<B>) -> bool {
        self.any_method
            || is_idempotent(request)
            || (is_grpc_request(request.headers()) && self.grpc.contains(request.uri().path()))
    }
}

impl<T> BackupLayer<T> {
    /// Falls back to `backup` on rejections and on `Err`s; named `backup` in events.
    pub fn new(backup: T) -> Self {
        BackupLayer {
            backup,
            classify: ErrorsAreFailures,
            on: FallbackOn::default(),
            repeat: Repeat::default(),
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
            repeat: self.repeat,
            reporter: self.reporter,
        }
    }

    /// Sends every request that fails to the backup, whatever its method: only for
    /// backups that deduplicate, or services whose every call is safe to repeat.
    pub fn any_method(mut self) -> Self {
        self.repeat.any_method = true;
        self
    }

    /// The gRPC methods that are safe to send twice (gRPC calls are all `POST`s, so their
    /// method says nothing): these go to the backup after any failure.
    ///
    /// ```
    /// use tower_bulwark_core::repeat::GrpcMethods;
    /// use tower_bulwark_fallback::BackupLayer;
    ///
    /// # fn main() -> Result<(), tower_bulwark_core::ConfigError> {
    /// # let replica = tower::service_fn(|_: http::Request<()>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(()))
    /// # });
    /// let reads = GrpcMethods::new().service("shop.Catalog")?.method("/shop.Orders/Get")?;
    /// let layer = BackupLayer::new(replica).idempotent_grpc(reads);
    /// # let _ = layer;
    /// # Ok(())
    /// # }
    /// ```
    pub fn idempotent_grpc(mut self, methods: GrpcMethods) -> Self {
        self.repeat.grpc = methods;
        self
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
            repeat: self.repeat.clone(),
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
    repeat: Repeat,
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
        let repeatable = self.repeat.allows(&request);
        BackupFuture {
            state: State::Primary {
                future: self.inner.call(request),
                copy: Some(copy),
                repeatable,
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
        /// Safe to send twice: may go to the backup after any failure.
        repeatable: bool,
        backup: Option<T>,
        classify: C,
        on: FallbackOn,
        reporter: Arc<Reporter>,
    },
    Backup {
        future: BoxFuture<Result<Response<B>, BoxError>>,
    },
}

/// Whether the caller's deadline (the task's, or the one the request carries) has
/// passed: an answer from the backup would come too late to be of use.
fn out_of_time<B>(request: &Request<B>) -> bool {
    Deadline::of_request(request.extensions()).is_some_and(Deadline::is_expired)
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
                    repeatable,
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
                    // A call that may have reached the primary is not sent twice unless
                    // that is safe; one that never left may go. Checked now: the primary
                    // may have read the body past its recording.
                    let never_left = matches!(&result, Err(error) if never_sent(error));
                    if !(*repeatable || never_left)
                        || !Replayable::check(&request)
                        || out_of_time(&request)
                    {
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
            .field("any_method", &self.repeat.any_method)
            .field("idempotent_grpc", &self.repeat.grpc)
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
    use tower_bulwark_core::{
        find_rejection, CanReplay, HttpClassifier, Rejection, RejectionKind, Replayable,
    };

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

    /// A primary that answers every call with `answer`.
    fn answering(
        answer: Answer,
    ) -> impl Service<Request, Response = Response<&'static str>, Error = BoxError> {
        service_fn(move |_: Request| std::future::ready(answer()))
    }

    fn post() -> Request {
        http::Request::post("/orders").body("order").unwrap()
    }

    #[tokio::test]
    async fn a_request_not_safe_to_repeat_is_not_sent_again_after_an_ambiguous_failure() {
        // The primary may have taken the order before the connection broke, or before it
        // answered 503: sending it to the backup could take it twice.
        let (replica, backup_calls) = backup();
        let service = BackupLayer::new(replica.clone()).layer(answering(reset));
        let error = service.oneshot(post()).await.unwrap_err();
        assert_eq!(error.to_string(), "upload reset");
        let service = BackupLayer::new(replica.clone())
            .classify(HttpClassifier)
            .layer(answering(unavailable));
        let response = service.oneshot(post()).await.unwrap();
        assert_eq!(response.status(), 503);
        assert!(response.headers().get(DEGRADED_HEADER).is_none());
        // An attempt timeout, or the caller's deadline, may end a call already sent.
        for kind in [RejectionKind::TimedOut, RejectionKind::DeadlineExceeded] {
            let service = BackupLayer::new(replica.clone()).layer(refusing(kind));
            let error = service.oneshot(post()).await.unwrap_err();
            assert_eq!(find_rejection(&error).unwrap().kind(), kind);
        }
        assert_eq!(backup_calls.load(SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_goes_to_the_backup_once_the_callers_deadline_has_passed() {
        use std::time::Duration;

        // The primary fails at the caller's deadline: a GET, safe to repeat, still gets its
        // original failure, not a backup call nobody waits for.
        let (replica, backup_calls) = backup();
        let slow_failure = service_fn(|_: Request| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err::<Response<&'static str>, BoxError>("reset".into())
        });
        let service = BackupLayer::new(replica.clone()).layer(slow_failure);
        let deadline = Deadline::after(Duration::from_millis(100));
        let error = deadline
            .scope(service.clone().oneshot(http::Request::new("get")))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "reset");
        // The same with the deadline carried in the request.
        let mut request = http::Request::new("get");
        request
            .extensions_mut()
            .insert(Deadline::after(Duration::from_millis(100)));
        let error = service.clone().oneshot(request).await.unwrap_err();
        assert_eq!(error.to_string(), "reset");
        assert_eq!(backup_calls.load(SeqCst), 0);

        // With time left, the backup answers.
        let deadline = Deadline::after(Duration::from_secs(1));
        let response = deadline
            .scope(service.oneshot(http::Request::new("get")))
            .await
            .unwrap();
        assert_eq!(*response.body(), "from the backup");
        assert_eq!(backup_calls.load(SeqCst), 1);
    }

    /// A primary whose stack refuses every call with `kind`.
    fn refusing(
        kind: RejectionKind,
    ) -> impl Service<Request, Response = Response<&'static str>, Error = BoxError> {
        service_fn(move |_: Request| {
            std::future::ready(Err::<Response<&'static str>, BoxError>(
                Rejection::new(kind, "primary").into(),
            ))
        })
    }

    #[tokio::test]
    async fn a_call_that_never_left_goes_to_the_backup_whatever_its_method() {
        let (replica, backup_calls) = backup();
        for kind in [RejectionKind::CircuitOpen, RejectionKind::BulkheadFull] {
            let service = BackupLayer::new(replica.clone()).layer(refusing(kind));
            let response = service.oneshot(post()).await.unwrap();
            assert_eq!(*response.body(), "from the backup", "{kind:?}");
        }
        let refused = || Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into());
        let service = BackupLayer::new(replica).layer(answering(refused));
        let response = service.oneshot(post()).await.unwrap();
        assert_eq!(*response.body(), "from the backup");
        assert_eq!(backup_calls.load(SeqCst), 3);
    }

    #[tokio::test]
    async fn keyed_requests_marked_grpc_methods_and_any_method_go_to_the_backup() {
        let (replica, backup_calls) = backup();
        let mut keyed = post();
        keyed
            .headers_mut()
            .insert("idempotency-key", http::HeaderValue::from_static("order-1"));
        let service = BackupLayer::new(replica.clone()).layer(answering(reset));
        assert!(service.oneshot(keyed).await.is_ok());

        let grpc = |path: &str| {
            http::Request::post(path)
                .header("content-type", "application/grpc")
                .body("call")
                .unwrap()
        };
        let reads = GrpcMethods::new().service("shop.Catalog").unwrap();
        let service = BackupLayer::new(replica.clone())
            .idempotent_grpc(reads)
            .layer(answering(reset));
        assert!(service.oneshot(grpc("/shop.Catalog/Get")).await.is_ok());
        let service = BackupLayer::new(replica.clone())
            .idempotent_grpc(GrpcMethods::new().service("shop.Catalog").unwrap())
            .layer(answering(reset));
        let error = service
            .oneshot(grpc("/shop.Orders/Create"))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "upload reset", "not marked");
        assert_eq!(backup_calls.load(SeqCst), 2);

        let service = BackupLayer::new(replica)
            .any_method()
            .layer(answering(reset));
        assert!(service.oneshot(post()).await.is_ok());
        assert_eq!(backup_calls.load(SeqCst), 3);
    }

    #[tokio::test]
    async fn an_empty_idempotency_key_does_not_make_a_post_safe_to_send_twice() {
        let (replica, backup_calls) = backup();
        for blank in ["", "  "] {
            let mut request = post();
            request
                .headers_mut()
                .insert("idempotency-key", http::HeaderValue::from_static(blank));
            let service = BackupLayer::new(replica.clone()).layer(answering(reset));
            let error = service.oneshot(request).await.unwrap_err();
            assert_eq!(error.to_string(), "upload reset", "{blank:?}");
        }
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
