//! An axum server that refuses `sheddable` work while it is "busy", and a client that shows
//! what each kind of request gets back.
//!
//! `cargo run --example criticality_shedding`
//!
//! The refusing layer here is a plain `tower::filter` predicate; the point is the shared
//! contracts: the criticality header is parsed by `Criticality::from_headers` (bad values
//! fall back to `critical`), the refusal is a core `Rejection`, and
//! `HandleRejectionsLayer` turns it into `503` + `Retry-After` so the router accepts the
//! stack without a hand-written error handler.

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::Request;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower::filter::FilterLayer;
use tower::ServiceBuilder;
use tower_bulwark::{BoxError, Criticality, HandleRejectionsLayer, Rejection, RejectionKind};

fn shed_low_priority(request: Request<Body>) -> Result<Request<Body>, BoxError> {
    match Criticality::from_headers(request.headers()) {
        level if level <= Criticality::SheddablePlus => {
            Err(Rejection::new(RejectionKind::Overloaded, "busy-server")
                .with_retry_after(Duration::from_secs(2))
                .into())
        }
        _ => Ok(request),
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let app = Router::new()
        .route("/", get(|| async { "served\n" }))
        .layer(
            ServiceBuilder::new()
                .layer(HandleRejectionsLayer::new())
                .layer(FilterLayer::new(shed_low_priority)),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("server on http://{addr}");

    for label in [
        "critical-plus",
        "critical",
        "sheddable-plus",
        "sheddable",
        "nonsense",
    ] {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = Request::get("/")
            .header("x-request-criticality", label)
            .body(Empty::<&'static [u8]>::new())?;
        let response = sender.send_request(request).await?;
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        println!(
            "x-request-criticality: {label:<15} -> {} (retry-after: {retry_after})",
            response.status()
        );
    }
    Ok(())
}
