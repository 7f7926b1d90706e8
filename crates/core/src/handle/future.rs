use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Response, StatusCode};
use pin_project::pin_project;

use crate::grpc::GrpcCode;
use crate::rejection::response::{grpc_error_response, ShedRetries};
use crate::rejection::Protocol;
use crate::{BoxError, Rejection};

/// Response future of [`HandleRejections`](super::HandleRejections).
#[pin_project(project = Projection)]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    state: State<F>,
}

#[pin_project(project = StateProjection)]
#[derive(Debug)]
enum State<F> {
    Inner {
        #[pin]
        future: F,
        protocol: Protocol,
        sheds: ShedRetries,
    },
    Ready(Option<Response<()>>),
}

impl<F> ResponseFuture<F> {
    #[inline(always)]
    pub(super) fn new(future: F, protocol: Protocol, sheds: ShedRetries) -> Self {
        ResponseFuture {
            state: State::Inner {
                future,
                protocol,
                sheds,
            },
        }
    }

    pub(super) fn ready(response: Response<()>) -> Self {
        ResponseFuture {
            state: State::Ready(Some(response)),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Default,
{
    type Output = Result<Response<B>, Infallible>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Projection { state } = self.project();
        let response = match state.project() {
            StateProjection::Inner {
                future,
                protocol,
                sheds,
            } => match ready!(future.poll(cx)) {
                Ok(response) => return Poll::Ready(Ok(response)),
                Err(error) => error_response(&error.into(), *protocol, *sheds),
            },
            // Polled again after it answered: a 500, never a panic.
            StateProjection::Ready(response) => response.take().unwrap_or_else(|| {
                let mut response = Response::new(());
                *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                response
            }),
        };
        Poll::Ready(Ok(response.map(|()| B::default())))
    }
}

/// The response for an error: its rejection's response; for a gRPC request, the status it
/// carries (feature `tonic`), as tonic's server would answer it; else 500 / `UNKNOWN`.
pub(super) fn error_response(
    error: &BoxError,
    protocol: Protocol,
    sheds: ShedRetries,
) -> Response<()> {
    if let Some(rejection) = Rejection::find(&**error) {
        tracing::debug!(%rejection, "request rejected");
        let mut response = rejection.to_response_for(protocol, sheds);
        response.extensions_mut().insert(rejection.clone());
        return response;
    }
    if let Some(content_type) = protocol.grpc_content_type() {
        #[cfg(feature = "tonic")]
        if let Some(response) = crate::status::status_response(&**error, content_type) {
            return response;
        }
        tracing::error!(error = %error, "request failed inside the service stack");
        return grpc_error_response(GrpcCode::Unknown, "internal error", content_type);
    }
    tracing::error!(error = %error, "request failed inside the service stack");
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use std::time::Duration;

    use http::{Request, Response};
    use tower::ServiceExt;

    use crate::{BoxError, HandleRejectionsLayer, Rejection, RejectionKind};

    /// tower's `Timeout` is a layer's own attempt timeout (the dependency was slow), not the
    /// caller's deadline: `TimedOut`, answered 504 / `DEADLINE_EXCEEDED` all the same.
    #[tokio::test(start_paused = true)]
    async fn tower_timeout_elapsed_is_a_layers_own_timeout() {
        let slow = tower::service_fn(|_: Request<()>| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, BoxError>(Response::new(()))
        });
        let service = tower::ServiceBuilder::new()
            .layer(HandleRejectionsLayer::new())
            .timeout(Duration::from_secs(1))
            .service(slow);

        let response = service.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(response.status(), 504);
        let rejection = response.extensions().get::<Rejection>().unwrap();
        assert_eq!(rejection.kind(), RejectionKind::TimedOut);
        assert_eq!(rejection.layer(), "tower-timeout");

        let grpc = Request::builder()
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .body(())
            .unwrap();
        let response = service.oneshot(grpc).await.unwrap();
        assert_eq!(response.headers()["grpc-status"], "4", "DEADLINE_EXCEEDED");
    }
}
