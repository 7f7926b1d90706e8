//! Errors from the inner service's `poll_ready` are outcomes like any other: a dependency
//! that cannot even be connected to must trip the breaker.

mod support;

use std::time::Duration;

use support::{call, guarded, refused};
use tokio::time::advance;
use tower::{Layer, ServiceExt};
use tower_bulwark_breaker::{CircuitBreakerLayer, OpenDuration, State, WindowKind};
use tower_bulwark_core::testing::{controlled, TestError};
use tower_bulwark_core::{BoxError, Outcome};

#[tokio::test(start_paused = true)]
async fn readiness_errors_count_as_failures_and_trip() {
    let (service, control, layer) = guarded(CircuitBreakerLayer::builder().consecutive_failures(2));
    let handle = layer.handle();
    control.fail_readiness();
    let error = service.clone().ready().await.unwrap_err();
    assert!(error.is::<TestError>(), "the inner error is passed on");
    assert_eq!(handle.snapshot().consecutive_failures, 1);
    assert_eq!(handle.state(), State::Closed);
    service.clone().ready().await.unwrap_err();
    assert_eq!(handle.state(), State::Open);

    // Open: refused without touching the inner service.
    assert!(refused(&call(&mut service.clone()).await));
    assert_eq!(control.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn readiness_errors_fill_the_rate_window() {
    let (service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .no_consecutive_failures()
            .failure_rate(0.5)
            .slow_calls(Duration::from_millis(10), 0.5)
            .window(WindowKind::Count(4))
            .minimum_calls(4),
    );
    let handle = layer.handle();
    for _ in 0..2 {
        call(&mut service.clone()).await.unwrap();
    }
    control.fail_readiness();
    advance(Duration::from_secs(1)).await;
    service.clone().ready().await.unwrap_err();
    let snapshot = handle.snapshot();
    assert_eq!(
        (snapshot.calls, snapshot.failures, snapshot.slow_calls),
        (3, 1, 0),
        "a readiness error is a failure, never slow"
    );
    service.clone().ready().await.unwrap_err();
    assert_eq!(handle.state(), State::Open, "2 failures in 4");
}

#[tokio::test(start_paused = true)]
async fn a_probe_whose_readiness_fails_reopens() {
    let (service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .consecutive_failures(1)
            .open_duration(OpenDuration::Fixed(Duration::from_secs(1))),
    );
    let handle = layer.handle();
    control.fail();
    call(&mut service.clone()).await.unwrap_err();
    advance(Duration::from_secs(1)).await;
    control.fail_readiness();
    service.clone().ready().await.unwrap_err();
    assert_eq!(handle.state(), State::Open);
    assert_eq!(handle.snapshot().probes_in_flight, 0);
    assert_eq!(handle.snapshot().trips, 2);
}

#[tokio::test(start_paused = true)]
async fn the_classifier_decides_what_a_readiness_error_means() {
    // This classifier ignores every error.
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .classify(|result: &Result<u32, BoxError>| match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Ignored,
        })
        .build()
        .unwrap();
    let (inner, control) = controlled::<u32>();
    let service = layer.layer(inner);
    control.fail_readiness();
    for _ in 0..3 {
        service.clone().ready().await.unwrap_err();
    }
    assert_eq!(layer.handle().state(), State::Closed);
    assert_eq!(layer.handle().snapshot().consecutive_failures, 0);
}
