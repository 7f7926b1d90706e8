//! Half-open: slow probes, probes stuck in the inner service's readiness, and the maximum
//! wait in half-open.

mod support;

use std::task::Poll;
use std::time::Duration;

use support::{call, guarded, recorder, refusal, Guarded};
use tokio::time::advance;
use tower::{Service, ServiceExt};
use tower_bulwark_breaker::{
    Admission, BreakerEvent, Builder, CircuitBreakerLayer, OpenDuration, Reason, State, WindowKind,
};
use tower_bulwark_core::BoxError;

const OPEN: Duration = Duration::from_secs(10);
const SLOW: Duration = Duration::from_secs(1);

/// Trips on slow calls only: half of the last 4 calls taking 1 s or more.
fn slow_tripping() -> Builder {
    CircuitBreakerLayer::builder()
        .no_consecutive_failures()
        .slow_calls(SLOW, 0.5)
        .window(WindowKind::Count(4))
        .minimum_calls(4)
        .open_duration(OpenDuration::Fixed(OPEN))
}

/// The state changes seen so far, as `(from, to, reason)`.
fn transitions(events: &std::sync::Mutex<Vec<BreakerEvent>>) -> Vec<(State, State, Reason)> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            BreakerEvent::StateChanged {
                from, to, reason, ..
            } => Some((*from, *to, *reason)),
            _ => None,
        })
        .collect()
}

/// One `poll_ready`, without waiting.
async fn poll_ready_once(service: &mut Guarded) -> Poll<Result<(), BoxError>> {
    std::future::poll_fn(|cx| Poll::Ready(service.poll_ready(cx))).await
}

#[tokio::test(start_paused = true)]
async fn a_slow_successful_probe_reopens_a_breaker_tripped_on_slowness() {
    let (events, seen) = recorder();
    let (mut service, control, layer) = guarded(slow_tripping().on_event(events));
    let handle = layer.handle();
    control.delay(SLOW);
    for _ in 0..4 {
        call(&mut service).await.unwrap();
    }
    assert_eq!(handle.state(), State::Open);

    advance(OPEN).await;
    assert_eq!(
        call(&mut service).await.unwrap(),
        1,
        "the probe went through"
    );
    assert_eq!(
        handle.state(),
        State::Open,
        "a slow success counts against closing"
    );
    assert_eq!(
        transitions(&seen)[1..],
        [
            (State::Open, State::HalfOpen, Reason::OpenElapsed),
            (
                State::HalfOpen,
                State::Open,
                Reason::SlowCallRate {
                    rate: 1.0,
                    calls: 1
                }
            ),
        ]
    );

    // Under the threshold (tokio's timers tick in milliseconds) is fast: the next probe
    // closes it.
    control.delay(SLOW - Duration::from_millis(1));
    advance(OPEN).await;
    call(&mut service).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
}

/// Three probes to close, slow-call rate 0.5: the probes are weighed as resilience4j does,
/// slow successes against the slow-call rate once the successes are in.
#[tokio::test(start_paused = true)]
async fn the_probes_are_weighed_against_the_slow_call_rate() {
    let cases: [(&[bool], State); 5] = [
        (&[false, false, false], State::Closed),
        (&[true, false, false], State::Closed), // 1 in 3 is below 0.5
        (&[false, true, true], State::Open),    // 2 in 3
        (&[true, true, true], State::Open),
        (&[false, false, true], State::Closed),
    ];
    for (case, (slow_probes, expected)) in cases.into_iter().enumerate() {
        let (mut service, control, layer) =
            guarded(slow_tripping().success_threshold(3).half_open_probes(3));
        let handle = layer.handle();
        control.delay(SLOW);
        for _ in 0..4 {
            call(&mut service).await.unwrap();
        }
        advance(OPEN).await;
        for (i, slow) in slow_probes.iter().enumerate() {
            if i > 0 {
                assert_eq!(handle.state(), State::HalfOpen, "case {case}, probe {i}");
            }
            control.delay(if *slow { SLOW } else { Duration::ZERO });
            call(&mut service).await.unwrap();
        }
        assert_eq!(handle.state(), expected, "case {case}: {slow_probes:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn exactly_the_slow_call_rate_among_the_probes_reopens() {
    let (mut service, control, layer) = guarded(slow_tripping().success_threshold(2));
    let handle = layer.handle();
    control.delay(SLOW);
    for _ in 0..4 {
        call(&mut service).await.unwrap();
    }
    advance(OPEN).await;
    call(&mut service).await.unwrap();
    control.delay(Duration::ZERO);
    call(&mut service).await.unwrap();
    assert_eq!(handle.state(), State::Open, "1 slow in 2 is 0.5");
}

#[tokio::test(start_paused = true)]
async fn slow_probes_do_not_count_without_a_slow_call_condition() {
    let (mut service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .consecutive_failures(1)
            .open_duration(OpenDuration::Fixed(OPEN)),
    );
    control.fail();
    call(&mut service).await.unwrap_err();
    advance(OPEN).await;
    control.succeed();
    control.delay(Duration::from_secs(3600));
    call(&mut service).await.unwrap();
    assert_eq!(layer.handle().state(), State::Closed);
}

/// The inner service's client is reconnecting: the probe is admitted, and its `poll_ready`
/// stays `Pending`. Half-open must not last forever because of it.
#[tokio::test(start_paused = true)]
async fn a_probe_stuck_in_the_inner_readiness_does_not_hold_half_open_forever() {
    let (events, seen) = recorder();
    let (service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .consecutive_failures(1)
            .open_duration(OpenDuration::Fixed(OPEN))
            .on_event(events),
    );
    let handle = layer.handle();
    control.fail();
    call(&mut service.clone()).await.unwrap_err();
    advance(OPEN).await;

    control.pause();
    let mut stuck = service.clone();
    assert!(poll_ready_once(&mut stuck).await.is_pending());
    assert_eq!(handle.state(), State::HalfOpen);
    assert_eq!(handle.snapshot().probes_in_flight, 1);

    // The default maximum wait in half-open is a minute.
    advance(Duration::from_secs(60) - Duration::from_nanos(1)).await;
    let result = call(&mut service.clone()).await;
    assert_eq!(refusal(&result).unwrap().state(), State::HalfOpen);
    advance(Duration::from_nanos(1)).await;
    let result = call(&mut service.clone()).await;
    let open = refusal(&result).expect("refused");
    assert_eq!(open.state(), State::Open, "half-open timed out");
    assert_eq!(open.retry_after(), Some(OPEN));
    assert_eq!(handle.snapshot().probes_in_flight, 0);
    assert_eq!(
        transitions(&seen)[2],
        (State::HalfOpen, State::Open, Reason::HalfOpenTimedOut)
    );

    // The next half-open phase has its slot back, though the stuck service still waits.
    control.ready();
    control.succeed();
    advance(OPEN).await;
    call(&mut service.clone()).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(control.calls(), 2);

    // The stuck service's probe belonged to a phase that is over: it decides again.
    assert!(matches!(
        poll_ready_once(&mut stuck).await,
        Poll::Ready(Ok(()))
    ));
    stuck.call(7).await.unwrap();
    assert_eq!(control.calls(), 3);
    assert_eq!(handle.snapshot().probes_in_flight, 0);
}

/// A probe readied while half-open whose phase ends before its call is not let through
/// to the inner service while the breaker is open.
#[tokio::test(start_paused = true)]
async fn a_readied_probe_of_an_ended_phase_is_decided_again() {
    let (service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .consecutive_failures(1)
            .open_duration(OpenDuration::Fixed(OPEN))
            .half_open_probes(2),
    );
    let handle = layer.handle();
    control.fail();
    call(&mut service.clone()).await.unwrap_err();
    advance(OPEN).await;

    let mut readied = service.clone();
    readied.ready().await.unwrap();
    // Another probe fails and reopens the breaker before the readied one is called.
    call(&mut service.clone()).await.unwrap_err();
    assert_eq!(handle.state(), State::Open);
    assert_eq!(handle.snapshot().probes_in_flight, 0);

    let result = readied.ready().await.unwrap().call(1).await;
    assert_eq!(refusal(&result).unwrap().state(), State::Open);
    assert_eq!(control.calls(), 2, "nothing reached the service while open");
}

/// The same, when the readied service is called without being polled again.
#[tokio::test(start_paused = true)]
async fn a_readied_probe_of_an_ended_phase_is_refused_at_its_call() {
    let (service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .consecutive_failures(1)
            .open_duration(OpenDuration::Fixed(OPEN))
            .half_open_probes(2),
    );
    control.fail();
    call(&mut service.clone()).await.unwrap_err();
    advance(OPEN).await;

    let mut readied = service.clone();
    readied.ready().await.unwrap();
    call(&mut service.clone()).await.unwrap_err();
    assert_eq!(layer.handle().state(), State::Open);

    let result = readied.call(1).await;
    assert_eq!(refusal(&result).unwrap().state(), State::Open);
    assert_eq!(control.calls(), 2, "nothing reached the service while open");
    assert_eq!(layer.handle().snapshot().rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn readiness_waiters_wake_when_half_open_times_out() {
    let (service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .consecutive_failures(1)
            .open_duration(OpenDuration::Fixed(OPEN))
            .admission(Admission::Readiness),
    );
    control.fail();
    call(&mut service.clone()).await.unwrap_err();
    advance(OPEN).await;

    control.pause();
    let mut stuck = service.clone();
    assert!(poll_ready_once(&mut stuck).await.is_pending());

    let started = tokio::time::Instant::now();
    let waiting = tokio::spawn(async move {
        let mut service = service.clone();
        service.ready().await?;
        Ok::<_, BoxError>(tokio::time::Instant::now())
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished(), "the only probe slot is taken");
    // The stuck probe never concludes: half-open times out after a minute, then the breaker
    // lets the next probe through after its open duration.
    control.ready();
    let admitted = tokio::time::timeout(Duration::from_secs(3600), waiting)
        .await
        .expect("the waiter was woken")
        .unwrap()
        .unwrap();
    assert_eq!(admitted - started, Duration::from_secs(60) + OPEN);
    assert_eq!(layer.handle().state(), State::HalfOpen);
}
