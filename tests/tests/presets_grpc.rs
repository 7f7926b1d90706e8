//! The gRPC presets end to end: a tonic server (tonic-health's service) behind the server
//! preset, a tonic client through the client preset, over HTTP/2 on loopback.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tonic::transport::{Channel, Server};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::filter::AsyncFilterLayer;
use tower::ServiceBuilder;
use tower_bulwark::breaker::State;
use tower_bulwark::deadline::parse_grpc_timeout;
use tower_bulwark::health::DrainHandle;
use tower_bulwark::presets::{ClientPreset, ServerPreset};
use tower_bulwark::retry::GrpcRetry;
use tower_bulwark::{BoxError, Deadline};
use tower_bulwark_tests::Still;

async fn serve() -> (SocketAddr, DrainHandle) {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let preset = ServerPreset::grpc().unwrap();
    let drain = preset.drain.handle();
    let layer = preset.layer();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        let _keep_reporting = reporter;
        Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    (addr, drain)
}

#[tokio::test]
async fn calls_pass_both_presets_and_a_drained_server_trips_the_client_breaker() {
    let (addr, drain) = serve().await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    // Health checks are safe to repeat: retried on UNAVAILABLE.
    let retry = GrpcRetry::new().service("grpc.health.v1.Health").unwrap();
    let preset = ClientPreset::grpc_with("health", retry).unwrap();
    let breaker = preset.breaker.handle();
    let mut client = HealthClient::new(preset.tonic_layer().service(channel));
    let check = || HealthCheckRequest {
        service: String::new(),
    };

    let status = client.check(check()).await.unwrap().into_inner().status();
    assert_eq!(status, ServingStatus::Serving);

    // Draining: the server answers UNAVAILABLE; the client preset retries within its
    // budget, the breaker counts the failures and opens after 5, and from then on calls
    // are refused locally.
    drain.drain();
    for _ in 0..3 {
        let error = client.check(check()).await.unwrap_err();
        assert!(
            matches!(error.code(), Code::Unavailable | Code::Unknown),
            "{error:?}"
        );
    }
    assert_eq!(breaker.snapshot().state, State::Open);
}

// === the gRPC client preset as shipped: attempt timeouts and local refusals ===

/// The method every test below calls.
const CHECK: &str = "/grpc.health.v1.Health/Check";

/// What the server does with a call.
#[derive(Clone, Copy)]
enum Plan {
    Answer,
    /// Never answers (and lets the still clock run to the timeouts).
    Hang,
    /// Answers once `release` is notified.
    Hold,
}

/// A tonic health server (no preset) whose calls, numbered from 1, follow `plan`; it
/// records the `grpc-timeout` of each call and adds a permit to `entered` as each starts.
struct Backend {
    addr: SocketAddr,
    timeouts: Arc<Mutex<Vec<Option<Duration>>>>,
    entered: Arc<Semaphore>,
    release: Arc<Notify>,
    still: Still,
}

async fn backend(plan: fn(usize) -> Plan) -> Backend {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let timeouts = Arc::new(Mutex::new(Vec::new()));
    let (entered, release, still) = (
        Arc::new(Semaphore::new(0)),
        Arc::new(Notify::new()),
        Still::default(),
    );
    let control = {
        let (timeouts, entered, release, still) = (
            timeouts.clone(),
            entered.clone(),
            release.clone(),
            still.clone(),
        );
        move |request: http::Request<tonic::body::Body>| {
            let timeout = request
                .headers()
                .get("grpc-timeout")
                .map(|v| parse_grpc_timeout(v.as_bytes()).unwrap());
            let n = {
                let mut timeouts = timeouts.lock().unwrap();
                timeouts.push(timeout);
                timeouts.len()
            };
            let released = release.clone().notified_owned();
            entered.add_permits(1);
            let still = still.clone();
            async move {
                match plan(n) {
                    Plan::Answer => {}
                    Plan::Hang => {
                        still.release();
                        std::future::pending::<()>().await;
                    }
                    Plan::Hold => released.await,
                }
                Ok::<_, BoxError>(request)
            }
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        let _keep_reporting = reporter;
        Server::builder()
            .layer(AsyncFilterLayer::new(control))
            .add_service(health)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    Backend {
        addr,
        timeouts,
        entered,
        release,
        still,
    }
}

/// A health client through `$preset.tonic_layer()` to `$backend`, holding the clock still
/// while each attempt waits for its answer.
macro_rules! client {
    ($preset:expr, $backend:expr) => {{
        let still = $backend.still.clone();
        let channel = Channel::from_shared(format!("http://{}", $backend.addr))
            .unwrap()
            .connect_lazy();
        HealthClient::new(
            ServiceBuilder::new()
                .layer($preset.tonic_layer())
                .map_future(move |answer| {
                    still.hold();
                    let still = still.clone();
                    async move {
                        let answer = answer.await;
                        still.release();
                        answer
                    }
                })
                .service(channel),
        )
    }};
}

fn timeouts(backend: &Backend) -> Vec<Option<Duration>> {
    backend.timeouts.lock().unwrap().clone()
}

/// A method marked retryable: its attempt timeout is retried, and the retry is sent what
/// is left of the caller's deadline.
#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_of_a_marked_method_is_retried_within_the_callers_deadline() {
    let backend = backend(|n| if n == 1 { Plan::Hang } else { Plan::Answer }).await;
    let preset =
        ClientPreset::grpc_with("health", GrpcRetry::new().method(CHECK).unwrap()).unwrap();
    let breaker = preset.breaker.handle();
    let mut client = client!(preset, backend);

    let started = tokio::time::Instant::now();
    let status = Deadline::after(Duration::from_secs(30))
        .scope(client.check(HealthCheckRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);
    let elapsed = started.elapsed();
    assert!(
        (Duration::from_secs(10)..=Duration::from_millis(10_050)).contains(&elapsed),
        "the 10 s attempt timeout, then a backoff of at most 50 ms: {elapsed:?}"
    );
    let timeouts = timeouts(&backend);
    assert_eq!(
        timeouts.len(),
        2,
        "the attempt that timed out, and one retry"
    );
    assert_eq!(
        timeouts[0],
        Some(Duration::from_millis(28_500)),
        "95% of 30 s"
    );
    let left = (Duration::from_secs(30) - elapsed).mul_f64(0.95);
    let second = timeouts[1].unwrap();
    assert!(
        second <= left && left - second < Duration::from_millis(1),
        "{second:?} of {left:?}"
    );
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, State::Closed);
    assert_eq!(snapshot.consecutive_failures, 0, "the retry succeeded");
}

/// As shipped, no gRPC method is marked retryable: an attempt timeout may have run on the
/// server, so it is not repeated. It reaches the client as `DEADLINE_EXCEEDED`.
#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_of_an_unmarked_method_is_not_retried() {
    let backend = backend(|_| Plan::Hang).await;
    let preset = ClientPreset::grpc("health").unwrap();
    let breaker = preset.breaker.handle();
    let mut client = client!(preset, backend);

    let started = tokio::time::Instant::now();
    let error = client
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::DeadlineExceeded, "{error:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!(
        timeouts(&backend),
        [None],
        "one attempt, no deadline to send"
    );
    assert_eq!(breaker.snapshot().consecutive_failures, 1, "a failure");
}

/// The preset's bulkhead (100 calls in flight, no queue) full: further calls are refused
/// at once as `RESOURCE_EXHAUSTED`, never sent, and the breaker counts none of them.
#[tokio::test]
async fn the_presets_full_bulkhead_never_opens_its_breaker() {
    let backend = backend(|n| if n <= 100 { Plan::Hold } else { Plan::Answer }).await;
    let preset = ClientPreset::grpc("health").unwrap();
    let (breaker, bulkhead) = (preset.breaker.handle(), preset.bulkhead.handle());
    let client = client!(preset, backend);

    let held: Vec<_> = (0..100)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.check(HealthCheckRequest::default()).await })
        })
        .collect();
    backend.entered.acquire_many(100).await.unwrap().forget();
    assert_eq!(bulkhead.snapshot().in_flight, 100);

    for i in 0..8 {
        let error = client
            .clone()
            .check(HealthCheckRequest::default())
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::ResourceExhausted, "call {i}: {error:?}");
    }
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, State::Closed);
    assert_eq!(snapshot.consecutive_failures, 0);
    assert_eq!(snapshot.rejected, 0);
    assert_eq!(
        timeouts(&backend).len(),
        100,
        "the refused calls never left"
    );

    backend.release.notify_waiters();
    for call in held {
        assert!(call.await.unwrap().is_ok());
    }
    let mut client = client;
    client.check(HealthCheckRequest::default()).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(bulkhead.snapshot().in_flight, 0);
}
