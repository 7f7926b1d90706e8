//! The dashboard's state document and its sampler, in paused time.
#![cfg(all(
    feature = "dashboard",
    feature = "breaker",
    feature = "bulkhead",
    feature = "shed",
    feature = "retry",
    feature = "degrade"
))]

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::yield_now;
use tokio::time::advance;
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark_breaker::{CircuitBreakerLayer, KeyedCircuitBreakerLayer, OpenDuration};
use tower_bulwark_bulkhead::{Builder as BulkheadBuilder, BulkheadLayer};
use tower_bulwark_degrade::Switches;
use tower_bulwark_health::{Dashboard, DrainLayer, Health, Report, Status};
use tower_bulwark_retry::RatioBudget;
use tower_bulwark_shed::{Fixed, ShedLayer};

const SECOND: Duration = Duration::from_secs(1);

fn state(dashboard: &Dashboard) -> Value {
    serde_json::from_str(&dashboard.state_json()).expect("the state document is JSON")
}

/// Lets the clock run `by` and the sampler take the samples due.
async fn pass(by: Duration) {
    advance(by).await;
    for _ in 0..8 {
        yield_now().await;
    }
}

fn component<'a>(state: &'a Value, name: &str) -> &'a Value {
    state["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no component {name}"))
}

fn points(component: &Value, label: &str) -> Vec<f64> {
    component["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["label"] == label)
        .unwrap_or_else(|| panic!("no series {label}"))["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().expect("points are numbers"))
        .collect()
}

fn labels(component: &Value) -> Vec<&str> {
    component["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["label"].as_str().unwrap())
        .collect()
}

/// The names of an object's fields, sorted.
fn fields(object: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {object}"))
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names
}

/// A breaker that trips on one failure and stays open 30 s.
fn tripping_breaker(name: &'static str) -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder()
        .name(name)
        .consecutive_failures(1)
        .failure_rate(0.5)
        .minimum_calls(100)
        .open_duration(OpenDuration::Fixed(Duration::from_secs(30)))
        .build()
        .unwrap()
}

async fn fail_once(breaker: &CircuitBreakerLayer) {
    let service = breaker.layer(service_fn(|()| async {
        Err::<(), _>(std::io::Error::other("down"))
    }));
    let _ = service.oneshot(()).await;
}

async fn succeed_once(breaker: &CircuitBreakerLayer) {
    let service = breaker.layer(service_fn(|()| async { Ok::<_, std::io::Error>(()) }));
    let _ = service.oneshot(()).await;
}

#[tokio::test(start_paused = true)]
async fn every_kind_has_its_fields_and_types() {
    let health = Health::new();
    let breaker = CircuitBreakerLayer::builder()
        .name("payments")
        .no_consecutive_failures()
        .failure_rate(0.5)
        .minimum_calls(2)
        .open_duration(OpenDuration::Fixed(Duration::from_secs(30)))
        .build()
        .unwrap();
    health.add_breaker("payments", true, breaker.handle());
    let keyed = KeyedCircuitBreakerLayer::new(
        CircuitBreakerLayer::builder().consecutive_failures(1),
        |host: &String| host.clone(),
        100,
        Duration::from_secs(600),
    )
    .unwrap();
    health.add_keyed_breaker("upstreams", keyed.handle());
    let bulkhead = BulkheadLayer::builder()
        .max_concurrent(4)
        .max_queue(2)
        .build()
        .unwrap();
    health.add_bulkhead("db pool", bulkhead.handle());
    let shed = ShedLayer::builder()
        .fixed(Fixed::new(50).unwrap())
        .build()
        .unwrap();
    health.add_shed("server", shed.handle());
    let budget = Arc::new(RatioBudget::new(Duration::from_secs(10), 5, 0.2).unwrap());
    health.add_budget("retries", budget.clone());
    let switches = Switches::builder()
        .name("shop")
        .switch_levels("reviews", 3)
        .manual_evaluation()
        .build()
        .unwrap();
    health.add_switches(&switches);
    health.add_probe("config", false, || Report::new(Status::Up, "loaded"));
    let drain = DrainLayer::new();
    health.watch_drain(drain.handle());

    fail_once(&breaker).await;
    fail_once(&breaker).await;
    let hosts = keyed.layer(service_fn(|_: String| async {
        Err::<(), _>(std::io::Error::other("down"))
    }));
    let _ = hosts.oneshot("db-1".to_string()).await;

    let dashboard = Dashboard::builder(&health)
        .title("checkout")
        .build()
        .unwrap();
    pass(Duration::from_millis(1200)).await;
    let state = state(&dashboard);

    assert_eq!(
        fields(&state),
        [
            "actions",
            "actions_enabled",
            "components",
            "drain",
            "events",
            "interval_ms",
            "status",
            "title",
            "uptime_ms",
            "version"
        ]
    );
    assert_eq!(state["version"], 1);
    assert_eq!(state["title"], "checkout");
    assert_eq!(state["status"], "not_ready", "a required breaker is open");
    assert_eq!(state["interval_ms"], 1000);
    assert_eq!(state["uptime_ms"], 1200);
    assert_eq!(state["actions"], false);
    assert_eq!(state["actions_enabled"], false);
    assert_eq!(state["drain"], json!({"draining": false, "in_flight": 0}));
    let names: Vec<&str> = state["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "payments",
            "upstreams",
            "db pool",
            "server",
            "retries",
            "shop/reviews",
            "config"
        ],
        "registration order"
    );
    for c in state["components"].as_array().unwrap() {
        assert_eq!(c["actions"], json!([]), "actions are not enabled");
        assert!(c["required"].is_boolean() && c["detail"].is_string());
        assert!(["up", "degraded", "down"].contains(&c["status"].as_str().unwrap()));
        for series in c["series"].as_array().unwrap() {
            assert_eq!(points(c, series["label"].as_str().unwrap()).len(), 2);
        }
    }

    let payments = component(&state, "payments");
    assert_eq!(
        (
            &payments["kind"],
            &payments["required"],
            &payments["status"],
            &payments["detail"]
        ),
        (
            &json!("breaker"),
            &json!(true),
            &json!("down"),
            &json!("circuit open")
        )
    );
    assert_eq!(labels(payments), ["failure rate %"]);
    assert_eq!(points(payments, "failure rate %"), [100.0, 100.0]);
    let b = &payments["breaker"];
    assert_eq!(
        fields(b),
        [
            "calls",
            "consecutive_failures",
            "failure_rate",
            "failures",
            "next_probe_in_ms",
            "probes_in_flight",
            "rejected",
            "slow_call_rate",
            "slow_calls",
            "state",
            "time_in_state_ms",
            "trips",
            "windowed"
        ]
    );
    assert_eq!(b["state"], "open");
    assert_eq!(b["windowed"], true);
    assert_eq!((&b["calls"], &b["failures"]), (&json!(2), &json!(2)));
    assert_eq!(b["failure_rate"], 1.0);
    assert_eq!(b["slow_call_rate"], 0.0);
    assert_eq!(
        b["consecutive_failures"], 0,
        "not counted: no such condition"
    );
    assert_eq!(b["time_in_state_ms"], 1200);
    assert_eq!(b["next_probe_in_ms"], 28800);
    assert_eq!(
        (&b["probes_in_flight"], &b["rejected"], &b["trips"]),
        (&json!(0), &json!(0), &json!(1))
    );

    let upstreams = component(&state, "upstreams");
    assert_eq!(upstreams["kind"], "keyed_breaker");
    assert_eq!(
        (&upstreams["status"], &upstreams["detail"]),
        (&json!("degraded"), &json!("1 keys, 1 not closed"))
    );
    assert_eq!(labels(upstreams), ["keys not closed"]);
    let k = &upstreams["keyed_breaker"];
    assert_eq!(fields(k), ["keys", "not_closed", "shown"]);
    assert_eq!((&k["keys"], &k["not_closed"]), (&json!(1), &json!(1)));
    assert_eq!(k["shown"][0]["key"], "db-1");
    assert_eq!(k["shown"][0]["state"], "open");
    assert_eq!(
        k["shown"][0]["failure_rate"],
        Value::Null,
        "no rate condition: no calls to divide by"
    );
    assert_eq!(
        fields(&k["shown"][0]).len(),
        fields(b).len() + 1,
        "key + the breaker fields"
    );

    let pool = component(&state, "db pool");
    assert_eq!(pool["kind"], "bulkhead");
    assert_eq!(labels(pool), ["in flight", "refused/s"]);
    assert_eq!(
        pool["bulkhead"],
        json!({
            "in_flight": 0, "max_concurrent": 4, "queued": 0, "max_queue": 2, "available": 4,
            "peak_in_flight": 0,
            "rejected": {"queue_full": 0, "wait_timeout": 0, "deadline": 0},
            "mean_wait_ms": 0.0
        })
    );

    let server = component(&state, "server");
    assert_eq!(server["kind"], "shed");
    assert_eq!(labels(server), ["limit", "in flight", "shed/s"]);
    assert_eq!(points(server, "limit"), [50.0, 50.0]);
    let tiers = json!({"sheddable": 0, "sheddable_plus": 0, "critical": 0, "critical_plus": 0});
    assert_eq!(
        server["shed"],
        json!({"limit": 50, "in_flight": 0, "in_flight_by_tier": tiers, "shed_by_tier": tiers})
    );

    let retries = component(&state, "retries");
    assert_eq!(retries["kind"], "budget");
    assert_eq!(
        (&retries["status"], &retries["detail"]),
        (&json!("up"), &json!("balance 50.0, 0 refused"))
    );
    assert_eq!(labels(retries), ["balance", "refused/s"]);
    assert_eq!(
        retries["budget"],
        json!({"balance": 50.0, "allowed": 0, "refused": 0})
    );

    let reviews = component(&state, "shop/reviews");
    assert_eq!(reviews["kind"], "switch");
    assert_eq!(labels(reviews), ["level"]);
    assert_eq!(
        reviews["switch"],
        json!({
            "switches": "shop", "switch": "reviews", "level": 0, "max_level": 3, "state": "on",
            "mode": "automatic", "automatic_level": 0, "reason": "initial state",
            "changed_ago_ms": null
        })
    );

    let config = component(&state, "config");
    assert_eq!(config["kind"], "check");
    assert_eq!(labels(config), ["status"]);
    assert_eq!(
        fields(config),
        ["actions", "detail", "kind", "name", "required", "series", "status"],
        "no object for a check"
    );

    // The events: the transitions recorded before the dashboard was built.
    let events = state["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0],
        json!({"age_ms": 1200, "component": "payments", "kind": "breaker", "from": "closed",
               "to": "open", "reason": "failure rate 100.0% over 2 calls"})
    );
}

#[tokio::test(start_paused = true)]
async fn a_breaker_without_a_window_shows_its_failures_in_a_row() {
    let health = Health::new();
    // The default breaker (and the client preset's): failures in a row, no rate condition.
    let breaker = CircuitBreakerLayer::builder()
        .name("backend")
        .consecutive_failures(3)
        .build()
        .unwrap();
    health.add_breaker("backend", true, breaker.handle());
    let dashboard = Dashboard::builder(&health).build().unwrap();
    fail_once(&breaker).await;
    fail_once(&breaker).await;
    pass(Duration::from_secs(1)).await;
    fail_once(&breaker).await;
    pass(Duration::from_secs(1)).await;

    let state = state(&dashboard);
    let backend = component(&state, "backend");
    assert_eq!(labels(backend), ["failures in a row"]);
    // Built, then two failures, then the third, which tripped it.
    assert_eq!(points(backend, "failures in a row"), [0.0, 2.0, 3.0]);
    let b = &backend["breaker"];
    assert_eq!(b["state"], "open");
    assert_eq!(b["windowed"], false);
    assert_eq!((&b["calls"], &b["failure_rate"]), (&json!(0), &json!(null)));
    assert_eq!(b["trips"], 1);
}

#[tokio::test(start_paused = true)]
async fn series_grow_one_point_per_interval_up_to_the_history() {
    let health = Health::new();
    let level = Arc::new(AtomicU64::new(0));
    let read = level.clone();
    health.add_probe("flaky", false, move || match read.load(Relaxed) {
        0 => Report::new(Status::Up, "fine"),
        1 => Report::new(Status::Degraded, "slow"),
        _ => Report::new(Status::Down, "gone"),
    });
    let dashboard = Dashboard::builder(&health)
        .interval(Duration::from_secs(2))
        .history(4)
        .build()
        .unwrap();
    let flaky = |dashboard: &Dashboard| points(component(&state(dashboard), "flaky"), "status");
    assert_eq!(flaky(&dashboard), [0.0], "a first sample at build");
    level.store(1, Relaxed);
    pass(SECOND).await;
    assert_eq!(flaky(&dashboard), [0.0], "half an interval: no new point");
    pass(SECOND).await;
    assert_eq!(flaky(&dashboard), [0.0, 1.0]);
    level.store(2, Relaxed);
    pass(Duration::from_secs(2)).await;
    assert_eq!(flaky(&dashboard), [0.0, 1.0, 2.0]);
    level.store(0, Relaxed);
    pass(Duration::from_secs(2)).await;
    assert_eq!(flaky(&dashboard), [0.0, 1.0, 2.0, 0.0]);
    level.store(1, Relaxed);
    pass(Duration::from_secs(2)).await;
    assert_eq!(
        flaky(&dashboard),
        [1.0, 2.0, 0.0, 1.0],
        "at most `history`, oldest dropped"
    );
    for _ in 0..10 {
        pass(Duration::from_secs(2)).await;
    }
    assert_eq!(flaky(&dashboard), [1.0; 4], "one point per interval");
}

#[tokio::test(start_paused = true)]
async fn rates_are_the_growth_over_the_interval_per_second() {
    let health = Health::new();
    let budget = Arc::new(RatioBudget::new(Duration::from_secs(10), 0, 0.0).unwrap());
    health.add_budget("retries", budget.clone());
    let dashboard = Dashboard::builder(&health)
        .interval(Duration::from_secs(2))
        .build()
        .unwrap();
    for _ in 0..6 {
        assert!(!budget.withdraw(), "an empty budget refuses");
    }
    pass(Duration::from_secs(2)).await;
    pass(Duration::from_secs(2)).await; // nothing refused in this one
    assert!(!budget.withdraw());
    pass(Duration::from_secs(2)).await;
    let s = state(&dashboard);
    let retries = component(&s, "retries");
    assert_eq!(points(retries, "refused/s"), [0.0, 3.0, 0.0, 0.5]);
    assert_eq!(points(retries, "balance"), [0.0; 4]);
    assert_eq!(
        retries["budget"],
        json!({"balance": 0.0, "allowed": 0, "refused": 7})
    );
    assert_eq!(
        (&retries["status"], &retries["detail"]),
        (&json!("degraded"), &json!("balance 0.0, 7 refused"))
    );
}

#[tokio::test(start_paused = true)]
async fn status_changes_are_bounded_newest_first_with_their_reasons() {
    let health = Health::new();
    let runs = Arc::new(AtomicU64::new(0));
    let samples = runs.clone();
    health.add_probe("toggling", false, move || {
        let n = samples.load(Relaxed);
        let status = if n % 2 == 0 {
            Status::Up
        } else {
            Status::Degraded
        };
        Report::new(status, format!("run {n}"))
    });
    let dashboard = Dashboard::builder(&health).build().unwrap();
    for n in 1..=150 {
        runs.store(n, Relaxed);
        pass(SECOND).await;
    }
    let s = state(&dashboard);
    let events = s["events"].as_array().unwrap();
    // A check's status changes hold at most half of the 100 (the rest is kept for
    // transitions: breakers, switches, the drain, actions).
    assert_eq!(events.len(), 50, "bounded");
    assert_eq!(
        events[0],
        json!({"age_ms": 0, "component": "toggling", "kind": "check", "from": "degraded",
               "to": "up", "reason": "run 150"})
    );
    assert_eq!(events[1]["reason"], "run 149");
    assert_eq!(
        (&events[1]["from"], &events[1]["to"]),
        (&json!("up"), &json!("degraded"))
    );
    assert_eq!(events[1]["age_ms"], 1000);
    assert_eq!(events[49]["reason"], "run 101", "the oldest kept");
}

#[tokio::test(start_paused = true)]
async fn breaker_transitions_between_samples_all_appear_once_with_reasons() {
    let health = Health::new();
    let breaker = tripping_breaker("payments");
    let handle = breaker.handle();
    health.add_breaker("payments", false, handle.clone());
    let dashboard = Dashboard::builder(&health).build().unwrap();

    // Within one interval: trip, probe after the open duration... in paused time that is
    // 30 s, so trip through the handle instead and let a call close it.
    fail_once(&breaker).await; // closed -> open
    handle.force_closed(); // open -> closed (operator)
    fail_once(&breaker).await; // closed -> open
    handle.disable(); // open -> disabled
    handle.resume(); // disabled -> open
    handle.reset(); // open -> closed
    succeed_once(&breaker).await; // no change
    pass(SECOND).await;

    let s = state(&dashboard);
    let seen: Vec<(String, String, String)> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(
                (&e["component"], &e["kind"]),
                (&json!("payments"), &json!("breaker"))
            );
            assert_eq!(
                e["age_ms"], 1000,
                "when it happened, not when it was sampled"
            );
            let text = |f: &str| e[f].as_str().unwrap().to_string();
            (text("from"), text("to"), text("reason"))
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("open", "closed", "operator"),
        ("disabled", "open", "operator"),
        ("open", "disabled", "operator"),
        ("closed", "open", "1 consecutive failures"),
        ("open", "closed", "operator"),
        ("closed", "open", "1 consecutive failures"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(seen, expected, "newest first, each once");

    pass(SECOND).await;
    pass(SECOND).await;
    assert_eq!(
        state(&dashboard)["events"].as_array().unwrap().len(),
        6,
        "no duplicates"
    );
    handle.force_open();
    pass(SECOND).await;
    let s = state(&dashboard);
    assert_eq!(s["events"].as_array().unwrap().len(), 7);
    assert_eq!(
        (&s["events"][0]["to"], &s["events"][0]["age_ms"]),
        (&json!("forced_open"), &json!(1000))
    );
}

#[tokio::test(start_paused = true)]
async fn a_keyed_breaker_shows_its_top_keys_not_closed_first() {
    let health = Health::new();
    let keyed = KeyedCircuitBreakerLayer::new(
        CircuitBreakerLayer::builder()
            .consecutive_failures(1)
            .failure_rate(0.9)
            .minimum_calls(100),
        |request: &(String, bool)| request.0.clone(),
        100,
        Duration::from_secs(600),
    )
    .unwrap();
    health.add_keyed_breaker("hosts", keyed.handle());
    let service = keyed.layer(service_fn(|(_, fail): (String, bool)| async move {
        if fail {
            Err(std::io::Error::other("down"))
        } else {
            Ok(())
        }
    }));
    // host-0..host-11 get 1..=12 successful calls; host-3 and host-7 then trip.
    for host in 0..12 {
        for _ in 0..=host {
            service
                .clone()
                .oneshot((format!("host-{host}"), false))
                .await
                .unwrap();
        }
    }
    for tripped in ["host-3", "host-7"] {
        let _ = service.clone().oneshot((tripped.to_string(), true)).await;
    }
    let dashboard = Dashboard::builder(&health).top_keys(5).build().unwrap();
    let s = state(&dashboard);
    let hosts = component(&s, "hosts");
    assert_eq!(
        (&hosts["status"], &hosts["detail"]),
        (&json!("degraded"), &json!("12 keys, 2 not closed"))
    );
    let k = &hosts["keyed_breaker"];
    assert_eq!((&k["keys"], &k["not_closed"]), (&json!(12), &json!(2)));
    let shown: Vec<(&str, &str)> = k["shown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["key"].as_str().unwrap(), b["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        shown,
        [
            ("host-7", "open"),
            ("host-3", "open"),
            ("host-11", "closed"),
            ("host-10", "closed"),
            ("host-9", "closed")
        ],
        "not closed first (by calls), then the busiest, at most top_keys"
    );
    assert_eq!(points(hosts, "keys not closed"), [2.0]);
    keyed.handle().get(&"host-3".to_string()).unwrap().reset();
    pass(SECOND).await;
    assert_eq!(
        points(component(&state(&dashboard), "hosts"), "keys not closed"),
        [2.0, 1.0]
    );
}

#[tokio::test(start_paused = true)]
async fn switch_level_changes_drain_start_and_status_changes_are_events() {
    let health = Health::new();
    let switches = Switches::builder()
        .name("shop")
        .switch("reviews")
        .manual_evaluation()
        .build()
        .unwrap();
    health.add_switches(&switches);
    let bulkhead = BulkheadLayer::builder().max_concurrent(1).build().unwrap();
    health.add_bulkhead("pool", bulkhead.handle());
    let drain = DrainLayer::new();
    health.watch_drain(drain.handle());
    let dashboard = Dashboard::builder(&health).build().unwrap();
    assert_eq!(
        state(&dashboard)["events"],
        json!([]),
        "nothing changed yet"
    );

    switches.switch("reviews").unwrap().force_off();
    pass(Duration::from_millis(400)).await;
    drain.handle().drain();
    bulkhead.handle().set_limits(1, 0).unwrap(); // no change of status
    pass(Duration::from_millis(600)).await;
    let s = state(&dashboard);
    assert_eq!(
        s["events"],
        json!([
            {"age_ms": 0, "component": "drain", "kind": "drain", "from": "serving",
             "to": "draining", "reason": "drain started"},
            {"age_ms": 1000, "component": "shop/reviews", "kind": "switch", "from": "on",
             "to": "off", "reason": "forced off by an operator"}
        ])
    );
    assert_eq!(s["drain"], json!({"draining": true, "in_flight": 0}));
    assert_eq!(s["status"], "not_ready");
    assert_eq!(points(component(&s, "shop/reviews"), "level"), [0.0, 1.0]);

    // A bulkhead whose only permit is taken is degraded: a status change, with its detail.
    let held = BulkheadBuilder::fail_fast(1).build().unwrap();
    health.add_bulkhead("tight", held.handle());
    pass(SECOND).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let open = gate.clone();
    let service = held.layer(service_fn(move |()| {
        let gate = gate.clone();
        async move {
            let _pass = gate.acquire().await;
            Ok::<_, std::io::Error>(())
        }
    }));
    let call = tokio::spawn(service.oneshot(()));
    yield_now().await;
    pass(SECOND).await;
    let s = state(&dashboard);
    assert_eq!(
        s["events"][0],
        json!({"age_ms": 0, "component": "tight", "kind": "bulkhead", "from": "up",
               "to": "degraded", "reason": "1 of 1 in flight, 0 queued"})
    );
    open.add_permits(1);
    call.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn components_registered_later_appear_at_once_and_sample_from_then() {
    let health = Health::new();
    let dashboard = Dashboard::builder(&health).build().unwrap();
    pass(SECOND).await;
    health.add_probe("late", true, || Report::new(Status::Down, "starting"));
    let s = state(&dashboard);
    let late = component(&s, "late");
    assert_eq!(late["series"], json!([{"label": "status", "points": []}]));
    assert_eq!(s["status"], "not_ready");
    pass(SECOND).await;
    assert_eq!(
        points(component(&state(&dashboard), "late"), "status"),
        [2.0]
    );
}

#[tokio::test(start_paused = true)]
async fn strings_are_escaped_and_the_document_stays_json() {
    let health = Health::new();
    health.add_probe("quo\"te\\ and\nnewline </script>", false, || {
        Report::new(Status::Up, "\u{1}ctl \"x\"")
    });
    let dashboard = Dashboard::builder(&health)
        .title("t\"itle\u{7f}")
        .build()
        .unwrap();
    let s = state(&dashboard);
    assert_eq!(s["title"], "t\"itle\u{7f}");
    assert_eq!(
        s["components"][0]["name"],
        "quo\"te\\ and\nnewline </script>"
    );
    assert_eq!(s["components"][0]["detail"], "\u{1}ctl \"x\"");
}

#[tokio::test(start_paused = true)]
async fn the_sampler_ends_with_the_last_dashboard() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let health = Health::new();
    let before = metrics.num_alive_tasks();
    let dashboard = Dashboard::builder(&health).build().unwrap();
    assert_eq!(metrics.num_alive_tasks(), before + 1, "the sampler");
    let clone = dashboard.clone();
    let service = health.service().dashboard(dashboard.clone());
    drop(dashboard);
    drop(clone);
    pass(SECOND).await;
    assert_eq!(
        metrics.num_alive_tasks(),
        before + 1,
        "the service holds one"
    );
    drop(service);
    for _ in 0..4 {
        yield_now().await;
    }
    assert_eq!(
        metrics.num_alive_tasks(),
        before,
        "ended at once, not at the next tick"
    );
}

#[test]
fn config_errors_name_their_fields() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let health = Health::new();
    let field = |builder: tower_bulwark_health::DashboardBuilder| {
        let _guard = runtime.enter();
        builder.build().unwrap_err().field()
    };
    let b = || Dashboard::builder(&health);
    assert_eq!(field(b().interval(Duration::ZERO)), "interval");
    assert_eq!(field(b().interval(Duration::from_micros(999))), "interval");
    assert_eq!(field(b().interval(Duration::from_secs(3601))), "interval");
    assert_eq!(field(b().interval(Duration::MAX)), "interval");
    assert_eq!(field(b().history(0)), "history");
    assert_eq!(field(b().history(3601)), "history");
    assert_eq!(field(b().top_keys(0)), "top_keys");
    assert_eq!(field(b().top_keys(101)), "top_keys");
    {
        let _guard = runtime.enter();
        let ok = b()
            .interval(Duration::from_millis(1))
            .history(3600)
            .top_keys(100)
            .build();
        assert!(ok.is_ok(), "the bounds are inclusive");
        let ok = b()
            .interval(Duration::from_secs(3600))
            .history(1)
            .top_keys(1)
            .build();
        assert!(ok.is_ok());
    }
    let outside = Dashboard::builder(&health).build().unwrap_err();
    assert_eq!(outside.field(), "runtime", "no runtime to sample on");
}
