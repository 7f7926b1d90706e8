//! Hedged requests over real HTTP: an axum backend where 1% of requests take 20 times
//! longer, called by a hyper client with and without the hedge layer (the learned 95th
//! percentile). Prints p50 / p99 / p99.9 and the extra requests the hedges cost.
//!
//! ```sh
//! cargo run -p tower-bulwark-examples --example hedge
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{BoxError, Layer, ServiceExt};
use tower_bulwark::hedge::HedgeLayer;
use tower_bulwark::SeededRng;

/// Calls per run, and callers at once.
const CALLS: usize = 5_000;
const CALLERS: usize = 20;

#[derive(Clone)]
struct Backend {
    requests: Arc<AtomicU64>,
    rng: Arc<Mutex<SeededRng>>,
}

/// 5 ms, or 100 ms for 1% of requests.
async fn item(State(backend): State<Backend>) -> &'static str {
    backend.requests.fetch_add(1, Relaxed);
    let slow = backend.rng.lock().expect("rng").next_unit() < 0.01;
    tokio::time::sleep(Duration::from_millis(if slow { 100 } else { 5 })).await;
    "item"
}

type HttpClient =
    BoxCloneService<Request<Empty<Bytes>>, http::Response<hyper::body::Incoming>, BoxError>;

/// `CALLS` requests from `CALLERS` concurrent callers; their latencies, sorted.
async fn run(client: HttpClient, url: &str) -> Vec<Duration> {
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(CALLS)));
    let mut callers = Vec::new();
    for caller in 0..CALLERS {
        let (client, latencies, url) = (client.clone(), latencies.clone(), url.to_owned());
        callers.push(tokio::spawn(async move {
            for _ in (caller..CALLS).step_by(CALLERS) {
                let request = Request::get(&url).body(Empty::new()).expect("request");
                let started = Instant::now();
                let response = client.clone().oneshot(request).await.expect("response");
                response.into_body().collect().await.expect("body");
                latencies.lock().expect("latencies").push(started.elapsed());
            }
        }));
    }
    for caller in callers {
        caller.await.expect("caller");
    }
    let mut latencies = std::mem::take(&mut *latencies.lock().expect("latencies"));
    latencies.sort_unstable();
    latencies
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let backend = Backend {
        requests: Arc::new(AtomicU64::new(0)),
        rng: Arc::new(Mutex::new(SeededRng::new(1))),
    };
    let requests = backend.requests.clone();
    let router = Router::new().route("/item", get(item)).with_state(backend);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/item", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let hedge = HedgeLayer::builder()
        .name("items")
        .percentile(0.95)
        .delay(Duration::from_millis(20))
        .build()?;
    let handle = hedge.handle();
    let plain: HttpClient = BoxCloneService::new(client.clone().map_err(BoxError::from));
    let hedged: HttpClient = BoxCloneService::new(hedge.layer(client));

    println!("{CALLS} GETs, {CALLERS} at once; the backend takes 5 ms, 1% of the time 100 ms");
    println!(
        "{:<10} {:>9} {:>9} {:>9} {:>12}",
        "client", "p50", "p99", "p99.9", "extra load"
    );
    for (name, client) in [("plain", plain), ("hedged", hedged)] {
        let before = requests.load(Relaxed);
        let latencies = run(client, &url).await;
        let extra = (requests.load(Relaxed) - before) as f64 / CALLS as f64 - 1.0;
        println!(
            "{name:<10} {:>9.1?} {:>9.1?} {:>9.1?} {:>11.2}%",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            percentile(&latencies, 0.999),
            extra * 100.0
        );
    }
    let snapshot = handle.snapshot();
    println!(
        "hedges sent {}, won {}, cancelled {}; learned delay {:?}",
        snapshot.sent, snapshot.hedge_wins, snapshot.cancelled, snapshot.delay
    );
    Ok(())
}
