//! A payment retried through a flaky proxy is charged once, thanks to its `Idempotency-Key`.
//!
//! `cargo run --example idempotent_payments`
//!
//! A payment endpoint sits behind `IdempotencyLayer`. In front of it, a proxy forwards each
//! request and reads the whole answer, but drops the client's connection instead of passing
//! the first two answers on: the card was charged, the client never heard. The client (the
//! umbrella's `ClientPreset`) retries the POST because it carries an `Idempotency-Key`; the
//! server answers the retries from its store instead of charging again. A second payment,
//! with a new key, is charged: keys, not bodies, say which requests are the same operation.
//!
//! Exits with an error if a payment was not answered 201, or the card was not charged
//! exactly once per key.

use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower::{service_fn, ServiceExt};
use tower_bulwark::idempotency::{IdempotencyLayer, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};
use tower_bulwark::presets::ClientPreset;
use tower_bulwark::BoxError;

/// The payment endpoint: every run of the handler charges the card.
async fn payment_server(charges: Arc<AtomicUsize>) -> Result<SocketAddr, BoxError> {
    let charge = move |payment: Bytes| async move {
        let n = charges.fetch_add(1, Ordering::SeqCst) + 1;
        println!(
            "server: charged {} as ch_{n}",
            String::from_utf8_lossy(&payment)
        );
        (
            StatusCode::CREATED,
            [(CONTENT_TYPE, "application/json")],
            format!(r#"{{"charge_id":"ch_{n}"}}"#),
        )
    };
    // Keys of POST and PATCH requests, kept in memory for 24 hours.
    let idempotency = IdempotencyLayer::builder().build()?;
    let app = Router::new()
        .route("/payments", post(charge))
        .layer(idempotency);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// A proxy that forwards to `backend`, and drops the client's connection instead of
/// passing on the first `drops` answers.
async fn flaky_proxy(backend: SocketAddr, drops: usize) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let answers = Arc::new(AtomicUsize::new(0));
    let upstream = Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (answers, upstream) = (answers.clone(), upstream.clone());
            let forward = hyper::service::service_fn(move |mut request: http::Request<_>| {
                let (answers, upstream) = (answers.clone(), upstream.clone());
                async move {
                    *request.uri_mut() = format!("http://{backend}{}", request.uri()).parse()?;
                    let (head, body) = upstream.request(request).await?.into_parts();
                    let body = body.collect().await?.to_bytes();
                    let replayed = head.headers.contains_key(IDEMPOTENT_REPLAYED);
                    let what = format!("{} {}", head.status, String::from_utf8_lossy(&body));
                    if answers.fetch_add(1, Ordering::SeqCst) < drops {
                        println!("proxy:  dropped the response {what} (replayed: {replayed})");
                        // hyper closes the connection without answering.
                        return Err::<http::Response<Full<Bytes>>, BoxError>("dropped".into());
                    }
                    println!("proxy:  passed on the response {what} (replayed: {replayed})");
                    Ok(http::Response::from_parts(head, Full::new(body)))
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), forward);
            tokio::spawn(connection);
        }
    });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let charges = Arc::new(AtomicUsize::new(0));
    let proxy = flaky_proxy(payment_server(charges.clone()).await?, 2).await?;

    // hyper-util's pooled client under the client preset: at most 3 attempts, backoff
    // from 50 ms; POSTs are retried only when they carry an Idempotency-Key.
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let transport = service_fn(move |request: http::Request<Full<Bytes>>| {
        let hyper = hyper.clone();
        async move {
            println!("client: sending POST /payments");
            let response = hyper.request(request).await.inspect_err(|error| {
                let cause = error.source().map_or(String::new(), |c| format!(": {c}"));
                println!("client: attempt failed, {error}{cause}");
            })?;
            let (head, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, BoxError>(http::Response::from_parts(head, body))
        }
    });
    let client = ClientPreset::http("payments")?.layer().service(transport);

    // One key per payment, the same on every retry of it (a structured-field string).
    for (expected, key) in [
        (1, r#""7f3e9a2c-1d4b-4c8e-9f60-2b5a8d3c4e71""#),
        (2, r#""c41d8e07-93a5-4b2f-8e6d-1a7b9c0f5e32""#),
    ] {
        println!("\npayment with Idempotency-Key: {key}");
        let payment = http::Request::post(format!("http://{proxy}/payments"))
            .header(CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_KEY, key)
            .body(Full::new(Bytes::from_static(br#"{"amount":4200}"#)))?;
        let answer = client.clone().oneshot(payment).await?;
        let replayed = answer
            .headers()
            .get(IDEMPOTENT_REPLAYED)
            .map_or("false", |v| v.to_str().unwrap_or("?"));
        println!(
            "client: got {} {} (idempotent-replayed: {replayed})",
            answer.status(),
            String::from_utf8_lossy(answer.body())
        );
        let made = charges.load(Ordering::SeqCst);
        println!("charges made: {made}");
        if made != expected || answer.status() != StatusCode::CREATED {
            return Err(format!("expected 201 and {expected} charge(s), made {made}").into());
        }
    }
    Ok(())
}
