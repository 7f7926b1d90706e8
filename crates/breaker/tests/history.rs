//! What the handle tells a dashboard: the time until the next probe, and the record of
//! the last transitions. In paused time.

mod support;

use std::time::Duration;

use support::{call, guarded, refused};
use tokio::time::{advance, Instant};
use tower::ServiceExt;
use tower_bulwark_breaker::{
    CircuitBreakerLayer, KeyedCircuitBreakerLayer, OpenDuration, Reason, State,
};

fn trips_once_opens_ten_seconds() -> tower_bulwark_breaker::Builder {
    CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_duration(OpenDuration::Fixed(Duration::from_secs(10)))
}

#[tokio::test(start_paused = true)]
async fn next_probe_in_counts_down_while_open_and_is_none_otherwise() {
    let (mut service, control, layer) = guarded(trips_once_opens_ten_seconds());
    let handle = layer.handle();
    assert_eq!(handle.snapshot().next_probe_in, None, "closed");

    control.fail();
    call(&mut service).await.unwrap_err();
    assert_eq!(handle.state(), State::Open);
    assert_eq!(
        handle.snapshot().next_probe_in,
        Some(Duration::from_secs(10))
    );
    advance(Duration::from_secs(4)).await;
    assert_eq!(
        handle.snapshot().next_probe_in,
        Some(Duration::from_secs(6))
    );

    // An operator state hides the automatic one, and its probe time with it.
    handle.force_open();
    assert_eq!(handle.snapshot().next_probe_in, None, "forced open");
    handle.metrics_only();
    assert_eq!(handle.snapshot().next_probe_in, None, "metrics only");
    handle.disable();
    assert_eq!(handle.snapshot().next_probe_in, None, "disabled");
    handle.resume();
    assert_eq!(handle.state(), State::Open, "resumed: still open");
    assert_eq!(
        handle.snapshot().next_probe_in,
        Some(Duration::from_secs(6))
    );

    // Past the open duration with no call to probe yet: a probe may go now.
    advance(Duration::from_secs(7)).await;
    assert_eq!(handle.snapshot().next_probe_in, Some(Duration::ZERO));
    control.succeed();
    call(&mut service).await.unwrap();
    assert_eq!(handle.state(), State::Closed, "the probe succeeded");
    assert_eq!(handle.snapshot().next_probe_in, None);

    // Open again (the second trip): the count starts from the full duration.
    control.fail();
    call(&mut service).await.unwrap_err();
    assert_eq!(
        handle.snapshot().next_probe_in,
        Some(Duration::from_secs(10))
    );
    assert!(refused(&call(&mut service).await));
}

#[tokio::test(start_paused = true)]
async fn transitions_are_recorded_in_order_with_reasons_times_and_numbers() {
    let (mut service, control, layer) = guarded(trips_once_opens_ten_seconds());
    let handle = layer.handle();
    assert!(handle.transitions().is_empty(), "none yet");
    let start = Instant::now();

    advance(Duration::from_secs(1)).await;
    control.fail();
    call(&mut service).await.unwrap_err();
    advance(Duration::from_secs(10)).await;
    control.succeed();
    call(&mut service).await.unwrap(); // opens to half-open, probes, closes
    advance(Duration::from_secs(2)).await;
    handle.force_open();
    handle.force_open(); // no change: not recorded
    handle.reset();

    let seen: Vec<_> = handle
        .transitions()
        .into_iter()
        .map(|t| (t.sequence, t.from, t.to, t.reason, t.at - start))
        .collect();
    let s = Duration::from_secs;
    assert_eq!(
        seen,
        vec![
            (
                1,
                State::Closed,
                State::Open,
                Reason::ConsecutiveFailures(1),
                s(1)
            ),
            (2, State::Open, State::HalfOpen, Reason::OpenElapsed, s(11)),
            (
                3,
                State::HalfOpen,
                State::Closed,
                Reason::ProbesSucceeded(1),
                s(11)
            ),
            (4, State::Closed, State::ForcedOpen, Reason::Operator, s(13)),
            (5, State::ForcedOpen, State::Closed, Reason::Operator, s(13)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_last_16_are_kept_and_numbers_keep_counting() {
    let handle = CircuitBreakerLayer::new().handle();
    for _ in 0..10 {
        handle.force_open();
        handle.resume();
    }
    let kept = handle.transitions();
    assert_eq!(kept.len(), 16);
    let numbers: Vec<u64> = kept.iter().map(|t| t.sequence).collect();
    assert_eq!(numbers, (5..=20).collect::<Vec<u64>>(), "oldest first");
    // Oldest first and alternating, as made.
    assert_eq!(
        (kept[0].from, kept[0].to),
        (State::Closed, State::ForcedOpen)
    );
    assert_eq!(
        (kept[15].from, kept[15].to),
        (State::ForcedOpen, State::Closed)
    );
    assert_eq!(
        (kept[14].from, kept[14].to),
        (State::Closed, State::ForcedOpen)
    );

    // A reader that remembers the last number it saw reads each change once.
    let last_seen = kept[15].sequence;
    handle.disable();
    let new: Vec<_> = handle
        .transitions()
        .into_iter()
        .filter(|t| t.sequence > last_seen)
        .collect();
    assert_eq!(new.len(), 1);
    assert_eq!((new[0].to, new[0].sequence), (State::Disabled, 21));
}

#[tokio::test(start_paused = true)]
async fn changes_hidden_by_an_operator_state_are_recorded_too() {
    let (mut service, control, layer) = guarded(trips_once_opens_ten_seconds());
    let handle = layer.handle();
    handle.metrics_only();
    control.fail();
    call(&mut service).await.unwrap_err();
    assert_eq!(handle.state(), State::MetricsOnly);
    let reasons: Vec<_> = handle
        .transitions()
        .into_iter()
        .map(|t| (t.from, t.to, t.reason))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (State::Closed, State::MetricsOnly, Reason::Operator),
            (State::Closed, State::Open, Reason::ConsecutiveFailures(1)),
        ],
        "the automatic machine's trip, under shadow mode"
    );
}

#[tokio::test(start_paused = true)]
async fn each_key_of_a_keyed_breaker_keeps_its_own_record() {
    let layer = KeyedCircuitBreakerLayer::new(
        trips_once_opens_ten_seconds().name("hosts"),
        |request: &(&'static str, bool)| request.0,
        10,
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(layer.handle().name(), "hosts");
    let inner = tower::service_fn(|(_, fail): (&'static str, bool)| async move {
        if fail {
            Err(std::io::Error::other("down"))
        } else {
            Ok(())
        }
    });
    let service = tower::Layer::layer(&layer, inner);
    service.clone().oneshot(("a", true)).await.unwrap_err();
    service.clone().oneshot(("b", false)).await.unwrap();
    let keys = layer.handle();
    let a = keys.get(&"a").unwrap();
    assert_eq!(a.transitions().len(), 1);
    assert_eq!(a.snapshot().next_probe_in, Some(Duration::from_secs(10)));
    assert!(keys.get(&"b").unwrap().transitions().is_empty());
}

#[tokio::test(start_paused = true)]
async fn time_in_state_of_an_operator_state_counts_from_when_it_was_set() {
    let layer = CircuitBreakerLayer::new();
    let handle = layer.handle();
    advance(Duration::from_secs(3600)).await;
    handle.force_open();
    advance(Duration::from_secs(1)).await;
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.state, State::ForcedOpen);
    assert_eq!(
        snapshot.time_in_state,
        Duration::from_secs(1),
        "not the hour closed"
    );

    // Setting the same state again is no change: the time goes on.
    handle.force_open();
    advance(Duration::from_secs(1)).await;
    assert_eq!(handle.snapshot().time_in_state, Duration::from_secs(2));

    handle.disable();
    assert_eq!(handle.snapshot().time_in_state, Duration::ZERO);

    // Back to automatic: the machine has been closed since it was built.
    handle.resume();
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.state, State::Closed);
    assert_eq!(snapshot.time_in_state, Duration::from_secs(3602));
}
