use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project::pin_project;
use tower_bulwark_core::BoxError;
use tower_service::Service;

use crate::compartment::{Holder, Permit};
use crate::wait::Wait;

/// Response future of [`Bulkhead`](crate::Bulkhead).
#[pin_project]
pub struct ResponseFuture<S: Service<Req>, Req> {
    #[pin]
    kind: Kind<S, Req>,
}

#[pin_project(project = KindProjection)]
enum Kind<S: Service<Req>, Req> {
    /// Boxed: a queued call allocates, so that the future of a call that finds a free
    /// permit stays small (moving a large future costs more than the permit itself).
    Waiting(Pin<Box<Waiting<S, Req>>>),
    Running {
        #[pin]
        future: S::Future,
        permit: Option<Permit>,
    },
    Refused {
        error: Option<BoxError>,
    },
}

/// A call waiting in the queue with its readied service and its request.
#[pin_project(project = WaitingProjection)]
struct Waiting<S, Req> {
    #[pin]
    wait: Wait,
    service: Option<S>,
    request: Option<Req>,
    compartment: Holder,
}

/// A call's result and the permit it still holds, if it was admitted.
pub(crate) type WithPermit<T> = (Result<T, BoxError>, Option<Permit>);

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    #[inline(always)]
    pub(crate) fn running(future: S::Future, permit: Permit) -> Self {
        ResponseFuture {
            kind: Kind::Running {
                future,
                permit: Some(permit),
            },
        }
    }

    pub(crate) fn refused(error: BoxError) -> Self {
        ResponseFuture {
            kind: Kind::Refused { error: Some(error) },
        }
    }

    pub(crate) fn waiting(wait: Wait, service: S, request: Req, compartment: Holder) -> Self {
        ResponseFuture {
            kind: Kind::Waiting(Box::pin(Waiting {
                wait,
                service: Some(service),
                request: Some(request),
                compartment,
            })),
        }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The permit is released here, when the response is ready.
        self.poll_with_permit(cx).map(|(result, _permit)| result)
    }
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    /// The result and, for an admitted call, its still-held permit.
    #[inline]
    pub(crate) fn poll_with_permit(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<WithPermit<S::Response>> {
        let mut kind = self.project().kind;
        loop {
            let next = match kind.as_mut().project() {
                KindProjection::Running { future, permit } => {
                    let result = ready!(future.poll(cx));
                    return Poll::Ready((result.map_err(Into::into), permit.take()));
                }
                KindProjection::Refused { error } => {
                    let error = error
                        .take()
                        .unwrap_or_else(tower_bulwark_core::polled_after_completion);
                    return Poll::Ready((Err(error), None));
                }
                KindProjection::Waiting(waiting) => {
                    let WaitingProjection {
                        wait,
                        service,
                        request,
                        compartment,
                    } = waiting.as_mut().project();
                    match ready!(wait.poll_permit(cx, compartment)) {
                        Ok(permit) => {
                            let (Some(mut service), Some(request)) =
                                (service.take(), request.take())
                            else {
                                unreachable!("a waiting call holds its service and request");
                            };
                            Kind::Running {
                                future: service.call(request),
                                permit: Some(permit),
                            }
                        }
                        Err(reason) => Kind::Refused {
                            error: Some(compartment.refuse(reason)),
                        },
                    }
                }
            };
            kind.set(next);
        }
    }
}

impl<S: Service<Req>, Req> std::fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
