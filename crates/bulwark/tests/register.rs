//! The presets register their parts with a health registry: the components, their kinds
//! and names in `Health::reports` and in the dashboard's state document, and the retry
//! budget registered being the one the preset's retries draw from.
#![cfg(all(
    feature = "dashboard",
    feature = "serde",
    feature = "http",
    feature = "breaker",
    feature = "bulkhead",
    feature = "retry",
    feature = "deadline",
    feature = "shed"
))]

use std::time::Duration;

use serde_json::Value;
use tower::{service_fn, ServiceExt};
use tower_bulwark::health::{Dashboard, Health, Status};
use tower_bulwark::presets::{ClientPreset, ServerPreset};
use tower_bulwark::{BoxError, StackConfig};

/// `(name, required, status, detail)` of every component.
fn reports(health: &Health) -> Vec<(String, bool, Status, String)> {
    health
        .reports()
        .into_iter()
        .map(|(name, required, report)| (name, required, report.status, report.detail))
        .collect()
}

fn state(dashboard: &Dashboard) -> Value {
    serde_json::from_str(&dashboard.state_json()).expect("the state document is JSON")
}

/// `(name, kind)` of every component of the state document.
fn kinds(state: &Value) -> Vec<(String, String)> {
    state["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("a name").to_string(),
                c["kind"].as_str().expect("a kind").to_string(),
            )
        })
        .collect()
}

fn component<'a>(state: &'a Value, name: &str) -> &'a Value {
    state["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no component {name} in {state}"))
}

#[tokio::test(start_paused = true)]
async fn a_client_and_a_server_preset_register_their_parts() {
    let health = Health::new();
    let client = ClientPreset::http("payments").unwrap();
    let server = ServerPreset::http().unwrap();
    client.register(&health);
    server.register(&health);

    let names: Vec<(String, bool)> = reports(&health)
        .into_iter()
        .map(|(name, required, ..)| (name, required))
        .collect();
    assert_eq!(
        names,
        [
            ("payments breaker".to_string(), false),
            ("payments bulkhead".to_string(), false),
            ("payments retry budget".to_string(), false),
            ("server shed".to_string(), false),
        ]
    );
    assert!(reports(&health)
        .iter()
        .all(|(.., status, _)| *status == Status::Up));
    // The preset's budget: 10 retries a second over 10 s.
    assert_eq!(reports(&health)[2].3, "balance 100.0, 0 refused");
    assert!(health.is_ready());

    let dashboard = Dashboard::builder(&health).build().unwrap();
    let state = state(&dashboard);
    let expected: Vec<(String, String)> = [
        ("payments breaker", "breaker"),
        ("payments bulkhead", "bulkhead"),
        ("payments retry budget", "budget"),
        ("server shed", "shed"),
    ]
    .iter()
    .map(|(n, k)| (n.to_string(), k.to_string()))
    .collect();
    assert_eq!(kinds(&state), expected);
    assert_eq!(
        component(&state, "payments breaker")["breaker"]["state"],
        "closed"
    );
    assert_eq!(
        component(&state, "payments bulkhead")["bulkhead"]["max_concurrent"],
        100
    );
    assert_eq!(
        component(&state, "payments retry budget")["budget"]["balance"],
        100.0
    );
    assert_eq!(component(&state, "server shed")["shed"]["limit"], 20);
    assert_eq!(state["drain"]["draining"], false);
    assert_eq!(state["status"], "ready");
}

#[tokio::test(start_paused = true)]
async fn a_breaker_forced_open_shows_in_the_reports_and_on_the_dashboard() {
    let health = Health::new();
    let client = ClientPreset::http("payments").unwrap();
    client.register(&health);
    let dashboard = Dashboard::builder(&health)
        .interval(Duration::from_secs(1))
        .build()
        .unwrap();

    client.breaker.handle().force_open();
    let (name, required, status, detail) = reports(&health).remove(0);
    assert_eq!(
        (name.as_str(), required, status, detail.as_str()),
        (
            "payments breaker",
            false,
            Status::Down,
            "circuit forced_open"
        )
    );
    assert!(
        health.is_ready(),
        "a dependency's open breaker leaves the process ready"
    );

    // The next sample records the transition.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let state = state(&dashboard);
    let breaker = component(&state, "payments breaker");
    assert_eq!(breaker["status"], "down");
    assert_eq!(breaker["required"], false);
    assert_eq!(breaker["breaker"]["state"], "forced_open");
    assert_eq!(state["status"], "ready");
    let events = state["events"].as_array().expect("events");
    assert!(
        events.iter().any(|e| e["component"] == "payments breaker"
            && e["kind"] == "breaker"
            && e["from"] == "closed"
            && e["to"] == "forced_open"),
        "{events:?}"
    );

    client.breaker.handle().resume();
    assert_eq!(reports(&health)[0].2, Status::Up);
}

#[tokio::test(start_paused = true)]
async fn the_server_presets_drain_is_the_one_readiness_follows() {
    let health = Health::new();
    let server = ServerPreset::grpc().unwrap();
    server.register(&health);
    let dashboard = Dashboard::builder(&health).build().unwrap();
    assert!(health.is_ready());
    server.drain.handle().drain();
    assert!(!health.is_ready());
    let state = state(&dashboard);
    assert_eq!(state["drain"]["draining"], true);
    assert_eq!(state["status"], "not_ready");
}

#[tokio::test(start_paused = true)]
async fn grpc_client_presets_register_like_http_ones() {
    let health = Health::new();
    ClientPreset::grpc("users").unwrap().register(&health);
    let names: Vec<String> = reports(&health).into_iter().map(|r| r.0).collect();
    assert_eq!(
        names,
        ["users breaker", "users bulkhead", "users retry budget"]
    );
}

/// A client preset's retries over a dependency that always answers 503: each call tries
/// three times, each retry withdrawn from the budget.
async fn fail_once_retried(
    preset: &ClientPreset<tower_bulwark::retry::HttpRetry, tower_bulwark::HttpClassifier>,
) {
    let unavailable = service_fn(|_: http::Request<String>| async {
        let mut response = http::Response::new(String::new());
        *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        Ok::<_, BoxError>(response)
    });
    let response = preset
        .layer()
        .service(unavailable)
        .oneshot(http::Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(start_paused = true)]
async fn the_registered_budget_is_the_one_the_retries_draw_from() {
    let health = Health::new();
    let preset = ClientPreset::http("payments").unwrap();
    preset.register(&health);
    fail_once_retried(&preset).await;
    // 100 reserved, 0.2 deposited by the call, 2 retries taken.
    assert_eq!(reports(&health)[2].3, "balance 98.2, 0 refused");
    let (allowed, refused) = preset.budget().counts();
    assert_eq!((allowed, refused), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn presets_from_a_stack_config_register_their_configured_budget() {
    let config: StackConfig = serde_json::from_str(
        r#"{"clients": {"inventory": {"retry": {"budget_ratio": 0, "budget_min_per_sec": 0}}}}"#,
    )
    .unwrap();
    let health = Health::new();
    let inventory = config.http_client("inventory").unwrap();
    inventory.register(&health);
    config.http_server().unwrap().register(&health);
    let names: Vec<String> = reports(&health).into_iter().map(|r| r.0).collect();
    assert_eq!(
        names,
        [
            "inventory breaker",
            "inventory bulkhead",
            "inventory retry budget",
            "server shed"
        ]
    );
    // The configured budget holds nothing: the first retry is refused, and the registered
    // budget is the one that refused it.
    assert_eq!(reports(&health)[2].3, "balance 0.0, 0 refused");
    fail_once_retried(&inventory).await;
    let (_, _, status, detail) = reports(&health).remove(2);
    assert_eq!(
        (status, detail.as_str()),
        (Status::Degraded, "balance 0.0, 1 refused")
    );

    // A client the config does not name: the preset's own budget.
    let other = config.http_client("other").unwrap();
    assert_eq!(other.budget().balance(), 100.0);
}
