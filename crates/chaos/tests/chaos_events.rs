//! Chaos events for faults asked for by header.
#![cfg(feature = "http")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark_chaos::{
    ChaosEvent, ChaosLayer, HttpChaosLayer, FAULT_ABORT_HEADER, FAULT_DELAY_HEADER,
    FAULT_GRPC_HEADER, FAULT_STATUS_HEADER,
};

#[tokio::test(start_paused = true)]
async fn each_targeted_fault_is_one_event_and_headers_are_ignored_when_off() {
    let seen: Arc<Mutex<Vec<ChaosEvent>>> = Arc::default();
    let record = seen.clone();
    let builder = || {
        let record = record.clone();
        ChaosLayer::builder().on_event(move |e: &ChaosEvent| record.lock().unwrap().push(*e))
    };
    let on = HttpChaosLayer::new(builder())
        .unwrap()
        .enable_header_targeting();
    let off = HttpChaosLayer::new(builder()).unwrap();
    let inner = || {
        service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        })
    };
    let request = |name: &str, value: &str| {
        http::Request::builder()
            .header(name, value)
            .body(())
            .unwrap()
    };
    for layer in [&on, &off] {
        for (name, value) in [
            (FAULT_ABORT_HEADER, "1"),
            (FAULT_STATUS_HEADER, "502"),
            (FAULT_GRPC_HEADER, "14"),
            (FAULT_DELAY_HEADER, "25"),
            (FAULT_STATUS_HEADER, "99999"),
            (FAULT_DELAY_HEADER, "-1"),
        ] {
            let _ = layer.layer(inner()).oneshot(request(name, value)).await;
        }
    }
    let events = seen.lock().unwrap().clone();
    assert_eq!(
        events,
        [
            ChaosEvent::Aborted,
            ChaosEvent::ErrorInjected,
            ChaosEvent::ErrorInjected,
            ChaosEvent::Delayed {
                delay: Duration::from_millis(25)
            },
        ]
    );
    assert_eq!(on.handle().injected().iter().sum::<u64>(), 4);
    on.handle().disable();
    let _ = on
        .layer(inner())
        .oneshot(request(FAULT_ABORT_HEADER, "1"))
        .await;
    assert_eq!(
        seen.lock().unwrap().len(),
        4,
        "the kill switch stops targeted faults and their events"
    );
}
