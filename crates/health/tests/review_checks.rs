//! Review of the background checks: a check that panics, and what a timed-out check shows.

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

fn component(health: &Health) -> Report {
    health.reports()[0].2.clone()
}

/// A panic in a check (an `unwrap` on a failed connection) used to end the background task
/// and keep the last report, `Up`, forever.
#[tokio::test(start_paused = true)]
async fn a_check_that_panics_is_down_and_the_later_runs_still_happen() {
    let runs = Arc::new(AtomicU64::new(0));
    let counted = runs.clone();
    // Run 1 panics while polled, run 2 panics before it is a future, the others answer.
    let check = move || {
        let run = counted.fetch_add(1, Relaxed);
        assert_ne!(run, 2, "connection refused");
        async move {
            assert_ne!(run, 1, "connection refused");
            Report::new(Status::Up, format!("run {run}"))
        }
    };
    let health = Health::new();
    let every = Duration::from_secs(10);
    health
        .add_check("downstream", true, every, Duration::from_secs(2), check)
        .unwrap();

    // Half-way between runs from here on.
    tokio::time::sleep(every / 2).await;
    assert_eq!(component(&health), Report::new(Status::Up, "run 0"));
    tokio::time::sleep(every).await;
    assert_eq!(runs.load(Relaxed), 2);
    assert_eq!(
        component(&health),
        Report::new(Status::Down, "check panicked")
    );
    assert_eq!(get(&health, "/health/ready").await.0, 503);
    tokio::time::sleep(every).await;
    assert_eq!(runs.load(Relaxed), 3);
    assert_eq!(
        component(&health),
        Report::new(Status::Down, "check panicked")
    );
    tokio::time::sleep(every).await;
    assert_eq!(runs.load(Relaxed), 4);
    assert_eq!(component(&health), Report::new(Status::Up, "run 3"));
    assert_eq!(get(&health, "/health/ready").await.0, 200);
}

/// Dropped with its run: what a hung check holds (a connection, a permit) is released at
/// the timeout, and the JSON view says why the component is down.
#[tokio::test(start_paused = true)]
async fn a_timed_out_check_releases_what_it_held_and_the_json_says_why() {
    let held = Arc::new(());
    let holder = held.clone();
    let check = move || {
        let connection = holder.clone();
        async move {
            let _connection = connection;
            std::future::pending::<Report>().await
        }
    };
    let health = Health::new();
    let timeout = Duration::from_millis(1_500);
    health
        .add_check("db", true, Duration::from_secs(10), timeout, check)
        .unwrap();
    tokio::task::yield_now().await;
    assert_eq!(Arc::strong_count(&held), 3, "the check and its run hold it");
    tokio::time::sleep(timeout - Duration::from_millis(1)).await;
    assert_eq!(Arc::strong_count(&held), 3, "not timed out yet");
    tokio::time::sleep(Duration::from_millis(1)).await;
    tokio::task::yield_now().await;
    assert_eq!(
        Arc::strong_count(&held),
        2,
        "the run is dropped at its timeout"
    );
    let (status, json) = get(&health, "/health").await;
    assert_eq!(status, 503);
    assert_eq!(
        json,
        r#"{"status":"not_ready","draining":false,"components":[{"name":"db","required":true,"status":"down","detail":"check timed out after 1.5s"}]}"#
    );
}

/// A probe that panics is down with a reason; the other components and the health request
/// itself are unaffected.
#[test]
fn a_probe_that_panics_is_down_and_the_others_still_report() {
    let health = tower_bulwark_health::Health::new();
    health.add_probe("broken", true, || panic!("probe bug"));
    health.add_probe("fine", false, || {
        tower_bulwark_health::Report::new(tower_bulwark_health::Status::Up, "ok")
    });
    let reports = health.reports();
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0].2.status, tower_bulwark_health::Status::Down);
    assert_eq!(reports[0].2.detail, "probe panicked");
    assert_eq!(reports[1].2.status, tower_bulwark_health::Status::Up);
    assert!(!health.is_ready(), "a required component is down");
}
