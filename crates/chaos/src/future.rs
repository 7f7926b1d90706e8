//! [`ChaosFuture`]: a call with its fault applied.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project::pin_project;
use tokio::time::Sleep;
use tower_bulwark_core::BoxError;

/// Response future of the chaos layers.
#[pin_project]
pub struct ChaosFuture<F, T> {
    #[pin]
    kind: Kind<F, T>,
}

#[pin_project(project = KindProjection)]
enum Kind<F, T> {
    /// No fault: the inner call as it is.
    Pass {
        #[pin]
        future: F,
    },
    /// Injected latency, then the inner call. The timer is boxed: kept inline it would
    /// make every call's future larger, and cost the calls with no fault.
    Delayed {
        sleep: Pin<Box<Sleep>>,
        #[pin]
        future: F,
    },
    /// Answered without calling the inner service (an error, an abort, a fault status).
    Done { output: Option<Result<T, BoxError>> },
}

impl<F, T> ChaosFuture<F, T> {
    #[inline(always)]
    pub(crate) fn pass(future: F) -> Self {
        ChaosFuture {
            kind: Kind::Pass { future },
        }
    }

    pub(crate) fn delayed(future: F, delay: std::time::Duration) -> Self {
        ChaosFuture {
            kind: Kind::Delayed {
                sleep: Box::pin(tokio::time::sleep(delay)),
                future,
            },
        }
    }

    pub(crate) fn done(output: Result<T, BoxError>) -> Self {
        ChaosFuture {
            kind: Kind::Done {
                output: Some(output),
            },
        }
    }
}

impl<F, T, E> Future for ChaosFuture<F, T>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProjection::Pass { future } => future.poll(cx).map_err(Into::into),
            KindProjection::Delayed { sleep, future } => {
                ready!(sleep.as_mut().poll(cx));
                future.poll(cx).map_err(Into::into)
            }
            KindProjection::Done { output } => Poll::Ready(
                output
                    .take()
                    .unwrap_or_else(|| Err("ChaosFuture polled after completion".into())),
            ),
        }
    }
}

impl<F, T> fmt::Debug for ChaosFuture<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosFuture").finish_non_exhaustive()
    }
}
