use std::convert::Infallible;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::future::{error_response, ResponseFuture};
use crate::rejection::response::ShedRetries;
use crate::rejection::Protocol;
use crate::BoxError;

/// Middleware that turns errors into responses. See [`HandleRejectionsLayer`](super::HandleRejectionsLayer).
#[derive(Debug)]
pub struct HandleRejections<S> {
    inner: S,
    /// An error from the inner `poll_ready`, answered by the next `call`.
    ready_error: Option<BoxError>,
    sheds: ShedRetries,
}

impl<S> HandleRejections<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        HandleRejections {
            inner,
            ready_error: None,
            sheds: ShedRetries::default(),
        }
    }

    pub(super) fn with_sheds(mut self, sheds: ShedRetries) -> Self {
        self.sheds = sheds;
        self
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// A clone starts without the pending readiness error of the original.
impl<S: Clone> Clone for HandleRejections<S> {
    fn clone(&self) -> Self {
        HandleRejections::new(self.inner.clone()).with_sheds(self.sheds)
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HandleRejections<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ready_error.is_some() {
            return Poll::Ready(Ok(()));
        }
        // A readiness error (a closed buffer, a refusing readiness-mode layer) cannot be
        // returned as `Infallible`: keep it and answer the next call with it. The inner
        // service is polled again after that call; services that fail for good keep
        // answering with their error, which keeps turning into responses.
        if let Err(error) = std::task::ready!(self.inner.poll_ready(cx)) {
            self.ready_error = Some(error.into());
        }
        Poll::Ready(Ok(()))
    }

    #[inline(always)]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let protocol = Protocol::of(request.headers());
        match self.ready_error.take() {
            Some(error) => ResponseFuture::ready(error_response(&error, protocol, self.sheds)),
            None => ResponseFuture::new(self.inner.call(request), protocol, self.sheds),
        }
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::{controlled, Controller};
    use crate::{GrpcCode, Rejection, RejectionKind};
    use std::time::Duration;
    use tower::ServiceExt;

    type Inner = tower::util::MapResponse<
        crate::testing::Controlled<Request<String>>,
        fn(Request<String>) -> Response<String>,
    >;

    fn stack() -> (HandleRejections<Inner>, Controller) {
        let (inner, control) = controlled::<Request<String>>();
        let echo: fn(Request<String>) -> Response<String> =
            |request| Response::new(request.into_body());
        (HandleRejections::new(inner.map_response(echo)), control)
    }

    fn request(grpc: bool) -> Request<String> {
        let mut request = Request::new(String::from("payload"));
        if grpc {
            request.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
        }
        request
    }

    #[tokio::test]
    async fn successes_pass_through_untouched() {
        let (service, _control) = stack();
        let response = service.oneshot(request(false)).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.body(), "payload");
        assert!(response.extensions().get::<Rejection>().is_none());
    }

    #[tokio::test]
    async fn rejections_are_answered_and_recorded_in_extensions() {
        let (service, control) = stack();
        let rejection = Rejection::new(RejectionKind::BulkheadFull, "pool")
            .with_retry_after(Duration::from_secs(1));
        control.reject(rejection.clone());
        let response = service.clone().oneshot(request(false)).await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        assert!(response.body().is_empty());
        assert_eq!(response.extensions().get::<Rejection>(), Some(&rejection));

        let response = service.oneshot(request(true)).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["grpc-status"], "8");
        assert_eq!(
            response.headers()["grpc-retry-pushback-ms"],
            "-1",
            "a shed: gRPC's do not retry"
        );
    }

    /// What a layer above reads from the answer to a refusal: the refusal, as it would
    /// from the error (a breaker over this layer ignores an open breaker below it).
    #[tokio::test]
    async fn an_answered_refusal_reads_as_a_refusal_to_the_classifiers() {
        use crate::{Classify, GrpcClassifier, HttpClassifier, Outcome};
        let (service, control) = stack();
        for (kind, outcome) in [
            (RejectionKind::CircuitOpen, Outcome::Ignored),
            (RejectionKind::Throttled, Outcome::Ignored),
            (RejectionKind::TimedOut, Outcome::Failure),
        ] {
            control.reject(Rejection::new(kind, "below"));
            let http = service.clone().oneshot(request(false)).await;
            assert_eq!(HttpClassifier.classify(&http), outcome, "{kind:?}");
            let grpc = service.clone().oneshot(request(true)).await;
            assert_eq!(GrpcClassifier.classify(&grpc), outcome, "{kind:?}");
            assert_eq!(GrpcClassifier.classify_load(&grpc), outcome, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn grpc_shed_retries_can_be_allowed_and_clones_keep_the_setting() {
        use crate::HandleRejectionsLayer;
        use tower_layer::Layer;

        let (inner, control) = controlled::<Request<String>>();
        let echo: fn(Request<String>) -> Response<String> =
            |request| Response::new(request.into_body());
        let service = HandleRejectionsLayer::new()
            .allow_grpc_shed_retries()
            .layer(inner.map_response(echo));
        control.reject(
            Rejection::new(RejectionKind::Overloaded, "shed")
                .with_retry_after(Duration::from_millis(1500)),
        );
        let response = service.clone().oneshot(request(true)).await.unwrap();
        assert_eq!(response.headers()["grpc-retry-pushback-ms"], "1500");
        assert_eq!(response.headers()["x-bulwark-overloaded"], "true");
    }

    #[tokio::test]
    async fn other_errors_are_500_or_unknown() {
        let (service, control) = stack();
        control.fail();
        let response = service.clone().oneshot(request(false)).await.unwrap();
        assert_eq!(response.status(), 500);
        let response = service.oneshot(request(true)).await.unwrap();
        assert_eq!(
            response.headers()["grpc-status"],
            GrpcCode::Unknown.as_header_str()
        );
        assert_eq!(response.headers()["grpc-message"], "internal error");
    }

    #[tokio::test]
    async fn a_readiness_error_answers_the_next_call_without_calling_inner() {
        let (mut service, control) = stack();
        control.fail_readiness();
        let response = service
            .ready()
            .await
            .unwrap()
            .call(request(false))
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(control.calls(), 0);

        // The error was consumed: once the inner service recovers, calls go through.
        control.ready();
        let response = service.oneshot(request(false)).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(control.calls(), 1);
    }

    #[tokio::test]
    async fn a_clone_does_not_inherit_a_pending_readiness_error() {
        let (mut service, control) = stack();
        control.fail_readiness();
        service.ready().await.unwrap();
        control.ready();
        let response = service.clone().oneshot(request(false)).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(control.calls(), 1);
    }
}

#[cfg(all(test, feature = "testing"))]
mod tower_errors {
    use super::*;
    use crate::testing::controlled;
    use std::time::Duration;
    use tower::ServiceExt;

    fn answer(request: Request<()>) -> Response<String> {
        drop(request);
        Response::new(String::new())
    }

    #[tokio::test(start_paused = true)]
    async fn tower_load_shed_and_timeout_are_answered_like_rejections() {
        let (inner, control) = controlled::<Request<()>>();
        let inner = inner.map_response(answer as fn(Request<()>) -> Response<String>);

        control.pause();
        let shed = HandleRejections::new(tower::load_shed::LoadShed::new(inner.clone()));
        let response = shed.oneshot(Request::new(())).await.unwrap();
        assert_eq!(response.status(), 503);

        control.ready();
        control.hang();
        let timeout =
            HandleRejections::new(tower::timeout::Timeout::new(inner, Duration::from_secs(1)));
        let response = timeout.oneshot(Request::new(())).await.unwrap();
        assert_eq!(response.status(), 504);
    }
}
