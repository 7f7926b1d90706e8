//! Idempotency keys with the client preset, over real HTTP on loopback: a payment whose
//! answer is lost on the way back (the connection dropped after the handler ran) is retried
//! by the preset and answered from the server's store, so the card is charged once; the
//! same payment without a key is not retried, so both sides agree.
//!
//! hyper-util's client reports a connection closed before the response as its
//! `SendRequest` error around hyper's "connection closed before message completed"
//! (`hyper::Error::is_incomplete_message`). The preset retries any transport error of a
//! request carrying an `Idempotency-Key` (`HttpRetry`); without a key, only errors of calls
//! that never reached the server (`tower_bulwark::repeat::never_sent`), which this is not.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower::{service_fn, Service, ServiceExt};
use tower_bulwark::idempotency::{IdempotencyLayer, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};
use tower_bulwark::presets::ClientPreset;
use tower_bulwark::BoxError;
use tower_bulwark_tests::{send, serve_axum};

/// A payment endpoint behind the idempotency layer: each run of the handler is a charge,
/// answered with its number.
async fn payments(charges: Arc<AtomicUsize>) -> SocketAddr {
    let charge = move |_payment: Bytes| async move {
        let n = charges.fetch_add(1, Ordering::SeqCst) + 1;
        (
            StatusCode::CREATED,
            [(CONTENT_TYPE, "application/json")],
            format!(r#"{{"charge_id":"ch_{n}"}}"#),
        )
    };
    let idempotency = IdempotencyLayer::builder().build().unwrap();
    serve_axum(
        Router::new()
            .route("/payments", post(charge))
            .layer(idempotency),
    )
    .await
}

/// A proxy in front of `backend` that forwards every request and reads the whole answer,
/// then, for the first `drops` answers, closes the client's connection instead of passing
/// the answer on.
struct FlakyProxy {
    addr: SocketAddr,
    /// Requests forwarded to the backend.
    forwarded: Arc<AtomicUsize>,
    /// The bodies of the answers it dropped.
    dropped: Arc<Mutex<Vec<Bytes>>>,
}

async fn flaky_proxy(backend: SocketAddr, drops: usize) -> FlakyProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let forwarded = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(Mutex::new(Vec::new()));
    let (count, lost) = (forwarded.clone(), dropped.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (count, lost) = (count.clone(), lost.clone());
            let forward = hyper::service::service_fn(move |request| {
                let (count, lost) = (count.clone(), lost.clone());
                async move {
                    let answer = send(backend, request).await;
                    if count.fetch_add(1, Ordering::SeqCst) < drops {
                        lost.lock().unwrap().push(answer.body);
                        // hyper closes the connection without answering.
                        return Err("answer dropped by the flaky proxy");
                    }
                    Ok(http::Response::from_parts(
                        answer.head,
                        Full::new(answer.body),
                    ))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), forward),
            );
        }
    });
    FlakyProxy {
        addr,
        forwarded,
        dropped,
    }
}

/// The client preset around hyper-util's pooled client.
fn client(
) -> impl Service<http::Request<Full<Bytes>>, Response = http::Response<Bytes>, Error = BoxError> + Clone
{
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let transport = service_fn(move |request: http::Request<Full<Bytes>>| {
        let hyper = hyper.clone();
        async move {
            let (head, body) = hyper.request(request).await?.into_parts();
            Ok::<_, BoxError>(http::Response::from_parts(
                head,
                body.collect().await?.to_bytes(),
            ))
        }
    });
    ClientPreset::http("payments")
        .unwrap()
        .layer()
        .service(transport)
}

fn payment(proxy: SocketAddr, key: Option<&str>) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::post(format!("http://{proxy}/payments"))
        .header(CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        request = request.header(IDEMPOTENCY_KEY, key);
    }
    request
        .body(Full::new(Bytes::from_static(br#"{"amount":4200}"#)))
        .unwrap()
}

#[tokio::test]
async fn a_keyed_payment_whose_answer_is_lost_is_retried_and_answered_from_the_store() {
    let charges = Arc::new(AtomicUsize::new(0));
    let proxy = flaky_proxy(payments(charges.clone()).await, 1).await;

    let key = r#""0b6f1c2e-7d4a-4f0e-9a51-3c2d8e7f6a10""#;
    let response = client()
        .oneshot(payment(proxy.addr, Some(key)))
        .await
        .unwrap();

    assert_eq!(proxy.forwarded.load(Ordering::SeqCst), 2, "sent twice");
    assert_eq!(charges.load(Ordering::SeqCst), 1, "charged once");
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{:?}",
        response.body()
    );
    assert_eq!(response.headers()[IDEMPOTENT_REPLAYED], "true");
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    let lost = proxy.dropped.lock().unwrap().clone();
    assert_eq!(lost, [Bytes::from_static(br#"{"charge_id":"ch_1"}"#)]);
    assert_eq!(response.body(), &lost[0], "the lost run's charge");
}

#[tokio::test]
async fn a_payment_without_a_key_whose_answer_is_lost_is_not_retried() {
    let charges = Arc::new(AtomicUsize::new(0));
    let proxy = flaky_proxy(payments(charges.clone()).await, 1).await;

    let error = client()
        .oneshot(payment(proxy.addr, None))
        .await
        .unwrap_err();

    assert_eq!(proxy.forwarded.load(Ordering::SeqCst), 1, "sent once");
    assert_eq!(charges.load(Ordering::SeqCst), 1, "charged once");
    assert_eq!(proxy.dropped.lock().unwrap().len(), 1);
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
    let hyper_error = std::iter::from_fn(|| {
        let current = cause?;
        cause = current.source();
        Some(current)
    })
    .find_map(|e| e.downcast_ref::<hyper::Error>())
    .unwrap_or_else(|| panic!("a hyper error in the chain of {error:?}"));
    assert!(hyper_error.is_incomplete_message(), "{hyper_error:?}");
    // The caller sees the transport error itself, not a refusal of the preset's layers.
    assert!(tower_bulwark::find_rejection(&error).is_none(), "{error:?}");
}

/// The server preset with the idempotency layer in its place (`layer_with`: after deadline
/// acceptance, before shedding): a request shed for overload never ran, so its key is
/// released and its retry runs; a repeat of a charge in progress is answered 409 while the
/// one shed slot is taken, and replayed once it is done.
#[tokio::test]
async fn in_the_server_preset_a_shed_request_leaves_its_key_free() {
    use axum::routing::post;
    use tokio::sync::{Notify, Semaphore};
    use tower_bulwark::shed::{FromRequest, ShedLayer};
    use tower_bulwark::HttpClassifier;

    let charges = Arc::new(AtomicUsize::new(0));
    let entered = Arc::new(Semaphore::new(0));
    let release = Arc::new(Notify::new());
    let mut server = tower_bulwark::presets::ServerPreset::http().unwrap();
    // One call at a time, so the second is shed while the first is held.
    server.shed = ShedLayer::builder()
        .name("server")
        .fixed(tower_bulwark::shed::Fixed::new(1).unwrap())
        .criticality(FromRequest::default())
        .classify(HttpClassifier)
        .build()
        .unwrap();
    let handler = {
        let (charges, entered, release) = (charges.clone(), entered.clone(), release.clone());
        move |body: Bytes| async move {
            let n = charges.fetch_add(1, Ordering::SeqCst) + 1;
            if body.as_ref() == b"hold" {
                entered.add_permits(1);
                release.notified().await;
            }
            (StatusCode::CREATED, format!("ch_{n}"))
        }
    };
    let idempotency = IdempotencyLayer::builder().build().unwrap();
    let addr = serve_axum(
        Router::new()
            .route("/payments", post(handler))
            .layer(server.layer_with(idempotency)),
    )
    .await;
    let pay = |key: &str, body: &'static str| {
        http::Request::post(format!("http://{addr}/payments"))
            .header(IDEMPOTENCY_KEY, key)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };

    let held = tokio::spawn(send(addr, pay("\"a\"", "hold")));
    let _ = entered.acquire().await.unwrap();
    let shed = send(addr, pay("\"b\"", "go")).await;
    assert_eq!(shed.head.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(shed.head.headers.contains_key("x-bulwark-overloaded"));
    // A repeat of the held charge is answered "in progress" without a shed slot.
    let repeat = send(addr, pay("\"a\"", "hold")).await;
    assert_eq!(repeat.head.status, StatusCode::CONFLICT);

    release.notify_one();
    let held = held.await.unwrap();
    assert_eq!(held.head.status, StatusCode::CREATED);
    assert_eq!(held.body, "ch_1");
    // The shed request's key was released: its retry runs.
    let retried = send(addr, pay("\"b\"", "go")).await;
    assert_eq!(retried.head.status, StatusCode::CREATED);
    assert_eq!(retried.body, "ch_2");
    let replayed = send(addr, pay("\"a\"", "hold")).await;
    assert_eq!(replayed.body, "ch_1");
    assert_eq!(replayed.head.headers[IDEMPOTENT_REPLAYED], "true");
    assert_eq!(charges.load(Ordering::SeqCst), 2);
}
