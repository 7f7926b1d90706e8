//! Rate limits through the umbrella crate over real HTTP: `key::peer_ip` behind axum, and
//! the limit composed in `ServerPreset::layer_with` with the preset's shed layer and, on
//! the client side, with `ClientPreset::http` (rows of `docs/composition.md`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{HeaderName, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tower::{service_fn, ServiceExt};
use tower_bulwark::breaker::State;
use tower_bulwark::presets::{ClientPreset, ServerPreset};
use tower_bulwark::ratelimit::{key, Quota, RateLimitLayer};
use tower_bulwark::shed::{RttEstimates, ShedHandle};
use tower_bulwark::{find_rejection, BoxError, RejectionKind};
use tower_bulwark_tests::{get as get_with, send, serve_axum, Received, Still};

const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

fn header<'a>(received: &'a Received, name: &str) -> Option<&'a str> {
    received.head.headers.get(name).map(|v| v.to_str().unwrap())
}

// === key::peer_ip behind axum ===

fn per_hour(limit: u32, name: &'static str) -> Quota {
    Quota::per_window(limit, Duration::from_secs(3600))
        .unwrap()
        .name(name)
}

fn limited_by_peer_ip() -> Router {
    let layer = RateLimitLayer::local(per_hour(1, "per-ip"), key::peer_ip)
        .unwrap()
        .build()
        .unwrap();
    Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer)
}

/// `key::peer_ip` reads axum's `ConnectInfo`, which the umbrella's `ratelimit` feature
/// must enable (ratelimit's `axum` feature): without it every request would pass.
#[tokio::test]
async fn peer_ip_limits_an_axum_app_served_with_connect_info() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = limited_by_peer_ip().into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let first = send(addr, get_with("/", &[])).await;
    assert_eq!(first.head.status, StatusCode::OK);
    assert_eq!(header(&first, "ratelimit"), Some(r#""per-ip";r=0;t=3600"#));
    // A new connection, from another port of the same address: the same key.
    let second = send(addr, get_with("/", &[])).await;
    assert_eq!(second.head.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&second, "ratelimit-policy"),
        Some(r#""per-ip";q=1;w=3600"#)
    );
    let retry_after: u64 = header(&second, "retry-after").unwrap().parse().unwrap();
    assert!((3599..=3600).contains(&retry_after), "{retry_after}");
}

/// Served without `ConnectInfo`, `peer_ip` finds no address: as documented, such requests
/// pass untouched (no limit, no headers).
#[tokio::test]
async fn peer_ip_without_connect_info_limits_nothing() {
    let addr = serve_axum(limited_by_peer_ip()).await;
    for _ in 0..3 {
        let response = send(addr, get_with("/", &[])).await;
        assert_eq!(response.head.status, StatusCode::OK);
        assert_eq!(header(&response, "ratelimit"), None);
    }
}

// === the limit in ServerPreset::layer_with ===

/// An API behind `ServerPreset::http()` with `quota` per `x-api-key` in `layer_with`.
/// `/` counts the calls it serves; `/hold` waits for `release` (after a permit on
/// `entered`).
struct Api {
    addr: SocketAddr,
    served: Arc<AtomicUsize>,
    shed: ShedHandle,
    entered: Arc<Semaphore>,
    release: Arc<Notify>,
}

async fn api(quota: Quota) -> Api {
    let preset = ServerPreset::http().unwrap();
    let per_key = RateLimitLayer::local(quota, key::header(API_KEY))
        .unwrap()
        .build()
        .unwrap();
    let (served, entered, release) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Semaphore::new(0)),
        Arc::new(Notify::new()),
    );
    let hold = {
        let (entered, release) = (entered.clone(), release.clone());
        move || {
            let (entered, release) = (entered.clone(), release.clone());
            async move {
                let released = release.notified();
                entered.add_permits(1);
                released.await;
                "held"
            }
        }
    };
    let count = served.clone();
    let app = Router::new()
        .route(
            "/",
            get(move || {
                count.fetch_add(1, SeqCst);
                async { "hello" }
            }),
        )
        .route("/hold", get(hold))
        .layer(preset.layer_with(per_key));
    Api {
        addr: serve_axum(app).await,
        served,
        shed: preset.shed.handle(),
        entered,
        release,
    }
}

/// `send`, with the paused clock held still while the request travels.
async fn send_still(still: &Still, addr: SocketAddr, request: Request<Full<Bytes>>) -> Received {
    still.hold();
    let received = send(addr, request).await;
    still.release();
    received
}

#[tokio::test(start_paused = true)]
async fn a_refusal_through_the_server_preset_carries_retry_after_and_the_ratelimit_headers() {
    let api = api(Quota::per_second(5).unwrap().name("api")).await;
    let still = Still::default();
    for remaining in (0..5).rev() {
        let admitted = send_still(&still, api.addr, get_with("/", &[("x-api-key", "a")])).await;
        assert_eq!(admitted.head.status, StatusCode::OK);
        assert_eq!(header(&admitted, "retry-after"), None);
        assert_eq!(
            header(&admitted, "ratelimit-policy"),
            Some(r#""api";q=5;w=1"#)
        );
        let state = format!(r#""api";r={remaining};t=1"#);
        assert_eq!(header(&admitted, "ratelimit"), Some(&*state));
    }

    let refused = send_still(&still, api.addr, get_with("/", &[("x-api-key", "a")])).await;
    assert_eq!(refused.head.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&refused, "retry-after"),
        Some("1"),
        "200 ms, rounded up"
    );
    assert_eq!(
        header(&refused, "ratelimit-policy"),
        Some(r#""api";q=5;w=1"#)
    );
    assert_eq!(header(&refused, "ratelimit"), Some(r#""api";r=0;t=1"#));
    assert_eq!(
        header(&refused, "x-bulwark-overloaded"),
        None,
        "a rate limit is not a shed: over the wire it is composition.md's plain HTTP 429 row"
    );
    assert_eq!(&refused.body[..], b"");
    assert_eq!(
        api.served.load(SeqCst),
        5,
        "the refusal never reached the handler"
    );

    let other = send_still(&still, api.addr, get_with("/", &[("x-api-key", "b")])).await;
    assert_eq!(
        other.head.status,
        StatusCode::OK,
        "each key has its own limit"
    );
    assert_eq!(header(&other, "ratelimit"), Some(r#""api";r=4;t=1"#));
}

/// `layer_with` puts the limit before load shedding: an over-limit request is refused with
/// 429 while the shed layer is full, without taking (or being refused) a shed slot.
#[tokio::test]
async fn an_over_limit_request_is_refused_before_it_takes_a_shed_slot() {
    let api = api(per_hour(1, "api")).await;
    let spent = send(api.addr, get_with("/", &[("x-api-key", "a")])).await;
    assert_eq!(spent.head.status, StatusCode::OK);
    // The shed layer full: its limit at 1 (no window closes while the test runs, so the
    // algorithm leaves it there), the one place held by a call that hangs.
    api.shed.set_limit(1);
    let held = tokio::spawn(send(api.addr, get_with("/hold", &[])));
    api.entered.acquire().await.unwrap().forget();

    let refused = send(api.addr, get_with("/", &[("x-api-key", "a")])).await;
    assert_eq!(refused.head.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&refused, "ratelimit"), Some(r#""api";r=0;t=3600"#));
    assert_eq!(
        api.shed.snapshot().shed,
        [0; 4],
        "never reached the shed layer"
    );
    // The control: a request the limit admits meets the full shed layer.
    let shed = send(api.addr, get_with("/", &[("x-api-key", "b")])).await;
    assert_eq!(shed.head.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&shed, "x-bulwark-overloaded"), Some("true"));
    assert_eq!(api.shed.snapshot().shed.iter().sum::<u64>(), 1);
    assert_eq!(api.served.load(SeqCst), 1);

    api.release.notify_waiters();
    assert_eq!(held.await.unwrap().head.status, StatusCode::OK);
}

/// A 429 of the limit is no sample for the preset's adaptive shed limit (not a drop, not
/// a success): enough of them to close a window (10 calls over 50 ms) leave the limit and
/// its latency estimates untouched, while as many admitted calls are learned from.
#[tokio::test(start_paused = true)]
async fn a_rate_limit_refusal_is_no_sample_for_the_presets_shed_limit() {
    let api = api(Quota::per_minute(1).unwrap().name("api")).await;
    let still = Still::default();
    let before = api.shed.snapshot();
    assert_eq!((before.limit, before.rtt), (20, RttEstimates::default()));
    let admitted = send_still(&still, api.addr, get_with("/", &[("x-api-key", "a")])).await;
    assert_eq!(admitted.head.status, StatusCode::OK);
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let refused = send_still(&still, api.addr, get_with("/", &[("x-api-key", "a")])).await;
        assert_eq!(refused.head.status, StatusCode::TOO_MANY_REQUESTS);
    }
    let after = api.shed.snapshot();
    assert_eq!(after.limit, 20, "no window closed");
    assert_eq!(after.rtt, RttEstimates::default(), "nothing learned");
    assert_eq!((after.in_flight, after.shed), (0, [0; 4]));

    // The control: requests without a key pass the limit, and the shed layer learns.
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let passed = send_still(&still, api.addr, get_with("/", &[])).await;
        assert_eq!(passed.head.status, StatusCode::OK);
        assert_eq!(header(&passed, "ratelimit"), None);
    }
    assert!(
        api.shed.snapshot().rtt.short.is_some(),
        "a window of admitted calls is a sample"
    );
}

// === ClientPreset::http against the limit, over the wire ===

/// What the transport saw of each attempt: the breaker's failures in a row when it left,
/// and the status it got.
type Attempts = Arc<Mutex<Vec<(u32, u16)>>>;

/// `ClientPreset::http` around hyper-util's pooled client, every request as key `a`;
/// the clock held still while an attempt travels.
fn client(
    preset: &ClientPreset<tower_bulwark::retry::HttpRetry, tower_bulwark::HttpClassifier>,
    addr: SocketAddr,
    attempts: Attempts,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = http::Response<Bytes>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let (breaker, still) = (preset.breaker.handle(), Still::default());
    let transport = service_fn(move |mut request: Request<Full<Bytes>>| {
        let (hyper, breaker, still, attempts) = (
            hyper.clone(),
            breaker.clone(),
            still.clone(),
            attempts.clone(),
        );
        async move {
            *request.uri_mut() = format!("http://{addr}/").parse()?;
            request
                .headers_mut()
                .insert(API_KEY, http::HeaderValue::from_static("a"));
            let failures = breaker.snapshot().consecutive_failures;
            still.hold();
            let answer = async {
                let (head, body) = hyper.request(request).await?.into_parts();
                Ok::<_, BoxError>(http::Response::from_parts(
                    head,
                    body.collect().await?.to_bytes(),
                ))
            }
            .await;
            still.release();
            let answer = answer?;
            attempts
                .lock()
                .unwrap()
                .push((failures, answer.status().as_u16()));
            Ok::<_, BoxError>(answer)
        }
    });
    preset.layer().service(transport)
}

fn root() -> Request<Full<Bytes>> {
    Request::get("/").body(Full::default()).unwrap()
}

/// composition.md, row `HTTP 429`: the breaker counts it as a failure, and `HttpRetry`
/// retries it after `Retry-After` (the policy waits at most 5 s). Against a limit of 1 a
/// second, each call over it is refused, counted, retried a second later and served:
/// the success ends the streak, so repeated 429s never open the breaker.
#[tokio::test(start_paused = true)]
async fn the_client_preset_retries_a_429_after_retry_after_and_its_breaker_stays_closed() {
    let api = api(Quota::per_second(1).unwrap().name("api")).await;
    let preset = ClientPreset::http("api").unwrap();
    let breaker = preset.breaker.handle();
    let attempts = Attempts::default();
    let service = client(&preset, api.addr, attempts.clone());

    let first = service.clone().oneshot(root()).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    for call in 1..=6 {
        let started = Instant::now();
        let response = service.clone().oneshot(root()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "call {call}");
        let took = started.elapsed();
        assert!(
            (Duration::from_secs(1)..=Duration::from_millis(1001)).contains(&took),
            "call {call}: the 1 s of Retry-After, not the 50 ms backoff: {took:?}"
        );
        assert_eq!(breaker.snapshot().state, State::Closed, "call {call}");
    }
    let mut expected = vec![(0, 200)];
    for _ in 1..=6 {
        // The 429 left with no failure in a row and was counted: its retry left with one.
        expected.extend([(0, 429), (1, 200)]);
    }
    assert_eq!(*attempts.lock().unwrap(), expected);
    assert_eq!(breaker.snapshot().consecutive_failures, 0);
    assert_eq!(api.served.load(SeqCst), 7);
}

/// composition.md, row `HTTP 429`, when the pushback is past the retry policy's longest
/// wait (5 s): not retried, the 429 reaches the caller, and each one is a breaker failure;
/// five in a row open the preset's breaker (`consecutive_failures(5)`), and the next call
/// is refused at home (`CircuitOpen`), never sent.
#[tokio::test(start_paused = true)]
async fn a_429_with_a_retry_after_past_the_retry_policys_wait_is_a_breaker_failure() {
    let api = api(Quota::per_minute(1).unwrap().name("api")).await;
    let preset = ClientPreset::http("api").unwrap();
    let breaker = preset.breaker.handle();
    let attempts = Attempts::default();
    let service = client(&preset, api.addr, attempts.clone());

    let started = Instant::now();
    assert_eq!(service.clone().oneshot(root()).await.unwrap().status(), 200);
    for failures in 1..=5 {
        let refused = service.clone().oneshot(root()).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()["retry-after"], "60");
        assert_eq!(refused.headers()["ratelimit"], r#""api";r=0;t=60"#);
        assert_eq!(breaker.snapshot().consecutive_failures, failures);
    }
    assert_eq!(breaker.snapshot().state, State::Open);
    let error = service.oneshot(root()).await.unwrap_err();
    assert_eq!(
        find_rejection(&error).unwrap().kind(),
        RejectionKind::CircuitOpen
    );
    assert_eq!(started.elapsed(), Duration::ZERO, "no retry waited");
    let expected: Vec<(u32, u16)> = [(0, 200)]
        .into_iter()
        .chain((0..5).map(|failures| (failures, 429)))
        .collect();
    assert_eq!(*attempts.lock().unwrap(), expected, "one attempt each");
    assert_eq!(api.served.load(SeqCst), 1);
}
