//! Review: `bulwark_hedge_pauses_total` and the handle's `pauses` count the same thing.
//!
//! `Snapshot::pauses` is "pauses begun after overloaded answers" (shared.rs counts one only
//! when no pause was in force), but the metrics listener increments
//! `bulwark_hedge_pauses_total` on every `Paused` event, and one is emitted each time an
//! overloaded answer *extends* a pause already in force: under a shedding dependency the
//! metric counts overloaded answers, not pauses.
#![cfg(feature = "metrics")]

mod support;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::{Layer, Service, ServiceExt};
use tower_bulwark_core::testing::ReadinessProbe;
use tower_bulwark_hedge::HedgeLayer;

use support::{backend, get, ms, Reply};

#[tokio::test(start_paused = true)]
async fn pauses_total_agrees_with_the_handle() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    // Every answer is a shed 503 without Retry-After: the default pause (1 s).
    let (inner, _) = backend(|_| {
        (
            ms(1),
            Reply::Status(503, vec![("x-bulwark-overloaded", "true")]),
        )
    });
    let layer = HedgeLayer::builder()
        .name("inventory")
        .delay(ms(10))
        .with_metrics()
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    // Three overloaded answers, 1 ms apart: one pause, extended twice.
    for _ in 0..3 {
        let _ = service.ready().await.unwrap().call(get()).await;
    }
    let pauses_metric = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(key, ..)| key.key().name() == "bulwark_hedge_pauses_total")
        .map(|(.., value)| value);
    let pauses = handle.snapshot().pauses;
    assert_eq!(pauses, 1, "the handle: one pause begun");
    assert_eq!(
        pauses_metric,
        Some(DebugValue::Counter(pauses)),
        "bulwark_hedge_pauses_total disagrees with Snapshot::pauses"
    );
}
