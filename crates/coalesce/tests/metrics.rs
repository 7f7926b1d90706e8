//! `with_metrics()`: one counter per event kind, labelled with the layer's name.
#![cfg(feature = "metrics")]

mod support;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use support::*;

/// A metric's name, labels and value.
type Counted = (String, Vec<(String, String)>, DebugValue);

#[tokio::test(start_paused = true)]
async fn every_event_is_counted_under_the_layers_name() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let layer = tower_bulwark_coalesce::CoalesceLayer::builder()
        .name("catalog")
        .max_waiters(2)
        .with_metrics()
        .build()
        .unwrap();
    let backend = Backend::new(Reply::Text);
    let service = service(&layer, &backend);
    let callers: Vec<_> = (0..4).map(|_| spawn_send(&service, get("/a"))).collect();
    for caller in callers {
        caller.await.unwrap().unwrap();
    }
    let mut counted: Vec<Counted> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let labels = key
                .key()
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            (key.key().name().to_string(), labels, value)
        })
        .collect();
    counted.sort_by(|a, b| format!("{:?}", a.1).cmp(&format!("{:?}", b.1)));
    let row = |event: &str, n: u64| {
        (
            "bulwark_coalesce_events_total".to_string(),
            vec![
                ("coalesce".to_string(), "catalog".to_string()),
                ("event".to_string(), event.to_string()),
            ],
            DebugValue::Counter(n),
        )
    };
    assert_eq!(
        counted,
        vec![row("joined", 2), row("led", 1), row("over_waiters", 1)]
    );
}
