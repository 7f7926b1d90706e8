//! Rejections as [`tonic::Status`] (feature `tonic`), so that a tonic
//! client sees the code a refusal in its own stack stands for.
//!
//! A tonic client turns the errors of the service it calls through into a `Status` with
//! `Status::from_error`, which looks for a `Status` (or one of tonic's transport errors) in
//! the error's source chain. A bulwark refusal is neither, so an open breaker below the
//! client would arrive as `UNKNOWN`. [`RejectionsAsStatusLayer`], outermost in the client's
//! stack, gives every refusal the status a server answers it with (see
//! [`Rejection::to_grpc_response`]): `UNAVAILABLE`, `RESOURCE_EXHAUSTED`,
//! `DEADLINE_EXCEEDED`, with `grpc-retry-pushback-ms`. Other errors pass untouched, so
//! tonic still maps its own (a failed connection is `UNAVAILABLE`).

mod future;

use std::sync::Arc;
use std::task::{ready, Context, Poll};

use ::tonic::metadata::MetadataMap;
use ::tonic::{Code, Status};
use tower_layer::Layer;
use tower_service::Service;

pub use self::future::ResponseFuture;
use crate::rejection::response::ShedRetries;
use crate::{BoxError, Rejection};

/// The status a server answers this rejection with: its code, its message (the kind and
/// reason, not the layer's name, which a client could otherwise pass on to its own callers)
/// and its metadata (`grpc-retry-pushback-ms`, `-1` for a shed, and the
/// [`OVERLOADED_HEADER`](crate::OVERLOADED_HEADER) marker for a shed). Its
/// [`source`](std::error::Error::source) is the rejection, so
/// [`Rejection::find`] still finds it.
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_core::{Rejection, RejectionKind};
///
/// let open = Rejection::new(RejectionKind::CircuitOpen, "users")
///     .with_retry_after(Duration::from_millis(250));
/// let status = tonic::Status::from(&open);
/// assert_eq!(status.code(), tonic::Code::Unavailable);
/// assert_eq!(status.message(), "circuit open");
/// assert_eq!(status.metadata().get("grpc-retry-pushback-ms").unwrap(), "250");
/// assert_eq!(Rejection::find(&status), Some(&open));
/// ```
impl From<&Rejection> for Status {
    fn from(rejection: &Rejection) -> Status {
        let mut metadata = http::HeaderMap::new();
        rejection.write_grpc_metadata(&mut metadata, ShedRetries::Refused);
        let mut status = Status::with_metadata(
            Code::from_i32(rejection.grpc_code().as_i32()),
            rejection.grpc_message(),
            MetadataMap::from_headers(metadata),
        );
        status.set_source(Arc::new(rejection.clone()));
        status
    }
}

/// The status of the rejection `error` carries (the one
/// [`find_rejection`](crate::find_rejection) finds in it); `None` for any other error.
///
/// ```
/// use tower_bulwark_core::{rejection_to_status, BoxError, Rejection, RejectionKind};
///
/// let full: BoxError = Rejection::new(RejectionKind::BulkheadFull, "db").into();
/// let status = rejection_to_status(&full).unwrap();
/// assert_eq!(status.code(), tonic::Code::ResourceExhausted);
/// assert_eq!(status.metadata().get("grpc-retry-pushback-ms").unwrap(), "-1");
///
/// let reset: BoxError = "connection reset".into();
/// assert!(rejection_to_status(&reset).is_none());
/// ```
pub fn rejection_to_status(error: &BoxError) -> Option<Status> {
    Rejection::find(&**error).map(Status::from)
}

/// Turns refusals by the layers below into [`tonic::Status`] errors, so a
/// tonic client reports an open breaker as `UNAVAILABLE`, a full bulkhead as
/// `RESOURCE_EXHAUSTED` and an attempt timeout as `DEADLINE_EXCEEDED`, not `UNKNOWN`. Put
/// it outermost in the stack a tonic client calls through
/// (`ClientPreset::tonic_layer` in `tower-bulwark` does).
///
/// The status keeps the original error as its [`source`](std::error::Error::source), so
/// layers and code above still find the [`Rejection`] in it. Errors without a rejection,
/// and errors that already are a `Status`, pass untouched. A refusal in the inner
/// `poll_ready` is kept and returned, as its status, by the next `call` (the service is
/// ready): generated tonic clients read only a call's error with `Status::from_error`, and
/// report a readiness error as `UNKNOWN` ("Service was not ready"). Other readiness errors
/// are returned by `poll_ready` as they are. Nothing is allocated unless a call is refused.
///
/// ```
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_bulwark_core::{BoxError, Rejection, RejectionKind, RejectionsAsStatusLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // A stack below that refuses, as an open circuit breaker does.
/// let refusing = service_fn(|_req: http::Request<()>| async {
///     Err::<http::Response<()>, BoxError>(Rejection::new(RejectionKind::CircuitOpen, "users").into())
/// });
/// let client_stack = ServiceBuilder::new()
///     .layer(RejectionsAsStatusLayer::new())
///     .service(refusing);
///
/// let error = client_stack.oneshot(http::Request::new(())).await.unwrap_err();
/// // What a tonic client does with the error of the service it calls through:
/// let status = tonic::Status::from_error(error);
/// assert_eq!(status.code(), tonic::Code::Unavailable);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RejectionsAsStatusLayer {
    _private: (),
}

impl RejectionsAsStatusLayer {
    /// A new layer.
    pub fn new() -> Self {
        RejectionsAsStatusLayer::default()
    }
}

impl<S> Layer<S> for RejectionsAsStatusLayer {
    type Service = RejectionsAsStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RejectionsAsStatus::new(inner)
    }
}

/// The service of a [`RejectionsAsStatusLayer`].
#[derive(Debug)]
pub struct RejectionsAsStatus<S> {
    inner: S,
    /// A refusal from the inner `poll_ready`, as a status, for the next `call`.
    refused: Option<BoxError>,
}

/// A clone starts without the pending refusal of the original.
impl<S: Clone> Clone for RejectionsAsStatus<S> {
    fn clone(&self) -> Self {
        RejectionsAsStatus::new(self.inner.clone())
    }
}

impl<S> RejectionsAsStatus<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        RejectionsAsStatus {
            inner,
            refused: None,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for RejectionsAsStatus<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.refused.is_some() {
            return Poll::Ready(Ok(()));
        }
        if let Err(error) = ready!(self.inner.poll_ready(cx)) {
            let error = error.into();
            if Rejection::find(&*error).is_none() {
                return Poll::Ready(Err(error));
            }
            self.refused = Some(as_status(error));
        }
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self.refused.take() {
            Some(status) => ResponseFuture::refused(status),
            None => ResponseFuture::new(self.inner.call(request)),
        }
    }
}

/// `error` as a boxed [`Status`] if it carries a rejection, with `error` as its source;
/// unchanged otherwise.
fn as_status(error: impl Into<BoxError>) -> BoxError {
    let error = error.into();
    if error.is::<Status>() {
        return error;
    }
    match rejection_to_status(&error) {
        Some(mut status) => {
            status.set_source(Arc::from(error));
            Box::new(status)
        }
        None => error,
    }
}

/// A trailers-only response with the [`Status`] found in `error`'s source chain (its first
/// 64 errors), as tonic's server answers a layer's `Status` error; `None` if there is none.
pub(crate) fn status_response(
    error: &(dyn std::error::Error + 'static),
    content_type: &'static str,
) -> Option<http::Response<()>> {
    let status = std::iter::successors(Some(error), |error| error.source())
        .take(crate::rejection::MAX_SOURCES)
        .find_map(|error| error.downcast_ref::<Status>())?;
    let mut response = http::Response::new(());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    status.add_header(headers).ok()?;
    tracing::debug!(code = ?status.code(), "request answered with its status");
    Some(response)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower::{service_fn, Layer, ServiceExt};

    use super::*;
    use crate::{find_rejection, RejectionKind};

    fn refusing(
        error: fn() -> BoxError,
    ) -> impl Service<(), Response = (), Error = BoxError, Future = impl Send> + Clone {
        service_fn(move |()| std::future::ready(Err::<(), _>(error())))
    }

    /// What a tonic client makes of the stack's error.
    async fn status_of(error: fn() -> BoxError) -> Status {
        let service = RejectionsAsStatusLayer::new().layer(refusing(error));
        Status::from_error(service.oneshot(()).await.unwrap_err())
    }

    #[tokio::test]
    async fn every_kind_arrives_with_its_code_message_and_pushback() {
        let cases = [
            (
                RejectionKind::CircuitOpen,
                Code::Unavailable,
                "circuit open",
            ),
            (RejectionKind::Draining, Code::Unavailable, "draining"),
            (
                RejectionKind::BulkheadFull,
                Code::ResourceExhausted,
                "bulkhead full",
            ),
            (
                RejectionKind::Overloaded,
                Code::ResourceExhausted,
                "overloaded",
            ),
            (
                RejectionKind::Throttled,
                Code::ResourceExhausted,
                "throttled",
            ),
            (RejectionKind::TimedOut, Code::DeadlineExceeded, "timed out"),
            (
                RejectionKind::DeadlineExceeded,
                Code::DeadlineExceeded,
                "deadline exceeded",
            ),
            (
                RejectionKind::InvalidRequest,
                Code::InvalidArgument,
                "invalid request",
            ),
        ];
        for (kind, code, message) in cases {
            let rejection =
                Rejection::new(kind, "layer-name").with_retry_after(Duration::from_millis(1200));
            let status = Status::from(&rejection);
            assert_eq!(status.code(), code, "{kind:?}");
            assert_eq!(status.message(), message, "{kind:?}");
            let pushback = status.metadata().get("grpc-retry-pushback-ms").unwrap();
            let expected = if kind.is_shed() { "-1" } else { "1200" };
            assert_eq!(pushback, expected, "{kind:?}");
            assert_eq!(
                status.metadata().get("x-bulwark-overloaded").is_some(),
                kind.is_shed(),
                "{kind:?}"
            );
        }
        let plain = Status::from(&Rejection::new(RejectionKind::CircuitOpen, "b"));
        assert!(plain.metadata().is_empty(), "no wait, no pushback");
    }

    #[tokio::test]
    async fn a_refusal_deep_in_the_chain_becomes_its_status_and_stays_findable() {
        #[derive(Debug)]
        struct Wrapped(Rejection);
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("breaker refused")
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let service = RejectionsAsStatusLayer::new().layer(refusing(|| {
            Box::new(Wrapped(Rejection::new(RejectionKind::CircuitOpen, "b")))
        }));
        let error = service.oneshot(()).await.unwrap_err();
        assert_eq!(
            find_rejection(&error).unwrap().kind(),
            RejectionKind::CircuitOpen
        );
        let status = error.downcast::<Status>().expect("a boxed status");
        assert_eq!(status.code(), Code::Unavailable);
        let source = std::error::Error::source(&*status).unwrap();
        assert_eq!(source.to_string(), "breaker refused", "the original error");
    }

    /// A `Status` in an error's chain answers as a trailers-only response with its code;
    /// an error without one gets none.
    #[test]
    fn a_status_in_the_chain_answers_trailers_only() {
        let error: BoxError = Box::new(Status::resource_exhausted("full"));
        let response = status_response(&*error, "application/grpc").unwrap();
        let headers = response.headers();
        assert_eq!(headers["content-type"], "application/grpc");
        assert_eq!(
            headers["grpc-status"],
            (Code::ResourceExhausted as i32).to_string()
        );
        assert_eq!(headers["grpc-message"], "full");
        let other: BoxError = "not a status".into();
        assert!(status_response(&*other, "application/grpc").is_none());
    }

    #[tokio::test]
    async fn other_errors_and_statuses_pass_untouched() {
        let status = status_of(|| "connection reset".into()).await;
        assert_eq!(status.code(), Code::Unknown);
        assert_eq!(status.message(), "connection reset");
        let status = status_of(|| Box::new(Status::not_found("no such user"))).await;
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "no such user");
    }

    #[tokio::test]
    async fn tower_refusals_and_readiness_refusals_are_converted_too() {
        let status = status_of(|| Box::new(tower::load_shed::error::Overloaded::new())).await;
        assert_eq!(status.code(), Code::ResourceExhausted);

        // A service refusing in `poll_ready`: ready, and the call returns the status.
        let mut service = RejectionsAsStatus::new(ReadyRefusal);
        let error = service.ready().await.unwrap().call(()).await.unwrap_err();
        assert_eq!(Status::from_error(error).code(), Code::Unavailable);
        // A clone does not inherit the pending refusal; the next poll asks again.
        service.ready().await.unwrap();
        assert!(service.clone().refused.is_none());
        assert!(service.call(()).await.is_err());

        // Readiness errors without a rejection are left to the caller, as they were.
        let mut broken = RejectionsAsStatus::new(ReadyFailure);
        let error = broken.ready().await.unwrap_err();
        assert_eq!(error.to_string(), "worker gone");
    }

    /// Fails in `poll_ready` with an error that carries no rejection.
    #[derive(Debug)]
    struct ReadyFailure;

    impl Service<()> for ReadyFailure {
        type Response = ();
        type Error = BoxError;
        type Future = std::future::Ready<Result<(), BoxError>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Err("worker gone".into()))
        }

        fn call(&mut self, (): ()) -> Self::Future {
            std::future::ready(Ok(()))
        }
    }

    /// Refuses in `poll_ready` with an open circuit.
    #[derive(Debug, Clone)]
    struct ReadyRefusal;

    impl Service<()> for ReadyRefusal {
        type Response = ();
        type Error = Rejection;
        type Future = std::future::Ready<Result<(), Rejection>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Rejection>> {
            Poll::Ready(Err(Rejection::new(RejectionKind::CircuitOpen, "b")))
        }

        fn call(&mut self, (): ()) -> Self::Future {
            std::future::ready(Ok(()))
        }
    }
}
