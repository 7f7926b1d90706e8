//! [`Outlier`]: one endpoint's service, not-ready while the endpoint is ejected.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Sleep;
use tower::load::Load;
use tower_bulwark_core::{Classify, ErrorsAreFailures, Name};
use tower_service::Service;

use crate::classify::{AttemptTimeouts, NoGateway, Timeouts};
use crate::detector::Endpoint;
use crate::future::ResponseFuture;

/// One endpoint's service, from [`OutlierLayer`](crate::OutlierLayer).
///
/// `poll_ready` is `Pending` while the endpoint is ejected and wakes the task when the
/// ejection ends (a timer, made only while ejected), so `tower::balance::p2c` routes
/// around it without an error; otherwise it is the inner service's readiness. Each call's
/// outcome is recorded with the endpoint. Errors are the inner service's: the layer adds
/// no failure mode. [`Load`] is the inner service's, so p2c can balance over it.
pub struct Outlier<S, C = ErrorsAreFailures, G = NoGateway, T = AttemptTimeouts> {
    inner: S,
    endpoint: Arc<Endpoint>,
    classify: C,
    gateway: G,
    timeouts: T,
    /// The wait for the end of an ejection; boxed, and only while ejected.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S, C, G, T> Outlier<S, C, G, T> {
    pub(crate) fn new(
        inner: S,
        endpoint: Arc<Endpoint>,
        classify: C,
        gateway: G,
        timeouts: T,
    ) -> Self {
        Outlier {
            inner,
            endpoint,
            classify,
            gateway,
            timeouts,
            sleep: None,
        }
    }

    /// The endpoint's key.
    pub fn key(&self) -> &Name {
        self.endpoint.key()
    }

    /// Whether the endpoint is ejected now.
    pub fn is_ejected(&self) -> bool {
        self.endpoint
            .ejection
            .until()
            .is_some_and(|until| self.endpoint.shared().now() < until)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// `Ready` when the endpoint is in rotation; `Pending` (with a timer for the end) while
    /// it is ejected.
    fn poll_ejection(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while let Some(until) = self.endpoint.ejection.until() {
            let shared = self.endpoint.shared();
            let now = shared.now();
            if now >= until {
                self.endpoint.return_now(until, now);
                continue;
            }
            let deadline = shared.instant_at(until);
            let sleep = match &mut self.sleep {
                Some(sleep) => {
                    if sleep.deadline() != deadline {
                        sleep.as_mut().reset(deadline);
                    }
                    sleep
                }
                empty => empty.insert(Box::pin(tokio::time::sleep_until(deadline))),
            };
            if sleep.as_mut().poll(cx).is_pending() {
                // Also woken if the ejection ends early (the cap rechecked after a
                // removal); checked again after registering, so such an end is not missed.
                self.endpoint.wait(cx.waker());
                if self.endpoint.ejection.until() == Some(until) {
                    return Poll::Pending;
                }
                continue;
            }
            // The timer says the time is up: the ejection ends, whatever rounding the clock
            // did.
            self.endpoint.return_now(until, shared.now());
        }
        self.sleep = None;
        Poll::Ready(())
    }
}

impl<S, C, G, T, Req> Service<Req> for Outlier<S, C, G, T>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error> + Clone,
    G: Classify<S::Response, S::Error> + Clone,
    T: Timeouts<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C, G, T>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if self.endpoint.ejection.until().is_some() && self.poll_ejection(cx).is_pending() {
            return Poll::Pending;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // The latency runs from here: the clock is read before the inner service's `call`
        // (which may do work of its own before it returns its future).
        let started = self.endpoint.started();
        ResponseFuture::new(
            self.inner.call(request),
            self.endpoint.clone(),
            self.classify.clone(),
            self.gateway.clone(),
            self.timeouts.clone(),
            started,
        )
    }
}

impl<S: Load, C, G, T> Load for Outlier<S, C, G, T> {
    type Metric = S::Metric;

    fn load(&self) -> S::Metric {
        self.inner.load()
    }
}

impl<S: Clone, C: Clone, G: Clone, T: Clone> Clone for Outlier<S, C, G, T> {
    fn clone(&self) -> Self {
        Outlier {
            inner: self.inner.clone(),
            endpoint: self.endpoint.clone(),
            classify: self.classify.clone(),
            gateway: self.gateway.clone(),
            timeouts: self.timeouts.clone(),
            sleep: None,
        }
    }
}

impl<S: fmt::Debug, C, G, T> fmt::Debug for Outlier<S, C, G, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outlier")
            .field("inner", &self.inner)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}
