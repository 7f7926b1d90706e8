use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project::pin_project;
use tokio::time::Instant;
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
        started: Option<Instant>,
        classifier: C,
    },
    /// Boxed when refused, which converting to `BoxError` needs anyway: keeps the future
    /// small for the admitted path.
    Refused { error: Option<BoxError> },
}

impl<F, C> ResponseFuture<F, C> {
    #[inline(always)]
    pub(crate) fn new(future: F, permit: Permit, started: Option<Instant>, classifier: C) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                future,
                permit: Some(permit),
                started,
                classifier,
            },
        }
    }

    pub(crate) fn refused(error: CircuitOpen) -> Self {
        ResponseFuture {
            kind: Kind::Refused {
                error: Some(Box::new(error)),
            },
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

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProjection::Called {
                future,
                permit,
                started,
                classifier,
            } => {
                let result = ready!(future.poll(cx));
                if let Some(permit) = permit.take() {
                    permit.finish(classifier.classify(&result), *started);
                }
                Poll::Ready(result.map_err(Into::into))
            }
            KindProjection::Refused { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(tower_bulwark_core::polled_after_completion))),
        }
    }
}
