//! The happy path allocates nothing: reading a switch, and a call through `RecordLayer`.

use std::time::Duration;

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
            switches.evaluate(tokio::time::Instant::now());
        }
    });
    assert_eq!(counted.count_total, 0);
}
