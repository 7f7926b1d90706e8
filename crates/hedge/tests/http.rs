//! The hedge layer over real HTTP/1.1 on loopback: an axum server whose first answer
//! never comes, a hyper client with the layer. The hedge answers; the first attempt's
//! connection is dropped, and the server sees its handler cancelled.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};
use tower_bulwark_hedge::{HedgeLayer, NotSent};

#[derive(Clone, Default)]
struct Backend {
    runs: Arc<AtomicUsize>,
    cancelled: Arc<AtomicUsize>,
}

/// Counts a handler dropped before it answered.
struct Cancelled(Arc<AtomicUsize>);

impl Drop for Cancelled {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

async fn item(State(backend): State<Backend>) -> String {
    let run = backend.runs.fetch_add(1, SeqCst);
    if run == 0 {
        let _guard = Cancelled(backend.cancelled.clone());
        std::future::pending::<()>().await;
    }
    format!("answer {run}")
}

async fn serve() -> (SocketAddr, Backend) {
    let backend = Backend::default();
    let router = Router::new()
        .route("/item", get(item))
        .route("/order", post(item))
        .with_state(backend.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (addr, backend)
}

/// Polls `done` until it holds, for at most 10 s of real time (a real socket's clock).
async fn eventually(done: impl Fn() -> bool) -> bool {
    for _ in 0..1_000 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

#[tokio::test]
async fn the_hedge_answers_and_the_slow_attempt_is_cancelled_on_the_server() {
    let (addr, backend) = serve().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let layer = HedgeLayer::builder()
        .name("loopback")
        .delay(Duration::from_millis(20))
        .build()
        .unwrap();
    let handle = layer.handle();
    let service = layer.layer(client);
    let request = Request::get(format!("http://{addr}/item"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"answer 1");
    let snapshot = handle.snapshot();
    assert_eq!(
        (snapshot.sent, snapshot.hedge_wins, snapshot.cancelled),
        (1, 1, 1)
    );
    assert_eq!(snapshot.in_flight, 0);
    assert!(
        eventually(|| backend.cancelled.load(SeqCst) == 1).await,
        "the server never saw the first attempt cancelled"
    );
    assert_eq!(backend.runs.load(SeqCst), 2);

    // A POST without a key is never hedged: it waits for its own (prompt) answer.
    let post = Request::post(format!("http://{addr}/order"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = service.oneshot(post).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"answer 2");
    assert_eq!(backend.runs.load(SeqCst), 3);
    assert_eq!(handle.snapshot().not_sent(NotSent::NotIdempotent), 1);
    assert_eq!(handle.snapshot().sent, 1);
}
