//! A queued call's wait for its permit, the same in both admissions: at most `max_wait`,
//! never past the caller's deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project::pin_project;
use tokio::time::{sleep_until, Instant, Sleep};
use tower_bulwark_core::Deadline;

use crate::compartment::{Compartment, Permit, Ticket};
use crate::FullReason;

/// Waits with a [`Ticket`] until its permit is granted or the time runs out. Dropped, it
/// leaves the queue.
#[pin_project]
#[derive(Debug)]
pub(crate) struct Wait {
    ticket: Option<Ticket>,
    #[pin]
    sleep: Sleep,
    since: Instant,
    /// The reason given if the time runs out.
    timed_out: FullReason,
}

impl Wait {
    /// Waits with `ticket` for at most `max_wait` and never past `deadline`. A deadline
    /// nearer than the compartment's recent mean wait is refused at once: the call would
    /// most likely wait in vain. Each such refusal lowers the mean a little, so a stale mean
    /// cannot refuse for ever.
    pub(crate) fn new(
        compartment: &Compartment,
        ticket: Ticket,
        max_wait: Duration,
        deadline: Option<Deadline>,
    ) -> Result<Self, FullReason> {
        // Saturates for an enormous `max_wait` instead of overflowing the instant.
        let mut until = Deadline::after(max_wait).instant();
        let mut timed_out = FullReason::WaitTimeout;
        if let Some(deadline) = deadline {
            if deadline.remaining() <= compartment.mean_wait() {
                compartment.forget_some_wait();
                return Err(FullReason::Deadline);
            }
            if deadline.instant() < until {
                until = deadline.instant();
                timed_out = FullReason::Deadline;
            }
        }
        Ok(Wait {
            ticket: Some(ticket),
            sleep: sleep_until(until),
            since: Instant::now(),
            timed_out,
        })
    }

    /// The permit once granted, or why the wait ran out (having left the queue, or passed
    /// on a permit granted just then).
    pub(crate) fn poll_permit(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        compartment: &Compartment,
    ) -> Poll<Result<Permit, FullReason>> {
        let this = self.project();
        if let Some(ticket) = this.ticket.as_mut() {
            if let Poll::Ready(permit) = ticket.poll_permit(cx) {
                compartment.record_wait(this.since.elapsed());
                *this.ticket = None;
                return Poll::Ready(Ok(permit));
            }
        }
        if this.sleep.poll(cx).is_pending() {
            return Poll::Pending;
        }
        *this.ticket = None;
        Poll::Ready(Err(*this.timed_out))
    }
}
