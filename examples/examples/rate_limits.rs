//! Rate limits over real HTTP: an API limited per API key refuses a burst with 429 and the
//! IETF `RateLimit` headers, and a client that limits itself waits instead of being refused.
//!
//! `cargo run --example rate_limits`
//!
//! The server is the server preset with a `RateLimitLayer` where `layer_with` puts it
//! (after deadline acceptance, before load shedding): 5 requests a second per
//! `x-api-key`, 5 at once, the per-tier quotas at their defaults.
//!
//! 1. Key `a` sends 8 requests back to back: 5 are served, 3 refused with `429`.
//! 2. Key `b` is served: each key has its own limit.
//! 3. A hyper-util client under a `ClientRateLimitLayer` of its own (5 a second, 4 at once:
//!    one permit under the server's burst, so that a paced request that reaches the server
//!    a little early is still served) sends 10 requests as key `c`: 4 go at once, each of
//!    the other 6 waits 200 ms for its permit, and all 10 are served, in at least 1.2 s.
//!
//! Exits non-zero if the counts are not these.

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{HeaderName, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_bulwark::presets::ServerPreset;
use tower_bulwark::ratelimit::{key, ClientRateLimitLayer, LocalLimiter, Quota, RateLimitLayer};
use tower_bulwark::BoxError;

const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The API: `/` answers "hello", 5 requests a second per API key.
async fn serve() -> Result<SocketAddr, BoxError> {
    let per_key = RateLimitLayer::local(
        Quota::per_second(5)?.burst(5)?.name("api"),
        key::header(API_KEY),
    )?
    .build()?;
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(ServerPreset::http()?.layer_with(per_key));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

fn get_as(addr: SocketAddr, api_key: &'static str) -> Result<Request<Full<Bytes>>, http::Error> {
    Request::get(format!("http://{addr}/"))
        .header(API_KEY, api_key)
        .body(Full::default())
}

/// Prints a response's status and rate limit headers on one line; returns the status.
fn show<B>(label: &str, response: &Response<B>) -> StatusCode {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    println!(
        "{label}  {}  retry-after {:<2} ratelimit-policy {}  ratelimit {}",
        response.status(),
        header("retry-after"),
        header("ratelimit-policy"),
        header("ratelimit"),
    );
    response.status()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let addr = serve().await?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();

    println!("key a, 8 requests back to back:");
    let (mut served, mut refused) = (0, 0);
    for n in 1..=8 {
        let response = client.request(get_as(addr, "a")?).await?;
        match show(&format!("  a{n}"), &response) {
            StatusCode::OK => served += 1,
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            _ => {}
        }
    }

    println!("key b, its own limit:");
    let b_served = show("  b1", &client.request(get_as(addr, "b")?).await?) == StatusCode::OK;

    println!("key c, through a client that keeps itself to 5 a second (4 at once):");
    let own = LocalLimiter::new(Quota::per_second(5)?.burst(4)?.name("own"));
    let paced = ClientRateLimitLayer::builder(own, key::global)
        .build()
        .layer(client.clone());
    let start = Instant::now();
    let mut paced_served = 0;
    for n in 1..=10 {
        let response = paced.clone().oneshot(get_as(addr, "c")?).await?;
        let label = format!(
            "  c{n:<2} answered at {:.3} s",
            start.elapsed().as_secs_f64()
        );
        if show(&label, &response) == StatusCode::OK {
            paced_served += 1;
        }
    }
    let took = start.elapsed();
    println!("  10 requests in {:.3} s", took.as_secs_f64());

    // 6 requests past the client's burst, one permit every 200 ms: never sooner.
    let paced_enough = took >= Duration::from_millis(1200);
    if (served, refused, b_served, paced_served, paced_enough) == (5, 3, true, 10, true) {
        println!("ok: key a 5 served, 3 refused; key b served; the paced client 10 of 10");
        Ok(())
    } else {
        eprintln!(
            "FAILED: key a {served} served, {refused} refused (want 5, 3); key b served \
             {b_served}; paced {paced_served} of 10 in {took:?} (want 10, at least 1.2 s)"
        );
        std::process::exit(1);
    }
}
