//! The drain's events under a stall, cancellation and re-entrant listeners.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark_health::{DrainEvent, DrainLayer};

type Events = Arc<Mutex<Vec<DrainEvent>>>;

/// A drain layer recording its events, and a service whose calls hang until `gate` opens.
fn setup() -> (
    DrainLayer,
    Events,
    Arc<Semaphore>,
    impl tower::Service<
            (),
            Response = http::Response<tower_bulwark_health::DrainBody<()>>,
            Error = tower_bulwark_core::BoxError,
            Future = impl Send,
        > + Clone
        + Send,
) {
    let events: Events = Arc::default();
    let seen = events.clone();
    let drain =
        DrainLayer::new().on_event(move |event: &DrainEvent| seen.lock().unwrap().push(*event));
    let gate = Arc::new(Semaphore::new(0));
    let service = drain.layer(service_fn({
        let gate = gate.clone();
        move |_: ()| {
            let gate = gate.clone();
            async move {
                gate.acquire().await.unwrap().forget();
                Ok::<_, std::convert::Infallible>(http::Response::new(()))
            }
        }
    }));
    (drain, events, gate, service)
}

/// A waiter not polled for 3.5 s (a busy runtime, a blocked thread) should not emit three
/// "once a second" Waiting events at the same instant.
#[tokio::test(start_paused = true)]
async fn a_stalled_waiter_reports_once_not_in_a_burst() {
    let (drain, events, _gate, service) = setup();
    let handle = drain.handle();
    let call = tokio::spawn(service.oneshot(()));
    tokio::task::yield_now().await;
    handle.drain();
    let mut waiting = Box::pin(handle.drained(Duration::from_secs(10)));
    // First poll registers the timers, then the clock jumps without polling the waiter.
    assert!(futures_poll(&mut waiting).is_none());
    tokio::time::advance(Duration::from_millis(3500)).await;
    assert!(futures_poll(&mut waiting).is_none());
    let events = events.lock().unwrap().clone();
    let waits: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            DrainEvent::Waiting { waited, .. } => Some(*waited),
            _ => None,
        })
        .collect();
    call.abort();
    assert!(
        waits.len() <= 1,
        "a burst of Waiting events at one instant: {waits:?}"
    );
}

/// Dropping `drained` mid-wait: no Finished, no later Waiting; a listener that calls back
/// into the handle does not deadlock.
#[tokio::test(start_paused = true)]
async fn a_cancelled_wait_and_a_reentrant_listener() {
    let events: Events = Arc::default();
    let seen = events.clone();
    let slot: Arc<Mutex<Option<tower_bulwark_health::DrainHandle>>> = Arc::default();
    let inner = slot.clone();
    let drain = DrainLayer::new().on_event(move |event: &DrainEvent| {
        if let Some(handle) = inner.lock().unwrap().as_ref() {
            handle.drain(); // re-entrant: already draining, no second Started
            let _ = handle.in_flight();
        }
        seen.lock().unwrap().push(*event);
    });
    let handle = drain.handle();
    *slot.lock().unwrap() = Some(handle.clone());
    let gate = Arc::new(Semaphore::new(0));
    let service = drain.layer(service_fn({
        let gate = gate.clone();
        move |_: ()| {
            let gate = gate.clone();
            async move {
                gate.acquire().await.unwrap().forget();
                Ok::<_, std::convert::Infallible>(http::Response::new(()))
            }
        }
    }));
    let call = tokio::spawn(service.oneshot(()));
    tokio::task::yield_now().await;
    handle.drain();
    let _ = tokio::time::timeout(
        Duration::from_millis(1500),
        handle.drained(Duration::from_secs(10)),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    call.abort();
    let events = events.lock().unwrap().clone();
    eprintln!("{events:?}");
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, DrainEvent::Started { .. }))
            .count(),
        1
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, DrainEvent::Waiting { .. }))
            .count(),
        1
    );
}

fn futures_poll<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match std::pin::Pin::new(future).poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}
