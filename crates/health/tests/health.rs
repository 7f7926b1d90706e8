//! The health registry and endpoints.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tower::{Layer, ServiceExt};
use tower_bulwark_health::{Health, Report, Status};

async fn get(health: &Health, path: &str) -> (u16, String) {
    let request = http::Request::get(path).body(()).unwrap();
    let response = health.service().oneshot(request).await.unwrap();
    (response.status().as_u16(), response.into_body())
}

#[tokio::test(start_paused = true)]
async fn liveness_never_depends_on_dependencies_and_readiness_on_required_ones() {
    let health = Health::new();
    health.add_probe("database", true, || {
        Report::new(Status::Down, "connection refused")
    });
    assert_eq!(get(&health, "/health/live").await, (200, "live".into()));
    assert_eq!(get(&health, "/health/ready").await.0, 503);
    let (status, json) = get(&health, "/health").await;
    assert_eq!(status, 503);
    assert_eq!(
        json,
        r#"{"status":"not_ready","draining":false,"components":[{"name":"database","required":true,"status":"down","detail":"connection refused"}]}"#
    );

    let optional = Health::new();
    optional.add_probe("cache", false, || Report::new(Status::Down, "gone"));
    optional.add_probe("queue", true, || Report::new(Status::Degraded, "slow"));
    assert_eq!(get(&optional, "/health/ready").await.0, 200);
    assert_eq!(get(&optional, "/health/").await.0, 200);
}

#[tokio::test(start_paused = true)]
async fn checks_are_cached_not_run_per_request() {
    let runs = Arc::new(AtomicU64::new(0));
    let health = Health::new();
    let counted = runs.clone();
    health.add_check("downstream", true, Duration::from_secs(10), move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Relaxed);
            Report::new(Status::Up, "200 OK")
        }
    });
    tokio::task::yield_now().await;
    for _ in 0..100 {
        assert_eq!(get(&health, "/health/ready").await.0, 200);
    }
    assert_eq!(runs.load(Relaxed), 1, "100 requests, one check");
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(runs.load(Relaxed), 3, "one per interval");
}

#[tokio::test(start_paused = true)]
async fn a_check_not_run_yet_counts_as_down() {
    let health = Health::new();
    health.add_check("slow", true, Duration::from_secs(1), || async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Report::new(Status::Up, "")
    });
    let (status, json) = get(&health, "/health").await;
    assert_eq!(status, 503);
    assert!(json.contains(r#""detail":"not checked yet""#), "{json}");
}

#[cfg(feature = "breaker")]
#[tokio::test(start_paused = true)]
async fn readiness_follows_a_real_breaker() {
    use tower_bulwark_breaker::CircuitBreakerLayer;
    use tower_bulwark_core::testing::controlled;

    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let health = Health::new();
    health.add_breaker("payments", true, breaker.handle());
    assert_eq!(get(&health, "/health/ready").await.0, 200);

    let (inner, control) = controlled::<u32>();
    control.fail();
    let service = breaker.layer(inner);
    assert!(service.oneshot(1).await.is_err());
    assert_eq!(
        get(&health, "/health/ready").await.0,
        503,
        "open: not ready"
    );
    let (_, json) = get(&health, "/health").await;
    assert!(
        json.contains(r#""status":"down","detail":"circuit open""#),
        "{json}"
    );

    breaker.handle().force_closed();
    assert_eq!(get(&health, "/health/ready").await.0, 200);
}
