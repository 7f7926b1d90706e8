//! Signals from the suite's own components: breaker, bulkhead, shed, health.

mod support;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

#[cfg(any(feature = "bulkhead", feature = "shed"))]
use support::secs;
use tokio::time::Instant;
use tower_bulwark_degrade::{Signal, Switches, Threshold, Tiers};
use tower_bulwark_health::{Health, Report, Status};

fn one_switch(signal: Signal, threshold: Threshold) -> Switches {
    Switches::builder()
        .tiers(Tiers::new(signal).tier("feature", threshold))
        .min_dwell(Duration::ZERO)
        .manual_evaluation()
        .build()
        .unwrap()
}

fn reason(switches: &Switches) -> String {
    switches.statuses()[0].reason.to_string()
}

#[cfg(feature = "breaker")]
#[tokio::test(start_paused = true)]
async fn a_feature_is_off_while_its_breaker_is_open() {
    use tower_bulwark_breaker::CircuitBreakerLayer;
    let breaker = CircuitBreakerLayer::builder()
        .name("recommendations")
        .build()
        .unwrap();
    let handle = breaker.handle();
    let switches = one_switch(Signal::breaker(handle.clone()), Threshold::new(1.0, 0.0));
    switches.evaluate(Instant::now());
    assert_eq!(switches.level("feature"), Some(0));
    handle.force_open();
    switches.evaluate(Instant::now());
    assert_eq!(switches.level("feature"), Some(1));
    assert_eq!(reason(&switches), "breaker `recommendations` state 1 >= 1");
    handle.reset();
    switches.evaluate(Instant::now());
    assert_eq!(switches.level("feature"), Some(0));
    assert_eq!(reason(&switches), "breaker `recommendations` state 0 <= 0");
}

#[cfg(feature = "bulkhead")]
#[tokio::test(start_paused = true)]
async fn a_bulkheads_refusals_per_second_drive_a_switch() {
    use tower::{Layer, ServiceExt};
    use tower_bulwark_bulkhead::BulkheadLayer;
    use tower_bulwark_core::testing::controlled;

    let bulkhead = BulkheadLayer::builder()
        .name("db")
        .max_concurrent(1)
        .max_queue(0)
        .build()
        .unwrap();
    let handle = bulkhead.handle();
    let signal = Signal::bulkhead_refusals(handle.clone(), secs(10)).unwrap();
    assert_eq!(signal.label(), "bulkhead `db` refusals");
    let switches = one_switch(signal, Threshold::new(10.0, 2.0));
    let (inner, control) = controlled::<u32>();
    let service = bulkhead.layer(inner);
    control.hang();
    let start = Instant::now();
    switches.evaluate(start); // the first reading: nothing to compare with
    let _holding = tokio::spawn(service.clone().oneshot(0));
    tokio::task::yield_now().await;
    for i in 1..=20 {
        assert!(service.clone().oneshot(i).await.is_err());
    }
    assert_eq!(handle.snapshot().rejected_queue_full, 20);
    switches.evaluate(start + secs(1));
    assert_eq!(switches.level("feature"), Some(1));
    assert_eq!(reason(&switches), "bulkhead `db` refusals 20/s >= 10/s");
    // No more refusals: 20 over 5 s is 4/s, over 10 s 2/s (the restore threshold).
    switches.evaluate(start + secs(5));
    assert_eq!(switches.level("feature"), Some(1), "4/s is over 2/s");
    switches.evaluate(start + secs(10));
    assert_eq!(switches.level("feature"), Some(0));
    assert_eq!(reason(&switches), "bulkhead `db` refusals 2/s <= 2/s");
}

#[cfg(feature = "shed")]
#[tokio::test(start_paused = true)]
async fn a_shedding_layers_sheds_per_second_drive_a_switch() {
    use tower::{Layer, ServiceExt};
    use tower_bulwark_core::testing::controlled;
    use tower_bulwark_shed::{Fixed, ShedLayer};

    let shed = ShedLayer::builder()
        .fixed(Fixed::new(1).unwrap())
        .build()
        .unwrap();
    let signal = Signal::shed_refusals(shed.handle(), secs(5))
        .unwrap()
        .named("api sheds");
    let switches = one_switch(signal, Threshold::new(3.0, 1.0));
    let (inner, control) = controlled::<u32>();
    let service = shed.layer(inner);
    control.hang();
    let start = Instant::now();
    switches.evaluate(start);
    let _holding = tokio::spawn(service.clone().oneshot(0));
    tokio::task::yield_now().await;
    for i in 1..=10 {
        assert!(service.clone().oneshot(i).await.is_err());
    }
    switches.evaluate(start + secs(2));
    assert_eq!(switches.level("feature"), Some(1));
    assert_eq!(reason(&switches), "api sheds 5/s >= 3/s");
}

#[cfg(any(feature = "bulkhead", feature = "shed"))]
#[test]
fn a_refusal_window_must_be_longer_than_zero() {
    #[cfg(feature = "bulkhead")]
    {
        let handle = tower_bulwark_bulkhead::BulkheadLayer::builder()
            .build()
            .unwrap()
            .handle();
        let err = Signal::bulkhead_refusals(handle, Duration::ZERO).unwrap_err();
        assert_eq!(err.field(), "window");
    }
    #[cfg(feature = "shed")]
    {
        let handle = tower_bulwark_shed::ShedLayer::builder()
            .build()
            .unwrap()
            .handle();
        let err = Signal::shed_refusals(handle, Duration::ZERO).unwrap_err();
        assert_eq!(err.field(), "window");
    }
}

#[tokio::test(start_paused = true)]
async fn the_health_of_a_registered_check_drives_a_switch() {
    let health = Health::new();
    let up = Arc::new(AtomicBool::new(true));
    let reading = up.clone();
    health.add_probe("search-index", false, move || {
        if reading.load(Relaxed) {
            Report::new(Status::Up, "fresh")
        } else {
            Report::new(Status::Down, "stale")
        }
    });
    let signal = health.status_signal("search-index");
    assert_eq!(signal.label(), "health of `search-index`");
    let switches = one_switch(signal, Threshold::new(1.0, 0.0));
    switches.evaluate(Instant::now());
    assert_eq!(switches.level("feature"), Some(0));
    up.store(false, Relaxed);
    switches.evaluate(Instant::now());
    assert_eq!(switches.level("feature"), Some(1));
    assert_eq!(reason(&switches), "health of `search-index` 1 >= 1");
    up.store(true, Relaxed);
    switches.evaluate(Instant::now());
    assert_eq!(switches.level("feature"), Some(0));
}

#[tokio::test(start_paused = true)]
async fn a_check_nobody_registered_holds_its_tiers() {
    let health = Health::new();
    let up = Arc::new(AtomicBool::new(false));
    let switches = one_switch(health.status_signal("later"), Threshold::new(0.5, 0.0));
    switches.evaluate(Instant::now());
    assert_eq!(switches.level("feature"), Some(0), "NaN: no opinion");
    let reading = up.clone();
    health.add_probe("later", false, move || {
        let status = if reading.load(Relaxed) {
            Status::Up
        } else {
            Status::Degraded
        };
        Report::new(status, "")
    });
    switches.evaluate(Instant::now());
    assert_eq!(switches.level("feature"), Some(1), "degraded reads 0.5");
}
