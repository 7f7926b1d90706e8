//! Fallbacks over real HTTP: a catalogue service that works, then fails; the client keeps
//! answering from the last good response, a static one, or a function of the failure.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::Full;
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark::fallback::{Degraded, Failure, FallbackFailed, FallbackLayer, FallbackOn};
use tower_bulwark::{BoxError, HttpClassifier, Rejection, RejectionKind};
use tower_bulwark_tests::{send, serve_axum};

/// A server answering `/item/{id}` with its id, or with the status set in `status`.
async fn catalogue(status: Arc<AtomicU16>) -> std::net::SocketAddr {
    let app = Router::new().route(
        "/item/{id}",
        get(
            move |axum::extract::Path(id): axum::extract::Path<String>| {
                let status = status.load(Ordering::SeqCst);
                async move {
                    match status {
                        200 => (StatusCode::OK, format!("item {id}")),
                        code => (StatusCode::from_u16(code).unwrap(), "down".to_string()),
                    }
                }
            },
        ),
    );
    serve_axum(app).await
}

/// A client of `addr`: the response and its body.
fn client(
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

fn get_item(id: u32) -> http::Request<Full<Bytes>> {
    http::Request::get(format!("/item/{id}"))
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn the_last_good_response_then_a_static_one() {
    let status = Arc::new(AtomicU16::new(200));
    let addr = catalogue(status.clone()).await;
    let fallback = FallbackLayer::builder()
        .key(|request: &http::Request<Full<Bytes>>| request.uri().path().to_string())
        .last_good(Duration::from_secs(60), 100)
        .static_response(http::Response::new(Bytes::from_static(
            b"catalogue unavailable",
        )))
        .classify(HttpClassifier)
        .build()
        .unwrap();
    let service = fallback.layer(client(addr));

    let fresh = service.clone().oneshot(get_item(1)).await.unwrap();
    assert_eq!(&fresh.body()[..], b"item 1");
    assert!(fresh.headers().get("x-bulwark-degraded").is_none());

    status.store(503, Ordering::SeqCst);
    let stale = service.clone().oneshot(get_item(1)).await.unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(
        &stale.body()[..],
        b"item 1",
        "the last good answer for this key"
    );
    assert_eq!(stale.headers()["x-bulwark-degraded"], "last-good");
    assert_eq!(
        stale.extensions().get::<Degraded>(),
        Some(&Degraded::LastGood)
    );

    let never_seen = service.clone().oneshot(get_item(2)).await.unwrap();
    assert_eq!(&never_seen.body()[..], b"catalogue unavailable");
    assert_eq!(never_seen.headers()["x-bulwark-degraded"], "fallback");

    // A client error is not a failure: it goes through untouched.
    status.store(404, Ordering::SeqCst);
    let missing = service.oneshot(get_item(1)).await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers().get("x-bulwark-degraded").is_none());
}

#[tokio::test]
async fn a_function_of_the_failure_and_its_own_failure_reported() {
    let status = Arc::new(AtomicU16::new(502));
    let addr = catalogue(status.clone()).await;
    let fallback = FallbackLayer::builder()
        .respond_with(|_: &(), failure: Failure<'_, Bytes>| match failure {
            Failure::Response(response) if response.status() == 502 => {
                Ok(http::Response::new(Bytes::from("upstream 502, try later")))
            }
            _ => Err("no fallback for this".into()),
        })
        .classify(HttpClassifier)
        .build()
        .unwrap();
    let service = fallback.layer(client(addr));
    let answer = service.clone().oneshot(get_item(1)).await.unwrap();
    assert_eq!(&answer.body()[..], b"upstream 502, try later");

    status.store(500, Ordering::SeqCst);
    let error = service.oneshot(get_item(1)).await.unwrap_err();
    let failed = error
        .downcast_ref::<FallbackFailed>()
        .expect("both errors kept");
    assert_eq!(failed.fallback.to_string(), "no fallback for this");
    assert!(
        failed.primary.to_string().contains("500"),
        "{}",
        failed.primary
    );
}

#[tokio::test]
async fn rejections_fall_back_and_can_be_the_only_thing_that_does() {
    let refusing = service_fn(|_: http::Request<()>| async {
        Err::<http::Response<Bytes>, BoxError>(
            Rejection::new(RejectionKind::CircuitOpen, "catalogue").into(),
        )
    });
    let failing = service_fn(|_: http::Request<()>| async {
        Err::<http::Response<Bytes>, BoxError>("connection reset".into())
    });
    let layer = FallbackLayer::builder()
        .static_response(http::Response::new(Bytes::from_static(b"cached page")))
        .on(FallbackOn::Rejections)
        .build()
        .unwrap();
    let answer = layer
        .layer(refusing)
        .oneshot(http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(&answer.body()[..], b"cached page");
    let error = layer
        .layer(failing)
        .oneshot(http::Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "connection reset",
        "not a rejection: passed on"
    );
}

#[test]
fn a_fallback_needs_a_source() {
    let error = FallbackLayer::builder::<Bytes>().build().unwrap_err();
    assert_eq!(error.field(), "sources");
    let error = FallbackLayer::builder::<Bytes>()
        .last_good(Duration::ZERO, 10)
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "last_good.ttl");
}

#[tokio::test]
async fn a_failed_call_goes_to_the_backup_service() {
    use tower_bulwark::fallback::BackupLayer;

    let primary_status = Arc::new(AtomicU16::new(503));
    let primary = catalogue(primary_status.clone()).await;
    let replica = catalogue(Arc::new(AtomicU16::new(200))).await;
    let service = BackupLayer::new(client(replica))
        .classify(HttpClassifier)
        .layer(client(primary));

    let answer = service.clone().oneshot(get_item(7)).await.unwrap();
    assert_eq!(&answer.body()[..], b"item 7");
    assert_eq!(answer.headers()["x-bulwark-degraded"], "backup");

    primary_status.store(200, Ordering::SeqCst);
    let answer = service.oneshot(get_item(8)).await.unwrap();
    assert_eq!(&answer.body()[..], b"item 8");
    assert!(
        answer.headers().get("x-bulwark-degraded").is_none(),
        "the primary answered"
    );
}
