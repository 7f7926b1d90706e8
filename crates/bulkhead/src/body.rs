//! Holding a permit until an HTTP response body ends (feature `http`).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use tower_bulwark_core::BoxError;
use tower_layer::Layer;
use tower_service::Service;

use crate::compartment::Permit;
use crate::{Bulkhead, BulkheadLayer, DeadlineSource};

/// A response body that holds its call's bulkhead permit until the body reaches its end or
/// is dropped, so a streaming response counts against the limit for as long as it streams.
#[pin_project]
#[derive(Debug)]
pub struct PermitBody<B> {
    #[pin]
    inner: B,
    permit: Option<Permit>,
}

impl<B: Body> Body for PermitBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            // The end: give the place back now rather than when the body is dropped.
            this.permit.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// [`BulkheadLayer`] for HTTP services whose responses stream: the permit is held by the
/// response body ([`PermitBody`]) until the body ends. Made by
/// [`BulkheadLayer::hold_permit_for_body`].
#[derive(Debug, Clone)]
pub struct BodyBulkheadLayer<D> {
    layer: BulkheadLayer<D>,
}

impl<D> BulkheadLayer<D> {
    /// Holds each call's permit until its `http::Response` body ends or is dropped, instead
    /// of until the response head arrives.
    ///
    /// ```
    /// use http::{Request, Response};
    /// use http_body_util::Full;
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_bulwark_bulkhead::BulkheadLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = BulkheadLayer::builder().max_concurrent(1).build().unwrap();
    /// let handle = layer.handle();
    /// let service = layer.hold_permit_for_body().layer(service_fn(|_: Request<()>| async {
    ///     Ok::<_, std::io::Error>(Response::new(Full::new(&b"streaming"[..])))
    /// }));
    /// let response = service.oneshot(Request::new(())).await.unwrap();
    /// assert_eq!(handle.snapshot().in_flight, 1, "the body still holds the permit");
    /// drop(response);
    /// assert_eq!(handle.snapshot().in_flight, 0);
    /// # }
    /// ```
    pub fn hold_permit_for_body(self) -> BodyBulkheadLayer<D> {
        BodyBulkheadLayer { layer: self }
    }
}

impl<S, D: Clone> Layer<S> for BodyBulkheadLayer<D> {
    type Service = BodyBulkhead<S, D>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyBulkhead {
            inner: self.layer.layer(inner),
        }
    }
}

/// A bulkhead whose permits last until the response body ends. See
/// [`BulkheadLayer::hold_permit_for_body`].
#[derive(Debug, Clone)]
pub struct BodyBulkhead<S, D> {
    inner: Bulkhead<S, D>,
}

impl<S, D, Req, B> Service<Req> for BodyBulkhead<S, D>
where
    S: Service<Req, Response = http::Response<B>> + Clone,
    S::Error: Into<BoxError>,
    D: DeadlineSource<Req>,
{
    type Response = http::Response<PermitBody<B>>;
    type Error = BoxError;
    type Future = BodyResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        BodyResponseFuture {
            inner: self.inner.call(request),
        }
    }
}

/// Response future of [`BodyBulkhead`].
#[pin_project]
#[derive(Debug)]
pub struct BodyResponseFuture<S: Service<Req>, Req> {
    #[pin]
    inner: crate::ResponseFuture<S, Req>,
}

impl<S, Req, B> Future for BodyResponseFuture<S, Req>
where
    S: Service<Req, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<http::Response<PermitBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (result, permit) = ready!(self.project().inner.poll_with_permit(cx));
        Poll::Ready(result.map(|response| response.map(|inner| PermitBody { inner, permit })))
    }
}
