//! An axum server with an adaptive concurrency limit, hit by a local burst of load. Prints
//! the limit as it adapts, and how many calls were served and shed.
//!
//! `cargo run --example shed_load_burst`
//!
//! The server has 20 workers and each call takes 20 ms of work: about 1,000 calls/s. For
//! 1 s a light load (8 concurrent clients), then 3 s of a burst (200 concurrent clients,
//! 70% of the calls `sheddable`), then light again. Gradient2 moves the limit from
//! latency; sheddable calls are refused first, with `503` and `Retry-After`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_bulwark::shed::{FromRequest, Gradient2, ShedLayer};
use tower_bulwark::{BoxError, HandleRejectionsLayer};

/// Counts of answers by status class.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    shed: AtomicU64,
}

async fn call(addr: SocketAddr, criticality: &str) -> Result<u16, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = http::Request::get("/")
        .header("x-request-criticality", criticality)
        .body(Empty::<&[u8]>::new())?;
    Ok(sender.send_request(request).await?.status().as_u16())
}

/// `clients` tasks calling in a loop until `stop`; 70% of them sheddable if `mixed`.
fn load(addr: SocketAddr, clients: usize, mixed: bool, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    for i in 0..clients {
        let (stop, tally) = (stop.clone(), tally.clone());
        let criticality = if mixed && i % 10 < 7 {
            "sheddable"
        } else {
            "critical"
        };
        tokio::spawn(async move {
            while !stop.load(Relaxed) {
                match call(addr, criticality).await {
                    Ok(200) => tally.ok.fetch_add(1, Relaxed),
                    Ok(_) => tally.shed.fetch_add(1, Relaxed),
                    Err(_) => 0,
                };
            }
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let workers = Arc::new(Semaphore::new(20));
    let shed = ShedLayer::builder()
        .name("api")
        .algorithm(Gradient2::default())
        .criticality(FromRequest::default())
        .build()?;
    let handle = shed.handle();
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let workers = workers.clone();
                async move {
                    let _worker = workers.acquire().await.expect("open");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    "done"
                }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleRejectionsLayer::new())
                .layer(shed),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let tally = Arc::new(Tally::default());
    let phases = [
        ("light", 8, false, 1_000u64),
        ("burst", 200, true, 3_000),
        ("light", 8, false, 1_000),
    ];
    println!(
        "{:>6} {:>7} {:>6} {:>10} {:>8} {:>8}",
        "t (ms)", "phase", "limit", "in flight", "ok", "shed"
    );
    let started = tokio::time::Instant::now();
    for (phase, clients, mixed, millis) in phases {
        let stop = Arc::new(AtomicBool::new(false));
        load(addr, clients, mixed, stop.clone(), tally.clone());
        let end = tokio::time::Instant::now() + Duration::from_millis(millis);
        while tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let snapshot = handle.snapshot();
            println!(
                "{:>6} {:>7} {:>6} {:>10} {:>8} {:>8}",
                started.elapsed().as_millis(),
                phase,
                snapshot.limit,
                snapshot.in_flight,
                tally.ok.load(Relaxed),
                tally.shed.load(Relaxed)
            );
        }
        stop.store(true, Relaxed);
    }
    let shed_by_tier = handle.snapshot().shed;
    println!("shed by tier (sheddable, sheddable-plus, critical, critical-plus): {shed_by_tier:?}");
    Ok(())
}
