use std::fmt;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use std::time::Duration;
use tokio::time::Instant;

use tower_bulwark_core::{BoxError, Deadline};
use tower_service::Service;

use crate::compartment::{Admission as Slot, Compartment, Permit, Ticket};
use crate::config::{Admission, Config};
use crate::future::ResponseFuture;
use crate::{DeadlineSource, FullReason};

/// A service behind a bulkhead. Built by [`BulkheadLayer`](crate::BulkheadLayer).
///
/// In reject admission `poll_ready` readies the inner service and `call` takes a permit, or
/// a place in the queue (the readied inner service waits with the request, then is
/// called), or refuses. In backpressure admission `poll_ready` waits for the permit. Either
/// way the permit is released when the response future completes or is dropped, and a
/// dropped waiting future leaves the queue.
pub struct Bulkhead<S, D> {
    inner: S,
    compartment: Arc<Compartment>,
    config: Arc<Config>,
    deadline: D,
    /// Backpressure admission: the permit `poll_ready` obtained, or the place it holds.
    permit: Option<Permit>,
    ticket: Option<Ticket>,
}

impl<S, D> Bulkhead<S, D> {
    pub(crate) fn new(
        inner: S,
        compartment: Arc<Compartment>,
        config: Arc<Config>,
        deadline: D,
    ) -> Self {
        Bulkhead {
            inner,
            compartment,
            config,
            deadline,
            permit: None,
            ticket: None,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A handle to the bulkhead.
    pub fn handle(&self) -> crate::BulkheadHandle {
        crate::BulkheadHandle::new(self.compartment.clone())
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
        if self.config.admission == Admission::Backpressure && self.permit.is_none() {
            if self.ticket.is_none() {
                match self.compartment.admit(false) {
                    Slot::Admitted(permit) => self.permit = Some(permit),
                    Slot::Queued(ticket) => self.ticket = Some(ticket),
                    Slot::QueueFull => unreachable!("an unbounded queue is never full"),
                }
            }
            if let Some(ticket) = &mut self.ticket {
                self.permit = Some(ready!(ticket.poll_permit(cx)));
                self.ticket = None;
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, request: Req) -> Self::Future {
        if let Some(permit) = self.permit.take() {
            return ResponseFuture::running(self.inner.call(request), permit);
        }
        admit_call(
            &self.compartment,
            self.config.max_wait,
            &self.deadline,
            &mut self.inner,
            request,
        )
    }
}

/// Admits `request` through `compartment` in reject admission: a permit now, a place in
/// the queue (the readied `inner` waits with the request, `inner` keeps a clone), or a
/// refusal. A queued call waits for at most `max_wait`, never past its deadline, and is
/// refused at once when its deadline is nearer than the recent average wait.
#[inline(always)]
pub(crate) fn admit_call<S, D, Req>(
    compartment: &Arc<Compartment>,
    max_wait: Duration,
    deadline: &D,
    inner: &mut S,
    request: Req,
) -> ResponseFuture<S, Req>
where
    S: Service<Req> + Clone,
    D: DeadlineSource<Req>,
{
    match compartment.admit(true) {
        Slot::Admitted(permit) => ResponseFuture::running(inner.call(request), permit),
        Slot::QueueFull => ResponseFuture::refused(compartment.refuse(FullReason::QueueFull)),
        Slot::Queued(ticket) => queue_call(compartment, max_wait, deadline, inner, request, ticket),
    }
}

#[cold]
fn queue_call<S, D, Req>(
    compartment: &Arc<Compartment>,
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
    let now = Instant::now();
    // Saturates for an enormous `max_wait` instead of overflowing the instant.
    let mut until = Deadline::after(max_wait).instant();
    let mut reason = FullReason::WaitTimeout;
    if let Some(deadline) = deadline.deadline(&request) {
        if deadline.remaining() <= compartment.mean_wait() {
            drop(ticket);
            return ResponseFuture::refused(compartment.refuse(FullReason::Deadline));
        }
        if deadline.instant() < until {
            until = deadline.instant();
            reason = FullReason::Deadline;
        }
    }
    let clone = inner.clone();
    let readied = std::mem::replace(inner, clone);
    ResponseFuture::waiting(
        ticket,
        until,
        readied,
        request,
        now,
        compartment.clone(),
        reason,
    )
}
