//! The happy path allocates nothing: reading a switch, and a call through `RecordLayer`.

mod support;

use std::time::Duration;

use support::{secs, Pressure};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_bulwark_core::testing::Noop;
use tower_bulwark_degrade::{Recorder, Switches, Threshold, Tiers};

#[test]
fn reading_a_switch_allocates_nothing() {
    let switches = Switches::builder()
        .switch("reviews")
        .manual_evaluation()
        .build()
        .unwrap();
    let reviews = switches.switch("reviews").unwrap();
    reviews.force_off();
    let counted = allocation_counter::measure(|| {
        for _ in 0..1_000 {
            std::hint::black_box(reviews.is_on());
            std::hint::black_box(switches.level("reviews"));
        }
    });
    assert_eq!(counted.count_total, 0);
}

#[test]
fn a_recorded_call_allocates_nothing() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let recorder = runtime.block_on(async {
        Recorder::builder()
            .window(Duration::from_secs(1))
            .build()
            .unwrap()
    });
    let mut service = recorder.layer().layer(Noop);
    let mut calls = |count: u32| {
        runtime.block_on(async {
            for i in 0..count {
                let response = ServiceExt::<u32>::ready(&mut service)
                    .await
                    .unwrap()
                    .call(i)
                    .await;
                std::hint::black_box(response.unwrap());
            }
        })
    };
    calls(100);
    // Slots are cleared for reuse as the window slides: still no allocation.
    let counted = allocation_counter::measure(|| calls(1_000));
    assert_eq!(counted.count_total, 0);
    assert!(recorder.quantile(0.5).is_some());
}

#[test]
fn an_evaluation_without_flips_allocates_nothing() {
    let recorder = Recorder::builder().build().unwrap();
    let switches = Switches::builder()
        .tiers(Tiers::new(recorder.latency(0.99).unwrap()).tier("a", Threshold::new(100.0, 50.0)))
        .tiers(Tiers::new(recorder.error_rate()).tier("b", Threshold::new(0.5, 0.1)))
        .manual_evaluation()
        .build()
        .unwrap();
    let counted = allocation_counter::measure(|| {
        for _ in 0..100 {
            switches.evaluate(Instant::now());
        }
    });
    assert_eq!(counted.count_total, 0);
}

/// A tier waiting out its dwell moves nothing: it writes no reason out either.
#[test]
fn an_evaluation_waiting_out_the_dwell_allocates_nothing() {
    let pressure = Pressure::default();
    let switches = Switches::builder()
        .tiers(Tiers::new(pressure.signal()).tier("reviews", Threshold::new(300.0, 150.0)))
        .min_dwell(secs(30))
        .manual_evaluation()
        .build()
        .unwrap();
    let reviews = switches.switch("reviews").unwrap();
    let start = Instant::now();
    pressure.set(400.0);
    switches.evaluate(start);
    assert!(!reviews.is_on());
    pressure.set(100.0); // Asks for it back on; the dwell holds it until 30 s.
    let counted = allocation_counter::measure(|| {
        for s in 1..30 {
            switches.evaluate(start + secs(s));
        }
    });
    assert!(!reviews.is_on(), "held by the dwell");
    assert_eq!(counted.count_total, 0);
    switches.evaluate(start + secs(30));
    assert!(reviews.is_on());
}

#[cfg(feature = "axum")]
#[test]
fn extracting_a_feature_allocates_nothing() {
    use axum::extract::FromRequestParts;
    use tower_bulwark_degrade::{Feature, SwitchName};

    struct Reviews;
    impl SwitchName for Reviews {
        const NAME: &'static str = "reviews";
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let switches = Switches::builder()
        .switch("checkout")
        .switch("reviews")
        .manual_evaluation()
        .build()
        .unwrap();
    switches.switch("reviews").unwrap().force_off();
    let (mut parts, ()) = http::Request::new(()).into_parts();
    let counted = allocation_counter::measure(|| {
        runtime.block_on(async {
            for _ in 0..1_000 {
                let reviews = Feature::<Reviews>::from_request_parts(&mut parts, &switches)
                    .await
                    .unwrap();
                assert!(!reviews.is_on());
            }
        })
    });
    assert_eq!(counted.count_total, 0);
}
