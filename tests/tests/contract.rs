//! The composition contract (docs/composition.md) in the client preset, over real HTTP and
//! in paused time: a refusal by a layer below says nothing about the dependency; the attempt
//! timeout is the dependency being slow, so it is retried, within the attempts, the budget
//! and the caller's deadline; a dependency shedding for overload neither trips the breaker
//! nor is retried, and the fallback answers for it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::{Notify, Semaphore};
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark::breaker::State;
use tower_bulwark::bulkhead::BulkheadLayer;
use tower_bulwark::deadline::TimeoutLayer;
use tower_bulwark::presets::ClientPreset;
use tower_bulwark::retry::{RatioBudget, RetryPolicy, SkipRejections};
use tower_bulwark::testing::{controlled, Controller};
use tower_bulwark::{find_rejection, BoxError, Deadline, RejectionKind};
use tower_bulwark_tests::{send, serve_axum};

/// A real HTTP/1 transport to `addr`.
fn transport(
    addr: std::net::SocketAddr,
) -> impl tower::Service<
    http::Request<Full<Bytes>>,
    Response = http::Response<Bytes>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    service_fn(move |request: http::Request<Full<Bytes>>| async move {
        let received = send(addr, request).await;
        Ok::<_, BoxError>(http::Response::from_parts(received.head, received.body))
    })
}

fn get_root() -> http::Request<Full<Bytes>> {
    http::Request::get("/").body(Full::default()).unwrap()
}

fn kind(error: &BoxError) -> RejectionKind {
    find_rejection(error).expect("a rejection").kind()
}

/// A backend whose `/` counts its calls; the calls numbered in `hang` (from 1) wait until
/// `release` is notified, the others answer "ok" at once. `entered` gets a permit as each
/// call starts.
struct Backend {
    addr: std::net::SocketAddr,
    calls: Arc<AtomicUsize>,
    entered: Arc<Semaphore>,
    release: Arc<Notify>,
}

async fn backend(hang: &'static [usize]) -> Backend {
    let calls = Arc::new(AtomicUsize::new(0));
    let entered = Arc::new(Semaphore::new(0));
    let release = Arc::new(Notify::new());
    let app = Router::new().route(
        "/",
        get({
            let (calls, entered, release) = (calls.clone(), entered.clone(), release.clone());
            move || {
                let (calls, entered, release) = (calls.clone(), entered.clone(), release.clone());
                async move {
                    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                    let released = release.notified();
                    entered.add_permits(1);
                    if hang.contains(&n) {
                        released.await;
                    }
                    "ok"
                }
            }
        }),
    );
    Backend {
        addr: serve_axum(app).await,
        calls,
        entered,
        release,
    }
}

#[tokio::test]
async fn a_full_bulkhead_below_does_not_open_the_breaker() {
    let backend = backend(&[1]).await;
    let mut client = ClientPreset::http("backend").unwrap();
    client.bulkhead = BulkheadLayer::builder()
        .name("backend")
        .max_concurrent(1)
        .build()
        .unwrap();
    let breaker = client.breaker.handle();
    let service = client.layer().service(transport(backend.addr));

    // One call holds the only place.
    let held = tokio::spawn(service.clone().oneshot(get_root()));
    backend.entered.acquire().await.unwrap().forget();

    // The breaker opens after 5 consecutive failures; these refusals are not failures.
    for i in 0..8 {
        let error = service.clone().oneshot(get_root()).await.unwrap_err();
        assert_eq!(kind(&error), RejectionKind::BulkheadFull, "call {i}");
        assert_eq!(breaker.state(), State::Closed, "after {} refusals", i + 1);
    }
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.consecutive_failures, 0);
    assert_eq!(snapshot.rejected, 0);
    assert_eq!(
        backend.calls.load(Ordering::SeqCst),
        1,
        "refused, not retried"
    );

    backend.release.notify_waiters();
    assert_eq!(held.await.unwrap().unwrap().status(), 200);
    let response = service.oneshot(get_root()).await.unwrap();
    assert_eq!(response.status(), 200, "the dependency is still reachable");
    assert_eq!(&response.body()[..], b"ok");
    assert_eq!(backend.calls.load(Ordering::SeqCst), 2);
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test]
async fn an_attempt_timeout_is_retried_within_the_callers_deadline() {
    let backend = backend(&[1]).await;
    let mut client = ClientPreset::http("backend").unwrap();
    // Short enough to keep the test quick; the second answer comes at once.
    client.timeout = TimeoutLayer::new(Duration::from_millis(500)).unwrap();
    let breaker = client.breaker.handle();
    let service = client.layer().service(transport(backend.addr));

    let response = Deadline::after(Duration::from_secs(30))
        .scope(service.oneshot(get_root()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(&response.body()[..], b"ok");
    assert_eq!(
        backend.calls.load(Ordering::SeqCst),
        2,
        "the attempt that timed out, and one retry"
    );
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, State::Closed);
    assert_eq!(
        snapshot.consecutive_failures, 0,
        "the slow attempt was a failure, the retry a success"
    );
    backend.release.notify_waiters();
}

/// A backend whose `/` answers 503 marked as shed for overload (`marker` set to "true"), or
/// unmarked; a shared switch turns it healthy. Counts its calls.
async fn shedding_backend(
    marker: Option<&'static str>,
) -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    // Calls up to this number answer 200, later ones 503.
    let healthy_until = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/",
        get({
            let (calls, healthy_until) = (calls.clone(), healthy_until.clone());
            move || {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                let healthy = n <= healthy_until.load(Ordering::SeqCst);
                async move {
                    let mut response = http::Response::new(axum::body::Body::from("fresh"));
                    if !healthy {
                        *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                        if let Some(marker) = marker {
                            response
                                .headers_mut()
                                .insert(marker, http::HeaderValue::from_static("true"));
                        }
                    }
                    response
                }
            }
        }),
    );
    (serve_axum(app).await, calls, healthy_until)
}

#[tokio::test]
async fn a_backend_shedding_for_overload_neither_opens_the_breaker_nor_is_retried() {
    for marker in ["x-bulwark-overloaded", "x-envoy-overloaded"] {
        let (addr, calls, _) = shedding_backend(Some(marker)).await;
        let client = ClientPreset::http("backend").unwrap();
        let breaker = client.breaker.handle();
        let service = client.layer().service(transport(addr));
        for _ in 0..8 {
            let response = service.clone().oneshot(get_root()).await.unwrap();
            assert_eq!(response.status(), 503);
        }
        assert_eq!(breaker.state(), State::Closed, "{marker}");
        assert_eq!(calls.load(Ordering::SeqCst), 8, "{marker}: not retried");
    }
    // Unmarked, a 503 is the dependency failing: retried, and the breaker opens.
    let (addr, calls, _) = shedding_backend(None).await;
    let mut client = ClientPreset::http("backend").unwrap();
    client.retry = RetryPolicy::builder()
        .backoff(
            tower_bulwark::retry::Backoff::Constant(Duration::from_millis(1)),
            tower_bulwark::retry::Jitter::None,
        )
        .classify(SkipRejections(tower_bulwark::retry::HttpRetry::default()))
        .build()
        .unwrap();
    let breaker = client.breaker.handle();
    let service = client.layer().service(transport(addr));
    for _ in 0..2 {
        let _ = service.clone().oneshot(get_root()).await;
    }
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        5,
        "3 attempts, then 2 until it opened"
    );
}

#[tokio::test]
async fn a_backend_shedding_for_overload_is_answered_by_the_fallback() {
    let (addr, calls, healthy_until) = shedding_backend(Some("x-bulwark-overloaded")).await;
    healthy_until.store(1, Ordering::SeqCst);
    let client = ClientPreset::http("backend").unwrap();
    let breaker = client.breaker.handle();
    let fallback = tower_bulwark::fallback::FallbackLayer::builder()
        .last_good(Duration::from_secs(60), 10)
        .build()
        .unwrap();
    let service = fallback.layer(client.layer().service(transport(addr)));
    let fresh = service.clone().oneshot(get_root()).await.unwrap();
    assert_eq!(fresh.status(), 200);
    assert!(fresh.headers().get("x-bulwark-degraded").is_none());
    let degraded = service.oneshot(get_root()).await.unwrap();
    assert_eq!(degraded.status(), 200);
    assert_eq!(&degraded.body()[..], b"fresh");
    assert_eq!(degraded.headers()["x-bulwark-degraded"], "last-good");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the shed was not retried");
    assert_eq!(breaker.state(), State::Closed);
}

// The same contract in paused time, where the budget and the deadline can be exact.

/// The client preset with a 1 s attempt timeout around an inner service that never
/// answers; returns the service and its control.
fn hanging_client(
    budget: Option<RatioBudget>,
) -> (
    impl tower::Service<
            http::Request<Full<Bytes>>,
            Response = http::Response<()>,
            Error = BoxError,
            Future = impl Send,
        > + Clone,
    Controller,
) {
    let mut client = ClientPreset::http("backend").unwrap();
    client.timeout = TimeoutLayer::new(Duration::from_secs(1)).unwrap();
    if let Some(budget) = budget {
        client.retry = RetryPolicy::builder()
            .budget(Arc::new(budget))
            .classify(SkipRejections(tower_bulwark::retry::HttpRetry::default()))
            .build()
            .unwrap();
    }
    let (inner, control) = controlled::<http::Request<Full<Bytes>>>();
    control.hang();
    let inner = inner.map_response(|_| http::Response::new(()));
    (client.layer().service(inner), control)
}

#[tokio::test(start_paused = true)]
async fn attempt_timeouts_are_retried_until_the_attempts_run_out() {
    let (service, control) = hanging_client(None);
    let error = Deadline::after(Duration::from_secs(60))
        .scope(service.oneshot(get_root()))
        .await
        .unwrap_err();
    assert_eq!(kind(&error), RejectionKind::TimedOut);
    assert_eq!(control.calls(), 3, "the preset's 3 attempts");
    assert_eq!(
        control.cancelled(),
        3,
        "each attempt was dropped when it timed out"
    );
}

#[tokio::test(start_paused = true)]
async fn attempt_timeouts_are_not_retried_past_the_callers_deadline() {
    let (service, control) = hanging_client(None);
    let started = tokio::time::Instant::now();
    let error = Deadline::after(Duration::from_millis(1500))
        .scope(service.oneshot(get_root()))
        .await
        .unwrap_err();
    // The first attempt timed out at 1 s; the retry was bounded by what was left, and its
    // end (the caller's deadline, not the dependency) is not retried.
    assert_eq!(kind(&error), RejectionKind::DeadlineExceeded);
    assert_eq!(control.calls(), 2);
    assert!(started.elapsed() <= Duration::from_millis(1500));
}

#[tokio::test(start_paused = true)]
async fn attempt_timeouts_are_not_retried_beyond_the_budget() {
    let (service, control) = hanging_client(Some(
        RatioBudget::new(Duration::from_secs(10), 0, 0.0).unwrap(),
    ));
    let started = tokio::time::Instant::now();
    let error = Deadline::after(Duration::from_secs(60))
        .scope(service.oneshot(get_root()))
        .await
        .unwrap_err();
    assert_eq!(kind(&error), RejectionKind::TimedOut);
    assert_eq!(control.calls(), 1, "no budget, no retry");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_callers_deadline_shorter_than_the_attempt_timeout_is_not_retried() {
    let (service, control) = hanging_client(None);
    let error = Deadline::after(Duration::from_millis(300))
        .scope(service.oneshot(get_root()))
        .await
        .unwrap_err();
    assert_eq!(kind(&error), RejectionKind::DeadlineExceeded);
    assert_eq!(control.calls(), 1);
}

/// An inner service that refuses with each kind, as a bulkhead or a shed below the breaker
/// would.
#[tokio::test(start_paused = true)]
async fn no_local_refusal_kind_opens_the_breaker_or_is_retried() {
    for refusal in [
        RejectionKind::CircuitOpen,
        RejectionKind::BulkheadFull,
        RejectionKind::Overloaded,
        RejectionKind::Throttled,
        RejectionKind::DeadlineExceeded,
        RejectionKind::InvalidRequest,
        RejectionKind::Draining,
    ] {
        let client = ClientPreset::http("backend").unwrap();
        let breaker = client.breaker.handle();
        let calls = Arc::new(AtomicUsize::new(0));
        let inner = service_fn({
            let calls = calls.clone();
            move |_: http::Request<Full<Bytes>>| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    Err::<http::Response<()>, BoxError>(
                        tower_bulwark::Rejection::new(refusal, "below").into(),
                    )
                }
            }
        });
        let service = client.layer().service(inner);
        for _ in 0..10 {
            let error = service.clone().oneshot(get_root()).await.unwrap_err();
            assert_eq!(kind(&error), refusal);
        }
        assert_eq!(breaker.state(), State::Closed, "{refusal:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 10, "{refusal:?}: not retried");
    }
}
