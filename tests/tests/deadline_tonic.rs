//! Deadline propagation through real tonic servers and clients over HTTP/2 on loopback.
//!
//! A hand-written `test.Relay/Call` service (tonic's server and client machinery with the
//! health protocol's messages, so no protoc is needed): asked for `"slow"`, it never
//! finishes; asked for `"relay"`, it calls the next server's `"slow"` through our propagate
//! layer. Every server runs our accept layer and rejection handler.
//!
//! tonic's `Channel` runs its own `grpc-timeout` timer on the client (and its `Server` one
//! around our layers), answering `CANCELLED`. Every server here stops its handler a generous
//! [`HEADROOM`] before the caller's deadline, so our `DEADLINE_EXCEEDED` arrives long before
//! those timers fire, however loaded the machine.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::{Channel, Server};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::{Layer, Service, ServiceBuilder};
use tower_bulwark::deadline::{parse_grpc_timeout, AcceptDeadlineLayer, PropagateDeadlineLayer};
use tower_bulwark::{BoxError, Deadline, HandleRejectionsLayer};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How long before the caller's deadline every server stops its handler.
const HEADROOM: Duration = Duration::from_secs(1);

/// The margin the relay's propagate layer keeps.
const MARGIN: Duration = Duration::from_millis(50);

/// What one server saw.
#[derive(Default)]
struct Seen {
    /// The `grpc-timeout` header it received.
    grpc_timeout: Mutex<Option<String>>,
    /// The time left its handler saw.
    remaining: Mutex<Option<Duration>>,
    /// Handlers dropped before they finished.
    dropped: AtomicUsize,
}

#[derive(Clone)]
struct Relay {
    seen: Arc<Seen>,
    next: Option<Channel>,
}

impl tonic::server::NamedService for Relay {
    const NAME: &'static str = "test.Relay";
}

impl<B> Service<http::Request<B>> for Relay
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let relay = self.clone();
        Box::pin(async move {
            let codec =
                tonic_prost::ProstCodec::<HealthCheckResponse, HealthCheckRequest>::default();
            Ok(tonic::server::Grpc::new(codec).unary(relay, request).await)
        })
    }
}

impl tonic::server::UnaryService<HealthCheckRequest> for Relay {
    type Response = HealthCheckResponse;
    type Future = BoxFuture<Result<tonic::Response<HealthCheckResponse>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<HealthCheckRequest>) -> Self::Future {
        let relay = self.clone();
        let remaining = Deadline::current().map(Deadline::remaining);
        *relay.seen.remaining.lock().unwrap() = remaining;
        Box::pin(async move {
            let mut guard = DropGuard(relay.seen.clone(), false);
            let result = match request.into_inner().service.as_str() {
                "relay" => call(relay.next.clone().expect("a next server"), "slow").await,
                // Never finishes: only the deadline ends it.
                _ => std::future::pending().await,
            };
            guard.1 = true;
            result.map(tonic::Response::new)
        })
    }
}

struct DropGuard(Arc<Seen>, bool);

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Calls `test.Relay/Call` on `channel` through our propagate layer ([`MARGIN`]).
async fn call(channel: Channel, what: &str) -> Result<HealthCheckResponse, tonic::Status> {
    let propagate = PropagateDeadlineLayer::builder()
        .margin(MARGIN)
        .build()
        .unwrap();
    call_with(propagate.layer(channel), tonic::Request::new(request(what))).await
}

async fn call_with<S>(
    service: S,
    request: tonic::Request<HealthCheckRequest>,
) -> Result<HealthCheckResponse, tonic::Status>
where
    S: tonic::client::GrpcService<tonic::body::Body>,
    S::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <S::ResponseBody as http_body::Body>::Error: Into<BoxError> + Send,
{
    let mut grpc = tonic::client::Grpc::new(service);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unknown(e.into().to_string()))?;
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    let path = http::uri::PathAndQuery::from_static("/test.Relay/Call");
    Ok(grpc.unary(request, path, codec).await?.into_inner())
}

fn request(what: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: what.to_string(),
    }
}

/// Serves a relay with our accept layer ([`HEADROOM`]), recording the `grpc-timeout` it
/// receives.
async fn serve(next: Option<SocketAddr>) -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let next = match next {
        Some(addr) => Some(channel(addr).await),
        None => None,
    };
    let relay = Relay {
        seen: seen.clone(),
        next,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let record = seen.clone();
    tokio::spawn(async move {
        Server::builder()
            .layer(
                ServiceBuilder::new()
                    .layer(HandleRejectionsLayer::new())
                    .map_request(move |request: http::Request<tonic::body::Body>| {
                        *record.grpc_timeout.lock().unwrap() = request
                            .headers()
                            .get("grpc-timeout")
                            .map(|v| v.to_str().unwrap().to_string());
                        request
                    })
                    .layer(
                        AcceptDeadlineLayer::builder()
                            .headroom(HEADROOM)
                            .build()
                            .unwrap(),
                    ),
            )
            .add_service(relay)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    (addr, seen)
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy()
}

fn timed(what: &str, timeout: Duration) -> tonic::Request<HealthCheckRequest> {
    let mut request = tonic::Request::new(request(what));
    request.set_timeout(timeout);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_is_dropped_and_the_caller_sees_deadline_exceeded() {
    let (addr, seen) = serve(None).await;
    // The handler gets 300 ms; the client's own timer fires a second later.
    let timeout = HEADROOM + Duration::from_millis(300);
    let status = call_with(channel(addr).await, timed("slow", timeout))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    let sent = seen.grpc_timeout.lock().unwrap().clone().unwrap();
    assert_eq!(parse_grpc_timeout(sent.as_bytes()).unwrap(), timeout);
    let remaining = seen
        .remaining
        .lock()
        .unwrap()
        .expect("the handler saw a deadline");
    assert!(
        remaining <= timeout - HEADROOM,
        "the caller's timeout less the headroom, at most: {remaining:?}"
    );
    assert_eq!(
        seen.dropped.load(Ordering::SeqCst),
        1,
        "the handler was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handlers_call_downstream_carries_a_smaller_grpc_timeout() {
    let (downstream, below) = serve(None).await;
    let (edge, above) = serve(Some(downstream)).await;
    // The downstream handler gets about 300 ms: two headrooms and a margin less.
    let timeout = HEADROOM * 2 + MARGIN + Duration::from_millis(300);
    let status = call_with(channel(edge).await, timed("relay", timeout))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");

    let sent = above.grpc_timeout.lock().unwrap().clone().unwrap();
    let sent = parse_grpc_timeout(sent.as_bytes()).unwrap();
    let passed_on = below.grpc_timeout.lock().unwrap().clone().unwrap();
    let passed_on = parse_grpc_timeout(passed_on.as_bytes()).unwrap();
    assert_eq!(sent, timeout);
    assert!(
        passed_on <= sent - HEADROOM - MARGIN,
        "the edge kept its headroom and margin: {sent:?} then {passed_on:?}"
    );
    let seen_below = below.remaining.lock().unwrap().unwrap();
    assert!(seen_below <= passed_on - HEADROOM, "{seen_below:?}");
    assert_eq!(
        below.dropped.load(Ordering::SeqCst),
        1,
        "the slow handler was dropped"
    );
    assert_eq!(
        above.dropped.load(Ordering::SeqCst),
        0,
        "the relay finished with the answer from below"
    );
}
