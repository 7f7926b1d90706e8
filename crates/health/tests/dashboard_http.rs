//! The dashboard over real HTTP (axum on loopback, a hyper client): routes, headers,
//! operator actions and their checks, and that nothing a request carries comes back.
#![cfg(all(feature = "dashboard", feature = "breaker", feature = "degrade"))]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use http::request::Parts;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark_breaker::{CircuitBreakerLayer, KeyedCircuitBreakerLayer, State};
use tower_bulwark_degrade::Switches;
use tower_bulwark_health::{Dashboard, DrainLayer, Health, HealthService, Report, Status};

const SECRET: &str = "secret-token-123";
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src data:; frame-ancestors 'none'";

async fn serve(service: HealthService) -> SocketAddr {
    let app = Router::new().nest_service("/health", service);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// One request on a new connection, with `Host` set as a client would.
async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> http::Response<String> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::<bytes::Bytes>::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (head, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    http::Response::from_parts(head, String::from_utf8(body.to_vec()).unwrap())
}

async fn get(addr: SocketAddr, path: &str) -> http::Response<String> {
    send(addr, Method::GET, path, &[]).await
}

/// The headers a same-origin `fetch` from the page sends with an action.
fn page_headers(addr: SocketAddr) -> Vec<(&'static str, String)> {
    vec![
        ("x-bulwark-action", "1".to_string()),
        ("sec-fetch-site", "same-origin".to_string()),
        ("origin", format!("http://{addr}")),
        ("authorization", "Bearer ops".to_string()),
    ]
}

async fn act(addr: SocketAddr, query: &str, headers: &[(&str, String)]) -> http::Response<String> {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    send(
        addr,
        Method::POST,
        &format!("/health/ui/action?{query}"),
        &headers,
    )
    .await
}

fn ops_only(request: &Parts) -> bool {
    request
        .headers
        .get("authorization")
        .is_some_and(|value| value == "Bearer ops")
}

fn assert_common_headers(response: &http::Response<String>) {
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    assert_eq!(response.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
}

/// A refusal: its status, problem+json, and its detail.
fn problem(response: &http::Response<String>, status: u16) -> String {
    assert_eq!(response.status().as_u16(), status, "{}", response.body());
    assert_common_headers(response);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
    let body: Value = serde_json::from_str(response.body()).unwrap();
    assert_eq!(body["status"], status);
    assert_eq!(body["type"], "about:blank");
    body["detail"].as_str().unwrap().to_string()
}

/// A registry with a breaker, a keyed breaker, a switch and a drain.
struct Fixture {
    health: Health,
    breaker: tower_bulwark_breaker::BreakerHandle,
    keyed: tower_bulwark_breaker::KeyedHandle<String>,
    switches: Switches,
    drain: tower_bulwark_health::DrainHandle,
}

async fn fixture() -> Fixture {
    let health = Health::new();
    let breaker = CircuitBreakerLayer::builder()
        .name("payments")
        .build()
        .unwrap();
    health.add_breaker("payments", true, breaker.handle());
    let keyed = KeyedCircuitBreakerLayer::new(
        CircuitBreakerLayer::builder().name("hosts"),
        |host: &String| host.clone(),
        10,
        Duration::from_secs(600),
    )
    .unwrap();
    health.add_keyed_breaker("hosts", keyed.handle());
    let hosts = keyed.layer(service_fn(|_: String| async {
        Ok::<_, std::io::Error>(())
    }));
    for host in ["db/1 primary", "db-2"] {
        hosts.clone().oneshot(host.to_string()).await.unwrap();
    }
    let switches = Switches::builder()
        .name("shop")
        .switch("reviews")
        .manual_evaluation()
        .build()
        .unwrap();
    health.add_switches(&switches);
    let drain = DrainLayer::new().handle();
    health.watch_drain(drain.clone());
    health.add_probe("config", false, || Report::new(Status::Up, "loaded"));
    Fixture {
        health,
        breaker: breaker.handle(),
        keyed: keyed.handle(),
        switches,
        drain,
    }
}

#[tokio::test]
async fn the_page_and_the_state_are_served_with_their_headers() {
    let f = fixture().await;
    let dashboard = Dashboard::builder(&f.health)
        .title("checkout")
        .build()
        .unwrap();
    let addr = serve(f.health.service().dashboard(dashboard)).await;

    for path in ["/health/ui", "/health/ui/"] {
        let page = get(addr, path).await;
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        assert_common_headers(&page);
        assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(page.headers()[CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(
            page.body(),
            include_str!("../src/dashboard/page.html"),
            "the page compiled in"
        );
    }

    let state = get(addr, "/health/ui/state").await;
    assert_eq!(state.status(), StatusCode::OK);
    assert_common_headers(&state);
    assert_eq!(state.headers()[CONTENT_TYPE], "application/json");
    assert!(state.headers().get(CONTENT_SECURITY_POLICY).is_none());
    let document: Value = serde_json::from_str(state.body()).unwrap();
    assert_eq!(document["title"], "checkout");
    assert_eq!(document["components"].as_array().unwrap().len(), 4);

    // Wrong methods.
    let post_page = send(addr, Method::POST, "/health/ui", &[]).await;
    problem(&post_page, 405);
    assert_eq!(post_page.headers()["allow"], "GET, HEAD");
    problem(
        &send(addr, Method::DELETE, "/health/ui/state", &[]).await,
        405,
    );
    let get_action = get(
        addr,
        "/health/ui/action?component=payments&action=force_open",
    )
    .await;
    problem(&get_action, 405);
    assert_eq!(get_action.headers()["allow"], "POST");
    assert_eq!(f.breaker.state(), State::Closed);

    // The other paths answer as before.
    assert_eq!(get(addr, "/health/live").await.body(), "live");
    assert_eq!(get(addr, "/health/ready").await.body(), "ready");
    let json: Value = serde_json::from_str(get(addr, "/health").await.body()).unwrap();
    assert_eq!(json["status"], "ready");
    assert_eq!(json["components"][0]["name"], "payments");
}

#[tokio::test]
async fn without_a_dashboard_its_paths_answer_as_before() {
    let f = fixture().await;
    let addr = serve(f.health.service()).await;
    for path in ["/health/ui", "/health/ui/state"] {
        let response = get(addr, path).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert!(response
            .body()
            .starts_with(r#"{"status":"ready","draining":false,"#));
    }
    let action = act(
        addr,
        "component=payments&action=force_open",
        &page_headers(addr),
    )
    .await;
    assert!(
        action.body().starts_with(r#"{"status":"ready""#),
        "the JSON view"
    );
    assert_eq!(f.breaker.state(), State::Closed);
}

#[tokio::test]
async fn actions_are_refused_unless_enabled_authorized_and_same_origin() {
    let f = fixture().await;
    let query = "component=payments&action=force_open";

    let read_only = Dashboard::builder(&f.health).build().unwrap();
    let addr = serve(f.health.service().dashboard(read_only)).await;
    let detail = problem(&act(addr, query, &page_headers(addr)).await, 403);
    assert_eq!(detail, "operator actions are not enabled");

    let dashboard = Dashboard::builder(&f.health)
        .actions(ops_only)
        .build()
        .unwrap();
    let addr = serve(f.health.service().dashboard(dashboard.clone())).await;
    let headers = page_headers(addr);
    let without = |name: &str| -> Vec<(&str, String)> {
        headers
            .iter()
            .filter(|(n, _)| *n != name)
            .cloned()
            .collect()
    };
    let with = |name: &'static str, value: &str| -> Vec<(&str, String)> {
        let mut changed = without(name);
        changed.push((name, value.to_string()));
        changed
    };
    for (case, headers) in [
        ("predicate false", without("authorization")),
        ("wrong token", with("authorization", "Bearer guess")),
        ("no action header", without("x-bulwark-action")),
        ("action header not 1", with("x-bulwark-action", "true")),
        ("evil origin", with("origin", "https://evil.example")),
        ("null origin", with("origin", "null")),
        ("cross-site", with("sec-fetch-site", "cross-site")),
        ("same-site", with("sec-fetch-site", "same-site")),
    ] {
        problem(&act(addr, query, &headers).await, 403);
        assert_eq!(f.breaker.state(), State::Closed, "{case}: nothing done");
    }

    // A client that is not a browser sends neither `Origin` nor `Sec-Fetch-Site`.
    let curl = vec![
        ("x-bulwark-action", "1".to_string()),
        ("authorization", "Bearer ops".to_string()),
    ];
    let done = act(addr, query, &curl).await;
    assert_eq!(done.status(), StatusCode::NO_CONTENT, "{}", done.body());
    assert_common_headers(&done);
    assert_eq!(f.breaker.state(), State::ForcedOpen);

    let done = act(addr, "component=payments&action=resume", &headers).await;
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    assert_eq!(f.breaker.state(), State::Closed);

    // The state document says whether its reader may take actions: the predicate judges
    // the state request too, so the page knows to ask for a token.
    let read = |headers: &'static [(&'static str, &'static str)]| async move {
        let response = send(addr, Method::GET, "/health/ui/state", headers).await;
        assert_eq!(response.status(), StatusCode::OK);
        serde_json::from_str::<Value>(response.body()).unwrap()
    };
    let anonymous = read(&[]).await;
    assert_eq!(anonymous["actions_enabled"], true);
    assert_eq!(anonymous["actions"], false);
    let guessing = read(&[("authorization", "Bearer guess")]).await;
    assert_eq!(guessing["actions"], false);
    let state = read(&[("authorization", "Bearer ops")]).await;
    assert_eq!(state["actions_enabled"], true);
    assert_eq!(state["actions"], true);
    let direct: Value = serde_json::from_str(&dashboard.state_json()).unwrap();
    assert_eq!(direct["actions"], false, "no request, no approval");
    assert_eq!(direct["actions_enabled"], true);
    let payments = &state["components"][0];
    assert_eq!(
        payments["actions"],
        json!([
            "force_open",
            "force_closed",
            "disable",
            "metrics_only",
            "resume",
            "reset"
        ])
    );
    assert_eq!(
        state["components"][2]["actions"],
        json!(["force_on", "force_off", "automatic"])
    );
    assert_eq!(
        state["components"][3]["actions"],
        json!([]),
        "a check takes none"
    );
    let actions: Vec<(&str, &str, &str, &str)> = state["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "action")
        .map(|e| {
            let text = |f: &str| e[f].as_str().unwrap();
            (text("component"), text("from"), text("to"), text("reason"))
        })
        .collect();
    assert_eq!(
        actions,
        [
            (
                "payments",
                "forced_open",
                "closed",
                "operator action `resume`"
            ),
            (
                "payments",
                "closed",
                "forced_open",
                "operator action `force_open`"
            ),
        ]
    );
}

#[tokio::test]
async fn bad_actions_are_problems_that_change_nothing() {
    let f = fixture().await;
    let dashboard = Dashboard::builder(&f.health)
        .actions(ops_only)
        .build()
        .unwrap();
    let addr = serve(f.health.service().dashboard(dashboard)).await;
    let headers = page_headers(addr);
    for (query, status, detail) in [
        (
            "component=nobody&action=force_open",
            404,
            "no component of that name",
        ),
        (
            "component=payments&action=explode",
            400,
            "unknown action for this component",
        ),
        (
            "component=config&action=force_open",
            400,
            "unknown action for this component",
        ),
        ("action=force_open", 400, "missing parameter `component`"),
        ("component=payments", 400, "missing parameter `action`"),
        ("", 400, "missing parameter `component`"),
        (
            "component=hosts&action=force_open",
            400,
            "missing parameter `key`",
        ),
        (
            "component=hosts&action=force_open&key=db-9",
            404,
            "no breaker of that key",
        ),
        (
            "component=drain&action=stop",
            400,
            "unknown action for this component",
        ),
        (
            "component=%FF&action=force_open",
            400,
            "the query string is not percent-encoded UTF-8",
        ),
        (
            "component=pay%zzments&action=force_open",
            400,
            "the query string is not percent-encoded UTF-8",
        ),
    ] {
        let response = act(addr, query, &headers).await;
        assert_eq!(problem(&response, status), detail, "{query}");
    }
    assert_eq!(f.breaker.state(), State::Closed);
    assert!(!f.drain.is_draining());
}

#[tokio::test]
async fn keyed_switch_and_drain_actions() {
    let f = fixture().await;
    let dashboard = Dashboard::builder(&f.health)
        .actions(ops_only)
        .build()
        .unwrap();
    let addr = serve(f.health.service().dashboard(dashboard.clone())).await;
    let headers = page_headers(addr);
    let done = |response: http::Response<String>| {
        assert_eq!(
            response.status(),
            StatusCode::NO_CONTENT,
            "{}",
            response.body()
        );
    };

    // A key with a `/` and a space, percent-encoded as the page's `encodeURIComponent` does.
    done(
        act(
            addr,
            "component=hosts&action=force_open&key=db%2F1%20primary",
            &headers,
        )
        .await,
    );
    let key = |k: &str| f.keyed.get(&k.to_string()).unwrap().state();
    assert_eq!(
        (key("db/1 primary"), key("db-2")),
        (State::ForcedOpen, State::Closed)
    );
    done(
        act(
            addr,
            "component=hosts&action=reset&key=db/1+primary",
            &headers,
        )
        .await,
    );
    assert_eq!(key("db/1 primary"), State::Closed);

    let reviews = f.switches.switch("reviews").unwrap();
    done(act(addr, "component=shop%2Freviews&action=force_off", &headers).await);
    assert!(!reviews.is_on());
    done(act(addr, "component=shop/reviews&action=automatic", &headers).await);
    assert!(reviews.is_on());
    done(act(addr, "component=shop/reviews&action=force_on", &headers).await);
    assert_eq!(
        reviews.status().mode,
        tower_bulwark_degrade::Mode::Forced(0)
    );

    assert_eq!(get(addr, "/health/ready").await.status(), StatusCode::OK);
    done(act(addr, "component=drain&action=start", &headers).await);
    assert!(f.drain.is_draining());
    assert_eq!(
        get(addr, "/health/ready").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    let state: Value = serde_json::from_str(&dashboard.state_json()).unwrap();
    assert_eq!(state["drain"]["draining"], true);
    let reasons: Vec<&str> = state["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "action")
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "operator action `start`",
            // `force_on` of a switch that was on changed nothing: logged, not an event.
            "operator action `automatic`",
            "operator action `force_off`",
            "operator action `reset` on key db/1 primary",
            "operator action `force_open` on key db/1 primary",
        ]
    );
}

#[tokio::test]
async fn nothing_a_request_carries_comes_back() {
    let f = fixture().await;
    let dashboard = Dashboard::builder(&f.health)
        .actions(ops_only)
        .build()
        .unwrap();
    let addr = serve(f.health.service().dashboard(dashboard.clone())).await;
    let bearer = format!("Bearer {SECRET}");
    let mut headers = page_headers(addr);
    headers.push(("x-note", SECRET.to_string()));
    let with_secret: Vec<(&str, &str)> = vec![("authorization", &bearer), ("x-note", SECRET)];
    let mut answers = Vec::new();
    for path in [
        format!("/health/ui?q={SECRET}"),
        format!("/health/ui/state?q={SECRET}"),
        format!("/health/{SECRET}/ui/state"),
        format!("/health/{SECRET}"),
        format!("/health/ready?q={SECRET}"),
        format!("/health/ui/action?component={SECRET}&action=force_open"),
    ] {
        answers.push(send(addr, Method::GET, &path, &with_secret).await);
    }
    for query in [
        format!("component={SECRET}&action=force_open"),
        format!("component=payments&action={SECRET}"),
        format!("component=hosts&action=force_open&key={SECRET}"),
        format!("component=payments&action=force_open&q={SECRET}"),
        format!("component={SECRET}%FF&action=x"),
    ] {
        answers.push(act(addr, &query, &headers).await);
        let mut forged = headers.clone();
        forged.push(("origin", format!("https://{SECRET}.example")));
        answers.push(act(addr, &query, &forged).await);
    }
    answers.push(
        send(
            addr,
            Method::POST,
            &format!("/health/ui?{SECRET}"),
            &with_secret,
        )
        .await,
    );
    let statuses: Vec<u16> = answers.iter().map(|a| a.status().as_u16()).collect();
    assert!(statuses.contains(&204) && statuses.contains(&404) && statuses.contains(&400));
    for answer in &answers {
        assert!(!answer.body().contains(SECRET), "echoed: {}", answer.body());
        for (name, value) in answer.headers() {
            assert!(
                !value
                    .as_bytes()
                    .windows(SECRET.len())
                    .any(|w| w == SECRET.as_bytes()),
                "{name}"
            );
        }
    }
    let state = dashboard.state_json();
    assert!(!state.contains(SECRET), "{state}");
    assert!(
        state.contains("operator action `force_open`"),
        "the valid action is an event"
    );
}
