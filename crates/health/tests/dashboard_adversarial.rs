//! Review of the operator dashboard (issue 21): hostile requests, composition, the sampler's
//! lifetime, breaker history under bursts and threads, JSON and the page.
//!
//! The findings it made (an action on a shared name, a component named `drain`, time in
//! an operator state, flapping status changes crowding out a trip, transitions lost
//! silently) are fixed and asserted here; the rest pins what was checked and found sound.
#![cfg(all(
    feature = "dashboard",
    feature = "breaker",
    feature = "bulkhead",
    feature = "shed",
    feature = "retry",
    feature = "degrade"
))]

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use serde_json::Value;
use tokio::task::yield_now;
use tokio::time::advance;
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark_breaker::{BreakerHandle, CircuitBreakerLayer, KeyedCircuitBreakerLayer, State};
use tower_bulwark_degrade::Switches;
use tower_bulwark_health::{Dashboard, DrainLayer, Health, HealthService, Report, Status};

const SECOND: Duration = Duration::from_secs(1);

async fn pass(by: Duration) {
    advance(by).await;
    for _ in 0..8 {
        yield_now().await;
    }
}

fn state(dashboard: &Dashboard) -> Value {
    serde_json::from_str(&dashboard.state_json()).expect("the state document is JSON")
}

fn anyone(_: &Parts) -> bool {
    true
}

fn breaker(name: &'static str) -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder().name(name).build().unwrap()
}

/// One request straight into the service (no server): `uri` as hyper would hand it on.
async fn call(
    service: &HealthService,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
) -> Response<String> {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    service
        .clone()
        .oneshot(request.body(()).unwrap())
        .await
        .unwrap()
}

/// An action as the page's own `fetch` sends it, from `host`.
async fn act(service: &HealthService, host: &str, query: &str) -> Response<String> {
    let origin = format!("http://{host}");
    call(
        service,
        Method::POST,
        &format!("/health/ui/action?{query}"),
        &[
            ("host", host),
            ("origin", &origin),
            ("sec-fetch-site", "same-origin"),
            ("x-bulwark-action", "1"),
        ],
    )
    .await
}

// === findings, fixed ===

/// Two components registered under one name (two `ClientPreset::http("api")`, a preset
/// registered twice, two probes named alike): the page draws a card with buttons for each,
/// but `?component=api` would reach the first only: an ambiguous name is refused (409),
/// and neither is touched.
#[tokio::test(start_paused = true)]
async fn an_action_on_a_name_two_components_share_is_refused() {
    let health = Health::new();
    let (a, b) = (breaker("api-a"), breaker("api-b"));
    health.add_breaker("api", false, a.handle());
    health.add_breaker("api", false, b.handle());
    let dashboard = Dashboard::builder(&health).actions(anyone).build().unwrap();
    let service = health.service().dashboard(dashboard.clone());
    let s = state(&dashboard);
    let cards: Vec<&Value> = s["components"].as_array().unwrap().iter().collect();
    assert_eq!(cards.len(), 2, "both are shown, each with its buttons");
    assert!(cards
        .iter()
        .all(|c| c["actions"].as_array().unwrap().len() == 6));

    let response = act(&service, "ops:9000", "component=api&action=force_open").await;
    assert_eq!(
        response.status(),
        StatusCode::CONFLICT,
        "{}",
        response.body()
    );
    assert!(
        response.body().contains("distinct names"),
        "{}",
        response.body()
    );
    assert_eq!(
        (a.handle().state(), b.handle().state()),
        (State::Closed, State::Closed)
    );
}

/// A breaker (or switch) registered as `drain` can be operated while the registry watches
/// a drain: only the drain takes `start`.
#[tokio::test(start_paused = true)]
async fn a_component_named_drain_can_still_be_operated() {
    let health = Health::new();
    let b = breaker("drain");
    health.add_breaker("drain", false, b.handle());
    let drain = DrainLayer::new().handle();
    health.watch_drain(drain.clone());
    let dashboard = Dashboard::builder(&health).actions(anyone).build().unwrap();
    let service = health.service().dashboard(dashboard);
    let response = act(&service, "ops:9000", "component=drain&action=force_open").await;
    assert_eq!(
        response.status(),
        StatusCode::NO_CONTENT,
        "{}",
        response.body()
    );
    assert_eq!(b.handle().state(), State::ForcedOpen);
    let response = act(&service, "ops:9000", "component=drain&action=start").await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(drain.is_draining());
}

// === documented behaviour ===

/// More than 16 transitions between two samples: the oldest are gone from the breaker's
/// record, and the oldest event shown says how many (the first sequence shown is 25, the
/// last seen 0).
#[tokio::test(start_paused = true)]
async fn more_than_16_transitions_between_samples_say_how_many_are_not_shown() {
    let health = Health::new();
    let b = breaker("flappy");
    let handle = b.handle();
    health.add_breaker("flappy", false, handle.clone());
    let dashboard = Dashboard::builder(&health).build().unwrap();
    for _ in 0..20 {
        handle.force_open();
        handle.reset();
    }
    assert_eq!(handle.transitions().first().unwrap().sequence, 25);
    pass(SECOND).await;
    let s = state(&dashboard);
    let events = s["events"].as_array().unwrap();
    assert_eq!(events.len(), 16, "40 transitions, 16 shown");
    let oldest = events.last().unwrap()["reason"].as_str().unwrap();
    assert!(
        oldest.ends_with(" (24 earlier transitions not shown)"),
        "{oldest}"
    );
    assert!(
        events[..15]
            .iter()
            .all(|e| !e["reason"].as_str().unwrap().contains("not shown")),
        "only the first after the gap says so"
    );
    // What is shown is consistent: alternating, newest first.
    for pair in events.windows(2) {
        assert_eq!(pair[0]["from"], pair[1]["to"], "a chain, newest first");
    }
}

/// DNS rebinding: a page of `attacker.example` whose name now resolves to the dashboard's
/// address is same-origin to the browser. `Origin` and `Host` agree, `Sec-Fetch-Site` is
/// `same-origin`, so only the predicate stands: the docs say it must check a credential
/// (a token the attacker's origin does not have), never the peer address alone.
#[tokio::test(start_paused = true)]
async fn dns_rebinding_leaves_only_the_predicate() {
    let health = Health::new();
    let b = breaker("payments");
    health.add_breaker("payments", false, b.handle());
    // Stands for "the peer is loopback".
    let dashboard = Dashboard::builder(&health).actions(anyone).build().unwrap();
    let service = health.service().dashboard(dashboard);
    let response = act(
        &service,
        "attacker.example:9000",
        "component=payments&action=force_open",
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(b.handle().state(), State::ForcedOpen);
}

/// Keys of a keyed breaker are often derived from the request (host, route, tenant
/// header): their text reaches the state document, the page, the confirm dialog and the
/// event reasons, in contradiction to "nothing in it comes from a request". It is escaped
/// (JSON) and shown as text, so it is spoofing (bidi overrides, newlines, length), not
/// injection.
#[tokio::test(start_paused = true)]
async fn request_derived_keys_reach_the_document_escaped() {
    let health = Health::new();
    let keyed = KeyedCircuitBreakerLayer::new(
        CircuitBreakerLayer::builder().name("tenants"),
        |tenant: &String| tenant.clone(),
        10,
        Duration::from_secs(600),
    )
    .unwrap();
    health.add_keyed_breaker("tenants", keyed.handle());
    let svc = keyed.layer(service_fn(|_: String| async {
        Ok::<_, std::io::Error>(())
    }));
    let hostile = format!(
        "acme\u{202e}nimda\n\"</script><img src=x onerror=alert(1)>\u{2028}{}",
        "x".repeat(8_000)
    );
    svc.oneshot(hostile.clone()).await.unwrap();
    let dashboard = Dashboard::builder(&health).actions(anyone).build().unwrap();
    let s = state(&dashboard);
    let shown = &s["components"][0]["keyed_breaker"]["shown"][0]["key"];
    assert_eq!(shown.as_str().unwrap(), hostile, "as given, 8 kB and all");
    let service = health.service().dashboard(dashboard.clone());
    let query = format!(
        "component=tenants&action=force_open&key={}",
        hostile
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect::<String>()
    );
    let response = act(&service, "ops:9000", &query).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let s = state(&dashboard);
    let reason = s["events"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&hostile),
        "the key is in the event's reason"
    );
}

// === checked and sound (pass now) ===

#[tokio::test(start_paused = true)]
async fn hostile_query_strings_are_refused_without_echo_or_panic() {
    let health = Health::new();
    let b = breaker("payments");
    health.add_breaker("payments", false, b.handle());
    let dashboard = Dashboard::builder(&health).actions(anyone).build().unwrap();
    let service = health.service().dashboard(dashboard.clone());
    let huge = format!("component=ECHO{}&action=force_open", "A".repeat(60_000));
    let cases: Vec<(String, u16)> = vec![
        ("component=pay%zzments&action=force_open".into(), 400),
        ("component=payments&action=force_open%".into(), 400),
        ("component=payments&action=force_open%4".into(), 400),
        ("component=%C0%AFpayments&action=force_open".into(), 400), // overlong '/'
        ("component=%ED%A0%80&action=force_open".into(), 400),      // a surrogate
        ("component=%F4%90%80%80&action=force_open".into(), 400),   // above U+10FFFF
        ("component=payments%00&action=force_open".into(), 404),
        ("component=pay+ments&action=force_open".into(), 404),
        ("component=ECHO&action=ECHO%3Cscript%3E".into(), 404),
        ("component=&action=force_open".into(), 404),
        ("component&action=force_open".into(), 404),
        ("action=force_open".into(), 400),
        ("component=payments".into(), 400),
        ("component=payments&action=".into(), 400),
        ("component=payments&action=FORCE_OPEN".into(), 400),
        ("component=payments&action=force%5Fopen%00".into(), 400),
        ("%FF=1&component=payments&action=force_open".into(), 400),
        (
            "component=nope&component=payments&action=force_open".into(),
            404,
        ), // first wins
        (huge, 404),
    ];
    for (query, status) in cases {
        let response = act(&service, "ops:9000", &query).await;
        assert_eq!(response.status().as_u16(), status, "{:.80}", query);
        assert!(!response.body().contains("ECHO"), "echoed: {:.80}", query);
        assert!(!response.body().contains("zz"), "echoed: {:.80}", query);
        assert_eq!(b.handle().state(), State::Closed, "{:.80}", query);
        serde_json::from_str::<Value>(response.body()).expect("problem+json");
    }
    assert!(!dashboard.state_json().contains("ECHO"));
    // Repeated: the first wins, later values are not read.
    let response = act(
        &service,
        "ops:9000",
        "component=payments&action=force_open&action=reset",
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(b.handle().state(), State::ForcedOpen);
}

#[tokio::test(start_paused = true)]
async fn cross_site_header_combinations() {
    let health = Health::new();
    let b = breaker("payments");
    health.add_breaker("payments", false, b.handle());
    let dashboard = Dashboard::builder(&health).actions(anyone).build().unwrap();
    let service = health.service().dashboard(dashboard);
    let path = "/health/ui/action?component=payments&action=metrics_only";
    let absolute = "http://[::1]:9000/health/ui/action?component=payments&action=metrics_only";
    let x = ("x-bulwark-action", "1");
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16);
    let cases: &[Case<'_>] = &[
        (
            path,
            &[x, ("host", "[::1]:9000"), ("origin", "http://[::1]:9000")],
            204,
        ),
        (
            path,
            &[x, ("host", "[::1]:9000"), ("origin", "http://[::1]:9001")],
            403,
        ),
        (
            path,
            &[x, ("host", "[::1]"), ("origin", "http://[::1]:80")],
            204,
        ),
        (
            path,
            &[
                x,
                ("host", "OPS.Internal:9000"),
                ("origin", "http://ops.internal:9000"),
            ],
            204,
        ),
        (
            path,
            &[
                x,
                ("host", "ops.internal.:9000"),
                ("origin", "http://ops.internal:9000"),
            ],
            403,
        ),
        (
            path,
            &[
                x,
                ("host", "ops.internal:9000"),
                ("origin", "http://ops.internal:9000.evil"),
            ],
            403,
        ),
        (
            path,
            &[
                x,
                ("host", "ops.internal:9000"),
                ("origin", "http://evil@ops.internal:9000"),
            ],
            403,
        ),
        (
            path,
            &[
                x,
                ("host", "ops.internal:9000"),
                ("origin", "http://ops.internal:9000/"),
            ],
            403,
        ),
        (
            path,
            &[x, ("host", "ops.internal:9000"), ("origin", "null")],
            403,
        ),
        (
            path,
            &[x, ("host", "ops.internal:9000"), ("origin", "")],
            403,
        ),
        (
            path,
            &[
                x,
                ("host", "ops.internal"),
                ("origin", "https://ops.internal:80"),
            ],
            403,
        ),
        (
            path,
            &[
                x,
                ("sec-fetch-site", "none"),
                ("host", "a:1"),
                ("origin", "http://evil:1"),
            ],
            403,
        ),
        (
            path,
            &[
                x,
                ("sec-fetch-site", "cross-site"),
                ("host", "a:1"),
                ("origin", "http://a:1"),
            ],
            403,
        ),
        (path, &[x, ("sec-fetch-site", "Same-Origin")], 403),
        (path, &[("x-bulwark-action", "1 ")], 403),
        (path, &[("x-bulwark-action", "01")], 403),
        // HTTP/2: no Host, the authority in the URI (axum's nest keeps it).
        (absolute, &[x, ("origin", "http://[::1]:9000")], 204),
        (absolute, &[x, ("origin", "http://[::1]:9001")], 403),
        // Origin but nothing to compare with: refused.
        (path, &[x, ("origin", "http://[::1]:9000")], 403),
    ];
    for (uri, headers, status) in cases {
        b.handle().reset();
        let response = call(&service, Method::POST, uri, headers).await;
        assert_eq!(response.status().as_u16(), *status, "{uri} {headers:?}");
        let forced = b.handle().state() == State::MetricsOnly;
        assert_eq!(forced, *status == 204, "{uri} {headers:?}");
    }
    // Through axum's nest_service, HTTP/2-style absolute URI: the authority survives.
    let app = axum::Router::new().nest_service("/health", service.clone());
    b.handle().reset();
    let request = Request::post(absolute)
        .header("x-bulwark-action", "1")
        .header("origin", "http://[::1]:9000")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test(start_paused = true)]
async fn methods_and_preflight() {
    let health = Health::new();
    health.add_breaker("payments", false, breaker("payments").handle());
    let dashboard = Dashboard::builder(&health).actions(anyone).build().unwrap();
    let service = health.service().dashboard(dashboard);
    let preflight = call(
        &service,
        Method::OPTIONS,
        "/health/ui/action?component=payments&action=force_open",
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "x-bulwark-action"),
        ],
    )
    .await;
    assert_eq!(preflight.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(preflight
        .headers()
        .keys()
        .all(|name| !name.as_str().starts_with("access-control-")));
    for (method, path, status) in [
        (Method::GET, "/health/ui/action", 405),
        (Method::HEAD, "/health/ui/action", 405),
        (Method::PUT, "/health/ui/action", 405),
        (Method::POST, "/health/ui", 405),
        (Method::DELETE, "/health/ui/state", 405),
        (Method::HEAD, "/health/ui/state", 200),
        (Method::GET, "/health/ui/", 200),
        // Other routes answer as before, the dashboard given or not.
        (Method::GET, "/health/live", 200),
        (Method::GET, "/health/ready", 200),
        (Method::GET, "/health", 200),
        (Method::GET, "/health/ui//", 200),
        (Method::GET, "/health/state", 200),
    ] {
        let response = call(&service, method.clone(), path, &[]).await;
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
    }
    let json = call(&service, Method::GET, "/health/state", &[]).await;
    assert!(
        json.body().starts_with(r#"{"status":"ready""#),
        "the JSON view"
    );
}

/// The sampler holds the dashboard weakly, and nothing holds the registry but the
/// dashboard: dropping both frees every probe's captures.
#[tokio::test(start_paused = true)]
async fn the_sampler_keeps_neither_the_registry_nor_its_probes_alive() {
    let held = Arc::new(());
    let health = Health::new();
    let captured = held.clone();
    health.add_probe("p", false, move || {
        let _ = &captured;
        Report::new(Status::Up, "ok")
    });
    let dashboard = Dashboard::builder(&health)
        .interval(Duration::from_millis(1))
        .build()
        .unwrap();
    let other = Dashboard::builder(&health).build().unwrap();
    pass(SECOND).await;
    assert_eq!(Arc::strong_count(&held), 2);
    drop(health);
    drop(dashboard);
    pass(SECOND).await;
    assert_eq!(
        Arc::strong_count(&held),
        2,
        "the other dashboard holds the registry"
    );
    drop(other);
    pass(SECOND).await;
    assert_eq!(Arc::strong_count(&held), 1, "all freed");
}

/// Components registered while the sampler runs, a dashboard over an empty registry, two
/// dashboards over one registry, and a dropped switch set.
#[tokio::test(start_paused = true)]
async fn registration_while_sampling_two_dashboards_and_dropped_switches() {
    let health = Health::new();
    let empty = Dashboard::builder(&health).build().unwrap();
    let s = state(&empty);
    assert_eq!(s["components"], Value::Array(vec![]));
    assert_eq!(s["events"], Value::Array(vec![]));
    assert_eq!(s["drain"], Value::Null);
    let fast = Dashboard::builder(&health)
        .interval(Duration::from_millis(10))
        .actions(anyone)
        .build()
        .unwrap();
    for n in 0..50 {
        health.add_probe(format!("p{n}"), false, || Report::new(Status::Up, "ok"));
        pass(Duration::from_millis(7)).await;
        for d in [&empty, &fast] {
            let s = state(d);
            let components = s["components"].as_array().unwrap();
            assert_eq!(components.len(), n + 1);
            assert_eq!(components[n]["name"], format!("p{n}"), "registration order");
        }
    }
    let switches = Switches::builder()
        .name("shop")
        .switch("reviews")
        .manual_evaluation()
        .build()
        .unwrap();
    health.add_switches(&switches);
    pass(SECOND).await;
    drop(switches);
    pass(SECOND).await;
    let s = state(&fast);
    let switch = s["components"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(switch["switch"]["state"], "dropped");
    assert!(switch["series"][0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .all(Value::is_number));
    let service = health.service().dashboard(fast.clone());
    let response = act(
        &service,
        "ops:9000",
        "component=shop%2Freviews&action=force_off",
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// Transitions from several threads while the sampler runs every millisecond and readers
/// poll: every document is JSON, every breaker event chains onto the one before it (no
/// event lost or doubled while fewer than 16 happen per sample), and the record's numbers
/// are contiguous.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transitions_samples_and_readers() {
    let health = Health::new();
    let b = breaker("busy");
    let handle = b.handle();
    health.add_breaker("busy", false, handle.clone());
    let dashboard = Dashboard::builder(&health)
        .interval(Duration::from_millis(1))
        .build()
        .unwrap();
    let writers: Vec<_> = (0..3)
        .map(|i| {
            let handle: BreakerHandle = handle.clone();
            std::thread::spawn(move || {
                for n in 0..300 {
                    match (i + n) % 3 {
                        0 => handle.force_open(),
                        1 => handle.disable(),
                        _ => handle.reset(),
                    }
                    let list = handle.transitions();
                    for pair in list.windows(2) {
                        assert_eq!(pair[1].sequence, pair[0].sequence + 1);
                        assert_eq!(pair[1].from, pair[0].to, "a chain");
                    }
                    for _ in 0..1000 {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    let reader = {
        let dashboard = dashboard.clone();
        std::thread::spawn(move || {
            for _ in 0..300 {
                let s: Value = serde_json::from_str(&dashboard.state_json()).unwrap();
                assert!(s["events"].as_array().unwrap().len() <= 100);
            }
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    reader.join().unwrap();
    let last = handle.transitions();
    // No real sleep: yield until the sampler (every 1 ms) has seen the last change.
    let mut s = state(&dashboard);
    for _ in 0..1_000_000 {
        if s["events"][0]["to"] == last.last().unwrap().to.as_str() {
            break;
        }
        yield_now().await;
        s = state(&dashboard);
    }
    let events: Vec<&Value> = s["events"].as_array().unwrap().iter().collect();
    assert_eq!(events.len(), 100);
    assert_eq!(events[0]["to"], last.last().unwrap().to.as_str());
    let mut breaks = 0;
    // Transitions are stamped under the breaker's lock, so events keep their order; a
    // break is more than 16 in one sample, and the event after it says so.
    for pair in events.windows(2) {
        if pair[0]["from"] != pair[1]["to"] {
            breaks += 1;
            let reason = pair[0]["reason"].as_str().unwrap();
            assert!(reason.contains("earlier transitions not shown"), "{reason}");
        }
    }
    eprintln!("gaps among the last 100 events: {breaks}");
}

/// Escaping: control characters, U+2028/2029, DEL, NUL, quotes and non-BMP characters in
/// names, details and reasons; the document is JSON and round-trips.
#[tokio::test(start_paused = true)]
async fn every_string_round_trips_through_the_document() {
    let nasty = "a\u{0}b\u{1f}c\u{7f}d\u{2028}e\u{2029}f\"g\\h</script>\u{1F600}\u{FEFF}";
    let health = Health::new();
    health.add_probe(nasty, false, move || Report::new(Status::Degraded, nasty));
    let dashboard = Dashboard::builder(&health).title(nasty).build().unwrap();
    let s = state(&dashboard);
    assert_eq!(s["title"], nasty);
    assert_eq!(s["components"][0]["name"], nasty);
    assert_eq!(s["components"][0]["detail"], nasty);
    let service = health.service();
    let json = call(&service, Method::GET, "/health", &[]).await;
    let v: Value = serde_json::from_str(json.body()).unwrap();
    assert_eq!(v["components"][0]["name"], nasty);
}

/// The page builds every node with `createElement` and text nodes: no HTML parsing sink,
/// no dynamic code, no attribute a name could turn into a URL or a handler.
#[test]
fn the_page_has_no_html_or_code_sink() {
    let page = include_str!("../src/dashboard/page.html");
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "setTimeout('",
        "setTimeout(\"",
        "srcdoc",
        "javascript:",
        "localStorage",
        "document.cookie",
        "postMessage",
        "location.href =",
        "location =",
        "window.open",
    ] {
        assert!(!page.contains(sink), "{sink}");
    }
    // The one link built from data is an index fragment.
    assert!(page.contains("href: '#c' + i"));
    assert_eq!(page.matches("href:").count(), 1);
    // Every fetch is relative to the page's own path.
    assert_eq!(page.matches("fetch(").count(), 2);
    assert!(page.contains("fetch(base + '/state'"));
    assert!(page.contains("fetch(url, {method: 'POST'"));
}

/// One flapping component (a shed layer at its limit, a budget around 1.0, a bulkhead
/// with a queue: each status flip is an event) holds at most half of the 100 events, so a
/// breaker's trip stays in the list.
#[tokio::test(start_paused = true)]
async fn a_flapping_component_does_not_push_a_breaker_trip_out_of_the_events() {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    let health = Health::new();
    let b = breaker("payments");
    health.add_breaker("payments", false, b.handle());
    let flip = Arc::new(AtomicBool::new(false));
    let read = flip.clone();
    health.add_probe("server shed", false, move || {
        let status = if read.load(Relaxed) {
            Status::Degraded
        } else {
            Status::Up
        };
        Report::new(status, "at its limit")
    });
    let dashboard = Dashboard::builder(&health).build().unwrap();
    b.handle().force_open();
    pass(SECOND).await;
    for n in 0..100 {
        flip.store(n % 2 == 0, Relaxed);
        pass(SECOND).await;
    }
    let s = state(&dashboard);
    let events = s["events"].as_array().unwrap();
    assert_eq!(events.len(), 51, "50 flaps, the newest, and the trip");
    assert!(events[..50].iter().all(|e| e["component"] == "server shed"));
    assert_eq!(
        events[50]["component"], "payments",
        "the trip 100 s ago stays"
    );
    assert_eq!(events[50]["to"], "forced_open");
    assert_eq!(s["components"][0]["breaker"]["state"], "forced_open");
}

/// `time_in_state_ms` of a breaker forced open counts from the machine's last change, not
/// from the operator's: "forced open, in state for 1h" a second after the click.
#[tokio::test(start_paused = true)]
async fn time_in_state_of_an_operator_state_counts_from_the_operator_action() {
    let health = Health::new();
    let b = breaker("payments");
    health.add_breaker("payments", false, b.handle());
    let dashboard = Dashboard::builder(&health).build().unwrap();
    pass(Duration::from_secs(3600)).await;
    b.handle().force_open();
    pass(SECOND).await;
    let s = state(&dashboard);
    let breaker = &s["components"][0]["breaker"];
    assert_eq!(breaker["state"], "forced_open");
    assert_eq!(breaker["time_in_state_ms"], 1000, "{breaker}");
}
