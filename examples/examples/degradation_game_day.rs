//! A game day on loopback: break a dependency on purpose and watch the service degrade
//! gracefully, report its health truthfully and drain cleanly.
//!
//! `cargo run --example degradation_game_day`
//!
//! A shop (axum) calls a recommendations service over HTTP through fault injection, a
//! circuit breaker and a fallback to the last good answer. The health registry watches the
//! breaker and the drain. The game day: healthy traffic, then 100% injected failures (the
//! breaker opens, answers come from the last good response, marked degraded, and
//! `/health` says so), then a drain (readiness 503, new requests refused with
//! `Connection: close`, in-flight work finished).

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower::util::BoxCloneSyncService;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_bulwark::breaker::{CircuitBreakerLayer, OpenDuration};
use tower_bulwark::chaos::{ChaosLayer, HttpChaosLayer};
use tower_bulwark::fallback::FallbackLayer;
use tower_bulwark::health::{DrainLayer, Health};
use tower_bulwark::{BoxError, HandleRejectionsLayer, HttpClassifier};

async fn serve(app: Router) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// `GET path` on `addr`: status, degraded marker, body.
async fn fetch(addr: SocketAddr, path: &str) -> Result<(u16, Option<String>, String), BoxError> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let response = sender
        .send_request(http::Request::get(path).body(Empty::<Bytes>::new())?)
        .await?;
    let status = response.status().as_u16();
    let degraded = response
        .headers()
        .get("x-bulwark-degraded")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.into_body().collect().await?.to_bytes();
    Ok((
        status,
        degraded,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The dependency.
    let recommendations =
        serve(Router::new().route("/", get(|| async { "you may also like: umbrellas" }))).await?;

    // The shop's client to it: fallback(breaker(chaos(http))).
    let chaos = HttpChaosLayer::new(ChaosLayer::builder().error_rate(1.0).disabled())?;
    let game_day = chaos.handle();
    let breaker = CircuitBreakerLayer::builder()
        .name("recommendations")
        .consecutive_failures(3)
        .open_duration(OpenDuration::Fixed(Duration::from_secs(30)))
        .classify(HttpClassifier)
        .build()?;
    let health = Health::new();
    health.add_breaker("recommendations", false, breaker.handle());
    let fallback = FallbackLayer::builder()
        .last_good(Duration::from_secs(300), 100)
        .static_response(http::Response::new(Bytes::from_static(
            b"(no recommendations)",
        )))
        .classify(HttpClassifier)
        .build()?;
    // Boxed: a handler's future must be `Send`, which the compiler cannot prove through
    // the layers' generic error conversions.
    let client: BoxCloneSyncService<http::Request<Empty<Bytes>>, http::Response<Bytes>, BoxError> =
        BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(fallback)
                .layer(breaker)
                .layer(chaos)
                .service(service_fn(
                    move |request: http::Request<Empty<Bytes>>| async move {
                        let stream = TcpStream::connect(recommendations).await?;
                        let (mut sender, connection) =
                            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                        tokio::spawn(connection);
                        let response = sender.send_request(request).await?;
                        let (head, body) = response.into_parts();
                        Ok::<_, BoxError>(http::Response::from_parts(
                            head,
                            body.collect().await?.to_bytes(),
                        ))
                    },
                )),
        );

    // The shop.
    let drain = DrainLayer::new();
    let shutdown = drain.handle();
    health.watch_drain(shutdown.clone());
    let shop = serve(
        Router::new()
            .route(
                "/product",
                get(move || {
                    let client = client.clone();
                    async move {
                        let request = http::Request::get("/").body(Empty::new()).expect("request");
                        match client.oneshot(request).await {
                            Ok(response) => {
                                let mut answer = http::Response::new(
                                    String::from_utf8_lossy(response.body()).into_owned(),
                                );
                                if let Some(degraded) = response.headers().get("x-bulwark-degraded")
                                {
                                    answer
                                        .headers_mut()
                                        .insert("x-bulwark-degraded", degraded.clone());
                                }
                                answer
                            }
                            Err(error) => http::Response::new(format!("error: {error}")),
                        }
                    }
                }),
            )
            .layer(
                ServiceBuilder::new()
                    .layer(HandleRejectionsLayer::new())
                    .layer(drain),
            )
            .nest_service("/health", health.service()),
    )
    .await?;

    println!("1. healthy");
    for _ in 0..2 {
        println!("   /product -> {:?}", fetch(shop, "/product").await?);
    }
    println!("   /health  -> {:?}", fetch(shop, "/health").await?);

    println!("2. game day: every call to recommendations fails");
    game_day.enable();
    for _ in 0..5 {
        println!("   /product -> {:?}", fetch(shop, "/product").await?);
    }
    println!("   /health  -> {:?}", fetch(shop, "/health").await?);
    println!(
        "   injected [errors, aborts, delays]: {:?}",
        game_day.injected()
    );
    game_day.disable();

    println!("3. drain");
    shutdown.drain();
    println!(
        "   /health/ready -> {:?}",
        fetch(shop, "/health/ready").await?
    );
    println!(
        "   /health/live  -> {:?}",
        fetch(shop, "/health/live").await?
    );
    println!("   /product      -> {:?}", fetch(shop, "/product").await?);
    let report = shutdown.drained(Duration::from_secs(5)).await;
    println!("   drained, {} requests cut", report.cut);
    Ok(())
}
