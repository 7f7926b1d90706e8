//! A listener that reads the detector (`snapshot()`) when an endpoint is ejected. The
//! interval rules decide their ejections and returns under the registry's
//! `std::sync::Mutex` and emit them after releasing it, so the listener's `snapshot()`
//! (which takes that lock) runs, on the thread of the evaluation, without a deadlock.

use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use tower::{Layer, Service, ServiceExt};
use tower_bulwark_core::testing::controlled;
use tower_bulwark_outlier::{OutlierDetector, OutlierEvent, SuccessRate};

#[test]
fn a_listener_may_read_the_snapshot_when_the_success_rate_rule_ejects() {
    let (done, finished) = mpsc::channel();
    let body = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async move {
            let handle: Arc<OnceLock<OutlierDetector>> = Arc::new(OnceLock::new());
            let seen = Arc::new(Mutex::new(Vec::new()));
            let (h, s) = (handle.clone(), seen.clone());
            let detector = OutlierDetector::builder()
                .consecutive_failures(0)
                .success_rate(SuccessRate::new().request_volume(10))
                .max_ejection_percent(20)
                .on_event(move |event: &OutlierEvent| {
                    if let (OutlierEvent::Ejected { .. }, Some(detector)) = (event, h.get()) {
                        // e.g. log how many are out, and which.
                        s.lock().unwrap().push(detector.snapshot().ejected);
                    }
                })
                .build()
                .unwrap();
            handle.set(detector.clone()).unwrap();
            let mut list: Vec<_> = (0..5)
                .map(|i| {
                    let (service, control) = controlled::<u32>();
                    (detector.layer(format!("e{i}")).layer(service), control)
                })
                .collect();
            for (i, (endpoint, control)) in list.iter_mut().enumerate() {
                for n in 0..10 {
                    if i == 4 && n % 2 == 0 {
                        control.fail();
                    } else {
                        control.succeed();
                    }
                    let _ = endpoint.ready().await.unwrap().call(1).await;
                }
            }
            detector.evaluate();
            assert_eq!(*seen.lock().unwrap(), [1]);
        });
        done.send(()).unwrap();
    });
    // A bound for a deadlock, not a speed: the body takes microseconds of paused time.
    let outcome = finished.recv_timeout(Duration::from_secs(20));
    assert!(
        !body.is_finished() || outcome.is_ok(),
        "the body failed: see its panic"
    );
    assert!(
        outcome.is_ok(),
        "deadlocked: the listener's snapshot() waited for the registry lock its own \
         evaluation held"
    );
}
