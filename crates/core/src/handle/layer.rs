use tower_layer::Layer;

use super::HandleRejections;

/// Turns the errors of the services below it into responses.
///
/// - A [`Rejection`](crate::Rejection) anywhere in the error's source chain becomes its HTTP
///   response (503, 429, 504 with `Retry-After`) or, for gRPC requests (`content-type:
///   application/grpc*`), a trailers-only gRPC response (`UNAVAILABLE`,
///   `RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED` with `grpc-retry-pushback-ms`). The
///   [`Rejection`](crate::Rejection) is also put in the response's extensions, so layers
///   above can tell a rejection from an answer of the inner service.
/// - tower's own refusals are answered the same way: `LoadShed`'s `Overloaded` as
///   overloaded (503 / `RESOURCE_EXHAUSTED`), `Timeout`'s `Elapsed` as deadline exceeded
///   (504 / `DEADLINE_EXCEEDED`).
/// - Any other error becomes HTTP 500 or gRPC `UNKNOWN`, and is logged at `error` level;
///   its text is not sent to the client.
/// - gRPC-Web requests get gRPC-Web content types back.
///
/// The service's error type is [`Infallible`](std::convert::Infallible), which is what axum
/// routers and tonic servers require of their layers. Place it outermost in the stack.
///
/// # Example
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_bulwark_core::{BoxError, HandleRejectionsLayer, Rejection, RejectionKind};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // An inner stack that refuses every call, as an open circuit breaker would.
/// let refusing = service_fn(|_req: Request<String>| async {
///     Err::<Response<String>, BoxError>(Rejection::new(RejectionKind::CircuitOpen, "users").into())
/// });
/// let service = ServiceBuilder::new()
///     .layer(HandleRejectionsLayer::new())
///     .service(refusing);
///
/// let response = service.oneshot(Request::new(String::new())).await.unwrap();
/// assert_eq!(response.status(), 503);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct HandleRejectionsLayer {
    _private: (),
}

impl HandleRejectionsLayer {
    /// A new layer.
    pub fn new() -> Self {
        HandleRejectionsLayer { _private: () }
    }
}

impl<S> Layer<S> for HandleRejectionsLayer {
    type Service = HandleRejections<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HandleRejections::new(inner)
    }
}
