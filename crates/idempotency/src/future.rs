//! [`ResponseFuture`]: the future of an [`Idempotency`](crate::Idempotency) service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project::pin_project;

use crate::body::ResponseBody;

/// The work of a keyed request: fingerprint, claim, run, keep.
pub(crate) type KeyedFuture<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

/// The future of an [`Idempotency`](crate::Idempotency) service. A request the layer
/// passes by costs no allocation; a keyed one is boxed (it awaits the store). Polled again
/// after it completed, it stays pending.
#[pin_project]
pub struct ResponseFuture<F, B, E> {
    #[pin]
    kind: Kind<F, B, E>,
}

#[pin_project(project = KindProj)]
enum Kind<F, B, E> {
    Passed(#[pin] Option<F>),
    Ready(Option<Response<ResponseBody<B>>>),
    Keyed(Option<KeyedFuture<B, E>>),
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn passed(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Passed(Some(future)),
        }
    }

    pub(crate) fn ready(response: Response<ResponseBody<B>>) -> Self {
        ResponseFuture {
            kind: Kind::Ready(Some(response)),
        }
    }

    pub(crate) fn keyed(future: KeyedFuture<B, E>) -> Self {
        ResponseFuture {
            kind: Kind::Keyed(Some(future)),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passed(mut slot) => {
                let Some(future) = slot.as_mut().as_pin_mut() else {
                    return Poll::Pending;
                };
                let result = ready!(future.poll(cx));
                slot.set(None);
                Poll::Ready(result.map(|response| response.map(ResponseBody::passed)))
            }
            KindProj::Ready(response) => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            KindProj::Keyed(slot) => {
                let Some(future) = slot.as_mut() else {
                    return Poll::Pending;
                };
                let output = ready!(future.as_mut().poll(cx));
                *slot = None;
                Poll::Ready(output)
            }
        }
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Passed(_) => "passed",
            Kind::Ready(_) => "ready",
            Kind::Keyed(_) => "keyed",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}
