//! The idempotency layer in an axum server (`Router::layer`), over real HTTP/1.1 on
//! loopback with a real hyper client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tower_bulwark_idempotency::IdempotencyLayer;

/// The payment handler's state: how often it ran, and whether its first run may answer.
#[derive(Clone)]
struct Payments {
    runs: Arc<AtomicUsize>,
    open: watch::Receiver<bool>,
}

/// Charges once per run; the first run waits until the gate opens.
async fn charge(State(payments): State<Payments>, body: String) -> impl IntoResponse {
    let run = payments.runs.fetch_add(1, Ordering::SeqCst) + 1;
    if run == 1 {
        let _ = payments.open.clone().wait_for(|open| *open).await;
    }
    (
        StatusCode::CREATED,
        [("content-type", "application/json")],
        format!(r#"{{"charge":{run},"request":{body}}}"#),
    )
}

/// A receipt with a checksum in its trailers (of unknown length, so sent chunked).
async fn receipt() -> Response {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("c0ffee"));
    let body = Full::new(Bytes::from_static(b"receipt"))
        .with_trailers(std::future::ready(Some(Ok(trailers))));
    Response::builder()
        .header("trailer", "x-checksum")
        .body(Body::new(UnknownLength(body)))
        .unwrap()
}

/// A body whose size is not announced.
struct UnknownLength<B>(B);

impl<B: http_body::Body + Unpin> http_body::Body for UnknownLength<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        std::pin::Pin::new(&mut self.0).poll_frame(cx)
    }
}

/// A server of `POST`/`GET /pay` and `POST /receipt` behind the layer; `open` says whether
/// the first run answers at once.
async fn serve(open: bool) -> (SocketAddr, Arc<AtomicUsize>, watch::Sender<bool>) {
    let (gate, opened) = watch::channel(open);
    let payments = Payments {
        runs: Arc::new(AtomicUsize::new(0)),
        open: opened,
    };
    let runs = payments.runs.clone();
    let router = Router::new()
        .route("/pay", post(charge).get(charge))
        .route("/receipt", post(receipt))
        .with_state(payments)
        .layer(IdempotencyLayer::builder().build().unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (addr, runs, gate)
}

/// A whole answer.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

impl Reply {
    fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true")
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends `method path` with `headers` and `body` and reads the whole answer.
async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    Reply {
        status: parts.status,
        headers: parts.headers,
        trailers: collected.trailers().cloned(),
        body: collected.to_bytes(),
    }
}

const KEY: (&str, &str) = ("idempotency-key", "\"pay-1\"");
const BODY: &str = r#"{"amount":10}"#;

#[tokio::test]
async fn a_post_sent_twice_is_charged_once_and_replayed() {
    let (addr, runs, _gate) = serve(true).await;
    let client = client();

    let first = send(&client, addr, Method::POST, "/pay", &[KEY], BODY).await;
    assert_eq!(first.status, 201);
    assert!(!first.replayed());
    assert_eq!(first.body, r#"{"charge":1,"request":{"amount":10}}"#);
    assert_eq!(first.headers["content-type"], "application/json");

    let second = send(&client, addr, Method::POST, "/pay", &[KEY], BODY).await;
    assert_eq!(second.status, 201, "{:?}", second.body);
    assert!(second.replayed());
    assert_eq!(second.body, first.body);
    assert_eq!(second.headers["content-type"], "application/json");
    assert_eq!(
        second.headers["content-length"],
        first.body.len().to_string()
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_hundred_concurrent_duplicates_run_the_handler_once() {
    let (addr, runs, gate) = serve(false).await;
    let client = client();
    let (answers, mut answered) = mpsc::unbounded_channel();
    for _ in 0..100 {
        let (client, answers) = (client.clone(), answers.clone());
        tokio::spawn(async move {
            let reply = send(&client, addr, Method::POST, "/pay", &[KEY], BODY).await;
            answers.send(reply).unwrap();
        });
    }

    // The first run waits for the gate: every duplicate is told it is in progress.
    for _ in 0..99 {
        let reply = answered.recv().await.unwrap();
        assert_eq!(reply.status, 409, "{:?}", reply.body);
        assert_eq!(reply.headers["content-type"], "application/problem+json");
        assert_eq!(reply.headers["retry-after"], "1");
        assert!(std::str::from_utf8(&reply.body)
            .unwrap()
            .contains("#in-progress\""));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    gate.send(true).unwrap();
    let first = answered.recv().await.unwrap();
    assert_eq!(first.status, 201);
    assert!(!first.replayed());
    assert_eq!(first.body, r#"{"charge":1,"request":{"amount":10}}"#);

    // Afterwards, duplicates are replayed.
    for _ in 0..5 {
        let again = send(&client, addr, Method::POST, "/pay", &[KEY], BODY).await;
        assert!(again.replayed());
        assert_eq!(again.body, first.body);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_reused_key_gets_a_422_problem() {
    let (addr, runs, _gate) = serve(true).await;
    let client = client();
    assert_eq!(
        send(&client, addr, Method::POST, "/pay", &[KEY], BODY)
            .await
            .status,
        201
    );

    let reused = send(
        &client,
        addr,
        Method::POST,
        "/pay",
        &[KEY],
        r#"{"amount":99}"#,
    )
    .await;
    assert_eq!(reused.status, 422);
    assert_eq!(reused.headers["content-type"], "application/problem+json");
    let problem = std::str::from_utf8(&reused.body).unwrap();
    assert!(problem.starts_with(r#"{"type":"https://"#), "{problem}");
    assert!(problem.contains(r#"README.md#key-reused","#), "{problem}");
    assert!(problem.contains(r#""status":422,"#), "{problem}");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_get_with_a_key_passes_by() {
    let (addr, runs, _gate) = serve(true).await;
    let client = client();
    for run in 1..=2 {
        let reply = send(&client, addr, Method::GET, "/pay", &[KEY], "").await;
        assert_eq!(reply.status, 201);
        assert!(!reply.replayed());
        assert_eq!(reply.body, format!(r#"{{"charge":{run},"request":}}"#));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn trailers_are_replayed_over_http1() {
    let (addr, _runs, _gate) = serve(true).await;
    let client = client();
    let headers = [("idempotency-key", "\"receipt-1\""), ("te", "trailers")];
    let mut checksum = HeaderMap::new();
    checksum.insert("x-checksum", HeaderValue::from_static("c0ffee"));

    let first = send(&client, addr, Method::POST, "/receipt", &headers, "").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.trailers.as_ref(), Some(&checksum));
    let replay = send(&client, addr, Method::POST, "/receipt", &headers, "").await;
    assert!(replay.replayed());
    assert_eq!(replay.body, "receipt");
    assert_eq!(replay.headers["trailer"], "x-checksum");
    assert_eq!(replay.trailers.as_ref(), Some(&checksum));
}
