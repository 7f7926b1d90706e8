//! [`ClientFuture`]: the response of a [`ClientRateLimit`](crate::ClientRateLimit)
//! service, waiting for a permit first if it must.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project::pin_project;
use tokio::time::{sleep, Sleep};
use tower_bulwark_core::{BoxError, Deadline};
use tower_service::Service;

use crate::check::Check;
use crate::client::{ClientShared, Next, Wait};
use crate::Limiter;

/// The response future of a [`ClientRateLimit`](crate::ClientRateLimit) service.
/// Dropping it while it waits ends the wait; it holds no permit meanwhile.
#[pin_project]
pub struct ClientFuture<S, L, K, Req>
where
    S: Service<Req>,
    L: Limiter<K>,
{
    #[pin]
    state: State<S::Future, L::Future>,
    pending: Option<Pending<S, L, K, Req>>,
}

#[pin_project(project = StateProj)]
enum State<F, A> {
    /// The inner service's call.
    Called {
        #[pin]
        future: F,
    },
    /// Refused, until the error is taken.
    Refused { error: Option<BoxError> },
    /// Waiting for the limiter's answer.
    Acquiring {
        #[pin]
        acquire: A,
    },
    /// Waiting until a permit is due.
    Waiting {
        #[pin]
        sleep: Sleep,
    },
}

/// A request that has not gone on yet, with the readied service it will be sent to.
pub(crate) struct Pending<S, L, K, Req> {
    check: Check<K>,
    inner: S,
    request: Req,
    deadline: Option<Deadline>,
    wait: Option<Wait>,
    shared: Arc<ClientShared<L>>,
}

impl<S, L, K, Req> Pending<S, L, K, Req> {
    pub(crate) fn new(
        check: Check<K>,
        inner: S,
        request: Req,
        deadline: Option<Deadline>,
        wait: Option<Wait>,
        shared: Arc<ClientShared<L>>,
    ) -> Self {
        Pending {
            check,
            inner,
            request,
            deadline,
            wait,
            shared,
        }
    }
}

impl<S, L, K, Req> ClientFuture<S, L, K, Req>
where
    S: Service<Req>,
    L: Limiter<K>,
{
    pub(crate) fn called(future: S::Future) -> Self {
        ClientFuture {
            state: State::Called { future },
            pending: None,
        }
    }

    pub(crate) fn refused(error: BoxError) -> Self {
        ClientFuture {
            state: State::Refused { error: Some(error) },
            pending: None,
        }
    }

    pub(crate) fn acquiring(acquire: L::Future, pending: Pending<S, L, K, Req>) -> Self {
        ClientFuture {
            state: State::Acquiring { acquire },
            pending: Some(pending),
        }
    }

    pub(crate) fn waiting(wait: Duration, pending: Pending<S, L, K, Req>) -> Self {
        ClientFuture {
            state: State::Waiting { sleep: sleep(wait) },
            pending: Some(pending),
        }
    }
}

impl<S, L, K, Req> Future for ClientFuture<S, L, K, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    L: Limiter<K>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let verdict = match this.state.as_mut().project() {
                StateProj::Called { future } => return future.poll(cx).map_err(Into::into),
                StateProj::Refused { error } => {
                    let error = error.take();
                    return Poll::Ready(Err(
                        error.unwrap_or_else(tower_bulwark_core::polled_after_completion)
                    ));
                }
                StateProj::Acquiring { mut acquire } => {
                    let answer = ready!(acquire.as_mut().poll(cx));
                    let pending = this.pending.as_mut().expect("polled after completion");
                    let quotas = &pending.shared.quotas;
                    match pending.check.answer(answer, quotas) {
                        Some(verdict) => verdict,
                        None => {
                            // The next quota (the client has no tiers: not reached).
                            acquire.set(pending.check.limiter(quotas).acquire(&pending.check.key));
                            continue;
                        }
                    }
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.poll(cx));
                    let pending = this.pending.as_mut().expect("polled after completion");
                    let criticality = pending.check.criticality;
                    if let Some(error) = pending.shared.overslept(pending.wait, criticality) {
                        *this.pending = None;
                        this.state.set(State::Refused { error: Some(error) });
                        continue;
                    }
                    let quotas = &pending.shared.quotas;
                    pending.check.restart(quotas);
                    match pending.check.run_now(quotas) {
                        Some(verdict) => verdict,
                        None => {
                            let acquire = pending.check.limiter(quotas).acquire(&pending.check.key);
                            this.state.set(State::Acquiring { acquire });
                            continue;
                        }
                    }
                }
            };
            let pending = this.pending.as_mut().expect("polled after completion");
            let next = pending.shared.judge(
                verdict,
                pending.check.criticality,
                pending.deadline,
                &mut pending.wait,
            );
            let next = match next {
                Next::Wait(wait) => State::Waiting { sleep: sleep(wait) },
                Next::Call => {
                    let Pending {
                        mut inner, request, ..
                    } = this.pending.take().expect("polled after completion");
                    State::Called {
                        future: inner.call(request),
                    }
                }
                Next::Refuse(error) => {
                    *this.pending = None;
                    State::Refused { error: Some(error) }
                }
            };
            this.state.set(next);
        }
    }
}

impl<S, L, K, Req> fmt::Debug for ClientFuture<S, L, K, Req>
where
    S: Service<Req>,
    L: Limiter<K>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Called { .. } => "called",
            State::Refused { .. } => "refused",
            State::Acquiring { .. } => "acquiring",
            State::Waiting { .. } => "waiting",
        };
        f.debug_struct("ClientFuture")
            .field("state", &state)
            .finish()
    }
}
