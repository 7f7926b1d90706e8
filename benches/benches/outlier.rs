//! Outlier detection's per-call cost on a healthy endpoint, beside tower-resilience's
//! outlier detection (the direct peer) and tower's `ConcurrencyLimit` (the bar), alone and
//! as the five endpoints of a p2c balancer.
//!
//! `cargo bench -p tower-bulwark-benches --bench outlier` (add `-- --quick` for a short run).
//! Read the results as ratios to `noop` / `p2c_bare` and to the peers in the same group.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tower::balance::p2c::Balance;
use tower::discover::ServiceList;
use tower::limit::ConcurrencyLimit;
use tower::load::Constant;
use tower::Layer;
use tower_bulwark::outlier::OutlierDetector;
use tower_bulwark::testing::Noop;
use tower_bulwark_benches::bench_ready_call;
use tower_resilience::outlier::{OutlierDetectionLayer, OutlierDetector as PeerDetector};

const KEYS: [&str; 5] = ["e0", "e1", "e2", "e3", "e4"];

fn detector() -> OutlierDetector {
    OutlierDetector::builder()
        .name("bench")
        // The interval rules' pass is not part of a call's cost; an hour keeps it out.
        .interval(Duration::from_secs(3600))
        .build()
        .expect("outlier config")
}

fn peer_detector() -> PeerDetector {
    let detector = PeerDetector::new().max_ejection_percent(10);
    for key in KEYS {
        detector.register(key, 5);
    }
    detector
}

fn peer_layer(detector: &PeerDetector, key: &str) -> OutlierDetectionLayer {
    OutlierDetectionLayer::builder()
        .detector(detector.clone())
        .instance_name(key)
        .build()
        .expect("peer config")
}

fn one_endpoint(c: &mut Criterion) {
    let mut group = c.benchmark_group("outlier_ready_call");
    bench_ready_call(&mut group, "noop", Noop, || 7u64);
    bench_ready_call(
        &mut group,
        "tower_concurrency_limit",
        ConcurrencyLimit::new(Noop, 1024),
        || 7u64,
    );
    let ours = detector();
    let _peers: Vec<_> = KEYS[1..].iter().map(|key| ours.layer(*key)).collect();
    bench_ready_call(
        &mut group,
        "bulwark_outlier",
        ours.layer("e0").layer(Noop),
        || 7u64,
    );
    let theirs = peer_detector();
    bench_ready_call(
        &mut group,
        "resilience_outlier",
        peer_layer(&theirs, "e0").layer(Noop),
        || 7u64,
    );
    group.finish();
}

fn p2c_of_five(c: &mut Criterion) {
    let mut group = c.benchmark_group("outlier_p2c_of_five");
    let bare: Vec<_> = KEYS.iter().map(|_| Constant::new(Noop, 1u32)).collect();
    bench_ready_call(
        &mut group,
        "p2c_bare",
        Balance::<_, u64>::new(ServiceList::new::<u64>(bare)),
        || 7u64,
    );
    let ours = detector();
    let wrapped: Vec<_> = KEYS
        .iter()
        .map(|key| ours.layer(*key).layer(Constant::new(Noop, 1u32)))
        .collect();
    bench_ready_call(
        &mut group,
        "p2c_bulwark_outlier",
        Balance::<_, u64>::new(ServiceList::new::<u64>(wrapped)),
        || 7u64,
    );
    // tower-resilience's service does not pass `Load` through: the constant load goes
    // outside it.
    let theirs = peer_detector();
    let wrapped: Vec<_> = KEYS
        .iter()
        .map(|key| Constant::new(peer_layer(&theirs, key).layer(Noop), 1u32))
        .collect();
    bench_ready_call(
        &mut group,
        "p2c_resilience_outlier",
        Balance::<_, u64>::new(ServiceList::new::<u64>(wrapped)),
        || 7u64,
    );
    group.finish();
}

criterion_group!(benches, one_endpoint, p2c_of_five);
criterion_main!(benches);
