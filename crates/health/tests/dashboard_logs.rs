//! Operator actions are logged at `WARN`, and a panicking predicate refuses. In a test
//! binary of its own: a subscriber set for one thread (`with_default`) can miss the events
//! of callsites another test's thread registers at the same moment.
#![cfg(all(feature = "dashboard", feature = "breaker"))]

use std::sync::{Arc, Mutex};

use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{Method, StatusCode};
use serde_json::Value;
use tower::Service;
use tower_bulwark_breaker::{CircuitBreakerLayer, State};
use tower_bulwark_health::{Dashboard, Health, HealthService};

/// A refusal's status, and its problem+json detail.
fn problem(response: &http::Response<String>, status: u16) -> String {
    assert_eq!(response.status().as_u16(), status, "{}", response.body());
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
    let body: Value = serde_json::from_str(response.body()).unwrap();
    body["detail"].as_str().unwrap().to_string()
}

/// Captures what `tracing` writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Calls the service in place: its future is ready at once.
fn call(
    service: &mut HealthService,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
) -> http::Response<String> {
    let mut request = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    service
        .call(request.body(()).unwrap())
        .into_inner()
        .unwrap()
}

#[tokio::test]
async fn every_action_is_logged_at_warn_and_a_panicking_predicate_refuses() {
    let health = Health::new();
    let breaker = CircuitBreakerLayer::builder()
        .name("payments")
        .build()
        .unwrap()
        .handle();
    health.add_breaker("payments", true, breaker.clone());
    let dashboard = Dashboard::builder(&health)
        .actions(|request: &Parts| {
            if request.headers.contains_key("x-panic") {
                panic!("a predicate bug");
            }
            true
        })
        .build()
        .unwrap();
    let mut service = health.service().dashboard(dashboard);
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let action = ("x-bulwark-action", "1");
    let (done, refused, panicked) = tracing::subscriber::with_default(subscriber, || {
        let uri = "/health/ui/action?component=payments&action=disable";
        (
            call(&mut service, Method::POST, uri, &[action]),
            call(
                &mut service,
                Method::POST,
                "/health/ui/action?component=ghost&action=disable",
                &[action],
            ),
            call(&mut service, Method::POST, uri, &[action, ("x-panic", "1")]),
        )
    });
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        problem(&panicked, 403),
        "not authorized to take operator actions"
    );
    assert_eq!(breaker.state(), State::Disabled);
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("dashboard operator action"))
        .collect();
    assert_eq!(lines.len(), 3, "{logs}");
    assert!(lines.iter().all(|l| l.contains("WARN")), "{logs}");
    assert!(
        lines[0].contains("component=payments")
            && lines[0].contains("action=\"disable\"")
            && lines[0].contains("result=\"done\""),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("result=\"refused\"") && lines[1].contains("status=404"),
        "{}",
        lines[1]
    );
    assert!(
        !lines[1].contains("ghost"),
        "the request's input is not logged"
    );
    assert!(lines[2].contains("status=403"), "{}", lines[2]);

    // The state document still answers when the predicate panics on its request.
    let state = call(
        &mut service,
        Method::GET,
        "/health/ui/state",
        &[("x-panic", "1")],
    );
    assert_eq!(state.status(), StatusCode::OK);
    assert!(state
        .body()
        .contains(r#""actions_enabled":true,"actions":false"#));
    let state = call(&mut service, Method::GET, "/health/ui/state", &[]);
    assert!(state
        .body()
        .contains(r#""actions_enabled":true,"actions":true"#));
}
