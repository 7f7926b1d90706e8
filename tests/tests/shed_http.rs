//! Shedding over real HTTP: an axum server with a shedding layer under concurrent calls
//! answers the excess at once with 503 or gRPC `RESOURCE_EXHAUSTED`, pushback and the
//! shed marker, least important calls first.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::{Notify, Semaphore};
use tower::ServiceBuilder;
use tower_bulwark::shed::{Fixed, FromRequest, ShedHandle, ShedLayer};
use tower_bulwark::HandleRejectionsLayer;
use tower_bulwark_tests::{send, serve_axum, Received};

/// A server whose `/hold` handler waits until released; returns its address, the shed
/// handle, a count of handlers entered and the release.
async fn server(
    limit: usize,
) -> (
    std::net::SocketAddr,
    ShedHandle,
    Arc<Semaphore>,
    Arc<Notify>,
) {
    let shed = ShedLayer::builder()
        .name("api")
        .fixed(Fixed::new(limit).unwrap())
        .criticality(FromRequest::default())
        .build()
        .unwrap();
    let handle = shed.handle();
    let entered = Arc::new(Semaphore::new(0));
    let release = Arc::new(Notify::new());
    let (in_handler, released) = (entered.clone(), release.clone());
    let router = Router::new()
        .route(
            "/hold",
            get(move || {
                let (entered, release) = (in_handler.clone(), released.clone());
                async move {
                    let waiting = release.notified();
                    entered.add_permits(1);
                    waiting.await;
                    "done"
                }
            }),
        )
        .route("/", get(|| async { "fast" }))
        .layer(
            ServiceBuilder::new()
                .layer(HandleRejectionsLayer::new())
                .layer(shed),
        );
    (serve_axum(router).await, handle, entered, release)
}

fn request(path: &str, headers: &[(&str, &str)]) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::default()).unwrap()
}

/// Starts `n` held calls and waits until their handlers run.
async fn hold(
    addr: std::net::SocketAddr,
    entered: &Semaphore,
    n: u32,
) -> Vec<tokio::task::JoinHandle<Received>> {
    let held: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(send(
                addr,
                request("/hold", &[("x-request-criticality", "critical-plus")]),
            ))
        })
        .collect();
    entered.acquire_many(n).await.unwrap().forget();
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_excess_is_answered_at_once_with_pushback_and_the_marker() {
    let (addr, handle, entered, release) = server(1).await;
    let held = hold(addr, &entered, 1).await;
    assert_eq!(handle.snapshot().in_flight, 1);

    let shed = send(addr, request("/", &[])).await;
    assert_eq!(shed.head.status, 503);
    assert_eq!(shed.head.headers["retry-after"], "1");
    assert_eq!(shed.head.headers["x-bulwark-overloaded"], "true");

    let grpc = send(addr, request("/", &[("content-type", "application/grpc")])).await;
    assert_eq!(
        grpc.head.status, 200,
        "gRPC errors travel as trailers-only responses"
    );
    assert_eq!(grpc.head.headers["grpc-status"], "8", "RESOURCE_EXHAUSTED");
    // gRPC's "do not retry" for a shed (the HTTP answer keeps `Retry-After`).
    assert_eq!(grpc.head.headers["grpc-retry-pushback-ms"], "-1");
    assert_eq!(grpc.head.headers["x-bulwark-overloaded"], "true");

    release.notify_waiters();
    for call in held {
        assert_eq!(call.await.unwrap().head.status, 200);
    }
    let fine = send(addr, request("/", &[])).await;
    assert_eq!(&fine.body[..], b"fast");
    assert_eq!(handle.snapshot().in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sheddable_calls_go_first_and_unknown_labels_count_as_critical() {
    // Limit 4 with 3 critical calls in flight (the held calls ask for critical-plus, which
    // a client may not raise itself to): the tiers below keep critical's recent peak plus a
    // quarter (3 + 1) less what it holds, one place, free. Sheddable and sheddable-plus
    // calls are refused; a critical one (an unknown label) gets that place.
    let (addr, handle, entered, release) = server(4).await;
    let held = hold(addr, &entered, 3).await;
    let status = |criticality: &'static str| async move {
        send(
            addr,
            request("/", &[("x-request-criticality", criticality)]),
        )
        .await
        .head
        .status
    };
    assert_eq!(status("sheddable").await, 503);
    assert_eq!(
        status("SHEDDABLE_PLUS").await,
        503,
        "parsed in any case, with underscores"
    );
    assert_eq!(status("no-such-tier").await, 200, "unknown means critical");
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.shed, [1, 1, 0, 0]);
    release.notify_waiters();
    for call in held {
        call.await.unwrap();
    }
}
