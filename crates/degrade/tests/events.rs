//! Events and metrics for every flip.

mod support;

use std::time::Duration;

use support::{secs, Flips, Pressure};
use tokio::time::sleep;
use tower_bulwark_core::Event;
use tower_bulwark_degrade::{Cause, DegradeEvent, Switches, Threshold, Tiers};
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
    use tokio::time::Instant;

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

/// Signals are guarded (a panic reads as NaN) so one bug cannot stop the evaluation; so
/// are listeners: a panicking one is logged, the others still hear every flip, the
/// background evaluation goes on and an operator's override returns.
#[tokio::test(start_paused = true)]
async fn a_panicking_listener_does_not_stop_the_evaluation() {
    let (pressure, flips) = (Pressure::default(), Flips::new());
    let switches = Switches::builder()
        .tiers(Tiers::new(pressure.signal()).tier("reviews", Threshold::new(300.0, 150.0)))
        .interval(secs(1))
        .min_dwell(Duration::ZERO)
        .on_event(|_: &DegradeEvent| panic!("a listener with a bug"))
        .on_event(flips.listener())
        .build()
        .unwrap();
    let reviews = switches.switch("reviews").unwrap();
    tokio::task::yield_now().await; // The evaluation at 0 s.
    pressure.set(400.0);
    sleep(Duration::from_millis(1_001)).await;
    assert!(!reviews.is_on(), "off at 1 s (its listener panicked)");
    pressure.set(100.0);
    sleep(secs(5)).await;
    assert!(
        reviews.is_on(),
        "the pressure fell 5 s ago: the tiers must still be evaluated"
    );
    reviews.force_off();
    assert!(!reviews.is_on());
    let seen: Vec<(u8, Cause)> = flips.all().into_iter().map(|f| (f.to, f.cause)).collect();
    assert_eq!(
        seen,
        [
            (1, Cause::Automatic),
            (0, Cause::Automatic),
            (1, Cause::Manual)
        ]
    );
}

#[cfg(feature = "metrics")]
#[test]
fn every_switch_has_its_level_gauge_from_the_start() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let build = |metrics: bool| {
        let builder = Switches::builder()
            .name("shop")
            .switch("checkout")
            .tiers(
                Tiers::new(Pressure::default().signal()).tier("reviews", Threshold::new(3.0, 1.0)),
            )
            .manual_evaluation();
        let builder = if metrics {
            builder.with_metrics()
        } else {
            builder
        };
        metrics::with_local_recorder(&recorder, || builder.build().unwrap())
    };
    let _quiet = build(false);
    assert!(
        snapshotter.snapshot().into_vec().is_empty(),
        "no metrics asked for"
    );
    let _switches = build(true);
    let mut seen: Vec<(String, String, DebugValue)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let labels: Vec<String> = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            (key.key().name().to_string(), labels.join(","), value)
        })
        .collect();
    seen.sort_by(|a, b| a.1.cmp(&b.1));
    let gauge = |switch: &str| {
        (
            "bulwark_degrade_level".to_string(),
            format!("switches=shop,switch={switch}"),
            DebugValue::Gauge(0.0.into()),
        )
    };
    assert_eq!(seen, [gauge("checkout"), gauge("reviews")]);
}
