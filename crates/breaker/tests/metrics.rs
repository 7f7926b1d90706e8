//! The breaker's metrics, recorded through a real `metrics` recorder.
#![cfg(feature = "metrics")]

mod support;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use support::{call, guarded};
use tower_bulwark_breaker::CircuitBreakerLayer;

/// A metric's name, labels and value.
type Recorded = (String, Vec<(String, String)>, DebugValue);

#[tokio::test(start_paused = true)]
async fn transitions_rejections_and_calls_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (mut service, control, _layer) = guarded(
        CircuitBreakerLayer::builder()
            .name("payments")
            .consecutive_failures(2)
            .with_metrics(),
    );
    let _guard = metrics::set_default_local_recorder(&recorder);
    call(&mut service).await.unwrap();
    control.fail();
    call(&mut service).await.unwrap_err();
    call(&mut service).await.unwrap_err();
    call(&mut service).await.unwrap_err();

    let metrics: Vec<Recorded> = snapshotter
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
    let find = |name: &str, label: (&str, &str)| {
        metrics
            .iter()
            .find(|(n, labels, _)| {
                n == name && labels.iter().any(|(k, v)| k == label.0 && v == label.1)
            })
            .map(|(_, _, value)| value)
    };
    assert_eq!(
        find("bulwark_breaker_calls_total", ("outcome", "success")),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        find("bulwark_breaker_calls_total", ("outcome", "failure")),
        Some(&DebugValue::Counter(2))
    );
    assert_eq!(
        find("bulwark_breaker_transitions_total", ("to", "open")),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        find("bulwark_breaker_rejections_total", ("breaker", "payments")),
        Some(&DebugValue::Counter(1))
    );
    assert!(matches!(
        find("bulwark_breaker_state", ("breaker", "payments")),
        Some(DebugValue::Gauge(g)) if g.into_inner() == 1.0
    ));
}
