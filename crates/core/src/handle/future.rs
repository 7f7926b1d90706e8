use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Response, StatusCode};
use pin_project::pin_project;

use crate::grpc::GrpcCode;
use crate::rejection::response::grpc_error_response;
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
        grpc: bool,
    },
    Ready(Option<Response<()>>),
}

impl<F> ResponseFuture<F> {
    #[inline(always)]
    pub(super) fn new(future: F, grpc: bool) -> Self {
        ResponseFuture {
            state: State::Inner { future, grpc },
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
            StateProjection::Inner { future, grpc } => match ready!(future.poll(cx)) {
                Ok(response) => return Poll::Ready(Ok(response)),
                Err(error) => error_response(&error.into(), *grpc),
            },
            StateProjection::Ready(response) => response
                .take()
                .expect("ResponseFuture polled after completion"),
        };
        Poll::Ready(Ok(response.map(|()| B::default())))
    }
}

/// The response for an error: its rejection's response, or 500 / `UNKNOWN`.
pub(super) fn error_response(error: &BoxError, grpc: bool) -> Response<()> {
    match Rejection::find(&**error) {
        Some(rejection) => {
            tracing::debug!(%rejection, "request rejected");
            let mut response = if grpc {
                rejection.to_grpc_response()
            } else {
                rejection.to_http_response()
            };
            response.extensions_mut().insert(rejection.clone());
            response
        }
        None => {
            tracing::error!(error = %error, "request failed inside the service stack");
            if grpc {
                grpc_error_response(GrpcCode::Unknown, "internal error")
            } else {
                let mut response = Response::new(());
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                response
            }
        }
    }
}
