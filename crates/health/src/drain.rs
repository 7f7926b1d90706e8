//! Graceful drain: stop taking work, let the work in flight finish.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::*;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use tokio::sync::Notify;
use tokio::time::Instant;
use tower_bulwark_core::{BoxError, Listener, Listeners, Name, Rejection, RejectionKind};
use tower_layer::Layer;
use tower_service::Service;

use crate::DrainEvent;
use tower_bulwark_core::sync::AtomicUsize;

/// Graceful shutdown for an HTTP or gRPC tower server (services answering `http::Response`:
/// axum, hyper, tonic).
///
/// [`DrainHandle::drain`] turns readiness off (the `Health` registry reports 503) and,
/// by default, refuses new requests at once (not waiting for the inner service to be
/// ready) with a `Draining` rejection: HTTP 503 with `Connection: close` (so keep-alive
/// clients move to another instance), gRPC `UNAVAILABLE`. With
/// [`DrainLayer::keep_serving`], new requests are still served while the orchestrator
/// takes the instance out of rotation. [`DrainHandle::drained`] waits for the requests in
/// flight, up to a grace period, and says how many were cut. A request is in flight from
/// its call until its response body ends or is dropped ([`DrainBody`]), so a streaming
/// response is not cut by a shutdown that thought it was done.
///
/// With axum: start the drain from the shutdown signal, then serve until drained.
///
/// ```no_run
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use tower::ServiceBuilder;
/// use tower_bulwark_core::HandleRejectionsLayer;
/// use tower_bulwark_health::DrainLayer;
///
/// # async fn run() -> std::io::Result<()> {
/// let drain = DrainLayer::new();
/// let handle = drain.handle();
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(ServiceBuilder::new().layer(HandleRejectionsLayer::new()).layer(drain));
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
/// let shutdown = handle.clone();
/// axum::serve(listener, app)
///     .with_graceful_shutdown(async move {
///         let _ = tokio::signal::ctrl_c().await;
///         shutdown.drain();
///         let report = shutdown.drained(Duration::from_secs(20)).await;
///         eprintln!("drained; {} requests cut", report.cut);
///     })
///     .await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DrainLayer {
    shared: Arc<Shared>,
    keep_serving: bool,
}

#[derive(Debug)]
struct Shared {
    name: Name,
    /// The requests in flight, and [`DRAINING`] in the top bit: one word, so admitting a
    /// request (count it, see whether a drain started) is one atomic step.
    state: AtomicUsize,
    idle: Notify,
    /// Listeners of [`DrainEvent`]s: a few events per shutdown, so a lock is cheap.
    listeners: Mutex<Listeners<DrainEvent>>,
}

/// The drain flag in [`Shared::state`].
const DRAINING: usize = 1 << (usize::BITS - 1);

/// How often a drain still waiting says so.
const PROGRESS: Duration = Duration::from_secs(1);

/// Starts and awaits a drain; read by the health registry.
#[derive(Debug, Clone)]
pub struct DrainHandle {
    shared: Arc<Shared>,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Requests still in flight when the grace period ended (0: all finished).
    pub cut: usize,
}

impl Default for DrainLayer {
    fn default() -> Self {
        DrainLayer::new()
    }
}

impl DrainLayer {
    /// A drain layer, not draining.
    pub fn new() -> Self {
        DrainLayer {
            shared: Arc::new(Shared {
                name: Name::from("drain"),
                state: AtomicUsize::new(0),
                idle: Notify::new(),
                listeners: Mutex::new(Listeners::new()),
            }),
            keep_serving: false,
        }
    }

    /// While draining, serve new requests anyway (only readiness turns off).
    pub fn keep_serving(mut self) -> Self {
        self.keep_serving = true;
        self
    }

    /// Calls `listener` with the drain's [`DrainEvent`]s: started, still waiting (once a
    /// second), finished. `TracingListener` logs them at `INFO` (`WARN` when requests
    /// were cut).
    pub fn on_event(self, listener: impl Listener<DrainEvent> + 'static) -> Self {
        self.shared.lock_listeners().push(listener);
        self
    }

    /// The handle that starts the drain and waits for it.
    pub fn handle(&self) -> DrainHandle {
        DrainHandle {
            shared: self.shared.clone(),
        }
    }
}

impl DrainHandle {
    /// Starts draining: readiness turns off, new requests are refused (unless the layer
    /// keeps serving). Idempotent.
    pub fn drain(&self) {
        let before = self.shared.state.fetch_or(DRAINING, SeqCst);
        if before & !DRAINING == 0 {
            self.shared.idle.notify_waiters();
        }
        if before & DRAINING == 0 {
            let in_flight = before & !DRAINING;
            self.shared.emit(DrainEvent::Started { in_flight });
        }
    }

    /// Whether a drain has started.
    pub fn is_draining(&self) -> bool {
        self.shared.is_draining()
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.shared.state.load(SeqCst) & !DRAINING
    }

    /// Resolves when no request is in flight, or when `grace` has passed; reports how many
    /// were still in flight then. Meant for after [`drain`](Self::drain): until a drain
    /// starts, the end of a request does not wake this wait (waking on every call would
    /// cost each one a lock).
    pub async fn drained(&self, grace: Duration) -> DrainReport {
        let started = Instant::now();
        let wait_idle = async {
            let mut progress = tokio::time::interval_at(started + PROGRESS, PROGRESS);
            // A waiter not polled for a while reports once, not a burst of late ticks.
            progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let idle = self.shared.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.in_flight() == 0 {
                    return;
                }
                // Woken by the last request's end, or by the progress tick.
                let ticked = std::future::poll_fn(|cx| {
                    if idle.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(false);
                    }
                    progress.poll_tick(cx).map(|_| true)
                })
                .await;
                let (in_flight, waited) = (self.in_flight(), started.elapsed());
                // At the end of the grace period, `Finished` says it.
                if ticked && waited < grace {
                    self.shared.emit(DrainEvent::Waiting { in_flight, waited });
                }
            }
        };
        let _ = tokio::time::timeout(grace, wait_idle).await;
        let cut = self.in_flight();
        let waited = started.elapsed();
        self.shared.emit(DrainEvent::Finished { cut, waited });
        DrainReport { cut }
    }
}

impl<S> Layer<S> for DrainLayer {
    type Service = Drain<S>;

    fn layer(&self, inner: S) -> Drain<S> {
        Drain {
            inner,
            shared: self.shared.clone(),
            keep_serving: self.keep_serving,
        }
    }
}

/// The service of a [`DrainLayer`].
#[derive(Debug, Clone)]
pub struct Drain<S> {
    inner: S,
    shared: Arc<Shared>,
    keep_serving: bool,
}

impl Shared {
    fn lock_listeners(&self) -> std::sync::MutexGuard<'_, Listeners<DrainEvent>> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands `event` to the listeners, outside the lock (a listener may read the handle).
    fn emit(&self, event: DrainEvent) {
        let listeners = self.lock_listeners().clone();
        listeners.emit(|| event);
    }

    fn is_draining(&self) -> bool {
        self.state.load(SeqCst) & DRAINING != 0
    }

    /// Counts a request in flight, unless a drain refuses it. Counting and reading the
    /// drain flag are one step, so a drain that saw nothing in flight never sees a request
    /// admitted after.
    fn admit(self: &Arc<Self>, keep_serving: bool) -> Option<InFlight> {
        let before = self.state.fetch_add(1, SeqCst);
        let in_flight = InFlight(self.clone());
        // Refused: dropping the count wakes a drain that saw it.
        (keep_serving || before & DRAINING == 0).then_some(in_flight)
    }
}

/// Counts a request in flight until dropped.
#[derive(Debug)]
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.state.fetch_sub(1, SeqCst) == DRAINING | 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl<S, Req, B> Service<Req> for Drain<S>
where
    S: Service<Req, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<DrainBody<B>>;
    type Error = BoxError;
    type Future = DrainFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // A refusal needs nothing from the inner service, often full or failing by now:
        // answer `Draining` at once (a drain never ends, so `call` refuses too).
        if !self.keep_serving && self.shared.is_draining() {
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let kind = match self.shared.admit(self.keep_serving) {
            Some(in_flight) => Kind::Called {
                future: self.inner.call(request),
                in_flight: Some(in_flight),
            },
            None => {
                let rejection = Rejection::new(RejectionKind::Draining, self.shared.name.clone());
                Kind::Refused {
                    error: Some(Box::new(rejection)),
                }
            }
        };
        DrainFuture { kind }
    }
}

/// Response future of [`Drain`]: the request counts as in flight until it fails, is
/// dropped, or hands the count to its response's [`DrainBody`].
#[pin_project]
#[derive(Debug)]
pub struct DrainFuture<F> {
    #[pin]
    kind: Kind<F>,
}

#[pin_project(project = KindProjection)]
#[derive(Debug)]
enum Kind<F> {
    Called {
        #[pin]
        future: F,
        in_flight: Option<InFlight>,
    },
    Refused {
        error: Option<BoxError>,
    },
}

impl<F, B, E> Future for DrainFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<DrainBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProjection::Called { future, in_flight } => {
                let result = ready!(future.poll(cx));
                let in_flight = in_flight.take();
                Poll::Ready(match result {
                    Ok(response) => Ok(response.map(|inner| DrainBody { inner, in_flight })),
                    Err(error) => Err(error.into()),
                })
            }
            KindProjection::Refused { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "DrainFuture polled after completion".into()))),
        }
    }
}

/// The body of a response through a [`DrainLayer`]: its request counts as in flight until
/// the body ends or is dropped.
#[pin_project]
#[derive(Debug)]
pub struct DrainBody<B> {
    #[pin]
    inner: B,
    in_flight: Option<InFlight>,
}

impl<B: Body> Body for DrainBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            // The end: done now, though the body may be dropped later.
            this.in_flight.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An empty body that counts nothing (what `HandleRejectionsLayer` answers a refusal with).
impl<B: Default> Default for DrainBody<B> {
    fn default() -> Self {
        DrainBody {
            inner: B::default(),
            in_flight: None,
        }
    }
}

/// A body written by a layer above the drain (`ProblemDetailsLayer` replacing a refusal's
/// body): it holds no request in flight.
impl<B: From<String>> From<String> for DrainBody<B> {
    fn from(text: String) -> Self {
        DrainBody {
            inner: B::from(text),
            in_flight: None,
        }
    }
}

#[cfg(all(test, bulwark_loom))]
mod loom_model {
    use std::convert::Infallible;
    use std::future::{ready, Ready};

    use super::*;

    /// Answers at once.
    #[derive(Clone)]
    struct Answer;

    impl Service<http::Request<()>> for Answer {
        type Response = http::Response<()>;
        type Error = Infallible;
        type Future = Ready<Result<http::Response<()>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            ready(Ok(http::Response::new(())))
        }
    }

    /// A call racing the start of a drain: either it is refused, or the drain sees it in
    /// flight. Never admitted after the drain saw nothing in flight.
    #[test]
    fn no_call_is_admitted_after_the_drain_saw_none_in_flight() {
        loom::model(|| {
            let layer = DrainLayer::new();
            let handle = layer.handle();
            let mut service = layer.layer(Answer);
            let caller = loom::thread::spawn(move || {
                let call = std::pin::pin!(service.call(http::Request::new(())));
                let mut cx = Context::from_waker(std::task::Waker::noop());
                match call.poll(&mut cx) {
                    Poll::Ready(result) => result.ok(),
                    Poll::Pending => unreachable!("the inner service answers at once"),
                }
            });
            handle.drain();
            let saw_none = handle.in_flight() == 0;
            let admitted = caller.join().unwrap();
            assert!(
                !(saw_none && admitted.is_some()),
                "admitted after the drain saw none in flight"
            );
            drop(admitted);
            assert_eq!(handle.in_flight(), 0);
        });
    }
}
