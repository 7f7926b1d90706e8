//! gRPC done the gRPC way, over real tonic on loopback (issue 14): a refusal in the client
//! preset reaches the generated client as the right `tonic::Status`; a shed answer carries
//! gRPC's own "do not retry"; `GrpcRetry` retries only methods marked retryable, or calls
//! that never reached the server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::transport::{Channel, Server};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::filter::AsyncFilterLayer;
use tower::ServiceBuilder;
use tower_bulwark::bulkhead::BulkheadLayer;
use tower_bulwark::deadline::TimeoutLayer;
use tower_bulwark::presets::ClientPreset;
use tower_bulwark::repeat::GrpcMethods;
use tower_bulwark::retry::{pushback, GrpcRetry, Pushback};
use tower_bulwark::{BoxError, GrpcCode, HandleRejectionsLayer, Rejection, RejectionKind};

/// The method every test calls.
const CHECK: &str = "/grpc.health.v1.Health/Check";

/// The server's side of a test: its address, the calls it saw, a permit per call entered.
struct Backend {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    entered: Arc<Semaphore>,
}

/// A tonic health server whose calls do what their `x-test` metadata says: `unavailable`
/// (refused as by an open breaker: `UNAVAILABLE`), `shed` (refused as by a shed layer that
/// asks for 200 ms: `RESOURCE_EXHAUSTED`), `hang` (never answered), `denied` (a
/// `PERMISSION_DENIED` status as the error, as an auth filter gives); otherwise answered.
/// Its rejections are answered by `handle`.
async fn backend_with(handle: HandleRejectionsLayer) -> Backend {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let entered = Arc::new(Semaphore::new(0));
    let (count, enter) = (calls.clone(), entered.clone());
    let control = move |request: http::Request<tonic::body::Body>| {
        count.fetch_add(1, SeqCst);
        enter.add_permits(1);
        let what = request.headers().get("x-test").cloned();
        async move {
            match what.as_ref().map(|v| v.as_bytes()) {
                Some(b"unavailable") => Err(Rejection::new(RejectionKind::CircuitOpen, "server"))?,
                Some(b"shed") => Err(Rejection::new(RejectionKind::Overloaded, "server")
                    .with_retry_after(Duration::from_millis(200)))?,
                Some(b"hang") => std::future::pending().await,
                Some(b"denied") => {
                    let mut denied = tonic::Status::permission_denied("no entry: 100% sure");
                    denied
                        .metadata_mut()
                        .insert("x-policy", "members-only".parse().unwrap());
                    Err(denied)?
                }
                _ => Ok::<_, BoxError>(request),
            }
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        let _keep_reporting = reporter;
        Server::builder()
            .layer(
                ServiceBuilder::new()
                    .layer(handle)
                    .layer(AsyncFilterLayer::new(control)),
            )
            .add_service(health)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    Backend {
        addr,
        calls,
        entered,
    }
}

async fn backend() -> Backend {
    backend_with(HandleRejectionsLayer::new()).await
}

fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy()
}

/// A health client through `$preset.tonic_layer()` to `$channel`, counting the attempts
/// that reach the transport in `$sent`.
macro_rules! client {
    ($preset:expr, $channel:expr, $sent:expr) => {{
        let sent: Arc<AtomicUsize> = $sent.clone();
        HealthClient::new(
            ServiceBuilder::new()
                .layer($preset.tonic_layer())
                .map_request(move |request: http::Request<tonic::body::Body>| {
                    sent.fetch_add(1, SeqCst);
                    request
                })
                .service($channel),
        )
    }};
}

/// A health check with `x-test: what`, if any.
fn check(what: Option<&'static str>) -> tonic::Request<HealthCheckRequest> {
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    if let Some(what) = what {
        request
            .metadata_mut()
            .insert("x-test", what.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn an_open_breaker_reaches_the_tonic_client_as_unavailable() {
    let backend = backend().await;
    let preset = ClientPreset::grpc("health").unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let mut client = client!(preset, channel(backend.addr), sent);
    assert!(client.check(check(None)).await.is_ok());

    preset.breaker.handle().force_open();
    let status = client.check(check(None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "circuit open");
    assert_eq!(backend.calls.load(SeqCst), 1, "refused locally");
    // The refusal is still there for code above the client to find.
    let rejection = Rejection::find(&status).expect("the rejection as the source");
    assert_eq!(rejection.kind(), RejectionKind::CircuitOpen);
}

#[tokio::test]
async fn a_full_bulkhead_reaches_the_tonic_client_as_resource_exhausted() {
    let backend = backend().await;
    let mut preset = ClientPreset::grpc("health").unwrap();
    preset.bulkhead = BulkheadLayer::builder()
        .name("health")
        .max_concurrent(1)
        .build()
        .unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let client = client!(preset, channel(backend.addr), sent);

    let held = tokio::spawn({
        let mut client = client.clone();
        async move { client.check(check(Some("hang"))).await }
    });
    backend.entered.acquire().await.unwrap().forget();
    let status = client.clone().check(check(None)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(status.message(), "bulkhead full (queue full)");
    assert_eq!(backend.calls.load(SeqCst), 1);
    held.abort();
}

#[tokio::test]
async fn an_attempt_timeout_reaches_the_tonic_client_as_deadline_exceeded() {
    let backend = backend().await;
    let mut preset = ClientPreset::grpc("health").unwrap();
    preset.timeout = TimeoutLayer::new(Duration::from_millis(200)).unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let mut client = client!(preset, channel(backend.addr), sent);

    let status = client.check(check(Some("hang"))).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(status.message(), "timed out");
}

#[tokio::test]
async fn a_shed_answer_tells_grpc_clients_not_to_retry() {
    let backend = backend().await;
    let mut plain = HealthClient::new(channel(backend.addr));
    let status = plain.check(check(Some("shed"))).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let metadata = status.metadata();
    assert_eq!(
        metadata.get("grpc-retry-pushback-ms").unwrap(),
        "-1",
        "gRFC A6: do not retry"
    );
    assert_eq!(metadata.get("x-bulwark-overloaded").unwrap(), "true");
    let headers = metadata.clone().into_headers();
    assert_eq!(pushback(&headers, Duration::from_secs(60)), Pushback::Never);

    // Our own retry, with the method marked retryable on RESOURCE_EXHAUSTED: one call.
    let marked = GrpcMethods::new().method(CHECK).unwrap();
    let retry = GrpcRetry::new()
        .methods(marked, &[GrpcCode::ResourceExhausted])
        .unwrap();
    let preset = ClientPreset::grpc_with("health", retry).unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let mut client = client!(preset, channel(backend.addr), sent);
    let status = client.check(check(Some("shed"))).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(sent.load(SeqCst), 1, "not retried");
    assert_eq!(backend.calls.load(SeqCst), 2);
}

#[tokio::test]
async fn a_server_may_let_grpc_clients_retry_its_sheds() {
    let backend = backend_with(HandleRejectionsLayer::new().allow_grpc_shed_retries()).await;
    let mut plain = HealthClient::new(channel(backend.addr));
    let status = plain.check(check(Some("shed"))).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let pushback = status.metadata().get("grpc-retry-pushback-ms").unwrap();
    assert_eq!(pushback, "200", "the shedding layer's wait");
}

#[tokio::test]
async fn grpc_retry_repeats_only_the_methods_marked_retryable() {
    let backend = backend().await;
    let attempts = |retry: GrpcRetry, what: &'static str| {
        let addr = backend.addr;
        let calls = backend.calls.clone();
        async move {
            let before = calls.load(SeqCst);
            let mut preset = ClientPreset::grpc_with("health", retry).unwrap();
            preset.timeout = TimeoutLayer::new(Duration::from_millis(200)).unwrap();
            let sent = Arc::new(AtomicUsize::new(0));
            let mut client = client!(preset, channel(addr), sent);
            let status = client.check(check(Some(what))).await.unwrap_err();
            (status.code(), calls.load(SeqCst) - before)
        }
    };
    // Not marked (the preset's default): the call reached the server, and may have run.
    assert_eq!(
        attempts(GrpcRetry::new(), "unavailable").await,
        (Code::Unavailable, 1)
    );
    assert_eq!(
        attempts(GrpcRetry::new(), "hang").await,
        (Code::DeadlineExceeded, 1),
        "an attempt timeout on a method not known to be safe to repeat"
    );
    // Marked, by method or by service: the preset's 3 attempts.
    let by_method = GrpcRetry::new().method(CHECK).unwrap();
    assert_eq!(
        attempts(by_method.clone(), "unavailable").await,
        (Code::Unavailable, 3)
    );
    assert_eq!(
        attempts(by_method, "hang").await,
        (Code::DeadlineExceeded, 3)
    );
    let by_service = GrpcRetry::new().service("grpc.health.v1.Health").unwrap();
    assert_eq!(
        attempts(by_service, "unavailable").await,
        (Code::Unavailable, 3)
    );
    // Another method's rule does not cover this one.
    let other = GrpcRetry::new().service("grpc.health.v1.Other").unwrap();
    assert_eq!(attempts(other, "unavailable").await, (Code::Unavailable, 1));
}

#[tokio::test]
async fn a_call_that_never_reached_the_server_is_retried_whatever_its_method() {
    // Nothing listens there any more: every attempt's connection is refused.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let preset = ClientPreset::grpc("health").unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let mut client = client!(preset, channel(addr), sent);
    let status = client.check(check(None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(sent.load(SeqCst), 3, "every attempt of the preset");
}

/// An HTTP/2 server that refuses every stream with `REFUSED_STREAM` (which promises that it
/// did no processing), counting them.
async fn refusing_streams() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let streams = Arc::new(AtomicUsize::new(0));
    let count = streams.clone();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let count = count.clone();
            tokio::spawn(async move {
                let mut connection = h2::server::handshake(socket).await.unwrap();
                while let Some(Ok((_request, mut respond))) = connection.accept().await {
                    count.fetch_add(1, SeqCst);
                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                }
            });
        }
    });
    (addr, streams)
}

#[tokio::test]
async fn a_stream_the_server_refused_is_retried_whatever_its_method() {
    let (addr, streams) = refusing_streams().await;
    let preset = ClientPreset::grpc("health").unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let mut client = client!(preset, channel(addr), sent);
    client.check(check(None)).await.unwrap_err();
    assert_eq!(sent.load(SeqCst), 3, "every attempt of the preset");
    assert_eq!(streams.load(SeqCst), 3);
}

#[tokio::test]
async fn a_status_error_below_handle_rejections_reaches_the_client_as_that_status() {
    // What tonic's server makes of a layer's `Status` error, `HandleRejectionsLayer` above
    // it must not turn into `UNKNOWN`.
    let backend = backend().await;
    let mut plain = HealthClient::new(channel(backend.addr));
    let status = plain.check(check(Some("denied"))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(status.message(), "no entry: 100% sure");
    assert_eq!(status.metadata().get("x-policy").unwrap(), "members-only");
    // The server still answers other calls.
    assert!(plain.check(check(None)).await.is_ok());
}

/// Refuses in `poll_ready` with an open circuit that asks for 250 ms, as a user's
/// readiness-mode layer may; `call` passes through.
#[derive(Clone)]
struct RefusingReadiness<S>(S);

impl<S, R> tower::Service<R> for RefusingReadiness<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        let open = Rejection::new(RejectionKind::CircuitOpen, "readiness")
            .with_retry_after(Duration::from_millis(250));
        std::task::Poll::Ready(Err(open.into()))
    }

    fn call(&mut self, request: R) -> Self::Future {
        let future = self.0.call(request);
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}

#[tokio::test]
async fn a_readiness_refusal_reaches_a_generated_client_as_its_status() {
    // Generated clients wrap a `poll_ready` error in `UNKNOWN` ("Service was not ready");
    // only an error from the call is read with `Status::from_error`.
    let backend = backend().await;
    let mut client = HealthClient::new(
        ServiceBuilder::new()
            .layer(tower_bulwark::RejectionsAsStatusLayer::new())
            .service(RefusingReadiness(channel(backend.addr))),
    );
    for _ in 0..2 {
        let status = client.check(check(None)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert_eq!(status.message(), "circuit open");
        assert_eq!(
            status.metadata().get("grpc-retry-pushback-ms").unwrap(),
            "250"
        );
        let rejection = Rejection::find(&status).expect("the rejection as the source");
        assert_eq!(rejection.kind(), RejectionKind::CircuitOpen);
    }
    assert_eq!(backend.calls.load(SeqCst), 0, "never sent");
}
