//! [`Shed`]: the service of a [`ShedLayer`](crate::ShedLayer).

use std::task::{Context, Poll};
use std::time::Duration;

use tower_bulwark_core::{BoxError, Classify, Rejection, RejectionKind};
use tower_service::Service;

use crate::future::Place;
use crate::limiter::Limiter;
use crate::{CriticalityOf, Overloaded, ResponseFuture, ShedEvent};
use tower_bulwark_core::stripes::{thread_index, Striped};

/// Sheds calls beyond the limit; see [`ShedLayer`](crate::ShedLayer).
#[derive(Debug)]
pub struct Shed<S, Q, C> {
    inner: S,
    limiter: Striped<Limiter>,
    criticality: Q,
    classify: C,
    retry_after: Option<Duration>,
    shadow: bool,
}

impl<S, Q, C> Shed<S, Q, C> {
    pub(crate) fn new(
        inner: S,
        limiter: Striped<Limiter>,
        criticality: Q,
        classify: C,
        retry_after: Option<Duration>,
        shadow: bool,
    ) -> Self {
        Shed {
            inner,
            limiter,
            criticality,
            classify,
            retry_after,
            shadow,
        }
    }
}

impl<S: Clone, Q: Clone, C: Clone> Clone for Shed<S, Q, C> {
    fn clone(&self) -> Self {
        Shed::new(
            self.inner.clone(),
            self.limiter.clone(),
            self.criticality.clone(),
            self.classify.clone(),
            self.retry_after,
            self.shadow,
        )
    }
}

impl<S, Q, C, Req> Service<Req> for Shed<S, Q, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Q: CriticalityOf<Req>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let criticality = self.criticality.criticality(&request);
        let limiter = &self.limiter;
        // The core the call starts on: it gives its place back there.
        let stripe = thread_index();
        let in_flight = match limiter.try_acquire(criticality, stripe) {
            Some(in_flight) => in_flight,
            None => {
                limiter.count_shed(criticality);
                limiter.listeners.emit(|| ShedEvent::Shed {
                    layer: limiter.name.clone(),
                    criticality,
                    shadow: self.shadow,
                });
                if !self.shadow {
                    let mut rejection =
                        Rejection::new(RejectionKind::Overloaded, limiter.name.clone())
                            .with_reason("concurrency limit reached");
                    if let Some(wait) = self.retry_after {
                        rejection = rejection.with_retry_after(wait);
                    }
                    return ResponseFuture::shed(Box::new(Overloaded::new(criticality, rejection)));
                }
                limiter.acquire_anyway(criticality, stripe)
            }
        };
        let place = Place::new(limiter.get(stripe).clone(), criticality, stripe, in_flight);
        let inner = &mut self.inner;
        let future = criticality.scope(criticality.in_scope(|| inner.call(request)));
        ResponseFuture::admitted(future, place, self.classify.clone())
    }
}
