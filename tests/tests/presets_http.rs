//! The presets end to end over real HTTP, and the interactions that only show up when the
//! layers work together.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Full};
use tokio::sync::{Notify, Semaphore};
use tower::{service_fn, Layer, ServiceBuilder, ServiceExt};
use tower_bulwark::breaker::State;
use tower_bulwark::deadline::CarryDeadlineLayer;
use tower_bulwark::fallback::FallbackLayer;
use tower_bulwark::presets::{ClientPreset, ServerPreset};
use tower_bulwark::shed::{Fixed, FromRequest, ShedLayer};
use tower_bulwark::{find_rejection, BoxError, Deadline, HttpClassifier, RejectionKind};
use tower_bulwark_tests::{get as get_with, send, serve_axum, Still};

/// A server behind the server preset whose `/` answers with `status` and counts hits; it
/// records the `x-request-timeout-ms` it receives.
async fn server(
    status: Arc<Mutex<StatusCode>>,
    hits: Arc<AtomicUsize>,
    seen_timeout: Arc<Mutex<Option<String>>>,
    preset: &ServerPreset<HttpClassifier>,
) -> std::net::SocketAddr {
    let app = Router::new()
        .route(
            "/",
            get(move |headers: HeaderMap| {
                let (status, hits, seen) = (status.clone(), hits.clone(), seen_timeout.clone());
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    *seen.lock().unwrap() = headers
                        .get("x-request-timeout-ms")
                        .map(|v| v.to_str().unwrap().to_string());
                    (*status.lock().unwrap(), "body")
                }
            }),
        )
        .layer(preset.layer());
    serve_axum(app).await
}

/// The client preset around a real HTTP/1 transport.
fn transport(
    addr: std::net::SocketAddr,
) -> impl tower::Service<
    http::Request<Full<Bytes>>,
    Response = http::Response<Bytes>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    service_fn(move |request: http::Request<Full<Bytes>>| async move {
        let received = send(addr, request).await;
        Ok::<_, BoxError>(http::Response::from_parts(received.head, received.body))
    })
}

fn get_root() -> http::Request<Full<Bytes>> {
    http::Request::get("/").body(Full::default()).unwrap()
}

struct Fixture {
    status: Arc<Mutex<StatusCode>>,
    hits: Arc<AtomicUsize>,
    seen_timeout: Arc<Mutex<Option<String>>>,
    addr: std::net::SocketAddr,
}

async fn fixture(preset: &ServerPreset<HttpClassifier>) -> Fixture {
    let status = Arc::new(Mutex::new(StatusCode::OK));
    let hits = Arc::new(AtomicUsize::new(0));
    let seen_timeout = Arc::new(Mutex::new(None));
    let addr = server(status.clone(), hits.clone(), seen_timeout.clone(), preset).await;
    Fixture {
        status,
        hits,
        seen_timeout,
        addr,
    }
}

#[tokio::test]
async fn the_presets_serve_and_pass_the_deadline_on() {
    let server = ServerPreset::http().unwrap();
    let f = fixture(&server).await;
    let client = ClientPreset::http("backend").unwrap();
    let service = client.layer().service(transport(f.addr));
    let response = Deadline::after(Duration::from_secs(2))
        .scope(service.oneshot(get_root()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let sent: u64 = f
        .seen_timeout
        .lock()
        .unwrap()
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1_800..=1_900).contains(&sent), "95% of 2 s: {sent}");
}

#[tokio::test]
async fn retries_stop_when_the_breaker_opens() {
    let server = ServerPreset::http().unwrap();
    let f = fixture(&server).await;
    *f.status.lock().unwrap() = StatusCode::SERVICE_UNAVAILABLE;
    let mut client = ClientPreset::http("backend").unwrap();
    client.retry = tower_bulwark::retry::RetryPolicy::builder()
        .max_attempts(3)
        .backoff(
            tower_bulwark::retry::Backoff::Constant(Duration::from_millis(1)),
            tower_bulwark::retry::Jitter::None,
        )
        .classify(tower_bulwark::retry::SkipRejections(
            tower_bulwark::retry::HttpRetry::default(),
        ))
        .build()
        .unwrap();
    let breaker = client.breaker.handle();
    let service = client.layer().service(transport(f.addr));
    // The breaker opens after 5 consecutive failures: the first call makes 3 attempts, the
    // second 2 more and then is refused by the open breaker, which is not retried.
    for _ in 0..4 {
        let _ = service.clone().oneshot(get_root()).await;
    }
    assert_eq!(breaker.snapshot().state, State::Open);
    assert_eq!(
        f.hits.load(Ordering::SeqCst),
        5,
        "no attempt after the breaker opened"
    );
    let error = service.oneshot(get_root()).await.unwrap_err();
    assert_eq!(
        find_rejection(&error).unwrap().kind(),
        RejectionKind::CircuitOpen
    );
    assert_eq!(f.hits.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_fallback_serves_while_the_breaker_is_open() {
    let server = ServerPreset::http().unwrap();
    let f = fixture(&server).await;
    let client = ClientPreset::http("backend").unwrap();
    let breaker = client.breaker.handle();
    let fallback = FallbackLayer::builder()
        .last_good(Duration::from_secs(60), 10)
        .classify(HttpClassifier)
        .build()
        .unwrap();
    let service = fallback.layer(client.layer().service(transport(f.addr)));
    assert_eq!(
        service.clone().oneshot(get_root()).await.unwrap().status(),
        200
    );
    breaker.force_open();
    let degraded = service.oneshot(get_root()).await.unwrap();
    assert_eq!(degraded.status(), 200);
    assert_eq!(degraded.headers()["x-bulwark-degraded"], "last-good");
    assert_eq!(
        f.hits.load(Ordering::SeqCst),
        1,
        "the open breaker kept the call home"
    );
}

#[tokio::test]
async fn a_shed_response_is_not_retried_upstream() {
    let mut server = ServerPreset::http().unwrap();
    server.shed = ShedLayer::builder()
        .fixed(Fixed::new(1).unwrap())
        .criticality(FromRequest::default())
        .classify(HttpClassifier)
        .build()
        .unwrap();
    // Hold the only place with a call that hangs.
    let hang = Arc::new(tokio::sync::Notify::new());
    let entered = Arc::new(tokio::sync::Semaphore::new(0));
    let hits = Arc::new(AtomicUsize::new(0));
    let app = {
        let (hang, entered, hits) = (hang.clone(), entered.clone(), hits.clone());
        Router::new()
            .route(
                "/hold",
                get(move || {
                    let (hang, entered) = (hang.clone(), entered.clone());
                    async move {
                        let waiting = hang.notified();
                        entered.add_permits(1);
                        waiting.await;
                        "held"
                    }
                }),
            )
            .route(
                "/",
                get(move || {
                    hits.fetch_add(1, Ordering::SeqCst);
                    async { "ok" }
                }),
            )
            .layer(server.layer())
    };
    let addr = serve_axum(app).await;
    let hold = http::Request::get("/hold")
        .body(Full::<Bytes>::default())
        .unwrap();
    let held = tokio::spawn(send(addr, hold));
    entered.acquire().await.unwrap().forget();

    let client = ClientPreset::http("backend").unwrap();
    let response = client
        .layer()
        .service(transport(addr))
        .oneshot(get_root())
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["x-bulwark-overloaded"], "true");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "shed before the handler, and not retried"
    );
    hang.notify_waiters();
    held.await.unwrap();
}

/// A server behind `preset` whose `/hold` answers `"held"` once `release` is notified (it
/// adds a permit to `entered` when the call is in the handler), and `/` answers at once.
async fn holding_server(
    preset: &ServerPreset<HttpClassifier>,
    entered: Arc<Semaphore>,
    release: Arc<Notify>,
) -> std::net::SocketAddr {
    let hold = move || {
        let (entered, release) = (entered.clone(), release.clone());
        async move {
            let released = release.notified();
            entered.add_permits(1);
            released.await;
            "held"
        }
    };
    let app = Router::new()
        .route("/hold", get(hold))
        .route("/", get(|| async { "ok" }))
        .layer(preset.layer());
    serve_axum(app).await
}

#[tokio::test]
async fn draining_refuses_new_calls_while_the_call_in_flight_finishes() {
    let server = ServerPreset::http().unwrap();
    let drain = server.drain.handle();
    let (entered, release) = (Arc::new(Semaphore::new(0)), Arc::new(Notify::new()));
    let addr = holding_server(&server, entered.clone(), release.clone()).await;
    let held = tokio::spawn(send(addr, get_with("/hold", &[])));
    entered.acquire().await.unwrap().forget();
    assert_eq!(drain.in_flight(), 1, "the held call");

    drain.drain();
    let refused = send(addr, get_root()).await;
    assert_eq!(refused.head.status, 503);
    assert_eq!(refused.head.headers["connection"], "close");
    assert_eq!(drain.in_flight(), 1, "the refused call is not counted");
    let drained = tokio::spawn({
        let drain = drain.clone();
        async move { drain.drained(Duration::from_secs(60)).await }
    });
    tokio::task::yield_now().await;
    assert!(!drained.is_finished(), "the held call is still in flight");

    release.notify_waiters();
    let finished = held.await.unwrap();
    assert_eq!(finished.head.status, 200);
    assert_eq!(&finished.body[..], b"held");
    assert_eq!(drained.await.unwrap().cut, 0);
    assert_eq!(drain.in_flight(), 0);
}

#[tokio::test]
async fn a_streaming_response_holds_the_drain_until_its_body_ends() {
    let server = ServerPreset::http().unwrap();
    let drain = server.drain.handle();
    let (mut sender, body) = Channel::<Bytes, Infallible>::new(1);
    let body = Arc::new(Mutex::new(Some(body)));
    let stream = move || {
        let body = body.lock().unwrap().take().expect("called once");
        async move { axum::body::Body::new(body) }
    };
    let addr = serve_axum(
        Router::new()
            .route("/stream", get(stream))
            .layer(server.layer()),
    )
    .await;

    let connection = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut client, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(connection))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = client.send_request(get_with("/stream", &[])).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(drain.in_flight(), 1, "the head is sent, the body is not");

    drain.drain();
    let drained = tokio::spawn({
        let drain = drain.clone();
        async move { drain.drained(Duration::from_secs(60)).await }
    });
    sender
        .send_data(Bytes::from_static(b"first "))
        .await
        .unwrap();
    tokio::task::yield_now().await;
    assert!(!drained.is_finished(), "the body still streams");
    assert_eq!(drain.in_flight(), 1);
    sender.send_data(Bytes::from_static(b"last")).await.unwrap();
    drop(sender);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"first last");
    assert_eq!(drained.await.unwrap().cut, 0);
    assert_eq!(drain.in_flight(), 0);
}

// === the client preset as shipped, over real HTTP in paused time ===

/// A backend whose `/` records the `x-request-timeout-ms` of each call and answers "ok",
/// except the calls (numbered from 1) for which `hangs` is true: those never answer.
struct Slow {
    addr: std::net::SocketAddr,
    sent: Arc<Mutex<Vec<Option<u64>>>>,
    still: Still,
}

async fn slow_backend(hangs: fn(usize) -> bool) -> Slow {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let still = Still::default();
    let app = Router::new().route(
        "/",
        get({
            let (sent, still) = (sent.clone(), still.clone());
            move |headers: HeaderMap| {
                let (sent, still) = (sent.clone(), still.clone());
                async move {
                    let timeout = headers
                        .get("x-request-timeout-ms")
                        .map(|v| v.to_str().unwrap().parse().unwrap());
                    let n = {
                        let mut sent = sent.lock().unwrap();
                        sent.push(timeout);
                        sent.len()
                    };
                    if hangs(n) {
                        still.release();
                        std::future::pending::<()>().await;
                    }
                    "ok"
                }
            }
        }),
    );
    Slow {
        addr: serve_axum(app).await,
        sent,
        still,
    }
}

/// A real HTTP/1 transport to `backend` that holds the clock still while it waits.
fn still_transport(
    backend: &Slow,
) -> impl tower::Service<
    http::Request<Full<Bytes>>,
    Response = http::Response<Bytes>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    let (addr, still) = (backend.addr, backend.still.clone());
    service_fn(move |request: http::Request<Full<Bytes>>| {
        let still = still.clone();
        async move {
            still.hold();
            let received = send(addr, request).await;
            still.release();
            Ok::<_, BoxError>(http::Response::from_parts(received.head, received.body))
        }
    })
}

fn sent(backend: &Slow) -> Vec<Option<u64>> {
    backend.sent.lock().unwrap().clone()
}

#[tokio::test(start_paused = true)]
async fn the_presets_attempt_timeout_is_retried_within_the_callers_deadline() {
    let backend = slow_backend(|n| n == 1).await;
    let client = ClientPreset::http("backend").unwrap();
    let breaker = client.breaker.handle();
    let service = client.layer().service(still_transport(&backend));

    let started = tokio::time::Instant::now();
    let response = Deadline::after(Duration::from_secs(30))
        .scope(service.oneshot(get_root()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(&response.body()[..], b"ok");
    // The first attempt ended at its 10 s timeout; the retry waited its backoff (at most
    // 50 ms, full jitter) and was answered at once.
    let elapsed = started.elapsed();
    assert!(
        (Duration::from_secs(10)..=Duration::from_millis(10_050)).contains(&elapsed),
        "{elapsed:?}"
    );
    let sent = sent(&backend);
    assert_eq!(sent.len(), 2, "the attempt that timed out, and one retry");
    assert_eq!(sent[0], Some(28_500), "95% of 30 s");
    // The retry was sent what was left: 95% of 30 s less the elapsed time.
    let left = Duration::from_secs(30) - elapsed;
    assert_eq!(sent[1], Some((left.as_millis() as u64 * 95) / 100));
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, State::Closed);
    assert_eq!(snapshot.consecutive_failures, 0, "the retry succeeded");
}

#[tokio::test(start_paused = true)]
async fn the_presets_attempt_timeouts_stop_at_the_callers_deadline() {
    let backend = slow_backend(|_| true).await;
    let client = ClientPreset::http("backend").unwrap();
    let breaker = client.breaker.handle();
    let service = client.layer().service(still_transport(&backend));

    let started = tokio::time::Instant::now();
    let error = Deadline::after(Duration::from_secs(15))
        .scope(service.oneshot(get_root()))
        .await
        .unwrap_err();
    // The first attempt timed out at 10 s and was retried; the retry had only what was
    // left, and its end is the caller's deadline: not retried, and not a failure.
    assert_eq!(
        find_rejection(&error).unwrap().kind(),
        RejectionKind::DeadlineExceeded
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let sent = sent(&backend);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], Some(14_250));
    assert!(sent[1].unwrap() <= 4_750, "{sent:?}");
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.consecutive_failures, 1, "only the attempt timeout");
    assert_eq!(snapshot.state, State::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_presets_attempt_timeouts_stop_after_three_attempts() {
    let backend = slow_backend(|_| true).await;
    let client = ClientPreset::http("backend").unwrap();
    let breaker = client.breaker.handle();
    let service = client.layer().service(still_transport(&backend));

    let started = tokio::time::Instant::now();
    let error = service.oneshot(get_root()).await.unwrap_err();
    assert_eq!(
        find_rejection(&error).unwrap().kind(),
        RejectionKind::TimedOut
    );
    // Three attempts of 10 s, and two backoffs of at most 50 and 100 ms.
    let elapsed = started.elapsed();
    assert!(
        (Duration::from_secs(30)..=Duration::from_millis(30_150)).contains(&elapsed),
        "{elapsed:?}"
    );
    assert_eq!(sent(&backend), [None, None, None], "no deadline, none sent");
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.consecutive_failures, 3);
    assert_eq!(snapshot.state, State::Closed, "it opens after 5");
}

/// The preset's bulkhead (100 calls in flight, no queue) full: every further call is
/// refused at once, not retried, and the breaker above it counts none of the refusals.
#[tokio::test]
async fn the_presets_full_bulkhead_never_opens_its_breaker() {
    // A plain server: the server preset's shedding would refuse most of 100 held calls.
    let (entered, release) = (Arc::new(Semaphore::new(0)), Arc::new(Notify::new()));
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
    let hits = Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    let app = Router::new().route("/hold", get(hold)).route(
        "/",
        get(move || {
            count.fetch_add(1, Ordering::SeqCst);
            async { "ok" }
        }),
    );
    let addr = serve_axum(app).await;
    let client = ClientPreset::http("backend").unwrap();
    let (breaker, bulkhead) = (client.breaker.handle(), client.bulkhead.handle());
    let service = client.layer().service(transport(addr));

    let held: Vec<_> = (0..100)
        .map(|_| tokio::spawn(service.clone().oneshot(get_with("/hold", &[]))))
        .collect();
    entered.acquire_many(100).await.unwrap().forget();
    assert_eq!(bulkhead.snapshot().in_flight, 100);

    for i in 0..10 {
        let error = service.clone().oneshot(get_root()).await.unwrap_err();
        assert_eq!(
            find_rejection(&error).unwrap().kind(),
            RejectionKind::BulkheadFull,
            "call {i}"
        );
    }
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, State::Closed);
    assert_eq!(snapshot.consecutive_failures, 0);
    assert_eq!(snapshot.rejected, 0, "the breaker refused nothing");
    assert_eq!(
        bulkhead.snapshot().rejected_queue_full,
        10,
        "each refused once"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "refused at home, never retried"
    );

    release.notify_waiters();
    for call in held {
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }
    let response = service.oneshot(get_root()).await.unwrap();
    assert_eq!(&response.body()[..], b"ok");
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(bulkhead.snapshot().in_flight, 0);
}

/// tower's `Buffer` runs `call` on its worker task, which has no current deadline: the first
/// attempt went out without the deadline header. `CarryDeadlineLayer` before the `Buffer`
/// carries it in the request.
#[tokio::test(start_paused = true)]
async fn behind_a_buffer_the_first_attempt_carries_the_deadline_with_carry_deadline() {
    let backend = slow_backend(|_| false).await;
    let client = ClientPreset::http("backend").unwrap();

    let lost = ServiceBuilder::new()
        .buffer(16)
        .layer(client.layer())
        .service(still_transport(&backend));
    let response = Deadline::after(Duration::from_secs(2))
        .scope(lost.oneshot(get_root()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let carried = ServiceBuilder::new()
        .layer(CarryDeadlineLayer::new())
        .buffer(16)
        .layer(client.layer())
        .service(still_transport(&backend));
    let response = Deadline::after(Duration::from_secs(2))
        .scope(carried.oneshot(get_root()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        sent(&backend),
        [None, Some(1_900)],
        "95% of 2 s, with the layer"
    );
}
