//! [`ResponseFuture`]: the first attempt, the hedge timer and the hedges, raced.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project::pin_project;
use tokio::time::{Instant, Sleep};
use tower_bulwark_core::{polled_after_completion, BoxError, Deadline, Outcome, Rejection};
use tower_service::Service;

use crate::events::{NotSent, Winner};
use crate::rules::{Load, MayHedge, Overload};
use crate::shared::Shared;

/// One call in flight, counted while it lives (cancel safety: dropped, it is no longer
/// counted).
pub(crate) struct InFlight<M, O> {
    pub(crate) shared: Arc<Shared<M, O>>,
}

impl<M, O> InFlight<M, O> {
    pub(crate) fn new(shared: Arc<Shared<M, O>>) -> Self {
        let counters = &shared.state.counters;
        counters.calls.fetch_add(1, Relaxed);
        counters.in_flight.fetch_add(1, Relaxed);
        InFlight { shared }
    }
}

impl<M, O> Drop for InFlight<M, O> {
    fn drop(&mut self) {
        self.shared.state.counters.in_flight.fetch_sub(1, Relaxed);
    }
}

/// The response future of a [`Hedge`](crate::Hedge) service: the first attempt, the timer
/// of the next hedge and the hedges sent, polled together. The first good answer wins and
/// the attempts still running are dropped (cancelled); see the [crate docs](crate) for
/// what an error or an overloaded answer does. The first hedge lives inline: with
/// `max_hedges` 1 nothing is allocated; further hedges are boxed when sent.
#[pin_project]
pub struct ResponseFuture<S, Req, M, O>
where
    S: Service<Req>,
{
    #[pin]
    primary: Option<S::Future>,
    #[pin]
    hedge: Option<S::Future>,
    /// Hedges 2 and up, with their numbers.
    more: Vec<(u32, Pin<Box<S::Future>>)>,
    /// The next hedge's timer, made when first polled.
    #[pin]
    timer: Option<Sleep>,
    /// A clone of the service and a copy of the request, for the hedges still to send;
    /// `None` once no more will be.
    spare: Option<(S, Req)>,
    started: Instant,
    delay: Duration,
    deadline: Option<Deadline>,
    /// Hedge slots used (sent or skipped).
    slots: u32,
    /// Hedges sent.
    sent: u32,
    /// An answer that did not win (an error, an overloaded answer), kept while other
    /// attempts run: the call's answer if none of them wins.
    kept: Option<Kept<S, Req>>,
    call: InFlight<M, O>,
}

impl<S, Req, M, O> ResponseFuture<S, Req, M, O>
where
    S: Service<Req>,
{
    pub(crate) fn new(
        primary: S::Future,
        spare: Option<(S, Req)>,
        started: Instant,
        delay: Duration,
        deadline: Option<Deadline>,
        call: InFlight<M, O>,
    ) -> Self {
        ResponseFuture {
            primary: Some(primary),
            hedge: None,
            more: Vec::new(),
            timer: None,
            spare,
            started,
            delay,
            deadline,
            slots: 0,
            sent: 0,
            kept: None,
            call,
        }
    }
}

/// An answer kept, and whose it is.
type Kept<S, Req> = (
    Winner,
    Result<<S as Service<Req>>::Response, <S as Service<Req>>::Error>,
);

/// What became of a due hedge.
enum Due<F> {
    Sent(F),
    /// Not sent; `true` when no later hedge of this call may be sent either.
    Skipped(NotSent, bool),
}

impl<S, Req, M, O> Future for ResponseFuture<S, Req, M, O>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError> + 'static,
    Req: Clone,
    M: MayHedge<Req>,
    O: Overload<S::Response, S::Error>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let shared = &*this.call.shared;
        let state = &shared.state;
        loop {
            // The attempts, oldest first.
            let mut answer = None;
            if let Some(future) = this.primary.as_mut().as_pin_mut() {
                if let Poll::Ready(result) = future.poll(cx) {
                    this.primary.set(None);
                    answer = Some((Winner::Primary, result));
                }
            }
            if answer.is_none() {
                if let Some(future) = this.hedge.as_mut().as_pin_mut() {
                    if let Poll::Ready(result) = future.poll(cx) {
                        this.hedge.set(None);
                        answer = Some((Winner::Hedge(1), result));
                    }
                }
            }
            if answer.is_none() {
                let ready = this.more.iter_mut().enumerate().find_map(|(i, (n, f))| {
                    match f.as_mut().poll(cx) {
                        Poll::Ready(result) => Some((i, *n, result)),
                        Poll::Pending => None,
                    }
                });
                if let Some((i, number, result)) = ready {
                    drop(this.more.swap_remove(i));
                    answer = Some((Winner::Hedge(number), result));
                }
            }

            if let Some((who, result)) = answer {
                let now = Instant::now();
                let load = shared.overload.load(&result);
                if let Load::Overloaded(pushback) = load {
                    state.pause(now, pushback);
                }
                let wins = load == Load::Normal && result.is_ok();
                if wins {
                    let latency = now.saturating_duration_since(*this.started);
                    let primary_running = this.primary.is_some();
                    if who == Winner::Primary || primary_running {
                        // The first attempt's latency; when a hedge beat it, the time it
                        // ran, a lower bound already past the delay.
                        state.record(now, latency);
                    }
                    let cancelled = u32::from(primary_running)
                        + u32::from(this.hedge.is_some())
                        + this.more.len() as u32;
                    this.primary.set(None);
                    this.hedge.set(None);
                    this.more.clear();
                    this.timer.set(None);
                    *this.spare = None;
                    if *this.sent > 0 {
                        state.answered(who, cancelled, latency);
                    }
                    return Poll::Ready(result.map_err(Into::into));
                }
                // Not a win: no hedge after an error (sending the call again after it
                // failed is a retry, the retry layer's job) or an overloaded answer.
                *this.spare = None;
                this.timer.set(None);
                // Kept until every attempt has answered: the first answer, unless it is a
                // refusal of a layer below (a full bulkhead refusing the hedge) and a later
                // one is the dependency's own (a failure, the attempt timeout): a local
                // refusal must not hide the failure a retry or a breaker above reads.
                let replace = match this.kept.as_ref() {
                    None => true,
                    Some((_, kept)) => is_local_refusal(kept) && !is_local_refusal(&result),
                };
                if replace {
                    *this.kept = Some((who, result));
                }
                let running =
                    this.primary.is_some() || this.hedge.is_some() || !this.more.is_empty();
                if running {
                    continue;
                }
                let (who, result) = this.kept.take().expect("an answer was just kept");
                if *this.sent > 0 {
                    state.answered(who, 0, now.saturating_duration_since(*this.started));
                }
                return Poll::Ready(result.map_err(Into::into));
            }

            let running = this.primary.is_some() || this.hedge.is_some() || !this.more.is_empty();
            if !running {
                // Every attempt answered and the answer was taken: polled again.
                return Poll::Ready(Err(polled_after_completion()));
            }

            // The next hedge's timer.
            if this.spare.is_none() {
                return Poll::Pending;
            }
            if this.timer.is_none() {
                let due = hedge_due(*this.started, *this.delay, *this.slots + 1);
                this.timer.set(Some(tokio::time::sleep_until(due)));
            }
            let timer = this
                .timer
                .as_mut()
                .as_pin_mut()
                .expect("the timer was just set");
            if timer.poll(cx).is_pending() {
                return Poll::Pending;
            }
            *this.slots += 1;
            let last = *this.slots >= state.max_hedges;
            let due = send_due(shared, this.spare, last, *this.deadline, cx);
            match due {
                Due::Sent(future) => {
                    *this.sent += 1;
                    let number = *this.sent;
                    state.sent(number, this.started.elapsed());
                    if this.hedge.is_none() && number == 1 {
                        this.hedge.set(Some(future));
                    } else {
                        this.more.push((number, Box::pin(future)));
                    }
                }
                Due::Skipped(reason, final_) => {
                    state.not_sent(reason);
                    if final_ {
                        *this.spare = None;
                    }
                }
            }
            if last || this.spare.is_none() {
                *this.spare = None;
                this.timer.set(None);
            } else {
                let due = hedge_due(*this.started, *this.delay, *this.slots + 1);
                if let Some(timer) = this.timer.as_mut().as_pin_mut() {
                    timer.reset(due);
                }
            }
            // Poll the new hedge (and the next timer) once, to register their wakers.
        }
    }
}

/// When hedge `number` is due: `number` delays after the first attempt.
fn hedge_due(started: Instant, delay: Duration, number: u32) -> Instant {
    let after = delay.saturating_mul(number);
    started
        .checked_add(after)
        .unwrap_or_else(|| started + Duration::from_secs(86_400 * 365 * 30))
}

/// Sends the due hedge, unless something says not to. In order: the pause (no load at all
/// on a dependency that sheds), the caller's deadline, the body, the clone's readiness
/// (a service that is not ready is skipped, not waited for), then the budget (taken only
/// for a hedge that will go out).
fn send_due<S, Req, M, O>(
    shared: &Shared<M, O>,
    spare: &mut Option<(S, Req)>,
    last: bool,
    deadline: Option<Deadline>,
    cx: &mut Context<'_>,
) -> Due<S::Future>
where
    S: Service<Req> + Clone,
    Req: Clone,
    M: MayHedge<Req>,
{
    let state = &shared.state;
    let now = Instant::now();
    if state.is_paused(now) {
        return Due::Skipped(NotSent::Paused, true);
    }
    let deadline = match (deadline, Deadline::current()) {
        (Some(deadline), current) => Some(deadline.earliest(current)),
        (None, current) => current,
    };
    if deadline.is_some_and(|deadline| deadline.remaining() <= state.margin) {
        return Due::Skipped(NotSent::Deadline, true);
    }
    let Some((service, request)) = spare.as_mut() else {
        return Due::Skipped(NotSent::NotIdempotent, true);
    };
    if !shared.may_hedge.can_send(request) {
        return Due::Skipped(NotSent::NotIdempotent, true);
    }
    // The last hedge takes the spare service; earlier ones ready a clone of it.
    let mut fresh = if last { None } else { Some(service.clone()) };
    let ready = match fresh.as_mut() {
        Some(clone) => clone.poll_ready(cx),
        None => service.poll_ready(cx),
    };
    match ready {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(_)) | Poll::Pending => return Due::Skipped(NotSent::NotReady, false),
    }
    if !state.budget.withdraw(now) {
        return Due::Skipped(NotSent::Budget, false);
    }
    let future = match fresh {
        Some(mut clone) => clone.call(request.clone()),
        None => {
            let (mut service, request) = spare.take().expect("the spare was just read");
            service.call(request)
        }
    };
    Due::Sent(future)
}

impl<S, Req, M, O> fmt::Debug for ResponseFuture<S, Req, M, O>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("primary_running", &self.primary.is_some())
            .field("hedges_sent", &self.sent)
            .field(
                "hedges_running",
                &(usize::from(self.hedge.is_some()) + self.more.len()),
            )
            .field("delay", &self.delay)
            .finish()
    }
}

/// Whether `result` is a refusal by one of our layers below (composition contract: it
/// says nothing about the dependency), as opposed to the dependency's own answer.
fn is_local_refusal<T, E: 'static>(result: &Result<T, E>) -> bool {
    match result {
        Ok(_) => false,
        Err(error) => Rejection::find_in(error)
            .is_some_and(|rejection| rejection.kind().outcome() == Outcome::Ignored),
    }
}
