//! Backpressure admission in paused time: `poll_ready` waits for the permit, at most
//! `max_wait` and never past the caller's deadline; long queues and dropped waiters give
//! every permit and place back.

use std::time::Duration;

use tokio::time::{advance, timeout, Instant};
use tower::{Layer, Service, ServiceExt};
use tower_bulwark_bulkhead::{
    Admission, Bulkhead, BulkheadFull, BulkheadHandle, BulkheadLayer, FullReason, TaskDeadline,
};
use tower_bulwark_core::testing::{controlled, Controlled, Controller};
use tower_bulwark_core::{find_rejection, BoxError, Deadline, RejectionKind};

/// A backpressure bulkhead of `max` permits whose waits last at most `wait`.
fn backpressure(
    max: usize,
    wait: Duration,
) -> (
    Bulkhead<Controlled<u32>, TaskDeadline>,
    Controller,
    BulkheadHandle,
) {
    let layer = BulkheadLayer::builder()
        .name("pool")
        .max_concurrent(max)
        .max_wait(wait)
        .admission(Admission::Backpressure)
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

/// Readies `service` (bounded, so a wait that never ends fails the test instead of hanging
/// it) and calls it.
async fn ready_and_call(
    service: &mut Bulkhead<Controlled<u32>, TaskDeadline>,
    request: u32,
) -> Result<u32, BoxError> {
    timeout(Duration::from_secs(3_600), service.ready())
        .await
        .expect("poll_ready waited past max_wait and the deadline")?;
    service.call(request).await
}

#[tokio::test(start_paused = true)]
async fn a_wait_ends_at_max_wait_and_the_call_is_refused() {
    let (service, control, handle) = backpressure(1, Duration::from_millis(300));
    control.hang();
    let _running = tokio::spawn(service.clone().oneshot(1));
    tokio::task::yield_now().await;

    let started = Instant::now();
    let result = ready_and_call(&mut service.clone(), 2).await;
    assert_eq!(reason(&result), Some(FullReason::WaitTimeout));
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    let rejection = find_rejection(result.as_ref().unwrap_err()).unwrap();
    assert_eq!(rejection.kind(), RejectionKind::BulkheadFull);
    assert_eq!(rejection.layer(), "pool");
    assert_eq!(
        control.calls(),
        1,
        "a refused call never reaches the inner service"
    );
    let snapshot = handle.snapshot();
    assert_eq!(
        (
            snapshot.in_flight,
            snapshot.queued,
            snapshot.rejected_wait_timeout
        ),
        (1, 0, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_ends_at_the_callers_deadline() {
    let (service, control, handle) = backpressure(1, Duration::from_secs(10));
    control.hang();
    let running = tokio::spawn(service.clone().oneshot(1));
    tokio::task::yield_now().await;
    let started = Instant::now();

    // Already expired: refused at once.
    let mut waiting = service.clone();
    let result = Deadline::after(Duration::ZERO)
        .scope(ready_and_call(&mut waiting, 2))
        .await;
    assert_eq!(reason(&result), Some(FullReason::Deadline));
    assert_eq!(started.elapsed(), Duration::ZERO);

    // Two seconds left: waits two seconds, not ten, and says why.
    let result = Deadline::after(Duration::from_secs(2))
        .scope(ready_and_call(&mut waiting, 3))
        .await;
    assert_eq!(reason(&result), Some(FullReason::Deadline));
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(control.calls(), 1);
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.queued, snapshot.rejected_deadline), (0, 2));

    // The same service waits again, and gets the permit when it frees up.
    control.succeed();
    running.abort();
    assert_eq!(ready_and_call(&mut waiting, 4).await.unwrap(), 4);
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_permit_freed_within_max_wait_is_handed_over() {
    let (service, control, handle) = backpressure(1, Duration::from_secs(5));
    control.delay(Duration::from_secs(1));
    let first = tokio::spawn(service.clone().oneshot(1));
    tokio::task::yield_now().await;
    let started = Instant::now();
    assert_eq!(ready_and_call(&mut service.clone(), 2).await.unwrap(), 2);
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(2),
        "1 s waiting, 1 s running"
    );
    first.await.unwrap().unwrap();
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.mean_wait, Duration::from_secs(1));
    assert_eq!((snapshot.in_flight, snapshot.rejected_wait_timeout), (0, 0));
}

#[test]
fn backpressure_needs_a_wait_longer_than_zero() {
    let error = BulkheadLayer::builder()
        .admission(Admission::Backpressure)
        .max_wait(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "max_wait");
}

#[tokio::test(start_paused = true)]
async fn thousands_of_waiters_dropped_anywhere_give_everything_back() {
    let (service, control, handle) = backpressure(4, Duration::from_secs(3_600));
    control.delay(Duration::from_millis(5));
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut tasks = Vec::new();
    let mut readied = Vec::new();
    for i in 0..4_000u32 {
        let task = tokio::spawn(service.clone().oneshot(i));
        match next() % 5 {
            0 => task.abort(),
            1 => {
                advance(Duration::from_millis(next() % 7)).await;
                task.abort();
            }
            // Readied, then dropped without a call: holds a permit until dropped.
            2 if readied.len() < 3 => {
                let mut readied_service = service.clone();
                readied.push(tokio::spawn(async move {
                    readied_service.ready().await.unwrap();
                    readied_service
                }));
                tasks.push(task);
            }
            _ => tasks.push(task),
        }
        if i % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert!(handle.snapshot().queued > 1_000, "a long queue built up");
    for service in readied {
        drop(service.await.unwrap());
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let snapshot = handle.snapshot();
    assert_eq!(
        (snapshot.in_flight, snapshot.queued, snapshot.available),
        (0, 0, 4)
    );
    assert!(snapshot.peak_in_flight <= 4);
    assert!(control.max_in_flight() <= 4);
    assert_eq!(
        snapshot.rejected_wait_timeout + snapshot.rejected_deadline,
        0
    );

    // A later caller is admitted at once.
    let started = Instant::now();
    let mut later = service.clone();
    later.ready().await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(handle.snapshot().in_flight, 1);
    assert_eq!(later.call(9_999).await.unwrap(), 9_999);
}
