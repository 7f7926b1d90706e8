//! Outlier ejection over real HTTP: a p2c balancer over five backends, one of which starts
//! answering 503, is ejected, recovers and comes back.
//!
//! `cargo run --example outlier`
//!
//! Five axum servers on loopback; a `tower::balance::p2c::Balance` of hyper-util clients,
//! each endpoint wrapped by the detector's layer with the HTTP readings (`HttpClassifier`
//! outcomes, `GatewayErrors`), under a cap of 20% (one endpoint of five). Each endpoint has
//! its own attempt timeout *under* the detector's layer: a call that times out there
//! finishes as a failure the detector counts, whereas a timeout above the balancer drops
//! the call, which records nothing (a hung endpoint would never be ejected).
//!
//! 1. 200 requests while every backend is healthy: all served.
//! 2. Backend 4 answers 503 from now on. It fails five times in a row and is ejected for
//!    the base ejection time (2 s here); its `poll_ready` is pending, so p2c routes around
//!    it: of the next 500 requests at least 99% are served.
//! 3. Backend 4 recovers. When its ejection ends it is back in rotation and serves again.
//!
//! Exits non-zero if the counts are not these.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tower::balance::p2c::Balance;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_bulwark::deadline::TimeoutLayer;
use tower_bulwark::outlier::{OutlierDetector, OutlierEvent};
use tower_bulwark::BoxError;

/// One backend: answers 503 while `sick`, counts what it served.
#[derive(Clone, Default)]
struct Backend {
    sick: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
}

async fn handler(State(backend): State<Backend>) -> StatusCode {
    if backend.sick.load(Ordering::SeqCst) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        backend.served.fetch_add(1, Ordering::SeqCst);
        StatusCode::OK
    }
}

async fn serve(backend: Backend) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = Router::new().route("/", get(handler)).with_state(backend);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(addr)
}

/// Sends `count` requests through the balancer; how many answered 200.
async fn send<S>(balance: &mut S, count: u32) -> Result<u32, BoxError>
where
    S: Service<(), Response = Response<()>, Error = BoxError>,
{
    let mut ok = 0;
    for _ in 0..count {
        let response = balance.ready().await?.call(()).await?;
        ok += u32::from(response.status() == StatusCode::OK);
    }
    Ok(ok)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let detector = OutlierDetector::builder()
        .name("backends")
        .interval(Duration::from_secs(1))
        .base_ejection_time(Duration::from_secs(2))
        .max_ejection_percent(20)
        .on_event(|event: &OutlierEvent| println!("  event: {event}"))
        .build()?;

    // One attempt timeout per endpoint, under the detector's layer.
    let attempt_timeout = TimeoutLayer::new(Duration::from_secs(1))?;
    let backends: Vec<Backend> = (0..5).map(|_| Backend::default()).collect();
    let mut endpoints = Vec::new();
    for backend in &backends {
        let addr = serve(backend.clone()).await?;
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let transport = service_fn(move |()| {
            let client = client.clone();
            async move {
                let request = Request::get(format!("http://{addr}/")).body(Empty::new())?;
                let response: Response<_> = client.request(request).await?;
                let (parts, body) = response.into_parts();
                body.collect().await?;
                Ok::<_, BoxError>(Response::from_parts(parts, ()))
            }
        });
        // The detector's layer around the endpoint's attempt timeout and transport; p2c
        // reads the pending requests as its load, through the layer.
        let endpoint = detector
            .layer(addr.to_string())
            .http()
            .layer(PendingRequests::new(
                attempt_timeout.layer(transport),
                CompleteOnResponse::default(),
            ));
        endpoints.push(endpoint);
    }
    let mut balance = Balance::new(ServiceList::new(endpoints));

    println!("1. all five backends healthy");
    let ok = send(&mut balance, 200).await?;
    println!("   {ok}/200 served");

    println!("2. backend 4 answers 503");
    backends[4].sick.store(true, Ordering::SeqCst);
    let mut failed = 0;
    let mut sent = 0;
    while detector.ejected() == 0 && sent < 1_000 {
        failed += 1 - send(&mut balance, 1).await?;
        sent += 1;
    }
    let after = send(&mut balance, 500).await?;
    println!("   ejected after {failed} failures in {sent} requests; then {after}/500 served");

    println!("3. backend 4 recovers");
    backends[4].sick.store(false, Ordering::SeqCst);
    let before = backends[4].served.load(Ordering::SeqCst);
    let mut rounds = 0;
    while (detector.ejected() > 0 || backends[4].served.load(Ordering::SeqCst) == before)
        && rounds < 1_000
    {
        send(&mut balance, 1).await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
        rounds += 1;
    }
    let back = backends[4].served.load(Ordering::SeqCst) - before;
    println!("   back in rotation: served {back} after its return");
    for endpoint in detector.snapshot().endpoints {
        println!(
            "   {}: ejected {} time(s), last success rate {:?}",
            endpoint.key, endpoint.times_ejected, endpoint.success_rate
        );
    }

    if ok != 200 || failed != 5 || after < 495 || back == 0 || detector.ejected() != 0 {
        return Err("unexpected counts".into());
    }
    Ok(())
}
