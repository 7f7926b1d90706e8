//! [`ResponseFuture`]: a caller's wait for its answer.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project::pin_project;
use tokio::time::{Instant, Sleep};
use tower_bulwark_core::{polled_after_completion, BoxError, Deadline, Rejection, RejectionKind};
use tower_service::Service;

use crate::body::CoalesceBody;
use crate::error::broken;
use crate::events::CoalesceEventKind;
use crate::key::vary_allows;
use crate::slot::{Answer, Waiter};
use crate::upstream::Upstream;

/// The waiter of a shared call made by `S`.
type SharedWaiter<S, ReqB, B> = Waiter<Upstream<S, ReqB, B>, B>;

/// The future of [`Coalesce`](crate::Coalesce): the inner service's own call (its
/// readiness, then the call), or a place among the waiters of a shared call, until the
/// caller's deadline. Dropping it leaves the call; the last caller to leave cancels it.
#[pin_project]
pub struct ResponseFuture<S, ReqB, B>
where
    S: Service<Request<ReqB>> + Send + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
    B: Send + 'static,
{
    #[pin]
    state: State<S, ReqB, B>,
}

#[pin_project(project = StateProj)]
enum State<S, ReqB, B>
where
    S: Service<Request<ReqB>> + Send + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
    B: Send + 'static,
{
    /// Sending our own call: waiting for the inner service's readiness.
    Readying {
        service: S,
        request: Option<Request<ReqB>>,
    },
    /// The inner service's own call.
    Own {
        #[pin]
        future: S::Future,
    },
    /// Waiting for a shared call, with what it takes to send our own if the answer is not
    /// ours to take (a joiner's), until the caller's deadline, if it has one: its timer
    /// is made at the first `Pending` (in `poll`, so that `call` needs no runtime), pinned
    /// here.
    Waiting {
        waiter: SharedWaiter<S, ReqB, B>,
        resend: Option<(S, Request<ReqB>)>,
        deadline: Option<Instant>,
        #[pin]
        timer: Option<Sleep>,
    },
    Done,
}

impl<S, ReqB, B> ResponseFuture<S, ReqB, B>
where
    S: Service<Request<ReqB>> + Send + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
    B: Send + 'static,
{
    /// The request's own call, readiness first.
    pub(crate) fn passed(service: S, request: Request<ReqB>) -> Self {
        ResponseFuture {
            state: State::Readying {
                service,
                request: Some(request),
            },
        }
    }

    /// A wait for a shared call, ended at `deadline` (its `Sleep` made at the first
    /// `Pending`, only if it has one).
    pub(crate) fn waiting(
        waiter: SharedWaiter<S, ReqB, B>,
        resend: Option<(S, Request<ReqB>)>,
        deadline: Option<Deadline>,
    ) -> Self {
        ResponseFuture {
            state: State::Waiting {
                waiter,
                resend,
                deadline: deadline.map(|deadline| deadline.instant()),
                timer: None,
            },
        }
    }
}

impl<S, ReqB, B> fmt::Debug for ResponseFuture<S, ReqB, B>
where
    S: Service<Request<ReqB>> + Send + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
    B: Send + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Readying { .. } => "readying",
            State::Own { .. } => "own",
            State::Waiting { .. } => "waiting",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, ReqB, B> Future for ResponseFuture<S, ReqB, B>
where
    S: Service<Request<ReqB>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqB: Send + 'static,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<CoalesceBody<B>>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut state = self.as_mut().project().state;
            match state.as_mut().project() {
                StateProj::Own { future } => {
                    let result = ready!(future.poll(cx));
                    state.set(State::Done);
                    return Poll::Ready(
                        result
                            .map(|response| response.map(CoalesceBody::own))
                            .map_err(Into::into),
                    );
                }
                StateProj::Waiting {
                    waiter,
                    resend,
                    deadline,
                    mut timer,
                } => {
                    let answer = match waiter.poll(cx) {
                        Poll::Ready(answer) => answer,
                        Poll::Pending => {
                            if let Some(deadline) = *deadline {
                                if timer.is_none() {
                                    timer.set(Some(tokio::time::sleep_until(deadline)));
                                }
                            }
                            if let Some(timer) = timer.as_pin_mut() {
                                ready!(timer.poll(cx));
                                // The caller's deadline: it leaves the call (the last
                                // waiter to leave cancels it).
                                let name = waiter.slot().shared().reporter.name.clone();
                                state.set(State::Done);
                                let rejection =
                                    Rejection::new(RejectionKind::DeadlineExceeded, name)
                                        .with_reason(
                                            "deadline passed waiting for a coalesced call",
                                        );
                                return Poll::Ready(Err(rejection.into()));
                            }
                            return Poll::Pending;
                        }
                    };
                    let resend_reason = match answer {
                        Answer::Response(response, has_vary) => {
                            // A joiner's request may differ from the leader's in a header
                            // the answer varies by: then it is not this caller's answer.
                            let varies = has_vary
                                && resend.as_ref().is_some_and(|(_, request)| {
                                    !vary_allows(
                                        waiter.slot().stored_key(),
                                        response.headers(),
                                        request.headers(),
                                    )
                                });
                            if !varies {
                                state.set(State::Done);
                                return Poll::Ready(Ok(response));
                            }
                            CoalesceEventKind::Varied
                        }
                        Answer::Error(error) => {
                            state.set(State::Done);
                            return Poll::Ready(Err(error));
                        }
                        Answer::Resend => CoalesceEventKind::Resent,
                    };
                    waiter.slot().shared().reporter.report(resend_reason);
                    let Some((service, request)) = resend.take() else {
                        state.set(State::Done);
                        return Poll::Ready(Err(broken("no request to resend")));
                    };
                    state.set(State::Readying {
                        service,
                        request: Some(request),
                    });
                }
                StateProj::Readying { service, request } => {
                    if let Err(error) = ready!(service.poll_ready(cx)) {
                        state.set(State::Done);
                        return Poll::Ready(Err(error.into()));
                    }
                    let Some(request) = request.take() else {
                        state.set(State::Done);
                        return Poll::Ready(Err(broken("request already sent")));
                    };
                    let future = service.call(request);
                    state.set(State::Own { future });
                }
                StateProj::Done => return Poll::Ready(Err(polled_after_completion())),
            }
        }
    }
}
