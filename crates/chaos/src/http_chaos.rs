//! [`HttpChaosLayer`]: faults for HTTP and gRPC services (feature `http`).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use tower_bulwark_core::grpc::{GrpcCode, GRPC_MESSAGE, GRPC_STATUS};
use tower_bulwark_core::{is_grpc_request, BoxError, ConfigError};
use tower_layer::Layer;
use tower_service::Service;

use crate::injector::{Fault, Injector};
use crate::{ChaosBuilder, ChaosError, ChaosFuture, ChaosHandle};

/// Targeting header: delay this request by this many milliseconds (at most an hour).
pub const FAULT_DELAY_HEADER: &str = "x-bulwark-fault-delay-ms";
/// Targeting header: answer this request with this HTTP status (200 to 599, a final status;
/// any other value is ignored).
pub const FAULT_STATUS_HEADER: &str = "x-bulwark-fault-status";
/// Targeting header: answer this gRPC call with this status code (0 to 16).
pub const FAULT_GRPC_HEADER: &str = "x-bulwark-fault-grpc-status";
/// Targeting header: abort this request (any value).
pub const FAULT_ABORT_HEADER: &str = "x-bulwark-fault-abort";

/// What an injected error answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFault {
    /// This HTTP status (gRPC calls get the gRPC code for it, as a gateway would map it).
    Status(StatusCode),
    /// This gRPC code, in a trailers-only response (plain HTTP calls get 500).
    Grpc(GrpcCode),
}

/// [`ChaosLayer`](crate::ChaosLayer) for HTTP and gRPC services: an injected error is a
/// response with the chosen status or gRPC code (503 by default), an abort fails the call
/// as a broken connection would (a [`ChaosError::Aborted`] error), and latency delays it.
///
/// Per-request targeting by header ([`FAULT_DELAY_HEADER`], [`FAULT_STATUS_HEADER`],
/// [`FAULT_GRPC_HEADER`], [`FAULT_ABORT_HEADER`]) is **off unless
/// [`enable_header_targeting`](Self::enable_header_targeting) is called**: otherwise the
/// headers are ignored, so nobody outside can trigger a fault in production. The kill
/// switch stops both.
///
/// ```
/// use http::StatusCode;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_bulwark_chaos::{ChaosLayer, HttpChaosLayer, HttpFault};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let chaos = HttpChaosLayer::new(ChaosLayer::builder().error_rate(1.0).seed(1))
///     .unwrap()
///     .answer(HttpFault::Status(StatusCode::BAD_GATEWAY));
/// let service = chaos.layer(service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// }));
/// let response = service.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(response.status(), 502);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct HttpChaosLayer {
    injector: Arc<Injector>,
    answer: HttpFault,
    header_targeting: bool,
}

impl HttpChaosLayer {
    /// The faults of `chaos`, checked, answered as HTTP 503 until [`answer`](Self::answer).
    pub fn new(chaos: ChaosBuilder) -> Result<Self, ConfigError> {
        Ok(HttpChaosLayer {
            injector: Arc::new(chaos.injector()?),
            answer: HttpFault::Status(StatusCode::SERVICE_UNAVAILABLE),
            header_targeting: false,
        })
    }

    /// What an injected error answers.
    pub fn answer(mut self, answer: HttpFault) -> Self {
        self.answer = answer;
        self
    }

    /// Lets requests ask for faults by header. Only for test environments and game days.
    pub fn enable_header_targeting(mut self) -> Self {
        self.header_targeting = true;
        self
    }

    /// The kill switch and counters.
    pub fn handle(&self) -> ChaosHandle {
        ChaosHandle::new(self.injector.clone())
    }
}

impl<S> Layer<S> for HttpChaosLayer {
    type Service = HttpChaos<S>;

    fn layer(&self, inner: S) -> HttpChaos<S> {
        HttpChaos {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of an [`HttpChaosLayer`].
#[derive(Debug, Clone)]
pub struct HttpChaos<S> {
    inner: S,
    layer: HttpChaosLayer,
}

/// A fault asked for by header.
enum Targeted {
    Abort,
    Answer(HttpFault),
    Delay(Duration),
}

fn targeted(headers: &HeaderMap) -> Option<Targeted> {
    if headers.contains_key(FAULT_ABORT_HEADER) {
        return Some(Targeted::Abort);
    }
    let number = |name: &str| -> Option<u64> {
        let value = headers.get(name)?.to_str().ok()?;
        value.parse().ok()
    };
    // `StatusCode` takes 100 to 999; a final response status is 200 to 599 (a 1xx is not
    // final: hyper answers 500 instead, or takes 101 for an upgrade).
    if let Some(status) = number(FAULT_STATUS_HEADER)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| (200..=599).contains(n))
        .and_then(|n| StatusCode::from_u16(n).ok())
    {
        return Some(Targeted::Answer(HttpFault::Status(status)));
    }
    if let Some(code) = number(FAULT_GRPC_HEADER)
        .and_then(|n| i32::try_from(n).ok())
        .and_then(GrpcCode::from_i32)
    {
        return Some(Targeted::Answer(HttpFault::Grpc(code)));
    }
    number(FAULT_DELAY_HEADER)
        .filter(|ms| *ms <= 3_600_000)
        .map(|ms| Targeted::Delay(Duration::from_millis(ms)))
}

/// The response for an injected error on a request with `headers`.
fn answer<B: Default>(fault: HttpFault, headers: &HeaderMap) -> Response<B> {
    let grpc = is_grpc_request(headers);
    let mut response = Response::new(B::default());
    match (fault, grpc) {
        (HttpFault::Status(status), false) => *response.status_mut() = status,
        (HttpFault::Grpc(_), false) => *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
        (fault, true) => {
            let code = match fault {
                HttpFault::Grpc(code) => code,
                HttpFault::Status(status) => GrpcCode::from_http_status(status),
            };
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            headers.insert(GRPC_STATUS, HeaderValue::from_static(code.as_header_str()));
            headers.insert(GRPC_MESSAGE, HeaderValue::from_static("injected%20fault"));
        }
    }
    response
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for HttpChaos<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ChaosFuture<S::Future, Response<ResB>>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let layer = &self.layer;
        let injector = &layer.injector;
        if !injector.is_enabled() {
            return ChaosFuture::pass(self.inner.call(request));
        }
        let targeted = if layer.header_targeting {
            targeted(request.headers())
        } else {
            None
        };
        let (fault, answer_with) = match targeted {
            Some(Targeted::Abort) => (injector.count(Fault::Abort), layer.answer),
            Some(Targeted::Delay(delay)) => (injector.count(Fault::Delay(delay)), layer.answer),
            Some(Targeted::Answer(fault)) => (injector.count(Fault::Error), fault),
            None => (injector.decide(), layer.answer),
        };
        match fault {
            Fault::None => ChaosFuture::pass(self.inner.call(request)),
            Fault::Delay(delay) => ChaosFuture::delayed(self.inner.call(request), delay),
            Fault::Error => ChaosFuture::done(Ok(answer(answer_with, request.headers()))),
            Fault::Abort => ChaosFuture::done(Err(ChaosError::Aborted.into())),
        }
    }
}
