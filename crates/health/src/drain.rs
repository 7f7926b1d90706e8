//! Graceful drain: stop taking work, let the work in flight finish.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project::pin_project;
use tokio::sync::Notify;
use tower_bulwark_core::{BoxError, Name, Rejection, RejectionKind};
use tower_layer::Layer;
use tower_service::Service;

/// Graceful shutdown for a tower server.
///
/// [`DrainHandle::drain`] turns readiness off (the `Health` registry reports 503) and,
/// by default, refuses new requests with a `Draining` rejection: HTTP 503 with
/// `Connection: close` (so keep-alive clients move to another instance), gRPC
/// `UNAVAILABLE`. With [`DrainLayer::keep_serving`], new requests are still served while
/// the orchestrator takes the instance out of rotation. [`DrainHandle::drained`] waits for
/// the requests in flight, up to a grace period, and says how many were cut.
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
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

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
                draining: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
            keep_serving: false,
        }
    }

    /// While draining, serve new requests anyway (only readiness turns off).
    pub fn keep_serving(mut self) -> Self {
        self.keep_serving = true;
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
        self.shared.draining.store(true, SeqCst);
        if self.shared.in_flight.load(SeqCst) == 0 {
            self.shared.idle.notify_waiters();
        }
    }

    /// Whether a drain has started.
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(SeqCst)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(SeqCst)
    }

    /// Resolves when no request is in flight, or when `grace` has passed; reports how many
    /// were still in flight then.
    pub async fn drained(&self, grace: Duration) -> DrainReport {
        let wait_idle = async {
            loop {
                let idle = self.shared.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.in_flight() == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(grace, wait_idle).await;
        DrainReport {
            cut: self.in_flight(),
        }
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

/// Counts a request in flight until dropped.
#[derive(Debug)]
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, SeqCst) == 1 && self.0.draining.load(SeqCst) {
            self.0.idle.notify_waiters();
        }
    }
}

impl<S, Req> Service<Req> for Drain<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = DrainFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let shared = &self.shared;
        if shared.draining.load(SeqCst) && !self.keep_serving {
            let rejection = Rejection::new(RejectionKind::Draining, shared.name.clone());
            return DrainFuture {
                kind: Kind::Refused {
                    error: Some(Box::new(rejection)),
                },
            };
        }
        shared.in_flight.fetch_add(1, SeqCst);
        let in_flight = InFlight(shared.clone());
        DrainFuture {
            kind: Kind::Called {
                future: self.inner.call(request),
                in_flight: Some(in_flight),
            },
        }
    }
}

/// Response future of [`Drain`]: the request counts as in flight until it completes or is
/// dropped.
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

impl<F, T, E> Future for DrainFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProjection::Called { future, in_flight } => {
                let result = ready!(future.poll(cx));
                drop(in_flight.take());
                Poll::Ready(result.map_err(Into::into))
            }
            KindProjection::Refused { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "DrainFuture polled after completion".into()))),
        }
    }
}
