use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project::pin_project;
use tower_bulwark_core::{BoxError, Classify};

use crate::breaker::Permit;
use crate::CircuitOpen;

/// Response future of [`CircuitBreaker`](crate::CircuitBreaker).
///
/// Records the call's outcome when it completes. Dropped before completing, it releases
/// its permit (and probe slot) and the call counts as ignored.
#[pin_project(project = Projection)]
#[derive(Debug)]
pub struct ResponseFuture<F, C> {
    #[pin]
    kind: Kind<F, C>,
}

#[pin_project(project = KindProjection)]
#[derive(Debug)]
enum Kind<F, C> {
    Called {
        #[pin]
        future: F,
        permit: Option<Permit>,
        classifier: C,
    },
    Refused {
        error: Option<CircuitOpen>,
    },
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn new(future: F, permit: Permit, classifier: C) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                future,
                permit: Some(permit),
                classifier,
            },
        }
    }

    pub(crate) fn refused(error: CircuitOpen) -> Self {
        ResponseFuture {
            kind: Kind::Refused { error: Some(error) },
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProjection::Called {
                future,
                permit,
                classifier,
            } => {
                let result = ready!(future.poll(cx));
                if let Some(permit) = permit.take() {
                    permit.finish(classifier.classify(&result));
                }
                Poll::Ready(result.map_err(Into::into))
            }
            KindProjection::Refused { error } => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion")
                .into())),
        }
    }
}
