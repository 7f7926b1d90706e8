//! `with_metrics()`: one counter per outcome, labelled with the layer's name.
#![cfg(feature = "metrics")]

#[allow(dead_code)]
#[path = "layer/harness.rs"]
mod harness;

use harness::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::Layer;

/// A metric's name, labels and value.
type Counted = (String, Vec<(String, String)>, DebugValue);

#[tokio::test(start_paused = true)]
async fn every_outcome_is_counted_under_the_layers_name() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events)
        .with_metrics()
        .build()
        .unwrap()
        .layer(handler.clone());
    let body = r#"{"amount":10}"#;
    send(&service, pay(r#""k1""#, body)).await;
    for _ in 0..2 {
        assert!(send(&service, pay(r#""k1""#, body)).await.replayed());
    }
    send(&service, pay("unquoted", body)).await;
    assert_eq!(handler.runs(), 1);

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
    let row = |outcome: &str, n: u64| {
        (
            "bulwark_idempotency_requests_total".to_string(),
            vec![
                ("idempotency".to_string(), "payments".to_string()),
                ("outcome".to_string(), outcome.to_string()),
            ],
            DebugValue::Counter(n),
        )
    };
    assert_eq!(
        counted,
        [row("bad_key", 1), row("executed", 1), row("replayed", 2)]
    );
}
