//! Every transition and trip condition, in paused time.

mod support;

use std::time::Duration;

use support::{call, guarded, recorder, refusal, refused};
use tokio::time::{advance, sleep, Instant};
use tower::{Layer, Service, ServiceExt};
use tower_bulwark_breaker::{
    BreakerEvent, CircuitBreakerLayer, OpenDuration, Reason, State, WindowKind,
};
use tower_bulwark_core::testing::{controlled, Behavior};
use tower_bulwark_core::{find_rejection, BoxError, Outcome, RejectionKind};

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_and_a_success_resets_the_count() {
    let (mut service, control, layer) =
        guarded(CircuitBreakerLayer::builder().consecutive_failures(3));
    let handle = layer.handle();
    control.fail();
    call(&mut service).await.unwrap_err();
    call(&mut service).await.unwrap_err();
    assert_eq!(handle.snapshot().consecutive_failures, 2);
    control.succeed();
    call(&mut service).await.unwrap();
    assert_eq!(handle.snapshot().consecutive_failures, 0);
    control.fail();
    for _ in 0..2 {
        call(&mut service).await.unwrap_err();
    }
    assert_eq!(handle.state(), State::Closed);
    let third = call(&mut service).await;
    assert!(
        !refused(&third),
        "the tripping call itself reached the service"
    );
    assert_eq!(handle.state(), State::Open);
    assert_eq!(control.calls(), 6);

    let refused_call = call(&mut service).await;
    assert!(refused(&refused_call));
    assert_eq!(
        control.calls(),
        6,
        "an open breaker does not touch the inner service"
    );
}

#[tokio::test(start_paused = true)]
async fn failure_rate_waits_for_the_minimum() {
    let (mut service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .no_consecutive_failures()
            .failure_rate(0.5)
            .window(WindowKind::Count(10))
            .minimum_calls(4),
    );
    let handle = layer.handle();
    control.fail();
    for _ in 0..3 {
        call(&mut service).await.unwrap_err();
    }
    assert_eq!(
        handle.state(),
        State::Closed,
        "3 calls are below the minimum of 4"
    );
    // The fourth call, a success, makes the rate trustworthy: 3 of 4 failed.
    control.succeed();
    call(&mut service).await.unwrap();
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn the_count_window_slides() {
    let (mut service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .no_consecutive_failures()
            .failure_rate(0.5)
            .window(WindowKind::Count(10))
            .minimum_calls(10),
    );
    let handle = layer.handle();
    for _ in 0..7 {
        call(&mut service).await.unwrap();
    }
    control.fail();
    for _ in 0..3 {
        call(&mut service).await.unwrap_err();
    }
    assert_eq!(handle.snapshot().failure_rate, Some(0.3));
    // Seven successes push the old successes out, not the failures...
    control.succeed();
    for _ in 0..7 {
        call(&mut service).await.unwrap();
    }
    assert_eq!(handle.snapshot().failures, 3);
    // ...three more push the failures out.
    for _ in 0..3 {
        call(&mut service).await.unwrap();
    }
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.calls, snapshot.failures), (10, 0));
    // Five failures bring the rate to exactly 50%: that trips.
    control.fail();
    for _ in 0..4 {
        call(&mut service).await.unwrap_err();
    }
    assert_eq!(handle.state(), State::Closed);
    call(&mut service).await.unwrap_err();
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn time_window_buckets_expire() {
    let (mut service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .no_consecutive_failures()
            .failure_rate(0.5)
            .window(WindowKind::Time {
                length: Duration::from_secs(10),
                buckets: 10,
            })
            .minimum_calls(4),
    );
    let handle = layer.handle();
    control.fail();
    for _ in 0..3 {
        call(&mut service).await.unwrap_err();
    }
    assert_eq!(handle.snapshot().calls, 3);
    // Ten seconds later those failures have left the window.
    advance(Duration::from_secs(10)).await;
    assert_eq!(handle.snapshot().calls, 0);
    control.succeed();
    for _ in 0..3 {
        call(&mut service).await.unwrap();
    }
    control.fail();
    call(&mut service).await.unwrap_err();
    assert_eq!(handle.state(), State::Closed, "1 failure in 4 calls is 25%");
    call(&mut service).await.unwrap_err();
    call(&mut service).await.unwrap_err();
    assert_eq!(handle.state(), State::Open, "3 failures in 6 calls is 50%");
}

#[tokio::test(start_paused = true)]
async fn slow_calls_trip_whatever_their_outcome() {
    let (mut service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .no_consecutive_failures()
            .slow_calls(Duration::from_millis(500), 0.6)
            .window(WindowKind::Count(5))
            .minimum_calls(5),
    );
    let handle = layer.handle();
    control.delay(Duration::from_millis(499));
    for _ in 0..5 {
        call(&mut service).await.unwrap();
    }
    assert_eq!(handle.snapshot().slow_calls, 0);
    control.delay(Duration::from_millis(500));
    for _ in 0..2 {
        call(&mut service).await.unwrap();
    }
    assert_eq!(handle.state(), State::Closed, "2 slow in 5 is 40%");
    call(&mut service).await.unwrap();
    assert_eq!(handle.state(), State::Open, "3 slow in 5 is 60%");
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.failures, 0);
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_count_toward_neither_side() {
    // Odd responses say nothing about health; errors are failures.
    let classify = |result: &Result<u32, BoxError>| match result {
        Ok(n) if n % 2 == 1 => Outcome::Ignored,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    };
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(2)
        .failure_rate(0.5)
        .window(WindowKind::Count(10))
        .minimum_calls(2)
        .classify(classify)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (inner, control) = controlled::<u32>();
    let mut service = layer.layer(inner);
    control.fail();
    service.ready().await.unwrap().call(2).await.unwrap_err();
    control.succeed();
    for _ in 0..5 {
        service.ready().await.unwrap().call(1).await.unwrap();
    }
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.calls, snapshot.failures), (1, 1));
    assert_eq!(
        snapshot.consecutive_failures, 1,
        "ignored calls do not reset the run"
    );
    control.fail();
    service.ready().await.unwrap().call(2).await.unwrap_err();
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn open_refuses_with_the_time_until_the_probe_then_probes_and_closes() {
    let (events, seen) = recorder();
    let (mut service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .name("users")
            .consecutive_failures(1)
            .open_duration(OpenDuration::Fixed(Duration::from_secs(10)))
            .success_threshold(2)
            .on_event(events),
    );
    let handle = layer.handle();
    control.fail();
    call(&mut service).await.unwrap_err();
    advance(Duration::from_secs(4)).await;

    let result = call(&mut service).await;
    let open = refusal(&result).expect("refused");
    assert_eq!(open.state(), State::Open);
    assert_eq!(open.retry_after(), Some(Duration::from_secs(6)));
    let rejection = find_rejection(result.as_ref().unwrap_err()).expect("a core rejection");
    assert_eq!(rejection.kind(), RejectionKind::CircuitOpen);
    assert_eq!(rejection.layer(), "users");
    assert_eq!(rejection.retry_after(), Some(Duration::from_secs(6)));

    advance(Duration::from_secs(6)).await;
    control.succeed();
    call(&mut service).await.unwrap();
    assert_eq!(handle.state(), State::HalfOpen, "one of two successes");
    call(&mut service).await.unwrap();
    assert_eq!(handle.state(), State::Closed);

    let transitions: Vec<(State, State, Reason)> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            BreakerEvent::StateChanged {
                from, to, reason, ..
            } => Some((*from, *to, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        transitions,
        [
            (State::Closed, State::Open, Reason::ConsecutiveFailures(1)),
            (State::Open, State::HalfOpen, Reason::OpenElapsed),
            (State::HalfOpen, State::Closed, Reason::ProbesSucceeded(2)),
        ]
    );
    let rejected = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|e| {
            matches!(
                e,
                BreakerEvent::Rejected {
                    state: State::Open,
                    ..
                }
            )
        })
        .count();
    assert_eq!(rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_with_a_longer_wait() {
    let (mut service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .consecutive_failures(1)
            .open_duration(OpenDuration::Exponential {
                initial: Duration::from_secs(1),
                multiplier: 2.0,
                max: Duration::from_secs(5),
                jitter: 0.0,
                reset_after: Duration::from_secs(60),
            }),
    );
    let handle = layer.handle();
    control.fail();
    call(&mut service).await.unwrap_err();
    let mut waits = Vec::new();
    for _ in 0..5 {
        let result = call(&mut service).await;
        let wait = refusal(&result).unwrap().retry_after().unwrap();
        waits.push(wait.as_secs());
        advance(wait).await;
        // The probe fails: reopen.
        let probe = call(&mut service).await;
        assert!(!refused(&probe));
        assert_eq!(handle.state(), State::Open);
    }
    assert_eq!(waits, [1, 2, 4, 5, 5]);
    assert_eq!(handle.snapshot().trips, 6);
}

#[tokio::test(start_paused = true)]
async fn a_healthy_period_starts_the_growth_over() {
    let (mut service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .consecutive_failures(1)
            .open_duration(OpenDuration::Exponential {
                initial: Duration::from_secs(1),
                multiplier: 3.0,
                max: Duration::from_secs(100),
                jitter: 0.0,
                reset_after: Duration::from_secs(60),
            }),
    );
    let handle = layer.handle();
    async fn trip_and_recover(
        service: &mut support::Guarded,
        control: &tower_bulwark_core::testing::Controller,
        handle: &tower_bulwark_breaker::BreakerHandle,
        wait_closed: Duration,
    ) -> Duration {
        control.fail();
        call(service).await.unwrap_err();
        let wait = refusal(&call(service).await)
            .unwrap()
            .retry_after()
            .unwrap();
        advance(wait).await;
        control.succeed();
        call(service).await.unwrap();
        assert_eq!(handle.state(), State::Closed);
        advance(wait_closed).await;
        wait
    }
    assert_eq!(
        trip_and_recover(&mut service, &control, &handle, Duration::from_secs(59)).await,
        Duration::from_secs(1)
    );
    assert_eq!(
        trip_and_recover(&mut service, &control, &handle, Duration::from_secs(60)).await,
        Duration::from_secs(3)
    );
    // Closed for 60 s before this trip: back to the initial wait.
    assert_eq!(
        trip_and_recover(&mut service, &control, &handle, Duration::ZERO).await,
        Duration::from_secs(1)
    );
}

#[tokio::test(start_paused = true)]
async fn jitter_is_exact_for_a_seed_and_spread_across_seeds() {
    let wait_for = |seed: u64| async move {
        let (mut service, control, _) = guarded(
            CircuitBreakerLayer::builder()
                .consecutive_failures(1)
                .open_duration(OpenDuration::STANDARD_EXPONENTIAL)
                .seed(seed),
        );
        control.fail();
        call(&mut service).await.unwrap_err();
        refusal(&call(&mut service).await)
            .unwrap()
            .retry_after()
            .unwrap()
    };
    assert_eq!(wait_for(7).await, wait_for(7).await);
    let mut waits = Vec::new();
    for seed in 0..20 {
        let wait = wait_for(seed).await;
        assert!(
            wait >= Duration::from_secs(27) && wait <= Duration::from_secs(33),
            "{wait:?}"
        );
        waits.push(wait);
    }
    waits.sort();
    waits.dedup();
    assert!(waits.len() > 10, "seeds should spread the waits: {waits:?}");
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_at_most_n_probes_and_a_dropped_probe_frees_its_slot() {
    let (service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .consecutive_failures(1)
            .open_duration(OpenDuration::Fixed(Duration::from_secs(1)))
            .half_open_probes(2),
    );
    let handle = layer.handle();
    control.fail();
    call(&mut service.clone()).await.unwrap_err();
    advance(Duration::from_secs(1)).await;

    control.hang();
    let mut first = service.clone();
    let probe_one = first.ready().await.unwrap().call(1);
    let mut second = service.clone();
    let probe_two = second.ready().await.unwrap().call(2);
    assert_eq!(handle.snapshot().probes_in_flight, 2);
    let third = call(&mut service.clone()).await;
    assert_eq!(refusal(&third).unwrap().state(), State::HalfOpen);
    assert_eq!(
        control.calls(),
        3,
        "the third probe never reached the service"
    );

    drop(probe_one);
    assert_eq!(handle.snapshot().probes_in_flight, 1);
    assert_eq!(
        handle.state(),
        State::HalfOpen,
        "a dropped probe counts as ignored"
    );

    control.succeed();
    call(&mut service.clone()).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    drop(probe_two);
    assert_eq!(handle.snapshot().probes_in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn outcomes_of_calls_admitted_before_a_transition_do_not_count_after_it() {
    let (service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .consecutive_failures(1)
            .open_duration(OpenDuration::Fixed(Duration::from_secs(1))),
    );
    let handle = layer.handle();
    // A slow call is admitted while closed...
    control.delay(Duration::from_secs(5));
    control.script([Behavior::Succeed]);
    let slow = tokio::spawn(service.clone().oneshot(1));
    tokio::task::yield_now().await;
    // ...then the breaker trips and recovers before it finishes.
    control.delay(Duration::ZERO);
    control.fail();
    call(&mut service.clone()).await.unwrap_err();
    advance(Duration::from_secs(1)).await;
    control.succeed();
    call(&mut service.clone()).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    control.fail();
    // Its late failure would trip a fresh window; it must not.
    control.script([Behavior::Fail]);
    sleep(Duration::from_secs(5)).await;
    let _ = slow.await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.snapshot().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn recovery_ramp_admits_a_growing_share() {
    let (service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .consecutive_failures(1)
            .open_duration(OpenDuration::Fixed(Duration::from_secs(1)))
            .recovery_ramp(Duration::from_secs(10)),
    );
    let handle = layer.handle();
    control.fail();
    call(&mut service.clone()).await.unwrap_err();
    advance(Duration::from_secs(1)).await;
    control.succeed();
    call(&mut service.clone()).await.unwrap();
    assert_eq!(handle.state(), State::Closed);

    let mut admitted_share = Vec::new();
    for _ in 0..4 {
        advance(Duration::from_millis(2500)).await;
        let mut admitted = 0;
        for _ in 0..1000 {
            let result = call(&mut service.clone()).await;
            if let Some(open) = refusal(&result) {
                assert_eq!(open.state(), State::Closed);
                assert_eq!(open.rejection().reason(), Some("recovery ramp"));
            } else {
                admitted += 1;
            }
        }
        admitted_share.push(admitted);
    }
    // At 25%, 50%, 75% of the ramp, then past its end.
    assert!(
        (240..=260).contains(&admitted_share[0]),
        "{admitted_share:?}"
    );
    assert!(
        (490..=510).contains(&admitted_share[1]),
        "{admitted_share:?}"
    );
    assert!(
        (740..=760).contains(&admitted_share[2]),
        "{admitted_share:?}"
    );
    assert_eq!(admitted_share[3], 1000);
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_breaker_and_a_new_layer_is_a_new_one() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let (inner, control) = controlled::<u32>();
    let mut a = layer.layer(inner.clone());
    let mut b = layer.layer(inner.clone()).clone();
    control.fail();
    call(&mut a).await.unwrap_err();
    call(&mut b).await.unwrap_err();
    assert_eq!(layer.handle().state(), State::Open);
    assert!(refused(&call(&mut a).await));

    let other = CircuitBreakerLayer::builder()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let mut c = other.layer(inner);
    assert!(!refused(&call(&mut c).await));
    assert_eq!(other.handle().state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn operator_states() {
    let (mut service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .consecutive_failures(2)
            .open_duration(OpenDuration::Fixed(Duration::from_secs(10))),
    );
    let handle = layer.handle();

    handle.force_open();
    assert_eq!(handle.state(), State::ForcedOpen);
    let result = call(&mut service).await;
    assert_eq!(refusal(&result).unwrap().state(), State::ForcedOpen);
    assert_eq!(refusal(&result).unwrap().retry_after(), None);
    assert_eq!(control.calls(), 0);

    handle.disable();
    control.fail();
    for _ in 0..10 {
        call(&mut service).await.unwrap_err();
    }
    assert_eq!(handle.state(), State::Disabled);
    handle.resume();
    assert_eq!(
        handle.state(),
        State::Closed,
        "disabled calls were not recorded"
    );

    handle.metrics_only();
    for _ in 0..2 {
        call(&mut service).await.unwrap_err();
    }
    // The shadow breaker tripped: it would refuse now, and lets calls through instead.
    for _ in 0..3 {
        let result = call(&mut service).await;
        assert!(!refused(&result));
    }
    assert_eq!(handle.snapshot().would_reject, 3);
    handle.resume();
    assert_eq!(handle.state(), State::Open, "the shadow state machine ran");

    let started = Instant::now();
    handle.force_closed();
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.snapshot().trips, 1);
    handle.reset();
    assert_eq!(handle.snapshot().trips, 0);
    assert_eq!(handle.snapshot().rejected, 1);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

/// The rates are checked by the calls that can raise them; a success completing the
/// minimum is one: three failures then a success are 4 calls at 75%.
#[tokio::test(start_paused = true)]
async fn a_success_completing_the_minimum_trips_a_failing_window() {
    let windows = [
        WindowKind::Count(10),
        WindowKind::Time {
            length: Duration::from_secs(10),
            buckets: 10,
        },
    ];
    for window in windows {
        let (mut service, control, layer) = guarded(
            CircuitBreakerLayer::builder()
                .no_consecutive_failures()
                .failure_rate(0.5)
                .window(window)
                .minimum_calls(4),
        );
        control.fail();
        for _ in 0..3 {
            call(&mut service).await.unwrap_err();
        }
        assert_eq!(layer.handle().state(), State::Closed, "{window:?}: 3 calls");
        control.succeed();
        call(&mut service).await.unwrap();
        assert_eq!(
            layer.handle().state(),
            State::Open,
            "{window:?}: 3 of 4 failed"
        );
    }
}

/// In a time window, successes that expire can raise the failure rate with no new
/// failure: the first call of a new bucket checks it, whatever its outcome.
#[tokio::test(start_paused = true)]
async fn expired_successes_raise_the_rate_and_the_next_bucket_checks_it() {
    let (mut service, control, layer) = guarded(
        CircuitBreakerLayer::builder()
            .no_consecutive_failures()
            .failure_rate(0.5)
            .window(WindowKind::Time {
                length: Duration::from_secs(10),
                buckets: 10,
            })
            .minimum_calls(4),
    );
    // Bucket 0: 10 successes. Bucket 5: 4 failures (4 in 14, under 50%).
    for _ in 0..10 {
        call(&mut service).await.unwrap();
    }
    advance(Duration::from_secs(5)).await;
    control.fail();
    for _ in 0..4 {
        call(&mut service).await.unwrap_err();
    }
    assert_eq!(layer.handle().state(), State::Closed, "4 of 14 failed");
    // 10 s on, bucket 0 has expired: a success finds 4 failures in 5 calls.
    advance(Duration::from_secs(5)).await;
    control.succeed();
    call(&mut service).await.unwrap();
    assert_eq!(layer.handle().state(), State::Open, "4 of 5 failed");
}
