//! `with_metrics()`: ejections by reason, returns, capped ejections and the ejected gauge,
//! under the detector's and the endpoint's names.
#![cfg(feature = "metrics")]

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower::{Layer, Service, ServiceExt};
use tower_bulwark_core::testing::controlled;
use tower_bulwark_outlier::OutlierDetector;

type Series = (String, Vec<(String, String)>, DebugValue);

fn snapshot(snapshotter: &Snapshotter) -> Vec<Series> {
    let mut series: Vec<Series> = snapshotter
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
    series.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    series
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn ejections_returns_and_capped_ejections_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let detector = OutlierDetector::builder()
        .name("pool")
        .consecutive_failures(1)
        .with_metrics()
        .build()
        .unwrap();
    let (a, a_control) = controlled::<u32>();
    let (b, b_control) = controlled::<u32>();
    let mut a = detector.layer("a").layer(a);
    let mut b = detector.layer("b").layer(b);
    a_control.fail();
    b_control.fail();
    assert!(a.ready().await.unwrap().call(1).await.is_err());
    assert!(b.ready().await.unwrap().call(1).await.is_err());
    a.ready().await.unwrap();
    assert_eq!(
        snapshot(&snapshotter),
        [
            (
                "bulwark_outlier_capped_total".into(),
                labels(&[
                    ("outlier", "pool"),
                    ("endpoint", "b"),
                    ("reason", "consecutive")
                ]),
                DebugValue::Counter(1)
            ),
            (
                "bulwark_outlier_ejected".into(),
                labels(&[("outlier", "pool"), ("endpoint", "a")]),
                DebugValue::Gauge(0.0.into())
            ),
            (
                "bulwark_outlier_ejections_total".into(),
                labels(&[
                    ("outlier", "pool"),
                    ("endpoint", "a"),
                    ("reason", "consecutive")
                ]),
                DebugValue::Counter(1)
            ),
            (
                "bulwark_outlier_returns_total".into(),
                labels(&[("outlier", "pool"), ("endpoint", "a")]),
                DebugValue::Counter(1)
            ),
        ]
    );
}

/// An endpoint removed while ejected: its ejection is reported as ended, so its gauge goes
/// back to 0 (it stayed at 1 before: an endpoint that no longer exists, shown as ejected).
#[tokio::test(start_paused = true)]
async fn an_endpoint_removed_while_ejected_leaves_its_gauge_at_zero() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let detector = OutlierDetector::builder()
        .name("pool")
        .consecutive_failures(1)
        .with_metrics()
        .build()
        .unwrap();
    let (a, a_control) = controlled::<u32>();
    let (b, _b_control) = controlled::<u32>();
    let mut a = detector.layer("a").layer(a);
    let _b = detector.layer("b").layer(b);
    a_control.fail();
    assert!(a.ready().await.unwrap().call(1).await.is_err());
    assert_eq!(detector.ejected(), 1);
    drop(a);
    let gauge = snapshot(&snapshotter)
        .into_iter()
        .find(|(name, _, _)| name == "bulwark_outlier_ejected")
        .unwrap();
    assert_eq!(
        gauge,
        (
            "bulwark_outlier_ejected".into(),
            labels(&[("outlier", "pool"), ("endpoint", "a")]),
            DebugValue::Gauge(0.0.into())
        )
    );
}

/// An ejection by the slow-endpoint rule is counted under the reason `slow_endpoint`.
#[tokio::test(start_paused = true)]
async fn a_slow_endpoint_ejection_has_its_reason_label() {
    use std::time::Duration;
    use tower_bulwark_outlier::SlowEndpoint;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let detector = OutlierDetector::builder()
        .name("pool")
        .slow_endpoint(SlowEndpoint::new().request_volume(1))
        .max_ejection_percent(34)
        .with_metrics()
        .build()
        .unwrap();
    // The services are kept: an endpoint leaves the detector with its last service.
    let mut services = Vec::new();
    for (key, delay) in [("a", 1), ("b", 1), ("c", 100)] {
        let (service, control) = controlled::<u32>();
        control.delay(Duration::from_millis(delay));
        let mut service = detector.layer(key).layer(service);
        service.ready().await.unwrap().call(1).await.unwrap();
        services.push(service);
    }
    detector.evaluate();
    let ejections: Vec<Series> = snapshot(&snapshotter)
        .into_iter()
        .filter(|(name, _, _)| name == "bulwark_outlier_ejections_total")
        .collect();
    assert_eq!(
        ejections,
        [(
            "bulwark_outlier_ejections_total".into(),
            labels(&[
                ("outlier", "pool"),
                ("endpoint", "c"),
                ("reason", "slow_endpoint")
            ]),
            DebugValue::Counter(1)
        )]
    );
}
