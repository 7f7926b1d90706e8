//! Outlier ejection over real HTTP/1.1 on loopback: five axum servers behind a
//! `tower::balance::p2c::Balance` of hyper-util clients, each endpoint wrapped by the
//! detector's layer; the same traffic through per-endpoint breakers in readiness mode, to
//! show what the comparison across endpoints adds; one server far slower than the others,
//! for the slow-endpoint rule. Time is real here (sockets): the tests poll for conditions
//! with bounds and assert counts, never speeds (a server that sleeps 200 ms before it
//! answers takes at least 200 ms: a lower bound is the only latency they assert).
#![cfg(feature = "http")]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tower::balance::p2c::Balance;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::{BoxError, Layer, Service, ServiceExt};
use tower_bulwark_breaker::{Admission, CircuitBreakerLayer};
use tower_bulwark_core::HttpClassifier;
use tower_bulwark_outlier::{OutlierDetector, OutlierEvent, Reason, SlowEndpoint, SuccessRate};

const HEALTHY: u8 = 0;
const UNAVAILABLE: u8 = 1;
/// Every third request answered 503, the others 200.
const EVERY_THIRD: u8 = 2;

/// One loopback server: its address, its behaviour, and what it answered.
#[derive(Clone)]
struct Backend {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    hits: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    /// How long it sleeps before it answers, in milliseconds.
    delay_ms: Arc<AtomicU64>,
}

impl Backend {
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
    fn set_delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }
    fn errors(&self) -> u64 {
        self.errors.load(Ordering::SeqCst)
    }
    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn answer(State(backend): State<Backend>) -> StatusCode {
    let hit = backend.hits.fetch_add(1, Ordering::SeqCst) + 1;
    let delay = backend.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let fail = match backend.mode.load(Ordering::SeqCst) {
        UNAVAILABLE => true,
        EVERY_THIRD => hit % 3 == 0,
        _ => false,
    };
    if fail {
        backend.errors.fetch_add(1, Ordering::SeqCst);
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

async fn backend(mode: u8) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = Backend {
        addr: listener.local_addr().unwrap(),
        mode: Arc::new(AtomicU8::new(mode)),
        hits: Arc::new(AtomicU64::new(0)),
        errors: Arc::new(AtomicU64::new(0)),
        delay_ms: Arc::new(AtomicU64::new(0)),
    };
    let router = Router::new()
        .route("/", get(answer))
        .with_state(backend.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    backend
}

async fn backends(modes: [u8; 5]) -> Vec<Backend> {
    let mut list = Vec::new();
    for mode in modes {
        list.push(backend(mode).await);
    }
    list
}

/// One endpoint's transport: a hyper-util client sending `GET /` to `addr`.
fn transport(
    addr: SocketAddr,
) -> impl Service<
    (),
    Response = Response<Bytes>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<Bytes>, BoxError>> + Send,
> + Send
       + 'static {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    tower::service_fn(move |()| {
        let client = client.clone();
        async move {
            let request = Request::get(format!("http://{addr}/"))
                .body(Empty::new())
                .unwrap();
            let response = client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, BoxError>(Response::from_parts(parts, body))
        }
    })
}

fn recording(
    detector: tower_bulwark_outlier::Builder,
) -> (OutlierDetector, Arc<Mutex<Vec<OutlierEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let detector = detector
        .on_event(move |event: &OutlierEvent| sink.lock().unwrap().push(event.clone()))
        .build()
        .unwrap();
    (detector, events)
}

/// A p2c balancer over the backends, each wrapped by the detector's layer (HTTP readings).
fn outlier_balancer(
    detector: &OutlierDetector,
    backends: &[Backend],
) -> impl Service<(), Response = Response<Bytes>, Error = BoxError> {
    let services: Vec<_> = backends
        .iter()
        .map(|backend| {
            let inner =
                PendingRequests::new(transport(backend.addr), CompleteOnResponse::default());
            detector.layer(backend.addr.to_string()).http().layer(inner)
        })
        .collect();
    Balance::new(ServiceList::new(services))
}

/// Sends one request through the balancer: whether it answered 200.
async fn send<S>(balance: &mut S) -> bool
where
    S: Service<(), Response = Response<Bytes>, Error = BoxError>,
{
    let response = balance.ready().await.unwrap().call(()).await.unwrap();
    response.status() == StatusCode::OK
}

fn ejected_keys(events: &Mutex<Vec<OutlierEvent>>) -> Vec<(String, &'static str)> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            OutlierEvent::Ejected {
                endpoint, reason, ..
            } => Some((endpoint.to_string(), reason.label())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_answering_503_is_ejected_and_returns_after_it_recovers() {
    let backends = backends([HEALTHY, HEALTHY, HEALTHY, HEALTHY, UNAVAILABLE]).await;
    let sick = backends[4].clone();
    let (detector, events) = recording(
        OutlierDetector::builder()
            .name("http")
            .base_ejection_time(Duration::from_secs(1))
            .max_ejection_percent(20),
    );
    let mut balance = outlier_balancer(&detector, &backends);

    // Until the sick endpoint has failed five times in a row (bounded).
    let mut sent = 0;
    while detector.ejected() == 0 {
        assert!(sent < 5_000, "never ejected: {:?}", detector.snapshot());
        send(&mut balance).await;
        sent += 1;
    }
    assert_eq!(
        ejected_keys(&events),
        [(sick.addr.to_string(), "consecutive")]
    );
    assert_eq!(sick.errors(), 5, "ejected on the fifth 503 in a row");

    // While it is out, >= 99% succeed (an ejection that ends while it is still sick costs
    // at most five more 503s before the next, longer one).
    let mut ok = 0;
    for _ in 0..500 {
        ok += u32::from(send(&mut balance).await);
    }
    assert!(ok >= 495, "{ok} of 500 succeeded");
    assert_eq!(
        500 - ok as u64,
        sick.errors() - 5,
        "every failure was the sick endpoint's"
    );

    // It recovers: once its ejection ends it is back in rotation and answers 200.
    sick.set(HEALTHY);
    let before = sick.hits();
    let mut waited = 0;
    while sick.hits() == before || detector.ejected() > 0 {
        assert!(waited < 3_000, "never returned: {:?}", detector.snapshot());
        assert!(
            send(&mut balance).await,
            "every call succeeds once it is healthy"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert!(events.lock().unwrap().iter().any(|e| matches!(e, OutlierEvent::Returned { endpoint, .. } if endpoint.as_str() == sick.addr.to_string())));
    assert_eq!(
        detector
            .snapshot()
            .endpoint(&sick.addr.to_string())
            .unwrap()
            .ejected_until,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_three_of_five_failing_and_a_20_percent_cap_one_is_ejected() {
    let backends = backends([HEALTHY, HEALTHY, UNAVAILABLE, UNAVAILABLE, UNAVAILABLE]).await;
    let (detector, events) = recording(
        OutlierDetector::builder()
            .name("capped")
            .base_ejection_time(Duration::from_secs(60))
            .max_ejection_percent(20),
    );
    let mut balance = outlier_balancer(&detector, &backends);
    let mut most = 0;
    for _ in 0..600 {
        send(&mut balance).await;
        most = most.max(detector.ejected());
    }
    assert_eq!(most, 1);
    assert_eq!(detector.snapshot().ejected, 1);
    assert_eq!(ejected_keys(&events).len(), 1);
    let capped = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| {
            matches!(
                e,
                OutlierEvent::NotEjected {
                    ejected: 1,
                    max_ejected: 1,
                    ..
                }
            )
        })
        .count();
    assert!(capped > 0, "the other two met the rule and were kept");
    // The two failing endpoints kept in rotation still took traffic.
    let failing_hits: Vec<u64> = backends[2..].iter().map(Backend::hits).collect();
    assert_eq!(
        failing_hits.iter().filter(|hits| **hits > 5).count(),
        2,
        "{failing_hits:?}"
    );
}

/// An endpoint that fails one request in three never fails five in a row and stays under a
/// breaker's 50% failure rate: per-endpoint breakers in readiness mode keep sending to it.
/// Compared with its four peers that all succeed, its success rate is an outlier, and the
/// detector's success-rate rule ejects it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_comparison_across_endpoints_catches_what_per_endpoint_breakers_do_not() {
    let backends = backends([HEALTHY, HEALTHY, HEALTHY, HEALTHY, EVERY_THIRD]).await;
    let flaky = backends[4].clone();

    // Per-endpoint breakers, readiness admission: 5 failures in a row or 50% of the last
    // 100 calls (at least 20) open one.
    let breakers: Vec<CircuitBreakerLayer<HttpClassifier>> = backends
        .iter()
        .map(|backend| {
            CircuitBreakerLayer::builder()
                .name(backend.addr.to_string())
                .failure_rate(0.5)
                .minimum_calls(20)
                .admission(Admission::Readiness)
                .classify(HttpClassifier)
                .build()
                .unwrap()
        })
        .collect();
    let services: Vec<_> = backends
        .iter()
        .zip(&breakers)
        .map(|(backend, breaker)| {
            PendingRequests::new(
                breaker.layer(transport(backend.addr)),
                CompleteOnResponse::default(),
            )
        })
        .collect();
    let mut guarded = Balance::new(ServiceList::new(services));
    let errors_before = flaky.errors();
    let mut breaker_ok = 0u64;
    for _ in 0..600 {
        breaker_ok += u64::from(send(&mut guarded).await);
    }
    let breaker_failures = 600 - breaker_ok;
    assert_eq!(breaker_failures, flaky.errors() - errors_before);
    assert!(
        breaker_failures > 6,
        "more than 1% failed: {breaker_failures}"
    );
    for breaker in &breakers {
        assert!(
            breaker.handle().transitions().is_empty(),
            "no breaker opened"
        );
    }

    // The detector over the same servers: success rate compared each 200 ms among the
    // endpoints with 20 calls or more.
    let (detector, events) = recording(
        OutlierDetector::builder()
            .name("compare")
            .interval(Duration::from_millis(200))
            .success_rate(SuccessRate::new().request_volume(20).minimum_hosts(5))
            .base_ejection_time(Duration::from_secs(60))
            .max_ejection_percent(20),
    );
    let mut balance = outlier_balancer(&detector, &backends);
    let mut sent = 0;
    while detector.ejected() == 0 {
        assert!(sent < 100_000, "never ejected: {:?}", detector.snapshot());
        send(&mut balance).await;
        sent += 1;
    }
    assert_eq!(
        ejected_keys(&events),
        [(flaky.addr.to_string(), "success_rate")]
    );
    let reason = events.lock().unwrap().iter().find_map(|e| match e {
        OutlierEvent::Ejected { reason, .. } => Some(*reason),
        _ => None,
    });
    let Some(Reason::SuccessRate { rate, threshold }) = reason else {
        panic!("{reason:?}")
    };
    assert!(rate < threshold && rate < 1.0, "{rate} {threshold}");
    let errors_before = flaky.errors();
    let mut ok = 0u64;
    for _ in 0..600 {
        ok += u64::from(send(&mut balance).await);
    }
    assert_eq!(ok, 600, "the flaky endpoint is out for 60 s");
    assert_eq!(flaky.errors(), errors_before);
    assert!(ok * 100 >= 99 * 600 && breaker_ok * 100 < 99 * 600);
    eprintln!(
        "breakers: {breaker_ok}/600 ok; detector: ejected after {sent} calls (rate {rate:.3} < {threshold:.3}), then {ok}/600 ok"
    );
}

/// The "one 10x slower": four servers answer after 2 ms, the fifth after 200 ms
/// (a gap far above the rule's 50 ms minimum excess, so scheduling noise on a loaded
/// machine cannot decide the test). The slow-endpoint rule, every second over endpoints
/// with 3 calls or more, ejects it; while it is out, every call goes to the fast four;
/// once it is fast again and its ejection ends, it is back and judged fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_far_slower_than_its_peers_is_ejected_and_returns_after_it_recovers() {
    let backends = backends([HEALTHY; 5]).await;
    for backend in &backends[..4] {
        backend.set_delay(2);
    }
    let slow = backends[4].clone();
    slow.set_delay(200);
    let slow_key = slow.addr.to_string();
    let (detector, events) = recording(
        OutlierDetector::builder()
            .name("slow")
            .interval(Duration::from_secs(1))
            .slow_endpoint(SlowEndpoint::new().request_volume(3))
            .base_ejection_time(Duration::from_secs(5))
            .max_ejection_percent(20),
    );
    let mut balance = outlier_balancer(&detector, &backends);

    // Until the rule has judged it (bounded: about five calls reach it each second).
    let mut sent = 0;
    while detector.ejected() == 0 {
        assert!(sent < 5_000, "never ejected: {:?}", detector.snapshot());
        assert!(send(&mut balance).await, "every call succeeds");
        sent += 1;
    }
    assert_eq!(ejected_keys(&events), [(slow_key.clone(), "slow_endpoint")]);
    let reason = events.lock().unwrap().iter().find_map(|e| match e {
        OutlierEvent::Ejected { reason, .. } => Some(*reason),
        _ => None,
    });
    let Some(Reason::SlowEndpoint {
        mean,
        median,
        threshold,
    }) = reason
    else {
        panic!("{reason:?}")
    };
    assert!(mean >= Duration::from_millis(200), "{mean:?}");
    assert!(mean > threshold && threshold >= median + Duration::from_millis(50));
    let slow_calls = slow.hits();

    // While it is out (5 s; 300 calls of a few milliseconds take far less), >= 99% of the
    // calls go to the fast four.
    let fast_before: u64 = backends[..4].iter().map(Backend::hits).sum();
    let slow_before = slow.hits();
    for _ in 0..300 {
        assert!(send(&mut balance).await);
    }
    let to_fast = backends[..4].iter().map(Backend::hits).sum::<u64>() - fast_before;
    let to_slow = slow.hits() - slow_before;
    assert_eq!(to_fast + to_slow, 300);
    assert!(
        to_fast * 100 >= 99 * 300,
        "{to_fast} of 300 to the fast four"
    );

    // It recovers: once its ejection ends it takes calls again, and the next interval
    // measures it fast (and does not eject it).
    slow.set_delay(2);
    let before = slow.hits();
    let mut waited = 0;
    loop {
        let back = detector.ejected() == 0 && slow.hits() > before;
        let judged_fast = detector
            .snapshot()
            .endpoint(&slow_key)
            .unwrap()
            .mean_latency
            .is_some_and(|mean| mean < Duration::from_millis(50));
        if back && judged_fast {
            break;
        }
        assert!(waited < 3_000, "never returned: {:?}", detector.snapshot());
        assert!(send(&mut balance).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert!(events.lock().unwrap().iter().any(
        |e| matches!(e, OutlierEvent::Returned { endpoint, .. } if endpoint.as_str() == slow_key)
    ));
    assert_eq!(ejected_keys(&events).len(), 1, "not ejected again");
    let snapshot = detector.snapshot();
    let back = snapshot.endpoint(&slow_key).unwrap();
    assert_eq!(back.ejected_until, None);
    eprintln!(
        "slow endpoint: ejected after {sent} calls ({slow_calls} of them to it; mean \
         {mean:?}, median {median:?}, threshold {threshold:?}); then {to_fast}/300 to the \
         fast four; back after {waited} more rounds, measured at {:?}",
        back.mean_latency
    );
}
