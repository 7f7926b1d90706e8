//! [`ResponseFuture`]: a caller's wait for its answer.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project::pin_project;
use tower_bulwark_core::{polled_after_completion, BoxError};
use tower_service::Service;

use crate::body::CoalesceBody;
use crate::error::broken;
use crate::events::CoalesceEventKind;
use crate::slot::{Answer, Waiter};

/// The future of [`Coalesce`](crate::Coalesce): the inner service's own call, or a place
/// among the waiters of a shared call. Dropping it leaves the call; the last caller to
/// leave cancels it.
#[pin_project]
pub struct ResponseFuture<S, ReqB, B>
where
    S: Service<Request<ReqB>>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    #[pin]
    state: State<S, ReqB, B>,
}

#[pin_project(project = StateProj)]
enum State<S, ReqB, B>
where
    S: Service<Request<ReqB>>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    /// The inner service's own call.
    Own {
        #[pin]
        future: S::Future,
    },
    /// Waiting for a shared call, with what it takes to send our own if the answer is not
    /// shared.
    Waiting {
        waiter: Waiter<S::Future, B>,
        resend: Option<(S, Request<ReqB>)>,
    },
    /// Sending our own call after all: waiting for the inner service's readiness.
    Resending {
        service: S,
        request: Option<Request<ReqB>>,
    },
    Done,
}

impl<S, ReqB, B> ResponseFuture<S, ReqB, B>
where
    S: Service<Request<ReqB>>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    pub(crate) fn passed(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Own { future },
        }
    }

    pub(crate) fn waiting(
        waiter: Waiter<S::Future, B>,
        resend: Option<(S, Request<ReqB>)>,
    ) -> Self {
        ResponseFuture {
            state: State::Waiting { waiter, resend },
        }
    }
}

impl<S, ReqB, B> fmt::Debug for ResponseFuture<S, ReqB, B>
where
    S: Service<Request<ReqB>>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Own { .. } => "own",
            State::Waiting { .. } => "waiting",
            State::Resending { .. } => "resending",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, ReqB, B> Future for ResponseFuture<S, ReqB, B>
where
    S: Service<Request<ReqB>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
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
                StateProj::Waiting { waiter, resend } => {
                    let answer = ready!(waiter.poll(cx));
                    match answer {
                        Answer::Response(response) => {
                            state.set(State::Done);
                            return Poll::Ready(Ok(response));
                        }
                        Answer::Error(error) => {
                            state.set(State::Done);
                            return Poll::Ready(Err(error));
                        }
                        Answer::Resend => {
                            waiter
                                .slot()
                                .shared()
                                .reporter
                                .report(CoalesceEventKind::Resent);
                            let Some((service, request)) = resend.take() else {
                                state.set(State::Done);
                                return Poll::Ready(Err(broken("no request to resend")));
                            };
                            state.set(State::Resending {
                                service,
                                request: Some(request),
                            });
                        }
                    }
                }
                StateProj::Resending { service, request } => {
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
