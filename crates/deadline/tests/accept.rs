//! The server side: reading, capping and enforcing the caller's deadline (paused time).

use std::time::{Duration, SystemTime};

use http::Request;
use tokio::time::Instant;
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_bulwark_core::testing::{controlled, Behavior, ReadinessProbe};
use tower_bulwark_core::{find_rejection, BoxError, Deadline, RejectionKind};
use tower_bulwark_deadline::{AcceptBuilder, AcceptDeadlineLayer, DeadlineHeader, OnInvalid};

fn request(headers: &[(&str, &str)]) -> Request<()> {
    let mut builder = Request::get("/");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap()
}

/// What the handler saw: the time left of its current deadline, and whether the request
/// carried the same deadline in its extensions.
async fn seen(
    layer: &AcceptDeadlineLayer,
    request: Request<()>,
) -> Result<Option<Duration>, BoxError> {
    let handler = service_fn(|request: Request<()>| async move {
        let current = Deadline::current();
        assert_eq!(request.extensions().get::<Deadline>().copied(), current);
        Ok::<_, BoxError>(current.map(Deadline::remaining))
    });
    layer.layer(handler).oneshot(request).await
}

/// Without headroom, so the handler sees exactly what the caller sent.
fn builder() -> AcceptBuilder {
    AcceptDeadlineLayer::builder().headroom(Duration::ZERO)
}

fn layer() -> AcceptDeadlineLayer {
    builder().build().unwrap()
}

fn kind(error: &BoxError) -> RejectionKind {
    find_rejection(error).expect("a rejection").kind()
}

#[tokio::test(start_paused = true)]
async fn the_handler_sees_the_callers_deadline() {
    let cases = [
        (
            vec![("grpc-timeout", "250m")],
            Some(Duration::from_millis(250)),
        ),
        (vec![("grpc-timeout", "2S")], Some(Duration::from_secs(2))),
        (
            vec![("x-request-timeout-ms", "1500")],
            Some(Duration::from_millis(1500)),
        ),
        (
            vec![("grpc-timeout", "100m"), ("x-request-timeout-ms", "900")],
            Some(Duration::from_millis(100)),
        ),
        (vec![], None),
        // Not read unless asked for.
        (vec![("x-envoy-expected-rq-timeout-ms", "300")], None),
    ];
    for (headers, expected) in cases {
        assert_eq!(
            seen(&layer(), request(&headers)).await.unwrap(),
            expected,
            "{headers:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_maximum_caps_and_the_default_fills_in() {
    let layer = builder()
        .max(Duration::from_secs(1))
        .default_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let seen_with = |headers: &[(&str, &str)]| seen(&layer, request(headers));
    assert_eq!(
        seen_with(&[("grpc-timeout", "5S")]).await.unwrap(),
        Some(Duration::from_secs(1))
    );
    assert_eq!(
        seen_with(&[("grpc-timeout", "500m")]).await.unwrap(),
        Some(Duration::from_millis(500))
    );
    assert_eq!(
        seen_with(&[]).await.unwrap(),
        Some(Duration::from_millis(300))
    );
}

#[tokio::test(start_paused = true)]
async fn opt_in_headers_in_the_configured_order() {
    let layer = builder()
        .headers([
            DeadlineHeader::EnvoyExpectedTimeout,
            DeadlineHeader::GrpcTimeout,
        ])
        .build()
        .unwrap();
    let both = request(&[
        ("x-envoy-expected-rq-timeout-ms", "300"),
        ("grpc-timeout", "1S"),
    ]);
    assert_eq!(
        seen(&layer, both).await.unwrap(),
        Some(Duration::from_millis(300))
    );
    let ignored = request(&[("x-request-timeout-ms", "300")]);
    assert_eq!(seen(&layer, ignored).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn an_absolute_deadline_is_read_against_the_wall_clock_less_the_skew() {
    let layer = builder()
        .headers([DeadlineHeader::absolute_ms(Duration::from_millis(200))])
        .default_timeout(Duration::from_secs(9))
        .build()
        .unwrap();
    let epoch_ms = |offset_ms: i64| {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        (now + offset_ms).to_string()
    };
    let ahead = request(&[("x-request-deadline", &epoch_ms(5_000))]);
    let remaining = seen(&layer, ahead).await.unwrap().unwrap();
    assert!(
        remaining > Duration::from_millis(4_700) && remaining <= Duration::from_millis(4_800),
        "5 s less 200 ms of skew: {remaining:?}"
    );

    // Passed, just or long ago, or nearer than the skew: expired, refused without calling
    // the handler.
    let (inner, control) = controlled::<Request<()>>();
    let service = layer.layer(inner);
    for offset in [-500, -60_000, 100] {
        let late = request(&[("x-request-deadline", &epoch_ms(offset))]);
        let error = service.clone().oneshot(late).await.unwrap_err();
        assert_eq!(kind(&error), RejectionKind::DeadlineExceeded, "{offset}");
    }
    assert_eq!(control.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn without_a_deadline_the_default_else_the_maximum() {
    let capped = builder().max(Duration::from_secs(2)).build().unwrap();
    assert_eq!(
        seen(&capped, request(&[])).await.unwrap(),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        seen(&capped, request(&[("grpc-timeout", "garbage")]))
            .await
            .unwrap(),
        Some(Duration::from_secs(2)),
        "a malformed header does not escape the maximum"
    );
    assert_eq!(
        seen(
            &capped,
            request(&[("x-request-timeout-ms", "99999999999999")])
        )
        .await
        .unwrap(),
        Some(Duration::from_secs(2))
    );
    assert_eq!(seen(&layer(), request(&[])).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn headroom_shortens_only_what_the_caller_sent() {
    let layer = AcceptDeadlineLayer::builder()
        .default_timeout(Duration::from_millis(3))
        .build()
        .unwrap();
    assert_eq!(
        seen(&layer, request(&[])).await.unwrap(),
        Some(Duration::from_millis(3)),
        "the server's own default is not shortened"
    );
    assert_eq!(
        seen(&layer, request(&[("x-request-timeout-ms", "100")]))
            .await
            .unwrap(),
        Some(Duration::from_millis(95))
    );
}

#[tokio::test(start_paused = true)]
async fn malformed_headers_are_ignored_and_the_default_applies() {
    let layer = builder()
        .default_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let bad = [
        ("grpc-timeout", ""),
        ("grpc-timeout", "abc"),
        ("grpc-timeout", "123456789m"),
        ("grpc-timeout", "0m"),
        ("grpc-timeout", "-5m"),
        ("grpc-timeout", "5"),
        ("x-request-timeout-ms", ""),
        ("x-request-timeout-ms", "soon"),
        ("x-request-timeout-ms", "0"),
        ("x-request-timeout-ms", "-100"),
        ("x-request-timeout-ms", "99999999999999999999"),
        ("x-request-timeout-ms", "123456789012345678901234567890"),
    ];
    for (name, value) in bad {
        assert_eq!(
            seen(&layer, request(&[(name, value)])).await.unwrap(),
            Some(Duration::from_secs(3)),
            "{name}: {value:?}"
        );
    }
    // A malformed first header does not hide a good second one.
    let mixed = request(&[("grpc-timeout", "garbage"), ("x-request-timeout-ms", "700")]);
    assert_eq!(
        seen(&layer, mixed).await.unwrap(),
        Some(Duration::from_millis(700))
    );
}

#[tokio::test(start_paused = true)]
async fn malformed_headers_can_be_refused() {
    let layer = builder().on_invalid(OnInvalid::Reject).build().unwrap();
    let (inner, control) = controlled::<Request<()>>();
    let service = layer.layer(inner);
    let bad = [
        ("grpc-timeout", ""),
        ("grpc-timeout", "1.5S"),
        ("grpc-timeout", "0S"),
        ("grpc-timeout", "-1S"),
        ("grpc-timeout", "123456789S"),
        ("x-request-timeout-ms", "soon"),
        ("x-request-timeout-ms", "0"),
        ("x-request-timeout-ms", "18446744073709551616"),
    ];
    for (name, value) in bad {
        let error = service
            .clone()
            .oneshot(request(&[(name, value)]))
            .await
            .unwrap_err();
        assert_eq!(
            kind(&error),
            RejectionKind::InvalidRequest,
            "{name}: {value:?}"
        );
    }
    assert_eq!(control.calls(), 0);
    assert!(service
        .oneshot(request(&[("grpc-timeout", "1S")]))
        .await
        .is_ok());
}

#[tokio::test(start_paused = true)]
async fn when_the_deadline_passes_the_handler_is_dropped() {
    let (inner, control) = controlled::<Request<()>>();
    control.hang();
    let service = layer().layer(inner);
    let started = Instant::now();
    let error = service
        .oneshot(request(&[("grpc-timeout", "300m")]))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    let rejection = find_rejection(&error).unwrap();
    assert_eq!(rejection.kind(), RejectionKind::DeadlineExceeded);
    assert_eq!(rejection.reason(), Some("deadline passed"));
    assert_eq!(control.calls(), 1);
    assert_eq!(control.cancelled(), 1, "the handler's future was dropped");
}

#[tokio::test(start_paused = true)]
async fn a_handler_that_finishes_in_time_is_untouched() {
    let (inner, control) = controlled::<Request<()>>();
    control.script([Behavior::Fail]);
    control.delay(Duration::from_millis(100));
    let service = layer().layer(inner);
    let error = service
        .clone()
        .oneshot(request(&[("grpc-timeout", "300m")]))
        .await
        .unwrap_err();
    assert!(find_rejection(&error).is_none(), "the handler's own error");
    assert!(service
        .oneshot(request(&[("grpc-timeout", "300m")]))
        .await
        .is_ok());
    assert_eq!(control.cancelled(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_handler_stops_a_little_early_by_default() {
    let layer = AcceptDeadlineLayer::builder().build().unwrap();
    let seen_by_handler = seen(&layer, request(&[("grpc-timeout", "300m")])).await;
    assert_eq!(seen_by_handler.unwrap(), Some(Duration::from_millis(295)));
    // A timeout no longer than the headroom has nothing left: refused at once.
    let (inner, control) = controlled::<Request<()>>();
    let error = layer
        .layer(inner)
        .oneshot(request(&[("grpc-timeout", "5m")]))
        .await
        .unwrap_err();
    assert_eq!(kind(&error), RejectionKind::DeadlineExceeded);
    assert_eq!(control.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_earlier_deadline_already_on_the_request_holds() {
    let mut early = request(&[("grpc-timeout", "5S")]);
    early
        .extensions_mut()
        .insert(Deadline::after(Duration::from_millis(200)));
    assert_eq!(
        seen(&layer(), early).await.unwrap(),
        Some(Duration::from_millis(200))
    );
}

#[tokio::test(start_paused = true)]
async fn keeps_the_poll_ready_contract() {
    let (inner, control) = controlled::<Request<()>>();
    let mut service = layer().layer(ReadinessProbe::new(inner));
    control.pause();
    let mut ready = tokio_test::task::spawn(std::future::poll_fn(|cx| service.poll_ready(cx)));
    assert!(ready.poll().is_pending());
    control.ready();
    assert!(ready.poll().is_ready());
    drop(ready);
    service.call(request(&[])).await.unwrap();
}

#[test]
fn bad_settings_name_their_field() {
    let zero = Duration::ZERO;
    let field =
        |builder: tower_bulwark_deadline::AcceptBuilder| builder.build().unwrap_err().field();
    assert_eq!(field(builder().max(zero)), "max");
    assert_eq!(field(builder().default_timeout(zero)), "default_timeout");
}
