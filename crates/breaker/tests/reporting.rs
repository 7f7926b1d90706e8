//! What the breaker reports: the `Recorded` event of each finished call, and its snapshot.

mod support;

use std::time::Duration;

use support::{call, guarded, recorder};
use tokio::time::advance;
use tower_bulwark_breaker::{BreakerEvent, CircuitBreakerLayer, OpenDuration, State};
use tower_bulwark_core::Outcome;

/// Each recorded call says whether it was a half-open probe: the calls admitted while
/// closed are not, the call let through after the open duration is.
#[tokio::test(start_paused = true)]
async fn recorded_events_tell_probes_from_closed_calls() {
    let (events, seen) = recorder();
    let (mut service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .consecutive_failures(2)
            .open_duration(OpenDuration::Fixed(Duration::from_secs(10)))
            .on_event(events),
    );
    control.fail();
    call(&mut service).await.unwrap_err();
    call(&mut service).await.unwrap_err();
    assert_eq!(layer.handle().state(), State::Open);
    advance(Duration::from_secs(10)).await;
    control.succeed();
    call(&mut service).await.unwrap();
    assert_eq!(layer.handle().state(), State::Closed);
    let recorded: Vec<(Outcome, bool)> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            BreakerEvent::Recorded { outcome, probe, .. } => Some((*outcome, *probe)),
            _ => None,
        })
        .collect();
    assert_eq!(
        recorded,
        [
            (Outcome::Failure, false),
            (Outcome::Failure, false),
            (Outcome::Success, true),
        ]
    );
}

/// Calls a disabled breaker lets through, and calls a shadow-mode breaker would have
/// refused, are recorded nowhere, and say so: no `Recorded` event.
#[tokio::test(start_paused = true)]
async fn untracked_calls_are_not_reported_as_recorded() {
    let (events, seen) = recorder();
    let (mut service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .consecutive_failures(1)
            .on_event(events),
    );
    let handle = layer.handle();
    let recorded = || {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, BreakerEvent::Recorded { .. }))
            .count()
    };
    control.fail();
    handle.disable();
    call(&mut service).await.unwrap_err();
    assert_eq!(recorded(), 0);
    handle.resume();
    call(&mut service).await.unwrap_err();
    assert_eq!((handle.state(), recorded()), (State::Open, 1));
    handle.metrics_only();
    call(&mut service).await.unwrap_err();
    assert_eq!(handle.snapshot().would_reject, 1);
    assert_eq!(recorded(), 1);
}

/// An empty window has no rates (not 0/0): the snapshot says `None` until a call is in.
#[tokio::test(start_paused = true)]
async fn an_empty_window_has_no_rates() {
    let (mut service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .failure_rate(0.5)
            .slow_calls(Duration::from_secs(1), 0.5),
    );
    let snapshot = layer.handle().snapshot();
    assert!(snapshot.windowed);
    assert_eq!(snapshot.calls, 0);
    assert_eq!(
        (snapshot.failure_rate, snapshot.slow_call_rate),
        (None, None)
    );
    control.fail();
    call(&mut service).await.unwrap_err();
    let snapshot = layer.handle().snapshot();
    assert_eq!(
        (snapshot.failure_rate, snapshot.slow_call_rate),
        (Some(1.0), Some(0.0))
    );
}

/// The handle reports the breaker's name, as set on the builder.
#[test]
fn the_handle_names_its_breaker() {
    let layer = CircuitBreakerLayer::builder()
        .name("payments")
        .build()
        .unwrap();
    assert_eq!(layer.handle().name(), "payments");
}
