//! [`ProblemDetailsLayer`]: refusals answered to HTTP clients with an
//! `application/problem+json` body (RFC 9457) that says what refused them.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response};
use pin_project::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::Rejection;

/// Gives the refusals [`HandleRejectionsLayer`](crate::HandleRejectionsLayer) answers a
/// short `application/problem+json` body (RFC 9457), so an HTTP client, or the person
/// reading its logs, sees what refused the call and when to come back:
///
/// ```json
/// {"type":"about:blank","title":"Service Unavailable","status":503,
///  "detail":"circuit open","kind":"circuit_open","retry_after_s":30}
/// ```
///
/// `detail` is the refusal's kind and reason, `kind` its [`RejectionKind`](crate::RejectionKind)
/// in snake case, `retry_after_s` the wait it asks for (also in `Retry-After`), when it
/// gives one. The layer's name (which names a dependency) is not included: it says more
/// about the service's insides than its clients need; [`with_layer_names`](Self::with_layer_names)
/// adds it as `layer`, for internal APIs. gRPC answers (trailers-only) and every response
/// that is not a refusal pass untouched, at the cost of one extension lookup.
///
/// Place it directly above `HandleRejectionsLayer`; the body type must be buildable from a
/// `String` (axum's `Body`, `Full<Bytes>`, `String`).
///
/// ```
/// use http::{Request, Response};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_bulwark_core::{BoxError, HandleRejectionsLayer, ProblemDetailsLayer, Rejection, RejectionKind};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let refusing = service_fn(|_: Request<String>| async {
///     Err::<Response<String>, BoxError>(Rejection::new(RejectionKind::CircuitOpen, "users").into())
/// });
/// let service = ServiceBuilder::new()
///     .layer(ProblemDetailsLayer::new())
///     .layer(HandleRejectionsLayer::new())
///     .service(refusing);
/// let response = service.oneshot(Request::new(String::new())).await.unwrap();
/// assert_eq!(response.status(), 503);
/// assert_eq!(response.headers()["content-type"], "application/problem+json");
/// assert!(response.body().contains(r#""kind":"circuit_open""#));
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ProblemDetailsLayer {
    layer_names: bool,
}

impl ProblemDetailsLayer {
    /// Problem bodies without layer names.
    pub fn new() -> Self {
        ProblemDetailsLayer::default()
    }

    /// Also names the refusing layer (`"layer":"payments"`): for APIs whose clients are
    /// your own services.
    pub fn with_layer_names(mut self) -> Self {
        self.layer_names = true;
        self
    }
}

impl<S> Layer<S> for ProblemDetailsLayer {
    type Service = ProblemDetails<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProblemDetails {
            inner,
            layer_names: self.layer_names,
        }
    }
}

/// The service of [`ProblemDetailsLayer`].
#[derive(Debug, Clone)]
pub struct ProblemDetails<S> {
    inner: S,
    layer_names: bool,
}

impl<S, Req, B> Service<Req> for ProblemDetails<S>
where
    S: Service<Req, Response = Response<B>>,
    B: From<String>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = ProblemFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        ProblemFuture {
            inner: self.inner.call(request),
            layer_names: self.layer_names,
        }
    }
}

/// The future of [`ProblemDetails`].
#[pin_project]
#[derive(Debug)]
pub struct ProblemFuture<F> {
    #[pin]
    inner: F,
    layer_names: bool,
}

impl<F, B, E> Future for ProblemFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<String>,
{
    type Output = Result<Response<B>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        let grpc = response
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let Some(rejection) = response.extensions().get::<Rejection>().filter(|_| !grpc) else {
            return Poll::Ready(Ok(response));
        };
        let body = problem(rejection, response.status(), *this.layer_names);
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.remove(CONTENT_LENGTH);
        *response.body_mut() = B::from(body);
        Poll::Ready(Ok(response))
    }
}

/// The problem document of `rejection`, answered with `status`.
fn problem(rejection: &Rejection, status: http::StatusCode, layer_names: bool) -> String {
    let mut body = String::with_capacity(160);
    body.push_str(r#"{"type":"about:blank","title":"#);
    crate::json::write_string(status.canonical_reason().unwrap_or("Error"), &mut body);
    let _ = write!(body, r#","status":{},"detail":"#, status.as_u16());
    let detail = match rejection.reason() {
        Some(reason) => format!("{} ({reason})", rejection.kind()),
        None => rejection.kind().to_string(),
    };
    crate::json::write_string(&detail, &mut body);
    body.push_str(r#","kind":"#);
    crate::json::write_string(&rejection.kind().to_string().replace(' ', "_"), &mut body);
    if layer_names {
        body.push_str(r#","layer":"#);
        crate::json::write_string(rejection.layer(), &mut body);
    }
    if let Some(wait) = rejection.retry_after() {
        // The `Retry-After` header's number: rounded up, capped alike.
        let seconds = crate::rejection::response::retry_after_seconds(wait);
        let _ = write!(body, r#","retry_after_s":{seconds}"#);
    }
    body.push('}');
    body
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use std::time::Duration;

    use http::{Request, Response, StatusCode};
    use tower::{service_fn, ServiceBuilder, ServiceExt};

    use crate::{BoxError, HandleRejectionsLayer, ProblemDetailsLayer, Rejection, RejectionKind};

    async fn answer(
        layer: ProblemDetailsLayer,
        result: Result<Response<String>, Rejection>,
        grpc: bool,
    ) -> Response<String> {
        let inner = service_fn(move |_: Request<String>| {
            let result = result.clone().map_err(BoxError::from);
            async move { result }
        });
        let service = ServiceBuilder::new()
            .layer(layer)
            .layer(HandleRejectionsLayer::new())
            .service(inner);
        let mut request = Request::new(String::new());
        if grpc {
            request.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
        }
        service.oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn a_refusal_gets_a_problem_document() {
        let rejection = Rejection::new(RejectionKind::BulkheadFull, "payments-db")
            .with_reason("queue \"full\"")
            .with_retry_after(Duration::from_millis(1500));
        let response = answer(ProblemDetailsLayer::new(), Err(rejection.clone()), false).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert_eq!(response.headers()["retry-after"], "2");
        assert_eq!(
            response.body(),
            r#"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"bulkhead full (queue \"full\")","kind":"bulkhead_full","retry_after_s":2}"#
        );
        assert!(
            !response.body().contains("payments-db"),
            "no layer name by default"
        );

        let named = answer(
            ProblemDetailsLayer::new().with_layer_names(),
            Err(rejection),
            false,
        )
        .await;
        assert!(
            named.body().contains(r#""layer":"payments-db""#),
            "{}",
            named.body()
        );
    }

    #[tokio::test]
    async fn answers_and_grpc_refusals_pass_untouched() {
        let ok = answer(
            ProblemDetailsLayer::new(),
            Ok(Response::new("fine".into())),
            false,
        )
        .await;
        assert_eq!(ok.body(), "fine");
        assert!(ok.headers().get("content-type").is_none());

        let rejection = Rejection::new(RejectionKind::CircuitOpen, "users");
        let grpc = answer(ProblemDetailsLayer::new(), Err(rejection), true).await;
        assert_eq!(
            grpc.headers()["grpc-status"],
            "14",
            "UNAVAILABLE, trailers-only"
        );
        assert_eq!(grpc.body(), "", "no body on a gRPC answer");
    }
}
