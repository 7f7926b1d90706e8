//! The bulkhead's behaviour in paused time: limits, queue, timeouts, deadlines, order,
//! runtime changes, cancel safety and the tower contract.

use std::time::Duration;

use tokio::time::{advance, Instant};
use tower::{Layer, Service, ServiceExt};
use tower_bulwark_bulkhead::{
    Admission, Bulkhead, BulkheadFull, BulkheadHandle, BulkheadLayer, FullReason, TaskDeadline,
};
use tower_bulwark_core::testing::{controlled, Controlled, Controller, ReadinessProbe};
use tower_bulwark_core::{find_rejection, BoxError, Deadline, RejectionKind};

/// A bulkhead of `max` permits and a queue of `queue` calls waiting at most `wait`, around
/// a controllable inner service.
fn bulkhead(
    max: usize,
    queue: usize,
    wait: Duration,
) -> (
    Bulkhead<Controlled<u32>, TaskDeadline>,
    Controller,
    BulkheadHandle,
) {
    let layer = BulkheadLayer::builder()
        .max_concurrent(max)
        .max_queue(queue)
        .max_wait(wait)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (inner, control) = controlled::<u32>();
    (layer.layer(inner), control, handle)
}

fn reason(result: &Result<u32, BoxError>) -> Option<FullReason> {
    result
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<BulkheadFull>())
        .map(BulkheadFull::reason)
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_at_once_without_calling_the_inner_service() {
    let layer = BulkheadLayer::builder()
        .name("db")
        .max_concurrent(2)
        .max_queue(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (inner, control) = controlled::<u32>();
    control.hang();
    let service = layer.layer(inner);
    let _a = tokio::spawn(service.clone().oneshot(1));
    let _b = tokio::spawn(service.clone().oneshot(2));
    let _queued = tokio::spawn(service.clone().oneshot(3));
    tokio::task::yield_now().await;
    let snapshot = handle.snapshot();
    assert_eq!(
        (snapshot.in_flight, snapshot.queued, snapshot.available),
        (2, 1, 0)
    );

    let refused = service.clone().oneshot(4).await;
    assert_eq!(reason(&refused), Some(FullReason::QueueFull));
    let rejection = find_rejection(refused.as_ref().unwrap_err()).unwrap();
    assert_eq!(rejection.kind(), RejectionKind::BulkheadFull);
    assert_eq!(rejection.layer(), "db");
    assert_eq!(rejection.reason(), Some("queue full"));
    assert_eq!(control.calls(), 2);
    assert_eq!(handle.snapshot().rejected_queue_full, 1);
}

#[tokio::test(start_paused = true)]
async fn no_queue_means_refusing_at_once() {
    let layer = BulkheadLayer::builder().max_concurrent(1).build().unwrap();
    let (inner, control) = controlled::<u32>();
    control.hang();
    let service = layer.layer(inner);
    let _running = tokio::spawn(service.clone().oneshot(1));
    tokio::task::yield_now().await;
    assert_eq!(
        reason(&service.oneshot(2).await),
        Some(FullReason::QueueFull)
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_waits_at_most_max_wait() {
    let (service, control, handle) = bulkhead(1, 5, Duration::from_millis(300));
    control.hang();
    let _running = tokio::spawn(service.clone().oneshot(1));
    tokio::task::yield_now().await;
    let started = Instant::now();
    let result = service.clone().oneshot(2).await;
    assert_eq!(reason(&result), Some(FullReason::WaitTimeout));
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(control.calls(), 1);
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.queued, snapshot.rejected_wait_timeout), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn waiting_calls_start_in_arrival_order() {
    use std::sync::{Arc, Mutex};

    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_queue(10)
        .max_wait(Duration::from_secs(60))
        .build()
        .unwrap();
    // The order in which calls reach the inner service, which the bulkhead decides.
    let started = Arc::new(Mutex::new(Vec::new()));
    let inner = {
        let started = started.clone();
        tower::service_fn(move |id: u32| {
            started.lock().unwrap().push(id);
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok::<_, BoxError>(id)
            }
        })
    };
    let service = layer.layer(inner);
    // The first call takes the permit; the rest queue, in this (non-sorted) order.
    let arrivals = [0, 5, 3, 1, 4, 2];
    let mut tasks = Vec::new();
    for id in arrivals {
        tasks.push(tokio::spawn(service.clone().oneshot(id)));
        tokio::task::yield_now().await;
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(*started.lock().unwrap(), arrivals);
}

#[tokio::test(start_paused = true)]
async fn deadlines_refuse_at_once_or_cut_the_wait_short() {
    let (service, control, handle) = bulkhead(1, 10, Duration::from_secs(10));
    control.hang();
    let _running = tokio::spawn(service.clone().oneshot(1));
    tokio::task::yield_now().await;

    // Already expired: refused at once.
    let expired = Deadline::after(Duration::ZERO);
    let started = Instant::now();
    let result = expired.scope(service.clone().oneshot(2)).await;
    assert_eq!(reason(&result), Some(FullReason::Deadline));
    assert_eq!(started.elapsed(), Duration::ZERO);

    // Two seconds left: waits two seconds, not ten, and says why.
    let result = Deadline::after(Duration::from_secs(2))
        .scope(service.clone().oneshot(3))
        .await;
    assert_eq!(reason(&result), Some(FullReason::Deadline));
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(handle.snapshot().rejected_deadline, 2);
    assert_eq!(control.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_nearer_than_the_usual_wait_is_refused_at_once() {
    let (service, control, handle) = bulkhead(1, 10, Duration::from_secs(10));
    control.delay(Duration::from_secs(1));
    // Teach the bulkhead that waits last about a second.
    let first = tokio::spawn(service.clone().oneshot(1));
    tokio::task::yield_now().await;
    service.clone().oneshot(2).await.unwrap();
    first.await.unwrap().unwrap();
    assert!(handle.snapshot().mean_wait >= Duration::from_millis(900));

    let _busy = tokio::spawn(service.clone().oneshot(3));
    tokio::task::yield_now().await;
    let started = Instant::now();
    let result = Deadline::after(Duration::from_millis(500))
        .scope(service.clone().oneshot(4))
        .await;
    assert_eq!(reason(&result), Some(FullReason::Deadline));
    assert_eq!(started.elapsed(), Duration::ZERO, "refused without waiting");
}

#[tokio::test(start_paused = true)]
async fn a_mean_wait_learned_in_a_burst_does_not_refuse_for_ever() {
    let (service, control, handle) = bulkhead(1, 10, Duration::from_secs(10));
    control.delay(Duration::from_secs(1));
    // A burst of long waits teaches a mean of about a second...
    let first = tokio::spawn(service.clone().oneshot(1));
    tokio::task::yield_now().await;
    service.clone().oneshot(2).await.unwrap();
    first.await.unwrap().unwrap();
    assert!(handle.snapshot().mean_wait >= Duration::from_millis(900));

    // ...then the dependency is fast again and every caller has 500 ms. Each refusal on
    // the stale estimate lowers it, so within a few calls one queues, waits its 10 ms and
    // brings the estimate back to the truth.
    control.delay(Duration::from_millis(10));
    let mut refused = 0;
    loop {
        let busy = tokio::spawn(service.clone().oneshot(3));
        tokio::task::yield_now().await;
        let result = Deadline::after(Duration::from_millis(500))
            .scope(service.clone().oneshot(4))
            .await;
        busy.await.unwrap().unwrap();
        match result {
            Ok(_) => break,
            Err(_) => refused += 1,
        }
        assert!(refused <= 6, "still refused after {refused} calls");
    }
    assert!(refused >= 1, "the stale estimate refused at first");
    assert!(handle.snapshot().mean_wait < Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn raising_the_limit_at_runtime_admits_waiters_and_lowering_it_drops_nothing() {
    let (service, control, handle) = bulkhead(1, 10, Duration::from_secs(60));
    control.hang();
    let tasks: Vec<_> = (0..3)
        .map(|i| tokio::spawn(service.clone().oneshot(i)))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(control.in_flight(), 1);
    handle.set_limits(3, 10).unwrap();
    tokio::task::yield_now().await;
    assert_eq!(control.in_flight(), 3);
    handle.set_limits(1, 10).unwrap();
    assert_eq!(
        handle.snapshot().in_flight,
        3,
        "calls in flight are not dropped"
    );
    assert_eq!(
        handle.set_limits(0, 1).unwrap_err().field(),
        "max_concurrent"
    );
    for task in tasks {
        task.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn thousands_of_calls_dropped_anywhere_give_everything_back() {
    let (service, control, handle) = bulkhead(4, 8, Duration::from_secs(1));
    control.delay(Duration::from_millis(5));
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut tasks = Vec::new();
    for i in 0..3_000u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let task = tokio::spawn(service.clone().oneshot(i));
        match seed % 4 {
            0 => task.abort(),
            1 => {
                advance(Duration::from_millis(seed % 7)).await;
                task.abort();
            }
            _ => tasks.push(task),
        }
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    advance(Duration::from_secs(2)).await;
    tokio::task::yield_now().await;
    let snapshot = handle.snapshot();
    assert_eq!(
        (snapshot.in_flight, snapshot.queued, snapshot.available),
        (0, 0, 4)
    );
    assert!(snapshot.peak_in_flight <= 4);
    assert!(control.max_in_flight() <= 4);
}

#[tokio::test(start_paused = true)]
async fn backpressure_mode_waits_in_poll_ready() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(Duration::from_secs(60))
        .admission(Admission::Backpressure)
        .build()
        .unwrap();
    let (inner, control) = controlled::<u32>();
    control.delay(Duration::from_secs(1));
    let service = layer.layer(inner);
    let first = tokio::spawn(service.clone().oneshot(1));
    tokio::task::yield_now().await;
    let mut second = service.clone();
    let started = Instant::now();
    second.ready().await.unwrap();
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "ready once the first call finished"
    );
    assert_eq!(second.call(2).await.unwrap(), 2);
    first.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_inner_service_is_readied_before_every_call_in_both_modes() {
    for admission in [Admission::Reject, Admission::Backpressure] {
        let layer = BulkheadLayer::builder()
            .max_concurrent(2)
            .max_queue(50)
            .max_wait(Duration::from_secs(60))
            .admission(admission)
            .build()
            .unwrap();
        let (inner, control) = controlled::<u32>();
        control.delay(Duration::from_millis(3));
        let service = layer.layer(ReadinessProbe::new(inner));
        let tasks: Vec<_> = (0..20)
            .map(|i| tokio::spawn(service.clone().oneshot(i)))
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(control.completed(), 20, "{admission:?}");
        assert!(control.max_in_flight() <= 2);
    }
}

#[tokio::test(start_paused = true)]
async fn a_saturated_compartment_does_not_delay_another() {
    let payments = BulkheadLayer::builder()
        .name("payments")
        .max_concurrent(2)
        .build()
        .unwrap();
    let inventory = BulkheadLayer::builder()
        .name("inventory")
        .max_concurrent(2)
        .build()
        .unwrap();
    let (slow, slow_control) = controlled::<u32>();
    slow_control.hang();
    let (fast, _) = controlled::<u32>();
    let payments = payments.layer(slow);
    let inventory = inventory.layer(fast);
    let _stuck: Vec<_> = (0..2)
        .map(|i| tokio::spawn(payments.clone().oneshot(i)))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(
        reason(&payments.clone().oneshot(9).await),
        Some(FullReason::QueueFull)
    );
    let started = Instant::now();
    for i in 0..10 {
        assert_eq!(inventory.clone().oneshot(i).await.unwrap(), i);
    }
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn refusals_and_waits_are_reported_to_listeners() {
    use std::sync::{Arc, Mutex};
    use tower_bulwark_bulkhead::BulkheadEvent;

    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let layer = BulkheadLayer::builder()
        .name("db")
        .max_concurrent(1)
        .max_queue(1)
        .max_wait(Duration::from_secs(5))
        .on_event(move |e: &BulkheadEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let (inner, control) = controlled::<u32>();
    control.delay(Duration::from_secs(1));
    let service = layer.layer(inner);
    let first = tokio::spawn(service.clone().oneshot(1));
    tokio::task::yield_now().await;
    let second = tokio::spawn(service.clone().oneshot(2));
    tokio::task::yield_now().await;
    assert_eq!(
        reason(&service.clone().oneshot(3).await),
        Some(FullReason::QueueFull)
    );
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let events = events.lock().unwrap().clone();
    assert_eq!(
        events,
        [
            BulkheadEvent::Rejected {
                bulkhead: "db".into(),
                reason: FullReason::QueueFull
            },
            BulkheadEvent::Waited {
                bulkhead: "db".into(),
                wait: Duration::from_secs(1)
            },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn presets_build_and_behave_as_named() {
    use tower_bulwark_bulkhead::Builder;
    let fail_fast = Builder::fail_fast(1).build().unwrap();
    assert_eq!(fail_fast.handle().snapshot().max_queue, 0);
    let bursts = Builder::absorb_bursts(8).build().unwrap();
    let snapshot = bursts.handle().snapshot();
    assert_eq!((snapshot.max_concurrent, snapshot.max_queue), (8, 8));
    assert_eq!(
        Builder::fail_fast(0).build().unwrap_err().field(),
        "max_concurrent"
    );
}

#[tokio::test(start_paused = true)]
async fn an_enormous_max_wait_saturates_instead_of_panicking() {
    let (service, control, _handle) = bulkhead(1, 1, Duration::MAX);
    control.delay(Duration::from_secs(1));
    let first = tokio::spawn(service.clone().oneshot(1));
    tokio::task::yield_now().await;
    // Queued with a wait no instant can hold: it simply waits for the permit.
    assert_eq!(service.clone().oneshot(2).await.unwrap(), 2);
    first.await.unwrap().unwrap();
}

/// `peak_in_flight`, "the most calls ever in flight at once", sees a burst far below the
/// limit (the fast zone) too.
#[tokio::test(start_paused = true)]
async fn the_peak_in_flight_sees_a_burst_far_below_the_limit() {
    if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
        return; // one core: no fast zone, every admission counted
    }
    let (mut service, control, handle) = bulkhead(256, 0, Duration::ZERO);
    control.hang();
    let mut held = Vec::new();
    for i in 0..20 {
        held.push(tokio::spawn(service.ready().await.unwrap().call(i)));
        tokio::task::yield_now().await;
    }
    assert_eq!(handle.snapshot().in_flight, 20);
    assert_eq!(
        handle.snapshot().peak_in_flight,
        20,
        "20 calls in flight at once"
    );
}
