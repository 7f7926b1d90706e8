use tower_layer::Layer;

use super::HandleRejections;
use crate::rejection::response::ShedRetries;

/// Turns the errors of the services below it into responses.
///
/// - A [`Rejection`](crate::Rejection) anywhere in the error's source chain becomes its HTTP
///   response (503, 429, 504 with `Retry-After`) or, for gRPC requests (`content-type:
///   application/grpc*`), a trailers-only gRPC response (`UNAVAILABLE`,
///   `RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED` with `grpc-retry-pushback-ms`). The
///   [`Rejection`](crate::Rejection) is also put in the response's extensions, so layers
///   above can tell a rejection from an answer of the inner service: the suite's
///   classifiers read it as its kind says, as they would the error.
/// - tower's own refusals are answered the same way: `LoadShed`'s `Overloaded` as
///   overloaded (503 / `RESOURCE_EXHAUSTED`), `Timeout`'s `Elapsed` as an attempt
///   timeout (`TimedOut`: 504 / `DEADLINE_EXCEEDED`).
/// - A shed (overloaded, bulkhead full) answers a gRPC request with
///   `grpc-retry-pushback-ms: -1`, gRPC's "do not retry", so standard gRPC clients with a
///   retry policy do not retry it at every hop; see
///   [`Rejection::to_grpc_response`](crate::Rejection::to_grpc_response) for why, and
///   [`allow_grpc_shed_retries`](HandleRejectionsLayer::allow_grpc_shed_retries) to send
///   the shedding layer's wait instead. HTTP answers keep their `Retry-After`.
/// - With feature `tonic`, an error carrying a `tonic::Status` (an auth filter's
///   `PERMISSION_DENIED`) answers a gRPC request with that status, as tonic's server
///   would.
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
    sheds: ShedRetries,
}

impl HandleRejectionsLayer {
    /// A new layer.
    pub fn new() -> Self {
        HandleRejectionsLayer::default()
    }

    /// Lets gRPC clients retry sheds: their answers carry the shedding layer's wait as
    /// `grpc-retry-pushback-ms` (none if it gave none), as other kinds do, instead of `-1`.
    /// For servers whose clients are known to retry elsewhere, not back into the overload.
    ///
    /// ```
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_bulwark_core::{BoxError, HandleRejectionsLayer, Rejection, RejectionKind};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let shedding = service_fn(|_req: http::Request<()>| async {
    ///     let shed = Rejection::new(RejectionKind::Overloaded, "shed")
    ///         .with_retry_after(std::time::Duration::from_millis(300));
    ///     Err::<http::Response<()>, BoxError>(shed.into())
    /// });
    /// let grpc = || {
    ///     http::Request::builder().header("content-type", "application/grpc").body(()).unwrap()
    /// };
    ///
    /// let strict = HandleRejectionsLayer::new().layer(shedding.clone());
    /// let response = strict.oneshot(grpc()).await.unwrap();
    /// assert_eq!(response.headers()["grpc-retry-pushback-ms"], "-1");
    ///
    /// let lenient = HandleRejectionsLayer::new().allow_grpc_shed_retries().layer(shedding);
    /// let response = lenient.oneshot(grpc()).await.unwrap();
    /// assert_eq!(response.headers()["grpc-retry-pushback-ms"], "300");
    /// # }
    /// ```
    pub fn allow_grpc_shed_retries(mut self) -> Self {
        self.sheds = ShedRetries::Allowed;
        self
    }
}

impl<S> Layer<S> for HandleRejectionsLayer {
    type Service = HandleRejections<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HandleRejections::new(inner).with_sheds(self.sheds)
    }
}
