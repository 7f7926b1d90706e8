use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Response, StatusCode};
use pin_project::pin_project;

use crate::grpc::GrpcCode;
use crate::rejection::response::{grpc_error_response, ShedRetries};
use crate::rejection::Protocol;
use crate::{BoxError, Rejection, RejectionKind};

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
            StateProjection::Ready(response) => response
                .take()
                .expect("ResponseFuture polled after completion"),
        };
        Poll::Ready(Ok(response.map(|()| B::default())))
    }
}

/// The response for an error: its rejection's response, or 500 / `UNKNOWN`.
pub(super) fn error_response(
    error: &BoxError,
    protocol: Protocol,
    sheds: ShedRetries,
) -> Response<()> {
    let tower_rejection;
    let rejection = match Rejection::find(&**error) {
        Some(rejection) => Some(rejection),
        None => {
            tower_rejection = tower_equivalent(error);
            tower_rejection.as_ref()
        }
    };
    match rejection {
        Some(rejection) => {
            tracing::debug!(%rejection, "request rejected");
            let mut response = rejection.to_response_for(protocol, sheds);
            response.extensions_mut().insert(rejection.clone());
            response
        }
        None => {
            tracing::error!(error = %error, "request failed inside the service stack");
            match protocol.grpc_content_type() {
                Some(content_type) => {
                    grpc_error_response(GrpcCode::Unknown, "internal error", content_type)
                }
                None => {
                    let mut response = Response::new(());
                    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                    response
                }
            }
        }
    }
}

/// tower's own refusals, answered like ours: `LoadShed`'s `Overloaded` as overloaded (503),
/// `Timeout`'s `Elapsed` as deadline exceeded (504).
fn tower_equivalent(error: &BoxError) -> Option<Rejection> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&**error);
    while let Some(error) = next {
        if error.is::<tower::load_shed::error::Overloaded>() {
            return Some(Rejection::new(RejectionKind::Overloaded, "tower-load-shed"));
        }
        if error.is::<tower::timeout::error::Elapsed>() {
            return Some(Rejection::new(
                RejectionKind::DeadlineExceeded,
                "tower-timeout",
            ));
        }
        next = error.source();
    }
    None
}
