use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tower_bulwark_core::{BoxError, Deadline};
use tower_service::Service;

use crate::compartment::{Admission as Slot, Admit, Compartment, Permit, Ticket};
use crate::config::{Admission, Config};
use crate::future::ResponseFuture;
use crate::wait::Wait;
use crate::{DeadlineSource, FullReason};
use tower_bulwark_core::stripes::Striped;

/// A service behind a bulkhead. Built by [`BulkheadLayer`](crate::BulkheadLayer).
///
/// In reject admission `poll_ready` readies the inner service and `call` takes a permit, or
/// a place in the queue (the readied inner service waits with the request, then is
/// called), or refuses. In backpressure admission `poll_ready` waits for the permit, for
/// at most `max_wait` and never past the task's current deadline; when the wait runs out
/// it is ready and `call` answers [`BulkheadFull`](crate::BulkheadFull) without calling
/// the inner service. Either way the permit is released when the response future
/// completes or is dropped, and a dropped waiting future (or service) leaves the queue.
pub struct Bulkhead<S, D> {
    inner: S,
    compartment: Striped<Compartment>,
    config: Arc<Config>,
    deadline: D,
    /// Backpressure admission: what `poll_ready` got so far.
    ready: Ready,
}

/// Backpressure admission: the state of `poll_ready`.
#[derive(Debug)]
enum Ready {
    Idle,
    /// Queued; boxed because `Sleep` must not move and the service may.
    Waiting(Pin<Box<Wait>>),
    Admitted(Permit),
    /// The wait ran out: the next call is refused for this reason.
    Refused(FullReason),
}

impl<S, D> Bulkhead<S, D> {
    pub(crate) fn new(
        inner: S,
        compartment: Striped<Compartment>,
        config: Arc<Config>,
        deadline: D,
    ) -> Self {
        Bulkhead {
            inner,
            compartment,
            config,
            deadline,
            ready: Ready::Idle,
        }
    }

    /// Backpressure admission: waits for a permit, or until the wait runs out.
    fn poll_admission(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            self.ready = match &mut self.ready {
                Ready::Admitted(_) | Ready::Refused(_) => return Poll::Ready(()),
                Ready::Idle => match self.compartment.local().admit(false) {
                    Slot::Admitted(permit) => Ready::Admitted(permit),
                    Slot::Queued(ticket) => {
                        // The request is not known yet: the wait ends at the task's deadline.
                        let deadline = Deadline::current();
                        match Wait::new(&self.compartment, ticket, self.config.max_wait, deadline) {
                            Ok(wait) => Ready::Waiting(Box::pin(wait)),
                            Err(reason) => Ready::Refused(reason),
                        }
                    }
                    Slot::QueueFull => Ready::Refused(FullReason::QueueFull),
                },
                Ready::Waiting(wait) => {
                    match ready!(wait.as_mut().poll_permit(cx, &self.compartment)) {
                        Ok(permit) => Ready::Admitted(permit),
                        Err(reason) => Ready::Refused(reason),
                    }
                }
            };
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A handle to the bulkhead.
    pub fn handle(&self) -> crate::BulkheadHandle {
        crate::BulkheadHandle::new(self.compartment.shared().clone())
    }
}

/// A clone shares the compartment but not the original's permit or place in the queue.
impl<S: Clone, D: Clone> Clone for Bulkhead<S, D> {
    fn clone(&self) -> Self {
        Bulkhead::new(
            self.inner.clone(),
            self.compartment.clone(),
            self.config.clone(),
            self.deadline.clone(),
        )
    }
}

impl<S: fmt::Debug, D> fmt::Debug for Bulkhead<S, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("inner", &self.inner)
            .field("name", &self.compartment.name)
            .finish_non_exhaustive()
    }
}

impl<S, D, Req> Service<Req> for Bulkhead<S, D>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    D: DeadlineSource<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.config.admission == Admission::Backpressure {
            // A refusal from an earlier poll whose call never came may be stale: wait again.
            if let Ready::Refused(_) = self.ready {
                self.ready = Ready::Idle;
            }
            ready!(self.poll_admission(cx));
            if let Ready::Refused(_) = self.ready {
                // `call` answers the refusal; the inner service is not needed for it.
                return Poll::Ready(Ok(()));
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, request: Req) -> Self::Future {
        match std::mem::replace(&mut self.ready, Ready::Idle) {
            Ready::Admitted(permit) => ResponseFuture::running(self.inner.call(request), permit),
            Ready::Refused(reason) => ResponseFuture::refused(self.compartment.refuse(reason)),
            Ready::Idle | Ready::Waiting(_) => admit_call(
                &self.compartment,
                self.config.max_wait,
                &self.deadline,
                &mut self.inner,
                request,
            ),
        }
    }
}

/// Admits `request` through `compartment` in reject admission: a permit now, a place in
/// the queue (the readied `inner` waits with the request, `inner` keeps a clone), or a
/// refusal. A queued call waits for at most `max_wait`, never past its deadline, and is
/// refused at once when its deadline is nearer than the recent average wait.
#[inline(always)]
pub(crate) fn admit_call<S, D, Req>(
    compartment: &Striped<Compartment>,
    max_wait: Duration,
    deadline: &D,
    inner: &mut S,
    request: Req,
) -> ResponseFuture<S, Req>
where
    S: Service<Req> + Clone,
    D: DeadlineSource<Req>,
{
    match compartment.local().admit(true) {
        Slot::Admitted(permit) => ResponseFuture::running(inner.call(request), permit),
        Slot::QueueFull => ResponseFuture::refused(compartment.refuse(FullReason::QueueFull)),
        Slot::Queued(ticket) => queue_call(compartment, max_wait, deadline, inner, request, ticket),
    }
}

#[cold]
fn queue_call<S, D, Req>(
    compartment: &Striped<Compartment>,
    max_wait: Duration,
    deadline: &D,
    inner: &mut S,
    request: Req,
    ticket: Ticket,
) -> ResponseFuture<S, Req>
where
    S: Service<Req> + Clone,
    D: DeadlineSource<Req>,
{
    let deadline = deadline.deadline(&request);
    match Wait::new(compartment, ticket, max_wait, deadline) {
        Ok(wait) => {
            let clone = inner.clone();
            let readied = std::mem::replace(inner, clone);
            ResponseFuture::waiting(wait, readied, request, compartment.local().clone())
        }
        Err(reason) => ResponseFuture::refused(compartment.refuse(reason)),
    }
}
