//! The blocking pool keeps its bound under a flood of slow closures.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};

use tower::ServiceExt;
use tower_bulwark_bulkhead::{BlockingBulkhead, BlockingService, BulkheadFull, FullReason};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_slow_closures_runs_two_at_a_time_and_queues_three() {
    let pool = BlockingBulkhead::new("legacy", 2, 3).unwrap();
    // Each closure blocks until the test opens the gate (no sleeping).
    let gate = Arc::new(Barrier::new(2 + 1));
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..10 {
        let (gate, running, peak) = (gate.clone(), running.clone(), peak.clone());
        let future = pool.run(move || {
            let now = running.fetch_add(1, SeqCst) + 1;
            peak.fetch_max(now, SeqCst);
            if i < 2 {
                gate.wait();
            }
            running.fetch_sub(1, SeqCst);
            i
        });
        // Wait until the first two are running so the count below is exact.
        if i == 1 {
            while pool.busy() < 2 {
                tokio::task::yield_now().await;
            }
        }
        accepted.push(future);
    }
    let mut results = Vec::new();
    let pending = accepted;
    assert_eq!(pool.busy(), 2);
    assert_eq!(pool.queued(), 3);
    gate.wait();
    for future in pending {
        match future.await {
            Ok(value) => results.push(value),
            Err(error) => {
                let full = error
                    .downcast_ref::<BulkheadFull>()
                    .expect("a bulkhead refusal");
                assert_eq!(full.reason(), FullReason::QueueFull);
                refused += 1;
            }
        }
    }
    results.sort();
    assert_eq!(results, [0, 1, 2, 3, 4]);
    assert_eq!(refused, 5);
    assert_eq!(pool.rejected(), 5);
    assert!(peak.load(SeqCst) <= 2);
}

#[tokio::test]
async fn a_panicking_closure_is_an_error_and_the_pool_goes_on() {
    let pool = BlockingBulkhead::new("fragile", 1, 4).unwrap();
    let failed = pool.run(|| -> u32 { panic!("boom") }).await;
    assert!(failed.is_err());
    assert_eq!(pool.run(|| 5).await.unwrap(), 5);
}

#[tokio::test]
async fn as_a_tower_service() {
    let pool = BlockingBulkhead::new("hash", 2, 2).unwrap();
    let service = BlockingService::new(pool, |text: String| -> Result<usize, std::io::Error> {
        Ok(text.len())
    });
    assert_eq!(
        service.clone().oneshot("four".to_string()).await.unwrap(),
        4
    );
    assert!(BlockingBulkhead::new("none", 0, 1).is_err());
}

#[tokio::test]
async fn an_unbounded_queue_saturates_instead_of_overflowing() {
    let pool = BlockingBulkhead::new("wide", 1, usize::MAX).unwrap();
    assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    assert_eq!(pool.rejected(), 0);
}

#[test]
fn too_many_threads_is_a_config_error_not_a_flood_of_threads() {
    for threads in [BlockingBulkhead::MAX_THREADS + 1, usize::MAX, 0] {
        let error = BlockingBulkhead::new("many", threads, 1).unwrap_err();
        assert_eq!(error.field(), "threads", "{threads} threads");
    }
}

#[test]
fn a_name_no_thread_can_bear_is_a_config_error() {
    // A thread name cannot hold a NUL byte: refused rather than a panic when spawning.
    let error = BlockingBulkhead::new("nul\0name", 1, 1).unwrap_err();
    assert_eq!(error.field(), "name");
}
