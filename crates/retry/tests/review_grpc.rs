//! Review of the gRPC / HTTP retry rules through tower's `Retry`, in paused time: the
//! request's own deadline bounds gRPC retries as it bounds HTTP ones; a call that never
//! left is retried whatever its method by `HttpRetry` too (the rules `repeat.rs` says all
//! repeaters share); an empty `Idempotency-Key` makes nothing safe to repeat.
#![cfg(feature = "http")]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use tokio::time::Instant;
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark_core::repeat::GrpcMethods;
use tower_bulwark_core::{BoxError, Deadline, GrpcCode};
use tower_bulwark_retry::{
    Backoff, Decision, GrpcRetry, HttpRetry, Jitter, RetryClassify, RetryPolicy,
};

const GET: &str = "/shop.Orders/Get";

/// A transport that answers every call with `answer`, counting the calls.
fn transport(
    calls: Arc<AtomicUsize>,
    answer: fn() -> Result<Response<()>, BoxError>,
) -> impl tower::Service<
    Request<()>,
    Response = Response<()>,
    Error = BoxError,
    Future = impl std::future::Future<Output = Result<Response<()>, BoxError>>,
> + Clone {
    service_fn(move |_: Request<()>| {
        calls.fetch_add(1, SeqCst);
        std::future::ready(answer())
    })
}

fn unavailable() -> Result<Response<()>, BoxError> {
    Ok(Response::builder()
        .header("grpc-status", "14")
        .body(())
        .unwrap())
}

#[tokio::test(start_paused = true)]
async fn grpc_retries_end_at_the_deadline_the_request_carries() {
    // Behind a `Buffer` the task's deadline is gone; the request's is what is left.
    let policy = RetryPolicy::builder()
        .max_attempts(5)
        .backoff(Backoff::Constant(Duration::from_millis(300)), Jitter::None)
        .classify(GrpcRetry::new().method(GET).unwrap())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let service = policy.layer().layer(transport(calls.clone(), unavailable));
    let mut request = Request::post(GET).body(()).unwrap();
    request
        .extensions_mut()
        .insert(Deadline::after(Duration::from_millis(700)));
    let started = Instant::now();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "14");
    // Attempts at 0, 300 and 600 ms; one at 900 ms would outlive the deadline.
    assert_eq!(calls.load(SeqCst), 3);
    assert_eq!(started.elapsed(), Duration::from_millis(600));

    let retry = GrpcRetry::new();
    let deadline = Deadline::after(Duration::from_secs(1));
    let mut request = Request::post(GET).body(()).unwrap();
    assert_eq!(
        RetryClassify::<_, Response<()>, BoxError>::request_deadline(&retry, &request),
        None
    );
    request.extensions_mut().insert(deadline);
    assert_eq!(
        RetryClassify::<_, Response<()>, BoxError>::request_deadline(&retry, &request),
        Some(deadline)
    );
}

fn refused() -> Result<Response<()>, BoxError> {
    Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into())
}

fn reset() -> Result<Response<()>, BoxError> {
    Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into())
}

#[tokio::test(start_paused = true)]
async fn http_retry_repeats_a_post_that_never_left_and_only_that() {
    let policy = |retry: HttpRetry| {
        RetryPolicy::builder()
            .max_attempts(3)
            .backoff(Backoff::Constant(Duration::from_millis(10)), Jitter::None)
            .classify(retry)
            .build()
            .unwrap()
    };
    let post = || Request::post("/orders").body(()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let service = policy(HttpRetry::default())
        .layer()
        .layer(transport(calls.clone(), refused));
    service.oneshot(post()).await.unwrap_err();
    assert_eq!(
        calls.load(SeqCst),
        3,
        "the connection was refused: never sent"
    );

    let calls = Arc::new(AtomicUsize::new(0));
    let service = policy(HttpRetry::default())
        .layer()
        .layer(transport(calls.clone(), reset));
    service.oneshot(post()).await.unwrap_err();
    assert_eq!(
        calls.load(SeqCst),
        1,
        "a reset may come after the server took it"
    );

    // As `GrpcRetry` and `BackupLayer` decide the same errors.
    let grpc = Request::post("/shop.Orders/Create").body(()).unwrap();
    assert_eq!(
        GrpcRetry::new().decide(&grpc, &refused()),
        Decision::Retry { pushback: None }
    );
    assert_eq!(
        HttpRetry::default().decide(&post(), &refused()),
        Decision::Retry { pushback: None }
    );
    assert_eq!(
        HttpRetry::default().decide(&post(), &reset()),
        Decision::Done
    );
    // A 503 answer did reach the server.
    let busy: Result<Response<()>, BoxError> =
        Ok(Response::builder().status(503).body(()).unwrap());
    assert_eq!(HttpRetry::default().decide(&post(), &busy), Decision::Done);
}

#[test]
fn an_empty_idempotency_key_makes_nothing_safe_to_repeat() {
    let busy: Result<Response<()>, BoxError> =
        Ok(Response::builder().status(503).body(()).unwrap());
    let keyed = |key: &'static str| {
        Request::post("/orders")
            .header("idempotency-key", key)
            .body(())
            .unwrap()
    };
    for empty in ["", " ", "\t"] {
        assert_eq!(
            HttpRetry::default().decide(&keyed(empty), &busy),
            Decision::Done,
            "{empty:?}"
        );
    }
    assert_ne!(
        HttpRetry::default().decide(&keyed("order-1"), &busy),
        Decision::Done
    );
}

#[test]
fn a_method_rule_beats_a_service_rule_whatever_their_order() {
    // gRPC's service config: the most specific name wins (method over service), not the
    // first written.
    let service_first = GrpcRetry::new()
        .service("shop.Orders")
        .unwrap()
        .methods(
            GrpcMethods::new().method(GET).unwrap(),
            &[GrpcCode::ResourceExhausted],
        )
        .unwrap();
    let method_first = GrpcRetry::new()
        .methods(
            GrpcMethods::new().method(GET).unwrap(),
            &[GrpcCode::ResourceExhausted],
        )
        .unwrap()
        .service("shop.Orders")
        .unwrap();
    let answer = |code: &str| -> Result<Response<()>, BoxError> {
        Ok(Response::builder()
            .header("grpc-status", code)
            .body(())
            .unwrap())
    };
    let call = |path: &str| Request::post(path).body(()).unwrap();
    for retry in [service_first, method_first] {
        let decide = |path: &str, code: &str| retry.decide(&call(path), &answer(code));
        assert_eq!(
            decide(GET, "8"),
            Decision::Retry { pushback: None },
            "{retry:?}"
        );
        assert_eq!(decide(GET, "14"), Decision::Done, "{retry:?}");
        let list = "/shop.Orders/List";
        assert_eq!(
            decide(list, "14"),
            Decision::Retry { pushback: None },
            "{retry:?}"
        );
        assert_eq!(decide(list, "8"), Decision::Done, "{retry:?}");
    }
}
