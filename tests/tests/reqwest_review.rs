//! Review of `ReqwestService` (issue 16): edges of the adapter and its composition with the
//! client preset, over loopback.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bulwark::deadline::TimeoutLayer;
use tower_bulwark::presets::ClientPreset;
use tower_bulwark::repeat::never_sent;
use tower_bulwark::retry::{Backoff, HttpRetry, Jitter, RetryPolicy, SkipRejections};
use tower_bulwark::{find_rejection, BoxError, HttpClassifier, RejectionKind, ReqwestService};
use tower_bulwark_tests::serve_axum;

fn preset_with(retry: HttpRetry) -> ClientPreset<HttpRetry, HttpClassifier> {
    let mut preset = ClientPreset::http("inventory").unwrap();
    preset.retry = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(Backoff::Constant(Duration::from_millis(1)), Jitter::None)
        .budget(preset.budget().clone())
        .classify(SkipRejections(retry))
        .build()
        .unwrap();
    preset
}

fn preset() -> ClientPreset<HttpRetry, HttpClassifier> {
    preset_with(HttpRetry::default())
}

fn closed_port() -> std::net::SocketAddr {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    addr
}

/// Records the given header of every call.
async fn recorder(header: &'static str) -> (std::net::SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = {
        let seen = seen.clone();
        Router::new().route(
            "/",
            get(move |headers: HeaderMap| {
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(headers.get(header).map(|v| v.to_str().unwrap().to_string()));
                    seen.len()
                };
                let status = if n < 3 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                std::future::ready(status)
            })
            .post(|| async { StatusCode::OK }),
        )
    };
    (serve_axum(app).await, seen)
}

#[tokio::test]
async fn a_refused_connection_is_never_sent_for_reqwest() {
    let addr = closed_port();
    let error: BoxError = ReqwestService::default()
        .oneshot(
            http::Request::post(format!("http://{addr}/"))
                .body(String::new())
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(never_sent(&error), "{error:?}");

    // Through the preset: a POST without a key is retried when the connection was refused.
    let preset = preset();
    let breaker = preset.breaker.handle();
    let client = ServiceBuilder::new()
        .layer(preset.layer())
        .service(ReqwestService::default());
    let post = http::Request::post(format!("http://{addr}/"))
        .body("x".to_string())
        .unwrap();
    client.oneshot(post).await.unwrap_err();
    assert_eq!(breaker.snapshot().consecutive_failures, 3, "three attempts");
}

#[tokio::test]
async fn a_request_reqwest_cannot_build_is_neither_retried_nor_a_dependency_failure() {
    let mut counted = Vec::new();
    for uri in [
        "/items/7",
        "ftp://127.0.0.1/items/7",
        "http:///x",
        "http://[::1/x",
    ] {
        let Ok(request) = http::Request::get(uri).body(String::new()) else {
            continue;
        };
        let preset = preset();
        let breaker = preset.breaker.handle();
        let client = ServiceBuilder::new()
            .layer(preset.layer())
            .service(ReqwestService::default());
        let error = client.oneshot(request).await.unwrap_err();
        counted.push((
            uri,
            error.to_string(),
            breaker.snapshot().consecutive_failures,
        ));
    }
    println!("{counted:?}");
    assert!(
        counted.iter().all(|(_, _, failures)| *failures == 0),
        "a caller's malformed request is retried and counted against the dependency: {counted:?}"
    );
}

#[tokio::test]
async fn credentials_in_the_uri_are_sent_as_reqwest_sends_them() {
    let (addr, seen) = recorder("authorization").await;
    let uri = format!("http://user:secret@{addr}/");
    // reqwest's own path turns them into basic auth.
    reqwest::Client::new().get(&uri).send().await.unwrap();
    let own = seen.lock().unwrap().pop().flatten();
    assert!(
        own.as_deref().is_some_and(|v| v.starts_with("Basic ")),
        "{own:?}"
    );
    // Not through the preset (no retries), so one call each.
    let request = http::Request::get(&uri).body(String::new()).unwrap();
    ReqwestService::default().oneshot(request).await.unwrap();
    let ours = seen.lock().unwrap().pop().flatten();
    println!("reqwest's own: {own:?}; ReqwestService: {ours:?}");
    assert_eq!(
        own, ours,
        "the URI's userinfo is dropped, not sent as basic auth"
    );
}

#[tokio::test]
async fn credentials_in_the_uri_do_not_leak_into_errors() {
    let addr = closed_port();
    let request = http::Request::get(format!("http://user:secret@{addr}/"))
        .body(String::new())
        .unwrap();
    let error = ReqwestService::default()
        .oneshot(request)
        .await
        .unwrap_err();
    // reqwest's own path (RequestBuilder) strips userinfo from the URL it keeps.
    let own = reqwest::Client::new()
        .get(format!("http://user:secret@{addr}/"))
        .send()
        .await
        .unwrap_err();
    println!("ours: {error}\nreqwest's own: {own}");
    assert!(!own.to_string().contains("secret"));
    assert!(!error.to_string().contains("secret"), "{error}");
}

#[tokio::test]
async fn retried_attempts_carry_the_attempt_header() {
    let (addr, seen) = recorder("x-request-attempt").await;
    let client = ServiceBuilder::new()
        .layer(preset_with(HttpRetry::default().attempt_header()).layer())
        .service(ReqwestService::default());
    let request = http::Request::get(format!("http://{addr}/"))
        .header("idempotency-key", "\"k\"")
        .body(String::new())
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        *seen.lock().unwrap(),
        [None, Some("2".to_string()), Some("3".to_string())]
    );
}

/// A handler that never answers and says when it is dropped.
struct Hang(Arc<AtomicUsize>);
impl Drop for Hang {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

#[tokio::test]
async fn the_attempt_timeout_cancels_reqwest_and_frees_the_bulkhead() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let app = {
        let dropped = dropped.clone();
        Router::new().route(
            "/",
            get(move || {
                let hang = Hang(dropped.clone());
                async move {
                    std::future::pending::<()>().await;
                    drop(hang);
                    StatusCode::OK
                }
            }),
        )
    };
    let addr = serve_axum(app).await;
    let mut preset = preset();
    preset.timeout = TimeoutLayer::new(Duration::from_millis(100)).unwrap();
    let (breaker, bulkhead) = (preset.breaker.handle(), preset.bulkhead.handle());
    let client = ServiceBuilder::new()
        .layer(preset.layer())
        .service(ReqwestService::default());
    let error = client
        .oneshot(
            http::Request::get(format!("http://{addr}/"))
                .body(String::new())
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        find_rejection(&error).map(|r| r.kind()),
        Some(RejectionKind::TimedOut),
        "{error}"
    );
    assert_eq!(breaker.snapshot().consecutive_failures, 3);
    assert_eq!(bulkhead.snapshot().in_flight, 0);
    // The server sees the connections go (hyper drops the handler when the client leaves).
    for _ in 0..50 {
        if dropped.load(SeqCst) == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("handlers dropped: {}", dropped.load(SeqCst));
}

#[tokio::test]
async fn a_body_streams_past_the_attempt_timeout_outside_the_bulkhead() {
    let app = Router::new().route(
        "/",
        get(|| async {
            let (mut tx, body) =
                http_body_util::channel::Channel::<bytes::Bytes, Infallible>::new(1);
            tokio::spawn(async move {
                for _ in 0..3 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    tx.send_data(bytes::Bytes::from_static(b"x")).await.unwrap();
                }
            });
            axum::body::Body::new(body)
        }),
    );
    let addr = serve_axum(app).await;
    let mut preset = preset();
    preset.timeout = TimeoutLayer::new(Duration::from_millis(150)).unwrap();
    let bulkhead = preset.bulkhead.handle();
    let client = ServiceBuilder::new()
        .layer(preset.layer())
        .service(ReqwestService::default());
    let response = client
        .oneshot(
            http::Request::get(format!("http://{addr}/"))
                .body(String::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        bulkhead.snapshot().in_flight,
        0,
        "the permit went with the head"
    );
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(
        &body[..],
        b"xxx",
        "300 ms of body past a 150 ms attempt timeout"
    );
}

#[tokio::test]
async fn the_future_answers_an_error_when_polled_again_and_can_be_dropped_mid_request() {
    let (addr, _seen) = recorder("x").await;
    for uri in ["/relative".to_string(), format!("http://{addr}/")] {
        let mut service = ReqwestService::default();
        std::future::poll_fn(|cx| Service::<http::Request<String>>::poll_ready(&mut service, cx))
            .await
            .unwrap();
        let mut future =
            Box::pin(service.call(http::Request::get(&uri).body(String::new()).unwrap()));
        let first = std::future::poll_fn(|cx| future.as_mut().poll(cx)).await;
        println!("{uri}: first {:?}", first.as_ref().map(|r| r.status()));
        let again = std::future::poll_fn(|cx| future.as_mut().poll(cx)).await;
        assert!(again.unwrap_err().to_string().contains("after completion"));
        println!("{future:?}");
    }
    // Dropped after the first poll (mid-connect) and after the request went out.
    let mut service = ReqwestService::default();
    let mut future = Box::pin(
        service.call(
            http::Request::get(format!("http://{addr}/"))
                .body(String::new())
                .unwrap(),
        ),
    );
    let waker = std::task::Waker::noop();
    assert!(future
        .as_mut()
        .poll(&mut Context::from_waker(waker))
        .is_pending());
    drop(future);
}

#[tokio::test]
async fn bodies_reqwest_takes_go_through_the_preset() {
    let (addr, _seen) = recorder("x").await;
    let client = ServiceBuilder::new()
        .layer(preset().layer())
        .service(ReqwestService::default());
    let uri = format!("http://{addr}/");
    let post = |b| http::Request::post(&uri).body(b).unwrap();
    tower_bulwark::expect_service::<http::Request<&'static str>, _>(&client);
    tower_bulwark::expect_service::<http::Request<&'static [u8]>, _>(&client);
    tower_bulwark::expect_service::<http::Request<Vec<u8>>, _>(&client);
    tower_bulwark::expect_service::<http::Request<bytes::Bytes>, _>(&client);
    assert_eq!(
        client.clone().oneshot(post("a")).await.unwrap().status(),
        200
    );
    let r = http::Request::post(&uri)
        .body(bytes::Bytes::from_static(b"a"))
        .unwrap();
    assert_eq!(client.clone().oneshot(r).await.unwrap().status(), 200);
    fn send_sync<T: Send + Sync + 'static>(_: &T) {}
    fn send<T: Send + 'static>(_: &T) {}
    send_sync(&client);
    send(&client.clone().oneshot(post("b")));
}

#[tokio::test]
async fn an_http2_request_without_reqwest_http2() {
    let (addr, seen) = recorder("x").await;
    let preset = preset();
    let breaker = preset.breaker.handle();
    let client = ServiceBuilder::new()
        .layer(preset.layer())
        .service(ReqwestService::default());
    let request = http::Request::get(format!("http://{addr}/"))
        .version(http::Version::HTTP_2)
        .body(String::new())
        .unwrap();
    let result = client.oneshot(request).await;
    println!(
        "HTTP/2: {:?}; calls {}; breaker failures {}",
        result
            .as_ref()
            .map(|r| r.status())
            .map_err(|e| format!("{e:?}")),
        seen.lock().unwrap().len(),
        breaker.snapshot().consecutive_failures
    );
}

#[allow(dead_code)]
fn _unused(_: Pin<&mut ()>, _: &mut Context<'_>) -> Poll<()> {
    Poll::Ready(())
}
