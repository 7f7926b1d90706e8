//! Readiness admission ends at the caller's deadline (docs/composition.md, "Every wait ends at
//! the caller's deadline"): `poll_ready` waits while the breaker refuses, but never past the
//! task's current deadline; then it is ready and `call` refuses with `CircuitOpen`, so the
//! service stays usable.

mod support;

use std::task::{Context, Poll};
use std::time::Duration;

use support::{call, guarded, refusal};
use tokio::time::{advance, Instant};
use tower::{Service, ServiceExt};
use tower_bulwark_breaker::{Admission, CircuitBreakerLayer, OpenDuration, State};
use tower_bulwark_core::{find_rejection, Deadline, RejectionKind};

/// Opens for 10 s after one failure; readiness admission.
fn readiness() -> tower_bulwark_breaker::Builder {
    CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_duration(OpenDuration::Fixed(Duration::from_secs(10)))
        .admission(Admission::Readiness)
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_refuses_at_the_callers_deadline_not_after_the_open_duration() {
    let (service, control, layer) = guarded(readiness());
    control.fail();
    call(&mut service.clone()).await.unwrap_err();
    assert_eq!(layer.handle().state(), State::Open);
    control.succeed();

    let started = Instant::now();
    let result = Deadline::after(Duration::from_millis(300))
        .scope(service.clone().oneshot(5))
        .await;
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    let open = refusal(&result).expect("refused by the breaker");
    assert_eq!(open.state(), State::Open);
    assert_eq!(open.retry_after(), Some(Duration::from_millis(9_700)));
    assert_eq!(
        find_rejection(result.as_ref().unwrap_err()).unwrap().kind(),
        RejectionKind::CircuitOpen
    );
    assert_eq!(control.calls(), 1, "the inner service was not called");
    assert_eq!(layer.handle().snapshot().rejected, 1, "counted once");

    // The service is still usable: with no deadline, the next call waits for the probe.
    assert_eq!(service.clone().oneshot(6).await.unwrap(), 6);
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!(layer.handle().state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_already_passed_is_refused_without_waiting() {
    let (service, control, _layer) = guarded(readiness());
    control.fail();
    call(&mut service.clone()).await.unwrap_err();
    let deadline = Deadline::after(Duration::from_millis(100));
    advance(Duration::from_millis(200)).await;

    let started = Instant::now();
    let result = deadline.scope(service.clone().oneshot(1)).await;
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(refusal(&result).unwrap().state(), State::Open);
    assert_eq!(control.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_after_the_open_duration_waits_for_the_probe() {
    let (service, control, _layer) = guarded(readiness());
    control.fail();
    call(&mut service.clone()).await.unwrap_err();
    control.succeed();

    let started = Instant::now();
    let answer = Deadline::after(Duration::from_secs(15))
        .scope(service.clone().oneshot(7))
        .await
        .unwrap();
    assert_eq!(answer, 7);
    assert_eq!(started.elapsed(), Duration::from_secs(10));
}

/// Forced open, the breaker announces no time at which it would admit: the deadline alone
/// ends the wait.
#[tokio::test(start_paused = true)]
async fn a_forced_open_breaker_refuses_at_the_deadline() {
    let (service, control, layer) = guarded(readiness());
    layer.handle().force_open();
    let started = Instant::now();
    let result = Deadline::after(Duration::from_secs(2))
        .scope(service.clone().oneshot(1))
        .await;
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    let refused = refusal(&result).unwrap();
    assert_eq!(refused.state(), State::ForcedOpen);
    assert_eq!(refused.retry_after(), None);
    assert_eq!(control.calls(), 0);
}

/// Half-open with its only probe slot taken: the wait ends at the deadline, before the
/// half-open maximum wait.
#[tokio::test(start_paused = true)]
async fn waiting_for_a_probe_slot_ends_at_the_deadline() {
    let (service, control, layer) = guarded(readiness());
    control.fail();
    call(&mut service.clone()).await.unwrap_err();
    advance(Duration::from_secs(10)).await;
    control.hang();
    let mut prober = service.clone();
    let _probe = prober.ready().await.unwrap().call(1);
    assert_eq!(layer.handle().state(), State::HalfOpen);

    let started = Instant::now();
    let result = Deadline::after(Duration::from_millis(500))
        .scope(service.clone().oneshot(2))
        .await;
    assert_eq!(started.elapsed(), Duration::from_millis(500));
    assert_eq!(refusal(&result).unwrap().state(), State::HalfOpen);
    assert_eq!(control.calls(), 2, "the failure and the probe");
}

/// The tower contract, by hand: `poll_ready` is `Pending` until the deadline, then `Ready`,
/// and the `call` that follows is refused without touching the inner service. Polled again
/// (its call never came), it decides again.
#[tokio::test(start_paused = true)]
async fn poll_ready_is_ready_at_the_deadline_and_the_call_refuses() {
    let (mut service, control, _layer) = guarded(readiness());
    control.fail();
    call(&mut service).await.unwrap_err();
    control.succeed();
    let deadline = Deadline::after(Duration::from_secs(1));
    let poll = |service: &mut support::Guarded| {
        let waker = std::task::Waker::noop();
        deadline.in_scope(|| service.poll_ready(&mut Context::from_waker(waker)))
    };
    assert!(poll(&mut service).is_pending());
    advance(Duration::from_millis(999)).await;
    assert!(poll(&mut service).is_pending());
    advance(Duration::from_millis(1)).await;
    assert!(matches!(poll(&mut service), Poll::Ready(Ok(()))));
    let result = service.call(3).await;
    assert_eq!(refusal(&result).unwrap().state(), State::Open);
    assert_eq!(control.calls(), 1);

    // Without a deadline it waits again.
    let waker = std::task::Waker::noop();
    assert!(service
        .poll_ready(&mut Context::from_waker(waker))
        .is_pending());
}

/// Fail-fast admission never waited; a deadline changes nothing there.
#[tokio::test(start_paused = true)]
async fn fail_fast_admission_is_unchanged_by_a_deadline() {
    let (service, control, _layer) = guarded(readiness().admission(Admission::FailFast));
    control.fail();
    call(&mut service.clone()).await.unwrap_err();
    let started = Instant::now();
    let result = Deadline::after(Duration::from_secs(1))
        .scope(service.clone().oneshot(1))
        .await;
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(refusal(&result).unwrap().state(), State::Open);
}
