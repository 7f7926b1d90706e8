//! The outlier layer allocates nothing per call to an endpoint in rotation: a relaxed atomic
//! load in `poll_ready`, atomic adds and a clock read when the call ends. (The interval
//! rules' evaluation allocates; its interval is an hour here, so the count is the call's.)

use std::time::Duration;

use http::Request;
use tower::Layer;
use tower_bulwark::outlier::OutlierDetector;
use tower_bulwark::testing::Noop;

use super::{allocations, http_noop};

fn detector() -> OutlierDetector {
    OutlierDetector::builder()
        .name("alloc")
        .interval(Duration::from_secs(3600))
        .with_metrics()
        .on_event(|_: &tower_bulwark::outlier::OutlierEvent| {})
        .build()
        .unwrap()
}

#[test]
fn a_call_to_an_endpoint_in_rotation_allocates_nothing() {
    let detector = detector();
    let _peer = detector.layer("peer");
    let endpoint = detector.layer("e0").layer(Noop);
    assert_eq!(allocations(endpoint, || 7u64), 0);
}

/// With the slow-endpoint rule on, a call also reads the clock when it starts and adds its
/// latency to two atomics when it ends: still nothing allocated.
#[test]
fn a_call_timed_for_the_slow_endpoint_rule_allocates_nothing() {
    let detector = OutlierDetector::builder()
        .name("alloc")
        .interval(Duration::from_secs(3600))
        .slow_endpoint(tower_bulwark::outlier::SlowEndpoint::new())
        .with_metrics()
        .on_event(|_: &tower_bulwark::outlier::OutlierEvent| {})
        .build()
        .unwrap();
    let _peer = detector.layer("peer");
    let endpoint = detector.layer("e0").layer(Noop);
    assert_eq!(allocations(endpoint, || 7u64), 0);
}

#[test]
fn an_http_endpoint_with_gateway_readings_allocates_nothing() {
    let detector = detector();
    let endpoint = detector.layer("e0").http().layer(http_noop());
    assert_eq!(allocations(endpoint, || Request::new(())), 0);
    // The endpoint left with its service.
    assert!(detector.snapshot().endpoints.is_empty());
}
