//! Retries over real HTTP: a server fails twice with 503 (asking for a short wait) and then
//! succeeds; the client's retry policy gets the answer on the third attempt.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body_util::channel::Channel;
use http_body_util::Full;
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark::retry::{
    Backoff, HttpRetry, Jitter, NoRetry, ReplayBody, ReplayLayer, RetryEvent, RetryPolicy,
};
use tower_bulwark::HandleRejectionsLayer;
use tower_bulwark_tests::{send, serve_axum};

fn flaky_router(hits: Arc<AtomicUsize>, attempts: Arc<Mutex<Vec<String>>>) -> Router {
    let handler = move |headers: HeaderMap| {
        let hits = hits.clone();
        let attempts = attempts.clone();
        async move {
            let attempt = headers
                .get("x-request-attempt")
                .map_or("-".to_string(), |v| v.to_str().unwrap().to_string());
            attempts.lock().unwrap().push(attempt);
            if hits.fetch_add(1, Ordering::SeqCst) < 2 {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("retry-after", "0")],
                    "busy",
                )
            } else {
                (StatusCode::OK, [("retry-after", "0")], "done")
            }
        }
    };
    Router::new()
        .route("/item", get(handler.clone()))
        .route("/order", post(handler))
}

/// A real HTTP/1 client for `addr`, retried by `policy`.
fn client(
    addr: std::net::SocketAddr,
    policy: RetryPolicy<HttpRetry>,
) -> impl tower::Service<
    http::Request<Full<Bytes>>,
    Response = http::Response<Bytes>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    policy.layer().layer(service_fn(
        move |request: http::Request<Full<Bytes>>| async move {
            let received = send(addr, request).await;
            Ok::<_, std::convert::Infallible>(http::Response::from_parts(
                received.head,
                received.body,
            ))
        },
    ))
}

#[tokio::test]
async fn a_get_is_retried_until_the_server_recovers() {
    let hits = Arc::new(AtomicUsize::new(0));
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let addr = serve_axum(flaky_router(hits.clone(), attempts.clone())).await;
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(Backoff::Constant(Duration::from_millis(1)), Jitter::None)
        .classify(HttpRetry::default().attempt_header())
        .build()
        .unwrap();
    let client = client(addr, policy).map_response(|response| response.status());

    let request = http::Request::get("/item").body(Full::default()).unwrap();
    let status = client.clone().oneshot(request).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert_eq!(
        *attempts.lock().unwrap(),
        ["-", "2", "3"],
        "retries carry their number"
    );
}

#[tokio::test]
async fn a_post_without_an_idempotency_key_is_not_retried() {
    let hits = Arc::new(AtomicUsize::new(0));
    let addr = serve_axum(flaky_router(hits.clone(), Arc::default())).await;
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .classify(HttpRetry::default())
        .build()
        .unwrap();
    let request = http::Request::post("/order").body(Full::default()).unwrap();
    let response = client(addr, policy).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_shed_for_overload_is_not_retried() {
    // A server that sheds everything: tower's LoadShed over a limit of zero, answered by
    // our rejection handler (503 + the shed marker).
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let router = Router::new()
        .route("/item", get(|| async { "never" }))
        .layer(
            tower::ServiceBuilder::new()
                .map_request(move |request: http::Request<axum::body::Body>| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    request
                })
                .layer(HandleRejectionsLayer::new())
                .load_shed()
                .concurrency_limit(0),
        );
    let addr = serve_axum(router).await;
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(Backoff::Constant(Duration::from_millis(1)), Jitter::None)
        .classify(HttpRetry::default())
        .build()
        .unwrap();
    let request = http::Request::get("/item").body(Full::default()).unwrap();
    let response = client(addr, policy).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["x-bulwark-overloaded"], "true");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "one attempt, no retry");
}

/// A server that reads each upload whole, refuses the first with 503 and accepts the rest;
/// it records the size of every upload it read.
fn upload_router(sizes: Arc<Mutex<Vec<usize>>>) -> Router {
    Router::new().route(
        "/upload",
        axum::routing::put(move |body: Bytes| {
            let sizes = sizes.clone();
            async move {
                let mut sizes = sizes.lock().unwrap();
                sizes.push(body.len());
                if sizes.len() == 1 {
                    (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")])
                } else {
                    (StatusCode::OK, [("retry-after", "0")])
                }
            }
        }),
    )
}

/// Uploads three 1 KiB chunks as a real streaming body (chunked, its size unknown up
/// front) through a replay buffer of `limit` bytes and the retry policy.
async fn upload(addr: std::net::SocketAddr, limit: usize) -> (StatusCode, Vec<RetryEvent>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(Backoff::Constant(Duration::from_millis(1)), Jitter::None)
        .classify(HttpRetry::default())
        .on_event(move |event: &RetryEvent| sink.lock().unwrap().push(event.clone()))
        .build()
        .unwrap();
    let client = tower::ServiceBuilder::new()
        .layer(ReplayLayer::new(limit))
        .layer(policy.layer())
        .service_fn(move |request: http::Request<ReplayBody>| async move {
            let received = send(addr, request).await;
            Ok::<_, std::convert::Infallible>(http::Response::from_parts(received.head, ()))
        });

    let (mut sender, body) = Channel::<Bytes, std::convert::Infallible>::new(1);
    tokio::spawn(async move {
        for _ in 0..3 {
            if sender
                .send_data(Bytes::from(vec![7u8; 1024]))
                .await
                .is_err()
            {
                return;
            }
            tokio::task::yield_now().await;
        }
    });
    let request = http::Request::put("/upload").body(body).unwrap();
    let status = client.oneshot(request).await.unwrap().status();
    let events = events.lock().unwrap().clone();
    (status, events)
}

#[tokio::test]
async fn a_streamed_body_within_the_replay_limit_is_sent_again() {
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let addr = serve_axum(upload_router(sizes.clone())).await;
    let (status, events) = upload(addr, 64 * 1024).await;
    assert_eq!(status, 200);
    assert_eq!(
        *sizes.lock().unwrap(),
        [3072, 3072],
        "the whole body, twice"
    );
    assert!(matches!(
        events[..],
        [RetryEvent::Retrying { attempt: 2, .. }]
    ));
}

#[tokio::test]
async fn a_streamed_body_over_the_replay_limit_is_sent_once_and_not_retried() {
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let addr = serve_axum(upload_router(sizes.clone())).await;
    let (status, events) = upload(addr, 2048).await;
    assert_eq!(status, 503, "the server's answer to the only attempt");
    assert_eq!(*sizes.lock().unwrap(), [3072], "sent once, whole");
    assert_eq!(
        events,
        [RetryEvent::NotRetried {
            reason: NoRetry::BodyTooLarge
        }]
    );
}
