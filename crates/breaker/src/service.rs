use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::futures::OwnedNotified;
use tokio::time::Sleep;
use tower_bulwark_core::stripes::Striped;
use tower_bulwark_core::{BoxError, Classify, Deadline};
use tower_service::Service;

use crate::breaker::{Breaker, Permit, Refusal};
use crate::config::Admission;
use crate::future::ResponseFuture;

/// A service guarded by a circuit breaker. Built by [`CircuitBreakerLayer`](crate::CircuitBreakerLayer).
///
/// The decision is taken in `poll_ready`: an admitted call holds its permit (and, while
/// half-open, its probe slot) until its response future completes or is dropped. In
/// fail-fast admission a refused call is answered by `call` with [`CircuitOpen`](crate::CircuitOpen)
/// and the inner service is neither polled nor called; in readiness admission `poll_ready`
/// stays `Pending` until a probe may go, but never past the caller's deadline: the request
/// is not known yet, so the deadline is the task's current one ([`Deadline::current`]);
/// when it passes, `poll_ready` is ready and `call` answers `CircuitOpen`, as in fail-fast
/// admission (the same as a bulkhead's backpressure wait), so the service stays usable.
/// Behind tower's `Buffer`, whose worker task polls readiness, there is no current
/// deadline: the wait lasts until a probe may go.
///
/// A permit taken by `poll_ready` is the call's admission: a call readied while closed goes
/// through even if the breaker trips before `call`, and a service readied while half-open
/// holds its probe slot until it is called or dropped. Drop a readied service you will not
/// call, as tower's contract expects. A probe's slot belongs to its half-open phase: if that
/// phase ends before the call (another probe failed, or half-open timed out while the inner
/// service was not ready), the service decides again, in `poll_ready` or at the latest in
/// `call`, so no probe of an ended phase reaches the inner service.
///
/// An error from the inner service's `poll_ready` is classified and recorded like the
/// result of a call (a dependency that cannot be connected to trips the breaker), and is
/// passed on.
///
/// It is a service of `Req` when the inner service is, its error converts into
/// `BoxError`, and the classifier `C` reads the inner service's answers
/// (`C: Classify<S::Response, S::Error>`): the HTTP classifiers read `http::Response<B>`,
/// so a client answering another type (a `reqwest::Response`) needs an adapter to
/// `http::Response` or a classifier of its own (any `Fn(&Result<Res, E>) -> Outcome`).
pub struct CircuitBreaker<S, C> {
    inner: S,
    breaker: Striped<Breaker>,
    classifier: C,
    /// Admitted by `poll_ready`, waiting for `call`.
    permit: Option<Permit>,
    /// Refused by `poll_ready` (fail-fast), answered by `call`.
    refusal: Option<Refusal>,
    /// Readiness admission: wakes the task at the breaker's next change.
    changed: Option<Pin<Box<OwnedNotified>>>,
    /// Readiness admission: wakes the task when an open breaker lets probes through, or at
    /// the task's deadline.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S, C> CircuitBreaker<S, C> {
    pub(crate) fn new(inner: S, breaker: Striped<Breaker>, classifier: C) -> Self {
        CircuitBreaker {
            inner,
            breaker,
            classifier,
            permit: None,
            refusal: None,
            changed: None,
            sleep: None,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// A handle to read and steer the breaker.
    pub fn handle(&self) -> crate::BreakerHandle {
        crate::BreakerHandle::new(self.breaker.shared().clone())
    }

    /// Readiness admission: starts listening for the breaker's next change (before
    /// deciding again, so a change in between is not missed).
    fn listen(&mut self) {
        let next = self.breaker.next_change();
        match &mut self.changed {
            Some(changed) => changed.set(next),
            None => self.changed = Some(Box::pin(next)),
        }
    }

    /// Admits the call (`permit`) or refuses it (`refusal`, answered by `call`); in
    /// readiness admission, `Pending` while the breaker refuses, until the task's deadline.
    #[inline(always)]
    fn decide(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let refusal = match Breaker::acquire(self.breaker.local()) {
            Ok(permit) => {
                self.permit = Some(permit);
                return Poll::Ready(());
            }
            Err(refusal) => refusal,
        };
        if refusal.by_ramp || self.breaker.config.admission == Admission::FailFast {
            self.refusal = Some(refusal);
            return Poll::Ready(());
        }
        // Readiness admission: listen for changes first, then decide again, so a change
        // between the refusal and the listening is not missed; the wait follows the latest
        // refusal.
        self.listen();
        match Breaker::acquire(self.breaker.local()) {
            Ok(permit) => self.permit = Some(permit),
            Err(refusal) if refusal.by_ramp => self.refusal = Some(refusal),
            Err(refusal) => {
                // The request is not known yet: the wait ends at the task's deadline, and
                // then `call` refuses, as a bulkhead's backpressure wait does.
                let deadline = Deadline::current();
                if deadline.is_some_and(Deadline::is_expired) {
                    self.refusal = Some(refusal);
                } else {
                    self.wake_to_decide_again(refusal, deadline, cx);
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(())
    }

    /// Readiness admission: wakes the task at the change it listens for, when deciding
    /// again may admit it (an open breaker announces nothing when its open duration ends,
    /// nor does half-open when it times out), or at the caller's `deadline`, whichever
    /// comes first; a timer wakes the task at either instant.
    fn wake_to_decide_again(
        &mut self,
        refusal: Refusal,
        deadline: Option<Deadline>,
        cx: &mut Context<'_>,
    ) {
        if let Some(changed) = &mut self.changed {
            if changed.as_mut().poll(cx).is_ready() {
                cx.waker().wake_by_ref();
                return;
            }
        }
        let again = self.breaker.decide_again_at(refusal);
        let Some(at) = [again, deadline.map(Deadline::instant)]
            .into_iter()
            .flatten()
            .min()
        else {
            return;
        };
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        sleep.as_mut().reset(at);
        if sleep.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
    }

    /// Readiness admission: the wait is over (admitted or refused), so the task's waker is
    /// let go of at once; an armed timer would hold it, and wake the task, until the
    /// deadline. Nothing to do for a service that never waited.
    #[inline]
    fn stop_waiting(&mut self) {
        self.changed = None;
        self.sleep = None;
    }

    /// The inner service failed to become ready: records that as the admitted call's
    /// outcome, and passes the error on.
    #[cold]
    fn not_ready<Req>(&mut self, error: S::Error) -> Result<(), BoxError>
    where
        S: Service<Req>,
        S::Error: Into<BoxError>,
        C: Classify<S::Response, S::Error>,
    {
        let result: Result<S::Response, S::Error> = Err(error);
        if let Some(permit) = self.permit.take() {
            // Never called: not timed, so never slow.
            permit.finish(self.classifier.classify(&result), None);
        }
        result.map(drop).map_err(Into::into)
    }
}

/// A clone shares the breaker but not the original's reserved permit or pending refusal.
impl<S: Clone, C: Clone> Clone for CircuitBreaker<S, C> {
    fn clone(&self) -> Self {
        CircuitBreaker::new(
            self.inner.clone(),
            self.breaker.clone(),
            self.classifier.clone(),
        )
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker.config.name)
            .field("state", &self.breaker.state())
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // A refusal from an earlier poll whose call never came may be stale: decide again.
        self.refusal = None;
        if self.permit.as_ref().is_some_and(Permit::is_stale_probe) {
            self.permit = None;
        }
        if self.permit.is_none() {
            if self.decide(cx).is_pending() {
                return Poll::Pending;
            }
            self.stop_waiting();
            if self.refusal.is_some() {
                return Poll::Ready(Ok(()));
            }
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(error)) => Poll::Ready(self.not_ready(error)),
            ready => ready.map_err(Into::into),
        }
    }

    #[inline(always)]
    fn call(&mut self, request: Req) -> Self::Future {
        if let Some(refusal) = self.refusal.take() {
            return ResponseFuture::refused(self.breaker.reject(refusal));
        }
        let mut permit = self
            .permit
            .take()
            .expect("CircuitBreaker::call without a successful poll_ready");
        if permit.is_stale_probe() {
            // Its half-open phase ended after `poll_ready`: it admits nothing any more.
            permit = match Breaker::acquire(self.breaker.local()) {
                Ok(permit) => permit,
                Err(refusal) => return ResponseFuture::refused(self.breaker.reject(refusal)),
            };
        }
        let started = self.breaker.times_calls().then(tokio::time::Instant::now);
        ResponseFuture::new(
            self.inner.call(request),
            permit,
            started,
            self.classifier.clone(),
        )
    }
}
