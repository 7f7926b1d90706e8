//! The client preset around a hyper-util client, and per-host circuit breakers in a client
//! that talks to several local servers.
//!
//! `cargo run --example client_preset_hyper`
//!
//! Three local servers; `b` fails. The client preset retries within its budget, passes the
//! caller's deadline on, and a keyed breaker (one per host) opens for `b` alone while `a`
//! and `c` keep being served.
//!
//! The same stack wraps a `reqwest::Client` through `ReqwestService` (feature `reqwest`):
//! see the `reqwest_client` example.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_bulwark::breaker::{CircuitBreakerLayer, KeyedCircuitBreakerLayer, OpenDuration};
use tower_bulwark::presets::ClientPreset;
use tower_bulwark::{BoxError, Deadline, HttpClassifier};

async fn server(status: StatusCode) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route("/", get(move || async move { (status, "hi") }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let hosts: BTreeMap<&str, SocketAddr> = [
        ("a", server(StatusCode::OK).await?),
        ("b", server(StatusCode::SERVICE_UNAVAILABLE).await?),
        ("c", server(StatusCode::OK).await?),
    ]
    .into_iter()
    .collect();

    // hyper-util's pooled client as a tower service.
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let transport = service_fn(move |request: http::Request<Full<Bytes>>| {
        let hyper = hyper.clone();
        async move {
            let response = hyper.request(request).await?;
            let (head, body) = response.into_parts();
            Ok::<_, BoxError>(http::Response::from_parts(
                head,
                body.collect().await?.to_bytes(),
            ))
        }
    });

    // One breaker per host, inside the preset's retry so a retry can go elsewhere later.
    let per_host = KeyedCircuitBreakerLayer::new(
        CircuitBreakerLayer::builder()
            .name("upstream")
            .consecutive_failures(3)
            .open_duration(OpenDuration::Fixed(Duration::from_secs(30)))
            .classify(HttpClassifier),
        |request: &http::Request<Full<Bytes>>| {
            request
                .uri()
                .authority()
                .map_or_else(String::new, |a| a.to_string())
        },
        100,
        Duration::from_secs(600),
    )?;
    let handle = per_host.handle();
    let preset = ClientPreset::http("upstream")?;
    let client = ServiceBuilder::new()
        .layer(preset.layer())
        .layer(per_host)
        .service(transport);

    for round in 1..=3 {
        for (name, addr) in &hosts {
            let request = http::Request::get(format!("http://{addr}/")).body(Full::default())?;
            // As if inside a handler with 2 s left: the call carries x-request-timeout-ms.
            let result = Deadline::after(Duration::from_secs(2))
                .scope(client.clone().oneshot(request))
                .await;
            let outcome = match result {
                Ok(response) => response.status().to_string(),
                Err(error) => format!("error: {error}"),
            };
            println!("round {round}: host {name} -> {outcome}");
        }
    }
    for (name, addr) in &hosts {
        let state = handle
            .get(&addr.to_string())
            .map_or("none".to_string(), |breaker| {
                breaker.snapshot().state.to_string()
            });
        println!("breaker for {name}: {state}");
    }
    Ok(())
}
