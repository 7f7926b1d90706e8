//! The layer around a hyper-util client, against an axum backend over real HTTP/1.1 on
//! loopback: a thousand identical GETs, one upstream call.
//!
//! Real sockets run on a clock we cannot pause (CONTRIBUTING.md, rule 8): the backend holds
//! its answer until the layer reports every caller waiting (polled with a bound), so the
//! counts are exact whatever the machine's speed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::{Layer, ServiceExt};
use tower_bulwark_coalesce::{CoalesceHandle, CoalesceLayer};

#[derive(Clone)]
struct Backend {
    calls: Arc<AtomicUsize>,
    gate: watch::Receiver<bool>,
}

/// Counts the call, waits for the gate, then takes 50 ms more.
async fn item(State(backend): State<Backend>, headers: HeaderMap) -> String {
    let call = backend.calls.fetch_add(1, Ordering::SeqCst) + 1;
    let _ = backend.gate.clone().wait_for(|open| *open).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let user = headers
        .get("authorization")
        .map_or("anonymous", |v| v.to_str().unwrap_or("?"));
    format!("item 7 for {user}, call {call}")
}

async fn serve() -> (SocketAddr, Arc<AtomicUsize>, watch::Sender<bool>) {
    let (gate, opened) = watch::channel(false);
    let backend = Backend {
        calls: Arc::new(AtomicUsize::new(0)),
        gate: opened,
    };
    let calls = backend.calls.clone();
    let router = Router::new()
        .route("/items/7", get(item))
        .with_state(backend);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (addr, calls, gate)
}

/// Waits (at most 30 s of real time) until `waiters` callers wait on the layer.
async fn until_waiting(handle: &CoalesceHandle, waiters: usize) {
    for _ in 0..30_000 {
        if handle.snapshot().waiters == waiters {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!(
        "{waiters} callers never all waited: {:?}",
        handle.snapshot()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_identical_gets_over_http_make_one_upstream_call() {
    let (addr, calls, gate) = serve().await;
    let layer = CoalesceLayer::builder().name("items").build().unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let service = layer.layer(client);
    let uri = format!("http://{addr}/items/7");
    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let service = service.clone();
            let request = Request::get(&uri).body(Empty::new()).unwrap();
            tokio::spawn(async move {
                let response = service.oneshot(request).await.unwrap();
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                (status, body)
            })
        })
        .collect();
    until_waiting(&layer.handle(), 1000).await;
    assert_eq!(layer.handle().snapshot().keys, 1);
    gate.send(true).unwrap();
    let mut answers = Vec::new();
    for caller in callers {
        answers.push(caller.await.unwrap());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(answers.len(), 1000);
    for (status, body) in &answers {
        assert_eq!(*status, 200);
        assert_eq!(body, "item 7 for anonymous, call 1");
    }
    let snapshot = layer.handle().snapshot();
    assert_eq!((snapshot.keys, snapshot.waiters), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_over_http_get_their_own_answers() {
    let (addr, calls, gate) = serve().await;
    let layer = CoalesceLayer::builder().build().unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let service = layer.layer(client);
    let uri = format!("http://{addr}/items/7");
    let callers: Vec<_> = (0..100)
        .map(|i| {
            let service = service.clone();
            let user = if i % 2 == 0 { "Bearer A" } else { "Bearer B" };
            let request = Request::get(&uri)
                .header("authorization", user)
                .body(Empty::new())
                .unwrap();
            tokio::spawn(async move {
                let response = service.oneshot(request).await.unwrap();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                (user, body)
            })
        })
        .collect();
    until_waiting(&layer.handle(), 100).await;
    assert_eq!(layer.handle().snapshot().keys, 2);
    gate.send(true).unwrap();
    for caller in callers {
        let (user, body) = caller.await.unwrap();
        let body = std::str::from_utf8(&body).unwrap().to_owned();
        assert!(
            body.starts_with(&format!("item 7 for {user}, call ")),
            "{body}"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
