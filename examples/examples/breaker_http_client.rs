//! An HTTP client guarded by a circuit breaker, against a local server that breaks for a
//! while and then recovers. Prints every state change and what each phase looked like.
//!
//! `cargo run --example breaker_http_client`
//!
//! Timeline (about 5 s): the server is healthy for 1 s, answers 503 for 2 s, then is healthy
//! again. The client sends a request every 20 ms. With the breaker, the outage costs a few
//! failed requests; the rest fail fast without reaching the server, a probe goes through
//! every 500 ms, and traffic comes back once a probe succeeds.

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
use tower_bulwark::breaker::{BreakerEvent, CircuitBreakerLayer, CircuitOpen, OpenDuration};
use tower_bulwark::{BoxError, HttpClassifier};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The flaky dependency: a real HTTP server on loopback.
    let broken = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/",
        get({
            let (broken, served) = (broken.clone(), served.clone());
            move || async move {
                served.fetch_add(1, Ordering::Relaxed);
                if broken.load(Ordering::Relaxed) {
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

    // The client: one HTTP/1 request per connection, wrapped in the breaker.
    let started = tokio::time::Instant::now();
    let breaker = CircuitBreakerLayer::builder()
        .name("flaky-server")
        .consecutive_failures(3)
        .open_duration(OpenDuration::Fixed(Duration::from_millis(500)))
        .classify(HttpClassifier)
        .on_event(move |event: &BreakerEvent| {
            if let BreakerEvent::StateChanged {
                from, to, reason, ..
            } = event
            {
                println!(
                    "  [{:>5} ms] breaker {from} -> {to} ({reason})",
                    started.elapsed().as_millis()
                );
            }
        })
        .build()?;
    let client = breaker.layer(service_fn(
        move |request: Request<Empty<&'static [u8]>>| async move {
            let stream = TcpStream::connect(addr).await?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            Ok::<_, BoxError>(sender.send_request(request).await?)
        },
    ));

    let phases = [
        ("healthy", false, 1_000u64),
        ("broken", true, 2_000),
        ("recovered", false, 2_000),
    ];
    for (phase, is_broken, millis) in phases {
        broken.store(is_broken, Ordering::Relaxed);
        println!("phase `{phase}` ({millis} ms)");
        let (mut ok, mut failed, mut fast_failed) = (0, 0, 0);
        let served_before = served.load(Ordering::Relaxed);
        let phase_end = tokio::time::Instant::now() + Duration::from_millis(millis);
        while tokio::time::Instant::now() < phase_end {
            let request = Request::get("/").body(Empty::new())?;
            match client.clone().oneshot(request).await {
                Ok(response) if response.status().is_success() => ok += 1,
                Ok(_) => failed += 1,
                Err(e) if e.is::<CircuitOpen>() => fast_failed += 1,
                Err(_) => failed += 1,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let reached = served.load(Ordering::Relaxed) - served_before;
        println!("  ok {ok}, failed {failed}, failed fast {fast_failed}; requests that reached the server: {reached}");
    }
    let snapshot = breaker.handle().snapshot();
    println!(
        "final state: {}, refused in total: {}",
        snapshot.state, snapshot.rejected
    );
    Ok(())
}
