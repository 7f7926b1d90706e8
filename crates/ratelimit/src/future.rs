//! [`ResponseFuture`]: the response of a [`RateLimit`](crate::RateLimit) service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project::pin_project;
use tower_service::Service;

use crate::check::Check;
use crate::config::{Judged, RateHeaders, Shared};
use crate::Limiter;

/// The response future of a [`RateLimit`](crate::RateLimit) service: the inner service's
/// response (with the rate limit headers), or the layer's refusal.
#[pin_project]
pub struct ResponseFuture<S, L, K, B>
where
    S: Service<Request<B>>,
    L: Limiter<K>,
{
    #[pin]
    state: State<S, L, K, B>,
}

#[pin_project(project = StateProj)]
enum State<S, L, K, B>
where
    S: Service<Request<B>>,
    L: Limiter<K>,
{
    /// Admitted (or not limited): the inner service's call.
    Called {
        #[pin]
        future: S::Future,
        headers: Option<RateHeaders>,
    },
    /// Refused: the refusal, until taken.
    Answered { response: Option<S::Response> },
    /// Waiting for a limiter's answer, with the request and the readied service (boxed:
    /// only a limiter that answers through a future, which allocates its own, comes here,
    /// and every other future stays small).
    Checking {
        #[pin]
        acquire: L::Future,
        check: Check<K>,
        held: Option<Box<(S, Request<B>)>>,
        shared: Arc<Shared<L, K>>,
    },
}

impl<S, L, K, B> ResponseFuture<S, L, K, B>
where
    S: Service<Request<B>>,
    L: Limiter<K>,
{
    pub(crate) fn called(future: S::Future, headers: Option<RateHeaders>) -> Self {
        ResponseFuture {
            state: State::Called { future, headers },
        }
    }

    pub(crate) fn answered(response: S::Response) -> Self {
        ResponseFuture {
            state: State::Answered {
                response: Some(response),
            },
        }
    }

    pub(crate) fn checking(
        acquire: L::Future,
        check: Check<K>,
        inner: S,
        request: Request<B>,
        shared: Arc<Shared<L, K>>,
    ) -> Self {
        ResponseFuture {
            state: State::Checking {
                acquire,
                check,
                held: Some(Box::new((inner, request))),
                shared,
            },
        }
    }
}

impl<S, L, K, B, ResB> Future for ResponseFuture<S, L, K, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    L: Limiter<K>,
    ResB: Default,
{
    type Output = Result<Response<ResB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Called { future, headers } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(headers) = headers.take() {
                        headers.write(response.headers_mut());
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Answered { response } => {
                    // Polled again after it answered: a 500, never a panic.
                    let response = response.take().unwrap_or_else(|| {
                        let mut response = Response::new(ResB::default());
                        *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                        response
                    });
                    return Poll::Ready(Ok(response));
                }
                StateProj::Checking {
                    mut acquire,
                    check,
                    held,
                    shared,
                } => {
                    let answer = ready!(acquire.as_mut().poll(cx));
                    let verdict = match check.answer(answer, &shared.quotas) {
                        Some(verdict) => verdict,
                        None => match check.run_now(&shared.quotas) {
                            Some(verdict) => verdict,
                            None => {
                                let next = check.limiter(&shared.quotas).acquire(&check.key);
                                acquire.set(next);
                                continue;
                            }
                        },
                    };
                    let (mut inner, request) = *held.take().expect("polled after completion");
                    let judged = shared.judge(verdict, check.criticality, request.headers());
                    let next = match judged {
                        Judged::Pass(headers) => State::Called {
                            future: inner.call(request),
                            headers,
                        },
                        Judged::Answer(response) => State::Answered {
                            response: Some(response),
                        },
                    };
                    state.set(next);
                }
            }
        }
    }
}

impl<S, L, K, B> fmt::Debug for ResponseFuture<S, L, K, B>
where
    S: Service<Request<B>>,
    L: Limiter<K>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Called { .. } => "called",
            State::Answered { .. } => "answered",
            State::Checking { .. } => "checking",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
