use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::time::Instant;
use tower_bulwark_core::{BoxError, Rejection, RejectionKind};
use tower_service::Service;

use crate::compartment::{Admission as Slot, Compartment, Permit, Ticket};
use crate::config::{Admission, Config};
use crate::future::ResponseFuture;
use crate::{BulkheadFull, DeadlineSource, FullReason};

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

    fn refuse(&self, reason: FullReason) -> BoxError {
        let stats = &self.compartment.stats;
        match reason {
            FullReason::QueueFull => stats.rejected_queue_full.fetch_add(1, Relaxed),
            FullReason::WaitTimeout => stats.rejected_wait_timeout.fetch_add(1, Relaxed),
            FullReason::Deadline => stats.rejected_deadline.fetch_add(1, Relaxed),
        };
        let rejection = Rejection::new(RejectionKind::BulkheadFull, self.compartment.name.clone())
            .with_reason(reason.as_str());
        Box::new(BulkheadFull::new(reason, rejection))
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
        match self.compartment.admit(true) {
            Slot::Admitted(permit) => ResponseFuture::running(self.inner.call(request), permit),
            Slot::QueueFull => ResponseFuture::refused(self.refuse(FullReason::QueueFull)),
            Slot::Queued(ticket) => self.wait(ticket, request),
        }
    }
}

impl<S, D> Bulkhead<S, D> {
    /// Queues the call: it waits for at most `max_wait`, never past its deadline, and is
    /// refused at once when its deadline is nearer than the recent average wait.
    #[cold]
    fn wait<Req>(&mut self, ticket: Ticket, request: Req) -> ResponseFuture<S, Req>
    where
        S: Service<Req> + Clone,
        D: DeadlineSource<Req>,
    {
        let now = Instant::now();
        let mut until = now + self.config.max_wait;
        let mut reason = FullReason::WaitTimeout;
        if let Some(deadline) = self.deadline.deadline(&request) {
            if deadline.remaining() <= self.compartment.mean_wait() {
                drop(ticket);
                return ResponseFuture::refused(self.refuse(FullReason::Deadline));
            }
            if deadline.instant() < until {
                until = deadline.instant();
                reason = FullReason::Deadline;
            }
        }
        // The readied inner service waits with the request; this handle keeps a clone.
        let clone = self.inner.clone();
        let readied = std::mem::replace(&mut self.inner, clone);
        let timed_out = self.refuse_later(reason);
        ResponseFuture::waiting(
            ticket,
            until,
            readied,
            request,
            now,
            self.compartment.clone(),
            timed_out,
        )
    }

    /// What a waiting call is refused with if its wait runs out.
    fn refuse_later(&self, reason: FullReason) -> crate::future::TimedOut {
        crate::future::TimedOut {
            reason,
            name: self.compartment.name.clone(),
        }
    }
}
