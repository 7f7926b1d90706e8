//! Partitions: each key has its own compartment; a saturated one does not delay another.

use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_bulwark_bulkhead::{Admission, BulkheadFull, BulkheadLayer, PartitionedBulkheadLayer};
use tower_bulwark_core::testing::controlled;
use tower_bulwark_core::{find_rejection, BoxError};

type Request = (&'static str, u32);

fn layer() -> PartitionedBulkheadLayer<&'static str, fn(&Request) -> &'static str> {
    PartitionedBulkheadLayer::builder((|r: &Request| r.0) as fn(&Request) -> &'static str)
        .partition("payments", BulkheadLayer::builder().max_concurrent(2))
        .partition("inventory", BulkheadLayer::builder().max_concurrent(3))
        .fallback(BulkheadLayer::builder().name("other").max_concurrent(1))
        .build()
        .unwrap()
}

fn refused_by(result: &Result<Request, BoxError>) -> Option<String> {
    let error = result.as_ref().err()?;
    error.downcast_ref::<BulkheadFull>()?;
    find_rejection(error).map(|r| r.layer().to_string())
}

#[tokio::test(start_paused = true)]
async fn a_saturated_partition_does_not_delay_another() {
    let layer = layer();
    let (inner, control) = controlled::<Request>();
    control.hang();
    let service = layer.layer(inner);
    let _stuck: Vec<_> = (0..2)
        .map(|i| tokio::spawn(service.clone().oneshot(("payments", i))))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(
        refused_by(&service.clone().oneshot(("payments", 9)).await).as_deref(),
        Some("payments")
    );

    control.succeed();
    let started = Instant::now();
    let _busy: Vec<_> = (0..3)
        .map(|i| tokio::spawn(service.clone().oneshot(("inventory", i))))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(
        layer.handle(&"inventory").unwrap().snapshot().in_flight,
        0,
        "inventory calls finished"
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(layer.handle(&"payments").unwrap().snapshot().in_flight, 2);
}

#[tokio::test(start_paused = true)]
async fn unknown_keys_go_to_the_fallback() {
    let layer = layer();
    let (inner, control) = controlled::<Request>();
    control.hang();
    let service = layer.layer(inner);
    let _held = tokio::spawn(service.clone().oneshot(("search", 1)));
    tokio::task::yield_now().await;
    assert_eq!(layer.fallback_handle().snapshot().in_flight, 1);
    assert_eq!(
        refused_by(&service.clone().oneshot(("reports", 2)).await).as_deref(),
        Some("other")
    );
}

#[test]
fn bad_partition_settings_are_refused() {
    let key = |r: &Request| r.0;
    let err = PartitionedBulkheadLayer::builder(key)
        .partition("a", BulkheadLayer::builder())
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "fallback");
    let err = PartitionedBulkheadLayer::builder(key)
        .partition("a", BulkheadLayer::builder().max_concurrent(0))
        .fallback(BulkheadLayer::builder())
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_concurrent");
    let err = PartitionedBulkheadLayer::builder(key)
        .fallback(BulkheadLayer::builder().admission(Admission::Backpressure))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "admission");
}
