//! Refusals answered with an `application/problem+json` body over real HTTP: the server
//! preset under `ProblemDetailsLayer`, in an axum router on loopback.

use axum::routing::get;
use axum::Router;
use tower_bulwark::presets::ServerPreset;
use tower_bulwark::ProblemDetailsLayer;
use tower_bulwark_tests::{get as get_request, send, serve_axum};

#[tokio::test]
async fn a_draining_server_says_why_in_a_problem_document() {
    let server = ServerPreset::http().unwrap();
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(server.layer())
        .layer(ProblemDetailsLayer::new());
    let addr = serve_axum(app).await;

    let answered = send(addr, get_request("/", &[])).await;
    assert_eq!(answered.head.status, 200);
    assert_eq!(&answered.body[..], b"hello");

    server.drain.handle().drain();
    let refused = send(addr, get_request("/", &[])).await;
    assert_eq!(refused.head.status, 503);
    assert_eq!(
        refused.head.headers["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(body["status"], 503);
    assert_eq!(body["kind"], "draining");
    assert_eq!(body["title"], "Service Unavailable");
    assert!(body.get("layer").is_none(), "no internal names");

    // gRPC clients still get trailers-only answers.
    let grpc = send(
        addr,
        get_request("/", &[("content-type", "application/grpc")]),
    )
    .await;
    assert_eq!(grpc.head.headers["grpc-status"], "14");
    assert!(grpc.body.is_empty());
}

/// Outside axum (hyper, tonic), the preset's answers carry its drain's body type: the
/// problem body is written into it.
#[tokio::test]
async fn the_server_preset_takes_problem_bodies_in_a_plain_service_builder() {
    use tower::{service_fn, ServiceBuilder, ServiceExt};

    let server = ServerPreset::http().unwrap();
    let stack = ServiceBuilder::new()
        .layer(ProblemDetailsLayer::new())
        .layer(server.layer())
        .service(service_fn(|_: http::Request<String>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hello")))
        }));
    tower_bulwark::expect_service::<http::Request<String>, _>(&stack);
    server.drain.handle().drain();
    let refused = stack
        .oneshot(http::Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    let body = http_body_util::BodyExt::collect(refused.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["kind"], "draining");
}
