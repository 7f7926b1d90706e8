//! An HTTP client that retries with a shared retry budget, against a local server that first
//! fails one request in ten and then fails everything. Prints, per phase, how many requests
//! succeeded and how much load reached the server.
//!
//! `cargo run --example retry_budget_http_client`
//!
//! Timeline (about 4 s): for 2 s the server fails every tenth request with 503; retries
//! rescue them. For the next 2 s it fails every request: with 3 attempts per call, plain
//! retries would triple its load, while the 10% budget keeps it near the offered load.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use http::Request;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark::retry::{Backoff, HttpRetry, Jitter, RatioBudget, RetryPolicy};
use tower_bulwark::BoxError;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The dependency: a real HTTP server on loopback.
    let outage = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/",
        get({
            let (outage, served) = (outage.clone(), served.clone());
            move || async move {
                let n = served.fetch_add(1, Ordering::Relaxed);
                if outage.load(Ordering::Relaxed) || n % 10 == 9 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    // One budget for the whole client: retries may add 10% to the load, plus 1 per second.
    let budget = Arc::new(RatioBudget::new(Duration::from_secs(10), 1, 0.1)?);
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(
            Backoff::Exponential {
                initial: Duration::from_millis(5),
                multiplier: 2.0,
            },
            Jitter::Full,
        )
        .budget(budget.clone())
        .classify(HttpRetry::default())
        .build()?;
    let client = policy.layer().layer(service_fn(
        move |request: Request<Empty<&'static [u8]>>| async move {
            let stream = TcpStream::connect(addr).await?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            Ok::<_, BoxError>(sender.send_request(request).await?)
        },
    ));

    for (phase, is_outage) in [("one in ten fails", false), ("outage", true)] {
        outage.store(is_outage, Ordering::Relaxed);
        let (mut offered, mut ok) = (0usize, 0usize);
        let served_before = served.load(Ordering::Relaxed);
        let phase_end = tokio::time::Instant::now() + Duration::from_secs(2);
        while tokio::time::Instant::now() < phase_end {
            offered += 1;
            let request = Request::get("/").body(Empty::new())?;
            if let Ok(response) = client.clone().oneshot(request).await {
                ok += usize::from(response.status().is_success());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let reached = served.load(Ordering::Relaxed) - served_before;
        let (allowed, refused) = budget.counts();
        println!(
            "phase `{phase}`: {ok}/{offered} succeeded; the server saw {reached} requests \
             ({:.2}x the offered load); retries allowed so far {allowed}, refused {refused}, \
             budget left {:.1}",
            reached as f64 / offered as f64,
            budget.balance(),
        );
    }
    Ok(())
}
