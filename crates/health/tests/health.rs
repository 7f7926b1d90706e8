//! The health registry and endpoints.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tower::ServiceExt;
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
    let every = Duration::from_secs(10);
    let timeout = Duration::from_secs(2);
    let check = move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Relaxed);
            Report::new(Status::Up, "200 OK")
        }
    };
    health
        .add_check("downstream", true, every, timeout, check)
        .unwrap();
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
    let check = || async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Report::new(Status::Up, "")
    };
    let every = Duration::from_secs(100);
    health
        .add_check("slow", true, every, Duration::from_secs(90), check)
        .unwrap();
    let (status, json) = get(&health, "/health").await;
    assert_eq!(status, 503);
    assert!(json.contains(r#""detail":"not checked yet""#), "{json}");
}

#[tokio::test(start_paused = true)]
async fn a_hung_check_is_down_with_a_reason_once_its_timeout_passes() {
    let runs = Arc::new(AtomicU64::new(0));
    let counted = runs.clone();
    // The first run answers, the second hangs forever, the later ones answer again.
    let check = move || {
        let run = counted.fetch_add(1, Relaxed);
        async move {
            if run == 1 {
                std::future::pending::<()>().await;
            }
            Report::new(Status::Up, format!("run {run}"))
        }
    };
    let health = Health::new();
    let (every, timeout) = (Duration::from_secs(10), Duration::from_secs(2));
    health
        .add_check("downstream", true, every, timeout, check)
        .unwrap();
    let component = |health: &Health| health.reports()[0].2.clone();

    tokio::task::yield_now().await;
    assert_eq!(component(&health), Report::new(Status::Up, "run 0"));
    tokio::time::sleep(Duration::from_millis(11_999)).await;
    assert_eq!(runs.load(Relaxed), 2);
    assert_eq!(
        component(&health),
        Report::new(Status::Up, "run 0"),
        "the hung run still has time"
    );
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(
        component(&health),
        Report::new(Status::Down, "check timed out after 2s")
    );
    assert_eq!(get(&health, "/health/ready").await.0, 503);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(component(&health), Report::new(Status::Up, "run 2"));
    assert_eq!(get(&health, "/health/ready").await.0, 200);
}

#[tokio::test(start_paused = true)]
async fn a_slow_check_delays_the_next_ones_instead_of_bursting() {
    let start = tokio::time::Instant::now();
    let started = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = started.clone();
    let check = move || {
        let record = record.clone();
        async move {
            let at = start.elapsed().as_secs();
            let first = record.lock().unwrap().is_empty();
            record.lock().unwrap().push(at);
            if first {
                tokio::time::sleep(Duration::from_secs(35)).await;
            }
            Report::new(Status::Up, "")
        }
    };
    let health = Health::new();
    let (every, timeout) = (Duration::from_secs(10), Duration::from_secs(60));
    health
        .add_check("slow", true, every, timeout, check)
        .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(*started.lock().unwrap(), [0, 35, 45, 55]);
}

#[tokio::test(start_paused = true)]
async fn enormous_intervals_and_timeouts_run_once_and_never_panic() {
    let health = Health::new();
    let check = || async { Report::new(Status::Up, "once") };
    health
        .add_check("rare", true, Duration::MAX, Duration::MAX, check)
        .unwrap();
    tokio::task::yield_now().await;
    assert_eq!(health.reports()[0].2, Report::new(Status::Up, "once"));
    tokio::time::sleep(Duration::from_secs(3_600)).await;
    assert_eq!(health.reports()[0].2, Report::new(Status::Up, "once"));
}

#[tokio::test(start_paused = true)]
async fn bad_check_settings_name_their_field() {
    let health = Health::new();
    let check = || async { Report::new(Status::Up, "") };
    let second = Duration::from_secs(1);
    let field = |result: Result<(), tower_bulwark_core::ConfigError>| result.unwrap_err().field();
    assert_eq!(
        field(health.add_check("a", true, Duration::ZERO, second, check)),
        "interval"
    );
    assert_eq!(
        field(health.add_check("b", true, second, Duration::ZERO, check)),
        "timeout"
    );
    assert!(health.reports().is_empty(), "nothing was added");
}

#[test]
fn a_check_outside_a_runtime_is_a_config_error_not_a_panic() {
    let health = Health::new();
    let second = Duration::from_secs(1);
    let result = health.add_check("a", true, second, second, || async {
        Report::new(Status::Up, "")
    });
    assert_eq!(result.unwrap_err().field(), "runtime");
    assert!(health.reports().is_empty(), "nothing was added");
}

#[cfg(feature = "breaker")]
#[tokio::test(start_paused = true)]
async fn readiness_follows_a_real_breaker() {
    use tower::Layer;
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
