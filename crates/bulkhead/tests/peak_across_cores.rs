//! The peak in flight with calls on several cores.

use tower::{Layer, Service, ServiceExt};
use tower_bulwark_bulkhead::BulkheadLayer;
use tower_bulwark_core::stripes::{thread_index, PerCore};
use tower_bulwark_core::testing::controlled;

/// `Snapshot::peak_in_flight`, "the most calls ever in flight at once", with a limit of
/// one: one call at a time, on two threads in turn (a task moved between two workers), is
/// a peak of one, never above `max_concurrent`.
#[test]
fn the_peak_in_flight_never_exceeds_the_limit() {
    let stripes = PerCore::new(|| ()).len();
    if stripes < 2 {
        return;
    }
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_queue(0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (inner, _control) = controlled::<u32>();
    let one_call = {
        let layer = layer.clone();
        let inner = inner.clone();
        move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap()
                .block_on(async move {
                    let mut service = layer.layer(inner);
                    service.ready().await.unwrap().call(1).await.unwrap();
                })
        }
    };
    let mask = stripes - 1;
    let mine = thread_index() & mask;
    one_call.clone()();
    // The same on a thread on another stripe.
    loop {
        let call = one_call.clone();
        let ran = std::thread::spawn(move || {
            if thread_index() & mask == mine {
                return false;
            }
            call();
            true
        })
        .join()
        .unwrap();
        if ran {
            break;
        }
    }
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.in_flight, 0);
    assert!(
        snapshot.peak_in_flight <= snapshot.max_concurrent,
        "peak in flight {} with a limit of {}",
        snapshot.peak_in_flight,
        snapshot.max_concurrent
    );
}
