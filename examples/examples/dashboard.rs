//! The operator dashboard, live: an edge service whose backend fails on a cycle, every
//! part of its protection on one page.
//!
//! `cargo run --example dashboard [-- --seconds N]` (runs until Ctrl-C without
//! `--seconds`), then open the URL it prints.
//!
//! - The backend (axum, on loopback) answers in 5 ms, and fails (503, from the chaos layer)
//!   for 10 s of every 30 s.
//! - The edge (axum, behind `ServerPreset::http()`) calls it through
//!   `ClientPreset::http("backend")` (its breaker opens for 3 s after 5 failures in a row)
//!   on `/checkout`, and on `/recommendations` while the switch `edge/recommendations` is
//!   on; the switch goes off while the breaker is open and back on once it closes.
//! - The example loads the edge itself (about 40 requests a second) and prints a line
//!   every 5 s.
//! - Everything is registered with one `Health` registry (`register` on both presets,
//!   `add_switches`), whose dashboard is at `/health/ui`: watch the breaker open when the
//!   backend fails, the retry budget drain, the switch go off, and all come back.
//!
//! Operator actions (force a breaker open, a switch off, start the drain) are off unless a
//! request carries `Authorization: Bearer <token>`, with the token printed at start. The
//! page offers a field for it (kept in the tab's session storage and sent as that header);
//! with it the buttons appear. `curl` works too (the example prints the command). In your
//! own service, authorize actions the way the rest of your operator tools are: the
//! predicate sees the request head (headers, a TLS client identity in the extensions).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_bulwark::breaker::{BreakerHandle, CircuitBreakerLayer, OpenDuration};
use tower_bulwark::chaos::{ChaosHandle, ChaosLayer, HttpChaosLayer, HttpFault};
use tower_bulwark::degrade::{Signal, Switch, Switches, Threshold, Tiers};
use tower_bulwark::health::{Dashboard, DrainHandle, Health};
use tower_bulwark::presets::{ClientPreset, ServerPreset};
use tower_bulwark::{BoxError, HandleRejectionsLayer, HttpClassifier};

/// How long the backend works, then fails, in each cycle.
const HEALTHY: Duration = Duration::from_secs(20);
const FAILING: Duration = Duration::from_secs(10);

type HttpClient = Client<HttpConnector, Full<Bytes>>;
type Backend = BoxCloneSyncService<Request<Full<Bytes>>, Response<Bytes>, BoxError>;

/// `--seconds N`: how long to run; `None` until Ctrl-C.
fn seconds(args: impl IntoIterator<Item = String>) -> Result<Option<Duration>, BoxError> {
    let mut args = args.into_iter();
    let mut seconds = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let n: u64 = args.next().ok_or("--seconds needs a number")?.parse()?;
                if n == 0 {
                    return Err("--seconds must be at least 1".into());
                }
                seconds = Some(Duration::from_secs(n));
            }
            other => return Err(format!("unknown option {other}; see the file's docs").into()),
        }
    }
    Ok(seconds)
}

/// A token for this run: 128 bits from the standard library's per-process random keys.
/// Good for a demo on loopback; a real service authorizes operators as its other tools do.
fn token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let part = |salt: u64| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(salt);
        hasher.finish()
    };
    format!("{:016x}{:016x}", part(1), part(2))
}

/// Whether `request` carries `Authorization` equal to `expected`, compared in a time that
/// does not depend on where they differ.
fn authorized(request: &Parts, expected: &str) -> bool {
    let Some(given) = request.headers.get(AUTHORIZATION) else {
        return false;
    };
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
}

/// The backend: 5 ms per call; its chaos layer, when enabled, answers every call 503.
async fn backend() -> Result<(SocketAddr, ChaosHandle), BoxError> {
    let outage = HttpChaosLayer::new(ChaosLayer::builder().error_rate(1.0).disabled())?
        .answer(HttpFault::Status(StatusCode::SERVICE_UNAVAILABLE));
    let failing = outage.handle();
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                "tea, biscuits, jam"
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleRejectionsLayer::new())
                .layer(outage),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, failing))
}

/// Calls to `addr` over pooled connections, the response read whole.
fn transport(client: HttpClient, addr: SocketAddr) -> Backend {
    BoxCloneSyncService::new(service_fn(move |mut request: Request<Full<Bytes>>| {
        let client = client.clone();
        async move {
            *request.uri_mut() = format!("http://{addr}/").parse()?;
            let response = client.request(request).await?;
            let (head, body) = response.into_parts();
            Ok::<_, BoxError>(Response::from_parts(head, body.collect().await?.to_bytes()))
        }
    }))
}

#[derive(Clone)]
struct Edge {
    backend: Backend,
    recommendations: Switch,
}

impl Edge {
    async fn call_backend(&self) -> (StatusCode, String) {
        let request = Request::get("/").body(Full::default()).expect("a request");
        match self.backend.clone().oneshot(request).await {
            Ok(response) if response.status().is_success() => (
                StatusCode::OK,
                String::from_utf8_lossy(response.body()).into_owned(),
            ),
            Ok(response) => (
                StatusCode::BAD_GATEWAY,
                format!("backend answered {}", response.status()),
            ),
            Err(error) => (StatusCode::BAD_GATEWAY, format!("backend: {error}")),
        }
    }
}

/// Needs the backend.
async fn checkout(State(edge): State<Edge>) -> (StatusCode, String) {
    edge.call_backend().await
}

/// Needs the backend while the switch is on; answers without it, degraded, while off.
async fn recommendations(State(edge): State<Edge>) -> (StatusCode, String) {
    if !edge.recommendations.is_on() {
        return (StatusCode::OK, "trending items (degraded)".to_string());
    }
    edge.call_backend().await
}

/// What `start` built, for the load, the printout and the tests.
struct Running {
    edge: SocketAddr,
    token: String,
    failing: ChaosHandle,
    breaker: BreakerHandle,
    drain: DrainHandle,
    switches: Switches,
}

/// Starts the backend and the edge with its dashboard; nothing fails yet, no load.
async fn start() -> Result<Running, BoxError> {
    let (backend_addr, failing) = backend().await?;

    let mut client = ClientPreset::http("backend")?;
    client.breaker = CircuitBreakerLayer::builder()
        .name("backend")
        .consecutive_failures(5)
        .open_duration(OpenDuration::Fixed(Duration::from_secs(3)))
        .classify(HttpClassifier)
        .build()?;
    let breaker = client.breaker.handle();
    let pooled = Client::builder(TokioExecutor::new()).build_http();
    let backend = ServiceBuilder::new()
        .layer(client.layer())
        .service(transport(pooled, backend_addr));

    // Off while the breaker is open (1), back on once it is closed (0).
    let switches = Switches::builder()
        .name("edge")
        .tiers(
            Tiers::new(Signal::breaker(breaker.clone()))
                .tier("recommendations", Threshold::new(1.0, 0.0)),
        )
        .interval(Duration::from_millis(250))
        // Held 2 s at least (30 s by default), so that it follows the breaker in a demo.
        .min_dwell(Duration::from_secs(2))
        .build()?;
    let edge = Edge {
        backend: BoxCloneSyncService::new(backend),
        recommendations: switches.switch("recommendations").ok_or("no switch")?,
    };
    let server = ServerPreset::http()?;

    let health = Health::new();
    client.register(&health);
    server.register(&health);
    health.add_switches(&switches);
    let token = token();
    let expected = format!("Bearer {token}");
    let dashboard = Dashboard::builder(&health)
        .title("dashboard example: edge")
        .actions(move |request: &Parts| authorized(request, &expected))
        .build()?;

    let app = Router::new()
        .route("/checkout", get(checkout))
        .route("/recommendations", get(recommendations))
        .with_state(edge)
        .layer(server.layer())
        // Outside the server stack: health answers are neither shed nor drained.
        .nest_service("/health", health.service().dashboard(dashboard));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Running {
        edge: addr,
        token,
        failing,
        breaker,
        drain: server.drain.handle(),
        switches,
    })
}

/// The answers the load got.
#[derive(Default)]
struct Tally {
    checkout_ok: AtomicU64,
    checkout_failed: AtomicU64,
    fresh: AtomicU64,
    degraded: AtomicU64,
    refused: AtomicU64,
}

/// Sends about 40 requests a second to the edge, alternating its two routes.
fn load(edge: SocketAddr, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(25));
        let mut n = 0u64;
        while !stop.load(Relaxed) {
            tick.tick().await;
            n += 1;
            let path = if n % 2 == 0 {
                "/checkout"
            } else {
                "/recommendations"
            };
            let (client, tally) = (client.clone(), tally.clone());
            tokio::spawn(async move {
                let request = Request::get(format!("http://{edge}{path}"))
                    .body(Full::default())
                    .expect("a request");
                let answer = async {
                    let response = client.request(request).await?;
                    let status = response.status();
                    let body = response.into_body().collect().await?.to_bytes();
                    Ok::<_, BoxError>((status, body))
                };
                let counter = match (path, answer.await) {
                    (_, Ok((StatusCode::SERVICE_UNAVAILABLE, _))) => &tally.refused,
                    ("/checkout", Ok((status, _))) if status.is_success() => &tally.checkout_ok,
                    ("/checkout", _) => &tally.checkout_failed,
                    (_, Ok((status, body))) if status.is_success() => {
                        if body.ends_with(b"(degraded)") {
                            &tally.degraded
                        } else {
                            &tally.fresh
                        }
                    }
                    _ => &tally.checkout_failed,
                };
                counter.fetch_add(1, Relaxed);
            });
        }
    });
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let seconds = seconds(std::env::args().skip(1))?;
    let running = start().await?;
    let edge = running.edge;
    println!("dashboard: http://{edge}/health/ui");
    println!("edge:      http://{edge}/checkout and http://{edge}/recommendations");
    println!(
        "actions:   only for requests with `Authorization: Bearer {}` (type the token into the page's field), or for example",
        running.token
    );
    println!(
        "  curl -i -X POST -H 'Authorization: Bearer {}' -H 'X-Bulwark-Action: 1' 'http://{edge}/health/ui/action?component=backend%20breaker&action=force_open'",
        running.token
    );
    println!(
        "the backend fails for {} s of every {} s; {}",
        FAILING.as_secs(),
        (HEALTHY + FAILING).as_secs(),
        match seconds {
            Some(s) => format!("stopping after {} s", s.as_secs()),
            None => "Ctrl-C to stop".to_string(),
        }
    );

    // The backend's cycle: healthy, then failing.
    let failing = running.failing.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(HEALTHY).await;
            failing.enable();
            tokio::time::sleep(FAILING).await;
            failing.disable();
        }
    });

    let (tally, stop) = (Arc::new(Tally::default()), Arc::new(AtomicBool::new(false)));
    load(edge, tally.clone(), stop.clone());
    let started = Instant::now();
    let report = {
        let (tally, running_breaker, failing, switches) = (
            tally.clone(),
            running.breaker.clone(),
            running.failing.clone(),
            running.switches.clone(),
        );
        async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            every.tick().await;
            loop {
                every.tick().await;
                let switch = switches
                    .switch("recommendations")
                    .map_or("?".to_string(), |s| s.status().state());
                println!(
                    "[{:4.0}s] backend {:<7} breaker {:<9} recommendations {:<3} | checkout ok {} failed {} | recommendations fresh {} degraded {} | refused {}",
                    started.elapsed().as_secs_f64(),
                    if failing.is_enabled() { "failing" } else { "up" },
                    running_breaker.state().to_string(),
                    switch,
                    tally.checkout_ok.load(Relaxed),
                    tally.checkout_failed.load(Relaxed),
                    tally.fresh.load(Relaxed),
                    tally.degraded.load(Relaxed),
                    tally.refused.load(Relaxed),
                );
            }
        }
    };
    let reporting = tokio::spawn(report);

    match seconds {
        Some(limit) => tokio::time::sleep(limit).await,
        None => tokio::signal::ctrl_c().await?,
    }
    stop.store(true, Relaxed);
    reporting.abort();
    // A graceful end: the drain refuses new requests and readiness turns false; the calls
    // in flight finish (at most 5 s).
    running.drain.drain();
    let deadline = Instant::now() + Duration::from_secs(5);
    while running.drain.in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "drained; checkout ok {} failed {}, recommendations fresh {} degraded {}, refused {}",
        tally.checkout_ok.load(Relaxed),
        tally.checkout_failed.load(Relaxed),
        tally.fresh.load(Relaxed),
        tally.degraded.load(Relaxed),
        tally.refused.load(Relaxed),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(authorization: Option<&str>) -> Parts {
        let mut request = Request::post("/health/ui/action");
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn only_the_exact_bearer_token_authorizes() {
        let expected = "Bearer 0123abcd";
        assert!(authorized(&head(Some("Bearer 0123abcd")), expected));
        assert!(!authorized(&head(None), expected));
        assert!(!authorized(&head(Some("Bearer 0123abce")), expected));
        assert!(!authorized(&head(Some("Bearer 0123abc")), expected));
        assert!(!authorized(&head(Some("Bearer 0123abcdd")), expected));
        assert!(!authorized(&head(Some("bearer 0123abcd")), expected));
        assert!(!authorized(&head(Some("")), expected));
    }

    #[test]
    fn tokens_differ_and_are_128_bits_of_hex() {
        let (a, b) = (token(), token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn seconds_option() {
        let args = |list: &[&str]| seconds(list.iter().map(|s| s.to_string()));
        assert_eq!(args(&[]).unwrap(), None);
        assert_eq!(
            args(&["--seconds", "7"]).unwrap(),
            Some(Duration::from_secs(7))
        );
        assert!(args(&["--seconds", "0"]).is_err());
        assert!(args(&["--seconds"]).is_err());
        assert!(args(&["--seconds", "-1"]).is_err());
        assert!(args(&["--minutes", "1"]).is_err());
    }

    /// One request to the edge: status and body.
    async fn send(
        addr: SocketAddr,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = client
            .request(request.body(Full::default()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn everything_is_on_the_dashboard_and_actions_need_the_token() {
        let running = start().await.unwrap();
        let edge = running.edge;
        let (status, body) = send(edge, http::Method::GET, "/checkout", &[]).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "tea, biscuits, jam")
        );

        let (status, page) = send(edge, http::Method::GET, "/health/ui", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("<html"), "{page}");
        let (status, state) = send(edge, http::Method::GET, "/health/ui/state", &[]).await;
        assert_eq!(status, StatusCode::OK);
        let state: serde_json::Value = serde_json::from_str(&state).unwrap();
        let kinds: Vec<(&str, &str)> = state["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["kind"].as_str().unwrap()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("backend breaker", "breaker"),
                ("backend bulkhead", "bulkhead"),
                ("backend retry budget", "budget"),
                ("server shed", "shed"),
                ("edge/recommendations", "switch"),
            ]
        );
        assert_eq!(state["actions_enabled"], true);
        assert_eq!(state["actions"], false, "no token, no buttons");
        assert_eq!(state["drain"]["draining"], false);

        let action = "/health/ui/action?component=backend%20breaker&action=force_open";
        let bearer = format!("Bearer {}", running.token);
        let marker = ("x-bulwark-action", "1");
        let (status, _) = send(edge, http::Method::POST, action, &[marker]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "no token");
        let wrong = [marker, ("authorization", "Bearer wrong")];
        let (status, _) = send(edge, http::Method::POST, action, &wrong).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "a wrong token");
        let no_marker = [("authorization", bearer.as_str())];
        let (status, _) = send(edge, http::Method::POST, action, &no_marker).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "no cross-site marker");
        assert_eq!(running.breaker.state().to_string(), "closed");

        let allowed = [marker, ("authorization", bearer.as_str())];
        let (status, _) = send(edge, http::Method::POST, action, &allowed).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(running.breaker.state().to_string(), "forced_open");
        // The breaker refuses: checkout fails, without a call to the backend.
        let (status, body) = send(edge, http::Method::GET, "/checkout", &[]).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert!(!running.failing.is_enabled());
    }
}
