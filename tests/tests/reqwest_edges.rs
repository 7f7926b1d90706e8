//! The edges of `ReqwestService` and its composition with the client preset, over
//! loopback: connection refusals, requests reqwest cannot send (refused as invalid, never
//! counted against the dependency), credentials in the URI, HTTP versions, the attempt
//! header, body types, and its future polled again or dropped mid-request.

use std::future::Future;

use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bulwark::presets::ClientPreset;
use tower_bulwark::repeat::never_sent;
use tower_bulwark::retry::{Backoff, HttpRetry, Jitter, RetryPolicy, SkipRejections};
use tower_bulwark::{
    find_rejection, BoxError, HttpClassifier, RejectionKind, ReqwestService, Unsendable,
};
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

/// reqwest without the proxies of the environment: these servers are on loopback.
fn reqwest_service() -> ReqwestService {
    ReqwestService::new(reqwest::Client::builder().no_proxy().build().unwrap())
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
    let error: BoxError = reqwest_service()
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
        .service(reqwest_service());
    let post = http::Request::post(format!("http://{addr}/"))
        .body("x".to_string())
        .unwrap();
    client.oneshot(post).await.unwrap_err();
    assert_eq!(breaker.snapshot().consecutive_failures, 3, "three attempts");
}

#[tokio::test]
async fn a_request_reqwest_cannot_send_is_refused_as_invalid_not_counted() {
    let addr = closed_port();
    let mut refused = 0;
    for uri in [
        "/items/7".to_string(),
        "ftp://127.0.0.1/items/7".to_string(),
        "http:///x".to_string(),
        format!("http://user:secret@{addr}/"),
    ] {
        // Some of these `http` itself may not accept as a URI: nothing to send then.
        let Ok(request) = http::Request::get(&uri).body(String::new()) else {
            continue;
        };
        refused += 1;
        let preset = preset();
        let breaker = preset.breaker.handle();
        let client = ServiceBuilder::new()
            .layer(preset.layer())
            .service(reqwest_service());
        let error = client.oneshot(request).await.unwrap_err();
        assert_eq!(
            find_rejection(&error).map(|r| r.kind()),
            Some(RejectionKind::InvalidRequest),
            "{uri}: {error}"
        );
        assert!(error.downcast_ref::<Unsendable>().is_some(), "{uri}");
        assert!(!error.to_string().contains("secret"), "{error}");
        let snapshot = breaker.snapshot();
        assert_eq!(
            snapshot.consecutive_failures, 0,
            "{uri}: not the dependency's fault"
        );
    }
    // A relative URI, a scheme reqwest does not speak and credentials, at least.
    assert!(refused >= 3, "only {refused} reached ReqwestService");
}

#[tokio::test]
async fn credentials_in_the_uri_are_refused_before_anything_is_sent() {
    let (addr, seen) = recorder("authorization").await;
    let request = http::Request::get(format!("http://user:secret@{addr}/"))
        .body(String::new())
        .unwrap();
    let error = reqwest_service().oneshot(request).await.unwrap_err();
    assert!(error.to_string().contains("Authorization"), "{error}");
    assert!(!error.to_string().contains("secret"), "{error}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the server"
    );
}

#[tokio::test]
async fn retried_attempts_carry_the_attempt_header() {
    let (addr, seen) = recorder("x-request-attempt").await;
    let client = ServiceBuilder::new()
        .layer(preset_with(HttpRetry::default().attempt_header()).layer())
        .service(reqwest_service());
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

#[tokio::test]
async fn the_future_answers_an_error_when_polled_again_and_can_be_dropped_mid_request() {
    let (addr, _seen) = recorder("x").await;
    for uri in ["/relative".to_string(), format!("http://{addr}/")] {
        let mut service = reqwest_service();
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
    let mut service = reqwest_service();
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
        .service(reqwest_service());
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
async fn a_request_that_came_in_over_http2_is_sent_with_the_clients_version() {
    let (addr, seen) = recorder("x").await;
    let preset = preset();
    let breaker = preset.breaker.handle();
    let client = ServiceBuilder::new()
        .layer(preset.layer())
        .service(reqwest_service());
    // Forwarding a request that came in over HTTP/2 keeps its version in `http::Request`.
    let request = http::Request::get(format!("http://{addr}/"))
        .version(http::Version::HTTP_2)
        .header("idempotency-key", "\"k\"")
        .body(String::new())
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "two 503s, then the answer"
    );
    assert_eq!(seen.lock().unwrap().len(), 3, "every attempt was sent");
    assert_eq!(breaker.snapshot().consecutive_failures, 0);
}
