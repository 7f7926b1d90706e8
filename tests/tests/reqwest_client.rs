//! The client preset around `reqwest` (`ReqwestService`, feature `reqwest`) against a real
//! axum server on loopback: retries, the breaker, deadline propagation and the idempotency
//! rule all work through reqwest as they do through hyper.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use tower::{ServiceBuilder, ServiceExt};
use tower_bulwark::breaker::State;
use tower_bulwark::presets::ClientPreset;
use tower_bulwark::retry::{Backoff, HttpRetry, Jitter, RetryPolicy, SkipRejections};
use tower_bulwark::{find_rejection, Deadline, HttpClassifier, RejectionKind, ReqwestService};
use tower_bulwark_tests::serve_axum;

/// A backend that counts calls, answers 503 to the first `failing` of them and 200 after,
/// and keeps the `x-request-timeout-ms` of the last call.
struct Backend {
    addr: std::net::SocketAddr,
    calls: Arc<AtomicUsize>,
    failing: Arc<AtomicUsize>,
    timeout: Arc<Mutex<Option<String>>>,
}

async fn backend(failing: usize) -> Backend {
    let calls = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(AtomicUsize::new(failing));
    let timeout = Arc::new(Mutex::new(None));
    let answer = {
        let (calls, failing, timeout) = (calls.clone(), failing.clone(), timeout.clone());
        move |headers: HeaderMap| {
            let n = calls.fetch_add(1, SeqCst);
            *timeout.lock().unwrap() = headers
                .get("x-request-timeout-ms")
                .map(|v| v.to_str().unwrap().to_string());
            let status = if n < failing.load(SeqCst) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            std::future::ready((status, "stock: 7"))
        }
    };
    let app = Router::new().route("/items/7", get(answer.clone()).post(answer));
    Backend {
        addr: serve_axum(app).await,
        calls,
        failing,
        timeout,
    }
}

/// reqwest without the proxies of the environment: the backend is on loopback.
fn reqwest_service() -> ReqwestService {
    ReqwestService::new(reqwest::Client::builder().no_proxy().build().unwrap())
}

/// The preset with retries that barely wait (the backoff is not what is tested).
fn preset() -> ClientPreset<HttpRetry, HttpClassifier> {
    let mut preset = ClientPreset::http("inventory").unwrap();
    preset.retry = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(Backoff::Constant(Duration::from_millis(1)), Jitter::None)
        .budget(preset.budget().clone())
        .classify(SkipRejections(HttpRetry::default()))
        .build()
        .unwrap();
    preset
}

fn get_item(backend: &Backend) -> http::Request<String> {
    http::Request::get(format!("http://{}/items/7", backend.addr))
        .body(String::new())
        .unwrap()
}

#[tokio::test]
async fn a_failed_call_is_retried_and_the_deadline_goes_with_it() {
    let backend = backend(2).await;
    let client = ServiceBuilder::new()
        .layer(preset().layer())
        .service(reqwest_service());

    let response = Deadline::after(Duration::from_secs(2))
        .scope(client.oneshot(get_item(&backend)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body();
    let bytes = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&bytes[..], b"stock: 7");
    assert_eq!(backend.calls.load(SeqCst), 3, "two 503s, then the answer");

    let sent: u64 = backend
        .timeout
        .lock()
        .unwrap()
        .clone()
        .expect("the deadline was propagated")
        .parse()
        .unwrap();
    assert!((1..=1_900).contains(&sent), "within 95% of the 2 s: {sent}");
}

#[tokio::test]
async fn the_breaker_opens_and_then_refuses_without_calling() {
    let backend = backend(usize::MAX).await;
    let preset = preset();
    let breaker = preset.breaker.handle();
    let client = ServiceBuilder::new()
        .layer(preset.layer())
        .service(reqwest_service());

    // Five failures in a row trip the preset's breaker; retries count as calls.
    let mut answered = 0;
    while breaker.state() == State::Closed {
        let response = client.clone().oneshot(get_item(&backend)).await;
        if let Ok(response) = response {
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            answered += 1;
        }
        assert!(answered <= 5, "the breaker never opened");
    }
    let calls = backend.calls.load(SeqCst);
    assert_eq!(calls, 5, "tripped by the fifth failure");

    let refused = client
        .clone()
        .oneshot(get_item(&backend))
        .await
        .unwrap_err();
    let rejection = find_rejection(&refused).expect("a rejection");
    assert_eq!(rejection.kind(), RejectionKind::CircuitOpen);
    assert_eq!(backend.calls.load(SeqCst), calls, "refused before sending");
}

#[tokio::test]
async fn a_post_is_retried_only_with_an_idempotency_key() {
    let backend = backend(1).await;
    let client = ServiceBuilder::new()
        .layer(preset().layer())
        .service(reqwest_service());
    let post = |key: Option<&str>| {
        let mut request = http::Request::post(format!("http://{}/items/7", backend.addr));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.body("take one".to_string()).unwrap()
    };

    let response = client.clone().oneshot(post(None)).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "not retried"
    );
    assert_eq!(backend.calls.load(SeqCst), 1);

    backend.failing.store(2, SeqCst);
    let response = client.clone().oneshot(post(Some("\"k-1\""))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "retried with a key");
    assert_eq!(backend.calls.load(SeqCst), 3);
}

#[tokio::test]
async fn a_request_reqwest_cannot_send_is_refused_and_a_closed_port_is_a_failure() {
    let client = ServiceBuilder::new()
        .layer(preset().layer())
        .service(reqwest_service());
    // No scheme or host: reqwest has nowhere to send it.
    let request = http::Request::get("/items/7").body(String::new()).unwrap();
    let error = client.oneshot(request).await.unwrap_err();
    let rejection = find_rejection(&error).expect("refused as invalid");
    assert_eq!(rejection.kind(), RejectionKind::InvalidRequest);
    assert!(
        error
            .to_string()
            .starts_with("reqwest cannot send this request"),
        "{error}"
    );

    // Nothing listens: a connection error, which the breaker counts and retries may repeat.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let request = http::Request::get(format!("http://{addr}/"))
        .body(String::new())
        .unwrap();
    let preset = preset();
    let breaker = preset.breaker.handle();
    let client = ServiceBuilder::new()
        .layer(preset.layer())
        .service(reqwest_service());
    client.oneshot(request).await.unwrap_err();
    assert_eq!(
        breaker.snapshot().consecutive_failures,
        3,
        "each attempt a failure"
    );
}
