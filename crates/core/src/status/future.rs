use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project::pin_project;

use crate::BoxError;

/// Response future of [`RejectionsAsStatus`](super::RejectionsAsStatus): the inner future,
/// its refusals turned into statuses, or a refusal from readiness.
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
    },
    Refused(Option<BoxError>),
}

impl<F> ResponseFuture<F> {
    #[inline(always)]
    pub(super) fn new(future: F) -> Self {
        ResponseFuture {
            state: State::Inner { future },
        }
    }

    pub(super) fn refused(status: BoxError) -> Self {
        ResponseFuture {
            state: State::Refused(Some(status)),
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProjection::Inner { future } => future.poll(cx).map_err(super::as_status),
            StateProjection::Refused(status) => Poll::Ready(Err(status
                .take()
                .unwrap_or_else(crate::polled_after_completion))),
        }
    }
}
