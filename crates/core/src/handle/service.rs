use std::convert::Infallible;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::future::{error_response, ResponseFuture};
use crate::rejection::is_grpc_request;
use crate::BoxError;

/// Middleware that turns errors into responses. See [`HandleRejectionsLayer`](super::HandleRejectionsLayer).
#[derive(Debug)]
pub struct HandleRejections<S> {
    inner: S,
    /// An error from the inner `poll_ready`, answered by the next `call`.
    ready_error: Option<BoxError>,
}

impl<S> HandleRejections<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        HandleRejections {
            inner,
            ready_error: None,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// A clone starts without the pending readiness error of the original.
impl<S: Clone> Clone for HandleRejections<S> {
    fn clone(&self) -> Self {
        HandleRejections::new(self.inner.clone())
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HandleRejections<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ready_error.is_some() {
            return Poll::Ready(Ok(()));
        }
        // A readiness error (a closed buffer, a refusing readiness-mode layer) cannot be
        // returned as `Infallible`: keep it and answer the next call with it.
        if let Err(error) = std::task::ready!(self.inner.poll_ready(cx)) {
            self.ready_error = Some(error.into());
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let grpc = is_grpc_request(request.headers());
        match self.ready_error.take() {
            Some(error) => ResponseFuture::ready(error_response(&error, grpc)),
            None => ResponseFuture::new(self.inner.call(request), grpc),
        }
    }
}
