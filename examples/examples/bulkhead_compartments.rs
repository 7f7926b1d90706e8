//! One slow dependency saturates its compartment while another stays fast.
//!
//! `cargo run --example bulkhead_compartments`
//!
//! An axum server has two routes, each behind its own bulkhead of 4 calls (plus a queue of
//! 4 waiting at most 200 ms). `/payments` is slow (500 ms); `/inventory` answers at once.
//! Forty requests hit `/payments` while twenty hit `/inventory`: payments overflow and are
//! refused with 503 at once, and inventory is not slowed down at all.

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http::Request;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tower::ServiceBuilder;
use tower_bulwark::bulkhead::BulkheadLayer;
use tower_bulwark::{BoxError, HandleRejectionsLayer};

fn compartment(name: &'static str) -> Result<BulkheadLayer, BoxError> {
    Ok(BulkheadLayer::builder()
        .name(name)
        .max_concurrent(4)
        .max_queue(4)
        .max_wait(Duration::from_millis(200))
        .build()?)
}

async fn get_status(
    addr: std::net::SocketAddr,
    path: &'static str,
) -> Result<(u16, Duration), BoxError> {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let response = sender
        .send_request(Request::get(path).body(Empty::<&'static [u8]>::new())?)
        .await?;
    Ok((response.status().as_u16(), started.elapsed()))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let payments = Router::new()
        .route(
            "/payments",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "paid\n"
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleRejectionsLayer::new())
                .layer(compartment("payments")?),
        );
    let inventory = Router::new()
        .route("/inventory", get(|| async { "in stock\n" }))
        .layer(
            ServiceBuilder::new()
                .layer(HandleRejectionsLayer::new())
                .layer(compartment("inventory")?),
        );
    let app = payments.merge(inventory);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut payment_calls = Vec::new();
    for _ in 0..40 {
        payment_calls.push(tokio::spawn(get_status(addr, "/payments")));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut inventory_calls = Vec::new();
    for _ in 0..20 {
        inventory_calls.push(tokio::spawn(get_status(addr, "/inventory")));
    }

    for (path, calls) in [
        ("/payments", payment_calls),
        ("/inventory", inventory_calls),
    ] {
        let (mut ok, mut refused, mut slowest) = (0, 0, Duration::ZERO);
        for call in calls {
            let (status, took) = call.await??;
            match status {
                200 => ok += 1,
                503 => refused += 1,
                other => println!("unexpected status {other}"),
            }
            slowest = slowest.max(took);
        }
        println!("{path:<11} ok {ok:>2}, refused (503) {refused:>2}, slowest answer {slowest:?}");
    }
    Ok(())
}
