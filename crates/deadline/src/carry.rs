//! [`CarryDeadlineLayer`]: the task's deadline, carried in the request across a task
//! boundary.

use std::task::{Context, Poll};

use http::Request;
use tower_bulwark_core::Deadline;
use tower_layer::Layer;
use tower_service::Service;

/// Copies the task's current [`Deadline`] into the request's extensions, so the deadline
/// survives a hop to another task.
///
/// The current deadline ([`Deadline::current`]) belongs to the task that polls: tower's
/// `Buffer` runs `call` on its own worker task, and a future handed to `tokio::spawn` starts
/// with none. Layers behind such a hop see only what the request carries. Placed just
/// outside the `Buffer` (or before the spawn), this layer makes the request carry it; behind
/// the hop, [`PropagateDeadlineLayer`](crate::PropagateDeadlineLayer) and the retry crate's
/// `HttpRetry` and `GrpcRetry` read the `Deadline` in extensions, and the propagate layer
/// makes it the current deadline again for the layers inside it (breaker, bulkhead,
/// timeout).
///
/// A deadline already in the extensions is kept if it is earlier. Without a current
/// deadline the request passes untouched; with one, inserting it is the layer's only cost
/// (`http::Extensions` allocates its map and the value's box on the first insert; a
/// deadline the request already carries is updated in place, allocating nothing).
///
/// `poll_ready` behind a `Buffer` runs on the worker too, before any request is known: a
/// wait there (a breaker in readiness admission, a bulkhead with backpressure) cannot see
/// the caller's deadline. Use the fail-fast and reject admissions behind a `Buffer`.
///
/// ```
/// use std::time::Duration;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_bulwark_core::Deadline;
/// use tower_bulwark_deadline::{CarryDeadlineLayer, PropagateDeadlineLayer};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let transport = service_fn(|request: http::Request<()>| async move {
///     Ok::<_, std::convert::Infallible>(request.headers()["x-request-timeout-ms"].clone())
/// });
/// let client = ServiceBuilder::new()
///     .layer(CarryDeadlineLayer::new()) // the one line: before the `Buffer`
///     .buffer(16)
///     .layer(PropagateDeadlineLayer::builder().build().unwrap())
///     .service(transport);
/// let sent = Deadline::after(Duration::from_millis(500))
///     .scope(client.oneshot(http::Request::get("/").body(()).unwrap()))
///     .await
///     .unwrap();
/// assert_eq!(sent, "500");
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CarryDeadlineLayer {
    _private: (),
}

impl CarryDeadlineLayer {
    /// The layer.
    pub fn new() -> Self {
        CarryDeadlineLayer::default()
    }
}

impl<S> Layer<S> for CarryDeadlineLayer {
    type Service = CarryDeadline<S>;

    fn layer(&self, inner: S) -> CarryDeadline<S> {
        CarryDeadline { inner }
    }
}

/// The service of a [`CarryDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct CarryDeadline<S> {
    inner: S,
}

impl<S> CarryDeadline<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, B> Service<Request<B>> for CarryDeadline<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut request: Request<B>) -> S::Future {
        if let Some(current) = Deadline::current() {
            let extensions = request.extensions_mut();
            // In place when the request carries one already: an insert would box anew.
            match extensions.get_mut::<Deadline>() {
                Some(carried) => *carried = current.earliest(Some(*carried)),
                None => {
                    extensions.insert(current);
                }
            }
        }
        self.inner.call(request)
    }
}
