//! A bulkhead inside an axum server, over real HTTP: when the route's compartment is full,
//! the next request is answered 503 at once without running the handler.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use tower::ServiceBuilder;
use tower_bulwark::bulkhead::BulkheadLayer;
use tower_bulwark::HandleRejectionsLayer;
use tower_bulwark_tests::{get as get_request, send, serve_axum};

#[tokio::test]
async fn a_full_compartment_answers_503_without_running_the_handler() {
    let (release, released) = watch::channel(false);
    let started = Arc::new(AtomicUsize::new(0));
    let bulkhead = BulkheadLayer::builder()
        .name("reports")
        .max_concurrent(2)
        .build()
        .unwrap();
    let handle = bulkhead.handle();
    let router = Router::new()
        .route(
            "/reports",
            get({
                let started = started.clone();
                move || {
                    let mut released = released.clone();
                    let started = started.clone();
                    async move {
                        started.fetch_add(1, Ordering::SeqCst);
                        let _ = released.wait_for(|done| *done).await;
                        "report"
                    }
                }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleRejectionsLayer::new())
                .layer(bulkhead),
        );
    let addr = serve_axum(router).await;

    let slow: Vec<_> = (0..2)
        .map(|_| tokio::spawn(send(addr, get_request("/reports", &[]))))
        .collect();
    while handle.snapshot().in_flight < 2 {
        tokio::task::yield_now().await;
    }
    let refused = send(addr, get_request("/reports", &[])).await;
    assert_eq!(refused.head.status, 503);
    assert!(refused.head.headers.get("retry-after").is_none());
    let grpc = send(
        addr,
        get_request("/reports", &[("content-type", "application/grpc")]),
    )
    .await;
    assert_eq!(grpc.head.headers["grpc-status"], "8");
    assert_eq!(
        grpc.head.headers["grpc-message"],
        "bulkhead full (queue full)"
    );
    assert_eq!(
        started.load(Ordering::SeqCst),
        2,
        "refused calls never reached the handler"
    );

    release.send(true).unwrap();
    for call in slow {
        assert_eq!(call.await.unwrap().head.status, 200);
    }
    assert_eq!(handle.snapshot().in_flight, 0);
    assert_eq!(handle.snapshot().rejected_queue_full, 2);
}
