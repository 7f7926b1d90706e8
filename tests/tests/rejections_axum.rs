//! Rejections from layers inside an axum router become HTTP responses, over real HTTP.

use std::fmt;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::Request;
use tower::filter::FilterLayer;
use tower::ServiceBuilder;
use tower_bulwark::{BoxError, HandleRejectionsLayer, Rejection, RejectionKind};
use tower_bulwark_tests::{get as get_request, send, serve_axum};

/// An error of some other layer that carries a rejection in its source chain.
#[derive(Debug)]
struct Wrapped(Rejection);

impl fmt::Display for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("wrapped by another layer")
    }
}

impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Refuses requests as the `x-test-reject` header says, the way a bulwark layer would.
fn refuse_on_demand(request: Request<Body>) -> Result<Request<Body>, BoxError> {
    let Some(what) = request.headers().get("x-test-reject") else {
        return Ok(request);
    };
    let error: BoxError = match what.as_bytes() {
        b"circuit-open" => Rejection::new(RejectionKind::CircuitOpen, "users")
            .with_retry_after(Duration::from_millis(2500))
            .into(),
        b"bulkhead-full" => Rejection::new(RejectionKind::BulkheadFull, "db")
            .with_reason("queue full")
            .into(),
        b"overloaded" => Rejection::new(RejectionKind::Overloaded, "shed")
            .with_retry_after(Duration::from_secs(1))
            .into(),
        b"throttled" => Rejection::new(RejectionKind::Throttled, "client")
            .with_retry_after(Duration::from_secs(30))
            .into(),
        b"deadline" => Rejection::new(RejectionKind::DeadlineExceeded, "edge").into(),
        b"wrapped" => Box::new(Wrapped(
            Rejection::new(RejectionKind::CircuitOpen, "inner")
                .with_retry_after(Duration::from_secs(7)),
        )),
        _ => "the database is on fire (secret detail)".into(),
    };
    Err(error)
}

fn router() -> Router {
    Router::new().route("/", get(|| async { "hello" })).layer(
        ServiceBuilder::new()
            .layer(HandleRejectionsLayer::new())
            .layer(FilterLayer::new(refuse_on_demand)),
    )
}

#[tokio::test]
async fn rejections_become_statuses_with_retry_after() {
    let addr = serve_axum(router()).await;

    let ok = send(addr, get_request("/", &[])).await;
    assert_eq!(ok.head.status, 200);
    assert_eq!(&ok.body[..], b"hello");

    // (what the server refuses with, status, Retry-After, marked as shed for overload)
    let cases = [
        ("circuit-open", 503, Some("3"), false),
        ("bulkhead-full", 503, None, true),
        ("overloaded", 503, Some("1"), true),
        ("throttled", 429, Some("30"), false),
        ("deadline", 504, None, false),
        ("wrapped", 503, Some("7"), false),
    ];
    for (what, status, retry_after, shed) in cases {
        let response = send(addr, get_request("/", &[("x-test-reject", what)])).await;
        assert_eq!(response.head.status, status, "{what}");
        let header = response.head.headers.get("retry-after");
        assert_eq!(header.map(|v| v.to_str().unwrap()), retry_after, "{what}");
        let marker = response.head.headers.get("x-bulwark-overloaded");
        assert_eq!(marker.is_some_and(|v| v == "true"), shed, "{what}");
        assert!(response.head.headers.get("grpc-status").is_none(), "{what}");
    }
}

#[tokio::test]
async fn other_errors_become_500_without_leaking_their_text() {
    let addr = serve_axum(router()).await;
    let response = send(addr, get_request("/", &[("x-test-reject", "other")])).await;
    assert_eq!(response.head.status, 500);
    assert!(response.head.headers.get("retry-after").is_none());
    let body = String::from_utf8_lossy(&response.body);
    assert!(!body.contains("secret"), "{body}");
}

#[tokio::test]
async fn grpc_requests_to_an_axum_router_get_grpc_statuses() {
    let addr = serve_axum(router()).await;
    let response = send(
        addr,
        get_request(
            "/",
            &[
                ("x-test-reject", "overloaded"),
                ("content-type", "application/grpc"),
            ],
        ),
    )
    .await;
    assert_eq!(response.head.status, 200);
    let headers = &response.head.headers;
    assert_eq!(headers["content-type"], "application/grpc");
    assert_eq!(headers["grpc-status"], "8");
    assert_eq!(
        headers["grpc-retry-pushback-ms"], "-1",
        "a shed: do not retry"
    );
    assert!(headers.get("retry-after").is_none());
}
