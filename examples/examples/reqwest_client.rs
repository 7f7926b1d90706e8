//! The client preset around `reqwest`: retries, the breaker and deadline propagation
//! through a `reqwest::Client`, against a local server that fails on purpose.
//!
//! `cargo run --example reqwest_client`
//!
//! The server answers 503 to every third call and, from call 12 on, to every call. The
//! client preset retries the 503s within its budget, passes the caller's deadline on as
//! `x-request-timeout-ms`, and its breaker opens once five attempts in a row fail, after
//! which calls are refused at once without reaching the server.
//!
//! The only glue is `ReqwestService` (feature `reqwest`): it takes the `http::Request`
//! the presets read and copy, and gives back an `http::Response`. The request's body is
//! any type reqwest takes that is also `Clone` (`String`, `Vec<u8>`, `Bytes`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};
use tower_bulwark::presets::ClientPreset;
use tower_bulwark::{find_rejection, BoxError, Deadline, ReqwestService};

/// Answers 503 to every third call, and to every call from the twelfth on; prints the
/// deadline each call carried.
async fn server() -> Result<SocketAddr, BoxError> {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/stock",
        get(move |headers: HeaderMap| {
            let n = calls.fetch_add(1, SeqCst) + 1;
            let deadline = headers
                .get("x-request-timeout-ms")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_string();
            let status = if n % 3 == 0 || n >= 12 {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            println!("  server: call {n}, {deadline} ms left, answering {status}");
            std::future::ready((status, "7 in stock"))
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let addr = server().await?;
    let preset = ClientPreset::http("inventory")?;
    let breaker = preset.breaker.handle();
    let client = ServiceBuilder::new()
        .layer(preset.layer())
        // No proxy from the environment: the server is on loopback.
        .service(ReqwestService::new(
            reqwest::Client::builder().no_proxy().build()?,
        ));

    for call in 1..=11 {
        let request = http::Request::get(format!("http://{addr}/stock")).body(String::new())?;
        // As if inside a handler with 2 s left.
        let result = Deadline::after(Duration::from_secs(2))
            .scope(client.clone().oneshot(request))
            .await;
        let outcome = match result {
            Ok(response) => format!("{}", response.status()),
            Err(error) => match find_rejection(&error) {
                Some(rejection) => format!("refused: {:?}", rejection.kind()),
                None => format!("error: {error}"),
            },
        };
        println!("call {call}: {outcome} (breaker {})", breaker.state());
    }
    Ok(())
}
