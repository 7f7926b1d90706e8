//! [`ResponseFuture`]: an admitted call, holding its place until it ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project::pin_project;
use tokio::time::Instant;
use tower_bulwark_core::{BoxError, Classify, Criticality, CriticalityScope, Outcome};

use crate::limiter::Limiter;
use std::sync::Arc;
use tower_bulwark_core::stripes::Stripe;

/// Response future of [`Shed`](crate::Shed).
///
/// Holds the call's place in the limit until it completes, teaching the algorithm its
/// latency and outcome. Dropped before completing (the caller's deadline passed, the
/// client went away), it gives the place back and teaches a drop with the latency so far:
/// calls cut short are what overload looks like from inside, and a limiter blind to them
/// would keep admitting calls nobody waits for.
#[pin_project(project = Projection)]
#[derive(Debug)]
pub struct ResponseFuture<F, C> {
    #[pin]
    kind: Kind<F, C>,
}

#[pin_project(project = KindProjection)]
#[derive(Debug)]
enum Kind<F, C> {
    Admitted {
        /// Run with the call's criticality as the current one, so calls it makes inherit it.
        #[pin]
        future: CriticalityScope<F>,
        place: Option<Place>,
        classify: C,
    },
    /// Boxed when shed, which converting to `BoxError` needs anyway.
    Shed { error: Option<BoxError> },
}

/// A place in the limit; given back when dropped.
#[derive(Debug)]
pub(crate) struct Place {
    /// This thread's handle: places on different cores write different reference counts.
    limiter: Arc<Stripe<Limiter>>,
    criticality: Criticality,
    /// The core the call started on (core's `thread_index`): its place goes back there.
    stripe: usize,
    in_flight: usize,
    started: Option<Instant>,
    given_back: bool,
}

impl Place {
    #[inline]
    pub(crate) fn new(
        limiter: Arc<Stripe<Limiter>>,
        criticality: Criticality,
        stripe: usize,
        in_flight: usize,
    ) -> Self {
        let started = limiter.learns().then(Instant::now);
        Place {
            limiter,
            criticality,
            stripe,
            in_flight,
            started,
            given_back: false,
        }
    }

    fn finish(mut self, outcome: Outcome) {
        self.given_back = true;
        self.limiter.release(
            self.criticality,
            self.stripe,
            self.in_flight,
            self.started,
            outcome,
        );
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if !self.given_back {
            self.limiter.release(
                self.criticality,
                self.stripe,
                self.in_flight,
                self.started,
                Outcome::Failure,
            );
        }
    }
}

impl<F, C> ResponseFuture<F, C> {
    #[inline]
    pub(crate) fn admitted(future: CriticalityScope<F>, place: Place, classify: C) -> Self {
        ResponseFuture {
            kind: Kind::Admitted {
                future,
                place: Some(place),
                classify,
            },
        }
    }

    pub(crate) fn shed(error: BoxError) -> Self {
        ResponseFuture {
            kind: Kind::Shed { error: Some(error) },
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
            KindProjection::Admitted {
                future,
                place,
                classify,
            } => {
                let result = ready!(future.poll(cx));
                if let Some(place) = place.take() {
                    place.finish(classify.classify_load(&result));
                }
                Poll::Ready(result.map_err(Into::into))
            }
            KindProjection::Shed { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "ResponseFuture polled after completion".into()))),
        }
    }
}
