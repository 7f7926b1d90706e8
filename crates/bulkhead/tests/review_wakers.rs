//! A waiter that leaves the queue (dropped, or its wait ran out) lets go of its task's
//! waker at once. A waker keeps its task's allocation alive, and a left waiter can stay in
//! the queue until a later call queues: after a spike of waiters that all gave up, the
//! bulkhead must not keep every one of those tasks alive while calls find free permits.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use tower::{Layer, Service, ServiceExt};
use tower_bulwark_bulkhead::{Admission, BulkheadLayer};
use tower_bulwark_core::testing::controlled;

/// A waker whose clones can be counted: `Arc::strong_count` of it.
struct Task;

impl Wake for Task {
    fn wake(self: Arc<Self>) {}
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_dropped_lets_go_of_its_waker() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_queue(4)
        .max_wait(Duration::from_secs(60))
        .build()
        .unwrap();
    let handle = layer.handle();
    let (inner, control) = controlled::<u32>();
    control.hang();
    let mut service = layer.layer(inner);
    let running = service.ready().await.unwrap().call(1);

    let task = Arc::new(Task);
    let waker = Waker::from(task.clone());
    {
        let queued = service.ready().await.unwrap().call(2);
        let mut queued = pin!(queued);
        assert!(queued
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        assert_eq!(handle.snapshot().queued, 1);
    }
    drop(waker);
    assert_eq!(handle.snapshot().queued, 0);
    assert_eq!(
        Arc::strong_count(&task),
        1,
        "the bulkhead still holds the waker of a call that left its queue"
    );
    drop(running);
}

#[tokio::test(start_paused = true)]
async fn a_backpressure_wait_that_ran_out_lets_go_of_its_waker() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(Duration::from_millis(100))
        .admission(Admission::Backpressure)
        .build()
        .unwrap();
    let (inner, control) = controlled::<u32>();
    control.hang();
    let mut service = layer.layer(inner);
    let running = service.ready().await.unwrap().call(1);

    let task = Arc::new(Task);
    let waker = Waker::from(task.clone());
    let mut waiting = service.clone();
    assert!(waiting
        .poll_ready(&mut Context::from_waker(&waker))
        .is_pending());
    tokio::time::advance(Duration::from_millis(100)).await;
    // The wait ran out: ready, and the call will be refused.
    assert!(waiting
        .poll_ready(&mut Context::from_waker(&waker))
        .is_ready());
    drop(waker);
    assert_eq!(
        Arc::strong_count(&task),
        1,
        "the bulkhead still holds the waker of a wait that ran out"
    );
    assert!(waiting.call(2).await.is_err());
    drop(running);
}
