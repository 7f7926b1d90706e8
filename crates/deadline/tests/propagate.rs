//! The client side: what is left of the deadline goes downstream (paused time).

use std::time::Duration;

use http::{HeaderMap, Request};
use tokio::time::Instant;
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark_core::testing::controlled;
use tower_bulwark_core::{find_rejection, BoxError, Deadline, RejectionKind};
use tower_bulwark_deadline::{PropagateBuilder, PropagateDeadlineLayer, WriteHeaders};

/// The headers the next service receives, and the deadline inner layers see.
async fn sent(
    builder: PropagateBuilder,
    request: Request<()>,
) -> Result<(HeaderMap, Option<Duration>), BoxError> {
    let transport = service_fn(|request: Request<()>| async move {
        Ok::<_, BoxError>((
            request.headers().clone(),
            Deadline::current().map(Deadline::remaining),
        ))
    });
    builder
        .build()
        .unwrap()
        .layer(transport)
        .oneshot(request)
        .await
}

fn get() -> Request<()> {
    Request::get("/").body(()).unwrap()
}

fn grpc() -> Request<()> {
    Request::post("/pkg.Service/Method")
        .header("content-type", "application/grpc")
        .body(())
        .unwrap()
}

/// Runs `future` with `left` as the task's current deadline (as inside a handler).
async fn within<T>(left: Duration, future: impl std::future::Future<Output = T>) -> T {
    Deadline::after(left).scope(future).await
}

#[tokio::test(start_paused = true)]
async fn the_time_left_goes_out_in_the_protocols_header() {
    let builder = || PropagateDeadlineLayer::builder();
    let (headers, inner) = within(Duration::from_millis(800), sent(builder(), get()))
        .await
        .unwrap();
    assert_eq!(headers["x-request-timeout-ms"], "800");
    assert!(headers.get("grpc-timeout").is_none());
    assert_eq!(inner, Some(Duration::from_millis(800)));

    let (headers, _) = within(Duration::from_millis(800), sent(builder(), grpc()))
        .await
        .unwrap();
    assert_eq!(headers["grpc-timeout"], "800000u");
    assert!(headers.get("x-request-timeout-ms").is_none());
}

#[tokio::test(start_paused = true)]
async fn the_margin_comes_off_first_as_a_fraction_then_fixed() {
    let builder = PropagateDeadlineLayer::builder()
        .keep(0.9)
        .margin(Duration::from_millis(20));
    let (headers, inner) = within(Duration::from_secs(1), sent(builder, get()))
        .await
        .unwrap();
    assert_eq!(headers["x-request-timeout-ms"], "880");
    assert_eq!(
        inner,
        Some(Duration::from_millis(880)),
        "enforced locally too"
    );
}

#[tokio::test(start_paused = true)]
async fn the_requests_own_deadline_counts_but_never_past_the_tasks() {
    let with_own = |own: Duration| {
        let mut request = get();
        request.extensions_mut().insert(Deadline::after(own));
        request
    };
    // Set by the caller for this request, shorter than the handler's: it wins.
    let (headers, _) = within(
        Duration::from_secs(3),
        sent(
            PropagateDeadlineLayer::builder(),
            with_own(Duration::from_millis(100)),
        ),
    )
    .await
    .unwrap();
    assert_eq!(headers["x-request-timeout-ms"], "100");
    // Longer than the handler's: the call cannot outlive the handler that makes it.
    let (headers, _) = within(
        Duration::from_millis(100),
        sent(
            PropagateDeadlineLayer::builder(),
            with_own(Duration::from_secs(3)),
        ),
    )
    .await
    .unwrap();
    assert_eq!(headers["x-request-timeout-ms"], "100");
    // Outside any handler, the request's own is the deadline.
    let (headers, _) = sent(
        PropagateDeadlineLayer::builder(),
        with_own(Duration::from_secs(3)),
    )
    .await
    .unwrap();
    assert_eq!(headers["x-request-timeout-ms"], "3000");
}

#[tokio::test(start_paused = true)]
async fn forwarded_deadline_headers_that_are_not_written_are_removed() {
    let mut forwarded = get();
    forwarded
        .headers_mut()
        .insert("x-request-timeout-ms", "60000".parse().unwrap());
    forwarded
        .headers_mut()
        .insert("grpc-timeout", "60S".parse().unwrap());
    let grpc_only = PropagateDeadlineLayer::builder().write_headers(WriteHeaders::Grpc);
    let (headers, _) = within(Duration::from_millis(50), sent(grpc_only, forwarded))
        .await
        .unwrap();
    assert_eq!(headers["grpc-timeout"], "50000000n");
    assert!(headers.get("x-request-timeout-ms").is_none());
}

#[tokio::test(start_paused = true)]
async fn without_a_deadline_the_default_or_nothing() {
    let (headers, inner) = sent(PropagateDeadlineLayer::builder(), get())
        .await
        .unwrap();
    assert!(headers.is_empty());
    assert_eq!(inner, None);
    let with_default = PropagateDeadlineLayer::builder().default_timeout(Duration::from_secs(2));
    let (headers, inner) = sent(with_default, get()).await.unwrap();
    assert_eq!(headers["x-request-timeout-ms"], "2000");
    assert_eq!(inner, Some(Duration::from_secs(2)));
}

#[tokio::test(start_paused = true)]
async fn stale_headers_are_replaced_and_both_can_be_written() {
    let mut request = grpc();
    request
        .headers_mut()
        .insert("grpc-timeout", "99H".parse().unwrap());
    let both = PropagateDeadlineLayer::builder().write_headers(WriteHeaders::Both);
    let (headers, _) = within(Duration::from_millis(50), sent(both, request))
        .await
        .unwrap();
    assert_eq!(headers["grpc-timeout"], "50000000n");
    assert_eq!(headers["x-request-timeout-ms"], "50");
    assert_eq!(headers.get_all("grpc-timeout").iter().count(), 1);

    let none = PropagateDeadlineLayer::builder().write_headers(WriteHeaders::None);
    let (headers, inner) = within(Duration::from_millis(50), sent(none, get()))
        .await
        .unwrap();
    assert!(headers.is_empty());
    assert_eq!(inner, Some(Duration::from_millis(50)));
}

#[tokio::test(start_paused = true)]
async fn too_little_time_left_fails_without_calling() {
    let (inner, control) = controlled::<Request<()>>();
    let layer = PropagateDeadlineLayer::builder()
        .min_budget(Duration::from_millis(10))
        .build()
        .unwrap();
    let service = layer.layer(inner);
    let error = Deadline::after(Duration::from_millis(9))
        .scope(service.clone().oneshot(get()))
        .await
        .unwrap_err();
    let rejection = find_rejection(&error).unwrap();
    assert_eq!(rejection.kind(), RejectionKind::DeadlineExceeded);
    assert_eq!(rejection.reason(), Some("too little time left"));
    assert_eq!(control.calls(), 0);
    assert!(Deadline::after(Duration::from_millis(10))
        .scope(service.oneshot(get()))
        .await
        .is_ok());
}

#[tokio::test(start_paused = true)]
async fn the_call_is_dropped_when_its_time_runs_out() {
    let (inner, control) = controlled::<Request<()>>();
    control.hang();
    let layer = PropagateDeadlineLayer::builder()
        .margin(Duration::from_millis(50))
        .build()
        .unwrap();
    let started = Instant::now();
    let error = Deadline::after(Duration::from_millis(500))
        .scope(layer.layer(inner).oneshot(get()))
        .await
        .unwrap_err();
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(500),
        "held to the deadline itself; the margin was the downstream's head start"
    );
    assert_eq!(
        find_rejection(&error).unwrap().kind(),
        RejectionKind::DeadlineExceeded
    );
    assert_eq!(control.cancelled(), 1);
}

#[tokio::test(start_paused = true)]
async fn predictive_admission_refuses_calls_shorter_than_the_median() {
    let (inner, control) = controlled::<Request<()>>();
    control.delay(Duration::from_millis(100));
    let layer = PropagateDeadlineLayer::builder()
        .predictive_admission(Duration::from_secs(60))
        .build()
        .unwrap();
    let service = layer.layer(inner);
    let call = |left_ms: u64| {
        Deadline::after(Duration::from_millis(left_ms)).scope(service.clone().oneshot(get()))
    };
    // Learning: 20 calls of 100 ms.
    for _ in 0..20 {
        call(1_000).await.unwrap();
    }
    let error = call(60).await.unwrap_err();
    assert_eq!(
        find_rejection(&error).unwrap().reason(),
        Some("less time left than the dependency's median latency")
    );
    assert_eq!(control.calls(), 20);
    call(150).await.unwrap();

    // After a whole window without a success to refresh it, the median is forgotten: the
    // refusals cannot keep an old median alive.
    tokio::time::advance(Duration::from_secs(61)).await;
    call(60).await.unwrap_err();
    assert_eq!(
        control.calls(),
        22,
        "the short call was let through, and timed out"
    );
}

#[test]
fn bad_settings_name_their_field() {
    let field = |builder: PropagateBuilder| builder.build().unwrap_err().field();
    assert_eq!(field(PropagateDeadlineLayer::builder().keep(0.0)), "keep");
    assert_eq!(field(PropagateDeadlineLayer::builder().keep(1.5)), "keep");
    assert_eq!(
        field(PropagateDeadlineLayer::builder().keep(f64::NAN)),
        "keep"
    );
    assert_eq!(
        field(PropagateDeadlineLayer::builder().default_timeout(Duration::ZERO)),
        "default_timeout"
    );
    assert_eq!(
        field(PropagateDeadlineLayer::builder().predictive_admission(Duration::from_millis(10))),
        "predictive_admission"
    );
}
