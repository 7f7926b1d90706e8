//! Many threads driving one breaker through its states at once.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use support::recorder;
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark_breaker::{
    BreakerEvent, BreakerHandle, CircuitBreakerLayer, OpenDuration, State,
};

/// Every `StateChanged` event starts where the previous one ended, the first starts closed,
/// and the last ends in the breaker's state.
fn assert_chain(events: &[BreakerEvent], last: State) {
    let mut at = State::Closed;
    for (i, event) in events.iter().enumerate() {
        if let BreakerEvent::StateChanged { from, to, .. } = event {
            assert_eq!(
                *from, at,
                "event {i} ({event}) does not start where the last ended"
            );
            at = *to;
        }
    }
    assert_eq!(
        at, last,
        "the last event does not end in the breaker's state"
    );
}

/// Calls on several threads trip, probe, reopen and close the breaker over and over (a
/// nanosecond open duration, every third call failing) while an operator closes and resets
/// it: the state changes are announced in the order they happened, each while the breaker
/// is in the state announced, and a listener can read the breaker's handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transitions_are_announced_in_order() {
    let (record, events) = recorder();
    let own = Arc::new(OnceLock::<BreakerHandle>::new());
    let handle_of_listener = own.clone();
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_duration(OpenDuration::Fixed(Duration::from_nanos(1)))
        .on_event(move |event: &BreakerEvent| {
            if let BreakerEvent::StateChanged { to, .. } = event {
                let snapshot = handle_of_listener.get().unwrap().snapshot();
                assert_eq!(snapshot.state, *to, "announced in another state: {event}");
            }
            record(event);
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    own.set(handle.clone()).unwrap();
    let count = Arc::new(AtomicU32::new(0));
    let service = layer.layer(service_fn(move |_: ()| {
        let n = count.fetch_add(1, Ordering::Relaxed);
        async move {
            if n % 3 == 0 {
                Err(std::io::Error::other("down"))
            } else {
                Ok::<(), std::io::Error>(())
            }
        }
    }));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move {
                for _ in 0..5_000 {
                    let _ = service.clone().oneshot(()).await;
                }
            })
        })
        .collect();
    let operator = {
        let handle = handle.clone();
        tokio::spawn(async move {
            for i in 0..500 {
                if i % 2 == 0 {
                    handle.force_closed();
                } else {
                    handle.reset();
                }
                tokio::task::yield_now().await;
            }
        })
    };
    for task in tasks {
        task.await.unwrap();
    }
    operator.await.unwrap();
    let events = events.lock().unwrap();
    let changes = events
        .iter()
        .filter(|e| matches!(e, BreakerEvent::StateChanged { .. }))
        .count();
    // Thousands on a fine clock; a coarse one still lets the operator make hundreds.
    assert!(changes > 100, "only {changes} state changes");
    assert_chain(&events, handle.state());
}
