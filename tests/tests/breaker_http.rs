//! A circuit breaker inside an axum server, over real HTTP: the handler's 500s trip it, the
//! open breaker answers 503 with `Retry-After` without running the handler, and an operator
//! reset brings traffic back.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tower::ServiceBuilder;
use tower_bulwark::breaker::{CircuitBreakerLayer, OpenDuration, State};
use tower_bulwark::{HandleRejectionsLayer, HttpClassifier};
use tower_bulwark_tests::{get as get_request, send, serve_axum};

#[tokio::test]
async fn server_side_breaker_sheds_a_failing_route() {
    let failing = Arc::new(AtomicBool::new(true));
    let handled = Arc::new(AtomicUsize::new(0));
    let breaker = CircuitBreakerLayer::builder()
        .name("orders")
        .consecutive_failures(3)
        .open_duration(OpenDuration::Fixed(Duration::from_secs(30)))
        .classify(HttpClassifier)
        .build()
        .unwrap();
    let handle = breaker.handle();
    let router = Router::new()
        .route(
            "/orders",
            get({
                let (failing, handled) = (failing.clone(), handled.clone());
                move || async move {
                    handled.fetch_add(1, Ordering::SeqCst);
                    if failing.load(Ordering::SeqCst) {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleRejectionsLayer::new())
                .layer(breaker),
        );
    let addr = serve_axum(router).await;

    for _ in 0..3 {
        let response = send(addr, get_request("/orders", &[])).await;
        assert_eq!(response.head.status, 500);
    }
    assert_eq!(handle.state(), State::Open);

    for _ in 0..5 {
        let response = send(addr, get_request("/orders", &[])).await;
        assert_eq!(response.head.status, 503);
        let retry_after: u64 = response.head.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((29..=30).contains(&retry_after), "{retry_after}");
    }
    assert_eq!(
        handled.load(Ordering::SeqCst),
        3,
        "the open breaker kept calls off the handler"
    );

    // gRPC callers get UNAVAILABLE with pushback instead.
    let grpc = send(
        addr,
        get_request("/orders", &[("content-type", "application/grpc")]),
    )
    .await;
    assert_eq!(grpc.head.headers["grpc-status"], "14");
    assert!(grpc.head.headers.contains_key("grpc-retry-pushback-ms"));

    failing.store(false, Ordering::SeqCst);
    handle.reset();
    let response = send(addr, get_request("/orders", &[])).await;
    assert_eq!(response.head.status, 200);
    assert_eq!(handle.snapshot().rejected, 6);
}
