//! Events and metrics for every flip.

#[cfg(feature = "metrics")]
mod support;

use tower_bulwark_core::Event;
use tower_bulwark_degrade::{Cause, DegradeEvent};
use tracing::Level;

#[test]
fn flips_read_well_and_log_degradation_as_a_warning() {
    let event = DegradeEvent::Flipped {
        switches: "shop".into(),
        switch: "reviews".into(),
        from: 0,
        to: 1,
        cause: Cause::Automatic,
        reason: "load 400 >= 300".into(),
    };
    assert_eq!(
        event.to_string(),
        "`shop` switch `reviews` level 0 -> 1 (automatic): load 400 >= 300"
    );
    assert_eq!(event.layer_kind(), "degrade");
    assert_eq!(event.level(), Level::WARN);
    let back = DegradeEvent::Flipped {
        switches: "shop".into(),
        switch: "reviews".into(),
        from: 1,
        to: 0,
        cause: Cause::Manual,
        reason: "forced on by an operator".into(),
    };
    assert_eq!(back.level(), Level::INFO);
}

#[cfg(feature = "metrics")]
#[test]
fn every_flip_is_counted_and_the_level_is_a_gauge() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use support::Pressure;
    use tokio::time::Instant;
    use tower_bulwark_degrade::{Switches, Threshold, Tiers};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let pressure = Pressure::default();
    let switches = Switches::builder()
        .name("shop")
        .tiers(Tiers::new(pressure.signal()).tier("reviews", Threshold::new(300.0, 150.0)))
        .with_metrics()
        .manual_evaluation()
        .build()
        .unwrap();
    let reviews = switches.switch("reviews").unwrap();
    metrics::with_local_recorder(&recorder, || {
        pressure.set(400.0);
        switches.evaluate(Instant::now());
        reviews.force_on();
        reviews.force_off();
        reviews.force_off(); // no flip
    });
    let mut seen: Vec<(String, Vec<String>, DebugValue)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let labels = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            (key.key().name().to_string(), labels, value)
        })
        .collect();
    seen.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let labels = |extra: &[&str]| {
        let mut l = vec!["switches=shop".to_string(), "switch=reviews".to_string()];
        l.extend(extra.iter().map(|s| s.to_string()));
        l
    };
    assert_eq!(
        seen,
        [
            (
                "bulwark_degrade_flips_total".to_string(),
                labels(&["cause=automatic", "direction=degrade"]),
                DebugValue::Counter(1)
            ),
            (
                "bulwark_degrade_flips_total".to_string(),
                labels(&["cause=manual", "direction=degrade"]),
                DebugValue::Counter(1)
            ),
            (
                "bulwark_degrade_flips_total".to_string(),
                labels(&["cause=manual", "direction=restore"]),
                DebugValue::Counter(1)
            ),
            (
                "bulwark_degrade_level".to_string(),
                labels(&[]),
                DebugValue::Gauge(1.0.into())
            ),
        ]
    );
}
