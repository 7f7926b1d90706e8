//! Review of the drain: who wakes a waiting `drained`, and when.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::time::Instant;
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_bulwark_core::testing::controlled;
use tower_bulwark_core::{find_rejection, BoxError, RejectionKind};
use tower_bulwark_health::DrainLayer;

fn answer(
    _: http::Request<()>,
) -> std::future::Ready<Result<http::Response<Full<Bytes>>, std::io::Error>> {
    std::future::ready(Ok(http::Response::new(Full::new(Bytes::from_static(
        b"body",
    )))))
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_body_wakes_the_drain_at_once() {
    let drain = DrainLayer::new();
    let handle = drain.handle();
    let service = drain.layer(service_fn(answer));
    let response = service.oneshot(http::Request::new(())).await.unwrap();
    handle.drain();
    let started = Instant::now();
    let drained = tokio::spawn({
        let handle = handle.clone();
        async move { handle.drained(Duration::from_secs(30)).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!drained.is_finished());
    drop(response);
    assert_eq!(drained.await.unwrap().cut, 0);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

fn assert_draining(error: &BoxError) {
    let rejection = find_rejection(error).unwrap_or_else(|| panic!("not a rejection: {error}"));
    assert_eq!(rejection.kind(), RejectionKind::Draining);
}

/// During a drain the inner service is often full with the work in flight (a concurrency
/// limit, a bulkhead, a `Buffer`), or failing. A new request must hear `Draining` (503 and
/// `Connection: close`: go elsewhere) at once, not wait for that readiness, nor get its
/// error instead.
#[tokio::test(start_paused = true)]
async fn a_draining_service_refuses_at_once_whatever_the_inner_readiness() {
    let drain = DrainLayer::new();
    let handle = drain.handle();
    let (inner, control) = controlled::<u32>();
    let service = drain.layer(inner.map_response(http::Response::new));
    control.pause();
    handle.drain();
    let waited = tokio::time::timeout(Duration::from_secs(1), service.clone().oneshot(1)).await;
    let error = waited.expect("refused at once").unwrap_err();
    assert_draining(&error);
    control.fail_readiness();
    assert_draining(&service.clone().oneshot(2).await.unwrap_err());
    assert_eq!(control.calls(), 0);
    assert_eq!(handle.in_flight(), 0);

    // Before the drain, and when it keeps serving, the inner readiness is waited for.
    let serving = DrainLayer::new().keep_serving();
    let handle = serving.handle();
    let (inner, control) = controlled::<u32>();
    let mut service = serving.layer(inner.map_response(http::Response::new));
    control.pause();
    for draining in [false, true] {
        if draining {
            handle.drain();
        }
        let waited = tokio::time::timeout(Duration::from_secs(1), service.ready()).await;
        assert!(waited.is_err(), "draining: {draining}");
    }
    control.fail_readiness();
    assert!(find_rejection(&service.ready().await.unwrap_err()).is_none());
    control.ready();
    let response = service.ready().await.unwrap().call(3).await;
    assert!(response.is_ok());
    assert_eq!(control.calls(), 1);
    assert_eq!(handle.in_flight(), 1);
}
