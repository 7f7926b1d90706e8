//! The backends: fixed capacity (workers x service time), breakable with the chaos layer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_bulwark::chaos::{ChaosHandle, ChaosLayer, HttpChaosLayer, HttpFault, Latency};
use tower_bulwark::{BoxError, HandleRejectionsLayer};

/// Workers per backend.
pub(crate) const WORKERS: usize = 4;
/// Time one call takes on a worker.
pub(crate) const SERVICE_TIME: Duration = Duration::from_millis(10);
/// Calls per second one backend can serve.
pub(crate) const CAPACITY: f64 = WORKERS as f64 / 0.010;

pub(crate) struct Backend {
    pub(crate) addr: SocketAddr,
    /// Calls that reached the handler.
    pub(crate) hits: Arc<AtomicU64>,
    /// Turns the outage on and off (every call answered 503).
    pub(crate) outage: ChaosHandle,
    /// Turns the slowdown on and off (every call 10x slower).
    pub(crate) slowdown: ChaosHandle,
}

pub(crate) async fn start(seed: u64) -> Result<Backend, BoxError> {
    let outage = HttpChaosLayer::new(ChaosLayer::builder().error_rate(1.0).seed(seed).disabled())?
        .answer(HttpFault::Status(StatusCode::SERVICE_UNAVAILABLE));
    let slowdown = HttpChaosLayer::new(
        ChaosLayer::builder()
            .latency(1.0, Latency::Fixed(SERVICE_TIME * 9))
            .seed(seed + 1)
            .disabled(),
    )?;
    let hits = Arc::new(AtomicU64::new(0));
    let workers = Arc::new(Semaphore::new(WORKERS));
    let counted = hits.clone();
    let (outage_handle, slowdown_handle) = (outage.handle(), slowdown.handle());
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let (hits, workers) = (counted.clone(), workers.clone());
                async move {
                    hits.fetch_add(1, Relaxed);
                    let _worker = workers.acquire().await.expect("open semaphore");
                    tokio::time::sleep(SERVICE_TIME).await;
                    "ok"
                }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleRejectionsLayer::new())
                .layer(outage)
                .layer(slowdown),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Backend {
        addr,
        hits,
        outage: outage_handle,
        slowdown: slowdown_handle,
    })
}
