//! `with_metrics()`: requests counted by outcome and tier (a wait is admitted too), waits
//! in a histogram, all under the layer's name.
#![cfg(feature = "metrics")]

mod helpers;

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark_core::Criticality;
use tower_bulwark_ratelimit::{
    key, ClientRateLimitLayer, LocalLimiter, OnLimiterError, Quota, RateLimitLayer,
};

use helpers::{counting, request, Broken};

/// A metric's name, labels and value.
type Counted = (String, Vec<(String, String)>, DebugValue);

fn snapshot(snapshotter: &metrics_util::debugging::Snapshotter) -> Vec<Counted> {
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
    counted
}

fn requests(outcome: &str, tier: Criticality, n: u64) -> Counted {
    (
        "bulwark_ratelimit_requests_total".to_string(),
        vec![
            ("ratelimit".to_string(), "edge".to_string()),
            ("outcome".to_string(), outcome.to_string()),
            ("tier".to_string(), tier.as_str().to_string()),
        ],
        DebugValue::Counter(n),
    )
}

#[tokio::test(start_paused = true)]
async fn server_requests_are_counted_by_outcome_and_tier() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (inner, _) = counting();
    let service = RateLimitLayer::local(Quota::per_minute(8).unwrap(), key::global)
        .unwrap()
        .name("edge")
        .with_metrics()
        .build()
        .unwrap()
        .layer(inner);
    let sheddable = || request(&[("x-request-criticality", "sheddable")]);
    for _ in 0..3 {
        service.clone().oneshot(sheddable()).await.unwrap();
    }
    service.clone().oneshot(request(&[])).await.unwrap();

    let broken = RateLimitLayer::builder(Broken(Quota::per_second(1).unwrap()), key::global)
        .name("edge")
        .with_metrics()
        .on_limiter_error(OnLimiterError::FailClosed)
        .build()
        .unwrap();
    let (inner, _) = counting();
    broken.layer(inner).oneshot(request(&[])).await.unwrap();

    assert_eq!(
        snapshot(&snapshotter),
        [
            requests("admitted", Criticality::Critical, 1),
            requests("admitted", Criticality::Sheddable, 2),
            requests("failed_closed", Criticality::Critical, 1),
            requests("limited", Criticality::Sheddable, 1),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn client_waits_are_recorded_in_seconds() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let layer = ClientRateLimitLayer::builder(
        LocalLimiter::new(Quota::per_second(4).unwrap().burst(1).unwrap()),
        key::global,
    )
    .name("edge")
    .with_metrics()
    .build();
    let client = layer.layer(service_fn(
        |n: u8| async move { Ok::<_, std::io::Error>(n) },
    ));
    client.clone().oneshot(1).await.unwrap();
    client.oneshot(2).await.unwrap();
    let counted = snapshot(&snapshotter);
    assert_eq!(counted.len(), 2, "{counted:?}");
    assert_eq!(counted[0], requests("admitted", Criticality::Critical, 2));
    let (name, labels, value) = &counted[1];
    assert_eq!(name, "bulwark_ratelimit_wait_seconds");
    assert_eq!(labels, &[("ratelimit".to_string(), "edge".to_string())]);
    let DebugValue::Histogram(values) = value else {
        panic!("{value:?}");
    };
    assert_eq!(values.len(), 1);
    assert_eq!(
        values[0].into_inner(),
        Duration::from_millis(250).as_secs_f64()
    );
}
