//! [`PropagateCriticalityLayer`]: a client passes its request's criticality downstream.

use std::task::{Context, Poll};

use http::header::HeaderName;
use http::Request;
use tower_bulwark_core::{Criticality, CRITICALITY_HEADER};
use tower_layer::Layer;
use tower_service::Service;

const HEADER: HeaderName = HeaderName::from_static(CRITICALITY_HEADER);

/// Writes `x-request-criticality` on outgoing requests (feature `http`): the request's own
/// `Criticality` extension, else the current one (the handler's, set by the shed layer
/// that admitted the request being served), so the next service sheds the same work
/// first. With neither, the request goes out untouched.
///
/// ```
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_bulwark_core::Criticality;
/// use tower_bulwark_shed::PropagateCriticalityLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let client = PropagateCriticalityLayer.layer(service_fn(|r: http::Request<()>| async move {
///     Ok::<_, std::convert::Infallible>(r.headers()["x-request-criticality"].clone())
/// }));
/// // Inside a handler serving a sheddable request:
/// let sent = Criticality::Sheddable
///     .scope(client.oneshot(http::Request::new(())))
///     .await
///     .unwrap();
/// assert_eq!(sent, "sheddable");
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateCriticalityLayer;

impl<S> Layer<S> for PropagateCriticalityLayer {
    type Service = PropagateCriticality<S>;

    fn layer(&self, inner: S) -> PropagateCriticality<S> {
        PropagateCriticality { inner }
    }
}

/// The service of a [`PropagateCriticalityLayer`].
#[derive(Debug, Clone)]
pub struct PropagateCriticality<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for PropagateCriticality<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        let criticality = request
            .extensions()
            .get::<Criticality>()
            .copied()
            .or_else(Criticality::current);
        if let Some(criticality) = criticality {
            request
                .headers_mut()
                .insert(HEADER, criticality.header_value());
        }
        self.inner.call(request)
    }
}
